"""Index objects a consolidated index supersedes are not used by readers,
and check names them as an interrupted prune's leftovers."""

from __future__ import annotations

import json
import random

from conftest import reopen
from strongroom.repo.pack import DATA, PackedBlob


def test_readers_and_check_skip_superseded_index_objects(cli, repo_path, cache_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(random.Random(1).randbytes(300_000))
    cli.run("init", check=True)
    cli.run("backup", str(src), check=True)

    repo = reopen(repo_path, cache_dir)
    repo.load_index()
    real = {pack_id: list(blobs) for pack_id, blobs in repo.index.packs.items()}
    old_names = sorted(info.name for info in repo.storage.list("index"))
    # An old index object naming a pack that is gone, as one a prune replaced
    # and then was killed before deleting would.
    gone = bytes(range(32))
    stale = repo.write_index_object({gone: [PackedBlob(DATA, bytes(32), 0, 100, 100)]})
    consolidated = repo.write_index_object(real, [bytes.fromhex(n.rsplit("/", 1)[-1])
                                                  for n in [*old_names, stale]])

    fresh = reopen(repo_path, cache_dir)
    fresh.load_index()
    assert gone not in fresh.index.packs and set(fresh.index.packs) == set(real)
    assert fresh.superseded_index == sorted([*old_names, stale])

    done = cli.run("check", "--read-data", "--json")
    report = json.loads(done.stdout.decode().splitlines()[-1])
    assert done.returncode == 0 and report["ok"] and not report["problems"], report
    assert any("replaced by a consolidated index" in w for w in report["warnings"]), report
    cli.run("restore", "latest", "--target", str(tmp_path / "back"), check=True)
    assert (tmp_path / "back" / str(src).lstrip("/") / "data.bin").read_bytes() == (src / "data.bin").read_bytes()

    # The next prune removes them, and nothing is left to warn about.
    cli.run("prune", check=True)
    names = sorted(info.name for info in reopen(repo_path, cache_dir).storage.list("index"))
    assert stale not in names and not set(old_names) & set(names) and consolidated not in names
    report = json.loads(cli.run("check", "--read-data", "--json").stdout.decode().splitlines()[-1])
    assert report["ok"] and not report["warnings"], report
