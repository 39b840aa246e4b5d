"""`/healthz`: whether the daemon does its work. 200 when the scheduler made
a pass lately and no configuration is overdue; 503 otherwise, with every
reason in plain words.

Overdue is the rule of `strongroom status` (services/status.py): no
successful backup within the age its schedules allow, counted from the
newest job of kind full or incremental. A configuration never backed up, or
without a schedule, is not overdue.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from strongroom.errors import StrongroomError
from strongroom.schedule.spec import system_zone
from strongroom.daemon.standing import ScheduleGaps, Standing, standing

UTC = timezone.utc


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def overdue_configs(manager, now: float, zone: ZoneInfo, gaps: ScheduleGaps | None = None) -> list[Standing]:
    """The standing of each overdue configuration, in the catalog's order."""
    found = [standing(manager.catalog, config, now, zone, gaps) for config in manager.list_configs()]
    return [item for item in found if item.overdue]


def health(manager, now: float, heartbeat: float | None, stale_after: float,
           zone: ZoneInfo | None = None, gaps: ScheduleGaps | None = None) -> tuple[int, dict]:
    """(HTTP status, JSON body) of `/healthz` at unix time `now`; `heartbeat` is
    when the scheduler last made a pass (None: not yet, or not running). `gaps`
    keeps cron schedules' gaps between calls (see standing.ScheduleGaps)."""
    reasons: list[str] = []
    if heartbeat is None:
        reasons.append("the scheduler is not running: it has made no pass")
    elif now - heartbeat > stale_after:
        reasons.append(f"the scheduler is not running: its last pass was {_age(now - heartbeat)} ago, "
                       f"at {_stamp(heartbeat)} (allowed: {_age(stale_after)})")
    overdue: list[str] = []
    try:
        for item in overdue_configs(manager, now, zone or system_zone(), gaps):
            overdue.append(item.config)
            reasons.append(f"configuration {item.config!r} is overdue: no successful backup since "
                           f"{_stamp(item.last_success)} ({_age(now - item.last_success)} ago; "
                           f"its schedule allows {_age(item.allowed_age)})")
    except (StrongroomError, sqlite3.Error) as e:
        reasons.append(f"the catalog could not be read: {e}")
    body = {"status": "failing" if reasons else "ok", "reasons": reasons, "overdue": overdue,
            "heartbeat": None if heartbeat is None else _stamp(heartbeat), "time": _stamp(now)}
    return (503 if reasons else 200), body
