"""Walking the trees of a snapshot, and glob matching on snapshot paths."""

from __future__ import annotations

import fnmatch
from typing import Iterator

from strongroom.errors import SnapshotNotFound
from strongroom.model.tree import DIR, FILE, Node, TreeContainsItself
from strongroom.repo.repository import Repository


def walk_nodes(repo: Repository, tree_id: bytes) -> Iterator[tuple[int, Node]]:
    """Yield (depth, node) depth-first, parents before children, in tree order.

    An explicit stack rather than recursion: a tree thousands of levels deep
    costs one list entry per level, not a Python frame. A directory whose
    subtree is a tree already open on the way down raises TreeContainsItself
    instead of going round for ever.
    """
    open_trees = {tree_id}
    stack = [(tree_id, iter(repo.load_tree(tree_id).nodes))]
    while stack:
        current, nodes = stack[-1]
        node = next(nodes, None)
        if node is None:
            stack.pop()
            open_trees.discard(current)
            continue
        yield len(stack) - 1, node
        if node.type == DIR and node.subtree:
            if node.subtree in open_trees:
                raise TreeContainsItself(node.subtree)
            open_trees.add(node.subtree)
            stack.append((node.subtree, iter(repo.load_tree(node.subtree).nodes)))


def walk(repo: Repository, tree_id: bytes, prefix: bytes = b"") -> Iterator[tuple[bytes, Node]]:
    """Yield (path relative to the start, node) depth-first, parents before children."""
    names: list[bytes] = []  # the names down to the current node; paths are joined, not kept per level
    for depth, node in walk_nodes(repo, tree_id):
        del names[depth:]
        names.append(node.name)
        yield prefix + b"/" + b"/".join(names), node


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
