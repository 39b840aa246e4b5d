"""Hostile repositories: objects crafted to crash, mislead or exhaust a reader.

Each test here is a weakness that was found by attacking the tool and then
fixed: the crafted object, and what a reader must do with it instead.
"""

from __future__ import annotations

import hashlib
import os
import stat
import json
from datetime import datetime, timezone

import pytest

from conftest import PASSWORD, reopen
from crafted import file_node, save_tree
from strongroom.errors import IntegrityError
from strongroom.model.snapshot import SNAPSHOT_AAD, Snapshot
from strongroom.model.tree import Tree
from strongroom.repo.pack import TREE
from strongroom.repo.repository import Repository, object_id, seal_object
from strongroom.storage import LocalStorage
import forked_cli

DEEP = 100_000  # far past the JSON parser's recursion limit


def deep_json(depth: int = DEEP) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.fixture
def backed_up(cli, src):
    cli.run("init", check=True)
    cli.run("backup", str(src), check=True)
    return cli


def plant_snapshot(repo_path, cache_dir, body: bytes) -> str:
    """A snapshot object sealed under the repository's own key, with any plaintext."""
    repo = reopen(repo_path, cache_dir)
    data = seal_object(repo.crypto, body, SNAPSHOT_AAD)
    repo.storage.write(f"snapshots/{object_id(data)}", data)
    return object_id(data)


def a_snapshot_doc(repo_path, cache_dir) -> dict:
    return json.loads(reopen(repo_path, cache_dir).list_snapshots()[0].encode())


def assert_one_line(done) -> None:
    err = done.stderr.decode()
    assert "Traceback" not in err, err
    assert "RecursionError" not in err and "TypeError" not in err, err


# ---- JSON nested deeper than the parser's stack --------------------------------------------


def test_a_planted_key_file_of_deeply_nested_json_does_not_stop_the_repository_opening(backed_up, repo_path):
    # Key files are read and parsed before anything authenticates them: anyone who can
    # write the target can plant one. It must be named as damaged, not crash every command.
    data = deep_json()
    (repo_path / "keys" / hashlib.sha256(data).hexdigest()).write_bytes(data)

    done = backed_up.run("snapshots")
    assert done.returncode == 0, done.stderr.decode()
    assert_one_line(done)
    done = backed_up.run("check")
    assert_one_line(done)
    assert done.returncode == 1
    assert hashlib.sha256(data).hexdigest() in done.stdout.decode()


def test_a_snapshot_of_deeply_nested_json_is_damage_not_a_crash(backed_up, repo_path, cache_dir, src):
    doc = a_snapshot_doc(repo_path, cache_dir)
    body = json.dumps(doc)[:-1].encode() + b', "summary": ' + deep_json() + b"}"
    bad = plant_snapshot(repo_path, cache_dir, body)

    done = backed_up.run("snapshots")
    assert_one_line(done)
    assert done.returncode == 0
    done = backed_up.run("backup", str(src))  # one bad snapshot does not stop later backups
    assert_one_line(done)
    assert done.returncode == 0, done.stderr.decode()
    done = backed_up.run("check")
    assert_one_line(done)
    assert done.returncode == 1 and bad[:8] in done.stdout.decode()


def test_a_tree_of_deeply_nested_json_is_an_integrity_error(repo):
    with pytest.raises(IntegrityError):
        Tree.decode(deep_json())
    tree_id, _ = repo.save_blob(TREE, deep_json())
    repo.flush()
    with pytest.raises(IntegrityError):
        repo.load_tree(tree_id)


# ---- snapshots whose fields have the wrong shape --------------------------------------------


def test_a_snapshot_time_without_an_offset_is_refused_on_decoding(backed_up, repo_path, cache_dir, src):
    # Sorting it against the others raised "can't compare offset-naive and
    # offset-aware datetimes" in snapshots, backup and forget, while check said all was well.
    doc = a_snapshot_doc(repo_path, cache_dir)
    doc["time"] = "2020-01-01T00:00:00"
    bad = plant_snapshot(repo_path, cache_dir, json.dumps(doc).encode())

    for args in (("snapshots",), ("backup", str(src))):
        done = backed_up.run(*args)
        assert_one_line(done)
        assert done.returncode == 0, done.stderr.decode()
    done = backed_up.run("check")
    assert done.returncode == 1 and bad[:8] in done.stdout.decode()


@pytest.mark.parametrize("field, value", [
    ("summary", "text"), ("tags", [1]), ("paths", [None]), ("hostname", 5), ("uid", "0"),
    ("parent", 7), ("tree", 12),
])
def test_a_snapshot_field_of_the_wrong_type_is_refused_on_decoding(field, value):
    good = Snapshot(time=datetime.now(timezone.utc).isoformat(), tree="ab" * 32, paths=("/",), hostname="h")
    doc = json.loads(good.encode())
    Snapshot.decode(json.dumps(doc).encode(), "00" * 32)
    doc[field] = value
    with pytest.raises(IntegrityError):
        Snapshot.decode(json.dumps(doc).encode(), "00" * 32)


def test_a_snapshot_summary_that_is_not_an_object_does_not_crash_the_listing(backed_up, repo_path, cache_dir):
    doc = a_snapshot_doc(repo_path, cache_dir)
    doc["summary"] = "x"
    plant_snapshot(repo_path, cache_dir, json.dumps(doc).encode())
    done = backed_up.run("snapshots")
    assert_one_line(done)
    assert done.returncode == 0


# ---- a config that lifts the decompression bound ----------------------------------------------


def test_a_config_asking_for_huge_chunks_is_refused_on_open(repo, repo_path, cache_dir):
    # The chunker's max_size is the bound on every data blob a reader decompresses:
    # a config asking for 4 GiB chunks let a 16 KiB pack make restore allocate
    # 512 MiB for one blob (measured), up to 4 GiB per blob and pack worker.
    import dataclasses
    from strongroom.repo.chunker import ChunkerParams
    from strongroom.repo.repository import CONFIG, CONFIG_AAD

    hostile = dataclasses.replace(repo.config, chunker=ChunkerParams(max_size=2**32 - 1))
    repo.storage.write(CONFIG, repo.crypto.encrypt(hostile.encode(), CONFIG_AAD))
    for cache in (cache_dir, cache_dir.parent / "fresh-cache"):
        with pytest.raises(IntegrityError, match="chunker"):
            Repository.open(LocalStorage(str(repo_path)), PASSWORD, cache_root=str(cache))


def test_init_refuses_chunker_parameters_the_chunker_cannot_cut_with(tmp_path):
    from strongroom.errors import UsageError
    from strongroom.repo.chunker import ChunkerParams

    with pytest.raises(UsageError):
        Repository.init(LocalStorage(str(tmp_path / "r")), PASSWORD, chunker=ChunkerParams(max_size=2**31),
                        cache_root=str(tmp_path / "c"))


def test_a_malformed_config_is_one_error_line(backed_up, repo_path, cache_dir, tmp_path):
    from strongroom.repo.repository import CONFIG, CONFIG_AAD

    repo = reopen(repo_path, cache_dir)
    repo.storage.write(CONFIG, repo.crypto.encrypt(b'{"version": 1}', CONFIG_AAD))
    done = backed_up.run("snapshots", env={"STRONGROOM_CACHE_DIR": str(tmp_path / "fresh")})
    assert_one_line(done)
    assert done.returncode != 0 and b"config" in done.stderr


# ---- metadata applied to a file the restore did not write --------------------------------------


def _hard_linked_pair(repo) -> str:
    """A snapshot of two names of one root-owned setuid file."""
    from crafted import save_snapshot

    common = dict(mode=0o4777, uid=0, gid=0, inode=77, device=1, links=2)
    a = file_node(repo, b"a", b"payload\n", **common)
    b = file_node(repo, b"b", b"payload\n", **common)
    return save_snapshot(repo, save_tree(repo, a, b))


def _planted(tmp_path, target, mtime_ns: int):
    """A file outside the target, of someone else's, hard-linked into the target as `a`."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"evil da\n")  # the snapshot's size, other content
    victim.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(victim, 65534, 65534)
    os.utime(victim, ns=(mtime_ns, mtime_ns))
    target.mkdir()
    os.link(victim, target / "a")
    return victim


def test_overwrite_never_applies_no_metadata_through_a_link_to_a_file_left_as_found(repo, tmp_path):
    from crafted import MTIME
    from strongroom.engine.restore import RestoreOptions, run_restore

    snap_id = _hard_linked_pair(repo)
    target = tmp_path / "target"
    victim = _planted(tmp_path, target, MTIME)
    before = os.stat(victim)
    snap = [s for s in repo.list_snapshots() if s.id == snap_id][0]
    run_restore(repo, snap, RestoreOptions(target=str(target), overwrite="never"))
    after = os.stat(victim)
    # `a` was left as found; `b` is a new name of that same inode, which must stay as found too.
    assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid)


@pytest.mark.skipif(os.geteuid() != 0, reason="owners are restored only as root")
def test_as_root_a_file_someone_else_owns_is_not_taken_as_current(repo, tmp_path):
    # Same size and mtime as the snapshot's file: taken as current, it was left with
    # its planted content and then given the snapshot's owner (root) and mode (setuid).
    from crafted import MTIME
    from strongroom.engine.restore import RestoreOptions, run_restore

    snap_id = _hard_linked_pair(repo)
    target = tmp_path / "target"
    victim = _planted(tmp_path, target, MTIME)
    snap = [s for s in repo.list_snapshots() if s.id == snap_id][0]
    run_restore(repo, snap, RestoreOptions(target=str(target), overwrite="if-changed"))
    st = os.stat(victim)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (65534, 0o600)
    assert (target / "a").read_bytes() == b"payload\n"
    assert os.stat(target / "a").st_ino != st.st_ino


# ---- prune and an index that lies about a pack --------------------------------------------------


def _two_copies(repo, repo_path, cache_dir):
    """Blob X in pack Q, and a second pack P; returns (X, Q, P, Y) after a snapshot of X."""
    from crafted import save_snapshot
    from strongroom.repo.pack import DATA

    x_node = file_node(repo, b"f", os.urandom(5000))
    repo.flush()
    y, _ = repo.save_blob(DATA, os.urandom(5000))
    repo.flush()
    save_snapshot(repo, save_tree(repo, x_node))
    x = x_node.content[0]
    return x, repo.index.get(x).pack, repo.index.get(y).pack, y


def test_prune_does_not_delete_the_only_real_copy_when_an_index_lies_about_a_pack(repo, repo_path, cache_dir):
    # An index object (authentic: written with the key, or by a bug) says pack P holds X
    # where P holds Y, and sorts before the one naming X's real pack Q. check found
    # nothing wrong, prune deleted Q as unused, and X could no longer be restored.
    from strongroom.engine.prune import plan_prune, run_prune
    from strongroom.repo.pack import DATA, PackedBlob

    x, q, p, y = _two_copies(repo, repo_path, cache_dir)
    loc = repo.index.get(y)
    for info in list(repo.storage.list("index")):
        if p in repo.read_index_object(info.name)[0]:
            repo.storage.delete(info.name)
    while True:
        lie = repo.write_index_object({p: [PackedBlob(DATA, x, loc.offset, loc.length, loc.raw_length)]})
        if lie < min(i.name for i in repo.storage.list("index") if i.name != lie):
            break
        repo.storage.delete(lie)

    fresh = reopen(repo_path, cache_dir)
    fresh.load_index()
    assert fresh.index.get(x).pack == p  # the lie is what the index believes
    with pytest.raises(IntegrityError, match="header"):
        run_prune(fresh, plan_prune(fresh))
    assert q in fresh.list_packs()


def test_prune_still_drops_a_true_duplicate(repo, repo_path, cache_dir):
    from crafted import save_snapshot
    from strongroom.engine.prune import plan_prune, run_prune
    from strongroom.engine.restore import RestoreOptions, run_restore

    other = reopen(repo_path, cache_dir)  # two writers store the same chunk at once
    payload = os.urandom(5000)
    node = file_node(repo, b"f", payload)
    file_node(other, b"f", payload)
    repo.flush()
    other.flush()
    save_snapshot(repo, save_tree(repo, node))
    fresh = reopen(repo_path, cache_dir)
    result = run_prune(fresh, plan_prune(fresh))
    assert result["packs_deleted"] == 1
    again = reopen(repo_path, cache_dir)
    run_restore(again, again.list_snapshots()[0], RestoreOptions(target=str(repo_path.parent / "out")))
    assert (repo_path.parent / "out" / "f").read_bytes() == payload


# ---- names that look like console markup ----------------------------------------------------------


def test_an_error_about_a_path_that_looks_like_markup_is_shown_as_it_is(capsys):
    # A file `y]` in a directory `x[` gives the path .../x[/y]: taken as markup, its
    # unmatched closing tag raised MarkupError and stopped a restore halfway.
    from strongroom.cli.output import Reporter

    reporter = Reporter(json_mode=False, action="restore")
    reporter({"type": "error", "path": "/t/x[/y]", "message": "a[b]c"})
    reporter({"type": "error", "path": "/t/secret[bold]x", "message": "m"})
    err = capsys.readouterr().err
    assert "/t/x[/y]: a[b]c" in err
    assert "/t/secret[bold]x: m" in err


def test_restore_of_a_failing_file_below_a_bracketed_directory_finishes(cli, repo_path, cache_dir, tmp_path):
    from crafted import dir_node, save_snapshot
    from strongroom.model.tree import FILE, Node

    cli.run("init", check=True)
    repo = reopen(repo_path, cache_dir)
    missing = Node(name=b"y]", type=FILE, mode=0o600, mtime_ns=1, size=10, content=(os.urandom(32),))
    save_snapshot(repo, save_tree(repo, dir_node(b"x[", save_tree(repo, missing))))
    done = cli.run("restore", "latest", "--target", str(tmp_path / "out"))
    assert_one_line(done)
    assert done.returncode == 3, done.stderr.decode()
    assert "x[/y]" in done.stderr.decode()


# ---- numbers the system calls of a restore cannot take ------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("uid", 2**40), ("gid", -2), ("mode", 99_999_999_999), ("mode", -1), ("size", -5),
    ("mtime_ns", 10**30), ("rdev", -1), ("links", -1),
])
def test_a_tree_node_number_out_of_range_is_refused_on_decoding(field, value):
    # uid 2**40 or mode 99999999999 raised OverflowError from chown/chmod in the
    # middle of a restore (a traceback, every directory left without its metadata).
    from strongroom.model.tree import FILE, Node

    good = Tree((Node(name=b"f", type=FILE, mode=0o644, size=1),))
    doc = json.loads(good.encode())
    Tree.decode(json.dumps(doc).encode())
    doc["nodes"][0][field] = value
    with pytest.raises(IntegrityError):
        Tree.decode(json.dumps(doc).encode())


def test_restore_of_a_node_with_a_huge_uid_is_one_error_line(cli, repo_path, cache_dir, tmp_path):
    from crafted import save_snapshot

    cli.run("init", check=True)
    repo = reopen(repo_path, cache_dir)
    save_snapshot(repo, save_tree(repo, file_node(repo, b"f", b"hello", uid=2**40)))
    done = cli.run("restore", "latest", "--target", str(tmp_path / "out"))
    assert_one_line(done)
    assert "OverflowError" not in done.stderr.decode()
    assert done.returncode == 1


# ---- check naming the files of a damaged blob in a snapshot shaped as a graph ------------------


def test_check_names_the_files_of_a_damaged_blob_in_bounded_time_when_trees_repeat(cli, repo_path, cache_dir):
    # 60 levels of a directory holding `a` and `b`, both the same subtree: 2^60 paths
    # to one file from 61 trees in 15 KB. With a damaged blob, check walked every
    # path to name the files it takes with it, and never finished.

    from crafted import dir_node, save_snapshot
    from strongroom.repo.pack import DATA, pack_name

    cli.run("init", check=True)
    repo = reopen(repo_path, cache_dir)
    tree = save_tree(repo, file_node(repo, b"f", b"hello"))
    for _ in range(60):
        tree = save_tree(repo, dir_node(b"a", tree), dir_node(b"b", tree))
    save_snapshot(repo, tree)
    [(blob_id, loc)] = [(b, loc) for b, loc in repo.index.items() if loc.type == DATA]
    pack = repo_path / pack_name(loc.pack, repo.config.data_fanout)
    data = bytearray(pack.read_bytes())
    data[loc.offset + 20] ^= 1
    pack.chmod(0o600)
    pack.write_bytes(bytes(data))

    done = forked_cli.run(["check", "--read-data", "--json"],
                          env=cli.env, timeout=60)
    assert done.returncode == 1, done.stderr.decode()
    summary = json.loads(done.stdout.decode().splitlines()[-1])
    named = [p for p in summary["problems"] if p.get("files")]
    assert named and all(0 < len(p["files"]) <= 1000 for p in named)
    assert all(f.endswith("/f") for p in named for f in p["files"])


def test_a_local_read_past_the_end_allocates_only_what_is_there(tmp_path):
    # An index entry claiming 4 GiB of a 5 KB pack had os.pread allocate 4 GiB up front
    # (MemoryError under an address-space limit, a traceback in restore).
    import subprocess
    import sys

    store = LocalStorage(str(tmp_path / "s"))
    store.create()
    store.write("config", b"x" * 5000)
    assert store.read("config", 4990, 2**32 - 1) == b"x" * 10
    code = ("import resource, sys; from strongroom.storage import LocalStorage;"
            "resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30));"
            f"print(len(LocalStorage({str(tmp_path / 's')!r}).read('config', 0, 2**32 - 1)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.stdout.strip() == b"5000", done.stderr.decode()
