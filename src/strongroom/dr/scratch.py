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
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence

from strongroom.errors import UsageError


class ScratchArea:
    """`path/<step name>` for each step; `remove(step_names)` cleans up and returns its time."""

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
        self.path = tempfile.mkdtemp(prefix="strongroom-dr-test-", dir=where)
        self.made = True

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
        if self.made:
            try:
                os.rmdir(self.path)
            except OSError as e:
                problems.append(f"cannot remove the scratch area {self.path}: {e.strerror}")
        return time.monotonic() - t0, problems


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
