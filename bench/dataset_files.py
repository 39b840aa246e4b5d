"""What both data set shapes share: the summary, pinned times, file edits."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from textgen import text_bytes

BASE_MTIME = 1_700_000_000  # 2023-11-14, fixed so the metadata is reproducible
MTIME_SPREAD_SECONDS = 365 * 24 * 3600


@dataclass
class DatasetSummary:
    root: Path
    files: int = 0
    directories: int = 0
    bytes: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    large_files: list[str] = field(default_factory=list)


def pinned_mtime(rng: random.Random) -> int:
    return BASE_MTIME + rng.randrange(MTIME_SPREAD_SECONDS)


def pin_directory_mtimes(root: Path) -> None:
    """Give every directory the same fixed mtime (after all files are written)."""
    for directory, _, _ in os.walk(root):
        os.utime(directory, (BASE_MTIME, BASE_MTIME))


def count_directories(root: Path) -> int:
    """Directories below ``root``; a symlink to a directory is not one."""
    return sum(not os.path.islink(os.path.join(top, name))
               for top, dirs, _ in os.walk(root) for name in dirs)


def edit_small_file(path: Path, rng: random.Random, modules: list[list[bytes]]) -> None:
    """Replace a random stretch of the file with new text of a similar length,
    in place (the same inode, as an editor saving over it would)."""
    data = path.read_bytes()
    patch = text_bytes(rng, modules, rng.randint(16, 400))
    start = rng.randrange(len(data) + 1)
    end = min(len(data), start + rng.randint(0, len(patch)))
    path.write_bytes(data[:start] + patch + data[end:])
