"""Deduplication: data the repository already holds is neither stored nor, when unchanged, read again."""

from __future__ import annotations

import os
import random
from pathlib import Path

from conftest import reopen
from strongroom.engine.backup import BackupOptions, run_backup
from strongroom.engine.tree_walk import walk
from strongroom.model.snapshot import FULL, INCREMENTAL
from strongroom.repo.repository import Repository

MiB = 1024 * 1024


def repo_size(repo_path: Path) -> int:
    return sum(p.stat().st_size for p in repo_path.rglob("*") if p.is_file())


def data_files(repo_path: Path) -> int:
    return sum(p.stat().st_size for p in (repo_path / "data").rglob("*") if p.is_file())


def backup(repo: Repository, *paths: Path, **options):
    result = run_backup(repo, BackupOptions(paths=tuple(str(p) for p in paths), **options))
    assert result.errors == []
    return result


def ancestors_state(path: Path) -> list[tuple]:
    """What a snapshot records of the folders above `path` (/tmp changes whenever
    another process makes a file there)."""
    return [(p.stat().st_mtime_ns, p.stat().st_ctime_ns, p.stat().st_mode) for p in path.parents]


def subtree_of(repo: Repository, snapshot, path: Path) -> bytes:
    """The tree id of the folder `path` in `snapshot`."""
    [node] = [n for rel, n in walk(repo, bytes.fromhex(snapshot.tree)) if rel == os.fsencode(path)]
    return node.subtree


def test_same_data_twice_stores_almost_nothing(tmp_path: Path, repo: Repository, repo_path: Path,
                                               cache_dir: Path) -> None:
    rnd = random.Random(1)
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "random.bin").write_bytes(rnd.randbytes(5 * MiB))
    (src / "text.txt").write_bytes(b"the same line again\n" * 100_000)
    first = backup(repo, src)
    assert first.summary["data_added_raw"] >= 5 * MiB + 2_000_000
    size_after_first = repo_size(repo_path)
    data_after_first = data_files(repo_path)

    again = backup(repo, src)
    assert again.summary["data_blobs"] == 0
    assert again.summary["data_added_packed"] < 16 * 1024
    assert repo_size(repo_path) - size_after_first < 16 * 1024

    # A fresh process-like open, and a second source dir holding a copy of the same data.
    copy = tmp_path / "copy"
    (copy / "b").mkdir(parents=True)
    (copy / "b" / "moved.bin").write_bytes((src / "a" / "random.bin").read_bytes())
    (copy / "text copy.txt").write_bytes((src / "text.txt").read_bytes())
    second = backup(reopen(repo_path, cache_dir), copy)
    assert second.summary["data_blobs"] == 0
    assert second.summary["data_added_raw"] == 0
    assert second.summary["bytes_read"] == 5 * MiB + 2_000_000  # new paths: read, but not stored
    # only trees, an index object and the snapshot were added
    assert repo_size(repo_path) - size_after_first < 64 * 1024
    assert second.summary["data_added_packed"] < 64 * 1024
    assert data_files(repo_path) - data_after_first < 64 * 1024


def test_insert_one_byte_near_start_stores_few_chunks(tmp_path: Path, repo: Repository, repo_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = src / "big.bin"
    data = random.Random(64).randbytes(64 * MiB)
    big.write_bytes(data)
    first = backup(repo, src)
    assert first.summary["data_added_raw"] == 64 * MiB
    chunks_first = first.summary["data_blobs"]
    assert chunks_first >= 16  # content-defined chunks of about a MiB, not one blob

    big.write_bytes(data[:1000] + b"!" + data[1000:])
    size_before = repo_size(repo_path)
    second = backup(repo, src)
    assert second.snapshot.kind == INCREMENTAL
    assert second.summary["files_changed"] == 1
    assert second.summary["bytes_read"] == 64 * MiB + 1
    assert 1 <= second.summary["data_blobs"] <= 4
    assert second.summary["data_added_packed"] < 12 * MiB
    assert repo_size(repo_path) - size_before < 12 * MiB


def test_identical_files_in_different_places_are_stored_once(tmp_path: Path, repo: Repository) -> None:
    payload = random.Random(3).randbytes(3 * MiB + 333)
    src = tmp_path / "src"
    places = [src / "one" / "x.bin", src / "two" / "deeper" / "other name", src / "three.bin",
              src / "copy of three"]
    for p in places:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(payload)
    result = backup(repo, src)
    assert result.summary["bytes_read"] == len(payload) * len(places)
    assert result.summary["data_added_raw"] == len(payload)  # each chunk stored once
    assert result.summary["data_added_packed"] < 2 * len(payload)

    # every copy names the same chunks, and each of those chunks was stored once
    nodes = {rel: n for rel, n in walk(repo, bytes.fromhex(result.snapshot.tree)) if n.type == "file"}
    contents = {n.content for n in nodes.values()}
    assert len(nodes) == len(places) and len(contents) == 1
    (content,) = contents
    assert len(content) >= 2
    assert result.summary["data_blobs"] == len(set(content))


def test_unchanged_rebackup_reads_nothing_and_full_reads_all(tmp_path: Path, repo: Repository,
                                                             cache_dir: Path) -> None:
    # The cache lives beside the source; made now, it does not change the directories above the source.
    cache_dir.mkdir(exist_ok=True)
    rnd = random.Random(4)
    src = tmp_path / "src"
    src.mkdir()
    total = 0
    for i in range(30):
        sub = src / f"d{i % 4}"
        sub.mkdir(exist_ok=True)
        data = rnd.randbytes(rnd.randint(0, 200_000))
        (sub / f"f{i}").write_bytes(data)
        total += len(data)
    above = ancestors_state(src)
    first = backup(repo, src)
    assert first.snapshot.kind == FULL
    assert first.summary["bytes_read"] == total

    again = backup(repo, src)
    assert again.snapshot.kind == INCREMENTAL
    assert again.snapshot.parent == first.snapshot.id
    assert again.summary["bytes_read"] == 0
    assert again.summary["files_unmodified"] == 30
    assert again.summary["data_blobs"] == 0
    assert again.summary["total_bytes"] == total
    # Same state, same trees: the source's own at least, and all of them when
    # no folder above it changed meanwhile.
    assert subtree_of(repo, again.snapshot, src) == subtree_of(repo, first.snapshot, src)
    if ancestors_state(src) == above:
        assert again.summary["tree_blobs"] == 0
        assert again.snapshot.tree == first.snapshot.tree
    else:
        assert again.summary["tree_blobs"] <= len(src.parents)

    full = backup(repo, src, full=True)
    assert full.snapshot.kind == FULL
    assert full.summary["bytes_read"] == total
    assert full.summary["files_new"] == 0
    assert full.summary["data_blobs"] == 0
    assert full.summary["data_added_packed"] == 0
    assert subtree_of(repo, full.snapshot, src) == subtree_of(repo, first.snapshot, src)
    if ancestors_state(src) == above:
        assert full.snapshot.tree == first.snapshot.tree

    # a touched file is read again, the others still are not
    touched = src / "d1" / "f1"
    os.utime(touched, ns=(1, 1))
    after_touch = backup(repo, src)
    assert touched.stat().st_size > 0
    assert after_touch.summary["bytes_read"] == touched.stat().st_size
    assert after_touch.summary["data_blobs"] == 0


def test_a_small_change_writes_only_the_trees_above_it(tmp_path: Path, repo: Repository, cache_dir: Path) -> None:
    """Directories whose nodes all equal the parent's keep the parent's tree ids;
    reading and encoding everything again (--full) must give the same trees, or
    a reused id would name bytes the walk would not have written."""
    cache_dir.mkdir(exist_ok=True)
    src = tmp_path / "src"
    for d in ("a", "b", "c/deep/er"):
        (src / d).mkdir(parents=True)
        for i in range(3):
            (src / d / f"f{i}").write_bytes(os.urandom(100 + i))
    os.link(src / "a" / "f0", src / "b" / "hard")
    os.symlink("a/f1", src / "link")
    first = backup(repo, src)

    def dir_trees(result) -> dict[bytes, bytes]:
        return {rel: n.subtree for rel, n in walk(repo, bytes.fromhex(result.snapshot.tree)) if n.type == "dir"}

    (src / "c" / "deep" / "er" / "f1").write_bytes(b"changed")
    os.chmod(src / "b" / "f2", 0o600)  # metadata only: b's tree changes too
    above = ancestors_state(src)
    again = backup(repo, src)
    before, after = dir_trees(first), dir_trees(again)
    changed = {rel.rsplit(b"/src/", 1)[-1] for rel in after if after[rel] != before.get(rel)}
    assert {b"b", b"c", b"c/deep", b"c/deep/er"} <= changed
    assert not changed & {b"a"}
    assert after[next(rel for rel in after if rel.endswith(b"/src/a"))] == before[next(
        rel for rel in before if rel.endswith(b"/src/a"))]
    assert again.summary["files_changed"] == 1 and again.summary["files_unmodified"] == 10
    full = backup(repo, src, full=True)
    assert subtree_of(repo, full.snapshot, src) == subtree_of(repo, again.snapshot, src)
    if ancestors_state(src) == above:
        assert full.snapshot.tree == again.snapshot.tree
        assert full.summary["tree_blobs"] == 0


def test_an_unchanged_entry_keeps_its_parent_xattrs_and_a_changed_one_is_read_again(
        tmp_path: Path, repo: Repository, cache_dir: Path, monkeypatch) -> None:
    """Extended attributes and link targets are read again only for an entry
    whose inode changed (its change time, which setting an xattr moves on)."""
    cache_dir.mkdir(exist_ok=True)
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    tagged = src / "d" / "tagged"
    tagged.write_bytes(b"content")
    os.setxattr(tagged, "user.colour", b"blue")
    os.setxattr(src / "d", "user.kind", b"folder")
    os.symlink("d/tagged", src / "link")
    (src / "plain").write_bytes(b"no attributes")
    first = backup(repo, src)

    from strongroom.engine import walk as walk_module
    read, readlinks = [], []
    real_read, real_readlink = walk_module.read_xattrs, os.readlink
    monkeypatch.setattr(walk_module, "read_xattrs", lambda path: read.append(path) or real_read(path))
    monkeypatch.setattr(walk_module.os, "readlink", lambda path, *a, **k: readlinks.append(path)
                        or real_readlink(path, *a, **k))

    def node(result, name: str):
        [found] = [n for rel, n in walk(repo, bytes.fromhex(result.snapshot.tree))
                   if rel == os.fsencode(src / name)]
        return found

    again = backup(repo, src)
    below = [p for p in read if p.startswith(os.fsencode(src))]
    assert below == [], "an unchanged entry's xattrs were read again"
    assert not [p for p in readlinks if os.fsencode(p).startswith(os.fsencode(src))]
    assert subtree_of(repo, again.snapshot, src) == subtree_of(repo, first.snapshot, src)
    assert node(again, "d/tagged").xattrs == ((b"user.colour", b"blue"),)
    assert node(again, "d").xattrs == ((b"user.kind", b"folder"),)
    assert node(again, "link").target == b"d/tagged"

    os.setxattr(tagged, "user.colour", b"green")  # the content and mtime stay; the ctime moves
    os.removexattr(src / "d", "user.kind")
    read.clear()
    changed = backup(repo, src)
    assert node(changed, "d/tagged").xattrs == ((b"user.colour", b"green"),)
    assert node(changed, "d").xattrs == ()
    # A moved change time has the file read again too (as restic does); its chunks are stored already.
    assert changed.summary["bytes_read"] == len(b"content") and changed.summary["data_blobs"] == 0
    assert set(read) >= {os.fsencode(tagged), os.fsencode(src / "d")}
    assert os.fsencode(src / "plain") not in read

    read.clear()
    readlinks.clear()
    full = backup(repo, src, full=True)  # trusts no parent: everything is read
    assert {os.fsencode(tagged), os.fsencode(src / "plain"), os.fsencode(src / "link")} <= set(read)
    assert [p for p in readlinks if os.fsencode(p) == os.fsencode(src / "link")]
    assert subtree_of(repo, full.snapshot, src) == subtree_of(repo, changed.snapshot, src)
