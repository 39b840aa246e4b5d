"""`strongroom`: the command line. Each error is one line; exit codes are documented.

Commands load lazily from cli/registry.py: this module imports click and
nothing heavy, so `--help` starts fast (`--version` and `version` alone are
answered in cli/start.py, before click is imported).
"""

from __future__ import annotations

import signal
import sys

import click

from strongroom import __version__
from strongroom.cli import registry
from strongroom.cli.options import global_options
from strongroom.cli.start import version_line
from strongroom.errors import StrongroomError


def _print_version(ctx: click.Context, param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_line())
        ctx.exit()


class LazyGroup(click.Group):
    """A group whose commands come from the registry, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = [entry.name for entry in registry.listed()]
        return names + sorted(name for name in self.commands if name not in names)

    def get_command(self, ctx: click.Context, name: str):
        if name in self.commands:
            return self.commands[name]
        entry = registry.BY_NAME.get(name)
        command = registry.load(entry) if entry is not None else None
        if command is not None:
            self.commands[name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Commands under headings, from the registry's one-line help: no command module is imported."""
        entries = registry.listed()
        width = max(len(entry.name) for entry in entries)  # one column across all headings
        limit = formatter.width - 6 - width
        for group, heading in registry.GROUPS.items():
            rows = [(entry.name.ljust(width), click.utils.make_default_short_help(entry.help, limit))
                    for entry in entries if entry.group == group]
            if rows:
                with formatter.section(heading):
                    formatter.write_dl(rows, col_max=width + 2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print the version and exit.")
@global_options
def cli(**_options) -> None:
    """Deduplicated, compressed, encrypted and verifiable backups.

    The options below work before the command (as `strongroom -r REPO snapshots`)
    and after it; a value given after the command wins.
    """
    from strongroom.cli.logs import configure_logging
    configure_logging(verbose=_options["verbose"], quiet=_options["quiet"], log_file=_options["log_file"])


def _exit_error_json(code: int, message: str) -> None:
    import json
    # As every JSON line (docs/json.md): message_type, schema (output.SCHEMA, not imported here:
    # it loads rich) and type.
    sys.stdout.write(json.dumps({"message_type": "exit_error", "schema": "strongroom/1", "code": code,
                                 "message": message, "type": "exit_error"}) + "\n")
    sys.stdout.flush()


def _exit_error(json_mode: bool, code: int, message: str) -> None:
    """The one line on stderr and, with --json, restic's exit_error object on stdout."""
    print(f"strongroom: {message}", file=sys.stderr)
    if json_mode:
        _exit_error_json(code, message)
    sys.exit(code)


def _traceback() -> None:
    import traceback
    traceback.print_exc()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    argv = argv or ["--help"]  # as restic: the help on stdout, exit 0
    options = argv[:argv.index("--")] if "--" in argv else argv
    debug = "--debug" in options
    json_mode = "--json" in options
    # SIGTERM stops as Ctrl-C does: locks are released, stored packs are indexed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        code = cli.main(args=argv, prog_name="strongroom", standalone_mode=False)
        sys.exit(code or 0)
    except StrongroomError as e:
        if debug:
            _traceback()
        _exit_error(json_mode, e.exit_code, str(e))
    except (click.exceptions.Abort, KeyboardInterrupt):
        _exit_error(json_mode, 130, "interrupted")
    except click.ClickException as e:
        e.show()
        if json_mode:
            _exit_error_json(e.exit_code, e.format_message())
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as e:
        if debug:
            _traceback()
        _exit_error(json_mode, 1, (e.strerror or str(e)) + (f": {e.filename}" if e.filename else ""))
    except Exception as e:  # a bug: still one line (and exit_error), the traceback on --debug
        if debug:
            _traceback()
        hint = "" if debug else "; run again with --debug for the traceback, and report it"
        _exit_error(json_mode, 1, f"internal error: {type(e).__name__}: {e}{hint}")


__all__ = ["cli", "main", "__version__"]
