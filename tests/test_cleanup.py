"""StorageManager.cleanup_old_backups: forget plus prune for one configuration."""

from __future__ import annotations

import random

import pytest

from strongroom import BackupConfig, create_backup_manager, create_recovery_service
from strongroom.errors import UsageError
from treeutil import snapshot_tree


def test_cleanup_keeps_the_newest_and_frees_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("STRONGROOM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SHARED_REPO_PASSWORD", "one password for both configurations")
    src = tmp_path / "src"
    src.mkdir()
    manager = create_backup_manager(db_path=str(tmp_path / "catalog.db"))
    try:
        # Two configurations share one repository: cleanup of one leaves the other's points and data.
        manager.add_config(BackupConfig(name="docs", source_paths=[str(src)], target_path=str(tmp_path / "repo"),
                                        password_env="SHARED_REPO_PASSWORD"))
        other = tmp_path / "other"
        other.mkdir()
        (other / "x").write_bytes(b"x" * 1000)
        manager.add_config(BackupConfig(name="other", source_paths=[str(other)], target_path=str(tmp_path / "repo"),
                                        password_env="SHARED_REPO_PASSWORD"))
        rnd = random.Random(9)
        for i in range(3):
            (src / "data.bin").write_bytes(rnd.randbytes(2_000_000))
            manager.manual_backup("docs", "full")
        manager.manual_backup("other", "full")
        with pytest.raises(UsageError):
            manager.storage.cleanup_old_backups("docs")
        assert manager.storage.cleanup_old_backups("docs", keep_days=365).removed == ()

        result = manager.storage.cleanup_old_backups("docs", keep_count=1)
        assert len(result.removed) == 2 and result.kept == 1
        assert result.bytes_freed >= 2 * 2_000_000 * 0.9
        recovery = create_recovery_service(manager.backup_service)
        assert len(recovery.list_recovery_points("docs")) == 1
        assert len(recovery.list_recovery_points("other")) == 1  # another config is untouched
        session = recovery.one_click_restore("docs", target_path=str(tmp_path / "restore"))
        assert recovery.wait(session).status == "completed"
        assert snapshot_tree(tmp_path / "restore" / src.relative_to("/")) == snapshot_tree(src)
        for config in ("docs", "other"):
            assert manager.validate_backup(recovery.list_recovery_points(config)[0].id, deep=True).ok
    finally:
        manager.close()
