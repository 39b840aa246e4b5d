"""Which slot of a schedule is due, as pure functions of the schedule, the
persisted last slot run and last success, and the time now.

Nothing here keeps time: the scheduler asks again on every tick (and at once
after a clock jump), so a slot is found from the wall clock and the catalog,
never from a timer that a sleep or a restart would lose.

- A slot is a time on the schedule's grid (cron matches, multiples of the
  interval since the unix epoch, or 24 h after the last success). It is the
  key under which the catalog claims it, so it must come out the same in
  every process and after every restart.
- Of the slots that passed since the last one run, only the latest counts:
  a machine that slept through three nights runs once when it wakes (or not
  at all with `skip`), never three times.
- A backward clock jump cannot make a slot due again: a slot at or before the
  last one run is never due.
- A window moves a slot's start to the window's opening; the random delay is
  drawn from a seed of (configuration, schedule, slot), so every process and
  every restart draws the same one.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from strongroom.schedule.spec import DAY, Schedule

UTC = timezone.utc
# How late a start may be and still count as on time (not missed), for `skip`;
# an interval's own half period when that is shorter.
ON_TIME = 300.0


@dataclass(frozen=True)
class Slot:
    schedule_id: str
    time: datetime  # on the schedule's grid: the claim key
    start_at: datetime  # the earliest start, the window and the random delay applied
    missed: bool  # its start passed while nothing ran it (asleep, off, daemon down)
    priority: int = 0


def next_slot(spec: Schedule, after: datetime, last_success: datetime | None = None) -> datetime:
    """The first slot after `after`. For daily-since-last: when it is due, 24 h
    after `last_success` (or `after` itself when there was none)."""
    after = after.astimezone(UTC)
    if spec.kind == "since-last":
        return after if last_success is None else last_success.astimezone(UTC) + timedelta(seconds=DAY)
    if spec.kind == "interval":
        step = spec.interval or 1.0
        return _utc((math.floor(after.timestamp() / step) + 1) * step)
    assert spec.cron is not None
    return spec.cron.next_after(after, spec.zone)


def prev_slot(spec: Schedule, at: datetime) -> datetime | None:
    """The last slot at or before `at` (cron and interval schedules)."""
    at = at.astimezone(UTC)
    if spec.kind == "interval":
        step = spec.interval or 1.0
        return _utc(math.floor(at.timestamp() / step) * step)
    if spec.kind == "cron":
        assert spec.cron is not None
        return spec.cron.prev_at_or_before(at, spec.zone)
    return None


def start_at(spec: Schedule, slot: datetime, config: str) -> datetime:
    """When `slot` may start: at its time, or when the window next opens; then
    the random delay (kept inside the window)."""
    slot = slot.astimezone(UTC)
    earliest = spec.window.next_open(slot, spec.zone) if spec.window else slot
    longest = spec.random_delay
    if spec.window and longest:
        longest = min(longest, (spec.window.closes_after(earliest, spec.zone) - earliest).total_seconds() - 1)
    return earliest + timedelta(seconds=random_delay(config, spec.id, slot, max(longest, 0.0)))


def random_delay(config: str, schedule_id: str, slot: datetime, longest: float) -> float:
    """A delay in [0, longest] seconds, the same for the same slot in any process."""
    if longest <= 0:
        return 0.0
    seed = hashlib.sha256(f"{config}\0{schedule_id}\0{slot.timestamp():.3f}".encode()).digest()
    return int(int.from_bytes(seed[:8], "big") / 2 ** 64 * longest)


def due(spec: Schedule, now: datetime, last_slot: datetime | None, last_success: datetime | None,
        daemon_started: datetime, config: str = "", last_claimed: datetime | None = None) -> Slot | None:
    """The slot to run now, or None.

    `last_slot` is the latest slot of this schedule claimed in the catalog,
    `last_success` when the configuration last backed up successfully.
    `daemon_started` is the earliest time a slot counts from while none of
    this schedule has run: the later of the daemon's start and the
    schedule's creation, so a new schedule does not start with a slot of
    the past. `last_claimed` is when that last slot was claimed (daily-since-last
    counts from it when the slot brought no success). Every time comes back
    in UTC (see `_utc_all`)."""
    now, last_slot, last_success, daemon_started, last_claimed = _utc_all(now, last_slot, last_success,
                                                                          daemon_started, last_claimed)
    if spec.kind == "since-last":
        slot = _since_last(last_slot, last_success, last_claimed, daemon_started)
    else:
        latest = prev_slot(spec, now)
        if latest is None:
            return None
        if last_slot is not None and latest <= last_slot:
            return None
        if last_slot is None and latest < daemon_started:
            return None
        slot = latest
    if slot > now:
        return None
    begin = start_at(spec, slot, config)
    if now < begin:
        return None
    if spec.window and not spec.window.contains(now, spec.zone):
        return None  # it waits for the window to open again
    grace = ON_TIME if spec.kind != "interval" else min(ON_TIME, (spec.interval or 1.0) / 2)
    missed = spec.kind != "since-last" and (begin < daemon_started or (now - begin).total_seconds() > grace)
    if missed and spec.missed == "skip":
        return None
    return Slot(spec.id, slot, begin, missed, spec.priority)


def _since_last(last_slot: datetime | None, last_success: datetime | None, last_claimed: datetime | None,
                fallback: datetime) -> datetime:
    """A day after the last success, or after the last slot was claimed when that
    brought none (a failed run, or one still running): a slot claimed late,
    say after a weekend off, counts from its claim, not from its nominal time,
    so it does not fall due again at once. The claim is in the catalog, so
    every process finds the same slot."""
    known = [t for t in (last_success, last_claimed or last_slot) if t is not None]
    return max(known) + timedelta(seconds=DAY) if known else fallback


def upcoming(spec: Schedule, now: datetime, count: int, last_slot: datetime | None = None,
             last_success: datetime | None = None, config: str = "",
             last_claimed: datetime | None = None) -> list[Slot]:
    """The next `count` slots from `now` with their starts, for a person to read:
    a slot due now first (as `due` would run it if the scheduler started now)."""
    now, last_slot, last_success, last_claimed = _utc_all(now, last_slot, last_success, last_claimed)
    out: list[Slot] = []
    current = due(spec, now, last_slot, last_success, now, config, last_claimed)
    if current is not None and spec.kind != "since-last":
        out.append(current)
    if spec.kind == "since-last":
        slot = max(_since_last(last_slot, last_success, last_claimed, now), now)
        while len(out) < count:
            out.append(Slot(spec.id, slot, max(start_at(spec, slot, config), slot), False, spec.priority))
            slot = slot + timedelta(seconds=DAY)
        return out
    after = now
    while len(out) < count:
        slot = next_slot(spec, after)
        out.append(Slot(spec.id, slot, start_at(spec, slot, config), False, spec.priority))
        after = slot
    return out


def _utc_all(*moments: datetime | None) -> tuple:
    """In UTC: an aware datetime inside a repeated hour never compares equal to
    one of another zone (PEP 495), so slots are compared in one zone only."""
    return tuple(None if m is None else m.astimezone(UTC) for m in moments)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
