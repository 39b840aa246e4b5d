"""The backup manager: named configurations, a job queue, history, statistics,
validation and storage accounting."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from strongroom.engine.check import run_check
from strongroom.engine.estimate import RECENT, estimate_backup, run_summaries
from strongroom.engine.progress import stored_bytes
from strongroom.engine.forget import plan_forget, remove_snapshots
from strongroom.engine.prune import plan_prune, run_prune
from strongroom.engine.stats import repository_stats
from strongroom.errors import (IntegrityError, Interrupted, RepositoryNotFound, ShuttingDown, StrongroomError,
                               UsageError, WrongPassword)
from strongroom.model.retention import Duration, Policy
from strongroom.notify import events as notify_events
from strongroom.notify.channels import ChannelSpec, add_channel, remove_channel
from strongroom.notify.notifier import Notifier
from strongroom.repo.repository import Repository
from strongroom.services.backup_service import BackupService
from strongroom.services.configs import BackupConfig
from strongroom.services.jobs import BACKUP_KINDS, JobQueue, current_owner
from strongroom.services.stored_configs import import_configs, merge_stored, stored_copy
from strongroom.services.results import (BackupResult, BackupStatistics, CleanupResult, ConfigTrend, CopyResult,
                                         Estimate,
                                         Job, JobHandle, RetentionDecision, RetentionResult, StorageTrend,
                                         StorageUsage, TargetSpace, TargetTrend, TrendLine, UsageReport,
                                         UsageSample, UsageTotals, ValidationReport, utc)
from strongroom.words import plural

if TYPE_CHECKING:
    from strongroom.dr.manager import DisasterRecoveryManager
    from strongroom.services.catalog import Catalog
    from strongroom.services.secrets import SecretsStore
    from strongroom.services.status import ConfigStatus
    from strongroom.services.webdav_service import WebDAVService

# Called with every engine event of a backup: the same events `--json` prints (docs/json.md).
Progress = Callable[[dict], None]


class BackupValidator:
    """Checks that everything one recovery point needs is on the target.

    Quick: every tree and chunk is indexed and every pack is there with its
    size. Deep (or a sampled share of the packs): the packs are read and each
    needed blob is authenticated. It is `check` scoped to the point's
    snapshot; the repository's keys, config and index are checked too.
    """

    def __init__(self, service: BackupService) -> None:
        self.service = service
        # Told of every report (the manager sends it to the notification
        # channels); what it raises is ignored.
        self.on_report: Callable[[ValidationReport], None] | None = None

    def validate_backup(self, backup_id: str, deep: bool = False, sample: float | None = None) -> ValidationReport:
        """`sample` is a share of the point's packs to read (0 < sample <= 1), rounded up."""
        if sample is not None and not 0 < sample <= 1:
            raise UsageError(f"sample must be a share of the packs, more than 0 and at most 1, not {sample}")
        started = time.monotonic()
        config, repo, snap = self.service.find_snapshot(backup_id)
        # Fixed point: check reads "N%", which a tiny share in exponent form (1e-05%) is not.
        subset = None if deep or not sample else f"{sample * 100:.12f}%"
        kit = self.service.catalog.kit_on_record(repo.config.id, repo.key_id)
        checked = run_check(repo, read_data=deep, subset=subset, kit_on_record=kit, snapshots=[snap])
        counts = checked.counts
        report = ValidationReport(
            snap.id, config.name, deep or bool(sample), ok=checked.ok, blobs_checked=counts["blobs"],
            packs_checked=counts["packs"], packs_read=counts.get("packs_read", 0),
            blobs_authenticated=counts.get("blobs_authenticated", 0),
            problems=tuple(_problem_line(p) for p in checked.problems), warnings=tuple(checked.warnings),
            advice=tuple(checked.advice), duration=round(time.monotonic() - started, 3))
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception:
                pass  # a notification never changes the report
        return report

    def batch_validate(self, backup_ids: list[str], deep: bool = False,
                       sample: float | None = None) -> dict[str, ValidationReport]:
        """Validate each snapshot; one that cannot be found or read is a report with ok False."""
        reports = {}
        for backup_id in backup_ids:
            try:
                reports[backup_id] = self.validate_backup(backup_id, deep, sample)
            except StrongroomError as e:
                reports[backup_id] = ValidationReport(backup_id, "", deep, ok=False, problems=(str(e),))
        return reports


def _problem_line(problem: dict) -> str:
    """A problem check found, as one line that names a pack by its short id."""
    message = problem["message"]
    if not problem.get("pack"):
        return f"{problem['object']}: {message}"
    pack = f"pack {problem['pack'][:16]}"
    return f"{pack} {message[len('pack '):]}" if message.startswith("pack ") else f"{pack}: {message}"


class StorageManager:
    """Storage accounting per configuration, a sample after every run, the
    trend those samples show, retention and estimates."""

    def __init__(self, service: BackupService) -> None:
        self.service = service

    def usage_of(self, config: BackupConfig, repo: Repository | None = None) -> StorageUsage:
        """Accounting of one configuration; `repo`, when given, is an open
        repository of it whose index is current (the one a run just used).
        Pack sizes come from the index: on WebDAV, listing every pack folder
        would cost more requests than the run itself."""
        repo = repo or self.service.open_repository(config)
        snaps = self.service.snapshots(config, repo)
        total = repository_stats(repo, snaps, list_target=False)
        space = total["target"]
        return StorageUsage(
            config.name, len(snaps), total["latest_restore_size"], total["unique_size"],
            total["unique_stored_size"], total["repository_size"], total["packs"], total["data_blobs"],
            total["tree_blobs"], total["dedup_ratio"], total["compression_ratio"],
            TargetSpace(repo.storage.url, space.get("used"), space.get("available"), space.get("total")))

    def record_sample(self, config: BackupConfig, repo: Repository | None = None) -> StorageUsage:
        """Take the usage of `config` now and keep it in the catalog as a sample for trends."""
        usage = self.usage_of(config, repo)
        self.service.catalog.add_sample(config.name, usage.sample())
        return usage

    # ---- retention ---------------------------------------------------------------------

    def apply_retention(self, config: BackupConfig | str, policy: Policy | None = None, prune: bool = False,
                        dry_run: bool = False, record: bool = True,
                        stop: Callable[[], bool] | None = None) -> RetentionResult:
        """Forget this configuration's points that `policy` (by default the
        configuration's own) does not keep, then prune if asked. Only the
        configuration's own points are looked at, as one group. A storage
        sample is recorded afterwards when something changed and `record`.
        `stop`, when it turns true, ends a wait for the repository's lock."""
        if isinstance(config, str):
            config = self.service.get_config(config)
        policy = policy if policy is not None else config.policy
        if policy.empty:
            raise UsageError(f"config {config.name} has no retention policy: give one with "
                             f"`strongroom config edit {config.name} --keep-daily N ...`")
        with self.service.repo_lock(config):
            repo = self.service.open_repository(config)
            with repo.lock(exclusive=not dry_run, wait=60, stop=stop):
                points = self.service.snapshots(config, repo)
                plan = plan_forget(points, policy, group_by=())
                removed = [] if dry_run else remove_snapshots(repo, plan)
                if prune:
                    # The points kept here must be in prune's own listing, or it stops.
                    prune_plan = plan_prune(repo, must_see={s.id for s in points} - set(removed))
                    pruned = prune_plan.summary() if dry_run else run_prune(repo, prune_plan)
                else:
                    pruned = None
        decisions = tuple(RetentionDecision(snap.id, snap.datetime.astimezone(timezone.utc), d.keep,
                                            tuple(d.reasons))
                          for group in plan for snap, d in group.decisions)
        pruned = pruned or {}
        result = RetentionResult(config.name, dry_run, decisions, tuple(removed), sum(d.keep for d in decisions),
                                 prune, int(pruned.get("bytes_freed") or 0), int(pruned.get("packs_deleted") or 0),
                                 int(pruned.get("packs_repacked") or 0), pruned or None)
        if record and not dry_run and (removed or pruned):
            try:
                self.record_sample(config)
            except StrongroomError:
                pass
        return result

    def cleanup_old_backups(self, config: BackupConfig | str, keep_count: int | None = None,
                            keep_days: int | None = None) -> CleanupResult:
        """Forget the points of one configuration beyond the newest `keep_count`
        and older than `keep_days` before its newest point (a point either rule
        keeps stays), then prune. Returns what was removed and the space freed."""
        if not keep_count and not keep_days:
            raise UsageError("cleanup needs keep_count or keep_days (at least one point is always kept)")
        policy = Policy(last=keep_count or 0, within=Duration(days=keep_days) if keep_days else None)
        result = self.apply_retention(config, policy, prune=True)
        return CleanupResult(result.config_name, result.removed, result.kept, result.bytes_freed,
                             result.packs_deleted, result.packs_repacked)

    # ---- accounting --------------------------------------------------------------------

    def get_storage_usage(self) -> UsageReport:
        """The usage of every configuration; one that cannot be read is in `errors`, not left out silently."""
        per_config: dict[str, StorageUsage] = {}
        errors: dict[str, str] = {}
        for config in self.service.list_configs():
            try:
                per_config[config.name] = self.usage_of(config)
            except StrongroomError as e:
                errors[config.name] = str(e)
        usages = per_config.values()
        # Configurations sharing a repository share its packs: count each repository once.
        repos = {u.target.url: u for u in usages}
        total = UsageTotals(sum(u.snapshots for u in usages), sum(u.restore_size or 0 for u in usages),
                            sum(u.unique_size or 0 for u in usages), sum(u.stored_size or 0 for u in usages),
                            sum(u.repository_size or 0 for u in repos.values()))
        return UsageReport(total, per_config, {url: u.target for url, u in repos.items()}, errors)

    def get_storage_trend(self, config: str | None = None, days: float = 90.0,
                          min_span: float = 3600.0) -> StorageTrend:
        """Growth per day and week from the samples of the last `days` days, and
        where the target reports its free space, the day it would be full.

        Growth is the least-squares slope of the repository size over the
        samples, so one prune or one big first run does not dominate it; the
        samples must span `min_span` seconds before there is a trend at all.
        Configurations sharing a repository are fitted together per target."""
        since = self.service.catalog.now() - days * 86400 if days else None
        samples = self.service.catalog.list_samples(config, since=since)
        by_config: dict[str, list[dict]] = defaultdict(list)
        for sample in samples:
            by_config[sample["config"]].append(sample)
        configs = {}
        for name, rows in by_config.items():
            series = [{"time": r["time"], "repository_size": r.get("repository_size"),
                       "stored_size": r.get("stored_size"), "restore_size": r.get("restore_size"),
                       "points": r.get("points"), "target_used": (r.get("target") or {}).get("used"),
                       "target_available": (r.get("target") or {}).get("available")} for r in rows]
            configs[name] = {"samples": series, "target": (rows[-1].get("target") or {}).get("url"),
                             "fit": _fit(series, min_span)}
        # Configurations sharing a repository sample the same repository: its
        # trend is fitted over all their samples together.
        by_target: dict[str, list[dict]] = defaultdict(list)
        for name, c in configs.items():
            if c["target"]:
                by_target[c["target"]].extend({**r, "config": name} for r in c["samples"])
        targets = {}
        for url, rows in by_target.items():
            rows.sort(key=lambda r: r["time"])
            targets[url] = TargetTrend(url, tuple(sorted({r["config"] for r in rows})), _fit(rows, min_span))
        typed = {name: ConfigTrend(name, c["target"], tuple(_sample(r) for r in c["samples"]), c["fit"])
                 for name, c in configs.items()}
        return StorageTrend(days, typed, targets)

    # ---- estimates ---------------------------------------------------------------------

    def estimate_space_needed(self, config: BackupConfig | str) -> Estimate:
        """What the next run of `config` would read and likely store, the
        requests it would make and how long it would take at the rates its
        earlier runs showed: a dry run against the index, nothing written."""
        if isinstance(config, str):
            config = self.service.get_config(config)
        repo, result = self.service.run_backup(config, "incremental", dry_run=True)
        # The catalog remembers runs whose points retention has removed since.
        jobs = self.service.catalog.list_jobs(config=config.name, status="succeeded", limit=RECENT,
                                              kinds=BACKUP_KINDS)
        history = [job["stats"] for job in reversed(jobs) if job.get("stats")] \
            or run_summaries(self.service.snapshots(config, repo))
        e = estimate_backup(repo, result.summary, history)
        return Estimate(config.name, result.summary["files_new"], result.summary["files_changed"],
                        len(result.errors), e["bytes_to_read"], e["new_bytes"], e["bytes_likely_stored"],
                        e["compression_ratio"], e["compression_ratio_from"], e["packs"], e["requests"],
                        e["read_bytes_per_second"], e["store_bytes_per_second"], e["request_budget_per_second"],
                        e["seconds"], dict(repo.requests))


def _sample(r: dict) -> UsageSample:
    return UsageSample(utc(r["time"]), r["repository_size"], r["stored_size"], r["restore_size"], r["points"],
                       r["target_used"], r["target_available"])


def _fit(series: list[dict], min_span: float) -> TrendLine:
    """Growth and outlook of a time-ordered series of samples."""
    growth = _slope([(r["time"], r["repository_size"]) for r in series if r["repository_size"] is not None],
                    min_span)
    last = series[-1]
    outlook = _projection(last["time"], last["target_available"], growth)
    return TrendLine(round((last["time"] - series[0]["time"]) / 86400, 3),
                     round(growth * 86400) if growth is not None else None,
                     round(growth * 86400 * 7) if growth is not None else None,
                     last["repository_size"], last["target_available"], outlook["full_in_days"],
                     outlook["projected_full"], outlook.get("not_filling", False))


def _slope(points: list[tuple[float, float]], min_span: float = 0.0) -> float | None:
    """Least-squares bytes per second; None with fewer than two samples or
    samples spanning less than `min_span` seconds."""
    if len(points) < 2 or max(t for t, _ in points) - min(t for t, _ in points) < max(min_span, 1e-9):
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / var


def _projection(last_time: float, available: int | None, growth: float | None) -> dict:
    """When `available` bytes run out at `growth` bytes per second."""
    if available is None or growth is None:
        return {"full_in_days": None, "projected_full": None}
    if growth <= 0:
        return {"full_in_days": None, "projected_full": None, "not_filling": True}
    seconds = available / growth
    when = datetime.fromtimestamp(last_time + seconds, timezone.utc) if seconds < 1e11 else None
    return {"full_in_days": round(seconds / 86400, 1), "projected_full": when.date() if when else None}


class BackupManager:
    """The one object of the API: named configurations, manual backups through
    the job queue, history, statistics, validation (`validator`) and storage
    accounting (`storage`). Make it with `create_backup_manager`; `close()` it
    (or use it in a `with` block) to stop its workers."""

    def __init__(self, catalog: Catalog, webdav_service: WebDAVService, secrets: SecretsStore, cache_root: str | None = None,
                 max_concurrent_jobs: int = 2, retry_delay: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.catalog = catalog
        self.webdav_service = webdav_service
        self.backup_service = BackupService(catalog, webdav_service, secrets, cache_root,
                                            settings=webdav_service.settings)
        self.validator = BackupValidator(self.backup_service)
        self.storage = StorageManager(self.backup_service)
        # Set when the process shuts down (the daemon's SIGTERM): a running job
        # stops at its next chunk and goes back to the queue, to resume at
        # the next start (the packs it stored are indexed or adopted then).
        self.stopping = threading.Event()
        self.queue = JobQueue(catalog, self._run_job, max_concurrent_jobs, retry_delay, stopping=self.stopping)
        # The notification channels in the catalog hear of every run's final
        # outcome; `clock` is the time the alert policy reasons with.
        self.notifier = Notifier(catalog, secrets, clock)
        self.queue.on_outcome = self._notify_outcome
        self.validator.on_report = self._notify_validation
        # Called as on_job_event(job_id, event) with every engine event of a running
        # backup (progress, unreadable files); an exception it raises stops that backup.
        self.on_job_event: Callable[[int, dict], None] | None = None
        self._progress: dict[int, Progress] = {}
        self._progress_lock = threading.Lock()
        # Jobs asked to stop (cancel_job): each one's listener checks, as it
        # checks `stopping`, and the job ends cancelled instead of queued again.
        self._cancelled: set[int] = set()
        self._dr = None
        self._dr_lock = threading.Lock()

    def __enter__(self) -> BackupManager:
        """The manager itself; leaving the block closes it."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- configurations ------------------------------------------------------------

    def add_config(self, config: BackupConfig, replace: bool = False) -> BackupConfig:
        """Validate, keep the password in the secrets store, make (or open) the
        repository, and store the configuration in the catalog and the repository.

        When the catalog has no configuration of this name but the repository
        holds a copy of one (it was added on another machine), the fields left
        at their defaults take the copy's values (retention, tags, excludes,
        compression...); `config.taken_from_repository` names them.

        Refused with UsageError: an invalid field, a name already taken (unless
        `replace`), an unknown WebDAV client, a source path that does not exist."""
        config.validate()
        if not replace and self.catalog.get_config(config.name) is not None:
            raise UsageError(f"a configuration named {config.name!r} exists already")
        if not config.is_local:
            self.webdav_service.get_client(config.target_client_id)
        stored = self.catalog.get_config(config.name) if replace else None
        # An edit may keep a source that is not mounted now; a path it adds must exist.
        config.check_sources(known=(stored or {}).get("source_paths") or ())
        previous_ref = (stored or {}).get("secret_ref")
        previous_db_ref = (stored or {}).get("postgres_secret_ref")
        previous_copy_ref = ((stored or {}).get("copy_to") or {}).get("secret_ref")
        self.backup_service.take_password(config)
        try:
            self.backup_service.take_source_password(config)
            self.backup_service.take_copy_password(config)
            if config.copy_to:
                # Fail fast, before the primary is made: a wrong second target or
                # password is said now, not after the first run.
                self._probe_copy_target(config)
            repo = self.backup_service.open_repository(config, create=True)
            if config.copy_to:
                self.backup_service.open_copy_target(config, repo)  # made now if it is new
            if stored is None:
                # Not in this catalog: the repository may hold it from another machine.
                copy = stored_copy(repo, config.name)
                config.taken_from_repository = merge_stored(config, copy) if copy else []
                config.validate()
            repo.save_managed_config(config.name, config.to_doc())
            self.catalog.put_config(config.name, config.to_doc())
        except BaseException:
            # A password stored for this attempt alone must not stay behind.
            if config.secret_ref and config.secret_ref != previous_ref:
                self.backup_service.secrets.delete(config.secret_ref)
                config.secret_ref = previous_ref
            if config.postgres_secret_ref and config.postgres_secret_ref != previous_db_ref:
                self.backup_service.secrets.delete(config.postgres_secret_ref)
                config.postgres_secret_ref = previous_db_ref
            copy_ref = (config.copy_to or {}).get("secret_ref")
            if copy_ref and copy_ref != previous_copy_ref:
                self.backup_service.secrets.delete(copy_ref)
            raise
        for old, new in ((previous_ref, config.secret_ref), (previous_db_ref, config.postgres_secret_ref),
                         (previous_copy_ref, (config.copy_to or {}).get("secret_ref"))):
            if old and old != new:
                self.backup_service.secrets.delete(old)  # replaced by a new password
        return config

    def import_configs(self, target_path: str, password: str | bytes | None, client_id: str | None = None,
                       names: list[str] | None = None, replace: bool = False,
                       database_passwords: dict[str, str] | None = None) -> list[BackupConfig]:
        """Read every configuration stored in a repository (or those in `names`)
        into the catalog: the repository in the local directory `target_path`,
        or in the folder `target_path` below WebDAV client `client_id`, opened
        with `password`. Each is pointed at that repository, the password kept
        in the secrets store under a new reference. A name the catalog has
        already is refused (UsageError, nothing written) unless `replace`.
        `database_passwords` (name -> password, from a recovery kit) are kept
        for the PostgreSQL sources among them."""
        return import_configs(self.backup_service, target_path, password, client_id, names, replace,
                              database_passwords)

    def update_config(self, config: BackupConfig) -> BackupConfig:
        """Replace the stored configuration of the same name (see `add_config`)."""
        return self.add_config(config, replace=True)

    def get_config(self, name: str) -> BackupConfig:
        """The configuration named `name`; UsageError when there is none."""
        return self.backup_service.get_config(name)

    def list_configs(self) -> list[BackupConfig]:
        """Every configuration in the catalog."""
        return self.backup_service.list_configs()

    def remove_config(self, name: str) -> None:
        """Forget a configuration; its snapshots stay in the repository."""
        config = self.get_config(name)
        try:
            self.backup_service.open_repository(config).save_managed_config(name, None)
        except StrongroomError:
            pass  # the target is gone or unreachable: the catalog still forgets it
        self.catalog.delete_config(name)
        if config.postgres_secret_ref:
            # Unlike the repository key, the database password restores nothing.
            self.backup_service.secrets.delete(config.postgres_secret_ref)

    # ---- running ---------------------------------------------------------------------

    def manual_backup(self, name: str, kind: str = "incremental", priority: int = 0, wait: bool = True,
                      timeout: float | None = None, max_attempts: int | None = None,
                      progress: Progress | None = None) -> BackupResult | JobHandle:
        """Queue a backup of configuration `name` ("full" reads every file).

        With `wait` (the default) block until it is done and return its
        BackupResult (`.snapshot_id`, `.summary`), or raise StrongroomError
        when it failed after its attempts. With `wait=False` return a
        JobHandle at once: `.id`, `.status()`, `.wait(timeout)` -> BackupResult.

        `progress`, when given, is called in the worker thread with every
        engine event of the run: the same events `--json` prints (see
        docs/json.md). An exception it raises fails that attempt (the queue
        tries again up to `max_attempts`, which overrides the configuration's)."""
        config = self.get_config(name)
        with self._progress_lock:  # the job's worker looks its callback up under this lock
            job_id = self.queue.submit(name, kind, priority, max_attempts or config.max_attempts)
            if progress is not None:
                self._progress[job_id] = progress
        handle = JobHandle(job_id, name, self.catalog.get_job, self.queue.wait)
        if not wait:
            return handle
        try:
            return handle.wait(timeout)
        finally:
            with self._progress_lock:
                self._progress.pop(job_id, None)

    def request_backup(self, name: str, kind: str = "incremental", priority: int = 0) -> tuple[JobHandle, bool]:
        """Queue a backup of `name` unless one of the same kind waits to start
        already (a second "run now" while the first is still queued): (the
        job's handle, whether it was queued by this call). A job that is
        running already does not count: a backup asked for during a run
        should see what changed since that run began."""
        config = self.get_config(name)
        job_id, new = self.queue.submit_once(name, kind, priority, config.max_attempts)
        return JobHandle(job_id, name, self.catalog.get_job, self.queue.wait), new

    def wait_for_job(self, job_id: int, timeout: float | None = None) -> Job:
        """Block until job `job_id` is done (succeeded, failed or cancelled) and return it."""
        return Job.from_row(self.queue.wait(job_id, timeout))

    def get_job(self, job_id: int) -> Job:
        """Job `job_id` as it is now; UsageError when there is none."""
        row = self.catalog.get_job(job_id)
        if row is None:
            raise UsageError(f"no job {job_id}")
        return Job.from_row(row)

    def cancel_job(self, job_id: int) -> Job:
        """Cancel job `job_id`: a queued one (waiting to run or for a retry) is
        cancelled at once and never runs; a backup this process runs stops at
        its next chunk and ends cancelled: not tried again, not a failure (the
        configuration's status says its last run was cancelled). Returns the
        job as it is now (still running, for a backup not stopped yet).
        UsageError for a job that is done, does not exist, or runs elsewhere
        (another process's job cannot be reached from here)."""
        row = self.catalog.get_job(job_id)
        if row is None:
            raise UsageError(f"no job {job_id}")
        if row["status"] in Job.DONE:
            raise UsageError(f"job {job_id} is {row['status']} already")
        # Set before the catalog is asked: a worker that claims the job in
        # between finds the flag when it starts the run.
        with self._progress_lock:
            self._cancelled.add(job_id)
        if self.catalog.cancel_queued_job(job_id, "cancelled before it ran"):
            with self._progress_lock:
                self._cancelled.discard(job_id)
            return self.get_job(job_id)
        row = self.catalog.get_job(job_id) or row
        owner = (row.get("stats") or {}).get("owner") if row["status"] == "running" else None
        if row["status"] == "running" and owner == current_owner()["owner"] and row["kind"] in BACKUP_KINDS:
            return Job.from_row(row)
        with self._progress_lock:
            self._cancelled.discard(job_id)
        if row["status"] in Job.DONE:
            raise UsageError(f"job {job_id} is {row['status']} already")
        if row["kind"] not in BACKUP_KINDS:
            raise UsageError(f"job {job_id} ({row['kind']}) is running and stops only with strongroom")
        raise UsageError(f"job {job_id} runs in another process ({owner or 'unknown'}); cancel it there")

    def _cancel_asked(self, job_id: int) -> bool:
        with self._progress_lock:
            return job_id in self._cancelled

    @property
    def disaster_recovery(self) -> DisasterRecoveryManager:
        """The DisasterRecoveryManager over this manager's service (made at first use),
        which scheduled DR tests run through."""
        with self._dr_lock:
            if self._dr is None:
                from strongroom.dr.manager import DisasterRecoveryManager  # the dr package imports this layer
                self._dr = DisasterRecoveryManager(self.backup_service)
            return self._dr

    def _run_job(self, job: dict) -> dict:
        try:
            return self._run_claimed(job)
        finally:
            with self._progress_lock:
                self._cancelled.discard(job["id"])

    def _run_claimed(self, job: dict) -> dict:
        if self.stopping.is_set():
            raise ShuttingDown("strongroom is shutting down")
        if self._cancel_asked(job["id"]):
            raise Interrupted(f"job {job['id']} was cancelled before it ran")
        # Scheduled verification rides the same queue; see strongroom.services.scheduled_runs.
        if job["kind"] == "check":
            from strongroom.services.scheduled_runs import run_check_job
            return run_check_job(self, job)
        if job["kind"] == "dr-test":
            from strongroom.services.scheduled_runs import run_dr_test_job
            return run_dr_test_job(self, job)
        config = self.get_config(job["config"])
        hook = self.on_job_event
        with self._progress_lock:
            progress = self._progress.get(job["id"])

        def listener(event: dict) -> None:
            if self.stopping.is_set():
                raise ShuttingDown(f"backup {config.name} stopped: strongroom is shutting down")
            if self._cancel_asked(job["id"]):
                raise Interrupted(f"backup {config.name} cancelled")
            if hook is not None:
                hook(job["id"], event)
            if progress is not None:
                progress(event)

        # A shutdown also ends a wait for the repository's lock (a prune of another process).
        repo, result = self.backup_service.run_backup(
            config, job["kind"], listener, stop=lambda: self.stopping.is_set() or self._cancel_asked(job["id"]))
        try:
            # The point is made: should the process end before the job does (a long
            # retention, kill -9), the next start marks it succeeded, not runs it again.
            self.catalog.update_job(job["id"], snapshot_id=result.snapshot.id)
        except (StrongroomError, sqlite3.Error):
            pass
        warnings = [f"{plural(len(result.errors), 'file')} could not be read"] if result.errors else []
        stats = {**result.summary, "snapshot_kind": result.snapshot.kind, "requested_kind": job["kind"]}
        if config.retention_after_run != "off":
            try:
                applied = self.storage.apply_retention(config, prune=config.retention_after_run == "prune",
                                                       record=False, stop=self.stopping.is_set)
                stats["retention"] = {"removed": list(applied.removed), "kept": applied.kept,
                                      "bytes_freed": applied.bytes_freed}
            except StrongroomError as e:
                # The snapshot is made; the policy is applied again after the next run.
                warnings.append(f"retention not applied: {e}")
        if config.copy_to:
            def still_wanted(event: dict) -> None:  # the copy's events are not the backup's progress
                if self.stopping.is_set():
                    raise ShuttingDown(f"copy of {config.name} stopped: strongroom is shutting down")
                if self._cancel_asked(job["id"]):
                    raise Interrupted(f"copy of {config.name} cancelled")
            stats["copy"] = self._copy_after_run(config, repo, still_wanted)
            if not stats["copy"]["ok"]:
                # The point is made and sound: the run succeeds, with a warning that is alerted on.
                warnings.append(f"{notify_events.COPY_FAILED}: {stats['copy']['error']}")
        try:
            # Retention changed the repository: its index must be read again.
            self.storage.record_sample(config, None if stats.get("retention") else repo)
        except StrongroomError:
            pass  # accounting must not fail a backup that succeeded
        warning = "; ".join(warnings) or None
        return {"snapshot_id": result.snapshot.id, "kind": result.snapshot.kind, "stats": stats, "warning": warning}

    def _probe_copy_target(self, config: BackupConfig) -> None:
        from strongroom.services.describe import copy_target_of
        """Open the second target if it holds a repository (none yet is fine: it is made)."""
        try:
            self.backup_service.open_copy_target(config)
        except RepositoryNotFound:
            pass
        except WrongPassword as e:
            raise WrongPassword(f"config {config.name}: the second target ({copy_target_of(self, config)}) "
                                f"holds a repository that its password does not open: {e}") from None

    def _copy_after_run(self, config: BackupConfig, repo: Repository, listener: Callable[[dict], None]) -> dict:
        """Copy the run's point (and any an earlier copy missed) to the second
        target; what happened, for the job's record. Never raises for the copy
        itself: a good backup stays good when its copy fails."""
        from strongroom.services.describe import copy_target_of
        started = time.time()
        try:
            summary = self.backup_service.copy_to_second_target(config, repo, listener, stop=self.stopping.is_set)
        except (ShuttingDown, Interrupted):
            raise
        except StrongroomError as e:
            return {"ok": False, "error": str(e), "target": copy_target_of(self, config), "time": started}
        error = summary.failures[0].error if summary.failures else None
        return {"ok": error is None, "error": error, "target": copy_target_of(self, config), "time": time.time(),
                "points_copied": summary.points_copied, "points_skipped": summary.points_skipped,
                "blobs_sent": summary.blobs_sent, "bytes_sent": summary.bytes_sent,
                "shared_chunker": summary.shared_chunker}

    def copy_to_second_target(self, name: str) -> CopyResult:
        """Copy configuration `name`'s points that its second target (`copy_to`)
        lacks into it, now, outside the job queue; what was sent. Raises
        StrongroomError when the copy cannot be made (a point whose data is
        damaged in the primary is named in the error)."""
        from strongroom.services.describe import copy_target_of
        config = self.get_config(name)
        summary = self.backup_service.copy_to_second_target(config, stop=self.stopping.is_set)
        if summary.failures:
            raise IntegrityError(summary.failures[0].error or "a point could not be copied")
        return CopyResult.from_summary(name, copy_target_of(self, config) or "", summary)

    # ---- notifications -----------------------------------------------------------------

    def add_notification_channel(self, spec: ChannelSpec, replace: bool = False) -> dict:
        """Store a notification channel (its secrets to the secrets store); returns its
        catalog row. See strongroom.notify.channels.ChannelSpec."""
        return add_channel(self.catalog, self.backup_service.secrets, spec, replace)

    def remove_notification_channel(self, name: str) -> None:
        """Forget a notification channel and its secrets."""
        remove_channel(self.catalog, self.backup_service.secrets, name)

    def _notify_validation(self, report: ValidationReport) -> None:
        self.notifier.emit(notify_events.validation_result(report, self.notifier.now()))

    def _notify_outcome(self, job: dict, outcome: str, detail: dict | str | None) -> None:
        if job["kind"] not in BACKUP_KINDS:
            return  # a check or a DR test tells its result through its own events, once
        now = self.notifier.now()
        if outcome == "started":
            event = notify_events.Event("run_started", job["config"], now)
        elif outcome == "failed":
            event = notify_events.run_failed(job["config"], now, str(detail or ""), job["attempts"])
        else:
            result = detail if isinstance(detail, dict) else {}
            event = notify_events.run_finished(job["config"], now, result.get("warning"), result.get("snapshot_id"))
        self.notifier.emit(event)

    def get_job_history(self, name: str | None = None, limit: int = 100) -> list[Job]:
        """Jobs (of configuration `name`, or all), newest first."""
        return [Job.from_row(row) for row in self.catalog.list_jobs(config=name, limit=limit)]

    def get_statistics(self) -> dict[str, BackupStatistics]:
        """The run history of every configuration, by name."""
        stats = {}
        for config in self.list_configs():
            jobs = self.catalog.list_jobs(config=config.name, limit=100000, kinds=BACKUP_KINDS)
            done = [j for j in jobs if j["status"] == "succeeded"]
            last = max((j["finished_at"] for j in done), default=None)
            stats[config.name] = BackupStatistics(
                config.name, runs=len([j for j in jobs if j["status"] in ("succeeded", "failed")]),
                successes=len(done), failures=len([j for j in jobs if j["status"] == "failed"]),
                last_success=utc(last),
                bytes_read=sum((j.get("stats") or {}).get("bytes_read", 0) for j in done),
                bytes_stored=sum(stored_bytes(j.get("stats") or {}) for j in done),
                duration=round(sum((j.get("stats") or {}).get("duration", 0) for j in done), 3))
        return stats

    def get_status(self, now: datetime | None = None) -> list[ConfigStatus]:
        """How every configuration stands at `now` (default: the catalog's clock),
        as `strongroom status` shows it; see strongroom.services.status."""
        from strongroom.schedule.spec import system_zone
        from strongroom.services.status import all_statuses
        moment = now or datetime.fromtimestamp(self.catalog.now(), timezone.utc)
        return all_statuses(self.catalog, self.list_configs(), moment, system_zone())

    def validate_backup(self, backup_id: str, deep: bool = False) -> ValidationReport:
        """Check snapshot `backup_id` (an id or unique prefix); see BackupValidator."""
        return self.validator.validate_backup(backup_id, deep)

    def own_folders(self) -> tuple[str, ...]:
        """The folders strongroom keeps its own files in: the catalog's, the cache's
        and the secrets file's. A restore asked for from outside stays out of them
        (services/restore_target.py)."""
        found = []
        catalog = getattr(self.catalog, "path", None)
        if catalog and catalog != ":memory:":
            found.append(os.path.dirname(os.path.abspath(catalog)))
        if self.backup_service.cache_root:
            found.append(os.path.abspath(self.backup_service.cache_root))
        secrets_file = getattr(self.backup_service.secrets, "path", None)
        if isinstance(secrets_file, str):
            found.append(os.path.dirname(os.path.abspath(secrets_file)))
        return tuple(dict.fromkeys(found))

    def close(self) -> None:
        """Stop the job queue's workers (a running job finishes first)."""
        self.queue.stop()


def create_backup_manager(webdav_service: WebDAVService | None = None, db_path: str | None = None, secrets_path: str | None = None,
                          cache_root: str | None = None, max_concurrent_jobs: int = 2,
                          retry_delay: float = 5.0, clock: Callable[[], float] = time.time) -> BackupManager:
    """A manager over the catalog at `db_path` (default: STRONGROOM_CATALOG, else
    the user's data directory). Secrets go to `secrets_path` (default:
    STRONGROOM_SECRETS, else a 0600 file beside the catalog), never into the
    catalog itself; STRONGROOM_SECRETS_BACKEND may choose the OS keyring or the
    file instead. These, with XDG_DATA_HOME for the data directory, are the
    variables the services read, all at this edge; the one read later is a
    configuration's own `password_env`, at each of its runs."""
    import os

    from strongroom.services.catalog import Catalog
    from strongroom.services.secrets import SecretsStore
    from strongroom.services.webdav_service import WebDAVService

    db_path = db_path or Catalog.default_path()
    catalog = Catalog(db_path)
    secrets_path = secrets_path or os.environ.get("STRONGROOM_SECRETS") \
        or os.path.splitext(os.path.abspath(db_path))[0] + ".secrets.json"
    secrets = SecretsStore(secrets_path)
    webdav_service = webdav_service or WebDAVService()
    webdav_service.attach(catalog, secrets)
    return BackupManager(catalog, webdav_service, secrets, cache_root, max_concurrent_jobs, retry_delay, clock)
