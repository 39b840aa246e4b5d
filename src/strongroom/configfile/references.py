"""Secrets in a configuration file: referenced, never written inline.

A secret `NAME` (password, smtp_password, postgres_password, url, hmac_key)
is given as one of `NAME_file` (a file whose first line it is), `NAME_env`
(a variable of the environment `apply` runs in) or `NAME_command` (a command
whose output's first line it is). A key whose name says it holds a secret
and that holds it inline is refused, with the way to reference it instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from strongroom.configfile.lines import Path
from strongroom.configfile.problems import Problems
from strongroom.configfile.regular_file import read_regular_file
from strongroom.errors import UsageError
from strongroom.services.password_command import run_password_command

SUFFIXES = ("_file", "_env", "_command")
# The endings of key names that hold secrets. `password_stored` and the
# references themselves are not secrets.
_SECRET_WORDS = ("password", "passwd", "passphrase", "token", "secret", "hmac_key", "api_key", "private_key")


def is_inline_secret(key: str) -> bool:
    """Whether `key` names a secret itself rather than a reference to one."""
    lowered = key.lower().replace("-", "_")
    if lowered.endswith(SUFFIXES):
        return False
    return lowered.endswith(_SECRET_WORDS)


def inline_secret_message(key: str) -> str:
    return (f"a secret is never written in the file: reference it with {key}_file, {key}_env or "
            f"{key}_command")


def find_inline_secrets(doc: Any, path: Path, problems: Problems, depth: int = 0) -> None:
    """Every key of `doc` (tables, arrays of tables) that holds a secret inline:
    each is a problem, and is taken out of `doc` (so it is not also an unknown key)."""
    if depth > 16:
        return
    if isinstance(doc, dict):
        for key, value in list(doc.items()):
            if is_inline_secret(key) and not isinstance(value, (dict, list)):
                problems.add((*path, key), inline_secret_message(key))
                del doc[key]
            else:
                find_inline_secrets(value, (*path, key), problems, depth + 1)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            find_inline_secrets(value, (*path, i), problems, depth + 1)


def reference_keys(name: str) -> tuple[str, ...]:
    return tuple(name + suffix for suffix in SUFFIXES)


def read_reference(table: dict, name: str, path: Path, problems: Problems, environ: Mapping[str, str],
                   base_dir: str, owner: str) -> str | None:
    """The secret `name` of `table`, read now from the one reference given;
    None when none is given (or a problem was recorded)."""
    given = [key for key in reference_keys(name) if key in table]
    if not given:
        return None
    if len(given) > 1:
        problems.add((*path, given[1]), f"give one of {', '.join(given)}")
        return None
    key = given[0]
    value = table[key]
    if not isinstance(value, str) or not value:
        problems.add((*path, key), "give text")
        return None
    try:
        if key.endswith("_file"):
            file = os.path.join(base_dir, os.path.expanduser(value))
            try:
                data = read_regular_file(file, 64 * 1024)
            except OSError as e:
                raise UsageError(f"cannot read {file}: {e.strerror}") from None
            secret = data.split(b"\n", 1)[0].rstrip(b"\r")
        elif key.endswith("_env"):
            if not environ.get(value):
                raise UsageError(f"variable {value} is not set")
            secret = environ[value].encode("utf-8", "surrogateescape")
        else:
            secret = run_password_command(value, f"{owner}: the {name} command", environ=environ)
    except UsageError as e:
        problems.add((*path, key), str(e))
        return None
    if not secret:
        problems.add((*path, key), f"the {name} is empty")
        return None
    from strongroom.daemon.logs import register_secret
    register_secret(secret)  # never in a log line of this process (the daemon's, when it applies the file)
    try:
        # Kept in the secrets store and sent as text (HTTP, SMTP, libpq): bytes that are not
        # UTF-8 would fail at every use instead of here.
        text = secret.decode("utf-8")
    except UnicodeDecodeError:
        problems.add((*path, key), f"the {name} is not UTF-8 text")
        return None
    return text
