"""The daemon: a scheduler thread that claims due slots in the catalog, the
job queue's workers that run what the claims queued, and a periodic look
for overdue configurations and filling targets.

What is due comes from the wall clock and the catalog on every pass, never
from a timer: a pass asks `due_now` of every scheduled task, and claims a
due slot with `Catalog.claim_slot`, which queues its job in the same
transaction. A slot claimed once (by this process, a previous run, or
another process) is never claimed again, so a crash, a restart or a clock
jump cannot run a slot twice. The loop sleeps `tick` seconds on an Event
between passes, so `stop` is immediate and no sleep outlives a clock jump
by more than one tick.

Shutdown sets `manager.stopping`: a running backup stops at its next chunk,
indexes what it stored, and its job goes back to the queue with the
attempt not counted (JobQueue); the next start runs it again, and the
packs it stored are not sent twice.

Right after the start, and right after a forward clock jump (the machine
woke up), the network may not be up yet: for `wake_grace` seconds a target
that does not answer (StorageUnreachable) puts its job back after a
back-off instead of using up an attempt (JobQueue.in_grace).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable
from zoneinfo import ZoneInfo

from strongroom.daemon.alerts import FULL_WITHIN_DAYS, alert_events
from strongroom.daemon.inhibit import SleepInhibitor
from strongroom.daemon.lock import ServeLock, lock_path_for
from strongroom.schedule.clock import ClockWatch
from strongroom.services.jobs import current_owner
from strongroom.services.schedules import due_now, scheduled_tasks

if TYPE_CHECKING:
    from strongroom.services.backup_manager import BackupManager

log = logging.getLogger("strongroom.daemon")
UTC = timezone.utc
WAKE_GRACE = 300.0  # seconds an unreachable target is retried after a start or a wake-up


class Daemon:
    """`start()` it (or `run_until_stopped()`, which also waits), `stop(reason)`
    it from anywhere (a signal handler included: it only asks), `join()` to
    wait for the workers and release the catalog.

    `on_reload`, when given, is called in the scheduler thread after
    `request_reload()` (the command line's SIGHUP), before the next pass.
    """

    def __init__(self, manager: BackupManager, *, local_zone: ZoneInfo, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, tick: float = 1.0, check_every: float = 300.0,
                 wake_grace: float = WAKE_GRACE, full_within_days: float = FULL_WITHIN_DAYS,
                 on_reload: Callable[[], None] | None = None) -> None:
        self.manager = manager
        self.local_zone = local_zone
        self.tick = tick
        self.check_every = check_every
        self.wake_grace = wake_grace
        self.full_within_days = full_within_days
        self.on_reload = on_reload
        self._clock = clock
        self._monotonic = monotonic
        catalog_path = manager.catalog.path
        self.lock = ServeLock(lock_path_for(catalog_path), catalog_path)
        self.started_at: float | None = None
        self.stop_reason: str | None = None
        self.claimed = 0  # slots this daemon claimed
        self.put_back = 0  # jobs the shutdown sent back to the queue
        self._heartbeat: float | None = None
        self._problems: list[str] = []  # stored documents the last pass could not read
        self._last_failure: str | None = None  # a pass that keeps failing is logged once, not every tick
        self._grace_until = 0.0  # on the monotonic clock
        self._check_due = 0.0  # on the monotonic clock
        self._stop = threading.Event()
        self._sleep = threading.Event()  # the scheduler's sleep between passes: set to wake it
        self._reload = threading.Event()
        self._thread: threading.Thread | None = None
        self._joined = False
        self._join_lock = threading.Lock()

    # ---- life ------------------------------------------------------------------------

    def start(self) -> None:
        """Lock the catalog (DaemonRunning if another daemon holds it), put back
        the jobs a dead process left running, start the workers and the scheduler.
        Once: a second call does nothing."""
        if self._thread is not None:
            return
        self.lock.acquire()
        try:
            self.started_at = self._clock()
            self._grace_until = self._monotonic() + self.wake_grace
            self._check_due = self._monotonic()  # once at start
            queue = self.manager.queue
            queue.in_grace = self.in_wake_grace
            queue.on_requeue = self._requeued
            told = queue.on_outcome

            def on_outcome(job: dict, outcome: str, detail: dict | str | None) -> None:
                self._log_outcome(job, outcome, detail)
                if told is not None:
                    told(job, outcome, detail)

            queue.on_outcome = on_outcome
            runner = queue.runner

            def run_awake(job: dict) -> dict:
                # No sleep while a job runs (where logind can be asked: daemon/inhibit.py).
                with SleepInhibitor(f"strongroom {job['kind']} of {job['config']}"):
                    return runner(job)

            queue.runner = run_awake
            requeued = queue.requeue_abandoned()
            if requeued:
                log.info("requeued %d job(s) left running by a process that ended", requeued)
            queue.start()
            self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
            self._thread.start()
        except BaseException:
            self.lock.release()
            raise

    def run_until_stopped(self) -> None:
        """Start, block until `stop` is asked, then shut down (see `join`)."""
        self.start()
        # A timed wait, so the main thread keeps running signal handlers.
        while not self._stop.wait(0.5):
            pass
        self.join()

    def stop(self, reason: str = "stopped") -> None:
        """Ask the daemon to stop: no more claims, running jobs stop at their next
        chunk and go back to the queue. Returns at once; idempotent."""
        if self._stop.is_set():
            return
        self.stop_reason = reason
        self.manager.stopping.set()
        self._stop.set()
        self._sleep.set()
        log.info("stopping (%s): running jobs go back to the queue", reason)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> None:
        """After `stop`: wait for the scheduler and the workers, then release the
        catalog. A worker stuck past the queue's own wait is left to die with the
        process; its job is put back at the next start."""
        with self._join_lock:
            if self._joined:
                return
            if self._thread is not None:
                self._thread.join(timeout)
            self.manager.queue.stop()
            self.lock.release()
            self._joined = True
        log.info("stopped (%s)", self.stop_reason or "stopped")

    def request_reload(self) -> None:
        """Have the scheduler thread call `on_reload` before its next pass."""
        self._reload.set()
        self._sleep.set()

    # ---- what other parts read ---------------------------------------------------------

    def heartbeat(self) -> float | None:
        """Wall time of the scheduler's last completed pass (None before the first)."""
        return self._heartbeat

    def in_wake_grace(self) -> bool:
        """Whether a target that does not answer is still to be expected (see module doc)."""
        return self._monotonic() < self._grace_until

    # ---- the scheduler -------------------------------------------------------------------

    def _loop(self) -> None:
        watch = ClockWatch(self._clock, self._monotonic)
        while not self._stop.is_set():
            jump = watch.tick()
            if jump is not None:
                self._jumped(jump.kind, jump.seconds)
            if self._reload.is_set():
                self._reload.clear()
                self._call_reload()
            try:
                self.schedule_pass()
                if self._monotonic() >= self._check_due:
                    self._check_due = self._monotonic() + self.check_every
                    self.check_alerts()
                self._heartbeat = self._clock()
                if self._last_failure is not None:
                    log.info("scheduler passes succeed again")
                    self._last_failure = None
            except Exception as e:  # the loop lives on; a stale heartbeat tells /healthz
                failure = _safe(e)
                if failure != self._last_failure:
                    log.error("scheduler pass failed: %s", failure)
                    self._last_failure = failure
            self._sleep.wait(self.tick)
            self._sleep.clear()

    def _jumped(self, kind: str, seconds: float) -> None:
        log.warning("the clock jumped %s by %.0f s: schedules recomputed", kind, seconds)
        if kind == "forward":
            # A wake-up from sleep: the network may take a while to come back, and
            # the monotonic timers stood still while asleep.
            self._grace_until = self._monotonic() + self.wake_grace
            self._check_due = self._monotonic()

    def _call_reload(self) -> None:
        if self.on_reload is None:
            log.info("reload asked: nothing to reload")
            return
        try:
            self.on_reload()
            log.info("reloaded")
        except Exception as e:
            log.error("reload failed: %s", _safe(e))

    def schedule_pass(self) -> int:
        """Claim every slot due now; returns how many were claimed."""
        now = self._clock()
        moment = datetime.fromtimestamp(now, UTC)
        started = self.started_at if self.started_at is not None else now
        claimed = 0
        problems: list[str] = []
        tasks = scheduled_tasks(self.manager.catalog, self.local_zone, problems)
        if problems != self._problems:  # said once, not every pass
            for problem in problems:
                log.error("%s", _safe(problem))
            self._problems = problems
        # Highest priority first: a worker may claim a queued job between two of
        # these claims, and must then find the most urgent one already queued.
        for task in sorted(tasks, key=lambda t: -t.job["priority"]):
            if self._stop.is_set():
                break
            since = datetime.fromtimestamp(max(started, task.since or started), UTC)
            slot = due_now(task.state, moment, since)
            if slot is None:
                continue
            if self.manager.catalog.claim_slot(task.state.config, slot.schedule_id, slot.time, current_owner(),
                                               job=task.job):
                claimed += 1
                log.info("slot claimed: %s, schedule %s, slot %s%s", _safe(task.state.config),
                         _safe(task.state.schedule.text), slot.time.isoformat(), " (missed)" if slot.missed else "")
        if claimed:
            self.claimed += claimed
            self.manager.queue.wake()
        return claimed

    def check_alerts(self) -> int:
        """Emit the overdue and target-full events that hold now; returns how many."""
        events = alert_events(self.manager, self._clock(), self.local_zone, self.full_within_days)
        for event in events:
            self.manager.notifier.emit(event)  # never raises; the policy dedups
        return len(events)

    # ---- what the queue tells -------------------------------------------------------------

    def _log_outcome(self, job: dict, outcome: str, detail: dict | str | None) -> None:
        name = _safe(job["config"])
        if outcome == "started":
            log.info("job %d started: %s (%s, attempt %d of %d)", job["id"], name, job["kind"], job["attempts"],
                     job["max_attempts"])
        elif outcome == "succeeded":
            result = detail if isinstance(detail, dict) else {}
            warning = f", warning: {_safe(result['warning'])}" if result.get("warning") else ""
            log.info("job %d succeeded: %s, snapshot %s%s", job["id"], name,
                     str(result.get("snapshot_id") or "-")[:16], warning)
        elif outcome == "failed":
            log.error("job %d failed: %s: %s", job["id"], name, _safe(detail))

    def _requeued(self, job: dict, why: str, delay: float | None) -> None:
        if self.manager.stopping.is_set():
            self.put_back += 1
        again = f", again in {delay:.0f} s" if delay is not None else ""
        log.warning("job %d requeued: %s: %s%s", job["id"], _safe(job["config"]), _safe(why), again)


def _safe(text: object, limit: int = 300) -> str:
    """One bounded line without control characters: names come from the catalog,
    errors from servers."""
    line = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"
