"""Real receivers on 127.0.0.1 for the notification tests: an HTTP server that
records every request (webhooks, Apprise's json://, heartbeat pings) and an
SMTP server (aiosmtpd) with AUTH, STARTTLS or implicit TLS, on a throw-away
certificate made with `cryptography`."""

from __future__ import annotations

import datetime
import ipaddress
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from webdav_servers import free_port


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict
    body: bytes


class HTTPReceiver:
    """Answers every request with `status` (200) and keeps it in `requests`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver.requests.append(Request(self.command, self.path, dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = do_GET = do_PUT = _any

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def at(self, prefix: str) -> list[Request]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and localhost): (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class SMTPReceiver:
    """aiosmtpd in a thread. `mode` is "plain", "starttls" or "tls" (implicit);
    with `users` ({name: password}) AUTH is required (over TLS only).
    Received mails are in `messages` as (envelope sender, recipients, bytes, login)."""

    def __init__(self, mode: str, cert: tuple[Path, Path] | None = None, users: dict | None = None) -> None:
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list[tuple[str, list[str], bytes, str | None]] = []
        self.logins: list[tuple[str, bool]] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else session.auth_data
                receiver.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content, login))
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (users or {}).get(auth_data.login.decode()) \
                == auth_data.password.decode()
            receiver.logins.append((auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?", ok))
            return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

        context = None
        if mode in ("starttls", "tls"):
            assert cert is not None
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        kwargs: dict = {}
        if users is not None:
            # aiosmtpd counts only STARTTLS as TLS: on an implicit-TLS port the
            # whole connection is encrypted already.
            kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=mode != "tls")
        if mode == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        elif mode == "tls":
            kwargs.update(ssl_context=context, server_hostname="127.0.0.1")
        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()
        scheme = "smtps" if mode == "tls" else "smtp"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.controller.stop()
