"""Named WebDAV clients: credentials kept once, used by name."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable
from urllib.parse import quote, urlsplit

from strongroom.errors import AuthenticationFailed, StorageError, StrongroomError, UsageError
from strongroom.services.results import Result
from strongroom.services.target_accounts import check_account, is_target_kind, open_account_storage
from strongroom.services.target_accounts import repository_url as account_url
from strongroom.services.urls import has_password, without_password
from strongroom.settings import Settings
from strongroom.storage import open_storage
from strongroom.storage.base import Storage

if TYPE_CHECKING:
    from strongroom.services.catalog import Catalog
    from strongroom.services.secrets import SecretsStore

PASSWORD_IN_URL = ("never put the WebDAV password in the URL: give it as the client's password "
                   "(STRONGROOM_WEBDAV_PASSWORD or --webdav-password-file on the command line)")


@dataclass(frozen=True)
class WebDAVCredentials:
    """One WebDAV account: user, password (never shown in its repr), the
    server's URL (https, or http on a LAN; never with a password in it) and
    the kind of service (nutstore, nextcloud, owncloud, generic), which
    selects the quirks and limits strongroom works within."""

    username: str
    password: str = field(repr=False)
    url: str = ""
    service_type: str = "generic"  # nutstore, nextcloud, owncloud, generic; or s3, sftp
    # An SFTP client's login (services/target_accounts.py): paths, not secrets.
    key_file: str | None = None
    known_hosts: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.url, str) and has_password(self.url):
            raise UsageError(PASSWORD_IN_URL)
        if is_target_kind(self.service_type):
            check_account(self.service_type, self.username, self.password, self.url, self.key_file,
                          self.known_hosts)
            return
        from strongroom.services.config_schema import check_credentials
        check_credentials(self.username, self.password, self.url, self.service_type)
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"WebDAV URL {self.url!r}: use https://HOST/PATH (or http:// on a LAN)")


@dataclass(frozen=True)
class ConnectionReport(Result):
    """What `WebDAVService.test_connection` found out about a client."""

    client_id: str
    reachable: bool = False
    authenticated: bool = False
    writable: bool = False
    quota_used: int | None = None
    quota_available: int | None = None
    requests: int = 0
    error: str | None = None
    # False when nothing could be sent: the client's URL with this path is
    # not a place the service keeps files (`error` says why), so reachable,
    # authenticated and writable are unknown rather than "no".
    tested: bool = False

    @property
    def ok(self) -> bool:
        """Reachable, the login accepted and a file written (and removed again)."""
        return self.reachable and self.authenticated and self.writable


class WebDAVService:
    """WebDAV clients by id. Attached to a catalog and secrets store, it keeps
    them across runs (the password in the secrets store, never the catalog)."""

    def __init__(self, settings: Settings | None = None) -> None:
        # Timeouts, retries and budgets of the connections it opens; read from
        # the environment once, when the service is made, unless given.
        self.settings = settings or Settings.from_env()
        self._clients: dict[str, WebDAVCredentials] = {}
        self._lock = threading.Lock()
        self._catalog = None
        self._secrets = None

    def attach(self, catalog: Catalog, secrets: SecretsStore) -> None:
        """Persist the clients added so far, and load the ones stored before."""
        with self._lock:
            self._catalog, self._secrets = catalog, secrets
            pending = dict(self._clients)
        for client_id, credentials in pending.items():
            self._store(client_id, credentials)
        for doc in catalog.list_clients():
            if doc["id"] in self._clients:
                continue
            password = secrets.get(doc["secret_ref"]) if doc.get("secret_ref") else None
            if password is not None:
                # An older version kept a URL with a password in it (masked since):
                # it was never used to log in, so it is left out.
                url = without_password(doc["url"])
                self._clients[doc["id"]] = WebDAVCredentials(doc["username"], password, url,
                                                             doc.get("service_type", "generic"),
                                                             doc.get("key_file"), doc.get("known_hosts"))

    def _store(self, client_id: str, credentials: WebDAVCredentials) -> None:
        if self._catalog is None:
            return
        old = self._catalog.get_client(client_id)
        ref = (old or {}).get("secret_ref") or self._secrets.new_ref(f"webdav:{client_id}")
        self._secrets.set(ref, credentials.password)
        doc = {"username": credentials.username, "url": credentials.url,
               "service_type": credentials.service_type, "secret_ref": ref}
        if credentials.key_file or credentials.known_hosts:
            doc.update(key_file=credentials.key_file, known_hosts=credentials.known_hosts)
        self._catalog.put_client(client_id, doc)

    def add_client(self, client_id: str, credentials: WebDAVCredentials) -> None:
        """Keep `credentials` under `client_id` (in the catalog and secrets store once attached)."""
        if not client_id or client_id == "local":
            raise UsageError("a WebDAV client id must be a non-empty name other than 'local'")
        with self._lock:
            self._clients[client_id] = credentials
        self._store(client_id, credentials)

    def get_client(self, client_id: str) -> WebDAVCredentials:
        """The credentials of `client_id`; UsageError when there is no such client."""
        with self._lock:
            credentials = self._clients.get(client_id)
        if credentials is None:
            raise UsageError(f"no WebDAV client named {client_id!r}")
        return credentials

    def list_clients(self) -> list[str]:
        """The client ids, sorted."""
        with self._lock:
            return sorted(self._clients)

    def remove_client(self, client_id: str) -> None:
        """Forget a client and its password."""
        with self._lock:
            self._clients.pop(client_id, None)
        if self._catalog is not None:
            doc = self._catalog.get_client(client_id)
            if doc and doc.get("secret_ref"):
                self._secrets.delete(doc["secret_ref"])
            self._catalog.delete_client(client_id)

    def repository_url(self, client_id: str, path: str) -> str:
        """The `webdav+` URL of a folder below the client's URL."""
        c = self.get_client(client_id)
        if is_target_kind(c.service_type):
            return account_url(c.service_type, c.url, path)
        parts = urlsplit(c.url)
        base = parts.path if parts.path.endswith("/") else parts.path + "/"
        full = base + "/".join(quote(p) for p in path.split("/") if p)
        port = f":{parts.port}" if parts.port else ""
        return f"webdav+{parts.scheme}://{quote(c.username, safe='')}@{parts.hostname}{port}{full.rstrip('/')}/"

    def open_storage(self, client_id: str, path: str, cache_root: str | None = None,
                     on_event: Callable[[dict], None] | None = None, settings: Settings | None = None) -> Storage:
        """The storage of the folder `path` below the client's URL."""
        c = self.get_client(client_id)
        if is_target_kind(c.service_type):
            return open_account_storage(c.service_type, c.url, c.username, c.password, c.key_file, c.known_hosts,
                                        path, on_event, settings or self.settings)
        return open_storage(self.repository_url(client_id, path), webdav_password=c.password,
                            vendor=c.service_type, cache_root=cache_root, on_event=on_event,
                            settings=settings or self.settings)

    def test_connection(self, client_id: str, path: str = "") -> ConnectionReport:
        """Reachability, credentials, write permission and quota, in about four requests."""
        found: dict = {}
        storage = None
        try:
            try:
                storage = self.open_storage(client_id, path, cache_root="")
            except UsageError as e:
                # Refused before any request (e.g. the root of a Nutstore account,
                # which keeps files only inside sync folders): say so, not "unreachable".
                found["error"] = (f"not tested: {e}; test a folder below the client's URL "
                                  f"(the path argument, or `strongroom client test {client_id} --path FOLDER`)")
                return ConnectionReport(client_id, **found)
            found["tested"] = True
            client = getattr(storage, "inner", storage)
            probe = f"strongroom-probe-{os.urandom(6).hex()}"
            if hasattr(client, "quota"):
                found["quota_used"], found["quota_available"] = client.quota()
                found["reachable"] = found["authenticated"] = True
                client.write(probe, b"strongroom connection test")
            else:
                client.write(probe, b"strongroom connection test")  # S3, SFTP: the write proves the login
                found["reachable"] = found["authenticated"] = True
            client.delete(probe)
            found["writable"] = True
        except AuthenticationFailed as e:
            found["reachable"], found["error"] = True, str(e)
        except StrongroomError as e:
            found["error"] = str(e)
        finally:
            if storage is not None:
                found["requests"] = getattr(storage, "http_requests", 0)
                storage.close()
        return ConnectionReport(client_id, **found)


__all__ = ["WebDAVCredentials", "WebDAVService", "ConnectionReport", "StorageError"]
