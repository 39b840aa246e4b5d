"""Repair: rebuild the index from the packs, and mend snapshots whose data is gone.

`repair index` writes one new, complete index naming every index object it
replaces, and only then deletes those: a command killed in between leaves
superseded objects that readers ignore and the next prune removes, never a
repository without an index. `repair snapshots` finds snapshots whose trees
or file contents are missing, and (asked to) stores repaired copies, or
removes a snapshot whose root tree is gone, as restic's `repair snapshots
--forget` does. Neither deletes anything on the strength of a listing: a
listing that fails stops the command, and a pack the old index names but the
listing of data/ leaves out is looked up by name before it is dropped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from strongroom.engine.progress import Listener, ignore
from strongroom.engine.replace import changed_copy, remove_snapshot, store_copy
from strongroom.engine.tree_rewrite import TreeRewriter, updated_summary
from strongroom.errors import (ForeignObject, IntegrityError, ListingFailed, ObjectNotFound,
                               TransientStorageError, UsageError)
from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import FILE, Node, Tree, TreeContainsItself
from strongroom.repo.pack import TREE, PackedBlob, expected_pack_size, pack_name, parse_header, read_pack_header
from strongroom.repo.repository import Repository

PROBLEMS_SHOWN = 1000  # paths listed per report; counts are always whole


# ---- repair index ---------------------------------------------------------------

@dataclass
class IndexRepair:
    packs: int = 0  # packs in the new index
    blobs: int = 0
    headers_read: int = 0  # packs whose header (or, with read_all, whole content) was read
    reused: int = 0  # packs taken from the old index as they were
    unreadable: list[str] = field(default_factory=list)  # "pack: why", left out of the new index
    damaged_blobs: int = 0  # blobs left out because they do not authenticate (read_all only)
    dropped: int = 0  # packs the old index named that are gone from the target
    index_written: str | None = None
    index_removed: int = 0

    def to_dict(self) -> dict:
        return {"packs": self.packs, "blobs": self.blobs, "headers_read": self.headers_read,
                "packs_reused": self.reused, "unreadable_packs": self.unreadable,
                "damaged_blobs": self.damaged_blobs, "packs_dropped": self.dropped,
                "index_written": self.index_written, "index_removed": self.index_removed}


def repair_index(repo: Repository, read_all: bool = False, listener: Listener = ignore) -> IndexRepair:
    """Rebuild the index from the packs on the target.

    Packs the old index describes at their true size are taken from it; the
    others (all of them with `read_all`) have their header read. With
    `read_all` each pack is read whole: its bytes must match its name, and a
    blob that does not authenticate is left out, so `repair snapshots` then
    sees it as missing. A pack that cannot be read is reported; it stays on
    the target, and what the old index said of it stays in the new one (a
    read that fails, or a listed size that lies, is no proof its blobs are
    gone); a pack no old index described is left out.
    """
    result = IndexRepair()
    old: dict[bytes, list[PackedBlob]] = {}
    unreadable_index: list[str] = []
    repo.read_from_cache = False

    def unreadable(name: str, error: Exception) -> None:
        if isinstance(error, ForeignObject):
            raise error  # sealed under another key: someone may have replaced the repository's key
        unreadable_index.append(name)

    scan = repo.scan_index(IntegrityError, unreadable)
    old.update(scan.packs)
    on_target = repo.list_packs()
    for pack_id, blobs in old.items():
        if pack_id not in on_target:
            _confirm_gone(repo, pack_id)
            result.dropped += 1
    packs: dict[bytes, list[PackedBlob]] = {}
    for pack_id, size in sorted(on_target.items()):
        name = pack_name(pack_id, repo.config.data_fanout)
        known = old.get(pack_id)
        if not read_all and known is not None and expected_pack_size(known) == size:
            packs[pack_id] = known
            result.reused += 1
            continue
        try:
            blobs = _read_whole(repo, pack_id, name, size, result) if read_all else \
                read_pack_header(repo.storage, repo.crypto, name, size)
        except ObjectNotFound:
            raise ListingFailed(f"repair stopped: {name} was in the listing of data/ but cannot be read") from None
        except IntegrityError as e:
            if known is not None:
                # A failed read is no proof the pack's blobs are gone (a listing
                # that lies about its size makes a sound header unreadable): what
                # the old index says of it is kept, and check judges the pack.
                packs[pack_id] = known
                result.unreadable.append(f"{name}: {e} (the old index's entries kept)")
            else:
                result.unreadable.append(f"{name}: {e}")
            continue
        finally:
            result.headers_read += 1
        listener({"type": "status", "action": "repair index", "packs_read": result.headers_read})
        if blobs:
            packs[pack_id] = blobs
    result.packs = len(packs)
    result.blobs = sum(len(b) for b in packs.values())
    replaced = [bytes.fromhex(name.rsplit("/", 1)[-1]) for name in (*scan.objects, *unreadable_index)]
    if packs or replaced:
        result.index_written = repo.write_index_object(packs, replaced)
    for name in (*scan.objects, *unreadable_index):
        repo.check_lock()
        repo.storage.delete(name)
        if repo.cache is not None:
            repo.cache.discard("index", name)
        result.index_removed += 1
    return result


def _read_whole(repo: Repository, pack_id: bytes, name: str, size: int, result: IndexRepair) -> list[PackedBlob]:
    data = repo.storage.read(name)
    if len(data) != size or hashlib.sha256(data).digest() != pack_id:
        raise IntegrityError(f"{name}: content does not match its name")
    blobs, _ = parse_header(repo.crypto, data, size, name)
    good = []
    for blob in blobs:
        try:
            repo.open_blob(blob.type, blob.id, memoryview(data)[blob.offset:blob.offset + blob.length],
                           blob.raw_length, name, verify_id=True)
        except IntegrityError:
            result.damaged_blobs += 1
            continue
        good.append(blob)
    return good


def _confirm_gone(repo: Repository, pack_id: bytes) -> None:
    """A pack the old index names and the listing left out: gone, or a listing that lied."""
    name = pack_name(pack_id, repo.config.data_fanout)
    try:
        repo.storage.stat(name)
    except ObjectNotFound:
        return
    raise ListingFailed(f"repair stopped: the listing of data/ left out {name}, which exists")


# ---- repair snapshots -------------------------------------------------------------

@dataclass
class SnapshotRepair:
    snapshot: Snapshot
    damaged: int = 0  # files emptied and directories replaced by empty ones
    root_missing: str | None = None  # why the root tree cannot be read
    new: Snapshot | None = None  # the repaired copy, once stored
    removed: bool = False  # the snapshot was deleted (its root is gone, with forget)


@dataclass
class SnapshotsRepair:
    snapshots: list[SnapshotRepair] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # "path: what", the first PROBLEMS_SHOWN
    damaged_objects: list[str] = field(default_factory=list)  # snapshot objects that cannot be read
    missing_packs: int = 0  # packs the index names that are gone from the target

    @property
    def damaged(self) -> list[SnapshotRepair]:
        return [s for s in self.snapshots if s.damaged or s.root_missing]


def repair_snapshots(repo: Repository, forget: bool = False) -> SnapshotsRepair:
    """Find snapshots whose trees or file contents are missing. With `forget`,
    store for each a copy in which a file with missing content is empty and a
    directory whose tree cannot be read is empty, then delete the original;
    a snapshot whose root tree cannot be read is deleted."""
    report = SnapshotsRepair()
    repo.read_from_cache = False  # judge what is on the target, not our copies
    repo.load_index()
    listed, present = _packs_present(repo)
    report.missing_packs = len(repo.index.packs) - len(present)
    if forget:
        _index_complete(repo, listed)

    def note(path: bytes, what: str) -> None:
        if len(report.paths) < PROBLEMS_SHOWN:
            report.paths.append(f"{path.decode('utf-8', 'backslashreplace')}: {what}")

    def edit(path: bytes, node: Node) -> Node | None:
        if node.type != FILE:
            return node
        for blob in node.content:
            loc = repo.index.get(blob)
            if loc is None or loc.pack not in present:
                note(path, "content missing, " + ("emptied" if forget else "would be emptied"))
                return replace(node, content=(), size=0)
        return node

    empty_tree: list[bytes] = []

    def broken(path: bytes, node: Node, error: IntegrityError) -> Node:
        if forget:
            _confirm_unreadable(repo, node.subtree, present)
        note(path, f"directory unreadable ({error}), " + ("emptied" if forget else "would be emptied"))
        if not empty_tree:
            empty_tree.append(rewriter.tree_id(Tree(())))
        return replace(node, subtree=empty_tree[0])

    rewriter = TreeRewriter(repo, edit, broken, store=forget)
    snapshots = repo.list_snapshots(lambda name, e: report.damaged_objects.append(f"{name}: {e}"))
    for snap in snapshots:
        entry = SnapshotRepair(snap)
        report.snapshots.append(entry)
        try:
            result = rewriter.rewrite(bytes.fromhex(snap.tree))
        except TreeContainsItself:
            raise  # a crafted tree, not lost data: nothing is removed for it
        except IntegrityError as e:
            entry.root_missing = str(e)
            if forget:
                _confirm_unreadable(repo, bytes.fromhex(snap.tree), present)
                remove_snapshot(repo, snap.id)
                entry.removed = True
            continue
        if not result.changed:
            continue
        entry.damaged = result.edits
        if forget:
            repo.flush()  # the new trees are indexed before the snapshot naming them is written
            copy = changed_copy(snap, tree=result.tree.hex(), summary=updated_summary(snap.summary, result))
            entry.new = store_copy(repo, snap, copy, remove_old=True)
    return report


def _confirm_unreadable(repo: Repository, tree_id: bytes, present: set[bytes]) -> None:
    """Before a tree is given up for lost, on the strength of one read that failed:
    a tree the index does not name, or in a pack the target does not hold, is
    lost; otherwise it is read once more from the target, and a tree that then
    reads whole stops the command (a server or a path that garbles an answer
    now and then must not cost a snapshot)."""
    loc = repo.index.get(tree_id)
    if loc is None or loc.pack not in present:
        return
    try:
        repo.read_blob(tree_id, TREE)
    except IntegrityError:
        return  # damaged twice alike: the tree is what is wrong
    raise TransientStorageError(f"repair stopped: tree {tree_id.hex()[:16]} failed to read, then read whole: "
                                f"the target answers inconsistently; run repair again once it is reliable")


def _index_complete(repo: Repository, listed: dict[bytes, int]) -> None:
    """Before anything is emptied or removed, the index must describe every pack:
    a blob in a pack no index names only looks missing."""
    if repo.damaged_index:
        raise UsageError(f"repair stopped: {len(repo.damaged_index)} index object(s) cannot be read, so data may "
                         f"only look missing; run repair index first")
    unindexed = set(listed) - set(repo.index.packs)
    if unindexed:
        raise UsageError(f"repair stopped: {len(unindexed)} pack(s) on the target are in no index, so data may only "
                         f"look missing; run repair index first")


def _packs_present(repo: Repository) -> tuple[dict[bytes, int], set[bytes]]:
    """The listing of data/, and the indexed packs that are on the target. One
    the listing leaves out is looked up by name: a listing that lies must not
    make data look missing."""
    listed = repo.list_packs()
    present = set()
    for pack_id in repo.index.packs:
        if pack_id in listed:
            present.add(pack_id)
            continue
        try:
            repo.storage.stat(pack_name(pack_id, repo.config.data_fanout))
        except ObjectNotFound:
            continue
        raise ListingFailed(f"repair stopped: the listing of data/ left out "
                            f"{pack_name(pack_id, repo.config.data_fanout)}, which exists")
    return listed, present
