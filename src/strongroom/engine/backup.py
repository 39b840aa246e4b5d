"""Backup: walk the sources, chunk and store what is new, write the snapshot.

Threads: the caller's thread walks, and reads, chunks and hashes each file
below INLINE_LIMIT itself (on a cold cache a helper process reads those
files ahead of it: engine/prefetch.py), handing their new chunks to the
blob workers in batches (BATCH_BYTES or BATCH_CHUNKS) to be compressed and sealed;
FILE_WORKERS threads read larger files (one below WHOLE_READ_LIMIT is read
whole, and its chunks are compressed and sealed into the pack by the same
thread, straight from the read buffer); BLOB_WORKERS threads compress and
store the batches and the chunks of the larger files that are streamed,
so one large file still uses every core; a pack that fills goes to the
repository's upload threads, as many as the target has connections; one
thread assembles trees in post-order. Two semaphores bound the data in
flight: at most MAX_FILES_IN_FLIGHT files queued, and at most
MAX_CHUNKS_IN_FLIGHT streamed chunks (4 MiB each at most) or batches
waiting to be compressed; the uploads hold at most one pack per
connection, so memory does not grow with the amount of data.
"""

from __future__ import annotations

import getpass
import mmap
import os
import socket
import stat
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import BinaryIO, Iterator

from strongroom import __version__
from strongroom.engine import prefetch
from strongroom.engine.progress import Counters, Listener, backup_status, error_event, ignore, warning_event
from strongroom.engine.walk import ExcludeRules, SourceTree, metadata_node
from strongroom.errors import ForeignObject, StorageError, StrongroomError, UsageError
from strongroom.model.select import SnapshotFilter, find_snapshot
from strongroom.model.snapshot import FULL, INCREMENTAL, Snapshot
from strongroom.model.tree import DIR, FILE, Node, Tree
from strongroom.repo.chunker import WHOLE_READ_LIMIT
from strongroom.repo.compression import Compressor, parse_compression
from strongroom.repo.crypto import OVERHEAD
from strongroom.repo.pack import DATA
from strongroom.repo.repository import Repository

FILE_WORKERS = 2
BLOB_WORKERS = 2
MAX_FILES_IN_FLIGHT = 64
MAX_CHUNKS_IN_FLIGHT = 6
# New chunks of small files go to the blob workers this many bytes at a time,
# or this many chunks (a chunk of a few bytes costs a few hundred in objects).
BATCH_BYTES = 1024 * 1024
BATCH_CHUNKS = 256
INLINE_LIMIT = 64 * 1024  # files below this size are read by the walking thread
ADVANCE_EVERY = 64  # small files read between two words to the read-ahead helper
UNMODIFIED_BATCH = 256  # unchanged files counted at once (progress lags by at most this many)
MAPPED_READ = 256 * 1024  # a file read whole from this size on gets a mapping of its own
DRY_SAMPLE = 16  # a dry run compresses one new chunk in this many...
DRY_SAMPLE_ALWAYS = 32 << 20  # ...once it has compressed this many new bytes


@dataclass(frozen=True)
class BackupOptions:
    paths: tuple[str, ...] = ()
    excludes: ExcludeRules = ExcludeRules()
    tags: tuple[str, ...] = ()
    host: str | None = None
    time: datetime | None = None
    parent: str | None = None
    full: bool = False
    dry_run: bool = False
    compression: str | None = None
    stdin_filename: str | None = None
    # With stdin_filename: the binary stream to store (default: sys.stdin.buffer).
    # Its read() may raise to fail the backup; no snapshot is written then.
    stdin_stream: BinaryIO | None = field(default=None, compare=False, repr=False)
    config_name: str | None = None
    # Count the files and bytes ahead of the walk (a second walk, in its own
    # thread) so progress has a total and an ETA. Only worth its cost when
    # someone is shown the progress: a run with no bar, no --json and no
    # console to follow it is the faster without it.
    count_totals: bool = True
    # Read the sources ahead of the walk in a helper process (engine/prefetch.py):
    # metadata, and the small files' contents when every file is read; on a
    # cold cache the walk then finds them cached.
    prefetch: bool = True


@dataclass
class BackupResult:
    snapshot: Snapshot | None
    errors: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


class _Failed(Exception):
    pass


class Backup:
    def __init__(self, repo: Repository, options: BackupOptions, listener: Listener = ignore) -> None:
        self.repo = repo
        self.opt = options
        self.listener = listener
        self.counters = Counters(listener, backup_status)
        self.errors: list[dict] = []
        self._errors_lock = threading.Lock()
        self._failure: BaseException | None = None
        codec = parse_compression(options.compression or repo.config.compression)
        self.compressor = Compressor(*codec)
        self.compression = options.compression or repo.config.compression
        self._dry_seen: set[bytes] = set()
        self._dry_lock = threading.Lock()
        self._hardlinks: dict[tuple[int, int], Future] = {}
        self._helper: prefetch.Helper | None = None
        self._small_read = self._small_bytes = 0  # non-empty files read by the walking thread
        self._file_slots = threading.BoundedSemaphore(MAX_FILES_IN_FLIGHT)
        self._chunk_slots = threading.BoundedSemaphore(MAX_CHUNKS_IN_FLIGHT)
        self._batch: list[tuple[memoryview, bytes]] = []  # small files' new chunks, for the blob workers
        self._batch_bytes = 0
        self._file_pool = ThreadPoolExecutor(FILE_WORKERS, thread_name_prefix="file")
        self._blob_pool = ThreadPoolExecutor(BLOB_WORKERS, thread_name_prefix="blob")
        self._tree_pool = ThreadPoolExecutor(1, thread_name_prefix="tree")
        self._root_dev: int | None = None
        self._unmodified_files = self._unmodified_bytes = 0  # the walking thread's, not yet counted
        self.chunker = repo.chunker()

    # ---- reporting -------------------------------------------------------------

    def _error(self, path: bytes | str, message: str) -> None:
        entry = error_event(message, os.fsdecode(path), "archival")
        with self._errors_lock:
            self.errors.append(entry)
        self.counters.add(errors=1)
        self.listener(entry)

    def _check_failed(self) -> None:
        if self._failure is not None:
            raise _Failed()

    # ---- storing chunks -----------------------------------------------------------

    def _store_chunk(self, data: bytes, blob_id: bytes) -> None:
        """A blob worker's part: store one chunk of a streamed file."""
        try:
            if self._failure is None:
                _, added = self.repo.save_blob(DATA, data, blob_id, self.compressor)
                if added:
                    self.counters.add(data_blobs=1, data_added=added, data_added_raw=len(data))
        except BaseException as e:
            self._failure = self._failure or e
        finally:
            self._chunk_slots.release()

    def _store_batch(self, batch: list[tuple[memoryview, bytes]]) -> None:
        """A blob worker's part: store the new chunks of a run of small files."""
        try:
            if self._failure is not None:
                return
            blobs, added, raw = self.repo.save_blobs(DATA, batch, self.compressor)
            if blobs:
                self.counters.add(data_blobs=blobs, data_added=added, data_added_raw=raw)
        except BaseException as e:
            self._failure = self._failure or e
        finally:
            self._chunk_slots.release()

    def _send_batch(self) -> None:
        """Hand the chunks gathered so far to a blob worker (waiting for a slot)."""
        if not self._batch:
            return
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        self._chunk_slots.acquire()
        try:
            self._blob_pool.submit(self._store_batch, batch)
        except BaseException:
            self._chunk_slots.release()
            raise

    def _store_here(self, chunk: memoryview, blob_id: bytes) -> int:
        """Store one chunk in this thread; the bytes it added to the pack.
        A failure to store fails the backup (it is not this file's read error)."""
        try:
            return self.repo.save_blob(DATA, chunk, blob_id, self.compressor)[1]
        except BaseException as e:
            self._failure = self._failure or e
            raise _Failed() from None

    def _dry_count(self, chunk, blob_id: bytes) -> None:
        """Count a chunk a dry run would store. For the likely stored size, the
        first DRY_SAMPLE_ALWAYS new bytes are compressed, and after them one
        new chunk in DRY_SAMPLE (chosen by id, so evenly spread)."""
        with self._dry_lock:
            if blob_id in self.repo.index or blob_id in self._dry_seen:
                return
            self._dry_seen.add(blob_id)
        self.counters.add(data_blobs=1, data_added_raw=len(chunk))
        if blob_id[0] < 256 // DRY_SAMPLE or self.counters.get("sample_raw") < DRY_SAMPLE_ALWAYS:
            stored = len(self.compressor.compress(chunk)) + OVERHEAD
            self.counters.add(sample_raw=len(chunk), sample_stored=stored)

    def _read_content(self, path: bytes, st: os.stat_result,
                      batch: bool = False) -> tuple[tuple[bytes, ...], int] | None:
        """Chunk, hash and store one file; None when it could not be read."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NOATIME", 0))
        except PermissionError:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as e:
                self._error(path, f"cannot open: {e.strerror}")
                return None
        except FileNotFoundError:
            self._error(path, "vanished before it could be read")
            return None
        except OSError as e:
            self._error(path, f"cannot open: {e.strerror}")
            return None
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                self._error(path, "is no longer a regular file")
                return None
            data = _read_whole(fd, before.st_size) if before.st_size < WHOLE_READ_LIMIT else None
            if data is not None:
                ids, size = self._store_buffer(data, batch)
            else:
                # Large, or grown past its size since the stat: streamed from the start.
                os.lseek(fd, 0, os.SEEK_SET)
                with os.fdopen(fd, "rb", buffering=0, closefd=False) as stream:
                    ids, size = self._read_stream(stream)
            after = os.fstat(fd)
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or size != after.st_size:
                self._error(path, "changed while it was read; the snapshot holds what was read")
            return ids, size
        except OSError as e:
            self._error(path, f"read failed: {e.strerror}")
            return None
        finally:
            os.close(fd)

    def _store_buffer(self, data: bytes | memoryview, batch: bool = False) -> tuple[tuple[bytes, ...], int]:
        """Chunk, hash and store a file read whole: its chunks are views of
        `data`, compressed and sealed into the pack from there. In a file
        worker they are stored in this thread. The walking thread (`batch`)
        gathers the new chunks of its small files and hands them to a blob
        worker a batch at a time: compressing them itself made it the
        bottleneck of a first backup (a Future per file would cost more than
        the work). The counters are told once per file, the stored bytes by
        whoever stores them."""
        self._check_failed()
        ids = []
        blobs = added = raw = 0
        blob_id_of = self.repo.crypto.blob_id
        for chunk in self.chunker.chunks_of_buffer(data):
            blob_id = blob_id_of(chunk)
            ids.append(blob_id)
            if self.opt.dry_run:
                self._dry_count(chunk, blob_id)
            elif self.repo.has_blob(blob_id):
                continue
            elif batch:
                self._batch.append((chunk, blob_id))
                self._batch_bytes += len(chunk)
                if self._batch_bytes >= BATCH_BYTES or len(self._batch) >= BATCH_CHUNKS:
                    self._check_failed()
                    self._send_batch()
            else:
                self._check_failed()
                stored = self._store_here(chunk, blob_id)
                if stored:
                    blobs += 1
                    added += stored
                    raw += len(chunk)
        if blobs:
            self.counters.add(bytes_read=len(data), data_blobs=blobs, data_added=added, data_added_raw=raw)
        else:
            self.counters.add(bytes_read=len(data))
        return tuple(ids), len(data)

    # ---- files -----------------------------------------------------------------

    def _trusted(self, old: Node | None) -> Node | None:
        """The parent's node, for what it may spare reading again (metadata_node);
        None with --full, which trusts no parent."""
        return None if self.opt.full else old

    def _unchanged(self, st: os.stat_result, old: Node | None) -> bool:
        if (old is None or self.opt.full or old.type != FILE or old.size != st.st_size
                or old.mtime_ns != st.st_mtime_ns or old.ctime_ns != st.st_ctime_ns or old.inode != st.st_ino):
            return False
        index = self.repo.index
        for blob_id in old.content:
            if blob_id not in index:
                return False
        return True

    def _file_node(self, name: bytes, path: bytes, st: os.stat_result, old: Node | None,
                   slot: bool = True) -> Node | None:
        """Read and store one file; `slot`: it holds one of the files-in-flight slots, given back here."""
        shown = os.fsdecode(path)
        self.counters.begin(shown)
        try:
            self._check_failed()
            result = self._read_content(path, st, batch=not slot)
            if result is None:
                return None
            content, size = result
            kind = "files_new" if old is None else "files_unmodified" if old.content == content else "files_changed"
            self.counters.add(files_done=1, bytes_done=size, **{kind: 1})
            return metadata_node(name, path, st, size=size, content=content, parent=self._trusted(old))
        except FileNotFoundError:
            self._error(path, "vanished while it was read")
            return None
        except OSError as e:
            self._error(path, f"cannot read metadata: {e.strerror}")
            return None
        finally:
            self.counters.end(shown)
            if slot:
                self._file_slots.release()

    def _submit_file(self, name: bytes, path: bytes, st: os.stat_result, old: Node | None) -> "Node | Future | None":
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self._hardlinks:
            first = self._hardlinks[key]
            return self._tree_pool.submit(lambda: self._relink(first.result(), name, path, st, old))
        if self._unchanged(st, old):
            # Decided here, in the walking thread: an unchanged file needs no
            # reading, so no worker, no slot, no Future (a tenth of an
            # unchanged re-backup went to handing them over).
            node = self._unchanged_node(name, path, st, old)
            if st.st_nlink > 1:
                self._hardlinks[key] = _done(node)
            return node
        if st.st_size < INLINE_LIMIT:
            # Read and stored in this thread: for a small file, handing it to
            # a worker and waiting for its Future cost more than the work, and
            # threads that trade the GIL at every system call spent three
            # quarters of a first backup of small files on that (futexes).
            node = self._file_node(name, path, st, old, slot=False)
            if st.st_nlink > 1:
                self._hardlinks[key] = _done(node)
            if st.st_size:
                self._small_read += 1
                self._small_bytes += st.st_size
                if self._helper is not None and self._small_read % ADVANCE_EVERY == 0:
                    self._helper.advance(self._small_read, self._small_bytes)
            return node
        self._file_slots.acquire()
        future = self._file_pool.submit(self._file_node, name, path, st, old)
        if st.st_nlink > 1:
            self._hardlinks[key] = future
        return future

    def _unchanged_node(self, name: bytes, path: bytes, st: os.stat_result, old: Node) -> Node | None:
        try:
            node = metadata_node(name, path, st, size=old.size, content=old.content, parent=old)
        except FileNotFoundError:
            self._error(path, "vanished while it was read")
            return None
        except OSError as e:
            self._error(path, f"cannot read metadata: {e.strerror}")
            return None
        # Counted in this thread and handed to the counters a batch at a time.
        self._unmodified_files += 1
        self._unmodified_bytes += st.st_size
        if self._unmodified_files >= UNMODIFIED_BATCH:
            self._count_unmodified()
        return node

    def _count_unmodified(self) -> None:
        files, size = self._unmodified_files, self._unmodified_bytes
        if files:
            self._unmodified_files = self._unmodified_bytes = 0
            self.counters.add(files_unmodified=files, files_done=files, bytes_done=size)

    def _relink(self, first: Node | None, name: bytes, path: bytes, st: os.stat_result,
                old: Node | None) -> Node | None:
        """A further name of a hard-linked file: same content, its own name. It
        is a file of the snapshot, counted as the scan counted it."""
        if first is None:
            return None
        kind = "files_new" if old is None else "files_unmodified" if old.content == first.content \
            else "files_changed"
        self.counters.add(files_done=1, bytes_done=first.size, **{kind: 1})
        return metadata_node(name, path, st, size=first.size, content=first.content, parent=self._trusted(old))

    # ---- directories ------------------------------------------------------------

    def _old_tree(self, old: Node | None) -> Tree | None:
        if old is None or old.type != DIR or old.subtree is None:
            return None
        try:
            return self.repo.load_tree(old.subtree)
        except StrongroomError:
            return None

    def _walk_dir(self, name: bytes, path: bytes, st: os.stat_result, old: Node | None) -> "Node | Future | None":
        """Walk a directory tree with a stack of our own, not one Python frame per
        level: anyone who can write in the source can make it as deep as they like.
        Each directory's tree is assembled after the trees of its subdirectories:
        at once, in this thread, when all its entries are known (an unchanged
        directory's always are), else in the tree thread, in submission order."""
        stack = [self._open_dir(name, path, st, old)]
        while True:
            frame = stack[-1]
            child = next(frame.pending, None)
            if child is not None:
                child_name, child_path, child_st, old_child = child
                if stat.S_ISDIR(child_st.st_mode):
                    stack.append(self._open_dir(child_name, child_path, child_st, old_child))
                else:
                    entry = self._walk_entry(child_name, child_path, child_st, old_child)
                    if entry is not None:
                        frame.children.append(entry)
                continue
            stack.pop()
            self._count_unmodified()
            done = self._finish_or_submit(frame.name, frame.path, frame.st, frame.children, frame.old,
                                          frame.old_tree)
            if not stack:
                return done
            stack[-1].children.append(done)

    def _finish_or_submit(self, name: bytes, path: bytes, st: os.stat_result | None, children: list,
                          old: Node | None, old_tree: Tree | None) -> "Node | Future":
        if all(type(c) is Node or c.done() for c in children):
            return self._finish_dir(name, path, st, children, old, old_tree)
        # An entry still being read is new, changed or read again (--full), so
        # this tree is seldom the parent's: the parent's tree is not kept for the
        # comparison (trees queued for the tree thread would each hold theirs).
        return self._tree_pool.submit(self._finish_dir, name, path, st, children, old)

    def _open_dir(self, name: bytes, path: bytes, st: os.stat_result, old: Node | None) -> "_DirFrame":
        self._check_failed()
        old_tree = self._old_tree(old)
        try:
            entries = sorted(os.scandir(path), key=_entry_name)
        except OSError as e:
            # Too long a path (past the system's PATH_MAX) lands here too: an
            # error for this directory, and the rest of the backup goes on.
            self._error(path, f"cannot list directory: {e.strerror}")
            entries = []
        rules = self.opt.excludes
        if entries and (rules.if_present or rules.caches) and rules.excludes_dir_contents(
                path, {e.name for e in entries}):
            entries = []
        if rules.one_file_system and st.st_dev != self._root_dev:
            entries = []
        return _DirFrame(name, path, st, self._children_of(entries, old_tree), old, old_tree)

    def _children_of(self, entries, old_tree: Tree | None):
        excludes = self.opt.excludes.excludes_path if self.opt.excludes.patterns else None
        old_entry = old_tree.get if old_tree else _nothing
        for entry in entries:
            child_path = entry.path
            if excludes is not None and excludes(child_path):
                continue
            try:
                child_st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as e:
                self._error(child_path, f"cannot stat: {e.strerror}")
                continue
            yield entry.name, child_path, child_st, old_entry(entry.name)

    def _walk_entry(self, name: bytes, path: bytes, st: os.stat_result, old: Node | None) -> "Node | Future | None":
        """The node of one entry, or a Future of it while a worker reads it;
        None when it is left out or could not be read."""
        mode = st.st_mode
        if stat.S_ISREG(mode):
            if self.opt.excludes.excludes_size(st.st_size):
                return None
            return self._submit_file(name, path, st, old)
        if stat.S_ISDIR(mode):
            return self._walk_dir(name, path, st, old)
        try:
            node = metadata_node(name, path, st, parent=self._trusted(old))
            kind = "files_new" if old is None else "files_unmodified" if old == node else "files_changed"
            self.counters.add(files_done=1, **{kind: 1})
            return node
        except OSError as e:
            self._error(path, f"cannot read: {e.strerror}")
            return None

    def _finish_dir(self, name: bytes, path: bytes, st: os.stat_result | None, children: list,
                    old: Node | None = None, old_tree: Tree | None = None) -> Node:
        nodes = tuple(n for n in (c if type(c) is Node else c.result() for c in children) if n is not None)
        if old_tree is not None and nodes == old_tree.nodes and self.repo.has_blob(old.subtree):
            # The same nodes in the same order, every field equal: the tree
            # would encode to the parent's bytes, so it is the parent's tree,
            # stored already. No encoding, no hashing, no saving.
            tree_id = old.subtree
        else:
            tree = Tree(nodes)
            data = tree.encode()
            if self.opt.dry_run or self._failure is not None:
                tree_id = self.repo.crypto.blob_id(data)
            else:
                tree_id, added = self.repo.save_tree(tree, data)
                if added:
                    self.counters.add(tree_blobs=1, data_added=added, tree_added_raw=len(data))
        if st is None:
            return Node(name=b"root", type=DIR, subtree=tree_id)
        node = metadata_node(name, path, st, subtree=tree_id, parent=self._trusted(old))
        # As restic counts them: a directory is unmodified when its tree and its own metadata are.
        kind = "dirs_new" if old is None or old.type != DIR else "dirs_unmodified" if old == node else "dirs_changed"
        self.counters.add(dirs=1, **{kind: 1})
        return node

    def _walk_virtual(self, name: bytes, path: bytes, src: SourceTree, old: Node | None) -> "Node | Future | None":
        """Directories above the source paths: metadata only, plus their chosen children."""
        if src.real:
            try:
                st = os.lstat(path)
            except OSError as e:
                self._error(path, f"cannot back up: {e.strerror}")
                return None
            self._root_dev = st.st_dev
            return self._walk_entry(name, path, st, old)
        old_tree = self._old_tree(old)
        children = []
        for child_name, child in sorted(src.children.items()):
            child_path = path.rstrip(b"/") + b"/" + child_name
            f = self._walk_virtual(child_name, child_path, child, old_tree.get(child_name) if old_tree else None)
            if f is not None:
                children.append(f)
        st = os.lstat(path) if path != b"/" else None
        return self._finish_or_submit(name, path, st, children, old, old_tree)

    # ---- the whole run ------------------------------------------------------------

    def _parent(self) -> Snapshot | None:
        # A damaged snapshot must not stop every later backup: skip it, say so.
        # One that is intact but sealed under another key is no damage: see ForeignObject.
        def damaged(name: str, error: Exception) -> None:
            if isinstance(error, ForeignObject):
                raise error
            self.listener(warning_event(f"skipping {name}: {error}"))

        snaps = self.repo.list_snapshots(damaged)
        if self.opt.parent:
            return find_snapshot(snaps, self.opt.parent)
        flt = SnapshotFilter(host=self.hostname, paths=self.paths)
        candidates = [s for s in snaps if flt.matches(s) and set(s.paths) == set(self.paths)]
        return candidates[-1] if candidates else None

    @property
    def hostname(self) -> str:
        return self.opt.host or socket.gethostname()

    @property
    def paths(self) -> tuple[str, ...]:
        if self.opt.stdin_filename:
            return ("/" + self.opt.stdin_filename.lstrip("/"),)
        return tuple(sorted({os.path.abspath(p) for p in self.opt.paths}))

    def _root_from_stdin(self) -> Future:
        name = os.fsencode(self.opt.stdin_filename.strip("/"))
        if not name or b"/" in name:
            raise UsageError("--stdin-filename must be a plain file name")
        result = self._read_stream(self.opt.stdin_stream or sys.stdin.buffer)
        now = time.time_ns()
        node = Node(name=name, type=FILE, mode=0o600, uid=os.getuid(), gid=os.getgid(),
                    mtime_ns=now, ctime_ns=now, size=result[1], content=result[0])
        self.counters.set_totals(final=True, files=1, bytes=result[1])
        self.counters.add(files_done=1, files_new=1, bytes_done=result[1])
        return self._tree_pool.submit(self._finish_dir, b"", b"/", None, [_done(node)])

    def _read_stream(self, stream) -> tuple[tuple[bytes, ...], int]:
        """Chunk and hash a stream (a large file, stdin); its chunks are
        compressed and stored by the blob workers, so one large file uses
        every core. A chunk is a view valid only until the next is cut: each
        goes to its worker as a copy, and at most MAX_CHUNKS_IN_FLIGHT wait."""
        ids, size = [], 0
        blob_id_of = self.repo.crypto.blob_id
        for chunk in self.chunker.chunks(stream):
            self._check_failed()
            blob_id = blob_id_of(chunk)
            ids.append(blob_id)
            size += len(chunk)
            self.counters.add(bytes_read=len(chunk))
            if self.opt.dry_run:
                self._dry_count(chunk, blob_id)
            elif not self.repo.has_blob(blob_id):
                self._chunk_slots.acquire()
                self._blob_pool.submit(self._store_chunk, bytes(chunk), blob_id)
        return tuple(ids), size

    def run(self) -> BackupResult:
        if not self.opt.paths and not self.opt.stdin_filename:
            raise UsageError("nothing to back up: give one or more paths, or --stdin")
        for p in self.opt.paths:
            if not os.path.lexists(p):
                raise UsageError(f"{p} does not exist")
        self.repo.load_index()
        for damaged in self.repo.damaged_index:
            self.listener(warning_event(f"skipping damaged index object {damaged}"))
        if not self.opt.dry_run:
            adopted = self.repo.adopt_pending_packs()
            if adopted:
                self.listener(warning_event(f"resumed: {adopted} packs from an interrupted run"))
        parent = self._parent() if not self.opt.stdin_filename else None
        started = time.monotonic()
        started_at = datetime.now().astimezone()
        scan = None
        if not self.opt.stdin_filename and self.opt.count_totals:
            scan = threading.Thread(target=self._count_totals, name="scan", daemon=True)
            scan.start()
        old_root = Node(name=b"root", type=DIR, subtree=bytes.fromhex(parent.tree)) if parent else None
        # On a cold cache the walk waits on the disk: a helper reads ahead what
        # it will ask for, metadata in an incremental backup, the small files'
        # contents too when every file is read.
        helper = self._helper = prefetch.start(
            list(self.paths), self.opt.excludes,
            contents_below=INLINE_LIMIT if parent is None or self.opt.full else 0) \
            if self.opt.prefetch and not self.opt.stdin_filename else None
        try:
            if self.opt.stdin_filename:
                root_future = self._root_from_stdin()
            else:
                src = SourceTree.from_paths(list(self.paths))
                if src.real:  # backing up "/"
                    st = os.lstat("/")
                    self._root_dev = st.st_dev
                    root_future = self._walk_dir(b"", b"/", st, old_root)
                else:
                    root_future = self._walk_virtual(b"", b"/", src, old_root)
            self._count_unmodified()
            self._send_batch()
            root = root_future if type(root_future) is Node else root_future.result()
            self._file_pool.shutdown(wait=True)
            self._blob_pool.shutdown(wait=True)
            self._tree_pool.shutdown(wait=True)
        except _Failed:
            pass
        except BaseException as e:
            # Ctrl-C (or any error) in this thread: make the workers stop at their
            # next chunk instead of reading their files to the end; what they
            # stored is indexed below, then the error goes on up.
            self._failure = self._failure or e
        finally:
            prefetch.stop(helper)
            self._file_pool.shutdown(wait=True, cancel_futures=True)
            self._blob_pool.shutdown(wait=True, cancel_futures=True)
            self._tree_pool.shutdown(wait=True, cancel_futures=True)
        if self._failure is not None:
            # Keep what was stored: the checkpointed index lets the next run resume.
            # When the target itself failed, asking it again would only wait out
            # another deadline; the pending-pack journal covers that case.
            # Either way no upload goes on once the run has ended.
            try:
                if isinstance(self._failure, StorageError):
                    self.repo.drop_open_packs()
                    self.repo.wait_for_uploads()
                else:
                    self.repo.flush()
            except BaseException:
                pass
            raise self._failure
        if not self.opt.dry_run:
            self.repo.flush()
        if scan is not None:
            scan.join()
        self.counters.maybe_emit(force=True)
        summary = self._summary(time.monotonic() - started, started_at)
        snap = Snapshot(
            time=(self.opt.time or datetime.now().astimezone()).isoformat(timespec="microseconds"),
            tree=root.subtree.hex(), paths=self.paths, hostname=self.hostname,
            username=getpass.getuser(), uid=os.getuid(), gid=os.getgid(),
            tags=tuple(self.opt.tags), kind=FULL if self.opt.full or parent is None else INCREMENTAL,
            parent=parent.id if parent else None, config_name=self.opt.config_name,
            excludes=self.opt.excludes.patterns, compression=self.compression,
            program_version=__version__, summary=summary,
        )
        if not self.opt.dry_run:
            snap = replace(snap, id=self.repo.save_snapshot(snap))
        return BackupResult(snap, list(self.errors), summary)

    def _count_totals(self) -> None:
        """Count files and bytes ahead of the walk, as restic's scanner does, so
        progress has a total and an ETA. The rules are the walk's (excludes,
        contents of excluded directories, one file system, size limit), so the
        totals are true once the scan is done; directories are not files."""
        files = size = 0
        rules = self.opt.excludes
        excludes = rules.excludes_path if rules.patterns else None
        paths = [p for p in self.paths if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in self.paths)]
        for path in paths:
            top = os.fsencode(path)
            try:
                st = os.lstat(top)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                if not (stat.S_ISREG(st.st_mode) and rules.excludes_size(st.st_size)):
                    files += 1
                    size += st.st_size if stat.S_ISREG(st.st_mode) else 0
                continue
            root_dev = st.st_dev
            stack = [top]
            while stack and self._failure is None:
                here = stack.pop()
                try:
                    if rules.one_file_system and os.lstat(here).st_dev != root_dev:
                        continue
                    with os.scandir(here) as listing:
                        entries = list(listing)
                except OSError:
                    continue
                if entries and (rules.if_present or rules.caches) and rules.excludes_dir_contents(
                        here, {e.name for e in entries}):
                    continue
                for entry in entries:
                    # The entry's type comes with the listing: only files are
                    # stat'ed, for their size (one lstat each, as the walk's).
                    if excludes is not None and excludes(entry.path):
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                            continue
                        if entry.is_file(follow_symlinks=False):
                            length = entry.stat(follow_symlinks=False).st_size
                            if rules.excludes_size(length):
                                continue
                            size += length
                    except OSError:
                        continue
                    files += 1
                    if files % 256 == 0:
                        self.counters.set_totals(files=files, bytes=size)
        self.counters.set_totals(final=self._failure is None, files=files, bytes=size)

    def _summary(self, duration: float, started_at: datetime) -> dict:
        """What the run did, kept in the snapshot. restic's names first; then
        strongroom's, some from before schema 1 (`total_files` is
        total_files_processed, `total_bytes` total_bytes_processed, `duration`
        total_duration), kept because stored snapshots and scripts use them.
        Snapshots from before schema 1 have no data_added_packed, and their
        data_added is what was stored (packed): `stored_bytes` reads either."""
        c = self.counters
        return {
            "files_new": c.get("files_new"), "files_changed": c.get("files_changed"),
            "files_unmodified": c.get("files_unmodified"), "dirs_new": c.get("dirs_new"),
            "dirs_changed": c.get("dirs_changed"), "dirs_unmodified": c.get("dirs_unmodified"),
            "data_blobs": c.get("data_blobs"), "tree_blobs": c.get("tree_blobs"),
            "data_added": c.get("data_added_raw") + c.get("tree_added_raw"), "data_added_packed": c.get("data_added"),
            "total_files_processed": c.get("files_done"), "total_bytes_processed": c.get("bytes_done"),
            "total_duration": round(duration, 3),
            "backup_start": started_at.isoformat(timespec="seconds"),
            "backup_end": datetime.now().astimezone().isoformat(timespec="seconds"),
            "dirs": c.get("dirs"), "total_files": c.get("files_done"), "total_bytes": c.get("bytes_done"),
            "bytes_read": c.get("bytes_read"), "data_added_raw": c.get("data_added_raw"),
            "errors": len(self.errors),
            "duration": round(duration, 3),
            **({"sample_raw": c.get("sample_raw"), "sample_stored": c.get("sample_stored")}
               if self.opt.dry_run else {}),
        }


@dataclass
class _DirFrame:
    """One directory of the walk: what is left to look at, and the futures of its children's nodes."""

    name: bytes
    path: bytes
    st: os.stat_result
    pending: Iterator
    old: Node | None = None
    old_tree: Tree | None = None
    children: list = field(default_factory=list)  # a Node, or the Future of one


def _entry_name(entry: os.DirEntry) -> bytes:
    return entry.name


def _nothing(name: bytes) -> None:
    return None


def _read_whole(fd: int, size: int) -> bytes | memoryview | None:
    """The content of a file that `fstat` says is `size` bytes long, in one
    buffer; None when it holds more (it grew, or its size lies, as those of
    /proc do), so the caller streams it instead of reading without bound.
    One read asks for a byte more than the size: a shorter answer is the end
    (what comes later is seen by the caller's second fstat), a short read
    short of the size is read on from until the file ends.

    A file of MAPPED_READ bytes or more is read into a mapping of its own,
    given back to the system as soon as its chunks are stored: from the
    heap, the allocator keeps such buffers once freed (its threshold for
    mapping rises to the largest block freed), about 12 MiB of peak memory
    on a home directory."""
    want = size + 1
    if size < MAPPED_READ:
        data = os.read(fd, want)
        if 0 < len(data) < size:
            parts = [data]
            got = len(data)
            while got < want:
                more = os.read(fd, want - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        return None if len(data) > size else data
    buffer = mmap.mmap(-1, want, flags=mmap.MAP_PRIVATE)
    view = memoryview(buffer)
    got = 0
    while got < want:
        n = os.readv(fd, [view[got:]])
        if not n:
            break
        got += n
    return None if got > size else view[:got]


def _done(value) -> Future:
    f: Future = Future()
    f.set_result(value)
    return f


def run_backup(repo: Repository, options: BackupOptions, listener: Listener = ignore) -> BackupResult:
    return Backup(repo, options, listener).run()
