"""strongroom: deduplicated, compressed, encrypted and verifiable backups."""

__version__ = "0.1.0"
