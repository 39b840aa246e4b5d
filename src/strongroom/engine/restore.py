"""Restore: write a snapshot (or part of it) into a target directory.

Every pack is read once, as spans of about 1 MiB of the blobs wanted from
it (one streamed read), and each blob is written to every file that needs
it; several packs are read in parallel. Names come from trees that were validated on decoding, and every
entry is created relative to its directory's descriptor (see target_dirs):
nothing is opened through a symlink, an existing symlink where a directory
or file must go is replaced, not followed, and no path is ever too long.
Metadata (owner, mode, xattrs, times) is applied last, each directory after
everything below it, so a file's mtime only matches the snapshot once it is
complete; that is what lets a rerun skip files that are already correct. A
file that could not be written whole is removed, not left looking restored.
A cancelled restore does the same before it stops: the files written whole
get their metadata (so a rerun skips them), the others are removed.
Metadata never goes to a file whose content this restore did not write
unless that file is one it may trust: as root, a file taken as current must
already have the snapshot's owner (size and mtime are anyone's to set on a
file they plant), and under --overwrite never a hard link made to a file
left as found leaves that file's owner and mode as they were.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from strongroom.engine.progress import Counters, Listener, error_event, ignore, restore_status
from strongroom.engine.restore_select import Item, select_items
from strongroom.engine.target_dirs import ROOT, TargetDirs, set_dir_metadata, set_metadata
from strongroom.errors import IntegrityError, StrongroomError, UsageError
from strongroom.memory import collector_paused
from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Node
from strongroom.repo.pack import pack_name
from strongroom.repo.repository import Repository

OVERWRITE_MODES = ("always", "if-changed", "never")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Packs read at once from a local directory, where the work is the CPU's:
# one per core, up to 4 (each holds a span and a blob's scratch buffers).
PACK_WORKERS = max(1, min(4, os.cpu_count() or 1))
# What one restore worker reads of a pack at a time (a larger blob makes a
# larger span): PACK_WORKERS spans, plus the blob each is opening, are the
# pack data in memory at once. Spans come from one streamed read per pack,
# so their size costs no requests.
SPAN_BYTES = 1024 * 1024
SPAN_GAP = 256 * 1024
CREATED_BATCH = 64  # files created between two words to the waiting pack workers


@dataclass(frozen=True)
class RestoreOptions:
    target: str
    subpath: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    overwrite: str = "if-changed"
    verify: bool = False
    dry_run: bool = False
    # The target was checked as a real path (no symlink in it): it is opened
    # component by component without following one, so a swap after the check fails.
    real_target: bool = False


@dataclass
class RestoreResult:
    summary: dict
    errors: list[dict] = field(default_factory=list)
    # The packs read whose every blob this restore wanted authenticated.
    read_packs: set[bytes] = field(default_factory=set)


@dataclass
class _FileJob:
    index: int  # of the item
    node: Node
    absent: bool = False  # nothing was there when the plan looked


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
        self.counters = Counters(listener, restore_status)
        self._blobs_left: list[int] = []  # per file job: blobs still to write
        self.errors: list[dict] = []
        self.read_packs: set[bytes] = set()
        self.items: list[Item] = []
        self.failed: dict[int, str] = {}  # item -> why it was not restored (one reason each)
        self.skipped: set[int] = set()  # items left as they were found
        self.found_inode: set[int] = set()  # hard links made to a file left as found: its metadata stays as found
        # Directories this restore made (mkdir), so empty when made: their files need no
        # look first (O_EXCL still refuses anything that came since).
        self.made_empty: set[int] = set()
        self._lock = threading.Lock()
        self.is_root = os.geteuid() == 0
        self.dirs: TargetDirs | None = None

    def _path(self, index: int) -> bytes:
        names = []
        while index != ROOT:
            names.append(self.items[index].name)
            index = self.items[index].parent
        return b"/".join([self.target, *reversed(names)])

    def _emit(self, index: int, message: str, obj: str | None = None) -> bool:
        """`obj` names the repository object at fault ("pack <id>", "blob <id>"), where there is one."""
        entry = error_event(message, os.fsdecode(self._path(index)), "restore", **({"object": obj} if obj else {}))
        with self._lock:
            if any(e["path"] == entry["path"] and e["message"] == message for e in self.errors[-64:]):
                return False
            self.errors.append(entry)
        self.counters.add(errors=1)
        self.listener(entry)
        return True

    def _fail(self, index: int, message: str, obj: str | None = None) -> None:
        """The item is not restored: one error line for it, whatever else goes wrong with it."""
        with self._lock:
            if index in self.failed:
                return
            self.failed[index] = message
        self._emit(index, message, obj)

    def _error(self, index: int, message: str) -> None:
        """A problem with an item that is there (its metadata, its verification)."""
        self._emit(index, message)

    # ---- making places safely ----------------------------------------------------------

    @staticmethod
    def _existing(dir_fd: int, name: bytes) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    @staticmethod
    def _clear(dir_fd: int, name: bytes, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "a directory stands where a file goes")
        os.unlink(name, dir_fd=dir_fd)  # a symlink, a hard link, a fifo: removed, never opened

    def _ensure_dir(self, dir_fd: int, name: bytes) -> bool:
        """Make the directory, or take the one there; True when it was made here."""
        st = self._existing(dir_fd, name)
        if st is None:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
            return True
        if stat.S_ISDIR(st.st_mode):
            return False
        if self.opt.overwrite == "never":
            raise FileExistsError(errno.EEXIST, "something that is not a directory is in the way")
        os.unlink(name, dir_fd=dir_fd)  # a symlink or file where a directory goes: never follow it
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        return True

    def _file_is_current(self, st: os.stat_result, node: Node) -> bool:
        if not (stat.S_ISREG(st.st_mode) and st.st_size == node.size and st.st_mtime_ns == node.mtime_ns):
            return False
        # A file left in place still gets the snapshot's owner and mode. Size and mtime
        # are anyone's to set on their own file (or on a hard link to it planted in the
        # target), so as root a file someone else owns is written afresh: never made
        # root's, or setuid, with content this restore did not write.
        return not self.is_root or (st.st_uid, st.st_gid) == (node.uid, node.gid)

    def _parent_ready(self, index: int) -> bool:
        """Whether the item's directory is one this restore made; if not, the item fails."""
        if self.dirs.made(self.items[index].parent):
            return True
        self._fail(index, "not restored: a directory above it could not be created")
        return False

    # ---- the run -----------------------------------------------------------------------

    def run(self) -> RestoreResult:
        self.repo.load_index()
        with collector_paused():  # an item and a node per entry, all kept
            self.items = items = select_items(self.repo, self.snapshot, self.opt.subpath, self.opt.include,
                                              self.opt.exclude)
            files = [i for i, item in enumerate(items) if item.node.type == FILE]
            self._set_totals(files)
            if self.opt.dry_run:
                jobs, links = self._plan_files(files)
                plan = self._plan_packs(jobs)
                return RestoreResult(self._summary(jobs, plan, dry=True), self.errors)
        if not self.opt.real_target:
            os.makedirs(self.target, exist_ok=True)
        with TargetDirs(self.target, items, no_symlinks=self.opt.real_target) as self.dirs:
            self._make_dirs()
            with collector_paused():  # the jobs and the plan, as many
                jobs, links = self._plan_files(files)
                plan = self._plan_packs(jobs)
            created = [False] * len(jobs)
            self._write_packs(plan, jobs, created)
            if self.cancel.is_set():
                self._stop(jobs, created)
                raise StrongroomError("restore cancelled")
            self._discard_incomplete(jobs, created)
            for index, first in links:
                self._link(index, first)
            for index, item in enumerate(items):
                if item.node.type not in (DIR, FILE):
                    self._special(index, item.node)
            self._apply_metadata()
            if self.opt.verify:
                self._verify(files)
        self.counters.maybe_emit(force=True)
        return RestoreResult(self._summary(jobs, plan), self.errors, self.read_packs)

    def _set_totals(self, files: list[int]) -> None:
        """Files are every entry but directories (sockets are not restored, so
        not counted); bytes are the files' contents, a hard link's once."""
        seen: set[tuple[int, int]] = set()
        size = 0
        for index in files:
            node = self.items[index].node
            if node.links > 1 and node.inode:
                if (node.device, node.inode) in seen:
                    continue
                seen.add((node.device, node.inode))
            size += node.size
        count = sum(1 for item in self.items if item.node.type not in (DIR, SOCKET))
        self.counters.set_totals(final=True, files=count, bytes=size)

    def _make_dirs(self) -> None:
        """Create directories, parents first, before any file is looked at.

        Only below a directory made (or found as a real directory) here is anything
        written: a symlink left in the way, e.g. with --overwrite never, would
        otherwise be followed by every path that passes through it.
        """
        for index, item in enumerate(self.items):
            if item.node.type != DIR or not self._parent_ready(index):
                continue
            try:
                with self.dirs.at(item.parent) as dir_fd:
                    if self._ensure_dir(dir_fd, item.name):
                        self.made_empty.add(index)
                self.dirs.mark_made(index)
            except OSError as e:
                self._fail(index, f"cannot create directory: {e.strerror}")

    def _plan_files(self, files: list[int]) -> tuple[list[_FileJob], list[tuple[int, int]]]:
        jobs: list[_FileJob] = []
        links: list[tuple[int, int]] = []
        first_of: dict[tuple[int, int], int] = {}
        for index in files:
            item = self.items[index]
            node = item.node
            if node.links > 1 and node.inode:
                key = (node.device, node.inode)
                if key in first_of:
                    links.append((index, first_of[key]))
                    continue
                first_of[key] = index
            if not self.opt.dry_run:
                if not self._parent_ready(index):
                    continue
                existing = None
                if item.parent not in self.made_empty:  # a directory just made holds nothing to look at
                    try:
                        with self.dirs.at(item.parent) as dir_fd:
                            existing = self._existing(dir_fd, item.name)
                    except OSError as e:
                        self._fail(index, f"cannot create file: {e.strerror}")
                        continue
                if existing is not None and (self.opt.overwrite == "never" or (
                        self.opt.overwrite == "if-changed" and self._file_is_current(existing, node))):
                    self.skipped.add(index)
                    self.counters.add(files_skipped=1, bytes_skipped=node.size)
                    continue
            jobs.append(_FileJob(index, node, absent=not self.opt.dry_run and existing is None))
        return jobs, links

    def _plan_packs(self, jobs: list[_FileJob]) -> dict[bytes, dict[bytes, list[tuple[int, int]]]]:
        """pack -> blob -> [(job number, offset in file)]."""
        plan: dict[bytes, dict[bytes, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
        for number, job in enumerate(jobs):
            offset = 0
            for blob_id in job.node.content:
                loc = self.repo.index.get(blob_id)
                if loc is None:
                    self._fail(job.index, f"blob {blob_id.hex()[:16]} is missing from the index",
                               f"blob {blob_id.hex()}")
                    break
                plan[loc.pack][blob_id].append((number, offset))
                offset += loc.raw_length
        return plan

    def _create_files(self, jobs: list[_FileJob], created: list[bool], ready: "_Ready") -> None:
        """Create the files, in order, while the pack workers write the ones
        made so far: `ready` tells them how far this has come."""
        for number, job in enumerate(jobs):
            if number % CREATED_BATCH == 0:
                ready.advance(number)
                if self.cancel.is_set():
                    return
            if job.index in self.failed:
                continue
            item = self.items[job.index]
            try:
                with self.dirs.at(item.parent) as dir_fd:
                    try:
                        if not job.absent:
                            self._remove_existing(dir_fd, item.name)
                        fd = os.open(item.name, _CREATE, 0o600, dir_fd=dir_fd)
                    except FileExistsError:
                        if not job.absent:
                            raise
                        # Something came since the plan looked: it goes like anything found there.
                        self._remove_existing(dir_fd, item.name)
                        fd = os.open(item.name, _CREATE, 0o600, dir_fd=dir_fd)
                created[number] = True
                os.close(fd)
                if not job.node.content:
                    self.counters.add(files_restored=1)  # empty: whole once created
            except OSError as e:
                self._fail(job.index, f"cannot create file: {e.strerror}")
        ready.advance(len(jobs))

    def _remove_existing(self, dir_fd: int, name: bytes) -> None:
        existing = self._existing(dir_fd, name)
        if existing is not None:
            # Removed, not truncated: a hard link planted there must not be written through.
            self._clear(dir_fd, name, existing)

    def _wrote(self, number: int, jobs: list[_FileJob]) -> bool:
        """One of a file's blobs is in place: True when that made the file whole
        (a file restored, for the caller to count)."""
        with self._lock:
            self._blobs_left[number] -= 1
            return self._blobs_left[number] == 0 and jobs[number].index not in self.failed

    def _write_packs(self, plan, jobs: list[_FileJob], created: list[bool]) -> None:
        """Create the files (in this thread) and write the packs' blobs into them
        (in the workers) at once: a pack is written as soon as every file it
        feeds is made, so the disk is never left idle while thousands of files
        are created."""
        self._blobs_left = [len(job.node.content) for job in jobs]
        ready = _Ready()
        last_file = {pack_id: max(number for targets in blobs.values() for number, _ in targets)
                     for pack_id, blobs in plan.items()}

        def one_pack(pack_id: bytes, blobs: dict[bytes, list[tuple[int, int]]]) -> None:
            if not ready.wait_for(last_file[pack_id] + 1, self.cancel) or self.cancel.is_set():
                return
            name = pack_name(pack_id, self.repo.config.data_fanout)
            locs = {b: self.repo.index.get(b) for b in blobs}
            groups = _span_groups(sorted(blobs, key=lambda b: locs[b].offset), locs)
            spans = [(start, end - start) for start, end, _ in groups]
            files = _OpenFiles(self.dirs, self.items)
            whole = True
            done = 0  # groups written
            read = self.repo.storage.read_spans(name, spans)
            try:
                for (start, _, group), span in zip(groups, read):
                    if self.cancel.is_set():  # the rest of a large pack is not waited for
                        return
                    span = memoryview(span)
                    for blob_id in group:
                        if not self._write_blob(blob_id, locs[blob_id], blobs[blob_id], span, start, name,
                                                pack_id, jobs, created, files):
                            whole = False
                    done += 1
            except StrongroomError as e:
                for _, _, group in groups[done:]:
                    for blob_id in group:
                        for number, _ in blobs[blob_id]:
                            self._fail(jobs[number].index, f"cannot read pack: {e}", f"pack {pack_id.hex()}")
                return
            finally:
                files.close()
                getattr(read, "close", lambda: None)()  # a streamed read ends its request now
            if whole:
                with self._lock:
                    self.read_packs.add(pack_id)
            self.counters.add(packs_read=1)

        # A span of up to a pack in memory per worker: connections × pack size.
        with ThreadPoolExecutor(self.repo.download_workers(PACK_WORKERS), thread_name_prefix="restore") as pool:
            # The packs whose files are made first go first.
            futures = [pool.submit(one_pack, p, plan[p]) for p in sorted(plan, key=last_file.__getitem__)]
            try:
                self._create_files(jobs, created, ready)
            finally:
                ready.finish()  # whatever stopped the creating, nobody waits for it any longer
            for f in futures:
                f.result()

    def _write_blob(self, blob_id: bytes, loc, targets: list[tuple[int, int]], span: memoryview, start: int,
                    name: str, pack_id: bytes, jobs: list[_FileJob], created: list[bool],
                    files: "_OpenFiles") -> bool:
        """Write one blob, cut from a span of its pack read from `start`, to every
        place that wants it; False when it did not authenticate."""
        lo = loc.offset - start
        try:
            # Written at once, so it may live in this thread's scratch buffers.
            data = self.repo.open_blob_scratch(loc.type, blob_id, span[lo:lo + loc.length], loc.raw_length, name)
        except IntegrityError as e:
            for number, _ in targets:
                self._fail(jobs[number].index, str(e), f"pack {pack_id.hex()}")
            return False
        zero = _all_zero(data)
        size = len(data)
        placed = whole = 0
        for number, offset in targets:
            index = jobs[number].index
            if not created[number] or index in self.failed:
                continue
            try:
                if not zero:
                    os.pwrite(files.get(index), data, offset)
                elif offset + size == jobs[number].node.size:
                    # A zero block is a hole, never written: one that ends the
                    # file gives it its size (sparse files stay sparse).
                    os.ftruncate(files.get(index), offset + size)
            except OSError as e:
                self._fail(index, f"write failed: {e.strerror}")
                continue
            placed += 1
            whole += self._wrote(number, jobs)
        if placed:  # one word to the counters per blob, however many files it went to
            self.counters.add(bytes_written=0 if zero else placed * size, bytes_restored=placed * size,
                              files_restored=whole)
        return True

    def _stop(self, jobs: list[_FileJob], created: list[bool]) -> None:
        """Cancelled: remove every file this restore began and did not write whole,
        and give each file it did write whole its snapshot metadata.

        Nothing is left that looks restored unless it is (a half-written file
        must never get the snapshot's size and mtime), and a rerun takes the
        whole ones as current instead of writing them again. Links, special
        files and directories' metadata are left to the rerun.
        """
        for number, job in enumerate(jobs):
            if not created[number]:
                continue
            item = self.items[job.index]
            whole = self._blobs_left[number] == 0 and job.index not in self.failed
            try:
                with self.dirs.at(item.parent) as dir_fd:
                    if whole:
                        set_metadata(dir_fd, item.name, item.node, self.is_root)
                    else:
                        os.unlink(item.name, dir_fd=dir_fd)
            except OSError as e:
                self._error(job.index, f"cannot {'set metadata' if whole else 'remove the incomplete file'}: "
                                       f"{e.strerror}")

    def _discard_incomplete(self, jobs: list[_FileJob], created: list[bool]) -> None:
        """Remove every file that could not be written whole.

        A file of the right size full of zeros where a chunk failed would look
        restored to anyone, and to the next restore once it had its mtime.
        """
        for number, job in enumerate(jobs):
            if created[number] and job.index in self.failed:
                item = self.items[job.index]
                try:
                    with self.dirs.at(item.parent) as dir_fd:
                        os.unlink(item.name, dir_fd=dir_fd)
                except OSError as e:
                    self._error(job.index, f"cannot remove the incomplete file: {e.strerror}")

    def _make_room(self, dir_fd: int, index: int) -> bool:
        """Remove what stands where a link or special file goes; False when it stays."""
        name = self.items[index].name
        existing = self._existing(dir_fd, name)
        if existing is None:
            return True
        if self.opt.overwrite == "never":
            self.skipped.add(index)  # left as found: nothing, metadata included, is applied to it
            self.counters.add(files_skipped=1)
            return False
        self._clear(dir_fd, name, existing)
        return True

    def _link(self, index: int, first: int) -> None:
        item, source = self.items[index], self.items[first]
        if not self._parent_ready(index):
            return
        if first in self.failed:
            self._fail(index, "not restored: the file it is a hard link of could not be restored")
            return
        try:
            with self.dirs.lock:
                source_dir = os.dup(self.dirs.fd(source.parent))  # stays open while the other is opened
                try:
                    dir_fd = self.dirs.fd(item.parent)
                    if not self._make_room(dir_fd, index):
                        return
                    os.link(source.name, item.name, src_dir_fd=source_dir, dst_dir_fd=dir_fd,
                            follow_symlinks=False)
                    if self.opt.overwrite == "never" and first in self.skipped:
                        # The inode is the one found there, not one this restore made.
                        self.found_inode.add(index)
                finally:
                    os.close(source_dir)
            self.counters.add(files_restored=1, hardlinks=1)
        except OSError as e:
            self._fail(index, f"cannot create hard link: {e.strerror}")

    def _special(self, index: int, node: Node) -> None:
        item = self.items[index]
        if node.type == SOCKET:
            return  # a socket is recreated by the program that owns it
        if not self._parent_ready(index):
            return
        try:
            with self.dirs.at(item.parent) as dir_fd:
                if not self._make_room(dir_fd, index):
                    return
                if node.type == SYMLINK:
                    os.symlink(node.target, item.name, dir_fd=dir_fd)
                elif node.type == FIFO:
                    os.mkfifo(item.name, 0o600, dir_fd=dir_fd)
                elif node.type in (CHARDEV, BLOCKDEV):
                    kind = stat.S_IFCHR if node.type == CHARDEV else stat.S_IFBLK
                    os.mknod(item.name, kind | 0o600, node.rdev, dir_fd=dir_fd)
            self.counters.add(files_restored=1)
        except OSError as e:
            self._fail(index, f"cannot create {node.type}: {e.strerror}")

    def _apply_metadata(self) -> None:
        """Files first, then each directory after everything below it (reverse walk order)."""
        never = self.opt.overwrite == "never"
        dirs = []
        for index, item in enumerate(self.items):
            if item.node.type == SOCKET or index in self.failed or never and index in self.skipped \
                    or index in self.found_inode:
                continue
            if item.node.type == DIR:
                dirs.append(index)
                continue
            try:
                with self.dirs.at(item.parent) as dir_fd:
                    set_metadata(dir_fd, item.name, item.node, self.is_root)
            except OSError as e:
                self._error(index, f"cannot set metadata: {e.strerror}")
        for index in reversed(dirs):
            try:
                with self.dirs.lock:
                    set_dir_metadata(self.dirs.fd(index), self.items[index].node, self.is_root)
            except OSError as e:
                self._error(index, f"cannot set metadata: {e.strerror}")

    def _verify(self, files: list[int]) -> None:
        """Read every restored file back and check each chunk against its id."""
        chosen = [i for i in files if i not in self.failed]
        with ThreadPoolExecutor(PACK_WORKERS, thread_name_prefix="verify") as pool:
            for f in [pool.submit(self._verify_file, index) for index in chosen]:
                f.result()

    def _verify_file(self, index: int) -> None:
        item = self.items[index]
        node = item.node
        try:
            fd = self.dirs.open(item.parent, item.name, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as e:
            self._error(index, f"verify: cannot open: {e.strerror}")
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
                self._error(index, "verify: restored content differs from the snapshot")
        finally:
            os.close(fd)

    def _summary(self, jobs: list[_FileJob], plan, dry: bool = False) -> dict:
        c = self.counters
        failed = [{"path": os.fsdecode(self._path(i)), "message": why}
                  for i, why in sorted(self.failed.items()) if self.items[i].node.type != DIR]
        # restic's names first (files_restored: written, linked or made; bytes_restored:
        # content put in place, holes included), then strongroom's.
        return {
            "seconds_elapsed": int(c.elapsed()), "total_files": c.total("files"),
            "files_restored": c.get("files_restored"), "files_skipped": len(self.skipped),
            "total_bytes": c.total("bytes"), "bytes_restored": c.get("bytes_restored"),
            "bytes_skipped": c.get("bytes_skipped"),
            "snapshot_id": self.snapshot.id, "snapshot": self.snapshot.id, "target": os.fsdecode(self.target),
            "dry_run": dry, "total_dirs": sum(1 for item in self.items if item.node.type == DIR),
            "files_to_write": len(jobs), "bytes_to_write": sum(j.node.size for j in jobs),
            "packs": len(plan), "packs_read": c.get("packs_read"),
            "bytes_written": c.get("bytes_written"), "files_verified": c.get("files_verified"),
            "files_failed": failed, "errors": len(self.errors),
        }


class _Ready:
    """How many of the file jobs, in order, are created (or failed); pack
    workers wait here for the last file their pack feeds."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0
        self._finished = False

    def advance(self, count: int) -> None:
        with self._cond:
            self._count = count
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def wait_for(self, count: int, cancel: threading.Event) -> bool:
        """Wait until `count` jobs are done, or there will be no more (True
        either way), or the restore is cancelled (False)."""
        with self._cond:
            while self._count < count and not self._finished:
                if cancel.is_set():
                    return False
                self._cond.wait(0.5)
        return True


_zeros = b""  # grows to the largest blob asked about; never written, so its pages stay unallocated


def _all_zero(data: bytes) -> bool:
    """Whether a (non-empty) blob is all zero bytes: one memcmp against a zero
    buffer, which stops at the first other byte (counting the zeros read all of
    every blob, a twentieth of a restore's CPU)."""
    global _zeros
    if data[:1] != b"\0" or data[-1:] != b"\0":
        return False
    if len(_zeros) < len(data):
        _zeros = bytes(len(data))
    return _zeros.startswith(data)


def _span_groups(ordered: list[bytes], locs: dict) -> list[tuple[int, int, list[bytes]]]:
    """The blobs wanted from one pack (by offset), in groups each read as one
    span: (start, end, blobs). A span holds at most SPAN_BYTES unless one blob
    is larger, and a gap of more than SPAN_GAP between blobs starts a new one,
    so a worker holds one span, not the pack, and skips what is not wanted."""
    groups: list[tuple[int, int, list[bytes]]] = []
    for blob_id in ordered:
        loc = locs[blob_id]
        if groups:
            start, end, group = groups[-1]
            # Blobs that overlap (only a damaged index says so) stay in one span.
            if loc.offset < end or (loc.offset - end <= SPAN_GAP and loc.offset + loc.length - start <= SPAN_BYTES):
                group.append(blob_id)
                groups[-1] = (start, max(end, loc.offset + loc.length), group)
                continue
        groups.append((loc.offset, loc.offset + loc.length, [blob_id]))
    return groups


class _OpenFiles:
    """A few open output files, so a pack's blobs for one file share one open."""

    def __init__(self, dirs: TargetDirs, items: list[Item], limit: int = 32) -> None:
        self.dirs = dirs
        self.items = items
        self.limit = limit
        self._fds: dict[int, int] = {}

    def get(self, index: int) -> int:
        fd = self._fds.pop(index, None)
        if fd is None:
            if len(self._fds) >= self.limit:
                os.close(self._fds.pop(next(iter(self._fds))))
            item = self.items[index]
            fd = self.dirs.open(item.parent, item.name, os.O_WRONLY | os.O_NOFOLLOW)
        self._fds[index] = fd  # most recently used last
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def run_restore(repo: Repository, snapshot: Snapshot, options: RestoreOptions,
                listener: Listener = ignore, cancel: threading.Event | None = None) -> RestoreResult:
    return Restore(repo, snapshot, options, listener, cancel).run()
