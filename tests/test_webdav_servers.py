"""The WebDAV test servers themselves: they store, serve and list files, and
they enforce their password.

Raw httpx on purpose: these tests hold the fixtures to account, not
strongroom's client. What each server does at the edges is in docs/webdav.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest

import webdav_servers
from webdav_servers import SERVERS, DavServer, ServerUnavailable

PROPFIND = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
            b'<D:resourcetype/><D:getcontentlength/></D:prop></D:propfind>')


def client(server: DavServer, password: str | None = None) -> httpx.Client:
    return httpx.Client(auth=(server.username, password or server.password), timeout=10)


def listing(c: httpx.Client, url: str) -> dict[str, int | None]:
    """PROPFIND Depth 1: decoded names relative to `url` -> size (None for collections)."""
    response = c.request("PROPFIND", url, headers={"Depth": "1"}, content=PROPFIND)
    assert response.status_code == 207, response.text
    base = unquote(urlsplit(url).path)
    entries = {}
    for r in ET.fromstring(response.content).iter("{DAV:}response"):
        path = unquote(urlsplit(r.findtext("{DAV:}href")).path)
        assert path.startswith(base.rstrip("/")), (path, base)
        name = path[len(base):].strip("/")
        is_collection = r.find(".//{DAV:}resourcetype/{DAV:}collection") is not None
        length = r.findtext(".//{DAV:}getcontentlength")
        entries[name] = None if is_collection else int(length)
    return entries


def test_put_get_range_and_list(webdav_server: DavServer) -> None:
    data = os.urandom(300_000)
    with client(webdav_server) as c:
        assert c.put(webdav_server.url + "obj", content=data).status_code == 201
        got = c.get(webdav_server.url + "obj")
        assert got.status_code == 200 and got.content == data
        part = c.get(webdav_server.url + "obj", headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206 and part.content == data[1000:2000]
        assert listing(c, webdav_server.url) == {"": None, "obj": len(data)}
    assert (webdav_server.root / "obj").read_bytes() == data


def test_each_test_gets_an_empty_collection(webdav_server: DavServer) -> None:
    with client(webdav_server) as c:
        assert listing(c, webdav_server.url) == {"": None}
    assert list(webdav_server.root.iterdir()) == []


def test_the_password_is_enforced(webdav_server: DavServer) -> None:
    url = webdav_server.url + "obj"
    with client(webdav_server, password="wrong") as c:
        assert c.put(url, content=b"x").status_code == 401
        assert c.request("PROPFIND", webdav_server.url, headers={"Depth": "1"}).status_code == 401
    assert httpx.get(webdav_server.url, timeout=10).status_code == 401
    assert not (webdav_server.root / "obj").exists()
    with client(webdav_server) as c:
        assert c.put(url, content=b"x").status_code == 201
        assert c.get(url, auth=(webdav_server.username, "wrong")).status_code == 401


def test_odd_names_round_trip(webdav_server: DavServer) -> None:
    name = "a b%+é&;'"
    with client(webdav_server) as c:
        assert c.put(webdav_server.url + quote(name, safe=""), content=b"odd").status_code == 201
        assert listing(c, webdav_server.url) == {"": None, name: 3}
        # Either case of percent-encoding reaches the same file.
        assert c.get(webdav_server.url + quote(name, safe="").lower()).content == b"odd"
    assert (webdav_server.root / name).read_bytes() == b"odd"


def test_files_left_behind_the_servers_back_are_served(webdav_server: DavServer) -> None:
    webdav_server.put_raw("sub/leftover", b"half an upload")
    url = webdav_server.url + "sub/"
    with client(webdav_server) as c:
        assert listing(c, url) == {"": None, "leftover": 14}
        assert c.get(url + "leftover").content == b"half an upload"
        # The server can write where put_raw wrote.
        assert c.put(url + "next", content=b"n").status_code == 201
        assert c.delete(url + "leftover").status_code == 204
    assert sorted(p.name for p in (webdav_server.root / "sub").iterdir()) == ["next"]


def test_scratch_is_a_location_that_does_not_exist_yet(wsgidav_server: DavServer) -> None:
    target = wsgidav_server.scratch()
    assert target.url.startswith(wsgidav_server.url) and target.root.parent == wsgidav_server.root
    assert not target.root.exists()
    with client(target) as c:
        assert c.request("PROPFIND", target.url, headers={"Depth": "0"}).status_code == 404
    assert target.storage_url() == "webdav+" + target.url.replace("http://", f"http://{target.username}@")


def test_wsgidav_can_be_wrapped(start_webdav) -> None:
    methods = []

    def refuse_first_put(app):
        def middleware(environ, start_response):
            methods.append(environ["REQUEST_METHOD"])
            if methods.count("PUT") == 1 and environ["REQUEST_METHOD"] == "PUT":
                start_response("503 Service Unavailable", [("Content-Length", "0"), ("Retry-After", "1")])
                return [b""]
            return app(environ, start_response)
        return middleware

    server = start_webdav("wsgidav", wrap_app=refuse_first_put, prefix="/")
    assert server.url.endswith(f":{server.port}/") and server.app is not None
    with client(server) as c:
        first = c.put(server.url + "obj", content=b"x")
        assert first.status_code == 503 and first.headers["Retry-After"] == "1"
        assert c.put(server.url + "obj", content=b"x").status_code == 201
    assert methods == ["PUT", "PUT"]
    assert (server.root / "obj").read_bytes() == b"x"


def group_members(pgid: int) -> list[int]:
    """Live processes in a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, _ppid, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            except (OSError, ValueError):
                continue
            if int(pgrp) == pgid and state != "Z":
                members.append(int(entry.name))
    return members


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("kind", ["rclone", "apache", "nginx"])
def test_no_process_outlives_a_failing_test(kind: str) -> None:
    with pytest.raises(RuntimeError, match="the test failed"), SERVERS[kind]() as server:
        assert server.pid in group_members(server.pid)
        raise RuntimeError("the test failed")
    assert group_members(server.pid) == []
    assert refused(server.port)
    assert not server.root.exists()


HOLD_A_SERVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from webdav_servers import SERVERS
with SERVERS[sys.argv[2]]() as server:
    print(server.pid, server.root, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("kind", ["rclone", "apache", "nginx"])
def test_no_process_outlives_a_killed_test_run(kind: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_A_SERVER, str(Path(__file__).parent), kind],
                              stdout=subprocess.PIPE, text=True)
    try:
        pid, root = holder.stdout.readline().split()
        pid = int(pid)
        assert group_members(pid)
    finally:
        holder.kill()
        holder.wait()
    try:
        deadline = time.monotonic() + 5
        while group_members(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group_members(pid) == []
    finally:
        # kill -9 leaves the holder no chance to clean up: what is left is ours.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(Path(root).parents[1], ignore_errors=True)


def test_a_missing_server_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(webdav_servers.shutil, "which", lambda *a, **k: None)
    with pytest.raises(ServerUnavailable, match=r"rclone is not installed .*run scripts/test\.sh as root"), \
            webdav_servers.run_rclone():
        pass
