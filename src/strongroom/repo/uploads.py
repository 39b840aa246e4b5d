"""Packs stored over several connections at once.

A filled pack is handed here by the thread that filled it, which goes back
to compressing while the pack is sealed and sent. At most `connections`
packs are in flight (handed over and not yet stored): a hand-off beyond
that waits for a slot, so the packs held in memory stay at most
connections × pack size whatever the target's latency.

Each pack is one request to the storage below, retried there on its own
(retry.py). The first failure is kept: packs handed over after it are
dropped unsent, the uploads already on their way finish (stored, or
failed in turn), and `wait` raises it. What `store` did for the packs that
got through (the pending-pack journal, the index to be written) stays
true; a dropped or failed pack is given to `drop`, which forgets its blobs.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Generic, TypeVar

P = TypeVar("P")


class PackUploads(Generic[P]):
    def __init__(self, connections: int, store: Callable[[P], None], drop: Callable[[P], None]) -> None:
        if connections < 1:
            raise ValueError("uploads need at least one connection")
        self.connections = connections
        self._store = store
        self._drop = drop
        self._slots = threading.BoundedSemaphore(connections)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._failure: BaseException | None = None
        # The most uploads that were running at once, for the metrics.
        self.most_at_once = 0
        self._running = 0

    def submit(self, pack: P) -> None:
        """Hand a filled pack over, waiting while `connections` are in flight.
        Raises the failure of an earlier upload (the pack is dropped then)."""
        self._slots.acquire()
        with self._lock:
            failure = self._failure
            if failure is None:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.connections, thread_name_prefix="upload")
                self._pool.submit(self._run, pack)
        if failure is not None:
            self._slots.release()
            self._drop(pack)
            raise failure

    def _run(self, pack: P) -> None:
        try:
            with self._lock:
                failed = self._failure is not None
                if not failed:
                    self._running += 1
                    self.most_at_once = max(self.most_at_once, self._running)
            if failed:
                self._drop(pack)
                return
            try:
                self._store(pack)
            except BaseException as e:
                with self._lock:
                    self._failure = self._failure or e
                self._drop(pack)
            finally:
                with self._lock:
                    self._running -= 1
        finally:
            self._slots.release()

    def wait(self) -> None:
        """Wait until every pack handed over is stored or dropped; raise the
        first failure, once (the uploads may be used again after it)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)  # its threads end: an idle repository holds none
        with self._lock:
            failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    @property
    def failed(self) -> bool:
        return self._failure is not None
