"""find, dump, cat and cache through the real command line, on real repositories."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import stat
import subprocess
import tarfile
import time
import zipfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from conftest import CLI, reopen
from crafted import dir_node, file_node, save_snapshot, save_tree
from treeutil import snapshot_tree

MiB = 1024 * 1024
DAY = 86400


def backup(cli, *args: str, input: bytes | None = None) -> str:
    done = cli.run("backup", *args, "--json", input=input, check=True)
    return [json.loads(line) for line in done.stdout.decode().splitlines()
            if line.startswith("{") and '"summary"' in line][-1]["snapshot"]


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr.decode()
    assert "Traceback" not in lines[0]
    return lines[0]


def local(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").timestamp()


def find_json(cli, *args: str) -> list[dict]:
    done = cli.run("find", "--json", *args, check=True)
    return json.loads(done.stdout)


def hits(found: list[dict]) -> dict[str, set[str]]:
    """snapshot id -> the paths found in it; and the hit counts must match the matches."""
    for group in found:
        assert group["hits"] == len(group["matches"])
    return {group["snapshot_id"]: {m["path"] for m in group["matches"]} for group in found}


# ---- find ----------------------------------------------------------------------------------


def test_find_by_name_and_glob_across_snapshots_with_time_bounds(cli, tmp_path):
    root = tmp_path / "src"
    (root / "notes").mkdir(parents=True)
    for rel, when in (("old.txt", "2025-06-01 10:00"), ("new.txt", "2026-03-01 10:00"),
                      ("notes/report.md", "2026-01-02 12:00"), ("notes/Plan.TXT", "2026-01-02 16:00")):
        (root / rel).write_text(rel)
        os.utime(root / rel, (local(when), local(when)))
    cli.run("init", check=True)
    first = backup(cli, str(root))
    (root / "late.log").write_text("late")
    os.utime(root / "late.log", (local("2026-05-01 09:00"), local("2026-05-01 09:00")))
    second = backup(cli, str(root))
    base = str(root)

    # A name is found in every snapshot that has it, and only there.
    assert hits(find_json(cli, "late.log")) == {second: {f"{base}/late.log"}}
    txt = {f"{base}/old.txt", f"{base}/new.txt"}
    assert hits(find_json(cli, "*.txt")) == {first: txt, second: txt}
    assert hits(find_json(cli, "*.txt", "-i")) == {first: txt | {f"{base}/notes/Plan.TXT"},
                                                  second: txt | {f"{base}/notes/Plan.TXT"}}
    # A pattern with a slash is matched on the path, anchored or not.
    assert hits(find_json(cli, "notes/*.md")) == {first: {f"{base}/notes/report.md"},
                                                 second: {f"{base}/notes/report.md"}}
    assert hits(find_json(cli, f"{base}/notes/*")) == {s: {f"{base}/notes/report.md", f"{base}/notes/Plan.TXT"}
                                                       for s in (first, second)}
    assert find_json(cli, "/elsewhere/*") == []

    # --newest and --oldest bound the mtime, in each of the forms a time is given.
    assert hits(find_json(cli, "*.txt", "--newest", "2026-01-01")) == {first: {f"{base}/old.txt"},
                                                                       second: {f"{base}/old.txt"}}
    assert hits(find_json(cli, "*", "--oldest", "2026-01-02 15:04", "--newest", "2026-04-01")) == {
        s: {f"{base}/new.txt", f"{base}/notes/Plan.TXT"} for s in (first, second)}
    rfc3339 = datetime.fromtimestamp(local("2026-04-01 00:00")).astimezone().isoformat()
    assert hits(find_json(cli, "*.log", "--oldest", rfc3339)) == {second: {f"{base}/late.log"}}
    assert find_json(cli, "*.log", "--newest", rfc3339) == []

    # --snapshot narrows the search; the text output is grouped per snapshot.
    assert hits(find_json(cli, "*.txt", "--snapshot", first[:10])) == {first: txt}
    done = cli.run("find", "old.txt", check=True)
    lines = done.stdout.decode().splitlines()
    assert lines[0].startswith(f"Found matching entries in snapshot {first[:8]} from ")
    assert lines[1] == f"{base}/old.txt" and lines[2] == ""
    assert lines[3].startswith(f"Found matching entries in snapshot {second[:8]} from ")
    assert lines[4:] == [f"{base}/old.txt", ""]

    match = find_json(cli, "report.md", "--snapshot", "latest")[0]["matches"][0]
    assert match["type"] == "file" and match["size"] == len("notes/report.md")
    assert datetime.fromisoformat(match["mtime"]).timestamp() == local("2026-01-02 12:00")
    long = cli.run("find", "--long", "report.md", "--snapshot", "latest", check=True).stdout.decode()
    assert "-rw-" in long and f"{base}/notes/report.md" in long


def test_find_bad_time_is_a_usage_error(cli, src):
    cli.run("init", check=True)
    backup(cli, str(src))
    done = cli.run("find", "*.txt", "--newest", "yesterday-ish")
    assert done.returncode == 2
    assert "cannot read time" in one_error_line(done)


# ---- dump ----------------------------------------------------------------------------------


def test_dump_of_a_multi_chunk_file_is_byte_identical(cli, tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    data = random.Random(11).randbytes(5 * MiB)
    (root / "big.bin").write_bytes(data)
    cli.run("init", check=True)
    backup(cli, str(root))
    tree = json.loads(cli.run("cat", "tree", f"latest:{root}", check=True).stdout)
    assert len(tree["nodes"][0]["content"]) > 1  # more than one chunk, so more than one blob read

    done = cli.run("dump", "latest", f"{root}/big.bin", check=True)
    assert done.stdout == data
    # The same by snapshot:subpath, and into a file (private, complete, atomic).
    out = tmp_path / "out.bin"
    cli.run("dump", f"latest:{root}", "big.bin", "--target", str(out), check=True)
    assert out.read_bytes() == data
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    done = cli.run("dump", "latest", f"{root}/missing.bin")
    assert done.returncode == 1
    assert "not in the snapshot" in one_error_line(done)


def _source_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o755)
    (root / "sub" / "private").write_bytes(random.Random(3).randbytes(300 * 1024))
    os.chmod(root / "sub" / "private", 0o640)
    (root / "sub" / "deeper" / "c.bin").write_bytes(random.Random(4).randbytes(2 * MiB))
    os.symlink("../a.txt", root / "sub" / "to-a")
    os.symlink("/nowhere/at/all", root / "dangling")
    os.link(root / "a.txt", root / "sub" / "hard-a")
    os.utime(root / "a.txt", (local("2025-02-03 04:05"), local("2025-02-03 04:05")))


def test_dump_of_a_folder_as_tar_matches_the_source(cli, tmp_path):
    root = tmp_path / "src"
    _source_tree(root)
    cli.run("init", check=True)
    backup(cli, str(root))

    done = cli.run("dump", "latest", str(root), check=True)
    prefix = str(root).lstrip("/")
    with tarfile.open(fileobj=io.BytesIO(done.stdout), mode="r:") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members[prefix].isdir()
        assert members[f"{prefix}/sub/to-a"].issym() and members[f"{prefix}/sub/to-a"].linkname == "../a.txt"
        assert members[f"{prefix}/dangling"].linkname == "/nowhere/at/all"
        # One of the two names is the file, the other a hard link to it.
        pair = [members[f"{prefix}/a.txt"], members[f"{prefix}/sub/hard-a"]]
        assert sorted(m.type for m in pair) == sorted([tarfile.REGTYPE, tarfile.LNKTYPE])
        assert members[f"{prefix}/run.sh"].mode == 0o755 and members[f"{prefix}/sub/private"].mode == 0o640
        for name, member in members.items():
            if member.isreg() or member.isdir():
                source = Path("/" + name)
                assert int(member.mtime) == source.lstat().st_mtime_ns // 1_000_000_000, name
        target = tmp_path / "extracted"
        tar.extractall(target, filter="fully_trusted")
    assert snapshot_tree(target / prefix, with_times=False) == snapshot_tree(root, with_times=False)

    # A subfolder, and the whole snapshot from /.
    done = cli.run("dump", "latest", f"{root}/sub/deeper", check=True)
    with tarfile.open(fileobj=io.BytesIO(done.stdout), mode="r:") as tar:
        assert tar.getnames() == [f"{prefix}/sub/deeper", f"{prefix}/sub/deeper/c.bin"]
        assert tar.extractfile(f"{prefix}/sub/deeper/c.bin").read() == (root / "sub/deeper/c.bin").read_bytes()
    done = cli.run("dump", "latest", "/", check=True)
    with tarfile.open(fileobj=io.BytesIO(done.stdout), mode="r:") as tar:
        names = tar.getnames()
    assert names[0] == prefix.split("/")[0] and f"{prefix}/sub/deeper/c.bin" in names


def test_dump_of_a_folder_as_zip(cli, tmp_path):
    root = tmp_path / "src"
    _source_tree(root)
    cli.run("init", check=True)
    backup(cli, str(root))
    out = tmp_path / "out.zip"
    cli.run("dump", "latest", str(root), "--archive", "zip", "--target", str(out), check=True)
    prefix = str(root).lstrip("/")
    with zipfile.ZipFile(out) as archive:
        infos = {i.filename: i for i in archive.infolist()}
        for rel in ("a.txt", "run.sh", "sub/private", "sub/deeper/c.bin", "sub/hard-a"):
            assert archive.read(f"{prefix}/{rel}") == (root / rel).read_bytes(), rel
            assert infos[f"{prefix}/{rel}"].external_attr >> 16 & 0o7777 == stat.S_IMODE((root / rel).stat().st_mode)
        link = infos[f"{prefix}/sub/to-a"]
        assert stat.S_ISLNK(link.external_attr >> 16) and archive.read(link) == b"../a.txt"
        assert infos[f"{prefix}/empty/"].is_dir()
    # Written through a pipe too: zip without seeking.
    done = cli.run("dump", "latest", str(root), "--archive", "zip", check=True)
    with zipfile.ZipFile(io.BytesIO(done.stdout)) as archive:
        assert archive.read(f"{prefix}/sub/deeper/c.bin") == (root / "sub/deeper/c.bin").read_bytes()


def test_dump_gives_back_a_stdin_backup(cli):
    cli.run("init", check=True)
    dump = b"".join(b"INSERT INTO t VALUES (%d, '%s');\n" % (i, random.Random(i).randbytes(40).hex().encode())
                    for i in range(40000))
    snap = backup(cli, "--stdin", "--stdin-filename", "db.sql", input=dump)
    assert cli.run("dump", "latest", "/db.sql", check=True).stdout == dump
    assert cli.run("dump", snap[:8], "db.sql", check=True).stdout == dump


def test_dump_of_a_damaged_file_fails_and_leaves_no_target_file(cli, tmp_path, repo_path):
    root = tmp_path / "src"
    root.mkdir()
    (root / "big.bin").write_bytes(random.Random(12).randbytes(3 * MiB))
    cli.run("init", check=True)
    backup(cli, str(root))
    packs = [p for p in (repo_path / "data").rglob("*") if p.is_file()]
    biggest = max(packs, key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[100] ^= 0x01
    biggest.write_bytes(bytes(data))
    out = tmp_path / "out.bin"
    done = cli.run("dump", "latest", f"{root}/big.bin", "--target", str(out))
    assert done.returncode == 1
    assert "does not authenticate" in one_error_line(done)
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".strongroom")] == []


def test_dump_and_find_on_crafted_trees(cli, repo):
    """A file whose blobs do not add up to its size fails before a byte of it goes out;
    a tree thousands of levels deep is searched and archived whole (no recursion per level)."""
    good = file_node(repo, b"good.txt", b"fine\n")
    short = file_node(repo, b"short.bin", b"ten bytes!")
    short = replace(short, size=100)
    leaf = save_tree(repo, file_node(repo, b"leaf.txt", b"at the bottom\n"))
    depth = 2000
    for level in range(depth):
        leaf = save_tree(repo, dir_node(b"d", leaf))
    root = save_tree(repo, good, short, dir_node(b"deep", leaf))
    save_snapshot(repo, root)

    done = cli.run("dump", "latest", "/short.bin")
    assert done.returncode == 1 and done.stdout == b""
    assert "do not add up to its size" in one_error_line(done)
    done = cli.run("dump", "latest", "/")
    assert done.returncode == 1
    one_error_line(done)

    found = find_json(cli, "leaf.txt")
    path = "/deep" + "/d" * depth + "/leaf.txt"
    assert [m["path"] for m in found[0]["matches"]] == [path]
    done = cli.run("dump", "latest", "/deep", check=True)
    with tarfile.open(fileobj=io.BytesIO(done.stdout), mode="r:") as tar:
        assert tar.extractfile(path.lstrip("/")).read() == b"at the bottom\n"
        assert len(tar.getnames()) == depth + 2


def test_dump_and_find_over_webdav(wsgidav_server, tmp_path):
    """The same commands against a real WebDAV server; a file's blobs are read in ranges."""
    root = tmp_path / "src"
    root.mkdir()
    data = random.Random(21).randbytes(6 * MiB)
    (root / "big.bin").write_bytes(data)
    (root / "note.txt").write_text("over the wire\n")
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    env = {"STRONGROOM_REPO": wsgidav_server.storage_url() + "repo/",
           "STRONGROOM_WEBDAV_PASSWORD": wsgidav_server.password, "STRONGROOM_WEBDAV_BUDGET": "off"}
    cli.env.update(env)
    cli.run("init", check=True)
    backup(cli, str(root))
    chunks = len(json.loads(cli.run("cat", "tree", f"latest:{root}", check=True).stdout)["nodes"][0]["content"])

    assert hits(find_json(cli, "*.txt")) and cli.run("dump", "latest", f"{root}/note.txt", check=True).stdout \
        == b"over the wire\n"
    out = tmp_path / "big.out"
    done = cli.run("dump", "latest", f"{root}/big.bin", "--target", str(out), "--json", check=True)
    assert out.read_bytes() == data
    summary = json.loads(done.stdout)
    assert summary["bytes"] == len(data) and summary["snapshot_id"]
    # Key files, config, index and snapshots come from the warm cache. The file's chunks sit in
    # one pack, in whatever order the blob workers stored them, with nothing between them but
    # the note's one small blob: they are read as one range, not one request per chunk.
    assert chunks > 1 and summary["storage"]["requests_by_verb"]["read"] == 1


# ---- cat -----------------------------------------------------------------------------------


def secrets_of(repo_path: Path, cache_dir: Path) -> list[bytes]:
    """Every form in which the master key, or the wrapped copy in the key file, could leak."""
    key = reopen(repo_path, cache_dir).crypto.key
    found = []
    for raw in (key.encryption, key.id_key):
        found += [raw, raw.hex().encode(), base64.b64encode(raw), base64.b64encode(raw).rstrip(b"=")]
    found.append(str(key.chunker_seed).encode())
    for path in (repo_path / "keys").iterdir():
        doc = json.loads(path.read_bytes())
        found += [doc["salt"].encode(), doc["data"].encode()]
    return found


def test_cat_prints_objects_as_json_and_never_key_material(cli, src, repo_path, cache_dir):
    cli.run("init", check=True)
    snap = backup(cli, str(src))
    secrets = secrets_of(repo_path, cache_dir)
    outputs = []

    def cat(*args: str) -> dict:
        done = cli.run("cat", *args, check=True)
        outputs.append(done.stdout + done.stderr)
        return json.loads(done.stdout)

    config = cat("config")
    assert config["id"] == reopen(repo_path, cache_dir).config.id and config["chunker"]["algorithm"]
    assert cat("snapshot", snap[:8])["id"] == snap
    snapshot = cat("snapshot", "latest")
    assert snapshot["paths"] == [str(src)] and snapshot["tree"]
    index_id = next((repo_path / "index").iterdir()).name
    index = cat("index", index_id[:12])
    blobs = {b["id"]: b for p in index["packs"] for b in p["blobs"]}
    assert snapshot["tree"] in blobs and blobs[snapshot["tree"]]["type"] == "tree"
    pack = cat("pack", index["packs"][0]["id"][:10])
    assert pack["blobs"] == index["packs"][0]["blobs"]
    key_id = next((repo_path / "keys").iterdir()).name
    key = cat("key", key_id)
    assert key["id"] == key_id and key["kdf"] == "argon2id" and set(key["kdf_params"]) == {
        "memory_kib", "iterations", "lanes"}
    assert not {"salt", "data", "master"} & set(key)
    tree = cat("tree", f"latest:{src}")
    a_node = next(n for n in tree["nodes"] if n["name"] == "a.txt")

    done = cli.run("cat", "blob", a_node["content"][0], check=True)
    assert done.stdout == b"alpha\n"
    outputs.append(done.stdout + done.stderr)

    # A lock, taken here and shown there.
    repo = reopen(repo_path, cache_dir)
    with repo.lock() as lock:
        doc = cat("lock", lock.name.rsplit("/", 1)[-1][:16])
        assert doc["pid"] == os.getpid() and doc["exclusive"] is False

    for output in outputs:
        for secret in secrets:
            assert secret not in output


def test_cat_key_of_a_no_password_repository_shows_no_master_key(cli, repo_path, cache_dir):
    cli.run("init", "--no-password", check=True)
    key_file = next((repo_path / "keys").iterdir())
    stored = json.loads(key_file.read_bytes())["master"]
    master = json.loads(base64.b64decode(stored))
    done = cli.run("cat", "key", key_file.name[:8], check=True)
    doc = json.loads(done.stdout)
    assert doc["kdf"] == "none" and doc["id"] == key_file.name and "master" not in doc
    output = done.stdout + done.stderr + cli.run("cat", "config", check=True).stdout
    for secret in (stored, master["encryption"], master["id_key"], str(master["chunker_seed"])):
        assert secret.encode() not in output


def test_cat_of_a_damaged_or_missing_object_is_one_line(cli, src, repo_path):
    cli.run("init", check=True)
    snap = backup(cli, str(src))
    index = next((repo_path / "index").iterdir())
    data = bytearray(index.read_bytes())
    data[-5] ^= 0x10
    index.write_bytes(bytes(data))
    # --no-cache: the cache holds an intact copy of the object, which is still the object.
    done = cli.run("cat", "index", index.name, "--no-cache")
    assert done.returncode == 1
    assert "does not match its name" in one_error_line(done)

    snapshot = repo_path / "snapshots" / snap
    snapshot.write_bytes(snapshot.read_bytes()[:-3] + b"xyz")
    done = cli.run("cat", "snapshot", snap[:8], "--no-cache")
    assert done.returncode == 1
    one_error_line(done)

    for args, code in ((("cat", "key", "f" * 64), 1), (("cat", "blob", "00" * 32), 1),
                       (("cat", "index", "not-hex"), 2), (("cat", "snapshot"), 2), (("cat", "config", "x"), 2)):
        done = cli.run(*args)
        assert done.returncode == code, args
        one_error_line(done)


# ---- cache ---------------------------------------------------------------------------------


def _age_tree(path: Path, days: float) -> None:
    when = time.time() - days * DAY
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (when, when), follow_symlinks=False)
    os.utime(path, (when, when))


def test_cache_lists_caches_and_cleans_only_old_ones(cli, tmp_path, src, cache_dir, repo_path):
    cli.run("init", check=True)
    backup(cli, str(src))
    other = tmp_path / "other-repo"
    cli.run("init", "--repo", str(other), check=True)
    backup(cli, str(src), "--repo", str(other))
    new_id = reopen(repo_path, cache_dir).config.id
    old_id = reopen(other, cache_dir).config.id

    listed = json.loads(cli.run("cache", "--json", check=True).stdout)
    assert listed["root"] == str(cache_dir)
    kinds = {(c["kind"], c["repository_id"]) for c in listed["caches"]}
    assert kinds == {("repository", new_id), ("repository", old_id), ("target", new_id), ("target", old_id)}
    sizes = {c["name"]: c["size"] for c in listed["caches"]}
    assert sizes[new_id] == sum(p.stat().st_size for p in (cache_dir / new_id).rglob("*") if p.is_file())

    # The other repository's caches were last used 40 days ago; so were things that are not caches.
    for c in listed["caches"]:
        if c["repository_id"] == old_id:
            _age_tree(Path(c["path"]), 40)
    # This repository's own cache looks as old, but its target cache was used just now: it is in use.
    _age_tree(cache_dir / new_id, 40)
    (cache_dir / "notes").mkdir()
    (cache_dir / "notes" / "keep.txt").write_text("mine")
    _age_tree(cache_dir / "notes", 400)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("not a cache")
    os.symlink(outside, cache_dir / ("ab" * 16))
    (cache_dir / "budgets").mkdir(exist_ok=True)  # request logs: shared state, never a cache to clean
    (cache_dir / "budgets" / "log.json").write_text("{}")
    _age_tree(cache_dir / "budgets", 400)

    listed = json.loads(cli.run("cache", "--json", "--no-size", check=True).stdout)
    ages = {c["name"]: c["age_days"] for c in listed["caches"]}
    assert ages[old_id] >= 39.9 and ages[new_id] < 1
    assert all(c["size"] is None for c in listed["caches"])
    assert ("ab" * 16) not in ages and "notes" not in ages

    # Not old enough yet: nothing goes.
    done = json.loads(cli.run("cache", "--cleanup", "--max-age", "50", "--json", check=True).stdout)
    assert done["removed"] == [] and (cache_dir / old_id).is_dir()

    done = json.loads(cli.run("cache", "--cleanup", "--json", check=True).stdout)
    assert [c["name"] for c in done["removed"]] == [old_id]
    assert not (cache_dir / old_id).exists()
    assert (cache_dir / new_id).is_dir()
    left = {(c["kind"], c["repository_id"]) for c in done["caches"]}
    assert left == {("repository", new_id), ("target", new_id), ("target", old_id)}  # identities are kept
    assert (cache_dir / "notes" / "keep.txt").read_text() == "mine"
    assert (outside / "precious").read_text() == "not a cache" and (cache_dir / ("ab" * 16)).is_symlink()
    assert (cache_dir / "budgets" / "log.json").read_text() == "{}"

    # The repository whose cache went still opens (it fetches again what it needs).
    assert cli.run("find", "a.txt", "--repo", str(other), check=True).stdout.decode().count("a.txt") == 1
    text = cli.run("cache", check=True).stdout.decode()
    assert new_id in text and "last used" in text


def test_cache_without_a_cache_root_is_empty(cli, tmp_path):
    missing = tmp_path / "no-cache-here"
    for args in (("cache",), ("cache", "--cleanup")):
        done = cli.run(*args, "--cache-dir", str(missing), check=True)
        assert f"no caches in {missing}" in done.stdout.decode()
    assert not missing.exists()
    done = cli.run("cache", "--cleanup", "--max-age", "-1", "--cache-dir", str(missing))
    assert done.returncode == 2
    one_error_line(done)


@pytest.mark.parametrize("where", ["/", "home"])
def test_cache_cleanup_refuses_the_root_and_the_home_directory(cli, tmp_path, where):
    home = tmp_path / "home"
    (home / "0123456789abcdef0123456789abcdef").mkdir(parents=True)
    _age_tree(home / "0123456789abcdef0123456789abcdef", 100)
    root = "/" if where == "/" else str(home)
    done = cli.run("cache", "--cleanup", "--cache-dir", root, "--max-age", "0", env={"HOME": str(home)})
    assert done.returncode == 2
    assert "refusing to clean" in one_error_line(done)
    assert (home / "0123456789abcdef0123456789abcdef").is_dir()
