"""A mistake in the set-up fails in seconds with one line; trouble in the
middle of a run is waited out and told once.

Everything runs through the real command line against real sockets on
127.0.0.1: a port nobody listens on, a plain HTTP server spoken to in TLS,
an HTTPS server with a self-signed certificate, wsgidav with a wrong
password, and wsgidav behind a forwarder that goes away in the middle of a
backup. The one time bound is the rule itself: a set-up mistake is reported
in under 10 seconds (the default retry deadline is 900). Failures no socket
here can produce (a resolver that does not answer, a network that is
unreachable) are checked on the classification alone, at the end.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import random
import re
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import CLI
from treeutil import snapshot_tree
from webdav_servers import DavServer

FAST_FAILURE = 10.0  # seconds: the rule under test, not a measurement
# A name under .invalid never resolves (RFC 6761), and the resolver says so at once.
UNKNOWN_HOST = "strongroom-fail-fast.invalid"
ENV = {"STRONGROOM_WEBDAV_PASSWORD": "dav-secret-not-shown", "STRONGROOM_WEBDAV_BUDGET": "off"}


def timed(cli: CLI, *args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = cli.run(*args, env={**ENV, **(env or {})})
    return done, time.monotonic() - started


def one_line_failure(done: subprocess.CompletedProcess, seconds: float, exit_code: int = 1) -> str:
    """The command failed fast, with one line on stderr and nothing on stdout."""
    err = done.stderr.decode()
    lines = err.splitlines()
    assert done.returncode == exit_code, f"exit {done.returncode}:\n{err}"
    assert len(lines) == 1 and lines[0].startswith("strongroom: "), err
    assert seconds < FAST_FAILURE, f"took {seconds:.1f} s:\n{err}"
    assert ENV["STRONGROOM_WEBDAV_PASSWORD"] not in err + done.stdout.decode()
    return lines[0]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    root.mkdir()
    (root / "a.txt").write_bytes(b"alpha\n")
    return root


# ---- set-up mistakes ------------------------------------------------------------------


def test_an_unknown_host_fails_at_once(cli, src):
    # The machine's resolver must say "no such name" (not "no answer", which is
    # waited for): otherwise this test measures the resolver, not strongroom.
    with pytest.raises(socket.gaierror) as caught:
        socket.getaddrinfo(UNKNOWN_HOST, 443)
    assert caught.value.errno != socket.EAI_AGAIN, f"the resolver here does not answer: {caught.value}"
    url = f"webdav+https://tester@{UNKNOWN_HOST}/dav/repo"
    for args in (("init",), ("snapshots",), ("backup", str(src))):
        line = one_line_failure(*timed(cli, *args, "--repo", url))
        assert f"unknown host {UNKNOWN_HOST}" in line, line


def test_a_refused_connection_on_the_first_request_fails_at_once(cli, src):
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # bound, then closed: nothing listens there
    url = f"webdav+http://tester@127.0.0.1:{port}/dav/repo"
    for args in (("init",), ("backup", str(src))):
        line = one_line_failure(*timed(cli, *args, "--repo", url))
        assert f"nothing listens on 127.0.0.1:{port} (Connection refused)" in line, line


class _Quiet(http.server.BaseHTTPRequestHandler):
    """Answers every PROPFIND with 404: a server with no repository on it."""

    def do_PROPFIND(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def plain_http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_https_to_a_plain_http_server_fails_at_once(cli, plain_http_port):
    url = f"webdav+https://tester@127.0.0.1:{plain_http_port}/dav/repo"
    line = one_line_failure(*timed(cli, "snapshots", "--repo", url))
    assert "TLS handshake" in line and "webdav+http://" in line, line


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def self_signed(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate: its port and the certificate."""
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], cert
    finally:
        server.shutdown()
        server.server_close()


def test_a_certificate_that_does_not_verify_fails_at_once_and_says_why(cli, self_signed):
    port, cert = self_signed
    url = f"webdav+https://tester@127.0.0.1:{port}/dav/repo"
    line = one_line_failure(*timed(cli, "snapshots", "--repo", url))
    assert f"the TLS certificate of 127.0.0.1:{port} does not verify" in line, line
    assert "self-signed" in line, line
    # Trusted through SSL_CERT_FILE (as the README says), the handshake passes
    # and the server's answer is heard: there is no repository there.
    trusted = one_line_failure(*timed(cli, "snapshots", "--repo", url, env={"SSL_CERT_FILE": str(cert)}),
                               exit_code=10)
    assert "no repository at" in trusted, trusted


def test_a_wrong_webdav_password_fails_at_once(cli, wsgidav_server: DavServer):
    line = one_line_failure(*timed(cli, "init", "--repo", wsgidav_server.storage_url()))
    assert "refused access (HTTP 401)" in line, line


def test_a_repository_on_a_disk_that_is_not_mounted_fails_at_once(cli, tmp_path, src):
    mount_point = tmp_path / "mnt" / "backup-disk"
    mount_point.mkdir(parents=True)  # the empty folder an unmounted disk leaves
    for args in (("snapshots",), ("backup", str(src))):
        line = one_line_failure(*timed(cli, *args, "--repo", str(mount_point / "repo")), exit_code=10)
        assert "no repository at" in line, line
    assert list(mount_point.iterdir()) == []


# ---- trouble in the middle of a run ------------------------------------------------------


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a host that went away does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class VanishingForwarder:
    """A TCP forwarder on 127.0.0.1 that goes away at the first upload of a pack.

    Once armed, the first `PUT .../data/...` it sees is not forwarded: every
    open connection is reset and the port stops listening (connections are
    refused) for `away` seconds. Then it listens again on the same port and
    resets the first `resets` connections it accepts, a host still coming
    up, before it forwards again. `reset_connections` counts those.
    """

    _PACK_UPLOAD = re.compile(rb"(?:^|\r\n)PUT \S*/data/")

    def __init__(self, upstream_port: int, away: float, resets: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.away, self.resets = away, resets
        self.state = "up"  # up, armed, away, coming-back, back
        self.reset_connections = 0
        self.accepted_after = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        self._listen(listener)

    def arm(self) -> None:
        self.state = "armed"

    def _listen(self, listener: socket.socket) -> None:
        listener.settimeout(0.1)
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()

    def _accept_loop(self, listener: socket.socket) -> None:
        with listener:
            while not self._closed and self.state != "away":
                try:
                    client, _ = listener.accept()
                except socket.timeout:
                    continue
                with self._lock:
                    if self.state == "away" or (self.state == "coming-back" and self._reset_one()):
                        _reset(client)
                        continue
                    if self.state == "back":
                        self.accepted_after += 1
                try:
                    upstream = socket.create_connection(self.upstream)
                except OSError:
                    _reset(client)
                    continue
                with self._lock:
                    self._open.update((client, upstream))
                threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
                threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _reset_one(self) -> bool:
        self.reset_connections += 1
        if self.reset_connections >= self.resets:
            self.state = "back"
        return True

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        tail = b""  # a request line may be cut between two reads: look at it whole
        try:
            while data := source.recv(1 << 16):
                if from_client and self.state == "armed" and self._PACK_UPLOAD.search(tail + data):
                    self._go_away()
                    return
                tail = data[-512:]
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _go_away(self) -> None:
        with self._lock:
            if self.state != "armed":
                return
            self.state = "away"
            for sock in self._open:
                _reset(sock)
            self._open.clear()
        threading.Timer(self.away, self._come_back).start()

    def _come_back(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port at once
        with self._lock:
            self.state = "coming-back"
        self._listen(listener)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for sock in self._open:
                _reset(sock)
            self._open.clear()


@pytest.fixture
def forwarder(wsgidav_server: DavServer) -> Iterator[VanishingForwarder]:
    proxy = VanishingForwarder(wsgidav_server.port, away=2.0, resets=4)
    try:
        yield proxy
    finally:
        proxy.close()


def test_a_host_that_goes_away_mid_run_is_waited_for_with_one_line(cli, tmp_path, wsgidav_server, forwarder):
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(9)
    for i in range(4):
        (src / f"f{i}.bin").write_bytes(rnd.randbytes(700_000))
    url = (f"webdav+http://{wsgidav_server.username}@127.0.0.1:{forwarder.port}"
           f"{urlsplit(wsgidav_server.url).path}")
    env = {"STRONGROOM_WEBDAV_PASSWORD": wsgidav_server.password, "STRONGROOM_WEBDAV_BUDGET": "off",
           "STRONGROOM_WEBDAV_RETRY_DELAY": "0.1", "STRONGROOM_WEBDAV_DEADLINE": "120"}
    done = cli.run("init", "--repo", url, "--pack-size", "1", env=env)
    assert done.returncode == 0, done.stderr.decode()

    forwarder.arm()
    done = cli.run("backup", "--repo", url, str(src), env=env)
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert forwarder.state == "back" and forwarder.reset_connections == 4, (forwarder.state, err)
    # Refused, then reset four times: at least six failed attempts, one line.
    waits = [line for line in err.splitlines() if "waiting for" in line]
    assert len(waits) == 1, err
    assert re.fullmatch(rf"strongroom: waiting for webdav host 127\.0\.0\.1:{forwarder.port}: "
                        rf".*; retrying until \d\d:\d\d:\d\d UTC", waits[0]), waits[0]
    assert "retrying in" not in err, err
    assert len([line for line in err.splitlines() if "answers again" in line]) == 1, err

    target = tmp_path / "restored"
    done = cli.run("restore", "latest", "--repo", url, "--target", str(target), env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert snapshot_tree(target / src.relative_to("/")) == snapshot_tree(src)


# ---- the classification, for failures a test cannot make happen here ------------------


def _connect_error(cause: BaseException):
    import httpx

    try:
        try:
            raise cause
        except BaseException as e:
            raise httpx.ConnectError(str(e)) from e
    except httpx.ConnectError as wrapped:
        return wrapped


@pytest.mark.parametrize(("cause", "setup_mistake", "reason"), [
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), False,
     "no answer from the name server"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), True, "host name does not resolve"),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), False, "connection closed during the TLS"),
    (OSError(101, "Network is unreachable"), False, "cannot connect (Network is unreachable)"),
    (ConnectionRefusedError(111, "Connection refused"), True, "connection refused"),
])
def test_what_a_failure_to_connect_means(cause, setup_mistake, reason):
    from strongroom.storage.connect_failures import classify_connect_failure

    failure = classify_connect_failure(_connect_error(cause), "dav.example.org", "dav.example.org:443")
    assert failure.setup_mistake is setup_mistake
    assert failure.reason.startswith(reason), failure


def test_a_looping_exception_chain_is_read_to_a_bound():
    from strongroom.storage.connect_failures import classify_connect_failure

    a, b = OSError("a"), OSError("b")
    a.__cause__, b.__cause__ = b, a
    failure = classify_connect_failure(a, "h", "h:1")
    assert not failure.setup_mistake
