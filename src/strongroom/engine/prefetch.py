"""Reading a source tree ahead of a backup's walk.

An incremental backup reads little file content: it mostly compares each
entry's metadata with its parent snapshot's. On a cold cache (a nightly run)
each directory listing and each inode is a read from the disk, and the walk,
one thread, waits for every one of them in turn. A helper process walks the
same sources ahead of it, in the walk's order and with its rules (excludes,
excluded contents, one file system), so the kernel has read what the walk
asks for by the time it asks.

A backup that reads every file (the first, or `--full`) reads its small
files in the walking thread itself (engine/backup.py), one after another,
so on a cold cache it would wait for the disk once per file. There the
helper also asks the kernel to read each small file ahead
(POSIX_FADV_WILLNEED: the reads are queued, not waited for, and nothing is
read into the helper), at most WINDOW_FILES files or WINDOW_BYTES bytes
ahead of what the backup has read, which the backup tells it on its stdin:
the page cache holds a window, not the tree.

The helper is a separate interpreter started with `-I -S`: it holds no lock
or GIL of the backup's, imports only the standard library and the exclusion
rules, is given its work on stdin (no paths in argv, and no environment: it
needs no secret), reads nothing but metadata, writes nothing, and is
stopped when the backup ends. When it cannot start, the backup goes on as
it would have without it; what it reads is never trusted, only cached.
"""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys

from strongroom.engine.walk import ExcludeRules

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CODE = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from strongroom.engine.prefetch import main; main()")
# How far the contents read ahead may run before the backup (small files).
WINDOW_FILES = 2048
WINDOW_BYTES = 32 << 20


class Helper:
    """The running helper; `advance` tells it how far the backup has read."""

    def __init__(self, proc: subprocess.Popen, contents: bool) -> None:
        self.proc = proc
        self._fd = proc.stdin.fileno() if contents else -1

    def advance(self, files: int, size: int) -> None:
        """The backup has read `files` small files of `size` bytes in all (the
        helper's own count of the files it read ahead, in the same order).
        Never waits: a helper that does not listen is only left behind."""
        if self._fd < 0:
            return
        try:
            os.write(self._fd, b"%d %d\n" % (files, size))
        except OSError:  # full (it is behind) or gone: it will do without
            pass


def start(paths: list[str], rules: ExcludeRules, contents_below: int = 0) -> Helper | None:
    """Start the helper on `paths`; None when it could not be started.
    `contents_below`: read ahead the contents of files smaller than this
    (not empty), paced by `Helper.advance`; 0 for metadata only."""
    if not sys.executable:
        return None
    job = {"paths": list(paths), "patterns": list(rules.patterns), "if_present": list(rules.if_present),
           "caches": rules.caches, "one_file_system": rules.one_file_system, "contents_below": contents_below}
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _CODE, _PACKAGE_ROOT],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={}, close_fds=True)
    except (OSError, ValueError):
        return None
    helper = Helper(proc, contents=contents_below > 0)
    try:
        proc.stdin.write(json.dumps(job).encode() + b"\n")
        proc.stdin.flush()
        if contents_below > 0:
            os.set_blocking(proc.stdin.fileno(), False)
        else:
            proc.stdin.close()
    except OSError:  # it died already: nothing is lost but the head start
        stop(helper)
        return None
    return helper


def stop(helper: Helper | None) -> None:
    if helper is None:
        return
    proc = helper.proc
    try:
        proc.kill()
    except OSError:
        pass
    proc.wait()
    try:
        proc.stdin.close()
    except OSError:
        pass


class _Pace:
    """The helper's side of the window: how far the backup has read (from
    stdin, "files bytes" lines) and how far the read-ahead has come."""

    def __init__(self, fd: int, pending: bytes) -> None:
        self.fd = fd
        self.pending = pending
        self.told = (0, 0)
        self.files = 0
        self.size = 0
        self._take()

    def _take(self) -> None:
        *lines, self.pending = self.pending.split(b"\n")
        if lines:
            files, size = lines[-1].split()
            self.told = (int(files), int(size))

    def _listen(self, timeout: float | None) -> None:
        if select.select([self.fd], [], [], timeout)[0]:
            data = os.read(self.fd, 65536)
            if not data:
                raise SystemExit(0)  # the backup has ended
            self.pending += data
            self._take()

    def fetch(self, path: bytes, size: int) -> None:
        """Read one small file ahead, waiting first while the window is full."""
        self.files += 1
        self.size += size
        self._listen(0)
        while self.files - self.told[0] > WINDOW_FILES or self.size - self.told[1] > WINDOW_BYTES:
            self._listen(None)
        if self.files > self.told[0]:  # else the backup has read it already
            _read_ahead(path)


def _read_ahead(path: bytes) -> None:
    """Ask for the file's pages without waiting for them or reading them here.
    Opened as the backup opens it (not following a link, not blocking on a
    fifo put there since the listing), and only a regular file is advised."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | getattr(os, "O_NOATIME", 0))
    except PermissionError:
        try:
            fd = os.open(path, flags)
        except OSError:
            return
    except OSError:
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def walk(top: bytes, rules: ExcludeRules, pace: _Pace | None = None, contents_below: int = 0) -> int:
    """Read the metadata of everything below `top` the backup's walk will
    read, in its order (names sorted, each directory as it is met), and with
    `pace` the contents of its regular files smaller than `contents_below`
    (a hard-linked one once); the number of entries read."""
    try:
        root = os.lstat(top)
    except OSError:
        return 0
    if not stat.S_ISDIR(root.st_mode):
        return 1
    excludes = rules.excludes_path if rules.patterns else None
    pending = [iter(_listing(top, rules))]
    count = 1
    linked: set[tuple[int, int]] = set()
    while pending:
        entry = next(pending[-1], None)
        if entry is None:
            pending.pop()
            continue
        if excludes is not None and excludes(entry.path):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        count += 1
        if stat.S_ISDIR(st.st_mode) and not (rules.one_file_system and st.st_dev != root.st_dev):
            pending.append(iter(_listing(entry.path, rules)))
        elif pace is not None and stat.S_ISREG(st.st_mode) and 0 < st.st_size < contents_below:
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in linked:
                    continue
                linked.add((st.st_dev, st.st_ino))
            pace.fetch(entry.path, st.st_size)
    return count


def _listing(path: bytes, rules: ExcludeRules) -> list:
    try:
        with os.scandir(path) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError:
        return []
    if entries and (rules.if_present or rules.caches) and rules.excludes_dir_contents(
            path, {e.name for e in entries}):
        return []
    return entries


def main() -> None:
    """The helper: its job from stdin, then the walk; it prints nothing."""
    try:
        os.nice(10)
    except OSError:
        pass
    line, rest = _first_line(0)
    job = json.loads(line)
    rules = ExcludeRules(tuple(job["patterns"]), tuple(job["if_present"]), bool(job["caches"]), None,
                         bool(job["one_file_system"]))
    below = int(job.get("contents_below", 0))
    pace = _Pace(0, rest) if below > 0 else None
    for path in job["paths"]:
        walk(os.fsencode(path), rules, pace, below)


def _first_line(fd: int) -> tuple[bytes, bytes]:
    """The job (up to a newline or the end of the input) and what came after it."""
    data = b""
    while b"\n" not in data:
        more = os.read(fd, 65536)
        if not more:
            return data, b""
        data += more
    line, _, rest = data.partition(b"\n")
    return line, rest
