"""The directories above the snapshots: by time, by id, by host, by tag.

Pure functions over a list of snapshots; no I/O. Every name shown comes
from the repository (host names, tags), so a name that cannot be one path
component is left out, and the caller warns once about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from strongroom.model.snapshot import Snapshot

LATEST = "latest"
# Linux's NAME_MAX. FUSE would pass names up to 1024 bytes, but no other file
# system or tool takes them; a name with '/' makes the kernel fail the whole listing.
NAME_MAX = 255


def component_problem(name: bytes) -> str | None:
    """Why `name` cannot be one entry of a directory, or None when it can."""
    if not name:
        return "an empty name"
    if name in (b".", b".."):
        return f"the name {name.decode()!r}"
    if b"/" in name:
        return "a name with '/'"
    if b"\0" in name:
        return "a name with NUL"
    if len(name) > NAME_MAX:
        return f"a name of {len(name)} bytes (at most {NAME_MAX})"
    return None


def time_name(snap: Snapshot) -> str:
    """The snapshot's time in local time, to the second: 2026-12-01T12:30:05."""
    try:
        when = snap.datetime.astimezone()
    except (OverflowError, ValueError, OSError):  # a time near year 1 or 9999: in its own zone
        when = snap.datetime
    # Not strftime: %Y gives year 1 as "1", and the names must sort as times do.
    return (f"{when.year:04d}-{when.month:02d}-{when.day:02d}"
            f"T{when.hour:02d}:{when.minute:02d}:{when.second:02d}")


@dataclass(frozen=True)
class SnapshotDir:
    """One folder of snapshots named by time, oldest first, with `latest`."""

    entries: dict[str, Snapshot] = field(default_factory=dict)
    latest: str | None = None

    @classmethod
    def of(cls, snaps: list[Snapshot]) -> "SnapshotDir":
        entries: dict[str, Snapshot] = {}
        for snap in sorted(snaps, key=lambda s: (s.datetime, s.id)):
            base = name = time_name(snap)
            n = 0
            while name in entries:  # two snapshots in one second: 12:30:05, 12:30:05-1, ...
                n += 1
                name = f"{base}-{n}"
            entries[name] = snap
        return cls(entries, name if entries else None)

    def names(self) -> list[str]:
        return list(self.entries) + ([LATEST] if self.latest else [])


@dataclass(frozen=True)
class Views:
    """What the top of the mount shows, built from one snapshot listing."""

    snapshots: SnapshotDir
    ids: dict[str, Snapshot]
    hosts: dict[str, SnapshotDir]
    tags: dict[str, SnapshotDir]
    newest: Snapshot | None
    left_out: tuple[str, ...] = ()  # one line per host or tag that cannot be a name

    TOP = ("snapshots", "ids", "hosts", "tags")

    @classmethod
    def of(cls, snaps: list[Snapshot]) -> "Views":
        left_out: list[str] = []
        by_host: dict[str, list[Snapshot]] = {}
        by_tag: dict[str, list[Snapshot]] = {}
        for snap in snaps:
            for name, groups, what in ([(snap.hostname, by_host, "host")] +
                                       [(tag, by_tag, "tag") for tag in dict.fromkeys(snap.tags)]):
                problem = component_problem(name.encode("utf-8", "surrogateescape"))
                if problem:
                    left_out.append(f"snapshot {snap.short_id}: {what} {name[:80]!r} is left out of {what}s/ "
                                    f"({problem})")
                else:
                    groups.setdefault(name, []).append(snap)
        short = {}
        for snap in snaps:
            short.setdefault(snap.short_id, []).append(snap)
        # Two snapshots with one short id both show under their whole ids.
        ids = {(s.short_id if len(group) == 1 else s.id): s for group in short.values() for s in group}
        newest = max(snaps, key=lambda s: (s.datetime, s.id)) if snaps else None
        return cls(SnapshotDir.of(snaps), ids, {h: SnapshotDir.of(g) for h, g in sorted(by_host.items())},
                   {t: SnapshotDir.of(g) for t, g in sorted(by_tag.items())}, newest, tuple(left_out))


# What a path above the snapshots' own trees is.
@dataclass(frozen=True)
class Folder:
    names: list[str]
    snap: Snapshot | None = None  # the newest below, for the folder's time
    link: str | None = None  # the one entry that is a symlink (`latest`), if any


@dataclass(frozen=True)
class Link:
    target: str
    snap: Snapshot


@dataclass(frozen=True)
class InSnapshot:
    snap: Snapshot
    rest: list[str]  # the path inside the snapshot's tree


def locate(views: Views, parts: list[str]) -> Folder | Link | InSnapshot | None:
    """What `parts` (a path split at '/') names above or inside a snapshot; None: nothing."""
    if not parts:
        return Folder(list(Views.TOP), views.newest)
    top, rest = parts[0], parts[1:]
    if top == "ids":
        if not rest:
            return Folder(list(views.ids), views.newest)
        snap = views.ids.get(rest[0])
        return InSnapshot(snap, rest[1:]) if snap else None
    if top == "snapshots":
        return _in_dir(views.snapshots, rest)
    groups = {"hosts": views.hosts, "tags": views.tags}.get(top)
    if groups is None:
        return None
    if not rest:
        return Folder(list(groups), views.newest)
    group = groups.get(rest[0])
    return _in_dir(group, rest[1:]) if group else None


def _in_dir(folder: SnapshotDir, rest: list[str]) -> Folder | Link | InSnapshot | None:
    if not rest:
        newest = folder.entries[folder.latest] if folder.latest else None
        return Folder(folder.names(), newest, LATEST if folder.latest else None)
    if rest[0] == LATEST and folder.latest:
        return Link(folder.latest, folder.entries[folder.latest]) if len(rest) == 1 else None
    snap = folder.entries.get(rest[0])
    return InSnapshot(snap, rest[1:]) if snap else None
