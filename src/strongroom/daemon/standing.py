"""Where one configuration stands against its schedules, as `/metrics` and
`/healthz` both read it: its newest successful backup, the schedules'
nominal period, the age they allow and whether it is overdue.

The overdue rule is the one of `strongroom status` (services/status.py):
older than `allowed_age` of the schedule with the shortest gap. Only jobs
of kind full or incremental count as a success: a verification or a DR test
that succeeded (other kinds of scheduled job) made no point."""

from __future__ import annotations

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


def standing(catalog, config: BackupConfig, now: float, zone: ZoneInfo) -> Standing:
    """Where `config` stands at unix time `now`; `zone` reads cron schedules that name none."""
    moment = datetime.fromtimestamp(now, UTC)
    success = catalog.last_job(config.name, BACKUP_KINDS, ("succeeded",))
    if success is not None and success["finished_at"] is None:
        success = None
    schedule_states = states(catalog, config, zone)
    if not schedule_states:
        return Standing(config.name, success, None, None, None, False)
    period = min(nominal_period(state.schedule, moment) for state in schedule_states)
    allowed = min(allowed_age(state.schedule, moment) for state in schedule_states)
    next_run = min(next_due(state, moment)[0].start_at for state in schedule_states).timestamp()
    overdue = success is not None and now - success["finished_at"] > allowed
    return Standing(config.name, success, period, allowed, next_run, overdue)
