"""Storage targets: one small interface and its backends."""

from __future__ import annotations

from strongroom.errors import UsageError
from strongroom.storage.base import ObjectInfo, Storage
from strongroom.storage.local import LocalStorage
from strongroom.storage.metrics import CountingStorage

__all__ = ["ObjectInfo", "Storage", "LocalStorage", "CountingStorage", "open_storage"]


def open_storage(url: str) -> Storage:
    """Open the storage a repository URL names: a path or `local:PATH`."""
    if not url:
        raise UsageError("no repository given: use --repo or STRONGROOM_REPO")
    if url.startswith("local:"):
        return LocalStorage(url[len("local:"):])
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme:
        raise UsageError(f"unsupported repository URL scheme {scheme!r}")
    return LocalStorage(url)
