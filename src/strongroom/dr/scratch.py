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
import shutil
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
                remove_tree(place)
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


def remove_tree(path: str) -> None:
    """rmtree that also clears what a restore made read-only (a directory of mode 0555)."""

    def again(function, failed: str, _exc) -> None:
        try:
            os.chmod(os.path.dirname(failed), stat.S_IRWXU)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, stat.S_IRWXU)
            function(failed)
        except OSError:
            pass

    shutil.rmtree(path, onerror=again)
