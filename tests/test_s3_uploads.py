"""Multipart uploads cut off by SIGKILL on S3 (the radosgw of tests/s3_server.py):
their parts stay stored, outside every listing of objects, until someone
aborts them. `check` reports them and `prune` aborts them under its
exclusive lock; uploads of another tool, or of another repository in the
same bucket, are left alone. What is left is asked of radosgw itself.
"""

from __future__ import annotations

import re
import secrets

import pytest

from fleet import REMOTE_ENV, Fleet, FleetTarget, summary_of, wait_for
from s3_front import S3Front
from strongroom.errors import ListingFailed

# Packs of 16 MiB in parts of 5 MiB, sent one at a time: an upload lasts
# several requests, and a process killed while one is listed has left it.
PACK_MIB, PART_MIB = 16, 5
STREAM = f"head -c {200 << 20} /dev/urandom; while printf x; do sleep 0.2; done"


def uploads(cluster, bucket: str, prefix: str) -> list[str]:
    """The keys of the incomplete multipart uploads under `prefix`, as radosgw lists them."""
    with cluster.client() as client:
        body = client.request("GET", bucket, "", "list uploads", query={"uploads": "", "prefix": prefix}).content
    assert b"<IsTruncated>false</IsTruncated>" in body, body[:500]
    return re.findall(r"<Key>([^<]*)</Key>", body.decode())


def stored(cluster, bucket: str, key: str) -> int:
    """The bytes the parts of the incomplete uploads of `key` hold, as radosgw lists them."""
    with cluster.client() as client:
        listing = client.request("GET", bucket, "", "list uploads", query={"uploads": "", "prefix": key}).content
        total = 0
        for upload_id in re.findall(r"<UploadId>([^<]*)</UploadId>", listing.decode()):
            parts = client.request("GET", bucket, key, "list parts", query={"uploadId": upload_id}).content
            total += sum(int(size) for size in re.findall(r"<Size>([0-9]+)</Size>", parts.decode()))
    return total


def begin_upload(cluster, bucket: str, key: str) -> None:
    with cluster.client() as client:
        client.request("POST", bucket, key, "begin", query={"uploads": ""})


def test_a_backup_killed_mid_upload_leaves_parts_that_check_reports_and_prune_aborts(s3_shared_bucket, tmp_path):
    cluster, bucket = s3_shared_bucket.cluster, s3_shared_bucket.name
    prefix = f"uploads-{secrets.token_hex(6)}"
    fleet = Fleet(FleetTarget("s3", cluster.url(bucket, prefix) + f"?part-size={PART_MIB}",
                              {**REMOTE_ENV, **cluster.env()}), tmp_path)
    victim = fleet.host("victim")
    assert victim.run("init", "--pack-size", str(PACK_MIB)).returncode == 0
    # Another tool's upload inside the prefix, and another repository's beside it.
    foreign, neighbour = f"{prefix}/data/Not Ours.bin", f"{prefix}-next/data/{'ab' * 32}"
    begin_upload(cluster, bucket, foreign)
    begin_upload(cluster, bucket, neighbour)

    left: list[str] = []
    for _ in range(3):  # the kill may land between two uploads: then again
        run = victim.start("backup", "--json", "--host", victim.name, "--connections", "1",
                           "--stdin-from-command", "--", "sh", "-c", STREAM).go()
        wait_for(lambda: len(uploads(cluster, bucket, prefix + "/")) > 1, "a pack's multipart upload", run.proc)
        run.kill()
        left = [key for key in uploads(cluster, bucket, prefix + "/") if key != foreign]
        if left:
            break
    assert left and all(key.startswith(f"{prefix}/data/") for key in left), left

    # On the victim's own machine its lock is known dead: check and prune go in.
    checked = summary_of(victim.run("check", "--json"))
    [warning] = [w for w in checked["warnings"] if "temporary" in w]
    assert checked["ok"] and "prune removes them" in warning, checked
    # The bytes their parts hold.
    assert re.search(r"of ([0-9,]+) bytes?", warning).group(1).replace(",", "") == \
        str(sum(stored(cluster, bucket, key) for key in set(left))), warning
    pruned = summary_of(victim.run("prune", "--json"))
    assert pruned["temporaries"] == len(left), pruned
    assert uploads(cluster, bucket, prefix + "/") == [foreign]
    assert uploads(cluster, bucket, f"{prefix}-next/") == [neighbour]
    after = summary_of(victim.run("check", "--read-data", "--json"))
    assert after["ok"] and not after["problems"] and not after["warnings"], after


@pytest.mark.parametrize("damage", ["truncated-without-marker", "marker-repeats", "key-outside-prefix",
                                    "another-bucket", "not-a-listing", "bad-upload-id", "malformed-xml",
                                    "bad-part-size"])
def test_hostile_answers_about_incomplete_uploads_fail_the_look(s3_cluster, s3_shared_bucket, damage):
    from strongroom.storage.s3 import S3Client, S3Credentials, S3Endpoint, S3Storage
    from strongroom.storage.s3_providers import PROVIDERS

    bucket, prefix = s3_shared_bucket.name, f"hostile-{secrets.token_hex(6)}"
    begin_upload(s3_cluster, bucket, f"{prefix}/data/{'ab' * 32}")

    def rewrite(body: bytes) -> bytes:
        # radosgw sends its markers on every page, the last one too.
        if damage == "truncated-without-marker":
            body = re.sub(rb"<NextKeyMarker>[^<]*</NextKeyMarker>", b"", body)
            return body.replace(b"<IsTruncated>false</IsTruncated>", b"<IsTruncated>true</IsTruncated>")
        if damage == "marker-repeats":
            body = re.sub(rb"<NextKeyMarker>[^<]*</NextKeyMarker>", b"<NextKeyMarker>k</NextKeyMarker>", body)
            return body.replace(b"<IsTruncated>false</IsTruncated>", b"<IsTruncated>true</IsTruncated>")
        if damage == "key-outside-prefix":
            return body.replace(f"<Key>{prefix}/".encode(), b"<Key>elsewhere/")
        if damage == "another-bucket":
            return body.replace(f"<Bucket>{bucket}</Bucket>".encode(), b"<Bucket>other</Bucket>")
        if damage == "not-a-listing":
            return b'<?xml version="1.0"?><Owner><ID>x</ID></Owner>'
        if damage == "bad-upload-id":
            return re.sub(rb"<UploadId>[^<]*</UploadId>", b"<UploadId>a b&amp;c</UploadId>", body)
        if damage == "malformed-xml":
            return body[:len(body) // 2]
        return body.replace(b"</UploadId>", b"</UploadId><Part><PartNumber>1</PartNumber><Size>-5</Size></Part>")

    with S3Front(s3_cluster.endpoint) as front:
        client = S3Client(S3Endpoint.parse(front.endpoint, region="us-east-1", path_style=True),
                          S3Credentials(s3_cluster.access_key, s3_cluster.secret_key), timeout=20)
        with S3Storage(client, bucket, prefix, PROVIDERS["ceph"]) as storage:
            parts = damage == "bad-part-size"
            front.rewrite("GET", "uploadId=" if parts else "uploads", rewrite,
                          times=None if damage == "marker-repeats" else 1)
            with pytest.raises(ListingFailed):
                storage.temporaries()
            front.rules.clear()
            [found] = storage.temporaries()
            assert found.name.startswith(f"data/{'ab' * 32}#upload=") and found.size == 0
            storage.remove_temporary(found.name)
            storage.remove_temporary(found.name)  # gone already: fine
            assert storage.temporaries() == []
