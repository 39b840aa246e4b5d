"""The Python API as the issue shows it, and the job queue and recovery
sessions under load: priorities, the concurrency limit, retries, progress
and cancellation."""

from __future__ import annotations

import os
import random
import re
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest

from faults import FaultMiddleware
from treeutil import snapshot_tree
from webdav_servers import run_wsgidav

from strongroom.errors import StrongroomError

KiB = 1024
MiB = 1024 * 1024


@pytest.fixture
def api_env(tmp_path, monkeypatch) -> Path:
    """Relative paths land in tmp_path; caches and secrets stay there too."""
    monkeypatch.chdir(tmp_path)
    for name in ("STRONGROOM_SECRETS", "STRONGROOM_CATALOG", "STRONGROOM_PASSWORD", "STRONGROOM_WEBDAV_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STRONGROOM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    monkeypatch.setenv("STRONGROOM_WEBDAV_RETRY_DELAY", "0.05")
    return tmp_path


def make_tree(root: Path, seed: int = 1) -> Path:
    rng = random.Random(seed)
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "docs" / "a.txt").write_text("alpha\n" * 100)
    (root / "docs" / "deep" / "b.bin").write_bytes(rng.randbytes(700 * KiB))
    (root / "empty.dat").write_bytes(b"")
    (root / "link").symlink_to("docs/a.txt")
    return root


def restored(target: Path, source: Path) -> Path:
    return target / str(source).lstrip("/")


# ---- the code of the issue -------------------------------------------------------------------


def test_the_issue_example_against_webdav(api_env, wsgidav_server):
    data = make_tree(api_env / "data")
    restore_to = api_env / "restore"

    # From the issue, with the test server's URL and account and tmp_path's paths.
    from strongroom import (WebDAVService, WebDAVCredentials, BackupConfig,
                            create_backup_manager, create_recovery_service)

    webdav_service = WebDAVService()
    credentials = WebDAVCredentials(username=wsgidav_server.username, password=wsgidav_server.password,
                                    url=wsgidav_server.url, service_type="nutstore")
    webdav_service.add_client("cloud", credentials)

    manager = create_backup_manager(webdav_service, "backup.db")
    config = BackupConfig(name="my_backup", source_paths=[str(data)],
                          target_client_id="cloud", target_path="/backups",
                          encrypt=True, compression=True)
    manager.add_config(config)
    backup_id = manager.manual_backup("my_backup", "full").snapshot_id        # or "incremental"

    recovery = create_recovery_service(manager.backup_service)
    session_id = recovery.one_click_restore(config_name="my_backup", target_path=str(restore_to))
    progress = recovery.get_recovery_progress(session_id)
    print(f"{progress.processed_files}/{progress.total_files}")
    # End of the issue's code.

    try:
        done = recovery.wait(session_id)
        progress = recovery.get_recovery_progress(session_id)
        assert done.status == progress.status == "completed", progress.errors
        assert progress.processed_files == progress.total_files == 4
        assert progress.processed_bytes == progress.total_bytes == 700 * KiB + 600
        assert snapshot_tree(restored(restore_to, data)) == snapshot_tree(data)
        assert re.fullmatch(r"[0-9a-f]{64}", backup_id)
        assert (wsgidav_server.root / "backups" / "snapshots" / backup_id).is_file()

        (data / "docs" / "a.txt").write_text("changed\n")
        second = manager.manual_backup("my_backup", "incremental").snapshot_id
        points = recovery.list_recovery_points("my_backup")
        assert [(p.id, p.kind) for p in points] == [(backup_id, "full"), (second, "incremental")]

        # The state: the catalog where asked, secrets beside it (0600), no password in the catalog.
        secrets_file = api_env / "backup.secrets.json"
        assert (api_env / "backup.db").is_file() and stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
        catalog_bytes = b"".join(p.read_bytes() for p in api_env.glob("backup.db*"))
        assert wsgidav_server.password.encode() not in catalog_bytes
        assert wsgidav_server.password in secrets_file.read_text()
    finally:
        manager.close()


def test_connection_to_the_root_of_a_nutstore_account_says_what_is_wrong(api_env):
    # The Nutstore URL of the issue's example; this host is out of reach here,
    # and no request must be needed to know the answer.
    from strongroom import WebDAVCredentials, WebDAVService

    webdav_service = WebDAVService()
    for client_id, url in (("jianguoyun", "https://dav.jianguoyun.com/dav/"), ("example", "https://dav.example.com/")):
        webdav_service.add_client(client_id, WebDAVCredentials("user", "pass", url, "nutstore"))
        report = webdav_service.test_connection(client_id)
        assert not report.tested and not report.ok and report.requests == 0
        assert report.error.startswith("not tested: Nutstore keeps files only inside sync folders")
        assert f"client test {client_id} --path FOLDER" in report.error
        assert "reachable" not in report.error


def test_connection_to_a_folder_of_a_nutstore_like_server_is_tested(api_env, wsgidav_server):
    from strongroom import WebDAVCredentials, WebDAVService

    # wsgidav serves /dav/ as Nutstore does: the account's root, and a folder in it.
    root, folder = wsgidav_server.url.rstrip("/").rsplit("/", 1)
    webdav_service = WebDAVService()
    webdav_service.add_client("cloud", WebDAVCredentials(wsgidav_server.username, wsgidav_server.password,
                                                         root + "/", "nutstore"))
    report = webdav_service.test_connection("cloud")
    assert not report.tested and report.requests == 0 and "sync folders" in report.error
    report = webdav_service.test_connection("cloud", folder)
    assert report.tested and report.ok and report.error is None, report
    assert report.reachable and report.authenticated and report.writable and 1 <= report.requests <= 5
    assert list(wsgidav_server.root.iterdir()) == []  # the probe is gone

    webdav_service.add_client("wrong", WebDAVCredentials(wsgidav_server.username, "not the password",
                                                         root + "/", "nutstore"))
    report = webdav_service.test_connection("wrong", folder)
    assert report.tested and report.reachable and not report.authenticated and "refused" in report.error


def test_the_issue_example_against_a_local_directory(api_env):
    data = make_tree(api_env / "data", seed=2)
    target = api_env / "target"
    restore_to = api_env / "restore"

    from strongroom import BackupConfig, create_backup_manager, create_recovery_service

    manager = create_backup_manager(None, "backup.db")
    config = BackupConfig(name="my_backup", source_paths=[str(data)],
                          target_client_id=None, target_path=str(target),
                          encrypt=True, compression=True)
    manager.add_config(config)
    result = manager.manual_backup("my_backup", "full")
    backup_id = result.snapshot_id

    recovery = create_recovery_service(manager.backup_service)
    session_id = recovery.one_click_restore(config_name="my_backup", target_path=str(restore_to))
    progress = recovery.get_recovery_progress(session_id)
    print(f"{progress.processed_files}/{progress.total_files}")

    try:
        progress = recovery.wait(session_id)
        assert progress.status == "completed", progress.errors
        assert progress.processed_files == progress.total_files == 4
        assert snapshot_tree(restored(restore_to, data)) == snapshot_tree(data)
        assert (target / "snapshots" / backup_id).is_file()
        assert result.short_id == backup_id[:8] and result.kind == result.requested_kind == "full"
        assert result.summary.files_new == 4 and result.summary.bytes_read == 700 * KiB + 600  # three files and a symlink
        assert result.finished_at.tzinfo is not None and result.started_at <= result.finished_at
        stats = manager.get_statistics()["my_backup"]
        assert stats.runs == stats.successes == 1 and stats.bytes_read == 700 * KiB + 600
        assert stats.last_success == result.finished_at
    finally:
        manager.close()


def test_validation_of_a_point_quick_sampled_and_in_a_batch(api_env):
    from strongroom import BackupConfig, create_backup_manager
    from strongroom.errors import UsageError

    manager = create_backup_manager(None, "backup.db")
    try:
        manager.add_config(BackupConfig(name="v", source_paths=[str(make_tree(api_env / "data"))],
                                        target_path=str(api_env / "target")))
        point = manager.manual_backup("v").snapshot_id
        quick = manager.validator.validate_backup(point)
        assert quick.ok and not quick.deep and quick.packs_read == 0 and quick.packs_checked >= 2
        sampled = manager.validator.validate_backup(point, sample=0.01)  # rounded up: one pack
        assert sampled.ok and sampled.deep and sampled.packs_read == 1
        assert 0 < sampled.blobs_authenticated < sampled.blobs_checked == quick.blobs_checked
        with pytest.raises(UsageError, match="share of the packs"):
            manager.validator.validate_backup(point, sample=1.5)
        batch = manager.validator.batch_validate([point, "f" * 64])
        assert batch[point].ok and not batch["f" * 64].ok
    finally:
        manager.close()


# ---- the job queue -------------------------------------------------------------------------------


def local_configs(api_env: Path, manager, names: list[str]) -> None:
    from strongroom import BackupConfig

    for i, name in enumerate(names):
        source = api_env / "sources" / name
        source.mkdir(parents=True)
        (source / "file.bin").write_bytes(random.Random(i).randbytes(64 * KiB))
        manager.add_config(BackupConfig(name=name, source_paths=[str(source)], target_path=str(api_env / name)))


def wait_for_status(manager, job_id: int, status: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while (job := manager.catalog.get_job(job_id))["status"] != status:
        assert time.monotonic() < deadline, job
        time.sleep(0.01)
    return job


def test_queued_jobs_run_by_priority_one_at_a_time(api_env):
    from strongroom import create_backup_manager

    manager = create_backup_manager(db_path="c.db", max_concurrent_jobs=1)
    local_configs(api_env, manager, ["first", "low", "high", "mid"])
    gate = threading.Event()
    manager.on_job_event = lambda job_id, event: gate.wait(10)  # the first job holds the only worker
    try:
        first = manager.manual_backup("first", "full", wait=False)
        wait_for_status(manager, first.id, "running")
        assert first.status() == "running"
        queued = [manager.manual_backup(name, "full", priority=p, wait=False)
                  for name, p in (("low", 1), ("high", 9), ("mid", 5))]
        assert [handle.status() for handle in queued] == ["queued"] * 3
        gate.set()
        results = [handle.wait(timeout=30) for handle in [first, *queued]]
        assert [r.job_id for r in results] == [h.id for h in [first, *queued]]
        for handle in [first, *queued]:
            assert manager.wait_for_job(handle.id, timeout=30).status == "succeeded"
        history = sorted(manager.get_job_history(), key=lambda j: j.started_at)
        assert [j.config_name for j in history] == ["first", "high", "mid", "low"]
        for earlier, later in zip(history, history[1:]):
            assert earlier.finished_at <= later.started_at
        assert manager.queue.peak_running == 1
    finally:
        gate.set()
        manager.close()


def test_the_concurrency_limit_holds(api_env):
    from strongroom import create_backup_manager

    manager = create_backup_manager(db_path="c.db", max_concurrent_jobs=2)
    names = [f"c{i}" for i in range(5)]
    local_configs(api_env, manager, names)
    manager.on_job_event = lambda job_id, event: time.sleep(0.05)  # long enough for the jobs to overlap
    try:
        ids = [manager.manual_backup(name, "full", priority=i, wait=False).id for i, name in enumerate(names)]
        jobs = [manager.wait_for_job(job_id, timeout=60) for job_id in ids]
        assert {j.status for j in jobs} == {"succeeded"}
        assert manager.queue.peak_running == 2
        edges = sorted([(j.started_at, 1) for j in jobs] + [(j.finished_at, -1) for j in jobs],
                       key=lambda edge: (edge[0], edge[1]))
        running = peak = 0
        for _, change in edges:
            running += change
            peak = max(peak, running)
        assert peak == 2
    finally:
        manager.close()


def test_a_failing_job_is_retried_then_reported(api_env, monkeypatch):
    from strongroom import BackupConfig, create_backup_manager

    manager = create_backup_manager(db_path="c.db", retry_delay=0.05)
    local_configs(api_env, manager, ["gone"])
    source = api_env / "sources" / "gone"
    shutil.rmtree(source)
    try:
        with pytest.raises(StrongroomError, match=f"backup gone failed: .*source path {source} does not exist"):
            manager.manual_backup("gone", "full", timeout=30)
        [job] = manager.get_job_history("gone")
        assert job.status == "failed" and job.attempts == job.max_attempts == 3
        assert f"source path {source} does not exist" in job.error and job.snapshot_id is None
        stats = manager.get_statistics()["gone"]
        assert (stats.runs, stats.successes, stats.failures) == (1, 0, 1)

        # A source that comes back (a disk mounted late) is picked up by the next attempt.
        manager.queue.retry_delay = 0.5
        job_id = manager.manual_backup("gone", "full", wait=False).id
        deadline = time.monotonic() + 10
        while manager.catalog.get_job(job_id)["attempts"] < 1 or manager.catalog.get_job(job_id)["status"] != "queued":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        source.mkdir()
        (source / "back.txt").write_text("here again\n")
        job = manager.wait_for_job(job_id, timeout=30)
        assert job.status == "succeeded" and job.attempts == 2 and job.error is None

        # A wrong password is reported at once: retrying cannot help, and may lock an account.
        monkeypatch.setenv("LOCKED_PASSWORD", "right")
        manager.add_config(BackupConfig(name="locked", source_paths=[str(source)], target_path=str(api_env / "locked"),
                                        password_env="LOCKED_PASSWORD"))
        monkeypatch.setenv("LOCKED_PASSWORD", "wrong")
        with pytest.raises(StrongroomError, match="backup locked failed: wrong password"):
            manager.manual_backup("locked", "full", timeout=30)
        [job] = manager.get_job_history("locked")
        assert job.status == "failed" and job.attempts == 1 and job.max_attempts == 3
    finally:
        manager.close()


# ---- progress and cancellation -------------------------------------------------------------------


def test_a_long_restore_reports_progress_and_can_be_cancelled(api_env):
    from strongroom import BackupConfig, WebDAVCredentials, create_backup_manager, create_recovery_service

    data = api_env / "data"
    data.mkdir()
    for i in range(10):
        (data / f"f{i}").write_bytes(os.urandom(30 * MiB))
    middleware: list[FaultMiddleware] = []

    def wrap(app):
        middleware.append(FaultMiddleware(app, root="/dav/"))
        return middleware[0]

    # Restoring from a local directory runs at disk speed, over before it can be
    # watched; a server that answers each read after a pause makes it long.
    with run_wsgidav(wrap_app=wrap) as dav:
        manager = create_backup_manager(db_path="c.db")
        try:
            manager.webdav_service.add_client("dav", WebDAVCredentials(dav.username, dav.password, dav.url))
            manager.add_config(BackupConfig(name="big", source_paths=[str(data)], target_client_id="dav",
                                            target_path="repo", compression=False))
            manager.manual_backup("big", "full")
            recovery = create_recovery_service(manager.backup_service)
            plan = recovery.executor.create_recovery_plan("big", target_path=str(api_env / "restore"))
            assert plan.files == 10 and plan.bytes == 300 * MiB and plan.packs >= 9

            middleware[0].slow(0.4, methods=["GET"])
            session_id = recovery.executor.execute_recovery(plan)
            seen: list[int] = []
            deadline = time.monotonic() + 60
            while len(seen) < 2:
                progress = recovery.executor.get_progress(session_id)
                assert progress.status in ("pending", "running"), progress
                if progress.processed_bytes and (not seen or progress.processed_bytes != seen[-1]):
                    seen.append(progress.processed_bytes)
                assert time.monotonic() < deadline
                time.sleep(0.005)
            assert recovery.executor.cancel_recovery(session_id)
            final = recovery.executor.wait(session_id)
            assert 0 < seen[0] < seen[1] < plan.bytes
            assert final.status == "cancelled" and final.errors == ()
            assert manager.catalog.get_session(session_id)["status"] == "cancelled"
            assert list((dav.root / "repo" / "locks").iterdir()) == []

            # Nothing is left half done: the same restore again gives the same bytes.
            middleware[0].clear()
            again = recovery.executor.execute_recovery(plan)
            assert recovery.executor.wait(again).status == "completed"
            assert snapshot_tree(restored(api_env / "restore", data)) == snapshot_tree(data)
        finally:
            manager.close()


# ---- progress callbacks ----------------------------------------------------------------------------


def test_progress_callbacks_get_the_engine_events_and_can_stop_a_run(api_env):
    from strongroom import BackupConfig, create_backup_manager, create_recovery_service

    data = make_tree(api_env / "data")
    manager = create_backup_manager(db_path="c.db", retry_delay=0.05)
    try:
        manager.add_config(BackupConfig(name="p", source_paths=[str(data)], target_path=str(api_env / "target")))
        seen_by_hook: list[dict] = []
        manager.on_job_event = lambda job_id, event: seen_by_hook.append(event)
        events: list[dict] = []
        result = manager.manual_backup("p", "full", progress=events.append)
        # The engine's own event objects, as the job hook (and --json) get them, not a reshaped copy.
        assert events and len(events) == len(seen_by_hook)
        assert all(mine is theirs for mine, theirs in zip(events, seen_by_hook))
        last = [e for e in events if e.get("message_type") == "status"][-1]
        assert last["files_done"] == last["total_files"] == result.summary.files_new == 4  # 3 files, a symlink
        manager.on_job_event = None

        def stop(event: dict) -> None:
            raise RuntimeError("stopped by the caller")

        with pytest.raises(StrongroomError, match="backup p failed: RuntimeError: stopped by the caller"):
            manager.manual_backup("p", "full", max_attempts=1, progress=stop)
        assert len(manager.backup_service.snapshots(manager.get_config("p"))) == 1

        recovery = create_recovery_service(manager.backup_service)
        restore_events: list[dict] = []
        session = recovery.one_click_restore("p", str(api_env / "out"), progress=restore_events.append)
        assert recovery.wait(session).status == "completed"
        assert restore_events and restore_events[-1]["bytes_done"] == 700 * KiB + 600
        stopped = recovery.one_click_restore("p", str(api_env / "out2"), progress=stop)
        final = recovery.wait(stopped)
        assert final.status == "failed" and "stopped by the caller" in final.errors[0]
    finally:
        manager.close()


def test_cancel_a_queued_job_a_running_backup_and_refuse_the_others(api_env):
    from strongroom import create_backup_manager
    from strongroom.errors import UsageError

    manager = create_backup_manager(db_path="c.db", max_concurrent_jobs=1)
    local_configs(api_env, manager, ["running", "waiting", "elsewhere"])
    gate = threading.Event()
    manager.on_job_event = lambda job_id, event: gate.wait(10)  # the first job holds the only worker
    try:
        running = manager.manual_backup("running", "full", wait=False)
        wait_for_status(manager, running.id, "running")
        waiting = manager.manual_backup("waiting", "full", wait=False)
        cancelled = manager.cancel_job(waiting.id)
        assert cancelled.status == "cancelled" and cancelled.attempts == 0 and cancelled.started_at is None
        assert manager.cancel_job(running.id).status == "running"  # it stops at its next chunk
        gate.set()
        stopped = manager.wait_for_job(running.id, timeout=30)
        assert stopped.status == "cancelled" and stopped.attempts == 1 and stopped.snapshot_id is None
        assert stopped.error == "backup running cancelled"
        assert manager.wait_for_job(waiting.id, timeout=5).started_at is None  # it never ran
        with pytest.raises(UsageError, match="is cancelled already"):
            manager.cancel_job(running.id)
        with pytest.raises(UsageError, match="no job 999"):
            manager.cancel_job(999)
        # A job another process runs cannot be stopped from here.
        manager.queue.stop()
        other = manager.catalog.add_job("elsewhere", "full", 0, 3)
        assert manager.catalog.claim_job(other, {"owner": "another-host:1"})
        with pytest.raises(UsageError, match="runs in another process"):
            manager.cancel_job(other)
        assert manager.catalog.get_job(other)["status"] == "running"
    finally:
        gate.set()
        manager.close()
