"""Building changed copies of stored trees, bottom-up, without recursion.

`rewrite` drops paths and `repair snapshots` empties damaged files; both are
an edit of single nodes, and a walk that stores a new tree for every
directory whose entries changed, from the leaves up to a new root. The walk
keeps one directory's entries per level on an explicit stack, and the path
of the deepest directory only, so memory is bounded by the depth times the
largest directory, and stack depth does not
grow with the tree's. Unchanged directories keep their tree id, so they cost
nothing and deduplicate as before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Callable

from strongroom.errors import IntegrityError
from strongroom.model.tree import DIR, FILE, Node, Tree, TreeContainsItself
from strongroom.repo.repository import Repository

# Edit a node: return it (unchanged), a changed node, or None to drop it.
EditNode = Callable[[bytes, Node], Node | None]
# A directory whose tree cannot be read: a replacement node, or None to drop it.
BrokenTree = Callable[[bytes, Node, IntegrityError], Node | None]

MEMO_LIMIT = 65536  # (path, tree) results kept between snapshots that share directories


@dataclass(frozen=True)
class Rewritten:
    tree: bytes  # the new root tree id (the old one if nothing changed)
    edits: int  # nodes the callbacks dropped or changed
    files: int  # files in the new tree
    size: int  # their bytes

    @property
    def changed(self) -> bool:
        return self.edits > 0


def updated_summary(summary: dict, result: Rewritten) -> dict:
    """A snapshot's summary with the totals of its rewritten tree (files and their bytes)."""
    summary = dict(summary)
    if "total_files" in summary:
        summary["total_files"], summary["total_bytes"] = result.files, result.size
    return summary


@dataclass
class _Frame:
    # The directory's path while it is the deepest open one, else None: a path
    # kept per level would cost the depth squared (10,000 levels of long names
    # are gigabytes); it is joined again from the nodes when the walk comes back up.
    path: bytes | None
    tree_id: bytes
    nodes: tuple[Node, ...]
    node: Node | None  # the directory node in the parent; None for the root
    pos: int = 0
    out: list[Node] = field(default_factory=list)
    edits: int = 0
    files: int = 0
    size: int = 0


class TreeRewriter:
    """Rewrites trees with `edit` (and `broken` for unreadable directories).

    With `store` false nothing is written: new tree ids are computed only,
    for a dry run. Results are remembered per (path, tree id), since an edit
    may depend on the path, so snapshots that share directories walk them once.
    """

    def __init__(self, repo: Repository, edit: EditNode, broken: BrokenTree | None = None,
                 store: bool = True) -> None:
        self.repo = repo
        self.edit = edit
        self.broken = broken
        self.store = store
        self._memo: dict[tuple[bytes, bytes], Rewritten] = {}

    def tree_id(self, tree: Tree) -> bytes:
        """Store `tree` (or, in a dry run, only compute its id)."""
        if self.store:
            return self.repo.save_tree(tree)[0]
        return self.repo.crypto.blob_id(tree.encode())

    def rewrite(self, root: bytes) -> Rewritten:
        """The new root. A root tree that cannot be read raises IntegrityError."""
        frames = [_Frame(b"", root, self.repo.load_tree(root).nodes, None)]
        open_trees = {root}
        while True:
            frame = frames[-1]
            if frame.pos < len(frame.nodes):
                node = frame.nodes[frame.pos]
                frame.pos += 1
                self._visit(frames, open_trees, frame, node)
                continue
            frames.pop()
            open_trees.discard(frame.tree_id)
            new_id = self.tree_id(Tree(tuple(frame.out))) if frame.edits else frame.tree_id
            result = Rewritten(new_id, frame.edits, frame.files, frame.size)
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            self._memo[(_digest(frame.path), frame.tree_id)] = result
            if not frames:
                return result
            frames[-1].path = b"".join(b"/" + f.node.name for f in frames[1:])
            _add(frames[-1], replace(frame.node, subtree=new_id) if frame.edits else frame.node, result)

    def _visit(self, frames: list[_Frame], open_trees: set[bytes], frame: _Frame, node: Node) -> None:
        path = frame.path + b"/" + node.name
        edited = self.edit(path, node)
        if edited is not node:
            frame.edits += 1
        if edited is None:
            return
        if edited.type != DIR or not edited.subtree:
            frame.out.append(edited)
            if edited.type == FILE:
                frame.files += 1
                frame.size += edited.size
            return
        known = self._memo.get((_digest(path), edited.subtree))
        if known is not None:
            _add(frame, replace(edited, subtree=known.tree) if known.edits else edited, known)
            return
        if edited.subtree in open_trees:
            raise TreeContainsItself(edited.subtree)
        try:
            tree = self.repo.load_tree(edited.subtree)
        except TreeContainsItself:
            raise
        except IntegrityError as e:
            if self.broken is None:
                raise
            fixed = self.broken(path, edited, e)
            frame.edits += 1
            if fixed is not None:
                frame.out.append(fixed)
            return
        open_trees.add(edited.subtree)
        frame.path = None
        frames.append(_Frame(path, edited.subtree, tree.nodes, edited))


def _digest(path: bytes) -> bytes:
    """The memo's key for a path: a path can be long, a digest is 32 bytes."""
    return hashlib.blake2b(path, digest_size=32).digest()


def _add(frame: _Frame, node: Node, child: Rewritten) -> None:
    frame.out.append(node)
    frame.edits += child.edits
    frame.files += child.files
    frame.size += child.size
