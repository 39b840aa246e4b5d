"""The scratch area of a rehearsal: where every step restores instead of its
real target, and what is removed afterwards.

A given folder must be new or empty, so nothing of someone's is mixed in with
what the test restores, or removed with it. The default is a private new
folder beside the plan's target base, on the file system the real restore
would use (space and speed are measured where they matter), else in TMPDIR.
Only the step folders, and the area itself when it was made here, are removed.

The area never overlaps a step's real target, symlinks resolved: inside one,
the rehearsal would write into (and clean up within) the live tree it must
leave alone; holding one, its step folders could be the real ones. A target
of `/` holds everything and is the one exception. The default place moves to
TMPDIR when the one beside the target base lies inside a real target.

A default area has an owner file beside it (`NAME.owner`: host, pid and the
pid's start time) for as long as a rehearsal uses it. A rehearsal killed
with -9 cannot clean up; the next one beside it names what it left behind
(a warning), and removes nothing: what is in it now is not known.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from collections.abc import Sequence

from strongroom.errors import UsageError
from strongroom.services.session_owner import owner_ended, this_process


PREFIX = "strongroom-dr-test-"
OWNER_SUFFIX = ".owner"  # beside a default area: the process using it (a step may be named anything)
MAX_LEFT_BEHIND = 20


class ScratchArea:
    """`path/<step name>` for each step; `remove(step_names)` cleans up and returns its time.
    `left_behind`: default areas beside this one whose rehearsal was killed before its clean-up."""

    _owner_file: str | None = None
    left_behind: tuple[str, ...] = ()

    def __init__(self, given: str | None, target_base: str, real_targets: Sequence[str] = ()) -> None:
        targets = [os.path.realpath(t) for t in real_targets]
        if given is not None:
            path = os.path.abspath(given)
            if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
                raise UsageError(f"scratch {path} is not a directory")
            self.path = os.path.realpath(path)
            clash = _overlap(self.path, targets)
            if clash is not None:
                raise UsageError(f"scratch {path} overlaps the real target {clash}: a test never writes "
                                 "there; give a directory outside every target")
            self.made = False
            if os.path.lexists(self.path):
                if os.listdir(self.path):
                    raise UsageError(f"scratch {path} is not empty: give an empty or new directory")
            else:
                os.makedirs(self.path, 0o700)
                self.made = True
            return
        parent = os.path.dirname(target_base.rstrip("/")) or "/"
        where = parent if os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK) else None
        if where is not None and _overlap(os.path.join(os.path.realpath(where), "strongroom-dr-test-"),
                                          targets) is not None:
            where = None
        if _overlap(os.path.join(os.path.realpath(where or tempfile.gettempdir()), "strongroom-dr-test-"),
                    targets) is not None:
            raise UsageError("the temporary folder lies inside a real target of the plan: give --scratch DIR "
                             "outside every target")
        self.path = tempfile.mkdtemp(prefix=PREFIX, dir=where)
        self.made = True
        self._owner_file = self.path + OWNER_SUFFIX
        self.left_behind = _left_behind(os.path.dirname(self.path), self.path)
        try:
            with open(self._owner_file, "x", encoding="utf-8") as f:
                json.dump(this_process(), f)
        except OSError:
            self._owner_file = None  # only a later warning is lost

    def step(self, name: str) -> str:
        return os.path.join(self.path, name)

    def remove(self, step_names: list[str]) -> tuple[float, list[str]]:
        """Remove what the steps restored; (seconds it took, problems in words)."""
        t0 = time.monotonic()
        problems = []
        for name in step_names:
            place = self.step(name)
            if os.path.lexists(place):
                problems += remove_tree(place)
        self.release()
        if self.made:
            try:
                os.rmdir(self.path)
            except OSError as e:
                problems.append(f"cannot remove the scratch area {self.path}: {e.strerror}")
        return time.monotonic() - t0, problems


    def release(self) -> None:
        """This process is done with the area (removed, or kept as asked): no later test warns of it."""
        if self._owner_file is not None:
            try:
                os.unlink(self._owner_file)
            except OSError:
                pass
            self._owner_file = None


def _left_behind(folder: str, mine: str) -> tuple[str, ...]:
    """Default areas in `folder` whose owner stamp names a process of this host that has ended.
    They are only named, never removed: what is in them now is not known."""
    found = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if len(found) >= MAX_LEFT_BEHIND:
                    break
                if not (entry.name.startswith(PREFIX) and entry.name.endswith(OWNER_SUFFIX)):
                    continue
                area = os.path.join(folder, entry.name[:-len(OWNER_SUFFIX)])
                if area == mine or not os.path.isdir(area) or os.path.islink(area):
                    continue
                try:
                    with open(entry.path, encoding="utf-8") as f:
                        owner = json.loads(f.read(4096))
                except (OSError, ValueError):
                    continue
                if owner_ended(owner):
                    found.append(area)
    except OSError:
        return ()
    return tuple(found)


def _overlap(path: str, targets: Sequence[str]) -> str | None:
    """The first target `path` is, lies in or holds (all real paths), or None."""
    for target in targets:
        if target == "/":
            continue
        if path == target or path.startswith(target + "/") or target.startswith(path.rstrip("/") + "/"):
            return target
    return None


MAX_PROBLEMS = 20


def _mount_points_below(path: str) -> set[str]:
    """The mount points at or below `path` (/proc/self/mountinfo; none known without it)."""
    real = os.path.realpath(path)
    found = set()
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f.read(16 << 20).splitlines():
                fields = line.split(b" ")
                if len(fields) < 5:
                    continue
                point = _unescape(fields[4])
                if point == real or point.startswith(real.rstrip("/") + "/"):
                    found.add(os.path.join(path, os.path.relpath(point, real)) if point != real else path)
    except OSError:
        pass
    return {os.path.normpath(p) for p in found}


def _unescape(field: bytes) -> str:
    """A mountinfo path: space, tab, newline and backslash are written as \\ooo."""
    out = bytearray()
    i = 0
    while i < len(field):
        if field[i] == 0x5C and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(int(field[i + 1:i + 4], 8) & 0xFF)
            i += 4
        else:
            out.append(field[i])
            i += 1
    return os.fsdecode(bytes(out))


def remove_tree(path: str) -> list[str]:
    """Remove what a restore made below `path`; the problems, in words (at most MAX_PROBLEMS).

    Never crosses into another file system: a directory on another device
    than `path` (a mount a command made inside the scratch area, a bind mount
    of real data) is left alone with all it holds, and said. Symlinks are
    removed, never followed. Directories a restore made read-only (0555) are
    given write permission back first. The walk keeps its own stack: a tree
    as deep as a hostile snapshot makes it costs no recursion. A bind mount of
    a folder of the same file system has the same device, so the mount points
    are also read from /proc/self/mountinfo."""
    problems: list[str] = []

    def problem(text: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(text)

    try:
        top = os.lstat(path)
    except OSError as e:
        return [f"cannot remove {path}: {e.strerror}"]
    mounts = _mount_points_below(path)
    if not stat.S_ISDIR(top.st_mode):
        try:
            os.unlink(path)
        except OSError as e:
            problem(f"cannot remove {path}: {e.strerror}")
        return problems
    stack: list[tuple[str, bool]] = [(path, False)]
    while stack:
        folder, emptied = stack.pop()
        if emptied:
            try:
                os.rmdir(folder)
            except OSError as e:
                problem(f"cannot remove {folder}: {e.strerror}")
            continue
        try:
            st = os.lstat(folder)
            if st.st_dev != top.st_dev or folder in mounts:
                problem(f"left {folder} alone: it is another file system (a mount), and what is in it was "
                        "not restored by the test")
                continue
            if stat.S_IMODE(st.st_mode) & stat.S_IRWXU != stat.S_IRWXU:
                os.chmod(folder, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
            stack.append((folder, True))
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, False))
                    else:
                        try:
                            os.unlink(entry.path)
                        except OSError as e:
                            problem(f"cannot remove {entry.path}: {e.strerror}")
        except OSError as e:
            problem(f"cannot remove {folder}: {e.strerror}")
    return problems
