"""prune."""

from __future__ import annotations

import re

import click

from strongroom.cli.options import Common, common_options
from strongroom.cli.output import Reporter, emit_json, human_size, plural
from strongroom.engine.prune import budget_estimate, plan_prune, run_prune
from strongroom.storage import request_budget
from strongroom.engine.walk import parse_size
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
@click.option("--max-repack-size", metavar="SIZE",
              help="Repack at most this much of packs (e.g. 500M, 2G) this run; the next prune does the rest.")
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be freed and what it would cost.")
@click.option("--allow-remove-all", is_flag=True,
              help="Prune even when no recovery point is found, deleting every pack (after forgetting all of them).")
def prune(common: Common, max_unused: str, max_repack_size: str | None, dry_run: bool,
          allow_remove_all: bool) -> None:
    """Free the space of data that no recovery point references."""
    share = parse_share(max_unused)
    limit = None if max_repack_size is None else parse_size(max_repack_size)
    repo = common.open()
    budget = request_budget(repo.storage)
    reporter = Reporter(common.json, "prune", quiet=common.quiet)
    common.events.listener = reporter
    try:
        with common.lock(repo, exclusive=True, writes=not dry_run, what="prune"):
            plan = plan_prune(repo, share, limit, allow_remove_all=allow_remove_all)
            estimate = budget_estimate(plan.requests, budget)
            result = plan.summary() if dry_run else run_prune(repo, plan, reporter)
    finally:
        reporter.close()
    result = {**result, "budget": estimate}
    if budget is not None and not dry_run:
        result["budget_waited"] = round(budget.waited, 1)
    if common.json:
        emit_json({"message_type": "summary", "action": "prune", "dry_run": dry_run, **result, "storage": repo.requests})
        return
    verb = "would free" if dry_run else "freed"
    print(f"{verb} {human_size(result['bytes_freed'])}: {plural(result['packs_deleted'], 'unused pack')} deleted, "
          f"{result['packs_repacked']} repacked, {plural(result['packs_unindexed_deleted'], 'unindexed pack')} and "
          f"{plural(result['leftovers'], 'incomplete upload')} and {plural(result['temporaries'], 'temporary file')} "
          f"removed; {plural(result['index_objects'], 'index object')} consolidated "
          f"(about {plural(result['requests_estimated'], 'request')})")
    if result.get("objects_held"):
        from strongroom.cli.cmd_forget import held_line
        print(held_line(result))
    if result["packs_left_to_repack"]:
        print(f"left for the next prune (--max-repack-size): {plural(result['packs_left_to_repack'], 'pack')} "
              f"({human_size(result['bytes_left_to_repack'])}) to repack, about "
              f"{human_size(result['bytes_left_to_free'])} more to free")
    if estimate is not None and not dry_run:
        print(f"waited {result['budget_waited']:.0f} s for the request budget "
              f"({estimate['requests']} per {estimate['seconds']:g} s)")
    elif estimate is not None:
        wait = f"about {estimate['wait_estimated']:.0f} s of waiting" if estimate["wait_estimated"] else "no waiting"
        print(f"request budget {estimate['requests']} per {estimate['seconds']:g} s: "
              f"{result['requests_estimated']} requests take {estimate['seconds_at_rate']:.0f} s at its rate; "
              f"{estimate['available']} available now, so {wait}")


COMMANDS = [prune]
