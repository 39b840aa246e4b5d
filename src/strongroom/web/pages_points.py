"""The console's pages of recovery points: `/points` (the list and a search
by file name), `/points/{id}` (a point's folders, downloads, a restore with
live progress) and `/points/diff` (two points compared). They show what the
API answers (strongroom.web.api_points); a restore is posted to that API by
static/points.js."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from strongroom.errors import StrongroomError
from strongroom.web.api_points import (MAX_MATCHES, PAGE_ENTRIES, compare_points, folder_document, points_document,
                                       search_points, session_document)
from strongroom.web.render import page


def crumbs(path: str) -> list[tuple[str, str]]:
    """(label, path) of each folder from the point's root down to `path`."""
    parts = [p for p in path.split("/") if p]
    return [("root", "")] + [(name, "/".join(parts[:i + 1])) for i, name in enumerate(parts)]


def routes(console) -> APIRouter:
    from strongroom.services.recovery import RecoveryExecutor, RecoveryPointManager
    from strongroom.web.console import error_status

    router = APIRouter(include_in_schema=False)
    service = console.reader.backup_service
    points = RecoveryPointManager(service)

    def configs() -> list[str]:
        return sorted(c.name for c in service.list_configs())

    @router.get("/points")
    def points_page(request: Request, config: str = Query("", max_length=200),
                    name: str = Query("", max_length=1000)):
        problem, listed, found = None, {"points": [], "errors": []}, None
        try:
            listed = points_document(service, points, config or None)
            if name:
                found = search_points(service, name, config or None, MAX_MATCHES)
        except StrongroomError as e:
            problem = str(e)
        return page(request, "points_list.html", "Snapshots", status_code=400 if problem else 200,
                    problem=problem, points=listed["points"], errors=listed["errors"], configs=configs(),
                    config=config, name=name, found=found, zone=console.zone)

    @router.get("/points/diff")
    def diff_page(request: Request, from_: str = Query("", alias="from", max_length=64),
                  to: str = Query("", max_length=64)):
        problem, diff = None, None
        listed = points_document(service, points)
        status = 200
        if from_ and to:
            try:
                diff = compare_points(service, from_, to)
            except StrongroomError as e:
                problem, status = str(e), error_status(e)
        ids = [p["id"] for p in listed["points"]]  # newest first: by default the newest two
        first = from_ or (ids[1] if len(ids) > 1 else "")
        second = to or (ids[0] if ids else "")
        return page(request, "points_diff.html", "Compare snapshots", status_code=status, problem=problem,
                    diff=diff, points=listed["points"], errors=listed["errors"], first=first.lower(),
                    second=second.lower(),
                    zone=console.zone)

    @router.get("/points/{point_id}")
    def point_page(request: Request, point_id: str, path: str = Query("", max_length=4096),
                   session: str = Query("", max_length=100), offset: int = Query(0, ge=0)):
        try:
            folder = folder_document(service, point_id, path, offset, PAGE_ENTRIES, dirs_first=True)
        except StrongroomError as e:
            return page(request, "points_missing.html", "Snapshot", status_code=error_status(e), problem=str(e))
        here = folder["path"].lstrip("/")
        others = [p for p in points_document(service, points, folder["config"])["points"]
                  if p["id"] != folder["point"]]
        progress = None
        if session:
            try:
                progress = session_document(RecoveryExecutor(service).get_progress(session))
            except StrongroomError:
                progress = None
        entries = folder["entries"]
        shown_to = folder["offset"] + len(entries)
        paging = {"first": folder["offset"] + 1 if entries else 0, "last": shown_to, "total": folder["total"],
                  "more": folder["total"] - shown_to,
                  "previous": max(0, folder["offset"] - PAGE_ENTRIES) if folder["offset"] else None,
                  "next": shown_to if folder["truncated"] else None}
        return page(request, "points_browse.html", f"Snapshot {folder['short_id']}", folder=folder,
                    entries=entries, paging=paging, here=here, crumbs=crumbs(here), others=others, progress=progress,
                    zone=console.zone)

    return router
