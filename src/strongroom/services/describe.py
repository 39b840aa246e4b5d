"""A configuration and a WebDAV client in words a person (or a page) can be
shown: where the repository is, where its password lives. Never a secret:
a URL is shown without its password, a password only by where it is kept."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.errors import UsageError
from strongroom.services.urls import redact_password

if TYPE_CHECKING:
    from strongroom.services.backup_manager import BackupManager
    from strongroom.services.configs import BackupConfig


def target_of(manager: BackupManager, config: BackupConfig) -> str:
    """Where a config's repository is: a local path, or its WebDAV URL (no password)."""
    if config.is_local:
        return config.target_path
    try:
        return redact_password(manager.webdav_service.repository_url(config.target_client_id, config.target_path))
    except UsageError:
        return f"{config.target_client_id}:{config.target_path} (client unknown)"


def password_source(config: BackupConfig) -> str:
    """Where the repository password lives: the secrets store, a file, a variable, a command."""
    if not config.encrypt:
        return "none (not encrypted)"
    if config.password_file:
        return f"file {config.password_file}"
    if config.password_env:
        return f"variable {config.password_env}"
    if config.password_command:
        return "command"
    return "secrets store"


def client_docs(catalog) -> list[dict]:
    """Every WebDAV client as id, url (a password in it masked), user and vendor."""
    return [{"id": doc["id"], "url": redact_password(doc["url"]), "user": doc["username"],
             "vendor": doc.get("service_type", "generic")} for doc in catalog.list_clients()]


def copy_password_source(config: BackupConfig) -> str:
    """Where the second target's repository password lives."""
    copy_to = config.copy_to or {}
    if copy_to.get("password_file"):
        return f"file {copy_to['password_file']}"
    if copy_to.get("password_env"):
        return f"variable {copy_to['password_env']}"
    if copy_to.get("password_command"):
        return "command"
    return "secrets store"


def copy_target_of(manager: BackupManager, config: BackupConfig) -> str | None:
    """The second target in words, with its client's kind (an S3 bucket, an SFTP server)."""
    client = (config.copy_to or {}).get("client_id")
    kind = None
    if client:
        try:
            kind = manager.webdav_service.get_client(client).service_type
        except UsageError:
            pass
    return config.describe_copy_target(kind)
