"""A source tree deeper than any recursion limit: the backup walks it with a
stack of its own, and what the system refuses (paths past PATH_MAX) is one
error for that place, never the end of the backup."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

DEPTH = 10_000
FILE_EVERY = 500


def make_deep_tree(root: Path, depth: int) -> None:
    """Directories `d/d/d/...` `depth` deep, with a file every FILE_EVERY levels;
    made through directory descriptors, since the paths outgrow PATH_MAX."""
    root.mkdir(parents=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(depth):
            if level % FILE_EVERY == 0:
                out = os.open("f.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
                os.write(out, f"level {level}\n".encode())
                os.close(out)
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


@pytest.fixture
def deep_tree(tmp_path):
    root = tmp_path / "deep"
    make_deep_tree(root, DEPTH)
    yield root
    # Python's rmtree recurses per level; GNU rm does not.
    subprocess.run(["rm", "-rf", str(root)], check=True)


def json_lines(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]


def test_a_tree_10000_levels_deep_is_backed_up_as_far_as_the_system_allows(cli, deep_tree):
    cli.run("init", check=True)
    done = cli.run("backup", str(deep_tree), "--json")
    stderr = done.stderr.decode()
    assert "RecursionError" not in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert done.returncode == 3, stderr[-2000:]
    events = json_lines(done.stdout)
    errors = [e for e in events if e["type"] == "error"]
    # One error, at the first place whose path is too long for the system; nothing else is lost.
    assert len(errors) == 1, errors
    assert errors[0]["message"] in ("cannot stat: File name too long", "cannot list directory: File name too long")
    assert len(os.fsencode(errors[0]["path"])) > 4000
    summary = [e for e in events if e["type"] == "summary"][-1]
    reachable = (4096 - len(os.fsencode(str(deep_tree)))) // 2  # levels of "/d" that fit in PATH_MAX
    assert summary["files_new"] == len(range(0, reachable, FILE_EVERY))
    assert summary["dirs"] >= reachable - 2

    # An unchanged second run goes just as deep, through the stored trees of the first.
    done = cli.run("backup", str(deep_tree), "--json")
    assert done.returncode == 3
    again = [e for e in json_lines(done.stdout) if e["type"] == "summary"][-1]
    assert again["files_unmodified"] == summary["files_new"] and again["files_new"] == 0
