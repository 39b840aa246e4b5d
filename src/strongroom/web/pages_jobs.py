"""The console's pages of jobs and notification channels: `/jobs` (the queue
and its history), `/jobs/{id}` (one job, live while it runs) and `/notify`."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Path, Query, Request

from strongroom.services.jobs import BACKUP_KINDS
from strongroom.web.api_jobs import MAX_JOB_ID, job_json
from strongroom.web.api_notify import channel_json
from strongroom.web.render import page

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
PAGE_JOBS = 200
LIVE = ("queued", "running")


def routes(console) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/jobs")
    def jobs_page(request: Request, config: str = Query("", max_length=200), status: str = Query("", max_length=20)):
        wanted = status if status in STATUSES else None
        rows = console.reader.catalog.list_jobs(config=config or None, status=wanted, limit=PAGE_JOBS)
        jobs = [job_json(row, console.hub.last_progress(row["id"])) for row in rows]
        jobs.sort(key=lambda j: (j["status"] != "running", j["status"] != "queued", -j["id"]))
        names = sorted(c["name"] for c in console.reader.catalog.list_configs())
        return page(request, "jobs_list.html", "Jobs", jobs=jobs, configs=names, statuses=STATUSES,
                    config=config, status=wanted or "", zone=console.zone)

    @router.get("/jobs/{job_id}")
    def job_page(request: Request, job_id: int = Path(ge=1, le=MAX_JOB_ID)):
        row = console.reader.catalog.get_job(job_id)
        if row is None:
            raise HTTPException(404, f"no job {job_id}")
        job = job_json(row, console.hub.last_progress(job_id))
        return page(request, "jobs_detail.html", f"Job {job_id}", job=job, live=job["status"] in LIVE,
                    backup=job["kind"] in BACKUP_KINDS, zone=console.zone)

    @router.get("/notify")
    def notify_page(request: Request):
        channels = [channel_json(row) for row in console.reader.catalog.list_channels()]
        return page(request, "notify.html", "Notifications", channels=channels)

    return router
