"""Real WebDAV servers on loopback for the tests.

Each `run_*` context manager starts one server on 127.0.0.1 and a free port,
with HTTP basic auth for the user `tester`, serving a fresh temporary
directory; it yields a `DavServer` once the port answers and stops the server
(its whole process group) and removes the directory on exit.

- wsgidav runs in-process (cheroot in a thread) and is always available; its
  WSGI app can be wrapped, e.g. by a fault-injecting middleware.
- rclone, Apache httpd (mod_dav_fs) and nginx (dav_ext) are Debian packages
  that scripts/test.sh installs when it runs as root. When one is missing the
  server fails to start with a message that says so; it is never skipped.

The collection is served below a path prefix (`/dav/` unless asked
otherwise), as it is on most real servers, so href handling is exercised.
Measured behaviour of each server: docs/webdav.md.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

USERNAME = "tester"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# The account that Apache and nginx workers switch to when started as root.
WORKER_USER = "www-data"
RCLONE_DIR_CACHE_MS = 250

WrapApp = Callable[[Callable], Callable]


class ServerUnavailable(RuntimeError):
    """A server's program is not installed, or it did not come up."""


@dataclass(frozen=True)
class DavServer:
    name: str
    url: str  # the served collection, ending in "/": http://127.0.0.1:PORT/dav/
    username: str
    password: str
    root: Path  # the directory on disk that `url` serves
    # (uid, gid) that the server writes as, when it differs from ours.
    owner: tuple[int, int] | None = None
    app: Callable | None = None  # wsgidav: the WSGI app before wrap_app
    pid: int | None = None  # the server's process (and process group), if it has one
    # How long the server may go on answering from a cache after a file
    # changed behind its back (rclone's directory cache).
    settle_seconds: float = 0.0

    @property
    def port(self) -> int:
        return int(self.url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)

    def storage_url(self) -> str:
        """The repository URL strongroom takes for this collection."""
        return "webdav+" + self.url.replace("://", f"://{self.username}@", 1)

    def scratch(self, name: str | None = None) -> DavServer:
        """A view of a sub-collection that does not exist yet (for one test)."""
        name = name or "t-" + secrets.token_hex(6)
        return dataclasses.replace(self, url=self.url + quote(name) + "/", root=self.root / name)

    def put_raw(self, path: str, data: bytes) -> None:
        """Leave a file on disk behind the server's back, owned as the server would own it."""
        full = self.root / path
        missing = [p for p in (*full.parents, full) if not p.exists()]
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
        if self.owner is not None:
            for p in missing:
                os.chown(p, *self.owner)
        self.settle()

    def settle(self) -> None:
        """Wait until changes made on disk behind the server's back are visible through it."""
        if self.settle_seconds:
            time.sleep(self.settle_seconds)


# --- shared plumbing --------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def htpasswd_line(username: str, password: str) -> str:
    # {SHA}: understood by Apache, nginx and rclone alike, and needs no htpasswd binary.
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    return f"{username}:{{SHA}}{digest}\n"


def _require(program: str, package: str) -> str:
    # Apache and nginx live in /usr/sbin, which a developer's PATH may lack.
    found = shutil.which(program, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if found is None:
        raise ServerUnavailable(f"{program} is not installed (Debian package {package}): "
                                "run scripts/test.sh as root, which installs the WebDAV test servers")
    return found


def _dies_with_us(argv: list[str]) -> list[str]:
    """argv run so that, if the test process is killed outright, the server gets SIGTERM.

    setpriv (util-linux) sets the parent-death signal before exec; a preexec_fn
    would do the same in Python, but forking with other threads running
    (wsgidav's) makes that unsafe.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def _wait_for_port(port: int, proc: subprocess.Popen | None, deadline: float) -> None:
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServerUnavailable(f"exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"nothing listening on 127.0.0.1:{port} after {START_TIMEOUT:.0f} s")
            time.sleep(0.02)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; its workers share its process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


def _log_tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def _process(name: str, argv: list[str], port: int, log: Path) -> Iterator[int]:
    """Run `argv` in its own process group until the block ends."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(_dies_with_us(argv), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            _wait_for_port(port, proc, time.monotonic() + START_TIMEOUT)
        except ServerUnavailable as e:
            raise ServerUnavailable(f"{name} did not start: {e}\n--- {log}:\n{_log_tail(log)}") from None
        yield proc.pid
    finally:
        _stop(proc)


@contextlib.contextmanager
def _workspace(name: str, prefix: str, owner: tuple[int, int] | None) -> Iterator[tuple[Path, Path, Path]]:
    """(state dir, document root, served dir) in a fresh directory removed afterwards.

    Under the system temp dir rather than pytest's tmp_path: server workers
    that switch to another user must be able to reach it.
    """
    base = Path(tempfile.mkdtemp(prefix=f"strongroom-{name}-"))
    try:
        state, docroot = base / "state", base / "www"
        served = docroot / prefix.strip("/") if prefix.strip("/") else docroot
        state.mkdir()
        served.mkdir(parents=True)
        if owner is not None:
            for p in [base, *base.rglob("*")]:
                os.chown(p, *owner)
        yield state, docroot, served
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _normal_prefix(prefix: str) -> str:
    prefix = "/" + prefix.strip("/")
    return prefix if prefix == "/" else prefix + "/"


def _worker_owner() -> tuple[int, int] | None:
    """Apache and nginx started as root serve as www-data; otherwise as us."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(WORKER_USER)
    except KeyError:
        raise ServerUnavailable(f"user {WORKER_USER} is missing (it comes with Debian's base-passwd)") from None
    return entry.pw_uid, entry.pw_gid


@contextlib.contextmanager
def _serve_on_free_port(name: str, argv_for: Callable[[int], list[str]], log: Path) -> Iterator[tuple[int, int]]:
    """Run the server that argv_for(port) starts; try again on another port if it could not bind."""
    for attempt in range(3):
        port = free_port()
        stack = contextlib.ExitStack()
        try:
            pid = stack.enter_context(_process(name, argv_for(port), port, log))
        except ServerUnavailable:
            # Another process may have taken the port between our probe and the bind.
            if attempt == 2:
                raise
            continue
        with stack:
            yield port, pid
        return


# --- the servers ------------------------------------------------------------

@contextlib.contextmanager
def run_wsgidav(password: str | None = None, prefix: str = "/dav/",
                wrap_app: WrapApp | None = None) -> Iterator[DavServer]:
    """wsgidav's filesystem provider under cheroot, in a thread of this process."""
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    password = password or secrets.token_urlsafe(12)
    prefix = _normal_prefix(prefix)
    with _workspace("wsgidav", prefix, None) as (_, _, served):
        config = {
            "host": "127.0.0.1",
            "port": 0,
            "provider_mapping": {prefix.rstrip("/") or "/": str(served)},
            "http_authenticator": {"domain_controller": None, "accept_basic": True,
                                   "accept_digest": False, "default_to_digest": False},
            "simple_dc": {"user_mapping": {"*": {USERNAME: {"password": password}}}},
            "dir_browser": {"enable": False},
            "verbose": 1,
            "logging": {"enable": False},
        }
        app = WsgiDAVApp(config)
        server = wsgi.Server(("127.0.0.1", 0), wrap_app(app) if wrap_app else app,
                             numthreads=16, shutdown_timeout=1)
        server.prepare()
        port = server.bind_addr[1]
        thread = threading.Thread(target=server.serve, name=f"wsgidav:{port}", daemon=True)
        thread.start()
        try:
            _wait_for_port(port, None, time.monotonic() + START_TIMEOUT)
            yield DavServer("wsgidav", f"http://127.0.0.1:{port}{prefix}", USERNAME, password, served, app=app)
        finally:
            server.stop()
            thread.join(STOP_TIMEOUT)


@contextlib.contextmanager
def run_rclone(password: str | None = None, prefix: str = "/dav/") -> Iterator[DavServer]:
    """`rclone serve webdav` over a local directory."""
    rclone = _require("rclone", "rclone")
    password = password or secrets.token_urlsafe(12)
    prefix = _normal_prefix(prefix)
    with _workspace("rclone", prefix, None) as (state, _, served):
        (state / "htpasswd").write_text(htpasswd_line(USERNAME, password))
        (state / "rclone.conf").write_text("")

        def argv_for(port: int) -> list[str]:
            argv = [rclone, "serve", "webdav", str(served), "--addr", f"127.0.0.1:{port}",
                    "--htpasswd", str(state / "htpasswd"), "--config", str(state / "rclone.conf"),
                    # rclone caches directory listings (5 min by default); files
                    # left behind its back show up once the cache expires, see
                    # settle(). With no cache at all a listing is quadratic.
                    "--dir-cache-time", f"{RCLONE_DIR_CACHE_MS}ms", "--poll-interval", "0",
                    "--disable-dir-list", "--log-level", "NOTICE"]
            return argv + (["--baseurl", prefix] if prefix != "/" else [])

        with _serve_on_free_port("rclone", argv_for, state / "rclone.log") as (port, pid):
            yield DavServer("rclone", f"http://127.0.0.1:{port}{prefix}", USERNAME, password, served,
                            pid=pid, settle_seconds=RCLONE_DIR_CACHE_MS / 1000 + 0.05)


APACHE_MODULES = ["mpm_event", "authn_core", "authn_file", "authz_core", "authz_user", "auth_basic",
                  "dav", "dav_fs", "dir"]


@contextlib.contextmanager
def run_apache(password: str | None = None, prefix: str = "/dav/") -> Iterator[DavServer]:
    """Apache httpd with mod_dav_fs, from a configuration of its own."""
    apache = _require("apache2", "apache2")
    modules = Path("/usr/lib/apache2/modules")
    if not (modules / "mod_dav_fs.so").exists():
        raise ServerUnavailable(f"mod_dav_fs is missing from {modules} (Debian package apache2): "
                                "run scripts/test.sh as root, which installs the WebDAV test servers")
    password = password or secrets.token_urlsafe(12)
    prefix = _normal_prefix(prefix)
    owner = _worker_owner()
    with _workspace("apache", prefix, owner) as (state, docroot, served):
        (state / "htpasswd").write_text(htpasswd_line(USERNAME, password))
        user = f"User {WORKER_USER}\nGroup {WORKER_USER}\n" if owner else ""
        load = "".join(f"LoadModule {m}_module {modules}/mod_{m}.so\n" for m in APACHE_MODULES)

        def argv_for(port: int) -> list[str]:
            conf = state / "httpd.conf"
            conf.write_text(f"""\
ServerRoot {state}
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {state}/httpd.pid
DefaultRuntimeDir {state}
ErrorLog {state}/error.log
LogLevel warn
{load}{user}StartServers 1
ServerLimit 2
ThreadsPerChild 16
MaxRequestWorkers 32
KeepAliveTimeout 15
DavLockDB {state}/davlock
DocumentRoot {docroot}
<Directory />
    Require all denied
    AllowOverride None
</Directory>
<Directory {served}>
    Dav On
    AuthType Basic
    AuthName "strongroom tests"
    AuthBasicProvider file
    AuthUserFile {state}/htpasswd
    Require valid-user
    LimitRequestBody 0
    DirectoryIndex disabled
</Directory>
""")
            if owner:
                os.chown(conf, *owner)
            return [apache, "-f", str(conf), "-DFOREGROUND"]

        with _serve_on_free_port("apache", argv_for, state / "error.log") as (port, pid):
            yield DavServer("apache", f"http://127.0.0.1:{port}{prefix}", USERNAME, password, served, owner, pid=pid)


def _nginx_dav_ext_module() -> Path:
    for d in ("/usr/lib/nginx/modules", "/usr/share/nginx/modules"):
        if (Path(d) / "ngx_http_dav_ext_module.so").exists():
            return Path(d) / "ngx_http_dav_ext_module.so"
    raise ServerUnavailable("nginx's dav_ext module is not installed (Debian package "
                            "libnginx-mod-http-dav-ext, part of nginx-extras): run scripts/test.sh as root, "
                            "which installs the WebDAV test servers")


@contextlib.contextmanager
def run_nginx(password: str | None = None, prefix: str = "/dav/") -> Iterator[DavServer]:
    """nginx with its dav module (PUT, DELETE, MKCOL...) and dav_ext (PROPFIND)."""
    nginx = _require("nginx", "nginx-extras")
    module = _nginx_dav_ext_module()
    password = password or secrets.token_urlsafe(12)
    prefix = _normal_prefix(prefix)
    owner = _worker_owner()
    with _workspace("nginx", prefix, owner) as (state, docroot, served):
        (state / "htpasswd").write_text(htpasswd_line(USERNAME, password))
        temp = "".join(f"    {kind}_temp_path {state}/{kind};\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = f"user {WORKER_USER} {WORKER_USER};\n" if owner else ""

        def argv_for(port: int) -> list[str]:
            conf = state / "nginx.conf"
            conf.write_text(f"""\
daemon off;
{user}worker_processes 1;
pid {state}/nginx.pid;
error_log {state}/error.log warn;
load_module {module};
events {{ worker_connections 128; }}
http {{
    access_log off;
{temp}    server {{
        listen 127.0.0.1:{port};
        root {docroot};
        location / {{ return 403; }}
        location {prefix} {{
            auth_basic "strongroom tests";
            auth_basic_user_file {state}/htpasswd;
            dav_methods PUT DELETE MKCOL COPY MOVE;
            dav_ext_methods PROPFIND OPTIONS;
            dav_access user:rw group:rw all:r;
            create_full_put_path off;
            client_max_body_size 0;
        }}
    }}
}}
""")
            # -e: the error log before the configuration is read (the default may not be writable).
            return [nginx, "-p", str(state), "-c", str(conf), "-e", str(state / "error.log")]

        with _serve_on_free_port("nginx", argv_for, state / "error.log") as (port, pid):
            yield DavServer("nginx", f"http://127.0.0.1:{port}{prefix}", USERNAME, password, served, owner, pid=pid)


SERVERS: dict[str, Callable[..., contextlib.AbstractContextManager[DavServer]]] = {
    "wsgidav": run_wsgidav,
    "rclone": run_rclone,
    "apache": run_apache,
    "nginx": run_nginx,
}


if TYPE_CHECKING:
    from faults import FaultMiddleware


@contextlib.contextmanager
def faulty_wsgidav() -> Iterator[tuple[DavServer, FaultMiddleware]]:
    """wsgidav behind a FaultMiddleware (Nutstore's /dav/ root): the server and
    the middleware that misbehaves on demand and logs every request."""
    from faults import FaultMiddleware

    made: list[FaultMiddleware] = []

    def wrap(app):
        made.append(FaultMiddleware(app, root="/dav/"))
        return made[0]

    with run_wsgidav(wrap_app=wrap) as server:
        yield server, made[0]

