"""The whole cycle on S3 (the radosgw of tests/s3_server.py), through the
command line: init, backup, change, back up again, snapshots, restore,
check --read-data, forget --prune; the credentials from the environment."""

from __future__ import annotations

import json
import random
from pathlib import Path

from conftest import CLI
from treeutil import snapshot_tree

ENV = {"STRONGROOM_WEBDAV_DEADLINE": "60", "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05"}


def summary(done) -> dict:
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def test_backup_restore_check_and_prune_on_radosgw(s3_cluster, s3_bucket, tmp_path: Path):
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    rnd = random.Random(3)
    (src / "big.bin").write_bytes(rnd.randbytes(3 * 1024 * 1024))
    (src / "sub" / "text.txt").write_text("strongroom\n" * 5000)
    (src / "sub" / "deeper" / "empty").write_bytes(b"")
    (src / "link").symlink_to("sub/text.txt")
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    env = {**ENV, **s3_cluster.env(), "STRONGROOM_REPO": s3_cluster.url(s3_bucket.name, "host/repo")}

    assert summary(cli.run("init", "--pack-size", "1", "--json", env=env))["encrypted"] is True
    first = summary(cli.run("backup", str(src), "--json", env=env))
    assert first["kind"] == "full" and first["files_new"] == 4
    (src / "sub" / "text.txt").write_text("changed\n")
    (src / "big.bin").write_bytes(rnd.randbytes(2 * 1024 * 1024))
    second = summary(cli.run("backup", str(src), "--json", env=env))
    assert second["kind"] == "incremental" and second["files_changed"] == 2
    # A small incremental backup costs a few dozen requests, not hundreds.
    assert second["storage"]["requests"] < 60, second["storage"]

    assert len(summary(cli.run("snapshots", "--json", env=env))) == 2
    target = tmp_path / "restore"
    restored = summary(cli.run("restore", "latest", "--target", str(target), "--verify", "--json", env=env))
    assert restored["files_verified"] == 3
    assert snapshot_tree(target / src.relative_to("/")) == snapshot_tree(src)

    report = summary(cli.run("check", "--read-data", "--json", env=env))
    assert report["ok"] and report["packs_read"] == report["packs"] >= 3

    pruned = summary(cli.run("forget", "--keep-last", "1", "--prune", "--json", env=env))
    assert len(pruned["removed"]) == 1 and pruned["kept"] == 1 and pruned["prune"]
    assert len(summary(cli.run("snapshots", "--json", env=env))) == 1
    after = summary(cli.run("check", "--read-data", "--json", env=env))
    # The replaced file's chunks are freed: whole packs deleted, or packs shared
    # with live chunks rewritten (which of the two depends on where the
    # repository's own chunker key cut the files, so neither count is fixed).
    freed = pruned["prune"]
    assert freed["bytes_freed"] > 0 and freed["packs_deleted"] + freed["packs_repacked"] >= 1, freed
    assert after["ok"] and after["packs"] == (report["packs"] - freed["packs_deleted"] - freed["packs_repacked"]
                                              + freed["packs_written"]), (freed, after)
    print("requests:", {"first backup": first["storage"], "second backup": second["storage"],
                        "check --read-data": report["storage"], "forget --prune": pruned["storage"]})
    again = tmp_path / "again"
    summary(cli.run("restore", "latest", "--target", str(again), "--json", env=env))
    assert snapshot_tree(again / src.relative_to("/")) == snapshot_tree(src)

    # The same repository by s3://BUCKET/PREFIX, the endpoint from the environment.
    by_env = {**env, "STRONGROOM_REPO": f"s3://{s3_bucket.name}/host/repo", "AWS_ENDPOINT_URL": s3_cluster.endpoint}
    assert len(summary(cli.run("snapshots", "--json", env=by_env))) == 1


def test_init_refuses_a_wrong_prefix_listing_and_wrong_credentials(s3_cluster, s3_bucket, tmp_path: Path):
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    env = {**ENV, **s3_cluster.env(), "STRONGROOM_REPO": s3_cluster.url(s3_bucket.name, "nothing-here")}
    missing = cli.run("snapshots", env=env)
    assert missing.returncode == 10 and b"no repository at s3:" in missing.stderr
    wrong = {**env, "AWS_SECRET_ACCESS_KEY": "wrong-secret-value"}
    refused = cli.run("init", env=wrong)
    assert refused.returncode != 0 and b"refused" in refused.stderr
    assert b"wrong-secret-value" not in refused.stderr + refused.stdout
    secret_in_url = s3_cluster.url(s3_bucket.name, "x").replace("http://", f"http://AK:{s3_cluster.secret_key}@")
    done = cli.run("init", env={**env, "STRONGROOM_REPO": secret_in_url})
    assert done.returncode != 0 and b"never put S3 credentials in the URL" in done.stderr
    assert s3_cluster.secret_key.encode() not in done.stderr + done.stdout
