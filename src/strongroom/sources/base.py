"""What every database source is: something that can say whether it can run
here, and give one stream of bytes to store as one file."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class SourceSpec:
    """What a configuration says of its source.

    `target` is the command (kind "command"), the database file ("sqlite")
    or the database name or connection string without its password
    ("postgres"). `file_name` is the stored file's name where the kind does
    not decide it; `password` the database password, kept out of any repr."""

    kind: str
    target: str
    file_name: str | None = None
    password: str | None = field(default=None, repr=False)


class Source(Protocol):
    """One member of the family (sources/command.py, sqlite.py, postgres.py)."""

    @property
    def file_name(self) -> str:
        """The name the stream is stored under in the snapshot."""

    def check(self) -> None:
        """Refuse (UsageError, one line) a source that cannot run on this machine."""

    def open(self) -> AbstractContextManager[BinaryIO]:
        """The stream to store. Its read() gives b"" only once all of it was
        read and the source has finished well; a source that failed raises
        StrongroomError from read() instead, so no snapshot is made of it.
        Leaving the block cleans up whatever happens (a child stopped, a
        temporary copy removed)."""
