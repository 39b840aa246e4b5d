"""`strongroom status`: every configuration with its last success, next run,
the age of its newest point, whether it is overdue, and its size."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import click

from strongroom.cli.cmd_manage import Manage, manage_options
from strongroom.cli.cmd_schedule import local_text, rfc3339
from strongroom.cli.output import emit_json_array, human_duration, human_size, terminal_safe
from strongroom.schedule.spec import system_zone
from strongroom.services.status import RED, ConfigStatus, VerificationStatus, all_statuses, verification_statuses
from strongroom.words import plural


def status_doc(s: ConfigStatus, zone) -> dict:
    """One configuration's status as `status --json` prints it."""
    def when(moment):
        return rfc3339(moment, zone) if moment else None
    return {
        "config": s.name, "status": s.status, "reason": s.reason, "overdue": s.overdue,
        "overdue_after_seconds": s.overdue_after_seconds,
        "last_run": {"time": when(s.last_run.time), "status": s.last_run.status, "error": s.last_run.error}
        if s.last_run else None,
        "last_success": when(s.last_success), "snapshot_id": s.snapshot_id, "next_run": when(s.next_run),
        "newest_point_age_seconds": s.newest_point_age_seconds, "size_bytes": s.size_bytes,
        "restore_size_bytes": s.restore_size_bytes, "size_sampled_at": when(s.sampled_at),
        "last_copy": when(s.last_copy), "copy_error": s.copy_error,
    }


def verification_doc(v: VerificationStatus, zone) -> dict:
    """A scheduled check or DR test as `status --json` prints it (in `checks`)."""
    return {"kind": v.kind, "schedule": v.schedule, "subset": v.subset, "next_run": rfc3339(v.next_run, zone),
            "last_run": {"time": rfc3339(v.last_run.time, zone), "status": v.last_run.status,
                         "error": v.last_run.error} if v.last_run else None}


@click.command("status")
@manage_options
@click.option("--check", "check", is_flag=True,
              help="Exit 1 when a configuration is red (failed or overdue).")
def status(m: Manage, check) -> None:
    """Each configuration: last success, next run, overdue, size.

    All from the catalog, without opening a repository (fast, and it works
    with the targets offline): the last run, the last success and the
    newest point from the job history, the size (stored, after dedup and
    compression) from the storage sample taken after the newest run, the
    next run from the schedules. A point made without the catalog is not
    seen. Overdue: no success within 1.5 times the schedule's longest gap
    between runs (a cron expression's longest over the next 8 days, every
    D: D, daily-since-last: 24 h), plus any window's closed hours and
    random delay; never without a schedule.

    Red: the last run failed, or overdue. Amber: never backed up, the last
    run warned or was cancelled, or no schedule and the newest point older
    than 7 days. Green: the rest. Exit 0 whatever the colours (1 with
    --check when any is red); an unreadable catalog is an error.

    Scheduled checks and DR tests are listed below the configurations with
    their last scheduled outcome (in --json, a configuration's `checks`);
    only backups make a configuration's colour."""
    zone = system_zone()
    now = datetime.fromtimestamp(time.time(), timezone.utc)
    with m.manager() as manager:
        statuses = all_statuses(manager.catalog, manager.list_configs(), now, zone)
        checks = verification_statuses(manager.catalog, now, zone)
    if m.json:
        docs = [status_doc(s, zone) for s in statuses]
        for doc in docs:
            doc["checks"] = [verification_doc(v, zone) for v in checks if v.kind == "check" and v.name == doc["config"]]
        emit_json_array(docs)
    else:
        print(f"{'Config':20}  {'Status':6}  {'Last success':25}  {'Next run':25}  {'Newest':10}  "
              f"{'Size':10}  Reason")
        for s in statuses:
            last = local_text(s.last_success, zone) if s.last_success else "never"
            following = local_text(s.next_run, zone) if s.next_run else "no schedule"
            age = human_duration(s.newest_point_age_seconds)
            print(f"{terminal_safe(s.name)[:20]:20}  {s.status:6}  {last:25}  {following:25}  {age:10}  "
                  f"{human_size(s.size_bytes):10}  {terminal_safe(s.reason)}")
            if s.last_copy or s.copy_error:
                copied = local_text(s.last_copy, zone) if s.last_copy else "never"
                print(f"{'':20}  second target: last copy {copied}"
                      + (f"; the last copy failed: {terminal_safe(s.copy_error)}" if s.copy_error else ""))
        red = sum(s.status == RED for s in statuses)
        print(plural(len(statuses), "configuration") + (f", {red} red" if red else ""))
        if checks:
            print(f"\n{'Checked':20}  {'Kind':8}  {'Next run':25}  {'Last run':25}  Outcome")
            for v in checks:
                last = local_text(v.last_run.time, zone) if v.last_run else "never"
                outcome = "-"
                if v.last_run:
                    outcome = v.last_run.status + (f": {v.last_run.error.splitlines()[0]}" if v.last_run.error else "")
                kind = "check" if v.kind == "check" else "DR test"
                print(f"{terminal_safe(v.name)[:20]:20}  {kind:8}  {local_text(v.next_run, zone):25}  {last:25}  "
                      f"{terminal_safe(outcome)}")
    if check and any(s.status == RED for s in statuses):
        click.get_current_context().exit(1)


COMMANDS = [status]
