"""The backup programs compared: how to make each runnable, and its commands.

Each tool keeps its repository, its cache and its temporary files in the
round directory it is given, so a new round starts with fresh repositories
and caches for every tool.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from pathlib import Path

from measure import Command, ensure_command, first_output_line

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-not-a-secret"


class Tool(ABC):
    """One backup program: how to make it available and its commands."""

    name = ""
    # Exit codes of a backup that mean "done, but some files were unreadable".
    backup_warning_codes: frozenset[int] = frozenset()
    # Whether a restore recreates hard links (checked when it claims to).
    restores_hardlinks = True

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None):
        self.repo = workdir / "repos" / self.name
        self.home = workdir / "homes" / self.name
        self.extra_env: dict[str, str] = dict(extra_env or {})

    def in_round(self, workdir: Path) -> "Tool":
        """The same prepared tool with its repository and caches in ``workdir``."""
        return type(self)(workdir, self.extra_env)

    def environment(self) -> dict[str, str]:
        """The process environment: temp and cache files stay in the workdir."""
        (self.home / "tmp").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(TMPDIR=str(self.home / "tmp"), XDG_CACHE_HOME=str(self.home / "cache"))
        env.update(self.extra_env)
        return env

    @abstractmethod
    def prepare(self) -> str | None:
        """Make the tool runnable; return why it cannot run, or None."""

    @abstractmethod
    def version(self) -> str:
        """The tool's version line."""

    @abstractmethod
    def init(self) -> Command:
        """Create the repository."""

    @abstractmethod
    def backup(self, source: Path, label: str) -> Command:
        """Back up `source`."""

    @abstractmethod
    def restore(self, target: Path) -> Command:
        """Restore the latest point into `target`."""

    @abstractmethod
    def check(self) -> Command:
        """Check, reading all data."""

    @abstractmethod
    def snapshots(self) -> Command:
        """List the snapshots."""

    @abstractmethod
    def forget_prune(self) -> Command:
        """Keep the latest snapshot only and free the space of the others."""

    @abstractmethod
    def startup(self) -> list[str]:
        """The quickest command: print the version."""


class Strongroom(Tool):
    name = "strongroom"
    backup_warning_codes = frozenset({3})

    def base(self) -> list[str]:
        return [sys.executable, "-m", "strongroom"]

    def environment(self) -> dict[str, str]:
        # An installed package has its byte code; a checkout run with
        # PYTHONDONTWRITEBYTECODE set would compile every module at every step.
        env = dict(super().environment(), STRONGROOM_PASSWORD=PASSWORD)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return env

    def runs(self) -> bool:
        return first_output_line(self.base() + ["--help"], self.environment()) is not None

    def prepare(self) -> str | None:
        """Use the installed package, else the checkout's src/ on PYTHONPATH."""
        if self.runs():
            return None
        source_dir = REPO_ROOT / "src"
        pythonpath = os.pathsep.join(filter(None, [str(source_dir), os.environ.get("PYTHONPATH")]))
        self.extra_env = {"PYTHONPATH": pythonpath}
        if source_dir.is_dir() and self.runs():
            print(f"strongroom: not installed, using {source_dir} on PYTHONPATH", file=sys.stderr)
            return None
        return f"'{sys.executable} -m strongroom --help' fails (install it with 'pip install -e .')"

    def version(self) -> str:
        env = self.environment()
        line = (first_output_line(self.base() + ["version"], env)
                or first_output_line(self.base() + ["--version"], env))
        return f"{line or 'strongroom (version unknown)'}, {git_revision()}"

    def init(self) -> Command:
        return Command(self.base() + ["init", "--repo", str(self.repo)])

    def backup(self, source: Path, label: str) -> Command:
        return Command(self.base() + ["backup", str(source), "--repo", str(self.repo)])

    def restore(self, target: Path) -> Command:
        return Command(self.base() + ["restore", "latest", "--target", str(target),
                                      "--repo", str(self.repo)])

    def check(self) -> Command:
        return Command(self.base() + ["check", "--read-data", "--repo", str(self.repo)])

    def snapshots(self) -> Command:
        return Command(self.base() + ["snapshots", "--repo", str(self.repo)])

    def forget_prune(self) -> Command:
        return Command(self.base() + ["forget", "--keep-last", "1", "--prune", "--repo", str(self.repo)])

    def startup(self) -> list[str]:
        return self.base() + ["--version"]


class Restic(Tool):
    name = "restic"
    backup_warning_codes = frozenset({3})

    def environment(self) -> dict[str, str]:
        return dict(super().environment(), RESTIC_PASSWORD=PASSWORD,
                    RESTIC_CACHE_DIR=str(self.home / "restic-cache"))

    def prepare(self) -> str | None:
        return ensure_command("restic", "restic")

    def version(self) -> str:
        return first_output_line(["restic", "version"]) or "restic (version unknown)"

    def base(self) -> list[str]:
        return ["restic", "-r", str(self.repo)]

    def init(self) -> Command:
        return Command(self.base() + ["init"])

    def backup(self, source: Path, label: str) -> Command:
        return Command(self.base() + ["backup", str(source)])

    def restore(self, target: Path) -> Command:
        return Command(self.base() + ["restore", "latest", "--target", str(target)])

    def check(self) -> Command:
        return Command(self.base() + ["check", "--read-data"])

    def snapshots(self) -> Command:
        return Command(self.base() + ["snapshots"])

    def forget_prune(self) -> Command:
        return Command(self.base() + ["forget", "--keep-last", "1", "--prune"])

    def startup(self) -> list[str]:
        return ["restic", "version"]


class Borg(Tool):
    name = "borg"
    backup_warning_codes = frozenset({1})
    compression = "zstd,3"  # strongroom's default is zstd level 3

    def environment(self) -> dict[str, str]:
        return dict(super().environment(), BORG_PASSPHRASE=PASSWORD,
                    BORG_BASE_DIR=str(self.home / "borg-base"),
                    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
                    BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")

    def prepare(self) -> str | None:
        return ensure_command("borg", "borgbackup")

    def version(self) -> str:
        return first_output_line(["borg", "--version"]) or "borg (version unknown)"

    def init(self) -> Command:
        return Command(["borg", "init", "--encryption=repokey-blake2", str(self.repo)])

    def backup(self, source: Path, label: str) -> Command:
        self.latest_archive = label
        return Command(["borg", "create", "--compression", self.compression,
                        f"{self.repo}::{label}", str(source)])

    def restore(self, target: Path) -> Command:
        return Command(["borg", "extract", f"{self.repo}::{self.latest_archive}"], cwd=target)

    def check(self) -> Command:
        return Command(["borg", "check", "--verify-data", str(self.repo)])

    def snapshots(self) -> Command:
        return Command(["borg", "list", str(self.repo)])

    def startup(self) -> list[str]:
        return ["borg", "--version"]

    def forget_prune(self) -> Command:
        # borg 1.2 frees space only at `compact`.
        return Command(["sh", "-c", 'borg prune --keep-last 1 "$1" && borg compact "$1"', "sh", str(self.repo)])


TOOL_CLASSES = {cls.name: cls for cls in (Strongroom, Restic, Borg)}


def git_revision() -> str:
    revision = first_output_line(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"])
    return f"git {revision}" if revision else "no git revision"
