"""The `home` data set: a tree shaped like a person's home directory.

At scale 1, about 1 GB in about 19,800 files and 2,500 directories:

* thousands of directories nested a few levels below a fixed skeleton
  (Documents, Downloads, Pictures, Projects, .config, .cache, .local, ...),
  each given a log-normal weight, so most hold a few files and a few hold
  hundreds (no single directory of tens of thousands: that belongs to the
  scale tests);
* small files, 60 B to 64 KiB (log-uniform): mostly source-like text, some
  random binary, some half-sparse, some zero-filled, some empty;
* a few hundred medium files, 64 KiB to 2 MiB, mostly incompressible (photos,
  music, documents) under the media folders;
* a few large files scaled with the data set: random (a video, an archive),
  zero-filled (a virtual machine's disk), text (a mail archive), mixed (a
  database);
* log files: rotated logs and one growing log;
* about 135 symlinks (to files, to folders, and some dangling, all relative)
  and a few hard links.

Counts and the large files' sizes scale with ``scale``. Everything comes from
``random.Random(seed)`` in a fixed order, so a seed and scale give
byte-identical files, names, link targets and modification times.

The small change (``apply_home_change``) rewrites a stretch of 1 % of the
small files in place and appends 32 MiB (times the scale) to the growing log.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

from dataset_files import (BASE_MTIME, MTIME_SPREAD_SECONDS, DatasetSummary, count_directories,
                           edit_small_file, pin_directory_mtimes, pinned_mtime)
from textgen import log_bytes, make_identifiers, make_log_messages, make_modules, sparse_binary_bytes, text_bytes

MIB = 1 << 20
SEGMENT_BYTES = MIB

DIRECTORIES_AT_SCALE_1 = 2_500
FILES_AT_SCALE_1 = 19_800  # every regular file name, hard links included
SYMLINKS_AT_SCALE_1 = 135
HARDLINKS_AT_SCALE_1 = 8
MEDIUM_FILES_AT_SCALE_1 = 400
ROTATED_LOGS_AT_SCALE_1 = 30
MAX_DEPTH = 8
DIRECTORY_WEIGHT_SIGMA = 1.6  # log-normal spread of files per directory

SMALL_MIN_BYTES, SMALL_MAX_BYTES = 60, 64 * 1024
MEDIUM_MIN_BYTES, MEDIUM_MAX_BYTES = 64 * 1024, 2 * MIB
ROTATED_MIN_BYTES, ROTATED_MAX_BYTES = 128 * 1024, 4 * MIB

SKELETON = (
    ".cache", ".cache/builder", ".cache/builder/logs", ".config", ".local", ".local/share",
    ".local/share/notes", ".local/state", ".local/state/mailer", ".local/state/mailer/logs",
    ".local/state/syncd", ".local/state/syncd/logs", ".ssh", "Desktop", "Documents",
    "Documents/mail", "Downloads", "Music", "Pictures", "Projects", "Videos", "Videos/2023",
    "VirtualBox VMs", "VirtualBox VMs/devbox",
)
MEDIA_ROOTS = ("Documents", "Downloads", "Music", "Pictures", "Videos")
LOG_DIRECTORIES = (".local/state/syncd/logs", ".local/state/mailer/logs", ".cache/builder/logs")
GROWING_LOG = ".local/state/syncd/logs/syncd.log"
GROWING_LOG_MIB = 48
APPENDED_MIB = 32

# (relative path, MiB at scale 1, content: random, zero, text or mixed)
LARGE_FILES = (
    ("Videos/2023/holiday.mp4", 128, "random"),
    ("Downloads/dataset-2023.tar.zst", 64, "random"),
    ("VirtualBox VMs/devbox/devbox-disk1.vdi", 160, "zero"),
    ("Documents/mail/archive.mbox", 64, "text"),
    (".local/share/notes/history.sqlite", 48, "mixed"),
)

# Shares of the small files by kind; the rest are source-like text.
EMPTY_SHARE, ZERO_SHARE, RANDOM_SHARE, SPARSE_SHARE = 0.02, 0.02, 0.08, 0.04
MEDIUM_TEXT_SHARE = 0.55
DIRECTORY_SYMLINK_SHARE, DANGLING_SYMLINK_SHARE = 0.25, 0.15
CHANGED_SHARE = 0.01

COMMON_DIRECTORY_NAMES = ("src", "lib", "tests", "docs", "assets", "build", "config", "data", "old",
                          "backup", "images", "notes", "scripts", "vendor", "include", "examples",
                          "2019", "2020", "2021", "2022", "2023", "drafts", "archive", "tmp")
TEXT_EXTENSIONS = (".py", ".c", ".h", ".js", ".rs", ".go", ".md", ".txt", ".json", ".toml",
                   ".yaml", ".html", ".css", ".sh", ".conf")
BINARY_EXTENSIONS = (".bin", ".dat", ".png", ".o", ".pyc", ".gz", ".db", ".woff2")
MEDIUM_EXTENSIONS = (".jpg", ".jpg", ".jpg", ".mp3", ".flac", ".pdf", ".zip", ".odt")
CHANGE_MTIME = BASE_MTIME + MTIME_SPREAD_SECONDS + 86_400  # later than every generated file


def scaled(count: int, scale: float, minimum: int) -> int:
    return max(minimum, round(count * scale))


def log_uniform(rng: random.Random, low: int, high: int) -> int:
    return int(low * math.exp(rng.random() * math.log(high / low)))


class NameBook:
    """Unique names per directory, so files, links and folders never collide."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.words = make_identifiers(rng, 3_000)
        self.used: dict[str, set[str]] = {}

    def claim(self, directory: str, name: str) -> str:
        used = self.used.setdefault(directory, set())
        stem, extension = os.path.splitext(name)
        candidate, number = name, 1
        while candidate in used:
            number += 1
            candidate = f"{stem}-{number}{extension}"
        used.add(candidate)
        return candidate

    def new(self, directory: str, extension: str = "") -> str:
        return self.claim(directory, self.rng.choice(self.words) + extension)


def depth(path: str) -> int:
    return path.count("/") + 1


def grow_directories(rng: random.Random, names: NameBook, count: int) -> list[str]:
    """The skeleton, then directories under randomly chosen existing ones."""
    directories = list(SKELETON)
    for directory in directories:
        parent, _, name = directory.rpartition("/")
        names.claim(parent, name)
    while len(directories) < count:
        parent = rng.choice(directories)
        if depth(parent) >= MAX_DEPTH:
            parent = "/".join(parent.split("/")[:rng.randint(1, 3)])
        if rng.random() < 0.3:
            name = names.claim(parent, rng.choice(COMMON_DIRECTORY_NAMES))
        else:
            name = names.new(parent)
        directories.append(f"{parent}/{name}")
    return directories


def small_content(rng: random.Random, modules: list[list[bytes]]) -> tuple[bytes, str]:
    """(content, extension) of one small file."""
    roll = rng.random()
    if roll < EMPTY_SHARE:
        return b"", rng.choice((".keep", ".py", ".lock", ""))
    size = log_uniform(rng, SMALL_MIN_BYTES, SMALL_MAX_BYTES)
    roll -= EMPTY_SHARE
    if roll < ZERO_SHARE:
        return bytes(size), rng.choice((".img", ".bin", ".dat"))
    roll -= ZERO_SHARE
    if roll < RANDOM_SHARE:
        return rng.randbytes(size), rng.choice(BINARY_EXTENSIONS)
    roll -= RANDOM_SHARE
    if roll < SPARSE_SHARE:
        return sparse_binary_bytes(rng, size), rng.choice(BINARY_EXTENSIONS)
    return text_bytes(rng, modules, size), rng.choice(TEXT_EXTENSIONS)


def write_file(path: Path, content: bytes, mtime: int) -> None:
    with open(path, "wb") as out:
        out.write(content)
    os.utime(path, (mtime, mtime))


def write_segments(path: Path, rng: random.Random, modules: list[list[bytes]], size: int, kind: str) -> None:
    """Stream ``size`` bytes of ``kind`` content into ``path``, 1 MiB at a time."""
    zero = bytes(SEGMENT_BYTES)
    with open(path, "wb") as out:
        remaining = size
        while remaining > 0:
            length = min(SEGMENT_BYTES, remaining)
            if kind == "zero":
                out.write(zero[:length])
            elif kind == "random" or (kind == "mixed" and rng.random() < 0.5):
                out.write(rng.randbytes(length))
            else:
                out.write(text_bytes(rng, modules, length))
            remaining -= length
    mtime = pinned_mtime(rng)
    os.utime(path, (mtime, mtime))


def write_log(path: Path, rng: random.Random, messages: list[str], size: int, start: int) -> int:
    """Write ``size`` bytes of log lines from ``start``; return the next second."""
    second = start
    with open(path, "wb") as out:
        remaining = size
        while remaining > 0:
            block, second = log_bytes(rng, messages, min(4 * MIB, remaining), second)
            out.write(block)
            remaining -= len(block)
    os.utime(path, (second, second))
    return second


def plant_symlinks(root: Path, rng: random.Random, names: NameBook, directories: list[str],
                   files: list[str], count: int) -> None:
    """Relative symlinks to files, to folders, and to names that do not exist."""
    for index in range(count):
        home = rng.choice(directories)
        roll = rng.random()
        if index == 0 or roll < DANGLING_SYMLINK_SHARE:
            target = f"{rng.choice(directories)}/{rng.choice(names.words)}.missing"
        elif index == 1 or roll < DANGLING_SYMLINK_SHARE + DIRECTORY_SYMLINK_SHARE:
            target = rng.choice(directories)
        else:
            target = rng.choice(files)
        link = root / home / names.new(home, "-link")
        os.symlink(os.path.relpath(root / target, root / home), link)
        mtime = pinned_mtime(rng)
        os.utime(link, (mtime, mtime), follow_symlinks=False)


def generate_home(root: Path, scale: float, seed: int) -> DatasetSummary:
    """Write the home-shaped data set into the empty directory ``root``."""
    rng = random.Random(seed)
    modules = make_modules(rng)
    messages = make_log_messages(rng)
    names = NameBook(rng)
    summary = DatasetSummary(root=root)
    directories = grow_directories(rng, names, scaled(DIRECTORIES_AT_SCALE_1, scale, len(SKELETON) + 10))
    for directory in directories:
        (root / directory).mkdir(parents=True, exist_ok=True)
    weights = [math.exp(rng.gauss(0, DIRECTORY_WEIGHT_SIGMA)) for _ in directories]

    def add(size: int) -> None:
        summary.files += 1
        summary.bytes += size

    for relative, mib, kind in LARGE_FILES:
        size = max(SEGMENT_BYTES, int(mib * MIB * scale))
        write_segments(root / relative, rng, modules, size, kind)
        add(size)
        summary.large_files.append(relative)

    second = BASE_MTIME
    for index in range(scaled(ROTATED_LOGS_AT_SCALE_1, scale, 3)):
        directory = LOG_DIRECTORIES[index % len(LOG_DIRECTORIES)]
        service = directory.split("/")[-2]
        relative = f"{directory}/{names.claim(directory, f'{service}.log.{index // 3 + 1}')}"
        size = log_uniform(rng, ROTATED_MIN_BYTES, ROTATED_MAX_BYTES)
        second = write_log(root / relative, rng, messages, size, second)
        add(size)
    names.claim(LOG_DIRECTORIES[0], GROWING_LOG.rsplit("/", 1)[1])
    size = max(MIB, int(GROWING_LOG_MIB * MIB * scale))
    write_log(root / GROWING_LOG, rng, messages, size, second)
    add(size)

    media = [i for i, d in enumerate(directories) if d.split("/")[0] in MEDIA_ROOTS]
    for _ in range(scaled(MEDIUM_FILES_AT_SCALE_1, scale, 5)):
        directory = directories[rng.choices(media, [weights[i] for i in media])[0]]
        size = log_uniform(rng, MEDIUM_MIN_BYTES, MEDIUM_MAX_BYTES)
        if rng.random() < MEDIUM_TEXT_SHARE:
            content, extension = text_bytes(rng, modules, size), rng.choice((".svg", ".csv", ".tex"))
        else:
            content, extension = rng.randbytes(size), rng.choice(MEDIUM_EXTENSIONS)
        relative = f"{directory}/{names.new(directory, extension)}"
        write_file(root / relative, content, pinned_mtime(rng))
        add(size)

    hardlinks = scaled(HARDLINKS_AT_SCALE_1, scale, 1)
    small_count = max(20, scaled(FILES_AT_SCALE_1, scale, 0) - summary.files - hardlinks)
    small: list[str] = []
    for directory in rng.choices(directories, weights, k=small_count):
        content, extension = small_content(rng, modules)
        relative = f"{directory}/{names.new(directory, extension)}"
        write_file(root / relative, content, pinned_mtime(rng))
        add(len(content))
        small.append(relative)

    for existing in rng.sample(small, hardlinks):
        directory = rng.choice(directories)
        relative = f"{directory}/{names.claim(directory, existing.rsplit('/', 1)[1])}"
        os.link(root / existing, root / relative)
        summary.files += 1
        summary.hardlinks += 1

    symlinks = scaled(SYMLINKS_AT_SCALE_1, scale, 3)
    plant_symlinks(root, rng, names, directories, small, symlinks)
    summary.symlinks = symlinks
    pin_directory_mtimes(root)
    summary.directories = count_directories(root)
    return summary


def list_small_files(root: Path) -> list[Path]:
    """Regular files of 1 B to 64 KiB with one name, sorted by path."""
    found = []
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    if 0 < info.st_size <= SMALL_MAX_BYTES and info.st_nlink == 1:
                        found.append(Path(entry.path))
    return sorted(found)


def apply_home_change(root: Path, seed: int, scale: float) -> list[str]:
    """Rewrite a stretch of 1 % of the small files; append to the growing log.

    Deterministic for a data set, seed and scale. Returns the changed paths,
    relative to ``root``.
    """
    rng = random.Random(f"home-change-{seed}")
    modules = make_modules(rng, 1)
    small = list_small_files(root)
    chosen = rng.sample(small, max(1, round(len(small) * CHANGED_SHARE)))
    for path in chosen:
        edit_small_file(path, rng, modules)
        os.utime(path, (CHANGE_MTIME, CHANGE_MTIME))
    log = root / GROWING_LOG
    messages = make_log_messages(rng)
    remaining, second = max(MIB, int(APPENDED_MIB * MIB * scale)), CHANGE_MTIME - 86_400
    with open(log, "ab") as out:
        while remaining > 0:
            block, second = log_bytes(rng, messages, min(4 * MIB, remaining), second)
            out.write(block)
            remaining -= len(block)
    os.utime(log, (CHANGE_MTIME, CHANGE_MTIME))
    return sorted(str(p.relative_to(root)) for p in chosen + [log])
