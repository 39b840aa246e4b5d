"""Storage targets: one small interface, its backends and its decorators."""

from __future__ import annotations

import re
from typing import Callable
from urllib.parse import unquote, urlsplit

from strongroom.errors import UsageError
from strongroom.paths import default_cache_root
from strongroom.settings import DEFAULT, LOCAL_CONNECTIONS, VENDOR_DEFAULT, Settings
from strongroom.storage.base import ObjectInfo, Storage, StorageInfo
from strongroom.storage.budget import RequestBudget
from strongroom.storage.local import LocalStorage
from strongroom.storage.metrics import CountingStorage

__all__ = ["ObjectInfo", "Storage", "StorageInfo", "Settings", "LocalStorage", "CountingStorage", "open_storage", "object_size_cap",
           "request_budget", "shared_request_budget", "connections_of"]

Password = Callable[[], str] | str | None
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(?!\\)")


def open_storage(url: str, *, webdav_password: Password = None, vendor: str | None = None,
                 cache_root: str | None = None, on_event: Callable[[dict], None] | None = None,
                 settings: Settings = DEFAULT, sftp_access=None, s3_access=None) -> Storage:
    """Open the storage a repository URL names.

    `PATH` or `local:PATH`: a directory. `webdav+https://USER@HOST/PATH` (or
    `webdav+http://`): a WebDAV collection; the account password comes from
    `webdav_password` (a string or a function that returns one), never from
    the URL; `?connections=N` after it sets how many requests go at once.
    Timeouts, retries, the request budget and the connections (over the
    URL's) come from `settings`. `sftp://USER@HOST:PORT//PATH` or
    `sftp:USER@HOST:/PATH`: a folder on an SSH server (storage/sftp_access.py
    says which forms), logged in as `sftp_access` (an SFTPAccess) says.
    URL's) come from `settings`. `s3:https://ENDPOINT/BUCKET/PREFIX` or
    `s3://BUCKET/PREFIX`: S3, with credentials from `s3_access` (an S3Access,
    or a function that returns one), never from the URL (docs/s3.md).
    """
    if not url:
        raise UsageError("no repository given: use --repo or STRONGROOM_REPO")
    if url.startswith("local:"):
        return _local(url[len("local:"):], settings)
    if url.startswith(("webdav+http://", "webdav+https://")):
        return _open_webdav(url[len("webdav+"):], webdav_password, vendor,
                            settings.cache_root if cache_root is None else cache_root, on_event, settings)
    if url.startswith("sftp:"):
        return _open_sftp(url, sftp_access, on_event, settings)
    if url.startswith(("s3:http://", "s3:https://", "s3://")):
        return _open_s3(url, s3_access, on_event, settings)
    scheme = _SCHEME.match(url)
    if scheme:
        # `sftp:host:/path`, `s3:...`, `rest:...` are other tools' forms, not a
        # folder named so: a path that really starts that way is written ./NAME.
        raise UsageError(f"unsupported repository URL scheme {scheme.group(1)!r}: "
                         "use a path, local:PATH, webdav+https://USER@HOST/PATH, webdav+http://..., "
                         "sftp://USER@HOST:PORT//PATH, s3:https://ENDPOINT/BUCKET/PREFIX or s3://BUCKET/PREFIX")
    return _local(url, settings)


def _local(path: str, settings: Settings) -> LocalStorage:
    storage = LocalStorage(path)
    storage.info = StorageInfo(connections=settings.connections or LOCAL_CONNECTIONS)
    return storage


def _url_connections(query: str) -> int | None:
    """The `connections=N` of a WebDAV URL's query, the one parameter it may carry."""
    from urllib.parse import parse_qsl

    from strongroom.storage.vendors import parse_connections

    if not query:
        return None
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        pairs = [("", query)]
    found = None
    for key, value in pairs:
        if key != "connections":
            raise UsageError(f"unknown parameter {key!r} in the repository URL: the one it takes is "
                             "?connections=N")
        found = parse_connections(value, "the URL's connections")
    return found


def _open_webdav(url: str, password: Password, vendor_name: str | None, cache_root: str | None,
                 on_event, settings: Settings) -> Storage:
    from strongroom.storage.retry import RetryingStorage, RetryPolicy
    from strongroom.storage.vendors import vendor_profile
    from strongroom.storage.webdav import WebDAVStorage

    parts = urlsplit(url)
    if parts.password is not None:
        raise UsageError("never put the WebDAV password in the URL: set STRONGROOM_WEBDAV_PASSWORD "
                         "or use --webdav-password-file")
    if not parts.username or not parts.hostname:
        raise UsageError("a WebDAV repository URL needs a user and a host: webdav+https://USER@HOST/PATH")
    vendor = vendor_profile(vendor_name, url)
    connections = settings.connections or _url_connections(parts.query) or vendor.connections
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    if vendor.name == "nutstore" and len([p for p in path.split("/") if p]) < 2:
        raise UsageError("Nutstore keeps files only inside sync folders: use a path below one, "
                         "e.g. https://dav.jianguoyun.com/dav/Backups/strongroom")
    if callable(password):
        password = password()
    if not password:
        raise UsageError("no WebDAV password: set STRONGROOM_WEBDAV_PASSWORD or use --webdav-password-file")
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    base_url = f"{parts.scheme}://{netloc}{path}"
    username = unquote(parts.username)

    budget = _budget(vendor, username, netloc, cache_root, settings, on_event)
    client = WebDAVStorage(base_url, username, password, vendor, timeout=settings.webdav_timeout,
                           gate=budget.take if budget else None, connections=connections)
    client.info = StorageInfo(vendor=vendor, max_object_size=vendor.max_object_size, budget=budget,
                              connections=connections)
    policy = RetryPolicy(deadline=settings.webdav_deadline, base_delay=settings.webdav_retry_delay,
                         blocked_wait=vendor.blocked_wait if settings.webdav_blocked_wait is None
                         else settings.webdav_blocked_wait)
    return RetryingStorage(client, policy, on_wait=on_event)


def _open_sftp(url: str, access, on_event, settings: Settings) -> Storage:
    """An SFTP target behind the retry decorator; the timeouts and deadline are
    those of every remote target (the STRONGROOM_WEBDAV_* settings)."""
    from strongroom.storage.retry import RetryingStorage, RetryPolicy
    from strongroom.storage.sftp_access import parse_sftp_url

    location = parse_sftp_url(url)
    if access is None:
        raise UsageError("no SSH login for the SFTP repository: give --sftp-key-file, or run an SSH agent")
    from strongroom.storage.sftp import DEFAULT_CONNECTIONS, SFTPStorage

    connections = settings.connections or _url_connections(location.query) or DEFAULT_CONNECTIONS
    client = SFTPStorage(location, access, connections=connections, timeout=settings.webdav_timeout)
    policy = RetryPolicy(deadline=settings.webdav_deadline, base_delay=settings.webdav_retry_delay)
    return RetryingStorage(client, policy, on_wait=on_event)


def _open_s3(url: str, access, on_event, settings: Settings) -> Storage:
    from strongroom.storage.retry import RetryingStorage, RetryPolicy
    from strongroom.storage.s3 import DEFAULT_PART_SIZE, S3Client, S3Endpoint, S3Storage
    from strongroom.storage.s3_config import parse_s3_url
    from strongroom.storage.s3_providers import provider_profile, region_of

    if callable(access):
        access = access()
    where = parse_s3_url(url, access)
    if access is None or access.credentials is None:
        raise UsageError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
                         "(~/.aws/credentials)")
    provider = provider_profile(where.provider, where.endpoint)
    region = where.region or access.region or region_of(where.endpoint) or provider.region
    path_style = provider.path_style if where.path_style is None else where.path_style
    connections = settings.connections or where.connections or provider.connections
    client = S3Client(S3Endpoint.parse(where.endpoint, region, path_style), access.credentials,
                      timeout=settings.webdav_timeout, connections=connections)
    storage = S3Storage(client, where.bucket, where.prefix, provider, where.part_size or DEFAULT_PART_SIZE,
                        connections)
    policy = RetryPolicy(deadline=settings.webdav_deadline, base_delay=settings.webdav_retry_delay,
                         blocked_wait=provider.blocked_wait if settings.webdav_blocked_wait is None
                         else settings.webdav_blocked_wait)
    retrying = RetryingStorage(storage, policy, on_wait=on_event)
    _s3_object_lock(retrying, storage, where.object_lock)
    return retrying


def _s3_object_lock(retrying, storage, setting: str | None) -> None:
    """?object-lock=MODE:PERIOD: new packs, index objects and snapshots get a
    retention date; checked at open against the bucket (docs/s3.md)."""
    if setting is None:
        return
    from strongroom.storage.s3_lock import parse_lock_setting

    storage.object_lock = parse_lock_setting(setting)
    retrying._call(storage.check_object_lock)


def _budget(vendor, username: str, netloc: str, cache_root: str | None, settings: Settings,
            on_event: Callable[[dict], None] | None) -> RequestBudget | None:
    limit = vendor.budget if settings.webdav_budget == VENDOR_DEFAULT else settings.webdav_budget
    if limit is None:
        return None
    state = None
    if cache_root != "":
        state = RequestBudget.state_file(cache_root or default_cache_root(), f"{vendor.name} {username}@{netloc}")
    return RequestBudget(limit[0], limit[1], state, on_wait=on_event)


def shared_request_budget(url: str, username: str, vendor_name: str | None, cache_root: str | None,
                          settings: Settings = DEFAULT) -> RequestBudget | None:
    """The request budget that the runs against the WebDAV account at `url`
    (https://HOST/PATH) as `username` share, read from its state file without
    a request; `cache_root` as `open_storage` takes it. None when the account
    has no budget, or keeps none in a file (no cache: each run counts alone)."""
    from strongroom.storage.vendors import vendor_profile

    parts = urlsplit(url)
    if not parts.hostname:
        raise UsageError(f"WebDAV URL {url!r} names no host")
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    resolved = settings.cache_root if cache_root is None else cache_root
    budget = _budget(vendor_profile(vendor_name, url), username, netloc, resolved, settings, None)
    return budget if budget is not None and budget.state_path is not None else None


def object_size_cap(storage: Storage) -> int | None:
    """The most bytes one object may have on this target (the WebDAV vendor's upload cap)."""
    return storage.info.max_object_size


def connections_of(storage: Storage, settings: Settings = DEFAULT) -> int:
    """Requests to send this target at once: the run's setting, else the target's own."""
    return settings.connections or storage.info.connections or LOCAL_CONNECTIONS


def request_budget(storage: Storage) -> RequestBudget | None:
    """The request budget that gates this target's requests, if one is configured."""
    return storage.info.budget
