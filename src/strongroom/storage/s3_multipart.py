"""Multipart uploads: an object above the part size goes in parts.

Each part carries its Content-MD5 and the signed SHA-256 of its bytes, so
the service refuses a part damaged on the way. A part that fails with
trouble that may pass is not the end of the upload: the upload is kept
(`PendingUploads`), and when the retry decorator sends the same write
again, the parts already stored (same number, same MD5) are skipped and
only the rest go. Any other failure aborts the upload at once, and
`abort_all` (on close) aborts the ones a give-up left behind, so no parts
stay stored (and billed) with no object to show for them.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from strongroom.errors import StorageError, TransientStorageError
from strongroom.storage.s3_client import S3Client, content_md5, text_of, xml_root



@dataclass
class Upload:
    upload_id: str
    size: int
    part_size: int
    done: dict[int, tuple[str, str]] = field(default_factory=dict)  # part number -> (md5 hex, ETag)


class PendingUploads:
    """Multipart uploads begun and not yet completed or aborted, by object key."""

    def __init__(self) -> None:
        self._uploads: dict[str, Upload] = {}
        self._lock = threading.Lock()

    def take(self, key: str, size: int, part_size: int) -> Upload | None:
        with self._lock:
            upload = self._uploads.get(key)
            if upload is not None and (upload.size, upload.part_size) == (size, part_size):
                return upload
            return None

    def keep(self, key: str, upload: Upload) -> None:
        with self._lock:
            self._uploads[key] = upload

    def forget(self, key: str) -> Upload | None:
        with self._lock:
            return self._uploads.pop(key, None)

    def all(self) -> list[tuple[str, Upload]]:
        with self._lock:
            found = list(self._uploads.items())
            self._uploads.clear()
            return found


def part_size_for(size: int, part_size: int, max_parts: int, min_part: int) -> int:
    """The part size an object of `size` bytes is cut into: the configured
    one, or larger where the service's part count would not hold it."""
    size_needed = -(-size // max_parts)
    return max(part_size, size_needed, min_part)


def upload_multipart(client: S3Client, pending: PendingUploads, bucket: str, key: str, data: memoryview,
                     part_size: int, what: str, extra_headers: dict[str, str]) -> None:
    upload = pending.take(key, len(data), part_size)
    if upload is None:
        upload = Upload(_begin(client, bucket, key, what, extra_headers), len(data), part_size)
        pending.keep(key, upload)
    try:
        count = -(-len(data) // part_size)
        for number in range(1, count + 1):
            piece = data[(number - 1) * part_size:number * part_size]
            md5 = hashlib.md5(piece).hexdigest()
            if upload.done.get(number, ("",))[0] == md5:
                continue
            upload.done[number] = (md5, _put_part(client, bucket, key, upload.upload_id, number, piece, md5, what))
        _complete(client, bucket, key, upload, count, what)
    except TransientStorageError:
        raise  # kept for the retry, which sends only the parts missing
    except BaseException:
        pending.forget(key)
        abort(client, bucket, key, upload.upload_id)
        raise
    pending.forget(key)


def _begin(client: S3Client, bucket: str, key: str, what: str, headers: dict[str, str]) -> str:
    response = client.request("POST", bucket, key, what, query={"uploads": ""},
                              headers={"Content-Type": "application/octet-stream", **headers})
    root = xml_root(response.content, what, TransientStorageError)
    upload_id = text_of(root, "UploadId")
    if not upload_id or text_of(root, "Key") not in (None, key):
        raise StorageError(f"{what}: the service began a multipart upload without an id for {key}")
    return upload_id


def _put_part(client: S3Client, bucket: str, key: str, upload_id: str, number: int, piece: memoryview,
              md5: str, what: str) -> str:
    import base64

    headers = {"Content-MD5": base64.b64encode(bytes.fromhex(md5)).decode(),
               "Content-Length": str(len(piece))}
    response = client.request("PUT", bucket, key, f"{what} (part {number})", body=bytes(piece),
                              query={"partNumber": str(number), "uploadId": upload_id}, headers=headers)
    etag = response.headers.get("ETag", "")
    if not etag:
        raise TransientStorageError(f"{what} (part {number}): the service stored the part without an ETag")
    # Where the ETag is the part's MD5 (every service measured), it proves
    # the bytes stored are the bytes sent.
    plain = etag.strip('"')
    if len(plain) == 32 and all(c in "0123456789abcdef" for c in plain.lower()) and plain.lower() != md5:
        raise TransientStorageError(f"{what} (part {number}): the stored part's MD5 is not that of its bytes")
    return etag


def _complete(client: S3Client, bucket: str, key: str, upload: Upload, count: int, what: str) -> None:
    parts = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(upload.done[n][1])}</ETag></Part>"
                    for n in range(1, count + 1))
    body = f'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{parts}' \
           f"</CompleteMultipartUpload>".encode()
    response = client.request("POST", bucket, key, what, query={"uploadId": upload.upload_id}, body=body,
                              headers={"Content-MD5": content_md5(body), "Content-Type": "application/xml"})
    # The service may answer 200 and still fail, with an <Error> in the body.
    root = xml_root(response.content, what, TransientStorageError)
    if root.tag.rsplit("}", 1)[-1] == "Error":
        code = text_of(root, "Code") or "an error"
        raise TransientStorageError(f"{what}: completing the upload failed ({code})", reason=code)


def abort(client: S3Client, bucket: str, key: str, upload_id: str) -> None:
    """Abort an upload (its stored parts go); a failure to abort is not raised
    over the error that led here: docs/s3.md says how to clear such parts."""
    try:
        client.request("DELETE", bucket, key, f"abort upload of {key}", query={"uploadId": upload_id},
                       passthrough=frozenset({404}))
    except StorageError:
        pass
