"""The `[client.ID]`, `[notify.NAME]` and `[dr.NAME]` tables of the file.

A client and a channel are read here, their secrets from their references
now: what goes to the catalog is what `client add` and `notify add` store.
A secret that the file does not reference keeps the value the secrets store
holds (that is how `export-config` writes them). A DR plan's table is the
body of a plan file (dr/plan.py), its name the table's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from strongroom.configfile.lines import Path
from strongroom.configfile.problems import Problems
from strongroom.configfile.references import read_reference, reference_keys
from strongroom.errors import UsageError

CLIENT_KEYS = {"url", "user", "vendor", "key_file", "known_hosts", *reference_keys("password")}


@dataclass
class FileClient:
    id: str
    url: str
    user: str
    vendor: str
    password: str | None  # None: keep the stored one
    path: Path
    # An SFTP client's key file and trusted host keys (paths; services/target_accounts.py).
    key_file: str | None = None
    known_hosts: str | None = None


def read_client(client_id: str, table: Any, problems: Problems, environ: Mapping[str, str],
                base_dir: str) -> FileClient | None:
    from strongroom.services.urls import has_password
    from strongroom.storage.vendors import guess_vendor
    path: Path = ("client", client_id)
    before = len(problems.found)
    if not problems.table(path, table, "a WebDAV client is a table ([client.ID])", CLIENT_KEYS,
                          "unknown key: use url, user, vendor (key_file, known_hosts for sftp) and password_file, "
                          "password_env or password_command"):
        return None
    for key in ("url", "user"):
        if not isinstance(table.get(key), str) or not table.get(key):
            problems.add((*path, key) if key in table else path, f"give the client's {key} as text")
    url = table.get("url") if isinstance(table.get("url"), str) else ""
    if url and has_password(url):
        problems.add((*path, "url"), "never put the WebDAV password in the URL: give password_file, "
                                     "password_env or password_command")
    vendor = table.get("vendor") or (guess_vendor(url) if url else "generic")
    if not isinstance(vendor, str):
        problems.add((*path, "vendor"), "give the vendor as text")
        vendor = "generic"
    password = read_reference(table, "password", path, problems, environ, base_dir, f"client {client_id}")
    if len(problems.found) > before:
        return None
    from strongroom.services.config_schema import check_credentials
    from strongroom.services.target_accounts import check_account, is_target_kind
    login = {key: table.get(key) for key in ("key_file", "known_hosts")}
    for key, value in login.items():
        if value is not None and not isinstance(value, str):
            problems.add((*path, key), f"give the client's {key} as text")
            return None
    try:
        if is_target_kind(vendor):
            check_account(vendor.lower(), table["user"], password or "-", url, **login)
        else:
            check_credentials(table["user"], password or "-", url, vendor.lower())
    except UsageError as e:
        problems.add((*path, "vendor" if "service" in str(e) else "url"), str(e))
        return None
    return FileClient(client_id, url, table["user"], vendor.lower(), password, path, **login)


# ---- notification channels -------------------------------------------------------------------

URL_KINDS = ("webhook", "apprise", "heartbeat")
NOTIFY_KEYS = {"kind", "email", "smtp", "smtp_user", "starttls", "smtp_ca_file", "from", "min_severity",
               "config", *reference_keys("smtp_password"), *reference_keys("hmac_key"),
               *URL_KINDS, *(k for kind in URL_KINDS for k in reference_keys(kind))}


@dataclass
class FileChannel:
    name: str
    kind: str
    settings: dict
    secrets: dict[str, str]          # those the file references; the others keep their stored value
    min_severity: str
    configs: tuple[str, ...]
    path: Path
    kept_secrets: tuple[str, ...] = field(default=())  # needed, not referenced: the stored value stays


def read_channel(name: str, table: Any, problems: Problems, environ: Mapping[str, str],
                 base_dir: str) -> FileChannel | None:
    from strongroom.notify.base import SEVERITIES
    from strongroom.notify.channels import shown_url
    path: Path = ("notify", name)
    before = len(problems.found)
    if not problems.table(path, table, "a notification channel is a table ([notify.NAME])", NOTIFY_KEYS,
                          "unknown key (the keys are named like the options of `notify add`)"):
        return None
    kinds = [k for k in URL_KINDS if k in table or any(r in table for r in reference_keys(k))]
    if "email" in table:
        kinds.append("email")
    kind = table.get("kind")
    if kind is not None and kind not in (*URL_KINDS, "email"):
        problems.add((*path, "kind"), f"use one of email, {', '.join(URL_KINDS)}")
        return None
    if kind is None and len(kinds) == 1:
        kind = kinds[0]
    if kind is None or len(kinds) > 1 or (kinds and kinds[0] != kind):
        problems.add(path, "give exactly one of email, webhook, apprise or heartbeat (or kind, when the URL "
                           "is kept in the secrets store)")
        return None
    severity = table.get("min_severity", "warning")
    if severity not in SEVERITIES:
        problems.add((*path, "min_severity"), f"use one of {', '.join(SEVERITIES)}")
    configs = table.get("config", [])
    configs = [configs] if isinstance(configs, str) else configs
    if not isinstance(configs, list) or not all(isinstance(c, str) and c for c in configs):
        problems.add((*path, "config"), "give a list of configuration or DR plan names")
        configs = []
    secrets: dict[str, str] = {}
    kept: list[str] = []
    owner = f"notify {name}"
    if kind == "email":
        for key in ("smtp_user", "smtp_ca_file", "from", "smtp"):
            if key in table and not isinstance(table[key], str):
                problems.add((*path, key), "give text")
        if "starttls" in table and not isinstance(table["starttls"], bool):
            problems.add((*path, "starttls"), "give true or false")
        to = table.get("email", [])
        to = [to] if isinstance(to, str) else to
        if not isinstance(to, list) or not all(isinstance(a, str) for a in to):
            problems.add((*path, "email"), "give a list of addresses")
            to = []
        ca = table.get("smtp_ca_file")
        settings = {"to": list(to), "url": table.get("smtp"), "user": table.get("smtp_user"),
                    "starttls": bool(table.get("starttls", False)), "from": table.get("from"),
                    "ca_file": os.path.normpath(os.path.join(base_dir, os.path.expanduser(ca)))
                    if isinstance(ca, str) and ca else None}
        password = read_reference(table, "smtp_password", path, problems, environ, base_dir, owner)
        if password is not None:
            secrets["password"] = password
        elif settings["user"]:
            kept.append("password")
        for key in ("hmac_key", *URL_KINDS):
            for ref in reference_keys(key):
                if ref in table:
                    problems.add((*path, ref), "goes with a webhook, not email")
    else:
        url = table.get(kind)
        if url is not None and not isinstance(url, str):
            problems.add((*path, kind), "give the URL as text")
            url = None
        if url is None:
            url = read_reference(table, kind, path, problems, environ, base_dir, owner)
        elif any(r in table for r in reference_keys(kind)):
            problems.add((*path, kind), f"give {kind} or one of {', '.join(reference_keys(kind))}, not both")
        settings = {"shown_url": shown_url(url, kind)} if url else {}
        if url:
            secrets["url"] = url
        else:
            kept.append("url")
        hmac = read_reference(table, "hmac_key", path, problems, environ, base_dir, owner)
        if hmac is not None:
            if kind != "webhook":
                problems.add(path, "an HMAC key signs webhooks only")
            secrets["hmac_key"] = hmac
            settings["signed"] = True
        for key in ("email", "smtp", "smtp_user", "starttls", "smtp_ca_file", "from",
                    *reference_keys("smtp_password")):
            if key in table:
                problems.add((*path, key), "goes with email, not a " + kind)
    if len(problems.found) > before:
        return None
    return FileChannel(name, kind, settings, secrets, severity, tuple(configs), path, tuple(kept))


# ---- DR plans ----------------------------------------------------------------------------


def read_plan(name: str, table: Any, problems: Problems, base_dir: str):
    from strongroom.dr.plan import Plan
    path: Path = ("dr", name)
    if not isinstance(table, dict):
        problems.add(path, "a DR plan is a table ([dr.NAME])")
        return None
    if "name" in table:
        problems.add((*path, "name"), "a plan's name is its table's: [dr.NAME]")
        return None
    doc = dict(table)
    if isinstance(doc.get("target_base"), str) and doc["target_base"]:
        doc["target_base"] = os.path.normpath(os.path.join(base_dir, os.path.expanduser(doc["target_base"])))
    try:
        return Plan.from_doc({**doc, "name": name})
    except UsageError as e:
        problems.add(_plan_key(path, table, str(e)), str(e))
        return None


def _plan_key(path: Path, table: dict, message: str) -> Path:
    """The key a plan's error is about, where its words say (else the plan's table)."""
    import re
    unknown = re.search(r"unknown key '([^']+)' in a (plan|step|hook)", message)
    steps = table.get("steps") if isinstance(table.get("steps"), list) else []
    if unknown:
        key, what = unknown.groups()
        if what == "plan":
            return (*path, key)
        for i, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            if what == "step" and key in step:
                return (*path, "steps", i, key)
            for when in ("before", "after") if what == "hook" else ():
                hooks = step.get(when) if isinstance(step.get(when), list) else []
                for j, hook in enumerate(hooks):
                    if isinstance(hook, dict) and key in hook:
                        return (*path, "steps", i, when, j, key)
        return (*path, "steps")
    step = re.match(r"step (\S+?):", message)
    if step:
        for i, s in enumerate(steps):
            if isinstance(s, dict) and step.group(1) in (s.get("name"), s.get("config")):
                return (*path, "steps", i)
    for key in ("target_base", "rto", "rpo", "on_failure", "verify", "description"):
        if key.replace("_", " ") in message.lower() or key in message or key.upper() in message:
            if key in table:
                return (*path, key)
    return path
