"""The configurations' API: list them with their colour, read one's settings,
create, edit and remove one, run one now; the WebDAV clients a form offers as
targets and the request budget left per client.

A configuration made here is made as `strongroom config add` makes it
(BackupManager.add_config: the repository is initialised, a password given
goes to the secrets store, none given makes a generated key). The API takes
only what is safe from a browser: source paths, a local directory or a
WebDAV client and folder, a password, schedules, retention, excludes. It
never takes a password file, variable or command, nor a source command: a
browser must not make the daemon run a command or read a file as a secret.
No answer holds a password: a configuration says only where its lives.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, model_validator

from strongroom.errors import FolderNotEmpty, RepositoryExists, RepositoryNotFound, UsageError, WrongPassword
from strongroom.services.configs import BackupConfig

MAX_PATHS = 1000
MAX_TEXT = 4096


def _no_nul(value: Any, where: str = "body") -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where}: a NUL character is not allowed")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key, where)
            _no_nul(item, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            _no_nul(item, where)


class ConfigFields(BaseModel):
    """The fields of a configuration the console edits; a field left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    source_paths: list[str] | None = Field(default=None, max_length=MAX_PATHS,
                                           description="Absolute paths of the folders and files to back up.")
    target_path: str | None = Field(default=None, max_length=MAX_TEXT, description=(
        "A local directory (absolute), or with target_client_id the folder below the client's URL."))
    target_client_id: str | None = Field(default=None, max_length=200,
                                         description="A WebDAV client id; empty or left out: a local directory.")
    password: str | None = Field(default=None, max_length=MAX_TEXT, description=(
        "Write-only: the repository password, kept in the secrets store. Left out: a new repository gets a "
        "generated key; an edit keeps the current password."))
    encrypt: bool | None = None
    compression: bool | str | None = Field(default=None, description="true, false or a codec (zstd, zstd:9, lz4...).")
    schedules: list[str] | None = Field(default=None, max_length=32, description=(
        "Schedule specs: `every 6h`, a cron expression, `daily-since-last`; [] for none."))
    retention: dict[str, Any] | None = Field(default=None, description="keep_last, keep_daily, ..., keep_within.")
    retention_after_run: Literal["off", "forget", "prune"] | None = None
    excludes: list[str] | None = Field(default=None, max_length=MAX_PATHS)
    exclude_caches: bool | None = None
    exclude_larger_than: str | None = Field(default=None, max_length=40)
    one_file_system: bool | None = None
    tags: list[str] | None = Field(default=None, max_length=100)
    max_attempts: int | None = Field(default=None, ge=1, le=100)

    @model_validator(mode="before")
    @classmethod
    def _text_without_nul(cls, data: Any) -> Any:
        _no_nul(data)
        return data


class NewConfig(ConfigFields):
    name: str = Field(max_length=64)
    source_paths: list[str] = Field(max_length=MAX_PATHS, description="Absolute paths to back up.")


class RunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["full", "incremental"] = "incremental"


class RemoveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    without_kit: bool = False


def _absolute(field: str, path: str) -> str:
    if not path or not os.path.isabs(path):
        raise UsageError(f"{field}: give an absolute path (starting with /)")
    return os.path.normpath(path)


def _folder(path: str) -> str:
    """A folder below a WebDAV client's URL: relative, without `..`."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise UsageError("target_path: give a folder below the WebDAV client's URL (no '..')")
    return "/".join(parts)


def _schedule_docs(specs: list[str], current: list[dict]) -> list[dict]:
    """Docs of `specs`; a spec the configuration has already keeps its rules (window, delay...)."""
    from strongroom.schedule.spec import parse_schedule

    kept = {doc.get("spec"): doc for doc in current}
    docs = []
    for spec in specs:
        spec = spec.strip()
        docs.append(kept.get(spec) or parse_schedule(spec).to_doc())
    return docs


def apply_fields(config: BackupConfig, body: ConfigFields) -> BackupConfig:
    """`config` changed by the fields given in `body` (checked as `config add` checks them)."""
    given = body.model_fields_set
    if "source_paths" in given and body.source_paths is not None:
        config.source_paths = [_absolute("source_paths", p) for p in body.source_paths]
    if "target_client_id" in given or "target_path" in given:
        client = body.target_client_id if "target_client_id" in given else config.target_client_id
        path = body.target_path if "target_path" in given else config.target_path
        if (client or None) == (config.target_client_id or None) and path == config.target_path:
            pass  # unchanged: kept as stored, not normalised anew
        elif not client or client == "local":
            config.target_client_id, config.target_path = None, _absolute("target_path", path or "")
        else:
            config.target_client_id, config.target_path = client, _folder(path or "")
    for key in ("encrypt", "compression", "retention_after_run", "exclude_caches", "exclude_larger_than",
                "one_file_system", "max_attempts"):
        if key in given and getattr(body, key) is not None:
            setattr(config, key, getattr(body, key))
    if "exclude_larger_than" in given and body.exclude_larger_than is None:
        config.exclude_larger_than = None
    for key in ("excludes", "tags"):
        if key in given:
            setattr(config, key, [item.strip() for item in getattr(body, key) or [] if item.strip()])
    if "retention" in given:
        config.retention = {k: v for k, v in (body.retention or {}).items() if v not in (None, "", 0)}
    if "schedules" in given:
        config.schedules = _schedule_docs([s for s in body.schedules or [] if s.strip()], config.schedules)
    if body.password:
        if not config.encrypt:
            raise UsageError("password: a configuration without encryption takes no password")
        config.password_file = config.password_env = config.password_command = None
        config.password = body.password
    config.validate()  # the same checks `config add` makes, one line naming the field
    return config


def config_doc(manager, config: BackupConfig) -> dict:
    """One configuration's settings as the form edits them; never a password."""
    from strongroom.services.describe import password_source, target_of

    doc = config.to_doc()
    for key in ("secret_ref", "postgres_secret_ref", "password_file", "password_env", "password_command"):
        doc.pop(key, None)
    doc["source_kind"] = config.source_kind
    doc["source"] = config.describe_source()
    doc["target"] = target_of(manager, config)
    doc["target_client_id"] = None if config.is_local else config.target_client_id
    doc["password"] = password_source(config)
    if config.copy_to:  # shown, not edited here: where it is and where its password lives, in words
        from strongroom.services.describe import copy_password_source, copy_target_of
        doc["copy_to"] = {"target": copy_target_of(manager, config), "password": copy_password_source(config)}
    doc["codec"] = config.codec
    doc["schedule_specs"] = [s.get("spec") for s in config.schedules]
    return doc


def _rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def overview_doc(item) -> dict:
    status = item.status
    return {"name": item.name, "status": item.health.colour, "status_reason": item.health.reason,
            "last_success": _rfc3339(status.last_success), "next_run": _rfc3339(status.next_run),
            "points": item.points, "size": status.size_bytes, "restore_size": status.restore_size_bytes,
            "target": item.target, "overdue": status.overdue,
            "last_run": None if status.last_run is None else {
                "status": status.last_run.status, "time": _rfc3339(status.last_run.time),
                "error": status.last_run.error},
            "pending": item.health.pending}


def existing(manager, name: str) -> BackupConfig:
    """The configuration `name`, or a 404."""
    if manager.catalog.get_config(name) is None:
        raise HTTPException(404, f"no configuration named {name!r}")
    return manager.get_config(name)


def _stored(step) -> Any:
    """Run `step` (an add or an edit), a repository it cannot use being a 400."""
    try:
        return step()
    except WrongPassword:
        raise UsageError("the target holds a repository already and the password does not open it: "
                         "give its password") from None
    except (FolderNotEmpty, RepositoryExists, RepositoryNotFound) as e:
        raise UsageError(str(e)) from None


def routes(console) -> APIRouter:
    router = APIRouter(tags=["configurations"])
    reader = console.reader

    def now() -> datetime:
        return datetime.fromtimestamp(console.clock(), timezone.utc)

    @router.get("/api/configs")
    def list_configs() -> list[dict]:
        """Every configuration with its colour (green, amber, red) and why, from the catalog alone."""
        from strongroom.services.health import overviews
        return [overview_doc(item) for item in overviews(reader, now(), console.zone)]

    @router.get("/api/configs/{name}")
    def get_config(name: str) -> dict:
        """One configuration's settings; its password only as where it lives."""
        return config_doc(reader, existing(reader, name))

    @router.post("/api/configs", status_code=201)
    def create_config(body: NewConfig) -> dict:
        """Create a configuration and initialise its repository, as `strongroom config add` does."""
        if not body.target_path:
            raise UsageError("target_path: give a local directory, or a WebDAV client and a folder below it")
        if not body.source_paths:
            raise UsageError("source_paths: give at least one path to back up")
        if reader.catalog.get_config(body.name) is not None:
            raise UsageError(f"name: a configuration named {body.name!r} exists already")
        config = apply_fields(BackupConfig(name=body.name, source_paths=[]), body)
        generated = config.encrypt and not config.password
        _stored(lambda: reader.add_config(config))
        return {**config_doc(reader, config), "generated_key": generated}

    @router.put("/api/configs/{name}")
    def edit_config(name: str, body: ConfigFields) -> dict:
        """Change the fields given; a password left out stays as it is."""
        config = apply_fields(existing(reader, name), body)
        _stored(lambda: reader.update_config(config))
        return config_doc(reader, reader.get_config(name))

    @router.delete("/api/configs/{name}")
    def remove_config(name: str, body: RemoveBody | None = None) -> dict:
        """Forget a configuration (its points stay in the repository). Refused while its key lives only
        in the secrets store without a recovery kit on record, unless `{"without_kit": true}`."""
        from strongroom.services.key_safety import key_left_unrecoverable

        config = existing(reader, name)
        if not (body and body.without_kit):
            why = key_left_unrecoverable(reader, config)
            if why:
                raise UsageError(f"config {name}: {why}: nothing would find that key again. Export its "
                                 f"recovery kit first (`strongroom key export {name}`), or remove it without one")
        reader.remove_config(name)
        return {"removed": name}

    @router.post("/api/configs/{name}/run", status_code=202)
    def run_config(name: str, body: RunBody) -> dict:
        """Queue a backup now; answers `{"job": ID, "queued_already": BOOL}` (follow it on
        /api/events or /api/jobs/ID). A backup of the same kind that waits to start
        already is answered instead of queueing a second one (`queued_already`)."""
        existing(reader, name)
        handle, new = console.manager.request_backup(name, body.kind)
        return {"job": handle.id, "queued_already": not new}

    @router.get("/api/clients", tags=["storage"])
    def list_clients() -> list[dict]:
        """The WebDAV clients (id, url without a password, user, vendor)."""
        from strongroom.services.describe import client_docs
        return client_docs(reader.catalog)

    @router.get("/api/storage/budget", tags=["storage"])
    def storage_budget() -> list[dict]:
        """The request budget left per WebDAV client that keeps one."""
        from strongroom.services.budgets import webdav_budgets
        return [{"client": b.client, "url": b.url, "remaining": b.remaining, "capacity": b.capacity,
                 "window_seconds": b.window_seconds} for b in webdav_budgets(reader)]

    return router

