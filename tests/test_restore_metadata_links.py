"""No metadata call of a restore follows a symlink.

An earlier restore left symlinks (pointing outside the target) under names
where the next point has a fifo, a device, a hard link, a file or a
directory. Whatever --overwrite says, the file and folder outside keep their
mode, times, owner and content."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from crafted import MTIME, dir_node, file_node, save_snapshot, save_tree
from strongroom.model.tree import CHARDEV, FIFO, SYMLINK, Node
from strongroom.repo.repository import Repository

NAMES = ("dev", "dir", "fifo", "file", "link1", "link2")
OUTSIDE_TIME = 1_000_000_000 * 10**9


def state(path: Path) -> tuple:
    st = os.lstat(path)
    content = path.read_bytes() if stat.S_ISREG(st.st_mode) else sorted(os.listdir(path))
    return stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, content


@pytest.fixture
def points(repo: Repository, tmp_path: Path) -> dict:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_bytes(b"not the restore's to touch\n")
    folder = outside / "folder"
    folder.mkdir()
    for p in (secret, folder):
        os.chmod(p, 0o600 if p is secret else 0o700)
        os.chown(p, 4321, 4321)
        os.utime(p, ns=(OUTSIDE_TIME, OUTSIDE_TIME))

    def link(name: bytes, to: Path) -> Node:
        return Node(name=name, type=SYMLINK, mode=0o777, mtime_ns=MTIME, target=os.fsencode(to))

    first = save_tree(repo, *(link(n.encode(), folder if n == "dir" else secret) for n in NAMES))
    owner = {"uid": 1000, "gid": 1000}
    second = save_tree(
        repo,
        Node(name=b"dev", type=CHARDEV, mode=0o666, mtime_ns=MTIME, rdev=os.makedev(1, 3), **owner),
        dir_node(b"dir", save_tree(repo, file_node(repo, b"inner", b"inside\n", mode=0o4755, **owner)),
                 mode=0o777, **owner),
        Node(name=b"fifo", type=FIFO, mode=0o666, mtime_ns=MTIME, **owner),
        file_node(repo, b"file", b"the file\n", mode=0o4755, **owner),
        file_node(repo, b"link1", b"linked\n", mode=0o777, inode=7, device=1, links=2, **owner),
        file_node(repo, b"link2", b"linked\n", mode=0o777, inode=7, device=1, links=2, **owner),
    )
    return {"first": save_snapshot(repo, first), "second": save_snapshot(repo, second),
            "secret": secret, "folder": folder}


@pytest.mark.parametrize("overwrite", ["never", "always", "if-changed"])
def test_metadata_never_follows_a_symlink_left_in_the_target(cli, points, tmp_path, overwrite):
    target = tmp_path / "target"
    cli.run("restore", points["first"][:12], "--target", str(target), check=True)
    assert all(os.path.islink(target / n) for n in NAMES)
    before = {p: state(points[p]) for p in ("secret", "folder")}

    done = cli.run("restore", points["second"][:12], "--target", str(target), "--overwrite", overwrite)

    assert {p: state(points[p]) for p in ("secret", "folder")} == before
    if overwrite == "never":
        # Everything that found something in its place is left as it was; only the
        # directory is an error, as nothing can be restored into a symlink.
        assert done.returncode == 3
        assert all(os.path.islink(target / n) for n in NAMES)
        errors = [line for line in done.stderr.decode().splitlines() if line.strip()]
        assert errors == [
            f"error: {target}/dir: cannot create directory: something that is not a directory is in the way",
            f"error: {target}/dir/inner: not restored: a directory above it could not be created"]
        return
    assert done.returncode == 0, done.stderr.decode()
    kinds = {n: stat.S_IFMT(os.lstat(target / n).st_mode) for n in NAMES}
    assert kinds == {"dev": stat.S_IFCHR, "dir": stat.S_IFDIR, "fifo": stat.S_IFIFO, "file": stat.S_IFREG,
                     "link1": stat.S_IFREG, "link2": stat.S_IFREG}
    assert os.lstat(target / "link1").st_ino == os.lstat(target / "link2").st_ino
    assert (target / "dir" / "inner").read_bytes() == b"inside\n"
    for name, mode in (("dev", 0o666), ("dir", 0o777), ("fifo", 0o666), ("file", 0o4755), ("link1", 0o777)):
        st = os.lstat(target / name)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns) == (mode, 1000, 1000, MTIME), name


def test_a_symlink_where_a_file_was_skipped_gets_no_metadata(cli, points, tmp_path):
    """The same with a file the restore skips as current: a symlink put in its place afterwards is
    neither followed nor given the file's metadata on the next run."""
    target = tmp_path / "target"
    cli.run("restore", points["second"][:12], "--target", str(target), check=True)
    os.unlink(target / "file")
    os.symlink(points["secret"], target / "file")
    before = state(points["secret"])
    for overwrite in ("never", "if-changed"):
        done = cli.run("restore", points["second"][:12], "--target", str(target), "--overwrite", overwrite)
        assert done.returncode == 0, done.stderr.decode()
        assert state(points["secret"]) == before
    assert not os.path.islink(target / "file")  # if-changed: a symlink is not a current file
    assert (target / "file").read_bytes() == b"the file\n"
