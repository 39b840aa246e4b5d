"""The daemon attacked as an adversary would: clients that hold the HTTP
endpoints' connections, path and header tricks around the token, and the
other faults found by trying to break `strongroom serve`. Each test here
failed before the fix it names in its docstring.

The endpoints run in this process on 127.0.0.1, port 0 (uvicorn), and are
spoken to over real sockets; daemons run as the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import timezone

import httpx
import pytest

from strongroom import BackupConfig, create_backup_manager
from strongroom.daemon import Daemon
from strongroom.schedule.spec import parse_schedule
from strongroom.daemon.connections import BoundedH11Protocol
from strongroom.daemon.http import HttpEndpoints
from strongroom.services.catalog import BUSY_TIMEOUT
from strongroom.services.scheduled_runs import LOCK_WAIT
from catalog_cli import HOOKS, SRC
from test_serve import Serve, _url, output, stop, wait_for

TOKEN = "s3cr3t-t0ken-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def manager(tmp_path, monkeypatch):
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    monkeypatch.setenv("STRONGROOM_SECRETS", str(tmp_path / "secrets.json"))
    made = create_backup_manager(db_path=str(tmp_path / "catalog.db"), cache_root=str(tmp_path / "cache"))
    yield made
    made.close()
    made.catalog.close()


@pytest.fixture
def endpoints(manager):
    """endpoints(token=None) -> (port, base URL): HttpEndpoints on 127.0.0.1 with a live heartbeat."""
    started = []

    def start(token=None):
        served = HttpEndpoints(manager, time.time, token=token)
        port = served.start("127.0.0.1", 0)
        started.append(served)
        return port, f"http://127.0.0.1:{port}"

    yield start
    for served in started:
        served.stop()


def _half_request(port: int) -> socket.socket:
    """A connection that starts a request and never finishes its head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: strongroom\r\n")
    return sock


def test_clients_holding_connections_do_not_starve_healthz(endpoints):
    """Fault: 64 connections that never finish a request made every later
    request a 503 (uvicorn's limit_concurrency counts connections) for as
    long as they stayed open. Fix: daemon/connections.py sheds the oldest
    idle connection when the cap is reached."""
    port, base = endpoints(token=TOKEN)
    held = [_half_request(port) for _ in range(BoundedH11Protocol.max_connections + 10)]
    try:
        for _ in range(3):
            answer = httpx.get(base + "/healthz", headers=AUTH, timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "ok"
        # The oldest of the held connections were the ones closed.
        held[0].settimeout(10)
        try:  # closed: an end of stream, or a reset when its unread request was discarded
            assert held[0].recv(100) == b""
        except ConnectionResetError:
            pass
    finally:
        for sock in held:
            sock.close()


def test_a_request_head_that_never_ends_is_closed(endpoints, monkeypatch):
    """Fault: a connection that never finished its request line was kept open
    for ever (uvicorn arms no timer before the first response), even when
    it dripped a byte now and then. Fix: a deadline on the request's head."""
    monkeypatch.setattr(BoundedH11Protocol, "head_timeout", 0.5)
    port, base = endpoints()
    dripping = socket.create_connection(("127.0.0.1", port), timeout=10)
    closed = False
    for byte in b"GET /healthz HTTP/1.1\r\nHost: strongroom\r\n":
        try:
            dripping.sendall(bytes([byte]))
        except OSError:
            closed = True
            break
        time.sleep(0.1)
    if not closed:
        assert dripping.recv(100) == b""  # closed by the server, not answered
    dripping.close()
    # A whole request on a kept-alive connection is served, and the next head has its own deadline.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as kept:
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: strongroom\r\n\r\n")
        assert kept.recv(100).startswith(b"HTTP/1.1 200 ")
        kept.sendall(b"GET /healthz HTTP/1.1\r\n")
        data = b""
        while chunk := kept.recv(65536):
            data += chunk
        assert b"HTTP/1.1" not in data  # the rest of the first answer, if any, and then the close


def _add_every_2s(s: Serve, tmp_path, name: str = "docs") -> None:
    source = tmp_path / f"src-{name}"
    source.mkdir()
    (source / "a").write_text("alpha")
    s.ok("config", "add", name, "--source", str(source), "--target-dir", str(tmp_path / f"repo-{name}"),
         "--no-encrypt", "--schedule", "every 2s")


def test_a_writer_holding_the_catalog_neither_kills_the_workers_nor_holds_up_the_endpoints(tmp_path):
    """Fault: another process holding the catalog's write lock longer than the
    busy timeout made claim_next raise "database is locked" in every worker
    thread, which died of it (a traceback on stderr); the scheduler went on
    claiming slots and /healthz said ok, but no job ever ran again. Fix: a
    worker logs the failed claim once and tries again. And /healthz waited
    behind those workers (see below)."""
    s = Serve(tmp_path)
    _add_every_2s(s, tmp_path)
    proc = s.serve("--jobs", "1")
    catalog = s.catalog()
    wait_for("the daemon to start", lambda: "pid" in output(proc)[0], proc)
    wait_for("a first success", lambda: catalog.list_jobs(config="docs", status="succeeded"), proc)
    writer = sqlite3.connect(str(s.catalog_path), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        # The endpoints answer while the daemon's own threads wait for the catalog
        # (Fault: they queued behind them, 20 s and more. Fix: a connection of their own.)
        base = _url(proc)
        for _ in range(6):
            assert httpx.get(base + "/metrics", timeout=BUSY_TIMEOUT / 2).status_code == 200
            # An answer: 503 once the 2-second schedule is overdue, which no job can cure now.
            assert httpx.get(base + "/healthz", timeout=BUSY_TIMEOUT / 2).status_code in (200, 503)
            time.sleep(0.3)
        wait_for("the workers to give up waiting for the catalog",
                 lambda: "cannot claim jobs from the catalog" in output(proc)[1] or "locked" in output(proc)[1],
                 proc, deadline=BUSY_TIMEOUT * 3)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    done = len(catalog.list_jobs(config="docs", status="succeeded", limit=None))
    wait_for("jobs to run again", lambda: len(catalog.list_jobs(config="docs", status="succeeded", limit=None))
             > done + 1, proc)
    assert stop(proc) == 0
    err = output(proc)[1]
    assert "Traceback" not in err and "Exception in thread" not in err
    assert err.count("cannot claim jobs from the catalog") >= 1
    assert "jobs are claimed from the catalog again" in err


STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


def test_the_http_servers_warnings_reach_the_log_file_stamped_and_one_line(tmp_path):
    """Fault: uvicorn's own warnings (a malformed request, a shed connection)
    went to Python's last-resort handler: bare lines on stderr, without time
    or level, unscrubbed, and missing from --log-file. Fix: serve gives
    uvicorn's loggers the daemon's handlers."""
    s = Serve(tmp_path)
    log_file = tmp_path / "serve.log"
    proc = s.serve("--log-file", str(log_file))
    wait_for("the daemon to start", lambda: "pid" in output(proc)[0], proc)
    host, port = _url(proc).rsplit("/", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\x00\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    wait_for("the warning in the log file",
             lambda: log_file.exists() and "Invalid HTTP request" in log_file.read_text(), proc)
    assert stop(proc) == 0
    for text in (output(proc)[1], log_file.read_text()):
        lines = text.splitlines()
        assert lines and all(STAMPED.match(line) for line in lines), lines
        assert any(line.endswith("WARNING uvicorn.error: Invalid HTTP request received.") for line in lines)


THREAD_DIES = """
import logging, sys, threading
from strongroom.daemon.logs import log_uncaught_in_threads, register_secret, setup_logging
setup_logging(stderr=True, level="info")
log_uncaught_in_threads(logging.getLogger("strongroom.daemon"))
register_secret(sys.argv[1])
def die():
    raise RuntimeError("cannot reach https://u:" + sys.argv[1] + "@nas/ after\\nthree tries")
worker = threading.Thread(target=die, name="job-0")
worker.start()
worker.join()
"""


def test_a_thread_that_dies_is_one_scrubbed_line(tmp_path):
    """Fault (seen in the workers' death above): an exception that ended a
    thread of the daemon was Python's many-line traceback on stderr, secrets
    and all, and absent from --log-file. Fix: serve reports it through its
    logger (log_uncaught_in_threads)."""
    secret = "hunter2-thread-secret"
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    env["PYTHONPATH"] = os.pathsep.join([SRC, HOOKS])
    done = subprocess.run([sys.executable, "-c", THREAD_DIES, secret], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and STAMPED.match(lines[0]), lines
    assert "ERROR strongroom.daemon: thread job-0 ended by an error: RuntimeError" in lines[0]
    assert "Traceback" in lines[0] and secret not in done.stderr and "***" in lines[0]


def test_slots_due_at_the_same_second_are_queued_most_urgent_first(tmp_path, monkeypatch):
    """Fault: a pass claimed the due slots in the order of the configurations'
    names, each claim its own transaction, while the queue's idle workers look
    for work every half second on their own: a worker that looked between two
    claims started a low-priority job although a higher one was due at the
    same second (with --jobs 1 it then ran first). Fix: the pass claims the
    most urgent slots first, so whatever a worker finds queued mid-pass is
    the most urgent due."""
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    monkeypatch.setenv("STRONGROOM_SECRETS", str(tmp_path / "secrets.json"))
    manager = create_backup_manager(db_path=str(tmp_path / "catalog.db"), cache_root=str(tmp_path / "cache"))
    try:
        source = tmp_path / "src"
        source.mkdir()
        (source / "a").write_text("alpha")
        wanted = {"a-low": -5, "b-none": 0, "c-high": 9, "d-mid": 3}
        for name, priority in wanted.items():
            manager.add_config(BackupConfig(
                name=name, source_paths=[str(source)], target_path=str(tmp_path / f"repo-{name}"), encrypt=False,
                schedules=[parse_schedule("daily-since-last", priority=priority).to_doc()]))
        daemon = Daemon(manager, local_zone=timezone.utc)  # not started: one pass, no workers
        assert daemon.schedule_pass() == len(wanted)
        queued = sorted(manager.catalog.list_jobs(limit=None), key=lambda job: job["id"])
        assert [job["config"] for job in queued] == sorted(wanted, key=lambda name: -wanted[name])
    finally:
        manager.close()
        manager.catalog.close()


HOLD_LOCK = """
import pathlib, sys, time
from strongroom import create_backup_manager
manager = create_backup_manager(db_path=sys.argv[1], cache_root=sys.argv[2])
repo = manager.backup_service.open_repository(manager.get_config(sys.argv[3]))
with repo.lock(exclusive=True):  # as a long prune of another process holds it
    pathlib.Path(sys.argv[4]).touch()
    while pathlib.Path(sys.argv[5]).exists():
        time.sleep(0.1)
"""


def test_sigterm_ends_a_wait_for_the_repository_lock(tmp_path):
    """Fault: a job waiting for its repository's lock (another process's
    prune, a manual `strongroom forget`) did not look at the shutdown: SIGTERM
    waited up to 60 s for the lock, longer than a service manager waits
    before it kills. Fix: the wait looks at `stopping` every 0.2 s, and the
    job goes back to the queue, its attempt not counted."""
    s = Serve(tmp_path)
    _add_every_2s(s, tmp_path)
    s.ok("backup", "--config", "docs")  # the repository exists
    held, hold = tmp_path / "held", tmp_path / "hold-lock"
    hold.touch()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(s.catalog_path), str(tmp_path / "cache"),
                               "docs", str(held), str(hold)], env=s.env)
    proc = None
    try:
        wait_for("the other process to hold the lock", held.exists)
        proc = s.serve("--jobs", "1")
        wait_for("the job to wait for the lock", lambda: "repository is locked" in output(proc)[1], proc)
        proc.send_signal(signal.SIGTERM)
        # It stops while the other process still holds the lock (its wait is 60 s).
        assert proc.wait(timeout=LOCK_WAIT / 2) == 0
        assert holder.poll() is None and held.exists()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        hold.unlink()
        holder.wait(timeout=60)
    assert "1 job put back" in output(proc)[0]
    catalog = s.catalog()
    put_back = [job for job in catalog.list_jobs(config="docs", limit=None) if job["status"] == "queued"]
    assert len(put_back) == 1 and put_back[0]["attempts"] == 0


def test_the_serve_token_reaches_no_child_and_no_log_line(tmp_path):
    """Fault: STRONGROOM_SERVE_TOKEN stayed in the daemon's environment, so
    every source command (and pg_dump, systemd-inhibit) inherited it (only
    STRONGROOM_*PASSWORD* variables were held back), and the token was not
    among the secrets scrubbed from the logs. Fix: serve takes it out of its
    environment once read, and registers it as a secret."""
    s = Serve(tmp_path)
    s.env["STRONGROOM_SERVE_TOKEN"] = TOKEN
    seen = tmp_path / "child-env.txt"
    # A source command that keeps its environment, then fails saying the token (read from elsewhere).
    s.ok("config", "add", "leaky", "--source-command",
         f"sh -c 'env > {seen}; echo leaked {TOKEN} >&2; exit 3'", "--stdin-filename", "data.bin",
         "--target-dir", str(tmp_path / "repo"), "--no-encrypt", "--schedule", "every 2s", "--max-attempts", "1")
    log_file = tmp_path / "serve.log"
    proc = s.serve("--log-file", str(log_file))
    try:
        wait_for("the failed run", lambda: "job 1 failed" in output(proc)[1], proc)
    finally:
        assert stop(proc) == 0
    assert seen.exists() and "STRONGROOM_SERVE_TOKEN" not in seen.read_text() and TOKEN not in seen.read_text()
    err = output(proc)[1]
    assert "leaked ***" in err
    assert TOKEN not in err and TOKEN not in log_file.read_text() and TOKEN not in output(proc)[0]


def test_a_daemon_killed_while_its_retention_runs_does_not_back_up_the_slot_again(tmp_path):
    """Fault: a backup whose point was made, killed (kill -9, or a shutdown
    that outlasted the queue's wait) while its retention ran, was still
    "running" in the catalog; the next start put it back and ran the backup
    again: two points for one slot. Fix: the job records its point as soon
    as it is made, and the next start marks such a job succeeded."""
    s = Serve(tmp_path)
    source = tmp_path / "src"
    source.mkdir()
    (source / "a").write_text("alpha")
    repo = tmp_path / "repo"
    s.ok("config", "add", "docs", "--source", str(source), "--target-dir", str(repo), "--no-encrypt",
         "--schedule", "every 1h", "--keep-last", "5", "--retention-after-run", "prune")
    s.ok("backup", "--config", "docs")
    held, hold = tmp_path / "held", tmp_path / "hold-lock"
    hold.touch()
    # A shared lock lets the backup run and keeps its retention (exclusive) waiting.
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK.replace("exclusive=True", "exclusive=False"),
                               str(s.catalog_path), str(tmp_path / "cache"), "docs", str(held), str(hold)],
                              env=s.env)
    try:
        wait_for("the other process to hold the lock", held.exists)
        catalog = s.catalog()
        job_id = catalog.add_job("docs", "incremental", 0, 3)  # as a claimed slot queues it
        proc = s.serve("--jobs", "1")
        # The backup's own (shared) lock went through: only its retention waits.
        wait_for("the retention to wait for the lock", lambda: "repository is locked" in output(proc)[1], proc)
        proc.kill()
        proc.wait()
    finally:
        hold.unlink()
        holder.wait(timeout=60)
    assert catalog.get_job(job_id)["status"] == "running"
    proc = s.serve("--jobs", "1")
    wait_for("the job to be settled", lambda: catalog.get_job(job_id)["status"] != "running", proc)
    assert stop(proc) == 0
    job = catalog.get_job(job_id)
    assert job["status"] == "succeeded" and job["error"].startswith("its process ended after the point was made")
    points = json.loads(s.ok("snapshots", "--repo", str(repo), "--json"))
    assert len(points) == 2  # the first backup and the killed job's: not a third
    assert s.run("check", "--repo", str(repo)).returncode == 0


def test_kill_9_at_random_moments_then_a_restart_loses_nothing_and_runs_no_slot_twice(tmp_path):
    """Held (kept as a guard): a daemon killed at random moments of its runs
    (with retention and prune after each) and started again leaves every
    claimed slot with one job, every job finished, and a repository that
    checks clean."""
    import random

    s = Serve(tmp_path)
    source = tmp_path / "src"
    source.mkdir()
    for i in range(10):
        (source / f"f{i}").write_bytes(os.urandom(40_000))
    repo = tmp_path / "repo"
    s.ok("config", "add", "docs", "--source", str(source), "--target-dir", str(repo), "--no-encrypt",
         "--schedule", "every 1s", "--keep-last", "3", "--retention-after-run", "prune")
    draw = random.Random(11)
    catalog = s.catalog()
    for _ in range(4):
        proc = s.serve("--jobs", "2")
        wait_for("the daemon to start", lambda: "pid" in output(proc)[0], proc)
        time.sleep(draw.uniform(0.2, 1.5))  # a random moment of its work: the point of the test
        proc.kill()
        proc.wait()
    proc = s.serve("--jobs", "2")
    wait_for("the daemon to start", lambda: "pid" in output(proc)[0], proc)
    wait_for("every job to finish",
             lambda: catalog.list_jobs(config="docs", limit=None)
             and all(job["status"] == "succeeded" for job in catalog.list_jobs(config="docs", limit=None)), proc)
    assert stop(proc) == 0
    slots = catalog.list_slots("docs", limit=None)
    all_jobs = catalog.list_jobs(config="docs", limit=None)
    assert len({slot["slot"] for slot in slots}) == len(slots)
    assert sorted(slot["job_id"] for slot in slots) == sorted(job["id"] for job in all_jobs)
    assert s.run("check", "--repo", str(repo)).returncode == 0


def test_the_wake_up_grace_ends_and_masks_no_refused_password(tmp_path, monkeypatch):
    """Held (kept as a guard): during the wake-up grace a target that refuses
    the password (HTTP 401) fails its job at once, and a target that never
    answers fails it once the grace is over, not retried for ever."""
    import secrets as tokens

    from strongroom import WebDAVCredentials, WebDAVService
    from test_daemon import dav_on, running
    from webdav_servers import USERNAME, free_port

    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    monkeypatch.setenv("STRONGROOM_SECRETS", str(tmp_path / "secrets.json"))
    port, password = free_port(), tokens.token_urlsafe(12)
    service = WebDAVService()
    with dav_on(port, tmp_path / "nas", password) as url:
        service.add_client("nas", WebDAVCredentials(username=USERNAME, password=password, url=url,
                                                    service_type="generic"))
        manager = create_backup_manager(service, db_path=str(tmp_path / "catalog.db"),
                                        cache_root=str(tmp_path / "cache"), retry_delay=0.2)
        source = tmp_path / "src"
        source.mkdir()
        (source / "a.txt").write_text("data\n")
        manager.add_config(BackupConfig(name="home", source_paths=[str(source)], target_client_id="nas",
                                        target_path="backups", encrypt=False, max_attempts=1,
                                        schedules=[{"spec": "daily-since-last"}]))
    # The account's password was changed on the NAS since: the one stored is refused.
    try:
        with dav_on(port, tmp_path / "nas", tokens.token_urlsafe(12)):
            daemon = Daemon(manager, local_zone=timezone.utc, tick=0.05, wake_grace=600.0)
            with running(daemon):
                [slot] = wait_for("the slot", lambda: manager.catalog.list_slots("home"))
                job = manager.wait_for_job(slot["job_id"], timeout=60)
                assert daemon.in_wake_grace()
        assert job.status == "failed" and job.attempts == 1 and "401" in job.error
    finally:
        manager.close()
        manager.catalog.close()
    # Nothing listens any more; a grace of 1 s: tried again while it lasts, then failed for good.
    manager = create_backup_manager(service, db_path=str(tmp_path / "catalog.db"),
                                    cache_root=str(tmp_path / "cache"), retry_delay=0.2)
    try:
        job_id = manager.catalog.add_job("home", "incremental", 0, 1)
        daemon = Daemon(manager, local_zone=timezone.utc, tick=0.05, wake_grace=1.0)
        with running(daemon):
            job = manager.wait_for_job(job_id, timeout=60)
        assert job.status == "failed" and job.attempts == 1 and "nothing listens" in job.error
    finally:
        manager.close()
        manager.catalog.close()


def test_a_port_in_use_stops_the_started_daemon_cleanly(tmp_path):
    """Held (kept as a guard): when the endpoints cannot start after the daemon
    took the catalog, serve exits 1 with one line, and leaves the catalog
    free and no job running."""
    s = Serve(tmp_path)
    _add_every_2s(s, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = s.serve("--listen", f"127.0.0.1:{port}")
        assert proc.wait(timeout=60) == 1
    err = output(proc)[1]
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in err and "Traceback" not in err
    catalog = s.catalog()
    assert not catalog.list_jobs(status="running", limit=None)
    again = s.serve("--no-listen")
    wait_for("a second daemon to start on the freed catalog", lambda: "pid" in output(again)[0], again)
    assert stop(again) == 0


def test_the_address_bound_is_checked_again_not_only_the_name(manager):
    """Fault: --listen NAME was resolved twice, once to decide whether it is
    loopback and again to bind; a name whose answer changed in between was
    bound beyond loopback without --allow-remote. Fix: without it, the
    address actually bound must be loopback too. (A name's answer cannot be
    changed here; an address that is not loopback stands for it.)"""
    from strongroom.errors import UsageError

    served = HttpEndpoints(manager, time.time)
    with pytest.raises(UsageError, match="would expose the daemon beyond this machine"):
        served.start("0.0.0.0", 0, loopback_only=True)
    port = served.start("127.0.0.1", 0, loopback_only=True)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        served.stop()


def test_removing_a_configuration_cancels_its_queued_jobs(tmp_path):
    """Fault: a configuration removed while a job of it was queued (a slot
    claimed, a retry waiting) left the job queued; the daemon then ran it,
    it failed for want of the configuration, and the channels were told of a
    failed backup. Fix: the removal cancels its queued jobs in the same
    transaction."""
    s = Serve(tmp_path)
    _add_every_2s(s, tmp_path, "gone")
    _add_every_2s(s, tmp_path, "kept")
    catalog = s.catalog()
    gone = catalog.add_job("gone", "incremental", 0, 3)  # as a claimed slot queues it
    kept = catalog.add_job("kept", "incremental", 0, 3)
    s.ok("config", "remove", "gone")
    job = catalog.get_job(gone)
    assert job["status"] == "cancelled" and "configuration was removed" in job["error"]
    proc = s.serve("--jobs", "1")
    wait_for("the other job", lambda: catalog.get_job(kept)["status"] == "succeeded", proc)
    assert stop(proc) == 0
    assert catalog.get_job(gone)["status"] == "cancelled"
    assert "failed: gone" not in output(proc)[1]
