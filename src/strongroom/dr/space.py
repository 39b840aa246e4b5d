"""Is there room at a step's target? Asked before the step writes anything.

The space counted is what an unprivileged user may take (f_bavail), for
root too: the blocks a file system keeps back for root are there so that
the system goes on running when a disk fills, and a recovery must not eat
them. What already sits at the target and an "if-changed" restore will
leave alone (`existing_bytes`, the caller's count) is subtracted from what
the restore needs; a margin of 1 % (at most 16 MiB) is added for the
directories, metadata and blocks a file's last bytes round up to. File
systems that report no inode counts (f_files == 0, e.g. btrfs) are taken
at their word that inodes are not what runs out.
"""

from __future__ import annotations

import math
import os

from strongroom.errors import StrongroomError
from strongroom.words import human_size

MARGIN_SHARE = 0.01
MARGIN_MAX = 16 << 20


class InsufficientSpace(StrongroomError):
    """The target's file system has too little room (or too few inodes) for a restore."""


def nearest_existing(path: str) -> str:
    """`path` itself or the closest directory above it that exists."""
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_target(target: str) -> None:
    """Refuse, before any command runs or anything is written, a target that is
    not a directory (a file, a symlink to one) or that cannot be written: on a
    read-only file system, or not this user's to write (os.access answers
    EROFS for root too)."""
    if os.path.lexists(target) and not os.path.isdir(target):
        raise StrongroomError(f"target {target} is not a directory: nothing was restored")
    where = nearest_existing(target)
    if not os.path.isdir(where):
        raise StrongroomError(f"target {target}: {where} is not a directory: nothing was restored")
    if not os.access(where, os.W_OK | os.X_OK):
        raise StrongroomError(f"target {target} cannot be written ({where} is read-only or not this "
                              "user's to write): nothing was restored")


def margin(needed: int) -> int:
    return min(math.ceil(needed * MARGIN_SHARE), MARGIN_MAX)


def check_free_space(target: str, needed_bytes: int, existing_bytes: int = 0, needed_files: int = 0) -> None:
    """Raise InsufficientSpace when the file system `target` is (or would be)
    on has less room than `needed_bytes` minus `existing_bytes`, plus the
    margin, or fewer free inodes than `needed_files`."""
    where = nearest_existing(target)
    try:
        st = os.statvfs(where)
    except OSError as e:
        raise StrongroomError(f"cannot tell the free space at {target}: {e.strerror}") from None
    needed = max(0, needed_bytes - max(0, existing_bytes))
    wanted = needed + margin(needed)
    free = st.f_bavail * st.f_frsize
    if wanted > free:
        raise InsufficientSpace(
            f"not enough space at {target}: the restore needs {human_size(wanted)} "
            f"({human_size(needed)} and a margin of {human_size(wanted - needed)}), "
            f"{human_size(free)} is free{_on(where, target)}")
    if needed_files > 0 and st.f_files > 0 and needed_files > st.f_favail:
        raise InsufficientSpace(
            f"not enough inodes at {target}: the restore makes {needed_files} files and directories, "
            f"{st.f_favail} inodes are free{_on(where, target)}")


def _on(where: str, target: str) -> str:
    return "" if where == os.path.abspath(target) else f" (on the file system of {where})"
