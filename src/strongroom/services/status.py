"""How each configuration stands: its last run and last success, its next
run, the age of its newest point, whether it is overdue, its size, and one
colour for all of it.

Everything comes from the catalog, so `strongroom status` is fast and works
with the targets offline: the runs and the newest point from the job
history (a successful job names the snapshot it made and when it finished),
the size from the newest storage sample (taken after every run), the next
run from the schedules (strongroom.services.schedules). Nothing here opens a
repository; a point made outside the catalog (plain `strongroom backup`
with a repository) is not seen.

Overdue: no success within 1.5 times the schedule's longest normal gap
between runs. That gap is the interval of `every D`, 24 h for
daily-since-last, and for a cron expression the longest gap between
consecutive slots over the next 8 days (see `cron_longest_gap`). A window
or a random delay can hold a start back, so the time a window is closed and
the longest random delay are added on top. A configuration with several
schedules is held to the one with the shortest gap. A configuration without
a schedule is never overdue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from strongroom.schedule.slots import next_slot, prev_slot
from strongroom.schedule.spec import DAY, Schedule
from strongroom.services.configs import BackupConfig
from strongroom.services.jobs import BACKUP_KINDS
from strongroom.services.schedules import next_due, scheduled_tasks, states

UTC = timezone.utc
OVERDUE_FACTOR = 1.5
STALE_UNSCHEDULED = 7 * DAY  # a configuration without a schedule turns amber when its newest point is older
GAP_HORIZON = 8 * DAY
GAP_SLOTS = 200  # consecutive cron slots read before the gap is found by probing instead
RECENT_JOBS = 50  # how far back the last finished run is looked for, behind queued ones

GREEN, AMBER, RED = "green", "amber", "red"


@dataclass(frozen=True)
class LastRun:
    time: datetime  # when it finished (or started, while it runs)
    status: str  # running, succeeded, failed or cancelled
    error: str | None = None  # the failure, or the warning of a run that succeeded


@dataclass(frozen=True)
class ConfigStatus:
    name: str
    last_run: LastRun | None
    last_success: datetime | None
    snapshot_id: str | None  # the newest point the catalog knows of (the last success's)
    next_run: datetime | None  # None: no schedule
    newest_point_age_seconds: float | None
    overdue: bool
    overdue_after_seconds: float | None  # the allowed age of the newest success; None: no schedule
    size_bytes: int | None  # stored size (after dedup and compression) in the newest sample
    restore_size_bytes: int | None  # what the newest point restores to, in the same sample
    sampled_at: datetime | None
    status: str  # green, amber or red
    reason: str  # why it has that colour, in one line
    # With a second target (copy_to): when a run last copied to it, and the
    # error of the newest run's copy if that one failed.
    last_copy: datetime | None = None
    copy_error: str | None = None


def cron_longest_gap(schedule: Schedule, now: datetime) -> float:
    """The longest gap in seconds between consecutive slots of a cron schedule
    over the `GAP_HORIZON` from `now`.

    Up to `GAP_SLOTS` slots are walked one by one (every schedule of an hour
    or longer is done there, exactly). A denser one is probed instead at
    points `GAP_HORIZON / GAP_SLOTS` (about 58 minutes) apart: every gap
    longer than that spacing holds a probe, and the slots before and after a
    probe give that gap exactly, so the answer is exact when it is longer
    than the spacing and otherwise the spacing itself (an upper bound: such
    a schedule is held to about an hour, not to its minutes)."""
    end = now + timedelta(seconds=GAP_HORIZON)
    start = prev_slot(schedule, now)
    t = start if start is not None else next_slot(schedule, now)
    longest = 0.0
    for _ in range(GAP_SLOTS):
        following = next_slot(schedule, t)
        longest = max(longest, (following - t).total_seconds())
        if following >= end:
            return longest
        t = following
    spacing = GAP_HORIZON / GAP_SLOTS
    for i in range(GAP_SLOTS + 1):
        probe = now + timedelta(seconds=i * spacing)
        before = prev_slot(schedule, probe)
        if before is not None:
            longest = max(longest, (next_slot(schedule, before) - before).total_seconds())
    return max(longest, spacing)


def normal_gap(schedule: Schedule, now: datetime) -> float:
    """The longest normal gap in seconds between two runs of `schedule`."""
    if schedule.kind == "interval":
        return schedule.interval or 1.0
    if schedule.kind == "since-last":
        return DAY
    return cron_longest_gap(schedule, now)


def held_back(schedule: Schedule) -> float:
    """How long a window or a random delay can hold a start of `schedule` back, in seconds."""
    seconds = schedule.random_delay
    if schedule.window is not None:
        seconds += ((schedule.window.start - schedule.window.end) % 1440) * 60.0
    return seconds


def allowed_age(schedule: Schedule, now: datetime) -> float:
    """How old the newest success may be, in seconds, before `schedule` counts it overdue."""
    return OVERDUE_FACTOR * normal_gap(schedule, now) + held_back(schedule)


def _instant(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _last_run(catalog, name: str, kinds: tuple[str, ...] = BACKUP_KINDS) -> LastRun | None:
    for job in catalog.list_jobs(config=name, limit=RECENT_JOBS, kinds=kinds):
        if job["status"] == "queued":
            continue
        when = job["finished_at"] if job["finished_at"] is not None else job["started_at"]
        if when is None:
            continue
        return LastRun(_instant(when), job["status"], job["error"])
    return None


def age_text(seconds: float) -> str:
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * DAY:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY:.1f} days"


def config_status(catalog, config: BackupConfig, now: datetime, zone: ZoneInfo) -> ConfigStatus:
    """The status of `config` at `now`; `zone` is the one its cron schedules are
    read in when they name none (the machine's, for the command line)."""
    now = now.astimezone(UTC)
    last_run = _last_run(catalog, config.name)
    successes = catalog.list_jobs(config=config.name, status="succeeded", limit=1, kinds=BACKUP_KINDS)
    success = successes[0] if successes else None
    last_success = _instant(success["finished_at"]) if success else None
    age = max((now - last_success).total_seconds(), 0.0) if last_success else None

    schedule_states = states(catalog, config, zone)
    next_run = min((next_due(state, now)[0].start_at for state in schedule_states), default=None)
    allowed = min((allowed_age(state.schedule, now) for state in schedule_states), default=None)
    overdue = allowed is not None and age is not None and age > allowed

    sample = catalog.latest_sample(config.name)
    size = sample.get("stored_size") if sample else None
    restore_size = sample.get("restore_size") if sample else None

    if last_run is not None and last_run.status == "failed":
        colour, reason = RED, f"the last run failed: {last_run.error or 'no error recorded'}"
    elif overdue:
        colour, reason = RED, (f"overdue: the newest point is {age_text(age)} old, "
                               f"more than the {age_text(allowed)} its schedule allows")
    elif last_success is None:
        colour, reason = AMBER, "never backed up"
    elif last_run is not None and last_run.status == "cancelled":
        colour, reason = AMBER, "the last run was cancelled"
    elif last_run is not None and last_run.status == "succeeded" and last_run.error:
        colour, reason = AMBER, f"the last run warned: {last_run.error}"
    elif allowed is None and age is not None and age > STALE_UNSCHEDULED:
        colour, reason = AMBER, f"no schedule, and the newest point is {age_text(age)} old"
    else:
        colour, reason = GREEN, "ok" if allowed is not None else "ok (no schedule)"
    last_copy, copy_error = _copies(catalog, config) if config.copy_to else (None, None)
    return ConfigStatus(
        config.name, last_run, last_success, success["snapshot_id"] if success else None, next_run, age,
        overdue, allowed, int(size) if isinstance(size, (int, float)) else None,
        int(restore_size) if isinstance(restore_size, (int, float)) else None,
        _instant(sample["time"]) if sample else None, colour, reason, last_copy, copy_error)


def _copies(catalog, config: BackupConfig) -> tuple[datetime | None, str | None]:
    """When a run last copied to the second target, and the newest copy's error."""
    newest_error, first = None, True
    for job in catalog.list_jobs(config=config.name, status="succeeded", limit=RECENT_JOBS, kinds=BACKUP_KINDS):
        copy = (job.get("stats") or {}).get("copy")
        if not isinstance(copy, dict):
            continue
        if copy.get("ok") and isinstance(copy.get("time"), (int, float)):
            return _instant(copy["time"]), newest_error
        if first:
            newest_error = str(copy.get("error") or "failed")
        first = False
    return None, newest_error


@dataclass(frozen=True)
class VerificationStatus:
    """A scheduled check of a configuration or test of a DR plan: when it runs
    next and how its last scheduled run ended. Not part of a configuration's
    colour, which is about its backups; a failed one is notified on its own."""
    name: str  # the configuration, or the DR plan
    kind: str  # check or dr-test
    schedule: str  # the spec
    next_run: datetime
    last_run: LastRun | None
    subset: str | None = None  # what a check reads


def verification_statuses(catalog, now: datetime, zone: ZoneInfo) -> list[VerificationStatus]:
    """Every check and DR-test schedule in the catalog, configurations first, then plans."""
    now = now.astimezone(UTC)
    out = []
    for task in scheduled_tasks(catalog, zone):
        if task.kind in BACKUP_KINDS:
            continue
        out.append(VerificationStatus(task.name, task.kind, task.state.schedule.text,
                                      next_due(task.state, now)[0].start_at,
                                      _last_run(catalog, task.state.config, (task.kind,)), task.subset))
    return out


def all_statuses(catalog, configs: list[BackupConfig], now: datetime, zone: ZoneInfo) -> list[ConfigStatus]:
    """`config_status` of each configuration, in the order given."""
    return [config_status(catalog, config, now, zone) for config in configs]
