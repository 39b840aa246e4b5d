"""tag, rewrite, repair and init's refusal, through the real command line on real repositories."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import httpx

from conftest import CLI, hold_shared_lock
from treeutil import snapshot_tree

MiB = 1024 * 1024
ENV = {"STRONGROOM_WEBDAV_DEADLINE": "60", "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05",
       "STRONGROOM_WEBDAV_BUDGET": "off"}


def last_json(done) -> dict:
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def listed(cli: CLI) -> dict[str, dict]:
    """Snapshot id -> snapshot, as `snapshots --json` shows them."""
    return {s["id"]: s for s in json.loads(cli.run("snapshots", "--json", check=True).stdout)}


def one_error_line(done) -> str:
    lines = [line for line in done.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], done.stderr.decode()
    return lines[0]


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def check_clean(cli: CLI) -> None:
    report = last_json(cli.run("check", "--read-data", "--json"))
    assert report["ok"] and not report["warnings"], report


def restored(cli: CLI, spec: str, target: Path, src: Path) -> dict:
    cli.run("restore", spec, "--target", str(target), "--verify", check=True)
    return snapshot_tree(target / src.relative_to("/"))


# ---- tag --------------------------------------------------------------------------------


def test_tag_adds_removes_and_sets_tags_by_replacing_the_snapshot(cli, repo_path, src, tmp_path):
    cli.run("init", check=True)
    cli.run("backup", str(src), "--tag", "daily", check=True)
    (first,) = listed(cli)

    changed = last_json(cli.run("tag", "--add", "keep,audit", "--remove", "daily", "--json"))
    assert changed["changed_snapshots"] == 1
    (second,) = listed(cli).values()
    assert second["tags"] == ["keep", "audit"] and second["original"] == first
    assert changed["changes"] == [{"old_snapshot_id": first, "new_snapshot_id": second["id"],
                                   "old_tags": ["daily"], "tags": ["keep", "audit"]}]
    assert not (repo_path / "snapshots" / first).exists()

    # Tags that would not change leave the snapshot (and its id) alone.
    assert last_json(cli.run("tag", "--add", "audit", "--json"))["changed_snapshots"] == 0
    assert last_json(cli.run("tag", "--remove", "absent", "--json"))["changed_snapshots"] == 0
    assert list(listed(cli)) == [second["id"]]

    cli.run("tag", "--set", "monthly", second["id"][:8], check=True)
    (third,) = listed(cli).values()
    assert third["tags"] == ["monthly"] and third["original"] == first  # the first original is kept
    assert not (repo_path / "snapshots" / second["id"]).exists()
    cli.run("tag", "--set", "", check=True)
    (fourth,) = listed(cli).values()
    assert fourth["tags"] == []
    assert len(list((repo_path / "snapshots").iterdir())) == 1

    assert restored(cli, "latest", tmp_path / "restore", src) == snapshot_tree(src)
    check_clean(cli)


def test_tag_selects_by_filters_and_refuses_a_muddled_command_line(cli, src):
    cli.run("init", check=True)
    cli.run("backup", str(src), "--tag", "a", check=True)
    cli.run("backup", str(src), "--tag", "b", check=True)
    done = last_json(cli.run("tag", "--tag", "b", "--add", "x", "--json"))
    assert done["changed_snapshots"] == 1 and done["matched_snapshots"] == 1
    assert sorted(tuple(s["tags"]) for s in listed(cli).values()) == [("a",), ("b", "x")]
    for args in (["--add", "x", "--set", "y"], []):
        bad = cli.run("tag", *args)
        assert bad.returncode == 2
        one_error_line(bad)
    assert len(listed(cli)) == 2


def test_tag_rewrite_and_repair_wait_for_a_shared_lock(cli, repo_path, cache_dir, src):
    # A backup's shared lock: none of them may write beside it.
    cli.run("init", check=True)
    cli.run("backup", str(src), check=True)
    objects = sorted(p.name for p in (repo_path / "snapshots").iterdir())
    holder = hold_shared_lock(repo_path, cache_dir)
    try:
        for args in (["tag", "--add", "x"], ["rewrite", "--exclude", "a.txt"], ["repair", "index"],
                     ["repair", "snapshots", "--forget"]):
            done = cli.run(*args)
            assert done.returncode == 11 and "locked" in one_error_line(done), args
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in (repo_path / "snapshots").iterdir()) == objects


# ---- rewrite ------------------------------------------------------------------------------


def test_rewrite_drops_a_path_and_prune_frees_its_data(cli, repo_path, tmp_path):
    src = tmp_path / "src"
    (src / "keys").mkdir(parents=True)
    (src / "docs").mkdir()
    rnd = random.Random(11)
    (src / "docs" / "report.txt").write_text("quarterly\n" * 2000)
    (src / "photo.bin").write_bytes(rnd.randbytes(MiB))
    (src / "keys" / "id_secret").write_bytes(rnd.randbytes(3 * MiB))  # should never have been backed up
    (src / "keys" / "id_secret.pub").write_text("public\n")
    cli.run("init", "--pack-size", "1", check=True)
    cli.run("backup", str(src), "--tag", "home", "--time", "2024-03-01 10:00", check=True)
    (old,) = listed(cli)
    before = listed(cli)[old]

    dry = last_json(cli.run("rewrite", "--exclude", "id_secret", "--dry-run", "--json"))
    assert dry["rewritten_snapshots"] == 1 and dry["removed_paths"] == [str(src / "keys" / "id_secret")]
    assert list(listed(cli)) == [old]

    done = last_json(cli.run("rewrite", "--exclude", "id_secret", "--json"))
    assert done["rewritten_snapshots"] == 1
    (entry,) = done["rewritten"]
    new = entry["new_snapshot_id"]
    snaps = listed(cli)
    assert set(snaps) == {old, new}  # without --forget the original stays
    copy = snaps[new]
    assert copy["original"] == old
    for field in ("time", "hostname", "paths", "tags", "username"):
        assert copy[field] == before[field]
    assert copy["summary"]["total_files"] == 3
    check_clean(cli)

    got = restored(cli, new, tmp_path / "r1", src)
    expected = snapshot_tree(src)
    del expected[b"keys/id_secret"]
    assert got == expected
    assert restored(cli, old, tmp_path / "r0", src) == snapshot_tree(src)

    # Over every snapshot: the copy has nothing to drop and is left alone; the original goes.
    data = sum(p.stat().st_size for p in (repo_path / "data").rglob("*") if p.is_file())
    again = last_json(cli.run("rewrite", "--exclude", "id_secret", "--forget", "--json"))
    assert again["matched_snapshots"] == 2 and again["rewritten_snapshots"] == 1
    assert again["rewritten"][0]["snapshot_id"] == old
    snaps = listed(cli)
    assert old not in snaps and new in snaps and len(snaps) == 2
    assert not (repo_path / "snapshots" / old).exists()

    freed = last_json(cli.run("prune", "--json"))
    assert freed["bytes_freed"] >= 3 * MiB * 0.9
    after = sum(p.stat().st_size for p in (repo_path / "data").rglob("*") if p.is_file())
    assert data - after >= 3 * MiB * 0.9
    check_clean(cli)
    assert restored(cli, new, tmp_path / "r2", src) == expected


def test_rewrite_drops_a_directory_with_an_anchored_pattern(cli, tmp_path):
    src = tmp_path / "src"
    (src / "a" / "cache" / "deep").mkdir(parents=True)
    (src / "b" / "cache").mkdir(parents=True)
    (src / "a" / "cache" / "deep" / "x").write_text("x")
    (src / "b" / "cache" / "y").write_text("y")
    (src / "a" / "keep").write_text("keep")
    cli.run("init", check=True)
    cli.run("backup", str(src), check=True)
    patterns = tmp_path / "patterns"
    patterns.write_text(f"# only the one under a/\n{src}/a/cache\n")
    done = last_json(cli.run("rewrite", "--exclude-file", str(patterns), "--forget", "--json"))
    assert done["removed_paths"] == [str(src / "a" / "cache")] and done["rewritten"][0]["removed"] == 1
    got = restored(cli, "latest", tmp_path / "r", src)
    expected = {k: v for k, v in snapshot_tree(src).items() if not k.startswith(b"a/cache")}
    assert got == expected
    check_clean(cli)


def test_rewrite_walks_a_tree_deeper_than_the_interpreter_recurses(cli, tmp_path):
    src, target = tmp_path / "src", tmp_path / "r"
    src.mkdir()
    depth = 1200  # past Python's recursion limit, within PATH_MAX
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):  # through descriptors: pathlib and os.makedirs recurse per level
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    for name in ("secret", "kept"):
        out = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, name.encode())
        os.close(out)
    os.close(fd)
    bottom = str(src) + "/d" * depth
    try:
        cli.run("init", check=True)
        cli.run("backup", str(src), check=True)
        done = last_json(cli.run("rewrite", "--exclude", "secret", "--forget", "--json"))
        assert done["removed_paths"] == [bottom + "/secret"]
        cli.run("restore", "latest", "--target", str(target), check=True)
        back = str(target) + bottom
        assert sorted(os.listdir(back)) == ["kept"]
        with open(back + "/kept") as f:
            assert f.read() == "kept"
    finally:
        subprocess.run(["rm", "-rf", str(src), str(target)], check=True)  # rmtree recurses per level


# ---- repair index -------------------------------------------------------------------------


def two_backups(cli: CLI, tmp_path: Path) -> tuple[Path, Path]:
    rnd = random.Random(21)
    one, two = tmp_path / "one", tmp_path / "two"
    (one / "d").mkdir(parents=True)
    two.mkdir()
    (one / "big.bin").write_bytes(rnd.randbytes(2 * MiB))
    (one / "d" / "small.txt").write_text("small\n")
    (two / "other.bin").write_bytes(rnd.randbytes(300 * 1024))
    cli.run("init", "--pack-size", "1", check=True)
    cli.run("backup", str(one), check=True)
    cli.run("backup", str(two), check=True)
    return one, two


def test_repair_index_rebuilds_a_deleted_index(cli, repo_path, tmp_path):
    one, two = two_backups(cli, tmp_path)
    packs = len([p for p in (repo_path / "data").rglob("*") if p.is_file()])
    for old in (repo_path / "index").iterdir():
        old.unlink()
    shutil.rmtree(cli.env["STRONGROOM_CACHE_DIR"])  # no copy of the old index to fall back on

    done = last_json(cli.run("repair", "index", "--json"))
    assert done["packs"] == packs and done["headers_read"] == packs and not done["unreadable_packs"]
    assert [p.name for p in (repo_path / "index").iterdir()] == [done["index_written"].split("/")[1]]
    check_clean(cli)
    snaps = sorted(listed(cli).values(), key=lambda s: s["paths"])
    assert restored(cli, snaps[0]["id"], tmp_path / "r1", one) == snapshot_tree(one)
    assert restored(cli, snaps[1]["id"], tmp_path / "r2", two) == snapshot_tree(two)

    # On an intact repository the old index is reused and replaced by one object.
    again = last_json(cli.run("repair", "index", "--json"))
    assert again["packs_reused"] == packs and again["index_removed"] == 1
    thorough = last_json(cli.run("repair", "index", "--read-all-packs", "--json"))
    assert thorough["headers_read"] == packs and thorough["damaged_blobs"] == 0
    check_clean(cli)


def test_repair_index_stopped_before_deleting_the_old_index_leaves_a_usable_repository(cli, repo_path, tmp_path):
    one, _ = two_backups(cli, tmp_path)
    saved = {p.name: p.read_bytes() for p in (repo_path / "index").iterdir()}
    done = last_json(cli.run("repair", "index", "--json"))
    assert done["index_removed"] == len(saved) and not (set(saved) & {p.name for p in (repo_path / "index").iterdir()})
    for name, data in saved.items():  # as if killed after the new index was written
        (repo_path / "index" / name).write_bytes(data)
    report = last_json(cli.run("check", "--read-data", "--json"))
    assert report["ok"] and all("replaced by a consolidated index" in w for w in report["warnings"]), report
    snap = next(i for i, s in listed(cli).items() if s["paths"] == [str(one)])
    assert restored(cli, snap, tmp_path / "r", one) == snapshot_tree(one)
    cli.run("prune", check=True)  # finishes the work
    assert len(list((repo_path / "index").iterdir())) == 1
    check_clean(cli)


def test_repair_index_reports_a_pack_whose_header_cannot_be_read(cli, repo_path, tmp_path):
    two_backups(cli, tmp_path)
    for old in (repo_path / "index").iterdir():
        old.unlink()
    victim = max((p for p in (repo_path / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0xFF  # inside the encrypted header
    victim.write_bytes(bytes(data))
    done = cli.run("repair", "index", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout.decode().splitlines()[-1])
    assert len(report["unreadable_packs"]) == 1 and victim.name in report["unreadable_packs"][0]
    assert victim.exists()  # reported, never deleted
    assert len(list((repo_path / "index").iterdir())) == 1


# ---- repair snapshots -----------------------------------------------------------------------


def test_repair_snapshots_reports_then_repairs_a_lost_pack(cli, repo_path, tmp_path):
    one, two = two_backups(cli, tmp_path)
    snaps = listed(cli)
    damaged = next(i for i, s in snaps.items() if s["paths"] == [str(one)])
    intact = next(i for i, s in snaps.items() if s["paths"] == [str(two)])
    # The largest pack holds only chunks of big.bin (1 MiB packs; chunks of 256 KiB to 4 MiB).
    victim = max((p for p in (repo_path / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.unlink()
    objects = sorted(p.name for p in (repo_path / "snapshots").iterdir())

    found = cli.run("repair", "snapshots", "--json")
    assert found.returncode == 1
    report = json.loads(found.stdout.decode().splitlines()[-1])
    assert [d["snapshot_id"] for d in report["damaged"]] == [damaged]
    assert any(p.startswith(str(one / "big.bin")) for p in report["paths"])
    assert sorted(p.name for p in (repo_path / "snapshots").iterdir()) == objects  # only a report

    cli.run("repair", "index", check=True)  # the index no longer names the lost pack
    fixed = last_json(cli.run("repair", "snapshots", "--forget", "--json"))
    (entry,) = fixed["damaged"]
    snaps = listed(cli)
    assert set(snaps) == {entry["new_snapshot_id"], intact}
    assert snaps[entry["new_snapshot_id"]]["original"] == damaged
    check_clean(cli)
    target = tmp_path / "r"
    cli.run("restore", entry["new_snapshot_id"], "--target", str(target), check=True)
    back = target / one.relative_to("/")
    emptied = {p.split(": ")[0] for p in fixed["paths"]}
    assert str(one / "big.bin") in emptied
    for path in one.rglob("*"):
        if path.is_file():  # emptied, not half-restored; the rest whole
            want = b"" if str(path) in emptied else path.read_bytes()
            assert (back / path.relative_to(one)).read_bytes() == want
    assert restored(cli, intact, tmp_path / "r2", two) == snapshot_tree(two)
    assert cli.run("repair", "snapshots").returncode == 0  # nothing left to repair


def test_repair_snapshots_forget_removes_a_snapshot_whose_root_is_gone(cli, repo_path, tmp_path):
    one, two = two_backups(cli, tmp_path)
    packs_before = {p for p in (repo_path / "data").rglob("*") if p.is_file()}
    third = tmp_path / "three"
    third.mkdir()
    (third / "t.txt").write_text("three\n")
    cli.run("backup", str(third), check=True)
    lonely = next(i for i, s in listed(cli).items() if s["paths"] == [str(third)])
    for pack in {p for p in (repo_path / "data").rglob("*") if p.is_file()} - packs_before:
        pack.unlink()  # every pack that backup wrote: its root tree among them
    cli.run("repair", "index", check=True)
    assert cli.run("repair", "snapshots").returncode == 1
    assert lonely in listed(cli)
    done = last_json(cli.run("repair", "snapshots", "--forget", "--json"))
    (entry,) = done["damaged"]
    assert entry["snapshot_id"] == lonely and entry["removed"] and entry["root_missing"]
    assert lonely not in listed(cli) and len(listed(cli)) == 2
    check_clean(cli)


def test_repair_snapshots_forget_waits_for_a_whole_index(cli, repo_path, tmp_path):
    two_backups(cli, tmp_path)
    for old in (repo_path / "index").iterdir():
        old.unlink()
    objects = sorted(p.name for p in (repo_path / "snapshots").iterdir())
    done = cli.run("repair", "snapshots", "--forget")
    assert done.returncode == 2 and "repair index" in one_error_line(done)
    assert sorted(p.name for p in (repo_path / "snapshots").iterdir()) == objects


# ---- init ------------------------------------------------------------------------------------


def test_init_refuses_a_folder_that_is_not_empty(cli, tmp_path):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.odt").write_bytes(b"years of work")
    (folder / ".hidden").write_text("h")
    before = files_under(folder)
    done = cli.run("init", "--repo", str(folder))
    assert done.returncode == 1
    assert "not empty" in one_error_line(done)
    assert files_under(folder) == before and sorted(os.listdir(folder)) == [".hidden", "thesis.odt"]

    only_hidden = tmp_path / "hidden"
    only_hidden.mkdir()
    (only_hidden / ".DS_Store").write_bytes(b"x")
    assert cli.run("init", "--repo", str(only_hidden)).returncode == 1

    # An existing repository is refused as before; an empty folder, or a new one, is fine.
    cli.run("init", check=True)
    again = cli.run("init")
    assert again.returncode == 1 and "already exists" in one_error_line(again)
    empty = tmp_path / "empty"
    empty.mkdir()
    cli.run("init", "--repo", str(empty), check=True)
    # The empty folders an init stopped before its key leaves are no obstacle.
    half = tmp_path / "half"
    (half / "keys").mkdir(parents=True)
    (half / "data" / "00").mkdir(parents=True)
    cli.run("init", "--repo", str(half), check=True)


def test_init_refuses_a_webdav_folder_that_is_not_empty(wsgidav_server, tmp_path):
    dav = wsgidav_server
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    env = {**ENV, "STRONGROOM_REPO": dav.storage_url(), "STRONGROOM_WEBDAV_PASSWORD": dav.password}
    put = httpx.put(dav.url + "notes.txt", content=b"mine", auth=dav.auth, timeout=10)
    assert put.status_code in (201, 204)
    done = cli.run("init", env=env)
    assert done.returncode == 1
    assert "not empty" in one_error_line(done)
    assert sorted(p.name for p in dav.root.iterdir()) == ["notes.txt"]
    assert (dav.root / "notes.txt").read_bytes() == b"mine"

    fresh = dav.scratch()
    env["STRONGROOM_REPO"] = fresh.storage_url()
    cli.run("init", "--pack-size", "1", env=env, check=True)
    again = cli.run("init", env=env)
    assert again.returncode == 1 and "already exists" in one_error_line(again)
