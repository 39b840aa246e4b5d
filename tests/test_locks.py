"""Repository locks: lock objects in locks/, shared and exclusive, stale ones ignored."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from strongroom.errors import Interrupted, LockLost, RepositoryLocked, StorageError
from strongroom.repo import locks
from strongroom.repo.crypto import Crypto, MasterKey
from strongroom.repo.host import HostIdentity
from strongroom.repo.locks import (LOCK_DIR, Lock, LockSightings, LockTiming, Staleness, read_locks,
                                   remove_locks)
from strongroom.storage import CountingStorage, LocalStorage
from strongroom.storage.base import Storage

from conftest import reopen


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    s = LocalStorage(str(tmp_path / "target"))
    s.create()
    return s


@pytest.fixture
def crypto() -> Crypto:
    return Crypto(MasterKey.generate())


def lock_names(storage) -> set[str]:
    return {info.name for info in storage.list(LOCK_DIR)}


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


HERE = HostIdentity.current()


def elsewhere(**changes) -> HostIdentity:
    """Another machine (by default) that shares our hostname: a cloned VM."""
    fields = {"hostname": HERE.hostname, "machine_id": "f" * 32, "boot_id": HERE.boot_id, "pid_ns": HERE.pid_ns}
    return HostIdentity(**{**fields, **changes})


def staleness(clock=None, stale_after: float = 60.0) -> Staleness:
    clock = clock or FakeClock()
    return Staleness(HERE, LockSightings(clock, HERE.boot_id), stale_after)


def planted_lock(storage, crypto, monkeypatch, exclusive: bool, *, at: float | None = None,
                 pid: int | None = None, host: HostIdentity | None = None) -> str:
    """Write a lock object as another process would have, without holding it."""
    lock = Lock(storage, crypto, exclusive, host=host or HERE)
    with monkeypatch.context() as m:
        if at is not None:
            m.setattr(locks.time, "time", lambda: at)
        if pid is not None:
            m.setattr(locks.os, "getpid", lambda: pid)
        return lock._write()


# ---- shared and exclusive ----------------------------------------------------------------


def test_shared_locks_coexist(storage, crypto):
    first = Lock(storage, crypto, exclusive=False).acquire()
    second = Lock(storage, crypto, exclusive=False).acquire()
    try:
        assert first.name != second.name
        assert lock_names(storage) == {first.name, second.name}
        held = {lock.name: lock for lock in read_locks(storage, crypto)}
        assert set(held) == {first.name, second.name}
        assert not any(lock.exclusive for lock in held.values())
    finally:
        first.release()
        second.release()
    assert lock_names(storage) == set()


def test_exclusive_refuses_while_shared_is_held(storage, crypto):
    shared = Lock(storage, crypto, exclusive=False).acquire()
    try:
        with pytest.raises(RepositoryLocked, match="shared lock by .*pid"):
            Lock(storage, crypto, exclusive=True).acquire()
        assert lock_names(storage) == {shared.name}
    finally:
        shared.release()
    exclusive = Lock(storage, crypto, exclusive=True).acquire()
    exclusive.release()


def test_shared_refuses_while_exclusive_is_held(storage, crypto):
    exclusive = Lock(storage, crypto, exclusive=True).acquire()
    try:
        with pytest.raises(RepositoryLocked, match="exclusive lock by"):
            Lock(storage, crypto, exclusive=False).acquire()
        with pytest.raises(RepositoryLocked):
            Lock(storage, crypto, exclusive=True).acquire()
        assert lock_names(storage) == {exclusive.name}
    finally:
        exclusive.release()
    Lock(storage, crypto, exclusive=False).acquire().release()


def test_lock_records_who_holds_it(storage, crypto):
    with Lock(storage, crypto, exclusive=True).acquire() as held:
        [info] = read_locks(storage, crypto)
        assert info.name == held.name
        assert info.exclusive is True
        assert info.hostname == socket.gethostname()
        assert (info.machine_id, info.boot_id, info.pid_ns) == (HERE.machine_id, HERE.boot_id, HERE.pid_ns)
        assert abs(info.time - time.time()) < 60
        assert not info.process_gone(HERE)
        assert staleness().judge([info]) == []
    assert read_locks(storage, crypto) == []


def test_lock_objects_are_encrypted(storage, crypto):
    with Lock(storage, crypto, exclusive=False).acquire() as held:
        raw = storage.read(held.name)
        assert socket.gethostname().encode() not in raw
        assert b"exclusive" not in raw


def test_release_deletes_the_lock_object(storage, crypto):
    lock = Lock(storage, crypto, exclusive=False).acquire()
    name = lock.name
    assert lock_names(storage) == {name}
    lock.release()
    assert lock_names(storage) == set()
    assert lock.name is None
    lock.release()  # a second release is harmless
    assert lock_names(storage) == set()


def test_context_manager_releases_on_error(storage, crypto):
    with pytest.raises(RuntimeError):
        with Lock(storage, crypto, exclusive=True).acquire():
            raise RuntimeError("backup failed")
    assert lock_names(storage) == set()


def test_repository_lock_uses_the_same_objects(repo, repo_path, cache_dir):
    with repo.lock(exclusive=True):
        other = reopen(repo_path, cache_dir)
        with pytest.raises(RepositoryLocked):
            other.lock()
    other.lock().release()
    assert lock_names(repo.storage) == set()


# ---- stale locks -------------------------------------------------------------------------


def test_lock_of_a_dead_process_on_this_machine_is_stale(storage, crypto, monkeypatch):
    pid = dead_pid()
    name = planted_lock(storage, crypto, monkeypatch, exclusive=True, pid=pid)
    [info] = read_locks(storage, crypto)
    assert (info.name, info.pid, info.hostname) == (name, pid, socket.gethostname())
    assert info.process_gone(HERE)
    assert staleness().judge([info]) == [info]

    shared = Lock(storage, crypto, exclusive=False).acquire()
    assert lock_names(storage) == {shared.name}  # passed over, then removed
    shared.release()
    assert lock_names(storage) == set()

    name = planted_lock(storage, crypto, monkeypatch, exclusive=True, pid=pid)
    assert [lock.name for lock in remove_locks(storage, crypto, staleness())] == [name]
    assert lock_names(storage) == set()


@pytest.mark.parametrize("host", [
    elsewhere(),  # a clone with our hostname
    elsewhere(machine_id=HERE.machine_id, pid_ns="0:1"),  # a container on this machine
    elsewhere(machine_id=HERE.machine_id, boot_id="0" * 36),  # a clone booted on its own, or an earlier boot
    elsewhere(hostname="elsewhere.example"),
], ids=["same-hostname-other-machine", "other-pid-namespace", "other-boot", "other-host"])
def test_a_dead_pid_elsewhere_says_nothing(storage, crypto, monkeypatch, host):
    # The pid is dead here, but it was handed out elsewhere: only observation counts.
    name = planted_lock(storage, crypto, monkeypatch, exclusive=True, pid=dead_pid(), host=host)
    [info] = read_locks(storage, crypto)
    assert info.hostname == host.hostname and not info.process_gone(HERE)
    with pytest.raises(RepositoryLocked, match=f"exclusive lock by .*@{host.hostname}"):
        Lock(storage, crypto, exclusive=False).acquire()
    assert remove_locks(storage, crypto, staleness()) == []
    assert lock_names(storage) == {name}


@pytest.mark.parametrize("skew", [-31 * 60, 31 * 60, -86400 * 365])
def test_the_time_a_lock_states_never_makes_it_stale(storage, crypto, monkeypatch, skew):
    # Its writer's clock (or ours) is off by half an hour or more, either way.
    name = planted_lock(storage, crypto, monkeypatch, exclusive=True, at=time.time() + skew,
                        host=elsewhere(hostname="elsewhere.example"))
    rule = staleness()
    assert rule.judge(read_locks(storage, crypto)) == []
    with pytest.raises(RepositoryLocked):
        Lock(storage, crypto, exclusive=False).acquire()
    assert remove_locks(storage, crypto, rule) == []
    assert lock_names(storage) == {name}


def test_a_lock_seen_unchanged_for_the_window_is_stale(storage, crypto, monkeypatch):
    clock = FakeClock()
    rule = staleness(clock, stale_after=60)
    old = planted_lock(storage, crypto, monkeypatch, exclusive=True, host=elsewhere())
    assert rule.judge(read_locks(storage, crypto)) == []  # first seen now
    clock.advance(45)
    recent = planted_lock(storage, crypto, monkeypatch, exclusive=False, host=elsewhere())
    assert rule.judge(read_locks(storage, crypto)) == []
    clock.advance(15)
    assert [lock.name for lock in rule.judge(read_locks(storage, crypto))] == [old]

    # The stale exclusive lock no longer holds back a shared one, which removes
    # it once its own is held; the recent shared one still holds back an
    # exclusive one.
    timing = LockTiming(stale_after=60, lost_after=30, refresh_every=10, clock=clock)
    Lock(storage, crypto, exclusive=False, timing=timing, sightings=rule.sightings).acquire().release()
    assert lock_names(storage) == {recent}
    with pytest.raises(RepositoryLocked, match="seen unchanged for 15 s"):
        Lock(storage, crypto, exclusive=True, timing=timing, sightings=rule.sightings).acquire()

    assert remove_locks(storage, crypto, rule) == []
    assert lock_names(storage) == {recent}


def test_a_refreshed_lock_is_seen_afresh(storage, crypto, monkeypatch):
    clock = FakeClock()
    rule = staleness(clock, stale_after=60)
    first = planted_lock(storage, crypto, monkeypatch, exclusive=True, host=elsewhere())
    rule.judge(read_locks(storage, crypto))
    clock.advance(50)
    # Its holder refreshes: a new object, the old one deleted.
    planted_lock(storage, crypto, monkeypatch, exclusive=True, host=elsewhere())
    storage.delete(first)
    rule.judge(read_locks(storage, crypto))
    clock.advance(50)
    assert rule.judge(read_locks(storage, crypto)) == []


def test_sightings_outlive_the_run_in_the_cache(repo, monkeypatch):
    clock = FakeClock()
    timing = LockTiming(stale_after=60, lost_after=30, refresh_every=10, clock=clock)
    name = planted_lock(repo.storage, repo.crypto, monkeypatch, exclusive=True, host=elsewhere())
    assert repo.remove_locks(timing=timing) == []  # first seen now, and noted in the cache
    clock.advance(61)
    later = reopen(Path(repo.storage.url[len("local:"):]), Path(repo.cache.dir).parent)
    assert [lock.name for lock in later.remove_locks(timing=timing)] == [name]
    assert lock_names(repo.storage) == set()


def test_sightings_of_another_boot_are_not_trusted(tmp_path):
    class Store:
        doc = {"boot_id": "an-earlier-boot", "seen": {f"{LOCK_DIR}/{'a' * 64}": 0.0}}

        def read_state(self, name):
            return self.doc

        def write_state(self, name, doc):
            self.doc = doc

    clock = FakeClock()
    sightings = LockSightings(clock, "this-boot", Store())
    assert sightings.unchanged_for(f"{LOCK_DIR}/{'a' * 64}") == 0.0


def test_remove_all_locks(storage, crypto, monkeypatch):
    planted_lock(storage, crypto, monkeypatch, exclusive=False, host=elsewhere(hostname="a.example"))
    planted_lock(storage, crypto, monkeypatch, exclusive=True, host=elsewhere(hostname="b.example"))
    assert remove_locks(storage, crypto, staleness()) == []
    assert len(remove_locks(storage, crypto, staleness(), all_locks=True)) == 2
    assert lock_names(storage) == set()


def test_unreadable_lock_objects_do_not_block(storage, crypto):
    garbage = f"{LOCK_DIR}/{'0' * 64}"
    storage.write(garbage, b"not a lock of this repository")
    assert read_locks(storage, crypto) == []
    Lock(storage, crypto, exclusive=True).acquire().release()
    assert lock_names(storage) == {garbage}


# ---- waiting -----------------------------------------------------------------------------


def test_acquire_waits_for_release_by_another_thread(storage, crypto):
    holder = Lock(storage, crypto, exclusive=True).acquire()
    releaser = threading.Timer(0.5, holder.release)
    releaser.start()
    started = time.monotonic()
    try:
        waiter = Lock(storage, crypto, exclusive=False).acquire(wait=3)
    finally:
        releaser.join()
    elapsed = time.monotonic() - started
    try:
        assert elapsed >= 0.4
        assert lock_names(storage) == {waiter.name}
    finally:
        waiter.release()
    assert lock_names(storage) == set()


def test_acquire_gives_up_after_the_wait(storage, crypto):
    holder = Lock(storage, crypto, exclusive=True).acquire()
    try:
        started = time.monotonic()
        with pytest.raises(RepositoryLocked):
            Lock(storage, crypto, exclusive=True).acquire(wait=0.6)
        elapsed = time.monotonic() - started
        assert 0.5 <= elapsed < 5
        assert lock_names(storage) == {holder.name}
    finally:
        holder.release()


def test_overlapping_shared_locks_cannot_keep_an_exclusive_one_out(storage, crypto):
    """Hosts whose backups overlap always leave some shared lock on the target.
    A waiting exclusive lock stays in place, so that new shared ones wait
    behind it while those held drain away; withdrawn after every look, it
    never found a moment without one."""
    stop = threading.Event()
    taken: list[str] = []
    holding: set[str] = set()  # shared locks held now
    errors: list[BaseException] = []

    def host(offset: float) -> None:
        stop.wait(offset)
        try:
            while not stop.is_set():
                lock = Lock(storage, crypto, exclusive=False).acquire(wait=30, stop=stop.is_set)
                taken.append(lock.name)
                holding.add(lock.name)
                stop.wait(0.2)  # the backup's work
                holding.discard(lock.name)
                lock.release()
        except Interrupted:
            pass
        except BaseException as e:
            errors.append(e)

    hosts = [threading.Thread(target=host, args=(i * 0.07,)) for i in range(3)]
    for t in hosts:
        t.start()
    try:
        while len(taken) < 6:
            stop.wait(0.01)
        exclusive = Lock(storage, crypto, exclusive=True).acquire(wait=8)
        before = len(taken)
        assert not holding  # every shared lock released before it went ahead
        stop.wait(0.3)
        assert len(taken) == before and not holding  # and none taken beside it
        exclusive.release()
        while len(taken) < before + 3 and not errors:
            stop.wait(0.01)  # the hosts go on once it is released
    finally:
        stop.set()
        for t in hosts:
            t.join(10)
    assert not errors, errors
    assert lock_names(storage) == set()


def test_a_waiting_exclusive_lock_does_not_hold_backups_back_for_a_dead_one(storage, crypto, monkeypatch):
    """A shared lock left by a crashed host on another machine stops changing:
    a prune waits out its stale window, and meanwhile backups go on."""
    dead = planted_lock(storage, crypto, monkeypatch, exclusive=False, host=elsewhere())
    timing = LockTiming(refresh_every=0.05, lost_after=0.2, retry_pause=0.05, stale_after=30)
    waiter = Lock(storage, crypto, exclusive=True, timing=timing)
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            waiter.acquire(wait=20)
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=wait)
    thread.start()
    try:
        # Once the waiter has seen the dead lock unchanged past two refreshes...
        deadline = time.monotonic() + 20
        while waiter.staleness.sightings.unchanged_for(dead) < 4 * timing.refresh_every:
            assert time.monotonic() < deadline and not outcome, outcome
            time.sleep(0.01)
        # ...a backup is not refused by it: it withdrew after its look.
        backup = Lock(storage, crypto, exclusive=False, timing=timing).acquire(wait=3)
        backup.release()
    finally:
        storage.delete(dead)  # (as if it went stale) the waiter goes ahead
        thread.join(20)
    assert not outcome, outcome
    assert waiter.held
    waiter.release()
    assert lock_names(storage) == set()


def test_refused_acquire_costs_only_a_few_requests(storage, crypto):
    holder = Lock(storage, crypto, exclusive=True).acquire()
    counting = CountingStorage(storage)
    try:
        with pytest.raises(RepositoryLocked):
            Lock(counting, crypto, exclusive=False).acquire()
    finally:
        holder.release()
    # Its own lock written, one listing, one read of the holder's lock, its lock removed.
    assert dict(counting.requests) == {"write": 1, "list": 1, "read": 1, "delete": 1}
    assert [info.name for info in storage.list("locks")] == []


def test_refresh_replaces_the_lock_object(storage, crypto):
    timing = LockTiming(refresh_every=0.05, lost_after=5, retry_pause=0.05, stale_after=10)
    lock = Lock(storage, crypto, exclusive=False, timing=timing).acquire()
    first = lock.name
    try:
        deadline = time.monotonic() + 5
        while lock.name == first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lock.name != first
        assert not lock.lost.is_set()
    finally:
        lock.release()
    assert lock_names(storage) == set()


def test_racing_exclusive_lockers_never_hold_together(storage, crypto):
    holders = 0
    most = 0
    count_lock = threading.Lock()
    barrier = threading.Barrier(6)

    def contender() -> bool:
        nonlocal holders, most
        barrier.wait(timeout=10)
        try:
            lock = Lock(storage, crypto, exclusive=True).acquire()
        except RepositoryLocked:
            return False
        with count_lock:
            holders += 1
            most = max(most, holders)
        time.sleep(0.2)
        with count_lock:
            holders -= 1
        lock.release()
        return True

    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(contender())) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    assert most <= 1
    assert sum(results) <= 1
    assert lock_names(storage) == set()


# ---- losing a lock -------------------------------------------------------------------------


class FailingLockWrites(Storage):
    """Real local storage whose writes of lock objects fail once `failing` is set,
    as a full or unreachable target's would."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.url = inner.url
        self.failing = threading.Event()
        self.failed = 0

    def write(self, name, data):
        if self.failing.is_set() and name.startswith(LOCK_DIR + "/"):
            self.failed += 1
            raise StorageError(f"cannot write {name}: Input/output error")
        self.inner.write(name, data)

    def read(self, name, offset=0, length=None):
        return self.inner.read(name, offset, length)

    def delete(self, name):
        self.inner.delete(name)

    def list(self, prefix):
        return self.inner.list(prefix)

    def stat(self, name):
        return self.inner.stat(name)


FAST = LockTiming(refresh_every=0.05, lost_after=0.6, retry_pause=0.05, stale_after=30)


def test_a_lock_that_cannot_be_refreshed_is_lost(storage, crypto):
    faulty = FailingLockWrites(storage)
    told = []
    lock = Lock(faulty, crypto, exclusive=False, timing=FAST).acquire()
    lock.on_lost(told.append)
    name = lock.name
    faulty.failing.set()
    assert lock.lost.wait(30)
    assert "could not refresh the lock" in lock.lost_reason and "Input/output error" in lock.lost_reason
    assert told == [lock.lost_reason]  # told once
    assert faulty.failed >= 2  # it retried before giving up
    with pytest.raises(LockLost, match="lock lost: could not refresh"):
        lock.check()
    lock._thread.join(10)
    assert not lock._thread.is_alive()  # and then stopped trying
    assert lock_names(storage) == {name}
    lock.release()  # no error: the loss has been reported already
    assert lock_names(storage) == set()
    late = []
    lock.on_lost(late.append)
    assert late == [told[0]]


def test_a_refresh_that_fails_for_a_while_keeps_the_lock(storage, crypto):
    faulty = FailingLockWrites(storage)
    timing = LockTiming(refresh_every=0.05, lost_after=20, retry_pause=0.05, stale_after=30)
    lock = Lock(faulty, crypto, exclusive=False, timing=timing).acquire()
    try:
        first = lock.name
        faulty.failing.set()
        deadline = time.monotonic() + 10
        while faulty.failed < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        faulty.failing.clear()
        while lock.name == first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert faulty.failed >= 3 and lock.name != first
        lock.check()
        assert lock_names(storage) == {lock.name}
    finally:
        lock.release()


def test_a_lock_removed_from_the_target_is_lost(storage, crypto):
    lock = Lock(storage, crypto, exclusive=True, timing=FAST).acquire()
    storage.delete(lock.name)  # `unlock --remove-all`, or a host that took it for stale
    assert lock.lost.wait(30)
    assert "removed from the repository" in lock.lost_reason
    with pytest.raises(LockLost):
        lock.check()
    lock.release()
    assert lock_names(storage) == set()


def test_a_lock_unrefreshed_past_its_deadline_is_lost_even_if_the_refresh_hangs(storage, crypto):
    # The refresh thread never runs here (refresh_every is long): the deadline alone counts.
    clock = FakeClock()
    lock = Lock(storage, crypto, exclusive=False,
                timing=LockTiming(refresh_every=600, lost_after=900, stale_after=1800, clock=clock)).acquire()
    try:
        clock.advance(899)
        lock.check()
        clock.advance(1)
        with pytest.raises(LockLost, match="not refreshed for 900 s"):
            lock.check()
        assert lock.lost.is_set()
    finally:
        lock.release()


def test_lock_timing_keeps_loss_inside_the_stale_window():
    with pytest.raises(ValueError):
        LockTiming(refresh_every=10, lost_after=60, stale_after=60)
    assert LockTiming().lost_after <= LockTiming().stale_after / 2


def test_lock_time_keeps_counting_while_the_machine_sleeps():
    """Suspend cannot be provoked here; what can be checked is that lock ages are
    measured on the boot-time clock, which Linux advances across a suspend
    (CLOCK_MONOTONIC does not)."""
    import time as _time

    from strongroom.repo.locks import LockTiming, time_awake_or_asleep
    assert LockTiming().clock is time_awake_or_asleep
    assert abs(time_awake_or_asleep() - _time.clock_gettime(_time.CLOCK_BOOTTIME)) < 1.0
