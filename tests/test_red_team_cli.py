"""An adversary's pass over find, dump, cat, cache, tag, rewrite, repair and
the command line around them: each test is a way the new commands could lose
data, print a secret or be led outside what they were asked to touch.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET

import pytest

from conftest import PASSWORD
from strongroom.engine.repair import repair_index
from strongroom.engine.tree_walk import needed_blobs
from strongroom.repo.repository import Repository
from test_hostile_webdav import _small_repository, edited_multistatus, served, stage  # noqa: F401

_DAV = "{DAV:}"


def _needed(stage) -> set[bytes]:
    """Blobs the snapshots need, read through an honest open of the repository."""
    repo = Repository.open(stage.retrying(stage.client()), PASSWORD, cache_root="")
    return needed_blobs(repo, [bytes.fromhex(s.tree) for s in repo.list_snapshots()])


def _indexed(stage, blobs: set[bytes]) -> set[bytes]:
    repo = Repository.open(stage.retrying(stage.client()), PASSWORD, cache_root="")
    repo.load_index()
    return {b for b in blobs if repo.index.get(b) is not None}


def _wrong_pack_sizes(root, responses):
    for r in responses:
        href = r.findtext(f"{_DAV}href") or ""
        length = r.find(f".//{_DAV}getcontentlength")
        if length is not None and len(href.rstrip("/").rsplit("/", 1)[-1]) == 64:
            length.text = str(int(length.text) + 1)


def test_repair_index_keeps_a_pack_whose_listed_size_lies(stage, tmp_path):
    """A listing that says a pack is one byte longer than it is makes its header
    unreadable at that size: the old index's description must survive it."""
    repo = _small_repository(stage, tmp_path)
    needed = _needed(stage)
    assert needed
    stage.scripted.on(lambda method, path, query, environ: method == "PROPFIND" and "/data/" in path,
                      edited_multistatus(_wrong_pack_sizes))
    repair_index(repo)
    stage.scripted.clear()
    indexed = _indexed(stage, needed)
    assert indexed == needed, f"{len(needed - indexed)} blob(s) a snapshot needs lost their index entry"


# ---- secrets: nothing the commands print or log holds one ------------------------------


def _secret_forms(*secrets: bytes) -> list[bytes]:
    import base64
    forms = []
    for s in secrets:
        forms += [s, base64.b64encode(s), s.hex().encode()]
    return forms


def test_no_secret_in_any_output_or_log_at_vv(wsgidav_server, tmp_path):
    """Every new command at -vv with a log file, against WebDAV: the repository
    password, the WebDAV password (alone and as a Basic header), the master key
    and the key file's salt and wrapped key appear in no stdout, stderr or log."""
    import base64
    import json

    from conftest import CLI
    from strongroom.storage.webdav import WebDAVStorage

    server = wsgidav_server.scratch()
    server.root.mkdir()
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f.txt").write_bytes(b"payload\n" * 100)
    url = server.storage_url()
    log = tmp_path / "log.txt"
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    env = {"STRONGROOM_REPO": url, "STRONGROOM_WEBDAV_PASSWORD": server.password,
           "STRONGROOM_WEBDAV_DEADLINE": "5", "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05",
           "STRONGROOM_WEBDAV_BUDGET": "off"}
    outputs: list[bytes] = []

    def run(*args, ok=True, **extra):
        done = cli.run("-vv", "--log-file", str(log), *args, env={**env, **extra})
        assert (done.returncode == 0) == ok, (args, done.stderr.decode())
        outputs.extend([done.stdout, done.stderr])
        return done

    run("init")
    run("backup", str(src))
    snap = json.loads(run("snapshots", "--json").stdout)[0]["id"]
    run("find", "--json", "*.txt")
    run("dump", "latest", str(src / "d" / "f.txt"))
    run("dump", "latest", str(src), "--archive", "tar")
    for kind in ("config", "snapshot", "key", "index"):
        if kind == "config":
            run("cat", kind)
            continue
        folder = {"snapshot": "snapshots", "key": "keys", "index": "index"}[kind]
        first = next(p.name for p in (server.root / folder).iterdir())
        run("cat", kind, snap if kind == "snapshot" else first, "--json")
    run("tag", "--add", "x", snap)
    run("snapshots", "--json", "--no-cache")
    # Errors, as one line and as exit_error JSON: a wrong WebDAV password, a wrong
    # repository password.
    run("--json", "snapshots", ok=False, STRONGROOM_WEBDAV_PASSWORD="not-" + server.password)
    run("--json", "find", "x", ok=False, STRONGROOM_PASSWORD="not the password")
    outputs.append(log.read_bytes())

    repo = Repository.open(WebDAVStorage(server.url, server.username, server.password), PASSWORD, cache_root="")
    key_file = json.loads(next((server.root / "keys").iterdir()).read_bytes())
    secrets = _secret_forms(PASSWORD, server.password.encode(), repo.crypto.key.encryption, repo.crypto.key.id_key,
                            base64.b64decode(key_file["salt"]), base64.b64decode(key_file["data"]))
    secrets.append(base64.b64encode(f"{server.username}:{server.password}".encode()))
    assert outputs[-1].count(b"\n") > 20, "the log file holds the runs"
    for out in outputs:
        for secret in secrets:
            assert secret not in out, f"a secret is in: {out[:300]!r}"


# ---- repair snapshots --forget: one bad read is no proof ---------------------------------


def _garble_one_read_of_data(stage, which: int):
    """The `which`-th GET of a pack (from 1) answers with its bytes turned over; the others are honest."""
    seen = []

    def matches(method, path, query, environ):
        if method != "GET" or "/data/" not in path:
            return False
        seen.append(path)
        return len(seen) == which

    def answer(environ, inner):
        status, headers, body = inner()
        return status, headers, bytes(b ^ 0x55 for b in body)
    stage.scripted.on(matches, answer)
    return seen


@pytest.mark.parametrize("which", [1, 2], ids=["root-tree", "a-directory"])
def test_repair_snapshots_forget_removes_nothing_on_one_bad_read(stage, tmp_path, which):
    """One garbled answer for the root tree (or a directory's tree) stops the
    command: before, the snapshot was deleted (or the directory emptied in its copy)."""
    from strongroom.engine.repair import repair_snapshots
    from strongroom.errors import TransientStorageError

    repo = _small_repository(stage, tmp_path)
    before = sorted(s.id for s in repo.list_snapshots())
    seen = _garble_one_read_of_data(stage, which)
    with pytest.raises(TransientStorageError, match="inconsistently"):
        repair_snapshots(repo, forget=True)
    assert len(seen) > which, "the garbled tree was read again"
    stage.scripted.clear()
    after = Repository.open(stage.retrying(stage.client()), PASSWORD, cache_root="")
    assert sorted(s.id for s in after.list_snapshots()) == before


# ---- tag, rewrite, repair: the copy is on the target before the original goes -----------


def _swallow_snapshot_puts(stage):
    """PUTs to snapshots/ are answered 201 and never stored: a server that says yes and forgets."""
    stage.scripted.on(lambda method, path, query, environ: method == "PUT" and "/snapshots/" in path,
                      lambda environ, inner: (environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)),
                                              (201, [], b""))[1])


def test_tag_keeps_the_original_when_the_copy_was_not_stored(stage, tmp_path):
    from strongroom.engine.tag import TagChange, retag
    from strongroom.errors import StorageError

    repo = _small_repository(stage, tmp_path)
    before = sorted(s.id for s in repo.list_snapshots())
    _swallow_snapshot_puts(stage)
    with pytest.raises(StorageError, match="kept"):
        retag(repo, repo.list_snapshots(), TagChange.parse(add=("moved",)))
    stage.scripted.clear()
    after = Repository.open(stage.retrying(stage.client()), PASSWORD, cache_root="")
    assert sorted(s.id for s in after.list_snapshots()) == before


# ---- fail-fast: a server that answers, even with 503, is waited for -----------------------


def _webdav_env(stage) -> tuple[str, dict]:
    url = f"webdav+http://{stage.server.username}@127.0.0.1:{stage.server.port}{stage.path}"
    return url, {"STRONGROOM_WEBDAV_PASSWORD": stage.server.password, "STRONGROOM_WEBDAV_BUDGET": "off",
                 "STRONGROOM_WEBDAV_DEADLINE": "30", "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05"}


@pytest.mark.parametrize("status", [503, 502, 429])
def test_a_busy_answer_to_the_first_requests_is_retried(stage, tmp_path, cli, status):
    _small_repository(stage, tmp_path)
    url, env = _webdav_env(stage)
    busy = []

    def first_three(method, path, query, environ):
        busy.append(path)
        return len(busy) <= 3
    stage.scripted.on(first_three, lambda environ, inner: (status, [("Retry-After", "0")], b"busy"))
    done = cli.run("snapshots", "--repo", url, "--no-cache", "--json", env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert len(busy) > 3 and stage.scripted.count(status=status) == 3


# ---- cache --cleanup: never outside the cache root -------------------------------------------


def test_cache_cleanup_removes_nothing_outside_the_root(cli, tmp_path):
    import os

    outside = tmp_path / "outside"
    (outside / "a").mkdir(parents=True)
    (outside / "a" / "precious").write_text("keep")
    (outside / "b").mkdir()
    (outside / "b" / "precious").write_text("keep")
    real_root = tmp_path / "real-cache"
    real_root.mkdir()
    (real_root / ("a" * 32)).symlink_to(outside / "a", target_is_directory=True)  # looks like a cache
    old = real_root / ("b" * 32)
    old.mkdir()
    (old / "link").symlink_to(outside / "b", target_is_directory=True)
    (old / "file").write_text("cached")
    target = real_root / ("target-" + "c" * 32)
    target.mkdir()
    (real_root / "budgets").mkdir()
    root = tmp_path / "cache-link"
    root.symlink_to(real_root, target_is_directory=True)  # the root itself may be a link
    long_ago = 1_000_000_000
    for path in (old / "file", old, target, real_root / "budgets"):
        os.utime(path, (long_ago, long_ago), follow_symlinks=False)
    os.utime(old / "link", (long_ago, long_ago), follow_symlinks=False)

    done = cli.run("cache", "--cache-dir", str(root), "--cleanup", "--max-age", "0", "--json")
    assert done.returncode == 0, done.stderr.decode()
    assert not old.exists()
    assert (outside / "a" / "precious").read_text() == "keep" and (outside / "b" / "precious").read_text() == "keep"
    assert (real_root / ("a" * 32)).is_symlink() and target.is_dir() and (real_root / "budgets").is_dir()

    home = tmp_path / "home"
    (home / ("d" * 32)).mkdir(parents=True)
    os.utime(home / ("d" * 32), (long_ago, long_ago))
    for given in (str(home) + "/.", str(root) + "/../home"):
        done = cli.run("cache", "--cache-dir", given, "--cleanup", "--max-age", "0", env={"HOME": str(home)})
        assert done.returncode != 0 and (home / ("d" * 32)).is_dir(), done.stdout.decode()


def test_no_secret_in_the_config_commands_or_their_errors(tmp_path):
    """`--config NAME` on a WebDAV client with a generated key, at -vv with a log
    file: neither the client's password, the generated repository key, the master
    key nor the key file's salt or wrapped key appear in any output, error line,
    exit_error JSON or the log; also once the server is gone."""
    import base64
    import json

    from strongroom.services.secrets import SecretsStore
    from strongroom.storage.webdav import WebDAVStorage
    from test_manage_cli import Managed
    from webdav_servers import run_wsgidav

    m = Managed(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_bytes(b"payload\n" * 100)
    log = tmp_path / "log.txt"
    outputs: list[bytes] = []

    def run(*args, ok=True, env=None):
        done = m.run("-vv", "--log-file", str(log), *args, env=env)
        assert (done.returncode == 0) == ok, (args, done.stdout.decode(), done.stderr.decode())
        outputs.extend([done.stdout, done.stderr])
        return done

    with run_wsgidav() as dav:
        run("client", "add", "cloud", "--url", dav.url, "--user", dav.username,
            env={"STRONGROOM_WEBDAV_PASSWORD": dav.password})
        run("config", "add", "docs", "--source", str(src), "--client", "cloud", "--target-path", "repo")
        run("backup", "--config", "docs")
        run("backup", "--config", "docs", "--json")
        run("snapshots", "--config", "docs", "--json")
        run("check", "--config", "docs", "--json")
        run("stats", "--config", "docs", "--json")
        run("config", "show", "docs", "--json")
        run("--json", "snapshots", "--config", "nosuch", ok=False)
        run("snapshots", "--config", "docs", "--repo", str(tmp_path), ok=False)
        store = SecretsStore(m.secrets, backend="file")
        values = [store.get(ref).encode() for ref in store.refs()]
        repo_key = next(v for v in values if v != dav.password.encode())
        repo = Repository.open(WebDAVStorage(dav.url + "repo/", dav.username, dav.password), repo_key,
                               cache_root="")
        key_file = json.loads(next((dav.root / "repo" / "keys").iterdir()).read_bytes())
        username, password = dav.username, dav.password
    run("--json", "snapshots", "--config", "docs", ok=False)  # the server is gone
    run("check", "--config", "docs", ok=False)
    outputs.append(log.read_bytes())
    assert outputs[-1].count(b"\n") > 10

    secrets = _secret_forms(password.encode(), repo_key, repo.crypto.key.encryption, repo.crypto.key.id_key,
                            base64.b64decode(key_file["salt"]), base64.b64decode(key_file["data"]))
    secrets.append(base64.b64encode(f"{username}:{password}".encode()))
    for out in outputs:
        for secret in secrets:
            assert secret not in out, f"a secret is in: {out[:300]!r}"


# ---- init: a folder that only looks absent ---------------------------------------------------


def test_init_over_a_repository_whose_folder_answers_404_writes_nothing(stage, tmp_path, cli):
    """A server that answers the look-up of the folder with 404, though it is there
    (a flaky proxy, a share being remounted): init must not go on to write a new
    config over the repository's."""
    from test_hostile_webdav import canned, propfind_of

    _small_repository(stage, tmp_path)
    config = (stage.server.root / "config").read_bytes()
    keys_before = sorted(p.name for p in (stage.server.root / "keys").iterdir())
    stage.scripted.on(propfind_of(stage.path, "0"), canned(404))
    url, env = _webdav_env(stage)
    done = cli.run("init", "--repo", url, "--no-cache", env=env)
    stage.scripted.clear()
    assert done.returncode != 0, done.stderr.decode()
    assert (stage.server.root / "config").read_bytes() == config
    assert sorted(p.name for p in (stage.server.root / "keys").iterdir()) == keys_before
    assert cli.run("snapshots", "--repo", url, "--no-cache", env=env).returncode == 0


# ---- rewrite on a deep crafted tree: memory by the depth, not its square ------------------


_REWRITE_MEASURED = """
import json, sys
from strongroom.engine.rewrite import rewrite_snapshots
from strongroom.engine.walk import ExcludeRules
from strongroom.repo.repository import Repository
from strongroom.storage import LocalStorage
where, password = json.loads(sys.argv[1])
repo = Repository.open(LocalStorage(where), password.encode(), cache_root="")
report = rewrite_snapshots(repo, repo.list_snapshots(), ExcludeRules.build(("leaf.txt",), ()), dry_run=True)
print(json.dumps({"removed": [r.removed for r in report.results]}))
"""


def test_rewrite_of_a_deep_tree_with_long_names_keeps_memory_flat(repo, repo_path):
    """1,500 levels of 250-byte names: a path of 375 KB at the bottom. Kept per
    level (and per remembered directory), the paths alone came to 280 MB."""
    from crafted import dir_node, file_node, save_snapshot, save_tree
    from measure import run_measured

    depth, name = 1500, b"n" * 250
    below = save_tree(repo, file_node(repo, b"leaf.txt", b"leaf\n"))
    for level in range(depth):
        below = save_tree(repo, dir_node(name[:-4] + b"%04d" % level, below))
    save_snapshot(repo, below)
    answer, peak = run_measured(_REWRITE_MEASURED, str(repo_path), PASSWORD.decode())
    assert answer == {"removed": [1]}
    assert peak < 150 * 1024 * 1024, f"rewrite peaked at {peak // 2**20} MiB"


# ---- the tree cache: bounded by bytes, not by a count of trees ----------------------------


_WALK_MEASURED = """
import json, sys
from strongroom.engine.tree_walk import walk_nodes
from strongroom.repo.repository import Repository
from strongroom.storage import LocalStorage
where, password = json.loads(sys.argv[1])
repo = Repository.open(LocalStorage(where), password.encode(), cache_root="")
snap, = repo.list_snapshots()
print(json.dumps({"nodes": sum(1 for _ in walk_nodes(repo, bytes.fromhex(snap.tree)))}))
"""


def test_a_walk_over_many_large_directories_keeps_memory_flat(repo, repo_path):
    """24 directories of 12,000 entries each, walked as find, ls and dump walk:
    each tree is needed once, and the trees kept for later must not add up to
    all of them (4,096 trees of up to 64 MiB each could be kept)."""
    from crafted import MTIME, dir_node, save_snapshot, save_tree
    from measure import run_measured
    from strongroom.model.tree import FILE, Node

    dirs, entries = 24, 12_000
    subtrees = []
    for d in range(dirs):
        nodes = tuple(Node(name=b"%02d-file-%06d.txt" % (d, i), type=FILE, mode=0o644, mtime_ns=MTIME, size=0,
                           content=()) for i in range(entries))
        subtrees.append(dir_node(b"dir-%02d" % d, save_tree(repo, *nodes)))
    save_snapshot(repo, save_tree(repo, *subtrees))
    answer, peak = run_measured(_WALK_MEASURED, str(repo_path), PASSWORD.decode())
    assert answer == {"nodes": dirs * (entries + 1)}
    assert peak < 110 * 1024 * 1024, f"the walk peaked at {peak // 2**20} MiB"


# ---- small objects are read to a bound: a crafted lock, key or snapshot of 300 MiB ---------


_OPEN_MEASURED = """
import json, sys
from strongroom.errors import StrongroomError
from strongroom.repo.locks import read_locks
from strongroom.repo.repository import Repository
from strongroom.storage import LocalStorage
where, password = json.loads(sys.argv[1])
try:
    repo = Repository.open(LocalStorage(where), password.encode(), cache_root="")
    locks = read_locks(repo.storage, repo.crypto)
    snaps = repo.list_snapshots(lambda name, e: None)
    print(json.dumps({"locks": len(locks), "snapshots": len(snaps)}))
except StrongroomError as e:
    print(json.dumps({"error": type(e).__name__}))
"""


@pytest.mark.parametrize("folder", ["locks", "keys", "snapshots"])
def test_a_huge_small_object_is_not_read_whole(repo, repo_path, folder):
    from measure import run_measured

    huge = repo_path / folder / ("ab" * 32)
    with open(huge, "wb") as f:
        f.truncate(300 * 1024 * 1024)  # sparse: costs no disk
    answer, peak = run_measured(_OPEN_MEASURED, str(repo_path), PASSWORD.decode())
    assert answer in ({"locks": 0, "snapshots": 0}, {"error": "KeyFileDamaged"}), answer
    assert peak < 150 * 1024 * 1024, f"peaked at {peak // 2**20} MiB reading a crafted {folder[:-1]}"


# ---- dump: a tar of a crafted snapshot extracts inside its target only ---------------------


def test_a_dumped_tar_of_crafted_links_extracts_inside_the_target(repo, cli, tmp_path):
    """Symlinks that point up and out, an absolute one, and hard links (by inode)
    across folders: `tar -x` of the dump writes nothing outside the target."""
    import subprocess
    import tarfile

    from crafted import MTIME, dir_node, file_node, save_snapshot, save_tree
    from strongroom.model.tree import SYMLINK, Node

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")

    def link(name: bytes, target: bytes) -> Node:
        return Node(name=name, type=SYMLINK, mode=0o777, mtime_ns=MTIME, target=target)

    shared = dict(inode=9, device=1, links=2)
    inner = save_tree(repo, file_node(repo, b"twin", b"second name\n", **shared),
                      link(b"up", b"../../../../../../../../" + str(outside).lstrip("/").encode()))
    root = save_tree(repo, dir_node(b"d", inner), file_node(repo, b"first", b"first name\n", **shared),
                     link(b"abs", str(outside).encode()), link(b"victim-link", str(outside / "victim").encode()))
    save_snapshot(repo, root)

    archive = tmp_path / "dump.tar"
    cli.run("dump", "latest", "/", "--target", str(archive), check=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            assert not member.name.startswith("/") and ".." not in member.name.split("/"), member.name
            if member.islnk():
                assert member.linkname in tar.getnames(), member.linkname
    target = tmp_path / "target"
    target.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(target)], check=True)
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_text() == "keep"
    # One inode, two names: the first name in the archive carries the bytes (d/twin).
    assert os.path.samefile(target / "first", target / "d" / "twin")
    assert (target / "first").read_bytes() == b"second name\n"
    assert os.readlink(target / "abs") == str(outside)


def test_generate_man_holds_no_secret_from_the_environment(tmp_path, cli):
    secrets = {"STRONGROOM_PASSWORD": "repo-pw-8d1f", "STRONGROOM_WEBDAV_PASSWORD": "dav-pw-77aa",
               "STRONGROOM_REPO": str(tmp_path / "repo-path-3c2e")}
    pages = tmp_path / "man"
    pages.mkdir()
    cli.run("generate", "--man", str(pages), env=secrets, check=True)
    written = [p.read_bytes() for p in pages.iterdir()]
    assert len(written) > 10
    for page in written:
        for value in secrets.values():
            assert value.encode() not in page


# ---- --config NAME: never the repository the environment or the global -r names ----------


def test_forget_with_a_config_never_touches_the_repository_of_the_environment(tmp_path):
    """STRONGROOM_REPO and STRONGROOM_PASSWORD name another repository, and `-r`
    before the command names it too: `forget --config docs` forgets by the
    configuration's policy in the configuration's repository, or refuses."""
    import json

    from test_manage_cli import Managed

    m = Managed(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("one\n")
    other = tmp_path / "other"
    other_env = {"STRONGROOM_REPO": str(other), "STRONGROOM_PASSWORD": "other password"}
    m.run("init", env=other_env, check=True)
    for _ in range(3):
        m.run("backup", str(src), env=other_env, check=True)
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(tmp_path / "docs-repo"),
          "--keep-last", "1", check=True)
    m.run("backup", "--config", "docs", check=True)
    m.run("backup", "--config", "docs", check=True)

    def snapshots(*args, env=None) -> int:
        done = m.run("snapshots", "--json", *args, env=env, check=True)
        docs = [json.loads(line) for line in done.stdout.decode().splitlines()]
        docs = [d for doc in docs for d in (doc if isinstance(doc, list) else [doc])]
        return sum(1 for d in docs if d.get("type", "snapshot") == "snapshot" and "id" in d)

    def other_snapshots() -> int:
        return snapshots(env=other_env)

    assert other_snapshots() == 3
    m.run("forget", "--config", "docs", env=other_env, check=True)
    refused = m.run("-r", str(other), "forget", "--config", "docs", env=other_env)
    assert refused.returncode != 0 and b"not both" in refused.stderr
    assert other_snapshots() == 3
    assert snapshots("--config", "docs") == 1


# ---- a tree pack answered with hundreds of MiB ------------------------------------------------


_TREE_READ_MEASURED = """
import json, sys
from strongroom.errors import StrongroomError
from strongroom.repo.repository import Repository
from strongroom.storage.webdav import WebDAVStorage
url, user, dav_password, password, cache = json.loads(sys.argv[1])
repo = Repository.open(WebDAVStorage(url, user, dav_password, timeout=60), password.encode(), cache_root=cache)
snap, = repo.list_snapshots()
try:
    print(json.dumps({"nodes": len(repo.load_tree(bytes.fromhex(snap.tree)).nodes)}))
except StrongroomError as e:
    print(json.dumps({"error": type(e).__name__}))
"""


def test_a_tree_pack_answered_with_300_mib_is_read_to_a_bound(stage, tmp_path):
    """With a cache, a tree is read by fetching its whole pack, with no length:
    a server that answers with 300 MiB made the client hold all of it (twice)."""
    from measure import run_measured
    from strongroom.engine.backup import BackupOptions, run_backup

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    repo = Repository.init(stage.retrying(stage.client()), PASSWORD, cache_root="", pack_size=1024 * 1024,
                           data_fanout=1)
    run_backup(repo, BackupOptions(paths=(str(src),)))
    huge = 300 * 1024 * 1024

    def whole_pack(method, path, query, environ) -> bool:
        """A GET of a pack with no range, or a range past any one tree blob."""
        if method != "GET" or "/data/" not in path:
            return False
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", environ.get("HTTP_RANGE", ""))
        return m is None or not m.group(2) or int(m.group(2)) - int(m.group(1)) > 1024 * 1024

    def endless(environ, inner):  # the range, if any, ignored
        block = b"\0" * (1024 * 1024)
        return 200, [("Content-Length", str(huge))], (block for _ in range(huge // len(block)))
    stage.scripted.on(whole_pack, endless)
    answer, peak = run_measured(_TREE_READ_MEASURED, stage.server.url, stage.server.username,
                                stage.server.password, PASSWORD.decode(), str(tmp_path / "cache"))
    assert peak < 200 * 1024 * 1024, f"peaked at {peak // 2**20} MiB reading one tree ({answer})"
