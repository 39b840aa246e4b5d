"""Repository locks: lock objects in locks/, shared and exclusive, stale ones ignored."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from strongroom.errors import RepositoryLocked
from strongroom.repo import locks
from strongroom.repo.crypto import Crypto, MasterKey
from strongroom.repo.locks import LOCK_DIR, STALE_AFTER, Lock, read_locks, remove_locks
from strongroom.storage import CountingStorage, LocalStorage

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


def planted_lock(storage, crypto, monkeypatch, exclusive: bool, *, at: float | None = None,
                 pid: int | None = None, hostname: str | None = None) -> str:
    """Write a lock object as another process would have, without holding it."""
    lock = Lock(storage, crypto, exclusive)
    with monkeypatch.context() as m:
        if at is not None:
            m.setattr(locks.time, "time", lambda: at)
        if pid is not None:
            m.setattr(locks.os, "getpid", lambda: pid)
        if hostname is not None:
            m.setattr(locks.socket, "gethostname", lambda: hostname)
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
        assert abs(info.time - time.time()) < 60
        assert not info.is_stale(time.time())
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


def test_lock_of_a_dead_process_on_this_host_is_stale(storage, crypto, monkeypatch):
    pid = dead_pid()
    name = planted_lock(storage, crypto, monkeypatch, exclusive=True, pid=pid)
    [info] = read_locks(storage, crypto)
    assert (info.name, info.pid, info.hostname) == (name, pid, socket.gethostname())
    assert info.is_stale(time.time())

    shared = Lock(storage, crypto, exclusive=False).acquire()
    assert lock_names(storage) == {name, shared.name}
    shared.release()

    assert [lock.name for lock in remove_locks(storage, crypto)] == [name]
    assert lock_names(storage) == set()


def test_lock_of_a_live_process_elsewhere_is_not_stale(storage, crypto, monkeypatch):
    # The pid is dead here, but on another host nobody can tell: only age counts.
    name = planted_lock(storage, crypto, monkeypatch, exclusive=True, pid=dead_pid(), hostname="elsewhere.example")
    [info] = read_locks(storage, crypto)
    assert not info.is_stale(time.time())
    with pytest.raises(RepositoryLocked, match="elsewhere.example"):
        Lock(storage, crypto, exclusive=False).acquire()
    assert remove_locks(storage, crypto) == []
    assert lock_names(storage) == {name}


def test_lock_older_than_stale_after_is_stale(storage, crypto, monkeypatch):
    now = time.time()
    old = planted_lock(storage, crypto, monkeypatch, exclusive=True, at=now - STALE_AFTER - 60,
                       hostname="elsewhere.example")
    recent = planted_lock(storage, crypto, monkeypatch, exclusive=False, at=now - STALE_AFTER + 60,
                          hostname="elsewhere.example")
    by_name = {lock.name: lock for lock in read_locks(storage, crypto)}
    assert by_name[old].is_stale(time.time())
    assert not by_name[recent].is_stale(time.time())

    # The old exclusive lock does not hold back a shared one; the recent shared
    # one still holds back an exclusive one.
    Lock(storage, crypto, exclusive=False).acquire().release()
    with pytest.raises(RepositoryLocked):
        Lock(storage, crypto, exclusive=True).acquire()

    assert [lock.name for lock in remove_locks(storage, crypto)] == [old]
    assert lock_names(storage) == {recent}


def test_remove_all_locks(storage, crypto, monkeypatch):
    planted_lock(storage, crypto, monkeypatch, exclusive=False, hostname="a.example")
    planted_lock(storage, crypto, monkeypatch, exclusive=True, hostname="b.example")
    assert remove_locks(storage, crypto) == []
    assert len(remove_locks(storage, crypto, all_locks=True)) == 2
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


def test_refresh_replaces_the_lock_object(storage, crypto, monkeypatch):
    monkeypatch.setattr(locks, "REFRESH_EVERY", 0.05)
    lock = Lock(storage, crypto, exclusive=False).acquire()
    first = lock.name
    try:
        deadline = time.monotonic() + 5
        while lock.name == first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lock.name != first
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
