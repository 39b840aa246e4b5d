"""`strongroom mount`: a real FUSE mount served by the real CLI in a subprocess.

Every test unmounts in a finally (fusermount3 -u -z, then the process is
stopped), so a failing test never leaves a mount or a process behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from crafted import MTIME, dir_node, file_node, save_snapshot, save_tree
from strongroom.model.tree import SYMLINK, Node
from strongroom.repo.pack import DATA

T1, T2 = "2026-11-30T10:00:00", "2026-12-01T12:30:05"
MOUNT_DEADLINE = 120.0  # seconds to wait for the mount to stand; a loaded machine is slow


class Mount:
    """One `strongroom mount` child: its stdout lines are gathered by a thread,
    its stderr goes to a file (a pipe nobody reads could fill and stall it)."""

    def __init__(self, cli, mountpoint: Path, errors: Path, *args: str, cwd: Path | None = None,
                 env: dict | None = None) -> None:
        self.errors = errors
        self.lines: list[str] = []
        env = {**cli.env, "TZ": "UTC", **(env or {})}
        with open(errors, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "strongroom", "mount", str(mountpoint), *args],
                                         stdout=subprocess.PIPE, stderr=err, env=env, cwd=cwd)
        self.mountpoint = mountpoint if cwd is None else cwd / mountpoint
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.decode())

    @property
    def stderr(self) -> str:
        return self.errors.read_text(errors="replace")

    def wait_ready(self) -> None:
        """Until the mount stands and the command said it serves (libfuse catches
        signals from then on), or the command ended."""
        deadline = time.monotonic() + MOUNT_DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mount exited {self.proc.returncode} before serving:\n{self.stderr}")
            if os.path.ismount(self.mountpoint) and any("serving" in line or "mounted" in line
                                                        for line in self.lines):
                return
            time.sleep(0.1)
        raise AssertionError(f"not mounted after {MOUNT_DEADLINE} s:\n{self.stderr}")

    def wait_exit(self) -> int:
        code = self.proc.wait(timeout=120)
        self._reader.join(timeout=10)
        return code

    def peak_rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

    def cleanup(self) -> None:
        # Whether or not it looks mounted: a mount whose process died answers
        # ENOTCONN, and ismount takes that for "not a mount point".
        subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], capture_output=True)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def mounted(cli, tmp_path: Path, *args: str, relative: bool = False, env: dict | None = None):
    """Mount at tmp_path/mnt; `relative`: from tmp_path as the working directory, as `mnt`."""
    (tmp_path / "mnt").mkdir(exist_ok=True)
    mount = Mount(cli, Path("mnt") if relative else tmp_path / "mnt", tmp_path / "mount-stderr.txt", *args,
                  cwd=tmp_path if relative else None, env=env)
    try:
        mount.wait_ready()
        yield mount
    finally:
        mount.cleanup()


def locks(repo_path: Path) -> list[str]:
    return os.listdir(repo_path / "locks")


@pytest.fixture
def two_snapshots(cli, tmp_path):
    """A tree with a 5 MB random file (several chunks), a symlink and nested
    folders, backed up twice: host alpha, tag t1, then host beta, tag t2."""
    root = tmp_path / "tree"
    (root / "sub" / "deep").mkdir(parents=True)
    big = random.Random(7).randbytes(5 * 1000 * 1000)
    (root / "big.bin").write_bytes(big)
    (root / "sub" / "deep" / "note.txt").write_bytes(b"first\n")
    os.symlink("sub/deep/note.txt", root / "link")
    os.chmod(root / "sub" / "deep" / "note.txt", 0o640)
    os.setxattr(root / "sub" / "deep" / "note.txt", "user.origin", b"kept")
    assert cli.run("init", check=True)
    cli.run("backup", str(root), "--host", "alpha", "--tag", "t1", "--time", T1 + "+00:00", check=True)
    (root / "sub" / "deep" / "note.txt").write_bytes(b"second\n")
    cli.run("backup", str(root), "--host", "beta", "--tag", "t2", "--time", T2 + "+00:00", check=True)
    snaps = json.loads(cli.run("snapshots", "--json", check=True).stdout)
    ids = {s["hostname"]: s["id"][:8] for s in snaps}
    return root, big, ids


def test_mount_shows_every_view_and_serves_the_bytes(cli, tmp_path, repo_path, two_snapshots):
    root, big, ids = two_snapshots
    inside = str(root).lstrip("/")  # a snapshot holds the absolute path of what was backed up
    with mounted(cli, tmp_path, "--json") as m:
        mnt = m.mountpoint
        assert sorted(os.listdir(mnt)) == ["hosts", "ids", "snapshots", "tags"]
        assert sorted(os.listdir(mnt / "snapshots")) == [T1, T2, "latest"]
        assert os.readlink(mnt / "snapshots" / "latest") == T2
        assert sorted(os.listdir(mnt / "ids")) == sorted(ids.values())
        assert sorted(os.listdir(mnt / "hosts")) == ["alpha", "beta"]
        assert sorted(os.listdir(mnt / "hosts" / "alpha")) == [T1, "latest"]
        assert os.readlink(mnt / "hosts" / "beta" / "latest") == T2
        assert sorted(os.listdir(mnt / "tags")) == ["t1", "t2"]
        assert sorted(os.listdir(mnt / "tags" / "t1")) == [T1, "latest"]

        newest = mnt / "snapshots" / "latest" / inside
        assert sorted(os.listdir(newest)) == ["big.bin", "link", "sub"]
        assert (newest / "big.bin").read_bytes() == big
        with open(newest / "big.bin", "rb") as f:  # reads that start inside a chunk and cross into the next
            for offset in (0, 1_234_567, 2_999_999, 4_999_990):
                f.seek(offset)
                assert f.read(70_000) == big[offset:offset + 70_000]
        assert os.path.islink(newest / "link")
        assert os.readlink(newest / "link") == "sub/deep/note.txt"
        assert (newest / "link").read_bytes() == b"second\n"
        source, shown = os.stat(root / "sub" / "deep" / "note.txt"), os.stat(newest / "sub" / "deep" / "note.txt")
        assert stat.S_ISREG(shown.st_mode) and stat.S_IMODE(shown.st_mode) == 0o640
        assert (shown.st_size, shown.st_mtime_ns) == (source.st_size, source.st_mtime_ns)
        assert stat.S_ISDIR(os.stat(newest / "sub").st_mode)
        assert os.listxattr(newest / "sub" / "deep" / "note.txt") == ["user.origin"]
        assert os.getxattr(newest / "sub" / "deep" / "note.txt", "user.origin") == b"kept"
        with pytest.raises(OSError) as no_such:
            os.getxattr(newest / "big.bin", "user.origin")
        assert no_such.value.errno == errno.ENODATA
        assert os.stat(newest / "big.bin").st_size == len(big)

        # Each view reaches the snapshot it names.
        note = Path(inside) / "sub" / "deep" / "note.txt"
        assert (mnt / "ids" / ids["alpha"] / note).read_bytes() == b"first\n"
        assert (mnt / "hosts" / "alpha" / "latest" / note).read_bytes() == b"first\n"
        assert (mnt / "tags" / "t2" / T2 / note).read_bytes() == b"second\n"
        assert not os.path.exists(mnt / "snapshots" / "1999-01-01T00:00:00")

        for attempt in (lambda: open(newest / "new.txt", "wb"), lambda: open(newest / "big.bin", "r+b"),
                        lambda: os.mkdir(mnt / "snapshots" / "x"), lambda: os.unlink(newest / "link")):
            with pytest.raises(OSError) as refused:
                attempt()
            assert refused.value.errno in (errno.EROFS, errno.EACCES)

        # A shared lock is held while mounted, so a prune elsewhere must wait.
        assert len(locks(repo_path)) == 1
        assert cli.run("prune").returncode == 11
        m.proc.send_signal(signal.SIGINT)
        assert m.wait_exit() == 0, m.stderr
        assert not os.path.ismount(mnt)
    assert locks(repo_path) == []
    assert cli.run("unlock", check=True).returncode == 0
    # Each chunk came from the repository once, however the kernel split and repeated the reads.
    end = json.loads(m.lines[-1])
    assert end["state"] == "unmounted"
    assert len(big) <= end["storage"]["bytes_read"] < len(big) * 1.1, end


@pytest.mark.parametrize("how", ["fusermount3", "SIGTERM"])
def test_unmounting_ends_the_command_and_frees_the_lock(cli, tmp_path, repo_path, two_snapshots, how):
    allow_other = how == "fusermount3"  # one of the two also lets other users in
    with mounted(cli, tmp_path, *(["--allow-other"] if allow_other else [])) as m:
        (options,) = [line.split()[3].split(",") for line in Path("/proc/mounts").read_text().splitlines()
                      if line.split()[1] == str(m.mountpoint)]
        assert {"ro", "nosuid", "nodev"} <= set(options)
        assert ({"allow_other", "default_permissions"} <= set(options)) == allow_other
        assert len(locks(repo_path)) == 1
        if how == "fusermount3":
            subprocess.run(["fusermount3", "-u", str(m.mountpoint)], check=True)
        else:
            m.proc.send_signal(signal.SIGTERM)
        assert m.wait_exit() == 0, m.stderr
        assert not os.path.ismount(m.mountpoint)
        assert any(line.startswith("unmounted") for line in m.lines)
    assert locks(repo_path) == []


def test_relative_paths_keep_their_meaning_while_mounted(cli, tmp_path, two_snapshots):
    """libfuse changes to / when it mounts: a relative cache directory must not become /NAME."""
    root, big, _ = two_snapshots
    name = f"cache-{os.urandom(6).hex()}"
    with mounted(cli, tmp_path, relative=True, env={"STRONGROOM_CACHE_DIR": name}) as m:
        shown = m.mountpoint / "snapshots" / "latest" / str(root).lstrip("/") / "big.bin"
        assert shown.read_bytes() == big
        m.proc.send_signal(signal.SIGINT)
        assert m.wait_exit() == 0, m.stderr
    assert os.listdir(tmp_path / name) and not os.path.exists("/" + name)
    assert any(line.startswith("unmounted mnt") for line in m.lines)


def test_a_mount_left_by_a_killed_process_is_named_and_its_lock_is_dead(cli, tmp_path, repo_path, two_snapshots):
    with mounted(cli, tmp_path) as m:
        m.proc.kill()
        assert m.wait_exit() == -signal.SIGKILL
        again = cli.run("mount", str(m.mountpoint))
        assert again.returncode == 2
        assert again.stderr.decode().strip() == (f"strongroom: a mount whose process has ended is still at "
                                                 f"{m.mountpoint}: unmount it with `fusermount3 -u {m.mountpoint}`")
        assert len(locks(repo_path)) == 1
    assert not os.path.ismount(m.mountpoint) and os.path.isdir(m.mountpoint)  # the finally unmounted it
    assert "removed 1 lock" in cli.run("unlock", check=True).stdout.decode()  # its process is gone
    assert locks(repo_path) == []


def test_a_hostile_tree_is_shown_without_its_bad_names(cli, repo, tmp_path, repo_path):
    """Names that cannot be one path component are left out with one warning;
    a folder of 30,000 entries lists whole; a lying file and link give EIO."""
    many = [file_node(repo, f"f{i:05d}".encode(), b"same bytes") for i in range(30_000)]
    liar = file_node(repo, b"liar", b"five!")
    bad = [Node(name=name, type=SYMLINK, mode=0o777, mtime_ns=MTIME, target=b"x")
           for name in (b"a/b", b"..", b".", b"", b"nul\0name", b"n" * 300)]
    hostile = save_tree(repo, *many, *bad,
                        Node(name=b"liar", type=liar.type, mode=0o644, mtime_ns=MTIME, size=500, content=liar.content),
                        Node(name=b"nul-link", type=SYMLINK, mode=0o777, mtime_ns=MTIME, target=b"/etc\0passwd"),
                        file_node(repo, b"\xff\xferaw", b"raw name", xattrs=(
                            (b"user.big", b"x" * 70_000), (b"user.nul\0name", b"2"), (b"user.ok", b"1"))))
    save_snapshot(repo, save_tree(repo, dir_node(b"top", hostile)), host="../escape")
    save_snapshot(repo, save_tree(repo, file_node(repo, b"plain", b"ok")), host="fine")
    lost = save_snapshot(repo, os.urandom(32), host="fine")  # its tree is in no pack
    assert repo.read_blob(many[0].content[0], DATA) == b"same bytes"

    with mounted(cli, tmp_path) as m:
        mnt = m.mountpoint
        assert os.listdir(mnt / "hosts") == ["fine"]  # "../escape" cannot be a folder name
        (snapshot,) = [name for name in os.listdir(mnt / "ids")
                       if os.path.isdir(mnt / "ids" / name / "top")]
        top = mnt / "ids" / snapshot / "top"
        for _ in range(2):
            names = os.listdir(top)
        assert len(names) == 30_000 + 3
        assert set(names) - {f"f{i:05d}" for i in range(30_000)} == {"liar", "nul-link", "\udcff\udcferaw"}
        assert (top / "f29999").read_bytes() == b"same bytes"
        assert (top / os.fsdecode(b"\xff\xferaw")).read_bytes() == b"raw name"
        assert os.listxattr(top / os.fsdecode(b"\xff\xferaw")) == ["user.ok"]
        for broken in (lambda: (top / "liar").read_bytes(), lambda: os.readlink(top / "nul-link")):
            with pytest.raises(OSError) as failed:
                broken()
            assert failed.value.errno == errno.EIO
        assert not os.path.exists(mnt / "escape") and not os.path.exists(tmp_path / "escape")
        with pytest.raises(OSError) as unreadable:
            os.listdir(mnt / "ids" / lost[:8])
        assert unreadable.value.errno == errno.EIO
        assert os.listdir(mnt / "hosts" / "fine" / min(os.listdir(mnt / "hosts" / "fine"))) == ["plain"]
        peak = m.peak_rss()
        m.proc.send_signal(signal.SIGINT)
        assert m.wait_exit() == 0, m.stderr
    warnings = m.stderr.splitlines()
    assert sum("left out" in line and "entries" in line for line in warnings) == 1, m.stderr
    assert sum("'../escape'" in line for line in warnings) == 1, m.stderr
    assert any("not in the index" in line for line in warnings), m.stderr
    assert peak < 1024 * 1024 * 1024, f"peak RSS {peak} bytes"
    print(f"peak RSS of the mount after listing 30,000 entries twice: {peak / 2**20:.0f} MiB")


def test_without_the_binding_or_libfuse_mount_says_what_to_install(cli, tmp_path):
    (tmp_path / "mnt").mkdir()
    # sys.modules[name] = None is how Python makes an import of that name fail.
    missing = subprocess.run([sys.executable, "-c", "import sys; sys.modules['mfusepy'] = None; "
                              "from strongroom.cli.main import main; main()", "mount", str(tmp_path / "mnt")],
                             capture_output=True, env=cli.env, timeout=120)
    assert missing.returncode == 1
    assert missing.stderr.decode().strip().splitlines() == [
        "strongroom: mount needs the mfusepy package: pip install 'strongroom[mount]'"]
    # mfusepy looks libfuse up by this name; one that names no library is a machine without it.
    no_libfuse = cli.run("mount", str(tmp_path / "mnt"), env={"FUSE_LIBRARY_NAME": "no-such-fuse"})
    assert no_libfuse.returncode == 1
    assert no_libfuse.stderr.decode().strip().splitlines() == [
        "strongroom: mount needs libfuse 3: install the fuse3 package (apt-get install fuse3 on Debian and Ubuntu)"]
    assert not os.path.ismount(tmp_path / "mnt")


# ---- the same file system in this process, without the kernel: a clock we move --------------

def _names(fs, path: str) -> list[str]:
    return [name for name, _, _ in fs.readdir_with_offset(path, 0, 0) if name not in (".", "..")]


def test_a_new_snapshot_shows_after_the_refresh_and_a_failed_listing_hides_none(repo, repo_path):
    from strongroom.engine.mount.fs import REFRESH_SECONDS, SnapshotFS

    save_snapshot(repo, save_tree(repo, file_node(repo, b"one", b"1")), host="h1")
    now, warnings = [0.0], []
    fs = SnapshotFS(repo, repo.list_snapshots(), warnings.append, repo.list_snapshots, clock=lambda: now[0])
    assert _names(fs, "/hosts") == ["h1"]
    save_snapshot(repo, save_tree(repo, file_node(repo, b"two", b"2")), host="latest")
    assert _names(fs, "/hosts") == ["h1"]  # the listing is not read again at every look
    now[0] += REFRESH_SECONDS + 1
    assert _names(fs, "/hosts") == ["h1", "latest"]
    assert len(_names(fs, "/snapshots")) == 3 and _names(fs, "/snapshots")[-1] == "latest"
    types = {name: attrs["st_mode"] for name, attrs, _ in fs.readdir_with_offset("/hosts", 0, 0)}
    assert types["latest"] == stat.S_IFDIR  # a host of that name is a folder, not the link
    types = {name: attrs["st_mode"] for name, attrs, _ in fs.readdir_with_offset("/hosts/latest", 0, 0)}
    assert types["latest"] == stat.S_IFLNK and stat.S_ISLNK(fs.getattr("/hosts/latest/latest")["st_mode"])
    assert [name for name, _, _ in fs.readdir_with_offset("/snapshots", 3, 0)] == _names(fs, "/snapshots")[1:]

    os.rename(repo_path / "snapshots", repo_path / "snapshots-away")  # the next listing fails
    now[0] += REFRESH_SECONDS + 1
    assert _names(fs, "/hosts") == ["h1", "latest"]
    assert len(warnings) == 1 and "showing the one before" in warnings[0]
    assert fs.getattr("/hosts/h1/latest")["st_size"] == len(_names(fs, "/hosts/h1")[0])


def test_names_by_time_by_id_and_what_cannot_be_a_name():
    from strongroom.engine.mount.views import Folder, InSnapshot, Link, Views, locate
    from strongroom.model.snapshot import Snapshot

    zone = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"  # names are in local time
    time.tzset()
    try:
        def snap(when: str, snap_id: str, host: str = "h", tags=()) -> Snapshot:
            return Snapshot(time=when, tree="00", paths=("/",), hostname=host, tags=tuple(tags), id=snap_id)

        a = snap("2026-12-01T12:30:05.100000+00:00", "aaaaaaaa11", tags=["x", "a/b"])
        b = snap("2026-12-01T14:30:05.200000+02:00", "aaaaaaaa22", host="..")  # the same second as a
        c = snap("2026-12-01T12:30:06+00:00", "cccccccc33", host="")
        ancient = snap("0001-01-01T00:00:00+05:00", "dddddddd44", tags=["x", "x"])  # no local time for it
        views = Views.of([c, b, a, ancient])
        assert list(views.snapshots.entries) == ["0001-01-01T00:00:00", "2026-12-01T12:30:05",
                                                 "2026-12-01T12:30:05-1", "2026-12-01T12:30:06"]
        assert views.snapshots.entries["2026-12-01T12:30:05-1"] is b
        assert list(views.tags["x"].entries.values()) == [ancient, a]  # a tag given twice is one entry
        # A shared short id: whole ids.
        assert sorted(views.ids) == ["aaaaaaaa11", "aaaaaaaa22", "cccccccc", "dddddddd"]
        assert list(views.hosts) == ["h"] and list(views.tags) == ["x"]
        assert len(views.left_out) == 3  # the tag a/b, the hosts ".." and ""
        assert locate(views, ["snapshots", "latest"]) == Link("2026-12-01T12:30:06", c)
        assert locate(views, ["tags", "x", "latest"]) == Link("2026-12-01T12:30:05", a)
        assert locate(views, ["ids", "cccccccc", "etc", "passwd"]) == InSnapshot(c, ["etc", "passwd"])
        assert isinstance(locate(views, ["hosts"]), Folder)
        for missing in (["hosts", ".."], ["tags", "a"], ["nothing"], ["snapshots", "latest", "x"]):
            assert locate(views, missing) is None
    finally:
        if zone is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = zone
        time.tzset()


def test_a_webdav_repository_mounts_and_each_chunk_is_fetched_once(wsgidav_server, tmp_path):
    from conftest import CLI

    src = tmp_path / "src"
    src.mkdir()
    data = random.Random(11).randbytes(3 * 1000 * 1000)
    (src / "big.bin").write_bytes(data)
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    cli.env.update({"STRONGROOM_REPO": wsgidav_server.storage_url() + "repo/",
                    "STRONGROOM_WEBDAV_PASSWORD": wsgidav_server.password, "STRONGROOM_WEBDAV_BUDGET": "off",
                    "STRONGROOM_WEBDAV_DEADLINE": "60", "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05"})
    cli.run("init", "--pack-size", "1", check=True)
    cli.run("backup", str(src), check=True)
    with mounted(cli, tmp_path, "--json", "--no-cache") as m:
        shown = m.mountpoint / "snapshots" / "latest" / str(src).lstrip("/") / "big.bin"
        assert shown.read_bytes() == data
        assert shown.read_bytes() == data
        m.proc.send_signal(signal.SIGINT)
        assert m.wait_exit() == 0, m.stderr
    end = json.loads(m.lines[-1])
    assert len(data) <= end["storage"]["bytes_read"] < len(data) * 1.1, end
    print(f"WebDAV mount, {len(data)} bytes read twice: {end['storage']}")
