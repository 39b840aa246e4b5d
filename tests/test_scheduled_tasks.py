"""Scheduled verification: a configuration's check schedules and a DR plan's
test schedule are tasks of `scheduled_tasks` with kinds `check` and
`dr-test`; a claimed slot's job runs through the real job queue and reads a
subset of real packs, or rehearses a plan into a scratch area; damage and a
failed verdict fail the job and are notified once to a real HTTP receiver;
none of it counts as a backup; a real `dr run` is notified too. The command
line (config add|edit, dr create, schedule list|next, status) in a
subprocess."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from notify_receivers import HTTPReceiver
from strongroom import BackupConfig, create_backup_manager
from strongroom.errors import UsageError
from strongroom.notify.channels import ChannelSpec
from strongroom.schedule.spec import parse_schedule
from strongroom.services.jobs import current_owner
from strongroom.services.schedules import last_success, next_due, plan_key, scheduled_tasks
from strongroom.services.status import config_status, verification_statuses
from catalog_cli import CatalogCLI

UTC = timezone.utc


@pytest.fixture
def http():
    receiver = HTTPReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def manager(tmp_path, monkeypatch):
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    made = create_backup_manager(db_path=str(tmp_path / "catalog.db"), secrets_path=str(tmp_path / "s.json"),
                                 cache_root=str(tmp_path / "cache"), retry_delay=0.05)
    yield made
    made.close()
    made.catalog.close()


def check_schedule(spec: str, subset: str | None = None) -> dict:
    return {**parse_schedule(spec).to_doc(), **({"subset": subset} if subset else {})}


def add(manager, tmp_path: Path, name: str = "files", **fields) -> BackupConfig:
    source = tmp_path / f"src-{name}"
    source.mkdir()
    for i in range(3):
        (source / f"f{i}.bin").write_bytes(os.urandom(30_000))
    return manager.add_config(BackupConfig(name=name, source_paths=[str(source)],
                                           target_path=str(tmp_path / f"repo-{name}"), **fields))


def task_of(manager, kind: str, name: str):
    [task] = [t for t in scheduled_tasks(manager.catalog, UTC) if t.kind == kind and t.name == name]
    return task


def run_slot(manager, task, hours_later: float = 0.0) -> dict:
    """Claim one slot of `task` as the daemon does and wait for the job it queued."""
    slot = next_due(task.state, datetime.now(UTC))[0]
    when = slot.time + timedelta(hours=hours_later)
    assert manager.catalog.claim_slot(task.state.config, slot.schedule_id, when, current_owner(), job=task.job)
    job_id = manager.catalog.get_slot(task.state.config, slot.schedule_id, when)["job_id"]
    manager.queue._start()
    return manager.queue.wait(job_id, timeout=120)


def hook(manager, http, **filters) -> None:
    manager.add_notification_channel(ChannelSpec("hook", "webhook", {}, {"url": f"{http.url}/hook"},
                                                 min_severity="info", **filters))


def sent(http) -> list[dict]:
    return [json.loads(r.body) for r in http.at("/hook")]


def test_scheduled_tasks_list_checks_and_dr_tests_apart_from_backups(manager, tmp_path):
    add(manager, tmp_path, schedules=[parse_schedule("every 1h").to_doc()],
        check_schedules=[check_schedule("every 1d", "1/4"), check_schedule("30 3 * * 0")])
    manager.manual_backup("files")
    dr = manager.disaster_recovery
    dr.create_dr_plan("weekly", recovery_order=["files"], target_base_path=str(tmp_path / "prod"),
                      test_schedule="every 1w")
    dr.create_dr_plan("unscheduled", recovery_order=["files"], target_base_path=str(tmp_path / "prod"))
    tasks = scheduled_tasks(manager.catalog, UTC)
    rows = sorted((t.kind, t.name, t.state.config, t.state.schedule.id, t.subset, t.job["max_attempts"])
                  for t in tasks)
    assert rows == [("check", "files", "files", "check:30 3 * * 0", "5%", 3),
                    ("check", "files", "files", "check:every 1d", "1/4", 3),
                    ("dr-test", "weekly", "dr:weekly", "every 1w", None, 1),
                    ("incremental", "files", "files", "every 1h", None, 3)]
    # The claim keys cannot meet: no configuration may be named like a plan's key.
    with pytest.raises(UsageError, match="name"):
        BackupConfig(name=plan_key("weekly"), source_paths=["/x"], target_path="/r")
    with pytest.raises(UsageError, match=r"check_schedules\.0\.subset: cannot read subset 'half'"):
        BackupConfig(name="x", source_paths=["/x"], target_path="/r",
                     check_schedules=[check_schedule("every 1d", "half")])
    # The schedule is no part of the plan's version: when it is tested does not change what is measured.
    plan = dr.get_dr_plan("weekly")
    import dataclasses
    assert dataclasses.replace(plan, schedule="every 2w").version == plan.version
    assert dataclasses.replace(plan, schedule=None).to_doc().get("schedule") is None
    assert type(plan).from_toml(plan.to_toml()).schedule == "every 1w"


def test_a_check_slot_reads_a_subset_then_damage_fails_it_and_is_notified_once(manager, tmp_path, http):
    add(manager, tmp_path, check_schedules=[check_schedule("every 1d", "100%")])
    backup = manager.manual_backup("files")
    backed_up = last_success(manager.catalog, "files")
    hook(manager, http)
    task = task_of(manager, "check", "files")

    job = run_slot(manager, task)
    assert (job["status"], job["kind"], job["attempts"]) == ("succeeded", "check", 1)
    assert job["stats"]["subset"] == "100%" and job["stats"]["packs_read"] >= 1
    assert job["stats"]["blobs_authenticated"] >= 3 and job["stats"]["problems"] == []

    # A check is not a backup: the last success, the status and the statistics are the backup's.
    assert last_success(manager.catalog, "files") == backed_up
    status = config_status(manager.catalog, manager.get_config("files"), datetime.now(UTC), UTC)
    assert status.snapshot_id == backup.snapshot_id and status.last_success == backed_up
    assert manager.get_statistics()["files"].runs == 1
    [check] = verification_statuses(manager.catalog, datetime.now(UTC), UTC)
    assert (check.name, check.kind, check.last_run.status) == ("files", "check", "succeeded")

    packs = sorted(p for p in (tmp_path / "repo-files" / "data").rglob("*") if p.is_file())
    assert packs
    for pack in packs:  # flip bytes in the middle of every pack
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0xFF
        pack.chmod(0o600)
        pack.write_bytes(bytes(data))
    failed = run_slot(manager, task, hours_later=24)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)  # damage is not retried
    assert "check of files (100% of the packs) found damage: pack " in failed["error"]
    again = run_slot(manager, task, hours_later=48)
    assert again["status"] == "failed"

    events = [(e["event"], e["severity"]) for e in sent(http)]
    # One pass, then damage once (the second failure is within the day's quiet); no backup events.
    assert events == [("verification_passed", "info"), ("damage_found", "error")]
    assert "strongroom check --config files --read-data" in sent(http)[1]["message"]
    status = config_status(manager.catalog, manager.get_config("files"), datetime.now(UTC), UTC)
    assert status.last_run.status == "succeeded" and status.status == "green"  # the backups are fine
    [check] = verification_statuses(manager.catalog, datetime.now(UTC), UTC)
    assert check.last_run.status == "failed" and "found damage" in check.last_run.error


def test_an_n_of_t_subset_goes_through_the_parts_in_turn(manager, tmp_path):
    add(manager, tmp_path, check_schedules=[check_schedule("every 1d", "2/3")])
    manager.manual_backup("files")
    task = task_of(manager, "check", "files")
    parts = [run_slot(manager, task, hours_later=24 * i)["stats"]["subset"] for i in range(4)]
    assert parts == ["2/3", "3/3", "1/3", "2/3"]


def test_a_dr_test_slot_rehearses_the_plan_records_the_run_and_a_failure_is_notified_once(
        manager, tmp_path, http):
    add(manager, tmp_path)
    manager.manual_backup("files")
    dr = manager.disaster_recovery
    dr.create_dr_plan("nightly", recovery_order=["files"], target_base_path=str(tmp_path / "prod"),
                      test_schedule="0 4 * * *")
    dr.create_dr_plan("strict", recovery_order=["files"], target_base_path=str(tmp_path / "prod2"),
                      rto="0.001s", test_schedule="every 1d")
    hook(manager, http, configs=("files",))

    job = run_slot(manager, task_of(manager, "dr-test", "nightly"))
    assert (job["status"], job["kind"], job["config"]) == ("succeeded", "dr-test", "dr:nightly")
    [run] = manager.catalog.list_dr_runs("nightly", mode="test")
    assert run["verdict"] == "pass" and run["doc"]["trigger"] == "schedule" and job["stats"]["run"] == run["id"]
    assert not (tmp_path / "prod").exists()  # a rehearsal never touches the real target

    strict = task_of(manager, "dr-test", "strict")
    failed = run_slot(manager, strict)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert failed["error"].startswith("DR test of plan strict failed (run ") and "RTO" in failed["error"]
    run_slot(manager, strict, hours_later=24)
    assert [(e["event"], e["config"]) for e in sent(http)] == [("dr_test_passed", "nightly"),
                                                              ("dr_test_failed", "strict")]
    assert manager.get_statistics()["files"].runs == 1
    assert last_success(manager.catalog, "files") is not None
    # The plan's next rehearsal is measured from its own runs, not the configuration's.
    assert task_of(manager, "dr-test", "nightly").state.last_success.timestamp() == pytest.approx(run["finished"])


def test_a_real_dr_run_is_notified_with_its_verdict(manager, tmp_path, http):
    add(manager, tmp_path)
    manager.manual_backup("files")
    hook(manager, http)
    dr = manager.disaster_recovery
    dr.create_dr_plan("restore", recovery_order=["files"], target_base_path=str(tmp_path / "prod"))
    dr.create_dr_plan("hurried", recovery_order=["files"], target_base_path=str(tmp_path / "prod2"), rto="0.001s")
    assert dr.wait(dr.execute_dr_plan("restore"), timeout=120).verdict == "pass"
    assert (tmp_path / "prod" / "files").is_dir()
    assert dr.wait(dr.execute_dr_plan("hurried"), timeout=120).verdict == "fail"
    events = sent(http)
    assert [(e["event"], e["config"], e["severity"]) for e in events] == [
        ("dr_run_passed", "restore", "info"), ("dr_run_failed", "hurried", "error")]
    assert "The disaster recovery of plan hurried failed" in events[1]["message"]
    assert "strongroom dr report hurried" in events[1]["message"]


CLI = CatalogCLI


def test_cli_check_and_test_schedules(tmp_path):
    cli = CLI(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a")
    added = cli.run("config", "add", "db", "--source", str(tmp_path / "src"), "--target-dir", str(tmp_path / "r"),
                    "--no-encrypt", "--schedule", "every 6h", "--check-schedule", "every 1d",
                    "--check-subset", "1/7")
    assert added.returncode == 0, added.stderr
    [show] = cli.json("config", "show", "db")
    assert [(s["spec"], s["id"], s["subset"]) for s in show["check_schedules"]] == [("every 1d", "check:every 1d",
                                                                                     "1/7")]
    assert "every 1d (on a fixed grid), reading 1/7 of the packs" in \
        cli.run("config", "show", "db").stdout
    bad = cli.run("config", "edit", "db", "--check-subset", "200%")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith(
        "--check-subset: --read-data-subset percentage must be in (0, 100]")
    alone = cli.run("config", "edit", "db", "--no-check-schedule", "--check-subset", "5%")
    assert alone.returncode == 2 and "--check-subset goes with a check schedule" in alone.stderr

    made = cli.run("dr", "create", "weekly", "--order", "db", "--target-base", str(tmp_path / "prod"),
                   "--test-schedule", "every 1w")
    assert made.returncode == 0, made.stderr
    assert "test schedule: every 1w" in cli.run("dr", "show", "weekly").stdout
    assert 'schedule = "every 1w"' in cli.run("dr", "show", "weekly", "--toml").stdout
    refused = cli.run("dr", "create", "w2", "--order", "db", "--target-base", str(tmp_path / "p"),
                      "--test-schedule", "every fortnight")
    assert refused.returncode == 2 and "plan w2: schedule 'every fortnight'" in refused.stderr

    listed = [e for e in cli.json("schedule", "list") if e["type"] == "schedule"]
    assert sorted((e.get("config") or e.get("plan"), e["kind"], e["id"]) for e in listed) == [
        ("db", "check", "check:every 1d"), ("db", "incremental", "every 6h"), ("weekly", "dr-test", "every 1w")]
    text = cli.run("schedule", "list").stdout
    assert "DR test" in text and "reads 1/7 of the packs" in text
    slots = [e for e in cli.json("schedule", "next", "weekly", "--count", "2") if e["type"] == "slot"]
    assert [(s["plan"], s["kind"]) for s in slots] == [("weekly", "dr-test")] * 2
    [status] = json.loads(cli.run("status", "--json").stdout)
    assert [(c["kind"], c["schedule"], c["subset"], c["last_run"]) for c in status["checks"]] == [
        ("check", "every 1d", "1/7", None)]
    assert "DR test" in cli.run("status").stdout

    assert cli.run("config", "edit", "db", "--no-check-schedule").returncode == 0
    assert cli.json("config", "show", "db")[0]["check_schedules"] == []


def test_a_check_and_a_rehearsal_stop_when_the_manager_is_stopping(manager, tmp_path):
    from strongroom.errors import Interrupted
    from strongroom.services.scheduled_runs import run_check_job, run_dr_test_job
    add(manager, tmp_path, check_schedules=[check_schedule("every 1d", "100%")])
    manager.manual_backup("files")
    manager.disaster_recovery.create_dr_plan("nightly", recovery_order=["files"],
                                             target_base_path=str(tmp_path / "prod"), test_schedule="every 1d")
    # Rows as the queue hands them to the runner (not queued: the manager's workers would take them).
    check_job = {"id": 10**9, "config": "files", "kind": "check", "attempts": 1, "max_attempts": 1}
    test_job = {"id": 10**9 + 1, "config": plan_key("nightly"), "kind": "dr-test", "attempts": 1, "max_attempts": 1}
    manager.stopping.set()
    with pytest.raises(Interrupted, match="the check stopped: strongroom is shutting down"):
        run_check_job(manager, check_job)
    with pytest.raises(Interrupted, match="the DR test of plan nightly stopped: strongroom is shutting down"):
        run_dr_test_job(manager, test_job)
    manager.stopping.clear()
    assert run_check_job(manager, check_job)["stats"]["packs_read"] >= 1

    # Stopped while it runs: a step's hook holds the rehearsal until the manager stops.
    import threading
    from strongroom.dr.plan import Hook, Step
    marker = tmp_path / "hook-started"
    manager.disaster_recovery.create_dr_plan(
        "held", steps=[Step("files", before=(Hook(f"touch {marker}; sleep 2"),))],
        target_base_path=str(tmp_path / "prod3"))
    held_job = {**test_job, "id": 10**9 + 2, "config": plan_key("held")}
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(_raised(run_dr_test_job, manager, held_job)))
    worker.start()
    for _ in range(500):
        if marker.exists():
            break
        threading.Event().wait(0.02)
    assert marker.exists()
    manager.stopping.set()
    worker.join(timeout=60)
    assert [type(e).__name__ for e in outcome] == ["Interrupted"]
    [run] = manager.catalog.list_dr_runs("held")
    assert run["verdict"] != "pass"  # cancelled: the rehearsal did not finish its steps


def _raised(func, *args):
    try:
        func(*args)
    except BaseException as e:
        return e
    return None
