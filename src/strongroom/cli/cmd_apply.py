"""`strongroom apply` and `strongroom export-config`: the catalog kept in a
file (strongroom.toml) under version control, as borgmatic and
resticprofile users keep theirs. The file format is in docs/design.md.
"""

from __future__ import annotations

import os
import sys

import click

from strongroom.cli.cmd_manage import Manage, manage_options
from strongroom.cli.output import emit_json, terminal_safe
from strongroom.errors import StrongroomError, UsageError


def _file(file: str | None, config_path: str | None):
    from strongroom.configfile import locate
    if file and config_path:
        raise UsageError("give the file as FILE or --config, not both")
    return locate(file or config_path, os.environ)


@click.command("apply")
@manage_options
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--config", "config_path", metavar="PATH", type=click.Path(dir_okay=False),
              help="The file (else STRONGROOM_CONFIG_FILE or STRONGROOM_CONFIG, else ~/.config/strongroom/strongroom.toml).")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option("--prune", is_flag=True, help="Remove what the catalog has and the file does not.")
def apply(m: Manage, file, config_path, dry_run, prune) -> int:
    """Make the catalog match a configuration file.

    One line per object: `+` added, `~` changed (with the keys that
    changed), `-` removed (only with --prune; a configuration's snapshots
    stay in its repository). A file with any error changes nothing: every
    error is shown as FILE:LINE: KEY: message, and the exit status is 2.
    """
    from strongroom.configfile import apply_file
    path = _file(file, config_path)
    with m.manager() as manager:
        report = apply_file(manager, path, dry_run=dry_run, prune=prune, environ=os.environ)
    if m.json:
        for change in report.changes:
            emit_json({"type": "change", **change.to_doc()})
        emit_json({"type": "summary", "file": str(path), "dry_run": dry_run, "prune": prune, "ok": report.ok,
                   "changed": len(report.changed), "errors": report.errors})
    else:
        for line in report.lines():
            (print(f"strongroom: {terminal_safe(line)}", file=sys.stderr) if line in report.errors
             else print(terminal_safe(line)))
    if not report.ok:
        sys.exit(report.exit_code)
    return 0


@click.command("export-config")
@manage_options
@click.option("-o", "--output", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write to FILE (replaced atomically) instead of stdout.")
def export_config(m: Manage, output) -> None:
    """Write the catalog as a configuration file (no secrets).

    Clients, configurations, DR plans and notification channels, in the
    form `strongroom apply` reads: applying the output changes nothing.
    Secrets are written as the references they were given by, or, when
    they are kept in the secrets store, as a comment.
    """
    from strongroom.configfile import export_text
    with m.manager() as manager:
        text = export_text(manager)
    if not output:
        sys.stdout.write(text)
        return
    from strongroom.atomic import replaced_whole
    try:
        with replaced_whole(output) as f:
            f.write(text.encode())
    except OSError as e:
        raise StrongroomError(f"cannot write {output}: {e.strerror}") from None
    if m.json:
        emit_json({"type": "summary", "file": output})
    else:
        print(f"wrote {output}")


COMMANDS = [apply, export_config]
