"""Storage accounting: what the snapshots hold and what the target stores."""

from __future__ import annotations

from strongroom.engine.tree_walk import walk
from strongroom.errors import StorageError
from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import DIR, FILE
from strongroom.repo.pack import TREE
from strongroom.repo.repository import Repository


def repository_stats(repo: Repository, snapshots: list[Snapshot]) -> dict:
    """Restore size of the chosen snapshots against the unique data they need."""
    repo.load_index()
    restore_size = files = latest_restore_size = 0
    newest = max(snapshots, key=lambda s: (s.datetime, s.id)) if snapshots else None
    needed: set[bytes] = set()
    for snap in snapshots:
        root = bytes.fromhex(snap.tree)
        needed.add(root)
        size = 0
        for _, node in walk(repo, root):
            if node.type == FILE:
                files += 1
                size += node.size
                needed.update(node.content)
            elif node.type == DIR and node.subtree:
                needed.add(node.subtree)
        restore_size += size
        if snap is newest:
            latest_restore_size = size
    raw = stored = data_blobs = tree_blobs = 0
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
    packs = repo.list_packs()
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
        "dedup_ratio": round(restore_size / raw, 3) if raw else None,
        "compression_ratio": round(raw / stored, 3) if stored else None,
        "target": target_space(repo.storage),
        "requests": repo.requests["requests"],
    }


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
