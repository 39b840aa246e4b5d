"""`strongroom console`: the web console's password and API tokens.

The console itself is served by `strongroom serve`. Its password is kept as
an Argon2id hash in the catalog; a token is shown once, when it is made,
and the catalog keeps only its SHA-256.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from strongroom.cli.cmd_manage import Manage, manage_options
from strongroom.cli.output import emit_json, terminal_safe
from strongroom.errors import UsageError
from strongroom.web.auth import PASSWORD_ENV, ConsolePassword, ConsoleTokens


@contextmanager
def _stores(m: Manage) -> Iterator[tuple[ConsolePassword, ConsoleTokens]]:
    """The console's password and tokens in the catalog, closed afterwards."""
    from strongroom.services.catalog import Catalog

    catalog = Catalog(m.catalog or Catalog.default_path())
    try:
        yield ConsolePassword(catalog), ConsoleTokens(catalog)
    finally:
        catalog.close()


@click.group()
def console() -> None:
    """The web console's password and API tokens."""


@console.command("set-password")
@manage_options
def set_password(m: Manage) -> None:
    """Set the console password (from STRONGROOM_CONSOLE_PASSWORD, or asked twice).

    Every browser signed in with the old password is signed out."""
    from strongroom.web.auth import check_new_password

    password = os.environ.pop(PASSWORD_ENV, None)
    if password is None:
        if not sys.stdin.isatty():
            raise UsageError(f"no console password: set {PASSWORD_ENV} or run this on a terminal")
        password = getpass.getpass("new console password: ")
        check_new_password(password)
        if getpass.getpass("again: ") != password:
            raise UsageError("the two passwords differ")
    with _stores(m) as (stored, _):
        stored.set(password)
    if m.json:
        emit_json({"type": "console_password_set"})
    elif not m.quiet:
        print("console password set")


@console.command("token")
@manage_options
@click.option("--name", default="api", show_default=True, help="What the token is for (shown in the list).")
def token(m: Manage, name: str) -> None:
    """Make an API token for scripts, and print it (it is shown only now).

    Send it as `Authorization: Bearer TOKEN` to the console's /api/ routes."""
    with _stores(m) as (_, tokens):
        token_id, value = tokens.issue(name)
    if m.json:
        emit_json({"type": "console_token", "id": token_id, "name": name, "token": value})
    else:
        print(value)
        if not m.quiet:
            print(f"token {token_id} ({terminal_safe(name)}): keep it safe, it is not shown again; "
                  f"`strongroom console revoke {token_id}` ends it", file=sys.stderr)


@console.command("tokens")
@manage_options
def tokens_list(m: Manage) -> None:
    """List the API tokens (never the tokens themselves)."""
    from strongroom.web.render import when

    with _stores(m) as (_, tokens):
        rows = tokens.list()
    if m.json:
        emit_json({"type": "console_tokens", "tokens": rows})
        return
    if not rows:
        print("no console tokens")
    for row in rows:
        print(f"{row['id']}  {terminal_safe(row['name'])}  made {when(row['created'])}, "
              f"last used {when(row['last_used'])}")


@console.command("revoke")
@manage_options
@click.argument("token_id")
def revoke(m: Manage, token_id: str) -> None:
    """End the API token TOKEN_ID at once."""
    with _stores(m) as (_, tokens):
        tokens.revoke(token_id)
    if m.json:
        emit_json({"type": "console_token_revoked", "id": token_id})
    elif not m.quiet:
        print(f"token {token_id} revoked")


COMMANDS = [console]
