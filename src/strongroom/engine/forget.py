"""Forget: apply a retention policy to snapshots, group by group.

Only snapshot objects are removed; the data they alone referenced stays
until prune frees it. Removing a snapshot object cannot damage another
recovery point, so forget needs only the snapshots' own names.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from strongroom.errors import ObjectLocked, UsageError
from strongroom.model.retention import Decision, Point, Policy, apply_policy
from strongroom.model.snapshot import SNAPSHOT_DIR, Snapshot

GROUP_KEYS = ("host", "paths", "tags", "config")


@dataclass
class GroupDecision:
    key: dict
    decisions: list[tuple[Snapshot, Decision]]


def parse_group_by(text: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in text.split(",") if k.strip()) if text else ()
    bad = [k for k in keys if k not in GROUP_KEYS]
    if bad:
        raise UsageError(f"cannot group by {bad[0]!r}: use a comma list of {', '.join(GROUP_KEYS)}")
    return keys


def _group_key(snap: Snapshot, keys: tuple[str, ...]) -> tuple:
    values = {"host": snap.hostname, "paths": tuple(sorted(snap.paths)), "tags": tuple(sorted(snap.tags)),
              "config": snap.config_name}
    return tuple((k, values[k]) for k in keys)


def plan_forget(snapshots: list[Snapshot], policy: Policy, group_by: tuple[str, ...] = ("host", "paths"),
                allow_remove_all: bool = False, tz=None) -> list[GroupDecision]:
    if policy.empty:
        raise UsageError("no retention rule given: use --keep-last, --keep-daily, --keep-within, ...")
    groups: dict[tuple, list[Snapshot]] = defaultdict(list)
    for snap in snapshots:
        groups[_group_key(snap, group_by)].append(snap)
    result = []
    for key, snaps in sorted(groups.items(), key=lambda item: str(item[0])):
        by_id = {s.id: s for s in snaps}
        decisions = apply_policy([Point(s.id, s.datetime, s.tags) for s in snaps], policy, tz)
        if not allow_remove_all and snaps and not any(d.keep for d in decisions):
            raise UsageError("this policy would remove every recovery point of a group; "
                             "give --allow-remove-all if that is what you want")
        result.append(GroupDecision({k: (list(v) if isinstance(v, tuple) else v) for k, v in key},
                                    [(by_id[d.point.id], d) for d in decisions]))
    return result


def plan_remove(snapshots: list[Snapshot]) -> list[GroupDecision]:
    """A plan that removes exactly these snapshots (`forget ID...`)."""
    chosen = sorted(snapshots, key=lambda s: (s.datetime, s.id), reverse=True)
    decisions = []
    for snap in chosen:
        decision = Decision(Point(snap.id, snap.datetime, snap.tags))
        decision.reasons.append("named")
        decisions.append((snap, decision))
    return [GroupDecision({}, decisions)] if decisions else []


def remove_snapshots(repo, plan: list[GroupDecision], held: list | None = None) -> list[str]:
    """Remove the snapshots the plan does not keep. One a lock keeps (S3 Object
    Lock) stays, whole: it is kept, with the reason in its decision, and named
    in `held` as (id, retain-until date), or else said through the repository's warnings."""
    removed = []
    for group in plan:
        for snap, decision in group.decisions:
            if not decision.keep:
                try:
                    repo.storage.delete(f"{SNAPSHOT_DIR}/{snap.id}")
                except ObjectLocked as e:
                    # The target keeps it (S3 Object Lock): so is its data.
                    decision.keep = True
                    decision.reasons.append("locked" + (f" until {e.until:%Y-%m-%d %H:%M:%S} UTC" if e.until else ""))
                    if held is not None:
                        held.append((snap.id, e.until))
                    elif repo.on_warning:
                        repo.on_warning(f"snapshot {snap.short_id} stays: {e}")
                    continue
                if repo.cache is not None:
                    repo.cache.discard("snapshots", snap.id)
                removed.append(snap.id)
    return removed
