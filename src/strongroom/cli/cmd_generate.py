"""generate (shell completion, man pages) and version: neither opens a repository."""

from __future__ import annotations

import datetime
import os
import sys

import click

from strongroom import __version__
from strongroom.cli.options import from_command_line
from strongroom.cli.start import version_json, version_line
from strongroom.errors import UsageError

_COMPLETE_VAR = "_STRONGROOM_COMPLETE"  # click's name for prog_name "strongroom"


def _completion_script(shell: str) -> str:
    from click.shell_completion import get_completion_class

    from strongroom.cli.main import cli
    return get_completion_class(shell)(cli, {}, "strongroom", _COMPLETE_VAR).source()


def _write(target: str, text: str) -> None:
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with open(target, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {target}", file=sys.stderr)


def _man_date() -> datetime.date:
    # A reproducible build sets SOURCE_DATE_EPOCH; the pages then do not change from day to day.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).date()
    return datetime.date.today()


@click.command()
@click.option("--bash-completion", metavar="FILE", help="Write the bash completion script to FILE (- for stdout).")
@click.option("--zsh-completion", metavar="FILE", help="Write the zsh completion script to FILE (- for stdout).")
@click.option("--fish-completion", metavar="FILE", help="Write the fish completion script to FILE (- for stdout).")
@click.option("--man", "man_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Write a man page for strongroom and for every command into DIR.")
def generate(bash_completion, zsh_completion, fish_completion, man_dir) -> None:
    """Write shell completion scripts or man pages."""
    scripts = {"bash": bash_completion, "zsh": zsh_completion, "fish": fish_completion}
    if not man_dir and not any(scripts.values()):
        raise UsageError("say what to generate: --bash-completion, --zsh-completion, --fish-completion or --man")
    if sum(target == "-" for target in scripts.values()) > 1:
        raise UsageError("only one completion script can go to stdout")
    for shell, target in scripts.items():
        if target:
            _write(target, _completion_script(shell))
    if man_dir:
        from strongroom.cli.main import cli
        from strongroom.cli.manpage import write_pages
        written = write_pages(cli, "strongroom", man_dir, __version__, _man_date())
        print(f"wrote {len(written)} man pages to {man_dir}", file=sys.stderr)


@click.command()
@click.option("--json", "json_output", is_flag=True, help="Print a JSON object.")
def version(json_output: bool) -> None:
    """Print the version."""
    json_output = from_command_line({"json_output": json_output})["json_output"]
    print(version_json() if json_output else version_line())


COMMANDS = [generate, version]
