"""Progress that is true and JSON as docs/json.md describes it (schema strongroom/1).

The real CLI in a subprocess, on a real repository: the totals a status
reports are checked against the tree the test made, the field names and
types against restic's.
"""

from __future__ import annotations

import json
import random
import re
from datetime import datetime
from pathlib import Path

import pytest

SCHEMA = "strongroom/1"
FOLDERS = ("d0", "d0/d1", "d2", "d3")
FILES_PER_FOLDER = 5  # and one more, empty, at the top


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, int, int]:
    """(root, number of files, sum of their sizes): files in FOLDERS nested folders."""
    root = tmp_path / "tree"
    rng = random.Random(7)
    count = size = 0
    for folder in FOLDERS:
        here = root / folder
        here.mkdir(parents=True)
        for i in range(FILES_PER_FOLDER):
            data = rng.randbytes(rng.randrange(1, 200_000))
            (here / f"f{i}.bin").write_bytes(data)
            count, size = count + 1, size + len(data)
    (root / "empty").write_bytes(b"")
    return root, count + 1, size


def lines_of(done) -> list[dict]:
    assert done.returncode == 0, done.stderr.decode()
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    for line in lines:
        assert isinstance(line, dict) and line["schema"] == SCHEMA and isinstance(line["message_type"], str), line
    return lines


def of_type(lines: list[dict], kind: str) -> list[dict]:
    return [line for line in lines if line["message_type"] == kind]


def assert_types(obj: dict, types: dict) -> None:
    for name, kind in types.items():
        assert name in obj, f"{name} missing from {obj}"
        assert isinstance(obj[name], kind) and not (kind is int and isinstance(obj[name], bool)), (name, obj[name])


def assert_rfc3339(text: str) -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d", text), text
    assert datetime.fromisoformat(text).tzinfo is not None


BACKUP_STATUS = {"percent_done": float, "total_files": int, "files_done": int, "total_bytes": int,
                 "bytes_done": int, "error_count": int, "current_files": list, "seconds_elapsed": int}
BACKUP_SUMMARY = {"files_new": int, "files_changed": int, "files_unmodified": int, "dirs_new": int,
                  "dirs_changed": int, "dirs_unmodified": int, "data_blobs": int, "tree_blobs": int,
                  "data_added": int, "data_added_packed": int, "total_files_processed": int,
                  "total_bytes_processed": int, "total_duration": float, "snapshot_id": str,
                  "backup_start": str, "backup_end": str}
RESTORE_FIELDS = {"percent_done": float, "total_files": int, "files_restored": int, "files_skipped": int,
                  "total_bytes": int, "bytes_restored": int, "bytes_skipped": int}


def test_backup_counts_files_not_folders_against_a_true_total(cli, tree):
    root, files, size = tree
    cli.run("init", check=True)
    lines = lines_of(cli.run("backup", str(root), "--json"))
    statuses, [summary] = of_type(lines, "status"), of_type(lines, "summary")
    assert statuses and lines[-1] is summary
    for status in statuses:
        assert_types(status, BACKUP_STATUS)
        assert 0.0 <= status["percent_done"] <= 1.0
        assert status["files_done"] <= status["total_files"] <= files
        assert all(isinstance(p, str) for p in status["current_files"])
    last = statuses[-1]
    # N files in M folders: the total is N, not N + M, and the run reaches it.
    assert (last["total_files"], last["files_done"]) == (files, files)
    assert (last["total_bytes"], last["bytes_done"]) == (size, size)
    assert last["percent_done"] == 1.0 and last["error_count"] == 0 and last["current_files"] == []
    assert [s["percent_done"] for s in statuses] == sorted(s["percent_done"] for s in statuses)

    assert_types(summary, BACKUP_SUMMARY)
    assert summary["total_files_processed"] == summary["files_new"] == files
    assert summary["total_bytes_processed"] == size
    assert summary["files_changed"] == summary["files_unmodified"] == 0
    assert summary["dirs_new"] >= len(FOLDERS) + 1 and summary["dirs_unmodified"] == 0
    assert summary["data_added"] >= size > 0 and summary["data_added_packed"] > 0
    assert summary["data_blobs"] > 0 and summary["tree_blobs"] >= len(FOLDERS) + 1
    for key in ("backup_start", "backup_end"):
        assert_rfc3339(summary[key])
    assert summary["snapshot_id"].startswith(summary["snapshot_id"][:8]) and len(summary["snapshot_id"]) == 64
    # One request count, in the storage object.
    assert "requests" not in summary and isinstance(summary["storage"]["requests"], int)

    again = of_type(lines_of(cli.run("backup", str(root), "--json")), "summary")[0]
    assert (again["files_unmodified"], again["files_new"], again["files_changed"]) == (files, 0, 0)
    # The tree's folders are unmodified; those above it (the test's own) may have changed.
    assert again["dirs_new"] == 0 and again["dirs_changed"] + again["dirs_unmodified"] == summary["dirs_new"]
    assert again["dirs_unmodified"] >= len(FOLDERS) + 1
    assert again["data_blobs"] == 0  # no file data again; the trees above the source may be new


def test_the_total_leaves_out_what_the_backup_leaves_out(cli, tree):
    root, _, _ = tree
    (root / "d2" / ".nobackup").write_bytes(b"")
    kept = [p for p in root.rglob("*") if p.is_file() and p.name != "f0.bin" and not p.is_relative_to(root / "d2")]
    cli.run("init", check=True)
    lines = lines_of(cli.run("backup", str(root), "--json", "--exclude", "f0.bin",
                             "--exclude-if-present", ".nobackup"))
    last = of_type(lines, "status")[-1]
    assert last["total_files"] == last["files_done"] == len(kept) < 1 + len(FOLDERS) * FILES_PER_FOLDER
    assert last["total_bytes"] == last["bytes_done"] == sum(p.stat().st_size for p in kept)
    assert last["percent_done"] == 1.0


def test_restore_counts_files_and_bytes_restored(cli, tree, tmp_path):
    root, files, size = tree
    cli.run("init", check=True)
    cli.run("backup", str(root), check=True)
    lines = lines_of(cli.run("restore", "latest", "--target", str(tmp_path / "out"), "--json"))
    statuses, [summary] = of_type(lines, "status"), of_type(lines, "summary")
    assert statuses and lines[-1] is summary
    for status in statuses:
        assert_types(status, RESTORE_FIELDS)
        assert status["files_restored"] <= status["total_files"] == files
    restic_summary = {k: v for k, v in RESTORE_FIELDS.items() if k != "percent_done"}
    assert_types(summary, {**restic_summary, "seconds_elapsed": int, "snapshot_id": str})
    for done in (statuses[-1], summary):
        assert (done["total_files"], done["files_restored"], done["files_skipped"]) == (files, files, 0)
        assert (done["total_bytes"], done["bytes_restored"], done["bytes_skipped"]) == (size, size, 0)
    assert statuses[-1]["percent_done"] == 1.0
    assert "requests" not in summary and isinstance(summary["storage"]["requests"], int)

    # Again into the same place: everything is already there.
    again = of_type(lines_of(cli.run("restore", "latest", "--target", str(tmp_path / "out"), "--json")), "summary")
    assert (again[0]["files_restored"], again[0]["files_skipped"]) == (0, files)
    assert (again[0]["bytes_restored"], again[0]["bytes_skipped"]) == (0, size)


def test_check_reads_every_pack_and_says_so(cli, tree, repo_path):
    root, _, _ = tree
    cli.run("init", check=True)
    cli.run("backup", str(root), check=True)
    (root / "d3" / "new.bin").write_bytes(random.Random(8).randbytes(100_000))
    cli.run("backup", str(root / "d3"), check=True)
    lines = lines_of(cli.run("check", "--read-data", "--json"))
    statuses, [summary] = of_type(lines, "status"), of_type(lines, "summary")
    reading = [s for s in statuses if s["phase"] == "read-data"]
    assert reading and reading[-1]["packs_done"] == reading[-1]["total_packs"] == summary["packs_read"] >= 1
    assert reading[-1]["bytes_done"] == reading[-1]["total_bytes"] > 0 and reading[-1]["percent_done"] == 1.0
    assert max(s["snapshots_done"] for s in statuses) == statuses[-1]["total_snapshots"] == 2
    assert summary["ok"] and "requests" not in summary

    pack = max((p for p in (repo_path / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    done = cli.run("check", "--read-data", "--json")
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert all(line["schema"] == SCHEMA for line in lines)
    errors = of_type(lines, "error")
    assert errors and of_type(lines, "summary")[0]["ok"] is False
    for error in errors:  # restic's shape: error.message, during, item
        assert_types(error, {"error": dict, "during": str, "item": str})
        assert isinstance(error["error"]["message"], str) and error["during"] == "check"
    assert any(pack.name in e["item"] for e in errors)


def test_snapshots_json_is_one_array_with_restic_fields(cli, tree):
    root, _, _ = tree
    cli.run("init", check=True)
    first = of_type(lines_of(cli.run("backup", str(root), "--json", "--tag", "a")), "summary")[0]
    done = cli.run("snapshots", "--json")
    assert done.returncode == 0 and done.stdout.decode().count("\n") == 1
    [snap] = json.loads(done.stdout)
    assert_types(snap, {"time": str, "tree": str, "paths": list, "hostname": str, "username": str, "tags": list,
                        "id": str, "short_id": str})
    assert_rfc3339(snap["time"])
    assert (snap["id"], snap["short_id"], snap["tags"]) == (first["snapshot_id"], first["snapshot_id"][:8], ["a"])
    assert snap["paths"] == [str(root)]

    [stats] = lines_of(cli.run("stats", "--json", check=True))
    assert stats["message_type"] == "summary" and stats["schema"] == "strongroom/1"
    assert_types(stats, {"total_size": int, "total_file_count": int, "snapshots_count": int,
                         "total_uncompressed_size": int, "total_blob_count": int})
    assert (stats["snapshots_count"], stats["total_file_count"]) == (1, first["total_files_processed"])
    assert stats["total_size"] == first["total_bytes_processed"] == stats["restore_size"]
    assert stats["total_blob_count"] == first["data_blobs"] + first["tree_blobs"]


def test_human_output_counts_and_dates_read_right(cli, tree, tmp_path):
    root, files, _ = tree
    cli.run("init", check=True)
    backup = cli.run("backup", str(root), check=True).stdout.decode()
    assert f"processed {files} files" in backup
    assert re.search(r"stored [\d.]+ [KMG]iB for [\d.]+ [KMG]iB of files", backup), backup
    one = cli.run("snapshots", check=True).stdout.decode()
    assert one.rstrip().endswith("\n1 snapshot") and "snapshot(s)" not in one
    stamp = re.search(r"\b(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\b", one).group(1)
    assert f"({'full'}, {stamp})" in backup  # the same moment, the same format, in the backup's summary
    cli.run("backup", str(root / "d3"), check=True)
    two = cli.run("snapshots", check=True).stdout.decode()
    assert two.rstrip().endswith("\n2 snapshots")
    restored = cli.run("restore", "latest", "--target", str(tmp_path / "out"), check=True).stdout.decode()
    assert re.search(r"of \d{4}-\d\d-\d\d \d\d:\d\d:\d\d into", restored), restored
    check = cli.run("check", check=True).stdout.decode()
    assert "checked 2 snapshots" in check
    for text in (backup, one, two, restored, check):
        assert not re.search(r"\d (KB|MB|GB)\b", text), text
        assert not re.search(r"\d{4}-\d\d-\d\dT\d", text), text  # no RFC 3339 in text for people


def test_links_are_files_and_a_hard_link_is_restored_once(cli, tree, tmp_path):
    root, files, size = tree
    first = root / "d3" / "f1.bin"
    (root / "d0" / "again.bin").hardlink_to(first)
    (root / "d2" / "link").symlink_to("../d3/f1.bin")
    cli.run("init", check=True)
    lines = lines_of(cli.run("backup", str(root), "--json"))
    last, [summary] = of_type(lines, "status")[-1], of_type(lines, "summary")
    # Each name is a file of the snapshot; the second name of the hard link is not read again.
    assert last["total_files"] == last["files_done"] == summary["total_files_processed"] == files + 2
    assert last["total_bytes"] == last["bytes_done"] == size + first.stat().st_size
    assert summary["bytes_read"] == size
    lines = lines_of(cli.run("restore", "latest", "--target", str(tmp_path / "out"), "--json"))
    done = of_type(lines, "summary")[0]
    assert (done["total_files"], done["files_restored"]) == (files + 2, files + 2)
    assert done["total_bytes"] == done["bytes_restored"] == size
    out = tmp_path / "out" / str(root).lstrip("/")
    assert (out / "d0" / "again.bin").stat().st_ino == (out / "d3" / "f1.bin").stat().st_ino
