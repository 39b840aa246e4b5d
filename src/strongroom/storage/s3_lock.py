"""S3 Object Lock: retention dates on what a repository must not lose.

With `?object-lock=governance:30d` (or compliance), every new pack, index
object and snapshot, and the config and key files, are written with a
retention date 30 days on; locks and folder markers are not (they must go
when their run ends). The bucket must
have Object Lock enabled (init creates it so when it makes the bucket), and
such a bucket is versioned: a plain DELETE would only add a delete marker,
hiding the object while it stays stored. So deletes here name each version
of the key, and a version under retention is refused by the service; that
refusal is `ObjectLocked`, with the date and size, for prune and forget to
skip the object and say when it can go.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

from strongroom.errors import ObjectLocked, StorageError, TransientStorageError
from strongroom.storage.s3_client import S3Client, text_of, xml_root

# What a repository cannot lose: its packs, index and snapshots, and what
# opens them (the config, the key files). Not locks, not folder markers.
LOCKED_FOLDERS = frozenset({"data", "index", "snapshots", "keys", "config"})
_MAX_VERSIONS = 1000  # of one key: a page; more is not a repository's


def retention_headers(mode: str, days: int, now: Callable[[], datetime]) -> dict[str, str]:
    until = now() + timedelta(days=days)
    return {"x-amz-object-lock-mode": mode,
            "x-amz-object-lock-retain-until-date": until.strftime("%Y-%m-%dT%H:%M:%S.000Z")}


def check_bucket_locks(client: S3Client, bucket: str) -> None:
    """Fail at once when the bucket cannot hold retention dates."""
    what = f"look up the Object Lock configuration of bucket {bucket}"
    response = client.request("GET", bucket, "", what, query={"object-lock": ""}, passthrough=frozenset({404}))
    enabled = None
    if response.status_code == 200:
        enabled = text_of(xml_root(response.content, what, StorageError), "ObjectLockEnabled")
    if enabled != "Enabled":
        raise StorageError(f"bucket {bucket!r} has no Object Lock, so ?object-lock= cannot hold: Object Lock is "
                           f"chosen when a bucket is made (init makes one so when the bucket does not exist yet)")


def _until(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return None


def delete_versions(client: S3Client, bucket: str, key: str, name: str, now: Callable[[], datetime]) -> None:
    """Delete every version of `key` (and its delete markers), or raise ObjectLocked
    for one the service keeps; nothing at all is not an error."""
    what = f"delete {name}"
    response = client.request("GET", bucket, "", what, query={"versions": "", "prefix": key,
                                                               "max-keys": str(_MAX_VERSIONS)})
    root = xml_root(response.content, what, StorageError)
    if (text_of(root, "IsTruncated") or "").strip().lower() == "true":
        raise StorageError(f"{what}: more than {_MAX_VERSIONS} versions of one object")
    versions = []
    for child in root:
        tag = child.tag.rsplit("}", 1)[-1]
        if tag in ("Version", "DeleteMarker") and text_of(child, "Key") == key:
            versions.append((text_of(child, "VersionId") or "null", tag == "Version",
                             int(text_of(child, "Size") or 0) if (text_of(child, "Size") or "0").isdigit() else 0))
    for version, is_object, size in versions:
        if is_object:
            head = client.request("HEAD", bucket, key, what, query={"versionId": version},
                                  passthrough=frozenset({404}))
            until = _until(head.headers.get("x-amz-object-lock-retain-until-date"))
            if until is not None and until > now():
                raise ObjectLocked(f"{name} is locked until {until:%Y-%m-%d %H:%M} UTC", until, size)
        done = client.request("DELETE", bucket, key, what, query={"versionId": version},
                              passthrough=frozenset({403, 404}))
        if done.status_code == 403:
            # Retention or a legal hold the HEAD did not show (or lost a race with).
            raise ObjectLocked(f"{name}: the service keeps it (Object Lock)", None, size)
        if done.status_code not in (200, 204, 404):
            raise TransientStorageError(f"{what}: HTTP {done.status_code}")
