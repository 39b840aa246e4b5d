"""The daemon's HTTP endpoints: `/metrics` (Prometheus) and `/healthz`.

A FastAPI app served by uvicorn in a thread of the daemon's process (the web
console and JSON API of later work are more routes on the same app). Only
this module and the ones it imports load FastAPI, uvicorn and
prometheus_client, so every other command starts without them.

Exposure: loopback addresses are served without a token; any other address
needs the caller to allow it (`serve --allow-remote`) and a token, which
every request must then carry as `Authorization: Bearer TOKEN`. uvicorn's
access log is off (a query string may carry anything) and its own logging
setup is not applied: its messages go to the process's loggers.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import json
import os
import socket
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Mapping
from zoneinfo import ZoneInfo

from strongroom.errors import StrongroomError, UsageError

TOKEN_ENV = "STRONGROOM_SERVE_TOKEN"
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_FILE = 4096  # bytes read from a token file
START_TIMEOUT = 10.0  # seconds to wait for the server to listen
STOP_TIMEOUT = 3.0  # seconds for open connections to finish before they are closed


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[ADDRESS]:PORT` for IPv6) as (host, port); port 0 picks a free one."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise UsageError(f"cannot read listen address {text!r}: use [ADDRESS]:PORT for IPv6, e.g. [::1]:9180")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageError(f"cannot read listen address {text!r}: {host!r} is no IPv6 address") from None
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise UsageError(f"cannot read listen address {text!r}: use HOST:PORT, e.g. 127.0.0.1:9180")
        if ":" in host:
            raise UsageError(f"cannot read listen address {text!r}: put an IPv6 address in brackets, "
                             f"e.g. [::1]:9180")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"cannot read listen address {text!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def _is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback one (a name is resolved)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as e:
        raise UsageError(f"cannot resolve listen address {host!r}: {e.strerror or e}") from None
    addresses = {info[4][0] for info in found}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_exposure(host: str, allow_remote: bool, token: str | None) -> None:
    """Refuse (UsageError) to serve on an address beyond this machine unless
    that was asked for (`allow_remote`) and a token guards it."""
    if _is_loopback(host):
        return
    if not allow_remote:
        raise UsageError(f"listening on {host} exposes the daemon beyond this machine: "
                         f"add --allow-remote and set a token ({TOKEN_ENV} or a token file), "
                         f"or listen on 127.0.0.1")
    if not token:
        raise UsageError(f"listening on {host} needs a token: set {TOKEN_ENV} or give a token file")


def _checked_token(token: str, where: str) -> str:
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise UsageError(f"the token in {where} is too short: use at least {MIN_TOKEN_LENGTH} characters "
                         f"(e.g. the output of `openssl rand -hex 32`)")
    if not all("!" <= c <= "~" for c in token):
        raise UsageError(f"the token in {where} must be printable ASCII without spaces")
    return token


def serve_token(environ: Mapping[str, str], path: str | None) -> str | None:
    """The token the endpoints require, from the file at `path` (readable by its
    owner alone) or from $STRONGROOM_SERVE_TOKEN; None when neither is given."""
    from_env = environ.get(TOKEN_ENV) or None
    if path is None:
        return None if from_env is None else _checked_token(from_env, TOKEN_ENV)
    if from_env is not None:
        raise UsageError(f"give the token once: {TOKEN_ENV} is set and a token file is given")
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise UsageError(f"cannot read token file {path}: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"token file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise UsageError(f"token file {path} can be read by others: chmod 600 {path}")
        data = os.read(fd, MAX_TOKEN_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_TOKEN_FILE:
        raise UsageError(f"token file {path} is longer than {MAX_TOKEN_FILE} bytes: it should hold one token")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise UsageError(f"the token in {path} must be printable ASCII without spaces") from None
    return _checked_token(text, path)


class _BearerToken:
    """ASGI middleware: every HTTP request (to one of `paths`, when given) carries
    `Authorization: Bearer TOKEN`, compared in constant time; 401 otherwise."""

    def __init__(self, app, token: str, paths: frozenset[str] | None = None) -> None:
        self.app = app
        self._token = token.encode("ascii")
        self._paths = paths

    def __repr__(self) -> str:
        return "_BearerToken(<token>)"

    def _allowed(self, headers) -> bool:
        given = b""
        for name, value in headers:
            if name.lower() == b"authorization":
                given = value
                break
        scheme, _, credentials = given.partition(b" ")
        # compare_digest is constant-time in the content; run it even for a wrong scheme.
        match = hmac.compare_digest(credentials.strip(), self._token)
        return scheme.lower() == b"bearer" and match

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] != "http" or (self._paths is not None and scope["path"] not in self._paths)
                or self._allowed(scope.get("headers") or ())):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "unauthorized: send the daemon's token as Authorization: Bearer TOKEN"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="strongroom"'), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})


def _bind(host: str, port: int, loopback_only: bool = False) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except OSError as e:
        raise StrongroomError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    if loopback_only and not ipaddress.ip_address(address[0].split("%")[0]).is_loopback:
        # A name is resolved again here: what check_exposure found loopback may
        # not be any more (a DNS answer that changed).
        raise UsageError(f"listening on {host} would expose the daemon beyond this machine "
                         f"({host} now resolves to {address[0]}): listen on 127.0.0.1")
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise StrongroomError(f"cannot listen on {host}:{port}: the port is in use "
                                  f"(another strongroom serve, or another program)") from None
        raise StrongroomError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


class HttpEndpoints:
    """`/metrics` and `/healthz` over `manager`'s catalog.

    `heartbeat()` is when the scheduler last made a pass (unix time, None
    before the first); `clock()` is now; `/healthz` fails once the heartbeat
    is older than `stale_after` seconds. With `token`, every request needs it
    as a bearer token. `zone` reads cron schedules that name none (default:
    the machine's). With `console` (strongroom.web.console.Console), the web
    console and its API answer on the same app, behind their own sign-in;
    the token then guards `/metrics` and `/healthz` only."""

    def __init__(self, manager, heartbeat: Callable[[], float | None], token: str | None = None,
                 clock: Callable[[], float] = time.time, stale_after: float = 60.0,
                 zone: ZoneInfo | None = None, console=None) -> None:
        from strongroom.daemon.standing import ScheduleGaps
        from strongroom.schedule.spec import system_zone

        self.manager = manager
        self.heartbeat = heartbeat
        self.clock = clock
        self.stale_after = stale_after
        self.zone = zone or system_zone()
        self.gaps = ScheduleGaps()
        self.console = console
        self.app = self._make_app(token)
        self._server = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def __repr__(self) -> str:
        return f"HttpEndpoints(catalog={self.manager.catalog.path!r})"

    def _make_app(self, token: str | None):
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse, PlainTextResponse, Response
        from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

        from strongroom import __version__
        from strongroom.daemon.health import health
        from strongroom.daemon.metrics import render_metrics

        console = self.console
        app = FastAPI(title="strongroom", version=__version__, docs_url=None, redoc_url=None,
                      openapi_url="/api/openapi.json" if console is not None else "/openapi.json")

        @app.get("/metrics", include_in_schema=False)
        def metrics() -> Response:
            beat = self.heartbeat()
            extra = {} if beat is None else {"strongroom_scheduler_heartbeat_timestamp_seconds": beat}
            try:
                text = render_metrics(self.manager, self.clock(), extra, self.zone, self.gaps)
            except (StrongroomError, sqlite3.Error) as e:
                return PlainTextResponse(f"metrics unavailable: {e}\n", status_code=500)
            return Response(text, media_type=CONTENT_TYPE_PLAIN_0_0_4, headers={"cache-control": "no-store"})

        @app.get("/healthz", include_in_schema=False)
        def healthz() -> JSONResponse:
            code, body = health(self.manager, self.clock(), self.heartbeat(), self.stale_after, self.zone, self.gaps)
            return JSONResponse(body, status_code=code, headers={"cache-control": "no-store"})

        if console is not None:
            console.mount(app)
        if token:
            from strongroom.web.guard import DAEMON_PATHS
            app.add_middleware(_BearerToken, token=token, paths=DAEMON_PATHS if console is not None else None)
        return app

    def start(self, host: str, port: int, loopback_only: bool = False) -> int:
        """Listen on `host`:`port` (0: a free port) in a daemon thread; return the port
        once it accepts connections. A port in use is a StrongroomError; with
        `loopback_only`, an address that is not loopback is a UsageError."""
        import uvicorn

        from strongroom.daemon.connections import MAX_CONNECTIONS, BoundedH11Protocol

        if self._thread is not None:
            raise StrongroomError("the HTTP endpoints are started already")
        sock = _bind(host, port, loopback_only)
        config = uvicorn.Config(self.app, log_config=None, log_level="warning", access_log=False,
                                lifespan="off", loop="asyncio", http=BoundedH11Protocol, ws="none",
                                server_header=False, timeout_keep_alive=5,
                                # uvicorn believes X-Forwarded-For/-Proto from 127.0.0.1 by default:
                                # any local process could then pose as another address (and pass the
                                # console's sign-in limiter) or as https. The peer is the socket's.
                                proxy_headers=False,
                                timeout_graceful_shutdown=int(STOP_TIMEOUT),
                                # A backstop only: BoundedH11Protocol sheds idle connections
                                # long before (uvicorn's own limit counts them, see connections.py).
                                limit_concurrency=2 * MAX_CONNECTIONS)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="strongroom-http", daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(timeout=STOP_TIMEOUT)
                sock.close()
                raise StrongroomError(f"the HTTP endpoints did not start on {host}:{port}")
            time.sleep(0.01)
        self._server, self._thread, self._socket = server, thread, sock
        return sock.getsockname()[1]

    def stop(self) -> None:
        """Stop serving: open requests get `STOP_TIMEOUT` seconds, then are cut."""
        server, thread, sock = self._server, self._thread, self._socket
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=STOP_TIMEOUT + 1)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=2)
        if sock is not None:
            sock.close()
        self._server = self._thread = self._socket = None


def start_endpoints(manager, heartbeat: Callable[[], float | None], listen: str, allow_remote: bool,
                    environ: Mapping[str, str], token_file: str | None = None,
                    clock: Callable[[], float] = time.time, stale_after: float = 60.0,
                    zone: ZoneInfo | None = None) -> tuple[HttpEndpoints, str]:
    """What `serve --listen HOST:PORT [--allow-remote]` does with its options:
    read the address and the token (`serve_token`), refuse an exposure that
    was not asked for (`check_exposure`), and start the endpoints. Returns
    them (to `stop()`) and the base URL they answer on."""
    host, port = parse_listen(listen)
    token = serve_token(environ, token_file)
    check_exposure(host, allow_remote, token)
    endpoints = HttpEndpoints(manager, heartbeat, token, clock, stale_after, zone)
    bound = endpoints.start(host, port, loopback_only=not allow_remote)
    shown = f"[{host}]" if ":" in host else host
    return endpoints, f"http://{shown}:{bound}"

