"""Choosing snapshots: by id prefix, latest, newest at or before a time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from strongroom.errors import SnapshotNotFound, UsageError
from strongroom.model.snapshot import Snapshot


@dataclass(frozen=True)
class SnapshotFilter:
    host: str | None = None
    tags: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    def matches(self, snap: Snapshot) -> bool:
        if self.host is not None and snap.hostname != self.host:
            return False
        # "a,b" requires both tags; several --tag options are alternatives.
        if self.tags and not any(set(t.split(",")) <= set(snap.tags) for t in self.tags):
            return False
        if self.paths:
            wanted = {os.path.abspath(p) for p in self.paths}
            if not wanted <= set(snap.paths):
                return False
        return True


def filter_snapshots(snapshots: list[Snapshot], flt: SnapshotFilter) -> list[Snapshot]:
    return sorted((s for s in snapshots if flt.matches(s)), key=lambda s: (s.datetime, s.id))


def parse_time(text: str) -> datetime:
    """`YYYY-MM-DD HH:MM[:SS]` or ISO 8601; local time unless a zone is given."""
    text = text.strip()
    try:
        value = datetime.fromisoformat(text.replace(" ", "T", 1) if len(text) > 10 and text[10] == " " else text)
    except ValueError:
        raise UsageError(f"cannot read time {text!r}: use YYYY-MM-DD HH:MM[:SS] or ISO 8601") from None
    if value.tzinfo is None:
        value = value.astimezone()  # interpret as local time
    return value


def snapshot_at(snapshots: list[Snapshot], when: datetime) -> Snapshot:
    """The newest snapshot taken at or before `when`."""
    candidates = [s for s in snapshots if s.datetime <= when]
    if not candidates:
        raise SnapshotNotFound(f"no snapshot at or before {when.isoformat()}")
    return max(candidates, key=lambda s: (s.datetime, s.id))


def find_snapshot(snapshots: list[Snapshot], spec: str, flt: SnapshotFilter = SnapshotFilter(),
                  at: datetime | None = None) -> Snapshot:
    """Resolve `latest` or an id prefix (filters narrow `latest` and `at`)."""
    if spec == "latest" or at is not None and spec in ("", "latest"):
        chosen = filter_snapshots(snapshots, flt)
        if at is not None:
            return snapshot_at(chosen, at)
        if not chosen:
            raise SnapshotNotFound("no snapshot matches")
        return chosen[-1]
    spec = spec.lower()
    matches = [s for s in snapshots if s.id.startswith(spec)]
    if not matches:
        raise SnapshotNotFound(f"no snapshot with id {spec}")
    if len(matches) > 1:
        raise SnapshotNotFound(f"snapshot id prefix {spec} is ambiguous")
    return matches[0]
