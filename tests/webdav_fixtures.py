"""pytest fixtures for the WebDAV test servers in webdav_servers.py.

- `wsgidav_server`, `rclone_server`, `apache_server`, `nginx_server`: a fresh,
  empty collection for one test, on a server started once per session (on
  first use) and stopped when the session ends.
- `webdav_server`: the same, parametrized over all four servers.
- `start_webdav(kind, **options)`: a server of the test's own, e.g. wsgidav
  with `wrap_app=` for fault injection; stopped when the test ends.

A server whose Debian package is missing fails the tests that use it, with
a message saying to run scripts/test.sh as root.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from webdav_servers import SERVERS, DavServer

__all__ = ["apache_server", "nginx_server", "rclone_server", "start_webdav", "webdav_server",
           "webdav_session_servers", "wsgidav_server"]


class _SessionServers:
    """Starts each kind of server the first time a test asks for it."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack = stack
        self._running: dict[str, DavServer] = {}
        self._failed: dict[str, Exception] = {}

    def get(self, kind: str) -> DavServer:
        if kind in self._failed:
            raise self._failed[kind]
        if kind not in self._running:
            try:
                self._running[kind] = self._stack.enter_context(SERVERS[kind]())
            except Exception as e:  # one failed start is enough for the whole session
                self._failed[kind] = e
                raise
        return self._running[kind]

    def fresh_collection(self, kind: str) -> DavServer:
        """A new, empty collection made through the server itself, so its caches know it."""
        import httpx

        view = self.get(kind).scratch()
        response = httpx.request("MKCOL", view.url, auth=view.auth, timeout=10)
        if response.status_code != 201:
            raise RuntimeError(f"{kind}: MKCOL {view.url} answered {response.status_code}")
        return view


@pytest.fixture(scope="session")
def webdav_session_servers() -> Iterator[_SessionServers]:
    with contextlib.ExitStack() as stack:
        yield _SessionServers(stack)


@pytest.fixture
def wsgidav_server(webdav_session_servers: _SessionServers) -> DavServer:
    return webdav_session_servers.fresh_collection("wsgidav")


@pytest.fixture
def rclone_server(webdav_session_servers: _SessionServers) -> DavServer:
    return webdav_session_servers.fresh_collection("rclone")


@pytest.fixture
def apache_server(webdav_session_servers: _SessionServers) -> DavServer:
    return webdav_session_servers.fresh_collection("apache")


@pytest.fixture
def nginx_server(webdav_session_servers: _SessionServers) -> DavServer:
    return webdav_session_servers.fresh_collection("nginx")


@pytest.fixture(params=list(SERVERS))
def webdav_server(request: pytest.FixtureRequest, webdav_session_servers: _SessionServers) -> DavServer:
    return webdav_session_servers.fresh_collection(request.param)


@pytest.fixture
def start_webdav() -> Iterator[Callable[..., DavServer]]:
    with contextlib.ExitStack() as stack:
        def start(kind: str = "wsgidav", **options) -> DavServer:
            return stack.enter_context(SERVERS[kind](**options))
        yield start
