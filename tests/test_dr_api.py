"""Disaster recovery through the Python API: the original description's
example as written (paths changed), sessions per run and per step in the
catalog, rehearsals, cancellation, and the plan calls. Real configurations,
real repositories on disk, a real catalog."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from treeutil import snapshot_tree

import strongroom
from strongroom.errors import UsageError

KiB = 1024


@pytest.fixture
def api_env(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("STRONGROOM_SECRETS", "STRONGROOM_CATALOG", "STRONGROOM_PASSWORD", "STRONGROOM_WEBDAV_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STRONGROOM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    return tmp_path


def restored(target: Path, source: Path) -> Path:
    return target / str(source).lstrip("/")


def three_configs(manager, root: Path) -> dict[str, Path]:
    rng = random.Random(4)
    sources = {}
    for name in ("database", "app", "files"):
        source = root / "data" / name
        (source / "sub").mkdir(parents=True)
        (source / "sub" / "blob.bin").write_bytes(rng.randbytes(150 * KiB))
        (source / f"{name}.txt").write_text(f"{name}\n" * 50)
        manager.add_config(strongroom.BackupConfig(name=name, source_paths=[str(source)],
                                                   target_path=str(root / "repos" / name)))
        manager.manual_backup(name, "full")
        sources[name] = source
    return sources


def test_the_original_example_runs_as_written(api_env):
    manager = strongroom.create_backup_manager(db_path="backup.db")
    sources = three_configs(manager, api_env)
    base = api_env / "dr-restore"

    # From the original description, with this test's target path.
    from strongroom import create_recovery_service
    recovery = create_recovery_service(manager.backup_service)
    dr_plan_id = recovery.create_disaster_recovery_plan(
        name="Production DR",
        recovery_order=["database", "app", "files"],
        target_base_path=str(base),
    )
    sessions = recovery.execute_disaster_recovery(dr_plan_id)
    for session_id in sessions:
        progress = recovery.get_recovery_progress(session_id)
        print(f"{session_id}: {progress.status} {progress.processed_files}/{progress.total_files}")

    assert dr_plan_id == "Production DR" and len(sessions) == 3 and len(set(sessions)) == 3
    done = [recovery.wait(s, timeout=120) for s in sessions]
    assert [p.status for p in done] == ["completed"] * 3
    assert all(p.processed_files == p.total_files == 2 and p.percent == 100.0 for p in done)
    for name, source in sources.items():
        assert snapshot_tree(restored(base / name, source)) == snapshot_tree(source)

    # Every step, and the run, is a session of the catalog: a later process reads them.
    run_id = recovery.dr.run_of(sessions[0])
    run = recovery.dr.wait(run_id, timeout=120)
    assert run.verdict == "pass" and run.mode == "run" and [s.status for s in run.steps] == ["passed"] * 3
    whole = recovery.dr.get_progress(run_id)
    assert whole.status == "completed" and whole.total_files == 6 and whole.processed_files == 6
    manager.close()
    later = strongroom.create_backup_manager(db_path="backup.db")
    again = create_recovery_service(later.backup_service)
    for session_id in sessions:
        progress = again.get_recovery_progress(session_id)
        assert progress.status == "completed" and progress.processed_files == 2
    assert again.get_recovery_progress(run_id).status == "completed"
    # The run is recorded: in the catalog, and sealed in every repository it restored from.
    from strongroom.dr.store import PlanStore
    [recorded] = PlanStore(later.backup_service).runs(plan="Production DR")
    assert recorded["id"] == run_id and recorded["verdict"] == "pass"
    for name in ("database", "app", "files"):
        repo = later.backup_service.open_repository(later.get_config(name))
        assert [r["id"] for r in PlanStore.runs_in_repository(repo)] == [run_id]
    later.close()


def test_a_rehearsal_through_the_api_with_progress_and_events(api_env):
    with strongroom.create_backup_manager(db_path="c.db") as manager:
        sources = three_configs(manager, api_env)
        dr = strongroom.DisasterRecoveryManager(manager.backup_service)
        plan_id = dr.create_dr_plan("nightly", recovery_order=["database", "files"],
                                    target_base_path=str(api_env / "prod"), rto="30m", rpo=86400)
        plan = dr.get_dr_plan(plan_id)
        assert isinstance(plan, strongroom.Plan) and plan.rto == 1800 and plan.rpo == 86400
        assert [p.name for p in dr.list_dr_plans()] == ["nightly"]

        events: list[dict] = []
        scratch = api_env / "scratch"
        run = dr.test_dr_plan(plan_id, scratch=str(scratch), keep=True, progress=events.append)
        assert isinstance(run, strongroom.PlanRun) and run.verdict == "pass" and run.mode == "test"
        assert all(isinstance(s, strongroom.StepResult) and s.verified for s in run.steps)
        assert not (api_env / "prod").exists() and run.scratch_kept
        assert snapshot_tree(restored(scratch / "files", sources["files"])) == snapshot_tree(sources["files"])
        assert run.rpo_target == 86400 and all(0 <= s.rpo_seconds < 600 for s in run.steps)
        # Each repository read is checked; the packs the restores authenticated count as read.
        assert len(run.checks) == 2 and all(c.structure_ok and c.problems == () for c in run.checks)
        assert all(0 < c.packs_read <= c.packs_total and c.share_read > 0 for c in run.checks)
        assert run.summary()["steps"][0]["files_verified"] == 2
        kinds = [e["message_type"] for e in events]
        assert kinds[0] == "dr_step" and kinds[-1] == "dr_status" and "status" in kinds

        run_id = dr.test_dr_plan(plan_id, wait=False)
        assert isinstance(run_id, str)
        assert dr.wait(run_id, timeout=120).verdict == "pass"
        assert dr.get_progress(run_id).status == "completed"

        dr.delete_dr_plan(plan_id)
        assert dr.list_dr_plans() == []
        with pytest.raises(UsageError, match="no DR plan named 'nightly'"):
            dr.get_dr_plan("nightly")


def test_cancel_stops_the_step_in_flight_and_skips_the_rest(api_env):
    with strongroom.create_backup_manager(db_path="c.db") as manager:
        three_configs(manager, api_env)
        recovery = strongroom.create_recovery_service(manager.backup_service)
        started = api_env / "started"
        steps = ["database", strongroom.Step("app", before=(strongroom.Hook(f"touch {started}; sleep 30"),)),
                 "files"]
        recovery.dr.create_dr_plan("slow", steps=steps, target_base_path=str(api_env / "restore"))
        sessions = recovery.execute_disaster_recovery("slow")
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert recovery.get_recovery_progress(sessions[1]).status == "running"
        assert recovery.cancel_recovery(sessions[1])
        done = [recovery.wait(s, timeout=60) for s in sessions]
        assert [p.status for p in done] == ["completed", "cancelled", "skipped"]
        assert all(p.done for p in done)
        run = recovery.dr.wait(recovery.dr.run_of(sessions[0]))
        assert run.verdict == "fail" and [s.status for s in run.steps] == ["passed", "cancelled", "skipped"]
        [hook] = run.steps[1].hooks
        assert hook.ok is False and hook.duration_seconds < 30
        assert not (api_env / "restore" / "app").exists() and not (api_env / "restore" / "files").exists()
        assert recovery.dr.cancel(recovery.dr.run_of(sessions[0])) is False  # it is over


def test_plan_calls_refuse_what_cannot_be_a_plan(api_env):
    with strongroom.create_backup_manager(db_path="c.db") as manager:
        three_configs(manager, api_env)
        threads_before = threading.active_count()
        dr = strongroom.DisasterRecoveryManager(manager.backup_service)
        cases = [
            (dict(recovery_order=["nope"], target_base_path="/srv/r"), "no backup configuration named 'nope'"),
            (dict(target_base_path="/srv/r"), "give the recovery order"),
            (dict(recovery_order=["app"], steps=["app"], target_base_path="/srv/r"), "give the recovery order"),
            (dict(recovery_order=["app"]), "needs a target base path"),
            (dict(recovery_order="app", target_base_path="/srv/r"), "not one string"),
            (dict(recovery_order=["app"], target_base_path="/srv/r", rto="soon"), "cannot read RTO 'soon'"),
        ]
        for options, message in cases:
            with pytest.raises(UsageError, match=message):
                dr.create_dr_plan("bad", **options)
        dr.create_dr_plan("ok", recovery_order=["app"], target_base_path="/srv/r")
        with pytest.raises(UsageError, match="exists already"):
            dr.create_dr_plan("ok", recovery_order=["app"], target_base_path="/srv/r")
        dr.create_dr_plan("ok", recovery_order=["app", "files"], target_base_path="/srv/r", replace=True)
        assert dr.get_dr_plan("ok").configs == ("app", "files")
        with pytest.raises(UsageError, match="no DR run"):
            dr.wait("0123456789abcdef")
        with pytest.raises(UsageError, match="not empty"):
            (api_env / "full").mkdir()
            (api_env / "full" / "x").write_text("x")
            dr.test_dr_plan("ok", scratch=str(api_env / "full"))
        # Nothing of these refusals keeps a thread running (other tests of this
        # process may have left their own: count from what was there before).
        assert threading.active_count() <= threads_before, [t.name for t in threading.enumerate()]
