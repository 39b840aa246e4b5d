"""Round trip: whatever tree goes into a backup comes back out of a restore, identical."""

from __future__ import annotations

import json
import os
import random
import stat
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PASSWORD
from strongroom.engine.backup import BackupOptions, run_backup
from strongroom.engine.restore import RestoreOptions, run_restore
from strongroom.repo.repository import Repository
from strongroom.storage import LocalStorage
from treeutil import snapshot_tree

MiB = 1024 * 1024

# ---- building source trees --------------------------------------------------------------

_text_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
    min_size=1, max_size=10,
).map(lambda s: s.encode("utf-8"))
_byte_names = st.one_of(
    st.sampled_from([b"\xff\xfe", b"caf\xe9", b"\x80", b"a\xc3(b", b"\xed\xa0\x80x"]),
    st.lists(st.sampled_from([b for b in range(1, 256) if b != ord("/")]), min_size=1, max_size=10).map(bytes),
)
NAMES = st.one_of(_text_names, _byte_names).filter(lambda n: n not in (b".", b".."))

MODES = st.sampled_from([0o600, 0o755, 0o640, 0o644, 0o400, 0o4755])
DIR_MODES = st.sampled_from([0o700, 0o755, 0o750, 0o2750, 0o1777])
MTIMES = st.integers(min_value=0, max_value=4_000_000_000 * 10**9 - 1)
LINK_TARGETS = st.one_of(
    st.sampled_from([b"../nowhere/at/all", b"sibling", b"./x/../y", b"..", b"\xff\xfe/dangling"]),
    NAMES,
    st.binary(min_size=1, max_size=40).filter(lambda t: b"\0" not in t),
)

FILE = st.tuples(st.just("file"), st.binary(max_size=300), MODES, MTIMES)
SYMLINK = st.tuples(st.just("symlink"), LINK_TARGETS, MTIMES)
EMPTY_DIR = st.tuples(st.just("dir"), st.just({}), DIR_MODES, MTIMES)
ENTRY = st.recursive(
    st.one_of(FILE, FILE, SYMLINK, EMPTY_DIR),
    lambda inner: st.tuples(st.just("dir"), st.dictionaries(NAMES, inner, max_size=4), DIR_MODES, MTIMES),
    max_leaves=24,
)
TREES = st.fixed_dictionaries({
    "root": st.dictionaries(NAMES, ENTRY, min_size=1, max_size=6),
    "deep": st.lists(NAMES, min_size=8, max_size=8),
    "big": st.lists(st.tuples(st.integers(MiB, 6 * MiB), st.booleans(), MODES, MTIMES), max_size=2),
    "links": st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), max_size=3),
    "seed": st.integers(0, 2**32),
})


def _write(path: bytes, data: bytes, mode: int, mtime_ns: int) -> None:
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def _big_content(rnd: random.Random, size: int, compressible: bool) -> bytes:
    if compressible:
        words = [rnd.randbytes(rnd.randint(1, 12)).hex().encode() for _ in range(200)]
        out = bytearray()
        while len(out) < size:
            out += rnd.choice(words) + b" "
        return bytes(out[:size])
    return rnd.randbytes(size)


def build_tree(src: bytes, spec: dict) -> None:
    """Create `spec` below `src` (which exists); directory times are set last, deepest first."""
    dir_times: list[tuple[bytes, int, int]] = []
    files: list[bytes] = []
    dirs: list[bytes] = [src]

    def make(parent: bytes, entries: dict) -> None:
        for name, entry in entries.items():
            path = os.path.join(parent, name)
            if entry[0] == "file":
                _, data, mode, mtime = entry
                _write(path, data, mode, mtime)
                files.append(path)
            elif entry[0] == "symlink":
                _, target, mtime = entry
                os.symlink(target, path)
                os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
            else:
                _, children, mode, mtime = entry
                os.mkdir(path)
                dirs.append(path)
                make(path, children)
                dir_times.append((path, mode, mtime))

    tree = os.path.join(src, b"tree")
    os.mkdir(tree)
    dirs.append(tree)
    make(tree, spec["root"])
    deep = os.path.join(src, b"deep\xe2\x88\x82")
    for i, name in enumerate(spec["deep"]):
        deep = os.path.join(deep, name + b"%d" % i)
    os.makedirs(deep)
    _write(os.path.join(deep, b"bottom"), b"at the bottom\n", 0o640, 1_234_567_891_987_654_321)
    rnd = random.Random(spec["seed"])
    for i, (size, compressible, mode, mtime) in enumerate(spec["big"]):
        path = os.path.join(src, b"big%d" % i)
        _write(path, _big_content(rnd, size, compressible), mode, mtime)
        files.append(path)
    _write(os.path.join(src, b"empty"), b"", 0o600, 0)
    files.append(os.path.join(src, b"empty"))
    for i, (which, where) in enumerate(spec["links"]):
        first = files[which % len(files)]
        os.link(first, os.path.join(dirs[where % len(dirs)], b"\x01hardlink-%d" % i))
    for path, mode, mtime in sorted(dir_times, key=lambda d: d[0].count(b"/"), reverse=True):
        os.chmod(path, mode)
        os.utime(path, ns=(mtime, mtime))
    os.utime(src, ns=(1_600_000_000_123_456_789,) * 2)


# ---- comparing ------------------------------------------------------------------------


def describe(root: bytes) -> tuple[dict, set[frozenset]]:
    """Everything that must survive: snapshot_tree plus dir/symlink times and link groups."""
    tree = snapshot_tree(root)
    groups: dict[int, set] = {}
    for rel, entry in tree.items():
        entry.pop("link_group", None)
        st_ = os.lstat(os.path.join(root, rel))
        if stat.S_ISDIR(st_.st_mode) or stat.S_ISLNK(st_.st_mode):
            entry["mtime_ns"] = st_.st_mtime_ns
        if stat.S_ISREG(st_.st_mode) and st_.st_nlink > 1:
            groups.setdefault(st_.st_ino, set()).add(rel)
    return tree, {frozenset(g) for g in groups.values()}


def assert_same_tree(src: bytes, restored: bytes) -> None:
    want, want_groups = describe(src)
    got, got_groups = describe(restored)
    assert set(got) == set(want), f"missing {set(want) - set(got)}, extra {set(got) - set(want)}"
    for rel in want:
        assert got[rel] == want[rel], rel
    assert got_groups == want_groups
    root_st, restored_st = os.lstat(src), os.lstat(restored)
    assert restored_st.st_mtime_ns == root_st.st_mtime_ns
    assert restored_st.st_mode == root_st.st_mode


def restored_path(target: bytes | str, src: bytes | str) -> bytes:
    return os.fsencode(target) + os.path.abspath(os.fsencode(src))


# ---- the properties ------------------------------------------------------------------------


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(spec=TREES)
def test_random_trees_round_trip(spec: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = os.fsencode(tmp)
        src = os.path.join(base, b"src \xe2\x98\x83")
        os.mkdir(src)
        build_tree(src, spec)
        repo = Repository.init(LocalStorage(os.path.join(tmp, "repo")), PASSWORD,
                               cache_root=os.path.join(tmp, "cache"))
        result = run_backup(repo, BackupOptions(paths=(os.fsdecode(src),)))
        assert result.errors == []
        target = os.path.join(base, b"target")
        restore = run_restore(repo, result.snapshot, RestoreOptions(target=os.fsdecode(target), verify=True))
        assert restore.errors == []
        assert restore.summary["errors"] == 0
        assert_same_tree(src, restored_path(target, src))


def _fixed_spec() -> dict:
    return {
        "root": {
            "Ünïcødé 文件 🎉".encode(): ("file", "héllo wörld\n".encode(), 0o640, 1_500_000_000_111_222_333),
            b"\xff\xfe": ("dir", {
                b"caf\xe9.txt": ("file", b"latin-1 name\n", 0o755, 1_000_000_000_000_000_001),
                b"empty dir": ("dir", {}, 0o750, 1_400_000_000_000_000_000),
                b"up": ("symlink", "../Ünïcødé 文件 🎉".encode(), 1_300_000_000_000_000_005),
            }, 0o700, 1_450_000_000_999_999_999),
            b"dangling": ("symlink", b"../does/not/exist", 1_350_000_000_000_000_000),
            b"bad target": ("symlink", b"\xff\xfe/\x80", 1_360_000_000_000_000_000),
            b"empty": ("file", b"", 0o600, 7),
        },
        "deep": [b"d%d" % i for i in range(9)],
        "big": [(3 * MiB + 17, False, 0o644, 1_700_000_000_000_000_123),
                (6 * MiB + 5, True, 0o600, 1_700_000_001_000_000_456)],
        "links": [(0, 1), (1, 0), (0, 2)],
        "seed": 20240101,
    }


def test_cli_backup_and_restore_round_trip(tmp_path: Path, cli) -> None:
    src = os.fsencode(tmp_path / "source")
    os.mkdir(src)
    build_tree(src, _fixed_spec())
    cli.run("init", check=True)
    done = cli.run("backup", os.fsdecode(src), check=True)
    assert b"snapshot" in done.stdout
    target = tmp_path / "restored"
    done = cli.run("restore", "latest", "--target", str(target), "--verify", check=True)
    assert b"verified" in done.stdout
    assert_same_tree(src, restored_path(target, src))
    # hard links come back as hard links, not as copies
    out = restored_path(target, src)

    def inode(*parts: bytes) -> int:
        return os.lstat(os.path.join(out, *parts)).st_ino

    unicode_file = "Ünïcødé 文件 🎉".encode()
    assert os.lstat(os.path.join(out, b"tree", unicode_file)).st_nlink == 3
    assert inode(b"tree", unicode_file) == inode(b"tree", b"\x01hardlink-0") \
        == inode(b"tree", b"\xff\xfe", b"\x01hardlink-2")
    assert inode(b"tree", b"\xff\xfe", b"caf\xe9.txt") == inode(b"\x01hardlink-1")
    assert inode(b"big0") != inode(b"big1")
    # the big random file is byte-identical
    with open(os.path.join(src, b"big0"), "rb") as a, open(os.path.join(out, b"big0"), "rb") as b:
        assert a.read() == b.read()

    # An incremental snapshot is complete on its own: restored into a fresh target, it is the new state.
    _write(os.path.join(src, b"tree", b"\xff\xfe", b"caf\xe9.txt"), b"changed\n", 0o644, 1_800_000_000_000_000_000)
    os.unlink(os.path.join(src, b"big1"))
    os.utime(src, ns=(1_600_000_000_123_456_789,) * 2)
    done = cli.run("backup", os.fsdecode(src), "--json", check=True)
    summary = json.loads(done.stdout.decode().splitlines()[-1])
    assert summary["type"] == "summary" and summary["kind"] == "incremental"
    assert summary["files_changed"] >= 1 and summary["files_new"] == 0
    fresh = tmp_path / "fresh"
    cli.run("restore", "latest", "--target", str(fresh), check=True)
    assert_same_tree(src, restored_path(fresh, src))


def test_special_files_ownership_and_xattrs(tmp_path: Path, repo: Repository) -> None:
    src = tmp_path / "special"
    src.mkdir()
    os.mkfifo(src / "fifo", 0o640)
    os.mknod(src / "null-ish", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.chmod(src / "null-ish", 0o620)
    os.chmod(src / "fifo", 0o640)
    owned = src / "owned"
    owned.write_bytes(b"owned by someone else\n")
    os.chown(owned, 1234, 5678)
    os.chmod(owned, 0o4754)  # set-user-id survives only if the owner is set before the mode
    (src / "subdir").mkdir()
    os.chown(src / "subdir", 4321, 8765)
    os.symlink("owned", src / "link")
    os.chown(src / "link", 2222, 3333, follow_symlinks=False)
    tagged = src / "tagged"
    tagged.write_bytes(b"with an attribute\n")
    try:
        os.setxattr(tagged, "user.test", b"value \xff\x00 bytes")
        xattrs_work = True
    except OSError:
        xattrs_work = False  # the filesystem refuses user xattrs; the rest still must round-trip

    result = run_backup(repo, BackupOptions(paths=(str(src),)))
    assert result.errors == []
    target = tmp_path / "target"
    restored = run_restore(repo, result.snapshot, RestoreOptions(target=str(target)))
    assert restored.errors == []
    out = Path(restored_path(target, src).decode())

    fifo = os.lstat(out / "fifo")
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o640
    dev = os.lstat(out / "null-ish")
    assert stat.S_ISCHR(dev.st_mode)
    assert (os.major(dev.st_rdev), os.minor(dev.st_rdev)) == (1, 3)
    assert stat.S_IMODE(dev.st_mode) == 0o620
    st_owned = os.lstat(out / "owned")
    assert (st_owned.st_uid, st_owned.st_gid) == (1234, 5678)
    assert stat.S_IMODE(st_owned.st_mode) == 0o4754
    assert (out / "owned").read_bytes() == b"owned by someone else\n"
    st_dir = os.lstat(out / "subdir")
    assert (st_dir.st_uid, st_dir.st_gid) == (4321, 8765)
    st_link = os.lstat(out / "link")
    assert stat.S_ISLNK(st_link.st_mode) and os.readlink(out / "link") == "owned"
    assert (st_link.st_uid, st_link.st_gid) == (2222, 3333)
    if xattrs_work:
        assert os.getxattr(out / "tagged", "user.test") == b"value \xff\x00 bytes"
    assert (out / "tagged").read_bytes() == b"with an attribute\n"
    for name in ("fifo", "null-ish", "owned", "tagged"):
        assert os.lstat(out / name).st_mtime_ns == os.lstat(src / name).st_mtime_ns, name


def test_sparse_file_stays_sparse(tmp_path: Path, repo: Repository) -> None:
    src = tmp_path / "sparse"
    src.mkdir()
    path = src / "disk.img"
    size = 64 * MiB
    rnd = random.Random(64)
    blocks = {0: rnd.randbytes(4096), 20 * MiB + 123: rnd.randbytes(5000), size - 4096: rnd.randbytes(4096)}
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in blocks.items():
            f.seek(offset)
            f.write(data)
    assert os.stat(path).st_blocks * 512 < size // 8  # the source really is sparse

    result = run_backup(repo, BackupOptions(paths=(str(src),)))
    assert result.errors == []
    assert result.summary["data_added_raw"] < 20 * MiB  # the long zero runs dedupe to few chunks
    target = tmp_path / "target"
    restored = run_restore(repo, result.snapshot, RestoreOptions(target=str(target), verify=True))
    assert restored.errors == []
    out = Path(restored_path(target, src).decode()) / "disk.img"
    st_out = os.stat(out)
    assert st_out.st_size == size
    assert st_out.st_blocks * 512 < size // 4, f"restored file uses {st_out.st_blocks * 512} bytes on disk"
    with open(out, "rb") as f:
        for offset, data in blocks.items():
            f.seek(offset)
            assert f.read(len(data)) == data
        f.seek(MiB)
        assert f.read(MiB) == bytes(MiB)


def test_file_whose_size_lies_is_read_to_its_end(tmp_path: Path, repo: Repository) -> None:
    """/proc says 0 bytes for files that hold text: the one read of size + 1
    bytes sees more than the size, and the file is streamed to its end
    instead (a file read whole is never read past what its size promised)."""
    proc = "/proc/version"
    expected = Path(proc).read_bytes()
    assert os.stat(proc).st_size == 0 and expected
    result = run_backup(repo, BackupOptions(paths=(proc,)))
    assert result.summary["total_bytes_processed"] == len(expected)
    target = tmp_path / "target"
    restored = run_restore(repo, result.snapshot, RestoreOptions(target=str(target), verify=True))
    assert restored.errors == []
    assert Path(restored_path(target, proc).decode()).read_bytes() == expected
