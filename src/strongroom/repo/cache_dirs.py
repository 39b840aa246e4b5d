"""The caches under one cache root: what they are, how big, when last used; removing old ones.

Under the root, a directory named by a repository id (32 hex digits) is that
repository's cache, and `target-<32 hex>` the cache of one target URL (key
files, the config, and the identity seen there, which names the repository
id). Nothing else is ours to judge: `budgets/` (request logs shared across
runs), `machine-id` and any file or directory of another name are never
listed as caches and never removed.

Last use is the newest modification time of a cache directory, its files
and the folders in it: every open of a repository through a target cache
rewrites that cache's copy of the config, and a repository's cache counts as
used whenever a target cache naming it was. Clean-up removes repository
caches only. Target caches are a few kilobytes and hold the identity that
refuses a repository replaced under a known URL; removing one would make the
next open trust whatever is found there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass

from strongroom.errors import UsageError

_REPO = re.compile(r"[0-9a-f]{32}")
_TARGET = re.compile(r"target-[0-9a-f]{32}")
DAY = 86400


@dataclass(frozen=True)
class CacheDir:
    name: str
    path: str
    kind: str  # "repository" or "target"
    repository_id: str | None  # the repository it belongs to, where known
    last_used: float  # seconds since the epoch
    size: int | None  # bytes, or None when not measured


def _newest_mtime(path: str) -> float:
    """The newest mtime of the directory, and of what is in it one level down."""
    newest = os.lstat(path).st_mtime
    with os.scandir(path) as entries:
        for entry in entries:
            try:
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
            except OSError:
                continue
    return newest


def _size(path: str) -> int:
    """Bytes in regular files below `path`, symlinks not followed (an explicit stack)."""
    total, stack = 0, [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    elif stat.S_ISREG(st.st_mode):
                        total += st.st_size
        except OSError:
            continue
    return total


def _identity_repo(path: str) -> str | None:
    try:
        with open(os.path.join(path, "identity", "repository"), "rb") as f:
            doc = json.loads(f.read(4096))
        repo_id = doc["id"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    return repo_id if isinstance(repo_id, str) and _REPO.fullmatch(repo_id) else None


def list_caches(root: str, measure: bool = True) -> list[CacheDir]:
    """The caches under `root`, newest use first; an absent root has none."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    found: list[tuple[str, str, str | None, float]] = []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue  # a symlink is never ours: it could lead anywhere
        if _REPO.fullmatch(entry.name):
            kind, repo_id = "repository", entry.name
        elif _TARGET.fullmatch(entry.name):
            kind, repo_id = "target", _identity_repo(entry.path)
        else:
            continue
        found.append((entry.name, kind, repo_id, _newest_mtime(entry.path)))
    # A repository's cache is in use whenever a target cache naming it is.
    target_use: dict[str, float] = {}
    for name, kind, repo_id, used in found:
        if kind == "target" and repo_id:
            target_use[repo_id] = max(target_use.get(repo_id, 0.0), used)
    caches = [CacheDir(name, os.path.join(root, name), kind, repo_id,
                       max(used, target_use.get(name, 0.0)) if kind == "repository" else used,
                       _size(os.path.join(root, name)) if measure else None)
              for name, kind, repo_id, used in found]
    return sorted(caches, key=lambda c: (-c.last_used, c.name))


def check_root(root: str, home: str) -> str:
    """The real path of a cache root that may be cleaned, or UsageError."""
    real = os.path.realpath(root)
    if real == os.path.realpath("/") or real == os.path.realpath(home):
        raise UsageError(f"refusing to clean {root}: a cache root may not be / or the home directory")
    if os.path.lexists(real) and not os.path.isdir(real):
        raise UsageError(f"{root} is not a directory")
    return real


def remove_old(root: str, max_age_days: float, home: str, now: float | None = None) -> list[CacheDir]:
    """Remove repository caches not used for `max_age_days`; returns those removed.
    `home` is the user's home directory, which is never taken for a cache root."""
    if max_age_days < 0:
        raise UsageError("--max-age must not be negative")
    real = check_root(root, home)
    if not os.path.isdir(real):
        return []  # no cache root yet: nothing to clean
    if not shutil.rmtree.avoids_symlink_attacks:
        raise UsageError("cache clean-up needs a platform where removing a tree never follows a symlink")
    cutoff = (time.time() if now is None else now) - max_age_days * DAY
    removed = []
    for cache in list_caches(real, measure=False):
        if cache.kind != "repository" or cache.last_used >= cutoff:
            continue
        path = os.path.join(real, cache.name)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or os.path.dirname(path) != real:
            continue
        # rmtree works below a directory descriptor here and never follows a symlink.
        shutil.rmtree(path)
        removed.append(cache)
    return removed
