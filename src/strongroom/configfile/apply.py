"""Making the catalog match a configuration file, and saying what changed.

Three steps. Read: the file's tables as objects (document.py); a file with
any problem changes nothing. Compare: each object against the catalog's
copy, both in their stored, normalised form (a configuration's `to_doc`, a
plan's `to_doc`, a channel's settings and secrets), so applying the same
file twice finds nothing to do and writes nothing. Write: in an order
where each object finds what it names (clients, configurations, plans,
channels; removals the other way round), through the same calls as the
command line (`add_config`, `add_channel`, `PlanStore.save`...).

Objects in the catalog and not in the file are listed and kept; with
`prune` they are removed, as their own `remove` commands do (a
configuration's repository data stays).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strongroom.configfile.compare import channel_fields, config_fields, file_words, plan_key
from strongroom.configfile.config_table import FileConfig
from strongroom.configfile.document import Declared, base_dir_of, parse, read_text
from strongroom.configfile.other_tables import FileChannel, FileClient
from strongroom.configfile.problems import Problems
from strongroom.errors import StrongroomError, UsageError

if TYPE_CHECKING:
    from strongroom.services.backup_manager import BackupManager

KINDS = ("client", "config", "dr", "notify")  # the order objects are written in
ADD, CHANGE, REMOVE, KEPT = "add", "change", "remove", "kept"
_SIGN = {ADD: "+", CHANGE: "~", REMOVE: "-"}


@dataclass(frozen=True)
class Change:
    """One object the file adds, changes or removes (or that is kept: in the
    catalog, not in the file, and no `prune`). `fields` names the keys of the
    file that differ, for a change."""

    kind: str  # client, config, dr, notify
    name: str
    action: str  # add, change, remove, kept
    fields: tuple[str, ...] = ()

    def line(self) -> str:
        if self.action == KEPT:
            return f"  {self.kind} {self.name}: not in the file (kept; --prune removes it)"
        text = f"{_SIGN[self.action]} {self.kind} {self.name}"
        return text + (f": {', '.join(self.fields)}" if self.fields else "")

    def to_doc(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "action": self.action, "fields": list(self.fields)}


@dataclass
class ApplyReport:
    """What `apply_file` did (or, with `dry_run` or errors, would do).

    `errors` are the problems of the file (each `FILE:LINE: KEY: message`;
    nothing was written) or the one error that stopped the writing part way
    (`invalid` False then; `changes` holds what was done before it)."""

    path: str
    dry_run: bool = False
    prune: bool = False
    changes: list[Change] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    invalid: bool = False
    failure_code: int = 1  # the exit code of the error that stopped the writing (12: a wrong password...)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def changed(self) -> list[Change]:
        return [c for c in self.changes if c.action != KEPT]

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else (2 if self.invalid else self.failure_code)

    def lines(self) -> list[str]:
        """One line per object, then "no changes" when nothing differs; the errors last."""
        out = [c.line() for c in self.changes]
        if not self.changed and not self.errors:
            out.append("no changes")
        elif self.dry_run and self.changed and not self.errors:
            out.append("(dry run: nothing was changed)")
        return out + self.errors


def apply_file(manager: BackupManager, path: str | os.PathLike, dry_run: bool = False, prune: bool = False,
               environ: Mapping[str, str] | None = None) -> ApplyReport:
    """Make the catalog of `manager` match the file at `path` (see the module).

    The secret references `apply` reads itself (a client's, a channel's, a
    database password) read `environ` (the process's by default); a
    repository password stays a reference, read at each use from the
    process's own environment, as `config add --password-env` does.

    It touches no process-wide state (signals, the working directory), so a
    daemon may call it from any thread; calls that may overlap should be
    made one at a time. A bad file is a report with errors, never a raise."""
    environ = os.environ if environ is None else environ
    path = Path(path)
    report = ApplyReport(str(path), dry_run, prune)
    try:
        text = read_text(path)
    except UsageError as e:
        report.errors, report.invalid = [str(e)], True
        return report
    declared, problems = parse(text, str(path), environ, base_dir_of(path))
    if prune and not problems and not any((declared.clients, declared.configs, declared.channels,
                                           declared.plans)):
        # More likely the wrong file than a wish to empty the catalog.
        problems.add((), "the file declares nothing: --prune would remove everything, so it is refused")
    if declared.readable:
        # Run with problems too, on what did read: the whole file's problems at once.
        try:
            steps = _Planner(manager, declared, problems, prune).plan()
        except StrongroomError as e:  # the catalog or the secrets store could not be read
            report.errors, report.failure_code = [str(e)], e.exit_code
            return report
    if problems:
        report.errors, report.invalid = problems.lines_out(), True
        return report
    report.changes = [change for change, _ in steps]
    if dry_run:
        return report
    if report.changed and not _unchanged(path, text):
        # Being written as it was read (an editor that writes in place, a checkout): what was
        # read may be the first part of it only, and --prune would remove the rest.
        report.errors, report.invalid = [f"{path}: changed while it was being read; nothing was written: "
                                         "apply it again once it is saved"], True
        report.changes = []
        return report
    done = []
    for change, write in steps:
        if write is None:
            done.append(change)
            continue
        try:
            write()
        except StrongroomError as e:
            report.errors = [f"{change.kind} {change.name}: {_without_prefix(str(e), change)}"]
            report.failure_code = e.exit_code
            break
        done.append(change)
    if report.errors:
        report.changes = done
    return report


def _unchanged(path: Path, text: str) -> bool:
    try:
        return read_text(path) == text
    except UsageError:
        return False


def _without_prefix(message: str, change: Change) -> str:
    return message.removeprefix(f"config {change.name}: ")


class _Planner:
    """The changes the file asks of the catalog, each with the call that makes it."""

    def __init__(self, manager: BackupManager, declared: Declared, problems: Problems, prune: bool) -> None:
        self.manager = manager
        self.catalog = manager.catalog
        self.secrets = manager.backup_service.secrets
        self.declared = declared
        self.problems = problems
        self.prune = prune
        self.steps: list[tuple[Change, Any]] = []

    def _final(self, kind: str, stored: list[str]) -> set[str]:
        """The names there will be: the file's, and the catalog's the file leaves alone."""
        return self.declared.names[kind] | (set() if self.prune else set(stored))

    def plan(self) -> list[tuple[Change, Any]]:
        stored_clients = {d["id"]: d for d in self.catalog.list_clients()}
        stored_configs = {d["name"]: d for d in self.catalog.list_configs()}
        stored_plans = {r["name"]: r for r in self.catalog.list_plans()}
        stored_channels = {r["name"]: r for r in self.catalog.list_channels()}
        self.clients = self._final("client", list(stored_clients))
        self.configs = self._final("config", list(stored_configs))
        self.plans = self._final("dr", list(stored_plans))
        for name, client in sorted(self.declared.clients.items()):
            self._client(client, stored_clients.get(name))
        for name, config in sorted(self.declared.configs.items()):
            self._config(config, stored_configs.get(name))
        for name, plan in sorted(self.declared.plans.items()):
            self._plan(plan, stored_plans.get(name))
        for name, channel in sorted(self.declared.channels.items()):
            self._channel(channel, stored_channels.get(name))
        removals = [("notify", stored_channels), ("dr", stored_plans), ("config", stored_configs),
                    ("client", stored_clients)]
        for kind, stored in removals:
            for name in sorted(set(stored) - self.declared.names[kind]):
                if self.prune:
                    self._remove(kind, name, stored[name])
                else:
                    self.steps.append((Change(kind, name, KEPT), None))
        return self.steps

    # ---- clients ------------------------------------------------------------------------

    def _client(self, client: FileClient, stored: dict | None) -> None:
        from strongroom.services.webdav_service import WebDAVCredentials
        webdav = self.manager.webdav_service
        old_password = webdav.get_client(client.id).password if stored else None
        password = client.password if client.password is not None else old_password
        if password is None:
            self.problems.add(client.path, "a new client needs its password: give password_file, password_env "
                                           "or password_command")
            return
        fields = []
        if stored:
            for key, old in (("url", stored["url"]), ("user", stored["username"]),
                             ("vendor", stored.get("service_type", "generic")),
                             ("key_file", stored.get("key_file")), ("known_hosts", stored.get("known_hosts"))):
                if getattr(client, key) != old:
                    fields.append(key)
            if password != old_password:
                fields.append("password")
            if not fields:
                return
        credentials = WebDAVCredentials(client.user, password, client.url, client.vendor, client.key_file,
                                        client.known_hosts)
        self.steps.append((Change("client", client.id, CHANGE if stored else ADD, tuple(fields)),
                           lambda: webdav.add_client(client.id, credentials)))

    # ---- configurations -----------------------------------------------------------------

    def _config(self, config: FileConfig, stored: dict | None) -> None:
        from strongroom.services.configs import BackupConfig
        client = config.fields.get("target_client_id")
        if client and client not in self.clients:
            self.problems.add((*config.path, "client"), f"no WebDAV client named {client!r} (in the file or "
                                                         "the catalog)")
            return
        copy_to = config.fields.get("copy_to")
        if copy_to and not any(copy_to.get(k) for k in ("password_file", "password_env", "password_command")):
            kept = ((stored or {}).get("copy_to") or {}).get("secret_ref")
            if not kept:
                self.problems.add((*config.path, "copy_to"), "give the second target's password as password_file, "
                                                             "password_env or password_command")
                return
            config.fields["copy_to"] = {**copy_to, "secret_ref": kept}
        made = BackupConfig(**config.fields)
        fields: list[str] = []
        if stored:
            old = BackupConfig.from_doc(stored)
            referenced = [k for k in ("password_file", "password_env", "password_command") if getattr(old, k)]
            if config.stored_password and old.encrypt and referenced and not old.secret_ref:
                # Without a reference the key is the secrets store's, and there is none to take:
                # a new one would be generated, which the repository refuses.
                self.problems.add(config.path, f"give its repository password as {referenced[0]} (as now) or "
                                               f"another reference: its repository opens with that password, "
                                               f"and no key is kept in the secrets store for it (`strongroom "
                                               f"config edit {config.name} --store-password` keeps one)")
                return
            if config.stored_password:
                made.secret_ref = old.secret_ref
            if made.source_kind == "postgres":
                made.postgres_secret_ref = old.postgres_secret_ref
                if config.postgres_password is not None and (
                        not old.postgres_secret_ref or self.secrets.get(old.postgres_secret_ref)
                        != config.postgres_password):
                    made.postgres_password = config.postgres_password
                    fields.append("postgres_password")
            fields = config_fields(old, made) + fields
            if not fields:
                return
        else:
            made.postgres_password = config.postgres_password
        try:
            made.check_sources(known=(stored or {}).get("source_paths") or ())
        except UsageError as e:
            key = "source" if made.source_kind == "files" else made.source_kind.replace("command", "source_command")
            self.problems.add((*config.path, key), str(e).removeprefix(f"config {config.name}: "))
            return
        if stored:
            self.steps.append((Change("config", config.name, CHANGE, tuple(fields)),
                               lambda: self.manager.update_config(made)))
        else:
            self.steps.append((Change("config", config.name, ADD), lambda: self._add_config(made, config)))

    def _add_config(self, made: Any, config: FileConfig) -> None:
        from strongroom.errors import WrongPassword
        try:
            self.manager.add_config(made)
        except WrongPassword:
            if not config.stored_password:
                raise
            # A key was generated for it, and its target holds a repository already.
            raise WrongPassword("its target holds a repository already: reference that repository's "
                                "password with password_file, password_env or password_command") from None

    # ---- DR plans -------------------------------------------------------------------------

    def _plan(self, plan: Any, stored: dict | None) -> None:
        from strongroom.dr.plan import Plan
        from strongroom.dr.store import PlanStore
        missing = [c for c in plan.configs if c not in self.configs]
        if missing:
            self.problems.add(("dr", plan.name), f"its steps restore {', '.join(missing)}, which is not a "
                                                 "configuration (in the file or the catalog)")
            return
        fields: tuple[str, ...] = ()
        if stored:
            old = Plan.from_doc(stored["doc"]).to_doc()
            new = plan.to_doc()
            fields = tuple(plan_key(k) for k in new if new[k] != old.get(k))
            if not fields:
                return
        store = PlanStore(self.manager.backup_service)
        self.steps.append((Change("dr", plan.name, CHANGE if stored else ADD, fields),
                           lambda: store.save(plan, replace=True)))

    # ---- notification channels ----------------------------------------------------------

    def _channel(self, channel: FileChannel, stored: dict | None) -> None:
        from strongroom.notify.channels import ChannelSpec, add_channel, shown_url, validate
        same_kind = stored is not None and stored["kind"] == channel.kind
        secrets = {key: self.secrets.get(ref) for key, ref in (stored["secret_refs"] if same_kind else {}).items()}
        secrets = {k: v for k, v in secrets.items() if v is not None and (k in channel.kept_secrets or
                                                                          k == "hmac_key")}
        secrets.update(channel.secrets)
        settings = dict(channel.settings)
        if channel.kind == "email":
            if not settings.get("user"):
                secrets.pop("password", None)
            elif "password" not in secrets:
                self.problems.add(channel.path, "the SMTP login needs its password: give smtp_password_file, "
                                                "smtp_password_env or smtp_password_command")
                return
        else:
            if "url" not in secrets:
                self.problems.add(channel.path, f"give the URL: {channel.kind}, {channel.kind}_file, "
                                                f"{channel.kind}_env or {channel.kind}_command")
                return
            settings["shown_url"] = shown_url(secrets["url"], channel.kind)
            if channel.kind == "webhook" and "hmac_key" in secrets:
                settings["signed"] = True
            else:
                secrets.pop("hmac_key", None)
        spec = ChannelSpec(channel.name, channel.kind, settings, secrets, channel.min_severity, channel.configs)
        try:
            validate(spec, self.configs | self.plans)
        except UsageError as e:
            self.problems.add(channel.path, file_words(str(e)))
            return
        fields: list[str] = []
        if stored:
            old_secrets = {key: self.secrets.get(ref) for key, ref in stored["secret_refs"].items()}
            fields = channel_fields(stored, spec, old_secrets)
            if not fields:
                return
        self.steps.append((Change("notify", channel.name, CHANGE if stored else ADD, tuple(fields)),
                           lambda: add_channel(self.catalog, self.secrets, spec, replace=True)))

    # ---- removals -------------------------------------------------------------------------

    def _remove(self, kind: str, name: str, stored: dict) -> None:
        from strongroom.notify.channels import remove_channel
        manager = self.manager
        if kind == "client":
            users = [c["name"] for c in self.catalog.list_configs()
                     if c.get("target_client_id") == name and c["name"] in self.configs]
            if users:
                self.problems.add(("config", users[0], "client"), f"WebDAV client {name} is not in the file, "
                                                                  "and --prune removes it")
                return
            write = lambda: manager.webdav_service.remove_client(name)  # noqa: E731
        elif kind == "config":
            unsafe = self._key_without_kit(name, stored)
            if unsafe:
                self.problems.add(("config", name), unsafe, placed=False)
                return
            write = lambda: manager.remove_config(name)  # noqa: E731
        elif kind == "dr":
            from strongroom.dr.store import PlanStore
            store = PlanStore(manager.backup_service)
            write = lambda: store.delete(name)  # noqa: E731
        else:
            write = lambda: remove_channel(self.catalog, self.secrets, name)  # noqa: E731
        self.steps.append((Change(kind, name, REMOVE), write))

    def _key_without_kit(self, name: str, stored: dict) -> str | None:
        """Why pruning configuration `name` would lose its repository, or None."""
        from strongroom.services.configs import BackupConfig
        from strongroom.services.key_safety import key_left_unrecoverable
        why = key_left_unrecoverable(self.manager, BackupConfig.from_doc(stored))
        if why is None:
            return None
        return (f"not in the file, but --prune does not forget it: {why}. Run `strongroom key export {name}` "
                f"and keep the kit, then apply again (or `strongroom config remove {name} --without-kit`)")

