"""One colour per configuration for a person glancing at a dashboard: red
when something is wrong, amber when something needs a look, green otherwise.

It starts from the configuration's status (strongroom.services.status: the
last run, the newest point's age, the overdue rule) and adds what the job
queue knows now (a run queued or running after a failure):

- red: the last finished run failed (and nothing is queued or running to
  try again), or it is overdue (status.py's rule), or it has schedules and
  no run ever succeeded;
- amber: the newest point is older than its schedule's longest normal gap
  between runs (2 days without a schedule), or the last run succeeded with
  warnings or was cancelled, or a run is queued or running after a failure,
  or it was never backed up and has no schedule;
- green otherwise.

Nothing here opens a repository: everything comes from the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from strongroom.schedule.spec import DAY
from strongroom.services.configs import BackupConfig
from strongroom.services.jobs import BACKUP_KINDS
from strongroom.services.schedules import states
from strongroom.services.status import AMBER, GREEN, RED, ConfigStatus, age_text, held_back, normal_gap

STALE_WITHOUT_SCHEDULE = 2 * DAY
RECENT_JOBS = 50
PENDING = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Health:
    colour: str  # green, amber or red
    reason: str  # why, in plain words
    pending: str | None  # "queued" or "running" when a backup of it waits or runs now


def config_health(catalog, config: BackupConfig, status: ConfigStatus, now: datetime, zone: ZoneInfo) -> Health:
    """The colour of `config` at `now` from its `status` (computed at the same `now`)."""
    jobs = catalog.list_jobs(config=config.name, limit=RECENT_JOBS, kinds=BACKUP_KINDS)
    pending = next((job["status"] for job in jobs if job["status"] in PENDING), None)
    finished = next((job for job in jobs if job["status"] in FINISHED), None)
    newer_pending = finished is not None and any(
        job["status"] in PENDING and job["id"] > finished["id"] for job in jobs)
    scheduled = states(catalog, config, zone)
    gap = min((normal_gap(s.schedule, now) + held_back(s.schedule) for s in scheduled), default=None)
    age = status.newest_point_age_seconds

    if finished is not None and finished["status"] == "failed":
        error = finished["error"] or "no error recorded"
        if newer_pending:
            return Health(AMBER, f"a run is {pending} after a failure: {error}", pending)
        return Health(RED, f"the last run failed: {error}", pending)
    if status.overdue:
        return Health(RED, status.reason, pending)
    if status.last_success is None:
        if scheduled:
            return Health(RED, "no run has succeeded yet, though it is scheduled", pending)
        return Health(AMBER, "never backed up (no schedule)", pending)
    if gap is not None and age is not None and age > gap:
        return Health(AMBER, f"the newest point is {age_text(age)} old, older than its schedule's "
                             f"{age_text(gap)} between runs", pending)
    if gap is None and age is not None and age > STALE_WITHOUT_SCHEDULE:
        return Health(AMBER, f"no schedule, and the newest point is {age_text(age)} old", pending)
    if finished is not None and finished["status"] == "cancelled":
        return Health(AMBER, "the last run was cancelled", pending)
    if finished is not None and finished["error"]:
        return Health(AMBER, f"the last run warned: {finished['error']}", pending)
    return Health(GREEN, "ok" if scheduled else "ok (no schedule)", pending)


@dataclass(frozen=True)
class ConfigOverview:
    """What a dashboard shows of one configuration."""
    name: str
    status: ConfigStatus
    health: Health
    points: int | None  # snapshots in the newest storage sample (0 when never backed up)
    target: str  # where (never with a password)


def overview_of(manager, config: BackupConfig, now: datetime, zone: ZoneInfo) -> ConfigOverview:
    """One configuration's status and colour, from the catalog alone."""
    from strongroom.services.describe import target_of
    from strongroom.services.status import config_status

    status = config_status(manager.catalog, config, now, zone)
    sample = manager.catalog.latest_sample(config.name)
    points = sample.get("points") if sample else (0 if status.last_success is None else None)
    return ConfigOverview(config.name, status, config_health(manager.catalog, config, status, now, zone),
                          points if isinstance(points, int) else None, target_of(manager, config))


def overviews(manager, now: datetime, zone: ZoneInfo) -> list[ConfigOverview]:
    """Every configuration of `manager` with its status and colour, from the catalog alone."""
    return [overview_of(manager, config, now, zone) for config in manager.list_configs()]
