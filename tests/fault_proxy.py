"""A TCP proxy that breaks connections where HTTP status codes cannot.

`FaultProxy` sits between a WebDAV client and its server on 127.0.0.1 and
follows each request and response on a connection (Content-Length or chunked
bodies, keep-alive), so a fault can hit one request's body at a chosen byte:
a reset in the middle of an upload or of a download, a body cut short of its
Content-Length, a slow stream, a refused connection. Rules apply to the next
`times` matching requests only, so the client's retry gets through.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import unquote, urlsplit


class _Cut(Exception):
    """A fault ended the connection on purpose."""


@dataclass
class _Rule:
    kind: str                 # reset_upload | truncate | reset_download | slow
    after_bytes: int
    times: int | None         # None: every matching request
    method: str | None
    path: str | None
    delay: float = 0.0
    chunk_size: int = 1 << 16

    def matches(self, method: str, path: str) -> bool:
        return ((self.method is None or self.method == method)
                and (self.path is None or self.path in path)
                and (self.times is None or self.times > 0))


@dataclass
class _Plan:
    upload_cut: int | None = None
    upload_rule: _Rule | None = None
    download_cut: int | None = None
    download_kind: str = ""
    download_rule: _Rule | None = None
    delay: float = 0.0
    chunk_size: int = 1 << 16


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of an HTTP/1.1 server at `upstream`.

    Configure it at runtime from any thread. A cut rule with `times` fires on
    that many requests whose body is long enough to cut; shorter ones pass.
    `connections`, `requests` (per method) and `events` (faults that fired)
    count what went through.
    """

    def __init__(self, upstream: tuple[str, int], *, idle_timeout: float = 30.0) -> None:
        self.upstream = upstream
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._refuse = 0
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()
        self.connections = 0
        self.requests: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self._acceptor.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # ---- configuration ---------------------------------------------------

    def reset_upload(self, after_bytes: int, *, times: int | None = 1, method: str = "PUT",
                     path: str | None = None) -> None:
        """Reset (RST) the connection once `after_bytes` of a request body passed."""
        self._add(_Rule("reset_upload", after_bytes, times, method.upper(), path))

    def truncate_response(self, after_bytes: int, *, times: int | None = 1, method: str = "GET",
                          path: str | None = None) -> None:
        """Send the response head and `after_bytes` of its body, then close
        quietly (FIN), though the Content-Length promised more."""
        self._add(_Rule("truncate", after_bytes, times, method.upper(), path))

    def reset_download(self, after_bytes: int, *, times: int | None = 1, method: str = "GET",
                       path: str | None = None) -> None:
        """Send `after_bytes` of a response body, then reset (RST) the connection."""
        self._add(_Rule("reset_download", after_bytes, times, method.upper(), path))

    def slow(self, delay: float, *, chunk_size: int = 1 << 14, times: int | None = None,
             method: str | None = None, path: str | None = None) -> None:
        """Wait `delay` seconds before relaying each `chunk_size` piece of a body."""
        self._add(_Rule("slow", 0, times, method.upper() if method else None, path, delay, chunk_size))

    def refuse_connections(self, times: int = 1) -> None:
        """Reset the next `times` connections as soon as they are accepted."""
        with self._lock:
            self._refuse += times

    def clear(self) -> None:
        with self._lock:
            self._rules = []
            self._refuse = 0

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def _plan(self, method: str, path: str) -> _Plan:
        plan = _Plan()
        with self._lock:
            self.requests[method] += 1
            for rule in self._rules:
                if not rule.matches(method, path):
                    continue
                if rule.kind == "reset_upload" and plan.upload_cut is None:
                    plan.upload_cut, plan.upload_rule = rule.after_bytes, rule
                elif rule.kind in ("truncate", "reset_download") and plan.download_cut is None:
                    plan.download_cut, plan.download_kind, plan.download_rule = rule.after_bytes, rule.kind, rule
                elif rule.kind == "slow" and not plan.delay:
                    plan.delay, plan.chunk_size = rule.delay, rule.chunk_size
                else:
                    continue
                if rule.times is not None:
                    rule.times -= 1
        return plan

    def _give_back(self, rule: _Rule | None) -> None:
        """A cut that did not happen (the body was shorter) does not count."""
        if rule is not None and rule.times is not None:
            with self._lock:
                rule.times += 1

    # ---- life cycle ------------------------------------------------------

    def close(self) -> None:
        """Stop accepting, cut every open connection, and wait for the threads."""
        self._closed.set()
        self._acceptor.join(timeout=2)
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            _shut(sock)
        for thread in threads:
            thread.join(timeout=2)

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                refuse = self._refuse > 0
                if refuse:
                    self._refuse -= 1
                    self.events["refused"] += 1
                self._threads = [t for t in self._threads if t.is_alive()]
            if refuse:
                _reset(client)
                continue
            thread = threading.Thread(target=self._serve, args=(client,), name="fault-proxy-conn",
                                      daemon=True)
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            client.settimeout(self.idle_timeout)
            upstream = socket.create_connection(self.upstream, timeout=self.idle_timeout)
            # Heads and bodies go out in separate sends; without NODELAY each
            # exchange would stall on delayed ACKs.
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets.update((client, upstream))
            self._relay_exchanges(_Reader(client), _Reader(upstream), client, upstream)
        except _Cut:
            pass
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with self._lock:
                        self._sockets.discard(sock)
                    try:
                        sock.close()
                    except OSError:
                        pass

    def _relay_exchanges(self, creader: "_Reader", ureader: "_Reader", client: socket.socket,
                         upstream: socket.socket) -> None:
        while not self._closed.is_set():
            head = creader.read_head()
            if head is None:
                return
            method, path, headers = _parse_head(head)
            plan = self._plan(method, path)
            upstream.sendall(head)
            framing = _request_framing(headers)
            try:
                _relay_body(creader, upstream, framing, plan.upload_cut, plan.delay, plan.chunk_size)
                self._give_back(plan.upload_rule)
            except _Cut:
                with self._lock:
                    self.events["reset_upload"] += 1
                _reset(client)
                _reset(upstream)
                raise
            while True:
                rhead = ureader.read_head()
                if rhead is None:
                    self._give_back(plan.download_rule)
                    return
                status, rheaders = _parse_status(rhead)
                client.sendall(rhead)
                if status >= 200 or status == 101:
                    break
            rframing = _response_framing(method, status, rheaders)
            try:
                _relay_body(ureader, client, rframing, plan.download_cut, plan.delay, plan.chunk_size)
                self._give_back(plan.download_rule)
            except _Cut:
                with self._lock:
                    self.events[plan.download_kind] += 1
                if plan.download_kind == "truncate":
                    _close_quietly(client)
                else:
                    _reset(client)
                _reset(upstream)
                raise
            if rframing[0] == "close" or _wants_close(headers) or _wants_close(rheaders):
                return


class _Reader:
    """Buffered reads from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(1 << 16)
        if not data:
            return False
        self.buf += data
        return True

    def read_head(self) -> bytes | None:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 1 << 16:
                raise OSError("header too long")
            try:
                if not self._fill():
                    return None
            except (ConnectionError, socket.timeout):
                return None
        end = self.buf.index(b"\r\n\r\n") + 4
        head, self.buf = self.buf[:end], self.buf[end:]
        return head

    def read_some(self, limit: int) -> bytes:
        if not self.buf and not self._fill():
            return b""
        piece, self.buf = self.buf[:limit], self.buf[limit:]
        return piece

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise OSError("connection closed inside a chunked body")
        end = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:end], self.buf[end:]
        return line

    def read_exact(self, n: int) -> Iterator[bytes]:
        while n > 0:
            piece = self.read_some(min(n, 1 << 16))
            if not piece:
                raise OSError("connection closed inside a body")
            n -= len(piece)
            yield piece


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target = lines[0].split(" ")[:2]
    return method.upper(), unquote(urlsplit(target).path), _headers(lines[1:])


def _parse_status(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split(" ")[1]), _headers(lines[1:])


def _headers(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            out[name.strip().lower()] = value.strip()
    return out


def _request_framing(headers: dict[str, str]) -> tuple[str, int]:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return ("chunked", 0)
    return ("length", int(headers.get("content-length", "0") or 0))


def _response_framing(method: str, status: int, headers: dict[str, str]) -> tuple[str, int]:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return ("length", 0)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return ("chunked", 0)
    if "content-length" in headers:
        return ("length", int(headers["content-length"]))
    return ("close", 0)


def _wants_close(headers: dict[str, str]) -> bool:
    return headers.get("connection", "").lower() == "close"


def _body_pieces(reader: _Reader, framing: tuple[str, int], chunk_size: int) -> Iterator[bytes]:
    """The raw bytes of one body, framing included, in pieces of at most chunk_size."""
    kind, length = framing
    if kind == "length":
        yield from _split(reader.read_exact(length), chunk_size)
    elif kind == "close":
        while True:
            piece = reader.read_some(chunk_size)
            if not piece:
                return
            yield piece
    else:
        while True:
            line = reader.read_line()
            yield line
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to the empty line
                    trailer = reader.read_line()
                    yield trailer
                    if trailer == b"\r\n":
                        return
            yield from _split(reader.read_exact(size + 2), chunk_size)


def _split(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    for piece in pieces:
        for i in range(0, len(piece), size):
            yield piece[i:i + size]


def _relay_body(reader: _Reader, dst: socket.socket, framing: tuple[str, int], cut_at: int | None,
                delay: float, chunk_size: int) -> None:
    """Relay one body; raise _Cut once `cut_at` bytes have gone through."""
    sent = 0
    if cut_at is not None and cut_at <= 0 and framing != ("length", 0):
        raise _Cut()
    for piece in _body_pieces(reader, framing, chunk_size):
        if delay:
            time.sleep(delay)
        if cut_at is not None and sent + len(piece) >= cut_at:
            dst.sendall(piece[:cut_at - sent])
            raise _Cut()
        dst.sendall(piece)
        sent += len(piece)


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0, so the peer sees a reset, not an orderly end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
