"""The WebDAV client against answers no honest server gives.

wsgidav runs behind `Scripted`, a WSGI middleware that answers chosen
requests itself or edits the real answer: redirects, multistatus bodies
that are not a listing of the folder asked for, `Link: rel="next"` pages
that lead elsewhere, in circles or on forever, one request in nine failing,
and ranged GETs answered with 800 MiB. Each test asserts what the client
does about it: the error type and text, the requests that reached the
server (and that none reached anywhere else), the bytes returned, and the
peak memory of a client in a child process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import urlsplit

import pytest

from faults import FaultMiddleware
from measure import run_measured
from strongroom.errors import FolderNotFound, ListingFailed, ObjectNotFound, StorageError
from strongroom.storage.retry import RetryingStorage, RetryPolicy
from strongroom.storage.webdav import WebDAVStorage
from webdav_servers import DavServer, run_wsgidav

MiB = 1024 * 1024
_DAV = "{DAV:}"
SRC = str(Path(__file__).resolve().parent.parent / "src")

Answer = tuple[int, list[tuple[str, str]], Iterable[bytes]]


class Scripted:
    """A WSGI middleware that answers chosen requests itself or edits the
    inner app's answer, and logs (method, path, query, status) of each.

    A rule is (matches(method, path, query, environ), answer(environ, inner)),
    where `inner()` calls the wrapped app and returns (status, headers, body).
    The first matching rule answers; None from `answer` passes the request on.
    """

    def __init__(self, app: Callable) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.rules: list = []
        self.log: list[tuple[str, str, str, int]] = []
        self.fail_every: tuple[int, int] | None = None  # (n, status)
        self._seen = 0

    def clear(self) -> None:
        with self._lock:
            self.rules, self.log, self.fail_every, self._seen = [], [], None, 0

    def on(self, matches, answer) -> None:
        with self._lock:
            self.rules.append((matches, answer))

    def count(self, method: str | None = None, status: int | None = None) -> int:
        with self._lock:
            return sum(1 for m, _, _, s in self.log if (method in (None, m)) and (status in (None, s)))

    def __call__(self, environ, start_response):
        method = environ["REQUEST_METHOD"].upper()
        path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1").decode()
        query = environ.get("QUERY_STRING", "")
        with self._lock:
            self._seen += 1
            failing = self.fail_every is not None and self._seen % self.fail_every[0] == 0
            rules = list(self.rules)

        def inner() -> tuple[int, list, bytes]:
            captured = {}

            def start(status_line, headers, exc_info=None):
                captured["status"], captured["headers"] = int(status_line.split()[0]), headers

            chunks = self.app(environ, start)
            try:
                body = b"".join(chunks)
            finally:
                getattr(chunks, "close", lambda: None)()
            return captured["status"], captured["headers"], body

        answer = None
        if failing:
            answer = (self.fail_every[1], [], [b""])
        for matches, respond in rules:
            if answer is None and matches(method, path, query, environ):
                answer = respond(environ, inner)
        if answer is None:
            answer = inner()
        status, headers, body = answer
        body = [body] if isinstance(body, bytes) else body
        with self._lock:
            self.log.append((method, path, query, status))
        start_response(f"{status} Scripted", list(headers))
        return body


@dataclasses.dataclass
class Stage:
    server: DavServer  # one test's collection
    scripted: Scripted
    faults: FaultMiddleware  # behind `scripted`: pages

    @property
    def path(self) -> str:
        return urlsplit(self.server.url).path

    def client(self, **options) -> WebDAVStorage:
        return WebDAVStorage(self.server.url, self.server.username, self.server.password, timeout=20, **options)

    def retrying(self, client: WebDAVStorage) -> RetryingStorage:
        # Back-off without the waiting: the tests count requests, not seconds.
        return RetryingStorage(client, RetryPolicy(deadline=20, base_delay=0.01), sleep=lambda _: None)

    def files(self, names: dict[str, bytes]) -> None:
        for name, data in names.items():
            self.server.put_raw(name, data)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[DavServer, Scripted, FaultMiddleware]]:
    made = []

    def wrap(app):
        faults = FaultMiddleware(app, root="/dav/")
        made.append((Scripted(faults), faults))
        return made[0][0]

    with run_wsgidav(wrap_app=wrap) as server:
        yield server, *made[0]


@pytest.fixture
def stage(served) -> Iterator[Stage]:
    server, scripted, faults = served
    scripted.clear()
    faults.clear()
    view = server.scratch()
    view.root.mkdir()
    yield Stage(view, scripted, faults)
    scripted.clear()
    faults.clear()


def propfind_of(path: str, depth: str | None = None):
    def matches(method, request_path, query, environ):
        return (method == "PROPFIND" and request_path == path
                and (depth is None or environ.get("HTTP_DEPTH") == depth))
    return matches


def canned(status: int, headers: list | None = None, body: bytes = b""):
    return lambda environ, inner: (status, headers or [], body)


def edited_multistatus(edit: Callable[[ET.Element, list[ET.Element]], None]):
    """The real 207, with its <response> elements edited in place."""
    def answer(environ, inner):
        status, headers, body = inner()
        root = ET.fromstring(body)
        edit(root, root.findall(f"{_DAV}response"))
        return status, [h for h in headers if h[0].lower() != "content-length"], ET.tostring(root)
    return answer


def names(storage, prefix: str) -> list[str]:
    listed = [i.name for i in storage.list(prefix)]
    assert len(listed) == len(set(listed)), "an entry was listed twice"
    return sorted(listed)


# ---- listings never pass a failure off as empty ---------------------------------------


def test_a_redirected_folder_is_not_an_empty_one(stage: Stage):
    stage.files({"snapshots/s1": b"1"})
    stage.scripted.on(propfind_of(stage.path + "snapshots/"),
                      canned(301, [("Location", "http://127.0.0.1:1/elsewhere/")]))
    storage = stage.retrying(stage.client())
    with pytest.raises(ListingFailed) as caught:
        names(storage, "snapshots")
    assert "redirected" in str(caught.value) and "http://127.0.0.1:1/elsewhere/" in str(caught.value)
    assert stage.scripted.count("PROPFIND") == 1  # not retried: it would not pass


def test_an_empty_multistatus_is_not_an_empty_folder(stage: Stage):
    stage.files({"snapshots/s1": b"1"})
    stage.scripted.on(propfind_of(stage.path + "snapshots/"),
                      canned(207, [("Content-Type", "application/xml")],
                             b'<?xml version="1.0"?><d:multistatus xmlns:d="DAV:"/>'))
    with pytest.raises(ListingFailed) as caught:
        names(stage.client(), "snapshots")
    assert "does not describe the folder itself" in str(caught.value)


def test_a_listing_without_the_folder_itself_fails(stage: Stage):
    stage.files({"snapshots/s1": b"1", "snapshots/s2": b"2"})
    own = stage.path + "snapshots"

    def drop_own(root, responses):
        for r in responses:
            if r.findtext(f"{_DAV}href").rstrip("/") == own:
                root.remove(r)

    stage.scripted.on(propfind_of(own + "/"), edited_multistatus(drop_own))
    with pytest.raises(ListingFailed):
        names(stage.client(), "snapshots")


def test_an_entry_from_another_folder_fails_the_listing(stage: Stage):
    stage.files({"snapshots/s1": b"1"})

    def add_stranger(root, responses):
        stranger = ET.fromstring(ET.tostring(responses[-1]))
        stranger.find(f"{_DAV}href").text = stage.path + "keys/not-a-snapshot"
        root.append(stranger)

    stage.scripted.on(propfind_of(stage.path + "snapshots/"), edited_multistatus(add_stranger))
    with pytest.raises(ListingFailed) as caught:
        names(stage.client(), "snapshots")
    assert "keys/not-a-snapshot" in str(caught.value)


@pytest.mark.parametrize("status", [400, 409, 302, 307])
def test_statuses_that_are_no_listing(stage: Stage, status: int):
    stage.files({"index/i1": b"1"})
    stage.scripted.on(propfind_of(stage.path + "index/"), canned(status, [("Location", "/login")]))
    with pytest.raises(ListingFailed) as caught:
        names(stage.retrying(stage.client()), "index")
    assert f"HTTP {status}" in str(caught.value)
    assert stage.scripted.count("PROPFIND") == 1


def test_a_sub_folder_gone_during_the_walk_is_an_error(stage: Stage):
    stage.files({"data/00/a": b"a", "data/01/b": b"b", "data/02/c": b"c"})
    stage.scripted.on(propfind_of(stage.path + "data/01/"), canned(404))
    with pytest.raises(FolderNotFound) as caught:
        names(stage.client(), "data")
    assert "data/01/" in str(caught.value) and "gone" in str(caught.value)


def test_a_missing_top_folder_is_folder_not_found(stage: Stage):
    with pytest.raises(FolderNotFound) as caught:
        names(stage.retrying(stage.client()), "locks")
    assert "locks/" in str(caught.value)
    assert stage.scripted.count("PROPFIND") == 1


def test_a_redirect_is_not_an_absent_object(stage: Stage):
    stage.files({"config": b"c"})
    client = stage.client()
    # Elsewhere: an error, never "absent" (init would write a new repository).
    stage.scripted.on(lambda m, p, q, e: p == stage.path + "config" and m in ("PROPFIND", "GET"),
                      canned(302, [("Location", "https://login.example/")]))
    for verb in (lambda: client.stat("config"), lambda: client.read("config")):
        with pytest.raises(StorageError) as caught:
            verb()
        assert not isinstance(caught.value, ObjectNotFound)
        assert "https://login.example/" in str(caught.value)
    # To the same URL with a slash (Apache, nginx): a collection, not an object.
    stage.scripted.clear()
    stage.scripted.on(lambda m, p, q, e: p == stage.path + "config",
                      canned(301, [("Location", stage.server.url + "config/")]))
    with pytest.raises(ObjectNotFound):
        client.stat("config")
    with pytest.raises(ObjectNotFound):
        client.read("config")


def test_a_redirected_repository_does_not_look_missing(stage: Stage):
    client = stage.client()
    assert client.exists() is True
    stage.scripted.on(propfind_of(stage.path, "0"), canned(301, [("Location", "https://dav.example/new/")]))
    with pytest.raises(StorageError) as caught:
        client.exists()
    assert "https://dav.example/new/" in str(caught.value)
    gone = dataclasses.replace(stage, server=stage.server.scratch())
    assert gone.client().exists() is False


# ---- pages ----------------------------------------------------------------------------


@pytest.mark.parametrize("absolute", [True, False])
def test_every_page_passes_the_request_gate(stage: Stage, absolute: bool):
    expected = {f"index/i{n:02d}": bytes(n) for n in range(10)}
    stage.files(expected)
    stage.faults.paginate(3, absolute_links=absolute)
    gated = []
    client = stage.client(gate=lambda: gated.append(1))
    assert names(stage.retrying(client), "index") == sorted(expected)
    # 11 entries (the folder and 10 objects) in pages of 3.
    assert stage.scripted.count("PROPFIND") == 4
    assert len(gated) == client.http_requests == 4


class Catcher(http.server.ThreadingHTTPServer):
    """A server on another port that records whatever reaches it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        catcher = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PROPFIND(self):  # noqa: N802
                catcher.seen.append((self.path, self.headers.get("Authorization")))
                self.send_response(207)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PROPFIND  # noqa: N815

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def catcher() -> Iterator[Catcher]:
    server = Catcher()
    yield server
    server.shutdown()


def links_to(target: Callable[[str], str]):
    def answer(environ, inner):
        status, headers, body = inner()
        path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
        return status, [*headers, ("Link", f'<{target(path)}>; rel="next"')], body
    return answer


@pytest.mark.parametrize("where", ["another port", "another host name", "https", "above the repository",
                                   "dot segments", "encoded dot segments", "credentials in the URL"])
def test_a_next_page_elsewhere_is_never_fetched(stage: Stage, catcher: Catcher, where: str):
    stage.files({"keys/k1": b"k"})
    port, scratch = stage.server.port, stage.path
    target = {
        "another port": f"http://127.0.0.1:{catcher.server_address[1]}{scratch}keys/?page=2",
        "another host name": f"http://localhost:{port}{scratch}keys/?page=2",
        "https": f"https://127.0.0.1:{port}{scratch}keys/?page=2",
        "above the repository": "/dav/?page=2",
        "dot segments": f"http://127.0.0.1:{port}{scratch}keys/../../?page=2",
        "encoded dot segments": f"{scratch}keys/%2e%2e/%2E%2E/?page=2",
        "credentials in the URL": f"http://tester:guess@127.0.0.1:{port}{scratch}keys/?page=2",
    }[where]
    before = len(catcher.seen)
    stage.scripted.on(propfind_of(scratch + "keys/"), links_to(lambda path: target))
    with pytest.raises(ListingFailed) as caught:
        names(stage.retrying(stage.client()), "keys")
    assert "not followed" in str(caught.value)
    assert stage.scripted.count("PROPFIND") == 1
    assert len(catcher.seen) == before  # nothing, and no password, went anywhere else


# Where the scripted server stops linking more pages, so that a client that
# follows them blindly fails the test instead of hanging it.
SAFETY_PAGES = 200


def test_pages_that_lead_back_are_a_loop(stage: Stage):
    stage.files({"locks/l1": b"l"})
    folder = stage.path + "locks/"

    def next_of(path_query: str) -> str:
        return {"": "?page=2", "page=2": "?page=3", "page=3": "?page=2"}[path_query]

    def answer(environ, inner):
        status, headers, body = inner()
        if stage.scripted.count() >= SAFETY_PAGES:  # a client without loop detection ends, and fails below
            return status, headers, body
        return status, [*headers, ("Link", f'<{folder}{next_of(environ.get("QUERY_STRING", ""))}>; rel="next"')], body

    stage.scripted.on(propfind_of(folder), answer)
    with pytest.raises(ListingFailed) as caught:
        names(stage.client(), "locks")
    assert "already listed" in str(caught.value)
    assert [q for m, _, q, _ in stage.scripted.log] == ["", "page=2", "page=3"]


def test_endless_pages_stop_at_the_bound(stage: Stage):
    stage.files({"locks/l1": b"l"})
    folder = stage.path + "locks/"

    def answer(environ, inner):
        status, headers, body = inner()
        page = int((environ.get("QUERY_STRING") or "page=1").split("=")[1])
        if page >= SAFETY_PAGES:  # a client without a bound ends, and fails below
            return status, headers, body
        return status, [*headers, ("Link", f'<{folder}?page={page + 1}>; rel="next"')], body

    stage.scripted.on(propfind_of(folder), answer)
    client = stage.client()
    client.max_pages = 25
    with pytest.raises(ListingFailed) as caught:
        names(stage.retrying(client), "locks")
    assert "more than 25 pages" in str(caught.value)
    assert stage.scripted.count("PROPFIND") == 25


# ---- retries: the request, not the walk -----------------------------------------------


def test_a_walk_through_a_server_that_fails_one_request_in_nine(stage: Stage):
    # A repository-like tree: 64 pack folders of 0 to 9 packs, pages of 4.
    expected = {}
    for folder in range(64):
        for n in range(folder % 10):
            expected[f"data/{folder:02x}/{folder:02x}{n:062x}"] = bytes(n)
    for name, data in expected.items():
        path = stage.server.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for folder in range(64):
        (stage.server.root / f"data/{folder:02x}").mkdir(exist_ok=True)
    stage.faults.paginate(4)

    clean = stage.client()
    assert names(clean, "data") == sorted(expected)
    pages = clean.http_requests
    assert stage.scripted.count() == pages
    assert pages > 64 + 17  # every folder, several with more than one page

    stage.scripted.clear()
    stage.scripted.fail_every = (9, 502)
    client = stage.client()
    listed = [i for i in stage.retrying(client).list("data")]
    assert sorted(i.name for i in listed) == sorted(expected)
    assert len(listed) == len(expected)  # nothing twice, though pages were retried
    assert all(i.size == len(expected[i.name]) for i in listed)
    failures = stage.scripted.count(status=502)
    assert failures == stage.scripted.count() // 9 > 0
    # Each failed request is sent once more, alone: pages + failures in all,
    # where retrying the walk would never have finished.
    assert stage.scripted.count() == client.http_requests == pages + failures


# ---- reads stop at the bytes asked for ------------------------------------------------

HUGE = 800 * MiB
_PATTERN = bytes(range(256))


def pattern(start: int, length: int) -> bytes:
    """Bytes [start, start + length) of the huge object: byte i is i % 256."""
    rotated = _PATTERN[start % 256:] + _PATTERN[:start % 256]
    return (rotated * (length // 256 + 2))[:length]


def generated(start: int, total: int) -> Iterator[bytes]:
    block = pattern(start, MiB)  # 1 MiB is a multiple of 256: blocks join seamlessly
    left = total - start
    while left > 0:
        yield block[:left]
        left -= len(block)


def huge_object(mode: str):
    """GET of `huge`, answered from a generator (the server stays small)."""
    def answer(environ, inner):
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", environ.get("HTTP_RANGE", ""))
        start = int(m.group(1)) if m else 0
        if mode == "206, then more than asked" and m:
            return 206, [("Content-Range", f"bytes {start}-{HUGE - 1}/{HUGE}"),
                         ("Content-Length", str(HUGE - start))], generated(start, HUGE)
        return 200, [("Content-Length", str(HUGE))], generated(0, HUGE)
    return answer


CHILD = """
import dataclasses, hashlib, json, sys
from strongroom.errors import StorageError
from strongroom.storage.vendors import GENERIC
from strongroom.storage.webdav import WebDAVStorage
url, user, password, offset, length, cap = json.loads(sys.argv[1])
vendor = dataclasses.replace(GENERIC, max_object_size=cap)
storage = WebDAVStorage(url, user, password, vendor, timeout=60)
try:
    data = storage.read("huge", offset, length)
    print(json.dumps({"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
except StorageError as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
"""


@pytest.mark.parametrize("mode, offset, length, cap", [
    ("200 to a range", 1000, 4096, None),
    ("200 to a range", 100 * MiB + 3, 64 * 1024, None),
    ("206, then more than asked", 5 * MiB + 1, 100_000, None),
    # A small upload cap does not make a read fail: a repository made
    # elsewhere may hold larger objects (docs/webdav.md).
    ("206, then more than asked", 7, 1000, 64 * 1024),
])
def test_a_huge_answer_to_a_read_costs_no_memory(stage: Stage, mode, offset, length, cap):
    stage.scripted.on(lambda m, p, q, e: m == "GET" and p == stage.path + "huge", huge_object(mode))
    answer, rss = run_measured(CHILD, stage.server.url, stage.server.username, stage.server.password,
                               offset, length, cap)
    assert rss < 300 * MiB, f"the client peaked at {rss // MiB} MiB"
    assert answer == {"length": length, "sha256": hashlib.sha256(pattern(offset, length)).hexdigest()}


@pytest.mark.parametrize("mode", ["200 to a range", "206, then more than asked", "honest"])
def test_the_spans_of_a_pack_come_from_one_get_whatever_the_server_does_with_range(stage: Stage, mode):
    """A restore or check reads a pack in spans: one GET for all of them, the
    stream cut as it passes, also from a server that ignores Range (then the
    object is read once from its start, not once per span)."""
    name = "packs/ab/span-test"
    if mode == "honest":
        stage.files({name: pattern(0, 8 * MiB)})
    else:
        stage.scripted.on(lambda m, p, q, e: m == "GET" and p == stage.path + name, huge_object(mode))
    spans = [(3 * MiB + 5, 1000), (3 * MiB + 1005, 0), (3 * MiB + 1005, MiB), (6 * MiB, 17), (7 * MiB, MiB - 3)]
    storage = stage.retrying(stage.client())
    got = list(storage.read_spans(name, spans))
    assert got == [pattern(o, n) for o, n in spans]
    assert stage.scripted.count("GET") == 1
    # A span past the end of the object comes back short, as a read's does.
    if mode == "honest":
        assert list(storage.read_spans(name, [(8 * MiB - 10, 100), (8 * MiB + 1, 5)])) == [pattern(8 * MiB - 10, 10), b""]


def test_an_empty_span_before_the_first_byte_read_leaves_the_other_spans_in_place(stage: Stage):
    """A span of no bytes placed before the range read (a damaged index can
    place an empty blob anywhere) comes back empty, and the spans after it
    hold their own bytes, as they do on a directory."""
    name = "packs/ab/empty-span-test"
    stage.files({name: pattern(0, 64 * 1024)})
    spans = [(0, 0), (5000, 100), (9000, 0), (20000, 7)]
    storage = stage.retrying(stage.client())
    assert list(storage.read_spans(name, spans)) == [pattern(o, n) for o, n in spans]


# ---- prune and snapshots end to end: a listing that lies deletes nothing -----------------


def _small_repository(stage: Stage, tmp_path: Path):
    from conftest import PASSWORD
    from strongroom.engine.backup import BackupOptions, run_backup
    from strongroom.repo.repository import Repository

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(200_000))
    repo = Repository.init(stage.retrying(stage.client()), PASSWORD, cache_root="", data_fanout=1)
    run_backup(repo, BackupOptions(paths=(str(src),)))
    return Repository.open(stage.retrying(stage.client()), PASSWORD, cache_root="")


def _deletes(stage: Stage) -> list[str]:
    """DELETEs that reached the server, the command's own lock aside."""
    return [path for method, path, _, _ in stage.scripted.log
            if method == "DELETE" and not path.startswith(stage.path + "locks/")]


def _keep_only_itself(root, responses):
    for r in responses[1:]:
        root.remove(r)


def test_check_reads_a_pack_no_further_than_its_index_says_whatever_the_listing_claims(stage: Stage, tmp_path):
    """check --read-data cuts each pack into spans up to its size: a listing
    that claims petabytes must not make it plan (or ask for) petabytes."""
    from strongroom.engine.check import run_check

    repo = _small_repository(stage, tmp_path)
    claimed = 2**36

    def inflate(root, responses):
        for r in responses:
            length = r.find(f".//{_DAV}getcontentlength")
            if length is not None:
                length.text = str(claimed)

    ranges: list[str] = []

    def pack_get(method, path, query, environ):
        if method == "GET" and path.startswith(stage.path + "data/"):
            ranges.append(environ.get("HTTP_RANGE", ""))
        return False

    stage.scripted.on(lambda m, p, q, e: m == "PROPFIND" and p.startswith(stage.path + "data/"),
                      edited_multistatus(inflate))
    stage.scripted.on(pack_get, canned(500))  # never answers: it only notes the range asked for
    report = run_check(repo, read_data=True)
    assert any("the index says" in p["message"] for p in report.problems), report.problems
    largest = max(sum(b.length for b in blobs) for blobs in repo.index.packs.values())
    assert ranges
    for asked in ranges:
        _, high = asked.removeprefix("bytes=").split("-")
        assert int(high) < largest + 64 * 1024, asked


@pytest.mark.parametrize("answer", ["404", "301", "empty-207", "self-only-207"])
def test_prune_deletes_nothing_when_the_snapshot_listing_lies(stage: Stage, tmp_path, cli, answer):
    from strongroom.engine.prune import plan_prune
    from strongroom.errors import UsageError

    repo = _small_repository(stage, tmp_path)
    folder = stage.path + "snapshots/"
    stage.scripted.on(propfind_of(folder), {
        "404": canned(404),
        "301": canned(301, [("Location", "http://127.0.0.1:1/elsewhere/")]),
        "empty-207": canned(207, [("Content-Type", "application/xml")],
                            b'<?xml version="1.0"?><d:multistatus xmlns:d="DAV:"/>'),
        # Indistinguishable from a repository whose points were all forgotten:
        # only the person can say it is so.
        "self-only-207": edited_multistatus(_keep_only_itself),
    }[answer])
    expected = UsageError if answer == "self-only-207" else StorageError
    with pytest.raises(expected) as caught:
        plan_prune(repo)
    if answer == "self-only-207":
        assert "--allow-remove-all" in str(caught.value)
    assert _deletes(stage) == []

    # The command line says so too: an error, never "0 snapshot(s)" with exit 0.
    url = f"webdav+http://{stage.server.username}@127.0.0.1:{stage.server.port}{stage.path}"
    env = {"STRONGROOM_WEBDAV_PASSWORD": stage.server.password, "STRONGROOM_WEBDAV_BUDGET": "off",
           "STRONGROOM_WEBDAV_DEADLINE": "5", "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05"}
    done = cli.run("prune", "--repo", url, "--no-cache", env=env)
    assert done.returncode in (1, 2) and _deletes(stage) == [], done.stderr.decode()
    done = cli.run("snapshots", "--repo", url, "--no-cache", env=env)
    if answer == "self-only-207":
        assert done.returncode == 0  # an empty folder is a fine answer to a listing
    else:
        assert done.returncode == 1 and "0 snapshot" not in done.stdout.decode(), done.stdout.decode()
