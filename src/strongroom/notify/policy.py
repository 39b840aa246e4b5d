"""No alert fatigue: whether an event is worth a message, given what was
sent before.

A pure function of the persisted state of one (configuration, condition)
and the event, with the time passed in: a condition that starts (a first
failure, becoming overdue) sends one message; while it holds, at most one
reminder per `reminder_every` seconds (a day); when it ends, one
"recovered" message. A nightly backup that fails for a week sends the
first failure and six reminders, not one message per failed slot (nor one
per retry: the queue reports a run only after its last attempt).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from strongroom.notify.events import ALSO_CLEARS, KINDS, Event

REMINDER_EVERY = 86400.0


@dataclass(frozen=True)
class AlertState:
    config: str
    condition: str
    active: bool = False
    since: float | None = None        # when the condition started
    last_sent: float | None = None    # when a message about it last went out
    repeats: int = 0                  # raising events since it started (sent or not)
    severity: str = "info"            # of the event that raised it: routes the recovery too

    def to_row(self) -> dict:
        return {"active": self.active, "since": self.since, "last_sent": self.last_sent,
                "repeats": self.repeats, "severity": self.severity}


@dataclass(frozen=True)
class Decision:
    condition: str
    # "started", "reminder", "recovered", "news" (a clearing event worth telling
    # although nothing was wrong), or None: nothing to send.
    send: str | None
    severity: str                      # to route the message by
    since: float | None = None         # for a reminder or a recovery: when it started
    repeats: int = 0


def decide(state: AlertState | None, condition: str, raises: bool, severity: str, news_when_clear: bool,
           now: float, reminder_every: float = REMINDER_EVERY) -> tuple[Decision, AlertState | None]:
    """The decision for one condition and its new state (None: nothing to keep)."""
    if raises:
        if state is None or not state.active:
            new = AlertState(state.config if state else "", condition, True, now, now, 1, severity)
            return Decision(condition, "started", severity, now, 1), new
        repeats = state.repeats + 1
        if state.last_sent is None or now - state.last_sent >= reminder_every:
            new = replace(state, last_sent=now, repeats=repeats, severity=_worse(state.severity, severity))
            return Decision(condition, "reminder", new.severity, state.since, repeats), new
        return Decision(condition, None, state.severity, state.since, repeats), replace(state, repeats=repeats)
    if state is not None and state.active:
        new = replace(state, active=False, since=None, last_sent=now, repeats=0)
        return Decision(condition, "recovered", state.severity, state.since, state.repeats), new
    return Decision(condition, "news" if news_when_clear else None, severity), state


def decide_event(states: dict[str, AlertState], event: Event, reminder_every: float = REMINDER_EVERY
                 ) -> tuple[list[Decision], dict[str, AlertState]]:
    """Every decision an event causes (its own condition first, then those it
    also clears) and the changed states, by condition."""
    kind = KINDS[event.kind]
    decisions, changed = [], {}
    todo = [(kind.condition, kind.raises, kind.severity, kind.news_when_clear)]
    todo += [(c, False, "info", False) for c in ALSO_CLEARS.get(event.kind, ())]
    for condition, raises, severity, news in todo:
        old = states.get(condition)
        decision, new = decide(old, condition, raises, severity, news, event.time, reminder_every)
        if new is not None and new != old:
            changed[condition] = replace(new, config=event.config)
        decisions.append(decision)
    return decisions, changed


def _worse(a: str, b: str) -> str:
    order = ("info", "warning", "error")
    return a if order.index(a) >= order.index(b) else b
