"""`strongroom notify`: the channels that hear about failed, late and
recovered backups (email, webhooks, Apprise URLs, heartbeat pings).

A channel's secrets (the SMTP password, the webhook's HMAC key, a URL that
holds a token) go to the secrets store; the catalog keeps the rest. Give
them from files or the environment, never on the command line: a URL
with a token goes in `--apprise-file`, `--webhook-file` or
`--heartbeat-file` rather than `--apprise` and friends.
"""

from __future__ import annotations

import getpass
import os
import sys

import click

from strongroom.cli.cmd_manage import Manage, manage_options
from strongroom.cli.output import emit_json, terminal_safe
from strongroom.errors import UsageError
from strongroom.notify.base import SEVERITIES
from strongroom.notify.channels import ChannelSpec, add_channel, remove_channel, shown_target, shown_url
from strongroom.words import plural


@click.group()
def notify() -> None:
    """Notification channels: email, webhooks, Apprise, pings."""


def _read_file(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as e:
        raise UsageError(f"cannot read the {what} file {path}: {e.strerror}") from None
    if not value:
        raise UsageError(f"the {what} file {path} is empty")
    return value


def _smtp_password(path: str | None, user: str) -> str:
    if path:
        return _read_file(path, "SMTP password")
    if os.environ.get("STRONGROOM_SMTP_PASSWORD"):
        return os.environ["STRONGROOM_SMTP_PASSWORD"]
    if sys.stdin.isatty():
        return getpass.getpass(f"SMTP password for {user}: ")
    raise UsageError("no SMTP password: set STRONGROOM_SMTP_PASSWORD or use --smtp-password-file")


def _spec(name: str, o: dict) -> ChannelSpec:
    urls = {kind: o[kind] or (o[f"{kind}_file"] and _read_file(o[f"{kind}_file"], f"{kind} URL"))
            for kind in ("webhook", "apprise", "heartbeat")}
    kinds = [k for k, v in urls.items() if v] + (["email"] if o["email"] else [])
    if len(kinds) != 1:
        raise UsageError("give exactly one of --email, --webhook, --apprise or --heartbeat")
    kind = kinds[0]
    common = {"min_severity": o["min_severity"], "configs": tuple(o["configs"])}
    if kind == "email":
        if not o["smtp"]:
            raise UsageError("--email needs --smtp smtp://HOST:PORT or smtps://HOST:PORT")
        settings = {"to": list(o["email"]), "url": o["smtp"], "user": o["smtp_user"], "starttls": o["starttls"],
                    "from": o["sender"],
                    "ca_file": os.path.abspath(o["smtp_ca_file"]) if o["smtp_ca_file"] else None}
        secrets = {"password": _smtp_password(o["smtp_password_file"], o["smtp_user"])} if o["smtp_user"] else {}
        return ChannelSpec(name, kind, settings, secrets, **common)
    if o["hmac_key_file"] and kind != "webhook":
        raise UsageError("--hmac-key-file signs webhooks only")
    settings = {"shown_url": shown_url(urls[kind], kind)}
    secrets = {"url": urls[kind]}
    if o["hmac_key_file"]:
        secrets["hmac_key"] = _read_file(o["hmac_key_file"], "HMAC key")
        settings["signed"] = True
    return ChannelSpec(name, kind, settings, secrets, **common)


def _target(row: dict) -> str:
    return shown_target(row)


def _json_row(row: dict) -> dict:
    return {"type": "channel", "name": row["name"], "kind": row["kind"], "target": _target(row),
            "min_severity": row["min_severity"], "configs": row["configs"],
            "settings": {k: v for k, v in row["settings"].items() if k != "shown_url"},
            "secrets": sorted(row["secret_refs"])}


@notify.command("add")
@manage_options
@click.argument("name")
@click.option("--email", multiple=True, metavar="ADDRESS", help="Send mail to ADDRESS (repeatable).")
@click.option("--smtp", metavar="URL", help="With --email: the server, smtp://HOST:PORT or smtps://HOST:PORT.")
@click.option("--smtp-user", metavar="USER", help="Log in to the SMTP server as USER (needs TLS).")
@click.option("--smtp-password-file", type=click.Path(dir_okay=False),
              help="The SMTP password from this file (else STRONGROOM_SMTP_PASSWORD, or a prompt).")
@click.option("--starttls", is_flag=True, help="Upgrade smtp:// to TLS with STARTTLS.")
@click.option("--smtp-ca-file", type=click.Path(dir_okay=False, exists=True),
              help="Trust this CA bundle for the SMTP server's certificate.")
@click.option("--from", "sender", metavar="ADDRESS", help="The mail's sender (strongroom@HOST by default).")
@click.option("--webhook", metavar="URL", help="POST a JSON body to URL.")
@click.option("--webhook-file", type=click.Path(dir_okay=False), help="The webhook URL from this file.")
@click.option("--hmac-key-file", type=click.Path(dir_okay=False),
              help="Sign webhook bodies with the key in this file (X-Strongroom-Signature).")
@click.option("--apprise", metavar="URL", help="Any Apprise URL: ntfy://, tgram://, slack://, json://...")
@click.option("--apprise-file", type=click.Path(dir_okay=False),
              help="The Apprise URL from this file (use it when the URL holds a token).")
@click.option("--heartbeat", metavar="URL", help="Ping URL, URL/start and URL/fail (healthchecks.io style).")
@click.option("--heartbeat-file", type=click.Path(dir_okay=False), help="The heartbeat URL from this file.")
@click.option("--config", "configs", multiple=True, metavar="NAME",
              help="Only about configuration or DR plan NAME (repeatable; all by default).")
@click.option("--min-severity", type=click.Choice(SEVERITIES), default="warning", show_default=True,
              help="Send messages of this severity and above.")
@click.option("--replace", is_flag=True, help="Replace a channel of the same name.")
def notify_add(m: Manage, name, **options) -> None:
    """Add a notification channel NAME (its secrets go to the secrets store)."""
    spec = _spec(name, options)
    with m.manager() as manager:
        row = add_channel(manager.catalog, manager.backup_service.secrets, spec, options["replace"])
    if m.json:
        emit_json({**_json_row(row), "type": "summary", "added": name})
    else:
        print(f"added {row['kind']} channel {name}: {_target(row)}; try it with `strongroom notify test {name}`")


@notify.command("list")
@manage_options
def notify_list(m: Manage) -> None:
    """List the notification channels."""
    with m.manager() as manager:
        rows = manager.catalog.list_channels()
    if m.json:
        for row in rows:
            emit_json(_json_row(row))
        emit_json({"type": "summary", "count": len(rows)})
        return
    print(f"{'Name':16}  {'Kind':9}  {'Min':7}  {'Configs':16}  Target")
    for row in rows:
        configs = ", ".join(row["configs"]) or "all"
        print(f"{terminal_safe(row['name'])[:16]:16}  {row['kind']:9}  {row['min_severity']:7}  "
              f"{terminal_safe(configs)[:16]:16}  {terminal_safe(_target(row))}")
    print(plural(len(rows), "channel"))


@notify.command("remove")
@manage_options
@click.argument("name")
def notify_remove(m: Manage, name) -> None:
    """Forget a notification channel and its secrets."""
    with m.manager() as manager:
        remove_channel(manager.catalog, manager.backup_service.secrets, name)
    if m.json:
        emit_json({"type": "summary", "removed": name})
    else:
        print(f"removed notification channel {name}")


@notify.command("test")
@manage_options
@click.argument("name")
def notify_test(m: Manage, name) -> None:
    """Send a test message on channel NAME."""
    with m.manager() as manager:
        message = manager.notifier.test(name)
    if m.json:
        emit_json({"type": "summary", "channel": name, "sent": True, "event": message.event})
    else:
        print(f"sent a test message on channel {name}")


COMMANDS = [notify]
