"""check."""

from __future__ import annotations

import click

from strongroom.cli.by_config import config_option
from strongroom.cli.options import Common, common_options
from strongroom.cli.output import Reporter, emit_json, plural
from strongroom.engine.progress import event_type
from strongroom.engine.check import run_check
from strongroom.services.catalog import kit_on_record


@click.command()
@common_options
@config_option(allowed=("read_data",), managed=[
    click.option("--snapshot", metavar="ID", help="With --config: this snapshot instead of the latest.")])
@click.option("--read-data", is_flag=True, help="Fetch and authenticate every pack and blob.")
@click.option("--read-data-subset", metavar="N%|n/t", help="Read a share of the packs.")
def check(common: Common, read_data: bool, read_data_subset: str | None, config) -> int:
    """Check the repository's structure, and with --read-data its data; with
    --config NAME, that the configuration's latest snapshot is complete."""
    if config:
        from strongroom.cli.cmd_managed import check_config
        return check_config(config.manage(common), config.name, read_data=read_data, **config.options)
    repo = common.open()
    reporter = Reporter(common.json, "check", quiet=common.quiet)
    common.events.listener = reporter
    try:
        with common.lock(repo, writes=False, what="check"):
            report = run_check(repo, read_data, read_data_subset, reporter if common.json else _quiet_status(reporter),
                               kit_on_record=kit_on_record(repo.config.id, repo.key_id))
    finally:
        reporter.close()
    if common.json:
        emit_json({"message_type": "summary", "action": "check", **report.to_dict(), "storage": repo.requests})
    else:
        for w in (*report.warnings, *(() if common.quiet else report.advice)):
            print(f"warning: {w}")
        for p in report.problems:
            line = f"damaged: {p['object']}: {p['message']}"
            if p.get("snapshots"):
                line += f"\n  snapshots: {', '.join(p['snapshots'])}"
            if p.get("files"):
                line += "\n  files: " + "\n         ".join(p["files"][:50])
            print(line)
        if common.quiet:  # problems and warnings only
            return 0 if report.ok else 1
        c = report.counts
        print(f"checked {plural(c.get('snapshots', 0), 'snapshot')}, {plural(c.get('trees', 0), 'tree')}, "
              f"{plural(c.get('packs', 0), 'pack')}"
              + (f"; read {plural(c['packs_read'], 'pack')}" if "packs_read" in c else ""))
        print("no errors were found" if report.ok else f"{plural(len(report.problems), 'problem')} found")
    return 0 if report.ok else 1


def _quiet_status(reporter):
    def listener(event: dict) -> None:
        if event_type(event) != "error":  # problems are printed once, with what they affect
            reporter(event)
    return listener


COMMANDS = [check]
