"""strongroom: deduplicated, compressed, encrypted and verifiable backups.

The Python API manages named backup configurations kept in a SQLite catalog,
each backing up to a repository in a local directory or on a WebDAV server:

    create_backup_manager   the entry point: a BackupManager over a catalog
    BackupManager           configurations, manual backups, the job queue, statistics
    BackupConfig            one named backup: what to back up, where, and how
    WebDAVService           WebDAV clients by id (WebDAVCredentials: one client's login)
    RecoveryService         snapshots by configuration and time, one-click and selective restores
    BackupValidator         checks that everything a snapshot needs is on the target
    StorageManager          storage usage, trends, retention and estimates
    DisasterRecoveryManager disaster-recovery plans (Plan, Step, Hook): run, rehearsed, measured (PlanRun)
    BackupResult, Job, JobHandle, StorageUsage, ValidationReport, RecoveryProgress, ...
                            the results: frozen dataclasses with UTC datetimes and to_dict()

Example (a local repository; see docs/api.md for the whole page):

    import strongroom

    manager = strongroom.create_backup_manager(db_path="catalog.db")
    manager.add_config(strongroom.BackupConfig(
        name="home", source_paths=["/home/me/data"], target_path="/mnt/backup/home"))
    result = manager.manual_backup("home", "full")
    print(result.snapshot_id, result.summary.files_new)
    recovery = strongroom.create_recovery_service(manager.backup_service)
    progress = recovery.wait(recovery.one_click_restore("home", "/tmp/restore"))
    manager.close()

The API is imported on first use: `import strongroom` and
`strongroom.__version__` stay light, so the command line starts fast.
"""

import importlib as _importlib

__version__ = "0.1.0"

# Where each API name lives. Importing `strongroom` imports none of them:
# lower layers import the package for `__version__`, and an eager import
# would load the services (and SQLite) into every one of them.
_API = {
    "BackupConfig": "strongroom.services.configs",
    "BackupManager": "strongroom.services.backup_manager",
    "BackupValidator": "strongroom.services.backup_manager",
    "StorageManager": "strongroom.services.backup_manager",
    "create_backup_manager": "strongroom.services.backup_manager",
    "BackupService": "strongroom.services.backup_service",
    "RecoveryExecutor": "strongroom.services.recovery",
    "RecoveryPlan": "strongroom.services.recovery",
    "RecoveryPoint": "strongroom.services.recovery",
    "RecoveryPointManager": "strongroom.services.recovery",
    "RecoveryService": "strongroom.services.recovery",
    "create_recovery_service": "strongroom.services.recovery",
    "ConnectionReport": "strongroom.services.webdav_service",
    "WebDAVCredentials": "strongroom.services.webdav_service",
    "WebDAVService": "strongroom.services.webdav_service",
    "BackupResult": "strongroom.services.results",
    "BackupStatistics": "strongroom.services.results",
    "CleanupResult": "strongroom.services.results",
    "BackupSummary": "strongroom.services.results",
    "ConfigTrend": "strongroom.services.results",
    "CopyResult": "strongroom.services.results",
    "Estimate": "strongroom.services.results",
    "Job": "strongroom.services.results",
    "JobHandle": "strongroom.services.results",
    "RecoveryProgress": "strongroom.services.results",
    "RetentionDecision": "strongroom.services.results",
    "RetentionResult": "strongroom.services.results",
    "StorageTrend": "strongroom.services.results",
    "StorageUsage": "strongroom.services.results",
    "TargetSpace": "strongroom.services.results",
    "TargetTrend": "strongroom.services.results",
    "TrendLine": "strongroom.services.results",
    "UsageReport": "strongroom.services.results",
    "UsageSample": "strongroom.services.results",
    "UsageTotals": "strongroom.services.results",
    "ValidationReport": "strongroom.services.results",
    "StrongroomError": "strongroom.errors",
    "DisasterRecoveryManager": "strongroom.dr.manager",
    "Hook": "strongroom.dr.plan",
    "Plan": "strongroom.dr.plan",
    "Step": "strongroom.dr.plan",
    "PlanRun": "strongroom.dr.results",
    "StepResult": "strongroom.dr.results",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> object:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'strongroom' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # the next look-up does not come here
    return value


def __dir__() -> list[str]:
    # The API and the module's own dunders; not the helpers above, nor the
    # subpackages (cli, engine, ...) once something has imported them.
    return sorted(set(__all__) | {name for name in globals() if name.startswith("__")})
