"""The index: blob id -> where the blob lives.

An index object, before encryption:

    magic "SRIX" | version u8 (1)
    superseded count u32 | superseded index ids (32 bytes each)
    pack count u32
    per pack: pack id (32) | blob count u32 | per blob: type u8, id (32),
              offset u32, length u32, raw length u32

All integers are little-endian. Several index objects together describe
the repository; prune later merges them and lists the ones it replaces.

In memory the index keeps those 45-byte blob records as they are, one
after another in a single bytearray, and finds an id through an
open-addressing table of record numbers (an array of u32): no Python
object per blob, about 75 bytes a blob instead of the 440 a dict of
dataclasses took (docs/performance.md, "Scale").
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

from strongroom.errors import IntegrityError
from strongroom.repo.pack import BLOB_TYPES, PackedBlob

INDEX_DIR = "index"
INDEX_AAD = b"strongroom index v1"
_MAGIC = b"SRIX\x01"
_U32 = struct.Struct("<I")
_BLOB = struct.Struct("<B32sIII")
RECORD = _BLOB.size  # 45
_ID_OF_RECORD = struct.Struct("<x32s12x")
_ID_AT = struct.Struct("<32s")
_TYPE_BYTES = bytes(sorted(BLOB_TYPES))
_MIN_TABLE = 1024


class BlobLocation(NamedTuple):
    """Made on each look-up: a tuple is several times cheaper to build than a frozen dataclass."""

    pack: bytes
    type: int
    offset: int
    length: int
    raw_length: int


_new_location = tuple.__new__  # skips NamedTuple's Python-level __new__


@dataclass(frozen=True)
class ParsedIndex:
    """An index object's plaintext, checked, with where each pack's records start."""

    data: bytes
    supersedes: list[bytes]
    packs: list[tuple[bytes, int, int]]  # pack id, offset of its first record, record count

    @property
    def blob_count(self) -> int:
        return sum(count for _, _, count in self.packs)


def encode_index(packs: Mapping[bytes, list[PackedBlob]], supersedes: Iterable[bytes] = ()) -> bytes:
    supersedes = list(supersedes)
    parts = [_MAGIC, _U32.pack(len(supersedes)), *supersedes, _U32.pack(len(packs))]
    for pack_id, blobs in packs.items():
        parts.append(pack_id)
        parts.append(_U32.pack(len(blobs)))
        parts.extend(_BLOB.pack(b.type, b.id, b.offset, b.length, b.raw_length) for b in blobs)
    return b"".join(parts)


def parse_index(data: bytes, what: str) -> ParsedIndex:
    """Check an index object's structure without making an object per blob."""
    try:
        if not data.startswith(_MAGIC):
            raise IntegrityError(f"{what}: not an index")
        pos = len(_MAGIC)
        (n,) = _U32.unpack_from(data, pos)
        pos += 4
        if pos + 32 * n > len(data):
            raise IntegrityError(f"{what}: truncated index")
        supersedes = [data[pos + 32 * i: pos + 32 * (i + 1)] for i in range(n)]
        pos += 32 * n
        (npacks,) = _U32.unpack_from(data, pos)
        pos += 4
        packs = []
        for _ in range(npacks):
            pack_id = data[pos:pos + 32]
            (count,) = _U32.unpack_from(data, pos + 32)
            pos += 36
            end = pos + RECORD * count
            if end > len(data):
                raise IntegrityError(f"{what}: truncated index")
            if data[pos:end:RECORD].translate(None, _TYPE_BYTES):
                bad = next(t for t in data[pos:end:RECORD] if t not in BLOB_TYPES)
                raise IntegrityError(f"{what}: unknown blob type {bad}")
            packs.append((pack_id, pos, count))
            pos = end
        if pos != len(data):
            raise IntegrityError(f"{what}: trailing or missing bytes")
        return ParsedIndex(data, supersedes, packs)
    except struct.error:
        raise IntegrityError(f"{what}: truncated index") from None


def decode_index(data: bytes, what: str) -> tuple[dict[bytes, list[PackedBlob]], list[bytes]]:
    parsed = parse_index(data, what)
    packs = {pack_id: _blobs_at(data, start, count) for pack_id, start, count in parsed.packs}
    return packs, parsed.supersedes


def _blobs_at(records, start: int, count: int) -> list[PackedBlob]:
    # A copy, not a memoryview: an exported bytearray could not grow while another thread adds.
    return [PackedBlob(*fields) for fields in _BLOB.iter_unpack(records[start:start + RECORD * count])]


class Index:
    """The in-memory union of index objects (plus packs stored this run).

    A blob listed in several packs keeps the first location added, as a
    dict's setdefault would. Lookups may run in other threads while one
    thread adds (the repository adds under its write lock): records are
    appended before the table names them, and a grown table replaces the
    old one in a single assignment.
    """

    def __init__(self, expected_blobs: int = 0) -> None:
        self._records = bytearray()  # 45-byte records: type, id, offset, length, raw length
        self._starts = array("I")  # per pack added: its first record number
        self._pack_of = array("I")  # per record: the number of its pack (a bisect of _starts costs more)
        self._pack_ids: list[bytes] = []  # per pack added: its id
        self._latest: dict[bytes, int] = {}  # pack id -> the pack number added last under it
        self._count = 0  # distinct blob ids
        self._expected = 0  # a hint of how many blobs will come (see expect)
        size = _MIN_TABLE
        while size < 2 * expected_blobs:
            size *= 2
        # Record number + 1, 0 when empty; its length is a power of two.
        self._table = array("I", bytes(4 * size))

    # ---- adding -------------------------------------------------------------------

    def add_pack(self, pack_id: bytes, blobs: list[PackedBlob]) -> None:
        records = b"".join(_BLOB.pack(b.type, b.id, b.offset, b.length, b.raw_length) for b in blobs)
        self.add_records(pack_id, records, 0, len(blobs))

    def add_records(self, pack_id: bytes, data, start: int, count: int) -> None:
        """Add a pack from `count` checked records at `start` in `data`."""
        self._grow(self._count + count)  # before the records are added: a grown table holds those before
        first = len(self._records) // RECORD
        self._starts.append(first)  # first: it ends the pack before, for a reader in another thread
        self._pack_of += array("I", [len(self._pack_ids)]) * count
        self._records += memoryview(data)[start:start + RECORD * count]
        self._pack_ids.append(pack_id)
        self._latest[pack_id] = len(self._pack_ids) - 1
        table = self._table
        mask = len(table) - 1
        startswith = self._records.startswith
        added = 0
        number = first + 1  # what the table holds: record number + 1
        for (blob_id,) in _ID_OF_RECORD.iter_unpack(self._records[first * RECORD:]):
            i = hash(blob_id) & mask
            slot = table[i]
            while slot:
                if startswith(blob_id, slot * RECORD - RECORD + 1):
                    break  # already known: the first location stays
                i = (i + 1) & mask
                slot = table[i]
            else:
                table[i] = number
                added += 1
            number += 1
        self._count += added

    def add_parsed(self, parsed: ParsedIndex) -> None:
        self._grow(self._count + parsed.blob_count)
        for pack_id, start, count in parsed.packs:
            self.add_records(pack_id, parsed.data, start, count)

    def expect(self, blobs: int) -> None:
        """A hint of how many blobs are coming (from a listing's sizes: the
        target's word). A table that must grow grows to fit it, but to no more
        than eight times what is really there, so a lie costs little memory,
        and the table is refilled a few times rather than at every doubling."""
        self._expected = blobs

    def _grow(self, blobs: int) -> None:
        """Keep the table at most half full, so probes stay short."""
        table = self._table
        if 2 * blobs <= len(table):
            return
        blobs = max(blobs, min(self._expected, 8 * blobs))
        size = len(table)
        while size < 2 * blobs:
            size *= 2
        # Every record again, in the order added: the first of an id is the one
        # the table names, and the records are read in order, not at random.
        new = array("I", bytes(4 * size))
        mask = size - 1
        startswith = self._records.startswith
        number = 1
        for start in range(0, len(self._records), RECORD * 65536):
            for (blob_id,) in _ID_OF_RECORD.iter_unpack(self._records[start:start + RECORD * 65536]):
                i = hash(blob_id) & mask
                slot = new[i]
                while slot:
                    if startswith(blob_id, slot * RECORD - RECORD + 1):
                        break
                    i = (i + 1) & mask
                    slot = new[i]
                else:
                    new[i] = number
                number += 1
        self._table = new

    def without_packs(self, numbers: set[int]) -> "Index":
        """A new index of every pack added except those numbered (in the order added)."""
        kept = [n for n in range(len(self._pack_ids)) if n not in numbers]
        fresh = Index(sum(self._pack_length(n) for n in kept))
        for n in kept:
            fresh.add_records(self._pack_ids[n], self._records, self._starts[n] * RECORD, self._pack_length(n))
        return fresh

    def merge(self, other: "Index") -> None:
        for n, pack_id in enumerate(other._pack_ids):
            self.add_records(pack_id, other._records, other._starts[n] * RECORD, other._pack_length(n))

    @property
    def pack_count(self) -> int:
        """Packs added, one pack added twice counted twice."""
        return len(self._pack_ids)

    # ---- looking up ---------------------------------------------------------------

    def _find(self, blob_id: bytes) -> int:
        table = self._table  # one read: a grown table replaces it whole
        mask = len(table) - 1
        startswith = self._records.startswith
        i = hash(blob_id) & mask
        slot = table[i]
        while slot:
            # The length too: startswith would take a prefix for the whole id.
            if startswith(blob_id, slot * RECORD - RECORD + 1) and len(blob_id) == 32:
                return slot - 1
            i = (i + 1) & mask
            slot = table[i]
        return -1

    def __contains__(self, blob_id: bytes) -> bool:
        # _find, inline: a backup asks this once per chunk.
        table = self._table
        mask = len(table) - 1
        startswith = self._records.startswith
        i = hash(blob_id) & mask
        slot = table[i]
        while slot:
            if startswith(blob_id, slot * RECORD - RECORD + 1) and len(blob_id) == 32:
                return True
            i = (i + 1) & mask
            slot = table[i]
        return False

    def get(self, blob_id: bytes) -> BlobLocation | None:
        number = self._find(blob_id)
        if number < 0:
            return None
        return self._location(number)

    def _location(self, number: int) -> BlobLocation:
        blob_type, _, offset, length, raw = _BLOB.unpack_from(self._records, number * RECORD)
        return _new_location(BlobLocation, (self._pack_ids[self._pack_of[number]], blob_type, offset, length, raw))

    def __len__(self) -> int:
        return self._count

    def items(self) -> Iterator[tuple[bytes, BlobLocation]]:
        """Every blob id once, with the location lookups give, in the order added."""
        for n in range(len(self._pack_ids)):
            first = self._starts[n]
            ids = self._records[first * RECORD:(first + self._pack_length(n)) * RECORD]
            for number, (blob_id,) in enumerate(_ID_OF_RECORD.iter_unpack(ids), first):
                if self._find(blob_id) == number:
                    yield blob_id, self._location(number)

    # ---- packs --------------------------------------------------------------------

    def _pack_length(self, n: int) -> int:
        end = self._starts[n + 1] if n + 1 < len(self._starts) else len(self._records) // RECORD
        return end - self._starts[n]

    def pack_blobs(self, n: int) -> list[PackedBlob]:
        start = self._starts[n] * RECORD
        return _blobs_at(self._records, start, self._pack_length(n))

    @property
    def packs(self) -> "PackView":
        """pack id -> its blobs, as the pack was last added (a read-only mapping)."""
        return PackView(self)


class PackView(Mapping):
    """The index's packs as a mapping: each pack's list of blobs is made on access."""

    def __init__(self, index: Index) -> None:
        self._index = index

    def __getitem__(self, pack_id: bytes) -> list[PackedBlob]:
        return self._index.pack_blobs(self._index._latest[pack_id])

    def __contains__(self, pack_id: object) -> bool:
        return pack_id in self._index._latest

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(self._index._latest))

    def __len__(self) -> int:
        return len(self._index._latest)

    def blob_counts(self) -> Iterator[tuple[bytes, int]]:
        """pack id -> how many blobs it holds, without making the blobs."""
        for pack_id, n in self._index._latest.items():
            yield pack_id, self._index._pack_length(n)
