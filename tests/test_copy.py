"""copy: recovery points from one repository into another, through the real CLI.

Local to local and to and from a real WebDAV server; with and without shared
chunker parameters (counting the blobs each copy sends); rerun, kill -9
mid-copy, a damaged blob in the source, a wrong source password.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CLI, PASSWORD
from treeutil import snapshot_tree
import forked_cli

WEBDAV_ENV = {"STRONGROOM_WEBDAV_DEADLINE": "60", "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05",
              "STRONGROOM_WEBDAV_BUDGET": "off"}


def last_json(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


class Repos:
    """Repositories side by side under one folder, one CLI per repository, one password for all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = root / "cache"

    def cli(self, name: str, env: dict | None = None) -> CLI:
        cli = CLI(self.root / name, self.cache)
        cli.env.update(STRONGROOM_FROM_PASSWORD=PASSWORD.decode(), **(env or {}))
        return cli

    def path(self, name: str) -> str:
        return str(self.root / name)


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return Repos(tmp_path)


def make_source(root: Path) -> Path:
    rng = random.Random(14)
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n" * 200)
    (root / "sub" / "big.bin").write_bytes(rng.randbytes(3 * 1024 * 1024))
    (root / "sub" / "deeper" / "c.txt").write_text("charlie\n" * 5000)
    (root / "link").symlink_to("a.txt")
    return root


def copy(cli: CLI, source: str, *args: str, env: dict | None = None) -> dict:
    return last_json(cli.run("copy", "--from-repo", source, "--json", *args, env=env))


def points(cli: CLI, env: dict | None = None) -> list[dict]:
    return last_json(cli.run("snapshots", "--json", env=env))


def restored_equal(cli: CLI, snap: str, source: Path, target: Path, env: dict | None = None) -> None:
    cli.run("restore", snap, "--target", str(target), check=True, env=env)
    assert snapshot_tree(target / source.relative_to("/")) == snapshot_tree(source)


def checks(cli: CLI, env: dict | None = None) -> None:
    report = last_json(cli.run("check", "--read-data", "--json", env=env))
    assert report["ok"], report


def test_copy_between_repositories_of_their_own_parameters(repos: Repos, tmp_path: Path):
    source = make_source(tmp_path / "data")
    a, b = repos.cli("A"), repos.cli("B")
    a.run("init", check=True)
    first = last_json(a.run("backup", str(source), "--tag", "one", "--json"))["snapshot_id"]
    (source / "a.txt").write_text("changed\n")
    second = last_json(a.run("backup", str(source), "--json"))["snapshot_id"]
    b.run("init", check=True)

    done = b.run("copy", "--from-repo", repos.path("A"), "--json")
    s = last_json(done)
    assert s["points_copied"] == 2 and s["points_skipped"] == 0 and s["points_failed"] == 0
    assert not s["shared_ids"] and not s["shared_chunker"]
    assert s["data_blobs_sent"] >= 3 and s["tree_blobs_sent"] >= 4
    assert "dedup between the copies and the destination's own backups is not guaranteed" in done.stdout.decode()

    copies = {p["original"]: p for p in points(b)}
    assert set(copies) == {first, second}
    assert copies[first]["tags"] == ["one"] and copies[first]["paths"] == [str(source)]
    checks(b)
    restored_equal(b, copies[second]["id"], source, tmp_path / "restored")

    again = copy(b, repos.path("A"))
    assert again["points_copied"] == 0 and again["points_skipped"] == 2 and again["blobs_sent"] == 0

    # latest alone, and filters, as snapshots takes them; a copy of a copy is recognised.
    c = repos.cli("C")
    c.run("init", check=True)
    assert copy(c, repos.path("A"), "--tag", "one")["points_copied"] == 1
    assert copy(c, repos.path("B"), "latest")["points_copied"] == 1
    assert {p["original"] for p in points(c)} == {first, second}
    assert copy(c, repos.path("A"))["points_skipped"] == 2
    assert copy(repos.cli("A"), repos.path("C"))["points_skipped"] == 2


def test_shared_chunker_params_send_only_new_blobs_and_dedup_holds(repos: Repos, tmp_path: Path):
    source = make_source(tmp_path / "data")
    a, b = repos.cli("A"), repos.cli("B")
    a.run("init", check=True)
    a.run("backup", str(source), check=True)
    made = last_json(b.run("init", "--copy-chunker-params", repos.path("A"), "--json"))
    assert made["chunker_params_of"].endswith("/A")

    first = copy(b, repos.path("A"))
    assert first["shared_ids"] and first["shared_chunker"] and first["points_copied"] == 1

    # A small change: the next copy sends the new chunk and the trees above it, nothing else.
    with open(source / "sub" / "big.bin", "r+b") as f:
        f.seek(1024 * 1024)
        f.write(b"a few changed bytes")
    a.run("backup", str(source), check=True)
    dry = copy(b, repos.path("A"), "--dry-run")
    second = copy(b, repos.path("A"))
    assert second["points_copied"] == 1 and second["points_skipped"] == 1
    assert 1 <= second["data_blobs_sent"] <= 3, second  # the chunk that changed (and its neighbour)
    # The trees on the path down to the change: "/", each folder to data, and data/sub.
    assert second["tree_blobs_sent"] == len(source.parts) + 1
    assert (dry["data_blobs_sent"], dry["tree_blobs_sent"]) == (second["data_blobs_sent"], second["tree_blobs_sent"])
    assert len(points(b)) == 2

    # B's own backup of the same data adds no data: the same cuts, the same ids.
    own = last_json(b.run("backup", "--full", str(source), "--json"))
    assert own["data_blobs"] == 0, own  # (its trees may differ: a folder's times moved)
    checks(b)
    restored_equal(b, "latest", source, tmp_path / "restored")


def test_copy_to_and_from_webdav(repos: Repos, wsgidav_server, tmp_path: Path):
    source = make_source(tmp_path / "data")
    a = repos.cli("A")
    a.run("init", check=True)
    a.run("backup", str(source), check=True)
    dav_env = {**WEBDAV_ENV, "STRONGROOM_REPO": wsgidav_server.storage_url() + "copy-target/",
               "STRONGROOM_WEBDAV_PASSWORD": wsgidav_server.password}
    dav = repos.cli("unused", dav_env)
    dav.run("init", "--pack-size", "1", "--copy-chunker-params", repos.path("A"), check=True)
    s = copy(dav, repos.path("A"))
    assert s["points_copied"] == 1 and s["shared_ids"]
    assert s["storage"]["destination"]["requests_by_verb"]["write"] >= 4
    checks(dav)
    restored_equal(dav, "latest", source, tmp_path / "restored", env=dav_env)

    # Back from WebDAV into a new local repository: the source's WebDAV password
    # comes from its own variable, never the command line.
    d = repos.cli("D", {**WEBDAV_ENV, "STRONGROOM_FROM_WEBDAV_PASSWORD": wsgidav_server.password})
    d.run("init", check=True)
    url = wsgidav_server.storage_url() + "copy-target/"
    missing = d.run("copy", "--from-repo", url, env={"STRONGROOM_FROM_WEBDAV_PASSWORD": "wrong"})
    assert missing.returncode != 0 and wsgidav_server.password not in missing.stderr.decode()
    back = copy(d, url)
    assert back["points_copied"] == 1 and not back["shared_ids"]
    assert copy(d, repos.path("A"))["points_skipped"] == 1  # a copy of a copy
    restored_equal(d, "latest", source, tmp_path / "restored-d")


def test_damaged_blob_in_the_source_is_an_error_naming_point_and_file(repos: Repos, tmp_path: Path):
    source = tmp_path / "data"
    source.mkdir()
    (source / "small.txt").write_text("small\n")
    a, b = repos.cli("A"), repos.cli("B")
    a.run("init", "--pack-size", "1", check=True)
    good = last_json(a.run("backup", str(source), "--json"))["snapshot_id"]
    before = {p for p in (repos.root / "A" / "data").rglob("*") if p.is_file()}
    (source / "sub").mkdir()
    (source / "sub" / "big.bin").write_bytes(random.Random(2).randbytes(2 * 1024 * 1024))
    bad = last_json(a.run("backup", str(source), "--json"))["snapshot_id"]
    new_packs = sorted((p for p in (repos.root / "A" / "data").rglob("*") if p.is_file() and p not in before),
                       key=lambda p: p.stat().st_size)
    with open(new_packs[-1], "r+b") as f:  # the largest new pack: big.bin's chunks
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0x01]))
    b.run("init", check=True)

    done = b.run("copy", "--from-repo", repos.path("A"))
    assert done.returncode == 1
    err = done.stderr.decode()
    assert f"recovery point {bad[:8]}" in err and f"file {source}/sub/big.bin" in err and "does not authenticate" in err, err
    copied = points(b)
    assert [p["original"] for p in copied] == [good]  # the damaged point is not in B; the good one is
    checks(b)


def test_wrong_source_password_stops_before_anything_is_written(repos: Repos, tmp_path: Path):
    source = make_source(tmp_path / "data")
    a, b = repos.cli("A"), repos.cli("B")
    a.run("init", check=True)
    a.run("backup", str(source), check=True)
    b.run("init", check=True)

    def files(name: str) -> dict:
        return {str(p): p.stat().st_mtime_ns for p in (repos.root / name).rglob("*")}
    before = files("A"), files("B")
    done = b.run("copy", "--from-repo", repos.path("A"), env={"STRONGROOM_FROM_PASSWORD": "not it"})
    assert done.returncode == 12 and "wrong password" in done.stderr.decode()
    assert (files("A"), files("B")) == before

    no_source = forked_cli.run(["copy"], env=b.env)
    assert no_source.returncode == 2 and "--from-repo" in no_source.stderr.decode()


def test_kill9_mid_copy_leaves_only_whole_points_and_the_next_copy_finishes(repos: Repos, tmp_path: Path):
    source = tmp_path / "data"
    source.mkdir()
    a, b = repos.cli("A"), repos.cli("B")
    a.run("init", "--pack-size", "1", check=True)
    rng = random.Random(9)
    for i in range(4):  # four points, each with 4 MiB of new data
        (source / f"part{i}.bin").write_bytes(rng.randbytes(4 * 1024 * 1024))
        a.run("backup", str(source), check=True)
    b.run("init", "--pack-size", "1", check=True)

    proc = subprocess.Popen([sys.executable, "-m", "strongroom", "copy", "--from-repo", repos.path("A")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**b.env, "STRONGROOM_CHECKPOINT_SECONDS": "0"})
    data_dir = repos.root / "B" / "data"
    deadline = time.monotonic() + 120
    while sum(1 for p in data_dir.rglob("*") if p.is_file()) < 6:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    partial = points(b)
    assert len(partial) < 4
    checks(b)  # every point there is whole
    for p in partial:
        cli = repos.cli("B")
        last_json(cli.run("restore", p["id"], "--target", str(tmp_path / f"r-{p['id'][:8]}"), "--json"))

    done = copy(b, repos.path("A"))
    assert done["points_copied"] == 4 - len(partial) and done["points_skipped"] == len(partial)
    assert done["bytes_sent"] < 4 * 4 * 1024 * 1024 * 1.1
    checks(b)
    restored_equal(b, "latest", source, tmp_path / "restored")


def test_a_tree_deeper_than_the_recursion_limit_is_copied_and_rewritten(repos: Repos, tmp_path: Path):
    from test_deep_source import make_deep_tree

    source = tmp_path / "deep"
    make_deep_tree(source, 1100)  # past Python's recursion limit, within PATH_MAX
    try:
        a, b = repos.cli("A"), repos.cli("B")
        a.run("init", check=True)
        a.run("backup", str(source), check=True)
        b.run("init", check=True)  # its own id key: every one of the trees is rewritten, bottom-up
        done = b.run("copy", "--from-repo", repos.path("A"), "--json")
        assert "RecursionError" not in done.stderr.decode()
        s = last_json(done)
        assert s["points_copied"] == 1 and s["tree_blobs_sent"] >= 1100
        checks(b)
    finally:
        subprocess.run(["rm", "-rf", str(source)], check=True)  # rmtree would recurse per level
