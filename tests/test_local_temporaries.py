"""Write-then-rename files that kill -9 leaves in a local repository: check
names them, prune (under its exclusive lock) removes them, all but a lock
file being written now."""

from __future__ import annotations

import json
import os
import time

from strongroom.storage import LocalStorage


def summary(done) -> dict:
    return [json.loads(x) for x in done.stdout.decode().splitlines() if '"summary"' in x][-1]


def test_leftover_temporary_files_are_reported_and_pruned(cli, repo_path, src):
    cli.run("init", check=True)
    cli.run("backup", str(src), check=True)
    [fanout] = [d for d in (repo_path / "data").iterdir() if any(d.iterdir())][:1]
    old = fanout / (".tmp-" + "a" * 32)
    old.write_bytes(b"x" * 1000)
    hour_ago = time.time() - 7200
    os.utime(old, (hour_ago, hour_ago))
    fresh = repo_path / "locks" / (".tmp-" + "b" * 32)  # a lock being taken now
    fresh.write_bytes(b"y" * 10)
    # Not ours: never touched, whatever its age.
    stranger = repo_path / "data" / ".tmp-notours"
    stranger.write_bytes(b"z")
    os.utime(stranger, (hour_ago, hour_ago))

    done = cli.run("check", check=True)
    assert "warning: 2 temporary files of 1010 bytes were left by interrupted writes" in done.stdout.decode()

    done = cli.run("prune", "--json", check=True)
    assert summary(done)["temporaries"] == 1
    assert not old.exists() and fresh.exists() and stranger.exists()
    assert "1 temporary file of" in cli.run("check", check=True).stdout.decode()


def test_remove_temporary_takes_only_temporary_names(tmp_path):
    storage = LocalStorage(str(tmp_path / "r"))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config").write_bytes(b"keep")
    for name in ("config", "../x/.tmp-" + "a" * 32, "/etc/.tmp-" + "a" * 32, ".tmp-short"):
        try:
            storage.remove_temporary(name)
        except Exception as e:
            assert "invalid temporary file name" in str(e)
        else:
            raise AssertionError(f"{name} was accepted")
    assert (tmp_path / "r" / "config").read_bytes() == b"keep"
