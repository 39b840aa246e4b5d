"""A disaster-recovery plan: a name, ordered steps, targets and goals.

A plan is data. It is checked when it is made (from the API, the command
line or a TOML file) and refused with a UsageError that names the field;
what is stored is its document (`to_doc`), the same in the catalog and, sealed,
in the repositories its steps use. Its `version` is a hash of that document,
so a report can say exactly which plan it measured.

The TOML form (`from_toml`, `to_toml`) writes durations as people do
(`rto = "30m"`); the document keeps seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from strongroom.dr.durations import format_seconds, parse_seconds
from strongroom.errors import UsageError

HOOK_MODES = ("essential", "optional")
ON_FAILURE = ("stop", "continue")
POINT_RULES = ("latest", "at", "random")
DEFAULT_HOOK_TIMEOUT = 300.0
MAX_STEPS = 200
MAX_HOOKS = 20
MAX_NAME = 100


def check_plan_name(name: object) -> str:
    """A plan name: 1 to 100 printable characters (spaces allowed), not blank."""
    if not isinstance(name, str) or not name.strip():
        raise UsageError("a plan needs a name")
    if len(name) > MAX_NAME or not name.isprintable() or name != name.strip():
        raise UsageError(f"plan name {name[:MAX_NAME]!r}: use up to {MAX_NAME} printable characters, "
                         "without leading or trailing spaces")
    return name


@dataclass(frozen=True)
class Hook:
    """A command run before or after a step, by `/bin/sh -c`, with the step's
    facts in STRONGROOM_* variables. An `essential` hook that fails (exit
    status not 0, or over its timeout) fails the step; an `optional` one is
    a warning."""

    command: str
    timeout: float = DEFAULT_HOOK_TIMEOUT  # seconds
    mode: str = "essential"

    def __post_init__(self) -> None:
        if not isinstance(self.command, str) or not self.command.strip() or "\0" in self.command:
            raise UsageError("a hook needs a command")
        if self.mode not in HOOK_MODES:
            raise UsageError(f"hook {self.command[:40]!r}: mode must be one of {', '.join(HOOK_MODES)}")
        if not isinstance(self.timeout, (int, float)) or isinstance(self.timeout, bool) or not 0 < self.timeout <= 86400:
            raise UsageError(f"hook {self.command[:40]!r}: timeout must be above 0s and at most 24h")
        object.__setattr__(self, "timeout", float(self.timeout))

    def to_doc(self) -> dict[str, Any]:
        """The stored form (timeout in seconds)."""
        return {"command": self.command, "timeout": float(self.timeout), "mode": self.mode}

    @classmethod
    def from_doc(cls, doc: Any) -> Hook:
        """A hook from its document, or from a bare command string."""
        if isinstance(doc, str):
            return cls(doc)
        doc = _table(doc, "hook", {"command", "timeout", "mode"})
        timeout = doc.get("timeout", DEFAULT_HOOK_TIMEOUT)
        return cls(doc.get("command"), parse_seconds(timeout, "hook timeout"), doc.get("mode", "essential"))


@dataclass(frozen=True)
class PointRule:
    """Which snapshot a step restores: the `latest`; the newest taken `at` or
    before a time; or, for rehearsals, one chosen at `random` among those of
    the last `within` seconds."""

    kind: str = "latest"
    at: datetime | None = None
    within: float | None = None  # seconds

    def __post_init__(self) -> None:
        if self.kind not in POINT_RULES:
            raise UsageError(f"point must be one of {', '.join(POINT_RULES)}")
        if (self.kind == "at") != (self.at is not None):
            raise UsageError("point \"at\" needs a time (at = ...), and only it takes one")
        if (self.kind == "random") != (self.within is not None):
            raise UsageError("point \"random\" needs a span (within = \"7d\"), and only it takes one")
        if self.at is not None and self.at.tzinfo is None:
            object.__setattr__(self, "at", self.at.astimezone())
        if self.within is not None:
            object.__setattr__(self, "within", parse_seconds(self.within, "point within"))
        if self.within is not None and self.within <= 0:
            raise UsageError("point \"random\": within must be longer than 0s")

    def describe(self) -> str:
        """The rule in words, as a report cites it."""
        if self.kind == "at":
            return f"newest at or before {self.at.astimezone(timezone.utc).isoformat().replace('+00:00', 'Z')}"
        if self.kind == "random":
            return f"random within the last {format_seconds(self.within)}"
        return "latest"

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"point": self.kind}
        if self.at is not None:
            doc["at"] = self.at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        if self.within is not None:
            doc["within_seconds"] = float(self.within)
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> PointRule:
        kind = doc.get("point", "latest")
        at = doc.get("at")
        if isinstance(at, str):
            at = parse_time(at)
        elif at is not None and not isinstance(at, datetime):
            raise UsageError("point at: give a time such as 2026-11-30T02:00:00Z")
        within = doc.get("within_seconds", doc.get("within"))
        return cls(kind, at, None if within is None else parse_seconds(within, "point within"))


def parse_time(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 time (`2026-11-30T02:00:00Z`, `2026-11-30 02:00`); naive is local time."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"cannot read time {text!r}: use e.g. 2026-11-30T02:00:00Z") from None
    return when if when.tzinfo else when.astimezone()


@dataclass(frozen=True)
class Step:
    """One configuration restored: where (`target`, absolute or below the
    plan's target base; default the configuration's name), which snapshot
    (`point`), optionally only the paths matching `include`, with commands
    before and after. `database`, for a PostgreSQL source, is the database
    the restored dump is loaded into with pg_restore."""

    config: str
    name: str = ""  # default: the configuration's name
    target: str = ""  # default: the configuration's name, below the target base
    point: PointRule = PointRule()
    include: tuple[str, ...] = ()
    before: tuple[Hook, ...] = ()
    after: tuple[Hook, ...] = ()
    rto: float | None = None  # seconds
    rpo: float | None = None
    database: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.config, str) or not self.config:
            raise UsageError("a step needs a configuration (config = NAME)")
        if "/" in self.config or self.config in (".", "..") or not self.config.isprintable():
            # The default target is TARGET_BASE/<config>: a name of a crafted plan must not leave it.
            raise UsageError(f"step config {self.config[:MAX_NAME]!r}: a configuration name is printable, without /")
        if not self.name:
            object.__setattr__(self, "name", self.config)
        check_step_name(self.name)
        if not isinstance(self.target, str) or "\0" in self.target:
            raise UsageError(f"step {self.name}: target must be a path")
        if self.target and not os.path.isabs(self.target) and ".." in self.target.split("/"):
            raise UsageError(f"step {self.name}: a relative target may not leave the target base (..)")
        if not all(isinstance(p, str) and p for p in self.include):
            raise UsageError(f"step {self.name}: include is a list of patterns")
        if len(self.before) > MAX_HOOKS or len(self.after) > MAX_HOOKS:
            raise UsageError(f"step {self.name}: at most {MAX_HOOKS} commands before and after")
        _seconds_fields(self, "rto", "rpo")
        if self.database is not None and (not isinstance(self.database, str) or not self.database.strip()):
            raise UsageError(f"step {self.name}: database must be a database name or DSN")
        if self.database is not None and _holds_password(self.database):
            # The plan is shown, stored, sealed in repositories and cited in every report.
            raise UsageError(f"step {self.name}: the database DSN holds a password; a plan is shown in reports: "
                             "keep the password out of it (~/.pgpass, PGPASSFILE or PGPASSWORD give it)")

    def target_in(self, base: str) -> str:
        """Where this step restores when the plan's targets are below `base`."""
        if os.path.isabs(self.target):
            return self.target
        return os.path.join(base, self.target or self.config)

    def to_doc(self) -> dict[str, Any]:
        """The stored form (durations in seconds)."""
        doc: dict[str, Any] = {"config": self.config, "name": self.name, "target": self.target,
                               **self.point.to_doc(), "include": list(self.include),
                               "before": [h.to_doc() for h in self.before],
                               "after": [h.to_doc() for h in self.after],
                               "rto_seconds": self.rto, "rpo_seconds": self.rpo, "database": self.database}
        return doc

    @classmethod
    def from_doc(cls, doc: Any) -> Step:
        """A step from its document or TOML table, or from a bare configuration name."""
        if isinstance(doc, str):
            return cls(doc)
        doc = _table(doc, "step", {"config", "name", "target", "point", "at", "within", "within_seconds",
                                   "include", "before", "after", "rto", "rpo", "rto_seconds", "rpo_seconds",
                                   "database"})
        return cls(
            config=doc.get("config"), name=doc.get("name") or "", target=doc.get("target") or "",
            point=PointRule.from_doc(doc), include=tuple(_strings(doc.get("include", []), "include")),
            before=tuple(Hook.from_doc(h) for h in _list(doc.get("before", []), "before")),
            after=tuple(Hook.from_doc(h) for h in _list(doc.get("after", []), "after")),
            rto=_duration(doc, "rto"), rpo=_duration(doc, "rpo"), database=doc.get("database"))


def _holds_password(dsn: str) -> bool:
    """A connection string with a password in it (`postgresql://u:PW@h/db`,
    `...?password=PW`, `host=h password=PW`), read as libpq reads it; one that
    does not read is taken to hold one when the word is in it."""
    from strongroom.sources.dsn import split_password
    try:
        return split_password(dsn)[1] is not None
    except UsageError:
        return "password" in dsn.lower() or bool(re.match(r"postgres(ql)?://[^/@]*:[^/@]*@", dsn, re.IGNORECASE))


def check_step_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or not name.isprintable() \
            or "/" in name or name in (".", ".."):
        raise UsageError(f"step name {str(name)[:MAX_NAME]!r}: up to {MAX_NAME} printable characters, no /")
    return name


@dataclass(frozen=True)
class Plan:
    """A disaster-recovery plan. Its id is its name."""

    name: str
    steps: tuple[Step, ...]
    target_base: str
    rto: float | None = None  # seconds, plan start to the last step verified
    rpo: float | None = None  # seconds, the oldest a restored snapshot may be
    on_failure: str = "stop"
    verify: bool = True
    description: str = ""
    # When the daemon rehearses it (a schedule SPEC as a configuration's
    # --schedule), or None. Not part of `version`: when a plan is tested does
    # not change what a test of it measures.
    schedule: str | None = None
    updated: float = field(default=0.0, compare=False)  # when this version was made (epoch seconds)

    def __post_init__(self) -> None:
        check_plan_name(self.name)
        _seconds_fields(self, "rto", "rpo")
        object.__setattr__(self, "steps", tuple(self.steps))
        if not self.steps:
            raise UsageError(f"plan {self.name}: give at least one step")
        if len(self.steps) > MAX_STEPS:
            raise UsageError(f"plan {self.name}: at most {MAX_STEPS} steps")
        names = [s.name for s in self.steps]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise UsageError(f"plan {self.name}: two steps are named {dup!r}; give each its own name")
        if not isinstance(self.target_base, str) or not os.path.isabs(self.target_base):
            raise UsageError(f"plan {self.name}: the target base must be an absolute path")
        targets = [os.path.normpath(s.target_in(self.target_base)) for s in self.steps]
        for i, a in enumerate(targets):
            for b in targets[i + 1:]:
                if a == b or b.startswith(a.rstrip("/") + "/") or a.startswith(b.rstrip("/") + "/"):
                    raise UsageError(f"plan {self.name}: two steps restore into {min(a, b, key=len)}; "
                                     "give each step its own target")
        if self.on_failure not in ON_FAILURE:
            raise UsageError(f"plan {self.name}: on_failure must be one of {', '.join(ON_FAILURE)}")
        if not isinstance(self.verify, bool):
            raise UsageError(f"plan {self.name}: verify is true or false")
        if self.schedule is not None:
            from strongroom.schedule.spec import parse_schedule
            if not isinstance(self.schedule, str):
                raise UsageError(f"plan {self.name}: schedule is a spec such as \"every 1w\" or \"0 3 * * 0\"")
            try:
                object.__setattr__(self, "schedule", parse_schedule(self.schedule).text)
            except UsageError as e:
                raise UsageError(f"plan {self.name}: {e}") from None

    @property
    def id(self) -> str:
        """The plan's id: its name."""
        return self.name

    @property
    def configs(self) -> tuple[str, ...]:
        """The configurations the steps restore, in order, each once."""
        return tuple(dict.fromkeys(s.config for s in self.steps))

    def step_rto(self, step: Step) -> float | None:
        """A step's own RTO target (the plan's applies to the whole run)."""
        return step.rto

    def step_rpo(self, step: Step) -> float | None:
        """A step's RPO target: its own, else the plan's."""
        return step.rpo if step.rpo is not None else self.rpo

    @property
    def version(self) -> str:
        """A hash of the plan's document: equal plans have equal versions."""
        doc = self.to_doc()
        doc.pop("schedule", None)
        body = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def to_doc(self) -> dict[str, Any]:
        """The stored form (durations in seconds); `updated` is kept beside it, not in it.
        `schedule` is there only when set, so a plan without one is stored as before."""
        doc = {"name": self.name, "target_base": self.target_base, "rto_seconds": self.rto,
               "rpo_seconds": self.rpo, "on_failure": self.on_failure, "verify": self.verify,
               "description": self.description, "steps": [s.to_doc() for s in self.steps]}
        if self.schedule is not None:
            doc["schedule"] = self.schedule
        return doc

    @classmethod
    def from_doc(cls, doc: Any, updated: float = 0.0) -> Plan:
        """A plan from its document or its TOML table; unknown keys are refused."""
        doc = _table(doc, "plan", {"name", "target_base", "rto", "rpo", "rto_seconds", "rpo_seconds",
                                   "on_failure", "verify", "description", "steps", "schedule"})
        description = doc.get("description", "")
        if not isinstance(description, str):
            raise UsageError("plan description is text")
        return cls(name=check_plan_name(doc.get("name")), steps=tuple(Step.from_doc(s) for s in _list(doc.get("steps", []), "steps")),
                   target_base=doc.get("target_base") or "", rto=_duration(doc, "rto"), rpo=_duration(doc, "rpo"),
                   on_failure=doc.get("on_failure", "stop"), verify=doc.get("verify", True),
                   description=description, schedule=doc.get("schedule"), updated=updated)

    @classmethod
    def from_toml(cls, text: str, updated: float = 0.0) -> Plan:
        """A plan from the text of a TOML file; UsageError for bad TOML or a bad plan."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"the plan file is not valid TOML: {e}") from None
        return cls.from_doc(doc, updated)

    def to_toml(self) -> str:
        """The plan as a TOML file that `from_toml` reads back to an equal plan."""
        lines = [f"name = {toml_string(self.name)}", f"target_base = {toml_string(self.target_base)}"]
        if self.description:
            lines.append(f"description = {toml_string(self.description)}")
        for key, value in (("rto", self.rto), ("rpo", self.rpo)):
            if value is not None:
                lines.append(f"{key} = {toml_string(_exact(value))}")
        lines += [f"on_failure = {toml_string(self.on_failure)}", f"verify = {'true' if self.verify else 'false'}"]
        if self.schedule is not None:
            lines.append(f"schedule = {toml_string(self.schedule)}")
        for step in self.steps:
            lines += ["", "[[steps]]", f"config = {toml_string(step.config)}"]
            if step.name != step.config:
                lines.append(f"name = {toml_string(step.name)}")
            if step.target:
                lines.append(f"target = {toml_string(step.target)}")
            point = step.point.to_doc()
            lines.append(f"point = {toml_string(point['point'])}")
            if "at" in point:
                lines.append(f"at = {toml_string(point['at'])}")
            if step.point.within is not None:
                lines.append(f"within = {toml_string(_exact(step.point.within))}")
            if step.include:
                lines.append("include = [" + ", ".join(toml_string(p) for p in step.include) + "]")
            for key, value in (("rto", step.rto), ("rpo", step.rpo)):
                if value is not None:
                    lines.append(f"{key} = {toml_string(_exact(value))}")
            if step.database:
                lines.append(f"database = {toml_string(step.database)}")
            for phase, hooks in (("before", step.before), ("after", step.after)):
                for hook in hooks:
                    lines += ["", f"[[steps.{phase}]]", f"command = {toml_string(hook.command)}",
                              f"timeout = {toml_string(_exact(hook.timeout))}", f"mode = {toml_string(hook.mode)}"]
        return "\n".join(lines) + "\n"

    def with_target_base(self, base: str) -> Plan:
        """The same plan restoring below `base`."""
        return replace(self, target_base=base)


def plan_from_order(name: str, order: list[str], target_base: str, rto: float | None = None,
                    rpo: float | None = None, on_failure: str = "stop", verify: bool = True,
                    schedule: str | None = None) -> Plan:
    """The common plan: restore these configurations in this order below `target_base`."""
    return Plan(name, tuple(Step(c) for c in order), os.path.abspath(target_base) if target_base else "",
                rto, rpo, on_failure, verify, schedule=schedule)


# ---- checking input ---------------------------------------------------------------------


def _table(doc: Any, what: str, known: set[str]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise UsageError(f"a {what} is a table of keys and values")
    unknown = sorted(set(doc) - known)
    if unknown:
        raise UsageError(f"unknown key {unknown[0]!r} in a {what}")
    return doc


def _list(value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise UsageError(f"{what} is a list")
    return value


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{what} is a list of strings")
    return value


def _duration(doc: dict[str, Any], key: str) -> float | None:
    value = doc.get(f"{key}_seconds", doc.get(key))
    return None if value is None else parse_seconds(value, key.upper() if key in ("rto", "rpo") else key)


def _seconds_fields(obj: Any, *names: str) -> None:
    """Durations as floats (or None), so equal plans hash alike whether given 1800 or 1800.0."""
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            object.__setattr__(obj, name, parse_seconds(value, name.upper()))


def _exact(seconds: float) -> str:
    """A duration that reads back to the same number of seconds."""
    if seconds == int(seconds):
        whole = int(seconds)
        for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
            if whole and whole % size == 0:
                return f"{whole // size}{unit}"
        return f"{whole}s"
    return f"{seconds!r}s"


def toml_string(text: str) -> str:
    """A TOML basic string."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
