"""Which snapshot a step restores: its point rule applied to the snapshots of
its configuration. Pure functions over a list, tested with tables of times."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from strongroom.dr.plan import PointRule
from strongroom.errors import SnapshotNotFound
from strongroom.model.select import snapshot_at
from strongroom.model.snapshot import Snapshot


def snapshot_time(snap: Snapshot) -> datetime:
    """When the snapshot was taken, in UTC."""
    return snap.datetime.astimezone(timezone.utc)


def choose_snapshot(snapshots: list[Snapshot], rule: PointRule, now: datetime, rng: random.Random) -> Snapshot:
    """The snapshot `rule` picks at `now`: the newest; the newest at or before a
    time; or one drawn uniformly from those of the last `within` seconds."""
    ordered = sorted(snapshots, key=lambda s: (snapshot_time(s), s.id))
    if rule.kind == "at":
        return snapshot_at(ordered, rule.at)
    if rule.kind == "random":
        since = now - timedelta(seconds=rule.within)
        recent = [s for s in ordered if since <= snapshot_time(s) <= now]
        if not recent:
            raise SnapshotNotFound(f"no snapshot in the last {rule.describe().rsplit(' ', 1)[-1]}")
        return rng.choice(recent)
    if not ordered:
        raise SnapshotNotFound("no snapshot yet")
    return ordered[-1]


def describe_rule(rule: PointRule, seed: int | None) -> str:
    """The rule in words as a report cites it; a random draw names its seed, so it can be made again."""
    words = rule.describe()
    return f"{words} (seed {seed})" if rule.kind == "random" and seed is not None else words
