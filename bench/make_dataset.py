#!/usr/bin/env python3
"""Deterministic data sets for backup benchmarks, in two shapes.

``home`` (the default, ``home_shape.py``) is shaped like a person's home
directory: at scale 1 about 1 GB in about 19,800 files and 2,500 directories,
many folders of a few files and some of hundreds, symlinks (some dangling,
some to folders), a few hard links, large random, zero-filled and text files
and log files. Its small change rewrites 1 % of the small files and appends
32 MiB to one log file.

``classic`` is the old warm-cache set: few, large folders.

* many small files (100 B to 64 KiB, log-uniform) in a nested directory tree,
  mostly source-like text that compresses roughly like real code, plus some
  incompressible and some half-sparse binary files;
* a few large files (64 to 256 MiB at scale 1) made of 1 MiB segments that are
  either random (incompressible) or text-like (compressible), in a per-file
  proportion.

Its small change rewrites about 20 small files and inserts a few bytes near
the start of one large file, which shifts everything after the insertion point.

Everything is derived from ``random.Random(seed)``, so the same shape, seed
and scale always give byte-identical files, names and modification times.
Bulk bytes come from ``Random.randbytes`` and from joining pre-built text
lines, never from a per-byte Python loop.

Usage::

    python bench/make_dataset.py DIR [--shape home|classic] [--scale 1.0] [--seed 1]
    python bench/make_dataset.py DIR --change [--shape ...] [--scale ...]   # the small change
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dataset_files import (DatasetSummary, count_directories, edit_small_file,  # noqa: E402
                           pin_directory_mtimes, pinned_mtime)
from home_shape import apply_home_change, generate_home  # noqa: E402
from textgen import make_identifiers, make_modules, sparse_binary_bytes, text_bytes  # noqa: E402

DEFAULT_SEED = 1
SMALL_FILES_AT_SCALE_1 = 15_000
SMALL_MIN_BYTES = 100
SMALL_MAX_BYTES = 64 * 1024
FILES_PER_DIRECTORY = 25
MAX_DIRECTORY_DEPTH = 6
SEGMENT_BYTES = 1 << 20
MIB = 1 << 20
SHAPES = ("home", "classic")
DEFAULT_SHAPE = "home"

# (relative path, size in MiB at scale 1, fraction of random segments)
LARGE_FILES = (
    ("media/holiday-footage.mkv", 256, 0.95),
    ("vm/disk-image.qcow2", 256, 0.5),
    ("db/warehouse.sqlite", 192, 0.25),
    ("logs/server-2023.log", 128, 0.0),
)

# Share of small files per kind; the rest are source-like text.
RANDOM_BINARY_SHARE = 0.08
SPARSE_BINARY_SHARE = 0.05

CHANGED_SMALL_FILES = 20
INSERTED_BYTES = b"\x00strongroom-bench-insert\x00"

TEXT_EXTENSIONS = (".py", ".c", ".h", ".js", ".rs", ".go", ".md", ".txt", ".json", ".toml")
BINARY_EXTENSIONS = (".bin", ".dat", ".png", ".o", ".pyc", ".gz")


# --------------------------------------------------------------------------
# Tree layout


def make_directories(rng: random.Random, count: int) -> list[Path]:
    """Grow a random directory tree of ``count`` relative paths under ``src``."""
    identifiers = make_identifiers(rng, count)
    directories = [Path("src")]
    for index in range(1, count):
        parent = rng.choice(directories)
        if len(parent.parts) >= MAX_DIRECTORY_DEPTH:
            parent = Path("src")
        directories.append(parent / f"{identifiers[index]}{index}")
    return directories


def small_file_size(rng: random.Random) -> int:
    """Draw a log-uniform size between SMALL_MIN_BYTES and SMALL_MAX_BYTES."""
    span = math.log(SMALL_MAX_BYTES / SMALL_MIN_BYTES)
    return int(SMALL_MIN_BYTES * math.exp(rng.random() * span))


def small_file_content(rng: random.Random, modules: list[list[bytes]], size: int) -> tuple[bytes, bool]:
    """Return (content, is_binary) for one small file of ``size`` bytes."""
    roll = rng.random()
    if roll < RANDOM_BINARY_SHARE:
        return rng.randbytes(size), True
    if roll < RANDOM_BINARY_SHARE + SPARSE_BINARY_SHARE:
        return sparse_binary_bytes(rng, size), True
    return text_bytes(rng, modules, size), False


# --------------------------------------------------------------------------
# Writers


def write_small_files(root: Path, rng: random.Random, modules: list[list[bytes]], count: int,
                      summary: DatasetSummary) -> None:
    directories = make_directories(rng, max(1, count // FILES_PER_DIRECTORY))
    for directory in directories:
        (root / directory).mkdir(parents=True, exist_ok=True)
    names = make_identifiers(rng, count)
    for index in range(count):
        content, binary = small_file_content(rng, modules, small_file_size(rng))
        extension = rng.choice(BINARY_EXTENSIONS if binary else TEXT_EXTENSIONS)
        path = root / rng.choice(directories) / f"{names[index]}_{index:05d}{extension}"
        path.write_bytes(content)
        mtime = pinned_mtime(rng)
        os.utime(path, (mtime, mtime))
        summary.files += 1
        summary.bytes += len(content)


def write_large_file(path: Path, rng: random.Random, modules: list[list[bytes]], size: int,
                     random_fraction: float) -> None:
    """Stream ``size`` bytes of random and text segments into ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        remaining = size
        while remaining > 0:
            length = min(SEGMENT_BYTES, remaining)
            if rng.random() < random_fraction:
                out.write(rng.randbytes(length))
            else:
                out.write(text_bytes(rng, modules, length))
            remaining -= length
    mtime = pinned_mtime(rng)
    os.utime(path, (mtime, mtime))


def write_large_files(root: Path, rng: random.Random, modules: list[list[bytes]], scale: float,
                      summary: DatasetSummary) -> None:
    for relative, mib, random_fraction in LARGE_FILES:
        size = max(SEGMENT_BYTES, int(mib * MIB * scale))
        write_large_file(root / relative, rng, modules, size, random_fraction)
        summary.files += 1
        summary.bytes += size
        summary.large_files.append(relative)


def generate(root: Path | str, scale: float = 1.0, seed: int = DEFAULT_SEED,
             shape: str = DEFAULT_SHAPE) -> DatasetSummary:
    """Create the data set in ``root``, which must be missing or empty."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    root.mkdir(parents=True, exist_ok=True)
    if shape == "home":
        return generate_home(root, scale, seed)
    return generate_classic(root, scale, seed)


def generate_classic(root: Path, scale: float, seed: int) -> DatasetSummary:
    rng = random.Random(seed)
    modules = make_modules(rng)
    summary = DatasetSummary(root=root)
    write_small_files(root, rng, modules, max(10, round(SMALL_FILES_AT_SCALE_1 * scale)), summary)
    write_large_files(root, rng, modules, scale, summary)
    pin_directory_mtimes(root)
    summary.directories = count_directories(root)
    return summary


# --------------------------------------------------------------------------
# The small change


def list_small_files(root: Path) -> list[Path]:
    large = {root / relative for relative, _, _ in LARGE_FILES}
    files = [Path(d) / name for d, _, names in os.walk(root) for name in names]
    return sorted(p for p in files if p not in large)


def insert_bytes(path: Path, offset: int, payload: bytes) -> None:
    """Insert ``payload`` at ``offset`` by streaming into a sibling and renaming."""
    temporary = path.with_name(path.name + ".insert-tmp")
    with open(path, "rb") as source, open(temporary, "wb") as target:
        target.write(source.read(offset))
        target.write(payload)
        shutil.copyfileobj(source, target, 8 * MIB)
    shutil.copymode(path, temporary)
    os.replace(temporary, path)


def apply_small_change(root: Path | str, seed: int = DEFAULT_SEED, shape: str = DEFAULT_SHAPE,
                       scale: float = 1.0) -> list[str]:
    """Apply the shape's small change; return the changed paths, relative to
    ``root``. Deterministic for a given data set, seed and scale."""
    if shape == "home":
        return apply_home_change(Path(root), seed, scale)
    return apply_classic_change(Path(root), seed)


def apply_classic_change(root: Path, seed: int) -> list[str]:
    """Edit ~20 small files and insert bytes near the start of one large file."""
    rng = random.Random(f"small-change-{seed}")
    modules = make_modules(rng, 1)
    small = list_small_files(root)
    chosen = rng.sample(small, min(CHANGED_SMALL_FILES, len(small)))
    for path in chosen:
        edit_small_file(path, rng, modules)
    large = root / rng.choice(LARGE_FILES)[0]
    offset = min(large.stat().st_size, rng.randrange(4096, 65536))
    insert_bytes(large, offset, INSERTED_BYTES)
    return sorted(str(p.relative_to(root)) for p in chosen + [large])


# --------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="target directory (missing or empty)")
    parser.add_argument("--shape", choices=SHAPES, default=DEFAULT_SHAPE,
                        help="home: shaped like a home directory; classic: the old warm-cache set "
                             "of few, large folders (default: %(default)s)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="size factor; 1.0 is about 1 GiB (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="PRNG seed (default: %(default)s)")
    parser.add_argument("--change", action="store_true",
                        help="apply the deterministic small change to an existing data set")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    if args.change:
        changed = apply_small_change(args.directory, args.seed, args.shape, args.scale)
        print(f"changed {len(changed)} files in {time.perf_counter() - started:.1f} s")
        return 0
    try:
        summary = generate(args.directory, args.scale, args.seed, args.shape)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {summary.files} files ({summary.hardlinks} hard links) and {summary.symlinks} symlinks "
          f"in {summary.directories} directories, "
          f"{summary.bytes / MIB:.1f} MiB, in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
