"""Repository locks: uniquely named lock objects, no server-side locking.

Shared locks (backup, restore, check) coexist; an exclusive lock (prune, key
changes) excludes every other lock. A lock is refreshed by writing a new
object and deleting the old one; it is stale when it was not refreshed for
STALE_AFTER seconds, or when it belongs to a process on this host that no
longer runs.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass

from strongroom.errors import IntegrityError, ObjectNotFound, RepositoryLocked, StrongroomError
from strongroom.repo.crypto import Crypto
from strongroom.storage.base import Storage

LOCK_DIR = "locks"
LOCK_AAD = b"strongroom lock v1"
REFRESH_EVERY = 300.0
STALE_AFTER = 1800.0


@dataclass(frozen=True)
class LockInfo:
    name: str
    time: float
    exclusive: bool
    hostname: str
    pid: int
    username: str

    def is_stale(self, now: float) -> bool:
        if now - self.time > STALE_AFTER:
            return True
        if self.hostname == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))
        return f"{kind} lock by {self.username}@{self.hostname} pid {self.pid} since {when}"


def read_locks(storage: Storage, crypto: Crypto, skip: str | None = None) -> list[LockInfo]:
    locks = []
    for info in storage.list(LOCK_DIR):
        if info.name == skip:
            continue
        try:
            doc = json.loads(crypto.decrypt(storage.read(info.name), LOCK_AAD, info.name))
        except (ObjectNotFound, IntegrityError, ValueError):
            continue  # vanished, or not ours to read: it cannot hold us back
        locks.append(LockInfo(info.name, doc["time"], doc["exclusive"], doc["hostname"], doc["pid"], doc["username"]))
    return locks


class Lock:
    """A held lock; refreshes itself in a background thread until released."""

    def __init__(self, storage: Storage, crypto: Crypto, exclusive: bool) -> None:
        self.storage = storage
        self.crypto = crypto
        self.exclusive = exclusive
        self.name: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> str:
        doc = {
            "time": time.time(),
            "exclusive": self.exclusive,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "username": getpass.getuser(),
            "nonce": os.urandom(8).hex(),
        }
        data = self.crypto.encrypt(json.dumps(doc).encode(), LOCK_AAD)
        name = f"{LOCK_DIR}/{hashlib.sha256(data).hexdigest()}"
        self.storage.write(name, data)
        return name

    def _conflicts(self) -> list[LockInfo]:
        now = time.time()
        return [
            lock for lock in read_locks(self.storage, self.crypto, skip=self.name)
            if not lock.is_stale(now) and (self.exclusive or lock.exclusive)
        ]

    def acquire(self, wait: float = 0.0) -> "Lock":
        deadline = time.monotonic() + wait
        pause = 0.5
        while True:
            # Write first, then look: two processes that start at the same
            # moment each see the other's lock, and neither goes ahead alone.
            self.name = self._write()
            conflicts = self._conflicts()
            if not conflicts:
                break
            self.storage.delete(self.name)
            self.name = None
            if time.monotonic() >= deadline:
                raise RepositoryLocked(f"repository is locked: {conflicts[0].describe()}")
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(pause * 2, 5.0)  # each look costs a listing: back off
        self._thread = threading.Thread(target=self._refresh, name="lock-refresh", daemon=True)
        self._thread.start()
        return self

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_EVERY):
            old = self.name
            try:
                self.name = self._write()
                if old:
                    self.storage.delete(old)
            except Exception:
                self.name = old

    def release(self, best_effort: bool = False) -> None:
        """Remove the lock. After a failure, try once and never mask the error:
        a lock left behind goes stale and `unlock` or the next run clears it."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self.name:
            name, self.name = self.name, None
            if not best_effort:
                self.storage.delete(name)
                return
            try:
                self.storage.delete_now(name)
            except StrongroomError:
                pass

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release(best_effort=exc_type is not None)


def remove_locks(storage: Storage, crypto: Crypto, all_locks: bool = False) -> list[LockInfo]:
    now = time.time()
    removed = []
    for lock in read_locks(storage, crypto):
        if all_locks or lock.is_stale(now):
            storage.delete(lock.name)
            removed.append(lock)
    return removed
