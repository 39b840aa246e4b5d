"""The shared options (before the command or after it), and opening the repository."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ContextManager

import click
from click.core import ParameterSource

from strongroom.errors import StorageError, UsageError
from strongroom.settings import Settings

if TYPE_CHECKING:
    from strongroom.repo.repository import Repository

# The repository, storage and locks are imported where a command uses them, so
# that importing this module (as every command module does) stays cheap.


@dataclass
class Common:
    repo: str | None
    password_file: str | None
    password_command: str | None
    json: bool
    debug: bool
    cache_dir: str | None
    no_cache: bool
    retry_lock: float
    no_lock: bool = False
    webdav_vendor: str | None = None
    webdav_password_file: str | None = None
    connections: int | None = None
    sftp_key_file: str | None = None
    sftp_known_hosts: str | None = None
    quiet: bool = False
    verbose: int = 0
    log_file: str | None = None
    # The catalog, for a command that also works on a configuration by name.
    catalog: str | None = None
    events: "EventRelay" = field(default_factory=lambda: EventRelay())

    @functools.cached_property
    def settings(self) -> Settings:
        """The run's settings, read from the environment once, here at the edge."""
        overrides = {"connections": self.connections} if self.connections else {}
        return Settings.from_env(cache_root=self.cache_root, **overrides)

    def storage(self):
        from strongroom.storage import open_storage
        return open_storage(self.repo or "", webdav_password=self._webdav_password, vendor=self.webdav_vendor,
                            cache_root=self.cache_root, on_event=self.events, settings=self.settings,
                            sftp_access=read_sftp_access(self.sftp_key_file, self.sftp_known_hosts)
                            if (self.repo or "").startswith("sftp:") else None,
                            s3_access=read_s3_access)

    def open(self) -> Repository:
        from strongroom.repo.repository import Repository
        return Repository.open(self.storage(), lambda: read_password(self), self.cache_root, settings=self.settings,
                               on_warning=self.warn)

    def warn(self, message: str) -> None:
        """A warning from below the engine (the cache), shown as storage events are."""
        self.events({"type": "warning", "message": message})

    def _webdav_password(self) -> str | None:
        return read_webdav_password(self.webdav_password_file)

    @property
    def cache_root(self) -> str | None:
        return "" if self.no_cache else self.cache_dir

    def lock(self, repo: Repository, *, exclusive: bool = False, writes: bool, what: str) -> ContextManager:
        """The lock `what` needs. A command that only reads (`writes` false) goes
        on without one on --no-lock, or with one warning when the target refuses
        the lock write itself (a read-only or full disk); one that writes never."""
        if self.no_lock:
            if writes:
                raise UsageError(f"--no-lock is only for commands that do not write: {what} writes to the repository")
            return contextlib.nullcontext()
        from strongroom.repo.locks import write_refusal
        try:
            return repo.lock(exclusive=exclusive, wait=self.retry_lock)
        except StorageError as e:
            reason = write_refusal(e)
            if reason is None:
                raise
            if writes:
                raise StorageError(f"cannot lock the repository at {repo.storage.url} ({reason}): {what} writes "
                                   "to it and cannot go on without a lock") from None
        self.warn(f"cannot lock the repository ({reason}): going on without a lock")
        return contextlib.nullcontext()


class EventRelay:
    """Passes storage events (waits, retries) to whoever shows progress now."""

    def __init__(self) -> None:
        self.listener = None

    def __call__(self, event: dict) -> None:
        if self.listener is not None:
            self.listener(event)
        else:
            print(f"strongroom: {event.get('message', event)}", file=sys.stderr)


NO_PASSWORD = ("no password: set STRONGROOM_PASSWORD, STRONGROOM_PASSWORD_FILE, "
               "--password-file or --password-command")


def read_password(common: Common | None = None, prompt: str = "repository password: ",
                  missing: str = NO_PASSWORD) -> bytes:
    """The repository password, for every command that asks for one.

    In this order: the --password-file of `common` or STRONGROOM_PASSWORD_FILE,
    the --password-command of `common` or STRONGROOM_PASSWORD_COMMAND,
    STRONGROOM_PASSWORD, else `prompt` on the terminal. The catalog commands
    pass no `common` (they take no password options) and their own `missing`.
    """
    return password_from(common and common.password_file, common and common.password_command, "STRONGROOM_PASSWORD",
                         prompt, missing, "")


def password_from(path: str | None, command: str | None, variable: str, prompt: str, missing: str,
                  whose: str) -> bytes:
    """A repository password: the file `path` or `variable`_FILE, else the output
    of `command` or `variable`_COMMAND, else `variable`, else `prompt` on a
    terminal. `whose` ("the source ") names the repository in errors."""
    path = path or os.environ.get(variable + "_FILE")
    if path:
        try:
            with open(path, "rb") as f:
                return f.read().rstrip(b"\r\n")
        except OSError as e:
            raise UsageError(f"cannot read {whose}password file {path}: {e.strerror}") from None
    command = command or os.environ.get(variable + "_COMMAND")
    if command:
        import subprocess
        done = subprocess.run(command, shell=True, stdout=subprocess.PIPE)
        if done.returncode != 0:
            raise UsageError(f"{whose}password command failed with exit code {done.returncode}")
        return done.stdout.rstrip(b"\r\n")
    if variable in os.environ:
        return os.environb[variable.encode()]
    if sys.stdin.isatty():
        import getpass
        return getpass.getpass(prompt).encode()
    raise UsageError(missing)


def read_webdav_password(path: str | None) -> str | None:
    """The WebDAV account password: from the file `path` or STRONGROOM_WEBDAV_PASSWORD_FILE
    names, else STRONGROOM_WEBDAV_PASSWORD; None when none of them is given."""
    path = path or os.environ.get("STRONGROOM_WEBDAV_PASSWORD_FILE")
    if not path:
        return os.environ.get("STRONGROOM_WEBDAV_PASSWORD")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    except OSError as e:
        raise UsageError(f"cannot read WebDAV password file {path}: {e.strerror}") from None


def read_s3_access():
    """S3 credentials, region and endpoint: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    (/ AWS_SESSION_TOKEN), else AWS_PROFILE's in ~/.aws (docs/s3.md). Read only
    when the repository is on S3."""
    from strongroom.storage.s3_config import read_s3_access as read
    return read(os.environ)


def read_sftp_access(key_file: str | None, known_hosts: str | None):
    """How to log in to an SFTP target, from the options and the environment:
    the key file (--sftp-key-file, STRONGROOM_SFTP_KEY_FILE, else the default
    ~/.ssh/id_ed25519, id_ecdsa, id_rsa that exist), the SSH agent
    (SSH_AUTH_SOCK), the key's passphrase (STRONGROOM_SFTP_KEY_PASSPHRASE_FILE,
    else STRONGROOM_SFTP_KEY_PASSPHRASE) and the trusted host keys
    (--sftp-known-hosts, STRONGROOM_SFTP_KNOWN_HOSTS, else ~/.ssh/known_hosts)."""
    from strongroom.storage.sftp_access import SFTPAccess

    key_file = key_file or os.environ.get("STRONGROOM_SFTP_KEY_FILE")
    if key_file:
        keys: tuple[str, ...] = (os.path.expanduser(key_file),)
    else:
        ssh_dir = os.path.expanduser("~/.ssh")
        keys = tuple(p for p in (os.path.join(ssh_dir, n) for n in ("id_ed25519", "id_ecdsa", "id_rsa"))
                     if os.path.isfile(p))
    passphrase = None
    path = os.environ.get("STRONGROOM_SFTP_KEY_PASSPHRASE_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                passphrase = f.read().rstrip("\r\n")
        except OSError as e:
            raise UsageError(f"cannot read SSH key passphrase file {path}: {e.strerror}") from None
    elif "STRONGROOM_SFTP_KEY_PASSPHRASE" in os.environ:
        passphrase = os.environ["STRONGROOM_SFTP_KEY_PASSPHRASE"]
    known_hosts = known_hosts or os.environ.get("STRONGROOM_SFTP_KNOWN_HOSTS") or "~/.ssh/known_hosts"
    return SFTPAccess(os.path.expanduser(known_hosts), keys, os.environ.get("SSH_AUTH_SOCK") or None, passphrase)


def read_target_client_secret(kind: str, secret_file: str | None) -> tuple[str | None, str]:
    """The secret of an S3 or SFTP client being added (`client add`), and the
    user it goes with when the environment gives one: an S3 secret key from
    `secret_file` (--s3-secret-key-file), else AWS_SECRET_ACCESS_KEY (with
    AWS_ACCESS_KEY_ID); an SSH key's passphrase from `secret_file`
    (--sftp-key-passphrase-file), else STRONGROOM_SFTP_KEY_PASSPHRASE_FILE or
    STRONGROOM_SFTP_KEY_PASSPHRASE, else none (""). Never from argv."""
    user = os.environ.get("AWS_ACCESS_KEY_ID", "") if kind == "s3" else ""
    if kind == "sftp":
        secret_file = secret_file or os.environ.get("STRONGROOM_SFTP_KEY_PASSPHRASE_FILE")
    if secret_file:
        try:
            with open(secret_file, encoding="utf-8") as f:
                return f.read().rstrip("\r\n"), user
        except OSError as e:
            raise UsageError(f"cannot read the {kind} client's secret file {secret_file}: {e.strerror}") from None
    if kind == "s3":
        return os.environ.get("AWS_SECRET_ACCESS_KEY"), user
    return os.environ.get("STRONGROOM_SFTP_KEY_PASSPHRASE", ""), user


# ---- the source repository of `copy` and `init --copy-chunker-params` ---------------------------

NO_FROM_PASSWORD = ("no password for the source repository: set STRONGROOM_FROM_PASSWORD, "
                    "STRONGROOM_FROM_PASSWORD_FILE, --from-password-file or --from-password-command")


@dataclass
class FromRepo:
    """The source repository's options, read as the destination's are, from its own
    options and STRONGROOM_FROM_* variables: never a password in argv."""

    repo: str | None
    password_file: str | None
    password_command: str | None
    webdav_password_file: str | None
    webdav_vendor: str | None = None

    def password(self) -> bytes:
        return password_from(self.password_file, self.password_command, "STRONGROOM_FROM_PASSWORD",
                             "source repository password: ", NO_FROM_PASSWORD, "the source ")

    def webdav_password(self) -> str | None:
        path = self.webdav_password_file or os.environ.get("STRONGROOM_FROM_WEBDAV_PASSWORD_FILE")
        if not path:
            return os.environ.get("STRONGROOM_FROM_WEBDAV_PASSWORD")
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except OSError as e:
            raise UsageError(f"cannot read the source WebDAV password file {path}: {e.strerror}") from None

    def open(self, common: Common) -> Repository:
        from strongroom.repo.repository import Repository
        from strongroom.storage import open_storage
        if not self.repo:
            raise UsageError("no source repository given: use --from-repo or STRONGROOM_FROM_REPO")
        # An SFTP source logs in as the destination does (the STRONGROOM_SFTP_* settings, the agent).
        storage = open_storage(self.repo, webdav_password=self.webdav_password, vendor=self.webdav_vendor,
                               cache_root=common.cache_root, on_event=common.events, settings=common.settings,
                               sftp_access=read_sftp_access(common.sftp_key_file, common.sftp_known_hosts)
                               if self.repo.startswith("sftp:") else None, s3_access=read_s3_access)
        return Repository.open(storage, self.password, common.cache_root, settings=common.settings,
                               on_warning=common.warn)


def from_repository_options(func, repo_option: str = "--from-repo"):
    """The source repository's options, on `copy` (and `init`, with --copy-chunker-params)."""
    for decorator in reversed([
        click.option(repo_option, "from_repo", envvar="STRONGROOM_FROM_REPO" if repo_option == "--from-repo"
                     else None, metavar="URL",
                     help="The source repository, named as --repo is (default: STRONGROOM_FROM_REPO)."),
        click.option("--from-password-file", type=click.Path(dir_okay=False),
                     help="Read the source repository's password from this file (else "
                          "STRONGROOM_FROM_PASSWORD_FILE, STRONGROOM_FROM_PASSWORD_COMMAND, STRONGROOM_FROM_PASSWORD)."),
        click.option("--from-password-command", help="Run this command and read the source's password from its output."),
        click.option("--from-webdav-password-file", type=click.Path(dir_okay=False),
                     help="Read the source's WebDAV account password from this file (else "
                          "STRONGROOM_FROM_WEBDAV_PASSWORD_FILE, STRONGROOM_FROM_WEBDAV_PASSWORD)."),
        click.option("--from-webdav-vendor", type=click.Choice(VENDORS, case_sensitive=False), metavar="VENDOR",
                     help="The source's WebDAV service, as --webdav-vendor."),
    ]):
        func = decorator(func)
    return func


# ---- the shared options, before or after the command ------------------------------------------

REPO_HELP = ("Repository: a directory (PATH or local:PATH), WebDAV as webdav+https://USER@HOST/PATH "
             "(or webdav+http://...), or SFTP as sftp://USER@HOST:PORT//ABSOLUTE/PATH or sftp:USER@HOST:/PATH "
             "(logged in by key), or S3 as s3:https://ENDPOINT/BUCKET/PREFIX (or s3://BUCKET/PREFIX "
             "with AWS_ENDPOINT_URL); passwords and keys never go in the URL.")
VENDORS = ["nutstore", "nextcloud", "owncloud", "generic"]


def repository_options(envvars: bool) -> list:
    """The repository options, as decorators in the order help lists them. Only
    the command's copies read the STRONGROOM_* variables: a value on the command
    line, before the command or after it, beats the variable."""
    def env(name: str) -> str | None:
        return name if envvars else None
    return [
        click.option("-r", "--repo", envvar=env("STRONGROOM_REPO"), metavar="URL",
                     help=REPO_HELP + " Default: STRONGROOM_REPO."),
        click.option("--password-file", type=click.Path(dir_okay=False), help="Read the password from this file."),
        click.option("--password-command", help="Run this command and read the password from its output."),
        click.option("--retry-lock", type=float, default=0.0, metavar="SECONDS",
                     help="Wait this long for a conflicting lock to go away."),
        click.option("--no-lock", is_flag=True,
                     help="Take no lock (only for commands that do not write, e.g. on a read-only disk)."),
        click.option("--no-cache", is_flag=True, help="Use no local cache."),
        click.option("--webdav-vendor", envvar=env("STRONGROOM_WEBDAV_VENDOR"),
                     type=click.Choice(VENDORS, case_sensitive=False), metavar="VENDOR",
                     help=f"WebDAV service ({', '.join(VENDORS)}): sets the request budget, upload cap and "
                          "quirks (default: guessed from the host)."),
        click.option("--webdav-password-file", type=click.Path(dir_okay=False),
                     help="Read the WebDAV account password from this file (else STRONGROOM_WEBDAV_PASSWORD)."),
        click.option("--sftp-key-file", envvar=env("STRONGROOM_SFTP_KEY_FILE"), type=click.Path(dir_okay=False),
                     help="SFTP: the private key to log in with (default: STRONGROOM_SFTP_KEY_FILE, else "
                          "~/.ssh/id_ed25519, id_ecdsa, id_rsa; and the agent at SSH_AUTH_SOCK). Its passphrase: "
                          "STRONGROOM_SFTP_KEY_PASSPHRASE_FILE or STRONGROOM_SFTP_KEY_PASSPHRASE."),
        click.option("--sftp-known-hosts", envvar=env("STRONGROOM_SFTP_KNOWN_HOSTS"),
                     type=click.Path(dir_okay=False),
                     help="SFTP: the known_hosts file that must hold the server's host key "
                          "(default: ~/.ssh/known_hosts)."),
        click.option("--connections", type=click.IntRange(1, 32), metavar="N",
                     help="Requests to the target at once: packs uploaded and downloaded in parallel (default: "
                          "STRONGROOM_CONNECTIONS, else the URL's ?connections=N, else the vendor's: 4, "
                          "Nutstore 2; a directory 2)."),
    ]


def catalog_option(envvars: bool):
    return click.option("--catalog", envvar="STRONGROOM_CATALOG" if envvars else None,
                        type=click.Path(dir_okay=False),
                        help="The catalog file (default: STRONGROOM_CATALOG, else "
                             "~/.local/share/strongroom/catalog.db).")


def run_options(envvars: bool) -> list:
    """What every command takes: output, logging, the cache."""
    return [
        click.option("--json", "json_output", is_flag=True, help="JSON lines of progress and one summary object."),
        click.option("-q", "--quiet", is_flag=True, help="Print no progress and no messages, only errors and data."),
        click.option("-v", "--verbose", count=True, help="Say more (repeat for more): each lock, each retry."),
        click.option("--log-file", type=click.Path(dir_okay=False), metavar="PATH",
                     help="Append log records (all levels) to this file."),
        click.option("--debug", is_flag=True, help="Show a traceback on errors."),
        click.option("--cache-dir", envvar="STRONGROOM_CACHE_DIR" if envvars else None, metavar="DIR",
                     help="Local cache directory."),
    ]


def global_options(func):
    """The options `strongroom` itself takes before the command name."""
    for decorator in reversed(repository_options(False) + [catalog_option(False)] + run_options(False)):
        func = decorator(func)
    return func


def shared_after(decorators: list, func, wrapper):
    """Put `decorators`' options on `wrapper` after the command's own (those on
    `func`), so a command's --help lists its own options first."""
    own = wrapper.__dict__.pop("__click_params__", [])
    for decorator in reversed(decorators):
        wrapper = decorator(wrapper)
    # click lists params in the reverse of this list's order.
    wrapper.__click_params__ = wrapper.__click_params__ + own
    return wrapper


def from_command_line(values: dict) -> dict:
    """The command's option values, where the ones not given after the command
    take the value given before it (`strongroom -r REPO snapshots`)."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is None or root is ctx:
        return values
    merged = dict(values)
    for name, value in values.items():
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            continue
        if name in root.params and root.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            merged[name] = root.params[name]
    if "verbose" in values and "verbose" in root.params:
        merged["verbose"] = values["verbose"] + root.params["verbose"]
    return merged


def configure_run(values: dict) -> None:
    from strongroom.cli.logs import configure_logging
    configure_logging(verbose=values["verbose"], quiet=values["quiet"], log_file=values["log_file"])


_COMMON = ("repo", "password_file", "password_command", "retry_lock", "no_lock", "no_cache", "webdav_vendor",
           "webdav_password_file", "connections", "sftp_key_file", "sftp_known_hosts", "json_output", "quiet", "verbose", "log_file", "debug", "cache_dir")


def common_options(func):
    """Attach the repository options to a command; its own options are listed first."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        values = from_command_line({name: kwargs.pop(name) for name in _COMMON})
        configure_run(values)
        root = click.get_current_context().find_root()
        catalog = root.params.get("catalog") or os.environ.get("STRONGROOM_CATALOG")
        common = Common(values["repo"], values["password_file"], values["password_command"], values["json_output"],
                        values["debug"], values["cache_dir"], values["no_cache"], values["retry_lock"],
                        no_lock=values["no_lock"], webdav_vendor=values["webdav_vendor"],
                        webdav_password_file=values["webdav_password_file"], connections=values["connections"],
                        sftp_key_file=values["sftp_key_file"], sftp_known_hosts=values["sftp_known_hosts"],
                        quiet=values["quiet"],
                        verbose=values["verbose"], log_file=values["log_file"], catalog=catalog)
        with quiet_output(common, click.get_current_context().command_path):
            return func(common, *args, **kwargs)
    return shared_after(repository_options(True) + run_options(True), func, wrapper)


# The commands that act rather than answer: with -q they print nothing on
# stdout (errors and warnings still go to stderr, and --json is never muted).
# The others print what was asked for (snapshots, ls, find, dump, cat, stats,
# diff, key list, ...), -q or not.
ACTING_COMMANDS = frozenset({"backup", "copy", "restore", "forget", "prune", "init", "unlock", "tag", "rewrite", "repair",
                             "key add", "key passwd", "key remove", "mount"})


def quiet_output(common: Common, command_path: str) -> ContextManager:
    """Stdout muted for an acting command under -q; as it is otherwise."""
    words = command_path.split()[1:]  # "strongroom key add" -> key add
    acting = any(" ".join(words[:n]) in ACTING_COMMANDS for n in (1, 2))
    if not (common.quiet and not common.json and acting):
        return contextlib.nullcontext()
    return _muted_stdout()


@contextlib.contextmanager
def _muted_stdout():
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def snapshot_filter_options(func):
    """--host, --tag and --path, which choose among snapshots."""
    func = click.option("--path", "paths", multiple=True, help="Only snapshots of this path.")(func)
    func = click.option("--tag", "tags", multiple=True, help="Only snapshots with these tags (a,b = both).")(func)
    func = click.option("--host", help="Only snapshots of this host.")(func)
    return func
