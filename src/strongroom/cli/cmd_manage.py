"""Managed backups, set up by name: WebDAV clients, backup configurations, and
the recovery kit of a configuration (`key export`).

These commands work on the catalog (`--catalog`, default STRONGROOM_CATALOG,
else the user's data directory) instead of a repository URL; the commands
that run and restore managed backups are in cmd_managed.py.
"""

from __future__ import annotations

import dataclasses
import functools
import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import click

from strongroom.cli.options import (catalog_option, configure_run, from_command_line, read_password,
                                    read_target_client_secret, read_webdav_password, run_options, shared_after)
from strongroom.cli.output import emit_json, human_size
from strongroom.errors import StrongroomError, UsageError, WrongPassword
from strongroom.model.retention import describe_policy, parse_duration
from strongroom.services.backup_manager import BackupManager, create_backup_manager
from strongroom.services.configs import AFTER_RUN, DEFAULT_CHECK_SUBSET, BackupConfig
from strongroom.services.jobs import BACKUP_KINDS
from strongroom.services.describe import copy_password_source, copy_target_of, password_source, target_of
from strongroom.services.urls import has_password, redact_password
from strongroom.services.webdav_service import WebDAVCredentials
from strongroom.storage.vendors import guess_vendor
from strongroom.words import plural

VENDORS = ["nutstore", "nextcloud", "owncloud", "generic", "s3", "sftp"]


@dataclass
class Manage:
    catalog: str | None
    json: bool
    debug: bool
    cache_dir: str | None
    quiet: bool = False
    verbose: int = 0
    log_file: str | None = None

    @contextmanager
    def manager(self) -> Iterator[BackupManager]:
        manager = create_backup_manager(db_path=self.catalog, cache_root=self.cache_dir)
        try:
            yield manager
        finally:
            manager.close()
            manager.catalog.close()


_MANAGE = ("catalog", "json_output", "quiet", "verbose", "log_file", "debug", "cache_dir")


def manage_options(func):
    """The options of every catalog command, listed after its own; given before
    the command (`strongroom --catalog F config list`) they work too."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        values = from_command_line({name: kwargs.pop(name) for name in _MANAGE})
        configure_run(values)
        return func(Manage(values["catalog"], values["json_output"], values["debug"], values["cache_dir"],
                           quiet=values["quiet"], verbose=values["verbose"], log_file=values["log_file"]),
                    *args, **kwargs)
    return shared_after([catalog_option(True)] + run_options(True), func, wrapper)


# ---- WebDAV clients ------------------------------------------------------------------


@click.group()
def client() -> None:
    """Named WebDAV accounts that configurations back up to."""


def _webdav_password(password_file: str | None, username: str) -> str:
    """As the repository commands read it, and a prompt where they would fail."""
    password = read_webdav_password(password_file)
    if password:
        return password
    if sys.stdin.isatty():
        return getpass.getpass(f"WebDAV password for {username}: ")
    raise UsageError("no WebDAV password: set STRONGROOM_WEBDAV_PASSWORD or use --webdav-password-file")


def _url_without_password(ctx, param, value: str | None) -> str | None:
    """Refuse https://user:password@host/ before anything is stored or printed."""
    if value is not None and has_password(value):
        raise click.BadParameter("never put the WebDAV password in the URL: set STRONGROOM_WEBDAV_PASSWORD "
                                 "or use --webdav-password-file")
    return value


def _not_a_url(ctx, param, value: str | None) -> str | None:
    if value is not None and "://" in value:
        # The value is not echoed: it may carry a password.
        where = "a local directory" if param.name == "target_dir" else "a folder below the client's URL"
        raise click.BadParameter(f"give {where}, not a URL: a WebDAV target is a client "
                                 "(`strongroom client add`) with --client and --target-path")
    return value


@client.command("add")
@manage_options
@click.argument("client_id")
@click.option("--url", required=True, callback=_url_without_password,
              help="The WebDAV URL, e.g. https://dav.jianguoyun.com/dav/ (no password in it); or "
                   "s3:https://ENDPOINT/BUCKET[/PREFIX], or sftp://USER@HOST:PORT//PATH.")
@click.option("--user", help="The account name (an S3 client: the access key id, else AWS_ACCESS_KEY_ID; "
                             "an SFTP client: the URL's user).")
@click.option("--vendor", type=click.Choice(VENDORS, case_sensitive=False),
              help="The service: sets its request budget, upload cap and quirks (guessed from the URL).")
@click.option("--webdav-password-file", type=click.Path(dir_okay=False),
              help="Read the account password from this file (else STRONGROOM_WEBDAV_PASSWORD, or a prompt).")
@click.option("--s3-secret-key-file", type=click.Path(dir_okay=False),
              help="An S3 client: read the secret key from this file (else AWS_SECRET_ACCESS_KEY).")
@click.option("--sftp-key-file", type=click.Path(dir_okay=False),
              help="An SFTP client: the private key file it logs in with (kept as a path).")
@click.option("--sftp-known-hosts", type=click.Path(dir_okay=False),
              help="An SFTP client: the file of the host keys it trusts (kept as a path).")
@click.option("--sftp-key-passphrase-file", type=click.Path(dir_okay=False),
              help="An SFTP client: read the key's passphrase from this file (else "
                   "STRONGROOM_SFTP_KEY_PASSPHRASE_FILE or STRONGROOM_SFTP_KEY_PASSPHRASE; none by default).")
@click.option("--replace", is_flag=True, help="Replace a client of the same id.")
def client_add(m: Manage, client_id, url, user, vendor, webdav_password_file, s3_secret_key_file, sftp_key_file,
               sftp_known_hosts, sftp_key_passphrase_file, replace) -> None:
    """Add a client CLIENT_ID: a WebDAV account, an S3 bucket or an SFTP server (its
    password, secret key or key passphrase goes to the secrets store)."""
    from strongroom.services.target_accounts import describe_kind, guess_kind, is_target_kind
    with m.manager() as manager:
        if client_id in manager.webdav_service.list_clients() and not replace:
            raise UsageError(f"a client named {client_id!r} exists already (use --replace)")
        vendor = (vendor or guess_kind(url) or guess_vendor(url)).lower()
        if is_target_kind(vendor):
            secret, env_user = read_target_client_secret(
                vendor, s3_secret_key_file if vendor == "s3" else sftp_key_passphrase_file)
            if vendor == "sftp":
                from strongroom.storage.sftp_access import parse_sftp_url
                user = user or parse_sftp_url(url).user
            user = user or env_user
            key_file = os.path.abspath(os.path.expanduser(sftp_key_file)) if sftp_key_file else None
            known = os.path.abspath(os.path.expanduser(sftp_known_hosts)) if sftp_known_hosts else None
            credentials = WebDAVCredentials(user or "", secret or "", url, vendor, key_file, known)
        else:
            if not user:
                raise UsageError("a WebDAV client needs its account name: --user")
            credentials = WebDAVCredentials(user, _webdav_password(webdav_password_file, user), url, vendor)
        manager.webdav_service.add_client(client_id, credentials)
    if m.json:
        emit_json({"type": "summary", "client": client_id, "url": url, "username": user, "vendor": vendor})
    else:
        print(f"added {describe_kind(vendor) if is_target_kind(vendor) else 'WebDAV client'} {client_id}: "
              f"{user} at {url} ({vendor}); try it with `strongroom client test {client_id}`")


@client.command("list")
@manage_options
def client_list(m: Manage) -> None:
    """List the WebDAV clients."""
    with m.manager() as manager:
        # A URL stored with a password by an older version is shown masked.
        docs = [{**doc, "url": redact_password(doc["url"])} for doc in manager.catalog.list_clients()]
    if m.json:
        for doc in docs:
            emit_json({"type": "client", "id": doc["id"], "url": doc["url"], "username": doc["username"],
                       "vendor": doc.get("service_type", "generic")})
        emit_json({"type": "summary", "count": len(docs)})
        return
    print(f"{'ID':16}  {'Vendor':9}  {'User':20}  URL")
    for doc in docs:
        print(f"{doc['id'][:16]:16}  {doc.get('service_type', 'generic'):9}  {doc['username'][:20]:20}  {doc['url']}")
    print(plural(len(docs), "client"))


@client.command("remove")
@manage_options
@click.argument("client_id")
def client_remove(m: Manage, client_id) -> None:
    """Forget a WebDAV client and its password (not while a configuration uses it)."""
    with m.manager() as manager:
        if manager.catalog.get_client(client_id) is None:
            raise UsageError(f"no WebDAV client named {client_id!r}")
        users = [c.name for c in manager.list_configs() if c.target_client_id == client_id]
        if users:
            raise UsageError(f"WebDAV client {client_id} is used by {', '.join(users)}: "
                             "remove or edit those configurations first")
        manager.webdav_service.remove_client(client_id)
    if m.json:
        emit_json({"type": "summary", "removed": client_id})
    else:
        print(f"removed WebDAV client {client_id}")


@client.command("test")
@manage_options
@click.argument("client_id")
@click.option("--path", default="", help="Test this folder below the client's URL (it must exist).")
def client_test(m: Manage, client_id, path) -> int:
    """Check reachability, credentials, write permission and quota (about four requests)."""
    with m.manager() as manager:
        report = manager.webdav_service.test_connection(client_id, path)
    if m.json:
        emit_json({"type": "summary", **dataclasses.asdict(report), "ok": report.ok})
    elif not report.tested:
        pass  # nothing was sent, so nothing is known but the error below
    else:
        def yes(flag: bool) -> str:
            return "yes" if flag else "no"
        print(f"client {client_id}: reachable {yes(report.reachable)}, credentials accepted "
              f"{yes(report.authenticated)}, writable {yes(report.writable)} ({report.requests} requests)")
        if report.quota_used is not None or report.quota_available is not None:
            print(f"quota: {human_size(report.quota_used)} used, {human_size(report.quota_available)} available")
    if not report.ok:
        raise StrongroomError(f"WebDAV client {client_id}: {report.error or 'the test failed'}")
    return 0


# ---- backup configurations ------------------------------------------------------------


def config_options(editing: bool):
    """The options that describe a configuration; on `edit` each is optional and changes only what it names."""
    def decorate(func):
        changes = " (replaces the old list)" if editing else ""
        options = [
            click.option("--source", "sources", multiple=True, type=click.Path(),
                         help=f"A path to back up (repeatable){changes}."),
            click.option("--source-command", metavar="COMMAND",
                         help="Back up this shell command's output instead of paths (a failing one fails the run)."),
            click.option("--stdin-filename", metavar="NAME", help="With --source-command: the stored file's name."),
            click.option("--sqlite", type=click.Path(dir_okay=False),
                         help="Back up this SQLite database (a consistent copy) instead of paths."),
            click.option("--postgres", metavar="DSN", callback=_dsn_without_password,
                         help="Back up this PostgreSQL database (a name or a connection string) with pg_dump."),
            click.option("--postgres-password-file", type=click.Path(dir_okay=False),
                         help="With --postgres: read the database password from this file into the secrets store."),
            click.option("--target-dir", type=click.Path(file_okay=False), callback=_not_a_url,
                         help="Repository in this local directory."),
            click.option("--client", "client_id", help="Repository on this WebDAV client (with --target-path)."),
            click.option("--target-path", callback=_not_a_url, help="Folder below the WebDAV client's URL."),
            click.option("--compression", metavar="CODEC",
                         help="zstd (the default), zstd:LEVEL, lz4, gzip or none."),
            click.option("--exclude", "excludes", multiple=True, metavar="GLOB",
                         help=f"Leave out paths matching GLOB (repeatable){changes}."),
            click.option("--exclude-caches/--no-exclude-caches", default=None,
                         help="Leave out directories with a valid CACHEDIR.TAG."),
            click.option("--tag", "tags", multiple=True, help=f"Tag its snapshots (repeatable){changes}."),
            click.option("--password-file", type=click.Path(dir_okay=False),
                         help="Read the repository password from this file at every run."),
            click.option("--password-env", metavar="VAR",
                         help="Read the repository password from this variable at every run."),
            click.option("--password-command", metavar="COMMAND",
                         help="Run this command at every run; the first line it prints is the password."),
            click.option("--store-password", is_flag=True,
                         help="Keep a password (STRONGROOM_PASSWORD, STRONGROOM_PASSWORD_FILE, "
                              "STRONGROOM_PASSWORD_COMMAND or a prompt) "
                              "in the secrets store, e.g. to reconnect to a repository from its recovery kit."),
            click.option("--max-attempts", type=click.IntRange(1), help="Tries per run before a job fails (3)."),
            click.option("--connections", type=click.IntRange(1, 32), metavar="N",
                         help="Requests to the target at once, packs uploaded and downloaded in parallel "
                              "(default: the target's: 4 for WebDAV, 2 for Nutstore and a directory)."),
            click.option("--keep-last", type=click.IntRange(0), metavar="N",
                         help="Retention: keep the N newest snapshots."),
            click.option("--keep-hourly", type=click.IntRange(0), metavar="N", help="Retention: newest of N hours."),
            click.option("--keep-daily", type=click.IntRange(0), metavar="N", help="Retention: newest of N days."),
            click.option("--keep-weekly", type=click.IntRange(0), metavar="N", help="Retention: newest of N weeks."),
            click.option("--keep-monthly", type=click.IntRange(0), metavar="N",
                         help="Retention: newest of N months."),
            click.option("--keep-yearly", type=click.IntRange(0), metavar="N", help="Retention: newest of N years."),
            click.option("--keep-within", metavar="DURATION",
                         help="Retention: every snapshot this close to the newest."),
            click.option("--keep-tag", "keep_tags", multiple=True, metavar="TAG",
                         help=f"Retention: keep every snapshot with this tag (repeatable){changes}."),
            click.option("--retention-after-run", type=click.Choice(AFTER_RUN),
                         help="After each run: off (the default), forget by the policy, or forget and prune."),
            click.option("--schedule", "schedules", multiple=True, metavar="SPEC",
                         help="When it runs by itself: \"30 2 * * *\", \"TZ=Asia/Shanghai 30 2 * * *\", "
                              f"\"every 6h\" or daily-since-last (repeatable){changes}."),
            click.option("--window", metavar="HH:MM-HH:MM",
                         help="With --schedule: start only within these local times (22:00-06:00)."),
            click.option("--random-delay", metavar="DURATION",
                         help="With --schedule: start up to this much later (e.g. 30m), within the window."),
            click.option("--missed", type=click.Choice(["run-once", "skip"]),
                         help="With --schedule: a slot missed while off runs once when back (the default), "
                              "or is skipped."),
            click.option("--priority", type=int, metavar="N",
                         help="With --schedule: the priority of the jobs its slots queue (0)."),
            click.option("--check-schedule", "check_schedules", multiple=True, metavar="SPEC",
                         help="When its points are verified by themselves (a SPEC as for --schedule; "
                              f"repeatable){changes}."),
            click.option("--check-subset", metavar="N%|n/t",
                         help=f"With --check-schedule: the share of packs each check reads "
                              f"({DEFAULT_CHECK_SUBSET}; n/t goes through the t parts in turn)."),
        ]
        from strongroom.cli.copy_to_options import copy_to_options
        options += copy_to_options(editing)
        if editing:
            options.append(click.option("--no-retention", is_flag=True,
                                        help="Drop the retention policy (and stop applying it after runs)."))
            options.append(click.option("--no-schedule", is_flag=True, help="Drop every schedule."))
            options.append(click.option("--no-check-schedule", is_flag=True, help="Drop every check schedule."))
        if editing:
            options.append(click.option("--encrypt/--no-encrypt", default=None,
                                        help="Whether the repository is encrypted."))
        else:
            options.append(click.option("--no-encrypt", is_flag=True,
                                        help="Integrity without secrecy: a repository without a password."))
        for option in reversed(options):
            func = option(func)
        return func
    return decorate


def _stored_password() -> str:
    password = read_password(prompt="repository password to keep: ",
                             missing="--store-password: set STRONGROOM_PASSWORD, STRONGROOM_PASSWORD_FILE "
                                     "or STRONGROOM_PASSWORD_COMMAND")
    if not password:
        raise UsageError("empty password")
    return password.decode("utf-8", "surrogateescape")


def _dsn_without_password(ctx, param, value: str | None) -> str | None:
    """Refuse a password in --postgres before anything is stored or printed: argv is public."""
    if value is not None:
        from strongroom.sources.dsn import parse_dsn
        if "password" in parse_dsn(value):
            raise click.BadParameter("never put the database password in the connection string on the "
                                     "command line: use --postgres-password-file (or ~/.pgpass)")
    return value


def _apply_source(config: BackupConfig, o: dict) -> None:
    """One kind of source: the one given replaces whatever the configuration had."""
    given = [flag for flag, key in (("--source", "sources"), ("--source-command", "source_command"),
                                    ("--sqlite", "sqlite"), ("--postgres", "postgres")) if o[key]]
    if len(given) > 1:
        raise UsageError(f"give one kind of source, not {given[0]} and {given[1]}")
    if given:
        config.source_paths, config.source_command, config.sqlite = [], None, None
        config.set_postgres(None)
    if o["sources"]:
        config.source_paths = [os.path.abspath(p) for p in o["sources"]]
    if o["source_command"]:
        config.source_command = o["source_command"]
    elif given:
        config.stdin_filename = None
    if o["stdin_filename"]:
        config.stdin_filename = o["stdin_filename"]
    if o["sqlite"]:
        config.sqlite = os.path.abspath(o["sqlite"])
    if o["postgres"]:
        config.set_postgres(o["postgres"])
    if o["postgres_password_file"]:
        if config.source_kind != "postgres":
            raise UsageError("--postgres-password-file goes with a PostgreSQL source (--postgres)")
        try:
            with open(o["postgres_password_file"], "rb") as f:
                config.postgres_password = f.read().rstrip(b"\r\n").decode("utf-8", "surrogateescape")
        except OSError as e:
            raise UsageError(f"cannot read --postgres-password-file: {e.strerror}") from None


def _apply(config: BackupConfig, o: dict) -> BackupConfig:
    """Change `config` by the options given; anything not given stays."""
    _apply_source(config, o)
    if o["target_dir"] and (o["client_id"] or o["target_path"]):
        raise UsageError("give --target-dir, or --client with --target-path, not both")
    if o["target_dir"]:
        config.target_client_id, config.target_path = None, os.path.abspath(o["target_dir"])
    elif o["client_id"] or o["target_path"]:
        client_id = o["client_id"] or (None if config.is_local else config.target_client_id)
        path = o["target_path"] or (None if config.is_local else config.target_path)
        if not client_id or not path:
            raise UsageError("a WebDAV target needs --client and --target-path")
        config.target_client_id, config.target_path = client_id, path
    if o["compression"] is not None:
        config.compression = o["compression"]
    if o["excludes"]:
        config.excludes = list(o["excludes"])
    if o["exclude_caches"] is not None:
        config.exclude_caches = o["exclude_caches"]
    if o["tags"]:
        config.tags = [t.strip() for group in o["tags"] for t in group.split(",") if t.strip()]
    if o["max_attempts"]:
        config.max_attempts = o["max_attempts"]
    if o["connections"]:
        config.connections = o["connections"]
    if o.get("encrypt") is not None:
        config.encrypt = o["encrypt"]
    _apply_retention(config, o)
    _apply_schedules(config, o)
    _apply_check_schedules(config, o)
    from strongroom.cli.copy_to_options import apply_copy_to
    apply_copy_to(config, o)
    for key in ("password_file", "password_env", "password_command"):
        if o[key] is not None and not o[key].strip():
            # Else it reads as no reference given, and a new key is generated.
            raise UsageError(f"--{key.replace('_', '-')} is blank: name a file, a variable or a command")
    given = [k for k in ("password_file", "password_env", "password_command", "store_password") if o[k]]
    if len(given) > 1:
        raise UsageError("give one of --password-file, --password-env, --password-command and --store-password")
    if given and not config.encrypt:
        raise UsageError("a configuration without encryption takes no password")
    if given:
        config.password_file = config.password_env = config.password_command = None
    if o["password_file"]:
        config.password_file = os.path.abspath(o["password_file"])
    elif o["password_env"]:
        config.password_env = o["password_env"]
    elif o["password_command"]:
        config.password_command = o["password_command"]
    elif o["store_password"]:
        config.password = _stored_password()
    return config


def _apply_retention(config: BackupConfig, o: dict) -> None:
    if o.get("no_retention"):
        config.retention, config.retention_after_run = {}, "off"
    retention = dict(config.retention)
    for rule in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        value = o.get(f"keep_{rule}")
        if value is not None:
            if value:
                retention[f"keep_{rule}"] = value
            else:
                retention.pop(f"keep_{rule}", None)
    if o.get("keep_within") is not None:
        if o["keep_within"]:
            parse_duration(o["keep_within"])
            retention["keep_within"] = o["keep_within"]
        else:
            retention.pop("keep_within", None)
    if o.get("keep_tags"):
        retention["keep_tags"] = [t.strip() for group in o["keep_tags"] for t in group.split(",") if t.strip()]
    config.retention = retention
    if o.get("retention_after_run"):
        config.retention_after_run = o["retention_after_run"]


_SCHEDULE_RULES = (("window", "--window"), ("random_delay", "--random-delay"), ("missed", "--missed"),
                   ("priority", "--priority"))


def _apply_schedules(config: BackupConfig, o: dict) -> None:
    """--schedule replaces the list; the rules alone change every schedule the configuration has."""
    from strongroom.schedule.spec import parse_schedule
    if o.get("no_schedule"):
        if o["schedules"]:
            raise UsageError("give --schedule or --no-schedule, not both")
        config.schedules = []
    rules = {key: o[key] for key, _ in _SCHEDULE_RULES if o.get(key) is not None}
    if o["schedules"]:
        made = [parse_schedule(spec, **rules).to_doc() for spec in o["schedules"]]
    elif rules:
        if not config.schedules:
            flag = next(flag for key, flag in _SCHEDULE_RULES if key in rules)
            raise UsageError(f"{flag} goes with a schedule: give --schedule SPEC")
        made = [parse_schedule(doc["spec"], **{"window": doc.get("window"), "random_delay": doc.get("random_delay"),
                                               "missed": doc.get("missed") or "run-once",
                                               "priority": doc.get("priority") or 0, **rules}).to_doc()
                for doc in config.schedules]
    else:
        return
    config.schedules = _once(made, "schedule")


def _once(made: list[dict], what: str) -> list[dict]:
    """`made`, refused when two of its schedules have the same spec."""
    ids = [doc["spec"] for doc in made]
    twice = next((i for i in ids if ids.count(i) > 1), None)
    if twice is not None:
        raise UsageError(f"the {what} {twice!r} is given twice")
    return made


def _apply_check_schedules(config: BackupConfig, o: dict) -> None:
    """--check-schedule replaces the check schedules; --check-subset alone changes every one's subset."""
    from strongroom.schedule.spec import parse_schedule
    from strongroom.services.config_schema import check_subset
    if o.get("no_check_schedule"):
        if o["check_schedules"]:
            raise UsageError("give --check-schedule or --no-check-schedule, not both")
        config.check_schedules = []
    subset = o.get("check_subset")
    if subset is not None:
        try:
            check_subset(subset)
        except UsageError as e:
            raise UsageError(f"--check-subset: {e}") from None
    if o["check_schedules"]:
        made = [{**parse_schedule(spec).to_doc(), **({"subset": subset} if subset else {})}
                for spec in o["check_schedules"]]
    elif subset is not None:
        if not config.check_schedules:
            raise UsageError("--check-subset goes with a check schedule: give --check-schedule SPEC")
        made = [{**doc, "subset": subset} for doc in config.check_schedules]
    else:
        return
    config.check_schedules = _once(made, "check schedule")


@click.group()
def config() -> None:
    """Named backup configurations: what to back up, where, and how."""


@config.command("add")
@manage_options
@click.argument("name")
@config_options(editing=False)
def config_add(m: Manage, name, no_encrypt, **options) -> None:
    """Add configuration NAME and make (or open) its repository.

    With encryption and no password given, a strong key is generated and
    kept in the secrets store: export it with `strongroom key export NAME`.
    """
    if not options["target_dir"] and not (options["client_id"] and options["target_path"]):
        raise UsageError("give --target-dir DIR, or --client ID with --target-path PATH")
    if not any(options[k] for k in ("sources", "source_command", "sqlite", "postgres")):
        raise UsageError("give what to back up: --source PATH, --source-command, --sqlite or --postgres")
    cfg = _apply(BackupConfig(name=name, source_paths=[], encrypt=not no_encrypt), options)
    generated = cfg.encrypt and not (cfg.password_file or cfg.password_env or cfg.password_command or cfg.password)
    with m.manager() as manager:
        try:
            manager.add_config(cfg)
        except WrongPassword as e:
            if not generated or "the second target" in str(e):
                raise
            raise WrongPassword(f"{target_of(manager, cfg)} holds a repository already: give its password with "
                                "--store-password, --password-env or --password-file") from None
        target = target_of(manager, cfg)
    if m.json:
        emit_json({"type": "summary", "config": name, "target": target, "encrypt": cfg.encrypt,
                   "password": password_source(cfg), "generated_key": generated,
                   "taken_from_repository": list(cfg.taken_from_repository)})
        return
    print(f"added configuration {name}: {cfg.describe_source()} -> {target}")
    if cfg.taken_from_repository:
        print(f"took {', '.join(cfg.taken_from_repository)} from the copy stored in the repository")
    if generated:
        print(f"its repository key was generated and is kept in this machine's secrets store. Run "
              f"`strongroom key export {name}` now and keep the recovery kit somewhere else: without it the "
              f"backups cannot be opened if this machine is lost.")


def _config_doc(manager: BackupManager, cfg: BackupConfig) -> dict:
    doc = {"source_command": None, "stdin_filename": None, "sqlite": None, "postgres": None, **cfg.to_doc()}
    doc.pop("secret_ref", None)  # a reference, not a secret, but it helps nobody reading this
    doc.pop("postgres_secret_ref", None)
    if cfg.copy_to:
        doc["copy_to"] = {**{k: v for k, v in cfg.copy_to.items() if k != "secret_ref"},
                          "target": copy_target_of(manager, cfg), "password": copy_password_source(cfg)}
    doc["source_kind"] = cfg.source_kind
    doc["source"] = cfg.describe_source()
    if cfg.source_kind == "postgres":
        doc["database_password"] = "secrets store" if cfg.postgres_secret_ref else "none given"
    doc["codec"] = cfg.codec
    doc["target"] = target_of(manager, cfg)
    doc["password"] = password_source(cfg)
    from strongroom.cli.cmd_schedule import check_schedule_docs, schedule_docs
    doc["schedules"] = schedule_docs(manager.catalog, cfg)
    doc["check_schedules"] = check_schedule_docs(manager.catalog, cfg)
    last = manager.catalog.list_jobs(config=cfg.name, limit=1, kinds=BACKUP_KINDS)
    doc["last_job"] = {k: last[0][k] for k in ("id", "status", "finished_at", "snapshot_id")} if last else None
    return doc


@config.command("list")
@manage_options
def config_list(m: Manage) -> None:
    """List the configurations."""
    with m.manager() as manager:
        docs = [_config_doc(manager, c) for c in manager.list_configs()]
    if m.json:
        for doc in docs:
            emit_json({"type": "config", **doc})
        emit_json({"type": "summary", "count": len(docs)})
        return
    print(f"{'Name':20}  {'Encrypted':9}  {'Codec':8}  {'Last run':9}  Sources -> target")
    for d in docs:
        last = (d["last_job"] or {}).get("status", "never")
        print(f"{d['name'][:20]:20}  {'yes' if d['encrypt'] else 'no':9}  {d['codec']:8}  {last:9}  "
              f"{d['source']} -> {d['target']}")
    print(plural(len(docs), "configuration"))


@config.command("show")
@manage_options
@click.argument("name")
def config_show(m: Manage, name) -> None:
    """Show configuration NAME (never a password or key)."""
    with m.manager() as manager:
        doc = _config_doc(manager, manager.get_config(name))
    if m.json:
        emit_json({"type": "config", **doc})
        return
    rows = [
        ("name", doc["name"]), ("sources" if doc["source_kind"] == "files" else "source", doc["source"]),
        *([("db password", doc["database_password"])] if "database_password" in doc else []),
        ("target", doc["target"]),
        ("client", doc["target_client_id"] or "local directory"), ("encrypted", "yes" if doc["encrypt"] else "no"),
        ("password", doc["password"]), ("compression", doc["codec"]),
        ("excludes", ", ".join(doc["excludes"]) or "-"), ("exclude caches", "yes" if doc["exclude_caches"] else "no"),
        ("tags", ", ".join(doc["tags"]) or "-"), ("max attempts", str(doc["max_attempts"])),
        *([("connections", str(doc["connections"]))] if doc.get("connections") else []),
        ("retention", describe_policy(doc["retention"])
         + (f"; applied after each run ({doc['retention_after_run']})" if doc["retention_after_run"] != "off" else "")),
    ]
    if doc.get("copy_to"):
        rows.append(("copy to", f"{doc['copy_to']['target']} after each run "
                                f"(password: {doc['copy_to']['password']})"))
    for schedule in doc["schedules"]:
        rows.append(("schedule", f"{schedule['description']}; next {schedule['next_local']}"))
    for schedule in doc["check_schedules"]:
        rows.append(("check schedule", f"{schedule['description']}, reading {schedule['subset']} of the packs; "
                                       f"next {schedule['next_local']}"))
    if doc["last_job"]:
        job = doc["last_job"]
        rows.append(("last job", f"{job['id']} {job['status']}"
                     + (f", snapshot {job['snapshot_id'][:8]}" if job["snapshot_id"] else "")))
    for label, value in rows:
        print(f"{label + ':':16} {value}")


@config.command("edit")
@manage_options
@click.argument("name")
@config_options(editing=True)
def config_edit(m: Manage, name, **options) -> None:
    """Change configuration NAME: only the options given change."""
    with m.manager() as manager:
        cfg = _apply(manager.get_config(name), options)
        manager.update_config(cfg)
        doc = _config_doc(manager, cfg)
    if m.json:
        emit_json({"type": "summary", **doc})
    else:
        print(f"updated configuration {name}: {cfg.describe_source()} -> {doc['target']}")


@config.command("remove")
@manage_options
@click.argument("name")
@click.option("--without-kit", is_flag=True,
              help="Forget it even when its key is only in the secrets store and no recovery kit is on record.")
def config_remove(m: Manage, name, without_kit) -> None:
    """Forget configuration NAME; its snapshots stay in the repository."""
    with m.manager() as manager:
        cfg = manager.get_config(name)
        if not without_kit:
            from strongroom.services.key_safety import key_left_unrecoverable
            why = key_left_unrecoverable(manager, cfg)
            if why:
                raise UsageError(f"config {name}: {why}: nothing would find that key again. Run `strongroom "
                                 f"key export {name}` and keep the kit first (or give --without-kit)")
        target = target_of(manager, cfg)
        manager.remove_config(name)
    if m.json:
        emit_json({"type": "summary", "removed": name, "target": target})
        return
    print(f"removed configuration {name}; its snapshots stay in {target}")
    if password_source(cfg) == "secrets store":
        print("its repository key stays in the secrets store")


# ---- recovery kit -------------------------------------------------------------------------

KIT_NOTICE = ("Keep this kit somewhere other than this machine (on paper, or in a password manager): "
              "if this machine is lost, it is the only way to open the repository.")


@click.command("export")
@manage_options
@click.argument("name")
def key_export(m: Manage, name) -> None:
    """Print the recovery kit of configuration NAME: its target and repository key."""
    with m.manager() as manager:
        cfg = manager.get_config(name)
        if not cfg.encrypt:
            raise UsageError(f"config {name} is not encrypted: its repository opens without a password")
        if cfg.password_file or cfg.password_env or cfg.password_command:
            raise UsageError(f"config {name} has no key in the secrets store: its password is read from the "
                             f"{password_source(cfg)}; keep that password somewhere else")
        target = target_of(manager, cfg)
        password = manager.backup_service.password_for(cfg).decode("utf-8", "surrogateescape")
        vendor = None if cfg.is_local else manager.webdav_service.get_client(cfg.target_client_id).service_type
        repo, not_recorded = None, None
        try:
            # On record by the repository's id (however its URL is spelt) and the
            # key this password opens, for `check` to find.
            repo = manager.backup_service.open_repository(cfg)
            manager.catalog.record_kit_export(repo.config.id, repo.key_id, name)
        except StrongroomError as e:
            repo, not_recorded = None, e
    _print_kit(m, name, target, vendor, password, repo)
    if not_recorded is not None:
        # The kit is printed all the same: it may be what gets the repository back.
        print(f"strongroom: warning: the kit is not on record, the repository did not open: {not_recorded}",
              file=sys.stderr)


def _print_kit(m: Manage, name: str, target: str, vendor: str | None, password: str, repo) -> None:
    if m.json:
        emit_json({"type": "recovery_kit", "config": name, "repository": target, "webdav_vendor": vendor,
                   "password": password, "repository_id": repo.config.id if repo else None,
                   "recorded": repo is not None, "notice": KIT_NOTICE})
        return
    print(f"strongroom recovery kit for configuration {name}")
    print(f"repository: {target}")
    if vendor == "s3":
        print("S3 bucket: the secret key is not part of this kit (AWS_SECRET_ACCESS_KEY with "
              "AWS_ACCESS_KEY_ID opens it with `snapshots --repo`)")
    elif vendor == "sftp":
        print("SFTP server: the SSH key and its passphrase are not part of this kit")
    elif vendor:
        print(f"WebDAV service: {vendor} (the account password is not part of this kit)")
    print(f"password:   {password}")
    print(KIT_NOTICE)
    print("To open it elsewhere: strongroom snapshots --repo REPOSITORY, giving the password when asked "
          "(or in STRONGROOM_PASSWORD).")


COMMANDS = [client, config]
KEY_COMMANDS = [key_export]
