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
        if urlsplit(url).password is not None:
            return True
    except ValueError:  # not a URL urlsplit can read: look at the user part by hand
        pass
    if "://" in url and _readable(url):
        return False
    # Without "//" (`user:pass@host/x`, `https:user:pass@host`) urlsplit sees no user part at all.
    userinfo, at, _ = _authority(url)[0].rpartition("@")
    return bool(at) and ":" in userinfo


def _readable(url: str) -> bool:
    try:
        urlsplit(url)
    except ValueError:
        return False
    return True


def redact_password(url: str) -> str:
    """`url` with its password replaced by `***`; other URLs come back unchanged."""
    return _with_user_part(url, lambda user: f"{user}:{MASK}@")


def without_password(url: str) -> str:
    """`url` with its password (and the `:` before it) left out."""
    return _with_user_part(url, lambda user: f"{user}@" if user else "")


def _with_user_part(url: str, user_part) -> str:
    if not has_password(url):
        return url
    authority, start, end = _authority(url)
    userinfo, _, hostport = authority.rpartition("@")
    return url[:start] + user_part(userinfo.split(":", 1)[0]) + hostport + url[end:]


def _authority(url: str) -> tuple[str, int, int]:
    """The authority part of `url` (after `//`, else from the start, up to the next
    `/`, `?` or `#`), with where it starts and ends."""
    scheme_end = url.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    end = min((i for i in (url.find(c, start) for c in "/?#") if i >= 0), default=len(url))
    return url[start:end], start, end
