"""A PostgreSQL database as the source: `pg_dump -Fc`, streamed through the
command source; and `load_dump`, which puts such a dump back.

The connection string goes on the command line without its password (the
`key=value` form, see dsn.py); the password goes to the child alone, in
its PGPASSWORD, so it is never in any process's arguments.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Mapping

from strongroom.errors import StrongroomError, UsageError
from strongroom.sources.base import SourceSpec
from strongroom.sources.command import child_environment, command_stream
from strongroom.sources.dsn import database_of, format_dsn, is_plain_name, split_password, with_database

MAINTENANCE_DB = "postgres"
TOOL_TIMEOUT = 3600.0  # seconds psql may take for one statement, pg_restore for a whole dump


def find_tool(name: str) -> str:
    """A PostgreSQL client program: on PATH, else in the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    def version(path: str) -> tuple:
        part = path.split(os.sep)[-3]
        return tuple(int(x) for x in re.findall(r"\d+", part))
    for path in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version, reverse=True):
        if os.access(path, os.X_OK):
            return path
    raise UsageError(f"postgres: {name} is not installed (on PATH or in /usr/lib/postgresql/*/bin)")


def _password_env(password: str | None, env_extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(env_extra or {})
    if password:
        env["PGPASSWORD"] = password
    return env


def dbname_argument(dsn: str) -> str:
    """What --dbname gets: the connection string's key=value form, never a password."""
    without, _ = split_password(dsn)
    return format_dsn({"dbname": without}) if is_plain_name(without) else without


class PostgresSource:
    kind = "postgres"

    def __init__(self, spec: SourceSpec) -> None:
        self.dsn, given = split_password(spec.target)
        self.password = spec.password or given
        self.file_name = f"{database_of(self.dsn)}.dump"

    def check(self) -> None:
        find_tool("pg_dump")

    def argv(self) -> list[str]:
        """The pg_dump command line (no password in it)."""
        return [find_tool("pg_dump"), "--format=custom", "--no-password", f"--dbname={dbname_argument(self.dsn)}"]

    def open(self):
        return command_stream(self.argv(), "pg_dump", _password_env(self.password))


def load_dump(dump_path: str, database: str, env_extra: Mapping[str, str] | None = None) -> None:
    """Load a `pg_dump -Fc` file into `database` (a name, or a connection
    string whose password, if any, goes to PGPASSWORD), creating it on the
    same server when it does not exist; what it holds of the dump's objects
    is replaced (`pg_restore --clean --if-exists --no-owner`).

    `env_extra` is added to the children's environment (PGHOST, PGPORT,
    PGUSER...). A failure is one StrongroomError with pg_restore's (or
    psql's) last line of errors."""
    if not os.path.isfile(dump_path):
        raise UsageError(f"load_dump: {dump_path} is not a file")
    dsn, password = split_password(database)
    name = database_of(dsn)
    env = child_environment(_password_env(password, env_extra))
    maintenance = with_database(dsn, MAINTENANCE_DB)
    exists = _psql(maintenance, "SELECT 1 FROM pg_database WHERE datname = :'name';", name, env)
    if exists.strip() != "1":
        _psql(maintenance, 'CREATE DATABASE :"name";', name, env)
    _run([find_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-password", "--exit-on-error",
          f"--dbname={dbname_argument(dsn)}", dump_path], "pg_restore", env)


def scratch_database(database: str, tag: str) -> str:
    """Another database on the same server for a rehearsal to load a dump into:
    `NAME_drtest_TAG` (within PostgreSQL's 63-byte names), in the same form as
    `database` (a bare name stays a bare name)."""
    name = database_of(split_password(database)[0])
    suffix = "_drtest_" + "".join(c for c in tag if c.isalnum())[:12].lower()
    base = name.encode()[:63 - len(suffix)].decode("utf-8", "ignore")
    scratch = base + suffix
    return scratch if is_plain_name(database) else with_database(database, scratch)


def drop_database(database: str, env_extra: Mapping[str, str] | None = None) -> None:
    """Drop `database` (a name or a connection string) if it exists, closing
    what is still connected to it (PostgreSQL 13 and later)."""
    dsn, password = split_password(database)
    name = database_of(dsn)
    env = child_environment(_password_env(password, env_extra))
    _psql(with_database(dsn, MAINTENANCE_DB), 'DROP DATABASE IF EXISTS :"name" WITH (FORCE);', name, env)


def _psql(dsn: str, statement: str, name: str, env: dict[str, str]) -> str:
    # The name goes in as a psql variable, quoted by psql (:'x' literal, :"x" identifier).
    return _run([find_tool("psql"), "--no-psqlrc", "--no-password", "--quiet", "--tuples-only", "--no-align",
                 "--set=ON_ERROR_STOP=1", f"--set=name={name}", f"--dbname={dsn}"], "psql", env,
                input=statement)


def _run(argv: list[str], what: str, env: dict[str, str], input: str | None = None) -> str:
    try:
        done = subprocess.run(argv, input=input, capture_output=True, text=True, env=env, timeout=TOOL_TIMEOUT,
                              stdin=None if input is not None else subprocess.DEVNULL, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise StrongroomError(f"{what} did not finish in {TOOL_TIMEOUT:.0f} s") from None
    except OSError as e:
        raise StrongroomError(f"{what} could not start: {e.strerror}") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        last = "".join(c if c.isprintable() else "?" for c in lines[-1])[:300] if lines else "no message"
        raise StrongroomError(f"{what} exited with status {done.returncode}: {last}")
    return done.stdout
