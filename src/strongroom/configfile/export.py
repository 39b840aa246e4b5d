"""The catalog as a configuration file that `apply` reads back to the same catalog.

Every value the catalog holds is written, except defaults. A secret is
never written: a repository password read from a file, a variable or a
command is written as that reference; one in the secrets store (a client's
password, a generated repository key, a channel's URL) as a comment, and
`apply` keeps a stored secret the file does not reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strongroom.configfile.lines import dotted
from strongroom.dr.plan import toml_string

if TYPE_CHECKING:
    from strongroom.services.backup_manager import BackupManager

_CONFIG_DEFAULTS = {"encrypt": True, "compression": True, "excludes": [], "exclude_caches": False,
                    "exclude_if_present": [], "exclude_larger_than": None, "one_file_system": False,
                    "tags": [], "max_attempts": 3, "retention_after_run": "off",
                    "connections": None}
# BackupConfig field: file key, in the order they are written.
_CONFIG_KEYS = (("source_paths", "source"), ("source_command", "source_command"),
                ("stdin_filename", "stdin_filename"), ("sqlite", "sqlite"), ("postgres", "postgres"),
                ("encrypt", "encrypt"), ("password_file", "password_file"), ("password_env", "password_env"),
                ("password_command", "password_command"), ("compression", "compression"),
                ("excludes", "exclude"), ("exclude_caches", "exclude_caches"),
                ("exclude_if_present", "exclude_if_present"), ("exclude_larger_than", "exclude_larger_than"),
                ("one_file_system", "one_file_system"), ("tags", "tag"), ("max_attempts", "max_attempts"),
                ("retention_after_run", "retention_after_run"), ("connections", "connections"))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return toml_string(str(value))


def export_text(manager: BackupManager) -> str:
    """The whole catalog as strongroom.toml text."""
    from strongroom.dr.plan import Plan
    from strongroom.services.configs import BackupConfig
    out = ["# strongroom configuration, written by `strongroom export-config`.",
           "# Apply it with `strongroom apply FILE`. Secrets are never written here: a secret kept",
           "# in this machine's secrets store stays there while the file does not reference one.", ""]
    for doc in manager.catalog.list_clients():
        out += [f"[{dotted(('client', doc['id']))}]", f"url = {toml_value(doc['url'])}",
                f"user = {toml_value(doc['username'])}",
                f"vendor = {toml_value(doc.get('service_type', 'generic'))}"]
        out += [f"{key} = {toml_value(doc[key])}" for key in ("key_file", "known_hosts") if doc.get(key)]
        out += ["# password: kept in the secrets store (password_file, password_env or password_command "
                "replace it)", ""]
    for doc in manager.catalog.list_configs():
        out += _config(BackupConfig.from_doc(doc))
    for row in manager.catalog.list_plans():
        out += _plan(Plan.from_doc(row["doc"]))
    for row in manager.catalog.list_channels():
        out += _channel(row)
    return "\n".join(out).rstrip("\n") + "\n"


def _config(config: Any) -> list[str]:
    doc = config.to_doc()
    table = ("config", config.name)
    out = [f"[{dotted(table)}]"]
    for field, key in _CONFIG_KEYS:
        value = doc.get(field)
        if field == "source_paths" and not value:
            continue
        if value is None or (field in _CONFIG_DEFAULTS and value == _CONFIG_DEFAULTS[field]):
            continue
        out.append(f"{key} = {toml_value(value)}")
    if config.is_local:
        out.append(f"target_dir = {toml_value(config.target_path)}")
    else:
        out += [f"client = {toml_value(config.target_client_id)}", f"target_path = {toml_value(config.target_path)}"]
    if config.encrypt and not (config.password_file or config.password_env or config.password_command):
        out.append(f"# password: the repository key is kept in the secrets store "
                   f"(`strongroom key export {config.name}` prints it)")
    if config.postgres_secret_ref:
        out.append("# postgres_password: kept in the secrets store")
    if config.copy_to:
        copy_to = config.copy_to
        out += ["", f"[{dotted((*table, 'copy_to'))}]"]
        if copy_to.get("client_id") in (None, "", "local"):
            out.append(f"target_dir = {toml_value(copy_to['path'])}")
        else:
            out += [f"client = {toml_value(copy_to['client_id'])}", f"target_path = {toml_value(copy_to['path'])}"]
        for key in ("password_file", "password_env", "password_command"):
            if copy_to.get(key):
                out.append(f"{key} = {toml_value(copy_to[key])}")
        if copy_to.get("secret_ref"):
            out.append("# password: kept in the secrets store")
    if config.retention:
        out += ["", f"[{dotted((*table, 'retention'))}]"]
        for key, value in config.retention.items():
            out.append(f"{'keep_tag' if key == 'keep_tags' else key} = {toml_value(value)}")
    for key, schedules in (("schedule", config.schedules), ("check_schedule", config.check_schedules)):
        for schedule in schedules:
            out += ["", f"[[{dotted((*table, key))}]]", f"spec = {toml_value(schedule['spec'])}"]
            for rule, default in (("window", None), ("random_delay", None), ("missed", "run-once"),
                                  ("priority", 0), ("subset", None)):
                if schedule.get(rule) not in (default, None):
                    out.append(f"{rule} = {toml_value(schedule[rule])}")
    return out + [""]


def _plan(plan: Any) -> list[str]:
    """A plan's own TOML (dr/plan.py) below [dr.NAME], its name the table's."""
    prefix = dotted(("dr", plan.name))
    out = [f"[{prefix}]"]
    for line in plan.to_toml().splitlines():
        if line.startswith("name = "):
            continue
        if line.startswith("[["):
            line = f"[[{prefix}.{line[2:]}"
        out.append(line)
    return out + [""]


def _channel(row: dict) -> list[str]:
    settings = row["settings"]
    out = [f"[{dotted(('notify', row['name']))}]", f"kind = {toml_value(row['kind'])}"]
    if row["kind"] == "email":
        out.append(f"email = {toml_value(settings.get('to') or [])}")
        for key, file_key in (("url", "smtp"), ("user", "smtp_user"), ("from", "from"), ("ca_file", "smtp_ca_file")):
            if settings.get(key):
                out.append(f"{file_key} = {toml_value(settings[key])}")
        if settings.get("starttls"):
            out.append("starttls = true")
        if settings.get("user"):
            out.append("# smtp_password: kept in the secrets store")
    else:
        kept = "the URL" + (" and the HMAC key are" if settings.get("signed") else " is")
        out.append(f"# {kept} kept in the secrets store ({row['kind']}_file, _env or _command replace it)")
    if row["min_severity"] != "warning":
        out.append(f"min_severity = {toml_value(row['min_severity'])}")
    if row["configs"]:
        out.append(f"config = {toml_value(list(row['configs']))}")
    return out + [""]
