"""What a restore's errors say is damaged, and which files of the snapshot it takes with it.

A restore reports each file it could not write whole with the object at
fault ("pack <id>": unreadable, or holding a blob that does not
authenticate; "blob <id>": a chunk missing from the index). A restore
reports a file once, for the first damage it meets; so the files an object
touches are found here from the snapshot itself: every file (within the
step's include selection) with a chunk in a damaged pack or a damaged
blob, read from the snapshot's trees and the index. Paths are the
snapshot's, shown as `check` shows them (UTF-8; other bytes as \\xNN).

The snapshot is a graph of trees, and a crafted one may stand a tree at
2^60 paths. Trees are read once each to learn where damage lies below
(no recursion, a tree that contains itself is not gone round), paths are
walked only there, at most FILES_NAMED files are named per object and at
most WALK_BUDGET entries are looked at; a message says when a list was cut.

A file that failed verification for no object's sake (its content on disk
differs from the snapshot) is a problem of its own: object "file content".
"""

from __future__ import annotations

import os
from collections import defaultdict

from strongroom.dr.results import Problem
from strongroom.engine.tree_walk import leads_to, path_matches, resolve
from strongroom.errors import StrongroomError
from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import DIR, FILE, Node, Tree
from strongroom.repo.repository import Repository

FILES_NAMED = 1000  # per object: a report, not an inventory
WALK_BUDGET = 1_000_000  # tree entries looked at while naming files
UNVERIFIED_NAMED = 1000  # files that did not verify, each a problem of its own
CONTENT = "file content"


def problems_of(repo: Repository, snapshot: Snapshot, errors: list[dict],
                include: tuple[str, ...] = ()) -> tuple[Problem, ...]:
    """The damaged objects a restore of `snapshot` met (from its error events)
    and, for each, the snapshot's files whose content touches it; then the
    files that did not verify without a damaged object to blame."""
    repo.load_index()
    found = _Damage.from_errors(errors)
    problems: list[Problem] = []
    if found.objects:
        problems.extend(_Finder(repo, found, include).problems(bytes.fromhex(snapshot.tree)))
    problems.extend(_unverified(repo, snapshot, found.unverified))
    return tuple(problems)


class _Damage:
    """The objects named in a restore's errors, and the files that did not verify."""

    def __init__(self) -> None:
        self.objects: dict[str, str] = {}  # "pack <hex>" / "blob <hex>" -> the first message about it
        self.packs: dict[bytes, str] = {}  # pack id -> its object
        self.blobs: dict[bytes, str] = {}
        self.unverified: dict[str, str] = {}  # restored path -> message

    @classmethod
    def from_errors(cls, errors: list[dict]) -> _Damage:
        found = cls()
        for event in errors:
            if not isinstance(event, dict):
                continue
            message = str(event.get("message", ""))
            obj = event.get("object")
            if isinstance(obj, str):
                kind, _, hex_id = obj.partition(" ")
                try:
                    raw = bytes.fromhex(hex_id)
                except ValueError:
                    continue
                if kind not in ("pack", "blob") or len(raw) != 32:
                    continue
                found.objects.setdefault(obj, message)
                (found.packs if kind == "pack" else found.blobs).setdefault(raw, obj)
            elif message.startswith("verify:") and isinstance(event.get("path"), str):
                found.unverified.setdefault(event["path"], message)
        return found


class _Finder:
    def __init__(self, repo: Repository, damage: _Damage, include: tuple[str, ...]) -> None:
        self.repo = repo
        self.damage = damage
        self.include = include
        self.files: dict[str, list[str]] = defaultdict(list)  # object -> paths
        self.bad_trees: dict[bytes, str] = {}  # trees that could not be read -> why
        self.tree_paths: dict[bytes, list[str]] = defaultdict(list)
        self.budget = WALK_BUDGET
        self.cut = False
        self.unfilled = len(damage.objects)  # objects with fewer than FILES_NAMED files named

    def objects_of(self, node: Node) -> set[str]:
        hit = set()
        for blob_id in node.content:
            obj = self.damage.blobs.get(blob_id)
            if obj is None:
                loc = self.repo.index.get(blob_id)
                obj = self.damage.packs.get(loc.pack) if loc is not None else None
            if obj is not None:
                hit.add(obj)
        return hit

    def _tree(self, tree_id: bytes) -> Tree | None:
        if tree_id in self.bad_trees:
            return None
        try:
            return self.repo.load_tree(tree_id)
        except StrongroomError as e:
            self.bad_trees[tree_id] = str(e)
            return None

    def _damage_below(self, root: bytes) -> dict[bytes, bool]:
        """Tree id -> whether a damaged file (or an unreadable tree) is below it; each tree read once."""
        below: dict[bytes, bool] = {}
        entered: set[bytes] = set()
        stack: list[tuple[bytes, bool]] = [(root, False)]
        while stack:
            tree_id, children_done = stack.pop()
            if tree_id in below:
                continue
            tree = self._tree(tree_id)
            if tree is None:
                below[tree_id] = True  # walked to, so the place it stands at is named
                continue
            subtrees = [n.subtree for n in tree.nodes if n.type == DIR and n.subtree]
            if not children_done:
                entered.add(tree_id)
                stack.append((tree_id, True))
                # A subtree entered but not finished is one this tree is inside of: not gone round.
                stack.extend((t, False) for t in subtrees if t not in below and t not in entered)
                continue
            below[tree_id] = any(below.get(t, False) for t in subtrees) or any(
                n.type == FILE and self.objects_of(n) for n in tree.nodes)
        return below

    def _walk(self, root: bytes, below: dict[bytes, bool]) -> None:
        """Depth first over the paths that lead to damage, without recursion."""
        tree = self._tree(root)
        if tree is None:
            self.tree_paths[root].append("/")
            return
        # The directories entered, one per stack entry after the first: as include
        # patterns see them (os.fsdecode, as restore_select) and as they are shown.
        names: list[str] = []
        shown: list[str] = []
        open_trees = {root}
        stack = [(root, iter(tree.nodes))]
        while stack:
            current, nodes = stack[-1]
            node = next(nodes, None)
            if node is None:
                stack.pop()
                open_trees.discard(current)
                del names[max(len(stack) - 1, 0):], shown[max(len(stack) - 1, 0):]
                continue
            self.budget -= 1
            if self.budget < 0 or not self.unfilled:
                self.cut = self.budget < 0
                return
            path = "/" + "/".join([*names, os.fsdecode(node.name)])
            if node.type == FILE:
                if self.include and not path_matches(self.include, path):
                    continue
                for obj in self.objects_of(node):
                    if len(self.files[obj]) < FILES_NAMED:
                        self.files[obj].append("/" + "/".join([*shown, node.display_name]))
                        self.unfilled -= len(self.files[obj]) == FILES_NAMED
            elif node.type == DIR and node.subtree:
                if not below.get(node.subtree) or node.subtree in open_trees:
                    continue
                if self.include and not (path_matches(self.include, path) or leads_to(self.include, path)):
                    continue
                subtree = self._tree(node.subtree)
                if subtree is None:
                    if len(self.tree_paths[node.subtree]) < FILES_NAMED:
                        self.tree_paths[node.subtree].append("/" + "/".join([*shown, node.display_name]))
                    continue
                open_trees.add(node.subtree)
                names.append(os.fsdecode(node.name))
                shown.append(node.display_name)
                stack.append((node.subtree, iter(subtree.nodes)))

    def problems(self, root: bytes) -> list[Problem]:
        self._walk(root, self._damage_below(root))
        problems = []
        for obj, message in self.damage.objects.items():
            files = self.files.get(obj, [])
            problems.append(Problem(obj, message + self._cut_note(len(files)), tuple(files)))
        for tree_id, why in self.bad_trees.items():
            paths = self.tree_paths.get(tree_id, [])
            problems.append(Problem(f"tree {tree_id.hex()}", why + self._cut_note(len(paths)), tuple(paths)))
        return problems

    def _cut_note(self, named: int) -> str:
        if self.cut:
            return f" (the files it touches were looked for among the first {WALK_BUDGET} entries only)"
        if named >= FILES_NAMED:
            return f" (the first {FILES_NAMED} files it touches are named)"
        return ""


def _unverified(repo: Repository, snapshot: Snapshot, failed: dict[str, str]) -> list[Problem]:
    """A problem for each file whose restored content did not verify, by its path in the snapshot."""
    root = bytes.fromhex(snapshot.tree)
    problems = []
    for restored, message in list(failed.items())[:UNVERIFIED_NAMED]:
        problems.append(Problem(CONTENT, message, (_snapshot_path(repo, root, restored),)))
    if len(failed) > UNVERIFIED_NAMED:
        problems.append(Problem(CONTENT, f"{len(failed) - UNVERIFIED_NAMED} more files did not verify", ()))
    return problems


def _snapshot_path(repo: Repository, root: bytes, restored: str) -> str:
    """The snapshot path a restored file came from: the longest tail of its
    path (target + snapshot path) that is a file in the snapshot."""
    parts = [p for p in restored.split("/") if p]
    for start in range(len(parts)):
        candidate = "/" + "/".join(parts[start:])
        try:
            _, node = resolve(repo, root, candidate)
        except StrongroomError:
            continue
        if node is not None and node.type == FILE:
            return candidate
    return restored
