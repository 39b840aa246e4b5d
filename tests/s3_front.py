"""A hostile front for radosgw: passes requests through, or answers some itself.

`S3Front(upstream)` listens on 127.0.0.1 and relays every request, head
and body unchanged (the Host the client signed included, so radosgw checks
the real signature), unless a scripted answer matches it first: a rule
names a method, a substring of the request target (path and query), how
many times it fires, and the answer (status, headers, body), or a function
that makes a body from radosgw's real answer (to corrupt a listing).
`seen` records each request's method and target.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Rule:
    method: str
    contains: str
    times: int | None  # None: every time
    status: int = 200
    headers: dict | None = None
    body: bytes = b""
    rewrite: Callable[[bytes], bytes] | None = None  # from upstream's body to ours


class S3Front:
    def __init__(self, upstream: str) -> None:  # upstream: http://127.0.0.1:PORT
        host, _, port = upstream.split("//", 1)[1].partition(":")
        self.upstream = (host, int(port))
        self.rules: list[Rule] = []
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rule = front._take(self.command, self.path)
                if rule is not None and rule.rewrite is None:
                    self._answer(rule.status, rule.headers or {}, rule.body)
                    return
                status, headers, answer = front._relay(self.command, self.path, dict(self.headers), body)
                if rule is not None:
                    answer = rule.rewrite(answer)
                self._answer(status, headers, answer)

            def _answer(self, status: int, headers: dict, body: bytes) -> None:
                self.send_response(status)
                # A HEAD's Content-Length is the object's, not its (empty) body's.
                length = headers.get("Content-Length") if self.command == "HEAD" else None
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", length or str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, method: str, contains: str, status: int, body: bytes = b"", *, times: int | None = 1,
               headers: dict | None = None) -> None:
        with self._lock:
            self.rules.append(Rule(method, contains, times, status, headers, body))

    def rewrite(self, method: str, contains: str, rewrite: Callable[[bytes], bytes], *,
                times: int | None = 1) -> None:
        with self._lock:
            self.rules.append(Rule(method, contains, times, rewrite=rewrite))

    def count(self, method: str, contains: str = "") -> int:
        with self._lock:
            return sum(1 for m, t in self.seen if m == method and contains in t)

    def _take(self, method: str, target: str) -> Rule | None:
        with self._lock:
            self.seen.append((method, target))
            for rule in self.rules:
                if rule.method == method and rule.contains in target and rule.times != 0:
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def _relay(self, method: str, target: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders(body or None)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "S3Front":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def s3_error(code: str, message: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>").encode()
