"""PostgreSQL connection strings: a database name, libpq's `key=value` form
or a `postgresql://` URI, parsed so that the password can be taken out.

What is kept (in the catalog, in the repository, on a command line) is the
`key=value` form without the password; the password travels on its own, to
the secrets store and to the child's PGPASSWORD.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote

from strongroom.errors import UsageError

MAX_DSN = 4096
_URI = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_plain_name(text: str) -> bool:
    """A bare database name rather than a connection string."""
    return "=" not in text and not _URI.match(text)


def parse_dsn(text: str) -> dict[str, str]:
    """The parameters of a connection string, in order; a bare name is {"dbname": name}.

    Errors never repeat the text: it may hold a password."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError("postgres: give a database name or a connection string")
    if len(text) > MAX_DSN:
        raise UsageError(f"postgres: a connection string longer than {MAX_DSN} characters")
    if any(ord(c) < 32 and c not in " \t" for c in text):
        raise UsageError("postgres: the connection string holds a control character")
    if _URI.match(text):
        return _parse_uri(text)
    if is_plain_name(text):
        return {"dbname": text.strip()}
    return _parse_keywords(text)


def _parse_keywords(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return params
        key = _KEY.match(text, i)
        if key is None:
            raise UsageError("postgres: the connection string is not key=value pairs")
        i = key.end()
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "=":
            raise UsageError(f"postgres: {key.group()} has no value in the connection string")
        i += 1
        while i < n and text[i].isspace():
            i += 1
        value = []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise UsageError("postgres: an unterminated quote in the connection string")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                elif c == "'":
                    i += 1
                    break
                else:
                    value.append(c)
                    i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                else:
                    value.append(text[i])
                    i += 1
        # As libpq: a keyword given twice keeps its last value.
        params.pop(key.group(), None)
        params[key.group()] = "".join(value)


def _parse_uri(text: str) -> dict[str, str]:
    rest = _URI.sub("", text, count=1)
    rest, _, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    params: dict[str, str] = {}
    userinfo, at, hosts = authority.rpartition("@")
    if not at:
        hosts = authority
    if userinfo:
        user, colon, password = userinfo.partition(":")
        if user:
            params["user"] = unquote(user)
        if colon:
            params["password"] = unquote(password)
    names, ports = [], []
    for spec in hosts.split(",") if hosts else []:
        if spec.startswith("["):
            end = spec.find("]")
            if end < 0:
                raise UsageError("postgres: an unterminated [address] in the connection URI")
            host, port = spec[1:end], spec[end + 1:].removeprefix(":")
        else:
            host, _, port = spec.partition(":")
        names.append(unquote(host))
        ports.append(port)
    if any(names):
        params["host"] = ",".join(names)
    if any(ports):
        params["port"] = ",".join(ports)
    if slash and path:
        params["dbname"] = unquote(path)
    for key, value in parse_qsl(query, keep_blank_values=True):
        if not _KEY.fullmatch(key):
            raise UsageError("postgres: a parameter of the connection URI is not a keyword")
        params.pop(key, None)
        params[key] = value
    return params


def format_dsn(params: dict[str, str]) -> str:
    """libpq's key=value form, every value quoted."""
    def quote(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return " ".join(f"{key}={quote(value)}" for key, value in params.items())


def split_password(text: str) -> tuple[str, str | None]:
    """The connection string without its password (a bare name stays as it is), and the password."""
    params = parse_dsn(text)
    password = params.pop("password", None)
    if is_plain_name(text):
        return text.strip(), None
    return format_dsn(params), password


def database_of(text: str) -> str:
    """The database a connection string names."""
    name = parse_dsn(text).get("dbname", "")
    if not name:
        raise UsageError("postgres: the connection string names no database (give dbname=...)")
    if "=" in name or _URI.match(name):
        raise UsageError("postgres: dbname must be a database name, not another connection string")
    return name


def with_database(text: str, database: str) -> str:
    """The same server, another database (key=value form)."""
    params = parse_dsn(text)
    params.pop("password", None)
    params["dbname"] = database
    return format_dsn(params)
