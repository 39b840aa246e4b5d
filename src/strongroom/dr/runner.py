"""Running a plan: its steps in order, for real ("run") or rehearsed ("test").

A step starts only when the one before it has restored, verified and passed
its after-commands. Each step: its configuration and snapshot (chosen when
the plan starts, so RPO is measured at that moment), the free space at its
target against what the restore will write (before anything is written or
any command run), its before-commands, the restore with verification under
a shared repository lock, its after-commands, and for a PostgreSQL step the
dump loaded into its database. A rehearsal restores every step into
`SCRATCH/<step name>`, never into the real targets, checks the repositories
it read, and removes the scratch area unless asked to keep it.

Progress is one event stream: the restore's own events with `plan` and
`step` added, `dr_step` at each step's start and end, and `dr_status` for
the whole plan (docs/json.md). The result is a PlanRun (dr/results.py).
"""

from __future__ import annotations

import dataclasses
import os
import random
import secrets
import socket
import threading
import time
from datetime import datetime, timezone

from strongroom import __version__
from strongroom.dr.damage import problems_of
from strongroom.dr.database_step import load_database
from strongroom.dr.hooks import hook_env, run_hook
from strongroom.dr.plan import Plan, PointRule, Step
from strongroom.dr.points import choose_snapshot, describe_rule, snapshot_time
from strongroom.dr.one_line import one_line
from strongroom.dr.repocheck import PROBLEM_CHARS, check_repository
from strongroom.dr.results import PlanRun, RepositoryCheck, StepResult
from strongroom.dr.scratch import ScratchArea
from strongroom.dr.space import check_free_space, check_target
from strongroom.dr.step_state import PlanProgress, Resolved, StepState
from strongroom.dr.target_locks import TargetLocks, locks_folder
from strongroom.dr.targets import refuse_shared_targets, refuse_targets_in_repositories
from strongroom.dr.verdict import judge
from strongroom.engine.progress import Listener, event_type, ignore, warning_event
from strongroom.engine.restore import RestoreOptions, run_restore
from strongroom.errors import ObjectNotFound, RepositoryLocked, StrongroomError, UsageError
from strongroom.model.snapshot import SNAPSHOT_DIR, Snapshot
from strongroom.repo.repository import Repository
from strongroom.services.backup_service import BackupService
from strongroom.services.configs import BackupConfig
from strongroom.words import plural


MODES = ("run", "test")
LOCK_WAIT = 60  # seconds a step waits for a conflicting repository lock
LOCK_POLL = 5.0  # seconds of that wait between two looks at the cancel event


class PlanRunner:
    """Runs one plan once. `run()` returns the PlanRun; `cancel` (set from any
    thread) stops the step in flight cleanly and skips the rest."""

    def __init__(self, service: BackupService, plan: Plan, mode: str = "run", *, run_id: str | None = None,
                 target_base: str | None = None, at: datetime | None = None, scratch: str | None = None,
                 keep: bool = False, listener: Listener = ignore, cancel: threading.Event | None = None,
                 trigger: str = "api", seed: int | None = None, record: bool = True,
                 read_data_subset: float | None = None) -> None:
        if mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)}")
        if mode == "run" and (scratch is not None or keep):
            raise UsageError("a scratch area is for tests: a run restores into the plan's targets")
        if read_data_subset is not None and (mode != "test" or not 0 < read_data_subset <= 1):
            raise UsageError("a share of packs to read (more than 0, at most 1) is for tests")
        if mode == "test" and target_base is not None:
            raise UsageError("a test restores into a scratch area: give --scratch, not a target base")
        self.service = service
        self.plan = plan
        self.mode = mode
        self.run_id = run_id or secrets.token_hex(8)
        self.target_base = os.path.abspath(target_base) if target_base else plan.target_base
        self.base_given = bool(target_base)
        self.at = None if at is None else (at if at.tzinfo else at.astimezone())
        self.scratch_given = os.path.abspath(scratch) if scratch else None
        self.keep = keep
        self.listener = listener
        self.cancel = cancel or threading.Event()
        self.trigger = trigger
        self.seed = seed if seed is not None else secrets.randbits(32)
        self.record = record
        self.read_data_subset = read_data_subset  # the share of packs the check after a test reads besides
        self._scratch: ScratchArea | None = None
        self._locks: TargetLocks | None = None
        self._base: str | None = None
        self._packs_read: dict[int, set[bytes]] = {}  # per step: the packs its restore read and authenticated

    # ---- the run ---------------------------------------------------------------------------

    def prepare(self) -> str:
        """Where the steps will restore below: the target base, or the scratch area of a
        test (made now; a given one must be empty). Refusals are UsageErrors, before any work."""
        if self._base is None:
            if self.mode == "test":
                self._scratch = ScratchArea(self.scratch_given, self.plan.target_base,
                                            [s.target_in(self.plan.target_base) for s in self.plan.steps])
                self._base = self._scratch.path
            else:
                targets = [self._real_target(s, self.target_base) for s in self.plan.steps]
                refuse_shared_targets(self.plan, targets)
                refuse_targets_in_repositories(self.service, self.plan, targets)
                self._locks = TargetLocks(locks_folder(self.service), targets)
                self._locks.acquire()
                self._base = self.target_base
        return self._base

    def abandon(self) -> None:
        """Give up a prepared run that will not be run: release its target locks, remove its
        scratch area (it holds nothing yet)."""
        try:
            self._clean_up()
        finally:
            if self._locks is not None:
                self._locks.release()

    def run(self) -> PlanRun:
        started = datetime.now(timezone.utc)
        t0 = time.monotonic()
        base = self.prepare()
        rng = random.Random(self.seed)
        for area in self._scratch.left_behind if self._scratch is not None else ():
            self._emit(warning_event(f"an earlier rehearsal was stopped before its clean-up and left its scratch "
                                     f"area {area}: remove it when you are done with it"))
        results: list[StepResult] = []
        last_end = t0
        stopped: str | None = None
        cleaned = False
        try:
            resolved = [self._resolve(step, started, rng) for step in self.plan.steps]
            progress = PlanProgress([self._snapshot_totals(r) for r in resolved])
            for index, step in enumerate(self.plan.steps):
                if stopped is None and self.cancel.is_set():
                    stopped = "the plan was cancelled"
                if stopped is not None:
                    results.append(self._skipped(step, resolved[index], base, started, stopped))
                    continue
                result = self._run_step(index, step, resolved[index], self._target(step, base), started, progress)
                results.append(result)
                last_end = time.monotonic()
                if result.status == "cancelled":
                    stopped = "the plan was cancelled"
                elif result.status == "failed" and self.plan.on_failure == "stop":
                    stopped = f"step {step.name} failed and the plan stops on a failure"
            rto_seconds = round(last_end - t0, 3)
            checks = self._check_repositories(resolved, results) if self.mode == "test" \
                and not self.cancel.is_set() else ()
            cleaned = True
            cleanup_seconds = self._clean_up()
        finally:
            if not cleaned:
                self._clean_up()
            if self._locks is not None:
                self._locks.release()
        verdict, reasons = judge(results, rto_seconds, self.plan.rto, self.plan.verify)
        if any(not c.structure_ok or c.problems for c in checks):
            bad = [c for c in checks if not c.structure_ok or c.problems]
            verdict = "fail"
            reasons += tuple(f"repository {c.repository}: {c.problems[0] if c.problems else 'structure damaged'}"
                             for c in bad)
        run = PlanRun(self.run_id, self.plan.name, self.plan.version, self.mode, self.trigger, socket.gethostname(),
                      __version__, started, datetime.now(timezone.utc), base,
                      self.mode == "test" and self.keep, tuple(results), rto_seconds, self.plan.rto,
                      self.plan.rpo, tuple(checks), round(cleanup_seconds, 6), verdict, reasons)
        if self.record:
            self._record(run)
        return run

    def _emit(self, event: dict) -> None:
        self.listener(event)

    def _target(self, step: Step, base: str) -> str:
        return os.path.join(base, step.name) if self.mode == "test" else self._real_target(step, base)

    def _real_target(self, step: Step, base: str) -> str:
        """Where a real run restores the step. A target base given for the run holds every
        step, those with an absolute target of their own too (re-rooted below it): who says
        "restore below DIR" expects nothing written outside DIR."""
        if self.base_given and os.path.isabs(step.target):
            return os.path.join(base, step.target.lstrip("/"))
        return step.target_in(base)

    # ---- choosing what each step restores ------------------------------------------------

    def _rule(self, step: Step) -> PointRule:
        if self.at is not None:
            return PointRule("at", self.at)
        if self.mode == "run" and step.point.kind == "random":
            # A random point is for rehearsals: a real recovery restores the newest.
            return PointRule()
        return step.point

    def _resolve(self, step: Step, now: datetime, rng: random.Random) -> Resolved:
        rule = describe_rule(self._rule(step), self.seed)
        if self._rule(step) is not step.point and step.point.kind == "random" and self.at is None:
            rule += f" (the plan's {step.point.describe()} is for rehearsals)"
        found = Resolved(rule=rule)
        try:
            found.config = self.service.get_config(step.config)
            found.repository = self._repository_url(found.config)
            found.repo = self.service.open_repository(found.config)
            # Not service.snapshots: a damaged snapshot may be the newest point, and a plan must say
            # when it restores an older one for that reason.
            listed = found.repo.list_snapshots(
                on_damaged=lambda name, _e: found.damaged.append(name.rsplit("/", 1)[-1]))
            found.snapshot = choose_snapshot([s for s in listed if s.config_name == found.config.name],
                                             self._rule(step), now, rng)
        except StrongroomError as e:
            found.error = str(e)
        except OSError as e:
            found.error = _os_error(e)
        return found

    def _repository_url(self, config: BackupConfig) -> str:
        if config.is_local:
            return config.target_path
        try:
            return self.service.webdav.repository_url(config.target_client_id, config.target_path)
        except StrongroomError:
            return f"{config.target_client_id}:{config.target_path}"

    @staticmethod
    def _snapshot_totals(found: Resolved) -> tuple[int, int]:
        if found.snapshot is None:
            return 0, 0
        summary = found.snapshot.summary or {}
        return int(summary.get("total_files") or 0), int(summary.get("total_bytes") or 0)

    # ---- one step --------------------------------------------------------------------------

    def _run_step(self, index: int, step: Step, found: Resolved, target: str, started: datetime,
                  progress: PlanProgress) -> StepResult:
        t0 = time.monotonic()
        step_started = datetime.now(timezone.utc)
        snap = found.snapshot
        self._emit({"message_type": "dr_step", "action": "start", "plan": self.plan.name, "step": step.name,
                    "step_index": index, "steps": len(self.plan.steps), "config": step.config, "target": target,
                    "snapshot": snap.id if snap else None,
                    "snapshot_time": _rfc3339(snapshot_time(snap)) if snap else None, "rule": found.rule,
                    "mode": self.mode})
        state = StepState()
        if found.damaged:
            shown = ", ".join(name[:8] for name in found.damaged[:3]) + (", ..." if len(found.damaged) > 3 else "")
            state.warn(f"{plural(len(found.damaged), 'snapshot')} of the repository did not read and "
                       f"{'was' if len(found.damaged) == 1 else 'were'} passed over ({shown}): "
                       "the point chosen may not be the newest")
        if found.error is not None:
            state.fail(found.error)
        else:
            try:
                self._restore_step(index, step, found, target, state, progress)
            except StrongroomError as e:
                if self.cancel.is_set():
                    state.cancelled = True
                    state.messages.append("cancelled")
                else:
                    state.fail(str(e))
            except OSError as e:
                state.fail(_os_error(e))
        if self.cancel.is_set() and not state.failed:
            state.cancelled = True
        summary = state.summary
        progress.done[index] = (summary.get("total_files", 0), summary.get("total_bytes", 0)) \
            if not state.failed and not state.cancelled else progress.done[index]
        status = "cancelled" if state.cancelled else "failed" if state.failed else \
            "warning" if state.warnings else "passed"
        files = int(summary.get("total_files", 0))
        verified = self.plan.verify and status in ("passed", "warning") and not summary.get("errors") \
            and "files_verified" in summary
        rpo = (started - snapshot_time(snap)).total_seconds() if snap else None
        result = StepResult(
            name=step.name, config=step.config, repository=found.repository, status=status, target=target,
            snapshot=snap.id if snap else None, snapshot_time=snapshot_time(snap) if snap else None, rule=found.rule,
            rpo_seconds=None if rpo is None else round(rpo, 3), rpo_target=self.plan.step_rpo(step),
            rto_target=self.plan.step_rto(step), started=step_started,
            duration_seconds=round(time.monotonic() - t0, 3), restore_seconds=round(state.restore_seconds, 3),
            files=files, bytes=int(summary.get("total_bytes", 0)),
            throughput=round(summary.get("bytes_restored", 0) / state.restore_seconds, 1)
            if state.restore_seconds > 0 else 0.0,
            files_verified=int(summary.get("files_verified", 0)), verified=bool(verified),
            warnings=state.warnings, errors=state.errors, messages=tuple(state.messages),
            problems=state.problems, hooks=tuple(state.hooks), database=state.database, include=step.include)
        self._emit({"message_type": "dr_step", "action": "end", "plan": self.plan.name, "step": step.name,
                    "step_index": index, "steps": len(self.plan.steps), "status": status,
                    "duration_seconds": result.duration_seconds, "files": result.files, "bytes": result.bytes,
                    "files_verified": result.files_verified, "warnings": result.warnings, "errors": result.errors,
                    "messages": list(result.messages)})
        self._emit(progress.event(self.plan.name, index))
        return result

    def _restore_step(self, index: int, step: Step, found: Resolved, target: str, state: StepState,
                      progress: PlanProgress) -> None:
        repo, snap = found.repo, found.snapshot
        env = hook_env(self.plan, step, step.config, target, snap.id, snapshot_time(snap), self.mode)

        def listener(event: dict) -> None:
            event = {**event, "plan": self.plan.name, "step": step.name}
            self._emit(event)
            kind = event_type(event)
            if kind == "status":
                progress.done[index] = (event.get("files_done", 0), event.get("bytes_done", 0))
                self._emit(progress.event(self.plan.name, index))
            elif kind == "warning":
                state.warn(str(event.get("message", "")))

        check_target(target)
        if self.mode == "test":
            # Private, whatever the scratch area's own mode: a rehearsal as root recreates the
            # snapshot's setuid files and secrets, and an old setuid binary must not be others' to run.
            os.makedirs(target, 0o700, exist_ok=True)
            os.chmod(target, 0o700)
        with self._shared_lock(repo):
            self._still_listed(repo, snap, state)
            options = RestoreOptions(target, include=step.include, verify=self.plan.verify)
            dry = run_restore(repo, snap, RestoreOptions(target, include=step.include, dry_run=True))
            progress.totals[index] = (dry.summary["total_files"], dry.summary["total_bytes"])
            check_free_space(target, int(dry.summary["bytes_to_write"]),
                             needed_files=int(dry.summary["files_to_write"]) + int(dry.summary["total_dirs"]))
            if not self._hooks(step.before, "before", env, None, state):
                return
            t0 = time.monotonic()
            try:
                result = run_restore(repo, snap, options, listener, self.cancel)
            finally:
                state.restore_seconds = time.monotonic() - t0
        state.summary = result.summary
        self._packs_read[index] = set(result.read_packs)
        if result.errors:
            state.problems = tuple(problems_of(repo, snap, result.errors, step.include))
            state.errors += len(result.errors)
            failed = len(result.summary.get("files_failed", []))
            unverified = sum(1 for e in result.errors if str(e.get("message", "")).startswith("verify:"))
            state.failed = True
            state.messages.append("; ".join(part for part in (
                f"{plural(failed, 'file')} could not be restored" if failed else "",
                f"{plural(unverified, 'file')} did not verify" if unverified else "",
                plural(len(result.errors), "restore error") if not failed and not unverified else "") if part))
            return
        if not step.database:
            self._hooks(step.after, "after", env, target, state)
            return
        load_database(step, self.mode, self.run_id, self.keep, target, env, state,
                      lambda env: self._hooks(step.after, "after", env, target, state))

    @staticmethod
    def _still_listed(repo: Repository, snap: Snapshot, state: StepState) -> None:
        """Snapshots are chosen when the plan starts and locked when their step does: a forget
        in between (retention elsewhere) is said, since a prune may then have taken its data."""
        try:
            repo.storage.stat(f"{SNAPSHOT_DIR}/{snap.id}")
        except ObjectNotFound:
            state.warn(f"snapshot {snap.id[:8]} was removed from the repository after the plan started "
                       "(a forget): what it points to may be pruned")

    def _shared_lock(self, repo: Repository):
        """The step's shared lock, waited for up to LOCK_WAIT in pieces of LOCK_POLL, so a
        cancel (Ctrl-C while a prune holds the repository) is seen within one piece."""
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                return repo.lock(exclusive=False, wait=max(0.0, min(LOCK_POLL, deadline - time.monotonic())))
            except RepositoryLocked:
                if self.cancel.is_set() or time.monotonic() >= deadline:
                    raise

    def _hooks(self, hooks: tuple, phase: str, env: dict[str, str], cwd: str | None, state: StepState) -> bool:
        """Run the commands of one phase in order; False when the step cannot go on."""
        for hook in hooks:
            result = run_hook(hook, phase, env, cwd, self.cancel)
            state.hooks.append(result)
            if self.cancel.is_set():
                state.cancelled = True
                state.messages.append(f"cancelled during the {phase}-command {hook.command!r}")
                return False
            if result.ok:
                continue
            why = "timed out" if result.timed_out else "could not start" if result.exit_code is None \
                else f"exited {result.exit_code}"
            message = f"{phase}-command {hook.command!r} {why}"
            if hook.mode == "essential":
                state.fail(message)
                return False
            state.warn(message)
        return True

    def _skipped(self, step: Step, found: Resolved, base: str, started: datetime, why: str) -> StepResult:
        snap = found.snapshot
        rpo = (started - snapshot_time(snap)).total_seconds() if snap else None
        return StepResult(step.name, step.config, found.repository, "skipped", self._target(step, base),
                          snap.id if snap else None, snapshot_time(snap) if snap else None, found.rule,
                          None if rpo is None else round(rpo, 3), self.plan.step_rpo(step), self.plan.step_rto(step),
                          None, 0.0, 0.0, 0, 0, 0.0, 0, False, 0, 0, (why,), (), (), step.database,
                          step.include)

    # ---- after the steps -------------------------------------------------------------------

    def _check_repositories(self, resolved: list[Resolved], results: list[StepResult]) -> tuple[RepositoryCheck, ...]:
        packs: dict[str, tuple[Repository, set[bytes]]] = {}
        found_by_steps: dict[str, list[str]] = {}  # what the restores found damaged, per repository
        for index, (found, result) in enumerate(zip(resolved, results)):
            if found.repo is None or result.status == "skipped":
                continue
            repo, read = packs.setdefault(found.repository, (found.repo, set()))
            read |= self._packs_read.get(index, set())
            found_by_steps.setdefault(found.repository, []).extend(
                one_line(f"{p.object}: {p.message} (found by step {result.name})", PROBLEM_CHARS)
                for p in result.problems)
        checks = []
        for url, (repo, read) in packs.items():
            try:
                with repo.lock(exclusive=False, wait=LOCK_WAIT):
                    check = check_repository(repo, packs_read=len(read), read_packs=read,
                                             read_data_subset=self.read_data_subset)
            except StrongroomError as e:
                check = RepositoryCheck(url, False, 0, 0, 0.0, (str(e),), 0.0)
            # A pack a restore could not read is a problem of its repository, whether the check read it again or not.
            extra = tuple(line for line in found_by_steps.get(url, ()) if line not in check.problems)
            checks.append(dataclasses.replace(check, problems=check.problems + extra) if extra else check)
        return tuple(checks)

    def _record(self, run: PlanRun) -> None:
        try:
            from strongroom.dr.store import PlanStore
            PlanStore(self.service).record_run(run)
        except (ImportError, StrongroomError, OSError) as e:
            # The run happened whatever its record: say so, never undo it.
            self._emit(warning_event(f"the run could not be recorded: {e}"))

    def _clean_up(self) -> float:
        """Remove what the test restored unless it is kept; the time it took."""
        if self._scratch is not None and self.keep:
            self._scratch.release()
        if self.keep or self._scratch is None:
            return 0.0
        seconds, problems = self._scratch.remove([step.name for step in self.plan.steps])
        for problem in problems:
            self._emit(warning_event(problem))
        return seconds


def _os_error(e: OSError) -> str:
    """An OSError in words: its reason and the path, as text (a restore names paths in bytes)."""
    where = f": {os.fsdecode(e.filename)}" if e.filename else ""
    return f"{e.strerror or e}{where}"


def _rfc3339(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
