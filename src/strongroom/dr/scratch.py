"""The scratch area of a rehearsal: where every step restores instead of its
real target, and what is removed afterwards.

A given folder must be new or empty, so nothing of someone's is mixed in with
what the test restores, or removed with it. The default is a private new
folder beside the plan's target base, on the file system the real restore
would use (space and speed are measured where they matter), else in TMPDIR.
Only the step folders, and the area itself when it was made here, are removed.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time

from strongroom.errors import UsageError


class ScratchArea:
    """`path/<step name>` for each step; `remove(step_names)` cleans up and returns its time."""

    def __init__(self, given: str | None, target_base: str) -> None:
        if given is not None:
            self.path = os.path.abspath(given)
            self.made = False
            if os.path.lexists(self.path):
                if os.path.islink(self.path) or not os.path.isdir(self.path):
                    raise UsageError(f"scratch {self.path} is not a directory")
                if os.listdir(self.path):
                    raise UsageError(f"scratch {self.path} is not empty: give an empty or new directory")
            else:
                os.makedirs(self.path, 0o700)
                self.made = True
            return
        parent = os.path.dirname(target_base.rstrip("/")) or "/"
        where = parent if os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK) else None
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
