"""The schedules of configurations in the catalog: what each one's last slot
and last success were, and so which slot is due or comes next.

The scheduler and the commands that show schedules both read through here,
so `schedule next` says what the scheduler will do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from strongroom.schedule.slots import Slot, due, upcoming
from strongroom.schedule.spec import Schedule
from strongroom.services.configs import BackupConfig

UTC = timezone.utc


@dataclass(frozen=True)
class ScheduleState:
    config: str
    schedule: Schedule
    last_slot: datetime | None
    last_success: datetime | None
    last_claimed: datetime | None = None  # when last_slot was claimed


def _instant(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def last_success(catalog, config: str) -> datetime | None:
    """When the configuration's newest successful job finished."""
    jobs = catalog.list_jobs(config=config, status="succeeded", limit=1)
    return _instant(jobs[0]["finished_at"]) if jobs else None


def states(catalog, config: BackupConfig, local_zone: ZoneInfo) -> list[ScheduleState]:
    """Each schedule of `config` with what the catalog knows of its runs."""
    success = last_success(catalog, config.name)
    out = []
    for schedule in config.parsed_schedules(local_zone):
        claimed = catalog.last_slot(config.name, schedule.id)
        out.append(ScheduleState(config.name, schedule, _instant(claimed["slot"]) if claimed else None, success,
                                 _instant(claimed["claimed_at"]) if claimed else None))
    return out


def next_due(state: ScheduleState, now: datetime, count: int = 1) -> list[Slot]:
    """The next `count` slots of one schedule, a slot due now first."""
    return upcoming(state.schedule, now, count, state.last_slot, state.last_success, state.config,
                    state.last_claimed)


def due_now(state: ScheduleState, now: datetime, since: datetime) -> Slot | None:
    """The slot the scheduler should claim and run now (see slots.due)."""
    return due(state.schedule, now, state.last_slot, state.last_success, since, state.config, state.last_claimed)


@dataclass(frozen=True)
class Task:
    """One schedule of scheduled work, as the daemon's scheduler sees it.

    `state.config` is the key the slot is claimed under (a configuration's
    name for its backups). `job` is what a claimed slot queues, as
    Catalog.claim_slot takes it: kind, priority, max_attempts. `since` is
    when the owner of the schedule last changed (unix seconds): a schedule
    does not start with a slot from before it existed."""
    state: ScheduleState
    job: dict
    since: float | None = None


def scheduled_tasks(catalog, local_zone: ZoneInfo) -> list[Task]:
    """Every schedule of every configuration in the catalog, with the job each of its slots queues."""
    tasks = []
    for doc in catalog.list_configs():
        config = BackupConfig.from_doc(doc)
        for state in states(catalog, config, local_zone):
            job = {"kind": "incremental", "priority": state.schedule.priority, "max_attempts": config.max_attempts}
            tasks.append(Task(state, job, doc.get("updated")))
    return tasks
