"""The Python API, re-exported from `strongroom`."""

from strongroom.services.backup_manager import (BackupManager, BackupValidator, StorageManager,
                                                ValidationReport, create_backup_manager)
from strongroom.services.backup_service import BackupService
from strongroom.services.configs import BackupConfig
from strongroom.services.recovery import (RecoveryExecutor, RecoveryPlan, RecoveryPoint, RecoveryPointManager,
                                          RecoveryProgress, RecoveryService, create_recovery_service)
from strongroom.services.webdav_service import ConnectionReport, WebDAVCredentials, WebDAVService

__all__ = [
    "BackupConfig", "BackupManager", "BackupService", "BackupValidator", "ConnectionReport", "RecoveryExecutor",
    "RecoveryPlan", "RecoveryPoint", "RecoveryPointManager", "RecoveryProgress", "RecoveryService",
    "StorageManager", "ValidationReport", "WebDAVCredentials", "WebDAVService", "create_backup_manager",
    "create_recovery_service",
]
