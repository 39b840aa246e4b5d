"""Named backup configurations: what to back up, where, and how."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields

from strongroom.errors import UsageError
from strongroom.model.retention import policy_from_doc
from strongroom.repo.compression import parse_compression

LOCAL = "local"
# What happens after each run: nothing, forget by the retention policy, or
# forget and then prune.
AFTER_RUN = ("off", "forget", "prune")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass
class BackupConfig:
    """One named backup. `password` is taken in and moved to the secrets store;
    it is never written to the catalog or the repository."""

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
    retention: dict = field(default_factory=dict)
    retention_after_run: str = "off"  # one of AFTER_RUN

    @property
    def is_local(self) -> bool:
        return self.target_client_id in (None, "", LOCAL)

    @property
    def codec(self) -> str:
        if self.compression is True:
            return "zstd"
        if self.compression is False:
            return "none"
        parse_compression(str(self.compression))
        return str(self.compression)

    def validate(self) -> None:
        if not _NAME.fullmatch(self.name or ""):
            raise UsageError(f"config name {self.name!r}: use letters, digits, '.', '-', '_' (up to 64)")
        if not self.source_paths or not all(isinstance(p, str) and p for p in self.source_paths):
            raise UsageError(f"config {self.name}: give at least one source path")
        if not self.target_path:
            raise UsageError(f"config {self.name}: give a target path")
        if "://" in self.target_path:
            # Not echoed: a URL here may carry a password.
            raise UsageError(f"config {self.name}: the target path is a URL; a WebDAV target is a client "
                             f"(WebDAVService.add_client, or `strongroom client add`) and a folder below "
                             f"its URL, a local target a directory")
        if self.max_attempts < 1:
            raise UsageError(f"config {self.name}: max_attempts must be at least 1")
        self.codec  # validates the compression choice
        policy = policy_from_doc(self.retention)
        if self.retention_after_run not in AFTER_RUN:
            raise UsageError(f"config {self.name}: retention_after_run must be one of {', '.join(AFTER_RUN)}")
        if self.retention_after_run != "off" and policy.empty:
            raise UsageError(f"config {self.name}: applying retention after each run needs a retention "
                             f"policy (keep_last, keep_daily, keep_within, ...)")

    @property
    def policy(self):
        return policy_from_doc(self.retention)

    def to_doc(self) -> dict:
        """What is stored: everything but the password itself."""
        doc = asdict(self)
        doc.pop("password")
        return doc

    @classmethod
    def from_doc(cls, doc: dict) -> "BackupConfig":
        known = {f.name for f in fields(cls)} - {"password"}
        return cls(**{k: v for k, v in doc.items() if k in known})
