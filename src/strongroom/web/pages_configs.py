"""The dashboard and the configuration pages: `/` (a card per configuration
with its colour, a storage-trend chart, the WebDAV request budgets and the
DR plans' last verdicts), `/configs` (the table), `/configs/new`,
`/configs/{name}` (its settings, run now with live progress, its recent
jobs) and `/configs/{name}/edit`. The forms and buttons send JSON to
strongroom.web.api_configs through console.js; nothing here changes state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from fastapi import APIRouter, Request

from strongroom.web.render import page

RECENT_JOBS = 10
TREND_DAYS = 90.0
# The storage chart's drawing box (SVG user units) and its margins.
CHART_W, CHART_H, CHART_LEFT, CHART_TOP, CHART_BOTTOM = 300, 100, 4, 14, 16
DAY = 86400.0


@dataclass(frozen=True)
class Chart:
    """A storage-trend chart, computed here and drawn by the template."""
    points: str  # the polyline of the repository size
    last_x: float
    last_y: float
    projection: str | None  # the dashed line of the growth ahead, when there is a trend
    top_label: str  # the size at the top of the scale
    full_label: str | None  # "full by 2027-03-01", when the target reports its free space
    description: str  # the chart in words, for a screen reader


def trend_chart(config_trend, size_text) -> Chart | None:
    """The chart of one configuration's samples (BackupManager.storage.get_storage_trend), or None."""
    if config_trend is None:
        return None
    samples = [(s.time.timestamp(), s.repository_size) for s in config_trend.samples
               if s.repository_size is not None]
    if not samples:
        return None
    trend = config_trend.trend
    first, last = samples[0][0], samples[-1][0]
    span = max(last - first, DAY)
    ahead = span / 3  # the projection covers a third of the span again
    end_size = samples[-1][1]
    if trend.growth_per_day:
        end_size = samples[-1][1] + trend.growth_per_day * ahead / DAY
    top = max(max(size for _, size in samples), end_size, 1)
    width = CHART_W - 2 * CHART_LEFT
    height = CHART_H - CHART_TOP - CHART_BOTTOM

    def x(t: float) -> float:
        return round(CHART_LEFT + (t - first) / (span + ahead) * width, 1)

    def y(size: float) -> float:
        return round(CHART_TOP + height - size / top * height, 1)

    points = " ".join(f"{x(t)},{y(size)}" for t, size in samples)
    projection = None
    if trend.growth_per_day is not None:
        projection = f"{x(last)},{y(samples[-1][1])} {x(last + ahead)},{y(end_size)}"
    full = f"full by {trend.projected_full.isoformat()}" if trend.projected_full else None
    words = (f"{len(samples)} samples over {span / DAY:.0f} days, now {size_text(samples[-1][1])}"
             + (f", growing {size_text(trend.growth_per_day)} a day" if trend.growth_per_day else "")
             + (f", {full}" if full else ""))
    return Chart(points, x(last), y(samples[-1][1]), projection, size_text(top), full, words)


def routes(console) -> APIRouter:
    from strongroom.services.health import overview_of, overviews
    from strongroom.web.api_configs import config_doc, overview_doc
    from strongroom.web.render import size

    router = APIRouter(include_in_schema=False)
    reader = console.reader

    def now() -> datetime:
        return datetime.fromtimestamp(console.clock(), timezone.utc)

    def missing(request: Request, name: str):
        return page(request, "configs_missing.html", "No such configuration", status_code=404, name=name)

    def clients() -> list[dict]:
        from strongroom.services.describe import client_docs
        return client_docs(reader.catalog)

    @router.get("/")
    def dashboard(request: Request):
        from strongroom.services.budgets import webdav_budgets

        items = overviews(reader, now(), console.zone)
        trends = reader.storage.get_storage_trend(days=TREND_DAYS).configs
        cards = [{**overview_doc(item), "chart": trend_chart(trends.get(item.name), size)} for item in items]
        plans = []
        for plan in reader.catalog.list_plans():
            runs = reader.catalog.list_dr_runs(plan=plan["name"], limit=1, mode="test")
            plans.append({"name": plan["name"], "last": runs[-1] if runs else None})
        return page(request, "dashboard.html", "Dashboard", cards=cards, budgets=webdav_budgets(reader),
                    plans=plans, zone=console.zone)

    @router.get("/configs")
    def configs_table(request: Request):
        rows = [overview_doc(item) for item in overviews(reader, now(), console.zone)]
        return page(request, "configs_list.html", "Configurations", rows=rows, zone=console.zone)

    @router.get("/configs/new")
    def new_config(request: Request):
        return page(request, "configs_form.html", "New configuration", config=None, clients=clients())

    @router.get("/configs/{name}")
    def config_page(request: Request, name: str):
        if reader.catalog.get_config(name) is None:
            return missing(request, name)
        config = reader.get_config(name)
        item = overview_of(reader, config, now(), console.zone)
        jobs = reader.catalog.list_jobs(config=name, limit=RECENT_JOBS)
        live = next((job for job in jobs if job["status"] in ("queued", "running")), None)
        return page(request, "configs_detail.html", f"Configuration {name}", name=name,
                    doc=config_doc(reader, config), summary=overview_doc(item), jobs=jobs,
                    live=live, zone=console.zone)

    @router.get("/configs/{name}/edit")
    def edit_config(request: Request, name: str):
        if reader.catalog.get_config(name) is None:
            return missing(request, name)
        return page(request, "configs_form.html", f"Edit {name}",
                    config=config_doc(reader, reader.get_config(name)), clients=clients())

    return router
