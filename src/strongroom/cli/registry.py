"""Every command of `strongroom`: its name, module, heading and one line of help.

`strongroom --help` is printed from this table alone, and a command's module
is imported only when the command runs (or its own --help is asked for), so
the start-up stays small: the repository, crypto and engine load only for
commands that use them. A module that is not there (a command still being
written) is left out of the help, never imported to find out.

The help line here is what the command list shows; tests/test_cli_front.py
checks that it is the first line of the command's own docstring.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

GROUPS = {  # group: its heading in `strongroom --help`, in this order
    "repository": "Repository commands",
    "configurations": "Configuration commands",
    "jobs": "Job commands",
    "keys": "Key commands",
    "maintenance": "Maintenance commands",
    "other": "Other commands",
}


@dataclass(frozen=True)
class Entry:
    name: str
    module: str
    group: str
    help: str
    hidden: bool = False
    # (module, attribute): more subcommands that another module adds to this group.
    extend: tuple[str, str] | None = None


_CLI = "strongroom.cli."

ENTRIES: tuple[Entry, ...] = (
    Entry("init", _CLI + "cmd_repo", "repository", "Create a new repository (and its directory)."),
    Entry("backup", _CLI + "cmd_backup", "repository", "Back up PATHS, or configuration NAME with --config."),
    Entry("snapshots", _CLI + "cmd_snapshots", "repository",
          "List snapshots."),
    Entry("copy", _CLI + "cmd_copy", "repository",
          "Copy recovery points from --from-repo into --repo."),
    Entry("restore", _CLI + "cmd_restore", "repository",
          "Restore a snapshot, or a path in it, into --target."),
    Entry("ls", _CLI + "cmd_restore", "repository",
          "List the files of SNAPSHOT (below PATH)."),
    Entry("diff", _CLI + "cmd_restore", "repository", "Show what changed between two snapshots."),
    Entry("find", _CLI + "cmd_inspect", "repository", "Find files by name or glob across snapshots."),
    Entry("dump", _CLI + "cmd_inspect", "repository", "Write a file of a snapshot to stdout, a folder as tar."),
    Entry("cat", _CLI + "cmd_inspect", "repository", "Print a repository object, for debugging."),
    Entry("mount", _CLI + "cmd_mount", "repository", "Mount the snapshots read-only (FUSE)."),
    Entry("stats", _CLI + "cmd_snapshots", "repository",
          "Restore size, stored size, dedup and compression ratios."),
    Entry("config", _CLI + "cmd_manage", "configurations",
          "Named backup configurations: what, where and how."),
    Entry("client", _CLI + "cmd_manage", "configurations", "Named WebDAV accounts that configurations back up to."),
    Entry("dr", _CLI + "cmd_dr", "configurations", "Disaster-recovery plans: run, rehearse, report."),
    Entry("apply", _CLI + "cmd_apply", "configurations",
          "Make the catalog match a configuration file."),
    Entry("export-config", _CLI + "cmd_apply", "configurations",
          "Write the catalog as a configuration file (no secrets)."),
    Entry("estimate", _CLI + "cmd_managed", "configurations",
          "What the next backup of NAME would cost (a dry run)."),
    Entry("jobs", _CLI + "cmd_managed", "jobs",
          "The job queue and history (of configuration NAME, or all)."),
    Entry("schedule", _CLI + "cmd_schedule", "jobs", "When backups, checks and DR tests are due."),
    Entry("status", _CLI + "cmd_status", "jobs", "Each configuration: last success, next run, overdue, size."),
    Entry("notify", _CLI + "cmd_notify", "jobs", "Notification channels: email, webhooks, Apprise, pings."),
    Entry("serve", _CLI + "cmd_serve", "jobs", "Run the schedules and the job queue until stopped."),
    Entry("console", _CLI + "cmd_console", "jobs", "The web console's password and API tokens."),
    Entry("key", _CLI + "cmd_repo", "keys", "Manage the passwords (key files) of a repository.",
          extend=(_CLI + "cmd_manage", "KEY_COMMANDS")),
    Entry("check", _CLI + "cmd_check", "maintenance",
          "Check the repository; with --read-data, all its data."),
    Entry("forget", _CLI + "cmd_forget", "maintenance",
          "Remove snapshots a retention policy does not keep."),
    Entry("prune", _CLI + "cmd_prune", "maintenance",
          "Free the space of data that no snapshot references."),
    Entry("tag", _CLI + "cmd_modify", "maintenance", "Add, remove or set the tags of snapshots."),
    Entry("rewrite", _CLI + "cmd_modify", "maintenance", "Drop paths from existing snapshots."),
    Entry("repair", _CLI + "cmd_modify", "maintenance", "Rebuild the index, or mend snapshots whose data is gone."),
    Entry("locks", _CLI + "cmd_repo", "maintenance", "Show who holds locks on the repository."),
    Entry("unlock", _CLI + "cmd_repo", "maintenance", "Remove stale locks."),
    Entry("cache", _CLI + "cmd_inspect", "maintenance", "Show or clean the local caches."),
    Entry("generate", _CLI + "cmd_generate", "other", "Write shell completion scripts or man pages."),
    Entry("version", _CLI + "cmd_generate", "other", "Print the version."),
    # The names of the managed commands before `--config NAME`: still working, not listed.
    Entry("run", _CLI + "cmd_managed", "configurations", "Back up configuration NAME.", hidden=True),
    Entry("points", _CLI + "cmd_managed", "configurations", "List recovery points.", hidden=True),
    Entry("recover", _CLI + "cmd_managed", "configurations", "Restore a configuration's point.", hidden=True),
    Entry("validate", _CLI + "cmd_managed", "configurations", "Check a configuration's point.", hidden=True),
    Entry("apply-retention", _CLI + "cmd_managed", "configurations", "Apply a configuration's retention.",
          hidden=True),
    Entry("usage", _CLI + "cmd_managed", "configurations", "Space used per configuration.", hidden=True),
)

BY_NAME = {entry.name: entry for entry in ENTRIES}


def available(entry: Entry) -> bool:
    """Whether the entry's module is there, found without importing it."""
    import importlib.util  # here: `--version` needs none of it
    try:
        return importlib.util.find_spec(entry.module) is not None
    except (ImportError, ValueError):
        return False


def listed() -> list[Entry]:
    """The entries `--help` shows: not hidden, and their module is installed."""
    return [entry for entry in ENTRIES if not entry.hidden and available(entry)]


def load(entry: Entry):
    """The click command of `entry`, its module imported now; None if the module
    is missing or does not define that command."""
    if not available(entry):
        return None
    module = importlib.import_module(entry.module)
    command = next((c for c in getattr(module, "COMMANDS", ()) if c.name == entry.name), None)
    if command is not None and not entry.hidden:
        # The line `strongroom --help` shows is the registry's, whether or not the
        # module is loaded; the command's own --help keeps its whole docstring.
        command.short_help = entry.help
    if command is not None and entry.extend is not None:
        extra_module, attribute = entry.extend
        for sub in getattr(importlib.import_module(extra_module), attribute, ()):
            if sub.name not in command.commands:
                command.add_command(sub)
    return command
