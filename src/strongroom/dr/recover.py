"""Recovery from nothing: the configurations and plans read from the
repositories alone, the catalog entries a plan needs rebuilt, and the plan
run (or rehearsed).

Nothing of an earlier state is read: the repositories come from a recovery
kit or a URL and a password, the configurations and plans from what each
repository holds sealed under its key (`configs/`). Where several
repositories hold a version of one plan, the newest wins. The catalog gets
only what the chosen plan needs: the WebDAV clients, the configurations
(pointed at the repository each was found in, their passwords in the
secrets store) and the plan itself, at the version found.

A plan's hooks are commands run on this machine; a plan read from a
repository was sealed under that repository's key, so only someone who had
the key could have put it there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from strongroom.dr.kit import RecoveryKit, location_url
from strongroom.dr.plan import Plan
from strongroom.errors import FolderNotFound, StrongroomError, UsageError

if TYPE_CHECKING:
    from strongroom.dr.results import PlanRun
    from strongroom.repo.repository import Repository
    from strongroom.services.backup_manager import BackupManager

# Asked for a WebDAV account's password the kit does not hold: (username, url) -> password.
AskPassword = Callable[[str, str], str]


@dataclass(frozen=True)
class Source:
    """A repository to read from, and what opens it."""

    location: str  # a local directory, or webdav+http(s)://USER@HOST/PATH/
    password: str | None = field(default=None, repr=False)  # None: not encrypted
    repository_id: str | None = None  # what it must be (from a kit), or None
    client: str | None = None  # the WebDAV client's id on the machine the kit was made on
    account_url: str | None = None  # the WebDAV account's URL, and the repository's folder below it
    folder: str | None = None
    vendor: str | None = None
    webdav_password: str | None = field(default=None, repr=False)  # an S3 client's secret key, an SSH passphrase
    key_file: str | None = None  # an SFTP client's login, from the kit
    known_hosts: str | None = None
    account_user: str | None = None  # an S3 client's access key id, an SFTP client's user
    # PostgreSQL sources' passwords from the kit: configuration name -> password.
    database_passwords: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def is_webdav(self) -> bool:
        return self.location.startswith(("webdav+http://", "webdav+https://"))

    @property
    def is_account(self) -> bool:
        """On an S3 or SFTP client (from a kit): opened and rebuilt as that client."""
        from strongroom.services.target_accounts import is_target_kind
        return is_target_kind(self.vendor) and self.account_url is not None and self.folder is not None

    @property
    def username(self) -> str | None:
        return unquote(urlsplit(self.location.removeprefix("webdav+")).username or "") or None \
            if self.is_webdav else None


def sources_from_kit(kit: RecoveryKit) -> list[Source]:
    """The repositories a recovery kit names."""
    out = []
    for repo in kit.repositories:
        a = repo.account
        out.append(Source(repo.location, repo.password, repo.repository_id,
                          a.client if a else None, a.url if a else None, a.folder if a else None,
                          a.vendor if a else None, a.password if a else None,
                          a.key_file if a else None, a.known_hosts if a else None, a.username if a else None,
                          tuple((d.config, d.password) for d in repo.databases if d.password is not None)))
    return out


def source_from_url(url: str, password: str | None, vendor: str | None = None,
                    webdav_password: str | None = None) -> Source:
    """A repository given by its URL (a path, local:PATH or webdav+...)."""
    location = url.removeprefix("local:") if url.startswith("local:") else url
    if not location.startswith(("webdav+http://", "webdav+https://")):
        location = os.path.abspath(location)
    return Source(location, password, vendor=vendor, webdav_password=webdav_password)


@dataclass(frozen=True)
class FoundRepository:
    """One repository as recovery read it."""

    location: str
    repository_id: str
    configs: tuple[str, ...]
    plans: tuple[str, ...]


@dataclass(frozen=True)
class Found:
    """What the repositories hold: configurations and plans, the newest
    stored version of each name across the repositories."""

    repositories: tuple[FoundRepository, ...]
    configs: dict[str, tuple[int, dict]]  # name -> (index of its repository, its stored form)
    plans: dict[str, Plan]
    warnings: tuple[str, ...]

    def missing(self, plan: Plan) -> list[str]:
        """The configurations a plan needs that no repository holds."""
        return [name for name in plan.configs if name not in self.configs]

    def to_doc(self) -> dict[str, Any]:
        """The listing (`dr recover` without --plan, in --json)."""
        return {"repositories": [{"location": r.location, "repository_id": r.repository_id,
                                  "configs": list(r.configs), "plans": list(r.plans)} for r in self.repositories],
                "configs": [{"name": name, "repository": self.repositories[i].location}
                            for name, (i, _) in sorted(self.configs.items())],
                "plans": [{"name": p.name, "version": p.version, "steps": [s.name for s in p.steps],
                           "configs": list(p.configs), "missing_configs": self.missing(p),
                           "target_base": p.target_base,
                           "hooks": sum(len(s.before) + len(s.after) for s in p.steps),
                           # What a run would do, shown before anything runs: a plan read
                           # from a repository is run by whoever holds its key.
                           "details": [{"name": s.name, "config": s.config, "target": s.target_in(p.target_base),
                                        "database": s.database, "before": [h.command for h in s.before],
                                        "after": [h.command for h in s.after]} for s in p.steps]}
                          for p in sorted(self.plans.values(), key=lambda p: p.name)],
                "warnings": list(self.warnings)}


class Recovery:
    """Reads the given repositories and recovers a plan from them into the
    catalog, secrets store and cache of `manager` (new, empty ones on a new
    machine), then runs or rehearses it."""

    def __init__(self, manager: BackupManager, sources: list[Source], ask_password: AskPassword | None = None) -> None:
        if not sources:
            raise UsageError("give a recovery kit or a repository")
        self.manager = manager
        self.service = manager.backup_service
        self.sources = list(sources)
        self.ask_password = ask_password
        self._webdav_passwords: dict[int, str] = {}
        self._found: Found | None = None

    # ---- reading ---------------------------------------------------------------------------

    def _webdav_password(self, index: int) -> str:
        source = self.sources[index]
        if source.webdav_password is not None:
            return source.webdav_password
        if index not in self._webdav_passwords:
            if self.ask_password is None:
                raise UsageError(f"no WebDAV password for {source.username} at {location_url(source.location)}: "
                                 "set STRONGROOM_WEBDAV_PASSWORD")
            self._webdav_passwords[index] = self.ask_password(source.username or "", location_url(source.location))
        return self._webdav_passwords[index]

    def _open(self, index: int) -> Repository:
        from strongroom.repo.repository import Repository
        from strongroom.storage import open_storage

        source = self.sources[index]
        if source.is_account:
            storage = self._account_storage(index)
        else:
            storage = open_storage(source.location,
                                   webdav_password=(lambda: self._webdav_password(index)) if source.is_webdav
                                   else None, vendor=source.vendor, cache_root=self.service.cache_root,
                                   settings=self.service.settings)
        password = None if source.password is None else source.password.encode("utf-8", "surrogateescape")
        repo = Repository.open(storage, password, self.service.cache_root, settings=self.service.settings)
        if source.repository_id and repo.config.id != source.repository_id:
            raise StrongroomError(f"{source.location} holds repository {repo.config.id[:16]}, not "
                                  f"{source.repository_id[:16]} as the recovery kit says: stopping")
        return repo

    def _account_secret(self, index: int) -> str:
        """An S3 client's secret key or an SSH key's passphrase: from the kit, else asked for."""
        source = self.sources[index]
        if source.webdav_password is not None:
            return source.webdav_password
        if index not in self._webdav_passwords:
            what = "S3 secret key" if source.vendor == "s3" else "SSH key passphrase"
            if self.ask_password is None:
                raise UsageError(f"no {what} for {source.account_url}: the kit holds none (dr kit "
                                 "--include-passwords), and there is no terminal to ask at")
            self._webdav_passwords[index] = self.ask_password(source.client or what, source.account_url or "")
        return self._webdav_passwords[index]

    def _account_storage(self, index: int):
        from strongroom.services.target_accounts import open_account_storage
        source = self.sources[index]
        return open_account_storage(source.vendor or "", source.account_url or "", source.account_user or "",
                                    self._account_secret(index), source.key_file, source.known_hosts,
                                    source.folder or "", None, self.service.settings)

    def read(self) -> Found:
        """Open every repository and read the configurations and plans it holds."""
        from strongroom.dr.store import PlanStore

        if self._found is not None:
            return self._found
        repos, configs, plans, warnings = [], {}, {}, []
        for index, source in enumerate(self.sources):
            repo = self._open(index)
            try:
                stored = repo.load_managed_configs_timed()
                held = PlanStore.plans_in_repository(repo)
            except FolderNotFound:
                stored, held = {}, []  # made before configurations were stored: it holds none
            for name, (when, doc) in sorted(stored.items()):
                if name in configs:
                    older, newer = (configs[name], (index, doc, when)) if when > configs[name][2] \
                        else ((index, doc, when), configs[name])
                    warnings.append(f"configuration {name} is in {self.sources[older[0]].location} and "
                                    f"{self.sources[newer[0]].location}: the newer copy, in "
                                    f"{self.sources[newer[0]].location}, is used")
                    configs[name] = newer
                else:
                    configs[name] = (index, doc, when)
            for plan in held:
                if plan.name not in plans or plan.updated > plans[plan.name].updated:
                    plans[plan.name] = plan
            repos.append(FoundRepository(source.location, repo.config.id, tuple(sorted(stored)),
                                         tuple(p.name for p in held)))
        self._found = Found(tuple(repos), {name: (i, doc) for name, (i, doc, _) in configs.items()}, plans,
                            tuple(warnings))
        return self._found

    def plan(self, name: str) -> Plan:
        """The newest version of plan `name` the repositories hold, every
        configuration it needs found; one clear error otherwise."""
        found = self.read()
        plan = found.plans.get(name)
        if plan is None:
            held = ", ".join(sorted(found.plans)) or "none"
            raise UsageError(f"no DR plan named {name!r} in the repositories given (they hold: {held})")
        missing = found.missing(plan)
        if missing:
            raise StrongroomError(f"plan {plan.name} needs configuration {missing[0]!r}, which none of the "
                                  f"repositories given holds")
        return plan

    # ---- rebuilding the catalog -----------------------------------------------------------------

    def rebuild(self, name: str) -> Plan:
        """Put into the catalog what plan `name` needs: its WebDAV clients, its
        configurations (with their passwords in the secrets store) and the plan."""
        plan = self.plan(name)
        found = self.read()
        clients: dict[int, str] = {}
        for config_name in plan.configs:
            index, doc = found.configs[config_name]
            source = self.sources[index]
            remote = source.is_webdav or source.is_account
            if remote and index not in clients:
                clients[index] = self._client_for(index, doc)
            client_id = clients.get(index)
            target = self._folder(source, doc) if remote else source.location
            existing = self.service.catalog.get_config(config_name)
            if existing is not None:
                if (existing.get("target_client_id") or None, existing.get("target_path")) == (client_id, target):
                    continue  # already here, on the same repository
                raise UsageError(f"the catalog has a configuration named {config_name!r} on another repository: "
                                 "recover with a new catalog (--catalog FILE), or remove it first")
            self.manager.import_configs(target, source.password, client_id, names=[config_name],
                                        database_passwords=dict(source.database_passwords))
        row = self.service.catalog.get_plan(plan.name)
        if row is None or row.get("version") != plan.version:
            # The version found, at its own time: not a new version of the plan.
            self.service.catalog.put_plan(plan.name, plan.to_doc(), plan.version, plan.updated)
        return plan

    def _folder(self, source: Source, doc: dict) -> str:
        if source.folder is not None:
            return source.folder
        return self._split(source, doc)[1]

    def _split(self, source: Source, doc: dict) -> tuple[str, str]:
        """A WebDAV repository URL as an account URL and a folder below it: where
        the stored configuration's folder ends the URL, the URL before it."""
        if source.account_url is not None and source.folder is not None:
            return source.account_url, source.folder
        url = location_url(source.location).rstrip("/")
        stored = str(doc.get("target_path") or "").strip("/")
        if stored and url.endswith("/" + stored):
            return url[:-len(stored)], stored
        base, _, last = url.rpartition("/")
        return base + "/", unquote(last)

    def _client_for(self, index: int, doc: dict) -> str:
        """A WebDAV client in the catalog for the repository `index` lives on."""
        from strongroom.services.webdav_service import WebDAVCredentials

        source = self.sources[index]
        url, _ = self._split(source, doc)
        if source.is_account:
            credentials = WebDAVCredentials(source.account_user or "", self._account_secret(index), url, source.vendor,
                                            source.key_file, source.known_hosts)
        else:
            credentials = WebDAVCredentials(source.username or "", self._webdav_password(index), url,
                                            source.vendor or _vendor(url))
        webdav = self.manager.webdav_service
        wanted = source.client or doc.get("target_client_id") or "recovered"
        candidate, n = str(wanted), 1
        while candidate in webdav.list_clients():
            known = webdav.get_client(candidate)
            if (known.url, known.username) == (credentials.url, credentials.username):
                return candidate
            n += 1
            candidate = f"{wanted}-{n}"
        webdav.add_client(candidate, credentials)
        return candidate

    # ---- running ----------------------------------------------------------------------------------

    def run(self, name: str, target_base: str | None = None, test: bool = False) -> PlanRun:
        """Rebuild what plan `name` needs, then run it (restoring below
        `target_base`, default the plan's own) or, with `test`, rehearse it."""
        plan = self.rebuild(name)
        from strongroom.dr.manager import DisasterRecoveryManager

        dr = DisasterRecoveryManager(self.service)
        if test:
            return dr.test_dr_plan(plan.id, wait=True, trigger="recover")
        run_id = dr.execute_dr_plan(plan.id, target_base=target_base or plan.target_base, trigger="recover")
        return dr.wait(run_id)


def _vendor(url: str) -> str:
    from strongroom.storage.vendors import guess_vendor
    return guess_vendor(url).lower()
