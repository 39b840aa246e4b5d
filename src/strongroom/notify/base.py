"""What every channel shares: the message it is given, the error it raises,
and the registry of channel kinds by name.

A channel is small: it is built from its settings (no secrets) and its
secrets (resolved from the secrets store by the caller), and `send(message)`
either delivers or raises NotifyError with one line that names no secret.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol

from strongroom.errors import StrongroomError

SEVERITIES = ("info", "warning", "error")


class NotifyError(StrongroomError):
    """A message could not be delivered (one line, no secret in it)."""


@dataclass(frozen=True)
class Message:
    event: str                 # run_failed, recovered, test, ...
    severity: str              # info | warning | error
    config: str | None         # the configuration it is about, None for a test
    title: str                 # one short line
    text: str                  # what happened and what to do
    time: float                # unix seconds
    # For heartbeat channels: "start", "success", "fail", or None (not a run outcome).
    ping: str | None = None
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The webhook body: the fields every receiver can rely on (docs/json.md)."""
        from datetime import datetime, timezone
        when = datetime.fromtimestamp(self.time, timezone.utc).isoformat()
        return {"event": self.event, "severity": self.severity, "config": self.config, "title": self.title,
                "message": self.text, "time": when, "details": self.details}


class Channel(Protocol):
    kind: str

    def send(self, message: Message) -> None: ...


# kind: (module, class). One module per kind, imported only when used: apprise is big.
KINDS = {
    "email": ("strongroom.notify.email", "EmailChannel"),
    "webhook": ("strongroom.notify.webhook", "WebhookChannel"),
    "apprise": ("strongroom.notify.apprise_channel", "AppriseChannel"),
    "heartbeat": ("strongroom.notify.heartbeat", "HeartbeatChannel"),
}


def make_channel(kind: str, settings: dict, secrets: dict[str, str], timeout: float = 20.0) -> Channel:
    """The channel of `kind` built from its settings and resolved secrets."""
    if kind not in KINDS:
        raise NotifyError(f"unknown notification channel kind {kind!r}: use one of {', '.join(KINDS)}")
    module, name = KINDS[kind]
    return getattr(importlib.import_module(module), name)(settings, secrets, timeout)


def severity_at_least(severity: str, minimum: str) -> bool:
    return SEVERITIES.index(severity) >= SEVERITIES.index(minimum)


def one_line(text: object, limit: int = 300) -> str:
    """An error from a library as one bounded line."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def http_failure(error: Exception) -> str:
    """Why an HTTP request failed, without httpx's text (which may quote the URL)."""
    import httpx
    if isinstance(error, httpx.TimeoutException):
        return f"no answer in time ({type(error).__name__})"
    if isinstance(error, httpx.ConnectError):
        return "cannot connect (ConnectError)"
    return type(error).__name__
