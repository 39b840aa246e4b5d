"""The notifier: takes events, asks the policy, sends to the channels.

It is what the job queue, DR tests and the daemon call. Channels come
from the catalog, their secrets from the secrets store at each send. A
failed send is logged as a warning and reported in the return value; it
never raises into the caller, so a dead mail relay cannot turn a good
backup into a failed one or hide why a backup failed (borgmatic's rule).
Only `test` raises, since there the send is the whole point.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from strongroom.errors import StrongroomError
from strongroom.notify.base import Message, NotifyError, make_channel, one_line, severity_at_least
from strongroom.notify.events import CONDITION_NAMES, KINDS, Event, advice, what_happened
from strongroom.notify.policy import REMINDER_EVERY, AlertState, Decision, decide_event

if TYPE_CHECKING:
    from strongroom.services.catalog import Catalog
    from strongroom.services.secrets import SecretsStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    channel: str
    event: str
    ok: bool
    error: str | None = None


class Notifier:
    def __init__(self, catalog: Catalog, secrets: SecretsStore, clock: Callable[[], float] = time.time,
                 timeout: float = 20.0, reminder_every: float = REMINDER_EVERY) -> None:
        self.catalog = catalog
        self.secrets = secrets
        self.clock = clock
        self.timeout = timeout
        self.reminder_every = reminder_every

    def now(self) -> float:
        return self.clock()

    # ---- sending -----------------------------------------------------------------

    def emit(self, event: Event) -> list[Delivery]:
        """Tell the channels about `event` as the policy allows; never raises."""
        try:
            return self._emit(event)
        except Exception as e:  # a notification must never change the result it reports
            reason = str(e) if isinstance(e, StrongroomError) else f"unexpected {type(e).__name__}"
            log.warning("notifications about %s not sent: %s", event.config, one_line(reason))
            return []

    def _emit(self, event: Event) -> list[Delivery]:
        channels = [c for c in self.catalog.list_channels() if _wants(c, event)]
        if not channels:
            return []
        deliveries = []
        kind = KINDS[event.kind]
        if kind.ping:
            # A heartbeat hears every run, or the outside service cannot tell a silent machine from a good one.
            title, text = what_happened(event)
            ping = Message(event.kind, kind.severity, event.config, title, text, event.time, kind.ping)
            deliveries += [self._send(c, ping) for c in channels if c["kind"] == "heartbeat"]
        if event.kind == "run_started":
            return deliveries
        decisions = self.catalog.update_alert_states(event.config, lambda rows: self._decide(rows, event))
        message, route = compose(event, decisions)
        if message is None:
            return deliveries
        for channel in channels:
            if channel["kind"] != "heartbeat" and severity_at_least(route, channel["min_severity"]):
                deliveries.append(self._send(channel, message))
        return deliveries

    def _decide(self, rows: list[dict], event: Event) -> tuple[list[Decision], dict[str, dict]]:
        states = {r["condition"]: AlertState(r["config"], r["condition"], r["active"], r["since"], r["last_sent"],
                                             r["repeats"], r["severity"]) for r in rows}
        decisions, changed = decide_event(states, event, self.reminder_every)
        return decisions, {c: s.to_row() for c, s in changed.items()}

    def _send(self, channel: dict, message: Message) -> Delivery:
        try:
            self.channel(channel).send(message)
        except Exception as e:
            # Only our own errors are worded to hold no secret; a library's may quote a URL.
            error = str(e) if isinstance(e, NotifyError) else f"unexpected {type(e).__name__}"
            log.warning("notification channel %s: %s not sent: %s", channel["name"], message.event, error)
            return Delivery(channel["name"], message.event, False, error)
        log.info("notification channel %s: sent %s about %s", channel["name"], message.event, message.config)
        return Delivery(channel["name"], message.event, True)

    def channel(self, row: dict):
        """The channel of a catalog row, its secrets read from the store."""
        secrets = {}
        for key, ref in (row.get("secret_refs") or {}).items():
            value = self.secrets.get(ref)
            if value is None:
                raise NotifyError(f"the {key} of notification channel {row['name']} is not in the secrets store")
            secrets[key] = value
        return make_channel(row["kind"], row["settings"], secrets, self.timeout)

    def test(self, name: str) -> Message:
        """Send a test message on channel `name`; NotifyError when it cannot be delivered."""
        row = self.catalog.get_channel(name)
        if row is None:
            from strongroom.errors import UsageError
            raise UsageError(f"no notification channel named {name!r}")
        message = Message("test", "info", None, "test message",
                          f"This is a test message from strongroom on channel {name}: it works.", self.now(),
                          ping="success")
        self.channel(row).send(message)
        return message


def _wants(channel: dict, event: Event) -> bool:
    """Whether the channel's configuration filter lets the event through: it names
    the event's configuration (or plan), or one of a DR plan's configurations."""
    wanted = channel.get("configs")
    return not wanted or event.config in wanted or bool(set(event.details.get("configs") or ()) & set(wanted))


def _when(t: float | None) -> str:
    if t is None:
        return "some time"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def compose(event: Event, decisions: list[Decision]) -> tuple[Message | None, str]:
    """The one message for an event's decisions, and the severity that routes it
    (None when the policy sends nothing)."""
    primary = decisions[0]
    recovered = [d for d in decisions if d.send == "recovered"]
    kind = KINDS[event.kind]
    lines, title, name, severity, route = [], None, event.kind, kind.severity, "info"
    if primary.send in ("started", "reminder", "news"):
        title, text = what_happened(event)
        if primary.send == "reminder":
            title = f"still: {title}"
            text += f" This has been so since {_when(primary.since)} ({primary.repeats} times)."
        lines.append(text)
        route = primary.severity
    if recovered:
        names = " or ".join(CONDITION_NAMES.get(d.condition, d.condition) for d in recovered)
        since = min((d.since for d in recovered if d.since is not None), default=None)
        lines.append(f"Configuration {event.config} has recovered: no more {names} (since {_when(since)}).")
        for d in recovered:
            route = d.severity if severity_at_least(d.severity, route) else route
        if title is None:
            title, name, severity = f"{event.config} recovered", "recovered", "info"
    if title is None:
        return None, route
    if primary.send in ("started", "reminder") and advice(event):
        lines.append("What to do: " + advice(event))
    details = {"notice": primary.send if primary.send else "recovered", **event.details}
    if event.error:
        details["error"] = event.error
    if recovered:
        details["recovered"] = [d.condition for d in recovered]
    return Message(name, severity, event.config, title, "\n".join(lines), event.time, details=details), route


def notify_dr_run(service, run) -> list[Delivery]:
    """Tell the channels of `service`'s catalog about a finished DR run (`PlanRun`):
    a rehearsal's verdict (dr_test_*) or a real recovery's (dr_run_*). Never raises."""
    from strongroom.notify.events import dr_run_result, dr_test_result
    try:
        event = dr_test_result(run) or dr_run_result(run)
        if event is None:
            return []
        return Notifier(service.catalog, service.secrets).emit(event)
    except Exception as e:
        reason = str(e) if isinstance(e, StrongroomError) else f"unexpected {type(e).__name__}"
        log.warning("notifications about DR plan %s not sent: %s", getattr(run, "plan", "?"), one_line(reason))
        return []
