"""What differs between an object of the file and the catalog's copy, in the file's words.

Both sides are compared in their stored form; the names returned are the
file's keys (`exclude`, not `excludes`; `smtp_password`, not `password`),
as the `~` lines of `apply` show them. Never a value.
"""

from __future__ import annotations

from typing import Any

from strongroom.configfile.config_table import FIELD_KEYS

# `notify add`'s options, as a channel's errors name them, and the file's keys for them.
_OPTION_KEYS = (("--starttls", "starttls = true"), ("--smtp-password-file", "smtp_password_file"),
                ("STRONGROOM_SMTP_PASSWORD", "smtp_password_env"), ("--min-severity", "min_severity"),
                ("--email", "email"))


def file_words(message: str) -> str:
    for option, key in _OPTION_KEYS:
        message = message.replace(option, key)
    return message


def config_fields(old: Any, new: Any) -> list[str]:
    """The file keys whose values differ between two configurations' stored forms."""
    a, b = old.to_doc(), new.to_doc()
    for doc in (a, b):
        doc.pop("secret_ref", None)
        doc.pop("postgres_secret_ref", None)
    keys: list[str] = []
    for field_name in dict.fromkeys([*a, *b]):
        if a.get(field_name) == b.get(field_name):
            continue
        if field_name == "target_path":
            key = "target_dir" if new.is_local else "target_path"
        elif field_name in ("source_paths", "source_command", "sqlite", "postgres", "stdin_filename"):
            key = {"source_paths": "source"}.get(field_name, field_name)
        else:
            key = FIELD_KEYS.get(field_name, field_name)
        if key not in keys:
            keys.append(key)
    return keys


_PLAN_KEYS = {"rto_seconds": "rto", "rpo_seconds": "rpo"}


def plan_key(key: str) -> str:
    return _PLAN_KEYS.get(key, key)


_SETTING_KEYS = {"to": "email", "url": "smtp", "user": "smtp_user", "ca_file": "smtp_ca_file", "signed": "hmac_key"}
_SECRET_KEYS = {"password": "smtp_password"}


def channel_fields(stored: dict, spec: Any, old_secrets: dict) -> list[str]:
    fields: list[str] = []
    if stored["kind"] != spec.kind:
        return ["kind"]
    for key in dict.fromkeys([*stored["settings"], *spec.settings]):
        if key == "shown_url":
            continue  # follows the URL, compared among the secrets
        if stored["settings"].get(key) != spec.settings.get(key):
            fields.append(_SETTING_KEYS.get(key, key))
    if stored["min_severity"] != spec.min_severity:
        fields.append("min_severity")
    if list(stored["configs"]) != list(spec.configs):
        fields.append("config")
    for key in dict.fromkeys([*old_secrets, *spec.secrets]):
        if old_secrets.get(key) != spec.secrets.get(key):
            name = spec.kind if key == "url" else _SECRET_KEYS.get(key, key)
            if name not in fields:
                fields.append(name)
    return fields
