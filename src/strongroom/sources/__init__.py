"""Sources other than files: one module per kind, registered here by name.

Each member takes a SourceSpec and is a `Source` (base.py): `file_name`,
`check()` and `open()`, a stream to store as one file. The backup service
picks the member by a configuration's source kind.
"""

from __future__ import annotations

from strongroom.errors import UsageError
from strongroom.sources.base import Source, SourceSpec
from strongroom.sources.command import CommandSource
from strongroom.sources.postgres import PostgresSource
from strongroom.sources.sqlite import SqliteSource

KINDS: dict[str, type] = {
    CommandSource.kind: CommandSource,
    SqliteSource.kind: SqliteSource,
    PostgresSource.kind: PostgresSource,
}


def source_for(spec: SourceSpec) -> Source:
    """The member of the family that `spec.kind` names."""
    try:
        member = KINDS[spec.kind]
    except KeyError:
        raise UsageError(f"unknown source kind {spec.kind!r}: use {', '.join(sorted(KINDS))}") from None
    return member(spec)


__all__ = ["KINDS", "Source", "SourceSpec", "source_for"]
