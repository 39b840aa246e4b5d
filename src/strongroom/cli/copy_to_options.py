"""The options of `config add` and `config edit` that name a second target."""

from __future__ import annotations

import os

import click

from strongroom.errors import UsageError


def copy_to_options(editing: bool) -> list:
    options = [
        click.option("--copy-to", "copy_to", metavar="PATH",
                     help="A second target that gets a copy of each new point after every successful run: a "
                          "local directory, or with --copy-to-client a folder below that WebDAV client's URL."),
        click.option("--copy-to-client", metavar="ID", help="With --copy-to: the second target's WebDAV client."),
        click.option("--copy-to-password-file", type=click.Path(dir_okay=False),
                     help="The second target's repository password: read from this file at every copy."),
        click.option("--copy-to-password-env", metavar="VAR",
                     help="The second target's repository password: read from this variable at every copy."),
        click.option("--copy-to-password-command", metavar="COMMAND",
                     help="The second target's repository password: the first line this command prints."),
        click.option("--copy-to-store-password", is_flag=True,
                     help="Keep the second target's password (STRONGROOM_COPY_TO_PASSWORD or "
                          "STRONGROOM_COPY_TO_PASSWORD_FILE) in the secrets store."),
    ]
    if editing:
        options.append(click.option("--no-copy-to", is_flag=True, help="Drop the second target."))
    return options


_SOURCES = ("copy_to_password_file", "copy_to_password_env", "copy_to_password_command", "copy_to_store_password")


def apply_copy_to(config, o: dict) -> None:
    """Change the configuration's second target by the options given."""
    if o.get("no_copy_to"):
        if o["copy_to"] or o["copy_to_client"] or any(o[k] for k in _SOURCES):
            raise UsageError("give --no-copy-to alone, or the --copy-to options")
        config.copy_to = None
        return
    given = [k for k in _SOURCES if o[k]]
    if not o["copy_to"] and not o["copy_to_client"] and not given:
        return
    if len(given) > 1:
        raise UsageError("give one of --copy-to-password-file, --copy-to-password-env, --copy-to-password-command "
                         "and --copy-to-store-password")
    old = dict(config.copy_to or {})
    if o["copy_to"]:
        path = o["copy_to"]
        if "://" in path:
            raise UsageError("--copy-to takes a directory, or a folder with --copy-to-client; never a URL")
        client = o["copy_to_client"]
        old["path"], old["client_id"] = (path if client else os.path.abspath(path)), client
    elif o["copy_to_client"]:
        raise UsageError("--copy-to-client goes with --copy-to PATH")
    if "path" not in old:
        raise UsageError("give the second target with --copy-to PATH")
    if given:
        for key in ("password_file", "password_env", "password_command", "secret_ref"):
            old.pop(key, None)
    if o["copy_to_password_file"]:
        old["password_file"] = os.path.abspath(o["copy_to_password_file"])
    elif o["copy_to_password_env"]:
        old["password_env"] = o["copy_to_password_env"]
    elif o["copy_to_password_command"]:
        old["password_command"] = o["copy_to_password_command"]
    elif o["copy_to_store_password"]:
        config.copy_to_password = _copy_to_password()  # to the secrets store when the configuration is stored
    config.copy_to = {k: v for k, v in old.items() if v is not None}


def _copy_to_password() -> str:
    path = os.environ.get("STRONGROOM_COPY_TO_PASSWORD_FILE")
    if path:
        try:
            with open(path, "rb") as f:
                password = f.read().rstrip(b"\r\n")
        except OSError as e:
            raise UsageError(f"cannot read STRONGROOM_COPY_TO_PASSWORD_FILE {path}: {e.strerror}") from None
    elif "STRONGROOM_COPY_TO_PASSWORD" in os.environ:
        password = os.environb[b"STRONGROOM_COPY_TO_PASSWORD"]
    else:
        raise UsageError("--copy-to-store-password: set STRONGROOM_COPY_TO_PASSWORD or "
                         "STRONGROOM_COPY_TO_PASSWORD_FILE")
    if not password:
        raise UsageError("--copy-to-store-password: empty password")
    return password.decode("utf-8", "surrogateescape")
