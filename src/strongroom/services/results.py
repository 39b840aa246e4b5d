"""What the Python API returns: frozen dataclasses with UTC datetimes.

Every result has `to_dict()`, a JSON-able form with times in RFC 3339, so
the command line prints them as they are. Sizes are bytes, durations are
seconds (float), times are timezone-aware `datetime`s in UTC.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Callable, Mapping


def utc(seconds: float | None) -> datetime | None:
    """An epoch time (as the catalog keeps it) as a UTC datetime; None stays None."""
    return None if seconds is None else datetime.fromtimestamp(float(seconds), timezone.utc)


def plain(value: Any) -> Any:
    """A result as JSON-able values: dataclasses as dicts, times as RFC 3339 text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Result:
    """The base of every result: `to_dict()` for JSON."""

    def to_dict(self) -> dict[str, Any]:
        """This result as JSON-able values, times in RFC 3339 (UTC, `Z`)."""
        return plain(self)


def _ints(doc: Mapping[str, Any], *names: str) -> dict[str, int]:
    return {name: int(doc.get(name) or 0) for name in names}


# ---- backups and jobs ---------------------------------------------------------------------


@dataclass(frozen=True)
class BackupSummary(Result):
    """The numbers of one backup run, as the engine counted them."""

    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    dirs: int = 0
    total_files: int = 0
    total_bytes: int = 0
    bytes_read: int = 0
    data_blobs: int = 0
    tree_blobs: int = 0
    data_added: int = 0  # bytes of new data and trees before compression (restic's meaning)
    data_added_packed: int = 0  # the same, as stored (compressed, encrypted)
    data_added_raw: int = 0  # the new data blobs before compression
    errors: int = 0  # files or folders that could not be read
    duration: float = 0.0

    @classmethod
    def from_summary(cls, doc: Mapping[str, Any] | None) -> BackupSummary:
        """From a run summary as the engine and the catalog keep it."""
        doc = dict(doc or {})
        # restic's names for the same totals, should the engine's summary use them.
        for ours, restics in (("total_files", "total_files_processed"), ("total_bytes", "total_bytes_processed"),
                              ("duration", "total_duration")):
            doc.setdefault(ours, doc.get(restics))
        if "data_added_packed" not in doc:  # a summary from before JSON schema 1: data_added was the stored size
            doc["data_added_packed"] = doc.get("data_added")
            doc["data_added"] = doc.get("data_added_raw")
        return cls(**_ints(doc, "files_new", "files_changed", "files_unmodified", "dirs", "total_files",
                           "total_bytes", "bytes_read", "data_blobs", "tree_blobs", "data_added",
                           "data_added_packed", "data_added_raw", "errors"),
                   duration=float(doc.get("duration") or 0.0))


@dataclass(frozen=True)
class Job(Result):
    """One backup job of the queue, as the catalog records it."""

    id: int
    config_name: str
    kind: str  # full or incremental: what was asked, then what was made
    priority: int
    status: str  # queued, running, succeeded, failed, cancelled
    attempts: int
    max_attempts: int
    queued_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_try_at: datetime | None = None
    error: str | None = None  # the last failure, or a warning of a job that succeeded
    snapshot_id: str | None = None
    summary: BackupSummary | None = None  # of a job that succeeded

    DONE = ("succeeded", "failed", "cancelled")

    @property
    def done(self) -> bool:
        """True once the job succeeded, failed for good or was cancelled."""
        return self.status in self.DONE

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """From a row of the catalog's job table."""
        stats = row.get("stats") if row["status"] == "succeeded" else None
        return cls(int(row["id"]), row["config"], row["kind"], int(row["priority"]), row["status"],
                   int(row["attempts"]), int(row["max_attempts"]), utc(row["queued_at"]), utc(row.get("started_at")),
                   utc(row.get("finished_at")), utc(row.get("next_try_at")), row.get("error"),
                   row.get("snapshot_id"), BackupSummary.from_summary(stats) if stats else None)


@dataclass(frozen=True)
class BackupResult(Result):
    """A backup that succeeded: the snapshot it made and what the run did."""

    snapshot_id: str
    short_id: str
    config_name: str
    job_id: int
    kind: str  # of the snapshot made: the first incremental run of a configuration makes a full one
    requested_kind: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    summary: BackupSummary
    warning: str | None = None  # e.g. files that could not be read, retention that was not applied
    retention_removed: tuple[str, ...] = ()  # snapshots the configuration's retention removed after the run
    retention_bytes_freed: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BackupResult:
        """From the catalog row of a job that succeeded."""
        stats = row.get("stats") or {}
        retention = stats.get("retention") or {}
        return cls(row["snapshot_id"], row["snapshot_id"][:8], row["config"], int(row["id"]),
                   stats.get("snapshot_kind", row["kind"]), stats.get("requested_kind", row["kind"]),
                   int(row["attempts"]), utc(row.get("started_at")), utc(row.get("finished_at")),
                   BackupSummary.from_summary(stats), row.get("error"), tuple(retention.get("removed") or ()),
                   int(retention.get("bytes_freed") or 0))


@dataclass(frozen=True)
class CopyResult(Result):
    """A copy of a configuration's points into its second target: what was sent."""

    config_name: str
    target: str  # the second target, in words (never a password)
    points_copied: int
    points_skipped: int  # already there
    blobs_sent: int
    bytes_sent: int  # stored in the second target (compressed, encrypted)
    shared_chunker: bool  # the targets share chunker parameters and blob ids: dedup holds across them
    copied: tuple[tuple[str, str], ...] = ()  # (point in the primary, its copy)

    @classmethod
    def from_summary(cls, config_name: str, target: str, summary: Any) -> CopyResult:
        """From the engine's CopySummary."""
        return cls(config_name, target, summary.points_copied, summary.points_skipped, summary.blobs_sent,
                   summary.bytes_sent, summary.shared_chunker,
                   tuple((p.source, p.copy) for p in summary.points if p.copy))


class JobHandle:
    """A queued backup: `manual_backup(..., wait=False)` returns one.

    `status()` is the job's state now; `wait(timeout)` blocks until it is
    done and returns the BackupResult, or raises StrongroomError when the
    job failed (or is still running after `timeout` seconds)."""

    def __init__(self, job_id: int, config_name: str, get_row: Callable[[int], Mapping[str, Any] | None],
                 wait_row: Callable[[int, float | None], Mapping[str, Any]]) -> None:
        self.id = job_id
        self.config_name = config_name
        self._get_row = get_row
        self._wait_row = wait_row

    def __repr__(self) -> str:
        return f"JobHandle(id={self.id}, config_name={self.config_name!r})"

    def job(self) -> Job:
        """The job as the catalog records it now."""
        row = self._get_row(self.id)
        if row is None:
            from strongroom.errors import UsageError
            raise UsageError(f"no job {self.id}")
        return Job.from_row(row)

    def status(self) -> str:
        """queued, running, succeeded, failed or cancelled."""
        return self.job().status

    def wait(self, timeout: float | None = None) -> BackupResult:
        """Block until the job is done; its BackupResult, or StrongroomError if it did not succeed."""
        return backup_outcome(self._wait_row(self.id, timeout))

    def to_dict(self) -> dict[str, Any]:
        """The job's id and configuration."""
        return {"id": self.id, "config_name": self.config_name}


def backup_outcome(row: Mapping[str, Any]) -> BackupResult:
    """The result of a finished job, or the one-line error of one that failed."""
    from strongroom.errors import Interrupted, StrongroomError
    if row["status"] == "succeeded":
        return BackupResult.from_row(row)
    first = (row.get("error") or "").strip().splitlines()
    if row["status"] == "cancelled":
        raise Interrupted(f"backup {row['config']} was cancelled")
    raise StrongroomError(f"backup {row['config']} failed: {first[0] if first else 'unknown error'}")


@dataclass(frozen=True)
class BackupStatistics(Result):
    """The run history of one configuration, from the catalog."""

    config_name: str
    runs: int  # finished runs: succeeded or failed
    successes: int
    failures: int
    last_success: datetime | None
    bytes_read: int
    bytes_stored: int
    duration: float  # seconds, over the runs that succeeded


# ---- validation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationReport(Result):
    """What checking one snapshot found."""

    backup_id: str  # the snapshot id
    config_name: str
    deep: bool
    ok: bool = True
    blobs_checked: int = 0
    packs_checked: int = 0
    packs_read: int = 0
    blobs_authenticated: int = 0
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # check's warnings, e.g. a leftover of an interrupted upload
    advice: tuple[str, ...] = ()  # e.g. a single key and no recovery kit on record
    duration: float = 0.0


# ---- storage --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetSpace(Result):
    """The space on a target as it reports it; None where it does not say."""

    url: str
    used: int | None = None
    available: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class StorageUsage(Result):
    """The storage of one configuration's snapshots."""

    config_name: str
    snapshots: int
    restore_size: int  # of the latest snapshot
    unique_size: int  # the data all its snapshots need, before compression
    stored_size: int  # the same, as stored
    repository_size: int  # every pack of the repository, which other configurations may share
    packs: int
    data_blobs: int
    tree_blobs: int
    dedup_ratio: float | None
    compression_ratio: float | None
    target: TargetSpace

    def sample(self) -> dict[str, Any]:
        """The form the catalog keeps as a storage sample."""
        return {"points": self.snapshots, "restore_size": self.restore_size, "unique_size": self.unique_size,
                "stored_size": self.stored_size, "repository_size": self.repository_size, "packs": self.packs,
                "data_blobs": self.data_blobs, "tree_blobs": self.tree_blobs, "dedup_ratio": self.dedup_ratio,
                "compression_ratio": self.compression_ratio,
                "target": {"url": self.target.url, "used": self.target.used, "available": self.target.available,
                           "total": self.target.total}}


@dataclass(frozen=True)
class UsageTotals(Result):
    """Sums over every configuration; a repository shared by several counted once."""

    snapshots: int = 0
    restore_size: int = 0
    unique_size: int = 0
    stored_size: int = 0
    repository_size: int = 0


@dataclass(frozen=True)
class UsageReport(Result):
    """Storage usage of every configuration, the space of each target, and
    the configurations that could not be looked at (an error each)."""

    total: UsageTotals
    configs: Mapping[str, StorageUsage]
    targets: Mapping[str, TargetSpace]
    errors: Mapping[str, str]


@dataclass(frozen=True)
class UsageSample(Result):
    """One storage sample, taken after a run."""

    time: datetime
    repository_size: int | None
    stored_size: int | None
    restore_size: int | None
    snapshots: int | None
    target_used: int | None
    target_available: int | None


@dataclass(frozen=True)
class TrendLine(Result):
    """Growth fitted over samples, and when the target would be full at that rate."""

    span_days: float
    growth_per_day: int | None  # bytes; None until the samples span long enough
    growth_per_week: int | None
    repository_size: int | None
    available: int | None  # the target's free space at the last sample
    full_in_days: float | None = None
    projected_full: date | None = None
    not_filling: bool = False


@dataclass(frozen=True)
class ConfigTrend(Result):
    """The samples of one configuration and the trend they show."""

    config_name: str
    target_url: str | None
    samples: tuple[UsageSample, ...]
    trend: TrendLine


@dataclass(frozen=True)
class TargetTrend(Result):
    """The trend of one repository, over the samples of every configuration using it."""

    url: str
    configs: tuple[str, ...]
    trend: TrendLine


@dataclass(frozen=True)
class StorageTrend(Result):
    """Trends per configuration and per target over the last `days` days."""

    days: float
    configs: Mapping[str, ConfigTrend]
    targets: Mapping[str, TargetTrend]


@dataclass(frozen=True)
class Estimate(Result):
    """What the next run of a configuration would read, likely store, ask of
    the target and take (from a dry run; nothing was written)."""

    config_name: str
    files_new: int
    files_changed: int
    errors: int
    bytes_to_read: int
    new_bytes: int
    bytes_likely_stored: int
    compression_ratio: float | None
    compression_ratio_from: str | None  # sampled, or repository
    packs: int
    requests: int
    read_bytes_per_second: int | None
    store_bytes_per_second: int | None
    request_budget_per_second: float | None
    seconds: float | None
    storage_requests: Mapping[str, int] = field(default_factory=dict)  # what the dry run itself asked


# ---- retention --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionDecision(Result):
    """Whether a policy keeps one snapshot, and the rules that keep it."""

    snapshot_id: str
    time: datetime
    keep: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class RetentionResult(Result):
    """A retention policy applied to one configuration's snapshots."""

    config_name: str
    dry_run: bool
    decisions: tuple[RetentionDecision, ...]
    removed: tuple[str, ...]  # snapshot ids (none on a dry run)
    kept: int
    pruned: bool
    bytes_freed: int = 0
    packs_deleted: int = 0
    packs_repacked: int = 0
    prune: Mapping[str, Any] | None = None  # prune's own summary, when it ran


@dataclass(frozen=True)
class CleanupResult(Result):
    """What `cleanup_old_backups` removed and freed."""

    config_name: str
    removed: tuple[str, ...]
    kept: int
    bytes_freed: int
    packs_deleted: int
    packs_repacked: int


# ---- recovery -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryProgress(Result):
    """A restore session at one moment."""

    session_id: str
    status: str = "pending"  # pending, running, completed, failed, cancelled; a DR step also skipped
    processed_files: int = 0
    total_files: int = 0
    processed_bytes: int = 0
    total_bytes: int = 0
    percent: float = 0.0
    rate: float = 0.0  # bytes per second
    eta: float | None = None  # seconds
    errors: tuple[str, ...] = ()
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def done(self) -> bool:
        """True once the session completed, failed, was cancelled (or, a DR step, skipped)."""
        return self.status in ("completed", "failed", "cancelled", "skipped")

    @property
    def elapsed(self) -> float:
        """Seconds since the session started."""
        return max(0.0, time.time() - self.started.timestamp())
