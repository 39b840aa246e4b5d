"""Reading a source tree's metadata ahead of an incremental backup's walk.

An incremental backup reads little file content: it mostly compares each
entry's metadata with its parent snapshot's. On a cold cache (a nightly run)
each directory listing and each inode is a read from the disk, and the walk,
one thread, waits for every one of them in turn. A helper process walks the
same sources ahead of it, in the walk's order and with its rules (excludes,
excluded contents, one file system), so the kernel has read what the walk
asks for by the time it asks.

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
import stat
import subprocess
import sys

from strongroom.engine.walk import ExcludeRules

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CODE = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from strongroom.engine.prefetch import main; main()")


def start(paths: list[str], rules: ExcludeRules) -> subprocess.Popen | None:
    """Start the helper on `paths`; None when it could not be started."""
    if not sys.executable:
        return None
    job = {"paths": list(paths), "patterns": list(rules.patterns), "if_present": list(rules.if_present),
           "caches": rules.caches, "one_file_system": rules.one_file_system}
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _CODE, _PACKAGE_ROOT],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={}, close_fds=True)
    except (OSError, ValueError):
        return None
    try:
        with proc.stdin:
            proc.stdin.write(json.dumps(job).encode())
    except OSError:  # it died already: nothing is lost but the head start
        stop(proc)
        return None
    return proc


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    try:
        proc.kill()
    except OSError:
        pass
    proc.wait()


def walk(top: bytes, rules: ExcludeRules) -> int:
    """Read the metadata of everything below `top` the backup's walk will
    read, in its order (names sorted, each directory as it is met); the
    number of entries read."""
    try:
        root = os.lstat(top)
    except OSError:
        return 0
    if not stat.S_ISDIR(root.st_mode):
        return 1
    excludes = rules.excludes_path if rules.patterns else None
    pending = [iter(_listing(top, rules))]
    count = 1
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
    job = json.loads(sys.stdin.buffer.read())
    rules = ExcludeRules(tuple(job["patterns"]), tuple(job["if_present"]), bool(job["caches"]), None,
                         bool(job["one_file_system"]))
    for path in job["paths"]:
        walk(os.fsencode(path), rules)
