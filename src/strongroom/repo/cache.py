"""The local cache directory of one repository.

It keeps copies of immutable objects so that repeated commands do not
download metadata again: index objects, snapshots and tree packs (packs of
tree blobs only; data packs are never cached). Objects are named by their
SHA-256, so a copy is either the object or detectably damaged, and readers
check it before use. It also keeps the journal of packs stored since the
last index checkpoint, so that an interrupted backup can adopt them on the
next run instead of uploading them again. Everything here can be deleted
safely.

So the cache never fails a command: the first write it cannot make (a full
disk, a read-only one, no permission) turns writing off for the rest of the
run, with one warning. What is already there is still read and checked. A
lost journal entry only means that an interrupted backup's packs are not
adopted: their blobs are uploaded again, and prune deletes the unindexed
packs.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Callable


from strongroom.paths import default_cache_root


class CacheWrites:
    """Whether the caches under one root may still be written in this run."""

    def __init__(self, root: str, on_warning: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.on_warning = on_warning
        self._off = threading.Event()
        self._lock = threading.Lock()

    @property
    def on(self) -> bool:
        return not self._off.is_set()

    def failed(self, error: OSError) -> None:
        """A write failed: stop writing, and say so once."""
        with self._lock:
            if self._off.is_set():
                return
            self._off.set()
        if self.on_warning is not None:
            self.on_warning(f"cache {self.root}: {error.strerror or error}; going on without it")


class RepoCache:
    def __init__(self, root: str, repo_id: str, writes: CacheWrites | None = None) -> None:
        self.dir = os.path.join(root, repo_id)
        self._journal = os.path.join(self.dir, "pending-packs")
        self._lock = threading.Lock()
        self.writes = writes or CacheWrites(root)

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

    def _write_file(self, path: str, data: bytes) -> None:
        if not self.writes.on:
            return
        temp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(temp, "wb") as f:
                f.write(data)
            os.replace(temp, path)
        except OSError as e:
            try:
                os.unlink(temp)
            except OSError:
                pass
            self.writes.failed(e)

    def put(self, kind: str, name: str, data: bytes) -> None:
        self._write_file(self._object_path(kind, name), data)

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
        self._write_file(os.path.join(self.dir, name), json.dumps(doc).encode())

    def pending_packs(self) -> list[str]:
        try:
            with open(self._journal) as f:
                return [line.strip() for line in f if len(line.strip()) == 64]
        except OSError:
            return []

    def note_pack(self, pack_hex: str) -> None:
        with self._lock:
            if not self.writes.on:
                return
            line = (pack_hex + "\n").encode()
            try:
                os.makedirs(self.dir, exist_ok=True)
                fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as e:
                self.writes.failed(e)
                return
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                done = 0
                while done < len(line):
                    done += os.write(fd, line[done:])
                os.fsync(fd)
            except OSError as e:
                try:
                    os.ftruncate(fd, start)  # no half line for the next entry to run into
                except OSError:
                    pass
                self.writes.failed(e)
            finally:
                os.close(fd)

    def forget_packs(self, done: set[str]) -> None:
        with self._lock:
            if not self.writes.on:
                return  # entries left behind are skipped: their packs are in the index
            remaining = [p for p in self.pending_packs() if p not in done]
            self._write_file(self._journal, "".join(p + "\n" for p in remaining).encode())
