"""The jobs of scheduled verification: a sampled check of a configuration's
repository (kind "check") and a rehearsal of a DR plan (kind "dr-test").

The job queue runs them as it runs backups (`BackupManager._run_job`
dispatches on the kind); they make no recovery point, so nothing that asks
about backups counts them (jobs.BACKUP_KINDS). Each fails its job when it
finds what it looks for: damage, or a failed verdict. Each tells the
notification channels through its own events (verification_passed or
damage_found; dr_test_passed or dr_test_failed), once per run, and both stop
at their next chance when the manager is stopping.
"""

from __future__ import annotations

import re
import time
from datetime import timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from strongroom.engine.check import run_check
from strongroom.errors import DamageFound, Interrupted, StrongroomError, UsageError
from strongroom.notify.base import one_line
from strongroom.services.backup_manager import _problem_line
from strongroom.services.configs import DEFAULT_CHECK_SUBSET, BackupConfig
from strongroom.services.results import ValidationReport
from strongroom.services.schedules import plan_of_key

if TYPE_CHECKING:
    from strongroom.services.backup_manager import BackupManager

STOP_POLL = 0.2  # seconds between looks at `stopping` while a rehearsal runs
LOCK_WAIT = 60.0  # seconds a check waits for a prune or another exclusive lock to end


def check_subset_for(catalog, job: dict, config: BackupConfig) -> str:
    """The share of packs job `job` reads: its schedule's subset (found through
    the slot that queued it), else the configuration's first check schedule's,
    else the default. An `n/t` subset moves on by one part from the part the
    last successful check read, so that t checks read the whole repository."""
    slot = catalog.slot_of_job(job["id"])
    # A schedule's id does not depend on the zone its cron is read in (a named zone is in its text).
    schedules = config.parsed_check_schedules(ZoneInfo("UTC"))
    wanted = [subset for schedule, subset in schedules if slot and schedule.id == slot["schedule"]]
    subset = (wanted or [s for _, s in schedules] or [DEFAULT_CHECK_SUBSET])[0]
    part = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", subset)
    if not part:
        return subset
    first, parts = int(part.group(1)), int(part.group(2))
    last = catalog.list_jobs(config=config.name, status="succeeded", limit=1, kinds=("check",))
    previous = re.fullmatch(r"(\d+)/(\d+)", str(((last[0].get("stats") or {}) if last else {}).get("subset", "")))
    if previous and int(previous.group(2)) == parts:
        return f"{int(previous.group(1)) % parts + 1}/{parts}"
    return f"{first}/{parts}"


def run_check_job(manager: BackupManager, job: dict) -> dict:
    """Read a subset of the packs of the configuration's points and authenticate
    what they hold; DamageFound (the job fails, not retried) when a problem is found."""
    config = manager.get_config(job["config"])
    subset = check_subset_for(manager.catalog, job, config)
    service = manager.backup_service
    started = time.monotonic()

    def listener(event: dict) -> None:
        if manager.stopping.is_set():
            raise Interrupted("the check stopped: strongroom is shutting down")

    repo = service.open_repository(config)
    with repo.lock(exclusive=False, wait=LOCK_WAIT, stop=manager.stopping.is_set):
        points = service.snapshots(config, repo)
        kit = manager.catalog.kit_on_record(repo.config.id, repo.key_id)
        # A configuration without points yet: the whole repository is what there is to check.
        checked = run_check(repo, subset=subset, listener=listener, kit_on_record=kit, snapshots=points or None)
    counts = checked.counts
    report = ValidationReport(
        points[-1].id if points else "", config.name, True, ok=checked.ok, blobs_checked=counts["blobs"],
        packs_checked=counts["packs"], packs_read=counts.get("packs_read", 0),
        blobs_authenticated=counts.get("blobs_authenticated", 0),
        problems=tuple(_problem_line(p) for p in checked.problems), warnings=tuple(checked.warnings),
        advice=tuple(checked.advice), duration=round(time.monotonic() - started, 3))
    manager._notify_validation(report)
    stats = {"subset": subset, "points": len(points), "packs_checked": report.packs_checked,
             "packs_read": report.packs_read, "blobs_authenticated": report.blobs_authenticated,
             "problems": list(report.problems[:20]), "duration": report.duration}
    if not report.ok:
        more = len(report.problems) - 1
        first = report.problems[0] if report.problems else "the check did not pass"
        raise DamageFound(f"check of {config.name} ({subset} of the packs) found damage: "
                          f"{one_line(first)}" + (f" (and {more} more)" if more > 0 else ""))
    warning = "; ".join(report.warnings) or None
    return {"stats": stats, "warning": one_line(warning) if warning else None}


def run_dr_test_job(manager: BackupManager, job: dict) -> dict:
    """Rehearse the DR plan of a "dr:PLAN" job into a scratch area (the DR manager
    records the run and notifies its verdict); StrongroomError when it fails."""
    plan = plan_of_key(job["config"])
    if plan is None:
        raise UsageError(f"job {job['id']}: a DR test job belongs to a plan (dr:PLAN), not to {job['config']!r}")
    if manager.stopping.is_set():
        raise Interrupted(f"the DR test of plan {plan} stopped: strongroom is shutting down")
    dr = manager.disaster_recovery
    run_id = dr.test_dr_plan(plan, wait=False, trigger="schedule")
    stopped = False
    while not dr.done(run_id, STOP_POLL):
        if manager.stopping.is_set() and not stopped:
            stopped = dr.cancel(run_id)
    run = dr.wait(run_id)
    if stopped:
        raise Interrupted(f"the DR test of plan {plan} stopped: strongroom is shutting down")
    stats = {"run": run.id, "verdict": run.verdict, "plan_version": run.plan_version,
             "finished": run.finished.astimezone(timezone.utc).isoformat()}
    if run.verdict == "fail":
        reasons = "; ".join(run.reasons) or "verdict fail"
        raise StrongroomError(f"DR test of plan {plan} failed (run {run.id[:8]}): {one_line(reasons)}")
    warning = "; ".join(run.reasons) if run.verdict != "pass" and run.reasons else None
    return {"stats": stats, "warning": one_line(warning) if warning else None}
