"""Plan runs built as the runner makes them, for the report and plan tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from strongroom.dr.results import HookResult, PlanRun, Problem, RepositoryCheck, StepResult

START = datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc)
EVIL_PLAN = '"><img src=x onerror=alert(1)>'
EVIL_OUTPUT = ("loading dump", "<script>alert('x')</script>", "| col | break |", "```", "done\x1b[2J")


def hook(phase="after", command="pg_isready -q", exit_code=0, output=("ok",), ok=True, mode="essential"):
    return HookResult(phase=phase, command=command, mode=mode, exit_code=exit_code, timed_out=False,
                      duration_seconds=0.4, output_tail=tuple(output), ok=ok)


def step(name="database", status="passed", rpo=3600.0, duration=12.0, **changes) -> StepResult:
    base = StepResult(
        name=name, config=name, repository=f"/srv/repos/{name}", status=status, target=f"/scratch/{name}",
        snapshot="3fa2c1d0e9b8a7f6" * 4, snapshot_time=START - timedelta(seconds=rpo), rule="latest",
        rpo_seconds=rpo, rpo_target=86400.0, rto_target=None, started=START, duration_seconds=duration,
        restore_seconds=duration - 1, files=120, bytes=3 * 1024 * 1024, throughput=280_000.0,
        files_verified=120, verified=status in ("passed", "warning"), warnings=0, errors=0,
        messages=(), problems=(), hooks=(hook(),))
    return replace(base, **changes)


def plan_run(plan="Production DR", started=START, rto=40.0, verdict="pass", mode="test", steps=None,
             run_id=None, **changes) -> PlanRun:
    steps = steps if steps is not None else (step("database"), step("app", rpo=7200.0, duration=20.0),
                                             step("files", duration=8.0, hooks=()))
    base = PlanRun(
        id=run_id or f"dr-{started:%Y%m%d%H%M%S}", plan=plan, plan_version="0123456789abcdef", mode=mode,
        trigger="manual", host="backup-01", strongroom_version="0.9.0", started=started,
        finished=started + timedelta(seconds=rto + 2), target_base="/scratch", scratch_kept=False,
        steps=tuple(steps), rto_seconds=rto, rto_target=1800.0, rpo_target=86400.0,
        checks=(RepositoryCheck("/srv/repos/database", True, 40, 4, 0.1, (), 1.5),),
        cleanup_seconds=0.8, verdict=verdict, reasons=("every step restored and verified",))
    return replace(base, **changes)


def failed_run() -> PlanRun:
    damaged = step("app", status="failed", errors=2, verified=False, files_verified=80,
                   messages=("2 files did not verify",),
                   problems=(Problem("pack 3fa2c1d0", "does not authenticate", ("/app/main.py", "/app/lib.py")),),
                   hooks=(hook("before", "systemctl stop app", 0), hook("after", "./probe.sh | tee probe.log", 1, EVIL_OUTPUT, False)))
    check = RepositoryCheck("/srv/repos/app", False, 40, 40, 1.0, ("pack 3fa2c1d0:\nshort | read",), 2.0)
    return plan_run(plan=EVIL_PLAN, verdict="fail", steps=(step("database"), damaged), checks=(check,),
                    reasons=("step app failed: 2 files did not verify", "RPO exceeded: app's point is 2d old"))
