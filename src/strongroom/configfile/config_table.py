"""A `[config.NAME]` table of the file as a BackupConfig.

The keys are named like the options of `config add`: `source`, `exclude`
and `tag` are lists (repeatable options there), `target_dir` or `client`
with `target_path`, `password_file` / `password_env` / `password_command`,
`retention` a table of keep_* rules, `schedule` one spec, a list of specs,
or tables of spec, window, random_delay, missed and priority. Every value
goes through the checks of the command line (config_schema, the schedule
parser), their errors placed at the key that holds the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from strongroom.configfile.lines import Path
from strongroom.configfile.problems import Problems
from strongroom.configfile.references import read_reference, reference_keys
from strongroom.errors import UsageError

# File key: the BackupConfig field it sets (lists and values as given).
PLAIN = {
    "source_command": "source_command", "stdin_filename": "stdin_filename", "postgres": "postgres",
    "target_path": "target_path", "client": "target_client_id", "encrypt": "encrypt",
    "compression": "compression", "exclude": "excludes", "exclude_caches": "exclude_caches",
    "exclude_if_present": "exclude_if_present", "exclude_larger_than": "exclude_larger_than",
    "one_file_system": "one_file_system", "tag": "tags", "max_attempts": "max_attempts",
    "password_env": "password_env", "password_command": "password_command",
    "retention_after_run": "retention_after_run",
}
PATHS = {"source": "source_paths", "sqlite": "sqlite", "target_dir": "target_path", "password_file": "password_file"}
SCHEDULE_RULES = ("window", "random_delay", "missed", "priority")
RETENTION = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly",
             "keep_within", "keep_tag")
KEYS = set(PLAIN) | set(PATHS) | {"retention", "schedule", *SCHEDULE_RULES, *reference_keys("postgres_password")}
# The field a schema error names, as the key of the file that sets it.
FIELD_KEYS = {**{field: key for key, field in PLAIN.items()}, **{field: key for key, field in PATHS.items()},
              "schedules": "schedule", "retention": "retention", "target_path": "target_path"}


@dataclass
class FileConfig:
    """A configuration as the file declares it. `postgres_password` is the
    database password read now from its reference (None: none given, the
    stored one stays); `stored_password` is True when no repository password
    reference is given (the key in the secrets store, generated when new)."""

    name: str
    fields: dict[str, Any]
    postgres_password: str | None
    path: Path

    @property
    def stored_password(self) -> bool:
        return bool(self.fields.get("encrypt", True)) and not any(
            self.fields.get(k) for k in ("password_file", "password_env", "password_command"))


def _absolute(value: Any, base_dir: str) -> Any:
    if isinstance(value, str) and value:
        return os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))
    return value


def read_config(name: str, table: Any, problems: Problems, environ: Mapping[str, str],
                base_dir: str) -> FileConfig | None:
    path: Path = ("config", name)
    if not isinstance(table, dict):
        problems.add(path, "a configuration is a table ([config.NAME])")
        return None
    before = len(problems.found)
    for key in table:
        if key not in KEYS:
            problems.add((*path, key), "unknown key (the keys are named like the options of `config add`)")
    fields: dict[str, Any] = {"name": name, "source_paths": []}
    for key, field in PLAIN.items():
        if key in table:
            fields[field] = table[key]
    for key, field in PATHS.items():
        if key in table:
            value = table[key]
            fields[field] = [_absolute(v, base_dir) for v in value] if isinstance(value, list) else \
                _absolute(value, base_dir)
    if isinstance(fields.get("source_paths"), str):
        fields["source_paths"] = [fields["source_paths"]]
    if "target_dir" in table and ("client" in table or "target_path" in table):
        problems.add((*path, "target_dir"), "give target_dir, or client with target_path, not both")
    if "client" in table and "target_path" not in table:
        problems.add((*path, "client"), "a WebDAV target needs client and target_path")
    if "target_path" in table and "client" not in table:
        problems.add((*path, "target_path"), "a WebDAV target needs client and target_path "
                                             "(a local one is target_dir)")
    fields["retention"] = _retention(table.get("retention", {}), path, problems)
    fields["schedules"] = _schedules(table, path, problems)
    db_password = read_reference(table, "postgres_password", path, problems, environ, base_dir,
                                 f"config {name}")
    if db_password is not None and not table.get("postgres"):
        problems.add((*path, next(k for k in reference_keys("postgres_password") if k in table)),
                     "a database password goes with a PostgreSQL source (postgres)")
    if "postgres" in table and isinstance(table["postgres"], str):
        from strongroom.sources.dsn import split_password
        try:
            fields["postgres"], inline = split_password(table["postgres"])
        except UsageError:
            inline = None  # the checks below say what is wrong with it
        if inline is not None:
            problems.add((*path, "postgres"), "a secret is never written in the file: take the password out "
                                              "of the connection string and give postgres_password_file, "
                                              "postgres_password_env or postgres_password_command")
    _check_fields(fields, table, path, problems)
    if len(problems.found) > before:
        return None
    return FileConfig(name, fields, db_password, path)


def _retention(value: Any, path: Path, problems: Problems) -> dict[str, Any]:
    where = (*path, "retention")
    if not isinstance(value, dict):
        problems.add(where, "give a table of keep_* rules ([config.NAME.retention])")
        return {}
    out: dict[str, Any] = {}
    for key, rule in value.items():
        if key not in RETENTION:
            problems.add((*where, key), f"unknown retention rule: use {', '.join(RETENTION)}")
        elif key == "keep_tag":
            out["keep_tags"] = [rule] if isinstance(rule, str) else rule
        elif rule not in (0, "", None) or isinstance(rule, bool):
            out[key] = rule  # 0 is no rule, as `--keep-daily 0` is
    return out


def _schedules(table: dict, path: Path, problems: Problems) -> list[dict[str, Any]]:
    from strongroom.schedule.spec import parse_schedule
    given = table.get("schedule", [])
    entries = [given] if isinstance(given, (str, dict)) else given
    if not isinstance(entries, list):
        problems.add((*path, "schedule"), "give a spec, a list of specs, or [[config.NAME.schedule]] tables")
        return []
    rules = {k: table[k] for k in SCHEDULE_RULES if k in table}
    if rules and not entries:
        problems.add((*path, next(iter(rules))), "goes with a schedule: give schedule = SPEC")
    for key, value in rules.items():
        # Each rule checked once, at its own key, not again with every schedule it goes with.
        if problems.check((*path, key), parse_schedule, "every 1h", **{key: value}) is None:
            return []
    made, seen = [], set()
    for i, entry in enumerate(entries):
        where = (*path, "schedule", i) if isinstance(given, list) else (*path, "schedule")
        if isinstance(entry, str):
            entry = {"spec": entry, **rules}
        if not isinstance(entry, dict):
            problems.add(where, "a schedule is a spec or a table of spec, window, random_delay, missed, priority")
            continue
        unknown = [k for k in entry if k not in ("spec", *SCHEDULE_RULES)]
        for key in unknown:
            problems.add((*where, key), "unknown key: use spec, window, random_delay, missed, priority")
        kinds = {"spec": str, "window": str, "random_delay": str, "missed": str, "priority": int}
        wrong = [k for k, v in entry.items() if k in kinds and (not isinstance(v, kinds[k]) or isinstance(v, bool))]
        for key in wrong:
            problems.add((*where, key), "give a whole number" if key == "priority" else "give text")
        if unknown or wrong:
            continue
        doc = problems.check((*where, "spec") if isinstance(given, list) else where, parse_schedule,
                             entry.get("spec", ""), window=entry.get("window"),
                             random_delay=entry.get("random_delay"), missed=entry.get("missed", "run-once"),
                             priority=entry.get("priority", 0))
        if doc is None:
            continue
        if doc.id in seen:
            problems.add(where, f"the schedule {doc.id!r} is given twice")
        seen.add(doc.id)
        made.append(doc.to_doc())
    return made


def _check_fields(fields: dict[str, Any], table: dict, path: Path, problems: Problems) -> None:
    """The checks of `config add`, every problem at the key that set the field."""
    from strongroom.services.config_schema import check_complete, field_problems
    found = field_problems(fields)
    for where, message in found:
        field, rest = where[0], list(where[1:])
        if field == "schedules":
            continue  # read above, with their own places
        if field == "retention" and rest and rest[0] == "keep_tags":
            rest[0] = "keep_tag"
        key = FIELD_KEYS.get(field, field)
        if field == "target_path" and "target_dir" in table:
            key = "target_dir"
        problems.add((*path, key, *rest), message.replace("True or False", "true or false"))
    if found:
        return
    full = {"password": None, "password_file": None, "password_env": None, "password_command": None,
            "source_command": None, "stdin_filename": None, "sqlite": None, "postgres": None,
            "target_path": "", "retention_after_run": "off", **fields}
    try:
        check_complete({**_defaults(), **full})
    except UsageError as e:
        message = str(e).removeprefix(f"config {fields['name']}: ")
        problems.add(path, message)


def _defaults() -> dict[str, Any]:
    from dataclasses import fields as dataclass_fields

    from strongroom.services.configs import BackupConfig
    out = {}
    for f in dataclass_fields(BackupConfig):
        if f.name == "taken_from_repository":
            continue
        out[f.name] = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
    return out
