"""prune."""

from __future__ import annotations

import re

import click

from strongroom.cli.options import Common, common_options
from strongroom.cli.output import Reporter, emit_json, human_size
from strongroom.engine.prune import plan_prune, run_prune
from strongroom.errors import UsageError


def parse_share(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", text)
    if not m or float(m.group(1)) > 100:
        raise UsageError(f"cannot read {text!r}: give a percentage such as 5%")
    return float(m.group(1)) / 100


@click.command()
@common_options
@click.option("--max-unused", default="5%", show_default=True,
              help="Repack a pack when more than this share of it is unused.")
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be freed and what it would cost.")
def prune(common: Common, max_unused: str, dry_run: bool) -> None:
    """Free the space of data that no recovery point references."""
    share = parse_share(max_unused)
    repo = common.open()
    reporter = Reporter(common.json, "prune")
    common.events.listener = reporter
    try:
        with repo.lock(exclusive=True, wait=common.retry_lock):
            plan = plan_prune(repo, share)
            result = plan.summary() if dry_run else run_prune(repo, plan, reporter)
    finally:
        reporter.close()
    if common.json:
        emit_json({"type": "summary", "dry_run": dry_run, **result, "storage": repo.requests})
        return
    verb = "would free" if dry_run else "freed"
    print(f"{verb} {human_size(result['bytes_freed'])}: {result['packs_deleted']} unused packs deleted, "
          f"{result['packs_repacked']} repacked, {result['packs_unindexed_deleted']} unindexed packs and "
          f"{result['leftovers']} incomplete uploads removed; {result['index_objects']} index objects "
          f"consolidated (about {result['requests_estimated']} requests)")


COMMANDS = [prune]
