"""Email over SMTP: plain, STARTTLS (`--starttls`) or implicit TLS (`smtps://`),
with authentication when a user is set.

Settings: `to` (addresses), `from`, `url` (`smtp://HOST:PORT` or
`smtps://HOST:PORT`), `user`, `starttls`, `ca_file` (a CA bundle to trust
instead of the system's, for a server with its own certificate). The
password is the secret `password`. TLS always verifies the certificate and
the host name: a mail relay that cannot be verified is not one to hand a
password to.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from strongroom.notify.base import Message, NotifyError, one_line


def parse_smtp_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of smtp://HOST[:PORT] or smtps://HOST[:PORT]."""
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL"
        raise NotifyError("an SMTP server is smtp://HOST:PORT or smtps://HOST:PORT") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise NotifyError("an SMTP server is smtp://HOST:PORT or smtps://HOST:PORT")
    if parts.username or parts.password:
        raise NotifyError("never put the SMTP user or password in the URL: use --smtp-user and a password file")
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 25)
    except ValueError:
        raise NotifyError("the SMTP port must be a number from 1 to 65535") from None
    return parts.scheme, parts.hostname, port


class EmailChannel:
    kind = "email"

    def __init__(self, settings: dict, secrets: dict[str, str], timeout: float) -> None:
        self.to = list(settings["to"])
        self.sender = settings.get("from") or f"strongroom@{socket.gethostname()}"
        self.scheme, self.host, self.port = parse_smtp_url(settings["url"])
        self.user = settings.get("user")
        self.starttls = bool(settings.get("starttls"))
        self.ca_file = settings.get("ca_file")
        self.password = secrets.get("password")
        self.timeout = timeout
        if self.user and self.password is None:
            raise NotifyError(f"the SMTP password of {self.user} is not in the secrets store")

    def _context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as e:
            raise NotifyError(f"cannot read the CA file {self.ca_file}: {one_line(e)}") from None

    def compose(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["Subject"] = f"[strongroom] {message.title}"
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.to)
        mail["Date"] = formatdate(message.time, localtime=False)
        mail["Message-ID"] = make_msgid(domain="strongroom")
        mail["X-Strongroom-Event"] = message.event
        mail["X-Strongroom-Severity"] = message.severity
        mail.set_content(message.text + "\n")
        return mail

    def send(self, message: Message) -> None:
        where = f"{self.scheme}://{self.host}:{self.port}"
        try:
            if self.scheme == "smtps":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                      context=self._context())
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                if self.user:
                    if self.scheme == "smtp" and not self.starttls:
                        # smtplib would send the password in the clear; so would we, so refuse.
                        raise NotifyError(f"{where}: refusing to send the SMTP password without TLS "
                                          "(use --starttls or smtps://)")
                    smtp.login(self.user, self.password or "")
                refused = smtp.send_message(self.compose(message))
        except NotifyError:
            raise
        except smtplib.SMTPAuthenticationError as e:
            raise NotifyError(f"{where}: the SMTP server refused the login of {self.user} ({e.smtp_code})") from None
        except smtplib.SMTPException as e:
            raise NotifyError(f"{where}: {one_line(type(e).__name__ + ': ' + str(e))}") from None
        except (OSError, ssl.SSLError) as e:
            raise NotifyError(f"{where}: {one_line(e)}") from None
        if refused:
            raise NotifyError(f"{where}: refused recipients {', '.join(sorted(refused))}")
