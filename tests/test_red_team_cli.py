"""An adversary's pass over find, dump, cat, cache, tag, rewrite, repair and
the command line around them: each test is a way the new commands could lose
data, print a secret or be led outside what they were asked to touch.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from conftest import PASSWORD
from strongroom.engine.repair import repair_index
from strongroom.engine.tree_walk import needed_blobs
from strongroom.repo.repository import Repository
from test_hostile_webdav import _small_repository, edited_multistatus, served, stage  # noqa: F401

_DAV = "{DAV:}"


def _needed(stage) -> set[bytes]:
    """Blobs the snapshots need, read through an honest open of the repository."""
    repo = Repository.open(stage.retrying(stage.client()), PASSWORD, cache_root="")
    return needed_blobs(repo, [bytes.fromhex(s.tree) for s in repo.list_snapshots()])


def _indexed(stage, blobs: set[bytes]) -> set[bytes]:
    repo = Repository.open(stage.retrying(stage.client()), PASSWORD, cache_root="")
    repo.load_index()
    return {b for b in blobs if repo.index.get(b) is not None}


def _wrong_pack_sizes(root, responses):
    for r in responses:
        href = r.findtext(f"{_DAV}href") or ""
        length = r.find(f".//{_DAV}getcontentlength")
        if length is not None and len(href.rstrip("/").rsplit("/", 1)[-1]) == 64:
            length.text = str(int(length.text) + 1)


def test_repair_index_keeps_a_pack_whose_listed_size_lies(stage, tmp_path):
    """A listing that says a pack is one byte longer than it is makes its header
    unreadable at that size: the old index's description must survive it."""
    repo = _small_repository(stage, tmp_path)
    needed = _needed(stage)
    assert needed
    stage.scripted.on(lambda method, path, query, environ: method == "PROPFIND" and "/data/" in path,
                      edited_multistatus(_wrong_pack_sizes))
    repair_index(repo)
    stage.scripted.clear()
    indexed = _indexed(stage, needed)
    assert indexed == needed, f"{len(needed - indexed)} blob(s) a snapshot needs lost their index entry"
