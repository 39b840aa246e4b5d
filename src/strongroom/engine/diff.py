"""Differences between two snapshots, found by comparing trees top-down.

Identical subtrees have identical ids, so unchanged directories cost nothing.
"""

from __future__ import annotations

from typing import Iterator

from strongroom.model.tree import DIR, Node
from strongroom.repo.repository import Repository


def _changed(a: Node, b: Node) -> str | None:
    if a.type != b.type:
        return "T"
    if a.content != b.content or a.target != b.target or a.size != b.size:
        return "M"
    if (a.mode, a.uid, a.gid, a.mtime_ns, a.xattrs) != (b.mode, b.uid, b.gid, b.mtime_ns, b.xattrs):
        return "U"
    return None


def _all(repo: Repository, node: Node, path: str, sign: str) -> Iterator[dict]:
    yield {"change": sign, "path": path + ("/" if node.type == DIR else ""), "size": node.size}
    if node.type == DIR and node.subtree:
        for child in repo.load_tree(node.subtree).nodes:
            yield from _all(repo, child, f"{path}/{child.display_name}", sign)


def diff_trees(repo: Repository, a: bytes | None, b: bytes | None, prefix: str = "") -> Iterator[dict]:
    """Yield {"change": "+"|"-"|"M"|"T"|"U", "path": ...} entries in path order."""
    if a == b:
        return
    old = {n.name: n for n in repo.load_tree(a).nodes} if a else {}
    new = {n.name: n for n in repo.load_tree(b).nodes} if b else {}
    for name in sorted(set(old) | set(new)):
        o, n = old.get(name), new.get(name)
        path = f"{prefix}/{(o or n).display_name}"
        if o is None:
            yield from _all(repo, n, path, "+")
        elif n is None:
            yield from _all(repo, o, path, "-")
        elif o.type == DIR and n.type == DIR:
            change = _changed(o, n)
            if change == "U":
                yield {"change": "U", "path": path + "/", "size": 0}
            yield from diff_trees(repo, o.subtree, n.subtree, path)
        else:
            change = _changed(o, n)
            if change:
                yield {"change": change, "path": path, "size": n.size}
