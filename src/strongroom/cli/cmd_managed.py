"""Managed backups by name: what `backup`, `snapshots`, `restore`, `check`,
`forget` and `stats` do with `--config NAME` (plain functions here, which
those commands call), `jobs` and `estimate`; and the old names of 0.1 (run,
points, recover, validate, apply-retention, usage), hidden, each with a
one-line notice on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import click

from strongroom.cli.cmd_manage import Manage, manage_options
from strongroom.cli.output import Reporter, describe_estimate, emit_json, human_size, local_time, rfc3339
from strongroom.engine.progress import event_type, stored_bytes
from strongroom.errors import Interrupted, SnapshotNotFound, StrongroomError, UsageError
from strongroom.model.select import parse_time
from strongroom.services.recovery import RecoveryProgress, create_recovery_service
from strongroom.words import plural

EXIT_PARTIAL = 3
JOB_DONE = ("succeeded", "failed", "cancelled")
SESSION_DONE = ("completed", "failed", "cancelled")


def _when(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else "-"


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _renamed(old: str, new: str) -> None:
    print(f'strongroom: "{old}" is now "{new}"; the old name will be removed in 0.3', file=sys.stderr)


# ---- backup --config -------------------------------------------------------------------


def backup_config(m: Manage, name: str, *, full: bool = False, dry_run: bool = False, priority: int = 0,
                  attempts: int | None = None, no_wait: bool = False, background_child: bool = False) -> int:
    """Back up configuration NAME now, through the job queue; prints the id of the snapshot made.
    With `dry_run`, what `estimate` prints instead: nothing is written."""
    if dry_run:
        if no_wait or attempts or priority:
            raise UsageError("--dry-run runs no job: leave out --no-wait, --priority and --attempts")
        return estimate_config(m, name)
    kind = "full" if full else "incremental"
    if no_wait and not background_child:
        return _start_in_background(m, name, full, priority, attempts)
    with m.manager() as manager:
        if background_child:
            job_id = manager.manual_backup(name, kind, priority, wait=False, max_attempts=attempts).id
            _detach(job_id)
            manager.wait_for_job(job_id)
            return 0
        reporter = Reporter(m.json, "backup", quiet=m.quiet)
        mine: list[int] = []
        known = threading.Event()
        stop = threading.Event()

        def on_event(job_id: int, event: dict) -> None:
            known.wait(5)  # the job may start before its id is returned to us
            if not mine or job_id != mine[0]:
                return
            if stop.is_set():
                raise Interrupted("interrupted")
            if event_type(event) != "summary":
                reporter(event)

        manager.on_job_event = on_event
        try:
            mine.append(manager.manual_backup(name, kind, priority, wait=False, max_attempts=attempts).id)
            known.set()
            job = _follow_job(manager, mine[0], m.json, reporter, stop)
        finally:
            known.set()
            reporter.close()
    return _job_outcome(name, job, m.json)


@click.command(hidden=True)
@manage_options
@click.argument("name")
@click.option("--full", is_flag=True, help="Read every file, trusting no earlier snapshot.")
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first when jobs queue up.")
@click.option("--attempts", type=click.IntRange(1), help="Tries before giving up (default: the config's).")
@click.option("--no-wait", is_flag=True, help="Queue the job, print its id and return; it runs in the background.")
def run(m: Manage, name, full, priority, attempts, no_wait) -> int:
    """Old name of `backup --config NAME`."""
    _renamed("run", "backup --config NAME")
    return backup_config(m, name, full=full, priority=priority, attempts=attempts, no_wait=no_wait)


def _follow_job(manager, job_id: int, json_mode: bool, reporter: Reporter, stop: threading.Event) -> dict:
    """Wait for the job, saying when an attempt failed; Ctrl-C stops it."""
    seen_attempts = 0
    try:
        while True:
            job = manager.catalog.get_job(job_id)
            if job["status"] in JOB_DONE:
                return job
            if job["status"] == "queued" and job["attempts"] > seen_attempts and job["error"]:
                seen_attempts = job["attempts"]
                wait = max(0.0, (job["next_try_at"] or time.time()) - time.time())
                message = (f"attempt {job['attempts']} of {job['max_attempts']} failed: {_first_line(job['error'])}; "
                           f"trying again in {wait:.0f} s")
                reporter({"type": "warning", "message": message})
            time.sleep(0.1)
    except KeyboardInterrupt:
        stop.set()
        print("strongroom: stopping the backup...", file=sys.stderr)
        if manager.catalog.get_job(job_id)["status"] == "queued":
            manager.catalog.update_job(job_id, status="cancelled", error="interrupted", finished_at=time.time())
        manager.wait_for_job(job_id)
        raise Interrupted("interrupted: the backup was stopped") from None


def _job_outcome(name: str, job: dict, json_mode: bool) -> int:
    stats = (job.get("stats") or {}) if job["status"] == "succeeded" else {}
    if json_mode:
        emit_json({"type": "summary", "job": job["id"], "config": name, "kind": job["kind"], "status": job["status"],
                   "snapshot": job["snapshot_id"], "attempts": job["attempts"], "error": job["error"], **stats})
    if job["status"] == "cancelled":
        raise Interrupted("interrupted: the backup was stopped")
    if job["status"] == "failed":
        tries = f" after {job['attempts']} attempts" if job["attempts"] > 1 else ""
        raise StrongroomError(f"backup {name} failed{tries}: {_first_line(job['error'])}")
    unreadable = "could not be read" in (job["error"] or "")
    if not json_mode:
        print(f"files: {stats.get('files_new', 0)} new, {stats.get('files_changed', 0)} changed, "
              f"{stats.get('files_unmodified', 0)} unmodified; read {human_size(stats.get('bytes_read'))} of "
              f"{human_size(stats.get('total_bytes'))}, added {human_size(stored_bytes(stats))} "
              f"in {stats.get('duration', 0):.1f} s")
        if job["error"]:
            print(f"warning: {job['error']}" + ("; see the errors above" if unreadable else ""))
        print(f"snapshot {job['snapshot_id']} ({stats.get('snapshot_kind', job['kind'])})")
        retention = stats.get("retention")
        if retention:
            print(f"retention: removed {plural(len(retention['removed']), 'snapshot')}, kept {retention['kept']}, "
                  f"freed {human_size(retention['bytes_freed'])}")
    return EXIT_PARTIAL if unreadable else 0


def _start_in_background(m: Manage, name: str, full: bool, priority: int, attempts: int | None) -> int:
    """Run the job in a detached child: it queues the job, reports its id on
    stdout and goes on alone, so closing this terminal does not stop it."""
    argv = [sys.executable, "-m", "strongroom", "backup", "--config", name, "--background-child",
            "--priority", str(priority)]
    argv += ["--full"] if full else []
    argv += ["--attempts", str(attempts)] if attempts else []
    argv += ["--catalog", os.path.abspath(m.catalog)] if m.catalog else []
    argv += ["--cache-dir", os.path.abspath(m.cache_dir)] if m.cache_dir else []
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    line = child.stdout.readline().decode().strip()
    if not line.startswith("job "):
        _, err = child.communicate()
        sys.stderr.write(err.decode(errors="replace"))
        return child.returncode or 1
    job_id = int(line.split()[1])
    if m.json:
        emit_json({"type": "summary", "job": job_id, "config": name, "status": "queued"})
    else:
        print(f"job {job_id} queued; follow it with `strongroom jobs {name}`")
    return 0


def _detach(job_id: int) -> None:
    """In the background child: say which job, then let go of the parent's pipes."""
    sys.stdout.write(f"job {job_id}\n")
    sys.stdout.flush()
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)


# ---- jobs -------------------------------------------------------------------------------


@click.command()
@manage_options
@click.argument("name", required=False)
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]),
              help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="Show this many, newest first.")
def jobs(m: Manage, name, status, limit) -> None:
    """The job queue and history (of configuration NAME, or all)."""
    with m.manager() as manager:
        found = manager.catalog.list_jobs(config=name, status=status, limit=limit)
    if m.json:
        for job in found:
            emit_json({"type": "job", **job})
        emit_json({"type": "summary", "count": len(found)})
        return
    print(f"{'ID':>5}  {'Config':16}  {'Kind':11}  {'Pri':>3}  {'Status':9}  {'Tries':5}  {'Queued':19}  "
          f"{'Took':>7}  {'Snapshot':8}  Error")
    for j in found:
        took = f"{j['finished_at'] - j['started_at']:.1f} s" if j["finished_at"] and j["started_at"] else "-"
        print(f"{j['id']:>5}  {j['config'][:16]:16}  {j['kind']:11}  {j['priority']:>3}  {j['status']:9}  "
              f"{j['attempts']}/{j['max_attempts']:<3}  {_when(j['queued_at']):19}  {took:>7}  "
              f"{(j['snapshot_id'] or '-')[:8]:8}  {_first_line(j['error'])}")
    print(plural(len(found), "job"))


# ---- snapshots --config ------------------------------------------------------------------


def snapshots_config(m: Manage, name: str | None, since: str | None = None, until: str | None = None, *,
                     json_lines: bool = False) -> None:
    """The snapshots of configuration `name` (of all when None), oldest first.
    `--json` prints one array, as `snapshots --json` does; `json_lines` is the
    old `points --json`, an object per line and a summary."""
    with m.manager() as manager:
        service = create_recovery_service(manager.backup_service)
        found = service.list_recovery_points(name, parse_time(since) if since else None,
                                             parse_time(until) if until else None)
    if m.json and json_lines:
        for p in found:
            emit_json({"type": "point", **p.to_dict()})
        emit_json({"type": "summary", "count": len(found)})
        return
    if m.json:
        print(json.dumps([_snapshot_doc(p) for p in found], sort_keys=True))
        return
    print(f"{'ID':8}  {'Time':19}  {'Config':16}  {'Kind':11}  {'Files':>7}  {'Size':>10}  Tags")
    for p in found:
        print(f"{p.id[:8]}  {local_time(p.time)}  {p.config_name[:16]:16}  {p.kind:11}  "
              f"{p.total_files:>7}  {human_size(p.total_bytes):>10}  {','.join(p.tags)}")
    print(plural(len(found), "snapshot"))


def _snapshot_doc(p) -> dict:
    """restic's names where restic has the field; `time` is RFC 3339 (the snapshot's own offset)."""
    return {"id": p.id, "short_id": p.id[:8], "time": p.time.isoformat(), "hostname": p.hostname,
            "paths": list(p.paths), "tags": list(p.tags), "config": p.config_name, "kind": p.kind,
            "total_files": p.total_files, "total_bytes": p.total_bytes}


@click.command(hidden=True)
@manage_options
@click.argument("name", required=False)
@click.option("--since", help="Only snapshots taken at or after this time (YYYY-MM-DD [HH:MM[:SS]] or ISO 8601).")
@click.option("--until", help="Only snapshots taken at or before this time.")
def points(m: Manage, name, since, until) -> None:
    """Old name of `snapshots --config NAME`."""
    _renamed("points", "snapshots --config NAME" if name else "snapshots --configs")
    snapshots_config(m, name, since, until, json_lines=True)


# ---- restore --config ----------------------------------------------------------------------


def restore_config(m: Manage, name: str, target: str, *, snapshot: str | None = None, at: str | None = None,
                   include=(), exclude=(), verify: bool = True) -> int:
    """Restore configuration NAME (its latest snapshot, the one `at` a time, or
    `snapshot`: an id or unique prefix) into `target`, reading it back unless not `verify`."""
    if snapshot == "latest":
        snapshot = None
    if snapshot and ":" in snapshot:
        raise UsageError("with --config, SNAPSHOT is an id or `latest`: restore a part with --include")
    if at and snapshot:
        raise UsageError("give --at or a snapshot id, not both")
    with m.manager() as manager:
        service = create_recovery_service(manager.backup_service)
        plan = service.executor.create_recovery_plan(name, snapshot, parse_time(at) if at else None,
                                                     os.path.abspath(target), include, exclude, verify=verify)
        if m.json:
            emit_json({"type": "plan", **plan.to_dict()})
        else:
            print(f"restoring snapshot {plan.point_id[:8]} ({local_time(plan.point_time)}) "
                  f"of {name} into "
                  f"{plan.target_path}: {plan.files} files, {human_size(plan.bytes)}", file=sys.stderr)
        session_id = service.executor.execute_recovery(plan)
        try:
            progress = _follow_session(service, session_id, m.json)
        except KeyboardInterrupt:
            service.cancel_recovery(session_id)
            service.wait(session_id)
            raise Interrupted("interrupted: the restore was cancelled") from None
    if m.json:
        emit_json({"type": "summary", "session": session_id, "config": name, "point": plan.point_id,
                   "target": plan.target_path, **_progress_doc(progress), "errors": list(progress.errors)})
    if progress.status == "cancelled":
        raise Interrupted("the restore was cancelled")
    if progress.status == "failed":
        if len(progress.errors) == 1:
            raise StrongroomError(f"restore of {name} failed: {progress.errors[0]}")
        for error in progress.errors[:50]:
            print(f"strongroom: error: {error}", file=sys.stderr)
        raise StrongroomError(f"restore of {name} failed: {len(progress.errors)} errors")
    if not m.json:
        checked = ", verified" if plan.verify else ""
        print(f"restored snapshot {plan.point_id[:8]} into {plan.target_path}: "
              f"{progress.processed_files} files, {human_size(progress.processed_bytes)}{checked} "
              f"in {progress.elapsed:.1f} s")
    return 0


@click.command(hidden=True)
@manage_options
@click.argument("name")
@click.option("-t", "--target", required=True, type=click.Path(file_okay=False), help="Directory to restore into.")
@click.option("--at", help="The newest snapshot at or before this time, instead of the latest.")
@click.option("--point", "point_id", help="This snapshot (an id or a unique prefix).")
@click.option("-i", "--include", multiple=True, metavar="GLOB", help="Restore only matching paths.")
@click.option("-e", "--exclude", multiple=True, metavar="GLOB", help="Leave out matching paths.")
@click.option("--no-verify", is_flag=True, help="Do not read the restored files back to check them.")
def recover(m: Manage, name, target, at, point_id, include, exclude, no_verify) -> int:
    """Old name of `restore --config NAME`."""
    _renamed("recover", "restore --config NAME")
    if at and point_id:
        raise UsageError("give --at or --point, not both")
    return restore_config(m, name, target, snapshot=point_id, at=at, include=include, exclude=exclude,
                          verify=not no_verify)


def _progress_doc(p: RecoveryProgress) -> dict:
    return {"status": p.status, "processed_files": p.processed_files, "total_files": p.total_files,
            "processed_bytes": p.processed_bytes, "total_bytes": p.total_bytes, "percent": p.percent,
            "rate": round(p.rate), "eta": p.eta}


def _follow_session(service, session_id: str, json_mode: bool) -> RecoveryProgress:
    """Show the session's progress until it ends: JSON status lines, or a bar on a terminal."""
    reporter = None if json_mode else Reporter(False, "restore")
    last = None
    try:
        while True:
            # Sleep rather than join the restore thread with a timeout: a join
            # that Ctrl-C interrupts can leave the thread looking finished.
            progress = service.get_recovery_progress(session_id)
            doc = _progress_doc(progress)
            if doc != last:
                last = doc
                if json_mode:
                    emit_json({"type": "status", "action": "recover", **doc})
                else:
                    reporter({"type": "status", "bytes_done": progress.processed_bytes,
                              "total_bytes": progress.total_bytes, "files_done": progress.processed_files})
            if progress.status in SESSION_DONE:
                return service.wait(session_id)  # its last catalog update included
            time.sleep(0.2)
    finally:
        if reporter is not None:
            reporter.close()


# ---- check --config -------------------------------------------------------------------------


def check_config(m: Manage, name: str, *, read_data: bool = False, snapshot: str | None = None) -> int:
    """Check that the latest snapshot of NAME (or `snapshot`) is complete on its target;
    with `read_data`, read its packs and authenticate every blob it needs."""
    with m.manager() as manager:
        if snapshot:
            _, _, snap = manager.backup_service.find_snapshot(snapshot, name)
        else:
            snaps = manager.backup_service.snapshots(manager.get_config(name))
            if not snaps:
                raise SnapshotNotFound(f"config {name} has no snapshots yet")
            snap = snaps[-1]
        report = manager.validator.validate_backup(snap.id, deep=read_data)
    if m.json:
        emit_json({"type": "summary", **report.to_dict()})
    else:
        for warning in (*report.warnings, *report.advice):
            print(f"warning: {warning}")
        for problem in report.problems:
            print(f"damaged: {problem}")
        read = f", read {report.packs_read} packs and authenticated {report.blobs_authenticated} blobs" \
            if report.deep else ""
        print(f"snapshot {report.backup_id[:8]} of {name}: {report.blobs_checked} blobs in "
              f"{report.packs_checked} packs{read}")
        print("no problems were found" if report.ok else f"{plural(len(report.problems), 'problem')} found")
    return 0 if report.ok else 1


@click.command(hidden=True)
@manage_options
@click.argument("name")
@click.option("--deep", is_flag=True, help="Read the packs and authenticate every blob the snapshot needs.")
@click.option("--point", "point_id", help="This snapshot instead of the latest.")
def validate(m: Manage, name, deep, point_id) -> int:
    """Old name of `check --config NAME`."""
    _renamed("validate", "check --config NAME")
    return check_config(m, name, read_data=deep, snapshot=point_id)


# ---- stats --config / --configs ------------------------------------------------------------


def stats_configs(m: Manage, name: str | None, *, trend: bool = False, days: float = 90) -> int:
    """Storage used by configuration `name` (all when None): restore size,
    stored size, ratios, snapshots and the space left on each target; with
    `trend`, the growth from the samples of the last `days` days."""
    if trend:
        return _usage_trend(m, days, name)
    with m.manager() as manager:
        if name is None:
            result = manager.storage.get_storage_usage().to_dict()
        else:
            one = manager.storage.usage_of(manager.get_config(name)).to_dict()
            result = {"configs": {name: one}, "total": None, "errors": {},
                      "targets": {one["target"]["url"]: {k: v for k, v in one["target"].items() if k != "url"}}}
    if m.json:
        emit_json({"type": "summary", **(result if name is None else result["configs"][name])})
    else:
        print(f"{'Config':20}  {'Snapshots':>9}  {'Restore size':>12}  {'Stored':>10}  {'Repository':>10}  "
              f"{'Dedup':>6}  {'Compr.':>6}")
        for config, u in result["configs"].items():
            print(f"{config[:20]:20}  {u['snapshots']:>9}  {human_size(u['restore_size']):>12}  "
                  f"{human_size(u['stored_size']):>10}  {human_size(u['repository_size']):>10}  "
                  f"{u['dedup_ratio'] or '-':>6}  {u['compression_ratio'] or '-':>6}")
        t = result["total"]
        if t is not None:
            print(f"{'total':20}  {t['snapshots']:>9}  {human_size(t['restore_size']):>12}  "
                  f"{human_size(t['stored_size']):>10}  {human_size(t['repository_size']):>10}")
        for url, space in result["targets"].items():
            print(f"target {url}: {_space(space)}")
    for config, error in result["errors"].items():
        print(f"strongroom: {config}: {error}", file=sys.stderr)
    return 1 if result["errors"] else 0


@click.command(hidden=True)
@manage_options
@click.option("--trend", is_flag=True, help="Growth per day and week from the samples, and when the target fills.")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=90, show_default=True,
              help="With --trend: the samples of this many days.")
@click.option("--config", "config_name", metavar="NAME", help="With --trend: this configuration only.")
def usage(m: Manage, trend, days, config_name) -> int:
    """Old name of `stats --configs` and `stats --config NAME`."""
    _renamed("usage", "stats --configs" if not config_name else "stats --config NAME")
    if config_name and not trend:
        raise UsageError("--config goes with --trend")
    return stats_configs(m, config_name, trend=trend, days=days)


def _space(space: dict) -> str:
    if space.get("used") is None and space.get("available") is None:
        return "the target does not report its space"
    return f"{human_size(space.get('used'))} used, {human_size(space.get('available'))} available"


def _growth(per_day) -> str:
    return "-" if per_day is None else ("+" if per_day >= 0 else "-") + human_size(abs(per_day))


def _usage_trend(m: Manage, days: float, config_name: str | None) -> int:
    with m.manager() as manager:
        if config_name:
            manager.get_config(config_name)  # an unknown name is an error, not an empty trend
        trend = manager.storage.get_storage_trend(config_name, days).to_dict()
    if m.json:
        for name, c in trend["configs"].items():
            emit_json({"type": "config", **c})
        emit_json({"type": "summary", "days": trend["days"], "targets": trend["targets"]})
        return 0
    if not trend["configs"]:
        print(f"no storage samples in the last {days:g} days: they are taken after every backup")
        return 0
    print(f"{'Config':20}  {'Samples':>7}  {'Repository':>10}  {'Per day':>11}  {'Per week':>11}")
    for name, c in trend["configs"].items():
        line = c["trend"]
        print(f"{name[:20]:20}  {len(c['samples']):>7}  {human_size(line['repository_size']):>10}  "
              f"{_growth(line['growth_per_day']):>11}  {_growth(line['growth_per_week']):>11}")
    for url, target in trend["targets"].items():
        t = target["trend"]
        if t["growth_per_day"] is None:
            outlook = "no trend yet: the samples must span an hour or more"
        elif t["available"] is None:
            outlook = "the target does not report its free space"
        elif t.get("not_filling"):
            outlook = f"{human_size(t['available'])} free, not filling"
        else:
            outlook = f"{human_size(t['available'])} free, full in about {t['full_in_days']} days " \
                      f"({t['projected_full'] or 'far beyond'})"
        print(f"target {url} ({', '.join(target['configs'])}): {_growth(t['growth_per_day'])} per day; {outlook}")
    return 0


# ---- forget --config, and estimates ---------------------------------------------------------


def forget_config(m: Manage, name: str, *, dry_run: bool = False, prune: bool = False) -> int:
    """Apply the retention policy of configuration NAME to its snapshots now."""
    with m.manager() as manager:
        result = manager.storage.apply_retention(name, prune=prune, dry_run=dry_run)
    if m.json:
        for d in result.decisions:
            emit_json({"type": "point", **d.to_dict()})
        emit_json({"type": "summary", **{k: v for k, v in result.to_dict().items() if k != "decisions"}})
        return 0
    for d in result.decisions:
        verdict = "keep  " if d.keep else "remove"
        print(f"  {verdict} {d.snapshot_id[:8]}  {local_time(d.time)}  {', '.join(d.reasons)}")
    gone = sum(not d.keep for d in result.decisions)
    print(f"{'would remove' if dry_run else 'removed'} {gone} snapshot{'' if gone == 1 else 's'} of {name}, "
          f"kept {result.kept}")
    if result.pruned:
        print(f"{'would free' if dry_run else 'freed'} {human_size(result.bytes_freed)}")
    return 0


@click.command("apply-retention", hidden=True)
@manage_options
@click.argument("name")
@click.option("-n", "--dry-run", is_flag=True, help="List what would be kept and removed, and why.")
@click.option("--prune", is_flag=True, help="Prune afterwards, freeing the space of what was removed.")
def apply_retention(m: Manage, name, dry_run, prune) -> int:
    """Old name of `forget --config NAME`."""
    _renamed("apply-retention", "forget --config NAME")
    return forget_config(m, name, dry_run=dry_run, prune=prune)


def estimate_config(m: Manage, name: str) -> int:
    """What the next backup of NAME would read, store, ask of the target and take
    (a dry run: nothing is written)."""
    with m.manager() as manager:
        result = manager.storage.estimate_space_needed(name).to_dict()
    if m.json:
        emit_json({"type": "summary", **result})
    else:
        print(f"files: {result['files_new']} new, {result['files_changed']} changed")
        print(describe_estimate(result))
    return EXIT_PARTIAL if result["errors"] else 0


@click.command()
@manage_options
@click.argument("name")
def estimate(m: Manage, name) -> int:
    """What the next backup of NAME would read, store, ask of the target and take
    (a dry run: nothing is written; the same as `backup --config NAME --dry-run`)."""
    return estimate_config(m, name)


COMMANDS = [run, jobs, points, recover, validate, usage, apply_retention, estimate]
