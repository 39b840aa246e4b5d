"""Snapshots built directly with the library: trees no file system could give a backup."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone

from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import DIR, FILE, Node, Tree
from strongroom.repo.pack import DATA, TREE
from strongroom.repo.repository import Repository

MTIME = 1_600_000_000 * 10**9


def file_node(repo: Repository, name: bytes, payload: bytes, **extra) -> Node:
    blob_id, _ = repo.save_blob(DATA, payload)
    return Node(name=name, type=FILE, mode=extra.pop("mode", 0o640), mtime_ns=extra.pop("mtime_ns", MTIME),
                size=len(payload), content=(blob_id,), **extra)


def dir_node(name: bytes, subtree: bytes | None, **extra) -> Node:
    return Node(name=name, type=DIR, mode=extra.pop("mode", 0o750), mtime_ns=extra.pop("mtime_ns", MTIME),
                subtree=subtree, **extra)


def save_tree(repo: Repository, *nodes: Node) -> bytes:
    return repo.save_tree(Tree(tuple(nodes)))[0]


def save_snapshot(repo: Repository, root: bytes, host: str = "crafted") -> str:
    repo.flush()
    snap = Snapshot(time=datetime.now(timezone.utc).isoformat(timespec="microseconds"), tree=root.hex(),
                    paths=("/",), hostname=host)
    return repo.save_snapshot(snap)


def save_tree_under(repo: Repository, tree_id: bytes, *nodes: Node) -> bytes:
    """Store a tree blob under an id that is not the hash of its content."""
    stored, _ = repo.save_blob(TREE, Tree(tuple(nodes)).encode(), blob_id=tree_id)
    return stored


def open_below(root, names: list[bytes]) -> int:
    """A descriptor of root/names..., opened one level at a time (the path may exceed PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for name in names:
        try:
            below = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)
        fd = below
    return fd


def remove_tree(path) -> None:
    """rm -rf: shutil.rmtree recurses per level and gives up on very deep trees."""
    subprocess.run(["rm", "-rf", "--", os.fspath(path)], check=True)
