"""Claiming jobs when processes die: a job is never left running without an owner
that the requeue logic can check, wherever the process is killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from strongroom.services.catalog import Catalog
from strongroom.services.jobs import JobQueue, current_owner

JOBS = 2

# Runs a real job queue over the catalog and SIGKILLs itself just before the
# worker thread's Nth SQL statement: the catalog sees exactly what a process
# killed between two statements leaves behind.
WORKER = textwrap.dedent(f"""
    import os, signal, sys, threading
    from strongroom.services.catalog import Catalog
    from strongroom.services.jobs import JobQueue

    path, kill_at = sys.argv[1], int(sys.argv[2])
    catalog = Catalog(path)
    statements = 0

    def trace(sql):
        global statements
        if threading.current_thread().name.startswith("job-"):
            statements += 1
            if statements == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    catalog._db.set_trace_callback(trace)
    queue = JobQueue(catalog, lambda job: {{"snapshot_id": f"point-{{job['id']}}", "kind": "full"}},
                     max_concurrent=1)
    ids = [queue.submit("docs", "incremental") for _ in range({JOBS})]
    for job_id in ids:
        queue.wait(job_id, timeout=60)
    queue.stop()
    print(statements)
""")


def run_worker(db: Path, kill_at: int) -> subprocess.CompletedProcess:
    """The worker above, killed before its `kill_at`th statement; it prints how many it ran if it ends."""
    return subprocess.run([sys.executable, "-c", WORKER, str(db), str(kill_at)], capture_output=True, text=True,
                          timeout=120)


def test_a_worker_killed_between_any_two_statements_leaves_jobs_that_are_requeued_and_run(tmp_path):
    seen_running = 0
    kill_at = 0
    while True:  # every kill point until the run gets to its end before the kill
        kill_at += 1
        db = tmp_path / f"kill-{kill_at}.db"
        done = run_worker(db, kill_at)
        if done.returncode == 0:
            assert int(done.stdout) < kill_at
            break
        assert done.returncode == -signal.SIGKILL, (kill_at, done.stderr)
        with Catalog(db) as catalog:
            running = catalog.list_jobs(status="running", limit=None)
            seen_running += len(running)
            for job in running:
                # Claimed and owned in one transaction: the owner is always there.
                owner = (job["stats"] or {}).get("owner", "")
                assert owner.startswith(f"{socket.gethostname()}:"), (kill_at, job)
                assert job["started_at"] is not None and job["attempts"] == 1, (kill_at, job)
            queue = JobQueue(catalog, lambda job: {"snapshot_id": f"again-{job['id']}"}, max_concurrent=1)
            assert queue.requeue_abandoned() == len(running)
            assert catalog.list_jobs(status="running", limit=None) == []
            # The next queue on this host runs what the dead one left: nothing is lost or stuck.
            ids = [job["id"] for job in catalog.list_jobs(limit=None)]
            ids.append(queue.submit("docs", "incremental"))
            assert all(queue.wait(job_id, timeout=60)["status"] == "succeeded" for job_id in ids), kill_at
            queue.stop()
    assert kill_at > 4 * JOBS, "a claim and a finish take a few statements per job"
    assert seen_running > 0, "some kill points should fall while a job runs"


def test_a_job_claimed_without_an_owner_is_requeued(tmp_path):
    # What the older claim (status first, owner in a second transaction) left
    # behind when its process died in between.
    with Catalog(tmp_path / "c.db") as catalog:
        job_id = catalog.add_job("docs", "full", 0, 3)
        assert catalog.claim_job(job_id)
        queue = JobQueue(catalog, lambda job: {"snapshot_id": "s"}, max_concurrent=1)
        assert queue.requeue_abandoned() == 1
        assert catalog.get_job(job_id)["status"] == "queued"
        later = queue.submit("docs", "full")  # starts the workers, which run both
        assert [queue.wait(i, timeout=30)["status"] for i in (job_id, later)] == ["succeeded"] * 2
        queue.stop()


def test_a_reused_pid_does_not_keep_a_dead_owners_job(tmp_path):
    with Catalog(tmp_path / "c.db") as catalog:
        me = current_owner()
        assert me["owner"] == f"{socket.gethostname()}:{os.getpid()}"
        ours = catalog.add_job("docs", "full", 0, 3)
        assert catalog.claim_job(ours, owner=me)
        # Same pid, but a process that started at another time: not the one that claimed it.
        other = catalog.add_job("docs", "full", 0, 3)
        assert catalog.claim_job(other, owner={**me, "owner_started": -1})
        queue = JobQueue(catalog, lambda job: {"snapshot_id": "s"}, max_concurrent=1)
        if me["owner_started"] is None:  # no /proc: the pid is all there is to go by
            assert queue.requeue_abandoned() == 0
        else:
            assert queue.requeue_abandoned() == 1
            assert catalog.get_job(other)["status"] == "queued"
        assert catalog.get_job(ours)["status"] == "running"
        queue.stop()
