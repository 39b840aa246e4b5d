"""The daemon's periodic look for conditions no run reports: a configuration
overdue, a target that will be full soon.

Overdue is decided by services.status.config_status, the same function
`strongroom status` uses (and so /healthz), so the three never disagree. A
configuration never backed up is amber there, not overdue, and so it raises
no overdue alert either: its failed runs are alerted on their own. The
alert policy keeps each condition to one message when it starts, one
reminder a day, and one when it clears (a success clears overdue)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from strongroom.notify.checks import overdue_event, target_full_events
from strongroom.notify.events import Event
from strongroom.services.status import config_status

if TYPE_CHECKING:
    from strongroom.services.backup_manager import BackupManager

log = logging.getLogger("strongroom.daemon.alerts")

# A target is warned about when its growth fills it within this many days.
FULL_WITHIN_DAYS = 14.0


def alert_events(manager: BackupManager, now: float, zone: ZoneInfo,
                 full_within_days: float = FULL_WITHIN_DAYS) -> list[Event]:
    """The overdue and target-full events that hold at `now` (unix seconds)."""
    moment = datetime.fromtimestamp(now, timezone.utc)
    events: list[Event] = []
    for config in manager.list_configs():
        if not config.schedules:
            continue
        status = config_status(manager.catalog, config, moment, zone)
        if status.overdue and status.overdue_after_seconds is not None:
            success = status.last_success.timestamp() if status.last_success else None
            event = overdue_event(config.name, success, status.overdue_after_seconds, now)
            if event is not None:
                events.append(event)
    events += target_full_events(manager.storage.get_storage_trend(), full_within_days, now)
    return events
