"""Named backup configurations: what to back up, where, and how."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from strongroom.errors import UsageError
from strongroom.model.retention import Policy, policy_from_doc
from strongroom.repo.compression import parse_compression

LOCAL = "local"
# What happens after each run: nothing, forget by the retention policy, or
# forget and then prune.
AFTER_RUN = ("off", "forget", "prune")
# Fields that live on the object only: never stored, never checked by the schema.
TRANSIENT = ("password", "taken_from_repository")


@dataclass
class BackupConfig:
    """One named backup: what to back up (`source_paths`), where (a local
    directory as `target_path`, or a WebDAV client id and a folder below its
    URL), and how (encryption, compression, excludes, retention).

    The fields are checked when it is made (pydantic: a string where a list
    of paths belongs, an unknown compression, a negative retention count are
    refused with a UsageError naming the field) and again, complete, when it
    is stored. `password` is taken in and moved to the secrets store; it is
    never written to the catalog or the repository."""

    name: str
    source_paths: list[str]
    target_client_id: str | None = None  # a WebDAV client id, or None / "local" for a directory
    target_path: str = ""  # the repository: a folder on the WebDAV server, or a local directory
    encrypt: bool = True
    compression: bool | str = True  # True: the default codec (zstd), False: none, or a codec name
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None
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
    # Set by `add_config`: the fields it took from the copy of this configuration
    # that the repository held (a configuration added again on a new machine).
    taken_from_repository: list[str] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        from strongroom.services.config_schema import check_fields
        check_fields(self._fields())

    def _fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "taken_from_repository"}

    @property
    def is_local(self) -> bool:
        """True when the target is a local directory rather than a WebDAV client."""
        return self.target_client_id in (None, "", LOCAL)

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
        (the paths a stored version of this configuration already had)."""
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
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> BackupConfig:
        """A configuration from its stored form; unknown keys (of a newer version) are left out."""
        known = {f.name for f in fields(cls)} - set(TRANSIENT)
        return cls(**{k: v for k, v in doc.items() if k in known})
