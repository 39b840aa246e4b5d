"""AWS Signature Version 4 for S3 requests, in the Authorization header.

Written from AWS's description of the algorithm: a canonical form of the
request (method, path, query, the signed headers, the payload's SHA-256),
hashed into a string to sign, signed with a key derived from the secret
by a chain of HMACs over the date, region, service and "aws4_request".
The payload hash is always the body's real SHA-256 (never
UNSIGNED-PAYLOAD), so the server refuses a body changed on the way.

The secret key is only ever an HMAC key here: it never appears in a
header, a URL or an exception.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class S3Credentials:
    """An access key and its secret (and a session token for temporary
    credentials). The secret and the token are left out of repr."""

    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def uri_encode(text: str, keep_slash: bool) -> str:
    """Percent-encode all but the unreserved characters (and '/' in a path)."""
    return quote(text, safe="/~" if keep_slash else "~")


def canonical_query(query: dict[str, str]) -> str:
    pairs = sorted((uri_encode(k, False), uri_encode(v, False)) for k, v in query.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, day: str, region: str, service: str = "s3") -> bytes:
    key = _hmac(("AWS4" + secret).encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def sign(method: str, host: str, path: str, query: dict[str, str], headers: dict[str, str],
         payload_sha256: str, credentials: S3Credentials, region: str,
         now: datetime | None = None) -> dict[str, str]:
    """The headers to add to a request: x-amz-date, x-amz-content-sha256,
    the session token where there is one, and Authorization.

    `path` is the request path as sent, already encoded (uri_encode);
    `headers` are the other headers the request carries, all of them signed.
    """
    now = now or datetime.now(timezone.utc)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    added = {"x-amz-date": stamp, "x-amz-content-sha256": payload_sha256}
    if credentials.session_token:
        added["x-amz-security-token"] = credentials.session_token
    signed = {k.lower(): " ".join(str(v).split()) for k, v in {**headers, **added}.items()}
    signed["host"] = host
    names = sorted(signed)
    canonical = "\n".join([
        method, path, canonical_query(query),
        "".join(f"{n}:{signed[n]}\n" for n in names),
        ";".join(names), payload_sha256,
    ])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(signing_key(credentials.secret_key, day, region), to_sign.encode(),
                         hashlib.sha256).hexdigest()
    added["Authorization"] = (f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
                              f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return added
