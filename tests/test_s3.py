"""The S3 backend beyond the shared contract: signatures, URLs and credentials,
fail-fast set-up mistakes, retried trouble, hostile listings, multipart
uploads. Against the radosgw of tests/s3_server.py, with tests/s3_front.py
in front of it where an answer must be one radosgw would not give."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timezone

import pytest

from s3_front import S3Front, s3_error
from strongroom.errors import (AuthenticationFailed, FolderNotFound, ListingFailed, StorageError,
                               StorageUnreachable, UsageError)
from strongroom.settings import Settings
from strongroom.storage import open_storage
from strongroom.storage.s3_config import S3Access, parse_s3_url, read_s3_access
from strongroom.storage.s3_sign import EMPTY_SHA256, S3Credentials, sign

FAST = Settings(webdav_retry_delay=0.01, webdav_deadline=20, webdav_blocked_wait=0.01, webdav_timeout=10)
MiB = 1024 * 1024


def access(cluster, secret: str | None = None) -> S3Access:
    return S3Access(S3Credentials(cluster.access_key, secret or cluster.secret_key))


def opened(endpoint: str, bucket: str, prefix: str, cluster, events: list | None = None, **kw):
    return open_storage(f"s3:{endpoint}/{bucket}/{prefix}", s3_access=access(cluster, **kw), settings=FAST,
                        on_event=None if events is None else events.append)


@pytest.fixture
def front(s3_cluster):
    with S3Front(s3_cluster.endpoint) as f:
        yield f


@pytest.fixture
def prefix() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"


# ---- signing, URLs, credentials -----------------------------------------------------------


def test_signature_matches_the_worked_example_of_the_aws_documentation():
    headers = sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", {}, {"Range": "bytes=0-9"},
                   EMPTY_SHA256, S3Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
                   "us-east-1", datetime(2013, 5, 24, tzinfo=timezone.utc))
    assert headers["Authorization"].endswith(
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    assert "wJalr" not in repr(S3Credentials("AK", "wJalrXUtnFEMI"))


def test_urls_in_restics_form_and_with_the_endpoint_from_the_environment():
    where = parse_s3_url("s3:https://s3.eu-central-1.wasabisys.com/backups/host/one?connections=3", None)
    assert (where.endpoint, where.bucket, where.prefix, where.connections) == (
        "https://s3.eu-central-1.wasabisys.com", "backups", "host/one", 3)
    where = parse_s3_url("s3://bucket-1/repo", S3Access(None, endpoint_url="http://127.0.0.1:9000"))
    assert (where.endpoint, where.bucket, where.prefix) == ("http://127.0.0.1:9000", "bucket-1", "repo")
    with pytest.raises(UsageError, match="AWS_ENDPOINT_URL"):
        parse_s3_url("s3://bucket-1/repo", S3Access(None))
    for bad in ("s3:https://AK:secret@host/bucket", "s3:https://AK@host/bucket"):
        with pytest.raises(UsageError, match="never put S3 credentials in the URL") as caught:
            parse_s3_url(bad, None)
        assert "secret" not in str(caught.value).replace("AWS_SECRET_ACCESS_KEY", "")
    assert parse_s3_url("s3:https://host/bucket?object-lock=governance:30d", None).object_lock == "governance:30d"
    for bad in ("s3:https://host/bucket?object-lock=forever", "s3:https://host/bucket?object-lock=compliance:0d",
                "s3:https://host/Upper", "s3:https://host/ab", "s3:https://host/b?unknown=1",
                "s3:https://host/bucket?style=sideways", "s3:https://host/bucket?part-size=1"):
        with pytest.raises(UsageError):
            parse_s3_url(bad, None)


def test_credentials_from_the_environment_a_profile_or_a_file(tmp_path):
    env = {"AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "env-secret", "AWS_REGION": "eu-west-1"}
    got = read_s3_access(env, home=str(tmp_path))
    assert (got.credentials.access_key, got.credentials.secret_key, got.region) == ("AKENV", "env-secret",
                                                                                    "eu-west-1")
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = AKDEF\naws_secret_access_key = def-secret\n"
        "[ceph]\naws_access_key_id = AKCEPH\naws_secret_access_key = ceph-secret\n")
    (tmp_path / ".aws" / "config").write_text("[profile ceph]\nregion = zg1\nendpoint_url = http://10.0.0.5:7480\n")
    got = read_s3_access({"AWS_PROFILE": "ceph"}, home=str(tmp_path))
    assert (got.credentials.access_key, got.region, got.endpoint_url) == ("AKCEPH", "zg1", "http://10.0.0.5:7480")
    assert read_s3_access({}, home=str(tmp_path)).credentials.access_key == "AKDEF"
    other = tmp_path / "elsewhere.ini"
    other.write_text("[default]\naws_access_key_id = AKFILE\naws_secret_access_key = file-secret\n")
    assert read_s3_access({"AWS_SHARED_CREDENTIALS_FILE": str(other)}, home=str(tmp_path)).credentials.access_key \
        == "AKFILE"
    with pytest.raises(UsageError, match="not in"):
        read_s3_access({"AWS_PROFILE": "missing"}, home=str(tmp_path))
    with pytest.raises(UsageError, match="both"):
        read_s3_access({"AWS_ACCESS_KEY_ID": "AK"}, home=str(tmp_path))
    with pytest.raises(UsageError, match="no S3 credentials"):
        open_storage("s3:http://127.0.0.1:1/bucket/x", s3_access=read_s3_access({}, home=str(tmp_path / "none")))


# ---- set-up mistakes fail at once -----------------------------------------------------------


def test_wrong_secret_or_key_fails_at_once_without_the_secret_in_the_message(s3_cluster, s3_bucket):
    storage = opened(s3_cluster.endpoint, s3_bucket.name, "repo", s3_cluster, secret="not-the-secret-at-all")
    with pytest.raises(AuthenticationFailed, match="SignatureDoesNotMatch") as caught:
        storage.read("config")
    assert "not-the-secret" not in str(caught.value) and storage.retries == 0
    with pytest.raises(AuthenticationFailed):  # and nothing more is sent
        storage.stat("config")
    assert storage.http_requests == 1
    unknown = open_storage(f"{s3_cluster.url(s3_bucket.name)}/repo", settings=FAST,
                           s3_access=S3Access(S3Credentials("AKNOSUCHKEY0000", "whatever")))
    with pytest.raises(AuthenticationFailed, match="InvalidAccessKeyId"):
        unknown.read("config")
    with pytest.raises(AuthenticationFailed, match="HTTP 403"):  # a HEAD's answer has no code to show
        opened(s3_cluster.endpoint, s3_bucket.name, "repo", s3_cluster, secret="wrong").exists()


def test_missing_bucket_is_an_error_not_an_absence(s3_cluster):
    storage = opened(s3_cluster.endpoint, "no-such-bucket-here", "repo", s3_cluster)
    for verb in (lambda: storage.read("config"), lambda: storage.stat("config"), lambda: list(storage.list("data")),
                 lambda: storage.delete("locks/x")):
        with pytest.raises(StorageError, match="does not exist") as caught:
            verb()
        assert type(caught.value).__name__ in ("StorageError", "FolderNotFound")
    assert storage.exists() is False and storage.retries == 0


def test_nothing_listening_tls_against_plain_http_and_a_server_that_is_not_s3(s3_cluster):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(StorageUnreachable, match="nothing listens"):
        opened(f"http://127.0.0.1:{closed}", "bucket", "repo", s3_cluster).read("config")
    tls = "https" + s3_cluster.endpoint[len("http"):]
    with pytest.raises(StorageUnreachable, match="TLS") as caught:
        opened(tls, "bucket", "repo", s3_cluster).read("config")
    assert "s3:http://" in str(caught.value)
    with S3Front(s3_cluster.endpoint) as not_s3:
        not_s3.answer("GET", "/", 404, b"<html>not found</html>", times=None)
        storage = opened(not_s3.endpoint, "bucket", "repo", s3_cluster)
        with pytest.raises(StorageError, match="did not answer as an S3 service does"):
            storage.read("config")
        assert storage.retries == 0


# ---- trouble is waited out, one request at a time --------------------------------------------


def test_slowdown_and_server_errors_are_retried_and_told_once(s3_cluster, s3_shared_bucket, front, prefix):
    events: list = []
    storage = opened(front.endpoint, s3_shared_bucket.name, prefix, s3_cluster, events)
    storage.create()
    front.answer("PUT", "/snapshots/one", 503, s3_error("SlowDown", "Please reduce your request rate."), times=2,
                 headers={"Retry-After": "0"})
    front.answer("PUT", "/snapshots/one", 500, s3_error("InternalError"), times=1)
    storage.write("snapshots/one", b"point")
    assert front.count("PUT", "/snapshots/one") == 4 and storage.retries == 3
    assert [e["type"] for e in events] == ["waiting", "recovered"]
    assert "throttling" in events[0]["message"]
    front.answer("GET", "list-type=2", 503, s3_error("ServiceUnavailable"), times=1)
    assert [i.name for i in storage.list("snapshots")] == ["snapshots/one"]
    assert front.count("GET", "list-type=2") == 2


def test_a_connection_dropped_mid_upload_or_mid_download_is_retried(s3_cluster, s3_shared_bucket, prefix):
    from fault_proxy import FaultProxy

    with FaultProxy(("127.0.0.1", int(s3_cluster.endpoint.rsplit(":", 1)[1]))) as proxy:
        storage = opened(f"http://{proxy.address}", s3_shared_bucket.name, prefix, s3_cluster)
        storage.create()
        data = os.urandom(3 * MiB)
        proxy.reset_upload(MiB)
        storage.write("data/pack", data)
        proxy.reset_download(MiB)
        assert storage.read("data/pack") == data
        assert proxy.events == {"reset_upload": 1, "reset_download": 1} and storage.retries == 2


# ---- listings: a broken answer is an error, never a shorter listing --------------------------


def _with_objects(s3_cluster, bucket, front, prefix, count=3):
    storage = opened(front.endpoint, bucket, prefix, s3_cluster)
    storage.create()
    storage.make_dirs(["data"])
    for i in range(count):
        storage.write(f"data/{i:02d}", b"x" * i)
    return storage


@pytest.mark.parametrize("damage", [
    "truncated-without-token", "token-repeats", "key-outside-prefix", "malformed-xml", "another-bucket",
    "out-of-order", "not-a-listing", "bad-size", "entity-expansion"])
def test_hostile_listing_answers_fail_the_listing(s3_cluster, s3_shared_bucket, front, prefix, damage):
    storage = _with_objects(s3_cluster, s3_shared_bucket.name, front, prefix)
    bucket = s3_shared_bucket.name.encode()
    # radosgw url-encodes keys (encoding-type=url), slashes too.
    key = f"{prefix}%2Fdata%2F02".encode()

    def rewrite(body: bytes) -> bytes:
        if damage == "truncated-without-token":
            return body.replace(b"<IsTruncated>false</IsTruncated>", b"<IsTruncated>true</IsTruncated>")
        if damage == "token-repeats":
            return body.replace(b"<IsTruncated>false</IsTruncated>",
                                b"<IsTruncated>true</IsTruncated><NextContinuationToken>t1</NextContinuationToken>")
        if damage == "key-outside-prefix":
            return body.replace(key, b"elsewhere%2Fdata%2F02")
        if damage == "malformed-xml":
            return body[:len(body) // 2]
        if damage == "another-bucket":
            return body.replace(b"<Name>" + bucket, b"<Name>other")
        if damage == "out-of-order":
            return body.replace(key, key[:-1] + b"0")
        if damage == "not-a-listing":
            return b'<?xml version="1.0"?><Owner><ID>x</ID></Owner>'
        if damage == "bad-size":
            return body.replace(b"<Size>2</Size>", b"<Size>-2</Size>")
        return (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                b"<ListBucketResult><Name>&b;</Name></ListBucketResult>")

    times = None if damage == "token-repeats" else 1
    front.rewrite("GET", "list-type=2", rewrite, times=times)
    with pytest.raises(ListingFailed):
        list(storage.list("data"))
    front.rules.clear()
    assert [i.name for i in storage.list("data")] == ["data/00", "data/01", "data/02"]


def test_listing_follows_continuation_tokens_and_a_missing_marker_is_no_folder(s3_cluster, s3_shared_bucket,
                                                                                front, prefix):
    storage = _with_objects(s3_cluster, s3_shared_bucket.name, front, prefix, count=5)
    storage.inner.page_size = 2
    assert [i.name for i in storage.list("data")] == [f"data/{i:02d}" for i in range(5)]
    assert front.count("GET", "list-type=2") == 3
    # The folder's marker deleted behind our back (a bucket emptied by hand,
    # a wrong prefix): no listing says "no packs".
    with s3_cluster.client() as client:
        client.request("DELETE", s3_shared_bucket.name, f"{prefix}/data/", "delete marker")
    with pytest.raises(FolderNotFound):
        list(storage.list("data"))


def test_an_oversized_listing_page_is_refused(s3_cluster, s3_shared_bucket, front, prefix, monkeypatch):
    import strongroom.storage.s3 as s3

    storage = _with_objects(s3_cluster, s3_shared_bucket.name, front, prefix)
    monkeypatch.setattr(s3, "MAX_PAGE_BYTES", 4096)
    front.rewrite("GET", "list-type=2", lambda body: body.replace(b"</Name>", b"</Name>" + b" " * 8000))
    with pytest.raises(ListingFailed, match="more than 4096 bytes"):
        list(storage.list("data"))


def test_an_endless_answer_to_a_write_is_not_held(s3_cluster, s3_shared_bucket, front, prefix):
    storage = _with_objects(s3_cluster, s3_shared_bucket.name, front, prefix, count=0)
    front.answer("PUT", "/data/huge-answer", 200, b"<x>" + b" " * (2 * MiB) + b"</x>")
    with pytest.raises(StorageError, match="runs past"):
        storage.write("data/huge-answer", b"small")


# ---- multipart uploads ------------------------------------------------------------------------


def _uploads_in_progress(s3_cluster, bucket: str) -> bytes:
    with s3_cluster.client() as client:
        return client.request("GET", bucket, "", "list uploads", query={"uploads": ""}).content


def test_multipart_upload_resumes_after_trouble_and_aborts_on_a_refusal(s3_cluster, s3_bucket, prefix):
    with S3Front(s3_cluster.endpoint) as front:
        url = f"s3:{front.endpoint}/{s3_bucket.name}/{prefix}?part-size=5"
        storage = open_storage(url, s3_access=access(s3_cluster), settings=FAST)
        storage.create()
        data = os.urandom(12 * MiB)  # three parts: 5, 5 and 2 MiB
        front.answer("POST", "uploadId=", 503, s3_error("SlowDown"), times=1)
        storage.write("data/big", data)
        assert front.count("PUT", "partNumber=") == 3  # the retry sent no part again
        assert storage.read("data/big") == data and storage.stat("data/big").size == len(data)

        front.answer("PUT", "partNumber=2", 403, s3_error("AccessDenied"), times=1)
        with pytest.raises(AuthenticationFailed):
            storage.write("data/refused", data)
        assert front.count("DELETE", "uploadId=") == 1
        assert b"<Upload>" not in _uploads_in_progress(s3_cluster, s3_bucket.name)

        # Trouble that outlasts the deadline leaves the upload for close() to abort.
        short = open_storage(url, s3_access=access(s3_cluster),
                             settings=Settings(webdav_retry_delay=0.01, webdav_deadline=0.05))
        front.answer("PUT", "partNumber=3", 503, s3_error("ServiceUnavailable"), times=None)
        with pytest.raises(StorageError, match="gave up"):
            short.write("data/given-up", data)
        assert b"<Upload>" in _uploads_in_progress(s3_cluster, s3_bucket.name)
        short.close()
        assert b"<Upload>" not in _uploads_in_progress(s3_cluster, s3_bucket.name)


def test_a_part_damaged_on_the_way_is_refused_by_the_service(s3_cluster, s3_shared_bucket, prefix):
    storage = s3_cluster.storage(s3_shared_bucket.name, prefix)
    storage.create()
    body = b"the bytes we meant"
    with pytest.raises(StorageError, match="BadDigest|XAmzContentSHA256Mismatch|InvalidDigest"):
        from strongroom.storage.s3_client import content_md5
        storage.client.request("PUT", s3_shared_bucket.name, f"{prefix}/x", "put", body=body,
                               headers={"Content-MD5": content_md5(b"other bytes")})
