"""A schedule SPEC and the rules around it: when a configuration's slots fall
(a cron expression, an interval, or a day after the last success), the
window they may start in, a random delay, what a missed slot does, and the
priority of the job a slot queues.

    30 2 * * *                      cron, in local time
    TZ=Asia/Shanghai 30 2 * * *     cron, in a named zone
    every 6h                        an interval on a fixed grid (every 5s, every 1h30m)
    daily-since-last                due 24 h after the last success

A spec's canonical text is also its id within a configuration: the slots
claimed in the catalog are kept per (configuration, id).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from strongroom.errors import UsageError
from strongroom.schedule.cron import CronExpr, parse_cron, to_instant

CHECK_PREFIX = "check:"  # the ids of a configuration's check schedules (no spec starts so)
MISSED_POLICIES = ("run-once", "skip")
SINCE_LAST = "daily-since-last"
DAY = 86400.0
MAX_INTERVAL = 366 * DAY
MAX_PRIORITY = 1000
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_seconds(text: str, what: str) -> float:
    """`5s`, `90m`, `1h30m`, `2d`, `1w` as seconds (at least one)."""
    lowered = text.strip().lower()
    parts = re.findall(r"(\d{1,9})([smhdw])", lowered)
    if not parts or "".join(n + u for n, u in parts) != lowered:
        raise UsageError(f"{what} {text!r}: give a duration such as 5s, 30m, 6h, 1h30m, 2d")
    seconds = float(sum(int(n) * _UNITS[u] for n, u in parts))
    if seconds < 1:
        raise UsageError(f"{what} {text!r}: must be at least 1s")
    return seconds


def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UsageError(f"unknown time zone {name!r}: use a name such as Europe/Berlin or Asia/Shanghai") \
            from None


def system_zone(environ: Mapping[str, str] | None = None) -> ZoneInfo:
    """The machine's zone, for the edge (CLI, API) to pass down: $TZ when it names
    a zone, else /etc/localtime, else UTC."""
    environ = os.environ if environ is None else environ
    name = environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    try:
        target = os.path.realpath("/etc/localtime")
        marker = "/zoneinfo/"
        if marker in target:
            return ZoneInfo(target.split(marker, 1)[1])
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError, ZoneInfoNotFoundError):
        return ZoneInfo("UTC")


@dataclass(frozen=True)
class Window:
    """Local times of day a slot may start in, `start` to `end` in minutes after
    midnight; it crosses midnight when end < start (22:00-06:00)."""

    start: int
    end: int

    @property
    def text(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"

    def contains(self, instant: datetime, zone: ZoneInfo) -> bool:
        local = instant.astimezone(zone)
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def next_open(self, instant: datetime, zone: ZoneInfo) -> datetime:
        """`instant` if it is inside the window, else when the window next opens."""
        return instant if self.contains(instant, zone) else self._next_local(instant, zone, self.start)

    def closes_after(self, instant: datetime, zone: ZoneInfo) -> datetime:
        """When the window that `instant` is in closes."""
        return self._next_local(instant, zone, self.end)

    @staticmethod
    def _next_local(instant: datetime, zone: ZoneInfo, minute: int) -> datetime:
        local = instant.astimezone(zone).replace(tzinfo=None)
        candidate = local.replace(hour=minute // 60, minute=minute % 60, second=0, microsecond=0)
        for _ in range(3):  # today, tomorrow, and once more across a changed clock
            moment = to_instant(candidate, zone)
            if moment > instant:
                return moment
            candidate += timedelta(days=1)
        return to_instant(candidate, zone)


def parse_window(text: str) -> Window:
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if not match:
        raise UsageError(f"window {text!r}: give local times HH:MM-HH:MM, e.g. 22:00-06:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise UsageError(f"window {text!r}: hours run 00-23 and minutes 00-59")
    if (h1, m1) == (h2, m2):
        raise UsageError(f"window {text!r}: it opens and closes at the same time")
    return Window(h1 * 60 + m1, h2 * 60 + m2)


@dataclass(frozen=True)
class Schedule:
    """One parsed schedule of a configuration. `zone` is the zone its cron
    expression and window are read in: the one named with TZ=, else the
    machine's (given by the caller)."""

    text: str  # the canonical spec, also its id
    kind: str  # cron, interval or since-last
    zone: ZoneInfo
    zone_named: bool = False
    cron: CronExpr | None = None
    interval: float | None = None  # seconds
    window: Window | None = None
    random_delay: float = 0.0  # seconds, at most
    random_delay_text: str | None = None
    missed: str = "run-once"
    priority: int = 0
    # Set where one owner has schedules of several kinds (a configuration's
    # checks are "check:SPEC"), so their slots are claimed apart from its backups'.
    id_prefix: str = ""

    @property
    def id(self) -> str:
        return self.id_prefix + self.text

    def describe(self) -> str:
        """The schedule in one line, for a person."""
        if self.kind == "since-last":
            what = "24 h after the last success"
        elif self.kind == "interval":
            what = f"every {_seconds_text(self.interval or 0)} (on a fixed grid)"
        else:
            what = f"cron {self.text.split(' ', 1)[1] if self.zone_named else self.text}" \
                   + (f" in {self.zone.key}" if self.zone_named else " in local time")
        extra = []
        if self.window:
            extra.append(f"window {self.window.text}")
        if self.random_delay:
            extra.append(f"random delay up to {self.random_delay_text}")
        if self.missed != "run-once":
            extra.append(f"missed slots {self.missed}")
        if self.priority:
            extra.append(f"priority {self.priority}")
        return what + (f"; {', '.join(extra)}" if extra else "")

    def to_doc(self) -> dict[str, Any]:
        """The stored form (a config's `schedules` holds a list of these)."""
        return {"spec": self.text, "window": self.window.text if self.window else None,
                "random_delay": self.random_delay_text, "missed": self.missed, "priority": self.priority}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], local_zone: ZoneInfo) -> Schedule:
        return parse_schedule(doc["spec"], window=doc.get("window"), random_delay=doc.get("random_delay"),
                              missed=doc.get("missed") or "run-once", priority=doc.get("priority") or 0,
                              local_zone=local_zone)


def parse_schedule(spec: str, window: str | None = None, random_delay: str | None = None,
                   missed: str = "run-once", priority: int = 0,
                   local_zone: ZoneInfo | None = None) -> Schedule:
    """Read a SPEC and its rules; a UsageError names what is wrong."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError("schedule: give a spec (a cron expression, every DURATION or daily-since-last)")
    if len(spec) > 200:
        raise UsageError("schedule: the spec is too long")
    if missed not in MISSED_POLICIES:
        raise UsageError(f"schedule {spec!r}: missed slots are run-once or skip, not {missed!r}")
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > MAX_PRIORITY:
        raise UsageError(f"schedule {spec!r}: the priority is a whole number from -{MAX_PRIORITY} to {MAX_PRIORITY}")
    parsed_window = parse_window(window) if window else None
    delay = parse_seconds(random_delay, "random delay") if random_delay else 0.0
    if delay > DAY:
        raise UsageError(f"random delay {random_delay!r}: at most 1d")
    zone = local_zone or ZoneInfo("UTC")
    words = spec.split()
    rules = dict(window=parsed_window, random_delay=delay, random_delay_text=random_delay.strip().lower()
                 if random_delay else None, missed=missed, priority=priority)
    if words == [SINCE_LAST]:
        return Schedule(SINCE_LAST, "since-last", zone, **rules)
    if words[0].lower() == "every":
        if len(words) != 2:
            raise UsageError(f"schedule {spec!r}: give every DURATION, e.g. every 6h")
        seconds = parse_seconds(words[1], f"schedule {spec!r}: interval")
        if seconds > MAX_INTERVAL:
            raise UsageError(f"schedule {spec!r}: the interval is at most 366d")
        return Schedule(f"every {words[1].lower()}", "interval", zone, interval=seconds, **rules)
    named = False
    if words[0].upper().startswith(("TZ=", "CRON_TZ=")):
        zone = zone_named(words[0].split("=", 1)[1])
        named = True
        words = words[1:]
    if len(words) != 5:
        raise UsageError(f"schedule {spec!r}: not a cron expression (5 fields), every DURATION or "
                         f"{SINCE_LAST}")
    cron = parse_cron(" ".join(words))
    text = (f"TZ={zone.key} " if named else "") + " ".join(words)
    return Schedule(text, "cron", zone, zone_named=named, cron=cron, **rules)


def _seconds_text(seconds: float) -> str:
    out, rest = [], int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out) or "0s"
