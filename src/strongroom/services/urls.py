"""URLs that may carry a password in their user part (`https://user:password@host/`).

strongroom never takes a password from a URL: the service refuses such a
URL on the way in, and anything printed or stored from one written by an
older version shows `***` in the password's place.
"""

from __future__ import annotations

from urllib.parse import urlsplit

MASK = "***"


def has_password(url: str) -> bool:
    """Whether `url` has a password (even an empty one) in its user part."""
    try:
        return urlsplit(url).password is not None
    except ValueError:  # not a URL urlsplit can read: look at the user part by hand
        userinfo, at, _ = _netloc(url).rpartition("@")
        return bool(at) and ":" in userinfo


def redact_password(url: str) -> str:
    """`url` with its password replaced by `***`; other URLs come back unchanged."""
    return _with_user_part(url, lambda user: f"{user}:{MASK}@")


def without_password(url: str) -> str:
    """`url` with its password (and the `:` before it) left out."""
    return _with_user_part(url, lambda user: f"{user}@" if user else "")


def _with_user_part(url: str, user_part) -> str:
    if not has_password(url):
        return url
    netloc = _netloc(url)
    userinfo, _, hostport = netloc.rpartition("@")
    scheme, sep, rest = url.partition("://")
    return scheme + sep + user_part(userinfo.split(":", 1)[0]) + hostport + rest[len(netloc):]


def _netloc(url: str) -> str:
    """The authority part of `url` (between `//` and the next `/`, `?` or `#`), or ""."""
    _, sep, rest = url.partition("://")
    if not sep:
        return ""
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return rest[:end]
