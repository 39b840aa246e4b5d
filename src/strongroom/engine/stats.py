"""Storage accounting: what the snapshots hold and what the target stores."""

from __future__ import annotations

from strongroom.errors import StorageError
from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import DIR, FILE, TreeContainsItself
from strongroom.repo.pack import TREE, expected_pack_size
from strongroom.repo.repository import Repository


def repository_stats(repo: Repository, snapshots: list[Snapshot], list_target: bool = True) -> dict:
    """Restore size of the chosen snapshots against the unique data they need.

    Each distinct tree is read and counted once, however many snapshots
    share it, so a sample after every run stays cheap as points pile up.
    With `list_target` the packs are counted as the target lists them (on
    WebDAV a listing per pack folder); without, as the index describes them,
    which costs no request (leftovers of interrupted runs are not counted)."""
    repo.load_index()
    totals: dict[bytes, tuple[int, int]] = {}  # tree id -> (files, bytes) below it
    needed: set[bytes] = set()
    restore_size = files = latest_restore_size = 0
    newest = max(snapshots, key=lambda s: (s.datetime, s.id)) if snapshots else None
    for snap in snapshots:
        root = bytes.fromhex(snap.tree)
        count, size = _tree_totals(repo, root, totals, needed)
        files += count
        restore_size += size
        if snap is newest:
            latest_restore_size = size
    raw = stored = data_blobs = tree_blobs = data_raw = 0
    for blob_id in needed:
        loc = repo.index.get(blob_id)
        if loc is None:
            continue
        raw += loc.raw_length
        stored += loc.length
        if loc.type == TREE:
            tree_blobs += 1
        else:
            data_blobs += 1
            data_raw += loc.raw_length
    packs = repo.list_packs() if list_target else \
        {pack_id: expected_pack_size(blobs) for pack_id, blobs in repo.index.packs.items()}
    return {
        "snapshots": len(snapshots),
        "files": files,
        "restore_size": restore_size,
        "latest_restore_size": latest_restore_size,
        "unique_size": raw,
        "unique_stored_size": stored,
        "data_blobs": data_blobs,
        "tree_blobs": tree_blobs,
        "packs": len(packs),
        "repository_size": sum(packs.values()),
        # File bytes of all the snapshots over the unique file data they need:
        # 1.0 for data without duplicates. Trees are metadata, not deduplicated
        # file data, and counting them would put a first backup below 1.
        "dedup_ratio": round(restore_size / data_raw, 3) if data_raw else None,
        "compression_ratio": round(raw / stored, 3) if stored else None,
        "target": target_space(repo.storage),
        "requests": repo.requests["requests"],
    }


def _tree_totals(repo: Repository, root: bytes, totals: dict[bytes, tuple[int, int]],
                 needed: set[bytes]) -> tuple[int, int]:
    """(files, bytes) below `root`, adding every tree and chunk to `needed`."""
    stack: list[tuple[bytes, object]] = [(root, None)]  # (tree id, its tree once read)
    open_trees: set[bytes] = set()  # read, totals not yet known: the trees on the way down
    while stack:
        tree_id, tree = stack.pop()
        if tree_id in totals:
            continue
        if tree is None:
            if tree_id in open_trees:
                raise TreeContainsItself(tree_id)  # met again below itself
            tree = repo.load_tree(tree_id)
            needed.add(tree_id)
            open_trees.add(tree_id)
            stack.append((tree_id, tree))
            stack.extend((n.subtree, None) for n in tree.nodes
                         if n.type == DIR and n.subtree and n.subtree not in totals)
            continue
        count = size = 0
        for node in tree.nodes:
            if node.type == FILE:
                count += 1
                size += node.size
                needed.update(node.content)
            elif node.type == DIR and node.subtree:
                count += totals[node.subtree][0]
                size += totals[node.subtree][1]
        totals[tree_id] = (count, size)
        open_trees.discard(tree_id)
    return totals[root]


def target_space(storage) -> dict:
    """The space on the target as it reports it: RFC 4331 quota on WebDAV
    (where the server has it), the file system's for a local directory.
    Values are None where the target does not say."""
    try:
        used, available = storage.quota()
    except StorageError:
        used = available = None
    total = used + available if used is not None and available is not None else None
    return {"used": used, "available": available, "total": total}
