"""The console's pages of disaster-recovery plans: the list with its forms,
one plan with its runs and trend, and a run's report.

The pages read through the reader's DisasterRecoveryManager and act through
the API (api_dr.py) with console.js's data- behaviours; a run in flight is
followed from the hub's `session` events.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from strongroom.dr.durations import format_seconds
from strongroom.dr.report import trend, worst_rpo
from strongroom.errors import StrongroomError, UsageError
from strongroom.web.api_dr import checked_run_id, plan_row, run_state
from strongroom.web.render import page

HISTORY = 50  # runs shown on a plan's page


def path_part(text: str) -> str:
    """A name as one segment of a URL path."""
    return quote(text, safe="")


def seconds(value) -> str:
    return "–" if value is None else format_seconds(value)


def verdict_words(verdict: str | None) -> str:
    return {"pass": "passed", "pass-with-warnings": "passed with warnings", "fail": "failed",
            "failed": "broke off", "running": "running", "unreadable": "record unreadable"}.get(verdict or "",
                                                                                              "never tested")


def trend_charts(history) -> list[str]:
    """The RTO and RPO charts of the plan's tests (the report's own drawing), or none."""
    from strongroom.dr.report_html import line_chart

    tests = [r for r in history if r.mode == "test"]
    if len(tests) < 2:
        return []
    points = trend(tests[-1], tests)
    return [line_chart("RTO achieved", points, [p.rto_seconds for p in points], points[-1].rto_target),
            line_chart("RPO achieved (oldest point restored)", points, [p.rpo_seconds for p in points],
                       points[-1].rpo_target)]


def routes(console) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    reader = console.reader.disaster_recovery

    @router.get("/dr", response_class=HTMLResponse)
    def plans_page(request: Request):
        rows = []
        for plan in reader.list_dr_plans():
            row = plan_row(reader, plan)
            test = row["last_test"]
            rows.append({**row, "href": "/dr/" + path_part(plan.name), "api": "/api/dr/plans/" + path_part(plan.name),
                         "rto_text": seconds(plan.rto), "rpo_text": seconds(plan.rpo),
                         "verdict": (test or {}).get("verdict"), "verdict_words": verdict_words((test or {}).get("verdict")),
                         "achieved": seconds((test or {}).get("rto_seconds"))})
        configs = [c.name for c in console.reader.list_configs()]
        return page(request, "dr_plans.html", "DR plans", plans=rows, configs=configs)

    @router.get("/dr/reports/{run_id}", response_class=HTMLResponse)
    def report_page(request: Request, run_id: str):
        run = reader.recorded_dr_run(checked_run_id(run_id))
        if run is None:
            raise HTTPException(404, f"no recorded DR run {run_id}")
        base = "/api/dr/reports/" + path_part(run.id)
        return page(request, "dr_report.html", f"Report: {run.plan}", run=run, plan_href="/dr/" + path_part(run.plan),
                    verdict_words=verdict_words(run.verdict), rto=seconds(run.rto_seconds),
                    rto_target=seconds(run.rto_target), html_href=base + "?format=html",
                    md_href=base + "?format=md", json_href=base + "?format=json")

    @router.get("/dr/{name:path}", response_class=HTMLResponse)
    def plan_page(request: Request, name: str, run: str | None = None):
        try:
            plan = reader.get_dr_plan(name)
        except UsageError as e:
            raise HTTPException(404, str(e)) from None
        history = reader.dr_run_history(name, last=HISTORY)
        runs = [{"id": r.id, "mode": r.mode, "started": r.started, "verdict": r.verdict,
                 "verdict_words": verdict_words(r.verdict), "rto": seconds(r.rto_seconds),
                 "rto_target": seconds(r.rto_target), "rpo": seconds(worst_rpo(r)), "rpo_target": seconds(r.rpo_target),
                 "href": "/dr/reports/" + path_part(r.id)} for r in reversed(history)]
        following = None
        if run:
            try:
                state = run_state(console, checked_run_id(run))
            except (StrongroomError, HTTPException):
                state = None
            if state is not None:
                following = {**state, "verdict_words": verdict_words(state["status"]),
                             "href": "/dr/reports/" + path_part(state["id"])}
        steps = [{"number": n, "step": s, "target": s.target_in(plan.target_base), "point": s.point.describe(),
                  "rpo": seconds(plan.step_rpo(s)), "rto": seconds(s.rto)} for n, s in enumerate(plan.steps, 1)]
        return page(request, "dr_plan.html", f"DR plan {plan.name}", plan=plan, steps=steps, runs=runs,
                    charts=trend_charts(history), following=following, api="/api/dr/plans/" + path_part(plan.name),
                    href="/dr/" + path_part(plan.name), rto=seconds(plan.rto), rpo=seconds(plan.rpo))

    return router
