"""The job queue over a real catalog: order, retries, abandoned jobs."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

from strongroom.errors import StrongroomError
from strongroom.services.catalog import Catalog
from strongroom.services.jobs import JobQueue


def test_priority_order_with_one_worker(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    ran: list[str] = []
    gate = threading.Event()

    def runner(job):
        gate.wait(5)
        ran.append(job["config"])
        return {"snapshot_id": job["config"]}

    queue = JobQueue(catalog, runner, max_concurrent=1)
    ids = [queue.submit("first", "full", priority=0)]  # takes the only worker
    time.sleep(0.2)
    ids += [queue.submit(name, "incremental", priority=p) for name, p in (("low", 1), ("high", 9), ("mid", 5))]
    gate.set()
    for job_id in ids:
        assert queue.wait(job_id, timeout=10)["status"] == "succeeded"
    assert ran == ["first", "high", "mid", "low"]
    assert queue.peak_running == 1
    queue.stop()


def test_a_failing_job_is_retried_then_reported(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    calls = []

    def runner(job):
        calls.append(time.monotonic())
        raise StrongroomError("target unreachable")

    queue = JobQueue(catalog, runner, max_concurrent=2, retry_delay=0.05)
    job = queue.wait(queue.submit("x", "full", max_attempts=3), timeout=10)
    assert job["status"] == "failed" and job["attempts"] == 3
    assert "target unreachable" in job["error"]
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.04 and calls[2] - calls[1] >= 0.08  # back-off doubles
    queue.stop()


def test_a_job_left_running_by_a_dead_process_is_requeued(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    job_id = catalog.add_job("x", "full", 0, 3)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert catalog.claim_job(job_id)
    catalog.update_job(job_id, stats={"owner": f"{socket.gethostname()}:{dead.stdout.strip()}"})
    alive_id = catalog.add_job("y", "full", 0, 3)
    assert catalog.claim_job(alive_id)
    catalog.update_job(alive_id, stats={"owner": f"{socket.gethostname()}:1"})  # pid 1 lives
    queue = JobQueue(catalog, lambda job: {"snapshot_id": "s"}, max_concurrent=1)
    assert queue.requeue_abandoned() == 1
    assert catalog.get_job(job_id)["status"] == "queued"
    assert catalog.get_job(alive_id)["status"] == "running"
    queue.stop()
