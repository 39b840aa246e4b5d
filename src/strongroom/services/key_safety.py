"""Whether forgetting a configuration would leave its repository unopenable.

A generated repository key lives only in the secrets store, under a
reference that only the configuration's catalog row names: once the row is
gone nothing finds the key again, and declaring the configuration anew makes
a new key, which its repository refuses. Forgetting it is safe once a
recovery kit of that key is on record (`strongroom key export`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.errors import StrongroomError

if TYPE_CHECKING:
    from strongroom.services.backup_manager import BackupManager
    from strongroom.services.configs import BackupConfig


def key_left_unrecoverable(manager: BackupManager, config: BackupConfig) -> str | None:
    """Why forgetting `config` would lose the only way to its repository key, or
    None. The repository is opened to ask for its id and key; one that does
    not open tells nothing, and counts as no kit."""
    if not config.encrypt or config.password_file or config.password_env or config.password_command:
        return None
    why = "no recovery kit of it is on record"
    try:
        repo = manager.backup_service.open_repository(config)
        if manager.catalog.kit_on_record(repo.config.id, repo.key_id):
            return None
    except StrongroomError as e:
        why = f"its repository did not open to tell whether a recovery kit of it is on record ({e})"
    return f"its repository key is kept only in this machine's secrets store and {why}"
