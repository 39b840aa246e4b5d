"""A storage decorator that retries what may pass, until a deadline.

Network errors, 5xx, 423 and 429 are retried with exponential back-off and
jitter, honouring Retry-After. A throttling answer (Nutstore's 503
BlockedTemporarily) waits long: the service counts requests over a window,
and hammering it extends the block. Refused credentials are never retried:
repeated bad passwords lock accounts.

What is retried is one request, not the operation around it: a listing of
many folders and pages hands `_call` down to the backend, which repeats
only the PROPFIND that failed. Behind a server that drops one request in
nine, retrying a walk of seventeen requests whole would almost never
succeed. The deadline applies to each request from its first attempt: a
listing that makes progress keeps going (MAX_PAGES bounds its length), one
request that cannot get through gives up at the deadline.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

from strongroom.errors import StorageError, TransientStorageError
from strongroom.storage.base import ObjectInfo, Storage, Temporary

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    deadline: float = 900.0  # seconds one operation may keep trying
    base_delay: float = 0.5
    max_delay: float = 30.0
    blocked_wait: float = 45.0  # after a throttling answer


class RetryingStorage(Storage):
    def __init__(self, inner: Storage, policy: RetryPolicy = RetryPolicy(),
                 on_wait: Callable[[dict], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.inner = inner
        self.url = inner.url
        self.policy = policy
        self.on_wait = on_wait
        self._clock = clock
        self._sleep = sleep
        self.retries = 0

    def _delay(self, attempt: int, error: TransientStorageError) -> float:
        if error.throttled:
            return max(error.retry_after or 0.0, self.policy.blocked_wait * random.uniform(0.9, 1.1))
        if error.retry_after is not None:
            return min(error.retry_after, self.policy.max_delay * 4)
        return min(self.policy.max_delay, self.policy.base_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    def _call(self, fn: Callable[[], T]) -> T:
        started = self._clock()
        attempt = 0
        while True:
            try:
                return fn()
            except TransientStorageError as error:
                attempt += 1
                delay = self._delay(attempt, error)
                elapsed = self._clock() - started
                if elapsed + delay > self.policy.deadline:
                    raise StorageError(f"{error} (gave up after {attempt} attempts in {elapsed:.0f} s)") from None
                self.retries += 1
                log.info("%s; attempt %d failed, retrying in %.1f s", error, attempt, delay)
                if self.on_wait:
                    self.on_wait({"type": "warning", "message": f"{error}; retrying in {delay:.0f} s"})
                self._sleep(delay)

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._call(lambda: self.inner.read(name, offset, length))

    def write(self, name: str, data: bytes | memoryview) -> None:
        self._call(lambda: self.inner.write(name, data))

    def delete(self, name: str) -> None:
        self._call(lambda: self.inner.delete(name))

    def delete_now(self, name: str) -> None:
        self.inner.delete_now(name)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Each request of the listing is retried on its own; the backend
        # yields every entry once however often a request is repeated.
        return self.inner.list_by_request(prefix, self._call)

    def list_by_request(self, prefix: str, attempt) -> Iterator[ObjectInfo]:
        return self.inner.list_by_request(prefix, lambda request: attempt(lambda: self._call(request)))

    def stat(self, name: str) -> ObjectInfo:
        return self._call(lambda: self.inner.stat(name))

    def exists(self) -> bool:
        return self._call(self.inner.exists)

    def create(self) -> None:
        self._call(self.inner.create)

    def make_dirs(self, directories: list[str]) -> None:
        self._call(lambda: self.inner.make_dirs(directories))

    def quota(self) -> tuple[int | None, int | None]:
        return self._call(self.inner.quota)

    def temporaries(self) -> list[Temporary]:
        return self._call(self.inner.temporaries)

    def remove_temporary(self, name: str) -> None:
        self._call(lambda: self.inner.remove_temporary(name))

    @property
    def info(self):
        return self.inner.info

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)
