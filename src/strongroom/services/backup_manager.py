"""The backup manager: named configurations, a job queue, history, statistics,
validation and storage accounting."""

from __future__ import annotations

import hashlib
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

from strongroom.engine.progress import ignore
from strongroom.engine.forget import plan_forget, remove_snapshots
from strongroom.engine.prune import plan_prune, run_prune
from strongroom.engine.stats import repository_stats
from strongroom.engine.tree_walk import needed_blobs
from strongroom.errors import IntegrityError, StrongroomError, UsageError
from strongroom.model.retention import Duration, Policy
from strongroom.repo.pack import expected_pack_size, pack_name
from strongroom.services.backup_service import BackupService
from strongroom.services.configs import BackupConfig
from strongroom.services.jobs import JobQueue


@dataclass
class ValidationReport:
    backup_id: str
    config_name: str
    deep: bool
    ok: bool = True
    blobs_checked: int = 0
    packs_checked: int = 0
    packs_read: int = 0
    blobs_authenticated: int = 0
    problems: list[str] = field(default_factory=list)
    duration: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class BackupValidator:
    """Checks that everything one recovery point needs is on the target.

    Quick: every tree and chunk is indexed and every pack is there with its
    size. Deep (or a sampled share of the packs): the packs are read and each
    needed blob is authenticated.
    """

    def __init__(self, service: BackupService) -> None:
        self.service = service

    def validate_backup(self, backup_id: str, deep: bool = False, sample: float | None = None) -> ValidationReport:
        started = time.monotonic()
        config, repo, snap = self.service.find_snapshot(backup_id)
        report = ValidationReport(snap.id, config.name, deep or bool(sample))
        repo.load_index()
        try:
            needed = needed_blobs(repo, [bytes.fromhex(snap.tree)])
        except StrongroomError as e:
            needed = set()
            report.problems.append(f"a tree cannot be read: {e}")
        by_pack: dict[bytes, list[bytes]] = defaultdict(list)
        for blob in needed:
            loc = repo.index.get(blob)
            if loc is None:
                report.problems.append(f"blob {blob.hex()[:16]} is not in the index")
            else:
                by_pack[loc.pack].append(blob)
        report.blobs_checked = len(needed)
        on_target = repo.list_packs()
        for pack_id in by_pack:
            expected = expected_pack_size(repo.index.packs[pack_id])
            size = on_target.get(pack_id)
            if size is None:
                report.problems.append(f"pack {pack_id.hex()[:16]} is missing")
            elif size != expected:
                report.problems.append(f"pack {pack_id.hex()[:16]} has {size} bytes, expected {expected}")
        report.packs_checked = len(by_pack)
        if deep or sample:
            packs = sorted(by_pack)
            if sample and not deep:
                packs = random.sample(packs, max(1, round(len(packs) * sample))) if packs else []
            for pack_id in packs:
                self._read_pack(repo, pack_id, by_pack[pack_id], report)
        report.ok = not report.problems
        report.duration = round(time.monotonic() - started, 3)
        return report

    def _read_pack(self, repo, pack_id: bytes, blobs: list[bytes], report: ValidationReport) -> None:
        name = pack_name(pack_id, repo.config.data_fanout)
        try:
            data = repo.storage.read(name)
        except StrongroomError as e:
            report.problems.append(f"pack {pack_id.hex()[:16]} cannot be read: {e}")
            return
        report.packs_read += 1
        if hashlib.sha256(data).digest() != pack_id:
            report.problems.append(f"pack {pack_id.hex()[:16]} does not match its name")
        for blob in blobs:
            loc = repo.index.get(blob)
            try:
                repo.open_blob(loc.type, blob, memoryview(data)[loc.offset:loc.offset + loc.length],
                               loc.raw_length, name, verify_id=True)
                report.blobs_authenticated += 1
            except IntegrityError as e:
                report.problems.append(str(e))

    def batch_validate(self, backup_ids: list[str], deep: bool = False,
                       sample: float | None = None) -> dict[str, ValidationReport]:
        reports = {}
        for backup_id in backup_ids:
            try:
                reports[backup_id] = self.validate_backup(backup_id, deep, sample)
            except StrongroomError as e:
                reports[backup_id] = ValidationReport(backup_id, "", deep, ok=False, problems=[str(e)])
        return reports


class StorageManager:
    """Storage accounting per configuration, and a sample after every run."""

    def __init__(self, service: BackupService) -> None:
        self.service = service

    def usage_of(self, config: BackupConfig) -> dict:
        repo = self.service.open_repository(config)
        snaps = self.service.snapshots(config, repo)
        stats = repository_stats(repo, snaps[-1:])  # restore size of the latest point
        total = repository_stats(repo, snaps)
        return {
            "config": config.name, "points": len(snaps),
            "restore_size": stats["restore_size"], "unique_size": total["unique_size"],
            "stored_size": total["unique_stored_size"], "repository_size": total["repository_size"],
            "packs": total["packs"], "dedup_ratio": total["dedup_ratio"],
            "compression_ratio": total["compression_ratio"],
        }

    def record_sample(self, config: BackupConfig) -> dict:
        usage = self.usage_of(config)
        self.service.catalog.add_sample(config.name, {k: v for k, v in usage.items() if k != "config"})
        return usage

    def cleanup_old_backups(self, config: BackupConfig | str, keep_count: int | None = None,
                            keep_days: int | None = None) -> dict:
        """Forget the points of one configuration beyond the newest `keep_count`
        and older than `keep_days` before its newest point (a point either rule
        keeps stays), then prune. Returns what was removed and the space freed."""
        if isinstance(config, str):
            config = self.service.get_config(config)
        if not keep_count and not keep_days:
            raise UsageError("cleanup needs keep_count or keep_days (at least one point is always kept)")
        policy = Policy(last=keep_count or 0, within=Duration(days=keep_days) if keep_days else None)
        with self.service.repo_lock(config):
            repo = self.service.open_repository(config)
            with repo.lock(exclusive=True, wait=60):
                plan = plan_forget(self.service.snapshots(config, repo), policy, group_by=())
                removed = remove_snapshots(repo, plan)
                pruned = run_prune(repo, plan_prune(repo))
        return {"config": config.name, "removed": removed, "kept": sum(d.keep for g in plan for _, d in g.decisions),
                "bytes_freed": pruned["bytes_freed"], "packs_deleted": pruned["packs_deleted"],
                "packs_repacked": pruned["packs_repacked"]}

    def get_storage_usage(self) -> dict:
        per_config, errors = {}, {}
        for config in self.service.list_configs():
            try:
                per_config[config.name] = self.usage_of(config)
            except StrongroomError as e:
                errors[config.name] = str(e)
        total = {key: sum(u[key] or 0 for u in per_config.values())
                 for key in ("points", "restore_size", "unique_size", "stored_size", "repository_size")}
        return {"total": total, "configs": per_config, "errors": errors}


class BackupManager:
    def __init__(self, catalog, webdav_service, secrets, cache_root: str | None = None,
                 max_concurrent_jobs: int = 2, retry_delay: float = 5.0) -> None:
        self.catalog = catalog
        self.webdav_service = webdav_service
        self.backup_service = BackupService(catalog, webdav_service, secrets, cache_root)
        self.validator = BackupValidator(self.backup_service)
        self.storage = StorageManager(self.backup_service)
        self.queue = JobQueue(catalog, self._run_job, max_concurrent_jobs, retry_delay)
        # Called as on_job_event(job_id, event) with every engine event of a running
        # backup (progress, unreadable files); an exception it raises stops that backup.
        self.on_job_event = None

    # ---- configurations ------------------------------------------------------------

    def add_config(self, config: BackupConfig, replace: bool = False) -> BackupConfig:
        """Validate, keep the password in the secrets store, make (or open) the
        repository, and store the configuration in the catalog and the repository."""
        config.validate()
        if not replace and self.catalog.get_config(config.name) is not None:
            raise UsageError(f"a configuration named {config.name!r} exists already")
        if not config.is_local:
            self.webdav_service.get_client(config.target_client_id)
        self.backup_service.take_password(config)
        repo = self.backup_service.open_repository(config, create=True)
        repo.save_managed_config(config.name, config.to_doc())
        self.catalog.put_config(config.name, config.to_doc())
        return config

    def update_config(self, config: BackupConfig) -> BackupConfig:
        return self.add_config(config, replace=True)

    def get_config(self, name: str) -> BackupConfig:
        return self.backup_service.get_config(name)

    def list_configs(self) -> list[BackupConfig]:
        return self.backup_service.list_configs()

    def remove_config(self, name: str) -> None:
        """Forget a configuration; its recovery points stay in the repository."""
        config = self.get_config(name)
        try:
            self.backup_service.open_repository(config).save_managed_config(name, None)
        except StrongroomError:
            pass  # the target is gone or unreachable: the catalog still forgets it
        self.catalog.delete_config(name)

    # ---- running ---------------------------------------------------------------------

    def manual_backup(self, name: str, kind: str = "incremental", priority: int = 0, wait: bool = True,
                      timeout: float | None = None, max_attempts: int | None = None) -> str | int:
        """Queue a backup. With wait (the default) return the recovery point's id
        once it is made; without, return the job id (see `wait_for_job`).
        `max_attempts` overrides the config's for this run."""
        config = self.get_config(name)
        job_id = self.queue.submit(name, kind, priority, max_attempts or config.max_attempts)
        if not wait:
            return job_id
        job = self.wait_for_job(job_id, timeout)
        if job["status"] != "succeeded":
            raise StrongroomError(f"backup {name} failed: {(job.get('error') or '').splitlines()[0]}")
        return job["snapshot_id"]

    def wait_for_job(self, job_id: int, timeout: float | None = None) -> dict:
        return self.queue.wait(job_id, timeout)

    def _run_job(self, job: dict) -> dict:
        config = self.get_config(job["config"])
        hook = self.on_job_event
        listener = (lambda event: hook(job["id"], event)) if hook is not None else ignore
        repo, result = self.backup_service.run_backup(config, job["kind"], listener)
        try:
            self.storage.record_sample(config)
        except StrongroomError:
            pass  # accounting must not fail a backup that succeeded
        warning = f"{len(result.errors)} file(s) could not be read" if result.errors else None
        stats = {**result.summary, "snapshot_kind": result.snapshot.kind}
        return {"snapshot_id": result.snapshot.id, "stats": stats, "warning": warning}

    def get_job_history(self, name: str | None = None, limit: int = 100) -> list[dict]:
        return self.catalog.list_jobs(config=name, limit=limit)

    def get_statistics(self) -> dict:
        stats = {}
        for config in self.list_configs():
            jobs = self.catalog.list_jobs(config=config.name, limit=100000)
            done = [j for j in jobs if j["status"] == "succeeded"]
            stats[config.name] = {
                "runs": len([j for j in jobs if j["status"] in ("succeeded", "failed")]),
                "successes": len(done),
                "failures": len([j for j in jobs if j["status"] == "failed"]),
                "last_success": max((j["finished_at"] for j in done), default=None),
                "bytes_read": sum((j.get("stats") or {}).get("bytes_read", 0) for j in done),
                "bytes_stored": sum((j.get("stats") or {}).get("data_added", 0) for j in done),
                "duration": round(sum((j.get("stats") or {}).get("duration", 0) for j in done), 3),
            }
        return stats

    def validate_backup(self, backup_id: str, deep: bool = False) -> ValidationReport:
        return self.validator.validate_backup(backup_id, deep)

    def close(self) -> None:
        self.queue.stop()


def create_backup_manager(webdav_service=None, db_path: str | None = None, secrets_path: str | None = None,
                          cache_root: str | None = None, max_concurrent_jobs: int = 2,
                          retry_delay: float = 5.0) -> BackupManager:
    """A manager over the catalog at `db_path` (default: the user's data
    directory). Secrets go to `secrets_path`, by default a 0600 file beside
    the catalog, never into the catalog itself."""
    import os

    from strongroom.services.catalog import Catalog
    from strongroom.services.secrets import SecretsStore
    from strongroom.services.webdav_service import WebDAVService

    catalog = Catalog(db_path or Catalog.default_path())
    if secrets_path is None and not os.environ.get("STRONGROOM_SECRETS"):
        secrets_path = os.path.splitext(os.path.abspath(db_path or Catalog.default_path()))[0] + ".secrets.json"
    secrets = SecretsStore(secrets_path)
    webdav_service = webdav_service or WebDAVService()
    webdav_service.attach(catalog, secrets)
    return BackupManager(catalog, webdav_service, secrets, cache_root, max_concurrent_jobs, retry_delay)
