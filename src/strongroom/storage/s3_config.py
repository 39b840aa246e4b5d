"""S3 repository URLs, and the credentials and settings that come with them.

`s3:https://ENDPOINT/bucket/prefix` (restic's form) names the endpoint;
`s3://bucket/prefix` takes it from AWS_ENDPOINT_URL or the profile's
`endpoint_url`. Parameters after `?`: connections, region, provider,
style (path or virtual), part-size (MiB), object-lock (governance:30d).

Credentials are read where a run is set up (the command line's edge, the
service layer), from a mapping of environment variables handed in, never
from os.environ down here: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
(/ AWS_SESSION_TOKEN), else the profile AWS_PROFILE names ("default")
in AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials) and AWS_CONFIG_FILE
(~/.aws/config). A secret never goes in a URL.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from strongroom.errors import UsageError
from strongroom.storage.s3_sign import S3Credentials

_BUCKET_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-")


@dataclass(frozen=True)
class S3Access:
    """What a run knows of S3 from outside the URL: credentials, region, endpoint."""

    credentials: S3Credentials | None
    region: str | None = None
    endpoint_url: str | None = None
    where: str = "the environment"  # where the credentials came from, for messages


@dataclass(frozen=True)
class S3Location:
    endpoint: str
    bucket: str
    prefix: str
    connections: int | None
    region: str | None
    provider: str | None
    path_style: bool | None
    part_size: int | None
    object_lock: tuple[str, int] | None = None  # (GOVERNANCE or COMPLIANCE, days)


def parse_s3_url(url: str, access: S3Access | None) -> S3Location:
    if url.startswith("s3://"):
        endpoint = access.endpoint_url if access else None
        if not endpoint:
            raise UsageError("s3://BUCKET/PREFIX takes its endpoint from AWS_ENDPOINT_URL or the profile's "
                             "endpoint_url; neither is set (or write s3:https://ENDPOINT/BUCKET/PREFIX)")
        rest = url[len("s3://"):]
    elif url.startswith(("s3:http://", "s3:https://")):
        parts = urlsplit(url[len("s3:"):])
        if parts.password is not None or parts.username is not None:
            raise UsageError("never put S3 credentials in the URL: set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
        if not parts.hostname:
            raise UsageError("an S3 repository URL needs an endpoint: s3:https://HOST/BUCKET/PREFIX")
        endpoint = f"{parts.scheme}://{parts.netloc}"
        rest = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
    else:
        raise UsageError(f"not an S3 repository URL: {url!r}")
    if "@" in rest.split("/", 1)[0] or "@" in urlsplit(endpoint).netloc:
        raise UsageError("never put S3 credentials in the URL: set AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
    path, _, query = rest.partition("?")
    bucket, _, prefix = unquote(path).partition("/")
    prefix = prefix.strip("/")
    if not 3 <= len(bucket) <= 63 or not set(bucket) <= _BUCKET_CHARS or bucket[0] in ".-":
        raise UsageError(f"{bucket!r} is not an S3 bucket name (3 to 63 of a-z, 0-9, '.', '-')")
    params = _params(query)
    style = params.get("style")
    if style not in (None, "path", "virtual"):
        raise UsageError(f"?style= is path or virtual, not {style!r}")
    part_size = None
    if "part-size" in params:
        try:
            part_size = int(params["part-size"]) * 1024 * 1024
        except ValueError:
            raise UsageError(f"?part-size= is a whole number of MiB, not {params['part-size']!r}") from None
        if not 5 <= part_size >> 20 <= 5120:
            raise UsageError("?part-size= must be from 5 to 5120 MiB")
    connections = None
    if "connections" in params:
        from strongroom.storage.vendors import parse_connections
        connections = parse_connections(params["connections"], "the URL's connections")
    return S3Location(endpoint, bucket, prefix, connections, params.get("region"), params.get("provider"),
                      None if style is None else style == "path", part_size,
                      _object_lock(params["object-lock"]) if "object-lock" in params else None)


def _object_lock(text: str) -> tuple[str, int]:
    """`governance:30d` -> ("GOVERNANCE", 30)."""
    mode, _, days = text.partition(":")
    if mode.lower() not in ("governance", "compliance") or not days.endswith("d") or not days[:-1].isdigit() \
            or not 1 <= int(days[:-1]) <= 36500:
        raise UsageError(f"?object-lock= is governance:DAYSd or compliance:DAYSd (e.g. governance:30d), "
                         f"not {text!r}")
    return mode.upper(), int(days[:-1])


def _params(query: str) -> dict[str, str]:
    if not query:
        return {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise UsageError(f"cannot read the repository URL's parameters {query!r}") from None
    known = ("connections", "region", "provider", "style", "part-size", "object-lock")
    for key, _ in pairs:
        if key not in known:
            raise UsageError(f"unknown parameter {key!r} in the S3 repository URL: it takes "
                             + ", ".join(f"?{k}=" for k in known))
    return dict(pairs)


def read_s3_access(env: Mapping[str, str], home: str | None = None) -> S3Access:
    """Credentials, region and endpoint from `env` (the environment, handed in)
    and the AWS files it points at."""
    home = home or env.get("HOME") or os.path.expanduser("~")
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    config = _ini(env.get("AWS_CONFIG_FILE") or str(Path(home, ".aws", "config")))
    section = profile if profile == "default" else f"profile {profile}"
    settings = dict(config[section]) if config.has_section(section) else {}
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or settings.get("region")
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or settings.get("endpoint_url")
    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_SECRET_ACCESS_KEY"):
        if not env.get("AWS_ACCESS_KEY_ID") or not env.get("AWS_SECRET_ACCESS_KEY"):
            raise UsageError("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")
        return S3Access(S3Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
                                      env.get("AWS_SESSION_TOKEN") or None), region, endpoint)
    path = env.get("AWS_SHARED_CREDENTIALS_FILE") or str(Path(home, ".aws", "credentials"))
    credentials = _ini(path)
    found = dict(credentials[profile]) if credentials.has_section(profile) else settings
    key, secret = found.get("aws_access_key_id"), found.get("aws_secret_access_key")
    if key and secret:
        return S3Access(S3Credentials(key, secret, found.get("aws_session_token") or None), region, endpoint,
                        where=f"profile {profile!r}")
    if env.get("AWS_PROFILE") and not credentials.has_section(profile):
        raise UsageError(f"AWS profile {profile!r} is not in {path}")
    return S3Access(None, region, endpoint)


def _ini(path: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        pass
    except (OSError, configparser.Error, UnicodeDecodeError) as e:
        # The file's name, not its text: it holds secrets.
        raise UsageError(f"cannot read AWS file {path} ({type(e).__name__})") from None
    return parser
