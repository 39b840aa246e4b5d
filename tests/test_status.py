"""`strongroom status`: the colours and the overdue rule of
services.status.config_status with time moved (real backups in the catalog,
a run that fails because its source vanished, a "now" days later), the
longest gap of cron schedules, and the shape of `status --json` and
`status --check` through the real command line (which uses the wall clock)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from strongroom import BackupConfig, create_backup_manager
from strongroom.errors import StrongroomError
from strongroom.schedule.spec import parse_schedule
from strongroom.services.status import allowed_age, config_status, cron_longest_gap
from catalog_cli import CatalogCLI

UTC = timezone.utc
HOUR = 3600.0
DAY = 86400.0


def schedule(spec: str, **rules) -> dict:
    return parse_schedule(spec, **rules).to_doc()


@pytest.fixture
def manager(tmp_path, monkeypatch):
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    monkeypatch.setenv("STRONGROOM_SECRETS", str(tmp_path / "secrets.json"))
    made = create_backup_manager(db_path=str(tmp_path / "catalog.db"), cache_root=str(tmp_path / "cache"))
    yield made
    made.close()
    made.catalog.close()


def add(manager, tmp_path: Path, name: str, schedules: list[dict]) -> BackupConfig:
    source = tmp_path / f"src-{name}"
    source.mkdir()
    (source / "a.txt").write_text(f"the data of {name}\n")
    config = BackupConfig(name=name, source_paths=[str(source)], target_path=str(tmp_path / f"repo-{name}"),
                          encrypt=False, schedules=schedules, max_attempts=1)
    return manager.add_config(config)


def status_at(manager, name: str, now: datetime):
    return config_status(manager.catalog, manager.get_config(name), now, UTC)


def test_a_daily_cron_turns_red_after_one_and_a_half_days_without_a_success(manager, tmp_path):
    add(manager, tmp_path, "daily", [schedule("0 2 * * *")])
    made = manager.manual_backup("daily")
    now = datetime.now(UTC)
    fresh = status_at(manager, "daily", now)
    assert (fresh.status, fresh.overdue, fresh.reason) == ("green", False, "ok")
    assert fresh.snapshot_id == made.snapshot_id and fresh.last_run.status == "succeeded"
    assert fresh.overdue_after_seconds == 1.5 * DAY
    assert fresh.size_bytes and fresh.size_bytes > 0 and fresh.restore_size_bytes == len("the data of daily\n")
    assert fresh.next_run is not None and fresh.next_run > now
    assert (fresh.next_run.hour, fresh.next_run.minute) == (2, 0)

    almost = status_at(manager, "daily", now + timedelta(hours=35))
    assert (almost.status, almost.overdue) == ("green", False)
    late = status_at(manager, "daily", now + timedelta(hours=37))
    assert (late.status, late.overdue) == ("red", True)
    assert late.reason == "overdue: the newest point is 37.0 h old, more than the 36.0 h its schedule allows"
    assert late.newest_point_age_seconds > 36 * HOUR
    assert late.snapshot_id == made.snapshot_id  # still the newest point the catalog knows of
    assert [(s.name, s.status) for s in manager.get_status()] == [("daily", "green")]
    [later] = manager.get_status(now + timedelta(hours=40))  # in the machine's zone: a day may be 25 h
    assert (later.status, later.overdue) == ("red", True) and later.reason.startswith("overdue: ")


def test_every_and_daily_since_last_are_held_to_their_own_period(manager, tmp_path):
    add(manager, tmp_path, "often", [schedule("every 10m")])
    add(manager, tmp_path, "laptop", [schedule("daily-since-last")])
    manager.manual_backup("often")
    manager.manual_backup("laptop")
    now = datetime.now(UTC)
    assert status_at(manager, "often", now).overdue_after_seconds == 900
    assert status_at(manager, "often", now + timedelta(seconds=890)).status == "green"
    assert status_at(manager, "often", now + timedelta(seconds=910)).overdue
    assert status_at(manager, "laptop", now + timedelta(hours=35)).status == "green"
    later = status_at(manager, "laptop", now + timedelta(hours=37))
    assert (later.status, later.overdue) == ("red", True)


def test_several_schedules_are_held_to_the_shortest_gap(manager, tmp_path):
    add(manager, tmp_path, "two", [schedule("0 2 * * 0"), schedule("every 6h")])
    manager.manual_backup("two")
    now = datetime.now(UTC)
    assert status_at(manager, "two", now).overdue_after_seconds == 9 * HOUR
    assert status_at(manager, "two", now + timedelta(hours=10)).overdue


def test_never_backed_up_is_amber_and_not_overdue(manager, tmp_path):
    add(manager, tmp_path, "new", [schedule("every 1h")])
    far = status_at(manager, "new", datetime.now(UTC) + timedelta(days=30))
    assert (far.status, far.overdue, far.reason) == ("amber", False, "never backed up")
    assert far.last_run is None and far.last_success is None and far.size_bytes is None
    assert far.newest_point_age_seconds is None and far.next_run is not None


def test_without_a_schedule_it_is_never_overdue_and_amber_after_seven_days(manager, tmp_path):
    add(manager, tmp_path, "manual", [])
    manager.manual_backup("manual")
    now = datetime.now(UTC)
    week = status_at(manager, "manual", now + timedelta(days=6))
    assert (week.status, week.overdue, week.reason, week.next_run) == ("green", False, "ok (no schedule)", None)
    assert week.overdue_after_seconds is None
    old = status_at(manager, "manual", now + timedelta(days=100))
    assert (old.status, old.overdue) == ("amber", False)
    assert old.reason == "no schedule, and the newest point is 100.0 days old"


def test_a_run_that_failed_is_red_and_keeps_the_last_success(manager, tmp_path):
    add(manager, tmp_path, "gone", [schedule("0 2 * * *")])
    first = manager.manual_backup("gone")
    shutil.rmtree(tmp_path / "src-gone")
    with pytest.raises(StrongroomError):
        manager.manual_backup("gone")
    now = datetime.now(UTC)
    failed = status_at(manager, "gone", now)
    assert (failed.status, failed.overdue) == ("red", False)
    assert failed.last_run.status == "failed" and failed.reason.startswith("the last run failed: ")
    assert "src-gone" in failed.reason
    assert failed.snapshot_id == first.snapshot_id and failed.last_success is not None


def test_a_success_with_a_warning_is_amber(manager, tmp_path):
    # As the job queue records a run whose files could not all be read (a
    # warning root cannot provoke with permissions): succeeded, with the warning.
    add(manager, tmp_path, "partial", [schedule("every 1h")])
    manager.manual_backup("partial")
    catalog = manager.catalog
    job = catalog.add_job("partial", "incremental", 0, 1)
    catalog.update_job(job, status="succeeded", attempts=1, started_at=catalog.now(), finished_at=catalog.now(),
                       snapshot_id="0" * 64, error="1 file could not be read")
    warned = status_at(manager, "partial", datetime.now(UTC))
    assert (warned.status, warned.reason) == ("amber", "the last run warned: 1 file could not be read")
    assert warned.snapshot_id == "0" * 64


@pytest.mark.parametrize("spec, expected", [
    ("0 2 * * *", DAY),  # walked slot by slot
    ("30 */6 * * *", 6 * HOUR),
    ("0 9 * * 1-5", 3 * DAY),  # Friday to Monday
    ("*/15 9-17 * * 1-5", 2 * DAY + 15 * HOUR + 15 * 60),  # probed: Friday 17:45 to Monday 09:00
    ("* * * * *", 8 * DAY / 200),  # denser than the probes: their spacing, an upper bound
])
def test_cron_longest_gap(spec, expected):
    now = datetime(2026, 5, 6, 12, 0, tzinfo=UTC)  # a Wednesday
    assert cron_longest_gap(parse_schedule(spec), now) == expected


def test_a_window_and_a_random_delay_add_what_they_can_hold_a_start_back():
    now = datetime(2026, 5, 6, 12, 0, tzinfo=UTC)
    plain = allowed_age(parse_schedule("every 1h"), now)
    held = allowed_age(parse_schedule("every 1h", window="22:00-06:00", random_delay="10m"), now)
    assert plain == 1.5 * HOUR and held == plain + 16 * HOUR + 600


CLI = CatalogCLI


def test_cli_status_json_table_and_check(tmp_path):
    cli = CLI(tmp_path)
    for name in ("nightly", "broken"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text(name)
        cli.ok("config", "add", name, "--source", str(tmp_path / name), "--target-dir", str(tmp_path / f"r-{name}"),
               "--no-encrypt", "--schedule", "0 3 * * *", "--max-attempts", "1")
    cli.ok("backup", "--config", "nightly")
    cli.ok("config", "add", "idle", "--source", str(tmp_path / "nightly"), "--target-dir", str(tmp_path / "r-i"),
           "--no-encrypt")

    docs = json.loads(cli.ok("status", "--json"))
    by_name = {d["config"]: d for d in docs}
    assert [d["config"] for d in docs] == sorted(by_name) and set(by_name) == {"nightly", "broken", "idle"}
    nightly = by_name["nightly"]
    assert (nightly["status"], nightly["overdue"], nightly["reason"]) == ("green", False, "ok")
    assert nightly["last_run"]["status"] == "succeeded" and len(nightly["snapshot_id"]) == 64
    assert nightly["next_run"].endswith("T03:00:00+00:00") and nightly["overdue_after_seconds"] == 129600
    assert datetime.fromisoformat(nightly["last_success"]).tzinfo is not None
    assert nightly["size_bytes"] > 0 and nightly["restore_size_bytes"] == len("nightly")
    assert by_name["idle"]["next_run"] is None and by_name["idle"]["status"] == "amber"
    assert by_name["broken"]["reason"] == "never backed up"
    assert cli.run("status", "--check").returncode == 0  # amber is not red

    shutil.rmtree(tmp_path / "broken")
    assert cli.run("backup", "--config", "broken").returncode != 0
    broken = {d["config"]: d for d in json.loads(cli.ok("status", "--json"))}["broken"]
    assert (broken["status"], broken["last_run"]["status"], broken["last_success"]) == ("red", "failed", None)
    table = cli.run("status")
    assert table.returncode == 0, table.stderr  # a status command reports; it does not fail
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["Config", "Status"] and lines[-1] == "3 configurations, 1 red"
    row = next(line for line in lines if line.startswith("broken "))
    assert row.split()[1] == "red" and "the last run failed" in row
    checked = cli.run("status", "--check")
    assert checked.returncode == 1 and checked.stdout.splitlines()[-1] == "3 configurations, 1 red"
