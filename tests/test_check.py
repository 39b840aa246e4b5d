"""`strongroom check`: a healthy repository passes; each kind of damage is named, with exit code 1."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest

from conftest import reopen
from strongroom.model.snapshot import SNAPSHOT_AAD, Snapshot
from strongroom.model.tree import FILE, Node, Tree
from strongroom.repo.index import INDEX_AAD
from strongroom.repo.repository import seal_object
from strongroom.repo.pack import TREE

MiB = 1024 * 1024


def json_lines(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]


def summary_of(done) -> dict:
    found = [e for e in json_lines(done.stdout) if e.get("type") == "summary"]
    assert found, f"no summary in output:\n{done.stdout.decode()}\n{done.stderr.decode()}"
    return found[-1]


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def rename_to_content(path: Path) -> Path:
    """Give an object the name of its (damaged) content, so only authentication can catch it."""
    new = path.with_name(hashlib.sha256(path.read_bytes()).hexdigest())
    path.rename(new)
    return new


@pytest.fixture
def two_backups(repo, cli, tmp_path) -> dict:
    """A repository (made through the API) with two snapshots of a small tree."""
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    (src / "first.txt").write_bytes(b"first\n")
    (src / "dir" / "blob.bin").write_bytes(random.Random(1).randbytes(2 * MiB))
    first = summary_of(cli.run("backup", str(src), "--json", check=True))["snapshot"]
    index_after_first = set(os.listdir(cli.repo_path / "index"))
    (src / "second.txt").write_bytes(random.Random(2).randbytes(MiB))
    second = summary_of(cli.run("backup", str(src), "--json", check=True))["snapshot"]
    index_of_second = set(os.listdir(cli.repo_path / "index")) - index_after_first
    assert len(index_of_second) == 1
    return {"src": src, "first": first, "second": second, "index_of_second": index_of_second.pop()}


def test_healthy_repository_has_no_errors(cli, two_backups):
    done = cli.run("check")
    assert done.returncode == 0, done.stdout.decode()
    out = done.stdout.decode()
    assert "no errors were found" in out
    assert "checked 2 snapshots" in out

    done = cli.run("check", "--read-data")
    assert done.returncode == 0 and "no errors were found" in done.stdout.decode()

    report = summary_of(cli.run("check", "--read-data", "--json", check=True))
    assert report["ok"] is True and report["problems"] == [] and report["warnings"] == []
    assert report["snapshots"] == 2 and report["packs"] == report["packs_read"] >= 2


def test_empty_repository_checks_clean(repo, cli):
    done = cli.run("check", "--read-data")
    assert done.returncode == 0 and "no errors were found" in done.stdout.decode()


def test_damaged_index_object(cli, repo_path, two_backups):
    index = repo_path / "index" / two_backups["index_of_second"]
    flip_byte(index, index.stat().st_size // 2)
    done = cli.run("check")
    out = done.stdout.decode()
    assert done.returncode == 1, out
    assert f"index/{two_backups['index_of_second']}" in out
    assert "does not match its name" in out
    # Its packs are no longer indexed, so the second snapshot's trees are lost; the first is whole.
    assert "not in any index" in out
    assert "tree" in out and "not in the index" in out
    assert two_backups["second"][:8] in out
    assert two_backups["first"][:8] not in out
    problems = summary_of(cli.run("check", "--json"))["problems"]
    blobs = [p["blob"] for p in problems if p.get("blob")]
    assert blobs and len(blobs) == len(set(blobs))  # each lost tree is reported once


def test_index_object_that_does_not_authenticate(cli, repo_path, two_backups):
    index = repo_path / "index" / two_backups["index_of_second"]
    flip_byte(index, index.stat().st_size // 2)
    renamed = rename_to_content(index)
    report = summary_of(cli.run("check", "--json"))
    assert report["ok"] is False
    named = [p for p in report["problems"] if p["object"] == f"index/{renamed.name}"]
    assert len(named) == 1 and "does not authenticate" in named[0]["message"]


def test_index_object_with_a_bad_structure(repo, cli, repo_path, two_backups):
    # Correctly encrypted and named, but not an index: authentication alone does not make it valid.
    data = seal_object(repo.crypto, b"SRIX\x01" + b"\x00" * 3, INDEX_AAD)
    name = hashlib.sha256(data).hexdigest()
    (repo_path / "index" / name).write_bytes(data)
    done = cli.run("check")
    assert done.returncode == 1
    assert f"index/{name}" in done.stdout.decode()


def test_damaged_snapshot_object(cli, repo_path, two_backups, tmp_path):
    first = repo_path / "snapshots" / two_backups["first"]
    flip_byte(first, 20)
    done = cli.run("check")
    out = done.stdout.decode()
    assert done.returncode == 1, out
    assert f"snapshots/{two_backups['first']}" in out

    renamed = rename_to_content(first)
    report = summary_of(cli.run("check", "--json"))
    assert report["ok"] is False
    assert [p["object"] for p in report["problems"]] == [f"snapshots/{renamed.name}"]
    assert "does not authenticate" in report["problems"][0]["message"]
    assert report["snapshots"] == 1

    # The other snapshot stays listed and restorable; the damaged one is named on the way.
    done = cli.run("snapshots", "--json")
    assert done.returncode == 0
    assert [e["id"] for e in json.loads(done.stdout)] == [two_backups["second"]]
    assert renamed.name in done.stderr.decode()
    target = tmp_path / "restore"
    done = cli.run("restore", "latest", "--target", str(target), "--verify")
    assert done.returncode == 0, done.stderr.decode()
    assert (target / str(two_backups["src"]).lstrip("/") / "second.txt").read_bytes() == \
        random.Random(2).randbytes(MiB)
    # A backup stops at it: bytes that match their name but do not authenticate were
    # sealed under another key, and nothing is written past that.
    done = cli.run("backup", str(two_backups["src"]), "--json")
    assert done.returncode == 1, done.stderr.decode()
    assert f"snapshot {renamed.name[:8]} is intact but does not authenticate" in done.stderr.decode()


def test_snapshot_that_authenticates_but_is_malformed(repo, cli, repo_path, two_backups):
    data = seal_object(repo.crypto, b'{"time": "not a time", "tree": "zz"}', SNAPSHOT_AAD)
    name = hashlib.sha256(data).hexdigest()
    (repo_path / "snapshots" / name).write_bytes(data)
    done = cli.run("check")
    assert done.returncode == 1
    assert f"snapshots/{name}" in done.stdout.decode() and "malformed" in done.stdout.decode()


def tree_packs(repo_path: Path, cache_dir: Path) -> set[str]:
    opened = reopen(repo_path, cache_dir)
    opened.load_index()
    return {pack.hex() for pack, blobs in opened.index.packs.items() if any(b.type == TREE for b in blobs)}


def test_missing_tree_pack(cli, repo_path, cache_dir, two_backups):
    packs = tree_packs(repo_path, cache_dir)
    assert packs
    for pack in packs:
        (repo_path / "data" / pack[:2] / pack).unlink()
    done = cli.run("check")
    out = done.stdout.decode()
    assert done.returncode == 1, out
    for pack in packs:
        assert pack in out
    report = summary_of(cli.run("check", "--json"))
    missing = [p for p in report["problems"] if p["message"] == "pack is missing"]
    assert {p["pack"] for p in missing} == packs
    assert {s for p in missing for s in p["snapshots"]} == {two_backups["first"][:8], two_backups["second"][:8]}


def test_snapshots_whose_tree_is_missing(repo, cli, two_backups):
    ghost_tree = os.urandom(32)
    ids = [repo.save_snapshot(Snapshot(time=f"2026-01-0{day}T00:00:00+00:00", tree=ghost_tree.hex(),
                                       paths=("/ghost",), hostname="h")) for day in (1, 2)]
    done = cli.run("check")
    out = done.stdout.decode()
    assert done.returncode == 1, out
    assert f"tree {ghost_tree.hex()[:16]}" in out and "not in the index" in out
    assert ids[0][:8] in out and ids[1][:8] in out
    assert two_backups["first"][:8] not in out
    [problem] = summary_of(cli.run("check", "--json"))["problems"]
    assert problem["blob"] == ghost_tree.hex()
    assert problem["snapshots"] == sorted(i[:8] for i in ids)


def test_file_whose_data_blob_is_missing(repo, cli, two_backups):
    repo.load_index()
    lost = os.urandom(32)
    kept, _ = repo.save_blob(0, b"present chunk")
    node = Node(name=b"partly-lost.bin", type=FILE, mode=0o644, size=100, content=(kept, lost))
    tree_id, _ = repo.save_tree(Tree((node,)))
    repo.flush()
    snap_id = repo.save_snapshot(Snapshot(time="2026-01-01T00:00:00+00:00", tree=tree_id.hex(),
                                          paths=("/crafted",), hostname="h"))
    report = summary_of(cli.run("check", "--json"))
    assert report["ok"] is False
    [problem] = report["problems"]
    assert problem["blob"] == lost.hex()
    assert problem["files"] == ["/partly-lost.bin"] and problem["snapshots"] == [snap_id[:8]]
    done = cli.run("check")
    assert done.returncode == 1 and "/partly-lost.bin" in done.stdout.decode()


def test_damaged_pack_header_is_found_by_read_data(cli, repo_path, cache_dir, two_backups):
    data_packs = set()
    opened = reopen(repo_path, cache_dir)
    opened.load_index()
    for pack, blobs in opened.index.packs.items():
        if all(b.type != TREE for b in blobs):
            data_packs.add(pack.hex())
    victim = sorted(data_packs)[0]
    path = repo_path / "data" / victim[:2] / victim
    flip_byte(path, path.stat().st_size - 10)  # inside the encrypted header
    assert cli.run("check").returncode == 0  # sizes still agree: only reading finds it
    report = summary_of(cli.run("check", "--read-data", "--json"))
    assert report["ok"] is False
    messages = [p["message"] for p in report["problems"] if p.get("pack") == victim]
    assert any("header" in m for m in messages)


def test_damaged_tree_blob_is_found_without_read_data(cli, repo_path, cache_dir, two_backups):
    packs = sorted(tree_packs(repo_path, cache_dir))
    for pack in packs:
        path = repo_path / "data" / pack[:2] / pack
        flip_byte(path, 20)  # inside the first tree blob of each tree pack
    done = cli.run("check")
    out = done.stdout.decode()
    assert done.returncode == 1, out
    assert "does not authenticate" in out
    report = summary_of(cli.run("check", "--json"))
    assert report["ok"] is False
    named = {s for p in report["problems"] for s in p.get("snapshots", ())}
    assert named & {two_backups["first"][:8], two_backups["second"][:8]}
    done = cli.run("check", "--read-data")
    assert done.returncode == 1
    assert all(pack in done.stdout.decode() for pack in packs)


def test_read_data_in_tiny_spans_reads_every_byte_once_and_still_finds_damage(repo_path, cache_dir, two_backups,
                                                                               monkeypatch):
    """Packs are read in spans of whole blobs; with spans far smaller than a
    blob or a header, every blob is still authenticated, a header longer
    than the last span is read on its own, and a flipped bit in the middle
    of a pack is found by its hash and its blob's authentication."""
    from strongroom.engine import check
    monkeypatch.setattr(check, "CHECK_SPAN", 64)
    opened = reopen(repo_path, cache_dir)
    report = check.run_check(opened, read_data=True)
    assert report.ok, report.problems
    assert report.counts["blobs_authenticated"] == report.counts["blobs"]
    assert opened.storage.bytes_read >= sum(p.stat().st_size for p in (repo_path / "data").rglob("*") if p.is_file())
    data_packs = {pack: blobs for pack, blobs in opened.index.packs.items() if all(b.type != TREE for b in blobs)}
    victim, blobs = max(data_packs.items(), key=lambda item: len(item[1]))
    last = max(blobs, key=lambda b: b.offset)
    path = repo_path / "data" / victim.hex()[:2] / victim.hex()
    flip_byte(path, last.offset + last.length // 2)
    report = check.run_check(reopen(repo_path, cache_dir), read_data=True)
    found = [(p["message"], p.get("blob")) for p in report.problems if p.get("pack") == victim.hex()]
    assert found[0] == ("pack content does not match its name", None)
    assert [blob for _, blob in found[1:]] == [last.id.hex()]
