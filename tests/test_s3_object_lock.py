"""S3 Object Lock on radosgw: new packs, index objects and snapshots get a
retention date; deletes name versions, and what the service keeps is left
in place by forget and prune, which finish and say when it can go."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import CLI
from strongroom.errors import ObjectLocked, StorageError
from strongroom.storage.s3_client import text_of, xml_root
from treeutil import snapshot_tree

ENV = {"STRONGROOM_WEBDAV_DEADLINE": "60", "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05"}


def summary(done) -> dict:
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def versions(cluster, bucket: str, prefix: str) -> list[tuple[str, str]]:
    with cluster.client() as client:
        body = client.request("GET", bucket, "", "versions", query={"versions": "", "prefix": prefix}).content
    root = xml_root(body, "versions", StorageError)
    return [(text_of(v, "Key"), text_of(v, "VersionId")) for v in root
            if v.tag.rsplit("}", 1)[-1] in ("Version", "DeleteMarker")]


def test_locked_objects_cannot_be_deleted_and_the_rest_goes_whole(s3_cluster):
    bucket = f"lock-{uuid.uuid4().hex[:12]}"
    storage = s3_cluster.storage(bucket, "repo", object_lock=("GOVERNANCE", 1))
    storage.create()  # makes the bucket, with Object Lock
    storage.make_dirs(["data", "locks"])
    storage.write("data/pack", b"pack bytes")
    with s3_cluster.client() as client:
        head = client.request("HEAD", bucket, "repo/data/pack", "head")
    until = datetime.fromisoformat(head.headers["x-amz-object-lock-retain-until-date"].replace("Z", "+00:00"))
    assert timedelta(hours=23) < until - datetime.now(timezone.utc) <= timedelta(days=1)
    assert head.headers["x-amz-object-lock-mode"] == "GOVERNANCE"
    with pytest.raises(ObjectLocked) as caught:
        storage.delete("data/pack")
    assert abs(caught.value.until - until) < timedelta(seconds=1)
    assert storage.read("data/pack") == b"pack bytes"
    assert [i.name for i in storage.list("data")] == ["data/pack"]
    # A lock file carries no retention: deleting it removes every version,
    # so no delete marker hides an object that stays stored.
    storage.write("locks/mine", b"l1")
    storage.write("locks/mine", b"l2")
    storage.delete("locks/mine")
    assert versions(s3_cluster, bucket, "repo/locks/mine") == []
    storage.delete("locks/never-written")
    # A bucket without Object Lock cannot hold the option: said at once.
    plain = f"plain-{uuid.uuid4().hex[:12]}"
    with s3_cluster.client() as client:
        client.create_bucket(plain)
    with pytest.raises(StorageError, match="has no Object Lock"):
        s3_cluster.storage(plain, "repo", object_lock=("GOVERNANCE", 1)).create()


def test_forget_and_prune_leave_what_is_locked_and_say_when_it_goes(s3_cluster, tmp_path: Path):
    bucket = f"lock-{uuid.uuid4().hex[:12]}"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(b"first version " * 50_000)
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    url = s3_cluster.url(bucket, "repo") + "?object-lock=governance:1d"
    env = {**ENV, **s3_cluster.env(), "STRONGROOM_REPO": url}
    summary(cli.run("init", "--pack-size", "1", "--json", env=env))
    first = summary(cli.run("backup", str(src), "--json", env=env))
    (src / "a.bin").write_bytes(b"second version " * 50_000)
    summary(cli.run("backup", str(src), "--json", env=env))

    # The old point is locked: forget keeps it, says so, and prune finishes.
    done = cli.run("forget", "--keep-last", "1", "--prune", "--json", env=env)
    result = summary(done)
    assert result["removed"] == [] and b"locked" in done.stdout + done.stderr
    assert len(summary(cli.run("snapshots", "--json", env=env))) == 2
    # The config and key files are locked too; a new password adds a key and
    # keeps the old one, which the target will not let go yet.
    with s3_cluster.client() as client:
        for key in ("repo/config", f"repo/keys/{versions(s3_cluster, bucket, 'repo/keys/')[-1][0].rsplit('/', 1)[1]}"):
            assert "x-amz-object-lock-retain-until-date" in client.request("HEAD", bucket, key, "head").headers
    changed = cli.run("key", "passwd", env={**env, "STRONGROOM_NEW_PASSWORD": "another password"})
    assert changed.returncode == 0 and b"stays" in changed.stdout, changed.stderr
    assert summary(cli.run("snapshots", "--json", env={**env, "STRONGROOM_PASSWORD": "another password"}))

    # Someone with the right to bypass governance removes the old point: its
    # packs are now unused, but locked. Prune finishes, deletes nothing
    # locked, and says what it will free and when.
    snapshot_key = f"repo/snapshots/{first['snapshot_id']}"
    with s3_cluster.client() as client:
        for key, version in versions(s3_cluster, bucket, snapshot_key):
            client.request("DELETE", bucket, key, "bypass", query={"versionId": version},
                           headers={"x-amz-bypass-governance-retention": "true"})
    packs_before = {k for k, _ in versions(s3_cluster, bucket, "repo/data/") if not k.endswith("/")}
    done = cli.run("prune", "--json", env=env)
    pruned = summary(done)
    assert pruned["locked"]["objects"] >= 1 and pruned["locked"]["until"] is not None
    assert b"a prune after" in done.stdout + done.stderr
    assert {k for k, _ in versions(s3_cluster, bucket, "repo/data/") if not k.endswith("/")} == packs_before
    report = summary(cli.run("check", "--read-data", "--json", env=env))
    assert report["ok"]
    target = tmp_path / "restore"
    summary(cli.run("restore", "latest", "--target", str(target), "--json", env=env))
    assert snapshot_tree(target / src.relative_to("/")) == snapshot_tree(src)

    # Tagging a locked point writes the new one and leaves the old beside it.
    points = len(summary(cli.run("snapshots", "--json", env=env)))
    tagged = cli.run("tag", "--add", "kept", "latest", env=env)
    assert tagged.returncode == 0 and b"stays beside its replacement" in tagged.stdout + tagged.stderr
    assert len(summary(cli.run("snapshots", "--json", env=env))) == points + 1
