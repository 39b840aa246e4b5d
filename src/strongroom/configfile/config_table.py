"""A `[config.NAME]` table of the file as a BackupConfig.

The keys are named like the options of `config add`: `source`, `exclude`
and `tag` are lists (repeatable options there), `target_dir` or `client`
with `target_path`, `password_file` / `password_env` / `password_command`,
`retention` a table of keep_* rules, `schedule` one spec, a list of specs,
or tables of spec, window, random_delay, missed and priority;
`check_schedule` likewise for sampled checks, with `subset` (or
`check_subset` for all of them). Every value
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
    "retention_after_run": "retention_after_run", "connections": "connections",
}
PATHS = {"source": "source_paths", "sqlite": "sqlite", "target_dir": "target_path", "password_file": "password_file"}
SCHEDULE_RULES = ("window", "random_delay", "missed", "priority")
RETENTION = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly",
             "keep_within", "keep_tag")
KEYS = set(PLAIN) | set(PATHS) | {"retention", "schedule", *SCHEDULE_RULES, "check_schedule", "check_subset",
                                   *reference_keys("postgres_password"), "copy_to"}
# [config.NAME.copy_to]: the second target, named as the primary is, and its password's reference.
COPY_TO_KEYS = ("target_dir", "client", "target_path", "password_file", "password_env", "password_command")
# The field a schema error names, as the key of the file that sets it.
FIELD_KEYS = {**{field: key for key, field in PLAIN.items()}, **{field: key for key, field in PATHS.items()},
              "schedules": "schedule", "check_schedules": "check_schedule", "retention": "retention",
              "target_path": "target_path"}


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
    before = len(problems.found)
    if not problems.table(path, table, "a configuration is a table ([config.NAME])", KEYS,
                          "unknown key (the keys are named like the options of `config add`)"):
        return None
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
    _check_password_keys(table, path, problems)
    if "compression" in table and not isinstance(table["compression"], (str, bool)):
        # Else one problem for each type the field may have ("compression.bool", "compression.str").
        problems.add((*path, "compression"), "give a codec as text: zstd, zstd:LEVEL, lz4, gzip or none")
        del fields["compression"]
    if "target_dir" in table and ("client" in table or "target_path" in table):
        problems.add((*path, "target_dir"), "give target_dir, or client with target_path, not both")
    if "client" in table and "target_path" not in table:
        problems.add((*path, "client"), "a WebDAV target needs client and target_path")
    if "target_path" in table and "client" not in table:
        problems.add((*path, "target_path"), "a WebDAV target needs client and target_path "
                                             "(a local one is target_dir)")
    if "copy_to" in table:
        copy_to = _copy_to(table["copy_to"], path, problems, base_dir)
        if copy_to is not None:
            fields["copy_to"] = copy_to
    fields["retention"] = _retention(table.get("retention", {}), path, problems)
    fields["schedules"] = _schedules(table, path, problems)
    fields["check_schedules"] = _schedules(table, path, problems, "check_schedule")
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


def _copy_to(value: Any, path: Path, problems: Problems, base_dir: str) -> dict[str, Any] | None:
    """[config.NAME.copy_to] as the configuration's `copy_to`. Without a password
    reference, the one kept in the secrets store stays (apply takes it over)."""
    where = (*path, "copy_to")
    if not isinstance(value, dict):
        problems.add(where, "give a table ([config.NAME.copy_to]) of target_dir, or client with target_path, "
                            "and password_file, password_env or password_command")
        return None
    unknown = [k for k in value if k not in COPY_TO_KEYS]
    for key in unknown:
        problems.add((*where, key), f"unknown key: use {', '.join(COPY_TO_KEYS)}")
    wrong = [k for k in value if k in COPY_TO_KEYS and not isinstance(value[k], str)]
    for key in wrong:
        problems.add((*where, key), "give text")
    if unknown or wrong:
        return None
    if "target_dir" in value and ("client" in value or "target_path" in value):
        problems.add((*where, "target_dir"), "give target_dir, or client with target_path, not both")
        return None
    if "target_dir" in value:
        doc: dict[str, Any] = {"path": _absolute(value["target_dir"], base_dir)}
    elif "client" in value and "target_path" in value:
        doc = {"path": value["target_path"], "client_id": value["client"]}
    else:
        problems.add(where, "give target_dir, or client with target_path")
        return None
    given = [k for k in _PASSWORD_KEYS if k in value]
    if len(given) > 1:
        problems.add((*where, given[1]), f"give one of {', '.join(given)}")
        return None
    for key in given:
        doc[key] = _absolute(value[key], base_dir) if key == "password_file" else value[key]
    return doc


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


def _schedules(table: dict, path: Path, problems: Problems, key: str = "schedule") -> list[dict[str, Any]]:
    """`schedule` (the backups') or `check_schedule` (sampled checks, with a `subset`
    each or `check_subset` for all, as `--check-schedule` with `--check-subset`)."""
    from strongroom.schedule.spec import parse_schedule
    checks = key == "check_schedule"
    given = table.get(key, [])
    entries = [given] if isinstance(given, (str, dict)) else given
    if not isinstance(entries, list):
        problems.add((*path, key), f"give a spec, a list of specs, or [[config.NAME.{key}]] tables")
        return []
    rule_keys = ("check_subset",) if checks else SCHEDULE_RULES
    rules = {k: table[k] for k in rule_keys if k in table}
    if rules and not entries:
        problems.add((*path, next(iter(rules))), f"goes with a schedule: give {key} = SPEC")
    for rule, value in rules.items():
        # Each rule checked once, at its own key, not again with every schedule it goes with.
        if problems.check((*path, rule), _check_rule, rule, value) is None:
            return []
    if checks:
        rules = {"subset": rules["check_subset"]} if "check_subset" in rules else {}
    entry_keys = ("spec", *SCHEDULE_RULES, *(("subset",) if checks else ()))
    made, seen = [], set()
    for i, entry in enumerate(entries):
        where = (*path, key, i) if isinstance(given, list) else (*path, key)
        if isinstance(entry, str):
            entry = {"spec": entry, **rules}
        if not isinstance(entry, dict):
            problems.add(where, f"a schedule is a spec or a table of {', '.join(entry_keys)}")
            continue
        unknown = [k for k in entry if k not in entry_keys]
        for name in unknown:
            problems.add((*where, name), f"unknown key: use {', '.join(entry_keys)}")
        kinds = {"spec": str, "window": str, "random_delay": str, "missed": str, "priority": int, "subset": str}
        wrong = [k for k, v in entry.items() if k in kinds and (not isinstance(v, kinds[k]) or isinstance(v, bool))]
        for name in wrong:
            problems.add((*where, name), "give a whole number" if name == "priority" else "give text")
        if unknown or wrong:
            continue
        if "subset" in entry and problems.check((*where, "subset"), _check_rule, "subset", entry["subset"]) is None:
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
        made.append({**doc.to_doc(), **({"subset": entry["subset"]} if entry.get("subset") else {})})
    return made


_PASSWORD_KEYS = ("password_file", "password_env", "password_command")


def _check_password_keys(table: dict, path: Path, problems: Problems) -> None:
    """At most one repository password reference, each naming something: an
    empty one would otherwise read as none given, and a key be generated."""
    given = [k for k in _PASSWORD_KEYS if k in table]
    if len(given) > 1:
        problems.add((*path, given[1]), f"give one of {', '.join(given)}")
    for key in given:
        value = table[key]
        # (An empty variable or command is the schema's problem already.)
        if isinstance(value, str) and not value.strip() and (value or key == "password_file"):
            problems.add((*path, key), "blank: name a file, a variable or a command (leave the key out to "
                                       "keep a key in the secrets store)")
    if given and table.get("encrypt") is False:
        problems.add((*path, given[0]), "a configuration without encryption takes no password")


def _check_rule(rule: str, value: Any) -> bool:
    """True, or a UsageError saying what is wrong with one schedule rule."""
    from strongroom.schedule.spec import parse_schedule
    if rule in ("check_subset", "subset"):
        from strongroom.services.config_schema import check_subset
        if not isinstance(value, str):
            raise UsageError("give a share of the packs as text, e.g. \"5%\" or \"1/10\"")
        check_subset(value)
        return True
    if rule == "priority":
        if not isinstance(value, int) or isinstance(value, bool):
            raise UsageError("give a whole number")
    elif not isinstance(value, str):
        raise UsageError("give text")
    probe = "every 1h"
    try:
        parse_schedule(probe, **{rule: value})
    except UsageError as e:  # said of the probe's spec, which is not the file's
        raise UsageError(str(e).removeprefix(f"schedule {probe!r}: ")) from None
    return True


def _check_fields(fields: dict[str, Any], table: dict, path: Path, problems: Problems) -> None:
    """The checks of `config add`, every problem at the key that set the field."""
    from strongroom.services.config_schema import check_complete, field_problems
    found = field_problems(fields)
    for where, message in found:
        field, rest = where[0], list(where[1:])
        if field in ("schedules", "check_schedules"):
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
    copy_to = full.get("copy_to")
    if copy_to and not any(copy_to.get(k) for k in _PASSWORD_KEYS):
        # No reference: the second target's password in the secrets store stays (apply checks there is one).
        full["copy_to"] = {**copy_to, "secret_ref": "kept"}
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
