"""The fault-injecting tools themselves, driven with raw httpx against wsgidav.

The WebDAV fault tests trust these tools to misbehave exactly as asked; a
tool that failed to inject its fault would make those tests pass for nothing.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import xml.etree.ElementTree as ET
from typing import Iterator
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from faults import NUTSTORE_BLOCKED_BODY, FaultMiddleware, FaultProxy
from webdav_servers import DavServer, faulty_wsgidav




@pytest.fixture(scope="module")
def shared_dav() -> Iterator[tuple[DavServer, FaultMiddleware]]:
    with faulty_wsgidav() as pair:
        yield pair


@pytest.fixture
def dav(shared_dav) -> Iterator[tuple[DavServer, FaultMiddleware, httpx.Client]]:
    """The shared server, emptied, with every fault off and fresh counts."""
    server, mw = shared_dav
    for entry in server.root.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    mw.clear()
    mw.reset_counts()
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=10) as client:
        yield server, mw, client


def propfind(client: httpx.Client, url: str, depth: str | None = "1", body: bytes = b"") -> httpx.Response:
    headers = {} if depth is None else {"Depth": depth}
    return client.request("PROPFIND", url, headers=headers, content=body)


def hrefs(response: httpx.Response) -> list[str]:
    root = ET.fromstring(response.content)
    return [unquote(urlsplit(h.text).path) for h in root.iter("{DAV:}href")]


def next_link(response: httpx.Response) -> str | None:
    link = response.headers.get("link")
    if not link:
        return None
    target, rel = link.split(";", 1)
    assert rel.strip() == 'rel="next"'
    return target.strip()[1:-1]


# --- the middleware ---------------------------------------------------------

def test_counts_requests_per_method_and_stored_bytes(dav):
    server, mw, client = dav
    assert client.request("MKCOL", "d/").status_code == 201
    assert client.put("d/a", content=b"x" * 1000).status_code == 201
    assert client.put("d/b", content=b"y" * 24).status_code == 201
    assert client.get("d/a").content == b"x" * 1000
    assert propfind(client, "d/").status_code == 207
    assert mw.requests == {"MKCOL": 1, "PUT": 2, "GET": 1, "PROPFIND": 1}
    assert mw.put_bytes() == 1024
    assert mw.stored_paths() == ["/dav/d/a", "/dav/d/b"]
    assert mw.count(status=201) == 3
    mw.reset_counts()
    assert mw.count() == 0


def test_nutstore_throttling_after_n_requests_for_m_requests(dav):
    server, mw, client = dav
    server.put_raw("f", b"data")
    mw.throttle(after=2, count=3, retry_after=7)
    statuses = [client.get("f") for _ in range(7)]
    assert [r.status_code for r in statuses] == [200, 200, 503, 503, 503, 200, 200]
    blocked = statuses[2]
    assert blocked.content == NUTSTORE_BLOCKED_BODY
    assert blocked.headers["retry-after"] == "7"
    assert ET.fromstring(blocked.content).findtext("{http://ns.jianguoyun.com}exception") == "BlockedTemporarily"
    assert mw.count(status=503) == 3


def test_nutstore_throttling_for_a_time(dav):
    server, mw, client = dav
    server.put_raw("f", b"data")
    mw.throttle(after=0, seconds=0.4)
    assert client.get("f").status_code == 503
    assert "retry-after" not in client.get("f").headers
    time.sleep(0.45)
    assert client.get("f").status_code == 200


def test_throttling_until_cleared(dav):
    server, mw, client = dav
    server.put_raw("f", b"data")
    mw.throttle()
    assert {client.get("f").status_code for _ in range(5)} == {503}
    mw.clear()
    assert client.get("f").status_code == 200


def test_throttling_counts_exactly_under_concurrency(dav):
    server, mw, client = dav
    server.put_raw("f", b"data")
    mw.throttle(after=10, count=25)
    statuses: list[int] = []
    lock = threading.Lock()

    def hammer():
        with httpx.Client(base_url=server.url, auth=server.auth, timeout=10) as c:
            for _ in range(10):
                code = c.get("f").status_code
                with lock:
                    statuses.append(code)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(statuses) == 80
    assert statuses.count(503) == 25
    assert statuses.count(200) == 55


@pytest.mark.parametrize("status", [500, 502, 429, 423])
def test_generic_failures_for_the_next_k_requests(dav, status):
    server, mw, client = dav
    server.put_raw("f", b"data")
    mw.fail(status, 2, retry_after=3)
    first, second, third = (client.get("f") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (status, status, 200)
    assert first.headers["retry-after"] == "3"
    assert third.content == b"data"


def test_failures_limited_to_methods_and_queued_in_order(dav):
    server, mw, client = dav
    server.put_raw("f", b"data")
    mw.fail(500, 1, methods=["PUT"])
    mw.fail(502, 1)
    assert client.get("f").status_code == 502   # the PUT-only failure waits for a PUT
    assert client.put("g", content=b"1").status_code == 500
    assert client.put("g", content=b"1").status_code == 201
    assert client.get("f").status_code == 200


def test_failures_after_some_requests_and_until_cleared(dav):
    server, mw, client = dav
    server.put_raw("f", b"data")
    mw.fail(500, None, methods=["PUT"], after=2)
    assert [client.put(f"p{i}", content=b"1").status_code for i in range(4)] == [201, 201, 500, 500]
    assert client.get("f").status_code == 200
    mw.clear()
    assert client.put("p9", content=b"1").status_code == 201


def test_deny_after_some_requests(dav):
    server, mw, client = dav
    server.put_raw("f", b"data")
    mw.deny(401, after=2)
    assert [client.get("f").status_code for _ in range(4)] == [200, 200, 401, 401]


def test_deny_answers_401_to_everything_and_counts_attempts(dav):
    server, mw, client = dav
    server.put_raw("f", b"data")
    mw.deny(401)
    responses = [client.get("f"), client.put("g", content=b"x" * 5000), propfind(client, "")]
    assert [r.status_code for r in responses] == [401, 401, 401]
    assert responses[0].headers["www-authenticate"].startswith("Basic")
    assert mw.count(status=401) == 3
    assert not (server.root / "g").exists()


def test_wrong_password_is_counted_too(dav):
    server, mw, client = dav
    with httpx.Client(base_url=server.url, auth=(server.username, "wrong"), timeout=10) as bad:
        assert bad.get("anything").status_code == 401
    assert mw.count(status=401) == 1


def _fill(server: DavServer, directory: str, n: int) -> set[str]:
    (server.root / directory).mkdir()
    for i in range(n):
        (server.root / directory / f"{i:064x}").touch()
    return {f"/dav/{directory}/{i:064x}" for i in range(n)}


def test_pages_of_750_entries_linked_by_absolute_next_urls(dav):
    server, mw, client = dav
    names = _fill(server, "data", 1600)
    mw.paginate()
    seen: list[str] = []
    pages = []
    url: str | None = "data/"
    while url:
        response = propfind(client, url)
        assert response.status_code == 207
        pages.append(len(hrefs(response)))
        seen += hrefs(response)
        url = next_link(response)
        if url:
            assert url.startswith(f"http://127.0.0.1:{server.port}/dav/data/?")
    assert pages == [750, 750, 101]
    assert seen[0].rstrip("/") == "/dav/data"
    assert len(seen) == len(set(seen))
    assert set(seen[1:]) == names
    assert mw.count("PROPFIND") == 3


def test_pages_keep_the_clients_prop_request_and_relative_links(dav):
    server, mw, client = dav
    names = _fill(server, "few", 5)
    mw.paginate(2, absolute_links=False)
    body = (b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getcontentlength/>'
            b"</d:prop></d:propfind>")
    first = propfind(client, "few/", body=body)
    assert next_link(first) == "/dav/few/?page=2"
    assert b"getcontentlength" in first.content
    assert b"lockdiscovery" not in first.content
    origin = server.url.removesuffix("/dav/")
    second = propfind(client, origin + next_link(first), body=body)
    assert next_link(second) == "/dav/few/?page=3"
    last = propfind(client, origin + next_link(second), body=body)
    assert next_link(last) is None
    listed = hrefs(first) + hrefs(second) + hrefs(last)
    assert [len(hrefs(r)) for r in (first, second, last)] == [2, 2, 2]
    assert set(listed[1:]) == names


def test_small_listings_and_depth_0_are_not_paged(dav):
    server, mw, client = dav
    _fill(server, "small", 3)
    mw.paginate()
    response = propfind(client, "small/")
    assert len(hrefs(response)) == 4 and "link" not in response.headers
    assert len(hrefs(propfind(client, "small/", depth="0"))) == 1


def test_put_into_a_missing_folder_answers_404_with_the_quirk(dav):
    server, mw, client = dav
    assert client.put("missing/x", content=b"1").status_code == 409   # wsgidav's own answer
    mw.quirks(put_missing_parent_404=True)
    assert client.put("missing/x", content=b"1").status_code == 404
    client.request("MKCOL", "present/")
    assert client.put("present/x", content=b"1").status_code == 201


def test_put_directly_into_the_root_answers_403(dav):
    server, mw, client = dav
    mw.quirks(put_root_403=True)
    assert client.put("config", content=b"1").status_code == 403
    assert not (server.root / "config").exists()
    client.request("MKCOL", "repo/")
    assert client.put("repo/config", content=b"1").status_code == 201


def test_move_onto_an_existing_target_answers_409(dav):
    server, mw, client = dav
    server.put_raw("a", b"a")
    server.put_raw("b", b"b")
    mw.quirks(move_conflict_409=True)
    moved = client.request("MOVE", "a", headers={"Destination": server.url + "b", "Overwrite": "T"})
    assert moved.status_code == 409
    assert (server.root / "b").read_bytes() == b"b"
    assert client.request("MOVE", "a", headers={"Destination": server.url + "c"}).status_code == 201
    assert (server.root / "c").read_bytes() == b"a"


def test_strict_depth_refuses_propfind_without_depth_or_infinite(dav):
    server, mw, client = dav
    assert propfind(client, "", depth=None).status_code == 207
    mw.quirks(strict_depth=True)
    assert propfind(client, "", depth=None).status_code == 403
    assert propfind(client, "", depth="infinity").status_code == 403
    assert propfind(client, "", depth="0").status_code == 207
    assert propfind(client, "", depth="1").status_code == 207


def test_get_of_a_collection_answers_403(dav):
    server, mw, client = dav
    server.put_raw("d/f", b"data")
    mw.nutstore()
    assert client.get("d/").status_code == 403
    assert client.head("d/").status_code == 403
    assert client.get("d/f").content == b"data"


def test_quirks_switch_off_one_by_one(dav):
    server, mw, client = dav
    mw.nutstore()
    mw.quirks(strict_depth=False)
    assert propfind(client, "", depth=None).status_code == 207
    assert client.put("x", content=b"1").status_code == 403
    mw.clear()
    assert client.put("x", content=b"1").status_code == 201


def test_upload_cap_answers_413_and_the_connection_stays_usable(dav):
    server, mw, client = dav
    mw.cap_uploads(1000)
    assert client.put("big", content=os.urandom(1001)).status_code == 413
    assert client.put("fits", content=b"z" * 1000).status_code == 201
    assert not (server.root / "big").exists()
    assert (server.root / "fits").stat().st_size == 1000
    chunked = client.put("streamed", content=iter([b"a", b"b"]))
    assert chunked.status_code == 411


def test_slow_answers_only_for_the_chosen_methods(dav):
    server, mw, client = dav
    server.put_raw("f", b"data")
    mw.slow(0.3, methods=["GET"])
    started = time.monotonic()
    assert client.get("f").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert propfind(client, "f", depth="0").status_code == 207
    assert time.monotonic() - started < 0.3


# --- the proxy --------------------------------------------------------------

@pytest.fixture
def proxied(dav) -> Iterator[tuple[DavServer, FaultMiddleware, FaultProxy, httpx.Client]]:
    server, mw, _ = dav
    with FaultProxy(("127.0.0.1", server.port)) as proxy:
        base = f"http://{proxy.address}/dav/"
        with httpx.Client(base_url=base, auth=server.auth, timeout=10) as client:
            yield server, mw, proxy, client


def test_proxy_relays_on_one_kept_alive_connection(proxied):
    server, mw, proxy, client = proxied
    payload = os.urandom(300_000)
    assert client.put("blob", content=payload).status_code == 201
    assert client.get("blob").content == payload
    assert client.get("blob", headers={"Range": "bytes=10-19"}).content == payload[10:20]
    assert client.head("blob").headers["content-length"] == str(len(payload))
    assert propfind(client, "").status_code == 207
    assert client.put("chunked", content=iter([payload[:1000], payload[1000:]])).status_code == 201
    assert (server.root / "chunked").read_bytes() == payload
    assert proxy.connections == 1
    assert proxy.requests == {"PUT": 2, "GET": 2, "HEAD": 1, "PROPFIND": 1}
    assert mw.count() == 6


def test_proxy_resets_an_upload_after_n_bytes_once(proxied):
    server, mw, proxy, client = proxied
    payload = os.urandom(2_000_000)
    proxy.reset_upload(100_000)
    with pytest.raises(httpx.TransportError):
        client.put("blob", content=payload)
    assert proxy.events["reset_upload"] == 1
    # wsgidav writes in place: a cut upload leaves a short file under the
    # final name, which a reader must not take for the whole object.
    time.sleep(0.2)
    left = server.root / "blob"
    if left.exists():
        assert len(left.read_bytes()) < len(payload)
        assert payload.startswith(left.read_bytes())
    assert client.put("blob", content=payload).status_code in (201, 204)
    assert (server.root / "blob").read_bytes() == payload
    assert proxy.connections == 2


def test_proxy_resets_a_chunked_upload(proxied):
    server, mw, proxy, client = proxied
    proxy.reset_upload(5000, path="/dav/streamed")
    with pytest.raises(httpx.TransportError):
        client.put("streamed", content=iter([os.urandom(4000) for _ in range(50)]))
    assert proxy.events["reset_upload"] == 1


def test_proxy_truncates_a_response_body_short_of_its_length(proxied):
    server, mw, proxy, client = proxied
    payload = os.urandom(100_000)
    server.put_raw("blob", payload)
    proxy.truncate_response(30_000, path="blob")
    with client.stream("GET", "blob") as response:
        assert response.headers["content-length"] == "100000"
        received = bytearray()
        with pytest.raises(httpx.RemoteProtocolError):
            for piece in response.iter_bytes():
                received += piece
    assert bytes(received) == payload[:30_000]
    assert proxy.events["truncate"] == 1
    assert client.get("blob").content == payload


def test_proxy_cuts_count_only_when_the_body_is_long_enough(proxied):
    server, mw, proxy, client = proxied
    server.put_raw("short", b"s" * 100)
    server.put_raw("long", b"l" * 10_000)
    proxy.truncate_response(1000, times=1)
    assert client.get("short").content == b"s" * 100
    assert client.get("long", headers={"Range": "bytes=0-99"}).content == b"l" * 100
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("long")
    assert client.get("long").content == b"l" * 10_000
    assert proxy.events["truncate"] == 1


def test_proxy_resets_a_download_midway(proxied):
    server, mw, proxy, client = proxied
    payload = os.urandom(500_000)
    server.put_raw("blob", payload)
    proxy.reset_download(1000, times=2)
    for _ in range(2):
        with pytest.raises(httpx.TransportError):
            client.get("blob")
    assert client.get("blob").content == payload
    assert proxy.events["reset_download"] == 2


def test_proxy_slows_a_stream_chunk_by_chunk(proxied):
    server, mw, proxy, client = proxied
    server.put_raw("blob", b"q" * 10_000)
    proxy.slow(0.05, chunk_size=1000, method="GET")
    started = time.monotonic()
    assert client.get("blob").content == b"q" * 10_000
    assert time.monotonic() - started >= 0.5


def test_proxy_refuses_the_next_connections_only(proxied):
    server, mw, proxy, client = proxied
    server.put_raw("f", b"data")
    proxy.refuse_connections(2)
    for _ in range(2):
        with pytest.raises(httpx.TransportError):
            client.get("f")
    assert client.get("f").content == b"data"
    assert proxy.connections == 3
    assert proxy.events["refused"] == 2
    assert mw.count("GET") == 1


def test_proxy_closes_with_open_connections_and_stops_its_threads(dav):
    server, mw, _ = dav
    before = threading.active_count()
    proxy = FaultProxy(("127.0.0.1", server.port))
    client = httpx.Client(base_url=f"http://{proxy.address}/dav/", auth=server.auth, timeout=10)
    client.put("f", content=b"1")             # leaves a kept-alive connection open
    started = time.monotonic()
    proxy.close()
    assert time.monotonic() - started < 5
    with pytest.raises(httpx.TransportError):
        client.get("f")
    client.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before
