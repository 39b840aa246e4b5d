"""A thin WebDAV client of our own, on httpx.

Only the verbs every server agrees on: PROPFIND with an explicit Depth of 0
or 1, GET (with Range), PUT with Content-Length, MKCOL, DELETE. No MOVE,
COPY, LOCK or conditional requests. Listings follow `Link: rel="next"`
pages, only on the same origin and below the repository. Parent
collections are created only when a PUT says they are missing, and
remembered for the rest of the run. Errors are typed so that the retry
decorator knows what may pass and what never will.

A ranged GET stops reading at the bytes asked for, whatever the server
sends; a listing page stops at MAX_PAGE_BYTES, a listing at MAX_PAGES
pages.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from typing import Callable, Iterator
from urllib.parse import quote, urldefrag, urljoin, urlsplit

import httpx

from strongroom import __version__
from strongroom.errors import (AuthenticationFailed, FolderNotFound, ListingFailed, ObjectNotFound, StorageError,
                               StorageUnreachable, TransientStorageError)
from strongroom.storage.base import StorageInfo, Attempt, ObjectInfo, Storage, check_name
from strongroom.storage.connect_failures import classify_connect_failure
from strongroom.storage.multistatus import (MAX_PAGES, PageLog, entry_for, href_path, parse_multistatus,
                                           same_origin_below)
from strongroom.storage.vendors import GENERIC, MiB, VendorProfile

_PROPFIND_BODY = (b'<?xml version="1.0" encoding="utf-8"?>'
                  b'<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getcontentlength/>'
                  b'</d:prop></d:propfind>')
_DAV = "{DAV:}"  # for the quota properties
# GET answers for a name that is a collection or lies below a file: 403
# (wsgidav, nginx), 405 (rclone), 301 (Apache), 400 (Apache, through a file).
_NOT_AN_OBJECT = frozenset({301, 400, 403, 404, 405, 409})
_REDIRECTS = frozenset({300, 301, 302, 303, 305, 307, 308})
# A page of 750 entries (Nutstore) is about 300 KB; an unpaged folder of
# 100,000 packs about 40 MB.
MAX_PAGE_BYTES = 64 * MiB
# Bodies of answers read only for their status (an error's explanation).
_ERROR_BODY_BYTES = 64 * 1024



def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own back-off


class WebDAVStorage(Storage):
    def __init__(self, base_url: str, username: str, password: str, vendor: VendorProfile = GENERIC,
                 timeout: float = 60.0, gate: Callable[[], None] | None = None, connections: int = 4) -> None:
        if not base_url.endswith("/"):
            base_url += "/"
        self.base_url = base_url
        parts = urlsplit(base_url)
        self.base_path = parts.path
        self._hostname = parts.hostname or ""
        self._netloc = parts.netloc.rpartition("@")[2]
        # What a wait is for, in the one line that says so.
        self.target = f"webdav host {self._netloc}"
        # Set at the first answer of any kind: from then on a failure to
        # connect is trouble to wait out, not a mistake in the URL.
        self.answered = False
        self.vendor = vendor
        self.url = f"webdav+{base_url}"
        # open_storage adds the request budget it gates with.
        self.info = StorageInfo(vendor=vendor, max_object_size=vendor.max_object_size, connections=connections)
        self._gate = gate
        self._client = httpx.Client(
            auth=(username, password), timeout=httpx.Timeout(timeout, connect=min(timeout, 20.0)),
            # Objects are encrypted, so compression in transit gains nothing;
            # and a compressed answer could inflate past every bound below.
            follow_redirects=False, headers={"User-Agent": f"strongroom/{__version__}",
                                             "Accept-Encoding": "identity"},
            # One connection per request the repository sends at once, and
            # room for the lock refresh and an index checkpoint beside them:
            # a request that finds the pool full waits for a free connection
            # inside its timeout, and would fail as a timeout there.
            limits=httpx.Limits(max_connections=connections + 2, max_keepalive_connections=connections + 2),
        )
        self._known_dirs: set[str] = set()
        self._refused: AuthenticationFailed | None = None
        self._lock = threading.Lock()
        self.http_requests = 0
        self.max_pages = MAX_PAGES

    def __repr__(self) -> str:
        return f"WebDAVStorage({self.base_url!r})"

    # ---- requests --------------------------------------------------------------

    def _url(self, name: str, collection: bool = False) -> str:
        path = quote(name, safe="/")
        return self.base_url + path + ("/" if collection and path else "")

    def _request(self, method: str, url: str, what: str, passthrough: frozenset[int] = frozenset(),
                 stream: bool = False, **kwargs) -> httpx.Response:
        """One HTTP request, its failures typed; statuses in `passthrough` come back as they are.

        With `stream`, the body is left unread: the caller reads what it needs
        (`_read_body`) and closes the response.
        """
        if self._refused is not None:
            # Nutstore locks accounts after repeated refusals: after the first,
            # send nothing more.
            raise AuthenticationFailed(str(self._refused))
        if self._gate is not None:
            self._gate()
        with self._lock:
            self.http_requests += 1
        try:
            response = self._client.send(self._client.build_request(method, url, **kwargs), stream=True)
        except httpx.TimeoutException as e:
            raise TransientStorageError(f"{what}: timed out ({type(e).__name__})", reason="timed out") from None
        except httpx.ConnectError as e:
            failure = classify_connect_failure(e, self._hostname, self._netloc)
            if failure.setup_mistake and not self.answered:
                raise StorageUnreachable(f"{what}: {failure.explanation}") from None
            raise TransientStorageError(f"{what}: {failure.explanation}", reason=failure.reason) from None
        except httpx.TransportError as e:
            raise TransientStorageError(f"{what}: connection failed ({type(e).__name__}: {e})",
                                        reason=f"connection failed ({type(e).__name__})") from None
        self.answered = True
        try:
            self._check_status(response, what, passthrough)
            if not stream:
                response.read()
        except httpx.TransportError as e:
            response.close()
            raise TransientStorageError(f"{what}: connection failed ({type(e).__name__}: {e})",
                                        reason=f"connection failed ({type(e).__name__})") from None
        except BaseException:
            response.close()
            raise
        return response

    def _check_status(self, response: httpx.Response, what: str, passthrough: frozenset[int]) -> None:
        status = response.status_code
        if status in passthrough:
            return
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
        if status == 503 and b"BlockedTemporarily" in _read_body(response, what, keep=_ERROR_BODY_BYTES):
            reason = "the server is throttling requests (503 BlockedTemporarily)"
            raise TransientStorageError(f"{what}: {reason}", _retry_after(response), throttled=True, reason=reason)
        if status in (423, 429) or status >= 500 and status != 507:
            reason = f"HTTP {status} {response.reason_phrase}"
            raise TransientStorageError(f"{what}: {reason}", _retry_after(response), reason=reason)
        if status == 507:
            raise StorageError(f"{what}: the WebDAV target is full (HTTP 507)")

    @staticmethod
    def _fail(what: str, response: httpx.Response) -> StorageError:
        return StorageError(f"{what}: HTTP {response.status_code} {response.reason_phrase}")

    # ---- verbs ----------------------------------------------------------------------

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        check_name(name)
        what = f"read {name}"
        if length == 0:
            return b""
        # The body is streamed and read only as far as asked: a server that
        # answers a range with the whole object (200), or sends more than the
        # range, costs bandwidth but not memory. A read without a length takes
        # the object whole, however large: the vendor's upload cap bounds what
        # this client writes, not what a repository made elsewhere holds
        # (tests/test_prune_webdav.py reads packs above it), so it cannot
        # bound reads. Callers that know an object's size pass a length.
        response, skip = self._get_range(name, offset, length, what)
        if response is None:
            return b""
        try:
            return _read_body(response, what, skip=skip, keep=length)
        finally:
            response.close()

    def read_spans(self, name: str, spans) -> Iterator[bytes]:
        """All spans from one GET of the range that covers them, cut from the
        stream as it passes: a server that ignores Range (200) is read once,
        from its start, not once per span, and only the span being handed out
        is held."""
        check_name(name)
        spans = list(spans)
        what = f"read {name}"
        wanted = [(o, n) for o, n in spans if n > 0]
        response = None
        if wanted:
            first, last = wanted[0][0], max(o + n for o, n in wanted)
            response, skip = self._get_range(name, first, last - first, what)
        if response is None:
            for _ in spans:
                yield b""
            return
        try:
            yield from _cut_spans(response, what, skip, first, spans)
        finally:
            response.close()

    def _get_range(self, name: str, offset: int, length: int | None,
                   what: str) -> tuple[httpx.Response | None, int]:
        """GET `length` bytes (None: the rest) from `offset`: the streamed
        response and how many of its first bytes come before `offset` (all
        of them when the server ignored the range); None for nothing there."""
        headers = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        url = self._url(name)
        response = self._request("GET", url, what, passthrough=_NOT_AN_OBJECT, stream=True, headers=headers)
        try:
            status = response.status_code
            if status in _REDIRECTS:
                self._not_an_object_or_fail(url, response, what)
            if status in _NOT_AN_OBJECT:
                if status == 403 and name not in self._known_dirs:
                    raise AuthenticationFailed(f"{what}: the WebDAV server refused access (HTTP 403): check the "
                                               f"WebDAV app password and the account's rights to {self.base_url}")
                raise ObjectNotFound(f"{name} does not exist")
            if status == 416:
                response.close()
                return None, 0
            if status == 200:
                return response, offset
            if status != 206:
                raise self._fail(what, response)
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise TransientStorageError(f"{what}: server answered the wrong range ({content_range!r})")
            return response, 0
        except BaseException:
            response.close()
            raise

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
            if not self._is_collection(url, f"create {directory}/"):
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
        what = f"stat {name}"
        url = self._url(name)
        status, entries, response = self._propfind(url, 0, what)
        if status == 207:
            own = entry_for(url, entries)
            if own is None:
                raise StorageError(f"{what}: the server's answer does not describe {name}")
            if own[1]:
                raise ObjectNotFound(f"{name} is a collection, not an object")
            return ObjectInfo(name, own[2])
        # 404, and a path through a file (400 Apache, 409): a single object may
        # simply be absent.
        if status in (400, 404, 409):
            raise ObjectNotFound(f"{name} does not exist")
        if status in _REDIRECTS:
            self._not_an_object_or_fail(url, response, what)
        raise self._fail(what, response)

    def _not_an_object_or_fail(self, url: str, response: httpx.Response, what: str) -> None:
        """Raise for a redirect answered to a request for one object.

        Apache's (and nginx's) 301 to the same URL with a slash says "this is
        a collection": not an object, so ObjectNotFound. Any other redirect
        (another path, host or scheme, a login page) says nothing about the
        name; taking it for "absent" could let init write a new repository
        over an existing one, or a reader skip a snapshot, so it is an error.
        """
        location = urldefrag(urljoin(url, response.headers.get("Location", "")))[0]
        if response.status_code in (301, 308) and location == url + "/":
            raise ObjectNotFound(f"{url[len(self.base_url):]} is a collection, not an object")
        raise StorageError(f"{what}: the server redirected the request to {location or 'nowhere'} "
                           f"(HTTP {response.status_code}); redirects are not followed: check the repository URL")

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.list_by_request(prefix, _once)

    def list_by_request(self, prefix: str, attempt: Attempt) -> Iterator[ObjectInfo]:
        """A PROPFIND (Depth 1) per folder and per page, each through `attempt`.

        A failed request is sent again alone. A folder's entries are yielded
        once all its pages are in, so a retried page never yields an entry
        twice; every folder is listed once.
        """
        check_name(prefix)
        pages = PageLog(self.max_pages)
        pending = [prefix]
        while pending:
            directory = pending.pop()
            files, folders = self._list_folder(directory, directory == prefix, attempt, pages)
            pending.extend(reversed(folders))
            yield from files

    def _list_folder(self, directory: str, top: bool, attempt: Attempt,
                     pages: PageLog) -> tuple[list[ObjectInfo], list[str]]:
        what = f"list {directory}/"
        url = self._url(directory, collection=True)
        own = href_path(url, url)
        files: dict[str, ObjectInfo] = {}
        folders: dict[str, None] = {}
        saw_itself = False
        first = True
        while url:
            pages.take(url, what)
            status, entries, response = attempt(lambda: self._propfind(url, 1, what))
            if status == 404 and first:
                if top:
                    raise FolderNotFound(f"{what}: the folder does not exist")
                raise FolderNotFound(f"{what}: the folder was in the listing a moment ago, but is gone")
            if status in _REDIRECTS:
                location = urljoin(url, response.headers.get("Location", ""))
                raise ListingFailed(f"{what}: the server redirected the listing to {location or 'nowhere'} "
                                    f"(HTTP {status}), so it is not a listing of {directory}/")
            if status != 207:
                # 400 and 409 (a path through a file), a 404 of a later page.
                raise ListingFailed(f"{what}: HTTP {status} {response.reason_phrase}")
            for path, is_dir, size in entries:
                if path == own:
                    if not is_dir:
                        raise FolderNotFound(f"{what}: {directory} is an object, not a folder")
                    saw_itself = True
                    continue
                parent, _, child = path.rpartition("/")
                if parent != own:
                    raise ListingFailed(f"{what}: the server listed {path}, which is not in the folder")
                if child.startswith(".tmp-"):
                    continue
                rel = f"{directory}/{child}"
                try:
                    check_name(rel)
                except StorageError:
                    continue  # not ours: a sync client's file or a stray upload
                if is_dir:
                    folders[rel] = None
                else:
                    files[rel] = ObjectInfo(rel, size)
            url = self._next_page(url, response, what)
            first = False
        if not saw_itself:
            # A Depth: 1 PROPFIND always describes the collection itself (every
            # server measured puts it first): without it, an answer with no
            # entries is not an empty folder but a broken answer.
            raise ListingFailed(f"{what}: the server's answer does not describe the folder itself")
        with self._lock:
            self._known_dirs.update(folders)
        return list(files.values()), list(folders)

    def _next_page(self, url: str, response: httpx.Response, what: str) -> str:
        """The `Link: rel="next"` page, if it stays with this repository.

        httpx sends the credentials to whatever URL it is given, so a page
        on another origin, or outside the repository, is refused, not fetched.
        """
        link = response.links.get("next", {}).get("url")
        if not link:
            return ""
        target = urldefrag(urljoin(url, link))[0]
        if not same_origin_below(self.base_url, target):
            raise ListingFailed(f"{what}: the next page of the listing is at {target}, outside {self.base_url}; "
                                f"it is not followed")
        return target

    def _propfind(self, url: str, depth: int, what: str) -> tuple[int, list[tuple[str, bool, int]], httpx.Response]:
        """One PROPFIND with an explicit Depth: (status, entries of a 207, the response).

        Entries are (decoded path without a trailing slash, is a collection, size).
        """
        response = self._request("PROPFIND", url, what, stream=True, content=_PROPFIND_BODY,
                                 headers={"Depth": str(depth), "Content-Type": "application/xml"})
        try:
            if response.status_code != 207:
                return response.status_code, [], response
            body = _read_body(response, what, cap=MAX_PAGE_BYTES, too_large=ListingFailed)
        finally:
            response.close()
        return 207, [(href_path(url, href), is_dir, size)
                     for href, is_dir, size in parse_multistatus(body, what)], response

    def _is_collection(self, url: str, what: str) -> bool:
        status, entries, _ = self._propfind(url, 0, what)
        own = entry_for(url, entries) if status == 207 else None
        return own is not None and own[1]

    def exists(self) -> bool:
        """Whether the repository folder exists.

        404 (and 400/409, a path through a file) mean no; a redirect is an
        error, not a no: init would otherwise create a repository beside the
        one the URL was meant to reach.
        """
        what = "look up the repository"
        status, entries, response = self._propfind(self.base_url, 0, what)
        if status == 207:
            own = entry_for(self.base_url, entries)
            if own is None:
                raise StorageError(f"{what}: the server's answer does not describe {self.base_url}")
            if not own[1]:
                raise StorageError(f"{what}: {self.base_url} is a file, not a folder")
            return True
        if status in (400, 404, 409):
            return False
        if status in _REDIRECTS:
            location = urljoin(self.base_url, response.headers.get("Location", ""))
            raise StorageError(f"{what}: the server redirects {self.base_url} to {location or 'nowhere'} "
                               f"(HTTP {status}); redirects are not followed: use the URL it names")
        raise self._fail(what, response)

    def entries(self) -> list[str]:
        """Every name in the repository collection (one Depth 1 PROPFIND per page).

        Raw names: hidden files and names outside our alphabet count too,
        since `init` asks whether anything at all is there."""
        what = "list the repository folder"
        url, own, names, saw_itself = self.base_url, href_path(self.base_url, self.base_url), [], False
        pages = PageLog(self.max_pages)
        while url:
            pages.take(url, what)
            status, entries, response = self._propfind(url, 1, what)
            if status == 404 and url == self.base_url:
                raise FolderNotFound(f"{what}: the folder does not exist")
            if status != 207:
                raise ListingFailed(f"{what}: HTTP {status} {response.reason_phrase}")
            for path, _, _ in entries:
                if path == own:
                    saw_itself = True
                    continue
                parent, _, child = path.rpartition("/")
                if parent != own:
                    raise ListingFailed(f"{what}: the server listed {path}, which is not in the folder")
                names.append(child)
            url = self._next_page(url, response, what)
        if not saw_itself:
            raise ListingFailed(f"{what}: the server's answer does not describe the folder itself")
        return sorted(names)

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
        for directory in directories:
            parts = check_name(directory).split("/")
            for i in range(1, len(parts) + 1):  # parents first: MKCOL makes one level
                self._mkcol("/".join(parts[:i]))

    def close(self) -> None:
        self._client.close()


def _once(request: Callable[[], object]):
    return request()


def _cut_spans(response: httpx.Response, what: str, skip: int, position: int,
               spans: list[tuple[int, int]]) -> Iterator[bytes]:
    """Hand out each (offset, length) span of a streamed body that starts,
    after `skip` bytes, at `position`; what lies between spans is dropped.
    A body that ends early leaves the spans it did not reach short."""
    index, kept = 0, bytearray()
    try:
        for piece in response.iter_bytes():
            if skip:
                if len(piece) <= skip:
                    skip -= len(piece)
                    continue
                piece, skip = piece[skip:], 0
            view = memoryview(piece)
            while view and index < len(spans):
                offset, length = spans[index]
                if not length:
                    # Empty wherever it lies: one before the range read (its
                    # start is that of the first span with bytes) moves nothing.
                    yield b""
                    index += 1
                    continue
                if position < offset:
                    step = min(offset - position, len(view))
                else:
                    step = min(offset + length - position, len(view))
                    kept += view[:step]
                view = view[step:]
                position += step
                if position >= offset + length:
                    yield bytes(kept)
                    kept.clear()
                    index += 1
            if index == len(spans):
                return
    except httpx.TransportError as e:
        raise TransientStorageError(f"{what}: connection failed while reading ({type(e).__name__}: {e})",
                                    reason=f"connection failed while reading ({type(e).__name__})") from None
    for _ in range(index, len(spans)):
        yield bytes(kept)
        kept.clear()


def _read_body(response: httpx.Response, what: str, *, skip: int = 0, keep: int | None = None,
               cap: int | None = None, too_large: type[StorageError] = StorageError) -> bytes:
    """Read a streamed body: drop `skip` bytes, then keep `keep` (None: the
    rest) and stop reading there; more than `cap` kept bytes is an error."""
    kept = bytearray()
    try:
        for piece in response.iter_bytes():
            if skip:
                if len(piece) <= skip:
                    skip -= len(piece)
                    continue
                piece, skip = piece[skip:], 0
            if keep is not None:
                piece = piece[:keep - len(kept)]
            kept += piece
            if keep is not None and len(kept) >= keep:
                break
            if cap is not None and len(kept) > cap:
                raise too_large(f"{what}: the server sent more than {cap} bytes, more than any answer "
                                f"to this request can hold")
    except httpx.TransportError as e:
        raise TransientStorageError(f"{what}: connection failed while reading ({type(e).__name__}: {e})",
                                    reason=f"connection failed while reading ({type(e).__name__})") from None
    return bytes(kept)
