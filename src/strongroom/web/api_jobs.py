"""The console's jobs API: the queue and its history, one job with its live
progress, cancel, and the live event stream (`/api/events`).

A job's JSON (`job_json`) is the catalog's row in RFC 3339 times, its error
in plain words (strongroom.services.plain_errors), the summary of a backup
that succeeded and, while it runs, the progress of the hub's last event.

`/api/events` is server-sent events: the hub's events as they come, and the
`{"type": "job"}` events this stream makes itself by comparing the newest
jobs of the catalog with what it last saw (the catalog is the one place every
change of a job is written, by whichever process makes it). At most
`STREAM_LIMIT` streams at once; each ends after `STREAM_LIFETIME` (the
browser's EventSource reconnects) and at once when the daemon stops, so an
open page never holds up its shutdown.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from strongroom.engine.progress import event_type
from strongroom.services.plain_errors import explain_error

STREAM_LIMIT = 32
STREAM_LIFETIME = 3600.0  # seconds; the browser reconnects after `retry`
KEEP_ALIVE = 15.0  # seconds between comments that keep proxies from closing an idle stream
POLL = 0.5  # seconds between two looks at the catalog's jobs
RECENT = 50  # the newest jobs a stream compares
MAX_JOB_ID = 2 ** 62

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
# bytes_read: what a run has read so far, also of a command or database whose
# size is not known beforehand (their bytes_done stays 0 until the end).
PROGRESS_FIELDS = ("percent_done", "files_done", "total_files", "bytes_done", "total_bytes", "bytes_read",
                   "seconds_elapsed", "seconds_remaining")
_PRIVATE_STATS = ("owner", "owner_started")  # who runs a job: not for the browser


def rfc3339(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(float(value), timezone.utc).isoformat().replace("+00:00", "Z")


def job_json(row: dict, last: dict | None = None) -> dict:
    """Job `row` of the catalog as the API shows it; `last` is the hub's last
    progress message of the job (used while it runs)."""
    stats = row.get("stats") or {}
    summary = ({k: v for k, v in stats.items() if k not in _PRIVATE_STATS}
               if row["status"] == "succeeded" and stats else None)
    doc = {"id": row["id"], "config": row["config"], "kind": row["kind"], "status": row["status"],
           "priority": row["priority"], "attempts": row["attempts"], "max_attempts": row["max_attempts"],
           "queued_at": rfc3339(row["queued_at"]), "started_at": rfc3339(row.get("started_at")),
           "finished_at": rfc3339(row.get("finished_at")), "next_try_at": rfc3339(row.get("next_try_at")),
           "error": row.get("error"), "error_plain": explain_error(row.get("error")),
           "snapshot_id": row.get("snapshot_id"), "summary": summary}
    progress = dict.fromkeys(PROGRESS_FIELDS)
    event = (last or {}).get("event") or {}
    if row["status"] == "running" and event_type(event) == "status":
        progress.update({k: event.get(k) for k in PROGRESS_FIELDS})
    elif row["status"] == "succeeded":
        progress["percent_done"] = 1.0
        if summary:
            progress["files_done"] = progress["total_files"] = summary.get("total_files_processed")
            progress["bytes_done"] = progress["total_bytes"] = summary.get("total_bytes_processed")
            progress["bytes_read"] = summary.get("bytes_read")
            progress["seconds_elapsed"] = summary.get("total_duration")
        progress["seconds_remaining"] = 0
    elapsed = progress.get("seconds_elapsed")
    done = max(progress.get("bytes_done") or 0, progress.get("bytes_read") or 0)
    doc.update(progress)
    doc["rate"] = round(done / elapsed, 1) if elapsed else None  # bytes/s
    return doc


def job_event(row: dict) -> dict:
    """The `{"type": "job"}` event of a job's row (a contract between the console's parts)."""
    return {"type": "job", "job": row["id"], "config": row["config"], "kind": row["kind"],
            "status": row["status"], "error": row.get("error"), "error_plain": explain_error(row.get("error"))}


def _sse(event: dict) -> str:
    return "data: " + json.dumps(event, separators=(",", ":"), default=str) + "\n\n"


class StreamSlots:
    """How many event streams are open (touched in the server's loop only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1


class EventStream(StreamingResponse):
    """A StreamingResponse that gives its stream's slot back however it ends,
    also when the client went away before the stream's first line."""

    def __init__(self, content, release) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self.release = release

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:  # its subscription now, not when it is collected
                await close()


def routes(console) -> APIRouter:
    router = APIRouter()
    slots = StreamSlots(STREAM_LIMIT)

    def found(job_id: int) -> dict:
        row = console.reader.catalog.get_job(job_id)
        if row is None:
            raise HTTPException(404, f"no job {job_id}")
        return row

    @router.get("/api/jobs", tags=["jobs"])
    def list_jobs(config: str | None = Query(None, max_length=200), status: JobStatus | None = None,
                  limit: int = Query(100, ge=1, le=500)) -> list[dict]:
        """The jobs, newest first; optionally of one configuration and/or one status."""
        rows = console.reader.catalog.list_jobs(config=config, status=status, limit=limit)
        return [job_json(row, console.hub.last_progress(row["id"])) for row in rows]

    @router.get("/api/jobs/{job_id}", tags=["jobs"])
    def get_job(job_id: int = Path(ge=1, le=MAX_JOB_ID)) -> dict:
        """One job: its status, times, error in plain words and progress fields."""
        return job_json(found(job_id), console.hub.last_progress(job_id))

    @router.post("/api/jobs/{job_id}/cancel", tags=["jobs"])
    def cancel_job(job_id: int = Path(ge=1, le=MAX_JOB_ID)) -> dict:
        """Cancel a queued job (it never runs) or a running backup (it stops at its
        next chunk and ends cancelled). Answers the job as it is now."""
        found(job_id)
        console.manager.cancel_job(job_id)
        return job_json(found(job_id), console.hub.last_progress(job_id))

    def recent() -> list[dict]:
        return console.reader.catalog.list_jobs(limit=RECENT)

    async def stream(request: Request):
        sub = console.hub.subscribe()
        try:
            yield "retry: 3000\n\n"
            rows = await run_in_threadpool(recent)
            seen = {row["id"]: (row["status"], row.get("error")) for row in rows}
            # A page opened in the middle of a run shows its progress at once. No job
            # event here: a page is rendered with its jobs' state, and one that
            # reloads on a job event would reload again at every connect.
            for row in rows:
                if row["status"] == "running":
                    last = console.hub.last_progress(row["id"])
                    if last is not None:
                        yield _sse(last)
            started = time.monotonic()
            beat = next_poll = started
            while True:
                now = time.monotonic()
                if console.manager.stopping.is_set() or now - started > STREAM_LIFETIME:
                    return
                if await request.is_disconnected():
                    return
                event = await sub.get(timeout=max(0.05, min(POLL, next_poll + POLL - now)))
                if event is not None:
                    yield _sse(event)
                now = time.monotonic()
                if now - next_poll >= POLL:
                    next_poll = now
                    for row in reversed(await run_in_threadpool(recent)):  # oldest change first
                        state = (row["status"], row.get("error"))
                        if seen.get(row["id"]) != state:
                            seen[row["id"]] = state
                            yield _sse(job_event(row))
                    if len(seen) > 4 * RECENT:
                        for old in sorted(seen)[:-2 * RECENT]:
                            del seen[old]
                if now - beat >= KEEP_ALIVE:
                    beat = now
                    yield ": keep-alive\n\n"
        finally:
            sub.close()

    @router.get("/api/events", tags=["events"], response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {}},
                                 "description": "Server-sent events: `data: JSON` of progress, job and session events."},
                           503: {"description": "Too many event streams are open."}})
    async def events(request: Request) -> StreamingResponse:
        """Server-sent events of progress, job changes and restore or DR sessions."""
        if not slots.take():
            raise HTTPException(503, f"too many event streams are open (at most {STREAM_LIMIT})")
        return EventStream(stream(request), slots.give_back)

    return router
