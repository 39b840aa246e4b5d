"""The whole cycle on every real WebDAV server: init, backup, change, back up
again, restore, check --read-data, all through the command line."""

from __future__ import annotations

import json
import random
from pathlib import Path

from conftest import CLI
from treeutil import snapshot_tree

ENV = {"STRONGROOM_WEBDAV_DEADLINE": "60", "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05",
       "STRONGROOM_WEBDAV_BUDGET": "off"}


def summary(done) -> dict:
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def test_backup_restore_and_check_on_each_server(webdav_server, tmp_path: Path):
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    rnd = random.Random(3)
    (src / "big.bin").write_bytes(rnd.randbytes(3 * 1024 * 1024))
    (src / "sub" / "text.txt").write_text("strongroom\n" * 5000)
    (src / "sub" / "deeper" / "empty").write_bytes(b"")
    (src / "link").symlink_to("sub/text.txt")
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    env = {**ENV, "STRONGROOM_REPO": webdav_server.storage_url() + "repo/",
           "STRONGROOM_WEBDAV_PASSWORD": webdav_server.password}

    assert summary(cli.run("init", "--pack-size", "1", "--json", env=env))["encrypted"] is True
    first = summary(cli.run("backup", str(src), "--json", env=env))
    assert first["kind"] == "full" and first["files_new"] == 4  # the symlink is a file, as restic counts it
    (src / "sub" / "text.txt").write_text("changed\n")
    second = summary(cli.run("backup", str(src), "--json", env=env))
    assert second["kind"] == "incremental" and second["files_changed"] == 1

    target = tmp_path / "restore"
    restored = summary(cli.run("restore", "latest", "--target", str(target), "--verify", "--json", env=env))
    assert restored["files_verified"] == 3
    assert snapshot_tree(target / src.relative_to("/")) == snapshot_tree(src)

    report = summary(cli.run("check", "--read-data", "--json", env=env))
    assert report["ok"] and report["packs_read"] == report["packs"] >= 3
    listed = cli.run("snapshots", "--json", env=env)
    assert len(summary(listed)) == 2
