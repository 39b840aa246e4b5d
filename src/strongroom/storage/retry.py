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

Only trouble is retried. A mistake in the set-up (an unknown host, a
refused connection, TLS against a plain HTTP port, a certificate that does
not verify, refused credentials) is raised by the backend as a
non-transient error before its first answer, and fails at once.

A wait is told once: when a request has to be sent a third time, or its
next wait is long (a throttling answer, a Retry-After), one "waiting" event
says what for and until when; the retries themselves go to the log at
DEBUG. A single dropped request retried at once is not a wait. When a
retried request gets through, one "recovered" event closes the episode;
giving up is the error the caller raises, nothing more.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterator, TypeVar

from strongroom.errors import StorageError, TransientStorageError
from strongroom.storage.base import ObjectInfo, Storage, Temporary

T = TypeVar("T")
log = logging.getLogger(__name__)
# A wait this long is told at once, however many attempts came before.
LONG_WAIT = 2.0


@dataclass(frozen=True)
class RetryPolicy:
    deadline: float = 900.0  # seconds one operation may keep trying
    base_delay: float = 0.5
    max_delay: float = 30.0
    blocked_wait: float = 45.0  # after a throttling answer


class RetryingStorage(Storage):
    def __init__(self, inner: Storage, policy: RetryPolicy = RetryPolicy(),
                 on_wait: Callable[[dict], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.inner = inner
        self.url = inner.url
        self.policy = policy
        self.on_wait = on_wait
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self.retries = 0
        # The wait told and not yet over: (when it began on `clock`, its reason).
        self._waiting: tuple[float, str] | None = None
        self._episode_lock = threading.Lock()

    @property
    def target(self) -> str:
        return getattr(self.inner, "target", self.url)

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
                result = fn()
            except TransientStorageError as error:
                attempt += 1
                delay = self._delay(attempt, error)
                elapsed = self._clock() - started
                if elapsed + delay > self.policy.deadline:
                    with self._episode_lock:
                        self._waiting = None
                    raise StorageError(f"{error} (gave up after {attempt} attempts in {elapsed:.0f} s)") from None
                self.retries += 1
                log.info("%s; attempt %d failed, retrying in %.2f s", error, attempt, delay)
                if attempt >= 2 or delay >= LONG_WAIT:
                    self._tell_wait(error, self.policy.deadline - elapsed)
                self._sleep(delay)
            else:
                if attempt:
                    self._tell_recovery()
                return result

    def _tell_wait(self, error: TransientStorageError, remaining: float) -> None:
        """One event for a wait that has begun; nothing while it lasts."""
        with self._episode_lock:
            if self._waiting is not None:
                return
            self._waiting = (self._clock(), error.reason)
        until = datetime.fromtimestamp(self._wall_clock() + remaining, timezone.utc).replace(microsecond=0)
        if self.on_wait:
            self.on_wait({"type": "waiting", "reason": error.reason,
                          "until": until.isoformat().replace("+00:00", "Z"),
                          "message": f"waiting for {self.target}: {error.reason}; "
                                     f"retrying until {until:%H:%M:%S} UTC"})

    def _tell_recovery(self) -> None:
        with self._episode_lock:
            if self._waiting is None:
                return
            began, _ = self._waiting
            self._waiting = None
        waited = self._clock() - began
        if self.on_wait:
            self.on_wait({"type": "recovered", "waited_seconds": round(waited, 1),
                          "message": f"{self.target} answers again, after a wait of {waited:.0f} s"})

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._call(lambda: self.inner.read(name, offset, length))

    def read_spans(self, name: str, spans) -> Iterator[bytes]:
        # A read that fails midway starts again from the first span not yet handed out.
        left = list(spans)
        stream = None

        def next_span() -> bytes:
            nonlocal stream
            if stream is None:
                stream = iter(self.inner.read_spans(name, list(left)))  # a copy: `left` shrinks as spans come
            try:
                piece = next(stream, None)
            except BaseException:
                stream = None
                raise
            if piece is None:
                raise StorageError(f"read {name}: the storage handed out fewer spans than asked for")
            return piece

        try:
            while left:
                piece = self._call(next_span)
                left.pop(0)
                if stream is not None and not left:
                    stream.close()
                yield piece
        finally:
            if stream is not None:
                stream.close()

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

    def entries(self) -> list[str]:
        return self._call(self.inner.entries)

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

    def object_lock_setting(self) -> str | None:
        return self.inner.object_lock_setting()

    def use_object_lock(self, setting: str) -> None:
        self._call(lambda: self.inner.use_object_lock(setting))

    def may_hold_locks(self) -> bool:
        return self._call(self.inner.may_hold_locks)

    def retention(self, name: str):
        return self._call(lambda: self.inner.retention(name))

    @property
    def info(self):
        return self.inner.info

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)
