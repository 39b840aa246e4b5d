"""Prune: free the space of blobs no recovery point references.

Order of work, so that a kill -9 at any moment leaves a repository that
checks clean: (1) store the repacked packs, (2) write one consolidated
index for everything that stays, naming the index objects it supersedes,
(3) delete the old index objects, (4) delete the packs that are no longer
needed. Until (3) is finished every pack still has an index entry that
points into an existing pack; after it, the packs left over are merely
unindexed, which check warns about and the next prune deletes.

On metered targets (a request budget, an upload size cap) prune writes no
pack above the smaller of the repository's pack size and the target's
object size cap, and `max_repack_size` spreads the repacking over several
runs: packs it leaves out stay as they are, fully described by the
consolidated index, and the next prune takes them up.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from strongroom.engine.progress import Listener, ignore
from strongroom.engine.tree_walk import needed_blobs
from strongroom.errors import (IncompleteObject, IntegrityError, ListingFailed, ObjectLocked, ObjectNotFound,
                               StrongroomError, UsageError)
from strongroom.model.snapshot import SNAPSHOT_DIR
from strongroom.repo.locks import LOCK_DIR, REFRESH_EVERY
from strongroom.repo.pack import (PACK_DIR, ENTRY_SIZE, PackedBlob, PackWriter, expected_pack_size, pack_name,
                                  read_pack_header)
from strongroom.repo.repository import Repository, check_envelope
from strongroom.storage import object_size_cap
from strongroom.storage.budget import RequestBudget

_EMPTY_PACK = expected_pack_size([])
TEMPORARY_MIN_AGE = 3600.0  # seconds: a lock's write-then-rename file older than this is a dead writer's  # header encryption overhead and the trailer


def sealed_size(blob_count: int, payload: int) -> int:
    """Bytes of a pack holding `blob_count` blobs of `payload` bytes in all."""
    return _EMPTY_PACK + ENTRY_SIZE * blob_count + payload


def must_seal_before(blob_count: int, payload: int, blob: PackedBlob, limit: int) -> bool:
    """Whether an open pack must be sealed before `blob` goes in, so it stays within `limit`.

    A blob is never left out: one too large for the limit on its own gets a
    pack of its own (the limit is then the repository's pack size, a target;
    the target's hard cap is far above any blob the chunker makes).
    """
    return blob_count > 0 and sealed_size(blob_count + 1, payload + blob.length) > limit


def new_pack_sizes(repack: dict[bytes, list[PackedBlob]], limit: int) -> list[int]:
    """The sizes of the packs run_prune writes for `repack`: the same rule, without the bytes."""
    open_packs: dict[int, tuple[int, int]] = {}
    sizes = []
    for live in repack.values():
        for blob in live:
            count, payload = open_packs.get(blob.type, (0, 0))
            if must_seal_before(count, payload, blob, limit):
                sizes.append(sealed_size(count, payload))
                count, payload = 0, 0
            open_packs[blob.type] = (count + 1, payload + blob.length)
    return sizes + [sealed_size(count, payload) for count, payload in open_packs.values() if count]


def pack_limit(repo: Repository) -> int:
    """The largest pack prune writes: the pack size, or the target's cap if that is smaller."""
    cap = object_size_cap(repo.storage)
    return repo.config.pack_size if cap is None else min(repo.config.pack_size, cap)


def choose_repacks(candidates: dict[bytes, tuple[int, int]], max_bytes: int | None) -> list[bytes]:
    """Which packs to repack this run, given pack -> (stored size, unused bytes).

    Without a limit, all of them. With one, the packs with the largest unused
    share first (most space freed for each byte read and written), as many as
    fit in `max_bytes` of stored size; the rest wait for a later prune.
    """
    order = sorted(candidates, key=lambda p: (-candidates[p][1] / max(1, candidates[p][0]),
                                              -candidates[p][1], p))
    if max_bytes is None:
        return order
    chosen, total = [], 0
    for pack_id in order:
        size = candidates[pack_id][0]
        if total + size <= max_bytes:
            chosen.append(pack_id)
            total += size
    return chosen


@dataclass
class PrunePlan:
    index_objects: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)  # cut-off uploads of index objects or snapshots
    temporaries: list[str] = field(default_factory=list)  # files interrupted local writes left
    keep: dict[bytes, list[PackedBlob]] = field(default_factory=dict)
    repack: dict[bytes, list[PackedBlob]] = field(default_factory=dict)  # pack -> the blobs to carry over
    deferred: dict[bytes, int] = field(default_factory=dict)  # pack -> unused bytes, left for a later prune
    delete: list[bytes] = field(default_factory=list)  # wholly unused packs
    unindexed: list[bytes] = field(default_factory=list)
    sizes: dict[bytes, int] = field(default_factory=dict)
    used_blobs: int = 0
    pack_limit: int = 0  # the largest pack this prune may write
    requests_planning: int = 0  # requests made on the target up to the end of planning

    @property
    def bytes_freed(self) -> int:
        gone = sum(self.sizes.get(p, 0) for p in (*self.delete, *self.unindexed, *self.repack))
        return gone - sum(self.new_pack_sizes)

    @property
    def new_pack_sizes(self) -> list[int]:
        return new_pack_sizes(self.repack, self.pack_limit or 1 << 62)

    @property
    def new_packs(self) -> int:
        return len(self.new_pack_sizes)

    @property
    def requests_to_run(self) -> int:
        """Requests run_prune makes: read each pack to repack, write the new
        packs and the consolidated index, delete what goes."""
        index_write = 1 if self.keep or self.repack or self.index_objects else 0
        deletes = (len(self.index_objects) + len(self.leftovers) + len(self.delete) + len(self.repack)
                   + len(self.unindexed) + len(self.temporaries))
        return len(self.repack) + self.new_packs + index_write + deletes

    @property
    def requests(self) -> int:
        """The whole prune: what planning cost, the work, and releasing the lock."""
        return self.requests_planning + self.requests_to_run + 1

    def summary(self) -> dict:
        return {"packs_kept": len(self.keep), "packs_repacked": len(self.repack), "packs_deleted": len(self.delete),
                "packs_unindexed_deleted": len(self.unindexed), "index_objects": len(self.index_objects),
                "leftovers": len(self.leftovers), "temporaries": len(self.temporaries),
                "used_blobs": self.used_blobs,
                "bytes_freed": self.bytes_freed, "bytes_repacked": sum(self.sizes[p] for p in self.repack),
                "packs_left_to_repack": len(self.deferred),
                "bytes_left_to_repack": sum(self.sizes[p] for p in self.deferred),
                "bytes_left_to_free": sum(self.deferred.values()),
                "max_pack_size": self.pack_limit, "new_packs": self.new_packs,
                "requests_to_run": self.requests_to_run, "requests_estimated": self.requests}


def budget_estimate(requests: int, budget: RequestBudget | None) -> dict | None:
    """What `requests` cost against a request budget: the time they take at its
    rate, and how long a run started now waits for tokens (lock refreshes
    during a long wait included)."""
    if budget is None:
        return None
    available = budget.available()
    wait = max(0.0, requests - available) / budget.rate
    refreshes = int(wait // REFRESH_EVERY)
    # Each refresh makes three requests: a stat of the old lock, the new lock, the old one's delete.
    wait = max(0.0, requests + 3 * refreshes - available) / budget.rate
    return {"requests": budget.capacity, "seconds": budget.window, "available": int(available),
            "seconds_at_rate": round(requests / budget.rate, 1), "wait_estimated": round(wait, 1),
            "lock_refreshes": refreshes}


def plan_prune(repo: Repository, max_unused: float = 0.05, max_repack_size: int | None = None,
               allow_remove_all: bool = False, must_see: frozenset[str] | set[str] = frozenset()) -> PrunePlan:
    """Decide what to delete and repack. Nothing is planned for deletion on the
    strength of an absence that was not confirmed: a listing that fails raises
    (the storage layer never answers a failed listing with nothing), snapshot
    ids the caller knows exist (`must_see`) must be in the listing, a
    repository without any snapshot is pruned empty only with
    `allow_remove_all` (a lying server's empty listing looks just like it), a
    cut-off upload is removed only when the target confirms its size, and an
    indexed pack missing from the listing of data/ is looked up by name."""
    plan = PrunePlan(pack_limit=pack_limit(repo))
    # Objects an earlier, interrupted prune superseded are deleted with the
    # rest but not used: packs only they name are unindexed, so deleted.
    leftovers: list[str] = []
    scan = repo.scan_index(IncompleteObject, lambda name, _: leftovers.append(name))
    plan.index_objects = scan.objects
    packs = scan.packs
    roots = []
    listed = list(repo.storage.list(SNAPSHOT_DIR))
    unseen = set(must_see) - {info.name.rsplit("/", 1)[-1] for info in listed}
    if unseen:
        raise ListingFailed(f"prune stopped: the listing of {SNAPSHOT_DIR}/ leaves out {len(unseen)} recovery "
                            f"point(s) known to exist ({', '.join(sorted(i[:8] for i in unseen))})")
    for info in listed:
        try:
            roots.append(bytes.fromhex(repo.load_snapshot(info.name).tree))
        except IncompleteObject:
            leftovers.append(info.name)  # a cut-off upload, no snapshot
    plan.leftovers = [name for name in leftovers if _confirmed_leftover(repo, name)]
    if not roots and packs and not allow_remove_all:
        raise UsageError(f"prune stopped: no recovery point was found in {SNAPSHOT_DIR}/, so every pack would be "
                         f"deleted. If every point was forgotten on purpose, run prune --allow-remove-all")
    try:
        used = needed_blobs(repo, roots)
    except StrongroomError as e:
        raise IntegrityError(f"prune stopped: a snapshot has an unreadable tree ({e}); run check first") from None
    missing = [b for b in used if b not in repo.index]
    if missing:
        raise IntegrityError(f"prune stopped: {len(missing)} needed blob(s) are not in any index; run check first")
    plan.used_blobs = len(used)
    plan.sizes = repo.list_packs()
    candidates: dict[bytes, list[PackedBlob]] = {}
    for pack_id, blobs in packs.items():
        live = [b for b in blobs if b.id in used and repo.index.get(b.id).pack == pack_id]
        total = sum(b.length for b in blobs)
        live_bytes = sum(b.length for b in live)
        if pack_id not in plan.sizes:
            _confirm_gone(repo, pack_id, bool(live))
            continue  # gone: the new index simply leaves it out
        if not live:
            plan.delete.append(pack_id)
        elif total - live_bytes > max_unused * total:
            candidates[pack_id] = live
        else:
            plan.keep[pack_id] = blobs
    _confirm_other_copies(repo, packs, used, plan.sizes)
    unused = {p: plan.sizes[p] - sum(b.length for b in live) for p, live in candidates.items()}
    chosen = choose_repacks({p: (plan.sizes[p], unused[p]) for p in candidates}, max_repack_size)
    plan.repack = {p: candidates[p] for p in chosen}
    for pack_id in candidates:
        if pack_id not in plan.repack:
            # Left as it is for now: the consolidated index must still describe all of it.
            plan.keep[pack_id] = packs[pack_id]
            plan.deferred[pack_id] = unused[pack_id]
    plan.unindexed = [p for p in plan.sizes if p not in packs]
    # Under the exclusive lock nobody else writes objects, so every temporary
    # file beside them is a dead writer's. Lock files are the exception: a
    # process that tries for the lock writes one before it looks.
    plan.temporaries = [t.name for t in repo.storage.temporaries()
                        if not t.name.startswith(f"{LOCK_DIR}/") or t.age >= TEMPORARY_MIN_AGE]
    plan.requests_planning = repo.storage.total_requests
    return plan


def _confirmed_leftover(repo: Repository, name: str) -> bool:
    """Whether an object read as cut off is really short on the target, not cut
    on the way here: only then is it a leftover to delete."""
    size = repo.storage.stat(name).size
    data = repo.storage.read(name)
    if len(data) != size:
        raise ListingFailed(f"prune stopped: {name} read {len(data)} bytes where the target says {size}")
    try:
        check_envelope(data, name)
    except IncompleteObject:
        return True
    except IntegrityError:
        raise IntegrityError(f"prune stopped: {name} is damaged; run check first") from None
    raise ListingFailed(f"prune stopped: {name} was read cut off, but is whole on the target; run prune again")


def _confirm_other_copies(repo: Repository, packs: dict[bytes, list[PackedBlob]], used: set[bytes],
                          sizes: dict[bytes, int]) -> None:
    """A needed blob that is in more than one pack loses every copy but the one the
    index points to. Before that, the pack holding that copy must say so in its own
    (authenticated) header: an index that lies about a pack would otherwise have
    prune delete the only real copy. One header read per such pack; duplicates are
    rare (two backups storing the same chunk at once)."""
    pointed: dict[bytes, set[tuple[bytes, int, int]]] = {}
    for pack_id, blobs in packs.items():
        for b in blobs:
            if b.id in used:
                loc = repo.index.get(b.id)
                if loc.pack != pack_id and pack_id in sizes:
                    pointed.setdefault(loc.pack, set()).add((b.id, loc.offset, loc.length))
    for pack_id, wanted in pointed.items():
        name = pack_name(pack_id, repo.config.data_fanout)
        if pack_id not in sizes:
            raise IntegrityError(f"prune stopped: {name}, which the index names for a needed blob, is not on the "
                                 f"target; run check")
        try:
            header = {(b.id, b.offset, b.length) for b in read_pack_header(repo.storage, repo.crypto, name,
                                                                          sizes[pack_id])}
        except (IntegrityError, ObjectNotFound) as e:
            raise IntegrityError(f"prune stopped: cannot read the header of {name}: {e}; run check --read-data") \
                from None
        if not wanted <= header:
            raise IntegrityError(f"prune stopped: the index says {name} holds blobs its header does not list, "
                                 f"and other copies of them would be deleted; run check --read-data")


def _confirm_gone(repo: Repository, pack_id: bytes, needed: bool) -> None:
    """An indexed pack the listing of data/ left out: gone, or a listing that lied."""
    name = pack_name(pack_id, repo.config.data_fanout)
    if needed:
        raise IntegrityError(f"prune stopped: pack {pack_id.hex()[:16]} holds data a recovery point needs and is "
                             f"not in the listing of {PACK_DIR}/; run check first")
    try:
        repo.storage.stat(name)
    except ObjectNotFound:
        return
    raise ListingFailed(f"prune stopped: the listing of {PACK_DIR}/ left out {name}, which exists")


def run_prune(repo: Repository, plan: PrunePlan, listener: Listener = ignore) -> dict:
    fanout = repo.config.data_fanout
    limit = plan.pack_limit or pack_limit(repo)
    new_packs: dict[bytes, list[PackedBlob]] = {}
    writers: dict[int, PackWriter] = {}
    largest = 0

    def seal(writer: PackWriter) -> None:
        nonlocal largest
        pack_id, data = writer.seal(repo.crypto)
        repo.check_lock()
        repo.storage.write(pack_name(pack_id, fanout), data)
        new_packs[pack_id] = writer.blobs
        largest = max(largest, len(data))

    for done, (pack_id, live) in enumerate(plan.repack.items(), 1):
        data = repo.storage.read(pack_name(pack_id, fanout))
        if hashlib.sha256(data).digest() != pack_id or len(data) != expected_pack_size(repo.index.packs[pack_id]):
            raise IntegrityError(f"prune stopped: pack {pack_id.hex()[:16]} is damaged; run check first")
        for blob in live:
            writer = writers.get(blob.type)
            if writer is not None and must_seal_before(len(writer), writer.size, blob, limit):
                seal(writers.pop(blob.type))
            # The stored bytes move as they are: their AAD binds type and id, not the pack.
            writer = writers.get(blob.type)
            if writer is None:
                writer = writers[blob.type] = PackWriter()
            writer.add(blob.type, blob.id, data[blob.offset:blob.offset + blob.length], blob.raw_length)
        del data
        listener({"message_type": "status", "action": "prune", "percent_done": round(done / len(plan.repack), 4),
                  "total_packs": len(plan.repack), "packs_done": done, "packs_written": len(new_packs)})
    for writer in writers.values():
        if len(writer):
            seal(writer)
    consolidated = {**plan.keep, **new_packs}
    superseded = [bytes.fromhex(name.rsplit("/", 1)[-1]) for name in plan.index_objects]
    if consolidated or plan.index_objects:
        repo.write_index_object(consolidated, superseded)
    locked = LockedObjects()
    for name in plan.index_objects:
        repo.check_lock()
        locked.delete(repo.storage, name)
    for name in plan.leftovers:
        repo.check_lock()
        locked.delete(repo.storage, name)
    for name in plan.temporaries:
        repo.storage.remove_temporary(name)
    for pack_id in (*plan.delete, *plan.repack, *plan.unindexed):
        repo.check_lock()  # a lost lock may be taken for stale: never delete after that
        if locked.delete(repo.storage, pack_name(pack_id, fanout), plan.sizes.get(pack_id, 0)) \
                and repo.cache is not None:
            repo.cache.discard("trees", pack_id.hex())
    if locked.count and repo.on_warning:
        repo.on_warning(locked.message())
    return {**plan.summary(), "packs_written": len(new_packs), "largest_pack_written": largest,
            **({"locked": locked.summary()} if locked.count else {}), "storage": repo.requests}


class LockedObjects:
    """What the target keeps under a retention date (S3 Object Lock): left in
    place, outside the index (an unindexed pack, a superseded index object),
    for a prune after the date to delete."""

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0
        self.until = None

    def delete(self, storage, name: str, size: int = 0) -> bool:
        """Delete `name`; False when the target keeps it for now."""
        try:
            storage.delete(name)
        except ObjectLocked as e:
            self.count += 1
            self.bytes += size or e.size
            if e.until is not None and (self.until is None or e.until > self.until):
                self.until = e.until
            return False
        return True

    def summary(self) -> dict:
        return {"objects": self.count, "bytes": self.bytes,
                "until": self.until.strftime("%Y-%m-%dT%H:%M:%SZ") if self.until else None}

    def message(self) -> str:
        when = f"{self.until:%Y-%m-%d %H:%M} UTC" if self.until else "their retention dates"
        return (f"{self.count} objects ({self.bytes} bytes) are locked on the target until {when}: "
                f"they stay, outside the index, and a prune after {when} frees them")
