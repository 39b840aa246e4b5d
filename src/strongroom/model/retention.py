"""Retention: which recovery points a policy keeps, as pure functions.

Rules combine as in restic and borg: a point is kept when any rule keeps it.
Calendar rules walk the points newest first and keep the newest point of
each bucket (hour, day, ISO week, month, year, in the points' local time)
until they have kept N buckets. `keep_within` keeps every point no older
than the duration before the newest point; `keep_tags` keeps tagged points.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Callable, Sequence

from strongroom.errors import UsageError


@dataclass(frozen=True)
class Duration:
    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def before(self, when: datetime) -> datetime:
        """`when` minus this duration, with calendar years and months (Feb 29 -> Feb 28)."""
        month_index = when.year * 12 + (when.month - 1) - self.years * 12 - self.months
        year, month = divmod(month_index, 12)
        month += 1
        day = min(when.day, _days_in_month(year, month))
        return when.replace(year=year, month=month, day=day) - timedelta(days=self.days, hours=self.hours)


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (datetime(year, month + 1, 1) - datetime(year, month, 1)).days


def parse_duration(text: str) -> Duration:
    """`30d`, `2w`, `1y6m`, `12h`: years, months, weeks, days, hours."""
    parts = re.findall(r"(\d+)([ymwdh])", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise UsageError(f"cannot read duration {text!r}: use e.g. 30d, 2w, 1y6m, 12h")
    amounts = {"y": 0, "m": 0, "w": 0, "d": 0, "h": 0}
    for number, unit in parts:
        amounts[unit] += int(number)
    return Duration(amounts["y"], amounts["m"], amounts["w"] * 7 + amounts["d"], amounts["h"])


@dataclass(frozen=True)
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration | None = None
    tags: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.last or self.hourly or self.daily or self.weekly or self.monthly or self.yearly
                    or self.within or self.tags)


@dataclass(frozen=True)
class Point:
    """What retention needs to know of a recovery point."""

    id: str
    time: datetime
    tags: tuple[str, ...] = ()


@dataclass
class Decision:
    point: Point
    keep: bool = False
    reasons: list[str] = field(default_factory=list)


_BUCKETS: dict[str, Callable[[datetime], tuple]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}


def apply_policy(points: Sequence[Point], policy: Policy, tz: tzinfo | None = None) -> list[Decision]:
    """Decide for every point, newest first. `tz` is the zone of the calendar
    buckets (default: this machine's local time)."""
    if policy.empty:
        raise UsageError("no retention rule given: use --keep-last, --keep-daily, --keep-within, ...")
    decisions = [Decision(p) for p in sorted(points, key=lambda p: (p.time, p.id), reverse=True)]
    for i, d in enumerate(decisions):
        if i < policy.last:
            _keep(d, "last")
        if policy.tags and set(policy.tags) & set(d.point.tags):
            _keep(d, "tag")
    if policy.within is not None and decisions:
        oldest_kept = policy.within.before(decisions[0].point.time)
        for d in decisions:
            if d.point.time >= oldest_kept:
                _keep(d, "within")
    for rule, bucket_of in _BUCKETS.items():
        wanted = getattr(policy, rule)
        seen: set[tuple] = set()
        for d in decisions:
            if len(seen) >= wanted:
                break
            bucket = bucket_of(d.point.time.astimezone(tz))
            if bucket not in seen:
                seen.add(bucket)
                _keep(d, rule)
    return decisions


def _keep(decision: Decision, reason: str) -> None:
    decision.keep = True
    if reason not in decision.reasons:
        decision.reasons.append(reason)


# ---- the policy as stored in a managed configuration ----------------------------------

_COUNTS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
RETENTION_KEYS = tuple(f"keep_{c}" for c in _COUNTS) + ("keep_within", "keep_tags")


def policy_from_doc(doc: dict | None) -> Policy:
    """A policy from its stored form: {"keep_daily": 7, "keep_within": "30d",
    "keep_tags": ["release"], ...}; missing keys keep nothing. An empty or
    missing doc gives the empty policy."""
    doc = doc or {}
    if not isinstance(doc, dict):
        raise UsageError("a retention policy is a mapping of keep_* rules")
    unknown = sorted(set(doc) - set(RETENTION_KEYS))
    if unknown:
        raise UsageError(f"unknown retention rule {unknown[0]!r}: use {', '.join(RETENTION_KEYS)}")
    counts = {}
    for c in _COUNTS:
        value = doc.get(f"keep_{c}", 0) or 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"retention keep_{c} must be a whole number of at least 0, not {value!r}")
        counts[c] = value
    within = doc.get("keep_within")
    if within is not None and not isinstance(within, str):
        raise UsageError(f"retention keep_within must be a duration such as 30d, not {within!r}")
    tags = doc.get("keep_tags") or []
    if isinstance(tags, str) or not all(isinstance(t, str) and t for t in tags):
        raise UsageError("retention keep_tags must be a list of tags")
    return Policy(**counts, within=parse_duration(within) if within else None, tags=tuple(tags))


def describe_policy(doc: dict | None) -> str:
    """`keep last 3, daily 7, within 30d, tag release`, or `none`."""
    doc = doc or {}
    parts = [f"{c} {doc[f'keep_{c}']}" for c in _COUNTS if doc.get(f"keep_{c}")]
    if doc.get("keep_within"):
        parts.append(f"within {doc['keep_within']}")
    parts += [f"tag {t}" for t in doc.get("keep_tags") or []]
    return "keep " + ", ".join(parts) if parts else "none"
