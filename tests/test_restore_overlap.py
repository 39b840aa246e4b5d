"""Restore creates its files while its workers write the ones already made.

A pack is written only once every file it feeds exists; a file that cannot
be created fails alone; a cancel in the middle of the creating leaves no
file that looks restored and is not.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from strongroom.engine import restore as restore_module
from strongroom.engine.backup import BackupOptions, run_backup
from strongroom.engine.restore import Restore, RestoreOptions
from strongroom.errors import StrongroomError
from strongroom.repo.repository import Repository

FILES = 300


def make_source(root: Path) -> dict[str, bytes]:
    """Many small files, the first and the last with the same content, so one
    pack feeds the first file created and the last."""
    contents = {}
    shared = os.urandom(5000)
    for i in range(FILES):
        folder = root / f"d{i // 50:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        data = shared if i in (0, FILES - 1) else os.urandom(100 + i) + bytes(3000) * (i % 3)
        (folder / f"f{i:04d}").write_bytes(data)
        contents[f"d{i // 50:02d}/f{i:04d}"] = data
    return contents


@pytest.fixture
def snapshot(tmp_path: Path, repo: Repository):
    src = tmp_path / "src"
    contents = make_source(src)
    snap = run_backup(repo, BackupOptions(paths=(str(src),))).snapshot
    return src, contents, snap


def restored(target: Path, src: Path) -> dict[str, bytes]:
    base = target / str(src).lstrip("/")
    return {str(p.relative_to(base)): p.read_bytes() for p in base.rglob("f*") if p.is_file()}


def test_every_file_is_made_before_anything_is_written_into_it(tmp_path: Path, repo: Repository, snapshot,
                                                              monkeypatch) -> None:
    src, contents, snap = snapshot
    monkeypatch.setattr(restore_module, "CREATED_BATCH", 7)
    made: set[str] = set()
    written_before_made: list[str] = []
    real_open, real_pwrite = os.open, os.pwrite
    names: dict[int, str] = {}

    def spy_open(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        name = os.fsdecode(path)
        if flags & os.O_CREAT:
            made.add(name)
        names[fd] = name
        return fd

    def spy_pwrite(fd, data, offset):
        if names.get(fd) not in made:
            written_before_made.append(names.get(fd))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(restore_module.os, "open", spy_open)
    monkeypatch.setattr(restore_module.os, "pwrite", spy_pwrite)
    target = tmp_path / "target"
    result = Restore(repo, snap, RestoreOptions(target=str(target))).run()
    assert not result.errors and not written_before_made
    assert restored(target, src) == contents
    assert result.summary["files_restored"] == FILES


def test_a_file_that_cannot_be_made_fails_alone(tmp_path: Path, repo: Repository, snapshot, monkeypatch) -> None:
    src, contents, snap = snapshot
    real_open = os.open

    def refuse_one(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and os.fsdecode(path) == "f0150":
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(restore_module.os, "open", refuse_one)
    target = tmp_path / "target"
    result = Restore(repo, snap, RestoreOptions(target=str(target))).run()
    assert [e["path"].rsplit("/", 1)[-1] for e in result.errors] == ["f0150"]
    expected = {k: v for k, v in contents.items() if not k.endswith("f0150")}
    assert restored(target, src) == expected


def test_a_cancel_while_files_are_made_leaves_only_whole_files(tmp_path: Path, repo: Repository, snapshot,
                                                               monkeypatch) -> None:
    src, contents, snap = snapshot
    monkeypatch.setattr(restore_module, "CREATED_BATCH", 10)
    cancel = threading.Event()
    real_open = os.open
    creations = []

    def cancel_midway(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            creations.append(path)
            if len(creations) == FILES // 2:
                cancel.set()
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(restore_module.os, "open", cancel_midway)
    target = tmp_path / "target"
    with pytest.raises(StrongroomError, match="cancelled"):
        Restore(repo, snap, RestoreOptions(target=str(target)), cancel=cancel).run()
    assert FILES // 2 <= len(creations) < FILES
    left = restored(target, src)
    assert all(contents[name] == data for name, data in left.items())
    # What is left is whole, with the snapshot's mtime: a rerun takes it as current.
    monkeypatch.setattr(restore_module.os, "open", real_open)
    rerun = Restore(repo, snap, RestoreOptions(target=str(target))).run()
    assert rerun.summary["files_skipped"] == len(left)
    assert restored(target, src) == contents
