"""Five-field cron expressions, evaluated over zoneinfo.

A `CronExpr` holds the sets of minutes, hours, days of the month, months and
days of the week an expression allows, and finds the instants it names in a
time zone. The search runs on local wall-clock times (naive datetimes) one
field at a time, then maps each match to an instant:

- a local time that does not exist (the hour skipped when clocks go
  forward) becomes the first instant after it, the moment of the change:
  02:30 in Europe/Berlin on the last Sunday of March runs at 03:00 CEST;
  several skipped times falling on that instant run once;
- a local time that occurs twice (the hour repeated when clocks go back)
  is taken once, at its first occurrence (fold=0).

Why not a library: see docs/design.md, "Schedules".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from strongroom.errors import UsageError

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# name, lowest, highest, names (numbered from `lowest`)
_FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
           ("month", 1, 12, MONTHS), ("day of week", 0, 7, DAYS))
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February at its longest
# How far a search looks before it says the expression names no time: past
# the longest wait for a 29 February (8 years, across 2100).
_HORIZON_YEARS = 9
# The largest shift of a zone's clocks: a match this far on the other side of
# a naive time may still be an instant on this side of it.
_SHIFT = timedelta(hours=3)
_UTC = timezone.utc


@dataclass(frozen=True)
class CronExpr:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday (7 is read as 0)
    # cron's rule: when both day fields are restricted, a day matches either.
    days_restricted: bool
    weekdays_restricted: bool

    def day_matches(self, day: datetime) -> bool:
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week

    # -- local wall-clock search -------------------------------------------

    def next_local(self, start: datetime) -> datetime:
        """The first naive local time at or after `start` (on a whole minute) that matches."""
        t = start.replace(second=0, microsecond=0)
        if t < start:
            t += timedelta(minutes=1)
        limit = start.year + _HORIZON_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self.day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        raise UsageError("the cron expression names no time")

    def prev_local(self, start: datetime) -> datetime:
        """The last naive local time at or before `start` that matches."""
        t = start.replace(second=0, microsecond=0)
        limit = start.year - _HORIZON_YEARS
        while t.year >= limit:
            if t.month not in self.months:
                t = t.replace(day=1, hour=0, minute=0) - timedelta(minutes=1)
            elif not self.day_matches(t):
                t = t.replace(hour=0, minute=0) - timedelta(minutes=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) - timedelta(minutes=1)
            elif t.minute not in self.minutes:
                t -= timedelta(minutes=1)
            else:
                return t
        raise UsageError("the cron expression names no time")

    # -- instants ----------------------------------------------------------

    def next_after(self, after: datetime, zone: ZoneInfo, _always_shift: bool = False) -> datetime:
        """The first instant strictly after `after` (aware) that the expression names in `zone`."""
        local = after.astimezone(zone).replace(tzinfo=None)
        if _always_shift or not _steady(zone, after):
            # Near a change of the zone's clocks a local time before `after`'s may
            # be an instant after it: look from as far back as a change can move.
            local -= _SHIFT
        while True:
            match = self.next_local(local)
            instant = to_instant(match, zone)
            if instant > after:
                return instant
            local = match + timedelta(minutes=1)

    def prev_at_or_before(self, before: datetime, zone: ZoneInfo, _always_shift: bool = False) -> datetime | None:
        """The last instant at or before `before` (aware) that the expression names in `zone`."""
        local = before.astimezone(zone).replace(tzinfo=None)
        if _always_shift or not _steady(zone, before):
            local += _SHIFT
        while True:
            try:
                match = self.prev_local(local)
            except UsageError:
                return None
            instant = to_instant(match, zone)
            if instant <= before:
                return instant
            local = match - timedelta(minutes=1)


def _steady(zone: ZoneInfo, at: datetime) -> bool:
    """Whether `zone` keeps one UTC offset from `_SHIFT` before `at` to `_SHIFT`
    after it (looked at every half hour). Then local times near `at` are
    instants in the same order, and a search may start at `at`'s own local
    time instead of `_SHIFT` away: a dense expression (every minute) is
    otherwise walked through three hours of matches on every call."""
    offset = at.astimezone(zone).utcoffset()
    step = timedelta(minutes=30)
    return all((at + k * step).astimezone(zone).utcoffset() == offset
               for k in range(-(_SHIFT // step), _SHIFT // step + 1))


def to_instant(local: datetime, zone: ZoneInfo) -> datetime:
    """The instant (UTC) of naive local time `local` in `zone`, by the rules above."""
    first = local.replace(tzinfo=zone, fold=0)
    instant = first.astimezone(_UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == local:
        return instant  # exists; if it occurs twice, this is the first
    # In a gap: fold=1 reads it with the offset after the change, fold=0 with
    # the one before; the change itself lies between the two readings. Zones
    # change on whole seconds: search those for the first whose local time
    # is past `local`.
    readings = sorted((local.replace(tzinfo=zone, fold=1).astimezone(_UTC), instant))
    low, high = int(readings[0].timestamp()) - 1, int(readings[1].timestamp()) + 1
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) > local:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, _UTC)


def parse_cron(text: str) -> CronExpr:
    """Read `minute hour day-of-month month day-of-week`; a UsageError names the field that is wrong."""
    parts = text.split()
    if len(parts) != 5:
        raise UsageError(f"cron expression {text!r}: give 5 fields (minute hour day-of-month month "
                         f"day-of-week), not {len(parts)}")
    sets = [_parse_field(part, *spec) for part, spec in zip(parts, _FIELDS)]
    weekdays = frozenset(d % 7 for d in sets[4])
    expr = CronExpr(frozenset(sets[0]), frozenset(sets[1]), frozenset(sets[2]), frozenset(sets[3]), weekdays,
                    days_restricted=not parts[2].startswith("*"),
                    weekdays_restricted=not parts[4].startswith("*"))
    if expr.days_restricted and not expr.weekdays_restricted:
        if not any(day <= _DAYS_IN_MONTH[month - 1] for month in expr.months for day in expr.days):
            raise UsageError(f"cron expression {text!r}: no month of those has such a day")
    return expr


def _parse_field(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise UsageError(f"cron {name} field {text!r}: an empty item")
        body, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _digits(step_text) or int(step_text) == 0:
                raise UsageError(f"cron {name} field {text!r}: the step must be a whole number above 0")
            step = int(step_text)
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            first, last = _value(a, text, name, low, high, names), _value(b, text, name, low, high, names)
            if first > last:
                raise UsageError(f"cron {name} field {text!r}: the range {body} runs backwards")
        else:
            first = _value(body, text, name, low, high, names)
            last = high if slash else first
        values.update(range(first, last + 1, step))
    return values


def _value(token: str, text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> int:
    lowered = token.lower()
    if lowered in names:
        return names.index(lowered) + low
    if not _digits(token):
        known = f" or a name ({', '.join(names)})" if names else ""
        raise UsageError(f"cron {name} field {text!r}: {token!r} is not a number from {low} to {high}{known}")
    number = int(token)
    if not low <= number <= high:
        raise UsageError(f"cron {name} field {text!r}: {number} is outside {low}-{high}")
    return number


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() admits other scripts' digits too."""
    return text.isascii() and text.isdigit() and len(text) <= 9
