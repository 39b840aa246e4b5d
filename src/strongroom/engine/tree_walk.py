"""Walking the trees of a snapshot, and glob matching on snapshot paths."""

from __future__ import annotations

import fnmatch
from typing import Iterator

from strongroom.errors import SnapshotNotFound
from strongroom.model.tree import DIR, FILE, Node
from strongroom.repo.repository import Repository


def walk(repo: Repository, tree_id: bytes, prefix: bytes = b"") -> Iterator[tuple[bytes, Node]]:
    """Yield (path relative to the start, node) depth-first, parents before children."""
    for node in repo.load_tree(tree_id).nodes:
        path = prefix + b"/" + node.name
        yield path, node
        if node.type == DIR and node.subtree:
            yield from walk(repo, node.subtree, path)


def needed_blobs(repo: Repository, roots: list[bytes]) -> set[bytes]:
    """Every tree and chunk reachable from the root trees; an unreadable tree raises."""
    needed: set[bytes] = set()
    stack = list(roots)
    while stack:
        tree_id = stack.pop()
        if tree_id in needed:
            continue
        needed.add(tree_id)
        for node in repo.load_tree(tree_id).nodes:
            if node.type == DIR and node.subtree:
                stack.append(node.subtree)
            elif node.type == FILE:
                needed.update(node.content)
    return needed


def resolve(repo: Repository, root_tree: bytes, subpath: str) -> tuple[bytes | None, Node | None]:
    """Find `subpath` in a snapshot: (tree id to walk, or None; the node, or None for the root)."""
    parts = [p.encode("utf-8", "surrogateescape") for p in subpath.split("/") if p]
    tree_id, node = root_tree, None
    for i, part in enumerate(parts):
        if tree_id is None:
            raise SnapshotNotFound(f"{subpath} is not in the snapshot")
        node = repo.load_tree(tree_id).get(part)
        if node is None:
            raise SnapshotNotFound(f"{subpath} is not in the snapshot")
        tree_id = node.subtree if node.type == DIR else None
    return tree_id, node


def _match(pattern: str, path: str) -> bool:
    if "/" not in pattern.rstrip("/"):
        return any(fnmatch.fnmatchcase(part, pattern.rstrip("/")) for part in path.split("/") if part)
    pattern = pattern.rstrip("/")
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern + "/*")


def path_matches(patterns: tuple[str, ...], path: str) -> bool:
    """True when the path, or a directory above it, matches one of the globs."""
    return any(_match(p, path) for p in patterns)


def leads_to(patterns: tuple[str, ...], directory: str) -> bool:
    """Whether files below `directory` could match an anchored include pattern."""
    for p in patterns:
        if "/" not in p.rstrip("/"):
            return True
        prefix = p.rstrip("/").split("/")
        parts = directory.split("/")
        if all(fnmatch.fnmatchcase(d, q) for d, q in zip(parts, prefix)):
            return True
    return False
