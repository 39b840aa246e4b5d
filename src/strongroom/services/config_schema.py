"""The schemas of what the API takes in (a backup configuration, WebDAV
credentials), checked with pydantic where it enters.

Imported only when a configuration is made or loaded, never by the command
line's start-up: pydantic takes tens of milliseconds to import.

Two checks: `check_fields` on every BackupConfig made (the field types, and
the rules any stored configuration already meets), and `check_complete`
before one is stored (a source, a target, a policy for retention after runs).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator

from strongroom.engine.walk import parse_size
from strongroom.errors import StrongroomError, UsageError
from strongroom.model.retention import parse_duration
from strongroom.repo.compression import parse_compression
from strongroom.storage.vendors import MAX_CONNECTIONS, VENDORS

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Count = Annotated[int, Field(ge=0, le=1_000_000)]


class RetentionSchema(BaseModel):
    """The stored form of a retention policy: keep_* rules, each optional."""

    model_config = ConfigDict(strict=True, extra="forbid")

    keep_last: Count = 0
    keep_hourly: Count = 0
    keep_daily: Count = 0
    keep_weekly: Count = 0
    keep_monthly: Count = 0
    keep_yearly: Count = 0
    keep_within: str | None = None
    keep_tags: list[Annotated[str, Field(min_length=1)]] = []

    @field_validator("keep_within")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value:
            _reraise(parse_duration, value)
        return value


class ScheduleSchema(BaseModel):
    """One schedule of a configuration (strongroom.schedule.spec reads it)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    spec: Annotated[str, Field(min_length=1, max_length=200)]
    window: str | None = None
    random_delay: str | None = None
    missed: Literal["run-once", "skip"] = "run-once"
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0

    @field_validator("spec")
    @classmethod
    def _spec(cls, value: str) -> str:
        from strongroom.schedule.spec import parse_schedule
        _reraise(parse_schedule, value)
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            from strongroom.schedule.spec import parse_window
            _reraise(parse_window, value)
        return value

    @field_validator("random_delay")
    @classmethod
    def _delay(cls, value: str | None) -> str | None:
        if value is not None:
            from strongroom.schedule.spec import parse_seconds
            _reraise(lambda text: parse_seconds(text, "random delay"), value)
        return value


class CheckScheduleSchema(ScheduleSchema):
    """One check schedule: a schedule and the share of packs its checks read."""

    subset: Annotated[str, Field(min_length=1, max_length=20)] | None = None

    @field_validator("subset")
    @classmethod
    def _subset(cls, value: str | None) -> str | None:
        if value is not None:
            _reraise(check_subset, value)
        return value


def check_subset(text: str) -> str:
    """A share of packs a check reads, N% or n/t (as check --read-data-subset)."""
    from strongroom.engine.check import select_subset
    select_subset([], text)
    return text


MAX_SCHEDULES = 32


class CopyToSchema(BaseModel):
    """A configuration's second target: a repository and its password's one source
    (the same kinds the primary has; never the password itself)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    path: Annotated[str, Field(min_length=1)]
    client_id: str | None = None
    password_file: Annotated[str, Field(min_length=1)] | None = None
    password_env: Annotated[str, Field(min_length=1)] | None = None
    password_command: Annotated[str, Field(min_length=1, max_length=65536)] | None = None
    secret_ref: Annotated[str, Field(min_length=1)] | None = None


class ConfigSchema(BaseModel):
    """Every field of BackupConfig, with its type and the rules on its value."""

    model_config = ConfigDict(strict=True, extra="forbid")

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    source_paths: list[Annotated[str, Field(min_length=1)]]
    target_client_id: str | None = None
    target_path: str = ""
    encrypt: bool = True
    compression: bool | str = True
    password: str | None = None
    password_file: str | None = None
    password_env: Annotated[str, Field(min_length=1)] | None = None
    password_command: Annotated[str, Field(min_length=1, max_length=65536)] | None = None
    excludes: list[str] = []
    exclude_caches: bool = False
    exclude_if_present: list[Annotated[str, Field(min_length=1)]] = []
    exclude_larger_than: str | None = None
    one_file_system: bool = False
    tags: list[Annotated[str, Field(min_length=1)]] = []
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    secret_ref: str | None = None
    retention: RetentionSchema = RetentionSchema()
    retention_after_run: Literal["off", "forget", "prune"] = "off"
    source_command: Annotated[str, Field(min_length=1, max_length=65536)] | None = None
    stdin_filename: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    sqlite: Annotated[str, Field(min_length=1)] | None = None
    postgres: Annotated[str, Field(min_length=1)] | None = None
    postgres_password: str | None = None
    postgres_secret_ref: str | None = None
    schedules: Annotated[list[ScheduleSchema], Field(max_length=MAX_SCHEDULES)] = []
    check_schedules: Annotated[list[CheckScheduleSchema], Field(max_length=MAX_SCHEDULES)] = []
    connections: Annotated[int, Field(ge=1, le=MAX_CONNECTIONS)] | None = None
    copy_to: CopyToSchema | None = None
    copy_to_password: str | None = None

    @field_validator("schedules", "check_schedules")
    @classmethod
    def _distinct(cls, value: list[ScheduleSchema]) -> list[ScheduleSchema]:
        from strongroom.schedule.spec import parse_schedule
        seen = set()
        for schedule in value:
            key = parse_schedule(schedule.spec).id
            if key in seen:
                raise ValueError(f"the schedule {key!r} is given twice")
            seen.add(key)
        return value

    @field_validator("compression")
    @classmethod
    def _codec(cls, value: bool | str) -> bool | str:
        if isinstance(value, str):
            _reraise(parse_compression, value)
        return value

    @field_validator("exclude_larger_than")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None:
            _reraise(parse_size, value)
        return value


def _reraise(parse: Any, value: str) -> None:
    """Run one of strongroom's parsers; its one-line error becomes the field's error."""
    try:
        parse(value)
    except StrongroomError as e:
        raise ValueError(str(e)) from None


# What a person should read for the common mistakes, by pydantic's error type.
_HINTS = {
    "list_type": "give a list (e.g. [\"/data\"]), not {kind}",
    "string_type": "give text, not {kind}",
    "bool_type": "give True or False, not {kind}",
    "int_type": "give a whole number, not {kind}",
    "union_tag_invalid": "give a value of the right type, not {kind}",
    "string_pattern_mismatch": "use letters, digits, '.', '-', '_' (up to 64), starting with a letter or digit",
    "string_too_short": "must not be empty",
    "extra_forbidden": "is not a known field",
    "literal_error": "use one of {expected}",
    "dict_type": "give a mapping of keep_* rules",
    "model_type": "give a mapping of keep_* rules",
}


def _message(problem: dict) -> str:
    """One problem pydantic found, in words (never the value when it is text)."""
    hint = _HINTS.get(problem["type"])
    if hint is None:
        return problem["msg"].removeprefix("Value error, ")
    given = problem.get("input")
    kind = "one string" if isinstance(given, str) else f"a value of type {type(given).__name__}"
    expected = str((problem.get("ctx") or {}).get("expected", "")).replace("'", "").replace(" or ", ", ")
    return hint.format(kind=kind, expected=expected)


def _where(problem: dict) -> tuple:
    return tuple(p for p in problem["loc"] if not str(p).startswith(("function-", "union")))


def _line(name: str, error: ValidationError) -> str:
    """The first problem of a failed check, as one line that names the field."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(p) for p in _where(first))
    message = _message(first)
    more = error.error_count() - 1
    extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return f"config {name or '?'}: {where}: {message}{extra}"


def field_problems(doc: dict[str, Any]) -> list[tuple[tuple, str]]:
    """Every problem of the fields of a configuration, as (field path, message):
    what `check_fields` refuses, all at once (a configuration file shows them all)."""
    try:
        ConfigSchema.model_validate(doc)
    except ValidationError as e:
        return [(_where(p), _message(p)) for p in e.errors(include_url=False)]
    return []


def check_fields(doc: dict[str, Any]) -> None:
    """Refuse, with one UsageError line, a configuration whose fields have the wrong type or value."""
    try:
        ConfigSchema.model_validate(doc)
    except ValidationError as e:
        raise UsageError(_line(doc.get("name") if isinstance(doc.get("name"), str) else "", e)) from None


def check_complete(doc: dict[str, Any]) -> None:
    """What a configuration needs before it is stored, beyond `check_fields`."""
    check_fields(doc)
    name = doc["name"]
    kinds = [kind for kind, given in (("source paths", doc["source_paths"]),
                                      ("a source command", doc["source_command"]),
                                      ("a SQLite database", doc["sqlite"]),
                                      ("a PostgreSQL database", doc["postgres"])) if given]
    if not kinds:
        raise UsageError(f"config {name}: give at least one source path (or a source command, "
                         f"a SQLite database or a PostgreSQL database)")
    if len(kinds) > 1:
        raise UsageError(f"config {name}: give one kind of source, not {kinds[0]} and {kinds[1]}")
    if doc["stdin_filename"] is not None:
        if not doc["source_command"]:
            raise UsageError(f"config {name}: a stored file name (stdin_filename) goes with a source command")
        if "/" in doc["stdin_filename"] or doc["stdin_filename"] in (".", ".."):
            raise UsageError(f"config {name}: stdin_filename must be a plain file name")
    if doc["postgres"]:
        from strongroom.sources.dsn import database_of, parse_dsn
        try:
            database_of(doc["postgres"])
        except UsageError as e:
            raise UsageError(f"config {name}: {e}") from None
        if "password" in parse_dsn(doc["postgres"]):
            raise UsageError(f"config {name}: the PostgreSQL connection string still holds a password")
    if not doc["target_path"]:
        raise UsageError(f"config {name}: give a target path")
    if "://" in doc["target_path"]:
        # Not echoed: a URL here may carry a password.
        raise UsageError(f"config {name}: the target path is a URL; a WebDAV target is a client "
                         f"(WebDAVService.add_client, or `strongroom client add`) and a folder below "
                         f"its URL, a local target a directory")
    copy_to = doc.get("copy_to")
    if copy_to:
        check_copy_to(name, copy_to, doc)
    policy = RetentionSchema.model_validate(doc["retention"]).model_dump(exclude_defaults=True)
    if doc["retention_after_run"] != "off" and not policy:
        raise UsageError(f"config {name}: applying retention after each run needs a retention "
                         f"policy (keep_last, keep_daily, keep_within, ...)")


def check_copy_to(name: str, copy_to: dict[str, Any], doc: dict[str, Any]) -> None:
    """A second target names a repository other than the primary, and one password source."""
    if "://" in copy_to["path"]:
        raise UsageError(f"config {name}: copy_to.path is a URL; a WebDAV second target is a client "
                         f"(copy_to.client_id) and a folder below its URL, a local one a directory")
    sources = [k for k in ("password_file", "password_env", "password_command") if copy_to.get(k)]
    if doc.get("copy_to_password") or copy_to.get("secret_ref"):
        sources.append("secrets store")
    if len(sources) != 1:
        raise UsageError(f"config {name}: the second target needs one password source (a file, a variable's "
                         f"name, a command or the secrets store), " + ("not several" if sources else "not none"))
    same_client = (copy_to.get("client_id") or "local") == (doc.get("target_client_id") or "local")
    if same_client and copy_to["path"].rstrip("/") == doc["target_path"].rstrip("/"):
        raise UsageError(f"config {name}: the second target is the configuration's own target")


class CredentialsSchema(BaseModel):
    """A WebDAV account: the URL must be http(s) with a host, the service one strongroom knows."""

    model_config = ConfigDict(strict=True)

    username: str
    password: str
    url: HttpUrl
    service_type: str

    @field_validator("url", mode="before")
    @classmethod
    def _url_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("give the URL as text")
        return HttpUrl(value)

    @field_validator("service_type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value.lower() not in VENDORS:
            raise ValueError(f"unknown WebDAV service {value!r}: use {', '.join(sorted(VENDORS))}")
        return value


def check_credentials(username: object, password: object, url: object, service_type: object) -> None:
    """Refuse, with one UsageError line, WebDAV credentials of the wrong type or form.

    The caller has refused a URL with a password in it already; no message
    here repeats the password."""
    try:
        CredentialsSchema.model_validate({"username": username, "password": password, "url": url,
                                          "service_type": service_type})
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        field = str(first["loc"][0]) if first["loc"] else "credentials"
        if first["type"] == "string_type":
            message = "give text"
        else:
            message = first["msg"].removeprefix("Value error, ").removeprefix("Input should be a valid URL, ")
        if field == "url":
            raise UsageError(f"WebDAV URL {url!r}: {message}; use https://HOST/PATH (or http:// on a LAN)") \
                from None
        raise UsageError(f"WebDAV credentials: {field}: {message}") from None
