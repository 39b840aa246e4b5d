"""Adding and removing notification channels: the settings go to the
catalog, every secret to the secrets store under a reference of its own.

Used by `strongroom notify` and by the Python API (and later by a
configuration file): validation happens here, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from strongroom.errors import UsageError
from strongroom.notify.base import KINDS, SEVERITIES, NotifyError

if TYPE_CHECKING:
    from strongroom.services.catalog import Catalog
    from strongroom.services.secrets import SecretsStore


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    kind: str
    settings: dict                       # no secret in here
    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # key: value, to the secrets store
    min_severity: str = "warning"
    configs: tuple[str, ...] = ()        # empty: every configuration


def shown_url(url: str, kind: str) -> str:
    """A URL as it may be printed and stored: its scheme and host, never its
    path, query or user part (where the tokens are). For Apprise only the
    scheme: `tgram://TOKEN/CHAT` holds the token where a host would be."""
    try:
        parts = urlsplit(url)
        if kind == "apprise" or not parts.hostname:
            return f"{parts.scheme}://…"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a bracket left open, a port past 65535: `validate` says so
        return f"{url.partition(':')[0] if '://' in url else ''}://…"
    return f"{parts.scheme}://{parts.hostname}{port}/…"


def shown_target(row: dict) -> str:
    """Where a stored channel sends, as it may be shown: the mail's addresses and
    server, or the URL's scheme and host (see `shown_url`); never a secret."""
    s = row["settings"]
    if row["kind"] == "email":
        tls = " (STARTTLS)" if s.get("starttls") else ""
        return f"{', '.join(s['to'])} via {s['url']}{tls}"
    return s.get("shown_url", "") + (" (signed)" if s.get("signed") else "")


def _check_http(url: str, what: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL": its host is a bracket left open
        raise UsageError(f"the {what} has a bad host") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"the {what} must be an http:// or https:// URL")
    try:
        parts.port
    except ValueError:
        raise UsageError(f"the {what} has a bad port") from None


def validate(spec: ChannelSpec, known_configs: set[str]) -> None:
    if not spec.name or not spec.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UsageError("a channel name is letters, digits, '-', '_' and '.'")
    if spec.kind not in KINDS:
        raise UsageError(f"unknown channel kind {spec.kind!r}")
    if spec.min_severity not in SEVERITIES:
        raise UsageError(f"--min-severity is one of {', '.join(SEVERITIES)}")
    unknown = sorted(set(spec.configs) - known_configs)
    if unknown:
        raise UsageError(f"no configuration or DR plan named {', '.join(unknown)}")
    if spec.kind == "email":
        from strongroom.notify.email import parse_smtp_url
        if not spec.settings.get("to") or any("@" not in a for a in spec.settings["to"]):
            raise UsageError("--email needs an address like ops@example.org")
        try:
            scheme, _, _ = parse_smtp_url(spec.settings.get("url") or "")
        except NotifyError as e:
            raise UsageError(str(e)) from None
        if spec.settings.get("user") and scheme == "smtp" and not spec.settings.get("starttls"):
            raise UsageError("an SMTP login needs TLS: add --starttls or use smtps://")
        if spec.settings.get("user") and not spec.secrets.get("password"):
            raise UsageError("no SMTP password: set STRONGROOM_SMTP_PASSWORD or use --smtp-password-file")
    elif spec.kind in ("webhook", "heartbeat"):
        _check_http(spec.secrets.get("url") or "", f"{spec.kind} URL")
    elif spec.kind == "apprise":
        from strongroom.notify.apprise_channel import load_apprise
        try:
            load_apprise(spec.secrets.get("url") or "")
        except NotifyError as e:
            raise UsageError(str(e)) from None


def add_channel(catalog: Catalog, secrets: SecretsStore, spec: ChannelSpec, replace: bool = False) -> dict:
    """Store the channel; returns its catalog row. A channel of the same name is
    refused unless `replace`; its old secrets are forgotten then."""
    old = catalog.get_channel(spec.name)
    if old is not None and not replace:
        raise UsageError(f"a notification channel named {spec.name!r} exists already (use --replace)")
    validate(spec, {c["name"] for c in catalog.list_configs()} | {p["name"] for p in catalog.list_plans()})
    refs = {}
    try:
        for key, value in spec.secrets.items():
            refs[key] = secrets.new_ref(f"notify:{spec.name}:{key}")
            secrets.set(refs[key], value)
        catalog.put_channel(spec.name, spec.kind, spec.settings, refs, spec.min_severity, list(spec.configs))
    except BaseException:
        for ref in refs.values():
            secrets.delete(ref)
        raise
    for ref in (old or {}).get("secret_refs", {}).values():
        secrets.delete(ref)
    row = catalog.get_channel(spec.name)
    assert row is not None
    return row


def remove_channel(catalog: Catalog, secrets: SecretsStore, name: str) -> None:
    old = catalog.get_channel(name)
    if old is None:
        raise UsageError(f"no notification channel named {name!r}")
    catalog.delete_channel(name)
    for ref in old["secret_refs"].values():
        secrets.delete(ref)
