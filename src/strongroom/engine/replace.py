"""Replacing a snapshot by a changed copy: the new one first, then the old one goes.

Used by `tag`, `rewrite` and `repair snapshots`. The order keeps the
recovery point visible at every moment: a command killed between the two
steps leaves both snapshots, never neither; and the new one is read back
from the target (one GET) before the old one is deleted. The copy records in `original`
the id of the snapshot it was first made from, as restic does.
"""

from __future__ import annotations

from dataclasses import replace

from strongroom.errors import ObjectLocked, ObjectNotFound, StorageError
from strongroom.model.snapshot import SNAPSHOT_DIR, Snapshot
from strongroom.repo.repository import Repository, object_id


def changed_copy(snap: Snapshot, **changes) -> Snapshot:
    """`snap` with `changes`, naming its original, not yet stored."""
    return replace(snap, **changes, original=snap.original or snap.id, id="")


def store_copy(repo: Repository, old: Snapshot, new: Snapshot, remove_old: bool) -> Snapshot:
    """Write `new`; then, if asked, delete `old`. Returns `new` with its id.

    The caller holds the exclusive lock, and has flushed every tree and
    index object `new` needs, so the snapshot is written last, as a backup's is.
    """
    new = replace(new, id=repo.save_snapshot(new))
    if remove_old and new.id != old.id:
        _confirm_stored(repo, new.id, old.id)
        remove_snapshot(repo, old.id)
    return new


def _confirm_stored(repo: Repository, snapshot_id: str, kept: str) -> None:
    """Read the copy back from the target, whole, before its original is deleted:
    a server that answers a write with success and keeps nothing must not leave
    neither snapshot."""
    name = f"{SNAPSHOT_DIR}/{snapshot_id}"
    try:
        data = repo.storage.read(name)
    except ObjectNotFound:
        data = None
    if data is None or object_id(data) != snapshot_id:
        raise StorageError(f"the new snapshot {snapshot_id[:8]} is not on the target whole after it was written: "
                           f"snapshot {kept[:8]} is kept")


def remove_snapshot(repo: Repository, snapshot_id: str) -> None:
    repo.check_lock()  # a lost lock may already be taken for stale elsewhere
    try:
        repo.storage.delete(f"{SNAPSHOT_DIR}/{snapshot_id}")
    except ObjectLocked as e:
        # The target keeps it (S3 Object Lock): it stays beside its
        # replacement, which is whole and verified, until its date.
        if repo.on_warning:
            repo.on_warning(f"snapshot {snapshot_id[:8]} stays beside its replacement: {e}")
        return
    if repo.cache is not None:
        repo.cache.discard("snapshots", snapshot_id)
