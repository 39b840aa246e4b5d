"""What we know about WebDAV services: request budgets, size caps, layout.

The numbers for Nutstore (Jianguoyun) are its published limits: 600 requests
per 30 minutes on a free account (1500 paid), 500 MB per upload, listings
paged at 750 entries, 503 "BlockedTemporarily" when throttled.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from strongroom.errors import UsageError

MiB = 1024 * 1024


@dataclass(frozen=True)
class VendorProfile:
    name: str
    budget: tuple[int, float] | None  # (requests, per seconds); None = unlimited
    max_object_size: int | None  # bytes one PUT may carry
    pack_size: int  # default pack size for new repositories on this service
    data_fanout: int  # hex digits of pack directory fan-out for new repositories
    blocked_wait: float  # seconds to wait after a throttling answer
    # Requests sent at once (uploads of packs, downloads of pack spans):
    # over a link of some latency, one connection waits more than it sends.
    # Why each number: docs/webdav.md, "Connections".
    connections: int = 4


# Most connections a target may be given: each upload holds a pack in memory.
MAX_CONNECTIONS = 32
GENERIC = VendorProfile("generic", None, None, 32 * MiB, 1, 45.0, connections=4)
VENDORS = {
    # 10% below the published free-account limit, so other clients of the
    # same account (the sync app) keep some room. Two connections: the
    # budget, not the latency, bounds a long run, and a burst of parallel
    # requests is what its throttling answers.
    "nutstore": VendorProfile("nutstore", (540, 1800.0), 500 * 1000 * 1000, 64 * MiB, 1, 45.0, connections=2),
    # A PHP server: each request holds one of its few workers (php-fpm's
    # pm.max_children is 5 by default) for the whole upload.
    "nextcloud": VendorProfile("nextcloud", None, None, 32 * MiB, 1, 30.0, connections=4),
    "owncloud": VendorProfile("owncloud", None, None, 32 * MiB, 1, 30.0, connections=4),
    "generic": GENERIC,
}


def guess_vendor(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL: the URL's own check says so
        return "generic"
    host = (parts.hostname or "").lower()
    if host.endswith("jianguoyun.com") or host.endswith("nutstore.net"):
        return "nutstore"
    if "nextcloud" in host or "/remote.php/dav" in parts.path:
        return "nextcloud"
    if "owncloud" in host or "/remote.php/webdav" in parts.path:
        return "owncloud"
    return "generic"


def vendor_profile(name: str | None, url: str) -> VendorProfile:
    key = (name or guess_vendor(url)).lower()
    if key not in VENDORS:
        raise UsageError(f"unknown WebDAV vendor {name!r}: use {', '.join(sorted(VENDORS))}")
    return VENDORS[key]


def parse_connections(text: str, where: str = "connections") -> int:
    """`4` -> 4 requests at once, from 1 to MAX_CONNECTIONS."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise UsageError(f"{where} must be a whole number of connections, not {text!r}") from None
    return check_connections(value, where)


def check_connections(value: int, where: str = "connections") -> int:
    if not 1 <= value <= MAX_CONNECTIONS:
        raise UsageError(f"{where} must be from 1 to {MAX_CONNECTIONS}, not {value}")
    return value


def parse_budget(text: str) -> tuple[int, float]:
    """`600/1800` -> 600 requests per 1800 seconds."""
    try:
        count, _, seconds = text.partition("/")
        return int(count), float(seconds or 1800)
    except ValueError:
        raise UsageError(f"cannot read request budget {text!r}: use REQUESTS/SECONDS, e.g. 1350/1800") from None
