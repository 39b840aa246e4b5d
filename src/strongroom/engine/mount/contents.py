"""What a mounted snapshot reads: trees on demand, file bytes blob by blob.

Both caches are bounded whatever the repository holds: trees by the number
of entries kept, blobs by their bytes. A tree is read when a path below it
is first looked up, never by walking the repository.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

from strongroom.engine.mount.views import component_problem
from strongroom.errors import IntegrityError
from strongroom.model.tree import DIR, FILE, Node, node_from_dict
from strongroom.repo.pack import DATA, TREE
from strongroom.repo.repository import Repository

# About 500 bytes each once decoded: some 50 MB of listings at most (one larger listing may stay).
TREE_CACHE_ENTRIES = 100_000
BLOB_CACHE_BYTES = 32 * 1024 * 1024
# Trees whose left-out entries were already warned about; past this many, one
# more warning says so and the rest are left out silently.
WARNED_TREES = 1000


@dataclass(frozen=True)
class Listing:
    """One directory as the mount shows it: entries by raw name, sorted."""

    names: tuple[bytes, ...]
    nodes: dict[bytes, Node]
    left_out: int  # entries that cannot be a name here, or that repeat a name

    @classmethod
    def decode(cls, data: bytes, on_left_out: Callable[[str], None]) -> "Listing":
        """A tree blob, read leniently: the strict decoder refuses a tree with one
        bad name, and one bad name must not hide the whole folder of a mount."""
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            raise IntegrityError("tree blob is not valid JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("nodes", []), list):
            raise IntegrityError("tree blob is not a tree")
        nodes: dict[bytes, Node] = {}
        left_out = 0
        first_problem = None
        for entry in doc.get("nodes", ()):
            try:
                node = node_from_dict(entry if isinstance(entry, dict) else {})
            except IntegrityError as e:  # InvalidName among them: /, NUL, "..", empty
                left_out += 1
                first_problem = first_problem or str(e)
                continue
            problem = component_problem(node.name) or ("a name given twice" if node.name in nodes else None)
            if problem:
                left_out += 1
                first_problem = first_problem or problem
                continue
            nodes[node.name] = node
        if left_out:
            on_left_out(f"{left_out} entr{'y' if left_out == 1 else 'ies'} left out ({first_problem})")
        return cls(tuple(sorted(nodes)), nodes, left_out)


EMPTY = Listing((), {}, 0)


class TreeReader:
    """Directory listings by tree id, read on demand and verified against the id."""

    def __init__(self, repo: Repository, warn: Callable[[str], None],
                 max_entries: int = TREE_CACHE_ENTRIES) -> None:
        self.repo = repo
        self.warn = warn
        self.max_entries = max_entries
        self._cache: OrderedDict[bytes, Listing] = OrderedDict()
        self._entries = 0
        self._lock = threading.Lock()
        self._warned: set[bytes] = set()

    def listing(self, tree_id: bytes) -> Listing:
        if not tree_id:
            return EMPTY  # a directory that stored no tree
        with self._lock:
            found = self._cache.get(tree_id)
            if found is not None:
                self._cache.move_to_end(tree_id)
                return found
        data = self.repo.read_blob(tree_id, TREE)
        if self.repo.crypto.blob_id(data) != tree_id:
            raise IntegrityError(f"tree {tree_id.hex()[:16]}: content does not match its id")
        listing = Listing.decode(data, lambda message: self._warn_once(tree_id, message))
        del data
        with self._lock:
            if tree_id not in self._cache:
                self._cache[tree_id] = listing
                self._entries += len(listing.names)
            # The newest listing always stays, however large: it is in use.
            while self._entries > self.max_entries and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._entries -= len(old.names)
        return listing

    def _warn_once(self, tree_id: bytes, message: str) -> None:
        with self._lock:
            if tree_id in self._warned or len(self._warned) > WARNED_TREES:
                return
            self._warned.add(tree_id)
            last = len(self._warned) > WARNED_TREES
        self.warn(f"tree {tree_id.hex()[:16]}: {message}")
        if last:
            self.warn(f"more than {WARNED_TREES} trees had entries left out; no more warnings about them")

    def lookup(self, root: bytes, parts: list[bytes]) -> Node | None:
        """The node at `parts` below the tree `root`; None for the root itself.
        Raises FileNotFoundError for a path that is not there."""
        tree_id, node = root, None
        for part in parts:
            if tree_id is None:
                raise FileNotFoundError(part)
            node = self.listing(tree_id).nodes.get(part)
            if node is None:
                raise FileNotFoundError(part)
            tree_id = (node.subtree or b"") if node.type == DIR else None
        return node


class BlobCache:
    """Decrypted, verified data blobs, least recently used first out, bounded in bytes."""

    def __init__(self, repo: Repository, max_bytes: int = BLOB_CACHE_BYTES) -> None:
        self.repo = repo
        self.max_bytes = max_bytes
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._loading: dict[bytes, Future] = {}

    def get(self, blob_id: bytes) -> bytes:
        with self._lock:
            data = self._cache.get(blob_id)
            if data is not None:
                self._cache.move_to_end(blob_id)
                return data
            # The kernel reads ahead in several threads at once, mostly inside
            # one chunk: the first fetches it, the others wait for that fetch.
            loading = self._loading.get(blob_id)
            fetching = loading is None
            if fetching:
                loading = self._loading[blob_id] = Future()
        if not fetching:
            return loading.result()
        try:
            data = self.repo.read_blob(blob_id, DATA)
            if self.repo.crypto.blob_id(data) != blob_id:
                raise IntegrityError(f"blob {blob_id.hex()[:16]}: content does not match its id")
        except BaseException as e:
            with self._lock:
                del self._loading[blob_id]
            loading.set_exception(e)
            raise
        with self._lock:
            del self._loading[blob_id]
            self._cache[blob_id] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._bytes -= len(old)
        loading.set_result(data)
        return data


class OpenFile:
    """A file's chunks and where each starts, from the index (no data read)."""

    def __init__(self, repo: Repository, node: Node) -> None:
        if node.type != FILE:
            raise IntegrityError(f"{node.display_name} is not a file")
        repo.load_index()
        self.chunks = node.content
        self.starts: list[int] = []
        total = 0
        for blob_id in node.content:
            loc = repo.index.get(blob_id)
            if loc is None:
                raise IntegrityError(f"blob {blob_id.hex()[:16]} of {node.display_name} is not in the index")
            if loc.type != DATA:
                raise IntegrityError(f"blob {blob_id.hex()[:16]} of {node.display_name} is not a data blob")
            self.starts.append(total)
            total += loc.raw_length
        if total != node.size:
            # The kernel trusts the size it was given; bytes past or short of it would be wrong.
            raise IntegrityError(f"{node.display_name}: its chunks hold {total} bytes, its size says {node.size}")
        self.size = total

    def read(self, blobs: BlobCache, size: int, offset: int) -> bytes:
        if offset >= self.size or size <= 0:
            return b""
        end = min(self.size, offset + size)
        i = bisect.bisect_right(self.starts, offset) - 1
        parts = []
        while offset < end:
            data = blobs.get(self.chunks[i])
            start = self.starts[i]
            if len(data) != (self.starts[i + 1] if i + 1 < len(self.starts) else self.size) - start:
                raise IntegrityError(f"blob {self.chunks[i].hex()[:16]} is not the length the index says")
            piece = data[offset - start:end - start]
            parts.append(piece)
            offset += len(piece)
            i += 1
        return b"".join(parts)
