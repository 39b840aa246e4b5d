"""The dashboard's colour (services.health) with real backups in the catalog
and time moved: amber past the schedule's gap, red past the overdue rule, red
for a scheduled configuration never backed up, amber while a retry waits
after a failure, and `overviews` as the console lists them."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from strongroom import BackupConfig, create_backup_manager
from strongroom.errors import StrongroomError
from strongroom.schedule.spec import parse_schedule
from strongroom.services.health import config_health, overviews
from strongroom.services.status import config_status

UTC = timezone.utc


@pytest.fixture
def manager(tmp_path, monkeypatch):
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    monkeypatch.setenv("STRONGROOM_SECRETS", str(tmp_path / "secrets.json"))
    made = create_backup_manager(db_path=str(tmp_path / "catalog.db"), cache_root=str(tmp_path / "cache"))
    yield made
    made.close()
    made.catalog.close()


def add(manager, tmp_path: Path, name: str, specs: list[str]) -> BackupConfig:
    source = tmp_path / f"src-{name}"
    source.mkdir()
    (source / "a.txt").write_text(f"the data of {name}\n")
    config = BackupConfig(name=name, source_paths=[str(source)], target_path=str(tmp_path / f"repo-{name}"),
                          encrypt=False, schedules=[parse_schedule(s).to_doc() for s in specs], max_attempts=1)
    return manager.add_config(config)


def health_at(manager, name: str, now: datetime):
    config = manager.get_config(name)
    return config_health(manager.catalog, config, config_status(manager.catalog, config, now, UTC), now, UTC)


def test_amber_past_the_schedules_gap_and_red_past_the_overdue_rule(manager, tmp_path):
    add(manager, tmp_path, "six", ["every 6h"])
    manager.manual_backup("six")
    now = datetime.now(UTC)
    assert (health_at(manager, "six", now).colour, health_at(manager, "six", now).reason) == ("green", "ok")
    assert health_at(manager, "six", now + timedelta(hours=5)).colour == "green"
    late = health_at(manager, "six", now + timedelta(hours=7))
    assert late.colour == "amber"
    assert late.reason == "the newest point is 7.0 h old, older than its schedule's 6.0 h between runs"
    overdue = health_at(manager, "six", now + timedelta(hours=10))
    assert overdue.colour == "red" and overdue.reason.startswith("overdue: ")


def test_without_a_schedule_amber_after_two_days(manager, tmp_path):
    add(manager, tmp_path, "manual", [])
    never = health_at(manager, "manual", datetime.now(UTC))
    assert (never.colour, never.reason) == ("amber", "never backed up (no schedule)")
    manager.manual_backup("manual")
    now = datetime.now(UTC)
    assert health_at(manager, "manual", now + timedelta(days=1)).colour == "green"
    stale = health_at(manager, "manual", now + timedelta(days=3))
    assert stale.colour == "amber" and stale.reason.startswith("no schedule, and the newest point is 3.0 days")


def test_scheduled_and_never_backed_up_is_red(manager, tmp_path):
    add(manager, tmp_path, "fresh", ["0 2 * * *"])
    found = health_at(manager, "fresh", datetime.now(UTC))
    assert (found.colour, found.reason) == ("red", "no run has succeeded yet, though it is scheduled")


def test_a_failure_is_red_and_a_run_queued_after_it_amber(manager, tmp_path):
    add(manager, tmp_path, "flaky", ["every 1h"])
    manager.manual_backup("flaky")
    shutil.rmtree(tmp_path / "src-flaky")
    with pytest.raises(StrongroomError):
        manager.manual_backup("flaky")
    failed = health_at(manager, "flaky", datetime.now(UTC))
    assert failed.colour == "red" and failed.reason.startswith("the last run failed: ")
    assert failed.pending is None
    # A retry waiting in the queue (as a worker would leave it): amber while it waits.
    # The workers are stopped first, so that none takes it.
    manager.close()
    job = manager.catalog.add_job("flaky", "incremental", 0, 1)
    waiting = health_at(manager, "flaky", datetime.now(UTC))
    assert waiting.colour == "amber" and waiting.reason.startswith("a run is queued after a failure: ")
    assert waiting.pending == "queued"
    manager.catalog.update_job(job, status="cancelled", finished_at=manager.catalog.now())
    cancelled = health_at(manager, "flaky", datetime.now(UTC))
    assert (cancelled.colour, cancelled.reason) == ("amber", "the last run was cancelled")


def test_overviews_read_points_size_and_target_from_the_catalog(manager, tmp_path):
    add(manager, tmp_path, "b-one", ["every 6h"])
    add(manager, tmp_path, "a-two", [])
    manager.manual_backup("b-one")
    manager.manual_backup("b-one", kind="full")
    items = {item.name: item for item in overviews(manager, datetime.now(UTC), UTC)}
    assert set(items) == {"a-two", "b-one"}
    assert (items["b-one"].points, items["b-one"].health.colour) == (2, "green")
    assert items["b-one"].status.size_bytes > 0 and items["b-one"].target == str(tmp_path / "repo-b-one")
    assert (items["a-two"].points, items["a-two"].status.size_bytes) == (0, None)
