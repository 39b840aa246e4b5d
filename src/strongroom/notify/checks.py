"""Events that come from looking rather than from a run: a configuration
overdue, a target that will be full soon. The daemon calls these on its
own schedule and passes the events to `Notifier.emit`; the policy keeps
them to one message when the condition starts, one reminder a day, and
one when it ends."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from strongroom.notify.events import Event

if TYPE_CHECKING:
    from strongroom.services.results import StorageTrend


def overdue_event(config: str, last_success: float | None, max_age: float, now: float) -> Event | None:
    """`overdue` when `config` has had no success within `max_age` seconds (the
    daemon passes 1.5 x its schedule's longest normal gap, or a set maximum),
    else None. A later success clears it (see events.ALSO_CLEARS)."""
    if last_success is not None and now - last_success <= max_age:
        return None
    if last_success is None:
        since = "ever"
    else:
        when = datetime.fromtimestamp(last_success, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        since = f"since {when}"
    return Event("overdue", config, now, details={"since": since, "max_age_seconds": max_age})


def target_full_events(trend: StorageTrend, within_days: float, now: float) -> list[Event]:
    """Per configuration of every target in `trend` (StorageManager.get_storage_trend):
    `target_full_soon` when its growth fills the target within `within_days`,
    else `target_ok` (which ends an earlier warning). A target without a
    trend yet (too few samples, no free-space figure) says nothing."""
    events = []
    for target in trend.targets.values():
        line = target.trend
        if line.full_in_days is None and not line.not_filling:
            continue
        filling = line.full_in_days is not None and line.full_in_days <= within_days
        for config in target.configs:
            if filling:
                events.append(Event("target_full_soon", config, now,
                                    details={"days": line.full_in_days, "available": line.available,
                                             "growth_per_day": line.growth_per_day}))
            else:
                events.append(Event("target_ok", config, now))
    return events
