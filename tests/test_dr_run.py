"""`dr run` and `dr test` as a person runs them: the real command in a
subprocess, over configurations backed up into real repositories on disk
(one on a real WebDAV server on loopback), with plans in a real catalog.

Order and stop/continue, hooks and their environment, restored bytes and
verification, rehearsals that never touch the real targets, the report of a
rehearsal over a damaged pack, RPO and RTO violations, too little space on a
small file system, Ctrl-C and SIGTERM in the middle of a restore, and the
JSON contract."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from faults import FaultMiddleware
from treeutil import snapshot_tree
from webdav_servers import run_wsgidav
import forked_cli

KiB = 1024
MiB = 1024 * 1024

_SCRUBBED = ("STRONGROOM_PASSWORD", "STRONGROOM_PASSWORD_FILE", "STRONGROOM_PASSWORD_COMMAND", "STRONGROOM_REPO",
             "STRONGROOM_WEBDAV_PASSWORD", "STRONGROOM_WEBDAV_PASSWORD_FILE", "STRONGROOM_CATALOG",
             "STRONGROOM_SECRETS")
SUMMARY_FIELDS = {"verdict", "rto_seconds", "steps"}
STEP_FIELDS = {"config", "snapshot", "snapshot_time", "rpo_seconds", "duration_seconds", "files_verified",
               "warnings", "errors", "problems"}


class DR:
    """A catalog, secrets and cache in tmp_path; configurations and plans made
    through the Python API; `dr run` / `dr test` through the real command."""

    def __init__(self, tmp_path: Path, monkeypatch) -> None:
        self.root = tmp_path
        self.catalog = tmp_path / "state" / "catalog.db"
        self.secrets = tmp_path / "state" / "secrets.json"
        self.cache = tmp_path / "cache"
        for name in _SCRUBBED:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
        self.env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        self.env.update(STRONGROOM_CATALOG=str(self.catalog), STRONGROOM_SECRETS=str(self.secrets),
                        STRONGROOM_CACHE_DIR=str(self.cache), STRONGROOM_SECRETS_BACKEND="file")

    @contextmanager
    def manager(self):
        from strongroom import create_backup_manager
        self.catalog.parent.mkdir(exist_ok=True)
        manager = create_backup_manager(db_path=str(self.catalog), secrets_path=str(self.secrets),
                                        cache_root=str(self.cache))
        try:
            yield manager
        finally:
            manager.close()
            manager.catalog.close()

    def config(self, name: str, files: dict[str, bytes], backup: bool = True, **fields) -> Path:
        """A configuration backing up a folder holding `files` into its own local repository."""
        from strongroom import BackupConfig
        source = self.root / "sources" / name
        write_files(source, files)
        with self.manager() as manager:
            if not fields.get("target_client_id"):
                fields["target_path"] = str(self.root / "repos" / name)
            manager.add_config(BackupConfig(name=name, source_paths=[str(source)], **fields))
            if backup:
                manager.manual_backup(name, "full")
        return source

    def backup(self, name: str) -> None:
        with self.manager() as manager:
            manager.manual_backup(name, "full")

    def plan(self, name: str, steps: list, **options) -> None:
        from strongroom.dr.manager import DisasterRecoveryManager
        options.setdefault("target_base_path", str(self.root / "restore"))
        with self.manager() as manager:
            DisasterRecoveryManager(manager.backup_service).create_dr_plan(name, steps=steps, **options)

    def run(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return forked_cli.run([*args],
                              env={**self.env, **(env or {})}, timeout=120)

    def json(self, *args: str, env: dict | None = None) -> tuple[int, list[dict], str]:
        done = self.run(*args, "--json", env=env)
        lines = done.stdout.decode().splitlines()
        return done.returncode, [json.loads(line) for line in lines], done.stderr.decode()

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "strongroom", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env)


@pytest.fixture
def dr(tmp_path, monkeypatch) -> DR:
    return DR(tmp_path, monkeypatch)


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def restored(target: Path, source: Path) -> Path:
    """Where a restore into `target` puts `source` (its absolute path below the target)."""
    return target / str(source).lstrip("/")


def summary_of(events: list[dict]) -> dict:
    assert events and events[-1]["message_type"] == "summary", events[-3:]
    assert sum(1 for e in events if e["message_type"] == "summary") == 1
    return events[-1]


def statuses(summary: dict) -> list[str]:
    return [s["status"] for s in summary["steps"]]


def hook(command: str, mode: str = "essential", timeout: float = 60) -> dict:
    return {"command": command, "mode": mode, "timeout": timeout}


def log_hooks(log: Path) -> dict:
    return {"before": [hook(f'echo "before $STRONGROOM_STEP" >> {log}')],
            "after": [hook(f'echo "after $STRONGROOM_STEP" >> {log}')]}


# ---- the pure parts: which snapshot, which verdict -------------------------------------------


def test_point_rules_pick_from_a_table_of_times():
    from strongroom.dr.plan import PointRule
    from strongroom.dr.points import choose_snapshot
    from strongroom.errors import SnapshotNotFound
    from strongroom.model.snapshot import Snapshot

    now = datetime.fromisoformat("2026-12-01T12:00:00+00:00")
    times = ["2026-11-20T02:00:00+00:00", "2026-11-28T02:00:00+01:00", "2026-11-30T02:00:00+00:00",
             "2026-12-01T02:00:00+00:00"]
    snaps = [Snapshot(t, "00", ("/d",), "h", id=f"{i}" * 64) for i, t in enumerate(times)]
    rng = random.Random(1)
    shuffled = [snaps[2], snaps[0], snaps[3], snaps[1]]
    assert choose_snapshot(shuffled, PointRule(), now, rng) is snaps[3]
    at = datetime.fromisoformat("2026-11-30T02:00:00+00:00")
    assert choose_snapshot(shuffled, PointRule("at", at), now, rng) is snaps[2]  # at or before: equal counts
    assert choose_snapshot(shuffled, PointRule("at", datetime.fromisoformat("2026-11-29T00:00:00+00:00")),
                           now, rng) is snaps[1]
    with pytest.raises(SnapshotNotFound):
        choose_snapshot(shuffled, PointRule("at", datetime.fromisoformat("2026-01-01T00:00:00+00:00")), now, rng)
    week = PointRule("random", within=7 * 86400)
    drawn = {choose_snapshot(shuffled, week, now, random.Random(seed)).id for seed in range(40)}
    assert drawn == {snaps[1].id, snaps[2].id, snaps[3].id}  # never the one of 11 days ago
    same = [choose_snapshot(shuffled, week, now, random.Random(9)).id for _ in range(3)]
    assert len(set(same)) == 1  # a seed draws the same again
    with pytest.raises(SnapshotNotFound, match="no snapshot in the last 1h"):
        choose_snapshot(shuffled, PointRule("random", within=3600), now, rng)
    with pytest.raises(SnapshotNotFound):
        choose_snapshot([], PointRule(), now, rng)


def step_result(name: str = "app", **fields):
    from strongroom.dr.results import StepResult
    doc = dict(name=name, config=name, repository="/r", status="passed", target="/t", snapshot="3fa2c1d0" + "0" * 56,
               snapshot_time=None, rule="latest", rpo_seconds=60.0, rpo_target=None, rto_target=None, started=None,
               duration_seconds=5.0, restore_seconds=4.0, files=3, bytes=10, throughput=2.5, files_verified=3,
               verified=True, warnings=0, errors=0, messages=(), problems=(), hooks=())
    doc.update(fields)
    return StepResult(**doc)


@pytest.mark.parametrize("steps, rto, target, verdict, reasons", [
    ([step_result()], 5.0, None, "pass", []),
    ([step_result(status="warning", warnings=1, messages=("after-command 'x' exited 1",))], 5.0, None,
     "pass-with-warnings", ["step app: after-command 'x' exited 1"]),
    ([step_result(rpo_seconds=187200.0, rpo_target=86400.0)], 5.0, None, "fail",
     ["step app: snapshot 3fa2c1d0 is 2d4h old, older than the RPO target 1d"]),
    ([step_result()], 5.0, 0.001, "fail", ["the plan took 5s to recover, longer than the RTO target 0.001s"]),
    ([step_result(rto_target=2.0)], 5.0, None, "fail", ["step app: took 5s, longer than its RTO target 2s"]),
    ([step_result(status="failed", messages=("no snapshot yet",)),
      step_result("b", status="skipped", messages=("step app failed and the plan stops on a failure",),
                  rpo_target=1.0)], 5.0, None, "fail",
     ["step app: failed: no snapshot yet", "step b: skipped (step app failed and the plan stops on a failure)"]),
    ([step_result(status="cancelled")], 5.0, None, "fail", ["step app: cancelled"]),
    ([step_result(verified=False)], 5.0, None, "fail", ["step app: not every restored file was verified"]),
])
def test_the_verdict_from_a_table_of_results(steps, rto, target, verdict, reasons):
    from strongroom.dr.verdict import judge
    assert judge(steps, rto, target, verify=True) == (verdict, tuple(reasons))


# ---- order, stop and continue, hooks ---------------------------------------------------------


def test_steps_run_in_order_and_a_failing_middle_step_stops_or_not(dr, tmp_path):
    for name in ("database", "app", "files"):
        dr.config(name, {f"{name}.txt": name.encode() * 100})
    log = tmp_path / "order.log"
    failing = {"config": "app", "before": [hook(f'echo "before $STRONGROOM_STEP" >> {log}')],
               "after": [hook(f'echo "after $STRONGROOM_STEP" >> {log}'), hook("exit 1")]}
    steps = [{"config": "database", **log_hooks(log)}, failing, {"config": "files", **log_hooks(log)}]
    dr.plan("stops", steps, target_base_path=str(tmp_path / "stop"))
    dr.plan("goes on", steps, target_base_path=str(tmp_path / "go"), on_failure="continue")

    code, events, _ = dr.json("dr", "run", "stops")
    summary = summary_of(events)
    assert code == 1 and summary["verdict"] == "fail"
    assert statuses(summary) == ["passed", "failed", "skipped"]
    assert log.read_text().split("\n")[:-1] == ["before database", "after database", "before app", "after app"]
    assert "after-command 'exit 1' exited 1" in summary["steps"][1]["messages"][0]
    assert any("step app: failed" in r for r in summary["reasons"])
    assert (tmp_path / "stop" / "database").is_dir() and not (tmp_path / "stop" / "files").exists()
    # Each step started only after the one before had ended.
    order = [(e["step"], e["action"]) for e in events if e["message_type"] == "dr_step"]
    assert order == [("database", "start"), ("database", "end"), ("app", "start"), ("app", "end")]

    log.unlink()
    code, events, _ = dr.json("dr", "run", "goes on")
    summary = summary_of(events)
    assert code == 1 and statuses(summary) == ["passed", "failed", "passed"]
    assert log.read_text().split("\n")[:-1] == ["before database", "after database", "before app", "after app",
                                                 "before files", "after files"]
    assert (tmp_path / "go" / "files").is_dir()


def test_an_optional_hook_failing_is_a_warning_and_hooks_get_the_facts_never_a_secret(dr, tmp_path):
    source = dr.config("app", {"a.txt": b"alpha\n", "sub/b.bin": random.Random(1).randbytes(200 * KiB)})
    seen = tmp_path / "env.txt"
    dr.plan("warns", [{"config": "app", "before": [hook(f"env > {seen}")],
                       "after": [hook("echo probe failed; exit 4", mode="optional")]}])
    code, events, _ = dr.json("dr", "run", "warns", env={"STRONGROOM_PASSWORD": "hunter2-secret",
                                                          "STRONGROOM_WEBDAV_PASSWORD": "dav-secret"})
    summary = summary_of(events)
    assert code == 0 and summary["verdict"] == "pass-with-warnings"
    [step] = summary["steps"]
    assert step["status"] == "warning" and step["warnings"] == 1 and step["errors"] == 0
    assert "after-command 'echo probe failed; exit 4' exited 4" in summary["reasons"][0]

    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    target = tmp_path / "restore" / "app"
    assert env["STRONGROOM_PLAN"] == "warns" and env["STRONGROOM_STEP"] == "app"
    assert env["STRONGROOM_CONFIG"] == "app" and env["STRONGROOM_TARGET"] == str(target)
    assert env["STRONGROOM_MODE"] == "run" and env["STRONGROOM_SNAPSHOT"] == step["snapshot"]
    assert datetime.fromisoformat(env["STRONGROOM_SNAPSHOT_TIME"].replace("Z", "+00:00")) == \
        datetime.fromisoformat(step["snapshot_time"].replace("Z", "+00:00"))
    text = seen.read_text()
    assert "hunter2-secret" not in text and "dav-secret" not in text and "PASSWORD" not in text
    assert snapshot_tree(restored(target, source)) == snapshot_tree(source)


def test_a_hook_running_strongroom_apply_finds_the_configuration_file(dr, tmp_path):
    # STRONGROOM_CONFIG is the step's configuration name in a hook; the file
    # the parent was given as STRONGROOM_CONFIG reaches it as STRONGROOM_CONFIG_FILE.
    dr.config("app", {"a.txt": b"alpha\n"})
    declared = tmp_path / "declared.toml"
    declared.write_text("")
    out = tmp_path / "apply.txt"
    dr.plan("applies", [{"config": "app", "after": [
        hook(f"{sys.executable} -m strongroom apply --dry-run > {out} 2>&1; "
             f"echo \"file=$STRONGROOM_CONFIG_FILE config=$STRONGROOM_CONFIG\" >> {out}")]}])
    code, events, stderr = dr.json("dr", "run", "applies", env={"STRONGROOM_CONFIG": str(declared),
                                                                 "HOME": str(tmp_path / "home")})
    assert code == 0 and summary_of(events)["verdict"] == "pass", (stderr, out.read_text())
    assert out.read_text().splitlines() == ["no changes", f"file={declared} config=app"]


# ---- what is restored --------------------------------------------------------------------------


def test_restored_bytes_are_the_sources_and_every_file_is_verified(dr, tmp_path):
    rng = random.Random(7)
    sources = {name: dr.config(name, {"x.bin": rng.randbytes(300 * KiB), "d/y.txt": b"y\n" * 500,
                                      "d/e/z": b""}) for name in ("one", "two")}
    dr.plan("whole", ["one", {"config": "two", "target": str(tmp_path / "elsewhere")}])
    code, events, _ = dr.json("dr", "run", "whole")
    summary = summary_of(events)
    assert code == 0 and summary["verdict"] == "pass" and summary["reasons"] == []
    for step in summary["steps"]:
        assert step["files"] == 3 and step["files_verified"] == step["files"]
        assert step["errors"] == 0 and step["problems"] == []
    assert snapshot_tree(restored(tmp_path / "restore" / "one", sources["one"])) == snapshot_tree(sources["one"])
    assert snapshot_tree(restored(tmp_path / "elsewhere", sources["two"])) == snapshot_tree(sources["two"])
    # The plan's progress carries its rate and the time left once bytes have moved.
    rated = [e for e in events if e["message_type"] == "dr_status" and e["rate"] > 0]
    assert rated and all(isinstance(e["eta"], (int, float)) and e["eta"] >= 0 for e in rated)
    # A second run finds every file correct already and writes none again.
    code, events, _ = dr.json("dr", "run", "whole")
    assert code == 0
    last = [e for e in events if e["message_type"] == "status" and e["step"] == "one"][-1]
    assert last["files_skipped"] == 3 and last["files_restored"] == 0


def test_a_step_with_include_globs_restores_only_the_matching_files(dr, tmp_path):
    source = dr.config("app", {"db/main.sql": b"create table t;\n" * 100, "db/notes.txt": b"notes\n",
                               "top.sql": b"select 1;\n", "big.bin": random.Random(3).randbytes(100 * KiB)})
    dr.plan("only sql", [{"config": "app", "include": ["*.sql"]}])
    code, events, _ = dr.json("dr", "run", "only sql")
    summary = summary_of(events)
    assert code == 0 and summary["verdict"] == "pass", summary
    [step] = summary["steps"]
    assert step["files"] == step["files_verified"] == 2
    target = restored(tmp_path / "restore" / "app", source)
    found = sorted(str(p.relative_to(target)) for p in target.rglob("*") if not p.is_dir())
    assert found == ["db/main.sql", "top.sql"]
    for name in found:
        assert (target / name).read_bytes() == (source / name).read_bytes()


def test_a_rehearsal_records_the_time_its_cleanup_took(dr, tmp_path):
    dr.config("app", {f"d{i}/f{j}.txt": b"x" * 1000 for i in range(5) for j in range(20)})
    dr.plan("cleaned", ["app"])
    report = tmp_path / "report.json"
    done = dr.run("dr", "test", "cleaned", "--report", str(report))
    assert done.returncode == 0, done.stderr
    doc = json.loads(report.read_text())
    assert doc["steps"][0]["files_verified"] == 100
    assert doc["cleanup_seconds"] > 0


def test_a_rehearsal_never_touches_the_real_targets_and_removes_its_scratch(dr, tmp_path):
    source = dr.config("app", {"a.txt": b"alpha\n" * 50, "b/c.bin": random.Random(2).randbytes(100 * KiB)})
    seen = tmp_path / "env.txt"
    base = tmp_path / "prod" / "restore"
    dr.plan("rehearsed", [{"config": "app", "after": [hook(f"env > {seen}; ls -R > /dev/null")]}],
            target_base_path=str(base))
    (tmp_path / "prod").mkdir()

    code, events, _ = dr.json("dr", "test", "rehearsed")
    summary = summary_of(events)
    assert code == 0 and summary["verdict"] == "pass" and summary["mode"] == "test"
    assert not base.exists()
    assert os.listdir(tmp_path / "prod") == []  # its private scratch, beside the target base, is gone
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert env["STRONGROOM_MODE"] == "test"
    assert env["STRONGROOM_TARGET"].startswith(str(tmp_path / "prod")) and env["STRONGROOM_TARGET"].endswith("/app")

    scratch = tmp_path / "scratch"
    code, events, _ = dr.json("dr", "test", "rehearsed", "--scratch", str(scratch))
    assert code == 0 and not scratch.exists() and not base.exists()

    code, events, _ = dr.json("dr", "test", "rehearsed", "--scratch", str(scratch), "--keep")
    assert code == 0 and not base.exists()
    assert snapshot_tree(restored(scratch / "app", source)) == snapshot_tree(source)
    # A scratch area that holds anything is refused before any work.
    done = dr.run("dr", "test", "rehearsed", "--scratch", str(scratch))
    assert done.returncode == 2 and b"is not empty" in done.stderr


def test_a_report_file_is_written(dr, tmp_path):
    dr.config("app", {"a.txt": b"alpha\n"})
    dr.plan("reported", ["app"])
    report = tmp_path / "out" / "report.json"
    report.parent.mkdir()
    done = dr.run("dr", "test", "reported", "--report", str(report))
    assert done.returncode == 0, done.stderr
    doc = json.loads(report.read_text())
    assert doc["plan"] == "reported" and doc["verdict"] == "pass" and doc["steps"][0]["config"] == "app"
    # The format is the file name's; the plan's earlier runs are the trend.
    for name in ("report.md", "report.html"):
        done = dr.run("dr", "test", "reported", "--report", str(tmp_path / "out" / name))
        assert done.returncode == 0, done.stderr
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "reported" in markdown and "pass" in markdown and "|" in markdown
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and "reported" in page and "<svg" in page
    # Each rehearsal was recorded: `dr report` shows all three, the last with the others as its trend.
    reports = [json.loads(line) for line in dr.run("dr", "report", "reported", "--last", "5", "--json")
               .stdout.decode().splitlines()]
    assert [r["mode"] for r in reports] == ["test"] * 3 and len(reports[-1]["trend"]) == 3
    done = dr.run("dr", "test", "reported", "--report", str(tmp_path / "report.txt"))
    assert done.returncode == 2 and b".md, .json or .html" in done.stderr


def test_a_flipped_byte_fails_the_rehearsal_and_names_the_files_it_touches(dr, tmp_path):
    dr.config("damaged", {"hit.bin": random.Random(5).randbytes(300 * KiB), "ok.txt": b"fine\n"})
    source = dr.config("fine", {"a.txt": b"alpha\n"})
    pack = max((p for p in (tmp_path / "repos" / "damaged" / "data").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x55
    pack.write_bytes(bytes(data))
    dr.plan("damage", ["damaged", "fine"], on_failure="continue")
    report = tmp_path / "r.md"
    code, events, _ = dr.json("dr", "test", "damage", "--scratch", str(tmp_path / "scratch"), "--keep",
                              "--report", str(report))
    summary = summary_of(events)
    assert code == 1 and summary["verdict"] == "fail" and statuses(summary) == ["failed", "passed"]
    hit, fine = summary["steps"]
    assert hit["problems"] and all(p["files"] for p in hit["problems"])
    # The damaged pack is named, with every file of the snapshot whose content is in it (as the snapshot has them).
    [problem] = hit["problems"]
    assert problem["object"].startswith("pack ")
    assert str(tmp_path / "sources" / "damaged" / "hit.bin").lstrip("/") in [f.lstrip("/") for f in problem["files"]]
    assert hit["errors"] >= 1 and fine["problems"] == [] and fine["files_verified"] == 1
    assert any(r.startswith("step damaged: failed: 1 file could not be restored") for r in summary["reasons"])
    assert not (restored(tmp_path / "scratch" / "damaged", tmp_path / "sources" / "damaged") / "hit.bin").exists()
    assert snapshot_tree(restored(tmp_path / "scratch" / "fine", source)) == snapshot_tree(source)

    # The report of this very rehearsal says the same to a person: Markdown from --report, and the
    # HTML page of the recorded run. Each step's part of a report runs from its heading to the next.
    hit_file = str(tmp_path / "sources" / "damaged" / "hit.bin")
    head, step_damaged, step_fine = report.read_text().split("\n## ")[:3]
    assert "**Verdict: fail**" in head and "\n- step damaged: failed: 1 file could not be restored\n" in head
    assert step_damaged.startswith("Step 1: damaged (failed)\n")
    assert f"- damaged {problem['object']}: " in step_damaged and hit_file in step_damaged
    assert "| Verification | failed: 1 damaged object(s)" in step_damaged
    assert step_fine.startswith("Step 2: fine (passed)\n") and "| Verification | every file verified (1) |" in step_fine
    assert "damaged pack" not in step_fine and "failed" not in step_fine
    page = tmp_path / "r.html"
    done = dr.run("dr", "report", "damage", "--format", "html", "--output", str(page))
    assert done.returncode == 0, done.stderr
    head, step_damaged, step_fine = page.read_text().split("<section>")[:3]
    assert '<span class="verdict fail">Verdict: fail</span>' in head
    assert "<li>step damaged: failed: 1 file could not be restored</li>" in head
    assert step_damaged.startswith('<h2>Step 1: damaged <span class="status failed">(failed)</span></h2>')
    assert "<h3>Damaged objects</h3>" in step_damaged
    assert f"<li>damaged {problem['object']}: " in step_damaged and hit_file in step_damaged
    assert step_fine.startswith('<h2>Step 2: fine <span class="status passed">(passed)</span></h2>')
    assert "every file verified (1)" in step_fine and "Damaged objects" not in step_fine
    # The damaged repository's check carries what the restore found; the other's has no problem.
    report_json = tmp_path / "r.json"
    assert dr.run("dr", "report", "damage", "--format", "json", "--output", str(report_json)).returncode == 0
    checks = {c["repository"].rstrip("/").rsplit("/", 1)[-1]: c for c in json.loads(report_json.read_text())["checks"]}
    assert checks["fine"]["problems"] == []
    assert any(line.startswith(f"{problem['object']}: ") and line.endswith("(found by step damaged)")
               for line in checks["damaged"]["problems"])


# ---- goals -----------------------------------------------------------------------------------


def test_rpo_and_rto_violations_fail_and_say_so(dr):
    dr.config("app", {"a.txt": b"alpha\n"})
    backed_up = time.monotonic()
    dr.plan("fresh enough", ["app"], rpo=1)
    dr.plan("too slow", ["app"], rto="0.001s")

    code, events, _ = dr.json("dr", "test", "too slow")
    summary = summary_of(events)
    assert code == 1 and summary["verdict"] == "fail" and summary["rto_target"] == 0.001
    assert [r for r in summary["reasons"] if "RTO" in r][0].endswith("longer than the RTO target 0.001s")
    # A real run is judged the same way.
    code, events, _ = dr.json("dr", "run", "too slow")
    assert code == 1 and summary_of(events)["verdict"] == "fail"

    time.sleep(max(0.0, 1.5 - (time.monotonic() - backed_up)))  # the snapshot is older than 1s now
    code, events, _ = dr.json("dr", "test", "fresh enough")
    summary = summary_of(events)
    assert code == 1 and summary["verdict"] == "fail" and statuses(summary) == ["passed"]
    assert summary["steps"][0]["rpo_seconds"] > 1
    [reason] = summary["reasons"]
    assert reason.startswith(f"step app: snapshot {summary['steps'][0]['snapshot'][:8]} is ")
    assert reason.endswith("old, older than the RPO target 1s")
    # A point drawn at random is judged the same way: a rehearsal never passes on a stale draw.
    dr.plan("drawn stale", [{"config": "app", "point": "random", "within": "1h"}], rpo=1)
    code, events, _ = dr.json("dr", "test", "drawn stale")
    summary = summary_of(events)
    assert code == 1 and summary["verdict"] == "fail" and statuses(summary) == ["passed"]
    [reason] = summary["reasons"]
    assert "old, older than the RPO target 1s (drawn random within the last 1h (seed " in reason


def test_a_point_in_time_chooses_the_older_snapshot(dr, tmp_path):
    source = dr.config("app", {"v.txt": b"version 1\n"})
    (source / "v.txt").write_bytes(b"version 2 is longer\n")
    dr.backup("app")
    with dr.manager() as manager:
        first, second = manager.backup_service.snapshots(manager.get_config("app"))
    dr.plan("timed", ["app"])
    code, events, _ = dr.json("dr", "run", "timed", "--at", first.time)  # at or before: the first
    summary = summary_of(events)
    assert code == 0 and summary["steps"][0]["snapshot"] == first.id
    assert (restored(tmp_path / "restore" / "app", source) / "v.txt").read_bytes() == b"version 1\n"
    assert summary["steps"][0]["messages"] == [] and first.datetime < second.datetime
    code, events, _ = dr.json("dr", "run", "timed", "--target-base", str(tmp_path / "now"))
    assert code == 0
    assert (restored(tmp_path / "now" / "app", source) / "v.txt").read_bytes() == b"version 2 is longer\n"
    start = [e for e in events if e["message_type"] == "dr_step"][0]
    assert start["rule"] == "latest"


def test_a_random_point_names_its_seed(dr):
    dr.config("app", {"a.txt": b"alpha\n"})
    dr.plan("drawn", [{"config": "app", "point": "random", "within": "1h"}])
    code, events, _ = dr.json("dr", "test", "drawn")
    assert code == 0
    start = [e for e in events if e["message_type"] == "dr_step"][0]
    assert start["rule"].startswith("random within the last 1h (seed ") and start["rule"].endswith(")")


def test_a_rehearsal_reads_a_further_share_of_the_packs_when_asked(dr, tmp_path):
    source = dr.config("app", {"first.bin": random.Random(11).randbytes(100 * KiB)})
    for n in range(3):  # a pack per backup: only the first one holds first.bin
        (source / f"more{n}.bin").write_bytes(random.Random(n).randbytes(100 * KiB))
        dr.backup("app")
    dr.plan("one file", [{"config": "app", "include": ["first.bin"]}])

    def check_of(*args: str) -> dict:
        report = tmp_path / "report.json"
        code, events, stderr = dr.json("dr", "test", "one file", "--report", str(report), *args)
        assert code == 0 and summary_of(events)["verdict"] == "pass", stderr
        [check] = json.loads(report.read_text())["checks"]
        assert check["structure_ok"] and check["problems"] == []
        return check

    restored_only = check_of()
    assert restored_only["packs_total"] >= 4 and restored_only["packs_read"] == 1
    everything = check_of("--read-data-subset", "100%")
    assert (everything["packs_read"], everything["share_read"]) == (everything["packs_total"], 1.0)
    done = dr.run("dr", "test", "one file", "--read-data-subset", "0%")
    assert done.returncode == 2 and "more than 0%" in done.stderr.decode()


# ---- space -------------------------------------------------------------------------------------


@contextmanager
def small_file_system():
    """A 1 MiB tmpfs as root (as the tests run in CI); otherwise /proc, whose
    statvfs says nothing is free, which is what the check looks at."""
    if os.geteuid() != 0:
        yield Path("/proc")
        return
    place = Path(tempfile.mkdtemp(prefix="strongroom-small-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(place)], check=True)
    try:
        yield place
    finally:
        subprocess.run(["umount", str(place)], check=True)
        place.rmdir()


def test_too_little_space_fails_the_step_before_anything_is_written(dr, tmp_path):
    ran = tmp_path / "before-ran"
    dr.config("big", {"big.bin": random.Random(3).randbytes(2 * MiB)})
    dr.config("small", {"s.txt": b"small\n"})
    with small_file_system() as small:
        target = small / "restore-here"
        dr.plan("no room", ["small", {"config": "big", "target": str(target), "before": [hook(f"touch {ran}")]}],
                on_failure="continue")
        code, events, _ = dr.json("dr", "run", "no room")
        summary = summary_of(events)
        assert code == 1 and statuses(summary) == ["passed", "failed"]
        message = summary["steps"][1]["messages"][0]
        assert "space" in message and str(target) in message
        assert not target.exists() and not ran.exists()
        assert not [e for e in events if e["message_type"] == "status" and e["step"] == "big"]


# ---- stopping ----------------------------------------------------------------------------------


def wait_for(predicate, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_cancels_the_restore_in_flight_cleanly_and_a_rerun_skips_what_was_whole(dr, tmp_path, signum,
                                                                                         exit_code):
    middleware: list[FaultMiddleware] = []

    def wrap(app):
        middleware.append(FaultMiddleware(app, root="/dav/"))
        return middleware[0]

    rng = random.Random(11)
    files = {f"f{i}.bin": rng.randbytes(200 * KiB) for i in range(6)}
    ready, go = tmp_path / "ready", tmp_path / "go"
    with run_wsgidav(wrap_app=wrap) as dav:
        from strongroom import WebDAVCredentials
        with dr.manager() as manager:
            manager.webdav_service.add_client("dav", WebDAVCredentials(dav.username, dav.password, dav.url))
        dr.config("first", {"one.txt": b"one\n" * 100})
        # Three backups of two new files each: the snapshot's files are in three packs.
        source = dr.config("remote", dict(list(files.items())[:2]), target_client_id="dav", target_path="repo",
                           compression=False)
        for more in (2, 4):
            write_files(source, dict(list(files.items())[more:more + 2]))
            dr.backup("remote")
        # The before-command holds the step at its start until the test has made the server slow.
        wait = hook(f"touch {ready}; while [ ! -e {go} ]; do sleep 0.05; done")
        dr.plan("stoppable", ["first", {"config": "remote", "before": [wait]}, {"config": "first", "name": "again",
                                                                                  "target": "again"}])
        child = dr.popen("dr", "run", "stoppable", "--json")
        target = restored(tmp_path / "restore" / "remote", source)

        def some_file_is_whole() -> bool:
            return any((target / name).is_file() and (target / name).read_bytes() == data
                       for name, data in files.items())

        try:
            wait_for(ready.exists)
            # One pack is read at once; every other waits, so the signal finds the step in flight.
            middleware[0].slow(2, methods=["GET"], after=1)
            go.touch()
            wait_for(some_file_is_whole)
            child.send_signal(signum)
            out, err = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
        assert child.returncode == exit_code, err
        seen = [json.loads(line) for line in out.decode().splitlines()]
        summary = summary_of(seen)
        assert summary["verdict"] == "fail" and statuses(summary) == ["passed", "cancelled", "skipped"]
        assert "step remote: cancelled" in summary["reasons"]
        assert b"interrupted" in err
        # The step in flight cleaned up: no temporary or half-written file is left in its
        # target, and each file there is whole, with the snapshot's content and mtime.
        left = sorted(os.listdir(target))
        assert set(left) <= set(files) and left, left
        for name in left:
            assert (target / name).read_bytes() == files[name]
            assert (target / name).stat().st_mtime_ns == (source / name).stat().st_mtime_ns
        assert len(left) < len(files)  # the cancel came before the whole snapshot was written

        middleware[0].clear()
        code, events_again, _ = dr.json("dr", "run", "stoppable")
        summary = summary_of(events_again)
        assert code == 0 and statuses(summary) == ["passed", "passed", "passed"]
        assert snapshot_tree(target) == snapshot_tree(source)
        remote = [e for e in events_again if e["message_type"] == "status" and e["step"] == "remote"][-1]
        assert remote["files_skipped"] == len(left) and remote["files_restored"] == len(files) - len(left)
        [step] = [s for s in summary["steps"] if s["config"] == "remote"]
        assert step["files_verified"] == step["files"] == len(files)
        first = [e for e in events_again if e["message_type"] == "status" and e["step"] == "first"][-1]
        assert first["files_skipped"] == 1 and first["files_restored"] == 0


# ---- the contract for scripts ------------------------------------------------------------------


def test_json_ends_with_one_summary_holding_the_contract_fields(dr):
    dr.config("app", {"a.txt": b"alpha\n", "b.txt": b"bravo\n"})
    dr.plan("Production DR", ["app"], rto="30m", rpo="24h")
    for command in ("run", "test"):
        code, events, _ = dr.json("dr", command, "Production DR")
        summary = summary_of(events)
        assert code == 0 and summary["schema"] == "strongroom/1"
        assert SUMMARY_FIELDS <= set(summary) and summary["plan"] == "Production DR"
        assert summary["mode"] == command and summary["rto_target"] == 1800 and summary["rpo_target"] == 86400
        [step] = summary["steps"]
        assert STEP_FIELDS <= set(step)
        assert step["config"] == "app" and len(step["snapshot"]) == 64 and step["files_verified"] == 2
        assert 0 <= step["rpo_seconds"] < 3600 and step["duration_seconds"] >= 0
        kinds = {e["message_type"] for e in events}
        assert {"dr_step", "dr_status", "status", "summary"} <= kinds
        status = [e for e in events if e["message_type"] == "dr_status"][-1]
        assert status["plan"] == "Production DR" and status["steps"] == 1 and status["percent"] == 100.0
        assert status["files_done"] == status["total_files"] == 2
        restore_events = [e for e in events if e["message_type"] == "status"]
        assert all(e["plan"] == "Production DR" and e["step"] == "app" for e in restore_events)
    # An unknown plan is one line, exit 2.
    done = dr.run("dr", "run", "nope")
    assert done.returncode == 2 and done.stderr.decode().strip() == "strongroom: no DR plan named 'nope'"
