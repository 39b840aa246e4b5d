"""Options every repository command takes, and opening the repository."""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import ContextManager

import click

from strongroom.errors import StorageError, UsageError
from strongroom.repo.locks import write_refusal
from strongroom.repo.repository import Repository
from strongroom.settings import Settings
from strongroom.storage import open_storage


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
    events: "EventRelay" = field(default_factory=lambda: EventRelay())

    @functools.cached_property
    def settings(self) -> Settings:
        """The run's settings, read from the environment once, here at the edge."""
        return Settings.from_env(cache_root=self.cache_root)

    def storage(self):
        return open_storage(self.repo or "", webdav_password=self._webdav_password, vendor=self.webdav_vendor,
                            cache_root=self.cache_root, on_event=self.events, settings=self.settings)

    def open(self) -> Repository:
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
    path = (common and common.password_file) or os.environ.get("STRONGROOM_PASSWORD_FILE")
    if path:
        try:
            with open(path, "rb") as f:
                return f.read().rstrip(b"\r\n")
        except OSError as e:
            raise UsageError(f"cannot read password file {path}: {e.strerror}") from None
    command = (common and common.password_command) or os.environ.get("STRONGROOM_PASSWORD_COMMAND")
    if command:
        done = subprocess.run(command, shell=True, stdout=subprocess.PIPE)
        if done.returncode != 0:
            raise UsageError(f"password command failed with exit code {done.returncode}")
        return done.stdout.rstrip(b"\r\n")
    if "STRONGROOM_PASSWORD" in os.environ:
        return os.environb[b"STRONGROOM_PASSWORD"]
    if sys.stdin.isatty():
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


def common_options(func):
    """Attach the repository options to a command (they go after its name)."""
    @click.option("-r", "--repo", envvar="STRONGROOM_REPO", help="Repository: a path or local:PATH.")
    @click.option("--password-file", type=click.Path(dir_okay=False), help="Read the password from this file.")
    @click.option("--password-command", help="Run this command and read the password from its output.")
    @click.option("--json", "json_output", is_flag=True, help="JSON lines of progress and one summary object.")
    @click.option("--debug", is_flag=True, help="Show a traceback on errors.")
    @click.option("--cache-dir", envvar="STRONGROOM_CACHE_DIR", help="Local cache directory.")
    @click.option("--no-cache", is_flag=True, help="Use no local cache.")
    @click.option("--retry-lock", type=float, default=0.0, metavar="SECONDS",
                  help="Wait this long for a conflicting lock to go away.")
    @click.option("--no-lock", is_flag=True,
                  help="Take no lock (only for commands that do not write, e.g. on a read-only disk).")
    @click.option("--webdav-vendor", envvar="STRONGROOM_WEBDAV_VENDOR",
                  type=click.Choice(["nutstore", "nextcloud", "owncloud", "generic"], case_sensitive=False),
                  help="WebDAV service: sets the request budget, upload cap and quirks (guessed from the host).")
    @click.option("--webdav-password-file", type=click.Path(dir_okay=False),
                  help="Read the WebDAV account password from this file (else STRONGROOM_WEBDAV_PASSWORD).")
    @functools.wraps(func)
    def wrapper(*args, repo, password_file, password_command, json_output, debug, cache_dir, no_cache,
                retry_lock, no_lock, webdav_vendor, webdav_password_file, **kwargs):
        common = Common(repo, password_file, password_command, json_output, debug, cache_dir, no_cache, retry_lock,
                        no_lock, webdav_vendor, webdav_password_file)
        return func(common, *args, **kwargs)
    return wrapper
