"""The DR manager's reading of recorded runs, which the web console and scripts
use: the last test and run of a plan, one run by id, its report with the
trend, and a plan made from its TOML text. Real repositories, a real catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import strongroom
from strongroom.errors import UsageError


@pytest.fixture
def manager(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("STRONGROOM_SECRETS", "STRONGROOM_CATALOG", "STRONGROOM_PASSWORD", "STRONGROOM_WEBDAV_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STRONGROOM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    manager = strongroom.create_backup_manager(db_path="backup.db")
    source = tmp_path / "data"
    source.mkdir()
    (source / "one.txt").write_text("one\n" * 100)
    manager.add_config(strongroom.BackupConfig(name="data", source_paths=[str(source)],
                                               target_path=str(tmp_path / "repo")))
    manager.manual_backup("data", "full")
    return manager


def test_last_runs_reports_and_a_plan_from_toml(manager, tmp_path: Path):
    dr = manager.disaster_recovery
    dr.create_dr_plan("p", ["data"], str(tmp_path / "base"), rto="1h")
    assert dr.last_dr_run("p", "test") is None and dr.recorded_dr_run("nope") is None
    assert dr.dr_report("nope", "md") is None
    first = dr.test_dr_plan("p")
    second = dr.test_dr_plan("p")
    last = dr.last_dr_run("p", "test")
    assert last["run_id"] == second.id and last["verdict"] == "pass" and last["rto_seconds"] == second.rto_seconds
    assert last["finished"].endswith("Z") and dr.last_dr_run("p", "run") is None
    assert dr.recorded_dr_run(first.id).summary() == first.summary()
    assert [r.id for r in dr.dr_run_history("p")] == [first.id, second.id]
    report = json.loads(dr.dr_report(second.id, "json"))
    assert report["id"] == second.id and [p["id"] for p in report["trend"]] == [first.id, second.id]
    # The first run's trend holds no later test.
    assert [p["id"] for p in json.loads(dr.dr_report(first.id, "json"))["trend"]] == [first.id]
    assert "<svg" in dr.dr_report(second.id, "html")

    toml = dr.get_dr_plan("p").to_toml()
    with pytest.raises(UsageError, match="exists already"):
        dr.create_dr_plan_from_toml(toml)
    assert dr.create_dr_plan_from_toml(toml.replace('name = "p"', 'name = "q"')) == "q"
    assert dr.get_dr_plan("q").configs == ("data",)
    with pytest.raises(UsageError, match="larger than"):
        dr.create_dr_plan_from_toml("#" * (1024 * 1024 + 1))
