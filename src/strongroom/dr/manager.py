"""The Python API of disaster recovery: plans by name, runs and rehearsals in
the background, their progress as recovery sessions, cancellation."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from strongroom.dr.durations import parse_seconds
from strongroom.dr.plan import Plan, Step, parse_time
from strongroom.dr.results import PlanRun
from strongroom.dr.runner import PlanRunner
from strongroom.dr.sessions import RunSessions
from strongroom.dr.store import PlanStore
from strongroom.errors import StrongroomError, UsageError
from strongroom.notify.notifier import notify_dr_run
from strongroom.services.backup_service import BackupService
from strongroom.services.results import RecoveryProgress, plain

log = logging.getLogger(__name__)

# Called with every event of a run, in its thread: the restores' own events
# (with "plan" and "step" added), dr_step and dr_status (docs/json.md).
Progress = Callable[[dict], None]

MAX_PLAN_TEXT = 1024 * 1024  # a plan file's text, as `dr create --file` reads it
KEPT_RUNS = 100  # finished runs kept in memory for wait() and progress; the catalog keeps them all


@dataclass
class _Run:
    runner: PlanRunner
    sessions: RunSessions
    done: threading.Event = field(default_factory=threading.Event)
    result: PlanRun | None = None
    error: BaseException | None = None


class DisasterRecoveryManager:
    """Disaster-recovery plans over a BackupService: made, listed, run for real
    (`execute_dr_plan`) and rehearsed into a scratch area (`test_dr_plan`).
    Every run and every step is a recovery session in the catalog."""

    def __init__(self, backup_service: BackupService) -> None:
        self.service = backup_service
        self.store = PlanStore(backup_service)
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    # ---- plans -------------------------------------------------------------------------------

    def create_dr_plan(self, name: str, recovery_order: Iterable[str] | None = None,
                       target_base_path: str | None = None, steps: Iterable[Step | dict | str] | None = None,
                       rto: float | str | None = None, rpo: float | str | None = None, on_failure: str = "stop",
                       verify: bool = True, replace: bool = False, test_schedule: str | None = None) -> str:
        """Make a plan and store it (catalog and repositories); returns its id, the name.

        Give `recovery_order` (configuration names, restored in that order below
        `target_base_path`, each into a folder of its name) or `steps` (Step
        objects, or their documents as in a TOML plan). `rto` and `rpo` are
        seconds or durations such as "30m" and "24h". `test_schedule`, a
        schedule SPEC ("every 1w", "0 3 * * 0"), is when the daemon rehearses it."""
        if (recovery_order is None) == (steps is None):
            raise UsageError("give the recovery order (configuration names) or the steps, one of them")
        if not target_base_path:
            raise UsageError("a plan needs a target base path")
        if isinstance(recovery_order, str):
            raise UsageError("the recovery order is a list of configuration names, not one string")
        made = tuple(Step(c) for c in recovery_order) if recovery_order is not None else \
            tuple(s if isinstance(s, Step) else Step.from_doc(s) for s in steps)
        plan = Plan(name, made, os.path.abspath(target_base_path),
                    None if rto is None else parse_seconds(rto, "RTO"),
                    None if rpo is None else parse_seconds(rpo, "RPO"), on_failure, verify,
                    schedule=test_schedule)
        return self.store.save(plan, replace=replace).id

    def list_dr_plans(self) -> list[Plan]:
        """Every plan, by name."""
        return self.store.list()

    def get_dr_plan(self, name: str) -> Plan:
        """The plan named `name`; UsageError when there is none."""
        return self.store.get(name)

    def delete_dr_plan(self, name: str) -> None:
        """Forget a plan (its recorded runs stay as history)."""
        self.store.delete(name)

    def create_dr_plan_from_toml(self, text: str, replace: bool = False) -> str:
        """Make a plan from its TOML file's text (as `dr show NAME --toml` prints
        it) and store it; returns its name. UsageError names what is wrong."""
        if not isinstance(text, str):
            raise UsageError("a plan file is TOML text")
        if len(text.encode("utf-8", "surrogatepass")) > MAX_PLAN_TEXT:
            raise UsageError(f"the plan file is larger than {MAX_PLAN_TEXT // 1024} KiB")
        return self.store.save(Plan.from_toml(text), replace=replace).id

    # ---- recorded runs -------------------------------------------------------------------------

    def last_dr_run(self, name: str, mode: str) -> dict | None:
        """The newest recorded run of plan `name` in `mode` ("test" or "run"): its
        `run_id`, `verdict`, `started`, `finished` (RFC 3339) and `rto_seconds`;
        None when there is none. A record that does not read is said to be so
        (verdict "unreadable"), never passed over for an older one."""
        from strongroom.dr.run_document import RunDocumentError, plan_run_from_dict

        docs = self.store.runs(name, last=1, mode=mode)
        if not docs:
            return None
        try:
            run = plan_run_from_dict(docs[-1])
        except RunDocumentError:
            ident = docs[-1].get("id") if isinstance(docs[-1], dict) else None
            return {"run_id": str(ident)[:64] if ident else None, "verdict": "unreadable", "started": None,
                    "finished": None, "rto_seconds": None}
        return {"run_id": run.id, "verdict": run.verdict, "started": plain(run.started),
                "finished": plain(run.finished), "rto_seconds": run.rto_seconds}

    def recorded_dr_run(self, run_id: str) -> PlanRun | None:
        """A finished run as the catalog recorded it, or None when there is no such run.
        RunDocumentError (a StrongroomError) when its record does not read."""
        from strongroom.dr.run_document import plan_run_from_dict

        row = self.service.catalog.get_dr_run(run_id)
        return None if row is None else plan_run_from_dict(row["doc"])

    def dr_run_history(self, name: str, last: int | None = None) -> list[PlanRun]:
        """The recorded runs of plan `name` that read, oldest first (the newest `last`)."""
        from strongroom.dr.run_document import RunDocumentError, plan_run_from_dict

        runs = []
        for doc in self.store.runs(name, last=last):
            try:
                runs.append(plan_run_from_dict(doc))
            except RunDocumentError as e:
                log.warning("a recorded run of plan %s is left out of its history: %s", name[:100], e)
        return runs

    def dr_report(self, run_id: str, fmt: str = "json") -> str | None:
        """The report of recorded run `run_id` in `fmt` (md, json or html), with
        the tests of its plan before it as the trend; None when there is no such run."""
        from strongroom.dr.report import TREND_RUNS, render

        run = self.recorded_dr_run(run_id)
        if run is None:
            return None
        history = [r for r in self.dr_run_history(run.plan, last=TREND_RUNS * 5)
                   if r.mode == "test" and r.started <= run.started]
        return render(run, fmt, history)

    # ---- runs ----------------------------------------------------------------------------------

    def execute_dr_plan(self, plan_id: str, target_base: str | None = None, at: datetime | str | None = None,
                        progress: Progress | None = None, trigger: str = "api") -> str:
        """Run the plan for real, in a background thread; returns the run id.

        Steps restore below `target_base` (default: the plan's); `at` restores,
        in every step, the newest snapshot at or before that time. `progress`
        gets every event of the run in its thread; an exception it raises stops it."""
        when = parse_time(at) if isinstance(at, str) else at
        return self._start(plan_id, "run", progress, trigger, target_base=target_base, at=when)

    def test_dr_plan(self, plan_id: str, scratch: str | None = None, keep: bool = False,
                     progress: Progress | None = None, wait: bool = True, trigger: str = "api",
                     read_data_subset: float | None = None) -> PlanRun | str:
        """Rehearse the plan: every step into `scratch/<step name>` (default: a new
        private folder beside the plan's target base), never the real targets,
        measured and judged. `read_data_subset` (0 < share <= 1): the check of
        each repository afterwards also reads that share of its packs, chosen
        among those the restores did not read. Returns the PlanRun, or with
        `wait=False` the run id."""
        run_id = self._start(plan_id, "test", progress, trigger, scratch=scratch, keep=keep,
                             read_data_subset=read_data_subset)
        return self.wait(run_id) if wait else run_id

    def _start(self, plan_id: str, mode: str, progress: Progress | None, trigger: str, **options: Any) -> str:
        plan = self.store.get(plan_id)
        cancel = threading.Event()
        runner = PlanRunner(self.service, plan, mode, cancel=cancel, trigger=trigger, **options)
        runner.prepare()
        try:
            sessions = RunSessions(self.service.catalog, runner.run_id, plan, mode)
        except BaseException:
            runner.abandon()  # never started: its target locks and scratch area go now, not at exit
            raise

        def listener(event: dict) -> None:
            sessions(event)
            if progress is not None:
                progress(event)

        runner.listener = listener
        run = _Run(runner, sessions)
        with self._lock:
            finished = [i for i, r in self._runs.items() if r.done.is_set()]
            for old in finished[:max(0, len(finished) - KEPT_RUNS)]:
                del self._runs[old]
            self._runs[runner.run_id] = run

        def work() -> None:
            try:
                sessions.start()
                run.result = runner.run()
                sessions.finish(run.result)
                notify_dr_run(self.service, run.result)  # the verdict to the channels; never raises
            except BaseException as e:  # kept for wait(), which raises it in the caller's thread
                run.error = e
                try:
                    sessions.finish(None, f"{type(e).__name__}: {e}" if not isinstance(e, StrongroomError) else str(e))
                except Exception:
                    pass
            finally:
                run.done.set()

        threading.Thread(target=work, name=f"dr-{runner.run_id[:6]}", daemon=True).start()
        return runner.run_id

    def _run(self, run_id: str) -> _Run:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise UsageError(f"no DR run {run_id} in this process")
        return run

    def get_progress(self, run_id: str) -> RecoveryProgress:
        """The whole run's progress now: files and bytes of every step together."""
        return self._run(run_id).sessions.run.frozen()

    def step_sessions(self, run_id: str) -> list[str]:
        """The session ids of the run's steps, in plan order."""
        return self._run(run_id).sessions.step_ids

    def cancel(self, run_id: str) -> bool:
        """Stop the run: the step in flight stops cleanly, the rest are skipped.
        False when this process runs no such run, or it has finished."""
        with self._lock:
            run = self._runs.get(run_id)
        if run is None or run.done.is_set():
            return False
        run.runner.cancel.set()
        return True

    def done(self, run_id: str, timeout: float | None = None) -> bool:
        """Whether the run has finished, after waiting up to `timeout` seconds for it."""
        return self._run(run_id).done.wait(timeout)

    def wait(self, run_id: str, timeout: float | None = None) -> PlanRun:
        """Block until the run is done; its PlanRun. A run that broke off raises its
        error here; one still going after `timeout` seconds raises StrongroomError."""
        run = self._run(run_id)
        if not run.done.wait(timeout):
            raise StrongroomError(f"DR run {run_id} is still running after {timeout:g}s")
        if run.error is not None:
            raise run.error
        return run.result

    # ---- the sessions, for RecoveryService ------------------------------------------------------

    def session_progress(self, session_id: str) -> RecoveryProgress | None:
        """A run's or a step's session in this process, or None."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            found = run.sessions.get(session_id)
            if found is not None:
                return found
        return None

    def run_of(self, session_id: str) -> str | None:
        """The run id a step's session belongs to (or the run's own), or None."""
        with self._lock:
            for run_id, run in self._runs.items():
                if session_id == run_id or session_id in run.sessions.step_ids:
                    return run_id
        return None

    def wait_session(self, session_id: str, timeout: float | None = None) -> RecoveryProgress | None:
        """Block until the session's step (or run) is done; its progress then. None if unknown here."""
        run_id = self.run_of(session_id)
        if run_id is None:
            return None
        run = self._run(run_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            progress = run.sessions.get(session_id)
            if progress.done or run.done.is_set():
                return run.sessions.get(session_id)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return progress
            run.done.wait(0.05 if left is None else min(0.05, left))
