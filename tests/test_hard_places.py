"""Commands in hard places: a lock lost midway, a read-only or full repository
disk, a full cache disk. Real files, real mounts (as root), the real CLI."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from strongroom.cli.main import main
from strongroom.cli.options import Common
from strongroom.engine.backup import BackupOptions, run_backup
from strongroom.engine.prune import plan_prune, run_prune
from strongroom.errors import LockLost, StorageError
from strongroom.repo.cache import CacheWrites, RepoCache
from strongroom.repo.locks import LOCK_DIR, LockTiming
from strongroom.repo.repository import DATA, Repository
from strongroom.storage import LocalStorage
from strongroom.storage.base import Storage

from conftest import PASSWORD
from treeutil import snapshot_tree

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


# ---- a read-only or full repository disk -----------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")
NO_LOCK_WARNING = "cannot lock the repository ({}): going on without a lock"


@contextlib.contextmanager
def read_only_view(folder: Path, at: Path):
    """`folder` seen through a real read-only bind mount at `at`."""
    at.mkdir()
    subprocess.run(["mount", "--bind", str(folder), str(at)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(at)], check=True)
        yield at
    finally:
        subprocess.run(["umount", str(at)], check=True)


@contextlib.contextmanager
def small_tmpfs(at: Path, size: str):
    at.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(at)], check=True)
    try:
        yield at
    finally:
        subprocess.run(["umount", str(at)], check=True)


def fill(folder: Path) -> None:
    """Fill the file system holding `folder` to the last block."""
    with open(folder / "filler", "wb", buffering=0) as f:
        for size in (65536, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC
    with pytest.raises(OSError):
        (folder / "one-more").write_bytes(b"x" * 8192)


def warnings_in(done) -> list[str]:
    return [line for line in done.stderr.decode().splitlines() if "cannot lock" in line]


def reads_work_without_a_lock(cli, repo: Path, src: Path, tmp_path: Path, reason: str) -> None:
    env = {"STRONGROOM_REPO": str(repo)}
    done = cli.run("check", "--read-data", env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert "no errors were found" in done.stdout.decode()
    assert [line.split(": ", 1)[1] for line in warnings_in(done)] == [NO_LOCK_WARNING.format(reason)]

    target = tmp_path / "restored"
    done = cli.run("restore", "latest", "--target", str(target), env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert len(warnings_in(done)) == 1
    assert snapshot_tree(target / src.relative_to("/")) == snapshot_tree(src)

    for args in (("snapshots",), ("ls", "latest"), ("diff", "latest", "latest"), ("backup", str(src), "--dry-run")):
        done = cli.run(*args, env=env)
        assert done.returncode == 0, (args, done.stderr.decode())
    done = cli.run("check", "--no-lock", env=env)
    assert done.returncode == 0 and warnings_in(done) == []


def writes_fail_clearly(cli, repo: Path, reason: str) -> None:
    env = {"STRONGROOM_REPO": str(repo)}
    for args, what in ((("prune",), "prune"), (("forget", "--keep-last", "1"), "forget"),
                       (("key", "add"), "key add")):
        done = cli.run(*args, env={**env, "STRONGROOM_NEW_PASSWORD": "another"})
        assert done.returncode == 1
        assert done.stderr.decode().strip().splitlines() == [
            f"strongroom: cannot lock the repository at local:{repo} ({reason}): {what} writes to it and cannot "
            "go on without a lock"]
    done = cli.run("prune", "--no-lock", env=env)
    assert done.returncode != 0 and "--no-lock is only for commands that do not write" in done.stderr.decode()


@needs_root
def test_reading_a_repository_on_a_read_only_mount(cli, repo_path, src, tmp_path):
    cli.run("init", check=True)
    cli.run("backup", str(src), check=True)
    with read_only_view(repo_path, tmp_path / "ro") as ro:
        reads_work_without_a_lock(cli, ro, src, tmp_path, "read-only file system")
        writes_fail_clearly(cli, ro, "read-only file system")
    assert objects(repo_path / "locks") == set()


@needs_root
def test_reading_a_repository_on_a_full_disk(cli, src, tmp_path):
    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        repo = disk / "repo"
        cli.run("init", "--repo", str(repo), check=True)
        cli.run("backup", str(src), "--repo", str(repo), check=True)
        snapshots_before = objects(repo / "snapshots")
        fill(disk)
        reads_work_without_a_lock(cli, repo, src, tmp_path, "no space left on device")
        writes_fail_clearly(cli, repo, "no space left on device")
        assert objects(repo / "snapshots") == snapshots_before
        assert objects(repo / "locks") == set()


# ---- a full cache disk -----------------------------------------------------------------------


def cache_warnings(done, cache: Path) -> list[str]:
    return [line for line in done.stderr.decode().splitlines() if f"cache {cache}" in line]


@pytest.fixture
def wide_src(tmp_path: Path) -> Path:
    """Enough files that the tree pack alone is larger than a 64 KiB cache."""
    root = tmp_path / "wide"
    rnd = random.Random(3)
    for d in range(4):
        folder = root / f"folder-with-a-long-name-{d:02d}"
        folder.mkdir(parents=True)
        for i in range(300):
            (folder / f"file-with-a-long-name-{i:04d}.txt").write_bytes(rnd.randbytes(64))
    return root


@needs_root
def test_backup_goes_on_when_the_cache_disk_fills(cli, wide_src, tmp_path):
    cli.run("init", check=True)
    with small_tmpfs(tmp_path / "small-cache", "64k") as cache:
        env = {"STRONGROOM_CACHE_DIR": str(cache)}
        done = cli.run("backup", str(wide_src), env=env)
        assert done.returncode == 0, done.stderr.decode()
        # Its prefix is the reporter's ("warning: ") or, before one runs, "strongroom: ".
        assert [line.split(": ", 1)[1] for line in cache_warnings(done, cache)] == [
            f"cache {cache}: No space left on device; going on without it"]
        assert "snapshot" in done.stdout.decode()
        target = tmp_path / "restored"
        done = cli.run("restore", "latest", "--target", str(target), env=env)
        assert done.returncode == 0, done.stderr.decode()
        assert len(cache_warnings(done, cache)) <= 1
    assert snapshot_tree(target / wide_src.relative_to("/")) == snapshot_tree(wide_src)
    assert cli.run("check", "--read-data").returncode == 0


@needs_root
def test_cache_writes_stop_with_one_warning(tmp_path):
    with small_tmpfs(tmp_path / "small-cache", "64k") as root:
        (root / "repo-id").mkdir()
        (root / "repo-id" / "pending-packs").write_text("a" * 64 + "\n")
        fill(root)
        heard = []
        cache = RepoCache(str(root), "repo-id", CacheWrites(str(root), heard.append))
        cache.put("trees", "c" * 64, b"x" * 10000)
        cache.note_pack("b" * 64)  # the cache is off now: not even tried
        cache.write_state("lock-sightings", {"seen": {}})
        cache.forget_packs({"a" * 64})
        cache.put("index", "d" * 64, b"y")
        assert heard == [f"cache {root}: No space left on device; going on without it"]
        assert cache.pending_packs() == ["a" * 64]  # what was there is still read
        assert cache.get("trees", "c" * 64) is None
        assert objects(root / "repo-id") == {"pending-packs"}  # no temporary files left behind


@needs_root
def test_a_journal_lost_to_a_full_cache_costs_only_uploads(cli, repo_path, big_src, tmp_path):
    """An interrupted backup whose pending-pack journal could not be written:
    its packs are not adopted, the next backup stores the blobs again, and
    prune removes the orphans. Nothing is lost or damaged."""
    small_pack_repo(repo_path, tmp_path / "cache")
    with small_tmpfs(tmp_path / "small-cache", "64k") as full:
        heard = []
        repo = Repository.open(LocalStorage(str(repo_path)), PASSWORD, cache_root=str(full), on_warning=heard.append)
        fill(full)
        for path in sorted(big_src.iterdir()):
            repo.save_blob(DATA, path.read_bytes())  # packs are stored; no checkpoint: "interrupted"
        repo.wait_for_uploads()  # the filled packs' uploads run on their own threads
        assert heard == [f"cache {full}: No space left on device; going on without it"]
    orphans = objects(repo_path / "data")
    assert orphans and objects(repo_path / "index") == set()

    done = cli.run("backup", str(big_src), check=True)
    assert "resumed" not in done.stderr.decode()
    assert cli.run("check", "--read-data").returncode == 0
    pruned = json.loads(cli.run("prune", "--json", check=True).stdout.decode().splitlines()[-1])
    assert pruned["packs_unindexed_deleted"] == len(orphans)
    assert cli.run("check", "--read-data").returncode == 0
    target = tmp_path / "restored"
    cli.run("restore", "latest", "--target", str(target), check=True)
    assert snapshot_tree(target / big_src.relative_to("/")) == snapshot_tree(big_src)


def test_writes_stay_refused_after_a_loss_until_a_new_lock_is_taken(repo_path, cache_dir):
    small_pack_repo(repo_path, cache_dir)
    repo = Repository.open(LocalStorage(str(repo_path)), PASSWORD, cache_root=str(cache_dir))
    now = [0.0]
    lock = repo.lock(timing=LockTiming(refresh_every=600, lost_after=900, stale_after=1800, clock=lambda: now[0]))
    repo.write_index_object({})
    now[0] += 900
    with pytest.raises(LockLost, match="not refreshed for 900 s"):
        repo.write_index_object({})
    lock.release()
    with pytest.raises(LockLost):
        repo.write_index_object({})
    assert len(objects(repo_path / "index")) == 1
    with repo.lock():
        repo.write_index_object({})
    assert len(objects(repo_path / "index")) == 2
    assert objects(repo_path / "locks") == set()
