"""The console's gate: one ASGI middleware in front of every route of the app
but the daemon's own `/metrics` and `/healthz`.

It runs before routing, so a route added later is protected without doing
anything: only the few routes in `PUBLIC` answer without a caller. A caller
is a signed-in browser (the session cookie) or a script (an API token as
`Authorization: Bearer srt_...`). A browser's state-changing request
(anything but GET, HEAD and OPTIONS) must also carry its session's CSRF
token in `X-CSRF-Token`, and an `Origin`, when sent, must be the console's
own. While the console listens on loopback, a request whose `Host` is not a
loopback name is refused (a DNS-rebinding page would send its own name).
Behind a proxy, `origin` (`serve --console-origin https://HOST`) names the
one public origin: then Host must be its host (or loopback, while the
console listens there) and the session cookie is `Secure` when it is https.

Without a caller: `/api/...` answers 401 (JSON); a page (GET) is sent to
the sign-in page; anything else is 401. Every answer carries a strict
Content-Security-Policy (no inline script, nothing from elsewhere), and
`Cache-Control: no-store` unless it is a static asset. A state-changing
request's body is read here, once its caller is known, at most `MAX_BODY`
bytes (413 beyond), so no route ever holds more of one in memory.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import quote, urlsplit

SESSION_COOKIE = "sr_session"
LOGIN_COOKIE = "sr_login"  # the sign-in form's own CSRF value (a double-submit cookie)
CSRF_HEADER = b"x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DAEMON_PATHS = frozenset({"/metrics", "/healthz"})  # the daemon's own, behind its own token rule
PUBLIC = frozenset({("GET", "/login"), ("HEAD", "/login"), ("POST", "/api/session"),
                    ("GET", "/api/openapi.json"), ("GET", "/favicon.ico")})
STATIC_PREFIX = "/static/"
MAX_BODY = 1 << 20  # bytes of a request's body; Starlette reads any size into memory
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; frame-src 'self'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


@dataclass(frozen=True)
class Caller:
    """Who sent a request: `kind` "session" (with the session's id and CSRF token)
    or "token" (with the token's id)."""

    kind: str
    id: str
    csrf: str | None = None


def is_public(method: str, path: str) -> bool:
    return (method, path) in PUBLIC or (method in ("GET", "HEAD") and path.startswith(STATIC_PREFIX))


def _headers(scope) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers") or ():
        found.setdefault(name.lower(), value)
    return found


def cookies(headers: dict[bytes, bytes]) -> dict[str, str]:
    raw = headers.get(b"cookie", b"").decode("latin-1")
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return {}
    return {k: m.value for k, m in jar.items()}


def _loopback_host(host_header: str) -> bool:
    host = urlsplit("//" + host_header).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same_origin(origin: str, host_header: str) -> bool:
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.lower()


def public_origin(text: str) -> str:
    """`serve --console-origin`: the console's address as a browser sees it behind
    a proxy (`https://backup.example.org[:PORT]`), normalised; UsageError otherwise."""
    from strongroom.errors import UsageError
    parts = urlsplit(text.strip())
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password
            or parts.path not in ("", "/") or parts.query or parts.fragment):
        # Not echoed: a URL with a user part may hold a password.
        raise UsageError("cannot read the console origin: give SCHEME://HOST[:PORT] without a user, path "
                         "or query, e.g. https://backup.example.org")
    try:
        port = parts.port
    except ValueError:
        raise UsageError("cannot read the console origin: its port is no number") from None
    return f"{parts.scheme}://{parts.hostname.lower()}" + (f":{port}" if port else "")


def _replay(messages: list, receive):
    """An ASGI receive that gives `messages` first, then asks `receive`."""
    pending = list(messages)

    async def replayed():
        if pending:
            return pending.pop(0)
        return await receive()
    return replayed


class ConsoleGuard:
    """ASGI middleware: see the module's docstring. `sessions` and `tokens` are
    strongroom.web.auth's Sessions and ConsoleTokens; `stamp()` the password's
    ConsolePassword.stamp."""

    def __init__(self, app, sessions, tokens, stamp, loopback_only: bool = True,
                 origin: str | None = None) -> None:
        self.app = app
        self.origin = origin  # public_origin's: the one Origin (and Host) a proxied browser sends
        self.sessions = sessions
        self.stamp = stamp  # ConsolePassword.stamp: a new password ends every session
        self.tokens = tokens
        self.loopback_only = loopback_only

    def caller(self, headers: dict[bytes, bytes]) -> Caller | None:
        auth = headers.get(b"authorization")
        if auth is not None:
            scheme, _, credentials = auth.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return None
            token_id = self.tokens.check(credentials.strip())
            return None if token_id is None else Caller("token", token_id)
        found = cookies(headers).get(SESSION_COOKIE)
        session = self.sessions.get(found, self.stamp()) if found else None
        return None if session is None else Caller("session", session.id, session.csrf)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in DAEMON_PATHS:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = _headers(scope)
        host = headers.get(b"host", b"").decode("latin-1")
        static = path.startswith(STATIC_PREFIX)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                extra = list(SECURITY_HEADERS)
                present = {name.lower() for name, _ in message.get("headers", ())}
                if not static and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                extra = [(n, v) for n, v in extra if n not in present]
                message = {**message, "headers": list(message.get("headers", ())) + extra}
            await send(message)

        async def refuse(status: int, error: str, extra: list | None = None) -> None:
            body = json.dumps({"error": error}).encode()
            await send_with_headers({"type": "http.response.start", "status": status,
                                     "headers": [(b"content-type", b"application/json"),
                                                 (b"content-length", str(len(body)).encode())] + (extra or [])})
            await send({"type": "http.response.body", "body": body})

        if self.origin is not None and not (host.lower() == urlsplit(self.origin).netloc
                                            or (self.loopback_only and _loopback_host(host))):
            await refuse(421, "this console answers on its public origin only (the Host header names another)")
            return
        if self.loopback_only and self.origin is None and not _loopback_host(host):
            await refuse(421, "this console answers on its loopback address only (the Host header names another)")
            return
        unsafe = method not in SAFE_METHODS
        origin = headers.get(b"origin")
        if unsafe and origin is not None and not self._origin_ok(origin.decode("latin-1"), host):
            await refuse(403, "cross-origin request refused")
            return
        scope.setdefault("state", {})

        async def bounded(receive):
            """`receive` replaying the body read whole (at most MAX_BODY), or None (413 sent)."""
            if not unsafe:
                return receive
            messages = await self._bounded_body(headers, receive)
            if messages is None:
                await refuse(413, f"the request's body is larger than {MAX_BODY // 1024} KiB")
                return None
            return _replay(messages, receive)

        if is_public(method, path):
            receive = await bounded(receive)
            if receive is not None:
                await self.app(scope, receive, send_with_headers)
            return
        caller = self.caller(headers)
        if caller is None:
            if path.startswith("/api/") or method not in ("GET", "HEAD"):
                await refuse(401, "sign in first, or send a console token as Authorization: Bearer TOKEN",
                             [(b"www-authenticate", b'Bearer realm="strongroom console"')])
                return
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            location = "/login?next=" + quote(target, safe="")
            await send_with_headers({"type": "http.response.start", "status": 303,
                                     "headers": [(b"location", location.encode("latin-1")),
                                                 (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if unsafe and caller.kind == "session":
            given = headers.get(CSRF_HEADER, b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), (caller.csrf or "").encode()):
                await refuse(403, "missing or wrong CSRF token: reload the page")
                return
        scope["state"]["caller"] = caller
        receive = await bounded(receive)  # after the caller: nobody unknown makes the daemon hold a body
        if receive is not None:
            await self.app(scope, receive, send_with_headers)

    def _origin_ok(self, origin: str, host: str) -> bool:
        if self.origin is not None and origin.lower() == self.origin:
            return True
        if self.origin is not None and not _loopback_host(host):
            return False  # behind the proxy, only the public origin (with its scheme) is ours
        return _same_origin(origin, host)

    async def _bounded_body(self, headers, receive):
        """The request's body messages, read whole (at most MAX_BODY bytes), to be
        replayed to the app; None when it is longer, or says it will be."""
        length = headers.get(b"content-length", b"")
        if length and (not length.isdigit() or int(length) > MAX_BODY):
            return None
        messages, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                messages.append(message)
                return messages
            size += len(message.get("body", b""))
            if size > MAX_BODY:
                return None
            messages.append(message)
            if not message.get("more_body", False):
                return messages
