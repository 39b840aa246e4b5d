"""Recovery: recovery points by config and time, plans, restores running in
the background with progress and cancellation, and the one-click facade."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from strongroom.engine.progress import event_type
from strongroom.engine.restore import RestoreOptions, run_restore
from strongroom.errors import SnapshotNotFound, StrongroomError, UsageError
from strongroom.model.select import snapshot_at
from strongroom.model.snapshot import Snapshot
from strongroom.services.backup_service import BackupService
from strongroom.services.results import RecoveryProgress, Result, utc
from strongroom.services.session_owner import describe, owner_ended, this_process

# Called with every engine event of a restore: the same events `--json` prints (docs/json.md).
Progress = Callable[[dict], None]


@dataclass(frozen=True)
class RecoveryPoint(Result):
    """A snapshot of a configuration, as recovery lists it."""

    id: str
    config_name: str
    time: datetime
    kind: str
    paths: tuple[str, ...]
    hostname: str
    tags: tuple[str, ...]
    total_files: int
    total_bytes: int

    @classmethod
    def of(cls, config_name: str, snap: Snapshot) -> RecoveryPoint:
        """The recovery point of snapshot `snap` of configuration `config_name`."""
        return cls(snap.id, config_name, snap.datetime.astimezone(timezone.utc), snap.kind, snap.paths, snap.hostname, snap.tags,
                   snap.summary.get("total_files", 0), snap.summary.get("total_bytes", 0))


class RecoveryPointManager:
    """Snapshots by configuration and time."""

    def __init__(self, service: BackupService) -> None:
        self.service = service

    def list_recovery_points(self, config_name: str | None = None, since: datetime | None = None,
                             until: datetime | None = None) -> list[RecoveryPoint]:
        """The snapshots of one configuration (or of all), oldest first, between
        `since` and `until` (naive times are local time)."""
        since = since.astimezone() if since is not None and since.tzinfo is None else since
        until = until.astimezone() if until is not None and until.tzinfo is None else until
        configs = [self.service.get_config(config_name)] if config_name else self.service.list_configs()
        points = []
        for config in configs:
            for snap in self.service.snapshots(config):
                if (since is None or snap.datetime >= since) and (until is None or snap.datetime <= until):
                    points.append(RecoveryPoint.of(config.name, snap))
        return sorted(points, key=lambda p: (p.time, p.id))

    def get_recovery_point(self, point_id: str) -> RecoveryPoint:
        """The snapshot with this id (or unique prefix), in any configuration."""
        config, _, snap = self.service.find_snapshot(point_id)
        return RecoveryPoint.of(config.name, snap)

    def find_point_in_time(self, config_name: str, when: datetime) -> RecoveryPoint:
        """The newest snapshot of `config_name` taken at or before `when` (naive: local time)."""
        config = self.service.get_config(config_name)
        if when.tzinfo is None:
            when = when.astimezone()
        return RecoveryPoint.of(config.name, snapshot_at(self.service.snapshots(config), when))


@dataclass(frozen=True)
class RecoveryPlan(Result):
    """What a restore will do: which snapshot, where, and how much."""

    config_name: str
    point_id: str
    point_time: datetime
    target_path: str
    mode: str  # full or selective
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    subpath: str = ""
    verify: bool = True
    overwrite: str = "if-changed"
    real_target: bool = False  # open the target without following a symlink (RestoreOptions.real_target)
    files: int = 0
    bytes: int = 0
    packs: int = 0
    requests: int = 0
    estimated_seconds: float = 0.0


@dataclass
class SessionState:
    """The changing state of one restore session; callers get frozen RecoveryProgress copies.
    Plan runs keep theirs in the same form (dr/sessions.py)."""

    session_id: str
    status: str = "pending"
    processed_files: int = 0
    total_files: int = 0
    processed_bytes: int = 0
    total_bytes: int = 0
    percent: float = 0.0
    rate: float = 0.0
    eta: float | None = None
    errors: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def frozen(self) -> RecoveryProgress:
        return RecoveryProgress(self.session_id, self.status, self.processed_files, self.total_files,
                                self.processed_bytes, self.total_bytes, self.percent, self.rate, self.eta,
                                tuple(self.errors), utc(self.started))

    def stored(self) -> dict[str, Any]:
        """The form the catalog keeps (times as epoch seconds, as older versions wrote)."""
        doc = dataclasses.asdict(self)
        doc["errors"] = doc["errors"][:100]
        return doc


# Observed restore speed used for estimates until this machine has measured one.
_DEFAULT_RATE = 100 * 1024 * 1024


class RecoveryExecutor:
    """Restores in background threads, with progress and cancellation."""

    def __init__(self, service: BackupService) -> None:
        self.service = service
        self._sessions: dict[str, SessionState] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._done: dict[str, threading.Event] = {}
        self._targets: dict[str, str] = {}  # session id: the real path of its target folder
        self._lock = threading.Lock()

    def create_recovery_plan(self, config_name: str, point_id: str | None = None, at: datetime | None = None,
                             target_path: str | None = None, include: Iterable[str] = (),
                             exclude: Iterable[str] = (), subpath: str = "", verify: bool = True,
                             overwrite: str = "if-changed", real_target: bool = False) -> RecoveryPlan:
        """What would be restored. No point and no time: the latest. No target:
        the original location (the paths as they were, below `/`)."""
        config = self.service.get_config(config_name)
        repo = self.service.open_repository(config)
        snaps = self.service.snapshots(config, repo)
        if point_id:
            snap = next((s for s in snaps if s.id.startswith(point_id.lower())), None)
            if snap is None:
                raise SnapshotNotFound(f"config {config_name} has no recovery point {point_id}")
        elif at is not None:
            snap = snapshot_at(snaps, at if at.tzinfo else at.astimezone())
        elif snaps:
            snap = snaps[-1]
        else:
            raise SnapshotNotFound(f"config {config_name} has no recovery points yet")
        include, exclude = tuple(include), tuple(exclude)
        plan = RecoveryPlan(config_name, snap.id, snap.datetime.astimezone(timezone.utc), target_path or "/",
                            "selective" if include or exclude or subpath else "full",
                            include, exclude, subpath, verify, overwrite, real_target)
        dry = run_restore(repo, snap, self._options(plan, dry_run=True))
        packs = dry.summary["packs"]
        return dataclasses.replace(
            plan, files=dry.summary["total_files"], bytes=dry.summary["bytes_to_write"], packs=packs,
            requests=packs + 8,  # open, lock, listings, unlock, and a read per pack
            estimated_seconds=round(dry.summary["bytes_to_write"] / _DEFAULT_RATE, 1))

    @staticmethod
    def _options(plan: RecoveryPlan, dry_run: bool = False) -> RestoreOptions:
        return RestoreOptions(plan.target_path, plan.subpath, plan.include, plan.exclude, plan.overwrite,
                              verify=plan.verify and not dry_run, dry_run=dry_run, real_target=plan.real_target)

    def execute_recovery(self, plan: RecoveryPlan, progress: Progress | None = None) -> str:
        """Start the restore in a background thread; returns the session id.

        `progress`, when given, is called in that thread with every engine
        event of the restore: the same events `--json` prints (see
        docs/json.md). An exception it raises stops the restore."""
        session_id = uuid.uuid4().hex[:16]
        state = SessionState(session_id, total_files=plan.files, total_bytes=plan.bytes)
        cancel = threading.Event()
        target = os.path.realpath(plan.target_path)
        with self._lock:
            for other, where in self._targets.items():
                # Two restores writing the same files at once race each other; one
                # into the original locations ("/") writes only its own paths.
                if where == target and target != "/" and not self._done[other].is_set():
                    raise UsageError(f"a restore into {plan.target_path} is running already (session {other}): "
                                     "wait for it to end or cancel it")
            self._sessions[session_id] = state
            self._cancel[session_id] = cancel
            self._targets[session_id] = target
            self._done[session_id] = threading.Event()
        done = self._done[session_id]
        try:
            self.service.catalog.add_session(session_id, plan.config_name,
                                             {**plan.to_dict(), "owner": this_process()})
        except BaseException:
            done.set()  # never started: its target is free again
            raise

        def run() -> None:
            try:
                self._run(session_id, plan, state, cancel, progress)
            finally:
                done.set()

        threading.Thread(target=run, name=f"recovery-{session_id[:6]}", daemon=True).start()
        return session_id

    def _run(self, session_id: str, plan: RecoveryPlan, progress: SessionState, cancel: threading.Event,
             callback: Progress | None) -> None:
        catalog = self.service.catalog
        last_saved = 0.0

        def listener(event: dict) -> None:
            nonlocal last_saved
            if callback is not None:
                callback(event)
            if event_type(event) == "error":
                progress.errors.append(f"{event.get('path')}: {event.get('message')}")
                return
            if event_type(event) != "status":
                return
            progress.processed_files = event.get("files_done", 0)
            progress.processed_bytes = min(event.get("bytes_done", 0), progress.total_bytes or event.get("bytes_done", 0))
            progress.total_files = event.get("total_files") or progress.total_files
            progress.total_bytes = event.get("total_bytes") or progress.total_bytes
            elapsed = max(time.time() - progress.started, 1e-6)
            progress.rate = progress.processed_bytes / elapsed
            progress.percent = round(100.0 * progress.processed_bytes / progress.total_bytes, 1) \
                if progress.total_bytes else 0.0
            left = progress.total_bytes - progress.processed_bytes
            progress.eta = round(left / progress.rate, 1) if progress.rate > 0 else None
            if time.monotonic() - last_saved > 1.0:
                last_saved = time.monotonic()
                catalog.update_session(session_id, progress=progress.stored())

        progress.status = "running"
        catalog.update_session(session_id, status="running")
        try:
            config = self.service.get_config(plan.config_name)
            repo = self.service.open_repository(config)
            snap = next(s for s in self.service.snapshots(config, repo) if s.id == plan.point_id)
            with repo.lock(exclusive=False, wait=60):
                result = run_restore(repo, snap, self._options(plan), listener, cancel)
            progress.processed_files = result.summary["total_files"]
            progress.total_files = result.summary["total_files"]
            progress.processed_bytes = progress.total_bytes
            progress.percent, progress.eta = 100.0, 0.0
            progress.status = "failed" if result.errors else "completed"
        except StrongroomError as e:
            progress.status = "cancelled" if cancel.is_set() else "failed"
            if not cancel.is_set():
                progress.errors.append(str(e))
        except BaseException as e:
            progress.status = "failed"
            progress.errors.append(f"{type(e).__name__}: {e}")
        catalog.update_session(session_id, status=progress.status, progress=progress.stored(),
                               error="; ".join(progress.errors[:5]) or None)

    def get_progress(self, session_id: str) -> RecoveryProgress:
        """The session's progress now (also of a session an earlier process ran)."""
        with self._lock:
            state = self._sessions.get(session_id)
        if state is not None:
            return state.frozen()
        row = self.service.catalog.get_session(session_id)  # a session of an earlier run
        if row is None:
            raise UsageError(f"no recovery session {session_id}")
        doc = row.get("progress") or {}
        known = set(SessionState.__dataclass_fields__)
        state = SessionState(**{**{k: v for k, v in doc.items() if k in known},
                            "session_id": session_id, "status": row["status"]})
        owner = (row.get("plan") or {}).get("owner") if isinstance(row.get("plan"), dict) else None
        if state.status in ("pending", "running") and owner_ended(owner):
            # Its process died without a word (kill -9, a crash): say so, once and for all.
            state.status = "failed"
            state.errors = [*state.errors, f"interrupted: {describe(owner)} ended before the session finished"]
            try:
                self.service.catalog.update_session(session_id, status="failed", progress=state.stored(),
                                                    error="; ".join(state.errors[:5]))
            except (StrongroomError, OSError, sqlite3.Error):
                pass  # a catalog this process cannot write: the answer is the same, said again next time
        return state.frozen()

    def cancel_recovery(self, session_id: str) -> bool:
        """Ask a running restore to stop; False when this process runs no such session."""
        with self._lock:
            cancel = self._cancel.get(session_id)
        if cancel is None:
            return False
        cancel.set()
        return True

    def wait(self, session_id: str, timeout: float | None = None) -> RecoveryProgress:
        """Block until the session is done (or `timeout` seconds pass); its progress then."""
        # An event, not Thread.join: a KeyboardInterrupt during join(timeout)
        # can leave the thread looking finished while it still runs.
        done = self._done.get(session_id)
        if done is not None:
            done.wait(timeout)
        return self.get_progress(session_id)


class RecoveryService:
    """The facade: recovery points, one-click and selective restores, progress."""

    def __init__(self, service: BackupService) -> None:
        from strongroom.dr.manager import DisasterRecoveryManager  # here: the dr package imports this layer

        self.backup_service = service
        self.points = RecoveryPointManager(service)
        self.executor = RecoveryExecutor(service)
        self.dr = DisasterRecoveryManager(service)

    def list_recovery_points(self, config_name: str | None = None, since: datetime | None = None,
                             until: datetime | None = None) -> list[RecoveryPoint]:
        """The snapshots of one configuration (or of all), oldest first, between `since` and `until`."""
        return self.points.list_recovery_points(config_name, since, until)

    def find_point_in_time(self, config_name: str, when: datetime) -> RecoveryPoint:
        """The newest snapshot of `config_name` taken at or before `when`."""
        return self.points.find_point_in_time(config_name, when)

    def one_click_restore(self, config_name: str, target_path: str | None = None, at: datetime | None = None,
                          point_id: str | None = None, verify: bool = True,
                          progress: Progress | None = None, real_target: bool = False) -> str:
        """Restore the latest snapshot (or the one at `at`, or `point_id`) of a
        configuration into `target_path` (default: where it came from) in the
        background; returns a session id for `get_recovery_progress` and `wait`.
        `progress` gets every engine event (see `RecoveryExecutor.execute_recovery`).
        `real_target`: `target_path` is a real path (check_restore_target's), opened
        without following a symlink, so one swapped in after the check fails the restore."""
        plan = self.executor.create_recovery_plan(config_name, point_id, at, target_path, verify=verify,
                                                  real_target=real_target)
        return self.executor.execute_recovery(plan, progress)

    def selective_restore(self, config_name: str, include: str | Iterable[str], target_path: str | None = None,
                          at: datetime | None = None, point_id: str | None = None, exclude: Iterable[str] = (),
                          verify: bool = True, progress: Progress | None = None, real_target: bool = False) -> str:
        """Restore only paths matching the globs in `include`, like `one_click_restore`."""
        if isinstance(include, str):
            include = (include,)
        if not include:
            raise UsageError("a selective restore needs at least one path or glob")
        plan = self.executor.create_recovery_plan(config_name, point_id, at, target_path, include, exclude,
                                                  verify=verify, real_target=real_target)
        return self.executor.execute_recovery(plan, progress)

    def get_recovery_progress(self, session_id: str) -> RecoveryProgress:
        """The session's progress now (a restore's, or a disaster-recovery run's or step's)."""
        live = self.dr.session_progress(session_id)
        return live if live is not None else self.executor.get_progress(session_id)

    def create_disaster_recovery_plan(self, name: str, recovery_order: Iterable[str], target_base_path: str,
                                      **options: Any) -> str:
        """A plan restoring these configurations in this order, each below
        `target_base_path`; returns its id. `options` are those of
        `DisasterRecoveryManager.create_dr_plan` (rto, rpo, on_failure, verify, replace)."""
        return self.dr.create_dr_plan(name, recovery_order=list(recovery_order), target_base_path=target_base_path,
                                      **options)

    def execute_disaster_recovery(self, plan_id: str, **options: Any) -> list[str]:
        """Run the plan in the background; returns the session ids of its steps, in
        plan order, for `get_recovery_progress` and `wait`. `options` are those of
        `DisasterRecoveryManager.execute_dr_plan` (target_base, at, progress)."""
        return self.dr.step_sessions(self.dr.execute_dr_plan(plan_id, **options))

    def cancel_recovery(self, session_id: str) -> bool:
        """Ask a running restore (or the DR run a step's session is part of) to stop;
        False when this process runs no such session."""
        run_id = self.dr.run_of(session_id)
        return self.dr.cancel(run_id) if run_id is not None else self.executor.cancel_recovery(session_id)

    def wait(self, session_id: str, timeout: float | None = None) -> RecoveryProgress:
        """Block until the session is done (or `timeout` seconds pass); its progress then."""
        live = self.dr.wait_session(session_id, timeout)
        return live if live is not None else self.executor.wait(session_id, timeout)


def create_recovery_service(backup_service: BackupService) -> RecoveryService:
    """The recovery service over a manager's `backup_service`."""
    return RecoveryService(backup_service)
