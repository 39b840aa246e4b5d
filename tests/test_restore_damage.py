"""Restore from a damaged pack: a file that cannot be restored whole does not look restored."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

MiB = 1024 * 1024


def summary_of(done) -> dict:
    return [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")][-1]


@pytest.fixture
def damaged(cli, repo_path: Path, tmp_path: Path) -> dict:
    """Two files in a first backup; a 3 MiB one alone in the data pack of a second; that pack damaged."""
    cli.run("init", check=True)
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep.txt").write_bytes(b"kept\n" * 100)
    (src / "notes.txt").write_bytes(b"notes\n")
    cli.run("backup", str(src), check=True)
    before = {p for p in (repo_path / "data").rglob("*") if p.is_file()}
    hit = random.Random(7).randbytes(3 * MiB)
    (src / "hit.bin").write_bytes(hit)
    cli.run("backup", str(src), check=True)
    [pack] = [p for p in (repo_path / "data").rglob("*") if p.is_file() and p not in before
              and p.stat().st_size > 3 * MiB]
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x55
    pack.write_bytes(bytes(data))
    return {"src": src, "pack": pack.name, "hit": hit}


def test_a_file_with_a_damaged_chunk_is_removed_and_named(cli, damaged, tmp_path):
    target = tmp_path / "target"
    done = cli.run("restore", "latest", "--target", str(target))
    assert done.returncode == 3
    restored = target / str(damaged["src"]).lstrip("/")
    assert (restored / "keep.txt").read_bytes() == b"kept\n" * 100
    assert (restored / "notes.txt").read_bytes() == b"notes\n"
    assert not os.path.lexists(restored / "hit.bin")  # not a full-size file of zeros that looks restored
    assert sorted(os.listdir(restored)) == ["keep.txt", "notes.txt"]

    [line] = [line for line in done.stderr.decode().splitlines() if line.strip()]
    assert line.startswith(f"error: {restored}/hit.bin: blob ") and damaged["pack"] in line
    out = done.stdout.decode().splitlines()
    assert out[1] == "1 of 3 files could not be restored:"
    assert out[2] == "  " + line[len("error: "):]

    s = summary_of(cli.run("restore", "latest", "--target", str(tmp_path / "again"), "--json"))
    assert [f["path"] for f in s["files_failed"]] == [f"{tmp_path}/again{damaged['src']}/hit.bin"]
    assert damaged["pack"] in s["files_failed"][0]["message"]
    assert s["errors"] == 1


def test_an_earlier_good_copy_is_not_left_looking_current(cli, damaged, tmp_path):
    """A rerun over a target where hit.bin is whole: with `always` it is rewritten, fails, and is removed,
    so no file is there that has the snapshot's size and mtime but not its content."""
    target = tmp_path / "target"
    restored = target / str(damaged["src"]).lstrip("/")
    restored.mkdir(parents=True)
    (restored / "hit.bin").write_bytes(b"an older, different file\n")
    done = cli.run("restore", "latest", "--target", str(target), "--overwrite", "always")
    assert done.returncode == 3
    assert not os.path.lexists(restored / "hit.bin")
    assert (restored / "keep.txt").read_bytes() == b"kept\n" * 100
