"""Where the management layer meets the engine: repositories and backups per config."""

from __future__ import annotations

import os
import secrets as pysecrets
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from strongroom.engine.backup import BackupOptions, BackupResult, run_backup
from strongroom.engine.progress import Listener, ignore
from strongroom.daemon.logs import register_secret
from strongroom.engine.walk import ExcludeRules
from strongroom.errors import RepositoryNotFound, SnapshotNotFound, StrongroomError, UsageError
from strongroom.model.select import find_snapshot
from strongroom.model.snapshot import Snapshot
from strongroom.settings import Settings
from strongroom.repo.repository import DEFAULT_PACK_SIZE, Repository
from strongroom.services.configs import BackupConfig
from strongroom.sources import Source, source_for
from strongroom.storage import open_storage
from strongroom.storage.base import Storage

if TYPE_CHECKING:
    from strongroom.engine.copy import CopySummary
    from strongroom.services.catalog import Catalog
    from strongroom.services.secrets import SecretsStore
    from strongroom.services.webdav_service import WebDAVService

# Called with the storage's events (retries, throttling) while a repository is open.
StorageEvents = Callable[[dict], None]


class BackupService:
    """Where the management layer meets the engine: the repository of each
    configuration, its password, and backups and snapshots per configuration.
    BackupManager, RecoveryService and the command line all go through it."""

    def __init__(self, catalog: Catalog, webdav_service: WebDAVService, secrets: SecretsStore,
                 cache_root: str | None = None, settings: Settings | None = None) -> None:
        self.catalog = catalog
        self.webdav = webdav_service
        self.secrets = secrets
        self.cache_root = cache_root
        self.settings = settings or Settings.from_env()
        self._repo_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # ---- configurations --------------------------------------------------------

    def get_config(self, name: str) -> BackupConfig:
        """The configuration named `name`; UsageError when there is none."""
        doc = self.catalog.get_config(name)
        if doc is None:
            raise UsageError(f"no backup configuration named {name!r}")
        return BackupConfig.from_doc(doc)

    def list_configs(self) -> list[BackupConfig]:
        """Every configuration in the catalog."""
        return [BackupConfig.from_doc(doc) for doc in self.catalog.list_configs()]

    # ---- repositories ------------------------------------------------------------

    def settings_for(self, config: BackupConfig) -> Settings:
        """The settings of a run of `config`: the service's, with the
        configuration's own connections over them."""
        if config.connections is None:
            return self.settings
        return replace(self.settings, connections=config.connections)

    def storage_for(self, config: BackupConfig, on_event: StorageEvents | None = None) -> Storage:
        """The storage the configuration's repository lives on."""
        if config.is_local:
            return open_storage("local:" + config.target_path, settings=self.settings_for(config))
        return self.webdav.open_storage(config.target_client_id, config.target_path, self.cache_root, on_event,
                                        settings=self.settings_for(config))

    def password_for(self, config: BackupConfig) -> bytes | None:
        """The repository password of a configuration, from the one source it names.

        Its `password_file` (read at every run, the line end stripped), else its
        `password_env` (the variable's name; read at every run, it must be set),
        else its `password_command` (run at every use: the first line it prints),
        else its key in the secrets store (`secret_ref`). None without encryption.
        Every service that opens a configuration's repository asks here."""
        if not config.encrypt:
            return None
        if config.password_file:
            try:
                with open(config.password_file, "rb") as f:
                    password = f.read().rstrip(b"\r\n")
            except OSError as e:
                raise UsageError(f"config {config.name}: cannot read password file: {e.strerror}") from None
            register_secret(password)  # never in a log line of the daemon
            return password
        if config.password_env:
            value = os.environb.get(config.password_env.encode())
            if not value:
                raise UsageError(f"config {config.name}: variable {config.password_env} is not set")
            register_secret(value)
            return value
        if config.password_command:
            from strongroom.services.password_command import run_password_command
            value = run_password_command(config.password_command, f"config {config.name}: the password command")
            register_secret(value)
            return value
        secret = self.secrets.get(config.secret_ref) if config.secret_ref else None
        if secret is None:
            raise UsageError(f"config {config.name}: its repository key is not in the secrets store; "
                             "give it again with `strongroom config edit NAME --store-password`")
        # Kept as text: a password that is not UTF-8 went in with surrogate escapes.
        return secret.encode("utf-8", "surrogateescape")

    def take_password(self, config: BackupConfig) -> None:
        """Move a given password (or a generated key) into the secrets store."""
        if not config.encrypt or config.password_file or config.password_env or config.password_command:
            config.password = None
            return
        if config.password is None and config.secret_ref and self.secrets.get(config.secret_ref):
            return
        secret = config.password or pysecrets.token_urlsafe(32)
        # Always a new reference: the old secret stays until the new one has
        # opened the repository (the manager then removes the old one).
        config.secret_ref = self.secrets.new_ref(f"repo:{config.name}")
        self.secrets.set(config.secret_ref, secret)
        config.password = None

    def take_copy_password(self, config: BackupConfig) -> None:
        """Move a given password of the second target into the secrets store (a
        new reference each time; the manager removes the one it replaces)."""
        if config.copy_to is None:
            config.copy_to_password = None
            return
        if config.copy_to_password is None:
            return
        ref = self.secrets.new_ref(f"copy:{config.name}")
        self.secrets.set(ref, config.copy_to_password)
        config.copy_to = {**{k: v for k, v in config.copy_to.items()
                             if k not in ("password_file", "password_env", "password_command")}, "secret_ref": ref}
        config.copy_to_password = None

    def take_source_password(self, config: BackupConfig) -> None:
        """Move a given database password into the secrets store (a new
        reference each time; the manager removes the one it replaces). A
        configuration that is no longer a PostgreSQL source keeps none."""
        if config.source_kind != "postgres":
            config.postgres_password = config.postgres_secret_ref = None
            return
        config.set_postgres(config.postgres)  # a password set into the field afterwards
        if config.postgres_password is None:
            return
        config.postgres_secret_ref = self.secrets.new_ref(f"postgres:{config.name}")
        self.secrets.set(config.postgres_secret_ref, config.postgres_password)
        config.postgres_password = None

    def source_for(self, config: BackupConfig) -> Source:
        """The source of a configuration that is not files, with its database password."""
        password = None
        if config.source_kind == "postgres":
            password = config.postgres_password
            if password is None and config.postgres_secret_ref:
                password = self.secrets.get(config.postgres_secret_ref)
                if password is None:
                    raise UsageError(f"config {config.name}: its database password is not in the secrets "
                                     f"store; give it again with `strongroom config edit {config.name} "
                                     f"--postgres-password-file FILE`")
        return source_for(config.source_spec(password))

    def open_repository(self, config: BackupConfig, create: bool = False,
                        on_event: StorageEvents | None = None) -> Repository:
        """Open the configuration's repository, or with `create` make it when there is none yet."""
        storage = self.storage_for(config, on_event)
        password = self.password_for(config)
        try:
            return Repository.open(storage, password, self.cache_root, settings=self.settings_for(config))
        except RepositoryNotFound:
            if not create:
                raise
        vendor = storage.info.vendor
        return Repository.init(storage, password, compression=config.codec,
                               pack_size=vendor.pack_size if vendor else DEFAULT_PACK_SIZE,
                               data_fanout=vendor.data_fanout if vendor else 2, cache_root=self.cache_root,
                               settings=self.settings_for(config))

    def open_copy_target(self, config: BackupConfig, primary: Repository | None = None) -> Repository:
        """Open the configuration's second target; with `primary`, make it when
        there is none yet, with the primary's chunker parameters and blob id key
        (as `init --copy-chunker-params`), so dedup holds between the two."""
        target = config.copy_target()
        if target is None:
            raise UsageError(f"config {config.name} has no second target")
        storage = self.storage_for(target)
        password = self.password_for(target)
        try:
            return Repository.open(storage, password, self.cache_root, settings=self.settings_for(target))
        except RepositoryNotFound:
            if primary is None:
                raise
        vendor = storage.info.vendor
        return Repository.init(storage, password, compression=config.codec,
                               pack_size=vendor.pack_size if vendor else DEFAULT_PACK_SIZE,
                               data_fanout=vendor.data_fanout if vendor else 2, cache_root=self.cache_root,
                               settings=self.settings_for(target), ids_of=primary)

    def copy_to_second_target(self, config: BackupConfig, repo: Repository | None = None,
                              progress: Listener = ignore, stop: Callable[[], bool] | None = None) -> CopySummary:
        """Copy the configuration's points that its second target lacks (the newest
        run's, and any an earlier failed copy left behind) into it. Both
        repositories are locked shared, as a backup locks; each copied point
        is written only once every blob it references is there."""
        from strongroom.engine.copy import run_copy
        repo = repo or self.open_repository(config)
        destination = self.open_copy_target(config, repo)
        with repo.lock(exclusive=False, wait=60, stop=stop), destination.lock(exclusive=False, wait=60, stop=stop):
            chosen = self.snapshots(config, repo)
            return run_copy(repo, destination, chosen, progress,
                            existing=destination.list_snapshots(on_damaged=lambda *_: None))

    def repo_lock(self, config: BackupConfig) -> threading.Lock:
        """One backup at a time per repository within this process."""
        key = f"{config.target_client_id}:{config.target_path}"
        with self._guard:
            return self._repo_locks.setdefault(key, threading.Lock())

    # ---- backups and snapshots -------------------------------------------------------

    def run_backup(self, config: BackupConfig, kind: str, progress: Listener = ignore,
                   dry_run: bool = False, stop: Callable[[], bool] | None = None) -> tuple[Repository, BackupResult]:
        """Back up `config` now, in this thread, outside the job queue ("full" reads every file).

        `progress` is called with every engine event of the run: the same
        events `--json` prints (see docs/json.md). With `dry_run` nothing is
        written: the result says what a run would store. `stop`, when it
        turns true, ends a wait for the repository's lock (Interrupted)."""
        if config.source_kind != "files":
            return self._run_source_backup(config, kind, progress, dry_run, stop)
        missing = [p for p in config.source_paths if not os.path.lexists(p)]
        if missing:
            # Not a UsageError: a source on a disk or share that is not mounted
            # yet may come back, so the job queue tries again later.
            raise StrongroomError(f"config {config.name}: source path {missing[0]} does not exist")
        with self.repo_lock(config):
            repo = self.open_repository(config, create=not dry_run)
            options = BackupOptions(
                paths=tuple(config.source_paths),
                excludes=ExcludeRules.build(config.excludes, (), config.exclude_if_present, config.exclude_caches,
                                            config.exclude_larger_than, config.one_file_system),
                tags=tuple(config.tags), full=kind == "full", compression=config.codec, config_name=config.name,
                dry_run=dry_run,
            )
            with repo.lock(exclusive=False, wait=60, stop=stop):
                result = run_backup(repo, options, progress)
            return repo, result

    def _run_source_backup(self, config: BackupConfig, kind: str, progress: Listener, dry_run: bool,
                           stop: Callable[[], bool] | None = None) -> tuple[Repository, BackupResult]:
        """A command, SQLite or PostgreSQL source: one stream, stored as one
        file. The source starts once the repository is open and locked; if
        it fails, so does the backup, and no snapshot is written."""
        source = self.source_for(config)
        with self.repo_lock(config):
            repo = self.open_repository(config, create=not dry_run)
            with repo.lock(exclusive=False, wait=60, stop=stop), source.open() as stream:
                options = BackupOptions(stdin_filename=source.file_name, stdin_stream=stream,
                                        tags=tuple(config.tags), full=kind == "full", compression=config.codec,
                                        config_name=config.name, dry_run=dry_run)
                result = run_backup(repo, options, progress)
            return repo, result

    def snapshots(self, config: BackupConfig, repo: Repository | None = None) -> list[Snapshot]:
        """The configuration's snapshots in its repository (damaged ones left out), oldest first."""
        repo = repo or self.open_repository(config)
        return [s for s in repo.list_snapshots(on_damaged=lambda *_: None) if s.config_name == config.name]

    def find_snapshot(self, snapshot_id: str, config_name: str | None = None) -> tuple[BackupConfig, Repository, Snapshot]:
        """A recovery point by id or unique prefix, in one config or any. The
        configurations whose jobs made it (the catalog knows) are tried first: a
        slow or dead repository of another one is not opened before them."""
        if config_name:
            configs = [self.get_config(config_name)]
        else:
            made_it = set(self.catalog.configs_of_snapshot(snapshot_id.lower()))
            configs = sorted(self.list_configs(), key=lambda c: c.name not in made_it)
        for config in configs:
            try:
                repo = self.open_repository(config)
            except StrongroomError:
                continue
            try:
                return config, repo, find_snapshot(self.snapshots(config, repo), snapshot_id)
            except SnapshotNotFound:
                continue
        raise SnapshotNotFound(f"no recovery point {snapshot_id}")
