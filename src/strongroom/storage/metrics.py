"""A storage decorator that counts requests and bytes per verb."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Iterator

from strongroom.storage.base import ObjectInfo, Spool, Storage, Temporary


class CountingStorage(Storage):
    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.url = inner.url
        self.requests: Counter[str] = Counter()
        self.bytes_read = 0
        self.bytes_written = 0
        self._lock = threading.Lock()

    def _count(self, verb: str, read: int = 0, written: int = 0) -> None:
        with self._lock:
            self.requests[verb] += 1
            self.bytes_read += read
            self.bytes_written += written

    @property
    def total_requests(self) -> int:
        """HTTP requests where the target counts them (pages, retries), else operations."""
        http = getattr(self.inner, "http_requests", None)
        return http if http is not None else sum(self.requests.values())

    def summary(self) -> dict:
        return {
            "requests": self.total_requests,
            "operations": sum(self.requests.values()),
            "requests_by_verb": dict(self.requests),
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
        }

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self.inner.read(name, offset, length)
        self._count("read", read=len(data))
        return data

    def read_spans(self, name: str, spans) -> Iterator[bytes]:
        size = 0
        try:
            for piece in self.inner.read_spans(name, spans):
                size += len(piece)
                yield piece
        finally:
            self._count("read", read=size)

    def write(self, name: str, data: bytes | memoryview) -> None:
        self.inner.write(name, data)
        self._count("write", written=len(data))

    def spool(self, directory: str) -> Spool | None:
        inner = self.inner.spool(directory)
        return None if inner is None else _CountedSpool(self, inner)

    def delete(self, name: str) -> None:
        self.inner.delete(name)
        self._count("delete")

    def delete_now(self, name: str) -> None:
        self.inner.delete_now(name)
        self._count("delete")

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._count("list")
        yield from self.inner.list(prefix)

    def stat(self, name: str) -> ObjectInfo:
        self._count("stat")
        return self.inner.stat(name)

    def exists(self) -> bool:
        return self.inner.exists()

    def entries(self) -> list[str]:
        self._count("list")
        return self.inner.entries()

    def create(self) -> None:
        self.inner.create()

    def make_dirs(self, directories: list[str]) -> None:
        self.inner.make_dirs(directories)

    def quota(self) -> tuple[int | None, int | None]:
        return self.inner.quota()

    def temporaries(self) -> list[Temporary]:
        self._count("list")
        return self.inner.temporaries()

    def remove_temporary(self, name: str) -> None:
        self.inner.remove_temporary(name)
        self._count("delete")

    def object_lock_setting(self) -> str | None:
        return self.inner.object_lock_setting()

    def use_object_lock(self, setting: str) -> None:
        self.inner.use_object_lock(setting)

    def may_hold_locks(self) -> bool:
        return self.inner.may_hold_locks()

    def retention(self, name: str):
        found = self.inner.retention(name)
        if found is not None:
            self._count("stat")
        return found

    @property
    def info(self):
        return self.inner.info

    def close(self) -> None:
        self.inner.close()


class _CountedSpool(Spool):
    """A spool whose commit counts as one write of everything written to it."""

    def __init__(self, counter: CountingStorage, inner: Spool) -> None:
        self._counter = counter
        self._inner = inner

    @property
    def size(self) -> int:
        return self._inner.size

    def write(self, data: bytes | memoryview) -> None:
        self._inner.write(data)

    def commit(self, name: str) -> None:
        self._inner.commit(name)
        self._counter._count("write", written=self._inner.size)

    def discard(self) -> None:
        self._inner.discard()
