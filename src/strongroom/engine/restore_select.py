"""What a restore writes: the snapshot's items below a subpath, chosen by include and exclude globs.

Items are (parent, name, node) in walk order, parents first: a path is
never kept per item, so a tree thousands of levels deep costs memory in
proportion to its entries, not to the square of its depth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from strongroom.engine.target_dirs import ROOT
from strongroom.engine.tree_walk import leads_to, path_matches, resolve, walk_nodes
from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import DIR, Node
from strongroom.repo.repository import Repository


@dataclass(frozen=True)
class Item:
    """One entry to restore; the parent index leads up to the target."""
    parent: int  # index of the directory item holding it, or ROOT
    name: bytes
    node: Node


def select_items(repo: Repository, snapshot: Snapshot, subpath: str = "", include: tuple[str, ...] = (),
                 exclude: tuple[str, ...] = ()) -> list[Item]:
    """The items to restore, depth first with parents before children (the walk's order)."""
    tree_id, node = resolve(repo, bytes.fromhex(snapshot.tree), subpath)
    if node is not None and node.type != DIR:
        walked = [(0, node)]
    else:
        walked = walk_nodes(repo, tree_id) if tree_id else ()
    prefix = ("/" + "/".join(p for p in subpath.split("/") if p)).rstrip("/")
    nodes: list[Node] = []
    parents: list[int] = []
    wanted: list[bool] = []  # not excluded, and chosen (files) or possibly on the way to a choice (dirs)
    matched: list[bool] = []  # dirs the include patterns name themselves
    above: list[int] = []  # the directories on the way down to the current item
    names: list[bytes] = []
    for index, (depth, n) in enumerate(walked):
        del above[depth:], names[depth:]
        names.append(n.name)
        nodes.append(n)
        parents.append(above[-1] if above else ROOT)
        if n.type == DIR:
            above.append(index)
        shown = prefix + "/" + os.fsdecode(b"/".join(names)) if include or exclude else ""
        if exclude and path_matches(exclude, shown):
            wanted.append(False)
            matched.append(False)
        elif n.type == DIR:
            wanted.append(not include or path_matches(include, shown) or leads_to(include, shown))
            matched.append(not include or path_matches(include, shown))
        else:
            wanted.append(not include or path_matches(include, shown))
            matched.append(False)
    keep = list(wanted)
    if include:
        # A directory stays when the patterns name it or a chosen item is below it.
        needed = [False] * len(nodes)
        for index, n in enumerate(nodes):
            if n.type != DIR and wanted[index]:
                up = parents[index]
                while up != ROOT and not needed[up]:
                    needed[up] = True
                    up = parents[up]
        keep = [w and (nodes[i].type != DIR or needed[i] or matched[i]) for i, w in enumerate(wanted)]
    # Nothing below a directory that is left out.
    new_index: dict[int, int] = {}
    items: list[Item] = []
    for index, n in enumerate(nodes):
        up = parents[index]
        if keep[index] and (up == ROOT or up in new_index):
            new_index[index] = len(items)
            items.append(Item(new_index.get(up, ROOT), n.name, n))
    return items
