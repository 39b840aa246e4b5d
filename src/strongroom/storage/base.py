"""The storage interface: a handful of verbs over named, immutable objects.

Names are relative, slash-separated and made of a small alphabet; every
backend validates them on the way in and out, so nothing a repository says
can name an object outside it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, TypeVar

from strongroom.errors import IntegrityError, StorageError

T = TypeVar("T")
# Runs one request of a longer operation, and runs it again as often as the
# caller's policy allows when it fails in a way that may pass.
Attempt = Callable[[Callable[[], T]], T]

# No component starts with a dot: that excludes "." and "..", the ".tmp-"
# files of interrupted local writes, and names some WebDAV servers hide
# from listings (nginx dav_ext).
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*")


def check_name(name: str) -> str:
    """Refuse any name outside the small alphabet objects are named in."""
    if not _NAME.fullmatch(name):
        raise StorageError(f"invalid object name {name!r}")
    return name


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int


@dataclass(frozen=True)
class Temporary:
    """A file an interrupted write left beside the objects, and how old it is."""

    name: str
    size: int
    age: float  # seconds since it was last written


@dataclass(frozen=True)
class Retention:
    """An object's lock as the target reports it (S3 Object Lock)."""

    name: str
    size: int
    mode: str | None  # GOVERNANCE, COMPLIANCE, or None (no retention date)
    until: Any = None  # the retain-until date, an aware datetime
    legal_hold: bool = False

    def holds(self, now) -> bool:
        """Whether a delete at `now` (an aware datetime) would be refused."""
        return self.legal_hold or (self.until is not None and self.until > now)


@dataclass(frozen=True)
class StorageInfo:
    """What a target says of itself, passed on unchanged by every decorator."""

    vendor: Any = None  # the WebDAV VendorProfile (pack size, fan-out, cap), None for a directory
    max_object_size: int | None = None  # the server's upload cap, where it has one
    budget: Any = None  # the RequestBudget that gates its requests, if any
    connections: int | None = None  # requests it takes at once; None: the caller's default


class Spool(ABC):
    """An object being written piece by piece on the target (`Storage.spool`).
    Until it is committed it is a temporary file, which prune removes if its
    writer died; readers never see it."""

    size = 0  # bytes written so far

    @abstractmethod
    def write(self, data: bytes | memoryview) -> None:
        """Append `data`; StorageError when the target cannot take it."""

    @abstractmethod
    def commit(self, name: str) -> None:
        """Make what was written the object `name`, durably; the spool is
        used up, whether this succeeds or not."""

    @abstractmethod
    def discard(self) -> None:
        """Remove what was written; nothing is left. Safe to repeat."""


class Storage(ABC):
    """A place that holds named objects. Implementations are thread-safe."""

    url: str = ""
    info: StorageInfo = StorageInfo()

    @abstractmethod
    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return the object's bytes, or `length` bytes from `offset`.

        Raises ObjectNotFound when the object does not exist.
        """

    def read_spans(self, name: str, spans: Sequence[tuple[int, int]]) -> Iterator[bytes | memoryview]:
        """The bytes of each (offset, length) span of one object, in turn.

        Spans are in ascending order and do not overlap; one that runs past
        the object's end comes back short. A piece is good until the next
        one is asked for: a caller that keeps one copies it (the local
        backend reads every span into one buffer). A backend that pays per
        request (WebDAV) overrides this to serve them all from one ranged
        read that streams, so only the span being handed out is held. This
        default reads each span on its own.
        """
        for offset, length in spans:
            yield self.read(name, offset, length)

    @abstractmethod
    def write(self, name: str, data: bytes | memoryview) -> None:
        """Store an object whole: readers see all of it or nothing."""

    def spool(self, directory: str) -> "Spool | None":
        """A file on the target, in `directory`, that an object too large to
        be worth holding in memory is written into piece by piece and then put
        under its name (`Spool.commit`, as whole as `write`); None where the
        target has no such place (the object is written whole, with `write`)."""
        return None

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove an object; removing a missing one is not an error."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object below the folder `prefix`, at any depth, each once.

        A listing never turns a failure into "empty": it raises FolderNotFound
        when the folder `prefix` does not exist (or is an object), or when a
        sub-folder it found is gone when it looks inside; ListingFailed when
        the answer is not a listing of the folder asked for. An existing,
        empty folder lists nothing.
        """

    def list_by_request(self, prefix: str, attempt: Attempt) -> Iterator[ObjectInfo]:
        """`list`, with each request it sends run through `attempt` (a retry).

        A backend that sends several requests for one listing (WebDAV: a
        PROPFIND per folder and per page) overrides this, so that a failed
        request is repeated alone instead of the whole walk. This default
        takes the listing whole in one attempt. Either way no entry is
        yielded twice.
        """
        yield from attempt(lambda: list(self.list(prefix)))

    @abstractmethod
    def stat(self, name: str) -> ObjectInfo:
        """Size of one object; raises ObjectNotFound."""

    def exists(self) -> bool:
        """Whether the target location itself exists."""
        return True

    def entries(self) -> list[str]:
        """The names directly inside the target folder, of every kind: objects,
        folders, hidden files and names that are not ours. What `init` looks
        at before it makes a repository there. Raises as `list` does when the
        folder cannot be listed; a target that cannot tell raises too."""
        raise StorageError(f"{self.url or 'this target'} cannot tell what its folder holds")

    def create(self) -> None:
        """Prepare an empty target (create the directory)."""

    def delete_now(self, name: str) -> None:
        """Delete with one attempt and no waiting: for cleaning up after a failure."""
        self.delete(name)

    def make_dirs(self, directories: list[str]) -> None:
        """Create these folders (and their parents); existing ones are fine.

        A new repository creates its folders up front, so that listing one
        that is still empty gives [] rather than FolderNotFound. A target
        without real folders (none so far) would keep this no-op and list a
        missing prefix as empty.
        """

    def may_hold_locks(self) -> bool:
        """Whether objects here may carry a lock that refuses their delete (an
        S3 bucket with Object Lock enabled). Targets without locks: False."""
        return False

    def object_lock_setting(self) -> str | None:
        """The lock new objects get here (MODE:PERIOD), as `init` records it in
        the repository's config; None where none is asked for."""
        return None

    def use_object_lock(self, setting: str) -> None:
        """Lock new objects as the repository's config says. A target without
        locks ignores it (a copy of the repository on a disk)."""

    def retention(self, name: str) -> "Retention | None":
        """The lock on one object, or None where the target has no locks.
        Raises ObjectNotFound; an answer it cannot read raises, never None."""
        return None

    def quota(self) -> tuple[int | None, int | None]:
        """(used, available) bytes on the target as it reports them; None where unknown."""
        return None, None

    def temporaries(self) -> list[Temporary]:
        """Files interrupted writes left (a local directory's write-then-rename
        files). Targets that write in place have none: their cut-off uploads
        sit under the final name, and the format's envelope tells them apart."""
        return []

    def remove_temporary(self, name: str) -> None:
        raise StorageError(f"{self.url} keeps no temporary files")

    def close(self) -> None:
        pass

    def __enter__(self) -> "Storage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_bounded(storage: "Storage", name: str, cap: int, what: str) -> bytes:
    """A small object, read whole but never past `cap` bytes: a key file, a lock,
    the config or a snapshot from a hostile target could otherwise be gigabytes,
    and a listing's size is the target's word too. Over the bound: IntegrityError."""
    data = storage.read(name, 0, cap + 1)
    if len(data) > cap:
        raise IntegrityError(f"{name}: over {cap} bytes, more than any {what} holds")
    return data
