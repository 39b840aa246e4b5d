"""Fault injection for WebDAV tests: a WSGI middleware and a TCP proxy.

`FaultMiddleware` wraps any WSGI WebDAV app (wsgidav here) and answers the
way troublesome servers do: Nutstore's throttling 503s, generic 5xx/429/423
bursts, 401 for every request (at once or after N), 750-entry pages linked by
`Link: <...>; rel="next"`, Nutstore's status-code quirks, an upload size cap
and slow answers. It also counts what reaches the server, so a test can check
the client's own request counts against the server's.

`FaultProxy` (in fault_proxy.py, re-exported here) sits between the client
and the server on TCP and breaks what HTTP status codes cannot: connections
reset in the middle of an upload or a download, bodies cut short of their
Content-Length, slow streams, refused connections.

Both are configured at runtime from the test, from any thread; each fault
applies from the moment it is set until it is used up or cleared.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable
from urllib.parse import parse_qs, quote, unquote, urlsplit

from fault_proxy import FaultProxy

__all__ = ["FaultMiddleware", "FaultProxy", "RequestRecord", "NUTSTORE_BLOCKED_BODY", "NUTSTORE_PAGE_SIZE"]

NUTSTORE_BLOCKED_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><d:error xmlns:d="DAV:" xmlns:s="http://ns.jianguoyun.com">'
    b"<s:exception>BlockedTemporarily</s:exception><s:message>Too many requests</s:message></d:error>"
)
NUTSTORE_PAGE_SIZE = 750

_REASONS = {
    207: "Multi-Status", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
    411: "Length Required", 413: "Payload Too Large", 423: "Locked", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
}
_DAV = "{DAV:}"

@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it. `arrived` and `answered` are
    time.monotonic() values; `status` and `answered` are None until it answers."""

    method: str
    path: str
    query: str
    status: int | None
    content_length: int | None
    arrived: float
    answered: float | None = None


@dataclass
class _Throttle:
    after: int            # requests still let through before the storm
    count: int | None     # storm requests left; None: until `until` or forever
    seconds: float | None
    retry_after: str | None
    until: float | None = None


@dataclass
class _Burst:
    status: int
    remaining: int
    methods: frozenset[str] | None
    retry_after: str | None
    after: int = 0        # matching requests still let through first


@dataclass
class _Doomed:
    """PUTs below `below`: the first `after` objects pass, the next one fails for good."""

    status: int
    below: str
    after: int
    seen: set = field(default_factory=set)
    path: str | None = None


@dataclass
class _Quirks:
    put_missing_parent_404: bool = False
    put_root_403: bool = False
    move_conflict_409: bool = False
    strict_depth: bool = False
    collection_get_403: bool = False


class FaultMiddleware:
    """A WSGI middleware that misbehaves on demand and counts requests.

    `root` is the path under which the account's files live (Nutstore's
    `/dav/`); files directly inside it are refused with the root quirk.
    """

    def __init__(self, app: Callable, *, root: str = "/") -> None:
        self.app = app
        self.root = "/" + root.strip("/") + "/" if root.strip("/") else "/"
        self._lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self.clear()

    # ---- configuration ---------------------------------------------------

    def clear(self) -> None:
        """Switch every fault off (counts are kept; see `reset_counts`)."""
        with self._lock:
            self._throttle: _Throttle | None = None
            self._bursts: list[_Burst] = []
            self._deny: int | None = None
            self._deny_after = 0
            self._page_size: int | None = None
            self._absolute_links = True
            self._quirks = _Quirks()
            self._max_upload: int | None = None
            self._delay = 0.0
            self._delay_methods: frozenset[str] | None = None
            self._delay_after = 0
            self._doomed: _Doomed | None = None

    def reset_counts(self) -> None:
        with self._lock:
            self._log = []

    def throttle(self, after: int = 0, *, count: int | None = None, seconds: float | None = None,
                 retry_after: int | None = None) -> None:
        """Nutstore throttling: let `after` more requests through, then answer
        503 BlockedTemporarily to the next `count` requests, or to all for
        `seconds`, or (neither given) until cleared."""
        with self._lock:
            self._throttle = _Throttle(after, count, seconds,
                                       None if retry_after is None else str(retry_after))

    def fail(self, status: int, count: int | None = 1, *, methods: Iterable[str] | None = None,
             after: int = 0, retry_after: int | None = None) -> None:
        """Let `after` requests (of `methods` only, when given) through, then
        answer `status` (500, 502, 429, 423...) to the next `count` of them
        (None: until cleared). Several calls add up; each counts the requests it
        sees, and the first that fires answers."""
        with self._lock:
            self._bursts.append(_Burst(status, -1 if count is None else count, _methods(methods),
                                       None if retry_after is None else str(retry_after), after))

    def fail_one_object(self, status: int = 500, *, below: str = "/data/", after: int = 0) -> None:
        """Let the PUTs of `after` objects below `below` through, then answer
        `status` to every PUT of the next object, however often it is sent
        again; the objects after it pass. One upload among several that
        cannot get through."""
        with self._lock:
            self._doomed = _Doomed(status, below, after)

    def doomed_path(self) -> str | None:
        """The object `fail_one_object` refuses, once it has been chosen."""
        with self._lock:
            return self._doomed.path if self._doomed else None

    def deny(self, status: int = 401, *, after: int = 0) -> None:
        """Let `after` requests through, then answer `status` to everything, as
        a server does to a wrong or revoked password."""
        with self._lock:
            self._deny = status
            self._deny_after = after

    def paginate(self, page_size: int | None = NUTSTORE_PAGE_SIZE, *, absolute_links: bool = True) -> None:
        """Split PROPFIND Depth: 1 answers into pages of `page_size` entries
        (the collection's own entry first, on page 1), each but the last with
        `Link: <next page>; rel="next"`. None switches paging off."""
        with self._lock:
            self._page_size = page_size
            self._absolute_links = absolute_links

    def quirks(self, *, put_missing_parent_404: bool | None = None, put_root_403: bool | None = None,
               move_conflict_409: bool | None = None, strict_depth: bool | None = None,
               collection_get_403: bool | None = None) -> None:
        """Switch single server quirks on or off; unnamed ones keep their state.

        put_missing_parent_404: PUT into a missing folder answers 404, not 409.
        put_root_403: PUT of a file directly into the root answers 403.
        move_conflict_409: MOVE onto an existing target answers 409 whatever Overwrite says.
        strict_depth: PROPFIND without Depth, or with Depth: infinity, answers 403.
        collection_get_403: GET or HEAD of a collection answers 403.
        """
        given = dict(put_missing_parent_404=put_missing_parent_404, put_root_403=put_root_403,
                     move_conflict_409=move_conflict_409, strict_depth=strict_depth,
                     collection_get_403=collection_get_403)
        with self._lock:
            for name, value in given.items():
                if value is not None:
                    setattr(self._quirks, name, value)

    def nutstore(self) -> None:
        """Behave like Nutstore: every quirk and 750-entry pages (no throttling)."""
        self.quirks(put_missing_parent_404=True, put_root_403=True, move_conflict_409=True,
                    strict_depth=True, collection_get_403=True)
        self.paginate(NUTSTORE_PAGE_SIZE)

    def cap_uploads(self, max_bytes: int | None) -> None:
        """Answer 413 to a PUT whose Content-Length exceeds `max_bytes` (411
        when it has none). None lifts the cap."""
        with self._lock:
            self._max_upload = max_bytes

    def slow(self, seconds: float, *, methods: Iterable[str] | None = None, after: int = 0) -> None:
        """Wait `seconds` before answering each request (of `methods` only),
        once `after` more of them have been answered at once."""
        with self._lock:
            self._delay = seconds
            self._delay_methods = _methods(methods)
            self._delay_after = after

    # ---- observation -----------------------------------------------------

    @property
    def log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def count(self, method: str | None = None, *, status: int | None = None) -> int:
        """Requests that reached the server, of one method and/or status."""
        return sum(1 for r in self.log
                   if (method is None or r.method == method) and (status is None or r.status == status))

    @property
    def requests(self) -> Counter[str]:
        return Counter(r.method for r in self.log)

    def put_bytes(self, path_contains: str = "", *, before: float | None = None) -> int:
        """Bytes of PUT bodies the server stored (2xx answers), below paths
        containing `path_contains`, answered before the time `before`."""
        return sum(r.content_length or 0 for r in self.log
                   if r.method == "PUT" and r.status is not None and 200 <= r.status < 300
                   and path_contains in r.path
                   and (before is None or (r.answered is not None and r.answered < before)))

    def stored_paths(self) -> list[str]:
        """Paths of successful PUTs, in order."""
        return [r.path for r in self.log
                if r.method == "PUT" and r.status is not None and 200 <= r.status < 300]

    # ---- the WSGI app ----------------------------------------------------

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"].upper()
        path = _wsgi_path(environ)
        query = environ.get("QUERY_STRING", "")
        length = _content_length(environ)
        arrived = time.monotonic()
        index = self._record(RequestRecord(method, path, query, None, length, arrived))

        def finish(status: int) -> None:
            with self._lock:
                if index < len(self._log) and self._log[index].arrived == arrived:
                    self._log[index] = RequestRecord(method, path, query, status, length, arrived,
                                                     time.monotonic())

        delay, refusal, quirks, page_size, absolute = self._decide(method)
        if refusal is None and method == "PUT":
            refusal = self._doom(path)
        if delay:
            time.sleep(delay)
        if refusal is None:
            refusal = self._refuse_by_quirk(environ, method, path, length, quirks)
        if refusal is not None:
            status, headers, body = refusal
            _drain(environ)
            finish(status)
            return _answer(start_response, status, headers, body)

        if method == "PROPFIND" and page_size and environ.get("HTTP_DEPTH") == "1":
            status, headers, body = self._paged_listing(environ, path, query, page_size, absolute)
            finish(status)
            return _answer(start_response, status, headers, body)

        rewrite_409 = method == "PUT" and quirks.put_missing_parent_404

        def recording_start(status_line: str, headers: list, exc_info=None):
            status = int(status_line.split(" ", 1)[0])
            if rewrite_409 and status == 409:
                status, status_line = 404, "404 Not Found"
            finish(status)
            return start_response(status_line, headers, exc_info) if exc_info else \
                start_response(status_line, headers)

        return self.app(environ, recording_start)

    def _record(self, record: RequestRecord) -> int:
        with self._lock:
            self._log.append(record)
            return len(self._log) - 1

    def _decide(self, method: str):
        """Under the lock: the delay, and a refusal from the request-level faults."""
        with self._lock:
            delay = self._delay if self._delay_methods is None or method in self._delay_methods else 0.0
            if delay and self._delay_after > 0:
                self._delay_after -= 1
                delay = 0.0
            quirks = _Quirks(**vars(self._quirks))
            paging = (self._page_size, self._absolute_links)
            if self._deny is not None and self._deny_after > 0:
                self._deny_after -= 1
            elif self._deny is not None:
                headers = [("WWW-Authenticate", 'Basic realm="fault"')] if self._deny == 401 else []
                return delay, (self._deny, headers, b""), quirks, *paging
            if self._throttle_fires():
                headers = [("Content-Type", "application/xml; charset=utf-8")]
                if self._throttle.retry_after is not None:
                    headers.append(("Retry-After", self._throttle.retry_after))
                return delay, (503, headers, NUTSTORE_BLOCKED_BODY), quirks, *paging
            for burst in self._bursts:
                if burst.remaining == 0 or (burst.methods is not None and method not in burst.methods):
                    continue
                if burst.after > 0:
                    burst.after -= 1
                    continue
                if burst.remaining > 0:
                    burst.remaining -= 1
                headers = [] if burst.retry_after is None else [("Retry-After", burst.retry_after)]
                return delay, (burst.status, headers, b""), quirks, *paging
            return delay, None, quirks, *paging

    def _doom(self, path: str):
        with self._lock:
            doomed = self._doomed
            if doomed is None or doomed.below not in path:
                return None
            if doomed.path is None and path not in doomed.seen:
                if len(doomed.seen) < doomed.after:
                    doomed.seen.add(path)
                    return None
                doomed.path = path
            return (doomed.status, [], b"") if path == doomed.path else None

    def _throttle_fires(self) -> bool:
        t = self._throttle
        if t is None:
            return False
        if t.after > 0:
            t.after -= 1
            return False
        if t.seconds is not None:
            now = time.monotonic()
            if t.until is None:
                t.until = now + t.seconds
            if now >= t.until:
                self._throttle = None
                return False
            return True
        if t.count is not None:
            if t.count <= 0:
                self._throttle = None
                return False
            t.count -= 1
        return True

    def _refuse_by_quirk(self, environ, method, path, length, quirks: _Quirks):
        with self._lock:
            max_upload = self._max_upload
        if method == "PROPFIND" and quirks.strict_depth and environ.get("HTTP_DEPTH") not in ("0", "1"):
            return 403, [], b"Depth must be 0 or 1"
        if method == "PUT":
            if max_upload is not None:
                if length is None:
                    return 411, [], b""
                if length > max_upload:
                    return 413, [], b""
            if quirks.put_root_403 and path.startswith(self.root) and "/" not in path[len(self.root):]:
                return 403, [], b"no files in the root"
        if method in ("GET", "HEAD") and quirks.collection_get_403 and self._is_collection(environ, path):
            return 403, [], b""
        if method == "MOVE" and quirks.move_conflict_409:
            destination = environ.get("HTTP_DESTINATION", "")
            if destination and self._exists(environ, unquote(urlsplit(destination).path)):
                return 409, [], b""
        return None

    # ---- sub-requests to the inner app (not counted) -----------------------

    def _inner(self, environ: dict, method: str, path: str, depth: str) -> tuple[int, list, bytes]:
        sub = dict(environ, REQUEST_METHOD=method, PATH_INFO=_to_wsgi(path), QUERY_STRING="",
                   CONTENT_LENGTH="0", HTTP_DEPTH=depth)
        sub["wsgi.input"] = _EmptyInput()
        sub.pop("CONTENT_TYPE", None)
        sub.pop("HTTP_TRANSFER_ENCODING", None)
        return self._call_inner(sub)

    def _call_inner(self, environ: dict) -> tuple[int, list, bytes]:
        captured: dict = {}

        def start(status_line, headers, exc_info=None):
            captured["status"] = int(status_line.split(" ", 1)[0])
            captured["headers"] = headers

        chunks = self.app(environ, start)
        try:
            body = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return captured["status"], captured["headers"], body

    def _exists(self, environ: dict, path: str) -> bool:
        return self._inner(environ, "PROPFIND", path, depth="0")[0] == 207

    def _is_collection(self, environ: dict, path: str) -> bool:
        status, _, body = self._inner(environ, "PROPFIND", path, depth="0")
        if status != 207:
            return False
        return ET.fromstring(body).find(f".//{_DAV}resourcetype/{_DAV}collection") is not None

    def _paged_listing(self, environ, path, query, page_size, absolute):
        page = _page_number(query)
        # The full listing, with the client's own PROPFIND body, without the page query.
        status, headers, body = self._call_inner(dict(environ, PATH_INFO=_to_wsgi(path), QUERY_STRING=""))
        if status != 207:
            return status, [h for h in headers if h[0].lower() != "content-length"], body
        root = ET.fromstring(body)
        responses = root.findall(f"{_DAV}response")
        own = [r for r in responses if _href_path(r) == path.rstrip("/")]
        entries = own + sorted((r for r in responses if r not in own), key=_href_path)
        for r in responses:
            root.remove(r)
        start = (page - 1) * page_size
        for r in entries[start:start + page_size]:
            root.append(r)
        out = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        headers = [("Content-Type", "application/xml; charset=utf-8")]
        if start + page_size < len(entries):
            target = quote((environ.get("SCRIPT_NAME", "") + path).encode("utf-8"), safe="/")
            if absolute:
                scheme = environ.get("wsgi.url_scheme", "http")
                host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
                target = f"{scheme}://{host}{target}"
            headers.append(("Link", f'<{target}?page={page + 1}>; rel="next"'))
        return 207, headers, out

def _methods(methods: Iterable[str] | None) -> frozenset[str] | None:
    return None if methods is None else frozenset(m.upper() for m in methods)


def _wsgi_path(environ: dict) -> str:
    # PATH_INFO carries the raw bytes as latin-1; the path is UTF-8.
    raw = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return raw.encode("latin-1").decode("utf-8", "replace") or "/"


def _to_wsgi(path: str) -> str:
    return path.encode("utf-8").decode("latin-1")


def _content_length(environ: dict) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def _page_number(query: str) -> int:
    try:
        return max(1, int(parse_qs(query).get("page", ["1"])[0]))
    except ValueError:
        return 1


def _href_path(response: ET.Element) -> str:
    href = response.findtext(f"{_DAV}href") or ""
    return unquote(urlsplit(href).path).rstrip("/")


def _drain(environ: dict) -> None:
    """Read a refused request's body, so the connection stays usable."""
    length = _content_length(environ) or 0
    stream = environ.get("wsgi.input")
    while length > 0 and stream is not None:
        piece = stream.read(min(length, 1 << 16))
        if not piece:
            break
        length -= len(piece)


def _answer(start_response: Callable, status: int, headers: list, body: bytes) -> list[bytes]:
    headers = [h for h in headers if h[0].lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
    return [body]


class _EmptyInput:
    def read(self, size: int = -1) -> bytes:
        return b""

    def readline(self, size: int = -1) -> bytes:
        return b""
