"""What a tree holds, and whether a restore holds the same.

A manifest records every regular file's size and sha256, every symlink's
target, every directory, and which file names are hard links of each other.
A restore is identical when it has the same files with the same contents, the
same symlinks with the same targets and the same directories, and, for a tool
that restores hard links, the names that were one file are one file again.
The walk uses an explicit stack and never follows a symlink.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

SHOWN_DIFFERENCES = 20


@dataclass
class Manifest:
    files: dict[str, tuple[int, str]]  # relative path -> (size, sha256)
    symlinks: dict[str, str]  # relative path -> target
    directories: set[str]
    inodes: dict[str, tuple[int, int]]  # relative path -> (device, inode), for files with several names

    def hardlink_groups(self) -> list[list[str]]:
        """Names of the same file, each group sorted, of two names or more."""
        groups: dict[tuple[int, int], list[str]] = {}
        for path, key in self.inodes.items():
            groups.setdefault(key, []).append(path)
        return sorted(sorted(group) for group in groups.values() if len(group) > 1)

    def digest(self) -> str:
        """One sha256 over all paths, sizes, contents, link targets and hard-link groups."""
        summary = hashlib.sha256()
        for path in sorted(self.files):
            size, sha = self.files[path]
            summary.update(f"f\0{path}\0{size}\0{sha}\n".encode())
        for path in sorted(self.symlinks):
            summary.update(f"l\0{path}\0{self.symlinks[path]}\n".encode())
        for path in sorted(self.directories):
            summary.update(f"d\0{path}\n".encode())
        for group in self.hardlink_groups():
            summary.update(("h\0" + "\0".join(group) + "\n").encode())
        return summary.hexdigest()

    def total_bytes(self) -> int:
        return sum(size for size, _ in self.files.values())


@dataclass
class Verification:
    identical: bool
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    links_differing: list[str] = field(default_factory=list)
    hardlinks_broken: list[str] = field(default_factory=list)
    hardlinks_checked: bool = False  # the tool claims to restore hard links and the source has some
    restored_root: str = ""

    def describe(self) -> str:
        if self.identical:
            return "identical" + (", hard links too" if self.hardlinks_checked else "")
        counts = [(len(self.missing), "missing"), (len(self.extra), "extra"),
                  (len(self.differing), "files differ"), (len(self.links_differing), "symlink targets differ"),
                  (len(self.hardlinks_broken), "hard links not restored as links")]
        return "MISMATCH: " + ", ".join(f"{n} {what}" for n, what in counts if n)


def file_sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def build_manifest(root: Path) -> Manifest:
    files, symlinks, directories, inodes = {}, {}, set(), {}
    stack = [""]
    while stack:
        relative_dir = stack.pop()
        with os.scandir(os.path.join(root, relative_dir)) as entries:
            for entry in entries:
                relative = os.path.join(relative_dir, entry.name)
                if entry.is_symlink():
                    symlinks[relative] = os.readlink(entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    directories.add(relative)
                    stack.append(relative)
                elif entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    files[relative] = (info.st_size, file_sha256(entry.path))
                    if info.st_nlink > 1:
                        inodes[relative] = (info.st_dev, info.st_ino)
    return Manifest(files, symlinks, directories, inodes)


def find_restored_root(target: Path, source: Path, probe: str) -> Path:
    """Where the source tree landed inside ``target``.

    Tools differ: restic and borg recreate the absolute source path below the
    target, others restore the contents directly or under the source's name.
    """
    candidates = (target, target / source.name, target / source.relative_to(source.anchor))
    for candidate in candidates:
        if (candidate / probe).is_file():
            return candidate
    return target


def compare_manifests(expected: Manifest, actual: Manifest, check_hardlinks: bool) -> Verification:
    missing, extra = [], []
    for kind in ("files", "symlinks", "directories"):
        wanted, found = set(getattr(expected, kind)), set(getattr(actual, kind))
        missing += sorted(wanted - found)
        extra += sorted(found - wanted)
    differing = sorted(path for path in expected.files.keys() & actual.files.keys()
                       if expected.files[path] != actual.files[path])
    links_differing = sorted(path for path in expected.symlinks.keys() & actual.symlinks.keys()
                             if expected.symlinks[path] != actual.symlinks[path])
    broken = []
    groups = expected.hardlink_groups() if check_hardlinks else []
    for group in groups:
        if len({actual.inodes.get(path) for path in group}) != 1 or group[0] not in actual.inodes:
            broken.append(" = ".join(group))
    identical = not (missing or extra or differing or links_differing or broken)
    n = SHOWN_DIFFERENCES
    return Verification(identical, missing[:n], extra[:n], differing[:n], links_differing[:n], broken[:n],
                        bool(groups))


def verify_restore(expected: Manifest, target: Path, source: Path, check_hardlinks: bool) -> Verification:
    probe = min(expected.files) if expected.files else ""
    root = find_restored_root(target, source, probe)
    verification = compare_manifests(expected, build_manifest(root), check_hardlinks)
    verification.restored_root = str(root)
    return verification


def disk_usage(path: Path) -> dict[str, int]:
    """Apparent size and allocated bytes (like du) of a tree; hard links once."""
    apparent = allocated = 0
    seen: set[tuple[int, int]] = set()
    for directory, _, filenames in os.walk(path):
        for name in filenames:
            info = os.lstat(os.path.join(directory, name))
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            apparent += info.st_size
            allocated += info.st_blocks * 512
    return {"apparent_bytes": apparent, "allocated_bytes": allocated}
