"""The totals a backup counts ahead of its walk, for progress and its ETA.

The count is a second walk of the sources in a thread of its own; it must
agree with what the backup then stores (same excludes, same size limit, a
single file as a source), and it is left out when nobody is shown progress.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from strongroom.cli.output import Reporter
from strongroom.engine.backup import Backup, BackupOptions
from strongroom.engine.walk import ExcludeRules
from strongroom.repo.repository import Repository


def make_tree(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    (root / "skip").mkdir()
    (root / "tagged").mkdir()
    (root / "a" / "one.txt").write_bytes(b"1" * 100)
    (root / "a" / "b" / "two.txt").write_bytes(b"2" * 200)
    (root / "a" / "big.bin").write_bytes(b"3" * 50_000)
    (root / "skip" / "hidden.txt").write_bytes(b"4" * 300)
    (root / "tagged" / ".nobackup").write_bytes(b"")
    (root / "tagged" / "inside.txt").write_bytes(b"5" * 400)
    (root / "a" / "link").symlink_to("one.txt")
    os.mkfifo(root / "a" / "pipe")


def run(repo: Repository, **options) -> Backup:
    backup = Backup(repo, BackupOptions(**options))
    result = backup.run()
    assert result.snapshot is not None and not result.errors, result.errors
    return backup


def stored_files(backup: Backup) -> tuple[int, int]:
    s = backup.counters
    return s.get("files_done"), s.get("bytes_done")


def test_the_count_agrees_with_the_walk(tmp_path: Path, repo: Repository) -> None:
    root = tmp_path / "src"
    make_tree(root)
    backup = run(repo, paths=(str(root),))
    assert backup.counters.totals_final
    # Files, the symlink and the fifo are files; directories are not.
    assert backup.counters.totals == {"files": 8, "bytes": 51_000}
    assert (backup.counters.total("files"), backup.counters.total("bytes")) == stored_files(backup)


def test_the_count_keeps_the_walks_rules(tmp_path: Path, repo: Repository) -> None:
    root = tmp_path / "src"
    make_tree(root)
    rules = ExcludeRules.build(patterns=["skip"], if_present=[".nobackup"], larger_than="10K")
    backup = run(repo, paths=(str(root),), excludes=rules)
    assert backup.counters.totals == {"files": 4, "bytes": 300}
    assert (backup.counters.total("files"), backup.counters.total("bytes")) == stored_files(backup)


def test_a_single_file_and_a_folder_inside_another_source(tmp_path: Path, repo: Repository) -> None:
    root = tmp_path / "src"
    make_tree(root)
    backup = run(repo, paths=(str(root / "a" / "one.txt"),))
    assert backup.counters.totals == {"files": 1, "bytes": 100}
    # A folder inside another source is counted once.
    backup = run(repo, paths=(str(root / "a"), str(root / "a" / "b")))
    assert backup.counters.totals == {"files": 5, "bytes": 50_300}
    assert (backup.counters.total("files"), backup.counters.total("bytes")) == stored_files(backup)


def test_no_count_when_nobody_is_shown_progress(tmp_path: Path, repo: Repository) -> None:
    root = tmp_path / "src"
    make_tree(root)
    threads: list[str] = []
    original = threading.Thread.start

    def spy(self) -> None:
        threads.append(self.name)
        original(self)

    threading.Thread.start = spy
    try:
        counted = run(repo, paths=(str(root),))
        uncounted = run(repo, paths=(str(root),), count_totals=False)
    finally:
        threading.Thread.start = original
    assert threads.count("scan") == 1
    assert uncounted.counters.totals == {} and not uncounted.counters.totals_final
    # The same backup either way.
    assert stored_files(uncounted) == stored_files(counted)


def test_the_command_line_counts_only_for_a_bar_or_json() -> None:
    # The tests' stderr is no terminal: no bar, so no count unless --json.
    assert not Reporter(False, "backup").shows_progress
    assert not Reporter(False, "backup", quiet=True).shows_progress
    assert Reporter(True, "backup").shows_progress
