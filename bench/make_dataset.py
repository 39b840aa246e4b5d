#!/usr/bin/env python3
"""Deterministic mixed data set for backup benchmarks.

The data set imitates a developer's home directory:

* many small files (100 B to 64 KiB, log-uniform) in a nested directory tree,
  mostly source-like text that compresses roughly like real code, plus some
  incompressible and some half-sparse binary files;
* a few large files (64 to 256 MiB at scale 1) made of 1 MiB segments that are
  either random (incompressible) or text-like (compressible), in a per-file
  proportion.

Everything is derived from ``random.Random(seed)``, so the same seed and scale
always give byte-identical files, names and modification times. Bulk bytes come
from ``Random.randbytes`` and from joining pre-built text lines, never from a
per-byte Python loop.

``apply_small_change`` edits the tree the way a day of work would: it rewrites
about 20 small files and inserts a few bytes near the start of one large file,
which shifts everything after the insertion point.

Usage::

    python bench/make_dataset.py DIR [--scale 1.0] [--seed 1]
    python bench/make_dataset.py DIR --change      # apply the small change
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SEED = 1
SMALL_FILES_AT_SCALE_1 = 15_000
SMALL_MIN_BYTES = 100
SMALL_MAX_BYTES = 64 * 1024
FILES_PER_DIRECTORY = 25
MAX_DIRECTORY_DEPTH = 6
MODULES = 30
LINES_PER_MODULE = 2_000
GLOBAL_IDENTIFIERS = 4_000
LOCAL_IDENTIFIERS = 150
SEGMENT_BYTES = 1 << 20
MIB = 1 << 20
BASE_MTIME = 1_700_000_000  # 2023-11-14, fixed so the metadata is reproducible
MTIME_SPREAD_SECONDS = 365 * 24 * 3600

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

KEYWORDS = (
    "def", "return", "if", "else", "elif", "for", "while", "in", "not", "and",
    "or", "import", "from", "class", "self", "None", "True", "False", "try",
    "except", "raise", "with", "as", "yield", "lambda", "const", "let", "var",
    "function", "int", "char", "void", "struct", "static", "unsigned", "fn",
    "pub", "mut", "impl", "match", "switch", "case", "break", "continue",
)
PUNCTUATION = (
    "(", ")", "=", "==", "!=", "+", "-", "*", "/", ",", ":", ".", "{", "}",
    "[", "]", "->", "=>", ";", "<", ">", "+=", "&&", "||", "0", "1", "2",
    "\"\"", "''", "None", "[]", "{}", "()",
)
SYLLABLES = (
    "ba", "co", "de", "fi", "ga", "hu", "ji", "ka", "lo", "me", "nu", "po",
    "qui", "ra", "si", "tu", "ve", "wa", "xe", "yo", "za", "ent", "ion", "er",
    "al", "ing", "ed", "or", "ic", "at", "un", "re", "pre", "con", "dis",
)
TEXT_EXTENSIONS = (".py", ".c", ".h", ".js", ".rs", ".go", ".md", ".txt", ".json", ".toml")
BINARY_EXTENSIONS = (".bin", ".dat", ".png", ".o", ".pyc", ".gz")


@dataclass
class DatasetSummary:
    root: Path
    files: int = 0
    directories: int = 0
    bytes: int = 0
    large_files: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# Vocabulary and text


def make_identifiers(rng: random.Random, count: int) -> list[str]:
    """Invent ``count`` identifiers from syllables, snake_case or camelCase."""
    identifiers = []
    for _ in range(count):
        parts = rng.choices(SYLLABLES, k=rng.randint(2, 6))
        if rng.random() < 0.3:
            name = parts[0] + "".join(p.capitalize() for p in parts[1:])
        else:
            cut = rng.randint(1, len(parts))
            name = "".join(parts[:cut]) + ("_" + "".join(parts[cut:]) if cut < len(parts) else "")
        identifiers.append(name)
    return identifiers


def make_line(rng: random.Random, tokens: list[str]) -> bytes:
    """One indented source-like line: code, a comment, an assignment or blank."""
    roll = rng.random()
    if roll < 0.07:
        return b"\n"
    indent = "    " * rng.choice((0, 1, 1, 2, 2, 2, 3, 3, 4, 5))
    words = rng.choices(tokens, k=rng.randint(2, 14))
    if roll < 0.17:
        text = f"{indent}# {' '.join(w for w in words if w.isidentifier())}"
    elif roll < 0.22:
        text = f"{indent}{words[0]} = {rng.randint(0, 1 << 20)}"
    else:
        text = f"{indent}{' '.join(words)}"
    return (text + "\n").encode()


def make_modules(rng: random.Random, count: int = MODULES) -> list[list[bytes]]:
    """Build ``count`` pools of lines; each pool shares a local set of names.

    Drawing a file's lines from one module gives it the repetition of real
    code (the same few names over and over), so it compresses like source.
    """
    identifiers = make_identifiers(rng, GLOBAL_IDENTIFIERS)
    base_tokens = list(KEYWORDS) * 4 + list(PUNCTUATION) * 6
    modules = []
    for _ in range(count):
        tokens = base_tokens + rng.sample(identifiers, LOCAL_IDENTIFIERS) * 3
        modules.append([make_line(rng, tokens) for _ in range(LINES_PER_MODULE)])
    return modules


def text_bytes(rng: random.Random, modules: list[list[bytes]], size: int) -> bytes:
    """Return exactly ``size`` bytes of text made of lines from one random module."""
    pool = rng.choice(modules)
    average_line = 40
    parts: list[bytes] = []
    produced = 0
    while produced < size:
        batch = rng.choices(pool, k=(size - produced) // average_line + 8)
        chunk = b"".join(batch)
        parts.append(chunk)
        produced += len(chunk)
    return b"".join(parts)[:size]


def sparse_binary_bytes(rng: random.Random, size: int) -> bytes:
    """Return ``size`` bytes alternating random 512 B records and zero padding."""
    record, padding = 512, bytes(512)
    count = size // (2 * record) + 1
    noise = rng.randbytes(count * record)
    blocks = (noise[i * record:(i + 1) * record] + padding for i in range(count))
    return b"".join(blocks)[:size]


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


def pinned_mtime(rng: random.Random) -> int:
    return BASE_MTIME + rng.randrange(MTIME_SPREAD_SECONDS)


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


def pin_directory_mtimes(root: Path) -> None:
    """Give every directory the same fixed mtime (after all files are written)."""
    for directory, _, _ in os.walk(root):
        os.utime(directory, (BASE_MTIME, BASE_MTIME))


def count_directories(root: Path) -> int:
    return sum(len(dirs) for _, dirs, _ in os.walk(root))


def generate(root: Path | str, scale: float = 1.0, seed: int = DEFAULT_SEED) -> DatasetSummary:
    """Create the data set in ``root``, which must be missing or empty."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    root.mkdir(parents=True, exist_ok=True)
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


def edit_small_file(path: Path, rng: random.Random, modules: list[list[bytes]]) -> None:
    """Replace a random stretch of the file with new text of a similar length."""
    data = path.read_bytes()
    patch = text_bytes(rng, modules, rng.randint(16, 400))
    start = rng.randrange(len(data) + 1)
    end = min(len(data), start + rng.randint(0, len(patch)))
    path.write_bytes(data[:start] + patch + data[end:])


def insert_bytes(path: Path, offset: int, payload: bytes) -> None:
    """Insert ``payload`` at ``offset`` by streaming into a sibling and renaming."""
    temporary = path.with_name(path.name + ".insert-tmp")
    with open(path, "rb") as source, open(temporary, "wb") as target:
        target.write(source.read(offset))
        target.write(payload)
        shutil.copyfileobj(source, target, 8 * MIB)
    shutil.copymode(path, temporary)
    os.replace(temporary, path)


def apply_small_change(root: Path | str, seed: int = DEFAULT_SEED) -> list[str]:
    """Edit ~20 small files and insert bytes near the start of one large file.

    Deterministic for a given data set and seed. Returns the changed paths,
    relative to ``root``.
    """
    root = Path(root)
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
        changed = apply_small_change(args.directory, args.seed)
        print(f"changed {len(changed)} files in {time.perf_counter() - started:.1f} s")
        return 0
    try:
        summary = generate(args.directory, args.scale, args.seed)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {summary.files} files in {summary.directories} directories, "
          f"{summary.bytes / MIB:.1f} MiB, in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
