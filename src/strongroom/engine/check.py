"""Check: the repository's structure, and (on request) every byte of its data.

A check may be scoped to some snapshots (the managed validator checks one
recovery point): then only their trees, the blobs they reference and the
packs holding those are looked at, and a pack that is read has only those
blobs authenticated. Keys, config and index are checked either way.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from strongroom.engine.progress import Counters, Listener, check_status, error_event, ignore
from strongroom.errors import IncompleteObject, IntegrityError, StrongroomError, UsageError
from strongroom.model.snapshot import SNAPSHOT_DIR, Snapshot
from strongroom.model.tree import DIR, FILE, Tree, TreeContainsItself
from strongroom.repo import keys
from strongroom.repo.pack import (TREE, NeedMore, PackedBlob, expected_pack_size, pack_name, parse_header,
                                  read_pack_header)
from strongroom.repo.repository import Repository
from strongroom.words import plural

@dataclass
class CheckReport:
    problems: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # About how the repository could be lost rather than what is wrong in it:
    # a single key, weak key derivation.
    advice: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "problems": self.problems, "warnings": self.warnings, "advice": self.advice,
                **self.counts}


def percentage(text: str) -> float | None:
    """N of a share written `N%` (unchecked), or None when `text` is not written so."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", text)
    return float(m.group(1)) if m else None


def select_subset(pack_ids: list[bytes], subset: str | None, rng: random.Random | None = None) -> list[bytes]:
    """`None` = all; `N%` = a random share; `n/t` = the n-th of t groups by pack id."""
    if not subset:
        return list(pack_ids)
    share = percentage(subset)
    if share is not None:
        if not 0 < share <= 100:
            raise UsageError("--read-data-subset percentage must be in (0, 100]")
        count = math.ceil(len(pack_ids) * share / 100)
        return (rng or random.SystemRandom()).sample(sorted(pack_ids), count)
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", subset)
    if m:
        n, t = int(m.group(1)), int(m.group(2))
        if not 1 <= n <= t:
            raise UsageError("--read-data-subset n/t needs 1 <= n <= t")
        return [p for p in pack_ids if p[0] % t == n - 1]
    raise UsageError(f"cannot read subset {subset!r}: use N% or n/t")


class Checker:
    def __init__(self, repo: Repository, listener: Listener = ignore, kit_on_record: bool = False,
                 snapshots: Sequence[Snapshot] | None = None) -> None:
        self.repo = repo
        self.kit_on_record = kit_on_record
        self.scope = None if snapshots is None else list(snapshots)
        self.needed: set[bytes] = set()  # trees and chunks the snapshots reference
        self._scoped_packs: dict[bytes, list[PackedBlob]] | None = None
        self.listener = listener
        self.report = CheckReport()
        self.damaged_blobs: dict[bytes, str] = {}
        self.packs: dict[bytes, list[PackedBlob]] = {}
        self.snapshots: list[Snapshot] = []
        self.counters = Counters(listener, check_status)
        self.read_problems = 0  # of report.problems, those found by reading pack data
        self._on_target: dict[bytes, int] = {}  # pack sizes as listed

    def _problem(self, obj: str, message: str, **extra) -> None:
        entry = {"object": obj, "message": message, **extra}
        self.report.problems.append(entry)
        self.counters.add(errors=1)
        self.listener(error_event(message, obj, "check", **{"object": obj, **extra}))

    def _leftover(self, error: IncompleteObject) -> None:
        # A cut-off upload is no recovery point's data: worth a word, not a failure.
        self.report.warnings.append(f"{error}; left by an interrupted run, prune removes it")

    def _index_error(self, name: str, error: Exception) -> None:
        if isinstance(error, IncompleteObject):
            self._leftover(error)
        else:
            self._problem(name, str(error))

    def _check_keys(self) -> None:
        """Key files as they are on the target, not the cached copies an open may use."""
        storage = self.repo.storage
        usable = []
        for info in storage.list(keys.KEY_DIR):
            try:
                doc = keys.parse_key_file(keys.read_key_file(storage, info.name), info.name)
            except StrongroomError as e:
                self._problem(info.name, str(e))
                continue
            usable.append(info.name.rsplit("/", 1)[-1])
            memory = doc.get("kdf_params", {}).get("memory_kib")
            if memory is not None and memory < keys.DEFAULT_KDF.memory_kib:
                self.report.advice.append(
                    f"key {info.name.rsplit('/', 1)[-1][:8]} derives its key with {memory} KiB, less than the "
                    f"{keys.DEFAULT_KDF.memory_kib} KiB of new keys: change its password (key passwd) to renew it")
        if self.repo.key_id not in usable:
            self._problem(f"{keys.KEY_DIR}/{self.repo.key_id}",
                          "the key this command opened with is not (or no longer whole) on the target: "
                          "another machine cannot open the repository with it")
        if len(usable) == 1 and not self.kit_on_record:
            self.report.advice.append(
                "the repository has a single key and no recovery kit is on record: if its password is lost, "
                "so is every backup; add a second key (key add) or export a recovery kit (key export CONFIG)")
        self.report.counts["keys"] = len(usable)

    def _load(self) -> None:
        self._check_keys()
        self.repo.read_from_cache = False
        try:
            self.repo.verify_config()
        except StrongroomError as e:
            self._problem("config", str(e))
        self._load_snapshots()
        # As readers do: an index object a consolidated one replaces is not used.
        scan = self.repo.scan_index(StrongroomError, self._index_error)
        self.packs = scan.packs
        if scan.superseded:
            n = len(scan.superseded)
            self.report.warnings.append(f"{plural(n, 'index object')} replaced by a consolidated index "
                                        f"{'is' if n == 1 else 'are'} still there (left by an interrupted prune, "
                                        "or kept by an S3 Object Lock; prune removes them once it may)")

    def _load_snapshots(self) -> None:
        if self.scope is not None:
            self.snapshots = self.scope
            return
        for info in self.repo.storage.list(SNAPSHOT_DIR):
            try:
                self.snapshots.append(self.repo.load_snapshot(info.name))
            except IncompleteObject as e:
                self._leftover(e)
            except StrongroomError as e:
                self._problem(info.name, str(e))

    def _packs_in_scope(self) -> dict[bytes, list[PackedBlob]]:
        """Every indexed pack; scoped, those holding a blob the snapshots need (once their trees are read)."""
        if self.scope is None:
            return self.packs
        if self._scoped_packs is None:
            held = {loc.pack for loc in map(self.repo.index.get, self.needed) if loc is not None}
            # By id first: the index's packs make their lists of blobs only when asked.
            self._scoped_packs = {pack_id: self.packs[pack_id] for pack_id in self.packs if pack_id in held}
        return self._scoped_packs

    def _check_packs_exist(self) -> None:
        on_target = self._on_target = self.repo.list_packs()
        for pack_id, blobs in self._packs_in_scope().items():
            name = pack_name(pack_id, self.repo.config.data_fanout)
            size = on_target.get(pack_id)
            if size is None:
                self._problem(name, "pack is missing", pack=pack_id.hex())
                for b in blobs:
                    self.damaged_blobs[b.id] = f"pack {pack_id.hex()[:16]} is missing"
            elif size != expected_pack_size(blobs):
                self._problem(name, f"pack has {size} bytes, the index says {expected_pack_size(blobs)}",
                              pack=pack_id.hex())
                for b in blobs:
                    self.damaged_blobs[b.id] = f"pack {pack_id.hex()[:16]} has the wrong size"
        self.report.counts["packs"] = len(self._packs_in_scope())
        if self.scope is not None:
            return  # leftovers of interrupted runs belong to no snapshot
        temporaries = self.repo.storage.temporaries()
        if temporaries:
            self.report.warnings.append(
                f"{plural(len(temporaries), 'temporary file')} of {plural(sum(t.size for t in temporaries), 'byte')} "
                f"{'was' if len(temporaries) == 1 else 'were'} left by interrupted writes or "
                f"{'is' if len(temporaries) == 1 else 'are'} being written by a backup running now "
                f"(e.g. {temporaries[0].name}); prune removes them")
        unindexed = set(on_target) - set(self.packs)
        if unindexed:
            self.report.warnings.append(
                f"{plural(len(unindexed), 'pack')} {'is' if len(unindexed) == 1 else 'are'} not in any index "
                "(left by an interrupted run; prune removes them)")

    def _check_trees(self) -> None:
        """Depth-first over every snapshot's trees, each distinct tree once.

        An explicit stack, not recursion, and the trees open on the way down
        are known: a directory whose subtree is one of them is reported (the
        tree contains itself) instead of being walked round and round.
        """
        done: set[bytes] = set()
        self.counters.set_totals(final=True, snapshots=len(self.snapshots))
        for snap in self.snapshots:
            self.counters.add(snapshots_done=1)
            root = bytes.fromhex(snap.tree)
            if root in done:
                continue
            open_trees = {root}
            stack = [(root, iter(self._subtrees(root, snap)))]
            while stack:
                tree_id, children = stack[-1]
                child = next(children, None)
                if child is None:
                    stack.pop()
                    open_trees.discard(tree_id)
                    done.add(tree_id)
                    self.counters.add(trees_done=1)
                elif child in open_trees:
                    self._tree_contains_itself(child, snap)
                elif child not in done:
                    open_trees.add(child)
                    stack.append((child, iter(self._subtrees(child, snap))))
        self.report.counts["trees"] = len(done)
        self.report.counts["blobs"] = len(self.needed)
        self.report.counts["snapshots"] = len(self.snapshots)

    def _subtrees(self, tree_id: bytes, snap: Snapshot) -> list[bytes]:
        """Read one tree, note the data blobs it needs; the ids of its subtrees."""
        self.needed.add(tree_id)
        if tree_id in self.damaged_blobs:
            return []
        if tree_id not in self.repo.index:
            self.damaged_blobs[tree_id] = "tree is not in the index"
            # blob= lets _affected name every snapshot it breaks, and report it only once.
            self._problem(f"tree {tree_id.hex()[:16]}", "tree is not in the index", blob=tree_id.hex(),
                          snapshots=[snap.id[:8]])
            return []
        try:
            tree = self.repo.load_tree(tree_id, keep=False)
        except StrongroomError as e:
            self.damaged_blobs[tree_id] = str(e)
            return []
        subtrees = []
        for node in tree.nodes:
            if node.type == DIR and node.subtree:
                subtrees.append(node.subtree)
            elif node.type == FILE:
                self.needed.update(node.content)
                for blob_id in node.content:
                    if blob_id not in self.repo.index and blob_id not in self.damaged_blobs:
                        self.damaged_blobs[blob_id] = "data blob is not in the index"
        return subtrees

    def _tree_contains_itself(self, tree_id: bytes, snap: Snapshot) -> None:
        if tree_id in self.damaged_blobs:
            return
        error = TreeContainsItself(tree_id)
        self.damaged_blobs[tree_id] = str(error)
        self._problem(f"tree {tree_id.hex()[:16]}", "contains itself", blob=tree_id.hex(), snapshots=[snap.id[:8]])

    def _read_pack(self, pack_id: bytes, blobs: list[PackedBlob]) -> "_PackReading":
        """Read one pack in spans (one read where the storage can stream them),
        hash all of it, authenticate its blobs and compare its header with the
        index. Runs in a reader thread: what it finds is returned, and recorded
        by the caller in pack order."""
        name = pack_name(pack_id, self.repo.config.data_fanout)
        found = _PackReading()
        # Read no further than the index places the pack's end: the listing's
        # size is the target's word, and spans are planned to it, one per
        # CHECK_SPAN (a pack listed at a petabyte would be a billion of them).
        # A pack larger than its index says is reported by its size already.
        expected = expected_pack_size(blobs)
        size = min(self._on_target.get(pack_id, expected), expected)
        ordered = sorted(blobs, key=lambda b: b.offset)
        cuts, tail_start = _span_cuts(ordered, size)
        spans = [(lo, hi - lo) for lo, hi in zip(cuts, cuts[1:] + [size])]
        digest = hashlib.sha256()
        tail = b""
        read = 0
        next_blob = 0
        try:
            for (lo, length), piece in zip(spans, self.repo.storage.read_spans(name, spans)):
                digest.update(piece)
                read += len(piece)
                if lo >= tail_start:
                    tail = bytes(piece)  # a piece is good until the next one comes
                view = memoryview(piece)
                hi = lo + length
                while next_blob < len(ordered) and ordered[next_blob].offset < hi:
                    b = ordered[next_blob]
                    next_blob += 1
                    if self.scope is not None and b.id not in self.needed:
                        continue
                    self._authenticate(b, view[b.offset - lo:b.offset - lo + b.length] if b.offset >= lo else b"",
                                       name, pack_id, found)
            for b in ordered[next_blob:]:  # placed past the pack's end: nothing of them was read
                if self.scope is None or b.id in self.needed:
                    self._authenticate(b, b"", name, pack_id, found)
        except StrongroomError as e:
            return _PackReading(problems=[(name, f"cannot read pack: {e}", {"pack": pack_id.hex()})], read=False)
        found.bytes = read
        whole = []
        if digest.digest() != pack_id:
            whole.append((name, "pack content does not match its name", {"pack": pack_id.hex()}))
        try:
            try:
                header, _ = parse_header(self.repo.crypto, tail, read, name)
            except NeedMore:  # a header longer than the last span: read it on its own
                header = read_pack_header(self.repo.storage, self.repo.crypto, name, read)
            if {(b.id, b.offset, b.length) for b in header} != {(b.id, b.offset, b.length) for b in blobs}:
                whole.append((name, "pack header and index disagree", {"pack": pack_id.hex()}))
        except StrongroomError as e:
            whole.append((name, f"pack header: {e}", {"pack": pack_id.hex()}))
        found.problems[:0] = whole
        return found

    def _authenticate(self, b: PackedBlob, encrypted, name: str, pack_id: bytes, found: "_PackReading") -> None:
        try:
            self.repo.open_blob_scratch(b.type, b.id, encrypted, b.raw_length, name, verify_id=True)
            found.authenticated += 1
        except IntegrityError as e:
            found.damaged[b.id] = f"blob in pack {pack_id.hex()[:16]} is damaged"
            found.problems.append((name, str(e), {"pack": pack_id.hex(), "blob": b.id.hex()}))

    def _read_packs(self, chosen: list[bytes]) -> None:
        """Several packs at once: hashing, decryption and decompression let go
        of the GIL, so readers use every core (and overlap a remote's latency)."""
        self.report.counts["blobs_authenticated"] = 0
        # On a remote target, one reader per connection overlaps the latency.
        with ThreadPoolExecutor(self.repo.download_workers(PACK_READERS), thread_name_prefix="check") as pool:
            for pack_id, found in zip(chosen, pool.map(lambda p: self._read_pack(p, self.packs[p]), chosen)):
                if found.read:
                    self.counters.add(packs_done=1, bytes_done=found.bytes)
                self.damaged_blobs.update(found.damaged)
                self.report.counts["blobs_authenticated"] += found.authenticated
                for obj, message, extra in found.problems:
                    self._problem(obj, message, **extra)

    def _affected(self) -> None:
        """Name the snapshots and files that a damaged blob takes with it."""
        if not self.damaged_blobs:
            return
        hits: dict[bytes, set[tuple[str, str]]] = defaultdict(set)
        below = self._damage_below([bytes.fromhex(snap.tree) for snap in self.snapshots])
        for snap in self.snapshots:
            self._walk_affected(snap, bytes.fromhex(snap.tree), "", hits, below)
        for entry in self.report.problems:
            blob = entry.get("blob")
            pack = entry.get("pack")
            ids = [bytes.fromhex(blob)] if blob else [b.id for b in self.packs.get(bytes.fromhex(pack), ())] if pack else []
            touched = set().union(*(hits.get(i, set()) for i in ids)) if ids else set()
            if ids:
                entry["snapshots"] = sorted({s for s, _ in touched})
                entry["files"] = sorted({f for _, f in touched})
        lost = {}
        for blob_id, why in self.damaged_blobs.items():
            if blob_id in hits and not any(blob_id.hex() == e.get("blob") for e in self.report.problems):
                lost[blob_id] = why
        for blob_id, why in lost.items():
            touched = hits[blob_id]
            if any(e.get("pack") and blob_id in {b.id for b in self.packs.get(bytes.fromhex(e["pack"]), ())}
                   for e in self.report.problems):
                continue
            self._problem(f"blob {blob_id.hex()[:16]}", why, blob=blob_id.hex(),
                          snapshots=sorted({s for s, _ in touched}), files=sorted({f for _, f in touched}))

    def _damage_below(self, roots: list[bytes]) -> dict[bytes, frozenset[bytes]]:
        """Tree id -> the damaged blobs reachable from it, each tree read once.

        A snapshot is a graph of trees: one tree may stand at many paths (in a
        crafted one, at 2^60 of them in 60 levels). Walking paths is only done
        where this says damage lies below, and stops naming files of a blob
        after AFFECTED_FILES_NAMED, so the walk is bounded by what is reported.
        """
        below: dict[bytes, frozenset[bytes]] = {}
        entered: set[bytes] = set()
        stack: list[tuple[bytes, bool]] = [(r, False) for r in roots]
        while stack:
            tree_id, children_done = stack.pop()
            if tree_id in below:
                continue
            if tree_id in self.damaged_blobs:
                below[tree_id] = frozenset((tree_id,))
                continue
            tree = self._readable_tree(tree_id)
            if tree is None:
                below[tree_id] = frozenset()
                continue
            subtrees = [n.subtree for n in tree.nodes if n.type == DIR and n.subtree]
            if not children_done and tree_id not in entered:
                entered.add(tree_id)
                stack.append((tree_id, True))
                stack.extend((t, False) for t in subtrees if t not in below and t not in entered)
                continue
            found = {b for n in tree.nodes if n.type == FILE for b in n.content if b in self.damaged_blobs}
            for t in subtrees:
                found |= below.get(t, frozenset())
            below[tree_id] = frozenset(found)
        return below

    def _walk_affected(self, snap: Snapshot, tree_id: bytes, prefix: str, hits,
                       below: dict[bytes, frozenset[bytes]]) -> None:
        """Note where each damaged blob appears in the snapshot (depth-first, no recursion)."""
        short = snap.id[:8]
        named: dict[bytes, int] = defaultdict(int)  # files named per damaged blob in this snapshot

        def note(blob_id: bytes, where: str) -> None:
            if named[blob_id] < AFFECTED_FILES_NAMED:
                named[blob_id] += 1
                hits[blob_id].add((short, where))

        def worth_entering(subtree: bytes) -> bool:
            return any(named[b] < AFFECTED_FILES_NAMED for b in below.get(subtree, ()))
        if tree_id in self.damaged_blobs:
            hits[tree_id].add((short, prefix or "/"))
            return
        tree = self._readable_tree(tree_id)
        if tree is None:
            return
        names: list[str] = []  # the directories entered below `prefix`, one per stack entry after the first
        open_trees = {tree_id}
        stack = [(tree_id, iter(tree.nodes))]

        def path(name: str) -> str:
            return "/".join([prefix, *names, name])

        while stack:
            current, nodes = stack[-1]
            node = next(nodes, None)
            if node is None:
                stack.pop()
                open_trees.discard(current)
                del names[max(len(stack) - 1, 0):]
                continue
            if node.type == DIR and node.subtree:
                if node.subtree in self.damaged_blobs:
                    note(node.subtree, path(node.display_name))
                    continue
                if node.subtree in open_trees:
                    continue  # _check_trees reports it; here it only must not go round
                if not worth_entering(node.subtree):
                    continue
                subtree = self._readable_tree(node.subtree)
                if subtree is not None:
                    open_trees.add(node.subtree)
                    names.append(node.display_name)
                    stack.append((node.subtree, iter(subtree.nodes)))
            elif node.type == FILE:
                for blob_id in node.content:
                    if blob_id in self.damaged_blobs:
                        note(blob_id, path(node.display_name))

    def _readable_tree(self, tree_id: bytes) -> Tree | None:
        try:
            return self.repo.load_tree(tree_id)
        except StrongroomError:
            return None

    def run(self, read_data: bool = False, subset: str | None = None,
            packs: Sequence[bytes] | None = None) -> CheckReport:
        """`packs`, when given, are the packs to read (those in scope of them), instead of a subset."""
        self._load()
        if self.scope is None:
            self._check_packs_exist()
            self._check_trees()
        else:
            # Which packs are in scope is known once the trees are read.
            self._check_trees()
            self._check_packs_exist()
        before_reading = len(self.report.problems)
        if read_data or subset or packs is not None:
            in_scope = self._packs_in_scope()
            chosen = [p for p in dict.fromkeys(packs) if p in in_scope] if packs is not None \
                else select_subset(sorted(in_scope), subset)
            self.counters.set_totals(packs=len(chosen), bytes=sum(self._pack_size(p) for p in chosen))
            self.counters.maybe_emit(force=True)
            self._read_packs(chosen)
            self.report.counts["packs_read"] = len(chosen)
        # What reading found; everything else (_affected included) is the structure's.
        self.read_problems = len(self.report.problems) - before_reading
        self.counters.maybe_emit(force=True)
        self._affected()
        return self.report

    def _pack_size(self, pack_id: bytes) -> int:
        """A pack's size as the index knows it: the end of its last blob plus its header."""
        blobs = self.packs[pack_id]
        return expected_pack_size(blobs) if blobs else 0


# Packs read at once by check --read-data, each in spans of about CHECK_SPAN
# (a span holds whole blobs, so one larger blob makes a larger one): memory
# holds PACK_READERS spans and the blob each is opening, not whole packs.
PACK_READERS = 3
CHECK_SPAN = 1024 * 1024


@dataclass
class _PackReading:
    """What reading one pack found, to be recorded in pack order."""

    problems: list[tuple[str, str, dict]] = field(default_factory=list)
    damaged: dict[bytes, str] = field(default_factory=dict)
    authenticated: int = 0
    bytes: int = 0
    read: bool = True


def _span_cuts(ordered: list[PackedBlob], size: int) -> tuple[list[int], int]:
    """Where the spans of a pack of `size` bytes start, and where its header
    region starts (after the last blob the index places there). The spans
    cover every byte, for the hash; each holds whole blobs, cut at blob
    starts about CHECK_SPAN apart, and what follows the blobs (the header,
    and whatever a damaged pack carries beyond it) is cut every CHECK_SPAN."""
    cuts = [0]
    for b in ordered:
        if b.offset - cuts[-1] >= CHECK_SPAN and b.offset < size:
            cuts.append(b.offset)
    tail_start = min(size, max((b.offset + b.length for b in ordered), default=0))
    if tail_start > cuts[-1]:
        cuts.append(tail_start)
    while size - cuts[-1] > CHECK_SPAN:
        cuts.append(cuts[-1] + CHECK_SPAN)
    return cuts, tail_start


AFFECTED_FILES_NAMED = 1000  # per damaged blob and snapshot: a report, not an inventory


def run_check(repo: Repository, read_data: bool = False, subset: str | None = None,
              listener: Listener = ignore, kit_on_record: bool = False,
              snapshots: Sequence[Snapshot] | None = None) -> CheckReport:
    """Check the repository, or with `snapshots` only what those snapshots need."""
    return Checker(repo, listener, kit_on_record, snapshots).run(read_data, subset)


__all__ = ["run_check", "CheckReport", "select_subset", "TREE", "Tree"]
