"""The Python API, re-exported from `strongroom` (see `strongroom.__doc__`)."""

from strongroom.dr.manager import DisasterRecoveryManager
from strongroom.dr.plan import Hook, Plan, Step
from strongroom.dr.results import PlanRun, StepResult
from strongroom.errors import StrongroomError
from strongroom.services.backup_manager import (BackupManager, BackupValidator, StorageManager,
                                                create_backup_manager)
from strongroom.services.backup_service import BackupService
from strongroom.services.configs import BackupConfig
from strongroom.services.recovery import (RecoveryExecutor, RecoveryPlan, RecoveryPoint, RecoveryPointManager,
                                          RecoveryService, create_recovery_service)
from strongroom.services.results import (BackupResult, BackupStatistics, BackupSummary, CleanupResult, ConfigTrend,
                                         CopyResult, Estimate, Job, JobHandle, RecoveryProgress, RetentionDecision,
                                         RetentionResult, StorageTrend, StorageUsage, TargetSpace, TargetTrend,
                                         TrendLine, UsageReport, UsageSample, UsageTotals, ValidationReport)
from strongroom.services.webdav_service import ConnectionReport, WebDAVCredentials, WebDAVService

__all__ = [
    "BackupConfig", "BackupManager", "BackupResult", "BackupService", "BackupStatistics", "BackupSummary",
    "BackupValidator", "CleanupResult", "ConfigTrend", "ConnectionReport", "CopyResult", "DisasterRecoveryManager", "Estimate",
    "Hook", "Job", "JobHandle", "Plan", "PlanRun", "Step", "StepResult",
    "RecoveryExecutor", "RecoveryPlan", "RecoveryPoint", "RecoveryPointManager", "RecoveryProgress",
    "RecoveryService", "RetentionDecision", "RetentionResult", "StorageManager", "StorageTrend", "StorageUsage",
    "StrongroomError", "TargetSpace", "TargetTrend", "TrendLine", "UsageReport", "UsageSample", "UsageTotals",
    "ValidationReport", "WebDAVCredentials", "WebDAVService", "create_backup_manager", "create_recovery_service",
]
