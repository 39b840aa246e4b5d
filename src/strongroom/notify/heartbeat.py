"""Heartbeat pings in the healthchecks.io style: `URL/start` when a run
starts, `URL` when it succeeds, `URL/fail` when it failed for good.

The outside service alarms when the pings stop, which is how a machine that
is off, or a strongroom that no longer runs, is noticed at all. So a
heartbeat gets every run's outcome, not only what the alert policy lets
through. The URL is a secret (`url`): the check's id in it is enough to
ping it.
"""

from __future__ import annotations

import httpx

from strongroom.notify.base import Message, NotifyError, http_failure

SUFFIX = {"start": "/start", "success": "", "fail": "/fail"}


class HeartbeatChannel:
    kind = "heartbeat"

    def __init__(self, settings: dict, secrets: dict[str, str], timeout: float) -> None:
        self.url = (secrets.get("url") or "").rstrip("/")
        if not self.url:
            raise NotifyError("the heartbeat URL is not in the secrets store")
        self.shown = settings.get("shown_url") or "the heartbeat"
        self.timeout = timeout

    def send(self, message: Message) -> None:
        ping = message.ping or "success"
        # The body is kept by healthchecks.io as the ping's log: the message, bounded.
        body = f"{message.title}\n{message.text}"[:10000].encode()
        try:
            with httpx.stream("POST", self.url + SUFFIX[ping], content=body, timeout=self.timeout,
                              headers={"User-Agent": "strongroom", "Content-Type": "text/plain"}) as response:
                status = response.status_code  # the body is not read: it may be of any size
        except httpx.HTTPError as e:
            raise NotifyError(f"{self.shown}: {http_failure(e)}") from None
        if not 200 <= status < 300:
            raise NotifyError(f"{self.shown} answered HTTP {status} to the {ping} ping")
