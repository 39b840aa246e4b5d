"""Nothing from the repository can write outside the restore target."""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from strongroom.engine.backup import BackupOptions, run_backup
from strongroom.engine.restore import RestoreOptions, run_restore
from strongroom.errors import InvalidName
from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import DIR, FILE, Node, Tree, node_to_dict
from strongroom.repo.pack import DATA, TREE
from strongroom.repo.repository import Repository

PAYLOAD = b"this must never land outside the target\n"


def file_node(repo: Repository, name: bytes) -> Node:
    blob_id, _ = repo.save_blob(DATA, PAYLOAD)
    return Node(name=name, type=FILE, mode=0o644, mtime_ns=1_700_000_000 * 10**9, size=len(PAYLOAD),
                content=(blob_id,))


def dir_node(name: bytes, subtree: bytes) -> Node:
    return Node(name=name, type=DIR, mode=0o755, mtime_ns=1_700_000_000 * 10**9, subtree=subtree)


def save_tree(repo: Repository, tree: Tree) -> bytes:
    """Store a tree blob exactly as encoded; encoding checks nothing, decoding checks names."""
    blob_id, _ = repo.save_blob(TREE, tree.encode())
    return blob_id


def save_raw_tree(repo: Repository, nodes: list[dict]) -> bytes:
    raw = json.dumps({"nodes": nodes}, sort_keys=True, separators=(",", ":")).encode()
    blob_id, _ = repo.save_blob(TREE, raw)
    return blob_id


def save_snapshot(repo: Repository, root: bytes) -> str:
    repo.flush()
    snap = Snapshot(time=datetime.now(timezone.utc).isoformat(timespec="microseconds"), tree=root.hex(),
                    paths=("/crafted",), hostname="crafted")
    return repo.save_snapshot(snap)


def root_with(repo: Repository, *nodes: Node) -> bytes:
    """A root tree holding a harmless file next to the given nodes."""
    return save_tree(repo, Tree((file_node(repo, b"harmless"), *nodes)))


def craft_dotdot_slash(repo):
    return root_with(repo, file_node(repo, b"../x"))


def craft_absolute(repo):
    return root_with(repo, file_node(repo, b"/x"))


def craft_deep_absolute(repo):
    return root_with(repo, file_node(repo, b"/../../x"))


def craft_dotdot_dir(repo):
    inner = save_tree(repo, Tree((file_node(repo, b"x"),)))
    return root_with(repo, dir_node(b"..", inner))


def craft_dot_dir(repo):
    inner = save_tree(repo, Tree((file_node(repo, b"x"),)))
    return root_with(repo, dir_node(b".", inner))


def craft_nul(repo):
    return root_with(repo, file_node(repo, b"x\0../../x"))


def craft_nested_b64(repo):
    """Written by hand: a non-UTF-8 spelling (name_b64) of ../../x two levels down."""
    evil = node_to_dict(file_node(repo, b"placeholder"))
    del evil["name"]
    evil["name_b64"] = base64.b64encode(b"../../x\xff").decode()
    inner = save_raw_tree(repo, [evil])
    return root_with(repo, dir_node(b"d", inner))


def craft_empty_name(repo):
    return root_with(repo, file_node(repo, b""))


CRAFTED = {
    "dotdot-slash": craft_dotdot_slash, "absolute": craft_absolute, "deep-absolute": craft_deep_absolute,
    "dotdot-dir": craft_dotdot_dir, "dot-dir": craft_dot_dir, "nul": craft_nul,
    "nested-b64": craft_nested_b64, "empty": craft_empty_name,
}


def everything_below(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_unsafe_names_are_refused(case: str, tmp_path: Path, repo: Repository, cli) -> None:
    snap_id = save_snapshot(repo, CRAFTED[case](repo))
    outer = tmp_path / "outer"
    outer.mkdir()
    target = outer / "level" / "target"
    root_x_existed = os.path.lexists("/x")

    done = cli.run("restore", snap_id[:12], "--target", str(target))
    assert done.returncode != 0
    err = done.stderr.decode()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("strongroom: ")
    assert "unsafe name" in lines[-1], err
    # nothing beside the target, nothing anywhere named x, nothing at /x
    assert everything_below(outer) <= {"level", "level/target"}
    assert not list(tmp_path.rglob("x*"))
    assert os.path.lexists("/x") == root_x_existed

    # the same through the Python API
    snap = next(s for s in repo.list_snapshots() if s.id == snap_id)
    with pytest.raises(InvalidName):
        run_restore(repo, snap, RestoreOptions(target=str(target)))
    assert everything_below(outer) <= {"level", "level/target"}


def test_duplicate_names_are_refused(tmp_path: Path, repo: Repository, cli) -> None:
    raw = [node_to_dict(file_node(repo, b"twice")), node_to_dict(file_node(repo, b"twice"))]
    snap_id = save_snapshot(repo, save_raw_tree(repo, raw))
    done = cli.run("restore", snap_id, "--target", str(tmp_path / "t"))
    assert done.returncode != 0
    assert "twice" in done.stderr.decode() or "same entry" in done.stderr.decode()
    assert not (tmp_path / "t" / "twice").exists()


# ---- symlinks are restored as links and never written through --------------------------------


def _backup(repo: Repository, src: Path) -> str:
    result = run_backup(repo, BackupOptions(paths=(str(src),)))
    assert result.errors == []
    return result.snapshot.id


@pytest.mark.parametrize("overwrite", ["if-changed", "always", "never"])
def test_symlink_in_snapshot_then_directory_does_not_write_outside(tmp_path: Path, repo: Repository, cli,
                                                                   overwrite: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(outside, src / "a")
    first = _backup(repo, src)
    # later the same name is a real directory with files in it
    (src / "a").unlink()
    (src / "a").mkdir()
    (src / "a" / "f").write_bytes(PAYLOAD)
    (src / "a" / "sub").mkdir()
    (src / "a" / "sub" / "g").write_bytes(PAYLOAD)
    second = _backup(repo, src)

    target = tmp_path / "target"
    restored = Path(str(target) + str(src))
    cli.run("restore", first[:10], "--target", str(target), check=True)
    assert os.readlink(restored / "a") == str(outside)
    assert list(outside.iterdir()) == []

    done = cli.run("restore", second[:10], "--target", str(target), "--overwrite", overwrite)
    assert list(outside.iterdir()) == [], done.stderr.decode()
    if overwrite == "never":
        # the link stays, and the restore says it could not put the directory there
        assert done.returncode != 0
        assert os.path.islink(restored / "a")
        assert f"{restored / 'a'}: cannot create directory" in done.stderr.decode()
    else:
        assert done.returncode == 0, done.stderr.decode()
        assert not os.path.islink(restored / "a")
        assert (restored / "a" / "f").read_bytes() == PAYLOAD
        assert (restored / "a" / "sub" / "g").read_bytes() == PAYLOAD


@pytest.mark.parametrize("overwrite", ["if-changed", "always", "never"])
def test_existing_symlinks_in_target_are_not_followed(tmp_path: Path, repo: Repository, cli,
                                                      overwrite: str) -> None:
    src = tmp_path / "src"
    (src / "dir" / "deeper").mkdir(parents=True)
    (src / "dir" / "deeper" / "file").write_bytes(PAYLOAD)
    (src / "plain").write_bytes(PAYLOAD)
    snap = _backup(repo, src)

    outside = tmp_path / "outside"
    outside.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    restored = Path(str(tmp_path / "target") + str(src))
    restored.mkdir(parents=True)
    os.symlink(outside, restored / "dir")  # where a directory must go
    os.symlink(victim, restored / "plain")  # where a file must go

    done = cli.run("restore", snap[:10], "--target", str(tmp_path / "target"), "--overwrite", overwrite)
    assert list(outside.iterdir()) == [], done.stderr.decode()
    assert victim.read_bytes() == b"precious\n"
    if overwrite == "never":
        assert done.returncode != 0
        assert os.path.islink(restored / "dir") and os.path.islink(restored / "plain")
        assert f"{restored / 'dir'}: cannot create directory" in done.stderr.decode()
    else:
        assert done.returncode == 0, done.stderr.decode()
        assert not os.path.islink(restored / "dir") and not os.path.islink(restored / "plain")
        assert (restored / "dir" / "deeper" / "file").read_bytes() == PAYLOAD
        assert (restored / "plain").read_bytes() == PAYLOAD
