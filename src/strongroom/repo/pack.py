"""Packs: many encrypted blobs followed by an encrypted header listing them.

    blob_1 || ... || blob_n || encrypted header || header length (u32 LE)

Each header entry is 41 bytes: type (u8), length of the encrypted blob
(u32 LE), length of the uncompressed plaintext (u32 LE), blob id (32 bytes).
Offsets follow from the order. The header makes the index rebuildable from
packs alone; its size is fixed by the entry count, so a pack's expected size
is known from the index.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from dataclasses import dataclass

from strongroom.errors import IntegrityError
from strongroom.repo.crypto import OVERHEAD, Crypto
from strongroom.storage.base import Spool

DATA, TREE = 0, 1
BLOB_TYPES = {DATA: "data", TREE: "tree"}
_ENTRY = struct.Struct("<BII32s")
ENTRY_SIZE = _ENTRY.size
_TRAILER = struct.Struct("<I")
HEADER_AAD = b"strongroom pack header v1"
PACK_DIR = "data"


def blob_aad(blob_type: int, blob_id: bytes) -> bytes:
    return b"strongroom blob v1" + bytes([blob_type]) + blob_id


@dataclass(frozen=True)
class PackedBlob:
    type: int
    id: bytes
    offset: int
    length: int
    raw_length: int


def pack_name(pack_id: bytes, fanout: int) -> str:
    h = pack_id.hex()
    return f"{PACK_DIR}/{h[:fanout]}/{h}" if fanout else f"{PACK_DIR}/{h}"


def expected_pack_size(blobs: list[PackedBlob]) -> int:
    return sum(b.length for b in blobs) + OVERHEAD + ENTRY_SIZE * len(blobs) + _TRAILER.size


class PackWriter:
    """Collects encrypted blobs until the pack is sealed: in memory, or, given
    a spool (a file on a local target), in that file.

    In memory the pack is built in one anonymous mapping that grows in place
    (mremap: no copy, and pages are only taken as they are written). Blobs
    are encrypted straight into it (`seal_blob`), and sealing appends the
    header there, so each stored byte is written once on its way to the
    target and a full pack is held once, not once in parts and again joined.
    Spooled, blobs are encrypted into one buffer the writer keeps (1 MiB,
    or the largest blob if that is larger), which goes to the file and into
    the hash each time it is full: a pack costs no more memory than that
    buffer, a write of a file's block is one system call for many small
    blobs (each one is an update of the file's times, which ext4 journals),
    and the file is renamed into place once sealed.
    """

    def __init__(self, spool: Spool | None = None) -> None:
        self.blobs: list[PackedBlob] = []
        self.size = 0
        self.spool = spool
        if spool is None:
            self._buffer = mmap.mmap(-1, _FIRST_BUFFER, flags=mmap.MAP_PRIVATE)
        else:
            self._buffer = None
            self._pending = bytearray(SPOOL_BUFFER)  # blobs not yet written to the spool
            self._held = 0
            self._hash = hashlib.sha256()

    def _room(self, length: int) -> None:
        need = self.size + length
        if need > len(self._buffer):
            self._buffer.resize(max(need, 2 * len(self._buffer)))

    def _append(self, data: bytes | memoryview) -> None:
        """Spooled: to the file and the hash (StorageError when the target cannot take it)."""
        self.spool.write(data)
        self._hash.update(data)

    def _flush(self) -> None:
        if self._held:
            with memoryview(self._pending) as view:
                self._append(view[:self._held])
            self._held = 0

    def _slot(self, length: int) -> memoryview:
        """Where the next `length` bytes of the pack go: the end of the pack in
        memory or, spooled, of the buffer (what it holds is written out first
        if they do not fit). The caller fills it, releases it, then `_commit`s."""
        if self.spool is None:
            self._room(length)
            return memoryview(self._buffer)[self.size:self.size + length]
        if self._held + length > len(self._pending):
            self._flush()
            if length > len(self._pending):
                self._pending = bytearray(length)
        return memoryview(self._pending)[self._held:self._held + length]

    def add(self, blob_type: int, blob_id: bytes, encrypted: bytes | memoryview, raw_length: int) -> None:
        """Add a blob already encrypted (prune moves stored blobs as they are)."""
        length = len(encrypted)
        with self._slot(length) as room:
            room[:] = encrypted
        self._commit(blob_type, blob_id, length, raw_length)

    def seal_blob(self, crypto: Crypto, blob_type: int, blob_id: bytes, plaintext: bytes | memoryview,
                  raw_length: int) -> int:
        """Encrypt a blob's plaintext (codec byte and payload) into the pack; its stored length."""
        length = len(plaintext) + OVERHEAD
        with self._slot(length) as room:
            crypto.encrypt_into(plaintext, blob_aad(blob_type, blob_id), room)
        self._commit(blob_type, blob_id, length, raw_length)
        return length

    def _commit(self, blob_type: int, blob_id: bytes, length: int, raw_length: int) -> None:
        """A blob written into its slot is counted in (a failed one never is)."""
        self.blobs.append(PackedBlob(blob_type, blob_id, self.size, length, raw_length))
        self.size += length
        if self.spool is not None:
            self._held += length

    def __len__(self) -> int:
        return len(self.blobs)

    def seal(self, crypto: Crypto) -> tuple[bytes, memoryview | None]:
        """Return (pack id, pack bytes); the id is the SHA-256 of the bytes.
        The bytes are a view of the writer's buffer, freed with the view;
        spooled, they are in the spool, to be committed, and None is returned."""
        header = b"".join(_ENTRY.pack(b.type, b.length, b.raw_length, b.id) for b in self.blobs)
        encrypted_header = crypto.encrypt(header, HEADER_AAD)
        tail = encrypted_header + _TRAILER.pack(len(encrypted_header))
        if self.spool is not None:
            self._flush()
            self._append(tail)
            self._pending = bytearray()
            return self._hash.digest(), None
        self._room(len(tail))
        self._buffer[self.size:self.size + len(tail)] = tail
        self._buffer.resize(self.size + len(tail))
        data = memoryview(self._buffer)
        self._buffer = None
        return hashlib.sha256(data).digest(), data

    def discard(self) -> None:
        """A pack not to be stored: its spool, if any, is removed."""
        if self.spool is not None:
            self.spool.discard()


# What a spooled pack holds before it writes to its file.
SPOOL_BUFFER = 1 << 20

# A pack's buffer starts this large and doubles as it fills; only the pages
# written are ever taken. The mapping is private: a shared anonymous one
# keeps its first size underneath, and a page past it would fault (SIGBUS).
_FIRST_BUFFER = 1 << 20


def parse_header(crypto: Crypto, tail: bytes, pack_size: int, what: str) -> tuple[list[PackedBlob], int]:
    """Parse the header from the pack's last bytes.

    Returns (blobs, header_length). Raises IntegrityError when the tail is too
    short; callers read at least `header_length + 4` bytes then.
    """
    if len(tail) < _TRAILER.size:
        raise IntegrityError(f"{what}: too short to be a pack")
    (header_length,) = _TRAILER.unpack(tail[-_TRAILER.size:])
    if header_length + _TRAILER.size > pack_size or header_length < OVERHEAD:
        raise IntegrityError(f"{what}: header length {header_length} does not fit the pack")
    if header_length + _TRAILER.size > len(tail):
        raise _NeedMore(header_length + _TRAILER.size)
    encrypted = tail[-_TRAILER.size - header_length:-_TRAILER.size]
    header = crypto.decrypt(encrypted, HEADER_AAD, f"{what} header")
    if len(header) % ENTRY_SIZE:
        raise IntegrityError(f"{what}: header has a partial entry")
    blobs, offset = [], 0
    for i in range(0, len(header), ENTRY_SIZE):
        blob_type, length, raw_length, blob_id = _ENTRY.unpack_from(header, i)
        if blob_type not in BLOB_TYPES:
            raise IntegrityError(f"{what}: unknown blob type {blob_type}")
        blobs.append(PackedBlob(blob_type, blob_id, offset, length, raw_length))
        offset += length
    if offset + header_length + _TRAILER.size != pack_size:
        raise IntegrityError(f"{what}: blobs and header do not add up to the pack size")
    return blobs, header_length


class _NeedMore(IntegrityError):
    def __init__(self, size: int) -> None:
        super().__init__(f"need {size} bytes")
        self.size = size


NeedMore = _NeedMore  # what parse_header raises when the tail it was given is shorter than the header


def read_pack_header(storage, crypto: Crypto, name: str, pack_size: int) -> list[PackedBlob]:
    """Fetch and parse a pack's header with one ranged read (two if it is huge)."""
    want = min(pack_size, 64 * 1024)
    tail = storage.read(name, pack_size - want, want)
    try:
        return parse_header(crypto, tail, pack_size, name)[0]
    except _NeedMore as more:
        tail = storage.read(name, pack_size - more.size, more.size)
        return parse_header(crypto, tail, pack_size, name)[0]
