"""The repository: objects on a storage target, read and written through keys.

Write order keeps every promise of the format: packs first, then the index
objects that name them, then the snapshot that refers to their blobs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Mapping

from strongroom import __version__
from strongroom.errors import (FolderNotEmpty, FolderNotFound, ForeignObject, IncompleteObject, IntegrityError,
                               ObjectNotFound, RepositoryChanged, RepositoryExists, RepositoryNotFound, StorageError,
                               StrongroomError, UsageError)
from strongroom.model.snapshot import SNAPSHOT_AAD, SNAPSHOT_DIR, Snapshot
from strongroom.model.tree import Tree
from strongroom.repo import keys
from strongroom.repo.cache import CacheWrites, RepoCache, default_cache_root
from strongroom.repo.chunker import Chunker, ChunkerParams
from strongroom.repo.compression import MAX_TREE_BLOB, Compressor, decompress, decompress_into, parse_compression
from strongroom.repo.crypto import Crypto, MasterKey
from strongroom.repo.index import (INDEX_AAD, INDEX_DIR, RECORD as INDEX_RECORD, Index, ParsedIndex, decode_index,
                                   encode_index, parse_index)
from strongroom.repo.host import HostIdentity
from strongroom.repo.locks import (LOCK_DIR, Lock, LockInfo, LockSightings, LockTiming, Staleness, read_locks,
                                   remove_locks)
from strongroom.repo.pack import (DATA, TREE, PACK_DIR, PackedBlob, PackWriter, blob_aad,
                                  pack_name, read_pack_header)
from strongroom.repo.uploads import PackUploads
from strongroom.settings import DEFAULT as DEFAULT_SETTINGS, Settings
from strongroom.storage.base import Storage, read_bounded
from strongroom.storage.metrics import CountingStorage

log = logging.getLogger(__name__)

CONFIG = "config"
CONFIG_AAD = b"strongroom config v1"
MANAGED_CONFIG_DIR = "configs"
MANAGED_CONFIG_AAD = b"strongroom managed config v1"
FORMAT_VERSION = 1
DEFAULT_PACK_SIZE = 32 * 1024 * 1024
# Decoded trees kept for reuse: at most this many, from at most this many
# bytes of plaintext (a decoded tree takes a few times its plaintext).
MAX_CONFIG = 64 * 1024  # bounds on small objects read whole (they are a few KiB)
MAX_SNAPSHOT = 16 * 1024 * 1024
MAX_MANAGED_CONFIG = 1024 * 1024  # a stored configuration or plan: a few KiB, a long exclude list more
TREE_CACHE_TREES = 4096
TREE_CACHE_BYTES = 8 * 1024 * 1024
# An index object is written once this many blobs are stored and not yet in
# one, whatever the time: the stored packs' blob lists wait in memory until
# then (about 400 bytes a blob), so a backup that stores a minute's worth of
# small files (half a million blobs) would hold 200 MiB of them.
CHECKPOINT_BLOBS = 100_000


@dataclass(frozen=True)
class RepoConfig:
    id: str
    version: int
    created: str
    chunker: ChunkerParams
    compression: str
    pack_size: int
    data_fanout: int
    object_lock: str | None = None  # S3 Object Lock for new objects, MODE:PERIOD (storage/s3_lock.py)

    def encode(self) -> bytes:
        lock = {"object_lock": self.object_lock} if self.object_lock else {}
        return json.dumps({
            "id": self.id, "version": self.version, "created": self.created,
            "chunker": self.chunker.to_dict(), "compression": self.compression,
            "pack_size": self.pack_size, "data_fanout": self.data_fanout, **lock,
        }, sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> "RepoConfig":
        try:
            doc = json.loads(data)
            if doc["version"] != FORMAT_VERSION:
                raise IntegrityError(f"repository format version {doc['version']} is not supported")
            config = cls(doc["id"], doc["version"], doc["created"], ChunkerParams.from_dict(doc["chunker"]),
                         doc["compression"], doc["pack_size"], doc["data_fanout"], doc.get("object_lock"))
            if config.object_lock is not None:
                from strongroom.storage.s3_lock import parse_lock_setting
                parse_lock_setting(config.object_lock)
        except (ValueError, KeyError, TypeError, RecursionError, AttributeError, UsageError):
            raise IntegrityError("the repository config is malformed") from None
        problem = config.chunker.problem()
        if problem:
            # Its max_size bounds every data blob a reader decompresses.
            raise IntegrityError(f"the repository config asks for chunker parameters this version refuses: {problem}")
        return config


def object_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Index objects and snapshots start with this magic and the length of the
# encrypted body that follows, so an upload cut off midway (which some WebDAV
# servers keep under the final name) is told apart from damage.
_ENVELOPE = struct.Struct("<4sI")
_scratch_buffers = threading.local()


def _scratch(sealed: int, opened: int) -> tuple[memoryview, memoryview]:
    """This thread's two buffers (for a blob's decrypted and its decompressed
    bytes), at least the sizes asked; grown when a larger blob comes."""
    have = getattr(_scratch_buffers, "views", None)
    if have is None or len(have[0]) < sealed or len(have[1]) < opened:
        old = have or (memoryview(b""), memoryview(b""))
        have = _scratch_buffers.views = (
            old[0] if len(old[0]) >= sealed else memoryview(bytearray(sealed)),
            old[1] if len(old[1]) >= opened else memoryview(bytearray(opened)))
    return have
_ENVELOPE_MAGIC = b"SRO1"


def seal_object(crypto: Crypto, plaintext: bytes, aad: bytes) -> bytes:
    body = crypto.encrypt(plaintext, aad)
    return _ENVELOPE.pack(_ENVELOPE_MAGIC, len(body)) + body


def check_envelope(data: bytes, what: str) -> None:
    """Raise IncompleteObject for a cut-off upload, IntegrityError for other damage."""
    if len(data) < _ENVELOPE.size:
        raise IncompleteObject(f"{what}: incomplete upload ({len(data)} bytes)")
    magic, length = _ENVELOPE.unpack_from(data)
    if magic != _ENVELOPE_MAGIC:
        raise IntegrityError(f"{what}: not a strongroom object")
    if len(data) - _ENVELOPE.size < length:
        raise IncompleteObject(f"{what}: incomplete upload ({len(data)} of {length + _ENVELOPE.size} bytes)")
    if len(data) - _ENVELOPE.size > length:
        raise IntegrityError(f"{what}: longer than its header says")


def open_object(crypto: Crypto, data: bytes, aad: bytes, what: str) -> bytes:
    check_envelope(data, what)
    return crypto.decrypt(memoryview(data)[_ENVELOPE.size:], aad, what)


@dataclass
class IndexScan:
    """What `Repository.scan_index` read."""

    objects: list[str]  # the index objects read, superseded ones included
    superseded: list[str]  # those a consolidated index replaces, still on the target
    packs: Mapping[bytes, list[PackedBlob]] = field(default_factory=dict)  # from the others (a PackView)


class Repository:
    """An opened repository. Blob writing is thread-safe."""

    def __init__(self, storage: Storage, master: MasterKey, config: RepoConfig, key_id: str,
                 cache_root: str | None = None, settings: Settings = DEFAULT_SETTINGS,
                 on_warning: Callable[[str], None] | None = None, cache_writes: CacheWrites | None = None) -> None:
        self.storage = storage if isinstance(storage, CountingStorage) else CountingStorage(storage)
        self.crypto = Crypto(master)
        self.config = config
        self.key_id = key_id
        # on_warning hears of what goes wrong without failing the command (a full cache disk).
        self.on_warning = on_warning
        root = cache_root or default_cache_root()
        self.cache = RepoCache(root, config.id, cache_writes or CacheWrites(root, on_warning)) \
            if cache_root != "" else None
        self.index = Index()
        self._index_loaded = False
        self.damaged_index: list[str] = []
        self.superseded_index: list[str] = []  # still on the target after an interrupted prune
        self._fetched_tree_packs: set[bytes] = set()
        # check turns this off: it must judge what is on the target, not our copies.
        self.read_from_cache = True
        # Decoded trees, newest use last, with the size of the plaintext each came from.
        self._tree_cache: OrderedDict[bytes, tuple[Tree, int]] = OrderedDict()
        self._tree_cache_bytes = 0
        self._tree_lock = threading.Lock()
        # writing state
        self._write_lock = threading.Lock()
        self._reserved: set[bytes] = set()
        self._packers: dict[int, PackWriter] = {}
        self._unsaved: dict[bytes, list[PackedBlob]] = {}
        self._unsaved_blobs = 0  # blobs in the packs of _unsaved
        self._checkpoint_lock = threading.Lock()
        self._last_checkpoint = time.monotonic()
        self.checkpoint_interval = settings.checkpoint_seconds
        self.machine_id = settings.machine_id  # the machine our locks name (None: the system's)
        self.compressor = Compressor(*parse_compression(config.compression))
        self.on_pack_stored: Callable[[int], None] | None = None
        # Packs stored (and, by restore and check, read) at once.
        from strongroom.storage import connections_of
        self.connections = connections_of(self.storage, settings)
        self._uploads: PackUploads[PackWriter] = PackUploads(self.connections, self._store_pack, self._forget_pack)
        self._locks: list[Lock] = []  # taken through lock(): writes check them first
        self._lock_sightings: LockSightings | None = None

    # ---- creating and opening -------------------------------------------------

    @classmethod
    def init(cls, storage: Storage, password: bytes | None, compression: str = "zstd",
             pack_size: int = DEFAULT_PACK_SIZE, chunker: ChunkerParams = ChunkerParams(),
             data_fanout: int = 2, cache_root: str | None = None,
             kdf: keys.KdfParams | None = None, settings: Settings = DEFAULT_SETTINGS,
             on_warning: Callable[[str], None] | None = None,
             ids_of: "Repository | None" = None) -> "Repository":
        """A new repository. With `ids_of`, it takes that repository's chunker
        parameters, chunker seed and id key (a new encryption key and id of its
        own), so the same file gives the same blobs in both (`init
        --copy-chunker-params`)."""
        if ids_of is not None:
            chunker = ids_of.config.chunker
        if storage.exists():
            _refuse_existing(storage)
        storage.create()
        # Again once the folder is there, whatever the look-up said: a server that
        # answered it with 404 for a folder that exists (a proxy, a share being
        # remounted) must not have init write a new config over a repository's.
        _refuse_existing(storage)
        fanout_dirs = [f"{PACK_DIR}/{i:0{data_fanout}x}" for i in range(16 ** data_fanout)] if data_fanout else []
        storage.make_dirs([keys.KEY_DIR, PACK_DIR, INDEX_DIR, SNAPSHOT_DIR, LOCK_DIR, MANAGED_CONFIG_DIR,
                           *fanout_dirs])
        parse_compression(compression)
        if chunker.problem():
            raise UsageError(chunker.problem())
        master = MasterKey.generate()
        if ids_of is not None:
            master = MasterKey(encryption=master.encryption, id_key=ids_of.crypto.key.id_key,
                               chunker_seed=ids_of.crypto.key.chunker_seed)
        config = RepoConfig(
            id=os.urandom(16).hex(), version=FORMAT_VERSION,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            chunker=chunker, compression=compression, pack_size=pack_size, data_fanout=data_fanout,
            object_lock=storage.object_lock_setting(),
        )
        key_id = keys.store_key(storage, master, password, kdf)
        crypto = Crypto(master)
        storage.write(CONFIG, crypto.encrypt(config.encode(), CONFIG_AAD))
        writes = CacheWrites(cache_root or default_cache_root(), on_warning)
        target = _target_cache(storage, cache_root, writes)
        if target:
            _record_identity(target, config, master)
        log.info("created repository %s at %s (key %s)", config.id[:8], storage.url, key_id[:8])
        return cls(storage, master, config, key_id, cache_root, settings, on_warning, writes)

    @classmethod
    def open(cls, storage: Storage, password: Callable[[], bytes | None] | bytes | None,
             cache_root: str | None = None, settings: Settings = DEFAULT_SETTINGS,
             on_warning: Callable[[str], None] | None = None) -> "Repository":
        """Open with a password, or a function that asks for one when needed.

        With a warm cache this costs one request (the key listing): key files
        and the config never change once written, so their copies are kept
        per target URL and checked (by name, by decryption) before use. The
        same place remembers which repository (id and master key) this URL
        held: a repository replaced under a known URL is refused, since a
        writer of the target who knows no password could otherwise plant a
        key and config of their own and receive every later backup.
        """
        try:
            listed = list(storage.list(keys.KEY_DIR))
        except FolderNotFound:
            listed = []
        if not listed:
            raise RepositoryNotFound(f"no repository at {storage.url}")
        writes = CacheWrites(cache_root or default_cache_root(), on_warning)
        target = _target_cache(storage, cache_root, writes)

        def read_key(name: str) -> bytes:
            cached = target.get("keys", name) if target else None
            if cached is not None and object_id(cached) == name.rsplit("/", 1)[-1]:
                return cached
            data = keys.read_key_file(storage, name)
            if target and object_id(data) == name.rsplit("/", 1)[-1]:
                target.put("keys", name, data)
            return data

        master, key_id = keys.open_key(storage, password, listed, read_key)
        crypto = Crypto(master)
        config = None
        config_data = target.get("config", CONFIG) if target else None
        if config_data is not None:
            try:
                config = RepoConfig.decode(crypto.decrypt(config_data, CONFIG_AAD, "config"))
            except (IntegrityError, ValueError, KeyError):
                config = None  # not this key's config: read it afresh, then compare identities
        if config is None:
            try:
                config_data = read_bounded(storage, CONFIG, MAX_CONFIG, "config")
            except ObjectNotFound:
                raise RepositoryNotFound(f"no repository at {storage.url}") from None
            config = RepoConfig.decode(crypto.decrypt(config_data, CONFIG_AAD, "config"))
        if target:
            _check_identity(target, storage.url, config, master)
            target.put("config", CONFIG, config_data)
        if config.object_lock:
            storage.use_object_lock(config.object_lock)  # every writer locks for the same period
        log.info("opened repository %s at %s with key %s", config.id[:8], storage.url, key_id[:8])
        return cls(storage, master, config, key_id, cache_root, settings, on_warning, writes)

    def verify_config(self) -> None:
        """Read the config from the target (not the cache) and authenticate it."""
        RepoConfig.decode(self.crypto.decrypt(read_bounded(self.storage, CONFIG, MAX_CONFIG, "config"), CONFIG_AAD,
                                              "config"))

    # ---- locks ----------------------------------------------------------------

    def lock(self, exclusive: bool = False, wait: float = 0.0, timing: LockTiming | None = None,
             stop: Callable[[], bool] | None = None) -> Lock:
        """Take a lock; until it is released, every write first checks it is not lost.
        `stop` may end the wait for it early (see Lock.acquire)."""
        timing = timing or LockTiming()
        host, sightings = self._lock_identity(timing)
        lock = Lock(self.storage, self.crypto, exclusive, timing=timing, host=host, sightings=sightings).acquire(wait, stop)
        # A lost lock refuses writes until its holder released it and took a new one.
        self._locks = [held for held in self._locks if held.name is not None] + [lock]
        return lock

    def check_lock(self) -> None:
        """Raise LockLost if a lock taken through lock() was lost: another host
        may take it for stale, so nothing more may be written or deleted."""
        for lock in self._locks:
            lock.check()

    def remove_locks(self, all_locks: bool = False, timing: LockTiming | None = None) -> list[LockInfo]:
        """Remove every lock, or only those stale by observation or dead by pid here."""
        timing = timing or LockTiming()
        host, sightings = self._lock_identity(timing)
        return remove_locks(self.storage, self.crypto, Staleness(host, sightings, timing.stale_after), all_locks)

    def list_locks(self, timing: LockTiming | None = None) -> list[tuple[LockInfo, float, bool]]:
        """Every lock on the target, with how long this machine has seen it
        unchanged (sightings of earlier runs in this boot count) and whether
        it is stale by the rules here."""
        timing = timing or LockTiming()
        host, sightings = self._lock_identity(timing)
        staleness = Staleness(host, sightings, timing.stale_after)
        found = read_locks(self.storage, self.crypto)
        stale = {lock.name for lock in staleness.judge(found)}
        return [(lock, sightings.unchanged_for(lock.name), lock.name in stale) for lock in found]

    def _lock_identity(self, timing: LockTiming) -> tuple[HostIdentity, LockSightings]:
        host = HostIdentity.current(os.path.dirname(self.cache.dir) if self.cache is not None else None,
                                    self.machine_id)
        if self._lock_sightings is None or self._lock_sightings.clock is not timing.clock:
            self._lock_sightings = LockSightings(timing.clock, host.boot_id, self.cache)
        return host, self._lock_sightings

    @property
    def requests(self) -> dict:
        return self.storage.summary()

    def chunker(self) -> Chunker:
        return Chunker(self.config.chunker, self.crypto.key.chunker_seed)

    # ---- index ----------------------------------------------------------------

    def load_index(self) -> None:
        """Load every index object. A damaged one is skipped and remembered in
        `damaged_index`: its packs look unindexed, so their blobs are stored
        again if needed, and `check` reports it."""
        if self._index_loaded:
            return
        def damaged(name: str, error: Exception) -> None:
            if isinstance(error, ForeignObject):
                raise error
            self.damaged_index.append(f"{name}: {error}")

        self.scan_index(IntegrityError, damaged)

    def scan_index(self, catch: type[Exception] | tuple[type[Exception], ...],
                   on_error: Callable[[str, Exception], None]) -> IndexScan:
        """Read every index object into the index. An object whose read raises
        `catch` goes to `on_error` and is left out. A consolidated index
        (prune's) names the objects it replaces; a prune stopped before
        deleting them leaves them, and their packs are not used."""
        # One object's plaintext at a time: its records go straight into the
        # compact index. Which objects are superseded is known only once all
        # are read; after an interrupted prune the index is rebuilt without them.
        scanned = Index()
        loaded: dict[str, range] = {}  # object name -> the pack numbers it added
        superseded: set[str] = set()
        listing = list(self.storage.list(INDEX_DIR))
        scanned.expect(sum(info.size for info in listing) // INDEX_RECORD)
        for info in listing:
            try:
                parsed = self.read_index_parsed(info.name)
            except catch as e:
                on_error(info.name, e)
                continue
            first = scanned.pack_count
            scanned.add_parsed(parsed)
            loaded[info.name] = range(first, scanned.pack_count)
            superseded.update(f"{INDEX_DIR}/{old.hex()}" for old in parsed.supersedes)
            del parsed
        unused = superseded & set(loaded)
        if unused:
            scanned = scanned.without_packs({n for name in unused for n in loaded[name]})
        scan = IndexScan(objects=list(loaded), superseded=sorted(unused), packs=scanned.packs)
        if self.index.pack_count:
            self.index.merge(scanned)
        else:
            self.index = scanned
        self.superseded_index = scan.superseded
        self._index_loaded = True
        return scan

    def _read_cached(self, kind: str, name: str, cap: int | None = None) -> bytes:
        """Read an object named by its SHA-256, from the cache where it is whole
        (from the target: to `cap` bytes, when given)."""
        expected = name.rsplit("/", 1)[-1]
        if self.cache is not None and self.read_from_cache:
            data = self.cache.get(kind, name)
            if data is not None and object_id(data) == expected:
                return data
        data = self.storage.read(name) if cap is None else read_bounded(self.storage, name, cap, kind[:-1])
        if object_id(data) != expected:
            check_envelope(data, name)  # a cut-off upload says so
            raise IntegrityError(f"{name}: content does not match its name")
        if self.cache is not None:
            self.cache.put(kind, name, data)
        return data

    def _open_named(self, kind: str, name: str, aad: bytes, what: str) -> bytes:
        """Read an object named by its SHA-256 and decrypt it. Bytes that match
        their name but do not authenticate were sealed under another key."""
        data = self._read_cached(kind, name)
        check_envelope(data, what)
        try:
            return open_object(self.crypto, data, aad, what)
        except IntegrityError:
            raise ForeignObject(f"{what} is intact but does not authenticate under this repository's key: "
                                f"the repository's key or config may have been replaced by someone who can "
                                f"write the target; stopping before anything is written under that key") from None

    def read_index_object(self, name: str) -> tuple[dict[bytes, list[PackedBlob]], list[bytes]]:
        return decode_index(self._open_named("index", name, INDEX_AAD, name), name)

    def read_index_parsed(self, name: str) -> ParsedIndex:
        return parse_index(self._open_named("index", name, INDEX_AAD, name), name)

    def _write_object(self, name: str, data: bytes) -> None:
        """Write one object; if that fails, try once to remove what may be left,
        since some WebDAV servers keep a cut-off upload under its final name."""
        self.check_lock()
        try:
            self.storage.write(name, data)
        except StorageError:
            try:
                self.storage.delete_now(name)
            except StrongroomError:
                pass
            raise

    def write_index_object(self, packs: dict[bytes, list[PackedBlob]], supersedes=()) -> str:
        data = seal_object(self.crypto, encode_index(packs, supersedes), INDEX_AAD)
        name = f"{INDEX_DIR}/{object_id(data)}"
        self._write_object(name, data)
        if self.cache is not None:
            self.cache.put("index", name, data)
        return name

    def adopt_pending_packs(self) -> int:
        """Index packs an interrupted run stored but never indexed."""
        if self.cache is None:
            return 0
        adopted = 0
        for pack_hex in self.cache.pending_packs():
            pack_id = bytes.fromhex(pack_hex)
            if pack_id in self.index.packs:
                continue
            name = pack_name(pack_id, self.config.data_fanout)
            try:
                size = self.storage.stat(name).size
                blobs = read_pack_header(self.storage, self.crypto, name, size)
            except (ObjectNotFound, IntegrityError):
                continue
            self.index.add_pack(pack_id, blobs)
            with self._write_lock:
                self._unsaved[pack_id] = blobs
                self._unsaved_blobs += len(blobs)
            adopted += 1
        return adopted

    # ---- writing blobs ----------------------------------------------------------

    def has_blob(self, blob_id: bytes) -> bool:
        return blob_id in self.index or blob_id in self._reserved

    def save_blob(self, blob_type: int, data: bytes | memoryview, blob_id: bytes | None = None,
                  compressor: Compressor | None = None) -> tuple[bytes, int]:
        """Store a blob unless the repository has it. Returns (id, bytes added)."""
        if blob_id is None:
            blob_id = self.crypto.blob_id(data)
        with self._write_lock:
            if blob_id in self.index or blob_id in self._reserved:
                return blob_id, 0
            self._reserved.add(blob_id)
        try:
            plaintext = (compressor or self.compressor).compress(data)
        except BaseException:
            with self._write_lock:
                self._reserved.discard(blob_id)
            raise
        return blob_id, self._seal(blob_type, blob_id, plaintext, len(data))

    def save_blobs(self, blob_type: int, blobs: list[tuple[bytes | memoryview, bytes]],
                   compressor: Compressor | None = None) -> tuple[int, int, int]:
        """Store each (data, id) the repository does not have, compressed in one
        call (`Compressor.compress_many`: one release of the GIL for all of
        them, where a call per blob waits to get it back after each). Returns
        (blobs stored, bytes added, their bytes before compression)."""
        with self._write_lock:
            todo = []
            for data, blob_id in blobs:
                if blob_id not in self.index and blob_id not in self._reserved:
                    self._reserved.add(blob_id)
                    todo.append((data, blob_id))
        done = 0
        stored = raw = 0
        try:
            plaintexts = (compressor or self.compressor).compress_many([data for data, _ in todo])
            for (data, blob_id), plaintext in zip(todo, plaintexts):
                done += 1  # _seal gives the reservation back if it fails
                stored += self._seal(blob_type, blob_id, plaintext, len(data))
                raw += len(data)
        except BaseException:
            with self._write_lock:
                for _, blob_id in todo[done:]:
                    self._reserved.discard(blob_id)
            raise
        return len(todo), stored, raw

    def _seal(self, blob_type: int, blob_id: bytes, plaintext: bytes, raw_length: int) -> int:
        """Encrypt a reserved blob into the open pack of its type; the bytes it added."""
        full = None
        with self._write_lock:
            packer = self._packers.get(blob_type)
            if packer is None:
                try:
                    packer = self._packers[blob_type] = self._new_packer(blob_type)
                except BaseException:  # no spool to be had (a read-only target): the blob is not stored
                    self._reserved.discard(blob_id)
                    raise
            # Encrypted straight into the open pack, under the lock that orders its blobs.
            try:
                stored = packer.seal_blob(self.crypto, blob_type, blob_id, plaintext, raw_length)
            except StorageError:
                # A spool the target would not take more of (a full disk): the pack
                # is cut short where it failed, so none of it is kept.
                del self._packers[blob_type]
                self._reserved.discard(blob_id)
                for b in packer.blobs:
                    self._reserved.discard(b.id)
                packer.discard()
                raise
            if packer.size >= self.config.pack_size:
                full = self._packers.pop(blob_type)
        if full is not None:
            self._uploads.submit(full)
        return stored

    def _new_packer(self, blob_type: int) -> PackWriter:
        """Data packs on a local target are spooled into a file beside the
        packs, not held in memory: two uploads and an open pack of 32 MiB each
        were most of a first backup's peak. Tree packs stay in memory (they
        are cached as they are stored), as does every pack for a remote target."""
        spool = self.storage.spool(PACK_DIR) if blob_type == DATA else None
        return PackWriter(spool)

    def _store_pack(self, packer: PackWriter) -> None:
        """Seal and store one pack, then index it (on an upload thread)."""
        pack_id, data = packer.seal(self.crypto)
        name = pack_name(pack_id, self.config.data_fanout)
        if data is None:
            self.check_lock()
            packer.spool.commit(name)
        else:
            self._write_object(name, data)
        if self.cache is not None and packer.blobs[0].type == TREE:
            self.cache.put("trees", pack_id.hex(), data)
        if self.cache is not None:
            self.cache.note_pack(pack_id.hex())
        with self._write_lock:
            self.index.add_pack(pack_id, packer.blobs)
            self._unsaved[pack_id] = packer.blobs
            self._unsaved_blobs += len(packer.blobs)
            for b in packer.blobs:
                self._reserved.discard(b.id)
            due = self._unsaved_blobs >= CHECKPOINT_BLOBS
        if self.on_pack_stored:
            self.on_pack_stored(packer.spool.size if data is None else len(data))
        if due or time.monotonic() - self._last_checkpoint >= self.checkpoint_interval:
            self.checkpoint()

    def _forget_pack(self, packer: PackWriter) -> None:
        """A pack that was not stored: its blobs are not in the repository, and
        a later save of them (a next run in this process) must store them."""
        packer.discard()
        with self._write_lock:
            for b in packer.blobs:
                self._reserved.discard(b.id)

    def download_workers(self, local: int) -> int:
        """Threads that read packs at once: one per connection on a remote
        target, where latency bounds a read; `local`, the caller's own number,
        on a directory, where the work is the CPU's."""
        return self.connections if self.storage.info.vendor is not None else local

    def wait_for_uploads(self) -> None:
        """Wait until every pack handed to the uploads is stored or failed;
        raise the first failure. What was stored is in the index to be written
        (`checkpoint`) and in the pending-pack journal."""
        self._uploads.wait()

    def checkpoint(self) -> None:
        """Write an index object for every pack stored since the last one."""
        with self._checkpoint_lock:
            with self._write_lock:
                unsaved, self._unsaved = self._unsaved, {}
                self._unsaved_blobs = 0
            self._last_checkpoint = time.monotonic()
            if not unsaved:
                return
            try:
                self.write_index_object(unsaved)
            except BaseException:
                with self._write_lock:
                    self._unsaved.update(unsaved)
                    self._unsaved_blobs += sum(len(blobs) for blobs in unsaved.values())
                raise
            if self.cache is not None:
                self.cache.forget_packs({p.hex() for p in unsaved})

    def drop_open_packs(self) -> None:
        """Drop the partly filled packs of a run that failed without storing
        them: their blobs are not in the repository, and their spools go."""
        with self._write_lock:
            packers, self._packers = list(self._packers.values()), {}
        for packer in packers:
            self._forget_pack(packer)

    def flush(self) -> None:
        """Store partly filled packs and write the index for all of them."""
        with self._write_lock:
            packers = [p for p in self._packers.values() if len(p)]
            for p in self._packers.values():
                if not len(p):
                    p.discard()
            self._packers = {}
        failure: BaseException | None = None
        for packer in packers:
            if failure is not None:
                self._forget_pack(packer)
                continue
            try:
                self._uploads.submit(packer)
            except BaseException as e:
                failure = e
        try:
            self._uploads.wait()
        except BaseException as e:
            failure = failure or e
        if failure is not None:
            raise failure
        self.checkpoint()

    def save_tree(self, tree: Tree, data: bytes | None = None) -> tuple[bytes, int]:
        """Store a tree; `data` is its encoding when the caller has it already."""
        data = tree.encode() if data is None else data
        if len(data) > MAX_TREE_BLOB:
            # Readers refuse a tree past this bound (memory stays bounded
            # whatever a repository claims): never write one they would refuse.
            raise IntegrityError(f"a directory of {len(tree.nodes)} entries makes a tree of {len(data)} bytes, "
                                 f"over the {MAX_TREE_BLOB} bytes one tree may have")
        return self.save_blob(TREE, data)

    # ---- reading blobs ------------------------------------------------------------

    def read_blob(self, blob_id: bytes, expected_type: int | None = None) -> bytes:
        self.load_index()
        loc = self.index.get(blob_id)
        if loc is None:
            raise IntegrityError(f"blob {blob_id.hex()[:16]} is not in the index")
        name = pack_name(loc.pack, self.config.data_fanout)
        if loc.type == TREE and self.cache is not None and (self.read_from_cache or loc.pack in self._fetched_tree_packs):
            data = self.cache.get_range("trees", loc.pack.hex(), loc.offset, loc.length)
            if data is not None:
                try:
                    return self.open_blob(loc.type, blob_id, data, loc.raw_length, name)
                except IntegrityError:
                    self.cache.discard("trees", loc.pack.hex())
            return self._read_tree_pack(loc, blob_id, name)
        try:
            data = self.storage.read(name, loc.offset, loc.length)
        except ObjectNotFound:
            raise IntegrityError(f"pack {loc.pack.hex()[:16]} is missing") from None
        return self.open_blob(loc.type, blob_id, data, loc.raw_length, name)

    def _read_tree_pack(self, loc, blob_id: bytes, name: str) -> bytes:
        """Fetch a whole tree pack once: its other trees are needed next."""
        # Read to a bound: a server may answer with gigabytes. A pack is filled to
        # pack_size and closed after one more blob, plus its header; a larger
        # answer is cut, fails its hash and is not cached, and the blob is then
        # read by its range alone.
        cap = 2 * self.config.pack_size + MAX_TREE_BLOB
        try:
            data = self.storage.read(name, 0, cap)
            if len(data) < loc.offset + loc.length:
                data = b""
                blob = self.storage.read(name, loc.offset, loc.length)
                return self.open_blob(loc.type, blob_id, blob, loc.raw_length, name)
        except ObjectNotFound:
            raise IntegrityError(f"pack {loc.pack.hex()[:16]} is missing") from None
        if hashlib.sha256(data).digest() == loc.pack:
            self.cache.put("trees", loc.pack.hex(), data)
            self._fetched_tree_packs.add(loc.pack)
        return self.open_blob(loc.type, blob_id, data[loc.offset:loc.offset + loc.length], loc.raw_length, name)

    def open_blob(self, blob_type: int, blob_id: bytes, encrypted: bytes | memoryview, raw_length: int,
                  where: str, verify_id: bool = False) -> bytes:
        what = f"blob {blob_id.hex()[:16]} in {where}"
        plain = decompress(self.crypto.decrypt(encrypted, blob_aad(blob_type, blob_id), what), raw_length,
                           MAX_TREE_BLOB if blob_type == TREE else self.config.chunker.max_size)
        if verify_id and self.crypto.blob_id(plain) != blob_id:
            raise IntegrityError(f"{what}: content does not match its id")
        return plain

    def open_blob_scratch(self, blob_type: int, blob_id: bytes, encrypted: bytes | memoryview, raw_length: int,
                          where: str, verify_id: bool = False) -> memoryview:
        """`open_blob` into this thread's scratch buffers: the plaintext as a
        view that is good until this thread's next call, for a reader that
        writes or hashes each blob at once (restore, check). The buffers grow
        to the largest blob met and are kept, so a blob costs no fresh memory."""
        what = f"blob {blob_id.hex()[:16]} in {where}"
        limit = MAX_TREE_BLOB if blob_type == TREE else self.config.chunker.max_size
        if not 0 <= raw_length <= limit:
            raise IntegrityError(f"blob claims {raw_length} bytes, more than a blob may have ({limit})")
        # The ciphertext is in memory already: a buffer its size is no new risk.
        sealed, opened = _scratch(len(encrypted), raw_length)
        plain = decompress_into(self.crypto.decrypt_into(encrypted, blob_aad(blob_type, blob_id), what, sealed),
                                raw_length, limit, opened)
        if verify_id and self.crypto.blob_id(plain) != blob_id:
            raise IntegrityError(f"{what}: content does not match its id")
        return plain

    def load_tree(self, tree_id: bytes, keep: bool = True) -> Tree:
        """A tree, authenticated and decoded; `keep=False` for a walk that
        reads each tree once (check's), so it does not fill the cache."""
        with self._tree_lock:
            cached = self._tree_cache.get(tree_id)
            if cached is not None:
                self._tree_cache.move_to_end(tree_id)
                return cached[0]
        data = self.read_blob(tree_id, TREE)
        if self.crypto.blob_id(data) != tree_id:  # a tree under another's id could contain itself
            raise IntegrityError(f"tree {tree_id.hex()[:16]}: content does not match its id")
        tree = Tree.decode(data)
        if not keep:
            return tree
        with self._tree_lock:
            if tree_id not in self._tree_cache:
                self._tree_cache[tree_id] = (tree, len(data))
                self._tree_cache_bytes += len(data)
            # Bounded by bytes as well as by count: a repository's trees may each be
            # up to MAX_TREE_BLOB, and thousands of large ones must not all stay.
            while len(self._tree_cache) > 1 and (len(self._tree_cache) > TREE_CACHE_TREES
                                                 or self._tree_cache_bytes > TREE_CACHE_BYTES):
                _, (_, size) = self._tree_cache.popitem(last=False)
                self._tree_cache_bytes -= size
        return tree

    # ---- snapshots ----------------------------------------------------------------

    def save_snapshot(self, snap: Snapshot) -> str:
        data = seal_object(self.crypto, snap.encode(), SNAPSHOT_AAD)
        snap_id = object_id(data)
        self._write_object(f"{SNAPSHOT_DIR}/{snap_id}", data)
        if self.cache is not None:
            self.cache.put("snapshots", snap_id, data)
        return snap_id

    def load_snapshot(self, name: str) -> Snapshot:
        snap_id = name.rsplit("/", 1)[-1]
        try:
            data = self._read_cached("snapshots", name, MAX_SNAPSHOT)
        except IncompleteObject as e:
            raise IncompleteObject(f"snapshot {snap_id[:8]}: {str(e).split(': ', 1)[-1]}") from None
        except IntegrityError:
            raise IntegrityError(f"snapshot {snap_id[:8]}: content does not match its name") from None
        check_envelope(data, f"snapshot {snap_id[:8]}")
        try:
            plain = open_object(self.crypto, data, SNAPSHOT_AAD, f"snapshot {snap_id[:8]}")
        except IntegrityError:
            raise ForeignObject(f"snapshot {snap_id[:8]} is intact but does not authenticate under this "
                                f"repository's key: the repository's key or config may have been replaced by "
                                f"someone who can write the target") from None
        return Snapshot.decode(plain, snap_id)

    def list_snapshots(self, on_damaged: Callable[[str, IntegrityError], None] | None = None) -> list[Snapshot]:
        """Every snapshot, oldest first. A damaged one raises, unless `on_damaged` is
        given: then it is reported there and skipped, so the others stay usable."""
        snaps = []
        for info in self.storage.list(SNAPSHOT_DIR):
            try:
                snaps.append(self.load_snapshot(info.name))
            except IntegrityError as e:
                if on_damaged is None:
                    raise
                on_damaged(info.name, e)
        return sorted(snaps, key=lambda s: (s.datetime, s.id))

    # ---- managed configurations ------------------------------------------------

    def save_managed_config(self, name: str, doc: dict | None) -> str:
        """Store a configuration (None: its removal) so a new machine can read it
        back from the target alone. Each save is a new object; the newest wins."""
        body = json.dumps({"name": name, "time": time.time(), "config": doc}, sort_keys=True).encode()
        data = seal_object(self.crypto, body, MANAGED_CONFIG_AAD)
        object_name = f"{MANAGED_CONFIG_DIR}/{object_id(data)}"
        self._write_object(object_name, data)
        return object_name

    def load_managed_configs(self) -> dict[str, dict]:
        """The newest stored configuration of each name (removed ones left out)."""
        return {name: doc for name, (_, doc) in self.load_managed_configs_timed().items()}

    def load_managed_configs_timed(self) -> dict[str, tuple[float, dict]]:
        """The newest stored configuration of each name with the time it was stored."""
        newest: dict[str, tuple[float, dict | None]] = {}
        for info in self.storage.list(MANAGED_CONFIG_DIR):
            if "-" in info.name.rsplit("/", 1)[-1]:
                continue  # a record of another kind (save_managed_record)
            try:
                doc = json.loads(open_object(self.crypto, self._read_cached("configs", info.name, MAX_MANAGED_CONFIG),
                                             MANAGED_CONFIG_AAD, info.name))
                if not (isinstance(doc, dict) and isinstance(doc.get("name"), str)
                        and isinstance(doc.get("time"), (int, float)) and isinstance(doc.get("config"), (dict, type(None)))):
                    continue
            except (IntegrityError, ValueError, RecursionError):
                continue
            if doc["name"] not in newest or doc["time"] > newest[doc["name"]][0]:
                newest[doc["name"]] = (float(doc["time"]), doc["config"])
        return {name: (when, cfg) for name, (when, cfg) in newest.items() if cfg is not None}

    def save_managed_record(self, kind: str, name: str, doc: dict | None) -> str:
        """Store a record of `kind` (a DR plan, a DR run; None: its removal) beside
        the configurations, so a new machine can read it back from the target
        alone. Each save is a new object, `configs/KIND-ID`, sealed under its
        own associated data; the newest of a name wins."""
        _check_record_kind(kind)
        body = json.dumps({"kind": kind, "name": name, "time": time.time(), "doc": doc}, sort_keys=True).encode()
        if len(body) > MAX_MANAGED_RECORD:
            raise UsageError(f"the {kind} record {name[:60]!r} is too large to store ({len(body)} bytes)")
        data = seal_object(self.crypto, body, _record_aad(kind))
        object_name = f"{MANAGED_CONFIG_DIR}/{kind}-{object_id(data)}"
        self._write_object(object_name, data)
        return object_name

    def load_managed_records(self, kind: str) -> dict[str, tuple[float, dict]]:
        """The newest stored record of `kind` for each name, with its time
        (removed ones left out). A record that does not open (damaged, foreign,
        malformed, too large) is passed over: the others stay readable."""
        _check_record_kind(kind)
        newest: dict[str, tuple[float, dict | None]] = {}
        held: dict[str, int] = {}  # the sealed size of the record kept for each name
        total = 0
        prefix = f"{kind}-"
        for info in self.storage.list(MANAGED_CONFIG_DIR):
            base = info.name.rsplit("/", 1)[-1]
            if not base.startswith(prefix) or info.size > MAX_MANAGED_RECORD + 4096:
                continue
            try:
                data = read_bounded(self.storage, info.name, MAX_MANAGED_RECORD + 4096, kind)
                if object_id(data) != base[len(prefix):]:
                    continue
                doc = json.loads(open_object(self.crypto, data, _record_aad(kind), info.name))
                if not (isinstance(doc, dict) and doc.get("kind") == kind and isinstance(doc.get("name"), str)
                        and isinstance(doc.get("time"), (int, float)) and isinstance(doc.get("doc"), (dict, type(None)))):
                    continue
            except (IntegrityError, ValueError, RecursionError):
                continue
            if doc["name"] not in newest or doc["time"] > newest[doc["name"]][0]:
                newest[doc["name"]] = (float(doc["time"]), doc["doc"])
                total += len(data) - held.get(doc["name"], 0)
                held[doc["name"]] = len(data)
                if total > MAX_MANAGED_RECORDS_TOTAL:
                    # Each record is bounded; so must be their number, or a crafted target fills memory.
                    raise IntegrityError(f"the {kind} records of {self.storage.url} hold more than "
                                         f"{MAX_MANAGED_RECORDS_TOTAL >> 20} MiB: too many to read")
        return {name: (when, rec) for name, (when, rec) in newest.items() if rec is not None}

    def list_packs(self) -> dict[bytes, int]:
        """Every pack on the target with its size (one listing)."""
        result = {}
        for info in self.storage.list(PACK_DIR):
            try:
                result[bytes.fromhex(info.name.rsplit("/", 1)[-1])] = info.size
            except ValueError:
                continue
        return result


# Records kept beside the configurations (save_managed_record): a kind is a
# word, and each kind has its own associated data, so one kind's object never
# opens as another's.
MAX_MANAGED_RECORD = 4 * 1024 * 1024
MAX_MANAGED_RECORDS_TOTAL = 256 * 1024 * 1024  # the newest records of one kind, all names together
_RECORD_KINDS = frozenset({"plan", "run"})


def _check_record_kind(kind: str) -> None:
    if kind not in _RECORD_KINDS:
        raise ValueError(f"unknown record kind {kind!r}")


def _record_aad(kind: str) -> bytes:
    return b"strongroom managed record v1 " + kind.encode()


# The folders init creates. A target holding only these, with nothing in them,
# is what an init stopped before it wrote its key and config leaves: init may go on.
_LAYOUT = frozenset({keys.KEY_DIR, PACK_DIR, INDEX_DIR, SNAPSHOT_DIR, LOCK_DIR, MANAGED_CONFIG_DIR})


def _refuse_existing(storage: Storage) -> None:
    """Refuse a folder that holds a repository, or anything else."""
    try:
        storage.stat(CONFIG)
        raise RepositoryExists(f"a repository already exists at {storage.url}")
    except ObjectNotFound:
        pass
    _refuse_other_content(storage)


def _refuse_other_content(storage: Storage) -> None:
    """Refuse to make a repository in a folder that holds anything else: its
    files would sit among the repository's, and a later mistake could take
    one for the other. A listing that fails stops init, as it should."""
    found = storage.entries()
    if not found:
        return
    if set(found) <= _LAYOUT and not any(next(iter(storage.list(name)), None) for name in found):
        return
    shown = ", ".join(repr(name[:60]) for name in found[:3]) + (", ..." if len(found) > 3 else "")
    raise FolderNotEmpty(f"refusing to create a repository at {storage.url}: the folder is not empty "
                         f"({len(found)} entr{'y' if len(found) == 1 else 'ies'}: {shown}) and holds no "
                         f"repository; choose an empty or new folder")


def _target_cache(storage: Storage, cache_root: str | None, writes: CacheWrites) -> RepoCache | None:
    """The cache kept per target URL: key files, the config, the identity seen there."""
    if cache_root == "":
        return None
    return RepoCache(writes.root, "target-" + hashlib.sha256(storage.url.encode()).hexdigest()[:32], writes)


def master_fingerprint(master: MasterKey) -> str:
    """A one-way fingerprint of the master key, to tell one key from another."""
    return hashlib.sha256(b"strongroom master fingerprint v1\0" + master.encryption + master.id_key).hexdigest()


def _identity(config: RepoConfig, master: MasterKey) -> bytes:
    return json.dumps({"id": config.id, "master": master_fingerprint(master)}, sort_keys=True).encode()


def _record_identity(target: RepoCache, config: RepoConfig, master: MasterKey) -> None:
    target.put("identity", "repository", _identity(config, master))


def _check_identity(target: RepoCache, url: str, config: RepoConfig, master: MasterKey) -> None:
    seen = target.get("identity", "repository")
    if seen is None:
        _record_identity(target, config, master)
        return
    try:
        doc = json.loads(seen)
        known_id, known_master = doc["id"], doc["master"]
    except (ValueError, KeyError, TypeError):
        _record_identity(target, config, master)  # an unreadable note is no evidence either way
        return
    if known_id == config.id and known_master == master_fingerprint(master):
        return
    what = "its id" if known_id != config.id else "its master key"
    raise RepositoryChanged(
        f"the repository at {url} is not the one this machine opened there before ({what} changed): "
        f"someone who can write the target may have replaced its key and config. If it was replaced on "
        f"purpose, remove {target.dir}/identity and run the command again")


__all__ = ["Repository", "RepoConfig", "DATA", "TREE", "object_id", "__version__"]
