"""One real recovery at a time into a target.

Two `dr run` of one plan (or of two plans sharing a target) started together
would restore into the same folders at once and each report a pass over a
tree the other was writing. A run therefore holds an exclusive flock on a
file per real target (symlinks resolved), in `dr-locks/` beside the catalog,
for as long as it runs; the second run is refused before it writes anything.
flock belongs to the open file: a run killed with -9 holds nothing after it,
so no stale lock is ever left to break. Rehearsals restore into a scratch
area of their own and take none.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from typing import TYPE_CHECKING

from strongroom.errors import RepositoryLocked, StrongroomError

if TYPE_CHECKING:
    from strongroom.services.backup_service import BackupService


def locks_folder(service: BackupService) -> str:
    """Beside the catalog: every process of this machine that shares the catalog sees them."""
    return os.path.join(os.path.dirname(os.path.abspath(service.catalog.path)), "dr-locks")


class TargetBusy(RepositoryLocked):
    """Another run is restoring into one of the targets (exit code 11, as a lock held)."""


class TargetLocks:
    """`acquire()` takes every target's lock or none; `release()` lets them go."""

    def __init__(self, folder: str, targets: list[str]) -> None:
        self.folder = folder
        self.targets = sorted({os.path.realpath(t) for t in targets})
        self._held: list[int] = []

    def acquire(self) -> None:
        try:
            os.makedirs(self.folder, 0o700, exist_ok=True)
        except OSError as e:
            raise StrongroomError(f"cannot make the folder of the DR target locks {self.folder}: {e.strerror}") \
                from None
        for target in self.targets:
            name = hashlib.sha256(target.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".lock"
            try:
                fd = os.open(os.path.join(self.folder, name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as e:
                self.release()
                raise StrongroomError(f"cannot open the DR target lock in {self.folder}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                self.release()
                raise TargetBusy(f"another DR run is restoring into {target}: wait for it to finish") from None
            self._held.append(fd)

    def release(self) -> None:
        while self._held:
            os.close(self._held.pop())
