"""Prune never deletes on the strength of an absence it could not confirm: a
storage that leaves things out of its listings, or cuts what it reads, makes
prune stop with nothing deleted. (Listings that fail outright are errors in
the storage layer itself: see test_storage_conformance and the WebDAV tests.)"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from conftest import PASSWORD
from strongroom.engine.backup import BackupOptions, run_backup
from strongroom.engine.forget import plan_remove, remove_snapshots
from strongroom.engine.prune import plan_prune, run_prune
from strongroom.errors import IntegrityError, ListingFailed, UsageError
from strongroom.repo.repository import Repository
from strongroom.storage import LocalStorage
from strongroom.storage.base import Storage


class Lying(Storage):
    """Passes everything to a real local storage, except what a test tells it to hide or cut."""

    def __init__(self, inner: LocalStorage) -> None:
        self.inner = inner
        self.url = inner.url
        self.hide: set[str] = set()  # object names, or folder prefixes ending in "/"
        self.cut: set[str] = set()  # objects whose reads come back short

    def _hidden(self, name: str) -> bool:
        return name in self.hide or any(h.endswith("/") and name.startswith(h) for h in self.hide)

    def list(self, prefix):
        return iter([i for i in self.inner.list(prefix) if not self._hidden(i.name)])

    def read(self, name, offset=0, length=None):
        data = self.inner.read(name, offset, length)
        return data[: len(data) // 2] if name in self.cut else data

    def write(self, name, data):
        self.inner.write(name, data)

    def delete(self, name):
        self.inner.delete(name)

    def stat(self, name):
        return self.inner.stat(name)

    def exists(self):
        return self.inner.exists()

    def temporaries(self):
        return self.inner.temporaries()


def files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.fixture
def two_points(tmp_path, repo_path, cache_dir):
    """A repository with two points; the first has a file the second does not."""
    repo = Repository.init(LocalStorage(str(repo_path)), PASSWORD, pack_size=256 * 1024, cache_root=str(cache_dir))
    src = tmp_path / "src"
    src.mkdir()
    (src / "kept.bin").write_bytes(random.Random(1).randbytes(400_000))
    (src / "gone.bin").write_bytes(random.Random(2).randbytes(400_000))
    first = run_backup(repo, BackupOptions(paths=(str(src),))).snapshot
    (src / "gone.bin").unlink()
    second = run_backup(repo, BackupOptions(paths=(str(src),))).snapshot
    lying = Lying(LocalStorage(str(repo_path)))
    return Repository.open(lying, PASSWORD, cache_root=""), lying, first, second


def test_an_empty_snapshot_listing_deletes_nothing_without_allow_remove_all(two_points, repo_path):
    repo, lying, _, _ = two_points
    before = files(repo_path)
    lying.hide.add("snapshots/")
    with pytest.raises(UsageError, match="no recovery point was found in snapshots/.*--allow-remove-all"):
        plan_prune(repo)
    assert files(repo_path) == before


def test_forget_then_prune_checks_the_points_it_kept_are_listed(two_points, repo_path):
    repo, lying, first, second = two_points
    remove_snapshots(repo, plan_remove([first]))
    before = files(repo_path)
    lying.hide.add(f"snapshots/{second.id}")
    with pytest.raises(ListingFailed, match=f"leaves out 1 recovery point.*{second.id[:8]}"):
        plan_prune(repo, must_see={second.id})
    assert files(repo_path) == before
    lying.hide.clear()
    run_prune(repo, plan_prune(repo, must_see={second.id}))


def test_a_needed_pack_left_out_of_the_data_listing_stops_prune(two_points, repo_path):
    repo, lying, first, second = two_points
    packs = sorted(p for p in (repo_path / "data").rglob("*") if p.is_file())
    before = files(repo_path)
    lying.hide.update(f"data/{p.parent.name}/{p.name}" for p in packs)
    with pytest.raises(IntegrityError, match="holds data a recovery point needs and is not in the listing"):
        plan_prune(Repository.open(lying, PASSWORD, cache_root=""))
    assert files(repo_path) == before


def test_an_unneeded_pack_left_out_of_the_listing_is_looked_up_before_it_leaves_the_index(two_points, repo_path):
    repo, lying, first, second = two_points
    remove_snapshots(repo, plan_remove([first]))
    plan = plan_prune(repo)
    assert plan.delete, "the forgotten file's packs are unused"
    unused = plan.delete[0].hex()
    lying.hide.add(f"data/{unused[:2]}/{unused}")
    before = files(repo_path)
    with pytest.raises(ListingFailed, match=f"left out data/{unused[:2]}/{unused}, which exists"):
        plan_prune(Repository.open(lying, PASSWORD, cache_root=""))
    assert files(repo_path) == before


def test_an_index_object_read_cut_short_is_not_taken_for_a_leftover(two_points, repo_path):
    repo, lying, _, _ = two_points
    index = sorted((repo_path / "index").iterdir())[0]
    lying.cut.add(f"index/{index.name}")
    before = files(repo_path)
    with pytest.raises(ListingFailed, match=f"index/{index.name} read .* bytes where the target says"):
        plan_prune(Repository.open(lying, PASSWORD, cache_root=""))
    assert files(repo_path) == before
