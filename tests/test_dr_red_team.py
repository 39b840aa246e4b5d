"""Disaster recovery attacked as an adversary and a careful user would: the
real `dr run` / `dr test` in a subprocess over real repositories on disk.

A plan that restores nothing or checks nothing must not pass clean; a
scratch area never overlaps a real target, symlinks followed; two steps
never share a target through a symlink."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from test_dr_run import DR, dr, restored  # noqa: F401  (the fixture)


def summary(dr: DR, *args: str, env: dict | None = None) -> tuple[int, dict, str]:
    code, lines, err = dr.json(*args, env=env)
    assert lines, err
    return code, lines[-1], err


# ---- the verdict -----------------------------------------------------------------------------


def test_a_step_whose_include_matches_nothing_fails(dr: DR):
    dr.config("app", {"a.txt": b"alpha", "sub/b.txt": b"beta"})
    dr.plan("empty include", [{"config": "app", "include": ["no-such-file*"]}])
    code, last, _ = summary(dr, "dr", "test", "empty include")
    assert code == 1 and last["message_type"] == "summary"
    assert last["verdict"] == "fail"
    assert last["steps"][0]["files"] == 0
    assert "step app: restored no file (its include matches nothing in the snapshot)" in last["reasons"]


def test_an_empty_snapshot_fails_too(dr: DR):
    (dr.root / "sources" / "app").mkdir(parents=True)
    dr.config("app", {})
    dr.plan("nothing", ["app"])
    code, last, _ = summary(dr, "dr", "test", "nothing")
    assert (code, last["verdict"]) == (1, "fail")
    assert "step app: restored no file (the snapshot holds none)" in last["reasons"]


def test_a_plan_that_does_not_verify_passes_only_with_a_warning(dr: DR):
    dr.config("app", {"a.txt": b"alpha"})
    dr.plan("unchecked", ["app"], verify=False)
    code, last, _ = summary(dr, "dr", "test", "unchecked")
    assert code == 0
    assert last["verdict"] == "pass-with-warnings"
    assert last["steps"][0]["files"] == 1 and last["steps"][0]["files_verified"] == 0
    assert last["reasons"] == ["verification is off in this plan: no restored file was checked against its "
                               "snapshot"]
    text = dr.run("dr", "report", "unchecked").stdout.decode()
    assert "every file verified" not in text


# ---- the scratch area and the real targets -----------------------------------------------------


def _plan_with_real_target(dr: DR, tmp_path: Path) -> Path:
    dr.config("app", {"a.txt": b"alpha"})
    real = tmp_path / "live" / "app"
    real.mkdir(parents=True)
    (real / "keep.txt").write_bytes(b"live data")
    dr.plan("P", [{"config": "app", "target": str(real)}], target_base_path=str(tmp_path / "live"))
    return real


@pytest.mark.parametrize("where", ["inside", "is", "holds", "via-symlink"])
def test_a_scratch_area_overlapping_a_real_target_is_refused_before_anything(dr: DR, tmp_path, where):
    real = _plan_with_real_target(dr, tmp_path)
    link = tmp_path / "link"
    link.symlink_to(real)
    scratch = {"inside": real / "rehearsal", "is": real, "holds": tmp_path / "live",
               "via-symlink": link / "rehearsal"}[where]
    if where == "holds":
        (real / "keep.txt").unlink()
        real.rmdir()  # an empty folder above the target: the step folder would be the real target
    before = sorted(p.name for p in real.parent.rglob("*"))
    code, lines, err = dr.json("dr", "test", "P", "--scratch", str(scratch))
    assert code == 2, err
    assert lines[-1]["message_type"] == "exit_error"
    assert "overlaps the real target" in lines[-1]["message"]
    assert sorted(p.name for p in real.parent.rglob("*")) == before
    assert not (real / "rehearsal").exists()


def test_the_default_scratch_area_leaves_a_target_that_holds_the_target_base(dr: DR, tmp_path):
    # The default place is beside the target base; here that is inside a real target.
    dr.config("app", {"a.txt": b"alpha"})
    dr.config("files", {"f.txt": b"file"})
    outer = tmp_path / "srv"
    outer.mkdir()
    dr.plan("P", [{"config": "app", "target": str(outer)}, {"config": "files", "target": "/elsewhere-never-made"}],
            target_base_path=str(outer / "base"))
    code, last, err = summary(dr, "dr", "test", "P", "--keep")
    assert code == 0, err
    assert last["verdict"] == "pass"
    scratch = Path(last["steps"][0]["target"]).parent
    assert not str(scratch.resolve()).startswith(str(outer.resolve()) + "/")
    assert list(outer.iterdir()) == []


def test_two_steps_restoring_into_one_place_through_a_symlink_are_refused(dr: DR, tmp_path):
    dr.config("app", {"a.txt": b"alpha"})
    dr.config("files", {"a.txt": b"other"})
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    dr.plan("P", [{"config": "app", "target": str(real)}, {"config": "files", "target": str(tmp_path / "alias")}])
    code, lines, err = dr.json("dr", "run", "P")
    assert code == 2, err
    assert lines[-1]["message_type"] == "exit_error"
    assert "are one place once symlinks are followed" in lines[-1]["message"]
    assert list(real.iterdir()) == []


# ---- targets a real run cannot use ------------------------------------------------------------


def test_a_target_that_is_a_file_fails_the_step_before_its_commands(dr: DR, tmp_path):
    dr.config("app", {"a.txt": b"alpha"})
    afile = tmp_path / "afile"
    afile.write_bytes(b"mine")
    ran = tmp_path / "before-ran"
    dr.plan("F", [{"config": "app", "target": str(afile), "before": [{"command": f"touch {ran}"}]}])
    code, last, _ = summary(dr, "dr", "run", "F")
    assert (code, last["verdict"]) == (1, "fail")
    assert last["reasons"] == [f"step app: failed: target {afile} is not a directory: nothing was restored"]
    assert not ran.exists() and afile.read_bytes() == b"mine"


@contextmanager
def read_only_folder(tmp_path: Path):
    """A read-only tmpfs as root (as the tests run in CI); else a folder of mode 0555."""
    place = tmp_path / "ro"
    place.mkdir()
    if os.geteuid() != 0:
        place.chmod(0o555)
        yield place
        place.chmod(0o755)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(place)], check=True)
    try:
        yield place
    finally:
        subprocess.run(["umount", str(place)], check=True)


def test_a_read_only_target_fails_the_step_in_one_line_before_its_commands(dr: DR, tmp_path):
    dr.config("app", {"a.txt": b"alpha"})
    ran = tmp_path / "before-ran"
    with read_only_folder(tmp_path) as ro:
        dr.plan("RO", [{"config": "app", "target": str(ro / "app"), "before": [{"command": f"touch {ran}"}]}])
        code, last, _ = summary(dr, "dr", "run", "RO")
    assert (code, last["verdict"]) == (1, "fail")
    [reason] = last["reasons"]
    assert reason.startswith(f"step app: failed: target {ro / 'app'} cannot be written ({ro} is read-only")
    assert "b'" not in reason and "\n" not in reason
    assert not ran.exists()


# ---- two runs at once ------------------------------------------------------------------------


def test_a_second_run_into_the_same_targets_is_refused_and_a_killed_run_leaves_no_lock(dr: DR, tmp_path):
    dr.config("app", {"a.txt": b"alpha"})
    started, pid_file = tmp_path / "started", tmp_path / "hook.pid"
    dr.plan("slow", [{"config": "app", "before": [{"command": f"echo $$ > {pid_file}; touch {started}; exec sleep 60"}]}])
    dr.plan("same target", [{"config": "app", "target": str(dr.root / "restore" / "app")}])
    first = dr.popen("dr", "run", "slow", "--json")
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read().decode()
            time.sleep(0.05)
        for name in ("slow", "same target"):
            code, lines, err = dr.json("dr", "run", name)
            assert code == 11, err
            assert lines[-1]["message_type"] == "exit_error"
            assert lines[-1]["message"] == f"another DR run is restoring into {dr.root / 'restore' / 'app'}: " \
                                           "wait for it to finish"
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the hook the killed run left
            except ProcessLookupError:
                pass
    code, last, err = summary(dr, "dr", "run", "same target")
    assert (code, last["verdict"]) == (0, "pass"), err
    assert (dr.root / "restore" / "app").is_dir()


# ---- kill -9 -----------------------------------------------------------------------------------


def _start_and_wait(dr: DR, tmp_path: Path, mode: str, plan: str) -> tuple[subprocess.Popen, Path]:
    started, pid_file = tmp_path / "started", tmp_path / "hook.pid"
    dr.plan(plan, [{"config": "app", "before": [{"command": f"echo $$ > {pid_file}; touch {started}; exec sleep 60"}]},
                   "files"])
    proc = dr.popen("dr", mode, plan, "--json")
    deadline = time.monotonic() + 60
    while not started.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
        time.sleep(0.05)
    return proc, pid_file


def _kill(proc: subprocess.Popen, pid_file: Path) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    try:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_run_killed_with_9_leaves_no_session_running_and_no_record_of_a_pass(dr: DR, tmp_path):
    from strongroom.dr.store import PlanStore
    from strongroom.services.recovery import create_recovery_service
    dr.config("app", {"a.txt": b"alpha"})
    dr.config("files", {"f.txt": b"file"})
    proc, pid_file = _start_and_wait(dr, tmp_path, "test", "killed")
    _kill(proc, pid_file)
    with dr.manager() as manager:
        rows = manager.catalog.list_sessions(None)
        assert len(rows) == 3 and {r["status"] for r in rows} == {"running", "pending"}  # as the kill left them
        recovery = create_recovery_service(manager.backup_service)
        for row in rows:
            progress = recovery.get_recovery_progress(row["id"])
            assert progress.status == "failed" and progress.done
            assert progress.errors[-1].startswith(f"interrupted: process {proc.pid} on ")
            assert recovery.wait(row["id"], timeout=5).status == "failed"
        assert {r["status"] for r in manager.catalog.list_sessions(None)} == {"failed"}
        assert PlanStore(manager.backup_service).runs("killed") == []


def test_a_live_run_is_never_taken_for_an_interrupted_one(dr: DR, tmp_path):
    from strongroom.services.recovery import create_recovery_service
    dr.config("app", {"a.txt": b"alpha"})
    dr.config("files", {"f.txt": b"file"})
    proc, pid_file = _start_and_wait(dr, tmp_path, "run", "alive")
    try:
        with dr.manager() as manager:
            recovery = create_recovery_service(manager.backup_service)
            statuses = {recovery.get_recovery_progress(r["id"]).status for r in manager.catalog.list_sessions(None)}
        assert statuses == {"running", "pending"}
    finally:
        _kill(proc, pid_file)


# ---- secrets -----------------------------------------------------------------------------------


def test_a_database_dsn_holding_a_password_is_refused_and_never_echoed(dr: DR, tmp_path):
    from strongroom.dr.plan import Step
    from strongroom.errors import UsageError
    for dsn in ("host=db password=s3cr3t-pw dbname=app", "postgresql://db.example/app?sslmode=require&password=s3cr3t-pw",
                "postgres://:s3cr3t-pw@db.example/app"):
        with pytest.raises(UsageError, match="the database DSN holds a password") as refused:
            Step("db", database=dsn)
        assert "s3cr3t-pw" not in str(refused.value)
    dr.config("db", {"app.dump": b"PGDMP"}, backup=False)
    plan = tmp_path / "plan.toml"
    plan.write_text(f'name = "P"\ntarget_base = "{tmp_path / "restore"}"\n\n[[steps]]\nconfig = "db"\n'
                    'database = "postgresql://app:s3cr3t-pw@db.example/app"\n')
    done = dr.run("dr", "create", "--file", str(plan), "--json")
    assert done.returncode == 2
    out, err = done.stdout.decode(), done.stderr.decode()
    assert "the database DSN holds a password" in json.loads(out.splitlines()[-1])["message"]
    assert "s3cr3t-pw" not in out + err
    assert dr.run("dr", "list", "--json").stdout.decode().count('"type": "plan"') == 0


def test_a_database_dsn_without_a_password_is_kept(dr: DR, tmp_path):
    dr.config("db", {"app.dump": b"PGDMP"}, backup=False)
    dr.plan("P", [{"config": "db", "database": "postgresql://app@db.example/app"}])
    code, lines, err = dr.json("dr", "show", "P")
    assert code == 0, err
    assert lines[-1]["steps"][0]["database"] == "postgresql://app@db.example/app"


# ---- hostile records in a repository ------------------------------------------------------------


def test_the_records_of_a_kind_are_bounded_together_and_superseded_versions_do_not_count(repo, monkeypatch):
    from strongroom.errors import IntegrityError
    from strongroom.repo import repository
    monkeypatch.setattr(repository, "MAX_MANAGED_RECORDS_TOTAL", 64 * 1024)
    filler = "x" * 4000
    for version in range(40):  # one name saved again and again: only the newest is held
        repo.save_managed_record("plan", "P", {"v": version, "filler": filler})
    assert repo.load_managed_records("plan")["P"][1]["v"] == 39
    for n in range(10):
        repo.save_managed_record("run", f"run-{n}", {"filler": filler})
    assert len(repo.load_managed_records("run")) == 10
    for n in range(10, 40):  # a crafted target: more runs than memory should hold
        repo.save_managed_record("run", f"run-{n}", {"filler": filler})
    with pytest.raises(IntegrityError, match="the run records of .* hold more than 0 MiB: too many to read"):
        repo.load_managed_records("run")
    assert repo.load_managed_records("plan")["P"][1]["v"] == 39  # the other kind reads on


# ---- a damaged newest snapshot ------------------------------------------------------------------


def test_a_damaged_newest_snapshot_is_never_passed_over_in_silence(dr: DR, tmp_path):
    source = dr.config("app", {"a.txt": b"first"})
    with dr.manager() as manager:
        [older] = manager.backup_service.snapshots(manager.backup_service.get_config("app"))
    (source / "a.txt").write_bytes(b"second")
    dr.backup("app")
    folder = tmp_path / "repos" / "app" / "snapshots"
    newest = next(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(older.id))
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x01
    newest.write_bytes(bytes(data))
    shutil.rmtree(dr.cache)  # as on the machine a recovery runs on: the snapshot is read from the target
    dr.plan("P", ["app"])
    warning = f"step app: 1 snapshot of the repository did not read and was passed over ({newest.name[:8]}): " \
              "the point chosen may not be the newest"
    code, last, err = summary(dr, "dr", "run", "P")
    assert code == 0, (last["reasons"], err)
    assert last["steps"][0]["snapshot"] == older.id  # the newest that reads
    assert (last["verdict"], last["reasons"]) == ("pass-with-warnings", [warning])
    # A rehearsal also checks the repository, which fails it for the damage.
    code, last, err = summary(dr, "dr", "test", "P")
    assert (code, last["verdict"]) == (1, "fail")
    assert warning in last["reasons"]


# ---- the JSON contract ---------------------------------------------------------------------------


def test_refusals_before_the_first_step_end_with_exit_error_and_run_nothing(dr: DR, tmp_path):
    dr.config("app", {"a.txt": b"alpha"})
    ran = tmp_path / "ran"
    dr.plan("P", [{"config": "app", "before": [{"command": f"touch {ran}"}]}])
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_bytes(b"x")
    for args, message in (
            (("dr", "test", "nope"), "no DR plan named 'nope'"),
            (("dr", "run", "P", "--at", "soon"), "cannot read time 'soon': use e.g. 2026-11-30T02:00:00Z"),
            (("dr", "test", "P", "--scratch", str(full)), f"scratch {full} is not empty: give an empty or new directory"),
            (("dr", "test", "P", "--report", str(tmp_path / "no" / "r.md")),
             f"--report {tmp_path / 'no' / 'r.md'}: there is no folder {tmp_path / 'no'}")):
        code, lines, err = dr.json(*args)
        assert code == 2, (args, err)
        assert lines == [{"message_type": "exit_error", "schema": "strongroom/1", "type": "exit_error", "code": 2,
                          "message": message}], (args, lines)
    assert not ran.exists()
    assert dr.run("dr", "report", "P").returncode != 0  # nothing was recorded


def test_a_report_that_cannot_be_written_after_the_run_still_ends_with_the_summary(dr: DR, tmp_path):
    dr.config("app", {"a.txt": b"alpha"})
    folder = tmp_path / "reports"
    folder.mkdir()
    dr.plan("P", [{"config": "app", "before": [{"command": f"rmdir {folder}"}]}])
    code, lines, err = dr.json("dr", "test", "P", "--report", str(folder / "r.md"))
    assert code == 1, err
    assert lines[-1]["message_type"] == "summary" and lines[-1]["verdict"] == "pass"
    assert lines[-2] == {"message_type": "error", "schema": "strongroom/1", "type": "error", "item": str(folder / "r.md"),
                         "message": f"the report {folder / 'r.md'} could not be written: No such file or directory"}
    assert "could not be written" in err


# ---- the verdict from tables ------------------------------------------------------------------


def _result(**fields):
    from test_dr_run import step_result
    return step_result(**fields)


@pytest.mark.parametrize("steps, verify, verdict, reasons", [
    ([_result(files=0, files_verified=0)], True, "fail", ["step app: restored no file (the snapshot holds none)"]),
    ([_result(files=0, files_verified=0, include=("*.sql",))], True, "fail",
     ["step app: restored no file (its include matches nothing in the snapshot)"]),
    ([_result(verified=False, files_verified=0)], False, "pass-with-warnings",
     ["verification is off in this plan: no restored file was checked against its snapshot"]),
    ([_result(status="failed", verified=False, messages=("boom",))], False, "fail", ["step app: failed: boom"]),
    ([_result(rpo_seconds=-86400.0)], True, "pass-with-warnings",
     ["step app: snapshot 3fa2c1d0 is dated 1d after the plan started (a clock is wrong): its age cannot be told"]),
    ([_result(rpo_seconds=-86400.0, rpo_target=3600.0)], True, "fail",
     ["step app: snapshot 3fa2c1d0 is dated 1d after the plan started (a clock is wrong): its age cannot be told"]),
    ([_result(rpo_seconds=-60.0, rpo_target=3600.0)], True, "pass", []),  # two clocks a minute apart
])
def test_the_verdict_never_passes_clean_on_nothing_restored_unchecked_or_undated(steps, verify, verdict, reasons):
    from strongroom.dr.verdict import judge
    assert judge(steps, 5.0, None, verify=verify) == (verdict, tuple(reasons))


# ---- dr run --target-base ------------------------------------------------------------------------


def test_a_target_base_given_for_the_run_holds_steps_with_absolute_targets_too(dr: DR, tmp_path):
    source = dr.config("app", {"a.txt": b"alpha"})
    dr.config("files", {"f.txt": b"file"})
    absolute = tmp_path / "plan-wrote-here"
    seen = tmp_path / "seen"
    dr.plan("P", [{"config": "app", "target": str(absolute), "after": [{"command": f"echo $STRONGROOM_TARGET > {seen}"}]},
                  "files"])
    new = tmp_path / "new-machine"
    code, last, err = summary(dr, "dr", "run", "P", "--target-base", str(new))
    assert (code, last["verdict"]) == (0, "pass"), err
    moved = new / str(absolute).lstrip("/")
    assert [s["target"] for s in last["steps"]] == [str(moved), str(new / "files")]
    assert (restored(moved, source) / "a.txt").read_bytes() == b"alpha"
    assert seen.read_text().strip() == str(moved)
    assert not absolute.exists()


def test_a_rehearsal_killed_with_9_leaves_its_scratch_area_and_the_next_one_names_it(dr: DR, tmp_path):
    dr.config("app", {"a.txt": b"alpha"})
    dr.config("files", {"f.txt": b"file"})
    proc, pid_file = _start_and_wait(dr, tmp_path, "test", "killed")
    _kill(proc, pid_file)
    beside = dr.root  # the default scratch area is made beside the target base, dr.root / "restore"
    [left] = [p for p in beside.iterdir() if p.name.startswith("strongroom-dr-test-") and p.is_dir()]
    dr.plan("again", ["files"])
    code, lines, err = dr.json("dr", "test", "again", "--keep")
    assert code == 0, err
    warnings = [line["message"] for line in lines if line["message_type"] == "warning"]
    assert warnings == [f"an earlier rehearsal was stopped before its clean-up and left its scratch area {left}: "
                        "remove it when you are done with it"]
    assert left.is_dir()  # named, never removed
    kept = Path(lines[-1]["steps"][0]["target"]).parent
    assert kept.is_dir() and not Path(str(kept) + ".owner").exists()
    code, lines, err = dr.json("dr", "test", "again")  # the kept one is not taken for one left behind
    assert [line["message"] for line in lines if line["message_type"] == "warning"] == warnings
    assert sorted(p.name for p in beside.iterdir() if p.name.startswith("strongroom-dr-test-")) == \
        sorted([left.name, left.name + ".owner", kept.name])


# ---- crafted plans --------------------------------------------------------------------------------


@pytest.mark.parametrize("config", ["../../etc", "..", "a/b", "app\x1b[2J"])
def test_a_crafted_plan_whose_config_name_would_leave_the_target_base_does_not_read(repo, config):
    from strongroom.dr.plan import Plan
    from strongroom.dr.store import PlanStore
    from strongroom.errors import UsageError
    doc = {"name": "P", "target_base": "/srv/restore", "steps": [{"config": config}]}
    with pytest.raises(UsageError, match="a configuration name is printable, without /"):
        Plan.from_doc(doc)
    repo.save_managed_record("plan", "P", doc)  # as someone holding the key could
    assert PlanStore.plans_in_repository(repo) == []


# ---- a long history -------------------------------------------------------------------------------


def test_list_and_report_read_only_the_records_they_show(dr: DR):
    import sqlite3
    from strongroom.dr.store import PlanStore
    dr.config("app", {"a.txt": b"alpha"})
    dr.plan("P", ["app"])
    code, newest, err = summary(dr, "dr", "test", "P")
    assert code == 0, err
    with dr.manager() as manager:
        [doc] = PlanStore(manager.backup_service).runs("P")
        for n in range(50):  # an older history, every other one a real run
            started = 1_000_000.0 + n * 3600
            manager.catalog.add_dr_run(f"old-{n:02d}", "P", "run" if n % 2 else "test", "pass", started,
                                       started + 1, {**doc, "id": f"old-{n:02d}", "mode": "run" if n % 2 else "test"})
    with sqlite3.connect(dr.catalog) as db:  # the oldest record no longer reads
        db.execute("UPDATE dr_runs SET doc = '{' WHERE id = 'old-00'")
    code, lines, err = dr.json("dr", "list")
    assert code == 0, err
    assert lines[0]["last_test"]["id"] == newest["id"] and lines[0]["last_run"]["id"] == "old-49"
    code, lines, err = dr.json("dr", "report", "P")
    assert code == 0, err
    report = lines[-1]
    assert report["id"] == newest["id"]
    assert [point["id"] for point in report["trend"]] == [f"old-{n:02d}" for n in range(12, 50, 2)] + [newest["id"]]
    done = dr.run("dr", "delete", "P", "--json")
    assert done.returncode == 0 and json.loads(done.stdout.decode().splitlines()[-1])["runs_kept"] == 51


def test_a_damaged_record_in_the_catalog_is_one_clear_line_never_an_internal_error(dr: DR):
    import sqlite3
    dr.config("app", {"a.txt": b"alpha"})
    dr.plan("P", ["app"])
    code, newest, err = summary(dr, "dr", "test", "P")
    assert code == 0, err
    with sqlite3.connect(dr.catalog) as db:
        db.execute("UPDATE dr_runs SET doc = '{\"id\": ' WHERE id = ?", (newest["id"],))
    done = dr.run("dr", "report", "P")
    assert done.returncode == 1
    assert done.stderr.decode().startswith("strongroom: a recorded run of plan 'P' does not read: run record: not JSON")
    assert "internal error" not in done.stderr.decode()
    code, lines, err = dr.json("dr", "list")
    assert code == 0 and lines[0]["last_test"]["verdict"] == "unreadable"
    assert "does not read" in err


# ---- a random point in a real run ----------------------------------------------------------------


def test_a_real_run_restores_the_newest_snapshot_where_the_plan_rehearses_a_random_one(dr: DR):
    from strongroom.dr.manager import DisasterRecoveryManager
    from strongroom.dr.runner import PlanRunner
    source = dr.config("app", {"a.txt": b"v0"})
    for version in range(1, 4):
        (source / "a.txt").write_bytes(f"v{version}".encode())
        dr.backup("app")
    dr.plan("P", [{"config": "app", "point": "random", "within": "7d"}])
    with dr.manager() as manager:
        service = manager.backup_service
        snaps = service.snapshots(service.get_config("app"))
        plan = DisasterRecoveryManager(service).get_dr_plan("P")
        for seed in range(4):  # draws that, in a rehearsal, are older points
            run = PlanRunner(service, plan, "run", seed=seed, record=False).run()
            assert run.verdict == "pass" and run.steps[0].snapshot == snaps[-1].id
            assert run.steps[0].rule == "latest (the plan's random within the last 7d is for rehearsals)"
            assert (restored(dr.root / "restore" / "app", source) / "a.txt").read_bytes() == b"v3"
        drawn = {PlanRunner(service, plan, "test", seed=seed, record=False).run().steps[0].snapshot
                 for seed in range(4)}
        assert drawn != {snaps[-1].id}  # the same seeds draw older points in a rehearsal



def test_a_run_never_restores_into_a_repository(dr: DR, tmp_path):
    dr.config("app", {"a.txt": b"alpha"})  # its repository is tmp_path / "repos" / "app"
    dr.plan("P", ["app"], target_base_path=str(tmp_path / "repos"))  # TARGET_BASE/<config>: the repository
    before = sorted(str(p) for p in (tmp_path / "repos" / "app").rglob("*") if "/locks/" not in str(p))
    code, lines, err = dr.json("dr", "run", "P")
    assert code == 2, err
    assert lines[-1]["message"] == f"step app: its target {tmp_path / 'repos' / 'app'} is inside the repository " \
                                   f"{tmp_path / 'repos' / 'app'}; give a target outside every repository"
    assert sorted(str(p) for p in (tmp_path / "repos" / "app").rglob("*") if "/locks/" not in str(p)) == before
    code, last, err = summary(dr, "dr", "test", "P")  # a rehearsal restores elsewhere
    assert (code, last["verdict"]) == (0, "pass"), err


# ---- the clean-up of a rehearsal ----------------------------------------------------------------


def test_the_clean_up_never_crosses_into_a_mount_and_clears_read_only_folders(dr: DR, tmp_path):
    """A command that bind-mounts real data into the scratch area (root, as the tests run in CI):
    the clean-up removes what the test made, and leaves the mount and all it holds alone."""
    dr.config("app", {"a.txt": b"alpha"})
    real = tmp_path / "real-data"
    real.mkdir()
    (real / "precious.db").write_bytes(b"do not delete")
    as_root = os.geteuid() == 0
    mount = f'mkdir "$STRONGROOM_TARGET/live" && mount --bind {real} "$STRONGROOM_TARGET/live"; ' if as_root else ""
    locked = 'mkdir -p "$STRONGROOM_TARGET/ro/sub" && touch "$STRONGROOM_TARGET/ro/sub/f" && chmod 0555 ' \
             '"$STRONGROOM_TARGET/ro/sub" "$STRONGROOM_TARGET/ro"'
    dr.plan("P", [{"config": "app", "after": [{"command": mount + locked}]}])
    scratch = tmp_path / "scratch"
    try:
        code, lines, err = dr.json("dr", "test", "P", "--scratch", str(scratch))
        assert code == 0, err
        assert lines[-1]["verdict"] == "pass"
        warnings = [line["message"] for line in lines if line["message_type"] == "warning"]
        assert (real / "precious.db").read_bytes() == b"do not delete"
        assert not (scratch / "app" / "ro").exists()
        if as_root:
            live = scratch / "app" / "live"
            assert f"left {live} alone: it is another file system (a mount), and what is in it was not restored " \
                   "by the test" in warnings
            assert (live / "precious.db").exists()
        else:
            assert warnings == [] and not scratch.exists()
    finally:
        if as_root and (scratch / "app" / "live").exists():
            subprocess.run(["umount", str(scratch / "app" / "live")], check=False)
    assert (real / "precious.db").read_bytes() == b"do not delete"


def test_a_step_folder_of_a_rehearsal_is_private_in_a_shared_scratch_area(dr: DR, tmp_path):
    source = dr.config("app", {"secret.key": b"k"})
    os.chmod(source / "secret.key", 0o4755)  # a setuid file, as /usr/bin holds
    dr.backup("app")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    seen = tmp_path / "mode"
    dr.plan("P", [{"config": "app", "after": [{"command": f'stat -c %a "$STRONGROOM_TARGET" > {seen}'}]}])
    code, last, err = summary(dr, "dr", "test", "P", "--scratch", str(shared))
    assert (code, last["verdict"]) == (0, "pass"), err
    assert seen.read_text().strip() == "700"


def test_a_run_that_cannot_start_leaves_no_lock_and_no_scratch_area(dr: DR, tmp_path):
    import sqlite3
    from strongroom.dr.manager import DisasterRecoveryManager
    from strongroom.errors import StrongroomError
    dr.config("app", {"a.txt": b"alpha"})
    dr.plan("P", ["app"])
    with dr.manager() as manager:
        api = DisasterRecoveryManager(manager.backup_service)
        with sqlite3.connect(dr.catalog) as db:  # the catalog cannot take the run's sessions
            db.execute("ALTER TABLE sessions RENAME TO sessions_away")
        scratch = tmp_path / "scratch"
        for start in (lambda: api.execute_dr_plan("P"), lambda: api.test_dr_plan("P", scratch=str(scratch))):
            with pytest.raises((StrongroomError, sqlite3.Error)):
                start()
        assert not scratch.exists()
        with sqlite3.connect(dr.catalog) as db:
            db.execute("ALTER TABLE sessions_away RENAME TO sessions")
        run = api.wait(api.execute_dr_plan("P"), timeout=60)  # the first attempt holds no lock
        assert run.verdict == "pass"


def test_step_facts_reach_a_command_only_as_environment_never_as_shell_text(dr: DR, tmp_path):
    dr.config("app", {"a.txt": b"alpha"})
    seen, env_dump, scratch = tmp_path / "seen", tmp_path / "env", tmp_path / "scratch"
    name = 'x"; touch pwned; echo "$(touch pwned)`touch pwned`'  # the after-command runs in the step's folder
    plan = "P $(touch pwned)"
    dr.plan(plan, [{"config": "app", "name": name,
                    "after": [{"command": f'printf %s "$STRONGROOM_STEP" > {seen}; env > {env_dump}'}]}])
    code, last, err = summary(dr, "dr", "test", plan, "--scratch", str(scratch), "--keep", env={
        "STRONGROOM_PASSWORD": "repo-s3cret", "PGPASSWORD": "pg-s3cret", "AWS_SECRET_ACCESS_KEY": "aws-s3cret"})
    assert (code, last["verdict"]) == (0, "pass"), err
    assert seen.read_text() == name
    assert not list(scratch.rglob("pwned")) and not list(Path.cwd().glob("pwned"))
    dumped = env_dump.read_text()
    assert "s3cret" not in dumped and "PASSWORD" not in dumped and f"STRONGROOM_PLAN={plan}" in dumped


def test_a_rehearsal_runs_beside_a_shared_lock_as_a_backup_holds_it(dr: DR):
    dr.config("app", {"a.txt": b"alpha"})
    dr.plan("P", ["app"])
    with dr.manager() as manager:
        service = manager.backup_service
        repo = service.open_repository(service.get_config("app"))
        with repo.lock(exclusive=False):  # another process's backup, as far as the rehearsal can tell
            code, last, err = summary(dr, "dr", "test", "P")
    assert (code, last["verdict"]) == (0, "pass"), err
    assert last["steps"][0]["files_verified"] == 1


def test_a_cancel_is_seen_while_a_step_waits_for_a_lock_a_prune_holds(dr: DR):
    from strongroom.dr.manager import DisasterRecoveryManager
    from strongroom.dr.runner import LOCK_POLL, LOCK_WAIT
    dr.config("app", {"a.txt": b"alpha"})
    dr.plan("P", ["app"])
    with dr.manager() as manager:
        service = manager.backup_service
        api = DisasterRecoveryManager(service)
        repo = service.open_repository(service.get_config("app"))
        with repo.lock(exclusive=True):  # as a prune holds it
            run_id = api.test_dr_plan("P", wait=False)
            [step] = api.step_sessions(run_id)
            deadline = time.monotonic() + 30
            while api.session_progress(step).status != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert api.cancel(run_id)
            # Seen within a piece of the wait, not at its end: the run is back long before LOCK_WAIT.
            run = api.wait(run_id, timeout=(LOCK_WAIT + LOCK_POLL) / 2)
    assert run.steps[0].status == "cancelled" and run.verdict == "fail"


def test_a_snapshot_forgotten_after_the_plan_started_is_said(dr: DR, tmp_path):
    dr.config("first", {"f.txt": b"first"})
    source = dr.config("app", {"a.txt": b"alpha"})
    with dr.manager() as manager:
        [snap] = manager.backup_service.snapshots(manager.backup_service.get_config("app"))
    forgotten = next(p for p in (tmp_path / "repos" / "app" / "snapshots").rglob(f"{snap.id}*"))
    # The first step's command removes the second's snapshot object, as a forget elsewhere would.
    dr.plan("P", [{"config": "first", "before": [{"command": f"rm {forgotten}"}]}, "app"])
    code, last, err = summary(dr, "dr", "run", "P")
    assert (code, last["verdict"]) == (0, "pass-with-warnings"), err
    assert last["reasons"] == [f"step app: snapshot {snap.id[:8]} was removed from the repository after the plan "
                               "started (a forget): what it points to may be pruned"]
    assert (restored(tmp_path / "restore" / "app", source) / "a.txt").read_bytes() == b"alpha"
