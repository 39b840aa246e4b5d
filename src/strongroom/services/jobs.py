"""The job queue: backups waiting in the catalog, run by a few worker threads.

Jobs live in the catalog, so a second process sees the same queue and
`Catalog.claim_next` makes sure one job runs once. Higher priority first,
then the oldest; a failed job goes back to the queue after a back-off until
its attempts are used up.

A claimed job names its owner (host, pid and the process's start time) in
the same transaction that marks it running, so a running job always says
who runs it: when that process is gone (kill -9, power cut), the next queue
started on this host puts the job back.

A shutdown (`stopping`, the daemon's SIGTERM) puts the running jobs back as
queued with their attempt not counted, and a target that does not answer
during the daemon's wake-up grace (`in_grace`) does the same after a
back-off: neither is the job's own failure.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import traceback
from typing import Callable

from strongroom.errors import (AuthenticationFailed, DamageFound, Interrupted, StorageUnreachable, StrongroomError,
                               UsageError, WrongPassword)

# A runner takes the job and returns {"snapshot_id", "kind" (of the point made),
# "stats", "warning"}; every key is optional.
Runner = Callable[[dict], dict]
# Told of a run's start and of its final outcome (not of a retry): called as
# on_outcome(job row, "started" | "succeeded" | "failed", result or error).
# What it raises is ignored: it must not change the job's result.
Outcome = Callable[[dict, str, "dict | str | None"], None]
# Told when a claimed job goes back to the queue instead of finishing: called
# as on_requeue(job row, why, seconds until it may run again or None).
Requeued = Callable[[dict, str, "float | None"], None]

# Another attempt cannot cure these: a bad configuration, a refused password
# (and retrying a refused password can lock the account), damage a check
# found (reading it again finds it again). A target that does
# not answer (StorageUnreachable) fails its attempt at once but is tried again
# on the queue's back-off: a NAS that reboots at 3 am refuses connections for
# a minute, and a scheduled job must not give up on it for good.
PERMANENT_ERRORS = (UsageError, WrongPassword, AuthenticationFailed, DamageFound)
# The longest wait between two tries of a target that does not answer during
# the wake-up grace (see JobQueue.in_grace).
GRACE_RETRY_CAP = 30.0
# The warning of a backup whose process ended after its point was made.
ABANDONED_AFTER_POINT = ("its process ended after the point was made: retention after the run, if any, "
                         "is applied after the next run")
# Seconds before a worker tries to claim again after the catalog refused a claim.
CLAIM_RETRY = 2.0

log = logging.getLogger("strongroom.jobs")

# The kinds of job that make a recovery point; the others (a scheduled
# "check", a "dr-test") are verification and never count as a backup.
BACKUP_KINDS = ("full", "incremental")


class JobQueue:
    def __init__(self, catalog, runner: Runner, max_concurrent: int = 2, retry_delay: float = 5.0,
                 clock: Callable[[], float] = time.time, stopping: threading.Event | None = None) -> None:
        self.catalog = catalog
        self.runner = runner
        self.max_concurrent = max_concurrent
        self.retry_delay = retry_delay
        self._clock = clock
        self.on_outcome: Outcome | None = None
        self.on_requeue: Requeued | None = None
        # Set when the process shuts down: no new job is claimed, and a job
        # that stops because of it goes back to the queue without counting
        # the attempt (the next start runs it again).
        self.stopping = stopping if stopping is not None else threading.Event()
        # True while a target that does not answer is to be expected: just
        # after the daemon started or the machine woke up (the network comes
        # up after us). Then StorageUnreachable puts the job back after a
        # back-off without using up an attempt. None: never.
        self.in_grace: Callable[[], bool] | None = None
        self._grace_tries: dict[int, int] = {}
        # Jobs whose final row is written but whose outcome is still being told:
        # `wait` returns after the notifications, so a caller sees them sent.
        self._telling: set[int] = set()
        self._claims_failing = False  # a stretch of failed claims is logged once
        self._wake = threading.Condition()
        self._done = threading.Condition()
        self._stop = False
        self._workers: list[threading.Thread] = []
        self.running = 0
        self.peak_running = 0

    def submit(self, config: str, kind: str, priority: int = 0, max_attempts: int = 3) -> int:
        if kind not in ("full", "incremental"):
            raise UsageError(f"backup kind must be 'full' or 'incremental', not {kind!r}")
        job_id = self.catalog.add_job(config, kind, priority, max_attempts)
        self._start()
        with self._wake:
            self._wake.notify_all()
        return job_id

    def submit_once(self, config: str, kind: str, priority: int = 0, max_attempts: int = 3) -> tuple[int, bool]:
        """`submit`, unless a job of `config` and `kind` waits to start already:
        (job id, whether it is a new one)."""
        if kind not in ("full", "incremental"):
            raise UsageError(f"backup kind must be 'full' or 'incremental', not {kind!r}")
        job_id, new = self.catalog.add_job_once(config, kind, priority, max_attempts)
        self._start()
        with self._wake:
            self._wake.notify_all()
        return job_id, new

    def requeue_abandoned(self) -> int:
        """Put back jobs left "running" by a process of this host that died
        (kill -9, power cut); a job another live process runs is left alone.
        A backup whose point was made before its process died (it was applying
        its retention) is marked succeeded instead: running it again would
        make a second point for the same slot. Returns how many were put back."""
        count = 0
        for job in self.catalog.list_jobs(status="running", limit=None):
            if _owner_alive(job.get("stats") or {}):
                continue
            if job.get("snapshot_id") and job["kind"] in BACKUP_KINDS:
                if self.catalog.finish_abandoned_job(job["id"], job["attempts"], ABANDONED_AFTER_POINT, self._clock()):
                    log.warning("job %d of %s: its point %s was made before its process ended; marked succeeded",
                                job["id"], job["config"], str(job["snapshot_id"])[:16])
                continue
            if self.catalog.requeue_job(job["id"], job["attempts"], "requeued: its process ended"):
                count += 1
        return count

    def start(self) -> None:
        """Start the workers now, though nothing was submitted: jobs queued by
        someone else (a claimed schedule slot, another process) run too."""
        self._start()

    def wake(self) -> None:
        """Tell idle workers that jobs were queued."""
        with self._wake:
            self._wake.notify_all()

    def _start(self) -> None:
        if not self._workers:
            self.requeue_abandoned()
        with self._wake:
            self._workers = [w for w in self._workers if w.is_alive()]
            while len(self._workers) < self.max_concurrent and not self._stop:
                worker = threading.Thread(target=self._work, name=f"job-{len(self._workers)}", daemon=True)
                self._workers.append(worker)
                worker.start()

    def _work(self) -> None:
        while True:
            with self._wake:
                if self._stop or self.stopping.is_set():
                    return
            try:
                job = self.catalog.claim_next(self._clock(), current_owner())
            except (sqlite3.Error, StrongroomError) as e:
                self._claim_failed(e)
                with self._wake:
                    if self._stop:
                        return
                    self._wake.wait(timeout=CLAIM_RETRY)
                continue
            self._claim_worked()
            if job is None:
                with self._wake:
                    if self._stop:
                        return
                    self._wake.wait(timeout=self._idle_wait())
                continue
            try:
                self._run(job)
            except (sqlite3.Error, StrongroomError) as e:
                # Its outcome could not be written: the row still says running, under
                # this process, and is put back at the next start (requeue_abandoned).
                log.error("job %d of %s: its outcome could not be written to the catalog: %s", job["id"],
                          job["config"], _one_line(e))

    def _claim_failed(self, error: BaseException) -> None:
        with self._wake:
            first, self._claims_failing = not self._claims_failing, True
        if first:
            log.error("cannot claim jobs from the catalog (trying again every %.0f s): %s", CLAIM_RETRY,
                      _one_line(error))

    def _claim_worked(self) -> None:
        if self._claims_failing:
            with self._wake:
                was, self._claims_failing = self._claims_failing, False
            if was:
                log.info("jobs are claimed from the catalog again")

    def _idle_wait(self) -> float:
        # A retry becomes due after retry_delay at the earliest: look that often.
        return min(0.5, self.retry_delay / 2)

    def _run(self, job: dict) -> None:
        with self._wake:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
        attempts = job["attempts"]  # counted by the claim
        self._tell(job, "started", None)
        with self._done:
            self._telling.add(job["id"])
        try:
            result = self.runner(job)
            # The kind of what was made, which may differ from what was asked:
            # the first incremental run of a configuration makes a full point.
            made = {"kind": result["kind"]} if result.get("kind") in ("full", "incremental") else {}
            self.catalog.update_job(job["id"], status="succeeded", finished_at=self._clock(),
                                    snapshot_id=result.get("snapshot_id"), stats=result.get("stats"),
                                    error=result.get("warning"), **made)
            self._grace_tries.pop(job["id"], None)
            self._tell(job, "succeeded", result)
        except BaseException as e:  # the job's failure is recorded, the worker lives on
            message = str(e) if isinstance(e, StrongroomError) else f"{type(e).__name__}: {e}"
            if not isinstance(e, StrongroomError):
                message += "\n" + traceback.format_exc(limit=5)
            if self.stopping.is_set() and not isinstance(e, PERMANENT_ERRORS):
                # Stopped by the shutdown (or failed while it cut things short):
                # not an attempt of its own; what it stored stays for the next run.
                self._put_back(job, attempts - 1, "interrupted: strongroom stopped; it runs again at the next start",
                               None, "stopped")
            elif isinstance(e, (Interrupted, KeyboardInterrupt)):
                # Cancelled (BackupManager.cancel_job) or interrupted: not retried, not a failure.
                self.catalog.update_job(job["id"], status="cancelled", error=str(e) or "interrupted",
                                        finished_at=self._clock())
            elif isinstance(e, StorageUnreachable) and self.in_grace is not None and self.in_grace():
                tries = self._grace_tries.get(job["id"], 0) + 1
                self._grace_tries[job["id"]] = tries
                delay = min(self.retry_delay * 2 ** (tries - 1), GRACE_RETRY_CAP)
                self._put_back(job, attempts - 1, message, delay, f"the target does not answer yet: {message}")
            elif attempts < job["max_attempts"] and not isinstance(e, PERMANENT_ERRORS):
                delay = self.retry_delay * 2 ** (attempts - 1)
                self.catalog.update_job(job["id"], status="queued", error=message, next_try_at=self._clock() + delay)
                self._tell_requeue(job, f"attempt {attempts} of {job['max_attempts']} failed: {message}", delay)
            else:
                self.catalog.update_job(job["id"], status="failed", error=message, finished_at=self._clock())
                self._grace_tries.pop(job["id"], None)
                self._tell(job, "failed", message)
        finally:
            with self._wake:
                self.running -= 1
                self._wake.notify_all()
            with self._done:
                self._telling.discard(job["id"])
                self._done.notify_all()

    def _put_back(self, job: dict, attempts: int, error: str, delay: float | None, why: str) -> None:
        """Queue a claimed job again with `attempts` counted, its owner cleared."""
        self.catalog.update_job(job["id"], status="queued", attempts=max(attempts, 0), error=error, stats=None,
                                next_try_at=None if delay is None else self._clock() + delay)
        self._tell_requeue(job, why, delay)

    def _tell_requeue(self, job: dict, why: str, delay: float | None) -> None:
        if self.on_requeue is None:
            return
        try:
            self.on_requeue(job, why, delay)
        except Exception:
            pass  # only a report: the job's row is written

    def _tell(self, job: dict, outcome: str, detail: dict | str | None) -> None:
        if self.on_outcome is None:
            return
        try:
            self.on_outcome(job, outcome, detail)
        except Exception:
            pass  # the notifier logs its own failures; the job's result stands

    def wait(self, job_id: int, timeout: float | None = None) -> dict:
        """Block until the job succeeded or failed for good; returns its row."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.catalog.get_job(job_id)
            if job is None:
                raise UsageError(f"no job {job_id}")
            if job["status"] in ("succeeded", "failed", "cancelled"):
                with self._done:
                    if job_id not in self._telling:
                        return job
                    self._done.wait(timeout=0.2)
                continue
            if deadline is not None and time.monotonic() >= deadline:
                raise StrongroomError(f"job {job_id} is still {job['status']} after {timeout} s")
            with self._done:
                self._done.wait(timeout=0.2)

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        for worker in self._workers:
            worker.join(timeout=60)


def _one_line(error: BaseException) -> str:
    text = str(error) if isinstance(error, StrongroomError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split())


def current_owner() -> dict:
    """Who runs a job claimed now: this host and process, and when the process started
    (a pid alone may have been reused by another process since)."""
    pid = os.getpid()
    return {"owner": f"{socket.gethostname()}:{pid}", "owner_started": _process_start(pid)}


def _owner_alive(stats: dict) -> bool:
    """Whether the process a running job names as its owner may still run it.

    A job without an owner was claimed by an older strongroom that records
    the owner after the claim, and whose process died in between: nothing
    can be running it. A job of another host is assumed alive.
    """
    owner = stats.get("owner")
    if not isinstance(owner, str) or not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    if not pid.isdigit() or not _alive(int(pid)):
        return False
    started, now = stats.get("owner_started"), _process_start(int(pid))
    return started is None or now is None or started == now


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last ")".
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return int(fields[19])  # field 22, starttime
    except (IndexError, ValueError):
        return None
