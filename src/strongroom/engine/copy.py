"""Copy: recovery points from one repository into another.

Each chosen point of the source is walked tree by tree (an explicit stack of
one directory per level, never recursion), every data blob and tree it
references that the destination lacks is read from the source, authenticated
(decrypted, its id checked against its content) and stored in the
destination under the destination's key, and only then, once the
destination's packs and the index naming them are written, is the point's
snapshot stored there. An interrupted copy leaves blobs, never a point that
does not restore; the next copy sends what is still missing.

Blob ids are keyed (docs/format.md, "Chunks and blob ids"). Two repositories
made with `init --copy-chunker-params` share the id key, so a blob's id is
the same in both and trees are copied as they are. Otherwise each id of the
source is mapped to the destination's id of the same plaintext and every
tree is rewritten bottom-up with the mapped ids. The maps (and the set of
trees already copied this run) live in a temporary SQLite file, not in
Python sets: memory stays bounded whatever the repositories hold.

A copy records the source point's id as its `original` (or the source's own
`original`, for a point that is itself a copy or a changed copy), so a later
copy recognises it, also after a copy of a copy.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass, field, replace

from strongroom.engine.progress import Counters, Listener, ignore, warning_event
from strongroom.errors import ForeignObject, IntegrityError, ObjectNotFound
from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import DIR, FILE, Node, Tree, TreeContainsItself
from strongroom.repo.pack import DATA, TREE, pack_name
from strongroom.repo.repository import Repository


@dataclass(frozen=True)
class CopiedPoint:
    source: str  # the point's id in the source
    copy: str | None  # its id in the destination; None in a dry run, or when it failed
    error: str | None = None  # why it could not be copied


@dataclass(frozen=True)
class CopySummary:
    """What a copy did (or, in a dry run, would do)."""

    points_copied: int
    points_skipped: int  # already in the destination
    points_failed: int
    data_blobs_sent: int
    tree_blobs_sent: int
    bytes_sent: int  # stored in the destination (compressed, encrypted); in a dry run, the source's stored size
    bytes_read: int  # blob bytes read from the source
    shared_ids: bool  # the repositories share the id key: blobs and trees go as they are
    shared_chunker: bool  # ... and the chunker parameters and seed: dedup holds across them
    dry_run: bool
    points: tuple[CopiedPoint, ...] = ()
    skipped: tuple[str, ...] = ()  # source ids already copied

    @property
    def blobs_sent(self) -> int:
        return self.data_blobs_sent + self.tree_blobs_sent

    @property
    def failures(self) -> tuple[CopiedPoint, ...]:
        return tuple(p for p in self.points if p.error is not None)

    def to_dict(self) -> dict:
        return {
            "points_copied": self.points_copied, "points_skipped": self.points_skipped,
            "points_failed": self.points_failed, "blobs_sent": self.blobs_sent,
            "data_blobs_sent": self.data_blobs_sent, "tree_blobs_sent": self.tree_blobs_sent,
            "bytes_sent": self.bytes_sent, "bytes_read": self.bytes_read, "shared_ids": self.shared_ids,
            "shared_chunker": self.shared_chunker, "dry_run": self.dry_run,
            "copied": [{"source": p.source, "copy": p.copy} for p in self.points if p.error is None],
            "failed": [{"source": p.source, "error": p.error} for p in self.points if p.error is not None],
            "skipped": list(self.skipped),
        }


def copy_key(snap: Snapshot) -> str:
    """The id that names a point across copies: the first of its line."""
    return snap.original or snap.id


def already_copied(source: list[Snapshot], destination: list[Snapshot]) -> set[str]:
    """The ids of the source points the destination holds a copy of (or is the source of)."""
    known = {copy_key(s) for s in destination} | {s.id for s in destination}
    return {s.id for s in source if copy_key(s) in known or s.id in known}


def shares_ids(source: Repository, destination: Repository) -> bool:
    return source.crypto.key.id_key == destination.crypto.key.id_key


def shares_chunker(source: Repository, destination: Repository) -> bool:
    return (shares_ids(source, destination) and source.crypto.key.chunker_seed == destination.crypto.key.chunker_seed
            and source.config.chunker == destination.config.chunker)


def copy_status(c: Counters, elapsed: float) -> dict:
    total = c.total("points")
    done = c.get("points_done")
    return {
        "message_type": "status", "action": "copy", "seconds_elapsed": int(elapsed),
        "percent_done": round(min(1.0, done / total) if total else 1.0, 4),
        "total_points": total, "points_done": done,
        "blobs_sent": c.get("blobs_sent"), "bytes_sent": c.get("bytes_sent"), "bytes_read": c.get("bytes_read"),
        "error_count": c.get("errors"), "current_files": list(c.current)[:1],
    }


class _IdMap:
    """source id -> destination id, on disk: trees copied this run, data blobs
    mapped (without a shared id key), blobs a dry run would send."""

    def __init__(self, directory: str) -> None:
        self._db = sqlite3.connect(os.path.join(directory, "ids.sqlite"), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA cache_size=-8192")  # 8 MiB of pages at most
        for table in ("trees", "blobs", "sent"):
            self._db.execute(f"CREATE TABLE {table} (a BLOB PRIMARY KEY, b BLOB NOT NULL) WITHOUT ROWID")

    def get(self, table: str, a: bytes) -> bytes | None:
        row = self._db.execute(f"SELECT b FROM {table} WHERE a = ?", (a,)).fetchone()
        return row[0] if row else None

    def put(self, table: str, a: bytes, b: bytes) -> None:
        self._db.execute(f"INSERT OR REPLACE INTO {table} (a, b) VALUES (?, ?)", (a, b))

    def close(self) -> None:
        self._db.close()


@dataclass
class _Frame:
    tree_id: bytes
    nodes: tuple[Node, ...]
    node: Node | None  # the directory node in the parent; None for the root
    pos: int = 0
    out: list[Node] = field(default_factory=list)
    plain: bytes | None = None  # the tree's bytes, kept only when they are sent as they are
    # Data blobs of this directory's files still to be read and sent, with the
    # file's name: read together, grouped by pack (one ranged read a pack).
    pending: list[tuple[bytes, bytes]] = field(default_factory=list)


# Blobs a directory gathers before they are read: the ids are kept, never the data.
PENDING_BLOBS = 1024


class _PointFailed(Exception):
    pass


class Copier:
    """Copies points from `source` to `destination` (both opened; the caller holds their locks)."""

    def __init__(self, source: Repository, destination: Repository, listener: Listener = ignore,
                 dry_run: bool = False) -> None:
        self.src = source
        self.dst = destination
        self.listener = listener
        self.dry_run = dry_run
        self.shared = shares_ids(source, destination)
        self.counters = Counters(listener, copy_status)
        self.data_sent = self.trees_sent = self.bytes_sent = self.bytes_read = 0

    # ---- blobs --------------------------------------------------------------------

    def _read(self, blob_id: bytes, blob_type: int) -> bytes:
        """A blob of the source, authenticated and its id checked."""
        loc = self.src.index.get(blob_id)
        if loc is None:
            raise IntegrityError(f"blob {blob_id.hex()[:16]} is not in the index of the source")
        if loc.type != blob_type:
            raise IntegrityError(f"blob {blob_id.hex()[:16]} is not a {'tree' if blob_type == TREE else 'data'} blob")
        data = self.src.read_blob(blob_id, blob_type)
        if self.src.crypto.blob_id(data) != blob_id:
            raise IntegrityError(f"blob {blob_id.hex()[:16]}: content does not match its id")
        self.bytes_read += len(data)
        self.counters.add(bytes_read=len(data))
        return data

    def _present(self, blob_id: bytes) -> bool:
        """Whether the destination has (or this run sends) the blob of that destination id."""
        if self.dst.has_blob(blob_id):
            return True
        return self.dry_run and self.dst_map.get("sent", blob_id) is not None

    def _send(self, blob_type: int, dst_id: bytes, plain: bytes | None, src_id: bytes) -> None:
        if self.dry_run:
            self.dst_map.put("sent", dst_id, b"")
            loc = self.src.index.get(src_id)
            stored = loc.length if loc is not None else len(plain or b"")
        else:
            _, stored = self.dst.save_blob(blob_type, plain, dst_id)
            if not stored:
                return
        if blob_type == TREE:
            self.trees_sent += 1
        else:
            self.data_sent += 1
        self.bytes_sent += stored
        self.counters.add(blobs_sent=1, bytes_sent=stored)

    def _queue(self, frame: _Frame, node: Node) -> None:
        """Note the file's data blobs the destination may lack, to be read with the others."""
        for blob_id in node.content:
            if self.shared:
                if self._present(blob_id):
                    continue
                if self.dry_run:  # the size is in the source's index: nothing to read
                    self._send(DATA, blob_id, None, blob_id)
                    continue
            elif self.dst_map.get("blobs", blob_id) is not None:
                continue
            frame.pending.append((blob_id, node.name))

    def _flush(self, frames: list[_Frame], frame: _Frame, where: str) -> None:
        """Read the frame's pending blobs, pack by pack in offset order (one
        `read_spans` a pack: one ranged request on a remote source), check
        each, and send it; a damaged one fails the point, naming its file."""
        pending, frame.pending = frame.pending, []
        wanted: dict[bytes, bytes] = {}
        for blob_id, name in pending:
            if blob_id in wanted:
                continue
            # Sent (or mapped) since it was noted: by a subdirectory, or a file before it.
            if self._present(blob_id) if self.shared else self.dst_map.get("blobs", blob_id) is not None:
                continue
            wanted[blob_id] = name
        by_pack: dict[bytes, list] = {}
        for blob_id, name in wanted.items():
            loc = self.src.index.get(blob_id)
            if loc is None or loc.type != DATA:
                what = "is not in the index of the source" if loc is None else "is not a data blob"
                raise _PointFailed(f"{where}: file {_path(frames, name)}: blob {blob_id.hex()[:16]} {what}")
            by_pack.setdefault(loc.pack, []).append((loc.offset, loc.length, blob_id, loc.raw_length, name))
        for pack, items in by_pack.items():
            items.sort()
            name = pack_name(pack, self.src.config.data_fanout)
            current = items[0][4]
            try:
                pieces = self.src.storage.read_spans(name, [(offset, length) for offset, length, *_ in items])
                for (offset, length, blob_id, raw_length, current), piece in zip(items, pieces):
                    if len(piece) != length:
                        raise IntegrityError(f"blob {blob_id.hex()[:16]} in {name}: the pack is shorter than "
                                             f"the index says")
                    plain = self.src.open_blob(DATA, blob_id, piece, raw_length, name, verify_id=True)
                    self.bytes_read += len(plain)
                    self.counters.add(bytes_read=len(plain))
                    self._send_data(blob_id, plain)
            except ObjectNotFound:
                raise _PointFailed(f"{where}: file {_path(frames, current)}: pack {pack.hex()[:16]} is missing "
                                   f"from the source") from None
            except ForeignObject:
                raise
            except IntegrityError as e:
                raise _PointFailed(f"{where}: file {_path(frames, current)}: {e}") from None

    def _send_data(self, blob_id: bytes, plain: bytes) -> None:
        if self.shared:
            if not self._present(blob_id):
                self._send(DATA, blob_id, plain, blob_id)
            return
        mapped = self.dst.crypto.blob_id(plain)
        if not self._present(mapped):
            self._send(DATA, mapped, plain, blob_id)
        self.dst_map.put("blobs", blob_id, mapped)

    def _mapped(self, node: Node) -> Node:
        """A file node of the source with its content under the destination's ids."""
        if self.shared or node.type != FILE or not node.content:
            return node
        content = []
        for blob_id in node.content:
            mapped = self.dst_map.get("blobs", blob_id)
            if mapped is None:  # every blob of the directory was mapped by its flush
                raise IntegrityError(f"blob {blob_id.hex()[:16]} was not copied")
            content.append(mapped)
        return replace(node, content=tuple(content))

    def _tree(self, frame: _Frame, plain: bytes | None) -> bytes:
        """Store a finished directory in the destination; its destination id."""
        if self.shared:
            if not self._present(frame.tree_id):
                self._send(TREE, frame.tree_id, plain, frame.tree_id)
            return frame.tree_id
        data = Tree(tuple(self._mapped(n) for n in frame.out)).encode()
        mapped = self.dst.crypto.blob_id(data)
        if not self._present(mapped):
            self._send(TREE, mapped, data, frame.tree_id)
        return mapped

    # ---- trees --------------------------------------------------------------------

    def _load(self, tree_id: bytes) -> tuple[bytes, Tree]:
        plain = self._read(tree_id, TREE)
        return plain, Tree.decode(plain)

    def copy_tree(self, root: bytes, where: str) -> bytes:
        """The destination's id of the source tree `root`, every blob below it sent."""
        done = self.dst_map.get("trees", root)
        if done is not None:
            return done
        frames = [self._frame(root, [], where, None)]
        open_trees = {root}
        while True:
            frame = frames[-1]
            if frame.pos < len(frame.nodes):
                node = frame.nodes[frame.pos]
                frame.pos += 1
                if node.type == FILE and node.content:
                    self._queue(frame, node)
                    if len(frame.pending) >= PENDING_BLOBS:
                        self._flush(frames, frame, where)
                    frame.out.append(node)
                elif node.type == DIR and node.subtree:
                    mapped = self.dst_map.get("trees", node.subtree)
                    if mapped is not None:
                        frame.out.append(node if mapped == node.subtree else replace(node, subtree=mapped))
                        continue
                    if node.subtree in open_trees:
                        raise _PointFailed(f"{where}: {TreeContainsItself(node.subtree)}")
                    frames.append(self._frame(node.subtree, frames, where, node))
                    open_trees.add(node.subtree)
                else:
                    frame.out.append(node)
                continue
            if frame.pending:
                self._flush(frames, frame, where)
            frames.pop()
            open_trees.discard(frame.tree_id)
            new_id = self._tree(frame, frame.plain)
            self.dst_map.put("trees", frame.tree_id, new_id)
            if not frames:
                return new_id
            parent = frames[-1]
            parent.out.append(frame.node if new_id == frame.tree_id else replace(frame.node, subtree=new_id))

    def _frame(self, tree_id: bytes, frames: list[_Frame], where: str, node: Node | None) -> _Frame:
        try:
            plain, tree = self._load(tree_id)
        except ForeignObject:
            raise
        except IntegrityError as e:
            place = f"directory {_path(frames, node.name)}" if node is not None else "its root directory"
            raise _PointFailed(f"{where}: {place}: {e}") from None
        # A tree's bytes are kept for its level only when they are sent as they are.
        return _Frame(tree_id, tree.nodes, node, plain=plain if self.shared and not self.dry_run else None)

    # ---- points -------------------------------------------------------------------

    def run(self, chosen: list[Snapshot], existing: list[Snapshot]) -> CopySummary:
        self.src.load_index()
        self.dst.load_index()
        for side, repo in (("source", self.src), ("destination", self.dst)):
            for damaged in repo.damaged_index:
                self.listener(warning_event(f"skipping damaged index object of the {side} {damaged}"))
        if not self.dry_run:
            adopted = self.dst.adopt_pending_packs()
            if adopted:
                self.listener(warning_event(f"resumed: {adopted} packs from an interrupted copy"))
        copied = already_copied(chosen, existing)
        todo = [s for s in chosen if s.id not in copied]
        skipped = tuple(s.id for s in chosen if s.id in copied)
        self.counters.set_totals(final=True, points=len(todo))
        if not shares_chunker(self.src, self.dst) and todo:
            self.listener(warning_event(
                "the repositories do not share chunker parameters (see `init --copy-chunker-params`): "
                + ("blob ids are mapped and trees rewritten; " if not self.shared else "")
                + "dedup between the copies and the destination's own backups is not guaranteed"))
        points: list[CopiedPoint] = []
        with tempfile.TemporaryDirectory(prefix="strongroom-copy-") as scratch:
            self.dst_map = _IdMap(scratch)
            try:
                for snap in todo:
                    points.append(self._copy_point(snap))
                    self.counters.add(points_done=1)
            finally:
                self.dst_map.close()
        self.counters.maybe_emit(force=True)
        failed = sum(1 for p in points if p.error is not None)
        return CopySummary(
            points_copied=len(points) - failed, points_skipped=len(skipped), points_failed=failed,
            data_blobs_sent=self.data_sent, tree_blobs_sent=self.trees_sent, bytes_sent=self.bytes_sent,
            bytes_read=self.bytes_read, shared_ids=self.shared, shared_chunker=shares_chunker(self.src, self.dst),
            dry_run=self.dry_run, points=tuple(points), skipped=skipped)

    def _copy_point(self, snap: Snapshot) -> CopiedPoint:
        where = f"recovery point {snap.short_id}"
        self.counters.begin(where)
        try:
            root = self.copy_tree(bytes.fromhex(snap.tree), where)
        except _PointFailed as e:
            self.counters.add(errors=1)
            self.listener({"message_type": "error", "error": {"message": str(e)}, "during": "copy",
                           "item": snap.id, "message": str(e)})
            return CopiedPoint(snap.id, None, str(e))
        finally:
            self.counters.end(where)
        copy = replace(snap, tree=root.hex(), original=copy_key(snap), parent=None, id="")
        if self.dry_run:
            return CopiedPoint(snap.id, None)
        self.dst.flush()  # packs, then the index naming them, then the snapshot
        return CopiedPoint(snap.id, self.dst.save_snapshot(copy))


def _path(frames: list[_Frame], name: bytes | None) -> str:
    names = [f.node.name for f in frames[1:] if f.node is not None] + ([name] if name is not None else [])
    return ("/" + "/".join(n.decode("utf-8", "backslashreplace") for n in names)) if names else "/"


def run_copy(source: Repository, destination: Repository, chosen: list[Snapshot], listener: Listener = ignore,
             dry_run: bool = False, existing: list[Snapshot] | None = None) -> CopySummary:
    """Copy `chosen` (points of `source`) into `destination`, skipping those it already holds.

    The caller holds a shared lock on each. `existing` is the destination's
    points (listed here when not given)."""
    if existing is None:
        existing = destination.list_snapshots()
    return Copier(source, destination, listener, dry_run).run(chosen, existing)
