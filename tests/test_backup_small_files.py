"""Small files are read by the walking thread, and read ahead.

A file below INLINE_LIMIT never goes to a file worker: the walk reads,
chunks and hashes it itself and hands its new chunks to the blob workers a
batch at a time, so its errors, hard links and the failures of the
repository must behave as they do for the files the workers read. When
every file is read (a first backup, --full), the helper process asks the
kernel for the small files' pages ahead of the walk, never more than its
window ahead of what the backup says it has read, and never waits on what
it opens.
"""

from __future__ import annotations

import dataclasses
import os
import random
import select
import threading
import time
from pathlib import Path

import pytest

from strongroom.engine import backup as backup_engine
from strongroom.engine import prefetch
from strongroom.engine.backup import INLINE_LIMIT, Backup, BackupOptions
from strongroom.engine.restore import RestoreOptions, run_restore
from strongroom.engine.walk import ExcludeRules
from strongroom.errors import StorageError
from strongroom.repo.compression import ZSTD, Compressor
from strongroom.repo.pack import DATA
from strongroom.repo.repository import Repository
from conftest import reopen
from treeutil import snapshot_tree


def mixed_tree(root: Path) -> None:
    rng = random.Random(3)
    (root / "d" / "e").mkdir(parents=True)
    for i in range(40):
        (root / "d" / f"small{i:02}").write_bytes(rng.randbytes(rng.randrange(1, 4000)))
    (root / "d" / "e" / "large").write_bytes(rng.randbytes(INLINE_LIMIT * 3))
    (root / "d" / "e" / "edge").write_bytes(rng.randbytes(INLINE_LIMIT))  # the first size a worker reads
    (root / "d" / "e" / "under").write_bytes(rng.randbytes(INLINE_LIMIT - 1))
    (root / "empty").write_bytes(b"")
    os.link(root / "d" / "small07", root / "linked")  # a small file's second name
    (root / "to-small").symlink_to("d/small01")


def test_small_and_large_files_round_trip_with_their_hard_links(tmp_path: Path, repo: Repository) -> None:
    src = tmp_path / "src"
    mixed_tree(src)
    result = Backup(repo, BackupOptions(paths=(str(src),))).run()
    assert result.errors == []
    assert result.summary["files_new"] == 46  # the symlink counts, as in restic
    target = tmp_path / "out"
    restored = run_restore(repo, result.snapshot, RestoreOptions(target=str(target), verify=True))
    assert restored.errors == [] and restored.summary["files_verified"] == 45
    got = snapshot_tree(os.fsencode(target) + os.fsencode(src))
    assert got == snapshot_tree(src)
    assert got[b"linked"]["link_group"] == got[b"d/small07"]["link_group"]


def test_a_small_file_that_cannot_be_read_is_an_error_of_its_own(tmp_path: Path, repo: Repository,
                                                                monkeypatch) -> None:
    src = tmp_path / "src"
    mixed_tree(src)
    gone = os.fsencode(src / "d" / "small03")
    real_open = os.open

    def vanishing(path, flags, *args, **kwargs):
        if path == gone:
            raise FileNotFoundError(2, "No such file or directory")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(backup_engine.os, "open", vanishing)
    result = Backup(repo, BackupOptions(paths=(str(src),), prefetch=False)).run()
    assert [e["message"] for e in result.errors] == ["vanished before it could be read"]
    assert result.errors[0]["path"].endswith("d/small03")
    assert result.summary["files_new"] == 45  # every other one, small and large


def test_a_store_that_fails_for_a_batch_of_small_files_fails_the_backup(tmp_path: Path, repo: Repository,
                                                                         monkeypatch) -> None:
    src = tmp_path / "src"
    mixed_tree(src)
    real_seal = Repository._seal
    small = []

    def failing(self, kind, blob_id, plaintext, raw_length):
        if kind == DATA and raw_length < 4000:  # only the 40 small files' chunks are this small
            small.append(threading.current_thread().name)
            if len(small) == 3:
                raise StorageError("the target stopped answering")
        return real_seal(self, kind, blob_id, plaintext, raw_length)

    monkeypatch.setattr(Repository, "_seal", failing)
    with pytest.raises(StorageError, match="stopped answering"):
        Backup(repo, BackupOptions(paths=(str(src),), prefetch=False)).run()
    # One batch, sealed in turn by a blob worker, which stopped at the failure.
    assert len(small) == 3 and all(name.startswith("blob") for name in small)
    assert repo.list_snapshots() == []


def test_small_files_in_many_batches_are_all_stored_and_counted(tmp_path: Path, repo: Repository,
                                                                monkeypatch) -> None:
    monkeypatch.setattr(backup_engine, "BATCH_BYTES", 10_000)
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(5)
    sizes = [rng.randrange(1, 5000) for _ in range(300)]
    for i, size in enumerate(sizes):
        (src / f"f{i:03}").write_bytes(rng.randbytes(size // 2) + b"text " * (size // 10))
    (src / "again").write_bytes((src / "f207").read_bytes())  # walked first: f207 comes batches later
    result = Backup(repo, BackupOptions(paths=(str(src),), prefetch=False)).run()
    assert result.errors == []
    assert result.summary["data_blobs"] == 300
    assert result.summary["data_added_raw"] == sum((src / f"f{i:03}").stat().st_size for i in range(300))
    target = tmp_path / "out"
    restored = run_restore(repo, result.snapshot, RestoreOptions(target=str(target), verify=True))
    assert restored.errors == [] and restored.summary["files_verified"] == 301
    assert snapshot_tree(os.fsencode(target) + os.fsencode(src)) == snapshot_tree(src)


def test_a_batch_stores_each_new_blob_once_and_gives_back_what_it_could_not(repo: Repository,
                                                                           monkeypatch) -> None:
    crypto = repo.crypto
    texts = [b"first " * 300, os.urandom(700), b"second " * 200]
    repo.save_blob(DATA, texts[0])
    batch = [(t, crypto.blob_id(t)) for t in texts] + [(texts[1], crypto.blob_id(texts[1]))]
    blobs, added, raw = repo.save_blobs(DATA, batch)
    assert (blobs, raw) == (2, len(texts[1]) + len(texts[2]))  # the one stored before, and a repeat, skipped
    assert 0 < added < raw + 2 * 100  # the text shrank, the random bytes were stored as they are

    def broken(self, blobs):
        raise RuntimeError("the compressor broke")

    monkeypatch.setattr(Compressor, "compress_many", broken)
    fresh = b"third " * 100
    with pytest.raises(RuntimeError):
        repo.save_blobs(DATA, [(fresh, crypto.blob_id(fresh))])
    monkeypatch.undo()
    assert not repo.has_blob(crypto.blob_id(fresh))  # not left reserved: a later save stores it
    assert repo.save_blob(DATA, fresh)[1] > 0
    repo.flush()
    for text in [*texts, fresh]:
        assert repo.read_blob(crypto.blob_id(text), DATA) == text


@pytest.mark.parametrize("level", [1, 3, 19])
def test_compressing_many_gives_the_bytes_of_compressing_each(level: int) -> None:
    rng = random.Random(level)
    blobs = [b"", b"x", rng.randbytes(3000), b"log line %d\n" * 4000, memoryview(b"abc" * 10_000)[7:]]
    blobs += [rng.randbytes(rng.randrange(1, 20_000)) + b"y" * rng.randrange(0, 20_000) for _ in range(30)]
    compressor = Compressor(ZSTD, level)
    assert compressor.compress_many(blobs) == [compressor.compress(b) for b in blobs]
    assert compressor.compress_many(blobs[2:3]) == [compressor.compress(blobs[2])]
    assert compressor.compress_many([]) == []


# ---- the read-ahead -----------------------------------------------------------------


def ahead_tree(root: Path, count: int = 12) -> None:
    (root / "a").mkdir(parents=True)
    for i in range(count):
        (root / "a" / f"f{i:02}").write_bytes(b"x" * (100 + i))
    (root / "big").write_bytes(b"y" * 5000)  # at the limit below: not read ahead
    (root / "empty").write_bytes(b"")
    (root / "link").symlink_to("a/f00")
    os.mkfifo(root / "fifo")
    os.link(root / "a" / "f01", root / "same")  # a second name: read once


class Walker:
    """The helper's walk in a thread, paced through a pipe as the backup paces it."""

    def __init__(self, root: Path, monkeypatch, limit: int = 5000) -> None:
        self.fetched: list[str] = []
        monkeypatch.setattr(prefetch, "_read_ahead", lambda path: self.fetched.append(
            os.fsdecode(path)[len(str(root)) + 1:]))
        self.read_end, self.write_end = os.pipe()
        self.outcome: list = []

        def run() -> None:
            try:
                prefetch.walk(os.fsencode(root), ExcludeRules(), prefetch._Pace(self.read_end, b""), limit)
                self.outcome.append("done")
            except SystemExit:
                self.outcome.append("ended")

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def settle(self, count: int) -> list[str]:
        deadline = time.monotonic() + 20
        while len(self.fetched) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # and nothing more comes
        return list(self.fetched)

    def tell(self, files: int, size: int) -> None:
        os.write(self.write_end, b"%d %d\n" % (files, size))


def test_the_read_ahead_stays_within_its_window_of_files(tmp_path: Path, monkeypatch) -> None:
    ahead_tree(tmp_path)
    monkeypatch.setattr(prefetch, "WINDOW_FILES", 3)
    walker = Walker(tmp_path, monkeypatch)
    assert walker.settle(3) == ["a/f00", "a/f01", "a/f02"]
    walker.tell(2, 201)
    assert walker.settle(5)[3:] == ["a/f03", "a/f04"]
    # The backup got ahead of the helper: what it has read is not asked for again.
    walker.tell(9, 2000)
    assert walker.settle(8)[5:] == ["a/f09", "a/f10", "a/f11"]
    walker.thread.join(20)
    # Only small regular files, in the walk's order, a hard link's inode once.
    assert walker.outcome == ["done"]
    os.close(walker.write_end)


def test_the_read_ahead_stays_within_its_window_of_bytes(tmp_path: Path, monkeypatch) -> None:
    ahead_tree(tmp_path)
    monkeypatch.setattr(prefetch, "WINDOW_BYTES", 250)
    walker = Walker(tmp_path, monkeypatch)
    assert walker.settle(2) == ["a/f00", "a/f01"]  # 100 + 101 bytes; a third would pass 250
    walker.tell(1, 100)
    assert walker.settle(3) == ["a/f00", "a/f01", "a/f02"]
    os.close(walker.write_end)  # the backup ended: the helper ends too
    walker.thread.join(20)
    assert walker.outcome == ["ended"]


def test_it_reads_ahead_small_regular_files_only_and_a_hard_link_once(tmp_path: Path, monkeypatch) -> None:
    ahead_tree(tmp_path)
    walker = Walker(tmp_path, monkeypatch, limit=5000)
    walker.thread.join(20)
    assert walker.outcome == ["done"]
    assert walker.fetched == [f"a/f{i:02}" for i in range(12)]
    os.close(walker.write_end)


def test_reading_ahead_never_follows_a_link_nor_waits_on_a_fifo(tmp_path: Path, monkeypatch) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "secret").write_bytes(b"s")
    (tmp_path / "link").symlink_to("secret")
    advised = []
    monkeypatch.setattr(prefetch.os, "posix_fadvise", lambda fd, *args: advised.append(os.fstat(fd).st_ino))
    done = threading.Event()

    def run() -> None:
        for name in ("fifo", "link", "missing", "secret"):
            prefetch._read_ahead(os.fsencode(tmp_path / name))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(20), "opening a fifo with no writer blocked"
    assert advised == [os.stat(tmp_path / "secret").st_ino]


def test_a_helper_that_does_not_listen_never_holds_the_backup(monkeypatch) -> None:
    monkeypatch.setattr(prefetch, "_CODE", "import time; time.sleep(60)")
    helper = prefetch.start(["/nonexistent"], ExcludeRules(), contents_below=INLINE_LIMIT)
    assert helper is not None
    try:
        started = time.monotonic()
        for i in range(20000):  # far more than a pipe holds
            helper.advance(i * 64, i * 640000)
        assert time.monotonic() - started < 20
        assert not select.select([], [helper.proc.stdin.fileno()], [], 0)[1]  # it is full
    finally:
        prefetch.stop(helper)
    assert helper.proc.returncode is not None


def test_stored_blobs_reach_an_index_object_by_count_not_only_by_time(repo: Repository, repo_path: Path,
                                                                    cache_dir: Path, monkeypatch) -> None:
    """The blob lists of stored packs wait in memory until an index object
    holds them: a fast backup of many small files must not keep a minute's
    worth (hundreds of MiB) because the clock has not come round."""
    from strongroom.repo import repository as repository_module
    from strongroom.repo.pack import DATA

    monkeypatch.setattr(repository_module, "CHECKPOINT_BLOBS", 10)
    repo.checkpoint_interval = 3600.0
    repo.config = dataclasses.replace(repo.config, pack_size=4096)  # a pack every few blobs
    repo.load_index()
    rng = random.Random(9)
    for _ in range(60):
        repo.save_blob(DATA, rng.randbytes(1000))
    repo.wait_for_uploads()
    written = list(repo.storage.list("index"))
    assert len(written) >= 2  # before any flush, with an hour to go on the clock
    assert repo._unsaved_blobs < 10 + 5
    repo.flush()
    reopened = reopen(repo_path, cache_dir)
    reopened.load_index()
    assert len(reopened.index) == 60
