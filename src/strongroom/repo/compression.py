"""Blob compression. The first byte of a blob's plaintext names its codec."""

from __future__ import annotations

import threading
import zlib

import zstandard

from strongroom.errors import IntegrityError, UsageError
from strongroom.repo.chunker import ChunkerParams

RAW, ZSTD, LZ4, GZIP = 0, 1, 2, 3
CODECS = {"none": RAW, "zstd": ZSTD, "lz4": LZ4, "gzip": GZIP}
DEFAULT_LEVELS = {ZSTD: 3, GZIP: 6, LZ4: 0, RAW: 0}
# zstd's negative levels are its fast modes; lz4 and none ignore the level.
_LEVEL_RANGES = {ZSTD: (-131072, zstandard.MAX_COMPRESSION_LEVEL), GZIP: (-1, 9)}

# The most a blob may decompress to. A data blob is one chunk, so never more
# than the chunker's maximum (the repository's own, from its config, where
# it has one); a tree blob is one directory's JSON, for which a generous
# fixed cap holds some 200,000 entries (docs/format.md, "Blobs").
MAX_DATA_BLOB = ChunkerParams().max_size
MAX_TREE_BLOB = 64 * 1024 * 1024


def parse_compression(spec: str) -> tuple[int, int]:
    """`zstd`, `zstd:19`, `lz4`, `gzip:9`, `none` -> (codec, level)."""
    name, _, level = spec.strip().lower().partition(":")
    if name in ("off", "false", "no"):
        name = "none"
    if name in ("auto", "true", "yes", "default"):
        name = "zstd"
    if name not in CODECS:
        raise UsageError(f"unknown compression {spec!r}: use zstd, lz4, gzip or none")
    codec = CODECS[name]
    try:
        value = int(level) if level else DEFAULT_LEVELS[codec]
    except ValueError:
        raise UsageError(f"bad compression level in {spec!r}") from None
    # Checked here, not when the first blob is compressed in the middle of a backup.
    low, high = _LEVEL_RANGES.get(codec, (value, value))
    if not low <= value <= high:
        raise UsageError(f"compression level in {spec!r} must be between {low} and {high}")
    return codec, value


def _lz4():
    """lz4.block, imported on first use: repositories are zstd unless asked."""
    import lz4.block
    return lz4.block


def codec_name(codec: int) -> str:
    return {v: k for k, v in CODECS.items()}[codec]


class Compressor:
    """Compresses blobs with one codec; safe to share between threads."""

    def __init__(self, codec: int, level: int) -> None:
        self.codec = codec
        self.level = level
        self._local = threading.local()

    def _zstd(self) -> zstandard.ZstdCompressor:
        c = getattr(self._local, "zstd", None)
        if c is None:
            c = self._local.zstd = zstandard.ZstdCompressor(level=self.level, write_content_size=True)
        return c

    def compress(self, data: bytes | memoryview) -> bytes:
        """Return codec byte + payload; data that does not shrink is stored raw."""
        if self.codec == ZSTD:
            out = self._zstd().compress(data)
        elif self.codec == LZ4:
            out = _lz4().compress(data, store_size=False)
        elif self.codec == GZIP:
            out = zlib.compress(data, self.level)
        else:
            out = None
        if out is None or len(out) >= len(data):
            return _CODEC_BYTES[RAW] + data  # one copy, whatever kind of buffer data is
        return _CODEC_BYTES[self.codec] + out

    def compress_many(self, blobs: list[bytes | memoryview]) -> list[bytes]:
        """`compress` of each, the same bytes; zstd compresses them all in one
        call that lets go of the GIL once (python-zstandard's C backend)."""
        zstd = self._zstd() if self.codec == ZSTD else None
        if zstd is None or len(blobs) < 2 or not hasattr(zstd, "multi_compress_to_buffer"):
            return [self.compress(b) for b in blobs]
        try:
            frames = zstd.multi_compress_to_buffer(blobs, threads=0)
        except zstandard.ZstdError:
            return [self.compress(b) for b in blobs]  # e.g. an empty blob, which it refuses
        compressed, raw = _CODEC_BYTES[ZSTD], _CODEC_BYTES[RAW]
        return [compressed + frame if len(frame) < len(data) else raw + data for data, frame in zip(blobs, frames)]


_CODEC_BYTES = {codec: bytes([codec]) for codec in CODECS.values()}
_dctx = threading.local()


def decompress(blob: bytes, raw_length: int, limit: int = MAX_DATA_BLOB) -> bytes:
    """The plaintext of a blob that must be exactly `raw_length` bytes.

    Never allocates more than `limit` (the most a blob of its kind may be):
    a raw length above it fails before anything is decompressed, and no
    codec is let write more than the raw length, so a blob that inflates
    to gigabytes (a compression bomb) fails at raw_length + 1 bytes.
    """
    if not blob:
        raise IntegrityError("empty blob plaintext")
    if not 0 <= raw_length <= limit:
        raise IntegrityError(f"blob claims {raw_length} bytes, more than a blob may have ({limit})")
    codec, payload = blob[0], memoryview(blob)[1:]
    try:
        if codec == RAW:
            out = bytes(payload)
        elif codec == ZSTD:
            out = _zstd_decompress(payload, raw_length)
        elif codec == LZ4:
            lz4 = _lz4()
            try:
                out = lz4.decompress(payload, uncompressed_size=raw_length)
            except lz4.LZ4BlockError as e:
                raise IntegrityError(f"blob does not decompress: {e}") from None
        elif codec == GZIP:
            out = _zlib_decompress(payload, raw_length)
        else:
            raise IntegrityError(f"unknown compression codec {codec}")
    except (zstandard.ZstdError, zlib.error) as e:
        raise IntegrityError(f"blob does not decompress: {e}") from None
    if len(out) != raw_length:
        raise IntegrityError("blob decompressed to the wrong length")
    return out


def decompress_into(blob: memoryview, raw_length: int, limit: int, out: memoryview) -> memoryview:
    """`decompress` into `out` (at least raw_length bytes): the plaintext, as
    the front of `out`, or a view of `blob` itself where it is stored raw.
    What a reader that only hashes or writes each blob uses: no buffer is
    allocated per blob, so its pages are not faulted in afresh every time."""
    if not blob:
        raise IntegrityError("empty blob plaintext")
    if not 0 <= raw_length <= limit:
        raise IntegrityError(f"blob claims {raw_length} bytes, more than a blob may have ({limit})")
    if blob[0] == RAW:
        if len(blob) - 1 != raw_length:
            raise IntegrityError("blob decompressed to the wrong length")
        return blob[1:]
    if blob[0] != ZSTD:
        plain = decompress(blob, raw_length, limit)
        out[:raw_length] = plain
        return out[:raw_length]
    payload = blob[1:]
    _zstd_declared(payload, raw_length)
    target = out[:raw_length]
    got = 0
    try:
        reader = _zstd_decompressor().stream_reader(payload, read_across_frames=False)
        while got < raw_length:
            n = reader.readinto(target[got:])
            if not n:
                break
            got += n
    except zstandard.ZstdError as e:
        raise IntegrityError(f"blob does not decompress: {e}") from None
    if got != raw_length:
        raise IntegrityError("blob decompressed to the wrong length")
    return target


def _zstd_declared(payload: memoryview, raw_length: int) -> None:
    # python-zstandard allocates the size a frame declares, whatever
    # max_output_size says: check the declaration first.
    declared = zstandard.frame_content_size(payload)
    if declared != raw_length:
        if declared == -1:
            raise IntegrityError("zstd frame without a content size (every writer records it)")
        raise IntegrityError(f"zstd frame declares {declared} bytes, the index {raw_length}")


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_dctx, "zstd", None)
    if d is None:
        d = _dctx.zstd = zstandard.ZstdDecompressor()
    return d


def _zstd_decompress(payload: memoryview, raw_length: int) -> bytes:
    _zstd_declared(payload, raw_length)
    return _zstd_decompressor().decompress(payload, max_output_size=raw_length)


def _zlib_decompress(payload: memoryview, raw_length: int) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(payload, raw_length + 1)
    if len(out) > raw_length or d.unconsumed_tail:
        raise IntegrityError(f"blob decompresses to more than its {raw_length} bytes")
    if not d.eof:
        raise IntegrityError("blob does not decompress: the zlib stream is cut short")
    if d.unused_data:
        raise IntegrityError("blob does not decompress: data after the end of the zlib stream")
    return out
