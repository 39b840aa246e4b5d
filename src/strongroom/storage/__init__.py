"""Storage targets: one small interface, its backends and its decorators."""

from __future__ import annotations

import os
import re
from typing import Callable
from urllib.parse import unquote, urlsplit

from strongroom.errors import UsageError
from strongroom.paths import default_cache_root
from strongroom.storage.base import ObjectInfo, Storage
from strongroom.storage.budget import RequestBudget
from strongroom.storage.local import LocalStorage
from strongroom.storage.metrics import CountingStorage

__all__ = ["ObjectInfo", "Storage", "LocalStorage", "CountingStorage", "open_storage", "object_size_cap",
           "request_budget"]

Password = Callable[[], str] | str | None
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(?!\\)")


def open_storage(url: str, *, webdav_password: Password = None, vendor: str | None = None,
                 cache_root: str | None = None, on_event: Callable[[dict], None] | None = None) -> Storage:
    """Open the storage a repository URL names.

    `PATH` or `local:PATH`: a directory. `webdav+https://USER@HOST/PATH` (or
    `webdav+http://`): a WebDAV collection; the account password comes from
    `webdav_password` or STRONGROOM_WEBDAV_PASSWORD, never from the URL.
    """
    if not url:
        raise UsageError("no repository given: use --repo or STRONGROOM_REPO")
    if url.startswith("local:"):
        return LocalStorage(url[len("local:"):])
    if url.startswith(("webdav+http://", "webdav+https://")):
        return _open_webdav(url[len("webdav+"):], webdav_password, vendor, cache_root, on_event)
    scheme = _SCHEME.match(url)
    if scheme:
        # `sftp:host:/path`, `s3:...`, `rest:...` are other tools' forms, not a
        # folder named so: a path that really starts that way is written ./NAME.
        raise UsageError(f"unsupported repository URL scheme {scheme.group(1)!r}: "
                         "use a path, local:PATH, webdav+https://USER@HOST/PATH or webdav+http://...")
    return LocalStorage(url)


def _open_webdav(url: str, password: Password, vendor_name: str | None, cache_root: str | None,
                 on_event) -> Storage:
    from strongroom.storage.retry import RetryingStorage, RetryPolicy
    from strongroom.storage.vendors import parse_budget, vendor_profile
    from strongroom.storage.webdav import WebDAVStorage

    parts = urlsplit(url)
    if parts.password is not None:
        raise UsageError("never put the WebDAV password in the URL: set STRONGROOM_WEBDAV_PASSWORD "
                         "or use --webdav-password-file")
    if not parts.username or not parts.hostname:
        raise UsageError("a WebDAV repository URL needs a user and a host: webdav+https://USER@HOST/PATH")
    vendor = vendor_profile(vendor_name, url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    if vendor.name == "nutstore" and len([p for p in path.split("/") if p]) < 2:
        raise UsageError("Nutstore keeps files only inside sync folders: use a path below one, "
                         "e.g. https://dav.jianguoyun.com/dav/Backups/strongroom")
    if callable(password):
        password = password()
    if password is None:
        password = os.environ.get("STRONGROOM_WEBDAV_PASSWORD")
    if not password:
        raise UsageError("no WebDAV password: set STRONGROOM_WEBDAV_PASSWORD or use --webdav-password-file")
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    base_url = f"{parts.scheme}://{netloc}{path}"
    username = unquote(parts.username)

    budget_spec = os.environ.get("STRONGROOM_WEBDAV_BUDGET")
    budget = None
    if budget_spec and budget_spec.lower() not in ("none", "off", "0"):
        budget = parse_budget(budget_spec)
    elif budget_spec is None:
        budget = vendor.budget
    gate = None
    if budget is not None:
        root = cache_root or default_cache_root()
        state = None if cache_root == "" else RequestBudget.state_file(root, f"{vendor.name} {username}@{netloc}")
        gate = RequestBudget(budget[0], budget[1], state, on_wait=on_event).take
    timeout = float(os.environ.get("STRONGROOM_WEBDAV_TIMEOUT", "60"))
    client = WebDAVStorage(base_url, username, password, vendor, timeout=timeout, gate=gate)
    return RetryingStorage(client, RetryPolicy.from_env(vendor.blocked_wait), on_wait=on_event)


def _layers(storage):
    """The storage and every decorator below it."""
    seen = set()
    while storage is not None and id(storage) not in seen:
        seen.add(id(storage))
        yield storage
        storage = vars(storage).get("inner")


def object_size_cap(storage) -> int | None:
    """The most bytes one object may have on this target (the WebDAV vendor's upload cap)."""
    for layer in _layers(storage):
        vendor = vars(layer).get("vendor")
        if vendor is not None:
            return vendor.max_object_size
    return None


def request_budget(storage) -> RequestBudget | None:
    """The request budget that gates this target's requests, if one is configured."""
    for layer in _layers(storage):
        # The WebDAV client is handed the budget's bound `take` as its gate.
        owner = getattr(vars(layer).get("_gate"), "__self__", None)
        if isinstance(owner, RequestBudget):
            return owner
    return None
