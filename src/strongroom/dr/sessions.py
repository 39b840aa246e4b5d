"""The recovery sessions of a plan run: one for the whole run, one per step.

They are ordinary rows of the catalog's sessions table, in the form the
recovery service stores, so `RecoveryService.get_recovery_progress(id)`
answers for any of them, in this process or a later one. All are made when
the run starts ("pending"); the runner's events move them on. A step that
is skipped ends "skipped".
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from strongroom.dr.plan import Plan
from strongroom.dr.results import PlanRun
from strongroom.engine.progress import event_type
from strongroom.services.catalog import Catalog
from strongroom.services.recovery import SessionState
from strongroom.services.results import RecoveryProgress
from strongroom.services.session_owner import this_process

SAVE_EVERY = 1.0  # seconds between catalog writes of one session's progress
MAX_ERRORS = 100

_STEP_STATUS = {"passed": "completed", "warning": "completed", "failed": "failed", "cancelled": "cancelled",
                "skipped": "skipped"}


@dataclass
class _State(SessionState):
    saved: float = field(default=0.0, repr=False)  # when its progress was last written


class RunSessions:
    """The sessions of one run; call it with each of the runner's events."""

    def __init__(self, catalog: Catalog, run_id: str, plan: Plan, mode: str) -> None:
        self.catalog = catalog
        self.run = _State(run_id)
        self.steps = {step.name: _State(uuid.uuid4().hex[:16]) for step in plan.steps}
        self._lock = threading.Lock()
        owner = this_process()  # a reader can tell a run killed with -9 (services/session_owner.py)
        catalog.add_session(run_id, None, {"dr_plan": plan.name, "plan_version": plan.version, "mode": mode,
                                           "steps": [s.session_id for s in self.steps.values()], "owner": owner})
        for step in plan.steps:
            catalog.add_session(self.steps[step.name].session_id, step.config,
                                {"dr_plan": plan.name, "step": step.name, "run": run_id, "mode": mode,
                                 "owner": owner})

    @property
    def step_ids(self) -> list[str]:
        return [s.session_id for s in self.steps.values()]

    def get(self, session_id: str) -> RecoveryProgress | None:
        with self._lock:
            if session_id == self.run.session_id:
                return self.run.frozen()
            state = next((s for s in self.steps.values() if s.session_id == session_id), None)
            return None if state is None else state.frozen()

    def start(self) -> None:
        with self._lock:
            self.run.status, self.run.started = "running", time.time()
            self._save(self.run, force=True)

    def __call__(self, event: dict) -> None:
        kind = event_type(event)
        with self._lock:
            if kind == "dr_status":
                self._status(self.run, event["files_done"], event["total_files"], event["bytes_done"],
                             event["total_bytes"], event["percent"], event["rate"], event["eta"])
                return
            state = self.steps.get(event.get("step"))
            if state is None:
                return
            if kind == "dr_step" and event.get("action") == "start":
                state.status, state.started = "running", time.time()
                self._save(state, force=True)
            elif kind == "dr_step" and event.get("action") == "end":
                state.status = _STEP_STATUS.get(event.get("status"), "failed")
                state.errors += [m for m in event.get("messages", []) if m not in state.errors][:MAX_ERRORS]
                if state.status == "completed":
                    state.processed_files, state.processed_bytes = state.total_files, state.total_bytes
                    state.percent, state.eta = 100.0, 0.0
                self._save(state, force=True)
            elif kind == "status":
                done, total = event.get("bytes_done", 0), event.get("total_bytes", 0)
                elapsed = max(time.time() - state.started, 1e-6)
                rate = done / elapsed
                self._status(state, event.get("files_done", 0), event.get("total_files", 0), done, total,
                             round(100.0 * done / total, 1) if total else 0.0, round(rate, 1),
                             round((total - done) / rate, 1) if rate > 0 and total >= done else None)
            elif kind == "error" and len(state.errors) < MAX_ERRORS:
                state.errors.append(f"{event.get('path')}: {event.get('message')}")

    def _status(self, state: _State, files: int, total_files: int, done: int, total: int, percent: float,
                rate: float, eta: float | None) -> None:
        state.processed_files, state.total_files = files, total_files
        state.processed_bytes, state.total_bytes = min(done, total or done), total
        state.percent, state.rate, state.eta = percent, rate, eta
        self._save(state)

    def _save(self, state: _State, force: bool = False) -> None:
        if not force and time.monotonic() - state.saved < SAVE_EVERY:
            return
        state.saved = time.monotonic()
        self.catalog.update_session(state.session_id, status=state.status, progress=state.stored())

    def finish(self, run: PlanRun | None, error: str | None = None) -> None:
        """The final state of every session: from the PlanRun, or `error` when the run broke off."""
        with self._lock:
            if run is not None:
                for step in run.steps:
                    state = self.steps[step.name]
                    state.status = _STEP_STATUS.get(step.status, "failed")
                    if step.status == "skipped":
                        state.errors = list(step.messages)
                cancelled = any(s.status == "cancelled" for s in run.steps)
                self.run.status = "completed" if run.verdict in ("pass", "pass-with-warnings") else \
                    "cancelled" if cancelled else "failed"
                self.run.errors = list(run.reasons)[:MAX_ERRORS]
                if self.run.status == "completed":
                    self.run.percent, self.run.eta = 100.0, 0.0
            else:
                for state in self.steps.values():
                    if state.status in ("pending", "running"):
                        state.status = "failed"
                self.run.status = "failed"
                self.run.errors.append(error or "the run stopped")
            for state in (self.run, *self.steps.values()):
                self.catalog.update_session(state.session_id, status=state.status, progress=state.stored(),
                                            error="; ".join(state.errors[:5]) or None)
