"""Reading WebDAV multistatus answers and their pages, trusting none of it.

`parse_multistatus` yields (href, is a collection, size) as the server
wrote them; an Entry is the same with the href decoded by `href_path` (a
path without a trailing slash), which is what listings compare. Pages
are followed only where `same_origin_below` allows, each once, and at most
MAX_PAGES of them in one listing.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Iterator
from urllib.parse import unquote, urljoin, urlsplit

from strongroom.errors import ListingFailed, TransientStorageError

_DAV = "{DAV:}"
# One listing sends at most this many PROPFINDs (folders and their pages);
# a server that keeps linking further pages is refused, not followed forever.
MAX_PAGES = 10_000

Entry = tuple[str, bool, int]


class PageLog:
    """The pages one listing has fetched: a page seen twice is a loop, and
    there are at most `limit` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def take(self, url: str, what: str) -> None:
        if url in self.seen:
            raise ListingFailed(f"{what}: the server's pages lead back to {url}, a page already listed")
        if len(self.seen) >= self.limit:
            raise ListingFailed(f"{what}: the listing runs to more than {self.limit} pages; stopped there")
        self.seen.add(url)


def href_path(base: str, href: str) -> str:
    """An href (path-absolute, relative or a full URL) as a decoded path without a trailing slash."""
    return unquote(urlsplit(urljoin(base, href)).path).rstrip("/")


def entry_for(url: str, entries: list[Entry]) -> Entry | None:
    own = href_path(url, url)
    return next((e for e in entries if e[0] == own), None)


def same_origin_below(base_url: str, url: str) -> bool:
    """Whether `url` has the scheme, host and port of `base_url`, no
    userinfo, no dot segments (encoded or not), and lies below its path."""
    mine, theirs = urlsplit(base_url), urlsplit(url)
    try:
        ports = (mine.port, theirs.port)
    except ValueError:
        return False
    default = {"http": 80, "https": 443}.get(mine.scheme.lower())
    path = unquote(theirs.path)
    return (theirs.scheme.lower() == mine.scheme.lower()
            and (theirs.hostname or "").lower() == (mine.hostname or "").lower()
            and (ports[1] or default) == (ports[0] or default)
            and theirs.username is None and theirs.password is None
            and not any(part in (".", "..") for part in path.split("/"))
            and path.startswith(unquote(mine.path)))


def parse_multistatus(body: bytes, what: str) -> Iterator[tuple[str, bool, int]]:
    """(href, is a collection, size) of every <response> with an href."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise TransientStorageError(f"{what}: unreadable listing ({e})") from None
    for response in root.iter(f"{_DAV}response"):
        href = response.findtext(f"{_DAV}href")
        if not href:
            continue
        is_dir, size = False, 0
        for propstat in response.iter(f"{_DAV}propstat"):
            status = propstat.findtext(f"{_DAV}status") or ""
            if " 200" not in status:
                continue
            prop = propstat.find(f"{_DAV}prop")
            if prop is None:
                continue
            rtype = prop.find(f"{_DAV}resourcetype")
            if rtype is not None and rtype.find(f"{_DAV}collection") is not None:
                is_dir = True
            length = prop.findtext(f"{_DAV}getcontentlength")
            if length and length.strip().isdigit():
                size = int(length.strip())
        yield href.strip(), is_dir, size
