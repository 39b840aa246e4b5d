"""The repository: keys and crypto, chunking, compression, packs, index, locks."""
