"""Data packs for a local target are written into a file beside the packs as
their blobs come, then renamed into place: never held whole in memory."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PASSWORD, reopen
from strongroom.engine.backup import BackupOptions, run_backup
from strongroom.engine.check import run_check
from strongroom.engine.restore import RestoreOptions, run_restore
from strongroom.errors import StorageError
from strongroom.repo.crypto import Crypto, MasterKey
from strongroom.repo.pack import DATA, PackWriter, parse_header
from strongroom.storage import LocalStorage
from strongroom.storage.local import LocalSpool
from strongroom.storage.metrics import CountingStorage


def spools(repo_path: Path) -> list[Path]:
    return sorted((repo_path / "data").rglob(".tmp-*"))


def make_source(root: Path, files: int = 6, size: int = 700_000) -> dict[str, bytes]:
    rng = random.Random(5)
    contents = {}
    for i in range(files):
        data = rng.randbytes(size) + b"text %d\n" % i * 2000
        (root / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 2}" / f"f{i}").write_bytes(data)
        contents[f"d{i % 2}/f{i}"] = data
    return contents


def test_a_spool_becomes_its_object_whole_and_leaves_nothing(tmp_path):
    storage = CountingStorage(LocalStorage(str(tmp_path / "r")))
    spool = storage.spool("data")
    pieces = [os.urandom(n) for n in (1, 5000, 1 << 20, 3)]
    for piece in pieces:
        spool.write(piece)
    [temp] = list((tmp_path / "r" / "data").iterdir())
    assert temp.name.startswith(".tmp-") and [t.name for t in storage.temporaries()] == [f"data/{temp.name}"]
    assert spool.size == sum(map(len, pieces))
    spool.commit("data/ab/abcdef")
    assert storage.read("data/ab/abcdef") == b"".join(pieces)
    assert not temp.exists() and storage.temporaries() == []
    assert storage.requests["write"] == 1 and storage.bytes_written == spool.size
    with pytest.raises(StorageError, match="committed or discarded"):
        spool.write(b"more")
    spool.discard()  # repeating is harmless: the object stays
    assert storage.read("data/ab/abcdef") == b"".join(pieces)

    dropped = storage.spool("data")
    dropped.write(b"half a pack")
    dropped.discard()
    dropped.discard()
    assert storage.temporaries() == []
    with pytest.raises(StorageError):
        dropped.commit("data/cd/cdef")
    assert not (tmp_path / "r" / "data" / "cd" / "cdef").exists()


def test_a_spooled_pack_is_the_pack_its_id_names(tmp_path):
    crypto = Crypto(MasterKey.generate())
    storage = LocalStorage(str(tmp_path / "r"))
    spooled, held = PackWriter(storage.spool("data")), PackWriter()
    blobs = [os.urandom(n) for n in (10, 70_000, 2_000_000, 1)]
    for writer in (spooled, held):
        for blob in blobs:
            writer.seal_blob(crypto, DATA, hashlib.sha256(blob).digest(), b"\0" + blob, len(blob))
    assert [(b.offset, b.length) for b in spooled.blobs] == [(b.offset, b.length) for b in held.blobs]
    pack_id, data = spooled.seal(crypto)
    assert data is None
    spooled.spool.commit(f"data/{pack_id.hex()}")
    stored = storage.read(f"data/{pack_id.hex()}")
    assert hashlib.sha256(stored).digest() == pack_id
    header, _ = parse_header(crypto, stored, len(stored), "pack")
    assert [(b.id, b.offset, b.length) for b in header] == [(b.id, b.offset, b.length) for b in spooled.blobs]
    held_id, held_data = held.seal(crypto)
    assert len(held_data) == len(stored) and held_id == hashlib.sha256(held_data).digest()


def test_a_local_backup_stores_its_data_packs_from_spools(tmp_path, repo, repo_path, monkeypatch):
    contents = make_source(tmp_path / "src")
    written, committed = [], []
    write, commit = LocalStorage.write, LocalSpool.commit
    monkeypatch.setattr(LocalStorage, "write", lambda self, name, data: (written.append(name),
                                                                         write(self, name, data))[1])
    monkeypatch.setattr(LocalSpool, "commit", lambda self, name: (committed.append(name), commit(self, name))[1])
    snap = run_backup(repo, BackupOptions(paths=(str(tmp_path / "src"),))).snapshot
    data_packs = [n for n in written + committed if n.startswith("data/")]
    stored = reopen(repo_path, tmp_path / "cache")
    stored.load_index()
    tree_packs = {p for p, blobs in stored.index.packs.items() if blobs[0].type != DATA}
    assert committed and all(n.startswith("data/") for n in committed)
    assert {n for n in written if n.startswith("data/")} == {f"data/{p.hex()[:2]}/{p.hex()}" for p in tree_packs}
    assert len(data_packs) == len(set(data_packs))
    assert spools(repo_path) == []
    repo = reopen(repo_path, tmp_path / "cache")
    assert run_check(repo, read_data=True).ok
    run_restore(repo, snap, RestoreOptions(str(tmp_path / "out")))
    out = tmp_path / "out" / str(tmp_path / "src").lstrip("/")
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("f*")} == contents


def test_a_full_disk_under_a_spool_fails_the_backup_and_leaves_no_part_of_a_pack(tmp_path, repo, repo_path,
                                                                                   monkeypatch):
    contents = make_source(tmp_path / "src")
    room = [1_500_000]
    write = LocalSpool.write

    def full_disk(self, data):
        room[0] -= len(data)
        if room[0] < 0:
            raise StorageError(f"cannot write {os.path.basename(self._temp)}: No space left on device")
        write(self, data)

    monkeypatch.setattr(LocalSpool, "write", full_disk)
    with pytest.raises(StorageError, match="No space left"):
        run_backup(repo, BackupOptions(paths=(str(tmp_path / "src"),)))
    assert spools(repo_path) == []
    assert list((repo_path / "snapshots").iterdir()) == []
    monkeypatch.setattr(LocalSpool, "write", write)
    repo = reopen(repo_path, tmp_path / "cache")
    assert run_check(repo, read_data=True).ok
    snap = run_backup(repo, BackupOptions(paths=(str(tmp_path / "src"),))).snapshot
    assert run_check(reopen(repo_path, tmp_path / "cache"), read_data=True).ok
    run_restore(repo, snap, RestoreOptions(str(tmp_path / "out")))
    out = tmp_path / "out" / str(tmp_path / "src").lstrip("/")
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("f*")} == contents


def test_a_spool_left_by_kill_9_is_reported_by_check_and_removed_by_prune(tmp_path, cli, repo_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(9)
    for i in range(12):
        (src / f"big{i}").write_bytes(rng.randbytes(8 << 20))
    cli.run("init", check=True)
    env = dict(cli.env)
    proc = subprocess.Popen([sys.executable, "-m", "strongroom", "backup", str(src)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.stat().st_size > 0 for p in spools(repo_path) if p.exists()):
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the backup ended before a spool was seen"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    left = spools(repo_path)
    assert left and all(p.parent == repo_path / "data" for p in left)
    assert "temporary file" in cli.run("check", check=True).stdout.decode()
    cli.run("prune", check=True)
    assert spools(repo_path) == []
    assert "no errors were found" in cli.run("check", "--read-data", check=True).stdout.decode()
    assert PASSWORD  # the CLI ran with the test password


def test_small_blobs_reach_the_spool_a_buffer_at_a_time(tmp_path):
    """A write to a file is an update of its times, which ext4 journals: a
    million small files must not cost a million writes."""
    crypto = Crypto(MasterKey.generate())
    spool = LocalStorage(str(tmp_path / "r")).spool("data")
    writes = []
    write = spool.write
    spool.write = lambda data: (writes.append(len(data)), write(data))[1]
    writer = PackWriter(spool)
    blobs = [os.urandom(300) for _ in range(5000)]
    for blob in blobs:
        writer.seal_blob(crypto, DATA, hashlib.sha256(blob).digest(), b"\0" + blob, len(blob))
    assert len(writes) == 1  # 1.6 MB of blobs: one full buffer so far
    pack_id, _ = writer.seal(crypto)
    assert len(writes) == 3  # the rest of the blobs, then the header
    spool.commit(f"data/{pack_id.hex()}")
    stored = (tmp_path / "r" / "data" / pack_id.hex()).read_bytes()
    assert hashlib.sha256(stored).digest() == pack_id and len(stored) == sum(writes)
    header, _ = parse_header(crypto, stored, len(stored), "pack")
    assert [b.id for b in header] == [hashlib.sha256(b).digest() for b in blobs]


def test_a_target_that_gives_no_spool_stores_nothing_and_a_later_run_stores_it_all(tmp_path, repo, repo_path,
                                                                                     monkeypatch):
    """The repository object lives on (as in the daemon): a blob the failed run
    meant to store must not look stored to the next one."""
    contents = make_source(tmp_path / "src", files=2)
    spool = LocalStorage.spool

    def read_only(self, directory):
        raise StorageError(f"cannot write in {directory}/: Read-only file system")

    monkeypatch.setattr(LocalStorage, "spool", read_only)
    with pytest.raises(StorageError, match="Read-only"):
        run_backup(repo, BackupOptions(paths=(str(tmp_path / "src"),)))
    monkeypatch.setattr(LocalStorage, "spool", spool)
    snap = run_backup(repo, BackupOptions(paths=(str(tmp_path / "src"),))).snapshot
    assert run_check(reopen(repo_path, tmp_path / "cache"), read_data=True).ok
    run_restore(repo, snap, RestoreOptions(str(tmp_path / "out")))
    out = tmp_path / "out" / str(tmp_path / "src").lstrip("/")
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("f*")} == contents
