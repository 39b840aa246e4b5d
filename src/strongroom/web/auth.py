"""Who may use the console: its password, sign-in sessions, API tokens, and a
limit on sign-in attempts.

- The password is kept as an Argon2id hash in the catalog
  (`console_settings`), never the password itself. Checking one costs about
  a tenth of a second and 64 MiB, which is what makes guessing slow; the
  attempt limit makes it slower still.
- A session is a random 256-bit id in an HttpOnly, SameSite=Strict cookie,
  held in the daemon's memory only (a restart signs everyone out), with its
  own CSRF token that every state-changing request must echo in the
  `X-CSRF-Token` header.
- An API token (`strongroom console token`) is 256 random bits; the catalog
  holds its SHA-256 only, so a copy of the catalog opens nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from strongroom.errors import UsageError

PASSWORD_KEY = "password"
PASSWORD_ENV = "STRONGROOM_CONSOLE_PASSWORD"  # read at the edge only (console set-password, serve)
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # a longer one is refused before it is hashed
TOKEN_PREFIX = "srt_"

# Argon2id for the console password: OWASP's second recommended profile
# (64 MiB is memory-hard enough; 2 passes keep a sign-in near 0.1 s here).
_ARGON_MEMORY_KIB = 64 * 1024
_ARGON_ITERATIONS = 2
_ARGON_LANES = 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _argon2id(password: bytes, salt: bytes, memory: int, iterations: int, lanes: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
    return Argon2id(salt=salt, length=32, iterations=iterations, lanes=lanes,
                    memory_cost=memory).derive(password)


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the console password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UsageError(f"the console password is longer than {MAX_PASSWORD_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    """The stored form: `argon2id$v=19$m=...,t=...,p=...$SALT$HASH` (PHC-like)."""
    salt = secrets.token_bytes(16)
    digest = _argon2id(password.encode("utf-8"), salt, _ARGON_MEMORY_KIB, _ARGON_ITERATIONS, _ARGON_LANES)
    return (f"argon2id$v=19$m={_ARGON_MEMORY_KIB},t={_ARGON_ITERATIONS},p={_ARGON_LANES}"
            f"${_b64(salt)}${_b64(digest)}")


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored` (hash_password's form). A stored value
    that cannot be read matches nothing; its parameters are bounded, so a
    tampered catalog cannot make a check cost gigabytes."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        kind, version, params, salt, digest = stored.split("$")
        values = dict(part.split("=", 1) for part in params.split(","))
        memory, iterations, lanes = int(values["m"]), int(values["t"]), int(values["p"])
        if kind != "argon2id" or version != "v=19":
            return False
        if not (8 <= memory <= 1024 * 1024 and 1 <= iterations <= 16 and 1 <= lanes <= 8):
            return False
        expected = _unb64(digest)
        computed = _argon2id(password.encode("utf-8"), _unb64(salt), memory, iterations, lanes)
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(computed, expected)


class ConsolePassword:
    """The console password in the catalog."""

    def __init__(self, catalog) -> None:
        self.catalog = catalog

    def is_set(self) -> bool:
        return self.catalog.get_console_setting(PASSWORD_KEY) is not None

    def set(self, password: str) -> None:
        self.catalog.put_console_setting(PASSWORD_KEY, hash_password(check_new_password(password)))

    def set_first(self) -> str | None:
        """At a first start without a password: make a random one, store its hash and
        return it (to be shown once). None when a password is set already."""
        password = secrets.token_urlsafe(15)
        if self.catalog.put_console_setting(PASSWORD_KEY, hash_password(password), only_if_absent=True):
            return password
        return None

    def stamp(self) -> str | None:
        """What changes when the password does: sessions made under another end."""
        stored = self.catalog.get_console_setting(PASSWORD_KEY)
        return None if stored is None else hashlib.sha256(stored.encode()).hexdigest()[:16]

    def verify(self, password: str) -> bool:
        stored = self.catalog.get_console_setting(PASSWORD_KEY)
        if stored is None:
            return False
        return verify_password(password, stored)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ConsoleTokens:
    """API tokens: made and shown once by `strongroom console token`, kept as digests."""

    def __init__(self, catalog) -> None:
        self.catalog = catalog

    def issue(self, name: str) -> tuple[str, str]:
        """A new token named `name`: (its id, the token)."""
        name = name.strip()
        if not name or len(name) > 100 or not name.isprintable():
            raise UsageError("a token's name must be 1 to 100 printable characters")
        token_id = secrets.token_hex(4)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.catalog.add_console_token(token_id, token_digest(token), name)
        return token_id, token

    def check(self, token: str) -> str | None:
        """The id of `token`, or None when it is no valid token."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        # The lookup is by a digest of 256 random bits: its timing says nothing useful.
        row = self.catalog.console_token_by_digest(token_digest(token))
        if row is None:
            return None
        self.catalog.touch_console_token(row["id"])
        return row["id"]

    def list(self) -> list[dict]:
        return self.catalog.list_console_tokens()

    def revoke(self, token_id: str) -> None:
        if not self.catalog.delete_console_token(token_id):
            raise UsageError(f"no console token {token_id}")


@dataclass
class Session:
    id: str
    csrf: str
    created: float
    last_seen: float
    stamp: str | None = None  # the password's (ConsolePassword.stamp) when it began


@dataclass
class Sessions:
    """Signed-in browsers, in memory: at most `limit`, each ending after `idle`
    seconds without a request or `lifetime` seconds after sign-in."""

    clock: Callable[[], float] = time.monotonic
    idle: float = 8 * 3600.0
    lifetime: float = 7 * 86400.0
    limit: int = 256
    _by_id: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, stamp: str | None = None) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now, stamp)
        with self._lock:
            self._expire(now)
            if len(self._by_id) >= self.limit:
                oldest = min(self._by_id.values(), key=lambda s: s.last_seen)
                del self._by_id[oldest.id]
            self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None, stamp: str | None = None) -> Session | None:
        """The live session `session_id`; None when there is none, or it ended
        (idle, too old, or begun under another password than `stamp`'s)."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._by_id.get(session_id)
            if session is None:
                return None
            if (now - session.last_seen > self.idle or now - session.created > self.lifetime
                    or session.stamp != stamp):
                del self._by_id[session_id]
                return None
            session.last_seen = now
            return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._by_id.pop(session_id or "", None)

    def end_all(self) -> None:
        """Sign every browser out (the password changed)."""
        with self._lock:
            self._by_id.clear()

    def _expire(self, now: float) -> None:
        for sid in [s.id for s in self._by_id.values()
                    if now - s.last_seen > self.idle or now - s.created > self.lifetime]:
            del self._by_id[sid]


@dataclass
class SignInLimiter:
    """Failed sign-ins: after `per_client` failures from one address within
    `window` seconds, that address waits until the oldest falls out of the
    window; all addresses together get `overall` attempts per window (a
    guesser with many addresses). Bounded memory: at most `clients` addresses
    are remembered."""

    clock: Callable[[], float] = time.monotonic
    window: float = 60.0
    per_client: int = 5
    overall: int = 30
    clients: int = 4096
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _attempts: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, client: str) -> float:
        """Seconds `client` must wait before its next attempt (0: it may try now);
        an attempt allowed is counted."""
        now = self.clock()
        with self._lock:
            self._attempts = [t for t in self._attempts if now - t < self.window]
            recent = [t for t in self._failures.get(client, ()) if now - t < self.window]
            if recent:
                self._failures[client] = recent
            else:
                self._failures.pop(client, None)
            if len(recent) >= self.per_client:
                return max(0.1, self.window - (now - recent[0]))
            if len(self._attempts) >= self.overall:
                return max(0.1, self.window - (now - self._attempts[0]))
            self._attempts.append(now)
            return 0.0

    def failed(self, client: str) -> None:
        now = self.clock()
        with self._lock:
            if client not in self._failures and len(self._failures) >= self.clients:
                # Forget the address whose last failure is oldest.
                oldest = min(self._failures, key=lambda c: self._failures[c][-1])
                del self._failures[oldest]
            self._failures.setdefault(client, []).append(now)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
