"""S3 Object Lock on radosgw: what a locked repository writes, what prune
and forget do while the locks hold and once they expire, compliance mode,
and an attacker with the credentials deleting packs (delete markers)."""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import CLI, PASSWORD
from strongroom.engine.prune import plan_prune, run_prune
from strongroom.errors import ObjectLocked, UsageError
from strongroom.repo.pack import pack_name
from strongroom.repo.repository import Repository
from strongroom.storage.s3_client import content_md5
from strongroom.storage.s3_lock import parse_lock_setting

ENV = {"STRONGROOM_WEBDAV_DEADLINE": "60", "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05"}
MiB = 1024 * 1024


def lock_bucket(cluster) -> str:
    name = f"l-{uuid.uuid4().hex[:20]}"
    with cluster.client() as client:
        client.create_bucket(name, object_lock=True)
    return name


def last_json(done) -> dict:
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def versions(cluster, bucket: str, prefix: str) -> list[tuple[str, str, bool]]:
    """(key, version id, is a delete marker) of everything stored under `prefix`."""
    with cluster.client() as client:
        body = client.request("GET", bucket, "", "versions", query={"versions": "", "prefix": prefix}).text
    assert "<IsTruncated>false</IsTruncated>" in body
    found = []
    for tag, inner in re.findall(r"<(Version|DeleteMarker)>(.*?)</\1>", body):
        key = re.search(r"<Key>(.*?)</Key>", inner).group(1)
        version = re.search(r"<VersionId>(.*?)</VersionId>", inner).group(1)
        found.append((key, version, tag == "DeleteMarker"))
    return found


def bypass_delete(cluster, bucket: str, key: str) -> int:
    """What an administrator may do in governance mode: delete a version past its lock."""
    status = 0
    with cluster.client() as client:
        for found, version, _ in versions(cluster, bucket, key):
            if found == key:
                status = client.request("DELETE", bucket, key, "bypass", query={"versionId": version},
                                        headers={"x-amz-bypass-governance-retention": "true"},
                                        passthrough=frozenset({403})).status_code
    return status


def make_source(path: Path, seed: int) -> None:
    path.mkdir(exist_ok=True)
    rnd = random.Random(seed)
    (path / "big.bin").write_bytes(rnd.randbytes(1536 * 1024))
    (path / "small.txt").write_text(f"strongroom {seed}\n" * 1000)


@pytest.fixture
def locked_repo(s3_cluster, tmp_path):
    """Opens a new repository in a new Object Lock bucket with the lock setting given."""
    bucket = lock_bucket(s3_cluster)

    def open_repo(setting: str) -> tuple[CLI, dict, str]:
        cli = CLI(tmp_path / "unused", tmp_path / "cache")
        url = s3_cluster.url(bucket, "repo") + f"?object-lock={setting}"
        env = {**ENV, **s3_cluster.env(), "STRONGROOM_REPO": url}
        last_json(cli.run("init", "--pack-size", "1", "--json", env=env))
        return cli, env, bucket
    return open_repo


def test_the_lock_asked_for_on_a_bucket_without_object_lock_fails_fast(s3_cluster, s3_bucket, tmp_path):
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    env = {**ENV, **s3_cluster.env(),
           "STRONGROOM_REPO": s3_cluster.url(s3_bucket.name, "repo") + "?object-lock=governance:30d"}
    done = cli.run("init", env=env)
    assert done.returncode != 0
    assert b"does not have Object Lock enabled" in done.stderr, done.stderr
    assert versions(s3_cluster, s3_bucket.name, "") == []  # nothing written
    # A bucket that does not exist yet: init makes it, with Object Lock.
    fresh = f"l-{uuid.uuid4().hex[:20]}"
    env["STRONGROOM_REPO"] = s3_cluster.url(fresh, "repo") + "?object-lock=compliance:1s"
    last_json(cli.run("init", "--json", env=env))
    with s3_cluster.storage(fresh) as made:
        assert made.may_hold_locks()
    with pytest.raises(UsageError):
        parse_lock_setting("governance")
    with pytest.raises(UsageError):
        parse_lock_setting("legal:3d")
    assert parse_lock_setting("COMPLIANCE:2h").seconds == 7200


def test_a_locked_repository_keeps_what_the_locks_hold_and_survives_an_attacker(s3_cluster, locked_repo, tmp_path):
    cli, env, bucket = locked_repo("governance:1d")
    # init keeps the lock in the repository's config: every writer uses it,
    # with the parameter or without; a URL that asks for another one is refused.
    clash = cli.run("snapshots", env={**env, "STRONGROOM_REPO": env["STRONGROOM_REPO"].replace("governance:1d",
                                                                                               "compliance:1d")})
    assert clash.returncode == 2 and b"differs" in clash.stderr, clash.stderr
    env = {**env, "STRONGROOM_REPO": s3_cluster.url(bucket, "repo")}
    src = tmp_path / "src"
    make_source(src, 1)
    first = last_json(cli.run("backup", str(src), "--json", env=env))["snapshot_id"]
    make_source(src, 2)
    last_json(cli.run("backup", str(src), "--json", env=env))

    storage = s3_cluster.storage(bucket, "repo")
    now = datetime.now(timezone.utc)
    for folder in ("data", "index", "snapshots"):
        for info in storage.list(folder):
            retention = storage.retention(info.name)
            assert retention.mode == "GOVERNANCE", info.name
            assert now + timedelta(hours=23) < retention.until < now + timedelta(hours=25)
    for name in ("config", *(i.name for i in storage.list("keys"))):
        assert storage.retention(name).mode == "GOVERNANCE"  # what opens the repository is locked too

    # forget while the locks hold: the older point stays, whole, and says why.
    forgot = last_json(cli.run("forget", "--keep-last", "1", "--prune", "--json", env=env))
    assert forgot["removed"] == [] and [h["id"] for h in forgot["held"]] == [first] and forgot["kept"] == 2
    assert forgot["held"][0]["until"] > now.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert forgot["prune"]["packs_deleted"] == 0 and forgot["prune"]["objects_held"] >= 1
    assert len(list(storage.list("snapshots"))) == 2

    # An administrator removes the older point past its governance lock: its
    # packs are now unused, and locked. Prune keeps them and says until when.
    assert bypass_delete(s3_cluster, bucket, f"repo/snapshots/{first}") == 204
    packs_before = {i.name for i in storage.list("data")}
    pruned = last_json(cli.run("prune", "--json", env=env))
    assert pruned["packs_deleted"] == 0 and pruned["packs_repacked"] == 0
    assert pruned["objects_held"] >= 2 and pruned["bytes_held"] > 1 * MiB
    assert pruned["held_until"] > (now + timedelta(hours=23)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert {i.name for i in storage.list("data")} == packs_before
    said = cli.run("prune", env=env)
    assert b"to free when the locks expire" in said.stdout, said.stdout
    # A new password adds a key and keeps the locked old one; a new tag
    # writes the new point and leaves the locked old one beside it.
    changed = cli.run("key", "passwd", env={**env, "STRONGROOM_NEW_PASSWORD": "another password"})
    assert changed.returncode == 0 and b"stays" in changed.stdout, changed.stdout + changed.stderr
    tagged = cli.run("tag", "--add", "kept", "latest", env=env)
    assert tagged.returncode == 0 and b"stays beside its replacement" in tagged.stdout + tagged.stderr
    assert len(list(storage.list("snapshots"))) == 2

    # An attacker with the credentials deletes every pack with a plain DELETE:
    # a delete marker each, the data stays. check notices (the index names
    # packs the listing no longer shows); deleting the markers recovers.
    packs = sorted(i.name for i in storage.list("data"))
    with s3_cluster.client() as attacker:
        for name in packs:
            assert attacker.request("DELETE", bucket, f"repo/{name}", "attack").status_code == 204
    assert list(storage.list("data")) == []
    damaged = cli.run("check", "--json", env=env)
    assert damaged.returncode != 0, damaged.stdout
    assert not json.loads(damaged.stdout.decode().strip().splitlines()[-1])["ok"]
    markers = [(key, version) for key, version, marker in versions(s3_cluster, bucket, "repo/data/") if marker]
    assert len(markers) == len(packs)
    with s3_cluster.client() as client:
        for key, version in markers:
            client.request("DELETE", bucket, key, "recover", query={"versionId": version})
    assert sorted(i.name for i in storage.list("data")) == packs
    report = last_json(cli.run("check", "--read-data", "--json", env=env))
    assert report["ok"], report
    storage.close()


def test_prune_frees_every_version_once_the_locks_expire(s3_cluster, locked_repo, tmp_path):
    cli, env, bucket = locked_repo("governance:1s")
    src = tmp_path / "src"
    make_source(src, 3)
    last_json(cli.run("backup", str(src), "--json", env=env))
    make_source(src, 4)
    last_json(cli.run("backup", str(src), "--json", env=env))
    storage = s3_cluster.storage(bucket, "repo")
    latest = max(storage.retention(i.name).until for f in ("data", "index", "snapshots") for i in storage.list(f))
    packs_before = {i.name for i in storage.list("data")}
    # The one wait: for the service's locks to pass (a few seconds at most).
    deadline = time.monotonic() + 30
    while datetime.now(timezone.utc) <= latest + timedelta(seconds=0.2) and time.monotonic() < deadline:
        time.sleep(0.2)

    forgot = last_json(cli.run("forget", "--keep-last", "1", "--prune", "--json", env=env))
    assert len(forgot["removed"]) == 1 and forgot["held"] == []
    assert forgot["prune"]["objects_held"] == 0 and forgot["prune"]["bytes_freed"] > 1 * MiB
    gone = packs_before - {i.name for i in storage.list("data")}
    assert gone
    stored = {key for key, _, _ in versions(s3_cluster, bucket, "repo/")}
    for name in gone:
        assert f"repo/{name}" not in stored  # no version, no delete marker: really freed
    assert f"repo/snapshots/{forgot['removed'][0]}" not in stored
    assert last_json(cli.run("check", "--json", env=env))["ok"]
    storage.close()


def test_compliance_mode_refuses_a_delete_even_with_the_bypass(s3_cluster):
    bucket = lock_bucket(s3_cluster)
    storage = s3_cluster.storage(bucket, "repo", part_size=5 * MiB)
    storage.object_lock = parse_lock_setting("compliance:1d")
    storage.check_object_lock()
    storage.make_dirs(["data", "locks"])
    storage.write("data/ab", b"pack bytes")
    big = random.Random(5).randbytes(6 * MiB)
    storage.write("data/cd", big)  # multipart: the lock goes on the upload's first request
    storage.write("locks/x", b"lock")
    assert storage.retention("data/cd").mode == "COMPLIANCE"
    assert storage.retention("locks/x").mode is None
    storage.delete("locks/x")  # a lock file goes at once, every version of it
    assert versions(s3_cluster, bucket, "repo/locks/x") == []

    with pytest.raises(ObjectLocked) as refused:
        storage.delete("data/ab")
    assert refused.value.until > datetime.now(timezone.utc) + timedelta(hours=23)
    assert bypass_delete(s3_cluster, bucket, "repo/data/ab") == 403
    assert storage.read("data/ab") == b"pack bytes" and storage.read("data/cd") == big
    storage.close()


def test_a_lock_prune_did_not_expect_is_reported_and_the_repository_stays_valid(s3_cluster, tmp_path):
    # A host without ?object-lock= on a bucket with it writes unlocked objects;
    # a lock set on a pack between prune's plan and its deletes (another
    # host, an administrator) makes the delete refuse.
    bucket = lock_bucket(s3_cluster)
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    env = {**ENV, **s3_cluster.env(), "STRONGROOM_REPO": s3_cluster.url(bucket, "repo")}
    last_json(cli.run("init", "--pack-size", "1", "--json", env=env))
    src = tmp_path / "src"
    make_source(src, 7)
    last_json(cli.run("backup", str(src), "--json", env=env))
    make_source(src, 8)
    last_json(cli.run("backup", str(src), "--json", env=env))
    assert len(last_json(cli.run("forget", "--keep-last", "1", "--json", env=env))["removed"]) == 1

    repo = Repository.open(s3_cluster.storage(bucket, "repo"), PASSWORD, cache_root=str(tmp_path / "c2"))
    with repo.lock(exclusive=True):
        plan = plan_prune(repo)
        assert plan.held == [] and plan.delete
        victim = pack_name(plan.delete[0], repo.config.data_fanout)
        until = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = (f'<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Mode>GOVERNANCE</Mode>'
                f"<RetainUntilDate>{until}</RetainUntilDate></Retention>").encode()
        with s3_cluster.client() as client:
            client.request("PUT", bucket, f"repo/{victim}", "lock", query={"retention": ""}, body=body,
                           headers={"Content-MD5": content_md5(body)})
        result = run_prune(repo, plan)
    repo.storage.close()
    assert result["objects_held"] == 1 and result["held_until"] == until
    assert result["packs_deleted"] == len(plan.delete)  # the refused one is not counted as deleted
    stored = {key for key, _, marker in versions(s3_cluster, bucket, "repo/data/") if not marker}
    assert f"repo/{victim}" in stored
    assert last_json(cli.run("check", "--json", env=env))["ok"]


def test_hostile_answers_about_versions_and_locks_are_errors_never_unlocked_or_gone(s3_cluster):
    from s3_front import S3Front, s3_error
    from strongroom.errors import StorageError
    from strongroom.storage.s3 import S3Client, S3Credentials, S3Storage
    from strongroom.storage.s3_client import S3Endpoint
    from strongroom.storage.s3_providers import PROVIDERS

    bucket = lock_bucket(s3_cluster)
    with S3Front(s3_cluster.endpoint) as front:
        client = S3Client(S3Endpoint.parse(front.endpoint, region="us-east-1", path_style=True),
                          S3Credentials(s3_cluster.access_key, s3_cluster.secret_key), timeout=20)
        storage = S3Storage(client, bucket, "repo", PROVIDERS["ceph"])
        storage.make_dirs(["data"])
        storage.write("data/ab", b"pack bytes")  # not locked: deletable, were the answers true

        for rewrite in (lambda b: b.replace(b"<IsTruncated>false", b"<IsTruncated>true"),
                        lambda b: b.replace(b"<Name>" + bucket.encode(), b"<Name>other"),
                        lambda b: b"<not-xml"):
            front.rewrite("GET", "versions", rewrite)
            with pytest.raises(StorageError):
                storage.delete("data/ab")
        assert storage.read("data/ab") == b"pack bytes"

        # A 403 on a version without a lock is a missing right, not a lock, not success.
        front.answer("DELETE", "versionId=", 403, s3_error("AccessDenied"))
        with pytest.raises(StorageError) as refused:
            storage.delete("data/ab")
        assert not isinstance(refused.value, ObjectLocked) and "rights" in str(refused.value)

        for headers in ({"x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": "soon"},
                        {"x-amz-object-lock-mode": "GOVERNANCE"},
                        {"x-amz-object-lock-mode": "FOREVER", "x-amz-object-lock-retain-until-date":
                         "2099-01-01T00:00:00Z"},
                        {"x-amz-object-lock-legal-hold": "maybe"}):
            front.answer("HEAD", "/data/ab", 200, headers={"Content-Length": "10", **headers})
            with pytest.raises(StorageError):
                storage.retention("data/ab")
        storage.delete("data/ab")  # the true answers: deleted, every version
        assert versions(s3_cluster, bucket, "repo/data/ab") == []
        storage.close()

        # A service without versioning or Object Lock at all (R2) says 501 NotImplemented:
        # no locks to respect and plain deletes, where any other answer is an error.
        client = S3Client(S3Endpoint.parse(front.endpoint, region="us-east-1", path_style=True),
                          S3Credentials(s3_cluster.access_key, s3_cluster.secret_key), timeout=20)
        plain = S3Storage(client, bucket, "repo", PROVIDERS["ceph"])
        front.answer("GET", "object-lock", 501, s3_error("NotImplemented"))
        assert not plain.may_hold_locks()
        front.answer("GET", "versioning", 501, b"<not-xml")
        with pytest.raises(StorageError):
            plain.delete("data/cd")
        front.answer("GET", "versioning", 501, s3_error("NotImplemented"))
        named, deletes = front.count("DELETE", "versionId="), front.count("DELETE")
        plain.delete("data/cd")
        assert front.count("DELETE", "versionId=") == named and front.count("DELETE") == deletes + 1
        plain.close()
