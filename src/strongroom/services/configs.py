"""Named backup configurations: what to back up, where, and how."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from strongroom.errors import UsageError
from strongroom.model.retention import Policy, policy_from_doc
from strongroom.repo.compression import parse_compression
from strongroom.sources.base import SourceSpec

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from strongroom.schedule.spec import Schedule

LOCAL = "local"
# What happens after each run: nothing, forget by the retention policy, or
# forget and then prune.
AFTER_RUN = ("off", "forget", "prune")
# Fields that live on the object only: never stored, never checked by the schema.
TRANSIENT = ("password", "postgres_password", "copy_to_password", "taken_from_repository")
# The fields of the sources other than paths, left out of the stored form when unset.
# The share of the packs a scheduled check reads when its schedule names none.
DEFAULT_CHECK_SUBSET = "5%"
_SOURCE_FIELDS = ("source_command", "stdin_filename", "sqlite", "postgres", "postgres_secret_ref")


@dataclass
class BackupConfig:
    """One named backup: what to back up (`source_paths`; or instead one of
    `source_command` with `stdin_filename`, `sqlite`, `postgres`), where (a local
    directory as `target_path`, or a WebDAV client id and a folder below its
    URL), and how (encryption, compression, excludes, retention).

    The fields are checked when it is made (pydantic: a string where a list
    of paths belongs, an unknown compression, a negative retention count are
    refused with a UsageError naming the field) and again, complete, when it
    is stored. `password` is taken in and moved to the secrets store; it is
    never written to the catalog or the repository. A password in the
    `postgres` connection string is taken out of it at once into
    `postgres_password`, which goes to the secrets store in the same way."""

    name: str
    source_paths: list[str]
    target_client_id: str | None = None  # a WebDAV client id, or None / "local" for a directory
    target_path: str = ""  # the repository: a folder on the WebDAV server, or a local directory
    encrypt: bool = True
    compression: bool | str = True  # True: the default codec (zstd), False: none, or a codec name
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None
    # A shell command whose output's first line is the password, run at each use.
    password_command: str | None = None
    excludes: list[str] = field(default_factory=list)
    exclude_caches: bool = False
    exclude_if_present: list[str] = field(default_factory=list)
    exclude_larger_than: str | None = None
    one_file_system: bool = False
    tags: list[str] = field(default_factory=list)
    max_attempts: int = 3
    secret_ref: str | None = None  # where the repository password lives in the secrets store
    # The retention policy of this configuration's points: keep_last, keep_hourly,
    # keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within ("30d"), keep_tags.
    retention: dict[str, Any] = field(default_factory=dict)
    retention_after_run: str = "off"  # one of AFTER_RUN
    # Sources other than paths (at most one; source_paths is empty then): a
    # command whose stdout is stored as the file `stdin_filename`, a SQLite
    # database file, a PostgreSQL database name or connection string (kept
    # without its password; that lives in the secrets store at postgres_secret_ref).
    source_command: str | None = None
    stdin_filename: str | None = None
    sqlite: str | None = None
    postgres: str | None = None
    postgres_password: str | None = field(default=None, repr=False)
    postgres_secret_ref: str | None = None
    # When backups run by themselves (the daemon): each a dict of spec (a cron
    # expression, every DURATION or daily-since-last), window, random_delay,
    # missed (run-once or skip) and priority; see strongroom.schedule.spec.
    schedules: list[dict[str, Any]] = field(default_factory=list)
    # When its repository is verified by itself (the daemon): sampled checks,
    # each a schedule as above plus `subset`, the share of packs one check
    # reads ("5%", or "n/t": the checks go through the t parts in turn).
    check_schedules: list[dict[str, Any]] = field(default_factory=list)
    # Requests to the target at once (pack uploads and downloads); None: the
    # target's default (its WebDAV vendor's, or a directory's).
    connections: int | None = None
    # A second target that gets a copy of each new point after every successful
    # run: {"path": the repository (a local directory, or a folder below the
    # WebDAV client's URL), "client_id": a WebDAV client or None for a directory,
    # and its repository password's one source: "password_file", "password_env",
    # "password_command" or "secret_ref" (the secrets store); never the password}.
    copy_to: dict[str, Any] | None = None
    # The second target's password, taken in and moved to the secrets store
    # (copy_to["secret_ref"]); never stored here.
    copy_to_password: str | None = field(default=None, repr=False)
    # Set by `add_config`: the fields it took from the copy of this configuration
    # that the repository held (a configuration added again on a new machine).
    taken_from_repository: list[str] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        from strongroom.services.config_schema import check_fields
        check_fields(self._fields())
        self.set_postgres(self.postgres)

    def set_postgres(self, dsn: str | None) -> None:
        """Set the PostgreSQL source; a password in `dsn` moves to `postgres_password`."""
        if dsn is None:
            self.postgres = None
            return
        from strongroom.sources.dsn import split_password
        self.postgres, password = split_password(dsn)
        if password is not None:
            self.postgres_password = password

    @property
    def source_kind(self) -> str:
        """files, command, sqlite or postgres (the first given, when a stored doc is wrong)."""
        for kind, value in (("command", self.source_command), ("sqlite", self.sqlite),
                            ("postgres", self.postgres)):
            if value:
                return kind
        return "files"

    def source_spec(self, password: str | None = None) -> SourceSpec:
        """What the source family needs to run this configuration's source (not for files)."""
        target = {"command": self.source_command, "sqlite": self.sqlite, "postgres": self.postgres}
        return SourceSpec(self.source_kind, target[self.source_kind] or "",
                          self.stdin_filename or "stdin", password)

    def describe_source(self) -> str:
        """The source in one line, for a person (never a password)."""
        kind = self.source_kind
        if kind == "files":
            return ", ".join(self.source_paths)
        if kind == "command":
            return f"command {self.source_command} (stored as {self.stdin_filename or 'stdin'})"
        return f"{'SQLite database' if kind == 'sqlite' else 'PostgreSQL'} {self.sqlite or self.postgres}"

    def _fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "taken_from_repository"}

    @property
    def is_local(self) -> bool:
        """True when the target is a local directory rather than a WebDAV client."""
        return self.target_client_id in (None, "", LOCAL)

    def copy_target(self) -> BackupConfig | None:
        """The second target as a configuration of its own (its target and password
        source in place of the primary's), so it is opened as any target is; None
        without one."""
        if not self.copy_to:
            return None
        c = self.copy_to
        return replace(self, target_client_id=c.get("client_id"), target_path=c["path"], encrypt=True,
                       password=None, password_file=c.get("password_file"), password_env=c.get("password_env"),
                       password_command=c.get("password_command"), secret_ref=c.get("secret_ref"), copy_to=None,
                       schedules=[], check_schedules=[])

    def describe_copy_target(self, kind: str | None = None) -> str | None:
        """The second target in one line, for a person (never a password); `kind`
        is its client's (s3, sftp; else a WebDAV client)."""
        if not self.copy_to:
            return None
        client = self.copy_to.get("client_id")
        what = {"s3": "S3 bucket", "sftp": "SFTP server"}.get(kind or "", "WebDAV client")
        return f"{self.copy_to['path']} on {what} {client}" if client not in (None, "", LOCAL) \
            else f"directory {self.copy_to['path']}"

    @property
    def codec(self) -> str:
        """The compression as a codec name (zstd, lz4, gzip, none, with an optional level)."""
        if self.compression is True:
            return "zstd"
        if self.compression is False:
            return "none"
        parse_compression(str(self.compression))
        return str(self.compression)

    def validate(self) -> None:
        """Refuse (UsageError, one line naming the field) a configuration that cannot be stored."""
        from strongroom.services.config_schema import check_complete
        check_complete(self._fields())

    def check_sources(self, known: Iterable[str] = ()) -> None:
        """Refuse a source path that does not exist, unless it is among `known`
        (the paths a stored version of this configuration already had); for
        the other kinds, a source that cannot run here (a command not on
        PATH, a SQLite file that is not there, no pg_dump)."""
        if self.source_kind != "files":
            from strongroom.sources import source_for
            source_for(self.source_spec()).check()
            return
        known = set(known)
        for path in self.source_paths:
            if path not in known and not os.path.lexists(path):
                raise UsageError(f"config {self.name}: source path {path} does not exist")

    @property
    def policy(self) -> Policy:
        """The retention policy of this configuration's snapshots."""
        return policy_from_doc(self.retention)

    def to_doc(self) -> dict[str, Any]:
        """What is stored: everything but the password itself."""
        doc = asdict(self)
        for name in TRANSIENT:
            doc.pop(name)
        # A configuration of files is stored as before these fields existed.
        for key in _SOURCE_FIELDS:
            if doc[key] is None:
                del doc[key]
        for key in ("schedules", "check_schedules"):
            if not doc[key]:
                del doc[key]
        for key in ("password_command", "connections", "copy_to"):
            if doc[key] is None:
                del doc[key]  # stored as before the field existed
        return doc

    def parsed_schedules(self, local_zone: ZoneInfo) -> list[Schedule]:
        """The schedules as strongroom.schedule.spec.Schedule objects, cron read in
        `local_zone` unless a spec names its own."""
        from strongroom.schedule.spec import Schedule
        return [Schedule.from_doc(doc, local_zone) for doc in self.schedules]

    def parsed_check_schedules(self, local_zone: ZoneInfo) -> list[tuple[Schedule, str]]:
        """The check schedules, each with the subset its checks read; their ids
        are "check:SPEC", apart from the backup schedules' ids."""
        from strongroom.schedule.spec import CHECK_PREFIX, Schedule
        return [(replace(Schedule.from_doc(doc, local_zone), id_prefix=CHECK_PREFIX),
                 doc.get("subset") or DEFAULT_CHECK_SUBSET) for doc in self.check_schedules]

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> BackupConfig:
        """A configuration from its stored form; unknown keys (of a newer version) are left out."""
        known = {f.name for f in fields(cls)} - set(TRANSIENT)
        return cls(**{k: v for k, v in doc.items() if k in known})
