"""A thin WebDAV client of our own, on httpx.

Only the verbs every server agrees on: PROPFIND with an explicit Depth of 0
or 1, GET (with Range), PUT with Content-Length, MKCOL, DELETE. No MOVE,
COPY, LOCK or conditional requests. Listings follow `Link: rel="next"`
pages. Parent collections are created only when a PUT says they are
missing, and remembered for the rest of the run. Errors are typed so that
the retry decorator knows what may pass and what never will.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from typing import Callable, Iterator
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpx

from strongroom import __version__
from strongroom.errors import (AuthenticationFailed, ObjectNotFound, StorageError,
                               TransientStorageError)
from strongroom.storage.base import ObjectInfo, Storage, check_name
from strongroom.storage.vendors import GENERIC, VendorProfile

_PROPFIND_BODY = (b'<?xml version="1.0" encoding="utf-8"?>'
                  b'<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getcontentlength/>'
                  b'</d:prop></d:propfind>')
_DAV = "{DAV:}"
# GET answers for a name that is a collection or lies below a file: 403
# (wsgidav, nginx), 405 (rclone), 301 (Apache), 400 (Apache, through a file).
_NOT_AN_OBJECT = frozenset({301, 400, 403, 404, 405, 409})



def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own back-off


class WebDAVStorage(Storage):
    def __init__(self, base_url: str, username: str, password: str, vendor: VendorProfile = GENERIC,
                 timeout: float = 60.0, gate: Callable[[], None] | None = None) -> None:
        if not base_url.endswith("/"):
            base_url += "/"
        self.base_url = base_url
        self.base_path = urlsplit(base_url).path
        self.vendor = vendor
        self.url = f"webdav+{base_url}"
        self._gate = gate
        self._client = httpx.Client(
            auth=(username, password), timeout=httpx.Timeout(timeout, connect=min(timeout, 20.0)),
            follow_redirects=False, headers={"User-Agent": f"strongroom/{__version__}"},
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
        )
        self._known_dirs: set[str] = set()
        self._refused: AuthenticationFailed | None = None
        self._lock = threading.Lock()
        self.http_requests = 0

    def __repr__(self) -> str:
        return f"WebDAVStorage({self.base_url!r})"

    # ---- requests --------------------------------------------------------------

    def _url(self, name: str, collection: bool = False) -> str:
        path = quote(name, safe="/")
        return self.base_url + path + ("/" if collection and path else "")

    def _request(self, method: str, url: str, what: str, passthrough: frozenset[int] = frozenset(),
                 **kwargs) -> httpx.Response:
        """One HTTP request, its failures typed; statuses in `passthrough` come back as they are."""
        if self._refused is not None:
            # Nutstore locks accounts after repeated refusals: after the first,
            # send nothing more.
            raise AuthenticationFailed(str(self._refused))
        if self._gate is not None:
            self._gate()
        with self._lock:
            self.http_requests += 1
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as e:
            raise TransientStorageError(f"{what}: timed out ({type(e).__name__})") from None
        except httpx.TransportError as e:
            raise TransientStorageError(f"{what}: connection failed ({type(e).__name__}: {e})") from None
        status = response.status_code
        if status in passthrough:
            return response
        if status in (401, 403):
            refused = AuthenticationFailed(
                f"{what}: the WebDAV server refused access (HTTP {status}): check the WebDAV app password "
                f"and the account's rights to {self.base_url}")
            if status == 401:
                self._refused = refused
            raise refused
        if status == 413:
            raise StorageError(f"{what}: the server refused the upload as too large (HTTP 413): choose a smaller "
                               f"--pack-size at init, or the right --webdav-vendor")
        if status == 503 and b"BlockedTemporarily" in response.content:
            raise TransientStorageError(f"{what}: the server is throttling requests (503 BlockedTemporarily)",
                                        _retry_after(response), throttled=True)
        if status in (423, 429) or status >= 500 and status != 507:
            raise TransientStorageError(f"{what}: HTTP {status} {response.reason_phrase}", _retry_after(response))
        if status == 507:
            raise StorageError(f"{what}: the WebDAV target is full (HTTP 507)")
        return response

    @staticmethod
    def _fail(what: str, response: httpx.Response) -> StorageError:
        return StorageError(f"{what}: HTTP {response.status_code} {response.reason_phrase}")

    # ---- verbs ----------------------------------------------------------------------

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        check_name(name)
        what = f"read {name}"
        if length == 0:
            return b""
        headers = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        response = self._request("GET", self._url(name), what, passthrough=_NOT_AN_OBJECT, headers=headers)
        if response.status_code in _NOT_AN_OBJECT:
            if response.status_code == 403 and name not in self._known_dirs:
                raise AuthenticationFailed(f"{what}: the WebDAV server refused access (HTTP 403): check the "
                                           f"WebDAV app password and the account's rights to {self.base_url}")
            raise ObjectNotFound(f"{name} does not exist")
        if response.status_code == 416:
            return b""
        if response.status_code == 200:
            data = response.content[offset:] if offset else response.content
            return data if length is None else data[:length]
        if response.status_code != 206:
            raise self._fail(what, response)
        data = response.content
        content_range = response.headers.get("Content-Range", "")
        if not content_range.startswith(f"bytes {offset}-"):
            raise TransientStorageError(f"{what}: server answered the wrong range ({content_range!r})")
        if length is not None and len(data) > length:
            data = data[:length]
        return data

    def write(self, name: str, data: bytes | memoryview) -> None:
        check_name(name)
        what = f"write {name}"
        cap = self.vendor.max_object_size
        if cap is not None and len(data) > cap:
            raise StorageError(f"{what}: {len(data)} bytes is over the server's upload limit of {cap} bytes")
        body = bytes(data)
        parent = name.rsplit("/", 1)[0] if "/" in name else ""
        # A missing parent answers 409 (RFC 4918), 404 (Nutstore, rclone) or
        # even 500 (nginx): create it then, once, and try again.
        missing = frozenset({404, 409} | ({500} if parent not in self._known_dirs else set()))
        response = self._put(name, body, what, missing)
        if response.status_code in missing:
            self._make_parents(name)
            response = self._put(name, body, what)
        if response.status_code not in (200, 201, 204):
            raise self._fail(what, response)
        if parent:
            self._known_dirs.add(parent)

    def _put(self, name: str, body: bytes, what: str, passthrough: frozenset[int] = frozenset()) -> httpx.Response:
        return self._request("PUT", self._url(name), what, passthrough, content=body,
                             headers={"Content-Type": "application/octet-stream"})

    def _make_parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self._mkcol("/".join(parts[:i]))

    def _mkcol(self, directory: str) -> None:
        if directory in self._known_dirs:
            return
        url = self._url(directory, collection=True)
        response = self._request("MKCOL", url, f"create {directory}/", passthrough=frozenset({403}))
        # 405: it exists already. 409 for a missing parent cannot happen top-down.
        # 403: Apache's answer when another writer created it a moment before;
        # only a look tells that apart from a real refusal.
        if response.status_code == 403:
            if not any(is_dir for _, is_dir, _ in self._propfind(url, 0, f"create {directory}/")):
                raise AuthenticationFailed(f"create {directory}/: the WebDAV server refused access (HTTP 403): "
                                           f"check the WebDAV app password and the account's rights to "
                                           f"{self.base_url}")
        elif response.status_code not in (200, 201, 204, 405):
            raise self._fail(f"create {directory}/", response)
        with self._lock:
            self._known_dirs.add(directory)

    def delete(self, name: str) -> None:
        check_name(name)
        response = self._request("DELETE", self._url(name), f"delete {name}", passthrough=frozenset({400, 409}))
        # 400 (Apache) and 409 (nginx): a path through a file, so nothing is there.
        if response.status_code not in (200, 202, 204, 404, 400, 409):
            raise self._fail(f"delete {name}", response)

    def stat(self, name: str) -> ObjectInfo:
        check_name(name)
        for href, is_dir, size in self._propfind(self._url(name), 0, f"stat {name}"):
            if is_dir:
                raise ObjectNotFound(f"{name} is a collection, not an object")
            return ObjectInfo(name, size)
        raise ObjectNotFound(f"{name} does not exist")

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        check_name(prefix)
        pending = [prefix]
        while pending:
            directory = pending.pop()
            base = self._url(directory, collection=True)
            own = urlsplit(base).path.rstrip("/")
            for href, is_dir, size in self._propfind(base, 1, f"list {directory}/"):
                path = unquote(urlsplit(urljoin(base, href)).path).rstrip("/")
                if path == unquote(own):
                    continue
                child = path.rsplit("/", 1)[-1]
                if not child or child.startswith(".tmp-"):
                    continue
                rel = f"{directory}/{child}"
                try:
                    check_name(rel)
                except StorageError:
                    continue  # not ours: a sync client's file or a stray upload
                if is_dir:
                    pending.append(rel)
                    self._known_dirs.add(rel)
                else:
                    yield ObjectInfo(rel, size)

    def _propfind(self, url: str, depth: int, what: str) -> Iterator[tuple[str, bool, int]]:
        """PROPFIND with an explicit Depth, following Link rel="next" pages."""
        while url:
            response = self._request("PROPFIND", url, what, passthrough=frozenset({301, 400, 404, 409}),
                                     content=_PROPFIND_BODY,
                                     headers={"Depth": str(depth), "Content-Type": "application/xml"})
            # 400/409: a path through a file; 301: a collection named without its slash (Apache).
            if response.status_code in (301, 400, 404, 409):
                return
            if response.status_code != 207:
                raise self._fail(what, response)
            yield from _parse_multistatus(response.content, what)
            next_link = response.links.get("next", {}).get("url")
            url = urljoin(url, next_link) if next_link else ""

    def exists(self) -> bool:
        for _ in self._propfind(self.base_url, 0, "look up the repository"):
            return True
        return False

    def create(self) -> None:
        """Create the repository collection (and its parents where allowed)."""
        response = self._request("MKCOL", self.base_url, "create the repository folder", frozenset({403}))
        if response.status_code in (200, 201, 405):
            return
        if response.status_code == 403:
            raise AuthenticationFailed("create the repository folder: the WebDAV server refused access "
                                       f"(HTTP 403): check the WebDAV app password and the account's rights "
                                       f"to {self.base_url}")
        if response.status_code != 409:
            raise self._fail("create the repository folder", response)
        root = urlsplit(self.base_url)
        parts = [p for p in root.path.split("/") if p]
        for i in range(1, len(parts) + 1):
            url = f"{root.scheme}://{root.netloc}/" + "/".join(parts[:i]) + "/"
            r = self._request("MKCOL", url, f"create /{'/'.join(parts[:i])}/", frozenset({403}))
            if r.status_code not in (200, 201, 405, 403):  # 403: a root we may not touch
                raise self._fail(f"create /{'/'.join(parts[:i])}/", r)

    def quota(self) -> tuple[int | None, int | None]:
        """(used, available) bytes from the RFC 4331 properties, where the server has them."""
        body = (b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop>'
                b'<d:quota-used-bytes/><d:quota-available-bytes/></d:prop></d:propfind>')
        response = self._request("PROPFIND", self.base_url, "read the quota", passthrough=frozenset({404}),
                                 content=body, headers={"Depth": "0", "Content-Type": "application/xml"})
        if response.status_code == 404:
            # The repository folder does not exist yet: ask its parent.
            parent = self.base_url.rstrip("/").rsplit("/", 1)[0] + "/"
            response = self._request("PROPFIND", parent, "read the quota", content=body,
                                     headers={"Depth": "0", "Content-Type": "application/xml"})
        if response.status_code != 207:
            raise self._fail("read the quota", response)
        try:
            root = ET.fromstring(response.content)
        except ET.ParseError:
            return None, None
        used = root.findtext(f".//{_DAV}quota-used-bytes")
        available = root.findtext(f".//{_DAV}quota-available-bytes")
        as_int = lambda v: int(v) if v and v.strip().lstrip("-").isdigit() and int(v) >= 0 else None  # noqa: E731
        return as_int(used), as_int(available)

    def make_dirs(self, directories: list[str]) -> None:
        for d in directories:
            self._mkcol(d)

    def close(self) -> None:
        self._client.close()


def _parse_multistatus(body: bytes, what: str) -> Iterator[tuple[str, bool, int]]:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise TransientStorageError(f"{what}: unreadable listing ({e})") from None
    for response in root.iter(f"{_DAV}response"):
        href = response.findtext(f"{_DAV}href")
        if not href:
            continue
        is_dir, size = False, 0
        for propstat in response.iter(f"{_DAV}propstat"):
            status = propstat.findtext(f"{_DAV}status") or ""
            if " 200" not in status:
                continue
            prop = propstat.find(f"{_DAV}prop")
            if prop is None:
                continue
            rtype = prop.find(f"{_DAV}resourcetype")
            if rtype is not None and rtype.find(f"{_DAV}collection") is not None:
                is_dir = True
            length = prop.findtext(f"{_DAV}getcontentlength")
            if length and length.strip().isdigit():
                size = int(length.strip())
        yield href.strip(), is_dir, size
