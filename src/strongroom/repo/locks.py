"""Repository locks: uniquely named lock objects, no server-side locking.

Shared locks (backup, restore, check) coexist; an exclusive lock (prune, key
changes) excludes every other lock. A lock is refreshed by writing a new
object and deleting the old one, so a live lock changes its name every
`refresh_every` seconds.

Staleness is judged by observation, never by comparing our clock with the
time a lock says it was written: a lock is stale once we have seen the same
object (the same name, so never refreshed) for `stale_after` seconds of our
own monotonic clock, or when it was written on this very machine, boot and
pid namespace by a process that no longer runs. Clock skew between hosts,
of either sign, cannot make a live lock look stale.

The holder keeps its side of that bargain: when it cannot refresh for
`lost_after` seconds (well inside `stale_after`), or finds its lock object
gone, the lock is lost, and the repository refuses every write after that
(LockLost), since another host may by then have taken the lock for stale
and be deleting what this one stored.
"""

from __future__ import annotations

import errno
import getpass
import hashlib
import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

from strongroom.errors import (IntegrityError, Interrupted, LockLost, ObjectNotFound, RepositoryLocked, StorageError,
                               StrongroomError)
from strongroom.repo.crypto import Crypto
from strongroom.repo.host import HostIdentity
from strongroom.storage.base import Storage, read_bounded

log = logging.getLogger(__name__)

LOCK_DIR = "locks"
LOCK_AAD = b"strongroom lock v1"
MAX_LOCK = 64 * 1024  # a lock is a few hundred bytes
REFRESH_EVERY = 300.0
LOST_AFTER = 900.0
STALE_AFTER = 1800.0
STOP_LOOK = 0.2  # seconds between two looks at `stop` while a lock is waited for


def time_awake_or_asleep() -> float:
    """Seconds on a clock that keeps counting while the machine sleeps.

    CLOCK_MONOTONIC stops during suspend: a laptop that slept 40 minutes in
    the middle of a backup would wake believing its lock was refreshed a
    moment ago, while other hosts have rightly taken it for stale. On the
    boot-time clock, it wakes and finds its lock lost.
    """
    return time.clock_gettime(_BOOTTIME)


_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


@dataclass(frozen=True)
class LockTiming:
    """How often a lock is refreshed, when its holder gives it up, and when
    others take it for stale. Tests pass short intervals and a fake clock."""

    refresh_every: float = REFRESH_EVERY
    # Half the stale window: an upload that started just before the lock was
    # lost still has a quarter of an hour to finish before anyone may judge it.
    lost_after: float = LOST_AFTER
    retry_pause: float = 20.0
    stale_after: float = STALE_AFTER
    clock: Callable[[], float] = time_awake_or_asleep

    def __post_init__(self) -> None:
        if not 0 < self.refresh_every < self.lost_after < self.stale_after:
            raise ValueError("lock timing needs 0 < refresh_every < lost_after < stale_after")


@dataclass(frozen=True)
class LockInfo:
    name: str
    time: float  # the writer's clock: shown to people, never used to judge staleness
    exclusive: bool
    hostname: str
    pid: int
    username: str
    machine_id: str | None = None  # absent in locks of older versions
    boot_id: str | None = None
    pid_ns: str | None = None

    def process_gone(self, here: HostIdentity) -> bool:
        """Whether this lock's process is known not to run: only decidable for a
        lock written on this machine, in this boot and pid namespace."""
        if not here.shares_pids_with(self.machine_id, self.boot_id, self.pid_ns):
            return False
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


class StateStore(Protocol):
    """Where sightings outlive a run: the repository's local cache."""

    def read_state(self, name: str) -> dict | None: ...

    def write_state(self, name: str, doc: dict) -> None: ...


class LockSightings:
    """When we first saw each lock object, on our monotonic clock.

    Kept in memory while a command waits for a lock, and in `store` across
    runs. CLOCK_MONOTONIC is shared by every process of one boot, so stored
    sightings are used only in the boot that recorded them.
    """

    STATE = "lock-sightings"

    def __init__(self, clock: Callable[[], float] = time_awake_or_asleep, boot_id: str | None = None,
                 store: StateStore | None = None) -> None:
        self.clock = clock
        self.boot_id = boot_id
        self.store = store
        self._first_seen: dict[str, float] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, float]:
        if self._first_seen is None:
            self._first_seen = {}
            doc = self.store.read_state(self.STATE) if self.store is not None and self.boot_id else None
            if isinstance(doc, dict) and doc.get("boot_id") == self.boot_id:
                now = self.clock()
                for name, seen in dict(doc.get("seen") or {}).items():
                    if isinstance(seen, (int, float)):
                        self._first_seen[name] = min(float(seen), now)
        return self._first_seen

    def observe(self, names: Iterable[str]) -> None:
        """Record the locks listed now; forget those that are gone."""
        names = set(names)
        with self._lock:
            first_seen = self._load()
            now = self.clock()
            changed = set(first_seen) != names
            self._first_seen = {name: first_seen.get(name, now) for name in names}
            if changed and self.store is not None and self.boot_id:
                self.store.write_state(self.STATE, {"boot_id": self.boot_id, "seen": self._first_seen})

    def unchanged_for(self, name: str) -> float:
        with self._lock:
            seen = self._load().get(name)
            return 0.0 if seen is None else max(0.0, self.clock() - seen)


@dataclass
class Staleness:
    """The rule: seen unchanged for `stale_after`, or dead by pid right here."""

    here: HostIdentity
    sightings: LockSightings
    stale_after: float = STALE_AFTER

    def judge(self, locks: list[LockInfo]) -> list[LockInfo]:
        """Observe `locks` (the whole listing) and return the stale ones."""
        self.sightings.observe(lock.name for lock in locks)
        return [lock for lock in locks if self.is_stale(lock)]

    def is_stale(self, lock: LockInfo) -> bool:
        return self.sightings.unchanged_for(lock.name) >= self.stale_after or lock.process_gone(self.here)

    def explain(self, lock: LockInfo) -> str:
        seen = self.sightings.unchanged_for(lock.name)
        return (f"{lock.describe()} (seen unchanged for {seen:.0f} s here; it is taken for stale after "
                f"{self.stale_after:.0f} s unchanged, or `unlock --remove-all` removes it)")


def read_locks(storage: Storage, crypto: Crypto, skip: str | None = None) -> list[LockInfo]:
    locks = []
    for info in storage.list(LOCK_DIR):
        if info.name == skip:
            continue
        try:
            doc = json.loads(crypto.decrypt(read_bounded(storage, info.name, MAX_LOCK, "lock"), LOCK_AAD, info.name))
        except (ObjectNotFound, IntegrityError, ValueError, RecursionError):  # RecursionError: JSON nested too deep
            continue  # vanished, or not ours to read: it cannot hold us back
        locks.append(LockInfo(info.name, doc["time"], doc["exclusive"], doc["hostname"], doc["pid"],
                              doc["username"], doc.get("machine_id"), doc.get("boot_id"), doc.get("pid_ns")))
    return locks


_REFUSALS = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
             errno.EPERM: "permission denied", errno.ENOSPC: "no space left on device",
             errno.EDQUOT: "disk quota exceeded"}


def write_refusal(error: BaseException) -> str | None:
    """Why a target refuses writes for good (read-only, no permission, full),
    or None for any other failure."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _REFUSALS:
            return _REFUSALS[error.errno]
        if isinstance(error, StorageError):
            text = str(error)
            if "HTTP 507" in text:
                return "the target is full"
            if "HTTP 403" in text:
                return "permission denied"
        error = error.__cause__ or error.__context__
    return None


@dataclass
class _LostState:
    event: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None


class Lock:
    """A held lock; refreshes itself in a background thread until released.

    `lost` is set (and `lost_reason` says why) when the lock could not be
    kept; `check()` raises LockLost from then on, and callbacks given to
    `on_lost` are called once, from the thread that found out.
    """

    def __init__(self, storage: Storage, crypto: Crypto, exclusive: bool, *, timing: LockTiming = LockTiming(),
                 host: HostIdentity | None = None, sightings: LockSightings | None = None) -> None:
        self.storage = storage
        self.crypto = crypto
        self.exclusive = exclusive
        self.timing = timing
        self.host = host or HostIdentity.current()
        self.staleness = Staleness(self.host, sightings or LockSightings(timing.clock, self.host.boot_id),
                                   timing.stale_after)
        self.name: str | None = None
        self.refresh_attempts = 0
        self._refreshed_at = 0.0
        self._lost = _LostState()
        self._callbacks: list[Callable[[str], None]] = []
        self._state = threading.Lock()
        self._leftovers: list[str] = []  # older lock objects whose delete failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- what the holder learns ------------------------------------------------------

    @property
    def lost(self) -> threading.Event:
        return self._lost.event

    @property
    def lost_reason(self) -> str | None:
        return self._lost.reason

    @property
    def held(self) -> bool:
        return self.name is not None and not self.lost.is_set()

    def on_lost(self, callback: Callable[[str], None]) -> None:
        """Call `callback(reason)` once when the lock is lost (at once if it is)."""
        with self._state:
            if not self.lost.is_set():
                self._callbacks.append(callback)
                return
        callback(self.lost_reason or "")

    def check(self) -> None:
        """Raise LockLost if the lock is lost, or if it has gone unrefreshed for
        `lost_after` (even when the refresh thread is stuck in a slow request)."""
        if self.name is not None and not self.lost.is_set():
            waited = self.timing.clock() - self._refreshed_at
            if waited >= self.timing.lost_after:
                self._declare_lost(f"the lock was not refreshed for {waited:.0f} s")
        if self.lost.is_set():
            raise LockLost(f"repository lock lost: {self.lost_reason}; stopped before writing more")

    def _declare_lost(self, reason: str) -> None:
        with self._state:
            if self.lost.is_set():
                return
            self._lost.reason = reason
            self.lost.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(reason)

    # ---- taking and keeping ----------------------------------------------------------

    def _write(self) -> str:
        doc = {
            "time": time.time(),
            "exclusive": self.exclusive,
            "hostname": self.host.hostname,
            "pid": os.getpid(),
            "username": getpass.getuser(),
            "machine_id": self.host.machine_id,
            "boot_id": self.host.boot_id,
            "pid_ns": self.host.pid_ns,
            "nonce": os.urandom(8).hex(),
        }
        data = self.crypto.encrypt(json.dumps(doc).encode(), LOCK_AAD)
        name = f"{LOCK_DIR}/{hashlib.sha256(data).hexdigest()}"
        self.storage.write(name, data)
        return name

    def _conflicts(self) -> tuple[list[LockInfo], list[LockInfo]]:
        """The other locks that hold us back, and the stale ones passed over."""
        others = read_locks(self.storage, self.crypto, skip=self.name)
        stale = self.staleness.judge(others)
        gone = {lock.name for lock in stale}
        return [lock for lock in others if lock.name not in gone and (self.exclusive or lock.exclusive)], stale

    def _remove_stale(self, stale: list[LockInfo]) -> None:
        """Delete the stale locks passed over, once ours is held: left in place,
        a crashed host's lock would hold every later exclusive lock back for
        the whole stale window again on each machine that had not seen it
        yet. Its holder, if it still runs, has given the lock up long since
        (lost_after < stale_after) and finds it gone."""
        for lock in stale:
            try:
                self.storage.delete(lock.name)
                log.info("removed a stale %s", lock.describe())
            except StrongroomError:
                pass  # another host removed it first, or the next one will

    def acquire(self, wait: float = 0.0, stop: Callable[[], bool] | None = None) -> "Lock":
        """Take the lock, waiting up to `wait` seconds for conflicting ones to go
        (RepositoryLocked after that). `stop`, asked between two looks, ends the
        wait early (Interrupted): a daemon told to stop does not wait out a prune.

        An exclusive lock held back only by shared ones that show signs of
        life keeps its object in place while it waits (refreshed like a held
        one): new shared locks see it and wait behind it, so backups of many
        hosts that overlap one another cannot keep a prune out for ever. Held
        back by another exclusive lock, or by a shared one that has not
        changed for longer than a refresh (its holder may have crashed), it
        withdraws after each look, as a shared lock always does: backups go on
        while that lock ages into staleness."""
        deadline = time.monotonic() + wait
        pause = 0.5
        announced = False
        try:
            while True:
                # Write first, then look: two processes that start at the same
                # moment each see the other's lock, and neither goes ahead alone.
                if self.name is None:
                    started = self.timing.clock()
                    self.name = self._write()
                    self._refreshed_at = started
                elif self.timing.clock() - self._refreshed_at >= self.timing.refresh_every:
                    self._renew_waiting()
                conflicts, stale = self._conflicts()
                if not conflicts:
                    self._remove_stale(stale)
                    break
                in_place = self.exclusive and time.monotonic() < deadline and all(
                    self._known_live_shared(lock) for lock in conflicts)
                if not in_place:
                    name, self.name = self.name, None
                    self.storage.delete(name)
                # The one to name: the lock seen unchanged longest, the likeliest to be a dead host's.
                blocking = max(conflicts, key=lambda lock: self.staleness.sightings.unchanged_for(lock.name))
                if time.monotonic() >= deadline:
                    raise RepositoryLocked(f"repository is locked: {self.staleness.explain(blocking)}")
                # Said once (a warning), then at each look only with -v.
                log.log(logging.INFO if announced else logging.WARNING, "repository is locked (%s): waiting up "
                        "to %.0f s%s", self.staleness.explain(blocking), max(0.0, deadline - time.monotonic()),
                        "; new shared locks wait behind this one" if in_place else "")
                announced = True
                # Jitter: two waiters on the same back-off schedule write, see each
                # other and withdraw in step, and neither ever goes ahead.
                step = pause * random.uniform(0.5, 1.0)
                if in_place:
                    step = min(step, self.timing.refresh_every / 2)
                until = time.monotonic() + max(0.0, min(step, deadline - time.monotonic()))
                while True:
                    if stop is not None and stop():
                        raise Interrupted(f"stopped while waiting for the repository lock "
                                          f"({self.staleness.explain(blocking)})")
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    time.sleep(min(left, STOP_LOOK))
                pause = min(pause * 2, 5.0)  # each look costs a listing: back off
        except BaseException:
            self._withdraw()
            raise
        self._thread = threading.Thread(target=self._keep, name="lock-refresh", daemon=True)
        self._thread.start()
        log.info("took %s lock %s", "an exclusive" if self.exclusive else "a shared", self.name)
        return self

    def _known_live_shared(self, lock: LockInfo) -> bool:
        """A shared lock seen here for less than two refresh intervals: a live
        holder replaces its object every interval, a dead one's only ages."""
        return not lock.exclusive and self.staleness.sightings.unchanged_for(lock.name) < 2 * self.timing.refresh_every

    def _renew_waiting(self) -> None:
        """Refresh the object of a lock still waiting: a new one, then the old one
        deleted (or left for the next attempt)."""
        old, started = self.name, self.timing.clock()
        self.name = self._write()
        self._refreshed_at = started
        self._leftovers.append(old)
        self._remove_leftovers()

    def _withdraw(self) -> None:
        """A wait that failed or was stopped: take our objects away, one try each."""
        if self.name is not None:
            self._leftovers.append(self.name)
            self.name = None
        for name in list(self._leftovers):
            try:
                self.storage.delete_now(name)
                self._leftovers.remove(name)
            except StrongroomError:
                pass  # it goes stale

    def _keep(self) -> None:
        delay = self.timing.refresh_every
        while not self._stop.wait(delay):
            if self.lost.is_set():
                return
            try:
                self._refresh()
                delay = self.timing.refresh_every
            except LockLost:
                return
            except StrongroomError as e:
                waited = self.timing.clock() - self._refreshed_at
                left = self.timing.lost_after - waited
                if left <= 0:
                    self._declare_lost(f"could not refresh the lock for {waited:.0f} s ({e})")
                    return
                delay = min(self.timing.retry_pause, left)

    def _refresh(self) -> None:
        self.refresh_attempts += 1
        started = self.timing.clock()
        old = self.name
        try:
            self.storage.stat(old)
        except ObjectNotFound:
            self._declare_lost("the lock object was removed from the repository (by `unlock`, or by a "
                               "host that took it for stale)")
            raise LockLost(self.lost_reason) from None
        new = self._write()
        with self._state:
            if self.lost.is_set() or self._stop.is_set():
                self._leftovers.append(new)  # too late to count: take it away again
            else:
                self.name, self._refreshed_at = new, started
                self._leftovers.append(old)
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        for name in list(self._leftovers):
            try:
                self.storage.delete(name)
                self._leftovers.remove(name)
            except StrongroomError:
                pass  # it goes stale; `unlock` or the next run clears it

    def release(self, best_effort: bool = False) -> None:
        """Remove the lock. After a failure, try once and never mask the error:
        a lock left behind goes stale and `unlock` or the next run clears it."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        best_effort = best_effort or self.lost.is_set()
        self._remove_leftovers()
        if self.name:
            name, self.name = self.name, None
            log.debug("releasing lock %s", name)
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


def remove_locks(storage: Storage, crypto: Crypto, staleness: Staleness, all_locks: bool = False) -> list[LockInfo]:
    """Remove every lock (`all_locks`), or those stale by `staleness`."""
    found = read_locks(storage, crypto)
    doomed = found if all_locks else staleness.judge(found)
    for lock in doomed:
        storage.delete(lock.name)
    return doomed
