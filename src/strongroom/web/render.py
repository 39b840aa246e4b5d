"""Server-rendered pages: Jinja2 templates (autoescaped) from the package, and
the small things every route module shares (who is asking, errors as JSON)."""

from __future__ import annotations

import functools
from datetime import datetime, timezone

from strongroom import __version__
from strongroom.web.guard import Caller

NAV = (  # (path, label) of the menu, in this order
    ("/", "Dashboard"),
    ("/configs", "Configurations"),
    ("/points", "Snapshots"),
    ("/dr", "DR plans"),
    ("/jobs", "Jobs"),
    ("/notify", "Notifications"),
)


@functools.lru_cache(maxsize=1)
def environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("strongroom.web", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = when
    env.filters["size"] = size
    env.filters["ago"] = ago
    return env


def caller(request) -> Caller:
    """The caller ConsoleGuard let in (every route but the public ones has one)."""
    return request.state.caller


def page(request, template: str, title: str, status_code: int = 200, **context):
    """An HTMLResponse of `template` with the layout's context: the title, the
    menu, the caller's CSRF token (for the page's script) and the version."""
    from fastapi.responses import HTMLResponse

    found = getattr(request.state, "caller", None)
    html = environment().get_template(template).render(
        title=title, nav=NAV, path=request.url.path, csrf=(found.csrf if found else None) or "",
        signed_in=found is not None, version=__version__, **context)
    return HTMLResponse(html, status_code=status_code)


def when(value, zone=None) -> str:
    """A time for a person: `2026-12-01 14:05` in the machine's zone; "never" for None."""
    if value is None:
        return "never"
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def ago(value, now: float | None = None) -> str:
    """How long ago: `5 min ago`, `3 h ago`, `2 days ago`."""
    import time
    if value is None:
        return "never"
    if isinstance(value, datetime):
        value = value.timestamp()
    seconds = max(0.0, (now or time.time()) - float(value))
    if seconds < 90:
        return "just now"
    if seconds < 5400:
        return f"{round(seconds / 60)} min ago"
    if seconds < 2 * 86400:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


def size(value) -> str:
    """Bytes for a person: `1.2 GiB`."""
    if value is None:
        return "–"
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
