"""The console's notification API: the channels (their targets shown without
a secret: see strongroom.notify.channels.shown_target) and "send a test",
which is `strongroom notify test`."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Path

from strongroom.notify.base import NotifyError
from strongroom.notify.channels import shown_target

CHANNEL_NAME = r"^[A-Za-z0-9._-]{1,100}$"


def channel_json(row: dict) -> dict:
    """A channel as the API shows it: no secret, no secret reference."""
    return {"name": row["name"], "kind": row["kind"], "target": shown_target(row),
            "min_severity": row["min_severity"], "configs": list(row["configs"]),
            "signed": bool(row["settings"].get("signed"))}


def routes(console) -> APIRouter:
    router = APIRouter()

    @router.get("/api/notify/channels", tags=["notify"])
    def list_channels() -> list[dict]:
        """The notification channels, by name."""
        return [channel_json(row) for row in console.reader.catalog.list_channels()]

    @router.post("/api/notify/channels/{name}/test", tags=["notify"])
    def test_channel(name: str = Path(pattern=CHANNEL_NAME)) -> dict:
        """Send a test message on channel `name`: `delivered`, and the error in one line if not."""
        if console.reader.catalog.get_channel(name) is None:
            raise HTTPException(404, f"no notification channel named {name!r}")
        try:
            message = console.reader.notifier.test(name)
        except NotifyError as e:
            return {"channel": name, "delivered": False, "error": " ".join(str(e).split())}
        return {"channel": name, "delivered": True, "error": None, "event": message.event}

    return router
