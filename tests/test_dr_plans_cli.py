"""`strongroom dr` create, list, show, delete and report, run as a person runs them:
the real CLI in subprocesses over a real catalog and real (local) repositories."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dr_runs import EVIL_OUTPUT, START, failed_run, plan_run
from strongroom import create_backup_manager
from strongroom.dr.plan import Plan
from strongroom.dr.store import PlanStore
import forked_cli

_SCRUBBED = ("STRONGROOM_PASSWORD", "STRONGROOM_PASSWORD_FILE", "STRONGROOM_PASSWORD_COMMAND", "STRONGROOM_REPO",
             "STRONGROOM_CATALOG", "STRONGROOM_SECRETS")
PLAN = "Production DR"

RICH_PLAN = """
name = "Production DR"
target_base = "{base}"
description = "the shop, restored in order"
rpo = "24h"
rto = "30m"
on_failure = "continue"

[[steps]]
config = "database"
point = "random"
within = "7d"
database = "shop"
rpo = "6h"

[[steps.before]]
command = "systemctl stop shop | logger -t 'dr'"
timeout = "2m"

[[steps.after]]
command = "pg_isready -q"
mode = "optional"
timeout = 30

[[steps]]
config = "app"
name = "app code"
target = "/srv/app-restored"
point = "at"
at = "2026-11-30T02:00:00Z"
include = ["/app/*.py", "/app/conf"]

[[steps]]
config = "files"
"""


class DR:
    """The real `strongroom` with its catalog, secrets and cache in tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.catalog = tmp_path / "state" / "catalog.db"
        self.secrets = tmp_path / "state" / "secrets.json"
        self.cache = tmp_path / "cache"
        self.env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        self.env.update(STRONGROOM_CATALOG=str(self.catalog), STRONGROOM_SECRETS=str(self.secrets),
                        STRONGROOM_CACHE_DIR=str(self.cache), STRONGROOM_SECRETS_BACKEND="file")

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        done = forked_cli.run([*args], env=self.env,
                              timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"strongroom {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout.decode()}\n{done.stderr.decode()}")
        return done

    def out(self, *args: str) -> str:
        return self.run(*args, check=True).stdout.decode()

    def json(self, *args: str) -> list[dict]:
        return [json.loads(line) for line in self.out(*args, "--json").splitlines()]

    def refused(self, *args: str, code: int = 2) -> str:
        """The one error line of a command that must fail with `code`."""
        done = self.run(*args)
        assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
        lines = done.stderr.decode().strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    def manager(self, monkeypatch):
        """A manager in this process, as the command line makes it: the same catalog, secrets and cache."""
        monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
        return create_backup_manager(db_path=str(self.catalog), secrets_path=str(self.secrets),
                                     cache_root=str(self.cache))


@pytest.fixture(scope="module")
def configured(tmp_path_factory) -> Path:
    """A state folder (catalog and secrets) with three configurations, each with its repository.
    Made once: each test works on its own copy of the catalog (the repositories are shared)."""
    root = tmp_path_factory.mktemp("configured")
    d = DR(root)
    source = root / "src"
    source.mkdir()
    (source / "a.txt").write_text("alpha\n")
    for name in ("database", "app", "files"):
        d.run("config", "add", name, "--source", str(source), "--target-dir", str(root / f"repo-{name}"),
              check=True)
    return root / "state"


@pytest.fixture
def dr(tmp_path, configured) -> DR:
    shutil.copytree(configured, tmp_path / "state")
    return DR(tmp_path)


def test_create_list_show_delete_a_plan_named_with_a_space(dr, tmp_path):
    base = tmp_path / "restore"
    [made] = dr.json("dr", "create", PLAN, "--order", "database,app,files", "--target-base", str(base),
                     "--rto", "30m", "--rpo", "24h", "--continue-on-error")
    assert made["message_type"] == "summary" and made["schema"] == "strongroom/1"
    assert made["plan"] == PLAN and made["steps"] == ["database", "app", "files"]
    assert made["rto_target"] == 1800 and made["rpo_target"] == 86400 and made["target_base"] == str(base)

    *plans, summary = dr.json("dr", "list")
    assert summary["count"] == 1
    [listed] = plans
    assert listed["name"] == PLAN and listed["version"] == made["version"] and listed["last_test"] is None
    assert listed["configs"] == ["database", "app", "files"] and listed["rto_target"] == 1800
    table = dr.out("dr", "list")
    assert "Production DR" in table and "database,app,files" in table and "never" in table and "1 plan" in table

    shown = dr.out("dr", "show", PLAN)
    for fact in (f"{PLAN} (version {made['version']})", f"target base:  {base}", "RTO target:   30m",
                 "RPO target:   1d", "on failure:   continue", f"1. database -> {base}/database",
                 "point: latest; RPO 1d (the plan's)", f"3. files -> {base}/files"):
        assert fact in shown, fact
    [doc] = dr.json("dr", "show", PLAN)
    assert doc["message_type"] == "plan" and doc["on_failure"] == "continue" and doc["verify"] is True
    assert [s["config"] for s in doc["steps"]] == ["database", "app", "files"]

    [gone] = dr.json("dr", "delete", PLAN)
    assert gone["deleted"] == PLAN and gone["runs_kept"] == 0
    assert dr.json("dr", "list") == [{"message_type": "summary", "schema": "strongroom/1", "count": 0,
                                      "type": "summary"}]
    assert "no DR plan named 'Production DR'" in dr.refused("dr", "show", PLAN)
    assert "no DR plan named" in dr.refused("dr", "delete", PLAN)


def test_a_plan_file_round_trips_through_show_toml(dr, tmp_path):
    base = tmp_path / "restore"
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(RICH_PLAN.format(base=base))
    created = dr.out("dr", "create", "--file", str(plan_file))
    assert "created DR plan Production DR" in created
    printed = dr.out("dr", "show", PLAN, "--toml")
    assert Plan.from_toml(printed) == Plan.from_toml(plan_file.read_text())
    shown = dr.out("dr", "show", PLAN)
    for fact in ("point: random within the last 7d; RPO 6h;", "database: shop",
                 "before: [essential, timeout 2m] systemctl stop shop | logger -t 'dr'",
                 "after:  [optional, timeout 30s] pg_isready -q", "2. app code (configuration app) -> /srv/app-restored",
                 "point: newest at or before 2026-11-30T02:00:00Z", "include: /app/*.py, /app/conf"):
        assert fact in shown, fact
    # What show --toml printed is read back to the same plan: the same version.
    again = tmp_path / "again.toml"
    again.write_text(printed)
    [first] = dr.json("dr", "show", PLAN)
    [replaced] = dr.json("dr", "create", PLAN, "--file", str(again), "--replace")
    assert replaced["version"] == first["version"]
    assert "not 'Other'" in dr.refused("dr", "create", "Other", "--file", str(again), "--replace")


def test_refusals_are_one_line_and_store_nothing(dr, tmp_path):
    base = str(tmp_path / "restore")
    create = ("dr", "create", PLAN, "--target-base", base)
    assert "no backup configuration named 'nope'" in dr.refused(*create, "--order", "database,nope")
    assert "cannot read RTO 'soon'" in dr.refused(*create, "--order", "database", "--rto", "soon")
    assert "--order" in dr.refused("dr", "create", PLAN, "--target-base", base)
    assert "NAME" in dr.refused("dr", "create", "--order", "database", "--target-base", base)
    assert "two steps are named 'database'" in dr.refused(*create, "--order", "database,database")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "Production DR"\nsteps = [\n')
    assert "not valid TOML" in dr.refused("dr", "create", "--file", str(bad))
    bad.write_text(f'name = "Production DR"\ntarget_base = "{base}"\nretries = 3\n[[steps]]\nconfig = "app"\n')
    assert "unknown key 'retries' in a plan" in dr.refused("dr", "create", "--file", str(bad))
    bad.write_bytes(b'name = "\xff"\n')
    assert "not UTF-8" in dr.refused("dr", "create", "--file", str(bad))
    assert "give --order in the file" in dr.refused("dr", "create", "--file", str(bad), "--order", "app")
    assert "missing.toml: No such file or directory" in dr.refused("dr", "create", "--file",
                                                                   str(tmp_path / "missing.toml"))
    assert dr.json("dr", "list")[-1]["count"] == 0

    dr.run(*create, "--order", "database", check=True)
    assert "a DR plan named 'Production DR' exists already" in dr.refused(*create, "--order", "app")
    done = dr.run(*create, "--order", "app", "--json")
    assert done.returncode == 2 and json.loads(done.stdout.decode().splitlines()[-1])["message_type"] == "exit_error"
    [kept] = dr.json("dr", "show", PLAN)
    assert [s["config"] for s in kept["steps"]] == ["database"]
    dr.run(*create, "--order", "app", "--replace", check=True)
    [replaced] = dr.json("dr", "show", PLAN)
    assert [s["config"] for s in replaced["steps"]] == ["app"]


# ---- reports of recorded runs ---------------------------------------------------------------


def _record(dr: DR, monkeypatch, *runs) -> None:
    manager = dr.manager(monkeypatch)
    try:
        store = PlanStore(manager.backup_service)
        for run in runs:
            store.record_run(run)
    finally:
        manager.close()
        manager.catalog.close()


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


def test_report_renders_the_runs_the_store_recorded(dr, tmp_path, monkeypatch):
    dr.run("dr", "create", PLAN, "--order", "database,app,files", "--target-base", str(tmp_path / "restore"),
           "--rto", "30m", check=True)
    assert "has no recorded run yet" in dr.refused("dr", "report", PLAN, code=1)
    assert "no DR plan named 'Elsewhere'" in dr.refused("dr", "report", "Elsewhere")
    older = [plan_run(started=START - timedelta(days=d), rto=30.0 + d, run_id=f"test-{d}") for d in (3, 2, 1)]
    latest = failed_run()
    latest = plan_run(steps=latest.steps, verdict="fail", reasons=latest.reasons, run_id="latest")
    _record(dr, monkeypatch, *older, latest)

    md = dr.out("dr", "report", PLAN)
    assert md.startswith("# Disaster-recovery rehearsal (dr test): Production DR\n")
    assert "**Verdict: fail**" in md and "| Run | latest |" in md and "## Trend of the last 4 test(s)" in md
    assert EVIL_OUTPUT[1] in md  # inside its fence

    [doc] = dr.json("dr", "report", PLAN)
    assert doc["id"] == "latest" and doc["message_type"] == "dr_report" and doc["verdict"] == "fail"
    assert [p["id"] for p in doc["trend"]] == ["test-3", "test-2", "test-1", "latest"]
    docs = [json.loads(line) for line in dr.out("dr", "report", PLAN, "--last", "2", "--format", "json").splitlines()]
    assert [d["id"] for d in docs] == ["test-1", "latest"]

    page = tmp_path / "report.html"
    [written] = dr.json("dr", "report", PLAN, "--format", "html", "--output", str(page))
    assert written["output"] == str(page) and written["runs"] == ["latest"] and written["verdict"] == "fail"
    html = page.read_text()
    tags = _Tags()
    tags.feed(html)
    assert "script" not in tags.tags and tags.tags.count("svg") == 2 and "&lt;script&gt;" in html
    assert "--output" in dr.refused("dr", "report", PLAN, "--json", "--format", "html")

    listed = dr.json("dr", "list")[0]
    assert listed["last_test"]["id"] == "latest" and listed["last_test"]["verdict"] == "fail"
    assert "fail 20" in dr.out("dr", "list")

    # A record in the catalog that is not a run: the report says so, it never passes over it.
    with sqlite3.connect(dr.catalog) as db:
        db.execute("UPDATE dr_runs SET doc = ? WHERE id = 'latest'",
                   (json.dumps({**latest.to_dict(), "steps": "none"}),))
    db.close()
    line = dr.refused("dr", "report", PLAN, code=1)
    assert "a recorded run of plan 'Production DR' does not read" in line and "run.steps is not a list" in line
    listed = dr.run("dr", "list", "--json", check=True)
    assert json.loads(listed.stdout.decode().splitlines()[0])["last_test"]["verdict"] == "unreadable"
    assert "does not read" in listed.stderr.decode()  # never an older test's verdict, nor "never"
    # As history it is left out of the trend, with a warning.
    with sqlite3.connect(dr.catalog) as db:
        db.execute("UPDATE dr_runs SET doc = ? WHERE id = 'test-2'", (json.dumps({"id": "test-2", "mode": 7}),))
        db.execute("UPDATE dr_runs SET doc = ? WHERE id = 'latest'", (json.dumps(latest.to_dict()),))
    db.close()
    done = dr.run("dr", "report", PLAN, check=True)
    assert "## Trend of the last 3 test(s)" in done.stdout.decode()
    assert "left out of the trend" in done.stderr.decode()

    dr.run("dr", "delete", PLAN, check=True)
    assert "**Verdict: fail**" in dr.out("dr", "report", PLAN)  # the evidence outlives the plan
