"""Restore: write a snapshot (or part of it) into a target directory.

Every pack is read once (the span that holds the wanted blobs) and its blobs
are written to every file that needs them; several packs are read in
parallel. Names come from trees that were validated on decoding, paths are
built below the target only, and nothing is opened through a symlink: an
existing symlink where a directory or file must go is replaced, not followed.
Metadata (owner, mode, xattrs, times) is applied last, directories deepest
first, so a file's mtime only matches the snapshot once it is complete; that
is what lets a rerun skip files that are already correct.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from strongroom.engine.progress import Counters, Listener, ignore
from strongroom.engine.tree_walk import leads_to, path_matches, resolve, walk
from strongroom.errors import IntegrityError, StrongroomError, UsageError
from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Node
from strongroom.repo.pack import pack_name
from strongroom.repo.repository import Repository

OVERWRITE_MODES = ("always", "if-changed", "never")
PACK_WORKERS = 4


@dataclass(frozen=True)
class RestoreOptions:
    target: str
    subpath: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    overwrite: str = "if-changed"
    verify: bool = False
    dry_run: bool = False


@dataclass
class RestoreResult:
    summary: dict
    errors: list[dict] = field(default_factory=list)


@dataclass
class _FileJob:
    path: bytes
    node: Node
    offsets: list[int] = field(default_factory=list)


class Restore:
    def __init__(self, repo: Repository, snapshot: Snapshot, options: RestoreOptions,
                 listener: Listener = ignore, cancel: threading.Event | None = None) -> None:
        if options.overwrite not in OVERWRITE_MODES:
            raise UsageError(f"--overwrite must be one of {', '.join(OVERWRITE_MODES)}")
        self.repo = repo
        self.snapshot = snapshot
        self.opt = options
        self.listener = listener
        self.cancel = cancel or threading.Event()
        self.target = os.path.abspath(os.fsencode(options.target))
        self.counters = Counters(listener, "restore")
        self.errors: list[dict] = []
        self._lock = threading.Lock()
        self.is_root = os.geteuid() == 0
        self._made: set[bytes] = {b""}  # directories (relative) that are real and ours to write in

    def _error(self, path: bytes, message: str) -> None:
        entry = {"type": "error", "path": os.fsdecode(path), "message": message}
        with self._lock:
            if any(e["path"] == entry["path"] and e["message"] == message for e in self.errors[-64:]):
                return  # one line per file and cause, not one per damaged blob
            self.errors.append(entry)
        self.listener(entry)

    def _dest(self, rel: bytes) -> bytes:
        return self.target + rel

    # ---- choosing what to restore ---------------------------------------------------

    def _select(self) -> list[tuple[bytes, Node]]:
        tree_id, node = resolve(self.repo, bytes.fromhex(self.snapshot.tree), self.opt.subpath)
        if node is not None and node.type != DIR:
            items = [(b"/" + node.name, node)]
        else:
            items = list(walk(self.repo, tree_id)) if tree_id else []
        prefix = "/" + "/".join(p for p in self.opt.subpath.split("/") if p)
        prefix = prefix.rstrip("/")
        chosen, dirs = [], []
        for rel, n in items:
            shown = prefix + os.fsdecode(rel)
            if self.opt.exclude and path_matches(self.opt.exclude, shown):
                continue
            if n.type == DIR:
                if not self.opt.include or path_matches(self.opt.include, shown) or leads_to(self.opt.include, shown):
                    dirs.append((rel, n, shown))
                continue
            if self.opt.include and not path_matches(self.opt.include, shown):
                continue
            chosen.append((rel, n))
        if self.opt.include:
            needed = set()
            for rel, _ in chosen:
                parts = rel.split(b"/")
                for i in range(2, len(parts)):
                    needed.add(b"/".join(parts[:i]))
            dirs = [(r, n, s) for r, n, s in dirs if r in needed or path_matches(self.opt.include, s)]
        # Drop everything below an excluded directory.
        kept_dirs = {r for r, _, _ in dirs}
        def parents_kept(rel: bytes) -> bool:
            parts = rel.split(b"/")
            return all(b"/".join(parts[:i]) in kept_dirs for i in range(2, len(parts)))
        result = [(r, n) for r, n, _ in dirs if parents_kept(r)]
        result += [(r, n) for r, n in chosen if parents_kept(r)]
        result.sort(key=lambda item: item[0].split(b"/"))
        return result

    # ---- making places safely ----------------------------------------------------------

    def _clear(self, path: bytes, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "a directory stands where a file goes")
        os.unlink(path)

    def _ensure_dir(self, path: bytes) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o700)
            return
        if stat.S_ISDIR(st.st_mode):
            return
        if self.opt.overwrite == "never":
            raise FileExistsError(errno.EEXIST, "something that is not a directory is in the way")
        os.unlink(path)  # a symlink or file where a directory goes: never follow it
        os.mkdir(path, 0o700)

    def _existing(self, path: bytes) -> os.stat_result | None:
        try:
            return os.lstat(path)
        except FileNotFoundError:
            return None

    def _file_is_current(self, st: os.stat_result, node: Node) -> bool:
        return stat.S_ISREG(st.st_mode) and st.st_size == node.size and st.st_mtime_ns == node.mtime_ns

    # ---- the run -----------------------------------------------------------------------

    def run(self) -> RestoreResult:
        self.repo.load_index()
        items = self._select()
        files = [(r, n) for r, n in items if n.type == FILE]
        self.counters.total_files = len(items)
        self.counters.total_bytes = sum(n.size for _, n in files)
        if not self.opt.dry_run:
            os.makedirs(self.target, exist_ok=True)
            self._make_dirs(items)
        jobs, links, skipped = self._plan_files(files)
        plan = self._plan_packs(jobs)
        if self.opt.dry_run:
            return RestoreResult(self._summary(items, jobs, plan, skipped, dry=True), self.errors)
        created = self._create_files(jobs)
        self._write_packs(plan, [job.path for job in jobs], created)
        if self.cancel.is_set():
            # Before any metadata: a file left half written must not get its
            # snapshot size and mtime, or the next restore would take it as current.
            raise StrongroomError("restore cancelled")
        for rel, first in links:
            self._link(rel, first)
        for rel, node in items:
            if node.type not in (DIR, FILE):
                self._special(rel, node)
        self._apply_metadata(items, skipped)
        if self.opt.verify:
            self._verify(files)
        self.counters.maybe_emit(force=True)
        return RestoreResult(self._summary(items, jobs, plan, skipped), self.errors)

    def _make_dirs(self, items) -> None:
        """Create directories, parents first, before any file is looked at.

        Only below a directory made (or found as a real directory) here is anything
        written: a symlink left in the way, e.g. with --overwrite never, would
        otherwise be followed by every path that passes through it.
        """
        for rel, node in items:
            if node.type != DIR:
                continue
            if not self._parent_made(rel):
                self._error(self._dest(rel), "not restored: a directory above it could not be created")
                continue
            try:
                self._ensure_dir(self._dest(rel))
                self._made.add(rel)
            except OSError as e:
                self._error(self._dest(rel), f"cannot create directory: {e.strerror}")

    def _parent_made(self, rel: bytes) -> bool:
        return rel.rsplit(b"/", 1)[0] in self._made

    def _plan_files(self, files):
        jobs: list[_FileJob] = []
        links: list[tuple[bytes, bytes]] = []
        skipped: set[bytes] = set()
        first_of: dict[tuple[int, int], bytes] = {}
        for rel, node in files:
            if node.links > 1 and node.inode:
                key = (node.device, node.inode)
                if key in first_of:
                    links.append((rel, first_of[key]))
                    continue
                first_of[key] = rel
            existing = self._existing(self._dest(rel)) if not self.opt.dry_run and self._parent_made(rel) else None
            if existing is not None:
                if self.opt.overwrite == "never" or (
                        self.opt.overwrite == "if-changed" and self._file_is_current(existing, node)):
                    skipped.add(rel)
                    self.counters.add(files_skipped=1, files_done=1, bytes_done=node.size)
                    continue
            jobs.append(_FileJob(rel, node))
        return jobs, links, skipped

    def _plan_packs(self, jobs: list[_FileJob]) -> dict[bytes, dict[bytes, list[tuple[int, int]]]]:
        """pack -> blob -> [(job number, offset in file)]."""
        plan: dict[bytes, dict[bytes, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
        for number, job in enumerate(jobs):
            offset = 0
            for blob_id in job.node.content:
                loc = self.repo.index.get(blob_id)
                if loc is None:
                    self._error(self._dest(job.path), f"blob {blob_id.hex()[:16]} is missing from the index")
                    offset = -1
                    break
                plan[loc.pack][blob_id].append((number, offset))
                offset += loc.raw_length
        return plan

    def _create_files(self, jobs: list[_FileJob]) -> list[bool]:
        created = []
        for job in jobs:
            path = self._dest(job.path)
            if not self._parent_made(job.path):
                self._error(path, "not restored: a directory above it could not be created")
                created.append(False)
                continue
            try:
                existing = self._existing(path)
                if existing is not None and not stat.S_ISREG(existing.st_mode):
                    self._clear(path, existing)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                try:
                    os.ftruncate(fd, job.node.size)  # holes stay holes: sparse files stay sparse
                finally:
                    os.close(fd)
                created.append(True)
            except OSError as e:
                self._error(path, f"cannot create file: {e.strerror}")
                created.append(False)
        return created

    def _write_packs(self, plan, jobs_paths: list[bytes], created: list[bool]) -> None:
        def one_pack(pack_id: bytes, blobs: dict[bytes, list[tuple[int, int]]]) -> None:
            if self.cancel.is_set():
                return
            name = pack_name(pack_id, self.repo.config.data_fanout)
            locs = {b: self.repo.index.get(b) for b in blobs}
            start = min(loc.offset for loc in locs.values())
            end = max(loc.offset + loc.length for loc in locs.values())
            try:
                span = memoryview(self.repo.storage.read(name, start, end - start))
            except StrongroomError as e:
                for targets in blobs.values():
                    for number, _ in targets:
                        self._error(self._dest(jobs_paths[number]), f"cannot read pack: {e}")
                return
            files = _OpenFiles()
            failed: set[int] = set()
            try:
                for blob_id in sorted(blobs, key=lambda b: locs[b].offset):
                    targets, loc = blobs[blob_id], locs[blob_id]
                    lo = loc.offset - start
                    try:
                        data = self.repo.open_blob(loc.type, blob_id, span[lo:lo + loc.length], loc.raw_length, name)
                    except IntegrityError as e:
                        for number, _ in targets:
                            self._error(self._dest(jobs_paths[number]), str(e))
                        continue
                    zero = data.count(0) == len(data)
                    for number, offset in targets:
                        if not created[number] or number in failed:
                            continue
                        if not zero:
                            path = self._dest(jobs_paths[number])
                            try:
                                os.pwrite(files.get(number, path), data, offset)
                            except OSError as e:
                                failed.add(number)
                                self._error(path, f"write failed: {e.strerror}")
                                continue
                            self.counters.add(bytes_written=len(data))
                        self.counters.add(bytes_done=len(data))
            finally:
                files.close()
            self.counters.add(packs_read=1)

        with ThreadPoolExecutor(PACK_WORKERS, thread_name_prefix="restore") as pool:
            for f in [pool.submit(one_pack, p, b) for p, b in plan.items()]:
                f.result()

    def _make_room(self, path: bytes) -> bool:
        """Remove what stands where a link or special file goes; False when it stays."""
        existing = self._existing(path)
        if existing is None:
            return True
        if self.opt.overwrite == "never":
            return False
        self._clear(path, existing)
        return True

    def _link(self, rel: bytes, first: bytes) -> None:
        path, source = self._dest(rel), self._dest(first)
        if not (self._parent_made(rel) and self._parent_made(first)):
            self._error(path, "not restored: a directory above it could not be created")
            return
        try:
            if not self._make_room(path):
                return
            os.link(source, path, follow_symlinks=False)
            self.counters.add(files_done=1, hardlinks=1)
        except OSError as e:
            self._error(path, f"cannot create hard link: {e.strerror}")

    def _special(self, rel: bytes, node: Node) -> None:
        path = self._dest(rel)
        if not self._parent_made(rel):
            self._error(path, "not restored: a directory above it could not be created")
            return
        try:
            if not self._make_room(path):
                return
            if node.type == SYMLINK:
                os.symlink(node.target, path)
            elif node.type == FIFO:
                os.mkfifo(path, 0o600)
            elif node.type in (CHARDEV, BLOCKDEV):
                kind = stat.S_IFCHR if node.type == CHARDEV else stat.S_IFBLK
                os.mknod(path, kind | 0o600, node.rdev)
            elif node.type == SOCKET:
                return  # a socket is recreated by the program that owns it
            self.counters.add(files_done=1)
        except OSError as e:
            self._error(path, f"cannot create {node.type}: {e.strerror}")

    def _set_metadata(self, path: bytes, node: Node) -> None:
        is_link = node.type == SYMLINK
        if self.is_root:
            os.chown(path, node.uid, node.gid, follow_symlinks=False)
        if not is_link:
            os.chmod(path, node.mode)
        for key, value in node.xattrs:
            try:
                os.setxattr(path, key, value, follow_symlinks=False)
            except OSError:
                pass  # not every filesystem or user may set every attribute
        os.utime(path, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)

    def _apply_metadata(self, items, skipped: set[bytes]) -> None:
        failed = {e["path"] for e in self.errors}
        dirs = []
        for rel, node in items:
            if node.type == SOCKET or rel in skipped and self.opt.overwrite == "never":
                continue
            path = self._dest(rel)
            if os.fsdecode(path) in failed:
                continue
            if node.type == DIR:
                dirs.append((rel, node))
                continue
            try:
                self._set_metadata(path, node)
            except OSError as e:
                self._error(path, f"cannot set metadata: {e.strerror}")
        for rel, node in sorted(dirs, key=lambda item: item[0].count(b"/"), reverse=True):
            try:
                self._set_metadata(self._dest(rel), node)
            except OSError as e:
                self._error(self._dest(rel), f"cannot set metadata: {e.strerror}")

    def _verify(self, files) -> None:
        """Read every restored file back and check each chunk against its id."""
        with ThreadPoolExecutor(PACK_WORKERS, thread_name_prefix="verify") as pool:
            for f in [pool.submit(self._verify_file, rel, node) for rel, node in files]:
                f.result()

    def _verify_file(self, rel: bytes, node: Node) -> None:
        path = self._dest(rel)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as e:
            self._error(path, f"verify: cannot open: {e.strerror}")
            return
        try:
            ok = os.fstat(fd).st_size == node.size
            offset = 0
            for blob_id in node.content if ok else ():
                loc = self.repo.index.get(blob_id)
                data = os.pread(fd, loc.raw_length, offset) if loc else b""
                offset += len(data)
                if loc is None or self.repo.crypto.blob_id(data) != blob_id:
                    ok = False
                    break
            if ok:
                self.counters.add(files_verified=1)
            else:
                self._error(path, "verify: restored content differs from the snapshot")
        finally:
            os.close(fd)

    def _summary(self, items, jobs, plan, skipped, dry: bool = False) -> dict:
        c = self.counters
        return {
            "snapshot": self.snapshot.id, "target": os.fsdecode(self.target), "dry_run": dry,
            "total_files": sum(1 for _, n in items if n.type != DIR),
            "total_dirs": sum(1 for _, n in items if n.type == DIR),
            "total_bytes": c.total_bytes,
            "files_to_write": len(jobs), "files_skipped": len(skipped),
            "bytes_to_write": sum(j.node.size for j in jobs),
            "packs": len(plan), "packs_read": c.get("packs_read"),
            "bytes_written": c.get("bytes_written"), "files_verified": c.get("files_verified"),
            "errors": len(self.errors), "requests": self.repo.requests["requests"],
        }


class _OpenFiles:
    """A few open output files, so a pack's blobs for one file share one open."""

    def __init__(self, limit: int = 32) -> None:
        self.limit = limit
        self._fds: dict[int, int] = {}

    def get(self, number: int, path: bytes) -> int:
        fd = self._fds.pop(number, None)
        if fd is None:
            if len(self._fds) >= self.limit:
                os.close(self._fds.pop(next(iter(self._fds))))
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        self._fds[number] = fd  # most recently used last
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def run_restore(repo: Repository, snapshot: Snapshot, options: RestoreOptions,
                listener: Listener = ignore, cancel: threading.Event | None = None) -> RestoreResult:
    return Restore(repo, snapshot, options, listener, cancel).run()
