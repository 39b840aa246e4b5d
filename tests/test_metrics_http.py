"""The daemon's HTTP endpoints: `/metrics` parsed with prometheus_client's
parser shows the values of real runs (a backup to a local repository, one to
a wsgidav server that then goes away, a DR rehearsal, jobs queued in the
catalog), and loses the series of a removed configuration; `/healthz` turns
503 with its reasons when a configuration becomes overdue or the scheduler
stops; a token guards every request when set; the exposure rules, the
listen address and the token sources.

The endpoints run in this process on 127.0.0.1, port 0, served by uvicorn;
requests go over real sockets with httpx. Time is moved by the endpoints'
clock, never waited for."""

from __future__ import annotations

import logging
import os
import platform
import socket
import stat
import time
from datetime import timezone
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import strongroom
from strongroom import BackupConfig, WebDAVCredentials, WebDAVService, create_backup_manager
from strongroom.daemon.http import HttpEndpoints, check_exposure, parse_listen, serve_token, start_endpoints
from strongroom.engine.progress import stored_bytes
from strongroom.errors import StrongroomError, UsageError
from strongroom.schedule.spec import parse_schedule
from strongroom.settings import Settings
from webdav_servers import run_wsgidav

HOUR = 3600.0
UTC = timezone.utc
TOKEN = "s3cr3t-t0ken-0123456789abcdef"
ODD_PLAN = 'tight "quoted" \\ back\\nslash'  # a label value to escape


class Clock:
    """The endpoints' now: the wall clock moved by `offset` seconds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def manager(tmp_path, monkeypatch):
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    monkeypatch.setenv("STRONGROOM_SECRETS", str(tmp_path / "secrets.json"))
    # A budget on every WebDAV account, counted in the cache, and a quick give-up on a dead server.
    settings = Settings(cache_root=str(tmp_path / "cache"), webdav_budget=(50, 1800.0), webdav_deadline=2.0,
                        webdav_retry_delay=0.05)
    made = create_backup_manager(WebDAVService(settings), db_path=str(tmp_path / "catalog.db"),
                                 cache_root=str(tmp_path / "cache"))
    yield made
    made.close()
    made.catalog.close()


@pytest.fixture
def serve(manager):
    """serve(**options) -> (base URL, clock, beat): HttpEndpoints on 127.0.0.1, port 0.
    `beat["at"]` is the heartbeat relative to the clock (None: no pass yet)."""
    started = []

    def start(**options):
        clock, beat = Clock(), {"at": 0.0}
        endpoints = HttpEndpoints(manager, lambda: None if beat["at"] is None else clock() + beat["at"],
                                  clock=clock, **options)
        port = endpoints.start("127.0.0.1", 0)
        started.append(endpoints)
        return f"http://127.0.0.1:{port}", clock, beat

    yield start
    for endpoints in started:
        endpoints.stop()


def add(manager, tmp_path: Path, name: str, schedules: list[str], **fields) -> BackupConfig:
    source = tmp_path / f"src-{name}"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text(f"the data of {name}\n")
    (source / "sub" / "b.bin").write_bytes(os.urandom(20_000))
    (source / "sub" / "c.txt").write_text("x" * 1000)
    fields.setdefault("target_path", str(tmp_path / f"repo-{name}"))
    config = BackupConfig(name=name, source_paths=[str(source)], encrypt=False, max_attempts=1,
                          schedules=[parse_schedule(spec).to_doc() for spec in schedules], **fields)
    return manager.add_config(config)


def scrape(base: str, **request) -> dict[str, dict[tuple, float]]:
    """/metrics as {sample name: {sorted label items: value}}."""
    response = httpx.get(base + "/metrics", timeout=10, **request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def one(metrics: dict, name: str, **labels) -> float:
    return metrics[name][tuple(sorted(labels.items()))]


def test_metrics_show_a_real_run_and_lose_a_removed_configuration(manager, tmp_path, serve):
    add(manager, tmp_path, "home", ["every 1h"])
    add(manager, tmp_path, "laptop", ["daily-since-last", "0 3 * * *"])
    made = manager.manual_backup("home", "full")
    [job] = manager.catalog.list_jobs(config="home")
    assert job["snapshot_id"] == made.snapshot_id
    base, _, _ = serve()

    metrics = scrape(base)
    assert one(metrics, "strongroom_build_info", version=strongroom.__version__,
               python=platform.python_version()) == 1
    assert one(metrics, "strongroom_configs") == 2
    assert one(metrics, "strongroom_config_last_files", config="home") == 3
    assert one(metrics, "strongroom_config_last_read_bytes", config="home") == len("the data of home\n") + 21_000
    assert one(metrics, "strongroom_config_last_added_bytes", config="home") == stored_bytes(job["stats"]) > 0
    assert one(metrics, "strongroom_config_last_errors", config="home") == 0
    assert one(metrics, "strongroom_config_last_duration_seconds", config="home") == job["stats"]["duration"]
    assert one(metrics, "strongroom_config_last_success_timestamp_seconds", config="home") == job["finished_at"]
    assert one(metrics, "strongroom_config_last_run_timestamp_seconds", config="home") == job["finished_at"]
    assert one(metrics, "strongroom_config_points", config="home") == 1
    sample = manager.catalog.latest_sample("home")
    assert one(metrics, "strongroom_config_repository_size_bytes", config="home") == sample["repository_size"] > 0
    assert one(metrics, "strongroom_config_stored_size_bytes", config="home") == sample["stored_size"] > 0
    assert {dict(k)["status"]: v for k, v in metrics["strongroom_config_last_status"].items()
            if dict(k)["config"] == "home"} == {"running": 0, "succeeded": 1, "failed": 0, "cancelled": 0}
    assert one(metrics, "strongroom_config_schedule_period_seconds", config="home") == HOUR
    assert one(metrics, "strongroom_config_overdue_after_seconds", config="home") == 1.5 * HOUR
    assert one(metrics, "strongroom_config_overdue", config="home") == 0
    assert job["finished_at"] < one(metrics, "strongroom_config_next_run_timestamp_seconds", config="home") \
        <= job["finished_at"] + HOUR
    assert one(metrics, "strongroom_scheduler_heartbeat_timestamp_seconds") > job["finished_at"]
    # Never run: its schedules are known (a day both ways), its runs are not.
    assert one(metrics, "strongroom_config_schedule_period_seconds", config="laptop") == 24 * HOUR
    assert ("config", "laptop") not in {item for k in metrics["strongroom_config_last_status"] for item in k}
    assert (("config", "laptop"),) not in metrics["strongroom_config_last_success_timestamp_seconds"]

    manager.manual_backup("home")
    again = scrape(base)
    assert one(again, "strongroom_config_points", config="home") == 2
    assert one(again, "strongroom_config_last_added_bytes", config="home") < \
        one(metrics, "strongroom_config_last_added_bytes", config="home")  # deduplicated

    manager.remove_config("home")
    after = scrape(base)
    assert one(after, "strongroom_configs") == 1
    labelled = {item for series in after.values() for labels in series for item in labels}
    assert ("config", "home") not in labelled and ("config", "laptop") in labelled


def test_a_backup_to_a_webdav_server_gone_away_shows_failed_and_the_budget_left(manager, tmp_path, serve):
    served = {"requests": 0}

    def counting(app):
        def counted(environ, start_response):
            served["requests"] += 1
            return app(environ, start_response)
        return counted

    with run_wsgidav(wrap_app=counting) as server:
        manager.webdav_service.add_client("nas", WebDAVCredentials(server.username, server.password, server.url))
        add(manager, tmp_path, "cloud", ["every 6h"], target_client_id="nas", target_path="cloud")
        manager.manual_backup("cloud")
        base, _, _ = serve()
        up = scrape(base)
        assert one(up, "strongroom_webdav_budget_capacity_requests", client="nas") == 50
        assert one(up, "strongroom_webdav_budget_window_seconds", client="nas") == 1800
        assert one(up, "strongroom_webdav_budget_remaining_requests", client="nas") == 50 - served["requests"]
        assert served["requests"] > 0
        first_success = one(up, "strongroom_config_last_success_timestamp_seconds", config="cloud")
    with pytest.raises(StrongroomError):
        manager.manual_backup("cloud")
    down = scrape(base)
    assert one(down, "strongroom_config_last_status", config="cloud", status="failed") == 1
    assert one(down, "strongroom_config_last_status", config="cloud", status="succeeded") == 0
    assert one(down, "strongroom_config_last_success_timestamp_seconds", config="cloud") == first_success
    assert one(down, "strongroom_config_last_run_timestamp_seconds", config="cloud") > first_success
    # Not a secret anywhere in what is served.
    for path in ("/metrics", "/healthz"):
        assert server.password not in httpx.get(base + path, timeout=10).text


def test_healthz_turns_503_when_overdue_or_the_scheduler_stops(manager, tmp_path, serve):
    add(manager, tmp_path, "home", ["every 1h"])
    manager.manual_backup("home")
    base, clock, beat = serve(stale_after=60.0)
    ok = httpx.get(base + "/healthz", timeout=10)
    assert ok.status_code == 200
    assert ok.json()["status"] == "ok" and ok.json()["reasons"] == [] and ok.json()["overdue"] == []

    clock.offset = 2 * HOUR  # every 1h allows 1.5 h
    late = httpx.get(base + "/healthz", timeout=10)
    assert late.status_code == 503 and late.json()["status"] == "failing" and late.json()["overdue"] == ["home"]
    [reason] = late.json()["reasons"]
    assert reason.startswith("configuration 'home' is overdue: no successful backup since ")
    assert "its schedule allows 90 min" in reason
    assert one(scrape(base), "strongroom_config_overdue", config="home") == 1

    clock.offset = 0.0
    beat["at"] = -120.0
    stale = httpx.get(base + "/healthz", timeout=10)
    assert stale.status_code == 503
    assert [r.split(":")[0] for r in stale.json()["reasons"]] == ["the scheduler is not running"]
    assert "its last pass was 120 s ago" in stale.json()["reasons"][0]
    beat["at"] = None
    never = httpx.get(base + "/healthz", timeout=10)
    assert never.status_code == 503 and never.json()["heartbeat"] is None
    assert never.json()["reasons"] == ["the scheduler is not running: it has made no pass"]
    assert "strongroom_scheduler_heartbeat_timestamp_seconds" not in scrape(base)

    # A verification that succeeded (a job of another kind, as scheduled checks
    # are) is no backup: the configuration stays overdue.
    beat["at"] = 0.0
    manager.close()  # no worker of this process may take the job
    success_before = one(scrape(base), "strongroom_config_last_success_timestamp_seconds", config="home")
    clock.offset = 2 * HOUR
    check = manager.catalog.add_job("home", "check", 0, 1)
    manager.catalog.update_job(check, status="succeeded", started_at=clock() - 1, finished_at=clock())
    still = httpx.get(base + "/healthz", timeout=10)
    assert still.status_code == 503 and still.json()["overdue"] == ["home"]
    metrics = scrape(base)
    assert one(metrics, "strongroom_config_last_success_timestamp_seconds", config="home") == success_before
    assert one(metrics, "strongroom_config_overdue", config="home") == 1

    # A catalog that cannot be read is a failure, never an empty, healthy answer.
    manager.catalog.close()
    unread = httpx.get(base + "/healthz", timeout=10)
    assert unread.status_code == 503
    assert unread.json()["reasons"] == [f"the catalog could not be read: the catalog {manager.catalog.path} is closed"]
    failed = httpx.get(base + "/metrics", timeout=10)
    assert failed.status_code == 500 and failed.text.startswith("metrics unavailable: the catalog")


def test_queue_depth_by_priority(manager, tmp_path, serve):
    add(manager, tmp_path, "home", [])
    catalog = manager.catalog
    later = catalog.now() + 24 * HOUR  # waiting for a retry: no worker takes them meanwhile
    for priority in (5, 5, 0):
        catalog.update_job(catalog.add_job("home", "incremental", priority, 1), next_try_at=later)
    base, _, _ = serve()
    metrics = scrape(base)
    assert metrics["strongroom_queue_depth"] == {(("priority", "0"),): 1, (("priority", "5"),): 2}


def test_dr_rehearsals_show_time_rto_rpo_and_verdict(manager, tmp_path, serve):
    add(manager, tmp_path, "home", [])
    manager.manual_backup("home")
    dr = strongroom.DisasterRecoveryManager(manager.backup_service)
    dr.create_dr_plan("nightly", recovery_order=["home"], target_base_path=str(tmp_path / "prod"),
                      rto="30m", rpo=86400)
    dr.create_dr_plan(ODD_PLAN, recovery_order=["home"], target_base_path=str(tmp_path / "prod"), rto=0.001)
    passed = dr.test_dr_plan("nightly", scratch=str(tmp_path / "scratch1"))
    failed = dr.test_dr_plan(ODD_PLAN, scratch=str(tmp_path / "scratch2"))
    assert (passed.verdict, failed.verdict) == ("pass", "fail")
    base, _, _ = serve()
    metrics = scrape(base)
    assert one(metrics, "strongroom_dr_last_test_timestamp_seconds", plan="nightly") == passed.finished.timestamp()
    assert one(metrics, "strongroom_dr_last_test_rto_seconds", plan="nightly") == passed.rto_seconds
    assert one(metrics, "strongroom_dr_last_test_rpo_seconds", plan="nightly") == passed.steps[0].rpo_seconds
    assert one(metrics, "strongroom_dr_rto_target_seconds", plan="nightly") == 1800
    assert one(metrics, "strongroom_dr_rpo_target_seconds", plan="nightly") == 86400
    assert one(metrics, "strongroom_dr_last_test_verdict", plan="nightly", verdict="pass") == 1
    assert one(metrics, "strongroom_dr_last_test_verdict", plan=ODD_PLAN, verdict="fail") == 1
    assert one(metrics, "strongroom_dr_last_test_verdict", plan=ODD_PLAN, verdict="pass") == 0
    dr.delete_dr_plan(ODD_PLAN)
    assert (("plan", ODD_PLAN),) not in scrape(base)["strongroom_dr_last_test_rto_seconds"]


def test_a_token_guards_every_request(manager, tmp_path, serve, caplog):
    caplog.set_level(logging.DEBUG)
    add(manager, tmp_path, "home", [])
    base, _, _ = serve(token=TOKEN)
    for path in ("/metrics", "/healthz", "/openapi.json", "/nowhere"):
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN},
                        {"Authorization": f"Basic {TOKEN}"}):
            refused = httpx.get(base + path, headers=headers, timeout=10)
            assert refused.status_code == 401, (path, headers)
            assert TOKEN not in refused.text and refused.headers["www-authenticate"].startswith("Bearer")
    assert one(scrape(base, headers={"Authorization": f"Bearer {TOKEN}"}), "strongroom_configs") == 1
    assert httpx.get(base + "/healthz", headers={"Authorization": f"bearer {TOKEN}"}, timeout=10).status_code == 200
    # Neither the token nor a query string reaches the server's logs.
    asked = httpx.get(base + "/metrics?key=query-secret-4242", headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=10)
    assert asked.status_code == 200 and "query-secret-4242" not in asked.text
    served = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert TOKEN not in served and "query-secret-4242" not in served  # (the client here logs its own URLs)


def test_exposure_needs_the_flag_and_a_token_beyond_loopback():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        check_exposure(host, allow_remote=False, token=None)
    with pytest.raises(UsageError, match=r"listening on 0\.0\.0\.0 exposes the daemon beyond this machine: "
                                         r"add --allow-remote and set a token"):
        check_exposure("0.0.0.0", allow_remote=False, token=TOKEN)
    with pytest.raises(UsageError, match="listening on 192.0.2.7 needs a token"):
        check_exposure("192.0.2.7", allow_remote=True, token=None)
    with pytest.raises(UsageError, match="exposes the daemon"):
        check_exposure("::", allow_remote=False, token=None)
    check_exposure("0.0.0.0", allow_remote=True, token=TOKEN)


def test_listen_addresses():
    assert parse_listen("127.0.0.1:9180") == ("127.0.0.1", 9180)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("localhost:8080") == ("localhost", 8080)
    for bad, said in (("9180", "use HOST:PORT"), ("::1:9180", "in brackets"), ("[::1]9180", r"\[ADDRESS\]:PORT"),
                      ("[nope]:1", "no IPv6 address"), ("host:99999", "from 0 to 65535"), ("host:", "from 0 to")):
        with pytest.raises(UsageError, match=said):
            parse_listen(bad)


def test_a_port_in_use_is_one_clear_error_and_stop_frees_the_port(manager):
    endpoints = HttpEndpoints(manager, lambda: None)
    port = endpoints.start("127.0.0.1", 0)
    second = HttpEndpoints(manager, lambda: None)
    with pytest.raises(StrongroomError, match=f"cannot listen on 127.0.0.1:{port}: the port is in use"):
        second.start("127.0.0.1", port)
    with httpx.Client(timeout=10) as client:  # a kept-alive connection does not hold the stop up
        assert client.get(f"http://127.0.0.1:{port}/healthz").status_code == 503
        endpoints.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert second.start("127.0.0.1", port) == port
    second.stop()


def test_the_token_comes_from_the_environment_or_a_private_file(tmp_path):
    assert serve_token({}, None) is None
    assert serve_token({"STRONGROOM_SERVE_TOKEN": TOKEN}, None) == TOKEN
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o644)
    with pytest.raises(UsageError, match="can be read by others: chmod 600"):
        serve_token({}, str(path))
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert serve_token({}, str(path)) == TOKEN
    with pytest.raises(UsageError, match="give the token once"):
        serve_token({"STRONGROOM_SERVE_TOKEN": TOKEN}, str(path))
    with pytest.raises(UsageError, match="too short") as short:
        serve_token({"STRONGROOM_SERVE_TOKEN": "abc123"}, None)
    assert "abc123" not in str(short.value)
    with pytest.raises(UsageError, match="printable ASCII without spaces"):
        serve_token({"STRONGROOM_SERVE_TOKEN": "a token with spaces in it"}, None)
    with pytest.raises(UsageError, match="cannot read token file"):
        serve_token({}, str(tmp_path / "missing"))


def test_start_endpoints_takes_the_serve_options(manager):
    with pytest.raises(UsageError, match="exposes the daemon beyond this machine"):
        start_endpoints(manager, lambda: None, "0.0.0.0:0", allow_remote=False, environ={})
    with pytest.raises(UsageError, match="needs a token"):
        start_endpoints(manager, lambda: None, "0.0.0.0:0", allow_remote=True, environ={})
    endpoints, url = start_endpoints(manager, lambda: None, "127.0.0.1:0", allow_remote=False,
                                     environ={"STRONGROOM_SERVE_TOKEN": TOKEN})
    try:
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        assert httpx.get(url + "/healthz", timeout=10).status_code == 401
        assert httpx.get(url + "/healthz", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 503
    finally:
        endpoints.stop()


def test_the_daemons_heartbeat_drives_healthz(manager, tmp_path):
    from strongroom.daemon import Daemon

    add(manager, tmp_path, "home", ["every 1h"])
    clock = Clock()
    daemon = Daemon(manager, local_zone=UTC, tick=0.05, clock=clock)
    endpoints = HttpEndpoints(manager, daemon.heartbeat, clock=clock, stale_after=60.0)
    url = f"http://127.0.0.1:{endpoints.start('127.0.0.1', 0)}"
    try:
        assert httpx.get(url + "/healthz", timeout=10).json()["reasons"] == [
            "the scheduler is not running: it has made no pass"]
        daemon.start()
        deadline = clock() + 60
        while daemon.heartbeat() is None and clock() < deadline:
            time.sleep(0.05)
        answer = httpx.get(url + "/healthz", timeout=10)
        assert answer.status_code == 200, answer.json()
        daemon.stop("test")
        daemon.join()
        clock.offset = 120.0  # the last pass is two minutes old now
        stale = httpx.get(url + "/healthz", timeout=10)
        assert stale.status_code == 503 and stale.json()["reasons"][0].startswith(
            "the scheduler is not running: its last pass was 2 min ago")
    finally:
        endpoints.stop()
        daemon.stop("test")
        daemon.join()

