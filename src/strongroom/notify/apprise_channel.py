"""Any service Apprise knows (ntfy, Telegram, Slack, Discord, Gotify,
json://, ...) by its URL, through the `apprise` library rather than senders
of our own. The URL is a secret (`url`): most hold a token."""

from __future__ import annotations

from strongroom.notify.base import Message, NotifyError

_TYPES = {"info": "info", "warning": "warning", "error": "failure"}


def load_apprise(url: str):
    """An Apprise object holding `url`; NotifyError when Apprise does not know it."""
    try:
        import apprise
    except ImportError:
        raise NotifyError("Apprise URLs need the apprise package (pip install apprise)") from None
    sender = apprise.Apprise()
    if not sender.add(url):
        # The URL is not repeated: it may carry a token.
        raise NotifyError("Apprise does not understand this URL (see its list of services)")
    return sender


class AppriseChannel:
    kind = "apprise"

    def __init__(self, settings: dict, secrets: dict[str, str], timeout: float) -> None:
        url = secrets.get("url")
        if not url:
            raise NotifyError("the Apprise URL is not in the secrets store")
        self.shown = settings.get("shown_url") or "Apprise"
        self.url = url

    def send(self, message: Message) -> None:
        sender = load_apprise(self.url)
        if not sender.notify(body=message.text, title=message.title, notify_type=_TYPES[message.severity]):
            raise NotifyError(f"{self.shown}: Apprise could not deliver the message")
