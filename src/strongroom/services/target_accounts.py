"""Clients of kind s3 and sftp: an S3 bucket or an SSH server kept once, by
name, as a WebDAV account is, and used by configurations as their target or
second target (a folder below the client's URL).

An S3 client's URL is `s3:https://ENDPOINT/BUCKET[/PREFIX][?PARAMS]`, its user
the access key id and its password the secret key. An SFTP client's URL is
`sftp://USER@HOST:PORT//PATH`, it logs in with `key_file` and trusts the host
keys in `known_hosts` (paths, kept in the catalog), and its password is the
key's passphrase ("" for none). The secret lives in the secrets store, never in
the catalog; it reaches the backend from here, the service layer (the edge of
a managed run), never from the environment.
"""

from __future__ import annotations

import os
from typing import Callable
from urllib.parse import quote

from strongroom.errors import UsageError
from strongroom.settings import Settings
from strongroom.storage import open_storage
from strongroom.storage.base import Storage

KINDS = ("s3", "sftp")


def is_target_kind(service_type: object) -> bool:
    """True for the clients that are not WebDAV accounts."""
    return isinstance(service_type, str) and service_type.lower() in KINDS


def guess_kind(url: str) -> str | None:
    """s3 or sftp from the URL's form, else None (a WebDAV URL)."""
    if url.startswith(("s3:http://", "s3:https://")):
        return "s3"
    if url.startswith("sftp:"):
        return "sftp"
    return None


def check_account(kind: str, username: object, password: object, url: object,
                  key_file: object = None, known_hosts: object = None) -> None:
    """Refuse, with one UsageError line that never repeats a secret, an S3 or SFTP client of the wrong form."""
    if not isinstance(url, str) or not isinstance(password, str) or not isinstance(username, str):
        raise UsageError(f"{kind} client: give the URL, user and secret as text")
    if kind == "s3":
        from strongroom.storage.s3_config import parse_s3_url
        if not url.startswith(("s3:http://", "s3:https://")):
            raise UsageError("an S3 client's URL names its endpoint and bucket: s3:https://ENDPOINT/BUCKET[/PREFIX]")
        parse_s3_url(url, None)
        if not username:
            raise UsageError("an S3 client needs its access key id (--user, or AWS_ACCESS_KEY_ID)")
        if not password:
            raise UsageError("an S3 client needs its secret key (--s3-secret-key-file, or AWS_SECRET_ACCESS_KEY)")
        return
    from strongroom.storage.sftp_access import parse_sftp_url
    if not url.startswith("sftp://"):
        raise UsageError("an SFTP client's URL is sftp://USER@HOST:PORT//ABSOLUTE/PATH")
    parse_sftp_url(url)
    for name, value in (("key file (--sftp-key-file)", key_file), ("known hosts file (--sftp-known-hosts)",
                                                                   known_hosts)):
        if not isinstance(value, str) or not os.path.isabs(value):
            # A daemon has no home directory to guess from: both are named, absolute.
            raise UsageError(f"an SFTP client needs its {name} as an absolute path")


def repository_url(kind: str, url: str, path: str) -> str:
    """The URL of the folder `path` below an S3 or SFTP client's URL."""
    base, mark, query = url.partition("?")
    below = "/".join(quote(p) for p in path.split("/") if p)
    if not below:
        return url
    return f"{base.rstrip('/')}/{below}" + (mark + query)


def open_account_storage(kind: str, url: str, username: str, password: str, key_file: str | None,
                         known_hosts: str | None, path: str, on_event: Callable[[dict], None] | None,
                         settings: Settings) -> Storage:
    """The storage of the folder `path` below an S3 or SFTP client's URL, logged in with what the client keeps."""
    target = repository_url(kind, url, path)
    if kind == "s3":
        from strongroom.storage.s3_config import S3Access
        from strongroom.storage.s3_sign import S3Credentials
        access = S3Access(S3Credentials(username, password, None), where="the client's stored secret key")
        return open_storage(target, s3_access=access, on_event=on_event, settings=settings)
    from strongroom.storage.sftp_access import SFTPAccess
    access = SFTPAccess(known_hosts or "", (key_file,) if key_file else (), None, password or None)
    return open_storage(target, sftp_access=access, on_event=on_event, settings=settings)


def describe_kind(kind: str) -> str:
    """The kind of a client in words."""
    return {"s3": "S3 bucket", "sftp": "SFTP server"}.get(kind, "WebDAV client")
