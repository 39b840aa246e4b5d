"""Where one configuration stands against its schedules, as `/metrics` and
`/healthz` both read it: its newest successful backup, the schedules'
nominal period, the age they allow and whether it is overdue.

The overdue rule is the one of `strongroom status` (services/status.py):
older than `allowed_age` of the schedule with the shortest gap. Only jobs
of kind full or incremental count as a success: a verification or a DR test
that succeeded (other kinds of scheduled job) made no point."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from strongroom.schedule.spec import DAY, Schedule
from strongroom.services.configs import BackupConfig
from strongroom.services.schedules import next_due, states
from strongroom.services.status import allowed_age, cron_longest_gap

UTC = timezone.utc
BACKUP_KINDS = ("full", "incremental")


@dataclass(frozen=True)
class Standing:
    config: str
    success: dict | None  # the newest successful backup job (a catalog row), or None
    period: float | None  # seconds; None: no schedule
    allowed_age: float | None  # seconds; None: no schedule
    next_run: float | None  # unix time; None: no schedule
    overdue: bool

    @property
    def last_success(self) -> float | None:
        return None if self.success is None else self.success["finished_at"]


def nominal_period(schedule: Schedule, moment: datetime) -> float:
    """The longest normal gap between runs of `schedule`, in seconds: what the
    overdue rule multiplies (services/status.py)."""
    if schedule.kind == "interval":
        return schedule.interval or 1.0
    if schedule.kind == "since-last":
        return DAY
    return cron_longest_gap(schedule, moment)


class ScheduleGaps:
    """The nominal period and allowed age of cron schedules, each kept for
    `keep` seconds. Finding the longest gap of a dense cron expression walks
    hundreds of slots (a third of a second for `*/5 * * * *`), too slow for
    every scrape of every configuration; over its 8-day horizon the answer
    changes only where a DST change enters or leaves it, so an hour-old one
    is as good. Intervals and daily-since-last are not kept: they cost
    nothing. Thread-safe; at most `limit` schedules are kept."""

    def __init__(self, keep: float = 3600.0, limit: int = 4096) -> None:
        self.keep = keep
        self.limit = limit
        self._kept: dict[str, tuple[float, float, float]] = {}
        self._lock = threading.Lock()

    def of(self, schedule: Schedule, moment: datetime) -> tuple[float, float]:
        """(nominal period, allowed age) of `schedule` at `moment`, in seconds."""
        if schedule.kind != "cron":
            return nominal_period(schedule, moment), allowed_age(schedule, moment)
        key, now = repr(schedule), moment.timestamp()
        with self._lock:
            found = self._kept.get(key)
        if found is not None and 0 <= now - found[0] < self.keep:
            return found[1], found[2]
        period, allowed = nominal_period(schedule, moment), allowed_age(schedule, moment)
        with self._lock:
            if len(self._kept) >= self.limit:
                self._kept.clear()
            self._kept[key] = (now, period, allowed)
        return period, allowed


def standing(catalog, config: BackupConfig, now: float, zone: ZoneInfo,
             gaps: ScheduleGaps | None = None) -> Standing:
    """Where `config` stands at unix time `now`; `zone` reads cron schedules that
    name none; `gaps` keeps the cron gaps between calls (none: found afresh)."""
    moment = datetime.fromtimestamp(now, UTC)
    success = catalog.last_job(config.name, BACKUP_KINDS, ("succeeded",))
    if success is not None and success["finished_at"] is None:
        success = None
    schedule_states = states(catalog, config, zone)
    if not schedule_states:
        return Standing(config.name, success, None, None, None, False)
    gaps = gaps or ScheduleGaps()
    found = [gaps.of(state.schedule, moment) for state in schedule_states]
    period = min(period for period, _ in found)
    allowed = min(allowed for _, allowed in found)
    next_run = min(next_due(state, moment)[0].start_at for state in schedule_states).timestamp()
    overdue = success is not None and now - success["finished_at"] > allowed
    return Standing(config.name, success, period, allowed, next_run, overdue)
