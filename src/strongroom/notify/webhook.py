"""A JSON POST to a URL, optionally signed.

The body is `Message.to_json()` (docs/json.md). With an HMAC key (the
secret `hmac_key`), the header `X-Strongroom-Signature: sha256=HEX` carries
HMAC-SHA256 of the exact body bytes, so a receiver can check the sender and
that nothing was changed. The URL itself is a secret (`url`): a hook URL
often is its own password (Slack, Discord, Mattermost).
"""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from strongroom.notify.base import Message, NotifyError, http_failure

SIGNATURE_HEADER = "X-Strongroom-Signature"


def signature(key: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    kind = "webhook"

    def __init__(self, settings: dict, secrets: dict[str, str], timeout: float) -> None:
        self.url = secrets.get("url")
        if not self.url:
            raise NotifyError("the webhook's URL is not in the secrets store")
        self.shown = settings.get("shown_url") or "the webhook"
        self.key = secrets.get("hmac_key")
        if settings.get("signed") and not self.key:
            raise NotifyError(f"{self.shown}: the HMAC key is not in the secrets store")
        self.timeout = timeout

    def send(self, message: Message) -> None:
        body = json.dumps(message.to_json(), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "strongroom"}
        if self.key:
            headers[SIGNATURE_HEADER] = signature(self.key, body)
        try:
            # Streamed and never read: the answer's body is the receiver's, of any size.
            with httpx.stream("POST", self.url, content=body, headers=headers, timeout=self.timeout,
                              follow_redirects=False) as response:
                status = response.status_code
        except httpx.HTTPError as e:
            raise NotifyError(f"{self.shown}: {http_failure(e)}") from None
        if not 200 <= status < 300:
            raise NotifyError(f"{self.shown} answered HTTP {status}")
