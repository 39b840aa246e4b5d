"""prune through the command line: space freed, nothing needed lost."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import pytest

from conftest import PASSWORD
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
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from strongroom.repo.repository import Repository;"
        "from strongroom.storage import LocalStorage;"
        f"r = Repository.open(LocalStorage({str(repo_path)!r}), {PASSWORD!r}, {str(cache_dir)!r});"
        "l = r.lock(exclusive=False); print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
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


@pytest.mark.parametrize("stage", list(STAGES))
def test_prune_killed_at_any_stage_leaves_a_clean_repository(cli, repo_path, tmp_path, stage):
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(8)
    cli.run("init", "--pack-size", "1", check=True)
    for i in range(60):
        (src / f"f{i:02d}.bin").write_bytes(rnd.randbytes(300_000))
    cli.run("backup", str(src), "--time", "2024-01-01 10:00", check=True)
    for i in range(0, 60, 2):
        (src / f"f{i:02d}.bin").unlink()
    cli.run("backup", str(src), "--time", "2024-01-02 10:00", check=True)
    summary(cli.run("forget", "--keep-last", "1", "--json"))
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
