"""The changing facts of a plan run while it runs: each step's configuration
and snapshot as found when the plan starts, the step in flight, and the
files and bytes of the whole plan (for `dr_status` events)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from strongroom.dr.results import HookResult, Problem
from strongroom.model.snapshot import Snapshot
from strongroom.repo.repository import Repository
from strongroom.services.configs import BackupConfig


@dataclass
class Resolved:
    """A step's configuration, repository and snapshot, found when the plan starts."""

    config: BackupConfig | None = None
    repo: Repository | None = None
    repository: str = ""
    snapshot: Snapshot | None = None
    rule: str = ""
    error: str | None = None
    damaged: list[str] = field(default_factory=list)  # snapshots of the repository that did not read


@dataclass
class StepState:
    """The changing facts of the step being run; frozen into a StepResult at its end."""

    messages: list[str] = field(default_factory=list)
    hooks: list[HookResult] = field(default_factory=list)
    problems: tuple[Problem, ...] = ()
    failed: bool = False
    cancelled: bool = False
    warnings: int = 0
    errors: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    restore_seconds: float = 0.0
    database: str | None = None  # the database the step's dump was loaded into

    def fail(self, message: str) -> None:
        self.failed = True
        self.errors += 1
        self.messages.append(message)

    def warn(self, message: str) -> None:
        self.warnings += 1
        self.messages.append(message)


class PlanProgress:
    """Files and bytes of the whole plan: the steps done, plus the one running."""

    def __init__(self, totals: list[tuple[int, int]]) -> None:
        self.totals = totals  # per step (files, bytes): the snapshot's, then the restore's own count
        self.done = [(0, 0)] * len(totals)
        self.started = time.monotonic()

    def event(self, plan: str, index: int) -> dict:
        files_done = sum(f for f, _ in self.done)
        bytes_done = sum(b for _, b in self.done)
        total_files = sum(f for f, _ in self.totals)
        total_bytes = sum(b for _, b in self.totals)
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = bytes_done / elapsed
        fraction = min(1.0, bytes_done / total_bytes) if total_bytes else \
            min(1.0, files_done / total_files) if total_files else 1.0
        eta = round((total_bytes - bytes_done) / rate, 1) if rate > 0 and total_bytes >= bytes_done else None
        return {"message_type": "dr_status", "plan": plan, "step_index": index, "steps": len(self.totals),
                "files_done": files_done, "total_files": total_files, "bytes_done": bytes_done,
                "total_bytes": total_bytes, "percent": round(100.0 * fraction, 1), "rate": round(rate, 1),
                "eta": eta}
