"""Differences between two snapshots, found by comparing trees top-down.

Identical subtrees have identical ids, so unchanged directories cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from strongroom.model.tree import DIR, Node, TreeContainsItself
from strongroom.repo.repository import Repository


def _changed(a: Node, b: Node) -> str | None:
    if a.type != b.type:
        return "T"
    if a.content != b.content or a.target != b.target or a.size != b.size:
        return "M"
    if (a.mode, a.uid, a.gid, a.mtime_ns, a.xattrs) != (b.mode, b.uid, b.gid, b.mtime_ns, b.xattrs):
        return "U"
    return None


@dataclass(frozen=True)
class _Enter:
    """Go down into a pair of trees (sign None) or one side's tree (sign "+" or "-")."""
    old: bytes | None
    new: bytes | None
    prefix: str
    sign: str | None = None


def _entry(node: Node, path: str, sign: str) -> Iterator[dict | _Enter]:
    yield {"change": sign, "path": path + ("/" if node.type == DIR else ""), "size": node.size}
    if node.type == DIR and node.subtree:
        yield _Enter(node.subtree if sign == "-" else None, node.subtree if sign == "+" else None, path, sign)


def _below(repo: Repository, tree_id: bytes, prefix: str, sign: str) -> Iterator[dict | _Enter]:
    for child in repo.load_tree(tree_id).nodes:
        yield from _entry(child, f"{prefix}/{child.display_name}", sign)


def _compare(repo: Repository, a: bytes | None, b: bytes | None, prefix: str) -> Iterator[dict | _Enter]:
    old = {n.name: n for n in repo.load_tree(a).nodes} if a else {}
    new = {n.name: n for n in repo.load_tree(b).nodes} if b else {}
    for name in sorted(set(old) | set(new)):
        o, n = old.get(name), new.get(name)
        path = f"{prefix}/{(o or n).display_name}"
        if o is None:
            yield from _entry(n, path, "+")
        elif n is None:
            yield from _entry(o, path, "-")
        elif o.type == DIR and n.type == DIR:
            if _changed(o, n) == "U":
                yield {"change": "U", "path": path + "/", "size": 0}
            if o.subtree != n.subtree:
                yield _Enter(o.subtree, n.subtree, path)
        else:
            change = _changed(o, n)
            if change:
                yield {"change": change, "path": path, "size": n.size}


def diff_trees(repo: Repository, a: bytes | None, b: bytes | None, prefix: str = "") -> Iterator[dict]:
    """Yield {"change": "+"|"-"|"M"|"T"|"U", "path": ...} entries in path order.

    Depth-first with an explicit stack (no recursion per level); a tree met
    again below itself on either side raises TreeContainsItself.
    """
    if a == b:
        return
    open_old, open_new = {a} - {None}, {b} - {None}
    stack: list[tuple[Iterator[dict | _Enter], bytes | None, bytes | None]] = [(_compare(repo, a, b, prefix), a, b)]
    while stack:
        items, entered_old, entered_new = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            open_old.discard(entered_old)
            open_new.discard(entered_new)
            continue
        if isinstance(item, dict):
            yield item
            continue
        for tree_id, open_trees in ((item.old, open_old), (item.new, open_new)):
            if tree_id is not None and tree_id in open_trees:
                raise TreeContainsItself(tree_id)
        open_old.add(item.old)
        open_new.add(item.new)
        if item.sign is None:
            below = _compare(repo, item.old, item.new, item.prefix)
        else:
            below = _below(repo, item.old or item.new, item.prefix, item.sign)
        stack.append((below, item.old, item.new))
