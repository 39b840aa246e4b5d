"""`strongroom`: the command line. Each error is one line; exit codes are documented."""

from __future__ import annotations

import signal
import sys
import traceback

import click

from strongroom import __version__
from strongroom.errors import StrongroomError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Deduplicated, compressed, encrypted and verifiable backups."""


def _register() -> None:
    from strongroom.cli import (cmd_backup, cmd_check, cmd_forget, cmd_inspect, cmd_manage, cmd_managed, cmd_modify,
                                cmd_mount, cmd_prune, cmd_repo, cmd_restore, cmd_snapshots)
    for module in (cmd_repo, cmd_backup, cmd_restore, cmd_snapshots, cmd_forget, cmd_prune, cmd_check, cmd_manage,
                   cmd_managed, cmd_inspect, cmd_mount, cmd_modify):
        for command in module.COMMANDS:
            cli.add_command(command)
    for command in cmd_manage.KEY_COMMANDS:  # `key export NAME` works on a configuration
        cmd_repo.key.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    # SIGTERM stops as Ctrl-C does: locks are released, stored packs are indexed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        code = cli.main(args=argv, prog_name="strongroom", standalone_mode=False)
        sys.exit(code or 0)
    except StrongroomError as e:
        if debug:
            traceback.print_exc()
        print(f"strongroom: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        print("strongroom: interrupted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("strongroom: interrupted", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as e:
        if debug:
            traceback.print_exc()
        print(f"strongroom: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        sys.exit(1)


__all__ = ["cli", "main", "__version__"]
