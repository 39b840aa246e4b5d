"""The web console's route table, read from the app itself.

Pages are left out of the OpenAPI schema (include_in_schema=False), so the
schema cannot list them: `route_table(tmp_path)` builds serve's app in this
process, exactly as `strongroom serve` does (HttpEndpoints with a Console),
over a catalog of its own, and lists every route it answers. The tests then
call those paths on a real served daemon."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PARAMETER = re.compile(r"\{[^}]+\}")


@dataclass(frozen=True)
class RouteEntry:
    method: str
    path: str  # as declared, with its {parameters}
    in_schema: bool = False  # listed in /api/openapi.json

    @property
    def parameters(self) -> bool:
        return PARAMETER.search(self.path) is not None

    def filled(self, value: str = "x") -> str:
        """The path with every parameter set to a harmless `value`."""
        return PARAMETER.sub(value, self.path)

    @property
    def schema_path(self) -> str:
        """The path as OpenAPI writes it: `{name:path}` is `{name}` there."""
        return re.sub(r"\{([^}:]+):[^}]+\}", r"{\1}", self.path)

    @property
    def shape(self) -> str:
        """The path with its parameter names left out, to compare with a contract."""
        return PARAMETER.sub("{}", self.path)


def route_table(tmp_path: Path) -> list[RouteEntry]:
    """Every (method, path) of serve's app with the console, but its mounts
    (`/static`, served by StaticFiles and checked on their own)."""
    from starlette.routing import Mount

    from strongroom.daemon.http import HttpEndpoints
    from strongroom.services.backup_manager import create_backup_manager
    from strongroom.web.console import Console

    manager = create_backup_manager(db_path=str(tmp_path / "routes.db"), secrets_path=str(tmp_path / "routes.json"),
                                    cache_root=str(tmp_path / "routes-cache"))
    try:
        app = HttpEndpoints(manager, heartbeat=lambda: None, console=Console(manager)).app
        entries = set()
        for route in _flat(app.routes):
            if isinstance(getattr(route, "original_route", route), Mount):
                continue
            for method in getattr(route, "methods", None) or ():
                entries.add(RouteEntry(method, route.path, bool(getattr(route, "include_in_schema", False))))
        return sorted(entries, key=lambda e: (e.path, e.method))
    finally:
        manager.close()
        manager.catalog.close()


def _flat(routes):
    """Every route, included routers opened: newer FastAPI releases keep an
    included router as one lazy entry of `app.routes` and lists its routes
    through `fastapi.routing.iter_route_contexts`; older ones copy them
    into `app.routes`."""
    from fastapi import routing

    walk = getattr(routing, "iter_route_contexts", None)
    return list(walk(routes)) if walk is not None else list(routes)


def page_paths(entries: list[RouteEntry]) -> list[str]:
    """The pages a browser can open as they are: GET routes without a
    parameter, outside /api/ and /static/, and not the daemon's own."""
    from strongroom.web.guard import DAEMON_PATHS

    return sorted({e.path for e in entries if e.method == "GET" and not e.parameters
                   and not e.path.startswith(("/api/", "/static/")) and e.path not in DAEMON_PATHS
                   and e.path != "/favicon.ico"})
