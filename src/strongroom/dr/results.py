"""What running or testing a plan gives: frozen results, the evidence a report is made of.

Times are UTC datetimes, durations seconds, sizes bytes (as in
services/results.py). `PlanRun.summary()` is the JSON contract that
`dr run --json` and `dr test --json` end with (docs/json.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from strongroom.services.results import Result, plain

STEP_STATUSES = ("passed", "warning", "failed", "skipped", "cancelled")
VERDICTS = ("pass", "pass-with-warnings", "fail")


@dataclass(frozen=True)
class HookResult(Result):
    """One command run before or after a step."""

    phase: str  # before | after
    command: str
    mode: str  # essential | optional
    exit_code: int | None  # None: it could not start, or was killed at its timeout
    timed_out: bool
    duration_seconds: float
    output_tail: tuple[str, ...]  # the last lines of its stdout and stderr, as they came
    ok: bool


@dataclass(frozen=True)
class Problem(Result):
    """A damaged or missing object and the restored files it touches."""

    object: str  # e.g. "pack 3fa2c1d0…", "blob 9e1b…", "tree 77ac…"
    message: str
    files: tuple[str, ...]  # paths as they are in the snapshot


@dataclass(frozen=True)
class RepositoryCheck(Result):
    """The check made of a repository a rehearsal restored from."""

    repository: str  # its URL, never with a password
    structure_ok: bool
    packs_total: int
    packs_read: int
    share_read: float  # packs_read / packs_total (0..1)
    problems: tuple[str, ...]
    duration_seconds: float


@dataclass(frozen=True)
class StepResult(Result):
    """One step of a plan as it went."""

    name: str
    config: str
    repository: str  # URL without password
    status: str  # one of STEP_STATUSES
    target: str
    snapshot: str | None
    snapshot_time: datetime | None
    rule: str  # the point rule in words ("latest", ...)
    rpo_seconds: float | None  # the snapshot's age when the plan started
    rpo_target: float | None
    rto_target: float | None
    started: datetime | None
    duration_seconds: float  # commands, restore and verification
    restore_seconds: float
    files: int
    bytes: int
    throughput: float  # bytes per second of the restore
    files_verified: int
    verified: bool  # every restored file checked against its snapshot (False when verification was off)
    warnings: int
    errors: int
    messages: tuple[str, ...]  # why it failed or warned, in words
    problems: tuple[Problem, ...]
    hooks: tuple[HookResult, ...]
    database: str | None = None  # the database a PostgreSQL dump was loaded into
    include: tuple[str, ...] = ()  # the step's include patterns (none: the whole snapshot)

    def summary(self) -> dict[str, Any]:
        """This step in the `--json` contract."""
        return {"name": self.name, "config": self.config, "status": self.status, "snapshot": self.snapshot,
                "snapshot_time": plain(self.snapshot_time), "rpo_seconds": self.rpo_seconds,
                "duration_seconds": self.duration_seconds, "files_verified": self.files_verified,
                "warnings": self.warnings, "errors": self.errors,
                "problems": [plain(p) for p in self.problems], "target": self.target,
                "files": self.files, "bytes": self.bytes, "messages": list(self.messages)}


@dataclass(frozen=True)
class PlanRun(Result):
    """A plan run (a real recovery) or tested (a rehearsal into a scratch area)."""

    id: str  # the session id
    plan: str
    plan_version: str
    mode: str  # run | test
    trigger: str  # manual | api | schedule | recover
    host: str
    strongroom_version: str
    started: datetime
    finished: datetime
    target_base: str  # where the steps restored (the scratch area in a test)
    scratch_kept: bool
    steps: tuple[StepResult, ...]
    rto_seconds: float  # achieved: plan start to the last step verified
    rto_target: float | None
    rpo_target: float | None
    checks: tuple[RepositoryCheck, ...]
    cleanup_seconds: float
    verdict: str  # one of VERDICTS
    reasons: tuple[str, ...]  # why the verdict is what it is

    def summary(self) -> dict[str, Any]:
        """The one summary object `dr run --json` and `dr test --json` end with."""
        return {"message_type": "summary", "id": self.id, "plan": self.plan, "plan_version": self.plan_version,
                "mode": self.mode, "verdict": self.verdict, "reasons": list(self.reasons),
                "rto_seconds": self.rto_seconds, "rto_target": self.rto_target, "rpo_target": self.rpo_target,
                "started": plain(self.started), "finished": plain(self.finished),
                "steps": [s.summary() for s in self.steps]}
