"""Finding entries by name or path across snapshots.

A pattern without `/` is a glob on the entry's own name; one with `/` is a
glob on its whole path in the snapshot (`/home/me/notes.txt`), anchored at
the root when it starts with `/` and at any directory otherwise. As with
fnmatch, `*` also matches `/` there. The walk is the stored-tree walk of
`tree_walk`: one tree open per level, nothing collected, so a snapshot of
millions of entries is searched in the memory of its deepest path.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Iterator

from strongroom.engine.tree_walk import walk
from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import Node
from strongroom.repo.repository import Repository


@dataclass(frozen=True)
class FindQuery:
    patterns: tuple[str, ...]
    ignore_case: bool = False
    oldest_ns: int | None = None  # entries modified before this are left out
    newest_ns: int | None = None  # and those modified after this
    # Derived from the patterns: globs on the name, and globs on the whole path.
    name_globs: tuple[str, ...] = field(init=False, repr=False)
    path_globs: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names, paths = [], []
        for p in self.patterns:
            p = p.lower() if self.ignore_case else p
            if "/" not in p.rstrip("/"):
                names.append(p.rstrip("/") or p)
            else:
                p = p.rstrip("/")
                paths.append(p if p.startswith("/") else "*/" + p)
        object.__setattr__(self, "name_globs", tuple(names))  # the frozen dataclass idiom for derived fields
        object.__setattr__(self, "path_globs", tuple(paths))

    def matches(self, path: str, node: Node) -> bool:
        if self.oldest_ns is not None and node.mtime_ns < self.oldest_ns:
            return False
        if self.newest_ns is not None and node.mtime_ns > self.newest_ns:
            return False
        if self.ignore_case:
            path = path.lower()
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(name, p) for p in self.name_globs) or \
            any(fnmatch.fnmatchcase(path, p) for p in self.path_globs)


def find_in_snapshot(repo: Repository, snapshot: Snapshot, query: FindQuery) -> Iterator[tuple[str, Node]]:
    """Yield (path, node) for every entry of the snapshot the query matches, in tree order.

    Paths are shown as `ls` shows them: from the snapshot's root, undecodable
    bytes escaped."""
    for raw, node in walk(repo, bytes.fromhex(snapshot.tree)):
        path = raw.decode("utf-8", "backslashreplace")
        if query.matches(path, node):
            yield path, node
