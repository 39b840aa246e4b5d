"""prune through the command line: space freed, nothing needed lost."""

from __future__ import annotations

import json
import random
import time

import pytest

from conftest import hold_shared_lock
from strongroom.engine.prune import choose_repacks, new_pack_sizes
from strongroom.repo.pack import DATA, TREE, PackedBlob
from treeutil import snapshot_tree

MiB = 1024 * 1024


def summary(done) -> dict:
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def data_size(repo_path) -> int:
    return sum(p.stat().st_size for p in (repo_path / "data").rglob("*") if p.is_file())


def test_forget_then_prune_frees_the_space_and_keeps_the_rest(cli, repo_path, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(5)
    cli.run("init", "--pack-size", "1", check=True)
    (src / "old.bin").write_bytes(rnd.randbytes(4 * MiB))
    (src / "keep.bin").write_bytes(rnd.randbytes(2 * MiB))
    cli.run("backup", str(src), "--time", "2024-01-01 10:00", check=True)
    (src / "old.bin").unlink()
    (src / "new.bin").write_bytes(rnd.randbytes(1 * MiB))
    cli.run("backup", str(src), "--time", "2024-01-02 10:00", check=True)
    before = data_size(repo_path)

    summary(cli.run("forget", "--keep-last", "1", "--json"))
    dry = summary(cli.run("prune", "--dry-run", "--json"))
    assert dry["bytes_freed"] >= 4 * MiB * 0.9 and data_size(repo_path) == before  # a dry run deletes nothing
    done = summary(cli.run("prune", "--json"))
    assert done["bytes_freed"] == dry["bytes_freed"]
    assert before - data_size(repo_path) >= 4 * MiB * 0.9
    report = summary(cli.run("check", "--read-data", "--json"))
    assert report["ok"] and not report["warnings"], report
    assert len(list((repo_path / "index").iterdir())) == 1  # consolidated
    target = tmp_path / "restore"
    cli.run("restore", "latest", "--target", str(target), "--verify", check=True)
    assert snapshot_tree(target / src.relative_to("/")) == snapshot_tree(src)
    # A second prune finds nothing more to do.
    assert summary(cli.run("prune", "--json"))["bytes_freed"] == 0


def test_partly_used_packs_are_repacked(cli, repo_path, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(6)
    cli.run("init", "--pack-size", "8", check=True)  # one pack holds all the small files
    for i in range(40):
        (src / f"f{i:02d}.bin").write_bytes(rnd.randbytes(100_000))
    cli.run("backup", str(src), "--time", "2024-01-01 10:00", check=True)
    for i in range(20):
        (src / f"f{i:02d}.bin").unlink()
    cli.run("backup", str(src), "--time", "2024-01-02 10:00", check=True)
    done = summary(cli.run("forget", "--keep-last", "1", "--prune", "--json"))["prune"]
    assert done["packs_repacked"] >= 1 and done["bytes_freed"] >= 1_900_000
    assert summary(cli.run("check", "--read-data", "--json"))["ok"]
    target = tmp_path / "restore"
    cli.run("restore", "latest", "--target", str(target), check=True)
    assert snapshot_tree(target / src.relative_to("/")) == snapshot_tree(src)


def test_prune_needs_the_exclusive_lock(cli, repo_path, cache_dir, tmp_path):
    cli.run("init", check=True)
    holder = hold_shared_lock(repo_path, cache_dir)
    try:
        done = cli.run("prune")
        assert done.returncode == 11 and "locked" in done.stderr.decode()
    finally:
        holder.kill()
        holder.wait()


def _files(folder) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file()}


STAGES = {
    # a repacked pack has been written
    "repacking": lambda repo, packs, index: bool(_files(repo / "data") - packs),
    # the consolidated index has been written
    "indexed": lambda repo, packs, index: bool(_files(repo / "index") - index),
    # old index objects or packs are being deleted
    "deleting": lambda repo, packs, index: bool(index - _files(repo / "index") or packs - _files(repo / "data")),
}


def half_forgotten(cli, tmp_path, files: int, size: int, seed: int):
    """A repository of 1 MiB packs where the only point left uses every
    other file of the forgotten one: half of every pack is garbage."""
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(seed)
    cli.run("init", "--pack-size", "1", check=True)
    for i in range(files):
        (src / f"f{i:02d}.bin").write_bytes(rnd.randbytes(size))
    cli.run("backup", str(src), "--time", "2024-01-01 10:00", check=True)
    for i in range(0, files, 2):
        (src / f"f{i:02d}.bin").unlink()
    cli.run("backup", str(src), "--time", "2024-01-02 10:00", check=True)
    summary(cli.run("forget", "--keep-last", "1", "--json"))
    return src


@pytest.mark.parametrize("stage", list(STAGES))
def test_prune_killed_at_any_stage_leaves_a_clean_repository(cli, repo_path, tmp_path, stage):
    src = half_forgotten(cli, tmp_path, files=60, size=300_000, seed=8)
    packs, index = _files(repo_path / "data"), _files(repo_path / "index")

    proc = cli.popen("prune", "--max-unused", "1%")
    reached = STAGES[stage]
    while proc.poll() is None and not reached(repo_path, packs, index):
        time.sleep(0.0005)
    killed = proc.poll() is None
    proc.kill()
    proc.communicate()
    assert killed, f"prune finished before it reached {stage}"
    cli.run("unlock", check=True)
    report = summary(cli.run("check", "--read-data", "--json"))
    assert report["ok"], report

    summary(cli.run("prune", "--json"))  # the next prune finishes the work
    report = summary(cli.run("check", "--read-data", "--json"))
    assert report["ok"] and not report["warnings"], report
    target = tmp_path / "restore"
    cli.run("restore", "latest", "--target", str(target), "--verify", check=True)
    assert snapshot_tree(target / src.relative_to("/")) == snapshot_tree(src)


# ---- limits on repacking: --max-repack-size and the pack size bound ------------------


def _pack(n: int) -> bytes:
    return bytes([n]) * 32


@pytest.mark.parametrize("limit, chosen", [
    (None, [1, 2, 3, 4]),  # no limit: every candidate, the largest unused share first
    (10 * MiB, [1, 2, 3, 4]),
    (6 * MiB, [1, 2, 4]),  # pack 3 (4 MiB) does not fit after 1 and 2; the smaller pack 4 still does
    (2 * MiB, [1, 4]),
    (1 * MiB, [2]),  # pack 1 is larger than the limit on its own: it waits; pack 2 fills it
    (0, []),
])
def test_max_repack_size_takes_the_most_wasteful_packs_that_fit(limit, chosen):
    # pack -> (stored size, unused bytes)
    candidates = {_pack(3): (4 * MiB, 1 * MiB),     # 25% unused
                  _pack(1): (int(1.5 * MiB), int(1.2 * MiB)),  # 80%
                  _pack(4): (MiB // 2, MiB // 10),  # 20%
                  _pack(2): (MiB, MiB // 2)}        # 50%
    assert choose_repacks(candidates, limit) == [_pack(n) for n in chosen]


def test_new_packs_never_pass_the_limit_and_a_lone_large_blob_gets_its_own():
    def blob(i: int, length: int, kind: int = DATA) -> PackedBlob:
        return PackedBlob(kind, bytes([i]) * 32, 0, length, length)

    limit = 1_000_000
    repack = {_pack(1): [blob(i, 240_000) for i in range(5)] + [blob(50, 3_000, TREE)],
              _pack(2): [blob(10, 1_500_000), blob(11, 240_000), blob(51, 2_000, TREE)]}
    sizes = new_pack_sizes(repack, limit)
    # Four 240 kB blobs fit below 1 MB with the header; the fifth opens a new
    # pack; the 1.5 MB blob stands alone; the trees share one pack.
    assert len(sizes) == 5
    assert sorted(s for s in sizes if s <= limit) == sorted(sizes)[:4]
    assert max(sizes) > 1_500_000 and sum(1 for s in sizes if s > limit) == 1
    assert all(s <= 2_000_000 for s in new_pack_sizes(repack, 2_000_000))


def test_max_repack_size_spreads_the_work_over_several_prunes(cli, repo_path, tmp_path):
    src = half_forgotten(cli, tmp_path, files=48, size=150_000, seed=9)
    whole = summary(cli.run("prune", "--dry-run", "--json"))
    assert whole["packs_repacked"] >= 5 and whole["packs_left_to_repack"] == 0

    assert cli.run("prune", "--max-repack-size", "lots").returncode == 2
    packs_before = _files(repo_path / "data")
    first = summary(cli.run("prune", "--max-repack-size", "2.5M", "--json"))
    assert first["packs_repacked"] == 2 and first["bytes_repacked"] <= 2.5 * MiB
    assert first["packs_left_to_repack"] == whole["packs_repacked"] - 2 and first["bytes_left_to_free"] > 0
    new = {p for p in (repo_path / "data").rglob("*") if p.is_file() and p.name not in packs_before}
    assert new and all(p.stat().st_size <= MiB for p in new)  # exactly within the pack size
    report = summary(cli.run("check", "--read-data", "--json"))
    assert report["ok"] and not report["warnings"], report  # the packs left are still indexed
    text = cli.run("prune", "--dry-run", "--max-repack-size", "1M").stdout.decode()
    assert "left for the next prune" in text, text

    second = summary(cli.run("prune", "--json"))
    assert second["packs_repacked"] == first["packs_left_to_repack"] and second["packs_left_to_repack"] == 0
    assert summary(cli.run("prune", "--dry-run", "--json"))["bytes_freed"] == 0
    report = summary(cli.run("check", "--read-data", "--json"))
    assert report["ok"] and not report["warnings"], report
    target = tmp_path / "restore"
    cli.run("restore", "latest", "--target", str(target), "--verify", check=True)
    assert snapshot_tree(target / src.relative_to("/")) == snapshot_tree(src)
