"""The console's API of disaster-recovery plans: list, show, create, delete,
rehearse, run for real, follow a run, read the reports.

Everything goes through the DisasterRecoveryManager: the daemon's
(`console.manager.disaster_recovery`) starts runs, so a run's progress lives
in the process that serves it; the reader's answers what the catalog holds.
A run's progress goes to the event hub as `session` events (docs/console.md).
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Literal, Union

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from strongroom.dr.manager import MAX_PLAN_TEXT
from strongroom.errors import UsageError

RUN_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")
PROGRESS_RATE = 4.0  # session events a second at most, per run
REPORT_TYPES = {"json": "application/json", "md": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8"}
# The HTML report is one self-contained page with an inline stylesheet and no
# script: it gets a policy of its own that allows that stylesheet and nothing
# else, sandboxed, and may be framed by the console's own pages only.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'self'"
Duration = Union[float, str]


class PlanFields(BaseModel):
    """A plan from the fields `dr create` takes, or from its TOML file's text."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=200)
    order: list[str] | str | None = None
    target_base: str | None = Field(None, max_length=4096)
    rto: Duration | None = None
    rpo: Duration | None = None
    continue_on_error: bool = False
    verify: bool = True
    test_schedule: str | None = Field(None, max_length=200)
    replace: bool = False
    toml: str | None = Field(None, max_length=MAX_PLAN_TEXT)


class TestOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scratch: str | None = Field(None, max_length=4096)
    keep: bool = False


class RunOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confirm: str = ""
    target_base: str | None = Field(None, max_length=4096)
    at: str | None = Field(None, max_length=100)


def folder_from_browser(value: str | None, what: str) -> str | None:
    """An absolute folder a person typed: no NUL, no `..`, nothing relative."""
    if value is None or value.strip() == "":
        return None
    if "\0" in value or not value.isprintable():
        raise UsageError(f"{what}: control characters are not allowed in a folder")
    if not os.path.isabs(value):
        raise UsageError(f"{what}: give an absolute folder (starting with /)")
    if ".." in value.split("/"):
        raise UsageError(f"{what}: a folder with .. in it is not allowed")
    return os.path.normpath(value)


def checked_run_id(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id):
        raise UsageError("not a DR run id")
    return run_id


def order_of(order: list[str] | str | None) -> list[str]:
    """The configurations of `--order`: a list, or names separated by commas or lines."""
    items = order if isinstance(order, list) else re.split(r"[,\n]", order or "")
    return [c.strip() for item in items for c in item.split(",") if c.strip()]


def plan_json(plan) -> dict:
    """A plan for a browser or a script: the document, its version, the steps' targets."""
    return {**plan.to_doc(), "version": plan.version, "updated": plan.updated, "configs": list(plan.configs),
            "targets": [{"step": s.name, "config": s.config, "target": s.target_in(plan.target_base)}
                        for s in plan.steps]}


def plan_row(dr, plan) -> dict:
    return {"name": plan.name, "version": plan.version, "schedule": plan.schedule,
            "rto": plan.rto, "rpo": plan.rpo, "target_base": plan.target_base,
            "steps": [{"name": s.name, "config": s.config, "target": s.target_in(plan.target_base)}
                      for s in plan.steps],
            "last_test": dr.last_dr_run(plan.name, "test"), "last_run": dr.last_dr_run(plan.name, "run")}


def progress_of(p) -> dict:
    """A RecoveryProgress in the hub's `session` progress shape."""
    elapsed = p.elapsed
    return {"percent_done": round(p.percent / 100, 4), "files_done": p.processed_files,
            "total_files": p.total_files, "bytes_done": p.processed_bytes, "total_bytes": p.total_bytes,
            "seconds_elapsed": round(elapsed, 3), "seconds_remaining": p.eta}


def status_progress(event: dict, started: float) -> dict:
    """A `dr_status` event (docs/json.md) in the hub's `session` progress shape."""
    return {"percent_done": round(float(event.get("percent") or 0) / 100, 4),
            "files_done": event.get("files_done", 0), "total_files": event.get("total_files", 0),
            "bytes_done": event.get("bytes_done", 0), "total_bytes": event.get("total_bytes", 0),
            "seconds_elapsed": round(time.monotonic() - started, 3), "seconds_remaining": event.get("eta")}


class RunFeed:
    """A run's events to the hub: its `dr_status` as `session` events (at most
    PROGRESS_RATE a second), and one last event with its verdict when it ends."""

    def __init__(self, hub, dr) -> None:
        self.hub = hub
        self.dr = dr
        self.run_id: str | None = None  # known once the run has started
        self.started = time.monotonic()
        self.sent = 0.0

    def __call__(self, event: dict) -> None:
        if self.run_id is None or (event.get("message_type") or event.get("type")) != "dr_status":
            return
        now = time.monotonic()
        if now - self.sent < 1.0 / PROGRESS_RATE:
            return
        self.sent = now
        self.hub.publish({"type": "session", "session": self.run_id, "status": "running",
                          "progress": status_progress(event, self.started), "error": None})

    def follow(self, run_id: str) -> None:
        self.run_id = run_id
        threading.Thread(target=self._ending, name=f"dr-feed-{run_id[:6]}", daemon=True).start()

    def _ending(self) -> None:
        self.dr.done(self.run_id)
        status, error = "failed", None
        try:
            status = self.dr.wait(self.run_id).verdict
        except Exception as e:  # the run broke off: its one line, as the API says it
            error = str(e).splitlines()[0] if str(e) else type(e).__name__
        progress = None
        try:
            progress = progress_of(self.dr.get_progress(self.run_id))
        except UsageError:
            pass
        self.hub.publish({"type": "session", "session": self.run_id, "status": status,
                          "progress": progress, "error": error})


def run_state(console, run_id: str) -> dict:
    """A run as it is: in flight in this process, or as the catalog recorded it."""
    live = console.manager.disaster_recovery
    if live.run_of(run_id) == run_id:
        progress = progress_of(live.get_progress(run_id))
        if not live.done(run_id, 0):
            return {"id": run_id, "status": "running", "progress": progress, "result": None, "error": None}
        try:
            result = live.wait(run_id, 0)
        except Exception as e:
            return {"id": run_id, "status": "failed", "progress": progress, "result": None,
                    "error": str(e).splitlines()[0] if str(e) else type(e).__name__}
        return {"id": run_id, "status": result.verdict, "progress": progress, "result": result.summary(),
                "error": None}
    recorded = console.reader.disaster_recovery.recorded_dr_run(run_id)
    if recorded is None:
        return unrecorded_run(console, run_id)
    return {"id": run_id, "status": recorded.verdict, "progress": None, "result": recorded.summary(), "error": None}


def unrecorded_run(console, run_id: str) -> dict:
    """A run with no record of its end: its session in the catalog says how far
    it got, and a run whose process died (kill -9, a crash) is said failed and
    interrupted rather than running forever (RecoveryExecutor.get_progress)."""
    from strongroom.services.recovery import RecoveryExecutor

    try:
        session = RecoveryExecutor(console.reader.backup_service).get_progress(run_id)
    except UsageError:
        raise HTTPException(404, f"no DR run {run_id}") from None
    error = "; ".join(session.errors[:5]) or None
    if session.status in ("pending", "running"):  # another live process runs it
        return {"id": run_id, "status": "running", "progress": None, "result": None, "error": error}
    return {"id": run_id, "status": "failed", "progress": None, "result": None,
            "error": error or f"the run ended ({session.status}) without a record of its verdict"}


def report_response(text: str | None, fmt: str, what: str) -> Response:
    if text is None:
        raise HTTPException(404, f"no report of {what}")
    if fmt == "html":
        return Response(text, media_type=REPORT_TYPES["html"],
                        headers={"Content-Security-Policy": REPORT_CSP, "X-Frame-Options": "SAMEORIGIN"})
    if fmt == "md":
        return PlainTextResponse(text, media_type=REPORT_TYPES["md"])
    return Response(text, media_type=REPORT_TYPES["json"])


def routes(console) -> APIRouter:
    router = APIRouter(prefix="/api/dr", tags=["dr"])
    reader = console.reader.disaster_recovery

    @router.get("/plans")
    def list_plans() -> list[dict]:
        """Every plan with its steps, targets, and its last test and run."""
        return [plan_row(reader, plan) for plan in reader.list_dr_plans()]

    @router.post("/plans", status_code=201)
    def create_plan(body: PlanFields) -> dict:
        """A plan from the fields of `dr create`, or from `toml` (the plan file)."""
        if body.toml is not None:
            given = [f for f in ("name", "order", "target_base", "rto", "rpo", "test_schedule")
                     if getattr(body, f) not in (None, "", [])]
            if given:
                raise UsageError(f"the plan file holds the whole plan: give {given[0]} in the file instead")
            name = console.manager.disaster_recovery.create_dr_plan_from_toml(body.toml, replace=body.replace)
        else:
            if not body.name:
                raise UsageError("give the plan a name (or its TOML file)")
            configs = order_of(body.order)
            if not configs:
                raise UsageError("give the configurations to restore, in order, e.g. database,app,files")
            target = folder_from_browser(body.target_base, "target base")
            if not target:
                raise UsageError("give the target base: the folder the steps restore below")
            name = console.manager.disaster_recovery.create_dr_plan(
                body.name, configs, target, rto=body.rto, rpo=body.rpo,
                on_failure="continue" if body.continue_on_error else "stop", verify=body.verify,
                replace=body.replace, test_schedule=body.test_schedule or None)
        return {"name": name, "plan": plan_json(reader.get_dr_plan(name))}

    @router.delete("/plans/{name:path}")
    def delete_plan(name: str) -> dict:
        """Forget a plan; its recorded runs stay as history."""
        console.manager.disaster_recovery.delete_dr_plan(name)
        return {"deleted": name}

    @router.post("/plans/{name:path}/test", status_code=202)
    def test_plan(name: str, body: TestOptions | None = None) -> dict:
        """Rehearse the plan into a scratch area; answers the run id to follow."""
        body = body or TestOptions()
        dr = console.manager.disaster_recovery
        feed = RunFeed(console.hub, dr)
        run_id = dr.test_dr_plan(name, scratch=folder_from_browser(body.scratch, "scratch"), keep=body.keep,
                                 progress=feed, wait=False, trigger="api")
        feed.follow(run_id)
        return {"run": run_id}

    @router.post("/plans/{name:path}/run", status_code=202)
    def run_plan(name: str, body: RunOptions) -> dict:
        """Run the plan for real, into its targets: `confirm` must be its name."""
        dr = console.manager.disaster_recovery
        dr.get_dr_plan(name)  # no such plan: 400 before the confirmation is judged
        if body.confirm != name:
            raise UsageError("a real recovery writes into the plan's targets: type the plan's name to confirm")
        feed = RunFeed(console.hub, dr)
        run_id = dr.execute_dr_plan(name, target_base=folder_from_browser(body.target_base, "target base"),
                                    at=body.at or None, progress=feed, trigger="api")
        feed.follow(run_id)
        return {"run": run_id}

    @router.get("/plans/{name:path}/runs")
    def plan_runs(name: str, last: int = Query(50, ge=1, le=1000)) -> list[dict]:
        """The plan's recorded runs (tests and real ones), oldest first: each one's summary."""
        reader.get_dr_plan(name)
        return [run.summary() for run in reader.dr_run_history(name, last=last)]

    @router.get("/runs/{run_id}")
    def get_run(run_id: str) -> dict:
        """A run's state and progress while it runs, and its summary after."""
        return run_state(console, checked_run_id(run_id))

    @router.post("/runs/{run_id}/cancel")
    def cancel_run(run_id: str) -> dict:
        """Stop a run of this daemon: the step in flight stops cleanly, the rest are skipped."""
        return {"cancelled": console.manager.disaster_recovery.cancel(checked_run_id(run_id))}

    @router.get("/plans/{name:path}/reports/latest", response_model=None)
    def latest_report(name: str, format: Literal["json", "md", "html"] = "json") -> Response:
        """The report of the plan's latest test (json, md or html)."""
        last = reader.last_dr_run(name, "test")
        if last is None:
            reader.get_dr_plan(name)
            raise HTTPException(404, f"DR plan {name!r} has not been tested yet")
        return report_response(reader.dr_report(last["run_id"], format), format, f"the plan {name!r}")

    @router.get("/reports/{run_id}", response_model=None)
    def run_report(run_id: str, format: Literal["json", "md", "html"] = "json") -> Response:
        """The report of recorded run `run_id` (json, md or html)."""
        return report_response(reader.dr_report(checked_run_id(run_id), format), format, f"run {run_id}")

    @router.get("/plans/{name:path}")
    def show_plan(name: str) -> dict:
        """The plan as JSON and as its TOML file."""
        plan = reader.get_dr_plan(name)
        return {"plan": plan_json(plan), "toml": plan.to_toml()}

    return router

