"""The daemon in this process, where time can be moved: a forward clock jump
(a wake-up) claims the one slot due at once and reopens the wake-up grace,
a backward jump claims nothing again; a WebDAV target that is down when the
daemon starts and comes up a few seconds later is retried without using up
the job's attempts (and without the grace, the same run fails); an overdue
alert reaches a real HTTP receiver once, a filling target's warning once
and its all-clear once.

The wall clock is real time plus an offset the test moves (alone: a jump;
with the monotonic clock: time passing); the loop's own waits are real and
short."""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from datetime import timezone
from pathlib import Path

import pytest

from strongroom import BackupConfig, WebDAVCredentials, WebDAVService, create_backup_manager
from strongroom.daemon import Daemon, DaemonRunning
from strongroom.notify.channels import ChannelSpec
from strongroom.services.catalog import Catalog
from notify_receivers import HTTPReceiver
from webdav_servers import USERNAME, free_port

UTC = timezone.utc
DEADLINE = 30.0


class MovableClock:
    """The wall clock, real time moved by `offset`; `both` moves the monotonic
    clock (`monotonic`) with it, as plain time passing would."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.both = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset + self.both

    def monotonic(self) -> float:
        return time.monotonic() + self.both


def wait_for(what: str, predicate, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def passes(daemon: Daemon, count: int = 3) -> None:
    """Wait until the scheduler completed `count` more passes."""
    for _ in range(count):
        seen = daemon.heartbeat()
        wait_for("a scheduler pass", lambda: daemon.heartbeat() is not None and daemon.heartbeat() != seen)


@pytest.fixture
def make_manager(tmp_path, monkeypatch):
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    monkeypatch.setenv("STRONGROOM_SECRETS", str(tmp_path / "secrets.json"))
    made = []

    def make(webdav_service=None, clock=time.time):
        manager = create_backup_manager(webdav_service, db_path=str(tmp_path / "catalog.db"),
                                        cache_root=str(tmp_path / "cache"), retry_delay=0.2, clock=clock)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()
        manager.catalog.close()


def add_local(manager, tmp_path: Path, name: str, spec: str, **fields) -> BackupConfig:
    source = tmp_path / f"src-{name}"
    source.mkdir(exist_ok=True)
    (source / "a.txt").write_text(f"the data of {name}\n")
    config = BackupConfig(name=name, source_paths=[str(source)], target_path=str(tmp_path / f"repo-{name}"),
                          encrypt=False, schedules=[{"spec": spec}], **fields)
    return manager.add_config(config)


@contextlib.contextmanager
def running(daemon: Daemon):
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop("test over")
        daemon.join()


def test_a_forward_jump_claims_the_slot_due_once_and_reopens_the_grace_a_backward_one_claims_nothing(
        make_manager, tmp_path):
    clock = MovableClock()
    # Ten minutes past an hour, whatever the time of day: the 400 s below stay inside that hour.
    clock.offset = (time.time() // 3600) * 3600 + 600 - time.time()
    manager = make_manager(clock=clock)
    add_local(manager, tmp_path, "laptop", "every 1h")
    daemon = Daemon(manager, local_zone=UTC, clock=clock, monotonic=clock.monotonic, tick=0.05)
    with running(daemon):
        passes(daemon)
        assert manager.catalog.list_slots("laptop") == []  # the first slot is after the start
        assert daemon.in_wake_grace()
        clock.both += 400  # the start's grace is over (both clocks moved: no jump)
        assert not daemon.in_wake_grace()
        passes(daemon)
        assert not daemon.in_wake_grace() and manager.catalog.list_slots("laptop") == []

        clock.offset += 3 * 3600 + 60  # asleep for three hours: three slots passed
        [slot] = wait_for("the slot after the wake-up", lambda: manager.catalog.list_slots("laptop"))
        assert daemon.in_wake_grace()  # reopened by the jump: the network may not be back yet
        assert slot["slot"] == (clock() // 3600) * 3600  # the latest one, not one per missed slot
        job = manager.wait_for_job(slot["job_id"], timeout=DEADLINE)
        assert job.status == "succeeded"
        passes(daemon)
        assert len(manager.catalog.list_slots("laptop")) == 1

        clock.offset -= 2 * 3600  # set back: earlier slots are not due again
        passes(daemon, 5)
        assert len(manager.catalog.list_slots("laptop")) == 1
        assert len(manager.catalog.list_jobs(config="laptop")) == 1


def test_a_second_daemon_on_the_catalog_is_refused_and_stop_is_idempotent(make_manager, tmp_path):
    first = Daemon(make_manager(), local_zone=UTC, tick=0.05)
    with running(first):
        with pytest.raises(DaemonRunning, match="already running"):
            Daemon(make_manager(), local_zone=UTC, tick=0.05).start()
    first.stop("again")
    first.join()
    assert first.stop_reason == "test over"
    with running(Daemon(make_manager(), local_zone=UTC, tick=0.05)) as second:
        passes(second, 1)


def test_sighup_reload_runs_in_the_scheduler_before_the_next_pass(make_manager, tmp_path):
    called = []
    daemon = Daemon(make_manager(), local_zone=UTC, tick=0.05,
                    on_reload=lambda: called.append(threading.current_thread().name))
    with running(daemon):
        daemon.request_reload()
        wait_for("the reload", lambda: called)
    assert called == ["scheduler"]


@contextlib.contextmanager
def dav_on(port: int, root: Path, password: str):
    """wsgidav on a chosen port over a directory that outlives it (as a NAS
    that reboots keeps its disks)."""
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    root.mkdir(exist_ok=True)
    app = WsgiDAVApp({
        "host": "127.0.0.1", "port": port, "provider_mapping": {"/dav": str(root)},
        "http_authenticator": {"domain_controller": None, "accept_basic": True, "accept_digest": False,
                               "default_to_digest": False},
        "simple_dc": {"user_mapping": {"*": {USERNAME: {"password": password}}}},
        "dir_browser": {"enable": False}, "verbose": 1, "logging": {"enable": False}})
    server = wsgi.Server(("127.0.0.1", port), app, numthreads=4, shutdown_timeout=1)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/dav/"
    finally:
        server.stop()
        thread.join(5)


@pytest.mark.parametrize("grace", [60.0, 0.0])
def test_a_target_down_at_the_start_is_retried_without_using_up_attempts(make_manager, tmp_path, grace):
    port, password = free_port(), secrets.token_urlsafe(12)
    service = WebDAVService()
    with dav_on(port, tmp_path / "nas", password) as url:
        service.add_client("nas", WebDAVCredentials(username=USERNAME, password=password, url=url,
                                                    service_type="generic"))
        manager = make_manager(service)
        source = tmp_path / "src"
        source.mkdir()
        (source / "a.txt").write_text("data\n")
        manager.add_config(BackupConfig(name="home", source_paths=[str(source)], target_client_id="nas",
                                        target_path="backups", encrypt=False, max_attempts=1,
                                        schedules=[{"spec": "daily-since-last"}]))
    # The NAS is down when the daemon starts (after a wake-up, or a power cut).
    daemon = Daemon(manager, local_zone=UTC, tick=0.05, wake_grace=grace)
    with running(daemon):
        [slot] = wait_for("the slot", lambda: manager.catalog.list_slots("home"))
        if not grace:
            job = manager.wait_for_job(slot["job_id"], timeout=DEADLINE)
            assert job.status == "failed" and job.attempts == 1 and "nothing listens" in job.error
            return
        tried = wait_for("a try against the NAS that is down",
                         lambda: (manager.catalog.get_job(slot["job_id"])["error"] or ""))
        assert "nothing listens" in tried
        with dav_on(port, tmp_path / "nas", password):
            job = manager.wait_for_job(slot["job_id"], timeout=DEADLINE)
        assert job.status == "succeeded" and job.attempts == 1
    assert len(manager.catalog.list_jobs(config="home")) == 1


def test_an_overdue_alert_goes_out_once(make_manager, tmp_path):
    clock = MovableClock()
    manager = make_manager(clock=clock)
    receiver = HTTPReceiver()
    try:
        manager.add_notification_channel(ChannelSpec("hook", "webhook", {}, {"url": f"{receiver.url}/hook"}))
        add_local(manager, tmp_path, "nightly", "0 3 * * *", max_attempts=1)
        manager.manual_backup("nightly")
        daemon = Daemon(manager, local_zone=UTC, clock=clock, tick=0.05, check_every=0.2)
        clock.offset = 3 * 86400  # three days without a success: more than 1.5 x the daily gap
        with running(daemon):
            wait_for("the overdue alert", lambda: receiver.at("/hook"))
            passes(daemon, 10)  # several checks later
        bodies = [json.loads(r.body) for r in receiver.at("/hook")]
        overdue = [b for b in bodies if b["event"] == "overdue"]
        assert len(overdue) == 1 and overdue[0]["config"] == "nightly"
    finally:
        receiver.close()


def test_a_target_filling_up_is_warned_of_once_and_cleared_once(make_manager, tmp_path):
    manager = make_manager()
    receiver = HTTPReceiver()
    try:
        manager.add_notification_channel(ChannelSpec("hook", "webhook", {}, {"url": f"{receiver.url}/hook"},
                                                     min_severity="info"))
        add_local(manager, tmp_path, "photos", "every 1h")
        now, gib = time.time(), 1 << 30
        # Samples as the runs leave them, written at chosen times: growing 2 GiB a
        # day with 1 GiB left, so the target is full in half a day.
        at = {"t": now - 86400}
        samples = Catalog(manager.catalog.path, clock=lambda: at["t"])
        target = str(tmp_path / "repo-photos")

        def sample(size: int, available: int) -> None:
            samples.add_sample("photos", {"points": 1, "repository_size": size, "stored_size": size,
                                          "restore_size": size,
                                          "target": {"url": target, "used": size, "available": available}})

        sample(1 * gib, 3 * gib)
        at["t"] = now - 60
        sample(3 * gib, 1 * gib)
        daemon = Daemon(manager, local_zone=UTC, tick=0.05, check_every=0.2)
        with running(daemon):
            wait_for("the warning", lambda: receiver.at("/hook"))
            passes(daemon, 10)
            assert [json.loads(r.body)["event"] for r in receiver.at("/hook")] == ["target_full_soon"]
            at["t"] = now
            sample(3 * gib, 1 << 50)  # room again (a bigger disk)
            wait_for("the all-clear", lambda: len(receiver.at("/hook")) > 1)
            passes(daemon, 10)
        bodies = [json.loads(r.body) for r in receiver.at("/hook")]
        assert [b["event"] for b in bodies] == ["target_full_soon", "recovered"]
        assert all(b["config"] == "photos" for b in bodies)
        samples.close()
    finally:
        receiver.close()


def test_a_configuration_that_cannot_be_read_leaves_the_others_scheduled(make_manager, tmp_path, caplog):
    clock = MovableClock()
    manager = make_manager(clock=clock)
    add_local(manager, tmp_path, "good", "every 1h")
    add_local(manager, tmp_path, "broken", "every 1h")
    # As a newer strongroom or a hand edit might leave it: a schedule spec this one cannot read.
    doc = manager.catalog.get_config("broken")
    doc["schedules"] = [{"spec": "every fortnight or so"}]
    manager.catalog.put_config("broken", {k: v for k, v in doc.items() if k not in ("name", "created", "updated")})
    daemon = Daemon(manager, local_zone=UTC, clock=clock, monotonic=clock.monotonic, tick=0.05)
    with caplog.at_level("ERROR", logger="strongroom.daemon"), running(daemon):
        passes(daemon)
        clock.offset += 3600 + 60
        [slot] = wait_for("the good configuration's slot", lambda: manager.catalog.list_slots("good"))
        passes(daemon, 5)
        assert manager.catalog.list_slots("broken") == []
        assert daemon.heartbeat() is not None  # the passes succeed
    said = [r.getMessage() for r in caplog.records if "'broken'" in r.getMessage()]
    assert len(said) == 1 and "has no schedules until it is fixed" in said[0]
