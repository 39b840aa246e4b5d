"""The local cache directory of one repository.

It keeps copies of immutable objects so that repeated commands do not
download metadata again: index objects, snapshots and tree packs (packs of
tree blobs only; data packs are never cached). Objects are named by their
SHA-256, so a copy is either the object or detectably damaged, and readers
check it before use. It also keeps the journal of packs stored since the
last index checkpoint, so that an interrupted backup can adopt them on the
next run instead of uploading them again. Everything here can be deleted
safely.
"""

from __future__ import annotations

import json
import os
import threading


def default_cache_root() -> str:
    root = os.environ.get("STRONGROOM_CACHE_DIR")
    if root:
        return root
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "strongroom")


class RepoCache:
    def __init__(self, root: str, repo_id: str) -> None:
        self.dir = os.path.join(root, repo_id)
        self._journal = os.path.join(self.dir, "pending-packs")
        self._lock = threading.Lock()

    def _object_path(self, kind: str, name: str) -> str:
        return os.path.join(self.dir, kind, name.rsplit("/", 1)[-1])

    def get(self, kind: str, name: str) -> bytes | None:
        try:
            with open(self._object_path(kind, name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def get_range(self, kind: str, name: str, offset: int, length: int) -> bytes | None:
        try:
            with open(self._object_path(kind, name), "rb") as f:
                data = os.pread(f.fileno(), length, offset)
            return data if len(data) == length else None
        except OSError:
            return None

    def put(self, kind: str, name: str, data: bytes) -> None:
        path = self._object_path(kind, name)
        temp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(temp, "wb") as f:
                f.write(data)
            os.replace(temp, path)
        except OSError:
            try:
                os.unlink(temp)
            except OSError:
                pass  # a cache that cannot be written only costs requests

    def discard(self, kind: str, name: str) -> None:
        try:
            os.unlink(self._object_path(kind, name))
        except OSError:
            pass

    def read_state(self, name: str) -> dict | None:
        """A small document this machine keeps about the repository (lock sightings)."""
        try:
            with open(os.path.join(self.dir, name)) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def write_state(self, name: str, doc: dict) -> None:
        path = os.path.join(self.dir, name)
        temp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            os.makedirs(self.dir, exist_ok=True)
            with open(temp, "w") as f:
                json.dump(doc, f)
            os.replace(temp, path)
        except OSError:
            try:
                os.unlink(temp)
            except OSError:
                pass

    def pending_packs(self) -> list[str]:
        try:
            with open(self._journal) as f:
                return [line.strip() for line in f if len(line.strip()) == 64]
        except OSError:
            return []

    def note_pack(self, pack_hex: str) -> None:
        with self._lock:
            os.makedirs(self.dir, exist_ok=True)
            with open(self._journal, "a") as f:
                f.write(pack_hex + "\n")
                f.flush()
                os.fsync(f.fileno())

    def forget_packs(self, done: set[str]) -> None:
        with self._lock:
            remaining = [p for p in self.pending_packs() if p not in done]
            temp = self._journal + ".tmp"
            try:
                with open(temp, "w") as f:
                    f.write("".join(p + "\n" for p in remaining))
                os.replace(temp, self._journal)
            except OSError:
                pass
