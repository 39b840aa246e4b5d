"""Prune: free the space of blobs no recovery point references.

Order of work, so that a kill -9 at any moment leaves a repository that
checks clean: (1) store the repacked packs, (2) write one consolidated
index for everything that stays, naming the index objects it supersedes,
(3) delete the old index objects, (4) delete the packs that are no longer
needed. Until (3) is finished every pack still has an index entry that
points into an existing pack; after it, the packs left over are merely
unindexed, which check warns about and the next prune deletes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from strongroom.engine.progress import Listener, ignore
from strongroom.engine.tree_walk import needed_blobs
from strongroom.errors import IncompleteObject, IntegrityError, StrongroomError
from strongroom.model.snapshot import SNAPSHOT_DIR
from strongroom.repo.index import INDEX_DIR
from strongroom.repo.pack import PackedBlob, PackWriter, expected_pack_size, pack_name
from strongroom.repo.repository import Repository


@dataclass
class PrunePlan:
    index_objects: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)  # cut-off uploads of index objects or snapshots
    keep: dict[bytes, list[PackedBlob]] = field(default_factory=dict)
    repack: dict[bytes, list[PackedBlob]] = field(default_factory=dict)  # pack -> the blobs to carry over
    delete: list[bytes] = field(default_factory=list)  # wholly unused packs
    unindexed: list[bytes] = field(default_factory=list)
    sizes: dict[bytes, int] = field(default_factory=dict)
    used_blobs: int = 0

    @property
    def bytes_freed(self) -> int:
        gone = sum(self.sizes.get(p, 0) for p in (*self.delete, *self.unindexed, *self.repack))
        carried = sum(b.length for blobs in self.repack.values() for b in blobs)
        return gone - carried

    @property
    def requests(self) -> int:
        new_packs = len(self.repack) and max(1, round(sum(b.length for bl in self.repack.values() for b in bl)
                                                      / (32 << 20) + 0.5))
        deletes = len(self.delete) + len(self.unindexed) + len(self.repack) + len(self.index_objects)
        return len(self.repack) + new_packs + 1 + deletes + len(self.leftovers)

    def summary(self) -> dict:
        return {"packs_kept": len(self.keep), "packs_repacked": len(self.repack), "packs_deleted": len(self.delete),
                "packs_unindexed_deleted": len(self.unindexed), "index_objects": len(self.index_objects),
                "leftovers": len(self.leftovers), "used_blobs": self.used_blobs,
                "bytes_freed": self.bytes_freed, "requests_estimated": self.requests}


def plan_prune(repo: Repository, max_unused: float = 0.05) -> PrunePlan:
    plan = PrunePlan()
    packs: dict[bytes, list[PackedBlob]] = {}
    for info in repo.storage.list(INDEX_DIR):
        try:
            found, _ = repo.read_index_object(info.name)
        except IncompleteObject:
            plan.leftovers.append(info.name)
            continue
        plan.index_objects.append(info.name)
        for pack_id, blobs in found.items():
            packs[pack_id] = blobs
            repo.index.add_pack(pack_id, blobs)
    repo._index_loaded = True
    roots = []
    for info in repo.storage.list(SNAPSHOT_DIR):
        try:
            roots.append(bytes.fromhex(repo.load_snapshot(info.name).tree))
        except IncompleteObject:
            plan.leftovers.append(info.name)  # a cut-off upload, no snapshot
    try:
        used = needed_blobs(repo, roots)
    except StrongroomError as e:
        raise IntegrityError(f"prune stopped: a snapshot has an unreadable tree ({e}); run check first") from None
    missing = [b for b in used if b not in repo.index]
    if missing:
        raise IntegrityError(f"prune stopped: {len(missing)} needed blob(s) are not in any index; run check first")
    plan.used_blobs = len(used)
    plan.sizes = repo.list_packs()
    for pack_id, blobs in packs.items():
        live = [b for b in blobs if b.id in used and repo.index.get(b.id).pack == pack_id]
        total = sum(b.length for b in blobs)
        live_bytes = sum(b.length for b in live)
        if pack_id not in plan.sizes:
            continue  # already gone: the new index simply leaves it out
        if not live:
            plan.delete.append(pack_id)
        elif total - live_bytes > max_unused * total:
            plan.repack[pack_id] = live
        else:
            plan.keep[pack_id] = blobs
    plan.unindexed = [p for p in plan.sizes if p not in packs]
    return plan


def run_prune(repo: Repository, plan: PrunePlan, listener: Listener = ignore) -> dict:
    fanout = repo.config.data_fanout
    new_packs: dict[bytes, list[PackedBlob]] = {}
    writers: dict[int, PackWriter] = {}

    def seal(writer: PackWriter) -> None:
        pack_id, data = writer.seal(repo.crypto)
        repo.storage.write(pack_name(pack_id, fanout), data)
        new_packs[pack_id] = writer.blobs

    for pack_id, live in plan.repack.items():
        data = repo.storage.read(pack_name(pack_id, fanout))
        if hashlib.sha256(data).digest() != pack_id or len(data) != expected_pack_size(repo.index.packs[pack_id]):
            raise IntegrityError(f"prune stopped: pack {pack_id.hex()[:16]} is damaged; run check first")
        for blob in live:
            # The stored bytes move as they are: their AAD binds type and id, not the pack.
            writer = writers.setdefault(blob.type, PackWriter())
            writer.add(blob.type, blob.id, data[blob.offset:blob.offset + blob.length], blob.raw_length)
            if writer.size >= repo.config.pack_size:
                seal(writers.pop(blob.type))
        listener({"type": "status", "action": "prune", "packs_repacked": len(new_packs)})
    for writer in writers.values():
        if len(writer):
            seal(writer)
    consolidated = {**plan.keep, **new_packs}
    superseded = [bytes.fromhex(name.rsplit("/", 1)[-1]) for name in plan.index_objects]
    if consolidated or plan.index_objects:
        repo.write_index_object(consolidated, superseded)
    for name in plan.index_objects:
        repo.storage.delete(name)
    for name in plan.leftovers:
        repo.storage.delete(name)
    for pack_id in (*plan.delete, *plan.repack, *plan.unindexed):
        repo.storage.delete(pack_name(pack_id, fanout))
        if repo.cache is not None:
            repo.cache.discard("trees", pack_id.hex())
    return {**plan.summary(), "packs_written": len(new_packs), "storage": repo.requests}

