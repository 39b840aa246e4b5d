"""The index: blob id -> where the blob lives.

An index object, before encryption:

    magic "SRIX" | version u8 (1)
    superseded count u32 | superseded index ids (32 bytes each)
    pack count u32
    per pack: pack id (32) | blob count u32 | per blob: type u8, id (32),
              offset u32, length u32, raw length u32

All integers are little-endian. Several index objects together describe
the repository; prune later merges them and lists the ones it replaces.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable, Iterator

from strongroom.errors import IntegrityError
from strongroom.repo.pack import BLOB_TYPES, PackedBlob

INDEX_DIR = "index"
INDEX_AAD = b"strongroom index v1"
_MAGIC = b"SRIX\x01"
_U32 = struct.Struct("<I")
_BLOB = struct.Struct("<B32sIII")


@dataclass(frozen=True)
class BlobLocation:
    pack: bytes
    type: int
    offset: int
    length: int
    raw_length: int


def encode_index(packs: dict[bytes, list[PackedBlob]], supersedes: Iterable[bytes] = ()) -> bytes:
    supersedes = list(supersedes)
    parts = [_MAGIC, _U32.pack(len(supersedes)), *supersedes, _U32.pack(len(packs))]
    for pack_id, blobs in packs.items():
        parts.append(pack_id)
        parts.append(_U32.pack(len(blobs)))
        parts.extend(_BLOB.pack(b.type, b.id, b.offset, b.length, b.raw_length) for b in blobs)
    return b"".join(parts)


def decode_index(data: bytes, what: str) -> tuple[dict[bytes, list[PackedBlob]], list[bytes]]:
    try:
        if not data.startswith(_MAGIC):
            raise IntegrityError(f"{what}: not an index")
        pos = len(_MAGIC)
        (n,) = _U32.unpack_from(data, pos)
        pos += 4
        supersedes = [data[pos + 32 * i: pos + 32 * (i + 1)] for i in range(n)]
        pos += 32 * n
        (npacks,) = _U32.unpack_from(data, pos)
        pos += 4
        packs: dict[bytes, list[PackedBlob]] = {}
        for _ in range(npacks):
            pack_id = data[pos:pos + 32]
            (count,) = _U32.unpack_from(data, pos + 32)
            pos += 36
            blobs = []
            for _ in range(count):
                blob_type, blob_id, offset, length, raw = _BLOB.unpack_from(data, pos)
                pos += _BLOB.size
                if blob_type not in BLOB_TYPES:
                    raise IntegrityError(f"{what}: unknown blob type {blob_type}")
                blobs.append(PackedBlob(blob_type, blob_id, offset, length, raw))
            packs[pack_id] = blobs
        if pos != len(data) or any(len(s) != 32 for s in supersedes):
            raise IntegrityError(f"{what}: trailing or missing bytes")
        return packs, supersedes
    except struct.error:
        raise IntegrityError(f"{what}: truncated index") from None


class Index:
    """The in-memory union of index objects (plus packs stored this run)."""

    def __init__(self) -> None:
        self._blobs: dict[bytes, BlobLocation] = {}
        self.packs: dict[bytes, list[PackedBlob]] = {}

    def add_pack(self, pack_id: bytes, blobs: list[PackedBlob]) -> None:
        self.packs[pack_id] = blobs
        for b in blobs:
            self._blobs.setdefault(b.id, BlobLocation(pack_id, b.type, b.offset, b.length, b.raw_length))

    def __contains__(self, blob_id: bytes) -> bool:
        return blob_id in self._blobs

    def get(self, blob_id: bytes) -> BlobLocation | None:
        return self._blobs.get(blob_id)

    def __len__(self) -> int:
        return len(self._blobs)

    def items(self) -> Iterator[tuple[bytes, BlobLocation]]:
        return iter(self._blobs.items())
