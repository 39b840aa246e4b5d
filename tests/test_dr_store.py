"""DR plans and runs kept in the catalog and, sealed, in the repositories their steps use."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from strongroom import BackupConfig, create_backup_manager
from strongroom.dr.plan import Hook, Plan, Step, plan_from_order
from strongroom.dr.results import PlanRun, StepResult
from strongroom.dr.store import PlanStore
from strongroom.errors import UsageError
from strongroom.repo.repository import MANAGED_CONFIG_DIR


@pytest.fixture
def manager(tmp_path, monkeypatch):
    for name in ("STRONGROOM_SECRETS", "STRONGROOM_CATALOG", "STRONGROOM_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("alpha\n")
    m = create_backup_manager(db_path=str(tmp_path / "catalog.db"), cache_root=str(tmp_path / "cache"))
    for name, repo in (("db", "repo1"), ("app", "repo1"), ("files", "repo2")):
        m.add_config(BackupConfig(name=name, source_paths=[str(tmp_path / "src")], target_path=str(tmp_path / repo),
                                  password="pw-" + repo))
    yield m
    m.close()
    m.catalog.close()


def records(repo_dir: Path, kind: str) -> list[str]:
    return sorted(p.name for p in (repo_dir / MANAGED_CONFIG_DIR).iterdir() if p.name.startswith(kind + "-"))


def test_a_plan_is_kept_in_the_catalog_and_in_each_repository_once(manager, tmp_path):
    store = PlanStore(manager.backup_service)
    plan = plan_from_order("Production DR", ["db", "app", "files"], str(tmp_path / "restore"), rto=1800, rpo=86400)
    saved = store.save(plan)
    assert saved.updated > 0 and saved == plan and saved.version == plan.version
    assert store.get("Production DR") == plan and [p.name for p in store.list()] == ["Production DR"]
    # repo1 holds two of the steps' configurations: one copy there, one in repo2.
    assert len(records(tmp_path / "repo1", "plan")) == 1 and len(records(tmp_path / "repo2", "plan")) == 1
    for repo_dir in ("repo1", "repo2"):
        repo = manager.backup_service.open_repository(manager.get_config("files" if repo_dir == "repo2" else "db"))
        assert PlanStore.plans_in_repository(repo) == [plan]
        # The configurations read back as before: the plan record is not one of them.
        assert set(repo.load_managed_configs()) <= {"db", "app", "files"}
    # Sealed: the plan's name is nowhere in plain text.
    for path in (tmp_path / "repo1" / MANAGED_CONFIG_DIR).iterdir():
        assert b"Production" not in path.read_bytes()


def test_refusals(manager, tmp_path):
    store = PlanStore(manager.backup_service)
    with pytest.raises(UsageError, match="no backup configuration named 'nope'"):
        store.save(plan_from_order("p", ["db", "nope"], str(tmp_path)))
    assert store.list() == [] and records(tmp_path / "repo1", "plan") == []
    store.save(plan_from_order("p", ["db"], str(tmp_path)))
    with pytest.raises(UsageError, match="exists already"):
        store.save(plan_from_order("p", ["app"], str(tmp_path)))
    with pytest.raises(UsageError, match="no DR plan named 'q'"):
        store.get("q")


def test_the_newest_version_wins_and_a_removal_is_recorded(manager, tmp_path):
    store = PlanStore(manager.backup_service)
    store.save(plan_from_order("p", ["db"], str(tmp_path / "a")))
    second = store.save(Plan("p", (Step("db", before=(Hook("true", 5, "optional"),)),), str(tmp_path / "b")),
                        replace=True)
    repo = manager.backup_service.open_repository(manager.get_config("db"))
    assert PlanStore.plans_in_repository(repo) == [second] and store.get("p") == second
    store.delete("p")
    assert store.list() == [] and PlanStore.plans_in_repository(repo) == []
    assert len(records(tmp_path / "repo1", "plan")) == 3  # two versions and the removal


def test_a_damaged_or_foreign_record_is_passed_over(manager, tmp_path):
    store = PlanStore(manager.backup_service)
    store.save(plan_from_order("p", ["db"], str(tmp_path)))
    repo = manager.backup_service.open_repository(manager.get_config("db"))
    folder = tmp_path / "repo1" / MANAGED_CONFIG_DIR
    good = folder / records(tmp_path / "repo1", "plan")[0]
    damaged = bytearray(good.read_bytes())
    damaged[len(damaged) // 2] ^= 1
    (folder / "plan-00").write_bytes(bytes(damaged))
    # A configuration object renamed as a plan record does not open as one.
    config_object = next(p for p in folder.iterdir() if "-" not in p.name)
    (folder / ("plan-" + config_object.name)).write_bytes(config_object.read_bytes())
    assert [p.name for p in PlanStore.plans_in_repository(repo)] == ["p"]
    # A huge object is not read at all.
    (folder / ("plan-" + "0" * 64)).write_bytes(b"\0" * (5 * 1024 * 1024))
    assert [p.name for p in PlanStore.plans_in_repository(repo)] == ["p"]


def _run(run_id: str, plan: str, started: float, verdict: str = "pass") -> PlanRun:
    when = datetime.fromtimestamp(started, timezone.utc)
    step = StepResult("db", "db", "/r", "passed", "/t/db", "ab" * 32, when, "latest", 5.0, None, None, when,
                      1.0, 0.5, 1, 6, 12.0, 1, True, 0, 0, (), (), ())
    return PlanRun(run_id, plan, "v1", "test", "manual", "host", "0.1.0", when, when, "/t", False, (step,),
                   1.0, None, None, (), 0.1, verdict, ())


def test_runs_are_history_in_the_catalog_and_the_repository(manager, tmp_path):
    store = PlanStore(manager.backup_service)
    store.save(plan_from_order("p", ["db"], str(tmp_path)))
    for i, verdict in enumerate(("pass", "fail", "pass-with-warnings")):
        store.record_run(_run(f"run{i}", "p", 1_700_000_000 + i, verdict))
    assert [r["verdict"] for r in store.runs("p")] == ["pass", "fail", "pass-with-warnings"]
    assert [r["id"] for r in store.runs("p", last=2)] == ["run1", "run2"]
    repo = manager.backup_service.open_repository(manager.get_config("db"))
    assert [r["id"] for r in PlanStore.runs_in_repository(repo)] == ["run0", "run1", "run2"]
    assert records(tmp_path / "repo2", "run") == []  # no step restored from repo2
    store.delete("p")
    assert len(store.runs("p")) == 3  # the evidence outlives the plan


def test_a_run_record_is_sealed_and_opens_with_the_repository_key(manager, tmp_path):
    store = PlanStore(manager.backup_service)
    store.save(plan_from_order("Sealed Plan", ["db"], str(tmp_path)))
    store.record_run(_run("run-7f3a9c1e", "Sealed Plan", 1_700_000_000))
    assert len(records(tmp_path / "repo1", "run")) == 1
    # Nothing of the record is in plain text anywhere in the repository.
    for path in (p for p in (tmp_path / "repo1").rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert b"Sealed Plan" not in data and b"run-7f3a9c1e" not in data and b"verdict" not in data, path
    repo = manager.backup_service.open_repository(manager.get_config("db"))
    [doc] = PlanStore.runs_in_repository(repo)
    assert (doc["id"], doc["plan"], doc["verdict"]) == ("run-7f3a9c1e", "Sealed Plan", "pass")


def test_the_catalog_upgrade_adds_the_tables(tmp_path):
    from strongroom.services.catalog import MIGRATIONS, Catalog
    catalog = Catalog(tmp_path / "c.db")
    catalog.close()
    db = sqlite3.connect(tmp_path / "c.db")
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"dr_plans", "dr_runs"} <= names
    db.execute("UPDATE schema_version SET version = 4")
    db.execute("DROP TABLE dr_runs")
    db.commit()
    db.close()
    catalog = Catalog(tmp_path / "c.db")
    assert catalog.schema_version() == len(MIGRATIONS) and catalog.list_dr_runs() == []
    catalog.close()
