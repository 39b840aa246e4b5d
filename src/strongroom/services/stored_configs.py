"""Configurations read back from a repository.

Every change to a configuration is also stored, sealed, in its repository
(`Repository.save_managed_config`), so that a new machine can get it back
from the target alone. Two uses here:

- `merge_stored`: a configuration added again on a new machine takes, for
  each field it leaves at its default, the value of the copy the repository
  holds (its retention, tags, excludes...), so adding it again does not
  throw them away. A value given explicitly wins; one given equal to the
  default cannot be told from one not given, and is taken from the copy.
- `import_configs`: every stored configuration of a repository into the
  catalog, pointed at the repository it was read from, its password in the
  secrets store.

What a repository holds is authenticated under its key, but it may come from
an older or newer version: each copy is checked as a configuration is when
it is made, and one that does not pass is refused with a line naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, fields
from typing import TYPE_CHECKING, Any

from strongroom.errors import FolderNotFound, UsageError
from strongroom.repo.repository import Repository
from strongroom.services.configs import LOCAL, BackupConfig

if TYPE_CHECKING:
    from strongroom.services.backup_service import BackupService

# What a person sets once and expects to survive a new machine. Not the
# sources (given again, the paths may differ), the target (where the copy was
# found) or the password (given, or generated, on this machine).
MERGED_FIELDS = ("compression", "excludes", "exclude_caches", "exclude_if_present", "exclude_larger_than",
                 "one_file_system", "tags", "max_attempts", "retention", "retention_after_run", "schedules",
                 "check_schedules", "connections")


def _defaults() -> dict[str, Any]:
    out = {}
    for f in fields(BackupConfig):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def stored_copy(repo: Repository, name: str) -> dict | None:
    """The newest copy of configuration `name` the repository holds, or None.

    A repository made before configurations were stored has no `configs/`
    folder: it holds none. Any other failed listing is an error."""
    try:
        return repo.load_managed_configs().get(name)
    except FolderNotFound:
        return None


def merge_stored(config: BackupConfig, stored: dict) -> list[str]:
    """Give each field of `config` in MERGED_FIELDS that is at its default the
    value `stored` (a copy of the same configuration) has; the names taken,
    sorted. A copy that does not read as a configuration gives nothing."""
    try:
        copy = BackupConfig(name=config.name, source_paths=[],
                            **{k: stored[k] for k in MERGED_FIELDS if k in stored})
    except (UsageError, TypeError):
        return []
    defaults = _defaults()
    taken = []
    for name in MERGED_FIELDS:
        if name == "retention_after_run":
            continue
        if getattr(config, name) == defaults[name] and getattr(copy, name) != defaults[name]:
            setattr(config, name, getattr(copy, name))
            taken.append(name)
    # Applying retention after runs needs a policy: taken only when there is one.
    if config.retention_after_run == defaults["retention_after_run"] and config.retention \
            and copy.retention_after_run != defaults["retention_after_run"]:
        config.retention_after_run = copy.retention_after_run
        taken.append("retention_after_run")
    return sorted(taken)


def import_configs(service: BackupService, target_path: str, password: str | bytes | None,
                   client_id: str | None = None, names: Iterable[str] | None = None,
                   replace: bool = False,
                   database_passwords: Mapping[str, str] | None = None) -> list[BackupConfig]:
    """Read the stored configurations of one repository into the catalog.

    The repository is a local directory (`target_path`) or a folder below the
    URL of WebDAV client `client_id`; `password` opens it (None: a repository
    without encryption). Each configuration is pointed at that repository, its
    password kept in the secrets store under a new reference. `names` limits
    the import to those (each must be there). A name the catalog has already
    is refused, before anything is written, unless `replace`.
    `database_passwords` (configuration name -> password, from a recovery
    kit) go to the secrets store for the PostgreSQL sources among them."""
    if client_id in (None, "", LOCAL):
        client_id, target_path = None, os.path.abspath(target_path)
    else:
        service.webdav.get_client(client_id)
    secret = password.decode("utf-8", "surrogateescape") if isinstance(password, bytes) else password
    probe = BackupConfig(name="import", source_paths=[], target_client_id=client_id, target_path=target_path,
                         encrypt=secret is not None)
    storage = service.storage_for(probe)
    repo = Repository.open(storage, None if secret is None else secret.encode("utf-8", "surrogateescape"),
                           service.cache_root, settings=service.settings)
    try:
        stored = repo.load_managed_configs()
    except FolderNotFound:
        stored = {}
    wanted = sorted(stored) if names is None else list(dict.fromkeys(names))
    missing = [n for n in wanted if n not in stored]
    if missing:
        raise UsageError(f"{storage.url} holds no configuration named {missing[0]!r}"
                         + (f" (it holds {', '.join(sorted(stored))})" if stored else " (it holds none)"))
    made, old_refs = [], []
    for name in wanted:
        existing = service.catalog.get_config(name)
        if existing is not None and not replace:
            raise UsageError(f"a configuration named {name!r} exists already in the catalog")
        # The old machine's secrets are not here: a database password comes
        # from the kit, or is given again (`config edit --postgres-password-file`).
        doc = {**stored[name], "name": name, "target_client_id": client_id, "target_path": target_path,
               "encrypt": secret is not None, "password": None, "password_file": None, "password_env": None,
               "password_command": None,
               "secret_ref": None, "postgres_password": None, "postgres_secret_ref": None}
        if (doc.get("copy_to") or {}).get("secret_ref"):
            doc["copy_to"] = None  # its password was in the old machine's secrets store: name it again
        try:
            config = BackupConfig.from_doc(doc)
            config.validate()
        except TypeError:
            raise UsageError(f"configuration {name!r} stored in {storage.url} is not readable") from None
        made.append(config)
        if existing and existing.get("secret_ref"):
            old_refs.append(existing["secret_ref"])
    for config in made:
        if secret is not None:
            config.secret_ref = service.secrets.new_ref(f"repo:{config.name}")
            service.secrets.set(config.secret_ref, secret)
        if config.source_kind == "postgres":
            config.postgres_password = (database_passwords or {}).get(config.name)
            service.take_source_password(config)
        service.catalog.put_config(config.name, config.to_doc())
    for ref in old_refs:
        if ref not in {c.secret_ref for c in made}:
            service.secrets.delete(ref)
    return made
