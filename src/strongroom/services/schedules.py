"""The schedules in the catalog (configurations' backups and checks, DR
plans' tests): what each one's last slot and last success were, and so
which slot is due or comes next.

The scheduler and the commands that show schedules both read through here,
so `schedule next` says what the scheduler will do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from strongroom.dr.plan import Plan
from strongroom.errors import StrongroomError
from strongroom.schedule.slots import Slot, due, upcoming
from strongroom.schedule.spec import Schedule, parse_schedule
from strongroom.services.configs import BackupConfig
from strongroom.services.jobs import BACKUP_KINDS

UTC = timezone.utc
DR_PREFIX = "dr:"
RECENT_TESTS = 20  # how far back a DR plan's last good rehearsal is looked for


@dataclass(frozen=True)
class ScheduleState:
    config: str
    schedule: Schedule
    last_slot: datetime | None
    last_success: datetime | None
    last_claimed: datetime | None = None  # when last_slot was claimed


def _instant(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def last_success(catalog, config: str, kinds: tuple[str, ...] = BACKUP_KINDS) -> datetime | None:
    """When the configuration's newest successful backup (or job of `kinds`) finished."""
    jobs = catalog.list_jobs(config=config, status="succeeded", limit=1, kinds=kinds)
    return _instant(jobs[0]["finished_at"]) if jobs else None


def _state(catalog, key: str, schedule: Schedule, success: datetime | None) -> ScheduleState:
    claimed = catalog.last_slot(key, schedule.id)
    return ScheduleState(key, schedule, _instant(claimed["slot"]) if claimed else None, success,
                         _instant(claimed["claimed_at"]) if claimed else None)


def states(catalog, config: BackupConfig, local_zone: ZoneInfo) -> list[ScheduleState]:
    """Each backup schedule of `config` with what the catalog knows of its runs."""
    success = last_success(catalog, config.name)
    return [_state(catalog, config.name, schedule, success) for schedule in config.parsed_schedules(local_zone)]


def check_states(catalog, config: BackupConfig, local_zone: ZoneInfo) -> list[tuple[ScheduleState, str]]:
    """Each check schedule of `config` with its runs, and the subset its checks read.
    Its last success is the last successful check (for daily-since-last)."""
    success = last_success(catalog, config.name, ("check",))
    return [(_state(catalog, config.name, schedule, success), subset)
            for schedule, subset in config.parsed_check_schedules(local_zone)]


def plan_key(plan: str) -> str:
    """The key a DR plan's test slots are claimed (and its test jobs queued)
    under: a configuration name holds no ":", so none can be the same."""
    return DR_PREFIX + plan


def plan_of_key(key: str) -> str | None:
    """The plan of a key made by `plan_key`, or None for a configuration's key."""
    return key[len(DR_PREFIX):] if key.startswith(DR_PREFIX) else None


def plan_state(catalog, plan: Plan, local_zone: ZoneInfo) -> ScheduleState | None:
    """The test schedule of a DR plan with its runs, or None when it has none.
    Its last success is when its newest rehearsal that did not fail finished."""
    if plan.schedule is None:
        return None
    tests = [r for r in catalog.list_dr_runs(plan.name, limit=RECENT_TESTS, mode="test") if r["verdict"] != "fail"]
    success = _instant(tests[-1]["finished"]) if tests else None
    return _state(catalog, plan_key(plan.name), parse_schedule(plan.schedule, local_zone=local_zone), success)


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

    `state.config` is the key the slot is claimed under: a configuration's
    name for its backups and its checks (whose schedule ids start with
    "check:"), "dr:PLAN" for a DR plan's tests. `job` is what a claimed slot
    queues, as Catalog.claim_slot takes it: kind (incremental, check or
    dr-test), priority, max_attempts. `since` is when the owner of the
    schedule last changed (unix seconds): a schedule does not start with a
    slot from before it existed. `subset` is what a check reads."""
    state: ScheduleState
    job: dict
    since: float | None = None
    subset: str | None = None

    @property
    def kind(self) -> str:
        return self.job["kind"]

    @property
    def name(self) -> str:
        """The configuration, or the DR plan, the task belongs to."""
        return plan_of_key(self.state.config) or self.state.config


def scheduled_tasks(catalog, local_zone: ZoneInfo, problems: list[str] | None = None) -> list[Task]:
    """Every schedule in the catalog (each configuration's backups and checks,
    each DR plan's tests), with the job each of its slots queues.

    A configuration or plan whose stored document cannot be read (written
    by a newer strongroom, damaged by hand) is left out, so the others keep
    their schedules; what was wrong is appended to `problems` when given."""
    tasks = []
    for doc in catalog.list_configs():
        try:
            config = BackupConfig.from_doc(doc)
            found = []
            for state in states(catalog, config, local_zone):
                job = {"kind": "incremental", "priority": state.schedule.priority,
                       "max_attempts": config.max_attempts}
                found.append(Task(state, job, doc.get("updated")))
            for state, subset in check_states(catalog, config, local_zone):
                job = {"kind": "check", "priority": state.schedule.priority, "max_attempts": config.max_attempts}
                found.append(Task(state, job, doc.get("updated"), subset))
        except (StrongroomError, ValueError, TypeError, KeyError, AttributeError) as e:
            if problems is not None:
                problems.append(f"configuration {doc.get('name')!r} has no schedules until it is fixed: {e}")
            continue
        tasks.extend(found)
    for row in catalog.list_plans():
        try:
            plan = Plan.from_doc(row["doc"], updated=row["updated"])
            state = plan_state(catalog, plan, local_zone)
        except (StrongroomError, ValueError, TypeError, KeyError, AttributeError) as e:
            if problems is not None:
                problems.append(f"DR plan {row.get('name')!r} has no test schedule until it is fixed: {e}")
            continue
        if state is not None:
            # A rehearsal that failed is a verdict, not a fault to retry: one attempt.
            job = {"kind": "dr-test", "priority": state.schedule.priority, "max_attempts": 1}
            tasks.append(Task(state, job, row["updated"]))
    return tasks
