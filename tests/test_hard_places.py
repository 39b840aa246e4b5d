"""Commands in hard places: a lock lost midway, a read-only or full repository
disk, a full cache disk. Real files, real mounts (as root), the real CLI."""

from __future__ import annotations

import random
import signal
import threading
from pathlib import Path

import pytest

from strongroom.cli.main import main
from strongroom.cli.options import Common
from strongroom.engine.backup import BackupOptions, run_backup
from strongroom.engine.prune import plan_prune, run_prune
from strongroom.errors import LockLost, StorageError
from strongroom.repo.locks import LOCK_DIR, LockTiming
from strongroom.repo.repository import Repository
from strongroom.storage import LocalStorage
from strongroom.storage.base import Storage

from conftest import PASSWORD

FAST = LockTiming(refresh_every=0.05, lost_after=0.6, retry_pause=0.05, stale_after=30)


def objects(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


class LosingStorage(Storage):
    """Local storage on which the lock is lost at a chosen moment, for real: at
    the first `verb` ("write" or "delete") below `trigger`, writes of lock objects start to
    fail, and that first call waits until the holder has declared its lock lost
    (it was in flight). Every call that starts after the loss is recorded."""

    def __init__(self, inner: Storage, trigger: str, verb: str = "write") -> None:
        self.inner = inner
        self.url = inner.url
        self.trigger = trigger
        self.verb = verb
        self.lost: threading.Event | None = None
        self.breaking = threading.Event()
        self.after_loss: list[tuple[str, str]] = []

    def _enter(self, verb: str, name: str) -> None:
        if self.lost is not None and self.lost.is_set():
            self.after_loss.append((verb, name))
        if name.startswith(LOCK_DIR + "/"):
            if verb == "write" and self.breaking.is_set():
                raise StorageError(f"cannot write {name}: No space left on device")
            return
        if self.lost is not None and verb == self.verb and name.startswith(self.trigger) \
                and not self.breaking.is_set():
            self.breaking.set()
            assert self.lost.wait(30), "the lock was never declared lost"

    def write(self, name, data):
        self._enter("write", name)
        self.inner.write(name, data)

    def delete(self, name):
        self._enter("delete", name)
        self.inner.delete(name)

    def read(self, name, offset=0, length=None):
        return self.inner.read(name, offset, length)

    def list(self, prefix):
        return self.inner.list(prefix)

    def stat(self, name):
        return self.inner.stat(name)

    def written_after_loss(self) -> list[tuple[str, str]]:
        # Only the holder's own lock object may still go (released best-effort).
        return [(verb, name) for verb, name in self.after_loss if not name.startswith(LOCK_DIR + "/")]


@pytest.fixture
def big_src(tmp_path: Path) -> Path:
    root = tmp_path / "big"
    root.mkdir()
    rnd = random.Random(7)
    for i in range(6):
        (root / f"f{i}.bin").write_bytes(rnd.randbytes(700 * 1024))
    return root


def small_pack_repo(repo_path: Path, cache_dir: Path) -> None:
    Repository.init(LocalStorage(str(repo_path)), PASSWORD, pack_size=1 << 20, cache_root=str(cache_dir))


# ---- a lost lock ---------------------------------------------------------------------------


def test_backup_stops_when_its_lock_is_lost(repo_path, cache_dir, big_src):
    small_pack_repo(repo_path, cache_dir)
    storage = LosingStorage(LocalStorage(str(repo_path)), trigger="data/")
    repo = Repository.open(storage, PASSWORD, cache_root=str(cache_dir))
    with pytest.raises(LockLost, match="repository lock lost: could not refresh the lock"):
        with repo.lock(timing=FAST) as lock:
            storage.lost = lock.lost
            run_backup(repo, BackupOptions(paths=(str(big_src),)))
    assert storage.breaking.is_set() and lock.lost.is_set()
    assert storage.written_after_loss() == []
    assert objects(repo_path / "snapshots") == set()
    assert objects(repo_path / "index") == set()
    assert objects(repo_path / "locks") == set()  # released, best-effort


@pytest.mark.parametrize("verb, trigger", [("write", "index/"), ("delete", "index/"), ("delete", "data/")],
                         ids=["at-the-new-index", "at-an-old-index-delete", "at-a-pack-delete"])
def test_prune_stops_deleting_when_its_lock_is_lost(repo_path, cache_dir, big_src, cli, verb, trigger):
    small_pack_repo(repo_path, cache_dir)
    cli.run("backup", str(big_src), "--time", "2024-01-01 10:00", check=True)
    for i in range(3):
        (big_src / f"f{i}.bin").unlink()
    cli.run("backup", str(big_src), "--time", "2024-01-02 10:00", check=True)
    cli.run("forget", "--keep-last", "1", check=True)
    packs_before = objects(repo_path / "data")

    # The lock goes while the call that triggers it is in flight: nothing after it.
    storage = LosingStorage(LocalStorage(str(repo_path)), trigger, verb)
    repo = Repository.open(storage, PASSWORD, cache_root=str(cache_dir))
    with pytest.raises(LockLost):
        with repo.lock(exclusive=True, timing=FAST) as lock:
            storage.lost = lock.lost
            plan = plan_prune(repo)
            assert plan.delete or plan.repack
            run_prune(repo, plan)
    assert storage.breaking.is_set()
    assert storage.written_after_loss() == []
    in_flight = 1 if (verb, trigger) == ("delete", "data/") else 0
    assert len(packs_before - objects(repo_path / "data")) == in_flight
    assert cli.run("check").returncode == 0


def test_the_cli_exits_11_when_the_lock_is_lost(repo_path, cache_dir, big_src, monkeypatch, capsys):
    small_pack_repo(repo_path, cache_dir)
    made: list[LosingStorage] = []

    def losing_storage(self):
        made.append(LosingStorage(LocalStorage(str(repo_path)), trigger="data/"))
        return made[-1]

    def fast_lock(self, exclusive=False, wait=0.0, timing=None):
        lock = real_lock(self, exclusive, wait, FAST)
        made[-1].lost = lock.lost
        return lock

    real_lock = Repository.lock
    monkeypatch.setattr(Common, "storage", losing_storage)
    monkeypatch.setattr(Repository, "lock", fast_lock)
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSWORD.decode())
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exited:
            main(["backup", str(big_src), "--repo", str(repo_path), "--cache-dir", str(cache_dir)])
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    assert exited.value.code == 11
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("strongroom: repository lock lost: could not refresh the lock")
    assert err[-1].endswith("stopped before writing more")
    assert made[-1].written_after_loss() == []
    assert objects(repo_path / "snapshots") == set()
