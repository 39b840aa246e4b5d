"""Multipart uploads that were begun and never completed nor aborted.

A process killed in the middle of a pack's multipart upload leaves its
parts stored (and billed) with no object to show for them, and no listing
of objects shows them. They are the S3 form of a local directory's
temporary files: `S3Storage.temporaries` lists them (ListMultipartUploads
under the repository's prefix), so `check` reports them and `prune`, under
its exclusive lock where no other writer can be uploading, aborts them.

A listing page is checked before an entry is used, as an object listing
is: the bucket and prefix it echoes, keys inside the prefix, markers on
every truncated page and never one seen before, at most MAX_PAGES pages of
at most MAX_PAGE_BYTES. Keys outside our name alphabet (another tool's
uploads) are left alone.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Iterator

from strongroom.errors import ListingFailed, StorageError
from strongroom.storage.base import Temporary, check_name
from strongroom.storage.s3_client import S3Client, text_of, xml_root

MAX_PAGES = 1000
MAX_PAGE_BYTES = 8 << 20
MAX_PART_PAGES = 11  # S3 allows 10 000 parts, listed 1000 a page
MAX_PART_BYTES = 5 << 30  # S3's largest part
# Upload ids are the service's (radosgw: "2~...", AWS: a long base64-like
# string); this bounds them to what can travel in a query safely.
_UPLOAD_ID = re.compile(r"[A-Za-z0-9._~+/=-]{1,1024}")
SEPARATOR = "#upload="  # a temporary's name: KEY#upload=ID (no object name holds "#")


def incomplete_uploads(client: S3Client, bucket: str, root: str,
                       now: datetime | None = None) -> Iterator[Temporary]:
    """Every incomplete multipart upload of ours under `root` (the repository's
    prefix with its slash, or ""), as a Temporary named KEY#upload=ID relative
    to `root`, with the bytes its parts hold (one ListParts each) and aged by
its Initiated date (the service's clock: advisory)."""
    from strongroom.storage.webdav import _read_body

    what = "list incomplete multipart uploads"
    now = now or datetime.now(timezone.utc)
    markers: tuple[str, str] | None = None
    seen: set[tuple[str, str]] = set()
    for _ in range(MAX_PAGES):
        query = {"uploads": "", "prefix": root}
        if markers is not None:
            query["key-marker"], query["upload-id-marker"] = markers
        response = client.request("GET", bucket, "", what, query=query, stream=True)
        try:
            body = _read_body(response, what, cap=MAX_PAGE_BYTES, too_large=ListingFailed)
        finally:
            response.close()
        page = xml_root(body, what, ListingFailed)
        if page.tag.rsplit("}", 1)[-1] != "ListMultipartUploadsResult":
            raise ListingFailed(f"{what}: the service's answer is not a listing of uploads")
        if text_of(page, "Bucket") != bucket or (text_of(page, "Prefix") or "") != root:
            raise ListingFailed(f"{what}: the service's answer lists another bucket or prefix")
        truncated = (text_of(page, "IsTruncated") or "").strip().lower()
        if truncated not in ("true", "false"):
            raise ListingFailed(f"{what}: the service's answer does not say whether it is complete")
        for upload in page:
            if upload.tag.rsplit("}", 1)[-1] != "Upload":
                continue
            key, upload_id = text_of(upload, "Key") or "", text_of(upload, "UploadId") or ""
            if not key.startswith(root):
                raise ListingFailed(f"{what}: the service listed {key[:80]!r}, which is not in the folder")
            name = key[len(root):]
            try:
                check_name(name)
            except StorageError:
                continue  # not ours
            if not _UPLOAD_ID.fullmatch(upload_id):
                raise ListingFailed(f"{what}: the service listed an upload of {name} without a usable id")
            size = stored_bytes(client, bucket, key, upload_id)
            if size is not None:  # None: completed or aborted since the listing
                yield Temporary(name + SEPARATOR + upload_id, size, _age(text_of(upload, "Initiated"), now))
        if truncated == "false":
            return
        following = (text_of(page, "NextKeyMarker") or "", text_of(page, "NextUploadIdMarker") or "")
        if not following[0] or following in seen:
            raise ListingFailed(f"{what}: the service cut the listing short without a new marker")
        seen.add(following)
        markers = following
    raise ListingFailed(f"{what}: the listing runs to more than {MAX_PAGES} pages; stopped there")


def stored_bytes(client: S3Client, bucket: str, key: str, upload_id: str) -> int | None:
    """The bytes an upload's parts hold (ListParts, page by page), or None when
    the upload is gone (NoSuchUpload: completed or aborted meanwhile)."""
    from strongroom.storage.webdav import _read_body

    what = f"list the parts of an incomplete upload of {key}"
    total, marker, seen = 0, None, set()
    for _ in range(MAX_PART_PAGES):
        query = {"uploadId": upload_id} | ({} if marker is None else {"part-number-marker": marker})
        response = client.request("GET", bucket, key, what, query=query, stream=True, passthrough=frozenset({404}))
        try:
            body = _read_body(response, what, cap=MAX_PAGE_BYTES, too_large=ListingFailed)
        finally:
            response.close()
        if response.status_code == 404:
            if b"NoSuchUpload" in body:
                return None
            raise ListingFailed(f"{what}: the service answered 404 without NoSuchUpload")
        page = xml_root(body, what, ListingFailed)
        if page.tag.rsplit("}", 1)[-1] != "ListPartsResult" or text_of(page, "UploadId") != upload_id:
            raise ListingFailed(f"{what}: the service's answer is not a listing of this upload's parts")
        for part in page:
            if part.tag.rsplit("}", 1)[-1] == "Part":
                size = (text_of(part, "Size") or "").strip()
                if not size.isdigit() or int(size) > MAX_PART_BYTES:
                    raise ListingFailed(f"{what}: the service gave no usable part size ({size[:40]!r})")
                total += int(size)
        truncated = (text_of(page, "IsTruncated") or "").strip().lower()
        if truncated == "false":
            return total
        following = (text_of(page, "NextPartNumberMarker") or "").strip()
        if truncated != "true" or not following.isdigit() or following in seen:
            raise ListingFailed(f"{what}: the service cut the listing short without a new marker")
        seen.add(following)
        marker = following
    raise ListingFailed(f"{what}: more than {MAX_PART_PAGES} pages of parts; stopped there")


def split_temporary(name: str) -> tuple[str, str]:
    """(object name, upload id) of a temporary `incomplete_uploads` named."""
    object_name, sep, upload_id = name.partition(SEPARATOR)
    if not sep or not _UPLOAD_ID.fullmatch(upload_id):
        raise StorageError(f"invalid name of an incomplete upload {name[:120]!r}")
    return check_name(object_name), upload_id


def _age(initiated: str | None, now: datetime) -> float:
    try:
        when = datetime.fromisoformat((initiated or "").strip().replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (now - when).total_seconds())
