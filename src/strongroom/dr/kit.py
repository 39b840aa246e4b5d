"""The recovery kit of a DR plan: what a person needs, when the machine is
gone, to get every step of the plan back.

One file, two readers. The top is a page for a person (printable, to keep in
a drawer): the plan, each repository it needs with its location, id and
password, the WebDAV accounts, and the exact commands to run. The end is the
same kit as JSON between two marker lines, which `dr recover --kit FILE`
reads back; the page above it is never parsed. The kit is the one place that
holds the repository passwords, so the file is written 0600. The passwords
of WebDAV, S3 and SFTP accounts and of PostgreSQL sources are in it only when
asked for (`include_passwords`); without them `dr recover` asks for each
account's, and a database's is given again with `config edit`.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from strongroom import __version__
from strongroom.atomic import replaced_whole
from strongroom.errors import StrongroomError, UsageError

if TYPE_CHECKING:
    from strongroom.services.backup_manager import BackupManager

KIT_FORMAT = "strongroom-dr-kit/1"
BEGIN = "-----BEGIN STRONGROOM RECOVERY KIT-----"
END = "-----END STRONGROOM RECOVERY KIT-----"
MAX_KIT_BYTES = 1024 * 1024
MAX_REPOSITORIES = 200
KIT_NOTICE = ("Keep this kit somewhere other than this machine (on paper, or in a password manager): "
              "if this machine is lost, it is the only way to open the repositories.")


@dataclass(frozen=True)
class KitAccount:
    """A WebDAV account a repository lives on."""

    client: str  # the client's id on the machine the kit was made on
    url: str  # the account's URL, never with a password
    username: str
    vendor: str
    folder: str  # the repository's folder below `url`
    password: str | None = field(default=None, repr=False)  # only with include_passwords
    # An SFTP server's login (vendor "sftp"): the key file and trusted host keys, as paths.
    key_file: str | None = None
    known_hosts: str | None = None

    def to_doc(self) -> dict[str, Any]:
        doc = {"client": self.client, "url": self.url, "username": self.username, "vendor": self.vendor,
               "folder": self.folder}
        if self.password is not None:
            doc["password"] = self.password
        for key in ("key_file", "known_hosts"):
            if getattr(self, key):
                doc[key] = getattr(self, key)
        return doc

    def lines(self) -> list[str]:
        """The account on the kit's page: where, who, and its secret or how to give it."""
        if self.vendor == "s3":
            return [f"  S3 bucket:       {self.url}, folder {self.folder}, access key id {self.username}",
                    "  S3 secret key:   " + (self.password if self.password is not None else
                                             "not in this kit: have it ready (recovery asks for it; "
                                             "AWS_SECRET_ACCESS_KEY for `snapshots --repo`)")]
        if self.vendor == "sftp":
            return [f"  SFTP server:     {self.url}, folder {self.folder}",
                    f"  SSH key file:    {self.key_file} (trusted host keys in {self.known_hosts}); "
                    "bring the key and its host key line to the new machine",
                    "  Key passphrase:  " + ((self.password or "none") if self.password is not None else
                                             "not in this kit: have it ready if the key has one")]
        return [f"  WebDAV account:  {self.username} at {self.url} ({self.vendor}), folder {self.folder}",
                "  WebDAV password: " + (self.password if self.password is not None else
                                         "not in this kit: have it ready (or set STRONGROOM_WEBDAV_PASSWORD)")]


@dataclass(frozen=True)
class KitDatabase:
    """A PostgreSQL source among a repository's configurations."""

    config: str
    connection: str  # the database name or connection string, never with its password
    password: str | None = field(default=None, repr=False)  # only with include_passwords
    has_password: bool = False  # whether this machine has a password for it

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"config": self.config, "postgres": self.connection, "has_password": self.has_password}
        if self.password is not None:
            doc["password"] = self.password
        return doc

    def line(self) -> str:
        if self.password is not None:
            secret = self.password
        elif self.has_password:
            secret = ("not in this kit: have it ready (`strongroom config edit "
                      f"{shlex.quote(self.config)} --postgres-password-file FILE` after recovering)")
        else:
            secret = "none on record"
        return f"  Database:        {self.config}: PostgreSQL {self.connection}; password: {secret}"


@dataclass(frozen=True)
class KitRepository:
    """One repository a plan needs, with what opens it."""

    location: str  # a local directory, or a webdav+http(s):// URL without a password
    repository_id: str | None  # None when it could not be opened as the kit was made
    configs: tuple[str, ...]  # the plan's configurations that live in it
    password: str | None = field(default=None, repr=False)  # None: a repository without encryption
    account: KitAccount | None = None  # None: a local directory
    databases: tuple[KitDatabase, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        return {"location": self.location, "repository_id": self.repository_id, "configs": list(self.configs),
                "password": self.password, "webdav": self.account.to_doc() if self.account else None,
                "databases": [d.to_doc() for d in self.databases]}


@dataclass(frozen=True)
class RecoveryKit:
    """The recovery kit of one plan."""

    plan: str
    plan_version: str
    target_base: str
    made: datetime
    host: str
    strongroom_version: str
    repositories: tuple[KitRepository, ...]
    webdav_passwords: bool  # whether the account and database passwords are in it

    def to_doc(self) -> dict[str, Any]:
        return {"format": KIT_FORMAT, "plan": self.plan, "plan_version": self.plan_version,
                "target_base": self.target_base,
                "made": self.made.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
                "host": self.host, "strongroom_version": self.strongroom_version,
                "webdav_passwords": self.webdav_passwords,
                "repositories": [r.to_doc() for r in self.repositories]}

    @classmethod
    def from_doc(cls, doc: Any) -> RecoveryKit:
        """A kit from its JSON part; anything malformed is one UsageError line."""
        if not isinstance(doc, dict) or doc.get("format") != KIT_FORMAT:
            raise UsageError(f"not a recovery kit of this version (its format is not {KIT_FORMAT})")
        repos = doc.get("repositories")
        if not isinstance(repos, list) or not repos or len(repos) > MAX_REPOSITORIES:
            raise UsageError("the recovery kit names no repository")
        try:
            made = datetime.fromisoformat(_text(doc, "made").replace("Z", "+00:00"))
        except ValueError:
            raise UsageError("the recovery kit: made is not a time") from None
        return cls(_text(doc, "plan"), _text(doc, "plan_version"), _text(doc, "target_base"), made,
                   _text(doc, "host"), _text(doc, "strongroom_version"),
                   tuple(_repository(r) for r in repos), bool(doc.get("webdav_passwords")))

    # ---- the page ----------------------------------------------------------------------

    def commands(self, path: str | None) -> list[tuple[str, str]]:
        """What to run on a new machine, in order: (what it does, the command)."""
        kit = shlex.quote(path) if path else "KIT-FILE"
        plan = shlex.quote(self.plan)
        return [
            ("See what the repositories hold (nothing is restored)", f"strongroom dr recover --kit {kit}"),
            ("Rehearse the plan into a scratch area (the targets are not touched)",
             f"strongroom dr recover --kit {kit} --plan {plan} --test"),
            ("Recover", f"strongroom dr recover --kit {kit} --plan {plan} --target-base "
                        f"{shlex.quote(self.target_base)}"),
        ]

    def page(self, path: str | None = None) -> str:
        """The kit as a file: the page for a person, then the block `dr recover` reads."""
        made = self.made.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines = ["STRONGROOM RECOVERY KIT", "=" * 23, "",
                 f"Plan:           {self.plan} (version {self.plan_version})",
                 f"Restores into:  {self.target_base}",
                 f"Made:           {made} on {self.host}, strongroom {self.strongroom_version}", "",
                 KIT_NOTICE, ""]
        count = len(self.repositories)
        for number, repo in enumerate(self.repositories, 1):
            lines += [f"Repository {number} of {count}",
                      f"  Location:        {repo.location}",
                      f"  Repository id:   {repo.repository_id or 'unknown (it did not open as the kit was made)'}",
                      f"  Password:        {repo.password if repo.password is not None else 'none (not encrypted)'}",
                      f"  Configurations:  {', '.join(repo.configs)}"]
            if repo.account:
                lines += repo.account.lines()
            lines += [database.line() for database in repo.databases]
            lines.append("")
        lines.append("To recover on a new machine with strongroom installed:")
        for number, (what, command) in enumerate(self.commands(path), 1):
            lines += [f"  {number}. {what}:", f"       {command}"]
        lines += ["Each repository also opens alone: strongroom snapshots --repo LOCATION, giving its password "
                  "when asked (or in STRONGROOM_PASSWORD).", "",
                  "The block below is this kit for `strongroom dr recover --kit` to read; leave it as it is.",
                  BEGIN, json.dumps(self.to_doc(), indent=2, sort_keys=True), END, ""]
        return "\n".join(lines)


def _text(doc: dict, key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise UsageError(f"the recovery kit: {key} is missing or not text")
    return value


def _optional_text(doc: dict, key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"the recovery kit: {key} is not text")
    return value


def _repository(doc: Any) -> KitRepository:
    if not isinstance(doc, dict):
        raise UsageError("the recovery kit: a repository is not a table")
    configs = doc.get("configs")
    if not isinstance(configs, list) or not all(isinstance(c, str) for c in configs):
        raise UsageError("the recovery kit: a repository's configs is not a list of names")
    account = doc.get("webdav")
    if account is not None:
        if not isinstance(account, dict):
            raise UsageError("the recovery kit: a repository's webdav is not a table")
        account = KitAccount(_text(account, "client"), _text(account, "url"), _text(account, "username"),
                             _text(account, "vendor"), _text(account, "folder"), _optional_text(account, "password"),
                             _optional_text(account, "key_file"), _optional_text(account, "known_hosts"))
    databases = doc.get("databases") or []
    if not isinstance(databases, list) or not all(isinstance(d, dict) for d in databases):
        raise UsageError("the recovery kit: a repository's databases is not a list of tables")
    return KitRepository(_text(doc, "location"), _optional_text(doc, "repository_id"), tuple(configs),
                         _optional_text(doc, "password"), account,
                         tuple(KitDatabase(_text(d, "config"), _text(d, "postgres"), _optional_text(d, "password"),
                                           bool(d.get("has_password"))) for d in databases))


# ---- making, writing and reading a kit ------------------------------------------------------


def make_kit(manager: BackupManager, plan_name: str, include_passwords: bool = False) -> tuple[RecoveryKit, list[str]]:
    """The kit of plan `plan_name` from this machine's catalog and secrets, and
    the warnings of making it. Each repository is opened to learn its id and
    to put the kit on record (`record_kit_export`, as `key export` does); one
    that does not open is in the kit all the same, with a warning: the kit may
    be what gets it back."""
    from strongroom.dr.store import PlanStore

    service = manager.backup_service
    plan = PlanStore(service).get(plan_name)
    groups: dict[str, list] = {}
    for name in plan.configs:
        config = service.get_config(name)
        location = config.target_path if config.is_local else \
            manager.webdav_service.repository_url(config.target_client_id, config.target_path)
        groups.setdefault(location, []).append(config)
    repositories, warnings = [], []
    for location, configs in groups.items():
        first = configs[0]
        secret = service.password_for(first)
        password = None if secret is None else secret.decode("utf-8", "surrogateescape")
        account = None
        if not first.is_local:
            client = manager.webdav_service.get_client(first.target_client_id)
            account = KitAccount(first.target_client_id, client.url, client.username, client.service_type,
                                 first.target_path, client.password if include_passwords else None,
                                 client.key_file, client.known_hosts)
        repository_id = None
        try:
            repo = service.open_repository(first)
            repository_id = repo.config.id
            for config in configs:
                manager.catalog.record_kit_export(repo.config.id, repo.key_id, config.name)
        except StrongroomError as e:
            warnings.append(f"the repository of {first.name} did not open, its id is not in the kit and the kit "
                            f"is not on record: {e}")
        repositories.append(KitRepository(location, repository_id, tuple(c.name for c in configs), password,
                                          account, tuple(_database(service, c, include_passwords)
                                                         for c in configs if c.source_kind == "postgres")))
    kit = RecoveryKit(plan.name, plan.version, plan.target_base, datetime.now(timezone.utc), socket.gethostname(),
                      __version__, tuple(repositories), include_passwords)
    return kit, warnings


def _database(service: Any, config: Any, include_passwords: bool) -> KitDatabase:
    password = service.secrets.get(config.postgres_secret_ref) if config.postgres_secret_ref else None
    return KitDatabase(config.name, config.postgres, password if include_passwords else None, password is not None)


def write_kit(kit: RecoveryKit, path: str) -> str:
    """Write the kit to `path`, mode 0600, whole or not at all; returns the absolute path."""
    path = os.path.abspath(path)
    with replaced_whole(path, 0o600, prefix=".kit-") as f:
        f.write(kit.page(path).encode("utf-8", "surrogateescape"))
    return path


def parse_kit(text: str) -> RecoveryKit:
    """The kit in the text of a kit file (the block between the markers)."""
    lines = text.splitlines()
    try:
        start = max(i for i, line in enumerate(lines) if line.strip() == BEGIN)
        end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == END)
    except ValueError:
        raise UsageError(f"not a recovery kit: no line {BEGIN}") from None
    except StopIteration:
        raise UsageError(f"the recovery kit is cut off: no line {END}") from None
    try:
        doc = json.loads("\n".join(lines[start + 1:end]))
    except (ValueError, RecursionError):
        raise UsageError("the recovery kit's block is not valid JSON: was it changed?") from None
    return RecoveryKit.from_doc(doc)


def read_kit(path: str) -> RecoveryKit:
    """The kit in the file `path` (at most 1 MiB)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KIT_BYTES + 1)
    except OSError as e:
        raise UsageError(f"cannot read the recovery kit {path}: {e.strerror}") from None
    if len(data) > MAX_KIT_BYTES:
        raise UsageError(f"{path} is not a recovery kit: over {MAX_KIT_BYTES // 1024} KiB")
    return parse_kit(data.decode("utf-8", "surrogateescape"))


def location_url(location: str) -> str:
    """An http(s) URL for a webdav+ location, without the user name."""
    parts = urlsplit(location.removeprefix("webdav+"))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
