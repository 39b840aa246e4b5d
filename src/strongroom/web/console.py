"""The web console: pages and a JSON API on the daemon's FastAPI app.

`Console` holds what every route needs and adds the routes to an app:
- `manager`: the daemon's BackupManager (its queue runs the jobs; queueing
  through it wakes a worker at once);
- `reader`: a manager over the same catalog on a connection of its own, for
  reads and short writes, so a page never waits behind a worker's lock;
- `hub`: the live feed (strongroom.web.events);
- `sessions`, `tokens`, `password`, `limiter`: strongroom.web.auth.

The routes live one concern per module (`ROUTE_MODULES`), each with a
`routes(console) -> APIRouter`. Every
route is behind `ConsoleGuard` (strongroom.web.guard); the console adds no
logic of its own below the services layer.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from strongroom.web.auth import ConsolePassword, ConsoleTokens, Sessions, SignInLimiter
from strongroom.web.events import EventHub

STATIC_DIR = Path(__file__).parent / "static"

# Each module's routes(console) is added in this order; pages after the API.
ROUTE_MODULES = (
    "strongroom.web.api_session",
    "strongroom.web.api_configs",
    "strongroom.web.api_jobs",
    "strongroom.web.api_points",
    "strongroom.web.api_dr",
    "strongroom.web.api_notify",
    "strongroom.web.pages_configs",
    "strongroom.web.pages_points",
    "strongroom.web.pages_dr",
    "strongroom.web.pages_jobs",
)


class Console:
    def __init__(self, manager, reader=None, hub: EventHub | None = None, zone: ZoneInfo | None = None,
                 clock: Callable[[], float] = time.time, loopback_only: bool = True,
                 sessions: Sessions | None = None, limiter: SignInLimiter | None = None,
                 origin: str | None = None) -> None:
        from strongroom.schedule.spec import system_zone

        self.manager = manager
        self.reader = reader or manager
        self.hub = hub or EventHub()
        self.zone = zone or system_zone()
        self.clock = clock
        self.loopback_only = loopback_only
        self.origin = origin  # serve --console-origin (strongroom.web.guard.public_origin), or None
        self.sessions = sessions or Sessions()
        self.limiter = limiter or SignInLimiter()
        self.password = ConsolePassword(self.reader.catalog)
        self.tokens = ConsoleTokens(self.reader.catalog)
        self.first_password: str | None = None  # made at this start (serve shows it once)

    def __repr__(self) -> str:
        return f"Console(catalog={self.reader.catalog.path!r})"

    def attach(self) -> None:
        """Feed the hub from the daemon's job queue."""
        self.manager.on_job_event = self.hub.job_event

    def mount(self, app) -> None:
        """Add the console's routes, static assets and gate to `app`."""
        from fastapi.staticfiles import StaticFiles

        from strongroom.web.guard import ConsoleGuard

        for name in ROUTE_MODULES:
            app.include_router(importlib.import_module(name).routes(self))
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
        add_error_handlers(app)
        app.add_middleware(ConsoleGuard, sessions=self.sessions, tokens=self.tokens, stamp=self.password.stamp,
                           loopback_only=self.loopback_only, origin=self.origin)


def error_status(error: BaseException) -> int:
    """The HTTP status of a strongroom error raised by a route."""
    from strongroom.errors import RepositoryLocked, SnapshotNotFound, StorageError, UsageError
    if isinstance(error, SnapshotNotFound):
        return 404
    if isinstance(error, UsageError):
        return 400
    if isinstance(error, RepositoryLocked):
        return 409
    if isinstance(error, StorageError):
        return 502
    return 500


def add_error_handlers(app) -> None:
    """Every error of the console's API as `{"error": "one line"}`: a
    StrongroomError's own line (which never holds a secret), an HTTPException's
    detail, and a request the schema refuses (422, with pydantic's details)."""
    import sqlite3

    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from strongroom.errors import StrongroomError

    async def strongroom_error(request, exc: StrongroomError):
        return JSONResponse({"error": str(exc)}, status_code=error_status(exc))

    async def http_error(request, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    async def invalid_request(request, exc: RequestValidationError):
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        where = "; ".join(".".join(str(p) for p in d["loc"][1:]) + ": " + d["msg"] for d in details)
        return JSONResponse({"error": f"invalid request: {where}", "detail": details}, status_code=422)

    async def catalog_error(request, exc: sqlite3.OperationalError):
        # The catalog's busy timeout ran out (another process holds its write
        # lock): a clear 503, not a 500 with SQLite's words.
        if "locked" in str(exc) or "busy" in str(exc):
            return JSONResponse({"error": "the catalog is busy: another process is writing to it; try again"},
                                status_code=503, headers={"Retry-After": "5"})
        return JSONResponse({"error": "the catalog could not be read or written"}, status_code=500)

    app.add_exception_handler(StrongroomError, strongroom_error)
    app.add_exception_handler(sqlite3.OperationalError, catalog_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
