"""S3 Object Lock: retention on what a repository writes, and deletes that
really free storage on a versioned bucket.

A bucket made with Object Lock is versioned. There a plain DELETE frees
nothing: it adds a delete marker that hides the object from listings while
every byte stays stored. So on a versioned bucket a delete names each
version of the key (`DELETE ?versionId=`), delete markers first, so that
a version the lock keeps stays the one a listing shows: the repository
never loses sight of data that is still stored. A version whose lock has
not expired is refused with 403 AccessDenied; that is ObjectLocked, with
the retain-until date read back from the version, never success.

Every answer is hostile until it makes sense: a version listing must be
of this bucket and this key, complete (one page: a key with more than
1000 versions is not ours), and a retain-until date must parse; one that
does not is an error, never "unlocked".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

from strongroom.errors import ObjectLocked, ObjectNotFound, StorageError, UsageError
from strongroom.storage.base import Retention
from strongroom.storage.s3_client import S3Client, content_md5, text_of, xml_root
from strongroom.storage.webdav import _read_body

__all__ = ["LockSetting", "parse_lock_setting", "LOCKED_FOLDERS", "lock_headers", "bucket_lock_enabled",
           "bucket_versioned", "retention_of", "delete_versions", "ensure_retention"]

# What a repository cannot lose: packs, index, snapshots, and what opens
# them (the config, the key files: `key passwd` keeps a locked old key,
# `key remove` of one fails with its date), and configs/, append-only
# records (managed configurations, DR plans and runs). Never locks/ (a
# lock must go at once) or folder markers.
LOCKED_FOLDERS = ("data", "index", "snapshots", "configs", "keys", "config")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_PERIOD = 100 * 365 * 86400
_MAX_VERSIONS_ANSWER = 1024 * 1024


@dataclass(frozen=True)
class LockSetting:
    mode: str  # GOVERNANCE or COMPLIANCE
    seconds: int

    def __str__(self) -> str:
        return f"{self.mode.lower()}:{self.seconds}s"


def parse_lock_setting(text: str) -> LockSetting:
    """`governance:30d` or `compliance:90d` (units s, m, h, d)."""
    found = re.fullmatch(r"(governance|compliance):([0-9]{1,9})([smhd])", text.strip().lower())
    if not found:
        raise UsageError(f"?object-lock= is governance:PERIOD or compliance:PERIOD (e.g. governance:30d; "
                         f"units s, m, h, d), not {text!r}")
    seconds = int(found.group(2)) * _UNITS[found.group(3)]
    if not 1 <= seconds <= _MAX_PERIOD:
        raise UsageError("?object-lock= takes a period from 1 second to 100 years")
    return LockSetting(found.group(1).upper(), seconds)


def lock_headers(setting: LockSetting | None, name: str, now: datetime) -> dict[str, str]:
    """The headers that lock a new object `name`, if it is one that stays."""
    if setting is None or name.split("/", 1)[0] not in LOCKED_FOLDERS:
        return {}
    # Whole seconds, rounded up: radosgw keeps no finer date.
    until = (now + timedelta(seconds=setting.seconds + 1)).replace(microsecond=0)
    return {"x-amz-object-lock-mode": setting.mode,
            "x-amz-object-lock-retain-until-date": until.strftime("%Y-%m-%dT%H:%M:%SZ")}


def bucket_lock_enabled(client: S3Client, bucket: str) -> bool:
    """GetObjectLockConfiguration: True when the bucket has Object Lock enabled."""
    what = f"read the Object Lock configuration of bucket {bucket}"
    response = client.request("GET", bucket, "", what, query={"object-lock": ""}, passthrough=frozenset({404, 501}))
    if _not_implemented(response):
        return False  # a service without Object Lock (Cloudflare R2) has no locks to respect
    if response.status_code == 404:
        if b"ObjectLockConfigurationNotFound" in response.content:
            return False
        raise StorageError(f"{what}: bucket {bucket!r} does not exist")
    root = xml_root(response.content, what, StorageError)
    if root.tag.rsplit("}", 1)[-1] != "ObjectLockConfiguration":
        raise StorageError(f"{what}: the service's answer is not an Object Lock configuration")
    return (text_of(root, "ObjectLockEnabled") or "").strip() == "Enabled"


def bucket_versioned(client: S3Client, bucket: str) -> bool:
    """GetBucketVersioning: True once versioning was ever enabled (Enabled or
    Suspended: either way old versions may be stored)."""
    what = f"read the versioning of bucket {bucket}"
    response = client.request("GET", bucket, "", what, query={"versioning": ""}, passthrough=frozenset({501}))
    if _not_implemented(response):
        return False  # a service without versioning keeps no old versions
    root = xml_root(response.content, what, StorageError)
    if root.tag.rsplit("}", 1)[-1] != "VersioningConfiguration":
        raise StorageError(f"{what}: the service's answer is not a versioning configuration")
    status = (text_of(root, "Status") or "").strip()
    if status not in ("", "Enabled", "Suspended"):
        raise StorageError(f"{what}: the service says versioning is {status[:40]!r}")
    return status != ""


def _not_implemented(response) -> bool:
    """A 501 NotImplemented: the service has no such feature at all."""
    return response.status_code == 501 and b"NotImplemented" in response.content


def parse_date(text: str, what: str) -> datetime:
    """An ISO 8601 UTC date as S3 services write it (radosgw: nanoseconds)."""
    found = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|\+00:00)", text.strip())
    if not found:
        raise StorageError(f"{what}: the service gave a retain-until date that cannot be read ({text[:40]!r})")
    try:
        date = datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        raise StorageError(f"{what}: the service gave an impossible retain-until date ({text[:40]!r})") from None
    fraction = found.group(2)
    return date + timedelta(microseconds=int(fraction[:6].ljust(6, "0"))) if fraction else date


def retention_of(client: S3Client, bucket: str, key: str, name: str, version: str | None = None) -> Retention:
    """HEAD an object (a version of it): its size and lock."""
    what = f"read the lock of {name}"
    query = {"versionId": version} if version else None
    response = client.request("HEAD", bucket, key, what, query=query, passthrough=frozenset({404}))
    if response.status_code == 404:
        raise ObjectNotFound(f"{name} does not exist")
    size_text = response.headers.get("Content-Length", "")
    if not size_text.isdigit():
        raise StorageError(f"{what}: the service gave no usable size")
    mode = response.headers.get("x-amz-object-lock-mode")
    until_text = response.headers.get("x-amz-object-lock-retain-until-date")
    if mode is not None and mode.upper() not in ("GOVERNANCE", "COMPLIANCE"):
        raise StorageError(f"{what}: the service gave an unknown lock mode ({mode[:40]!r})")
    if (mode is None) != (until_text is None):
        raise StorageError(f"{what}: the service gave a lock mode without a date, or a date without a mode")
    hold = (response.headers.get("x-amz-object-lock-legal-hold") or "OFF").upper()
    if hold not in ("ON", "OFF"):
        raise StorageError(f"{what}: the service gave an unknown legal hold ({hold[:40]!r})")
    return Retention(name, int(size_text), mode.upper() if mode else None,
                     parse_date(until_text, what) if until_text else None, hold == "ON")


def _versions(client: S3Client, bucket: str, key: str, what: str) -> list[tuple[str, bool]]:
    """(version id, is a delete marker) of every version of exactly `key`, newest first."""
    response = client.request("GET", bucket, "", what, query={"versions": "", "prefix": key, "max-keys": "1000"},
                              stream=True)
    try:
        body = _read_body(response, what, cap=_MAX_VERSIONS_ANSWER, too_large=StorageError)
    finally:
        response.close()
    root = xml_root(body, what, StorageError)
    if root.tag.rsplit("}", 1)[-1] != "ListVersionsResult":
        raise StorageError(f"{what}: the service's answer is not a list of versions")
    if text_of(root, "Name") != bucket or unquote(text_of(root, "Prefix") or "") != key:
        raise StorageError(f"{what}: the service listed the versions of another bucket or key")
    if (text_of(root, "IsTruncated") or "").strip().lower() != "false":
        raise StorageError(f"{what}: the service's list of versions is not complete")
    found = []
    for child in root:
        tag = child.tag.rsplit("}", 1)[-1]
        if tag not in ("Version", "DeleteMarker") or text_of(child, "Key") != key:
            continue  # another key that starts with this one
        version = text_of(child, "VersionId")
        if not version:
            raise StorageError(f"{what}: the service listed a version without an id")
        found.append((version, tag == "DeleteMarker"))
    return found


def delete_versions(client: S3Client, bucket: str, key: str, name: str) -> int:
    """Delete every version of `key`: delete markers first, then the data,
    newest first. Returns the number of versions deleted; raises
    ObjectLocked at the first version the lock keeps (those before it are
    gone, the rest stay, the newest one left is what listings show)."""
    what = f"delete {name}"
    versions = _versions(client, bucket, key, what)
    order = [v for v in versions if v[1]] + [v for v in versions if not v[1]]
    for done, (version, _) in enumerate(order):
        response = client.request("DELETE", bucket, key, what, query={"versionId": version},
                                  passthrough=frozenset({403}))
        if response.status_code == 403:
            raise _refusal(client, bucket, key, name, version, response)
    return len(order)


def _refusal(client: S3Client, bucket: str, key: str, name: str, version: str, response) -> StorageError:
    """What a 403 to a versioned delete means: the lock, or no right to delete."""
    code = b"AccessDenied" in response.content
    try:
        retention = retention_of(client, bucket, key, name, version)
    except StorageError:
        retention = None
    if code and retention is not None and (retention.mode is not None or retention.legal_hold):
        if retention.legal_hold:
            said = "a legal hold"
        else:
            said = f"a {retention.mode.lower()} lock until {retention.until:%Y-%m-%d %H:%M:%S} UTC"
            if not retention.holds(datetime.now(timezone.utc)):
                said += " (past by this machine's clock; the service's clock says otherwise)"
        return ObjectLocked(f"delete {name}: refused by the service: the object is under {said}",
                            until=retention.until, size=retention.size, name=name)
    return StorageError(f"delete {name}: the S3 service refused the delete (HTTP 403): check the access key's "
                        f"rights to delete object versions in bucket {bucket!r}")


def ensure_retention(client: S3Client, bucket: str, key: str, name: str, headers: dict[str, str]) -> None:
    """After a multipart upload: make sure the object holds the lock its first
    request asked for. radosgw (Pacific) ignores the lock headers of
    CreateMultipartUpload and stores the object unlocked; PutObjectRetention
    then sets it. Where the service kept them (AWS), this is one HEAD."""
    mode = headers["x-amz-object-lock-mode"]
    wanted = parse_date(headers["x-amz-object-lock-retain-until-date"], f"write {name}")
    found = retention_of(client, bucket, key, name)
    if found.mode == mode and found.until is not None and found.until >= wanted:
        return
    body = (f'<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Mode>{mode}</Mode>'
            f'<RetainUntilDate>{headers["x-amz-object-lock-retain-until-date"]}</RetainUntilDate>'
            f"</Retention>").encode()
    client.request("PUT", bucket, key, f"lock {name}", query={"retention": ""}, body=body,
                   headers={"Content-MD5": content_md5(body), "Content-Type": "application/xml"})
    found = retention_of(client, bucket, key, name)
    if found.mode != mode or found.until is None or found.until < wanted:
        raise StorageError(f"write {name}: the service did not keep the lock asked for ({mode} until "
                           f"{wanted:%Y-%m-%d %H:%M:%S} UTC)")
