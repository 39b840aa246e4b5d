"""The helper that reads a backup's metadata ahead of its walk.

It must read what the walk will read, in the walk's order, and nothing the
walk leaves out (excluded names, excluded contents, other file systems); it
must start as a bare interpreter with nothing from our environment, be gone
when the backup ends, and never make a backup fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from strongroom.engine import prefetch
from strongroom.engine.backup import INLINE_LIMIT, Backup, BackupOptions
from strongroom.engine.walk import ExcludeRules
from strongroom.repo.repository import Repository


def make_tree(root: Path) -> None:
    for folder in ("b/inner", "a", "skip/deep", "tagged/below", "cache/x"):
        (root / folder).mkdir(parents=True)
    for name in ("a/1", "b/2", "b/inner/3", "skip/deep/4", "tagged/below/5", "cache/x/6", "top"):
        (root / name).write_bytes(b"x")
    (root / "tagged" / ".nobackup").write_bytes(b"")
    (root / "cache" / "CACHEDIR.TAG").write_bytes(b"Signature: 8a477f597d28d172789f06886806bc55\n")
    (root / "link").symlink_to("b")  # never followed


def listed(monkeypatch, top: Path, rules: ExcludeRules) -> list[str]:
    seen: list[str] = []
    real = os.scandir

    def spy(path):
        seen.append(os.fsdecode(path)[len(str(top)):] or "/")
        return real(path)

    monkeypatch.setattr(prefetch.os, "scandir", spy)
    prefetch.walk(os.fsencode(top), rules)
    return seen


def test_it_lists_what_the_walk_lists_in_its_order(tmp_path: Path, monkeypatch) -> None:
    make_tree(tmp_path)
    assert listed(monkeypatch, tmp_path, ExcludeRules()) == [
        "/", "/a", "/b", "/b/inner", "/cache", "/cache/x", "/skip", "/skip/deep", "/tagged", "/tagged/below"]


def test_it_keeps_the_walks_rules(tmp_path: Path, monkeypatch) -> None:
    make_tree(tmp_path)
    rules = ExcludeRules.build(patterns=["skip"], if_present=[".nobackup"], caches=True)
    # The folders holding a marker are listed (to find it), not what is below them.
    assert listed(monkeypatch, tmp_path, rules) == ["/", "/a", "/b", "/b/inner", "/cache", "/tagged"]


def test_the_helper_runs_bare_and_ends_by_itself(tmp_path: Path, monkeypatch) -> None:
    make_tree(tmp_path)
    calls: list = []
    real_popen = subprocess.Popen

    def spy(argv, **kwargs):
        calls.append((argv, kwargs))
        return real_popen(argv, **kwargs)

    monkeypatch.setattr(prefetch.subprocess, "Popen", spy)
    monkeypatch.setenv("STRONGROOM_PASSWORD", "prefetch-must-not-see-this")
    helper = prefetch.start([str(tmp_path), str(tmp_path / "top")], ExcludeRules.build(patterns=["skip"]))
    assert helper is not None
    assert helper.proc.wait(timeout=60) == 0
    [(argv, kwargs)] = calls
    # No environment (no secret, no PYTHONPATH: -I -S and the package's own root), no path in argv.
    assert kwargs["env"] == {} and argv[1:3] == ["-I", "-S"] and str(tmp_path) not in " ".join(argv)
    # The same program run by hand, showing its environment: empty but for
    # what the interpreter sets itself.
    code = prefetch._CODE.replace("main()", "main(); import os; print(sorted(os.environ))")
    done = subprocess.run([*argv[:4], code, *argv[5:]], env={},
                          input=json.dumps({"paths": [str(tmp_path)], "patterns": [], "if_present": [],
                                            "caches": False, "one_file_system": True}).encode(),
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.decode().replace("'", '"')) in ([], ["LC_CTYPE"])


def test_a_backup_starts_it_and_stops_it(tmp_path: Path, repo: Repository, monkeypatch) -> None:
    """With a parent it reads metadata ahead; when every file is read (a first
    backup, --full), the small files' contents too (tests/test_backup_small_files.py)."""
    src = tmp_path / "src"
    make_tree(src)
    started: list = []
    real_start = prefetch.start

    def spy(paths, rules, contents_below=0):
        helper = real_start(paths, rules, contents_below)
        started.append((contents_below, helper))
        return helper

    monkeypatch.setattr(prefetch, "start", spy)
    Backup(repo, BackupOptions(paths=(str(src),))).run()
    result = Backup(repo, BackupOptions(paths=(str(src),))).run()
    Backup(repo, BackupOptions(paths=(str(src),), full=True)).run()
    Backup(repo, BackupOptions(paths=(str(src),), prefetch=False)).run()
    assert [below for below, _ in started] == [INLINE_LIMIT, 0, INLINE_LIMIT]
    for _, helper in started:  # each one stopped when its backup ended
        assert isinstance(helper.proc, subprocess.Popen) and helper.proc.returncode is not None
    assert result.summary["files_unmodified"] == result.summary["total_files_processed"]


@pytest.mark.parametrize("executable", ["", "/nonexistent/python"])
def test_a_helper_that_cannot_start_costs_nothing_but_time(tmp_path: Path, repo: Repository, monkeypatch,
                                                           executable: str) -> None:
    src = tmp_path / "src"
    make_tree(src)
    Backup(repo, BackupOptions(paths=(str(src),))).run()
    monkeypatch.setattr(prefetch.sys, "executable", executable)
    assert prefetch.start([str(src)], ExcludeRules()) is None
    result = Backup(repo, BackupOptions(paths=(str(src),))).run()
    assert result.snapshot is not None and not result.errors
