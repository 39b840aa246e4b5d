"""Restore options: subpaths, globs, point in time, filters, overwrite modes, dry runs, verification."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from strongroom.repo.repository import Repository
from treeutil import snapshot_tree

FILES = {
    "docs/a.txt": b"alpha\n" * 100,
    "docs/b.md": b"# bravo\n",
    "docs/sub/c.txt": b"charlie\n" * 1000,
    "cache/big.bin": random.Random(7).randbytes(300_000),
    "cache/x.txt": b"x-ray\n",
    "top.txt": b"top level\n",
    "empty.txt": b"",
}


def make_source(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for i, (rel, data) in enumerate(sorted(files.items())):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_000_000_000 + i * 1_000_003))
    return root


def restored(target: Path, src: Path) -> Path:
    return Path(str(target) + str(src.resolve()))


def files_below(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


def run_json(cli, *args: str, expect: int = 0) -> tuple[dict, list[dict]]:
    done = cli.run(*args, "--json")
    assert done.returncode == expect, done.stderr.decode() + done.stdout.decode()
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert lines, "no JSON output"
    assert lines[-1]["type"] == "summary"
    assert all(e["type"] != "summary" for e in lines[:-1])
    return lines[-1], lines[:-1]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return make_source(tmp_path / "src")


@pytest.fixture
def backed_up(src: Path, repo: Repository, cli) -> Path:
    cli.run("backup", str(src), check=True)
    return src


# ---- what to restore -----------------------------------------------------------------------


def test_subpath_restores_only_that_subtree(backed_up: Path, tmp_path: Path, cli) -> None:
    src = backed_up
    target = tmp_path / "t1"
    cli.run("restore", f"latest:{src}/docs", "--target", str(target), check=True)
    assert files_below(target) == {"a.txt", "b.md", "sub/c.txt"}
    assert (target / "sub" / "c.txt").read_bytes() == FILES["docs/sub/c.txt"]
    assert snapshot_tree(target) == snapshot_tree(src / "docs")

    single = tmp_path / "t2"
    cli.run("restore", f"latest:{src}/docs/sub/c.txt", "--target", str(single), check=True)
    assert files_below(single) == {"c.txt"}
    assert (single / "c.txt").read_bytes() == FILES["docs/sub/c.txt"]

    missing = cli.run("restore", f"latest:{src}/nope", "--target", str(tmp_path / "t3"))
    assert missing.returncode != 0
    assert "not in the snapshot" in missing.stderr.decode()
    assert not (tmp_path / "t3").exists() or files_below(tmp_path / "t3") == set()


def test_include_and_exclude_globs(backed_up: Path, tmp_path: Path, cli) -> None:
    src = backed_up
    t = tmp_path / "inc"
    cli.run("restore", "latest", "--target", str(t), "--include", "*.txt", check=True)
    assert files_below(restored(t, src)) == {"docs/a.txt", "docs/sub/c.txt", "cache/x.txt", "top.txt", "empty.txt"}
    assert (restored(t, src) / "docs" / "a.txt").read_bytes() == FILES["docs/a.txt"]

    t = tmp_path / "exc"
    cli.run("restore", "latest", "--target", str(t), "--exclude", "cache", "--exclude", "*.md", check=True)
    assert files_below(restored(t, src)) == {"docs/a.txt", "docs/sub/c.txt", "top.txt", "empty.txt"}
    assert not (restored(t, src) / "cache").exists()

    t = tmp_path / "both"
    cli.run("restore", "latest", "--target", str(t), "--include", f"{src}/docs",
            "--exclude", f"{src}/docs/sub", check=True)
    assert files_below(restored(t, src)) == {"docs/a.txt", "docs/b.md"}

    t = tmp_path / "sub-glob"
    cli.run("restore", f"latest:{src}/cache", "--target", str(t), "--include", "*.bin", check=True)
    assert files_below(t) == {"big.bin"}
    assert (t / "big.bin").read_bytes() == FILES["cache/big.bin"]


# ---- which snapshot ------------------------------------------------------------------------------


def test_latest_at_time_picks_newest_at_or_before(tmp_path: Path, repo: Repository, cli) -> None:
    src = tmp_path / "src"
    src.mkdir()
    versions = {"2024-01-01 10:00": b"january\n", "2024-02-01 10:00": b"february!\n",
                "2024-03-01 10:00": b"march, longer\n"}
    for i, (when, content) in enumerate(versions.items()):
        (src / "state.txt").write_bytes(content)
        (src / f"added-{i}").write_bytes(b"%d\n" % i)
        cli.run("backup", str(src), "--time", when, check=True)

    def state_at(at: str | None) -> tuple[bytes, set[str]]:
        target = tmp_path / f"at-{at or 'latest'}".replace(" ", "_").replace(":", "")
        args = ("--at", at) if at else ()
        run_json(cli, "restore", "latest", "--target", str(target), *args)
        out = restored(target, src)
        return (out / "state.txt").read_bytes(), files_below(out)

    assert state_at("2024-02-15 00:00") == (b"february!\n", {"state.txt", "added-0", "added-1"})
    assert state_at("2024-02-01 10:00")[0] == b"february!\n"  # at, not only before
    assert state_at("2024-02-01 09:59:59")[0] == b"january\n"
    assert state_at("2024-01-01 10:00") == (b"january\n", {"state.txt", "added-0"})
    assert state_at("2030-01-01") == (b"march, longer\n", {"state.txt", "added-0", "added-1", "added-2"})
    assert state_at(None)[0] == b"march, longer\n"

    too_early = cli.run("restore", "latest", "--at", "2023-12-31 23:59", "--target", str(tmp_path / "early"))
    assert too_early.returncode != 0
    assert "no snapshot at or before" in too_early.stderr.decode()
    assert not (tmp_path / "early").exists()


def test_host_tag_and_path_narrow_latest(tmp_path: Path, repo: Repository, cli) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (two / "f").write_bytes(b"from two\n")

    def backup(content: bytes, *args: str) -> None:
        (one / "f").write_bytes(content)
        cli.run("backup", *args, check=True)

    backup(b"alpha daily\n", str(one), "--host", "alpha", "--tag", "daily", "--time", "2024-01-01 00:00")
    backup(b"beta weekly\n", str(one), "--host", "beta", "--tag", "weekly,offsite", "--time", "2024-01-02 00:00")
    backup(b"alpha again\n", str(two), "--host", "alpha", "--tag", "daily", "--time", "2024-01-03 00:00")

    def latest_f(*filters: str) -> bytes:
        target = tmp_path / ("t" + "".join(filters).replace("/", "_"))
        cli.run("restore", "latest", "--target", str(target), *filters, check=True)
        found = [p for p in target.rglob("f")]
        assert len(found) == 1
        return found[0].read_bytes()

    assert latest_f() == b"from two\n"
    assert latest_f("--host", "alpha") == b"from two\n"
    assert latest_f("--host", "alpha", "--path", str(one)) == b"alpha daily\n"
    assert latest_f("--host", "beta") == b"beta weekly\n"
    assert latest_f("--tag", "weekly") == b"beta weekly\n"
    assert latest_f("--tag", "weekly,offsite") == b"beta weekly\n"
    assert latest_f("--path", str(one)) == b"beta weekly\n"

    nothing = cli.run("restore", "latest", "--host", "beta", "--tag", "daily", "--target", str(tmp_path / "none"))
    assert nothing.returncode != 0
    assert "no snapshot" in nothing.stderr.decode()


# ---- what happens to files already there ------------------------------------------------------


def test_overwrite_modes(backed_up: Path, tmp_path: Path, cli) -> None:
    src = backed_up
    target = tmp_path / "target"
    first, _ = run_json(cli, "restore", "latest", "--target", str(target))
    total = len(FILES)
    assert first["files_to_write"] == total and first["files_skipped"] == 0
    out = restored(target, src)

    def damage() -> None:
        (out / "top.txt").write_bytes(b"changed locally, longer than before\n")
        (out / "docs" / "b.md").write_bytes(b"# BRAVO\n")  # same size, new mtime
        (out / "cache" / "x.txt").unlink()

    damage()
    summary, _ = run_json(cli, "restore", "latest", "--target", str(target), "--overwrite", "never")
    assert (out / "top.txt").read_bytes() == b"changed locally, longer than before\n"
    assert (out / "docs" / "b.md").read_bytes() == b"# BRAVO\n"
    assert (out / "cache" / "x.txt").read_bytes() == FILES["cache/x.txt"]  # missing ones are still restored
    assert summary["files_skipped"] == total - 1 and summary["files_to_write"] == 1

    summary, _ = run_json(cli, "restore", "latest", "--target", str(target), "--overwrite", "if-changed")
    assert (out / "top.txt").read_bytes() == FILES["top.txt"]
    assert (out / "docs" / "b.md").read_bytes() == FILES["docs/b.md"]
    assert summary["files_to_write"] == 2
    assert summary["files_skipped"] == total - 2
    assert snapshot_tree(out) == snapshot_tree(src)

    damage()
    summary, _ = run_json(cli, "restore", "latest", "--target", str(target), "--overwrite", "always")
    assert summary["files_skipped"] == 0
    assert summary["files_to_write"] == total
    assert summary["bytes_to_write"] == sum(len(v) for v in FILES.values())
    assert snapshot_tree(out) == snapshot_tree(src)

    # the default is if-changed: a current tree is left alone
    summary, _ = run_json(cli, "restore", "latest", "--target", str(target))
    assert summary["files_skipped"] == total and summary["files_to_write"] == 0
    assert summary["bytes_written"] == 0


def test_dry_run_writes_nothing(backed_up: Path, tmp_path: Path, cli) -> None:
    src = backed_up
    fresh = tmp_path / "fresh"
    summary, _ = run_json(cli, "restore", "latest", "--target", str(fresh), "--dry-run")
    assert summary["dry_run"] is True
    assert summary["files_to_write"] == len(FILES)
    assert summary["bytes_to_write"] == sum(len(v) for v in FILES.values())
    assert not fresh.exists()

    existing = tmp_path / "existing"
    cli.run("restore", "latest", "--target", str(existing), check=True)
    out = restored(existing, src)
    (out / "top.txt").write_bytes(b"edited\n")
    (out / "docs" / "a.txt").unlink()
    before = snapshot_tree(existing)
    done = cli.run("restore", "latest", "--target", str(existing), "--dry-run", "--overwrite", "always")
    assert done.returncode == 0, done.stderr.decode()
    assert b"would restore" in done.stdout
    assert snapshot_tree(existing) == before
    assert (out / "top.txt").read_bytes() == b"edited\n"


# ---- verification and resuming --------------------------------------------------------------------


def test_verify_and_rerun_of_an_interrupted_restore(backed_up: Path, tmp_path: Path, cli) -> None:
    src = backed_up
    target = tmp_path / "target"
    summary, events = run_json(cli, "restore", "latest", "--target", str(target), "--verify")
    assert summary["errors"] == 0
    assert summary["files_verified"] == len(FILES)
    assert not [e for e in events if e["type"] == "error"]
    out = restored(target, src)
    assert snapshot_tree(out) == snapshot_tree(src)

    # What an interrupted run leaves: a short file, a rewritten one, one whose times were never set.
    with open(out / "cache" / "big.bin", "r+b") as f:
        f.truncate(100_000)
    (out / "docs" / "sub" / "c.txt").write_bytes(b"X" * len(FILES["docs/sub/c.txt"]))
    os.utime(out / "docs" / "sub" / "c.txt", ns=(0, 0))
    os.utime(out / "top.txt", ns=(5, 5))

    summary, events = run_json(cli, "restore", "latest", "--target", str(target), "--verify")
    assert summary["errors"] == 0
    assert summary["files_to_write"] == 3
    assert summary["files_skipped"] == len(FILES) - 3
    assert summary["files_verified"] == len(FILES)
    assert snapshot_tree(out) == snapshot_tree(src)

    # Content changed behind size and time: if-changed cannot see it, --verify does.
    tampered = out / "docs" / "a.txt"
    st = tampered.stat()
    tampered.write_bytes(b"A" * st.st_size)
    os.utime(tampered, ns=(st.st_atime_ns, st.st_mtime_ns))
    summary, events = run_json(cli, "restore", "latest", "--target", str(target), "--verify", expect=3)
    errors = [e for e in events if e["type"] == "error"]
    assert summary["errors"] == 1 and len(errors) == 1
    assert errors[0]["path"].endswith("docs/a.txt") and "differs" in errors[0]["message"]
    summary, _ = run_json(cli, "restore", "latest", "--target", str(target), "--verify", "--overwrite", "always")
    assert summary["errors"] == 0
    assert snapshot_tree(out) == snapshot_tree(src)


def test_json_lines_end_with_a_summary(backed_up: Path, tmp_path: Path, cli) -> None:
    summary, events = run_json(cli, "restore", "latest", "--target", str(tmp_path / "t"))
    assert summary["total_files"] == len(FILES)
    assert summary["total_bytes"] == sum(len(v) for v in FILES.values())
    assert summary["errors"] == 0
    assert all(isinstance(e, dict) and "type" in e for e in events)
    human = cli.run("restore", "latest", "--target", str(tmp_path / "t"), check=True)
    assert b"already current" in human.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(human.stdout.decode().splitlines()[0])
