"""S3-compatible object storage: a repository under a bucket and a prefix.

S3 has no folders, but a repository's folders must exist ("an absence is
never proof"): each folder is a marker object, its key the folder's with
a trailing slash (what S3 consoles make for a folder). `make_dirs` writes
them; a write into a folder this process has not seen writes its markers
first (once, after making sure no object holds the folder's name);
`list(prefix)` fails with FolderNotFound when the folder's marker is
missing, so a listing under a wrong prefix, or of a bucket emptied behind
our back, is an error, never "no packs". The repository's own marker is
PREFIX/ (for a repository at a bucket's root, the bucket is the folder).

Listings are ListObjectsV2 pages, each one request (retried alone),
checked before a single entry is used: the bucket and prefix it echoes,
keys inside the prefix and strictly ascending, a continuation token on
every truncated page and never one seen before, at most MAX_PAGES pages
of at most MAX_PAGE_BYTES each.
"""

from __future__ import annotations

from typing import Callable, Iterator
from urllib.parse import unquote

from strongroom.errors import (FolderNotFound, ListingFailed, ObjectNotFound, StorageError, TransientStorageError,
                               UsageError)
from strongroom.storage.base import Attempt, ObjectInfo, Storage, StorageInfo, Temporary, check_name
from strongroom.storage.s3_client import S3Client, S3Credentials, S3Endpoint, content_md5, text_of, xml_root
from strongroom.storage import s3_lock
from strongroom.storage.s3_multipart import PendingUploads, abort, part_size_for, upload_multipart
from strongroom.storage.s3_providers import GENERIC, MiB, S3Provider
from strongroom.storage.s3_uploads import incomplete_uploads, split_temporary
from strongroom.storage.webdav import _cut_spans, _read_body

__all__ = ["S3Storage", "S3Client", "S3Credentials", "S3Endpoint", "MAX_PAGES", "MAX_PAGE_BYTES"]

MAX_PAGES = 10_000
# A page of 1000 keys is about 300 KB of XML.
MAX_PAGE_BYTES = 8 * MiB
_MAX_SIZE = 1 << 50  # no object is a petabyte: a larger size is a broken answer
DEFAULT_PART_SIZE = 16 * MiB


class S3Storage(Storage):
    def __init__(self, client: S3Client, bucket: str, prefix: str = "", provider: S3Provider = GENERIC,
                 part_size: int = DEFAULT_PART_SIZE, connections: int = 8) -> None:
        if prefix:
            check_name(prefix)
        self.client = client
        self.bucket = bucket
        self.root = prefix + "/" if prefix else ""
        self.provider = provider
        self.part_size = part_size
        self.url = f"s3:{client.endpoint.url}/{bucket}" + (f"/{prefix}" if prefix else "")
        self.info = StorageInfo(vendor=provider, max_object_size=provider.max_object_size, connections=connections)
        self._known_dirs: set[str] = set()
        self._pending = PendingUploads()
        self.max_pages = MAX_PAGES
        self.page_size: int | None = None  # keys per listing page; None: the service's (1000)
        self.object_lock: s3_lock.LockSetting | None = None  # the lock new objects get (s3_lock.py)
        self._versioned: bool | None = None  # the bucket's versioning, once read
        self._lock_enabled: bool | None = None  # its Object Lock, once read

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r})"

    @property
    def target(self) -> str:
        return self.client.target

    @property
    def http_requests(self) -> int:
        return self.client.http_requests

    def _key(self, name: str) -> str:
        return self.root + check_name(name)

    # ---- reading ------------------------------------------------------------------------

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        key = self._key(name)
        what = f"read {name}"
        if length == 0:
            return b""
        response, skip = self._get_range(key, name, offset, length, what)
        if response is None:
            return b""
        try:
            return _read_body(response, what, skip=skip, keep=length)
        finally:
            response.close()

    def read_spans(self, name: str, spans) -> Iterator[bytes]:
        """All spans from one streamed GET of the range that covers them."""
        key = self._key(name)
        spans = list(spans)
        what = f"read {name}"
        wanted = [(o, n) for o, n in spans if n > 0]
        response = None
        if wanted:
            first, last = wanted[0][0], max(o + n for o, n in wanted)
            response, skip = self._get_range(key, name, first, last - first, what)
        if response is None:
            for _ in spans:
                yield b""
            return
        try:
            yield from _cut_spans(response, what, skip, first, spans)
        finally:
            response.close()

    def _get_range(self, key: str, name: str, offset: int, length: int | None, what: str):
        headers = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        response = self.client.request("GET", self.bucket, key, what, headers=headers, stream=True,
                                       passthrough=frozenset({416}))
        try:
            status = response.status_code
            if status == 416:
                response.close()
                return None, 0
            if status == 200:
                return response, offset
            if status != 206:
                raise StorageError(f"{what}: HTTP {status} {response.reason_phrase}")
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise TransientStorageError(f"{what}: the service answered the wrong range ({content_range!r})")
            return response, 0
        except BaseException:
            response.close()
            raise

    def stat(self, name: str) -> ObjectInfo:
        key = self._key(name)
        response = self.client.request("HEAD", self.bucket, key, f"stat {name}", passthrough=frozenset({404}))
        if response.status_code == 404:
            # A HEAD answer has no body to say whether the object or the whole
            # bucket is missing: a ranged GET of the same key tells them apart
            # (NoSuchKey, NoSuchBucket), and finds one written meanwhile.
            response = self.client.request("GET", self.bucket, key, f"stat {name}", headers={"Range": "bytes=0-0"},
                                           passthrough=frozenset({416}))
            if response.status_code == 416:
                return ObjectInfo(name, 0)
            total = response.headers.get("Content-Range", "").rpartition("/")[2]
            if response.status_code == 206:
                return ObjectInfo(name, _size(total, f"stat {name}", StorageError))
            return ObjectInfo(name, len(response.content))
        return ObjectInfo(name, _size(response.headers.get("Content-Length"), f"stat {name}", StorageError))

    # ---- writing ------------------------------------------------------------------------

    def write(self, name: str, data: bytes | memoryview) -> None:
        key = self._key(name)
        what = f"write {name}"
        if name in self._known_dirs:
            raise StorageError(f"{what}: {name} is a folder")
        parent = name.rsplit("/", 1)[0] if "/" in name else ""
        if parent and parent not in self._known_dirs:
            self._make_folders(parent, check_objects=True)
        view = memoryview(data).cast("B")
        extra = self._lock_headers(name)
        size = part_size_for(len(view), self.part_size, self.provider.max_parts, self.provider.min_part_size)
        if len(view) > size:
            upload_multipart(self.client, self._pending, self.bucket, key, view, size, what, extra)
            if extra:
                s3_lock.ensure_retention(self.client, self.bucket, key, name, extra)
            return
        body = data if isinstance(data, bytes) else bytes(view)  # no copy of what is bytes already
        headers = {"Content-MD5": content_md5(body), "Content-Type": "application/octet-stream", **extra}
        if self.provider.checksums:
            import base64
            import hashlib
            headers["x-amz-checksum-sha256"] = base64.b64encode(hashlib.sha256(body).digest()).decode()
        self.client.request("PUT", self.bucket, key, what, body=body, headers=headers)

    def _make_folders(self, directory: str, check_objects: bool) -> None:
        """Markers for `directory` and its parents, top down, those not known yet."""
        parts = directory.split("/")
        for i in range(1, len(parts) + 1):
            folder = "/".join(parts[:i])
            if folder in self._known_dirs:
                continue
            if check_objects:
                try:
                    self.stat(folder)
                except ObjectNotFound:
                    pass
                else:
                    raise StorageError(f"cannot make folder {folder}: an object has that name")
            self.client.request("PUT", self.bucket, self.root + folder + "/", f"create {folder}/",
                                headers={"Content-MD5": content_md5(b"")})
            self._known_dirs.add(folder)

    def make_dirs(self, directories: list[str]) -> None:
        for directory in directories:
            self._make_folders(check_name(directory), check_objects=False)

    def delete(self, name: str) -> None:
        # S3 answers 204 for a key that is not there: deleting it is no error.
        # A 404 (NoSuchBucket) is one.
        if self._bucket_versioned():
            s3_lock.delete_versions(self.client, self.bucket, self._key(name), name)
            return
        self.client.request("DELETE", self.bucket, self._key(name), f"delete {name}")

    # ---- the repository folder ----------------------------------------------------------

    def exists(self) -> bool:
        if not self.client.bucket_exists(self.bucket):
            return False
        if not self.root:
            return True
        response = self.client.request("HEAD", self.bucket, self.root, "look up the repository",
                                       passthrough=frozenset({404}))
        return response.status_code != 404

    def create(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.create_bucket(self.bucket, object_lock=self.object_lock is not None)
        if self.root:
            self.client.request("PUT", self.bucket, self.root, "create the repository folder",
                                headers={"Content-MD5": content_md5(b"")})

    def entries(self) -> list[str]:
        """Every name directly in the repository folder: keys and sub-prefixes."""
        what = "list the repository folder"
        if self.root and not self.exists() or not self.root and not self.client.bucket_exists(self.bucket):
            raise FolderNotFound(f"{what}: the folder does not exist")
        names = []
        for key, _, is_prefix in self._walk(self.root, what, _once, delimiter=True):
            rest = key[len(self.root):]
            if is_prefix:
                names.append(rest.rstrip("/"))
            elif rest:
                names.append(rest)
        return sorted(names)

    # ---- listing ------------------------------------------------------------------------

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.list_by_request(prefix, _once)

    def list_by_request(self, prefix: str, attempt: Attempt) -> Iterator[ObjectInfo]:
        check_name(prefix)
        what = f"list {prefix}/"
        folder = self.root + prefix + "/"
        first, previous_object = True, None
        for key, size, _ in self._walk(folder, what, attempt):
            if first:
                # The marker sorts before every key below it.
                if key != folder:
                    raise FolderNotFound(f"{what}: the folder does not exist")
                first = False
                continue
            name = key[len(self.root):]
            if key.endswith("/"):
                if previous_object is not None and previous_object + "/" == name:
                    raise ListingFailed(f"{what}: {previous_object} is both an object and a folder")
                self._known_dirs.add(name[:-1])
                continue
            try:
                check_name(name)
            except StorageError:
                continue  # not ours: a stray upload or another tool's file
            previous_object = name
            yield ObjectInfo(name, size)
        if first:
            raise FolderNotFound(f"{what}: the folder does not exist")
        self._known_dirs.add(prefix)

    def _walk(self, prefix: str, what: str, attempt: Attempt,
              delimiter: bool = False) -> Iterator[tuple[str, int, bool]]:
        """(key, size, is a common prefix) for every key under `prefix`, page by page."""
        token, tokens, pages, last = None, set(), 0, None
        while True:
            pages += 1
            if pages > self.max_pages:
                raise ListingFailed(f"{what}: the listing runs to more than {self.max_pages} pages; stopped there")
            entries, token_next = attempt(lambda: self._page(prefix, token, delimiter, what))
            for key, size, is_prefix in entries:
                if not key.startswith(prefix):
                    raise ListingFailed(f"{what}: the service listed {key!r}, which is not in the folder")
                if last is not None and key <= last:
                    raise ListingFailed(f"{what}: the service listed {key!r} out of order (after {last!r})")
                last = key
                yield key, size, is_prefix
            if token_next is None:
                return
            if token_next in tokens:
                raise ListingFailed(f"{what}: the service's continuation token repeats; the listing would not end")
            tokens.add(token_next)
            token = token_next

    def _page(self, prefix: str, token: str | None, delimiter: bool,
              what: str) -> tuple[list[tuple[str, int, bool]], str | None]:
        query = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
        if token is not None:
            query["continuation-token"] = token
        if delimiter:
            query["delimiter"] = "/"
        if self.page_size:
            query["max-keys"] = str(self.page_size)
        response = self.client.request("GET", self.bucket, "", what, query=query, stream=True)
        try:
            body = _read_body(response, what, cap=MAX_PAGE_BYTES, too_large=ListingFailed)
        finally:
            response.close()
        root = xml_root(body, what, ListingFailed)
        if root.tag.rsplit("}", 1)[-1] != "ListBucketResult":
            raise ListingFailed(f"{what}: the service's answer is not a listing ({root.tag.rsplit('}', 1)[-1]})")
        if text_of(root, "Name") != self.bucket or unquote(text_of(root, "Prefix") or "") != prefix:
            raise ListingFailed(f"{what}: the service's answer lists another bucket or prefix")
        truncated = (text_of(root, "IsTruncated") or "").strip().lower()
        if truncated not in ("true", "false"):
            raise ListingFailed(f"{what}: the service's answer does not say whether it is complete")
        entries: list[tuple[str, int, bool]] = []
        for child in root:
            tag = child.tag.rsplit("}", 1)[-1]
            if tag == "Contents":
                key = text_of(child, "Key")
                if key is None:
                    raise ListingFailed(f"{what}: the service listed an object without a key")
                entries.append((unquote(key), _size(text_of(child, "Size"), what, ListingFailed), False))
            elif tag == "CommonPrefixes":
                key = text_of(child, "Prefix")
                if key is None:
                    raise ListingFailed(f"{what}: the service listed a folder without a name")
                entries.append((unquote(key), 0, True))
        # With a delimiter, keys and prefixes come in two sorted lists.
        entries.sort(key=lambda e: e[0])
        if truncated == "false":
            return entries, None
        token_next = text_of(root, "NextContinuationToken")
        if not token_next:
            raise ListingFailed(f"{what}: the service cut the listing short without a continuation token")
        if not entries:
            raise ListingFailed(f"{what}: the service sent an empty page that is not the last")
        return entries, token_next

    # ---- Object Lock (s3_lock.py) ------------------------------------------------------

    def _lock_headers(self, name: str) -> dict[str, str]:
        from datetime import datetime, timezone
        return s3_lock.lock_headers(self.object_lock, name, datetime.now(timezone.utc))

    def _bucket_versioned(self) -> bool:
        """Read once: on a versioned bucket a delete names each version."""
        if self._versioned is None:
            self._versioned = s3_lock.bucket_versioned(self.client, self.bucket)
        return self._versioned

    def may_hold_locks(self) -> bool:
        if self._lock_enabled is None:
            self._lock_enabled = s3_lock.bucket_lock_enabled(self.client, self.bucket)
        return self._lock_enabled

    def retention(self, name: str):
        return s3_lock.retention_of(self.client, self.bucket, self._key(name), name)

    def object_lock_setting(self) -> str | None:
        return None if self.object_lock is None else str(self.object_lock)

    def use_object_lock(self, setting: str) -> None:
        """The repository's config asks for locks: the same for every writer.
        A URL that asks for another lock is a set-up mistake, said at once."""
        wanted = s3_lock.parse_lock_setting(setting)
        if self.object_lock is None:
            self.object_lock = wanted
            self.check_object_lock()
        elif self.object_lock != wanted:
            raise UsageError(f"the repository locks new objects as {wanted} (its config, set by init); the URL's "
                             f"?object-lock={self.object_lock} differs: drop it from the URL, or give the same")

    def check_object_lock(self) -> None:
        """Fail fast when locks are asked for on a bucket without Object Lock.
        A bucket that does not exist yet is made with it by `init`."""
        if self.object_lock is None or not self.client.bucket_exists(self.bucket):
            return
        if not self.may_hold_locks():
            raise UsageError(f"?object-lock={self.object_lock} asks for locks, but bucket {self.bucket!r} does not "
                             f"have Object Lock enabled (it can only be enabled when a bucket is made: "
                             f"see docs/s3.md)")
        self._versioned = True

    # ---- what killed writers leave -------------------------------------------------------

    def temporaries(self) -> list[Temporary]:
        """Incomplete multipart uploads under the prefix (s3_uploads.py)."""
        return sorted(incomplete_uploads(self.client, self.bucket, self.root), key=lambda t: t.name)

    def remove_temporary(self, name: str) -> None:
        object_name, upload_id = split_temporary(name)
        what = f"abort the incomplete upload of {object_name}"
        response = self.client.request("DELETE", self.bucket, self._key(object_name), what,
                                       query={"uploadId": upload_id}, passthrough=frozenset({404}))
        # Gone already is fine; a missing bucket is not.
        if response.status_code == 404 and b"NoSuchUpload" not in response.content:
            raise StorageError(f"{what}: the service answered 404 without NoSuchUpload")

    # ---- the end ------------------------------------------------------------------------

    def close(self) -> None:
        for key, upload in self._pending.all():
            abort(self.client, self.bucket, key, upload.upload_id)
        self.client.close()


def _size(text: str | None, what: str, failure: type[StorageError]) -> int:
    if text is None or not text.strip().isdigit() or int(text) > _MAX_SIZE:
        raise failure(f"{what}: the service gave no usable size ({(text or '')[:40]!r})")
    return int(text)


def _once(request: Callable[[], object]):
    return request()
