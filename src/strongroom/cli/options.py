"""Options every repository command takes, and opening the repository."""

from __future__ import annotations

import functools
import getpass
import os
import subprocess
import sys
from dataclasses import dataclass

import click

from strongroom.errors import UsageError
from strongroom.repo.repository import Repository
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

    def open(self) -> Repository:
        storage = open_storage(self.repo or "")
        return Repository.open(storage, lambda: read_password(self), self.cache_root)

    @property
    def cache_root(self) -> str | None:
        return "" if self.no_cache else self.cache_dir


def read_password(common: Common, prompt: str = "repository password: ") -> bytes:
    """The password from a file, a command, the environment or a TTY prompt."""
    path = common.password_file or os.environ.get("STRONGROOM_PASSWORD_FILE")
    if path:
        try:
            with open(path, "rb") as f:
                return f.read().rstrip(b"\r\n")
        except OSError as e:
            raise UsageError(f"cannot read password file {path}: {e.strerror}") from None
    command = common.password_command or os.environ.get("STRONGROOM_PASSWORD_COMMAND")
    if command:
        done = subprocess.run(command, shell=True, stdout=subprocess.PIPE)
        if done.returncode != 0:
            raise UsageError(f"password command failed with exit code {done.returncode}")
        return done.stdout.rstrip(b"\r\n")
    if "STRONGROOM_PASSWORD" in os.environ:
        return os.environb[b"STRONGROOM_PASSWORD"]
    if sys.stdin.isatty():
        return getpass.getpass(prompt).encode()
    raise UsageError("no password: set STRONGROOM_PASSWORD, STRONGROOM_PASSWORD_FILE, "
                     "--password-file or --password-command")


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
    @functools.wraps(func)
    def wrapper(*args, repo, password_file, password_command, json_output, debug, cache_dir, no_cache,
                retry_lock, **kwargs):
        common = Common(repo, password_file, password_command, json_output, debug, cache_dir, no_cache, retry_lock)
        return func(common, *args, **kwargs)
    return wrapper
