"""Stored trees no backup of a real file system would make: 10,000 levels deep,
names longer than the target's file system allows, and trees that contain
themselves. Every command walks them without recursion, says what it could
not do in one line per item, and restores everything else."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from crafted import MTIME, dir_node, file_node, open_below, remove_tree, save_snapshot, save_tree, save_tree_under
from strongroom.engine.check import run_check
from strongroom.engine.diff import diff_trees
from strongroom.engine.stats import repository_stats
from strongroom.engine.tree_walk import walk
from strongroom.model.tree import FIFO, SYMLINK, Node, Tree, TreeContainsItself
from strongroom.repo.pack import TREE
from strongroom.repo.repository import Repository

DEPTH = 10_000


def json_lines(done) -> list[dict]:
    return [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]


def summary_of(done) -> dict:
    return [d for d in json_lines(done) if d["type"] == "summary"][-1]


def no_traceback(done) -> None:
    assert "Traceback" not in done.stderr.decode()
    assert "RecursionError" not in done.stderr.decode()


# ---- 10,000 levels -------------------------------------------------------------------------


def deep_chain(repo: Repository, payload: bytes) -> bytes:
    """d/d/.../d/leaf, DEPTH directories deep; the leaf's path is over 20,000 bytes."""
    tree_id = save_tree(repo, file_node(repo, b"leaf", payload))
    for _ in range(DEPTH):
        tree_id = save_tree(repo, dir_node(b"d", tree_id))
    return tree_id


@pytest.fixture
def deep(repo: Repository, tmp_path: Path):
    first = save_snapshot(repo, deep_chain(repo, b"first leaf\n"), host="deep")
    second = save_snapshot(repo, deep_chain(repo, b"second leaf, longer\n"), host="deep")
    yield {"first": first, "second": second}
    for name in ("target",):
        if (tmp_path / name).exists():
            remove_tree(tmp_path / name)


LEAF = "/d" * DEPTH + "/leaf"


def test_ls_walks_10000_levels(cli, deep):
    done = cli.run("ls", deep["first"][:12])
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    lines = done.stdout.decode().splitlines()
    assert len(lines) == DEPTH + 1
    assert lines[0] == "/d" and lines[1] == "/d/d" and lines[-2] == "/d" * DEPTH and lines[-1] == LEAF


def test_diff_walks_10000_levels(cli, deep):
    done = cli.run("diff", deep["first"][:12], deep["second"][:12])
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().splitlines() == [f"M    {LEAF}", "", "0 added, 0 removed, 1 modified, 0 metadata changed"]


def test_check_and_stats_walk_10000_levels(cli, deep, repo_path):
    done = cli.run("check")
    assert done.returncode == 0, done.stdout.decode()[-2000:]
    assert done.stdout.decode().splitlines()[-2:] == [
        f"checked 2 snapshots, {2 * (DEPTH + 1)} trees, 4 packs", "no errors were found"]

    stats = summary_of(cli.run("stats", "--json", check=True))
    assert stats["files"] == 2 and stats["tree_blobs"] == 2 * (DEPTH + 1)
    assert stats["restore_size"] == len(b"first leaf\n") + len(b"second leaf, longer\n")

    # Damage found by --read-data is traced down to the file 10,000 levels below.
    data_packs = [p for p in (repo_path / "data").rglob("*") if p.is_file() and p.stat().st_size < 4096]
    assert len(data_packs) == 2  # one leaf each; the tree packs hold megabytes
    raw = bytearray(data_packs[0].read_bytes())
    raw[10] ^= 0xFF  # inside its only blob
    data_packs[0].write_bytes(bytes(raw))
    done = cli.run("check", "--read-data")
    no_traceback(done)
    assert done.returncode == 1
    assert f"files: {LEAF}" in done.stdout.decode()


def test_restore_of_10000_levels_is_whole(cli, deep, tmp_path):
    target = tmp_path / "target"
    done = cli.run("restore", deep["first"][:12], "--target", str(target), "--verify")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "verified 1 file\n" in done.stdout.decode()

    fd = open_below(target, [b"d"] * DEPTH)
    try:
        leaf = os.open(b"leaf", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        try:
            assert os.read(leaf, 100) == b"first leaf\n"
            st = os.fstat(leaf)
            assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime_ns == MTIME
        finally:
            os.close(leaf)
    finally:
        os.close(fd)
    for level in (1, DEPTH // 2, DEPTH):  # every directory got its metadata, after its contents
        fd = open_below(target, [b"d"] * level)
        try:
            st = os.fstat(fd)
            assert stat.S_IMODE(st.st_mode) == 0o750 and st.st_mtime_ns == MTIME
        finally:
            os.close(fd)

    # A rerun finds the leaf current 10,000 levels down; the other point replaces it.
    again = summary_of(cli.run("restore", deep["first"][:12], "--target", str(target), "--json", check=True))
    assert again["files_skipped"] == 1 and again["files_to_write"] == 0 and again["files_failed"] == []
    cli.run("restore", deep["second"][:12], "--target", str(target), check=True)
    fd = open_below(target, [b"d"] * DEPTH)
    try:
        leaf = os.open(b"leaf", os.O_RDONLY, dir_fd=fd)
        assert os.read(leaf, 100) == b"second leaf, longer\n"
        os.close(leaf)
    finally:
        os.close(fd)


# ---- names too long for the target -----------------------------------------------------------

LONG = b"n" * 300  # valid in a tree; no Linux file system takes more than 255 bytes


def test_a_name_too_long_is_one_error_and_the_rest_restores(cli, repo: Repository, tmp_path):
    inner = save_tree(repo, file_node(repo, b"inside", b"below a long name\n"))
    fine = save_tree(repo, file_node(repo, b"deeper.txt", b"deeper\n"), file_node(repo, LONG + b".txt", b"x\n"))
    root = save_tree(
        repo,
        file_node(repo, b"a.txt", b"alpha\n"),
        file_node(repo, LONG, b"never restored\n"),
        dir_node(LONG + b"-dir", inner),
        dir_node(b"fine", fine),
        Node(name=LONG + b"-link", type=SYMLINK, mode=0o777, mtime_ns=MTIME, target=b"a.txt"),
        Node(name=LONG + b"-fifo", type=FIFO, mode=0o600, mtime_ns=MTIME),
        file_node(repo, b"z.txt", b"zulu\n"),
    )
    snap = save_snapshot(repo, root)
    target = tmp_path / "target"
    done = cli.run("restore", snap[:12], "--target", str(target))
    no_traceback(done)
    assert done.returncode == 3, done.stderr.decode()
    long, t = LONG.decode(), str(target)
    errors = sorted(line for line in done.stderr.decode().splitlines() if line.strip())
    assert errors == sorted([
        f"error: {t}/{long}: cannot create file: File name too long",
        f"error: {t}/{long}-dir: cannot create directory: File name too long",
        f"error: {t}/{long}-dir/inside: not restored: a directory above it could not be created",
        f"error: {t}/fine/{long}.txt: cannot create file: File name too long",
        f"error: {t}/{long}-link: cannot create symlink: File name too long",
        f"error: {t}/{long}-fifo: cannot create fifo: File name too long",
    ])
    assert (target / "a.txt").read_bytes() == b"alpha\n"
    assert (target / "z.txt").read_bytes() == b"zulu\n"
    assert (target / "fine" / "deeper.txt").read_bytes() == b"deeper\n"
    assert sorted(os.listdir(target)) == ["a.txt", "fine", "z.txt"]
    assert os.listdir(target / "fine") == ["deeper.txt"]
    out = done.stdout.decode()
    assert "5 of 8 files could not be restored:" in out
    assert f"  {t}/{long}: cannot create file: File name too long" in out

    s = summary_of(cli.run("restore", snap[:12], "--target", str(tmp_path / "again"), "--json"))
    assert sorted(f["path"] for f in s["files_failed"]) == sorted(
        f"{tmp_path}/again/{p}" for p in (long, f"{long}-dir/inside", f"fine/{long}.txt", f"{long}-link",
                                          f"{long}-fifo"))
    assert s["errors"] == 6


# ---- trees that contain themselves --------------------------------------------------------------


@pytest.fixture
def loop(repo: Repository) -> dict:
    """/top is a tree stored under an id that is not its own, which it names as its subdirectory."""
    fake = bytes(range(32))
    stored = save_tree_under(repo, fake, dir_node(b"again", fake), file_node(repo, b"f", b"inside the loop\n"))
    assert stored == fake
    root = save_tree(repo, dir_node(b"top", fake), file_node(repo, b"ok.txt", b"fine\n"))
    empty = save_tree(repo)
    snap = save_snapshot(repo, root)
    return {"snap": snap, "fake": fake, "root": root, "empty": empty}


def test_check_names_a_tree_stored_under_another_id(cli, loop):
    done = cli.run("check")
    no_traceback(done)
    assert done.returncode == 1
    out = done.stdout.decode()
    assert f"damaged: blob {loop['fake'].hex()[:16]}: tree {loop['fake'].hex()[:16]}: content does not match its id" \
        in out
    assert f"snapshots: {loop['snap'][:8]}" in out and "files: /top" in out

    report = summary_of(cli.run("check", "--json"))
    assert report["ok"] is False and [p["blob"] for p in report["problems"]] == [loop["fake"].hex()]


@pytest.mark.parametrize("command", ["ls", "restore", "diff", "stats"])
def test_commands_stop_with_one_line_on_such_a_tree(cli, repo, loop, tmp_path, command):
    args = {"ls": ["ls", loop["snap"]], "restore": ["restore", loop["snap"], "--target", str(tmp_path / "t")],
            "diff": ["diff", save_snapshot(repo, save_tree(repo)), loop["snap"]], "stats": ["stats"]}[command]
    done = cli.run(*args)
    no_traceback(done)
    assert done.returncode == 1
    assert done.stderr.decode().splitlines()[-1] == \
        f"strongroom: tree {loop['fake'].hex()[:16]}: content does not match its id"


def unverified_load_tree(repo: Repository):
    """load_tree as it was before tree ids were checked on reading.

    A stand-in for what cannot be built for real: with ids checked, no tree can
    be read under an ancestor's id, yet every walk must still stop on one."""
    def load_tree(tree_id: bytes, keep: bool = True) -> Tree:
        return Tree.decode(repo.read_blob(tree_id, TREE))
    return load_tree


def test_every_walk_stops_at_a_tree_that_contains_itself(repo, loop, monkeypatch):
    monkeypatch.setattr(repo, "load_tree", unverified_load_tree(repo))
    repo.load_index()
    with pytest.raises(TreeContainsItself, match=f"tree {loop['fake'].hex()[:16]} contains itself"):
        list(walk(repo, loop["root"]))
    with pytest.raises(TreeContainsItself):
        list(diff_trees(repo, None, loop["root"]))
    with pytest.raises(TreeContainsItself):
        list(diff_trees(repo, loop["root"], loop["empty"]))
    with pytest.raises(TreeContainsItself):
        repository_stats(repo, repo.list_snapshots(), list_target=False)

    report = run_check(repo)
    assert [(p["object"], p["message"]) for p in report.problems] == [
        (f"tree {loop['fake'].hex()[:16]}", "contains itself")]
    assert report.problems[0]["snapshots"] == [loop["snap"][:8]]


# ---- the order is the one the recursive walks gave -----------------------------------------------


def recursive_walk(repo, tree_id, prefix=b""):
    for node in repo.load_tree(tree_id).nodes:
        yield prefix + b"/" + node.name, node
        if node.type == "dir" and node.subtree:
            yield from recursive_walk(repo, node.subtree, prefix + b"/" + node.name)


def test_walk_and_diff_keep_the_depth_first_order(repo, tmp_path):
    def tree(*nodes):
        return save_tree(repo, *nodes)
    leaf = tree(file_node(repo, b"x", b"1"), file_node(repo, b"y", b"2"))
    old = tree(dir_node(b"a", tree(dir_node(b"b", leaf), file_node(repo, b"c", b"3"))), dir_node(b"gone", leaf),
               file_node(repo, b"m", b"4"), dir_node(b"z", leaf))
    new = tree(dir_node(b"a", tree(dir_node(b"b", tree(file_node(repo, b"x", b"changed"))), file_node(repo, b"c", b"3"))),
               dir_node(b"added", leaf), file_node(repo, b"m", b"4", mode=0o600), dir_node(b"z", leaf))
    save_snapshot(repo, old)
    assert list(walk(repo, old)) == list(recursive_walk(repo, old))
    assert [p for p, _ in walk(repo, new, b"/pre")] == [p for p, _ in recursive_walk(repo, new, b"/pre")]
    assert [(c["change"], c["path"]) for c in diff_trees(repo, old, new)] == [
        ("M", "/a/b/x"), ("-", "/a/b/y"), ("+", "/added/"), ("+", "/added/x"), ("+", "/added/y"),
        ("-", "/gone/"), ("-", "/gone/x"), ("-", "/gone/y"), ("U", "/m")]
