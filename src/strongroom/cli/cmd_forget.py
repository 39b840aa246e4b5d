"""forget."""

from __future__ import annotations

import click

from strongroom.cli.by_config import config_option
from strongroom.cli.options import Common, common_options, snapshot_filter_options
from strongroom.cli.output import emit_json, human_size, local_time, plural, rfc3339
from strongroom.engine.forget import parse_group_by, plan_forget, plan_remove, remove_snapshots
from strongroom.errors import UsageError
from strongroom.engine.prune import plan_prune, run_prune
from strongroom.model.retention import Policy, parse_duration
from strongroom.model.select import SnapshotFilter, filter_snapshots, find_snapshot


@click.command()
@common_options
@config_option(allowed=("dry_run", "then_prune"), refusals={
    f"keep_{rule}": "forget --config NAME applies the configuration's own policy: change it with "
                    f"`strongroom config edit NAME --keep-{rule.replace('_', '-')} ...`"
    for rule in ("last", "hourly", "daily", "weekly", "monthly", "yearly", "within", "tag")})
@click.option("--keep-last", type=int, default=0, metavar="N", help="Keep the N newest points.")
@click.option("--keep-hourly", type=int, default=0, metavar="N", help="Keep the newest point of N hours.")
@click.option("--keep-daily", type=int, default=0, metavar="N", help="Keep the newest point of N days.")
@click.option("--keep-weekly", type=int, default=0, metavar="N", help="Keep the newest point of N ISO weeks.")
@click.option("--keep-monthly", type=int, default=0, metavar="N", help="Keep the newest point of N months.")
@click.option("--keep-yearly", type=int, default=0, metavar="N", help="Keep the newest point of N years.")
@click.option("--keep-within", metavar="DURATION", help="Keep every point this close to the newest (30d, 1y6m).")
@click.option("--keep-tag", multiple=True, metavar="TAG", help="Keep every point with this tag.")
@click.option("--group-by", default="host,paths", show_default=True,
              help="Apply the policy per group of: host, paths, tags, config (comma list; '' for one group).")
@click.option("--allow-remove-all", is_flag=True, help="Allow a policy to remove every point of a group.")
@click.option("-n", "--dry-run", is_flag=True, help="List what would be kept and removed, and why.")
@click.option("--prune", "then_prune", is_flag=True, help="Prune afterwards, under the same lock.")
@snapshot_filter_options
@click.argument("snapshot_ids", nargs=-1, metavar="[SNAPSHOT]...")
def forget(common: Common, keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly,
           keep_within, keep_tag, group_by, allow_remove_all, dry_run, then_prune, host, tags, paths,
           snapshot_ids, config) -> None:
    """Remove snapshots that a retention policy does not keep, or the
    SNAPSHOTs named (ids or unique prefixes); with --config NAME, those the
    configuration's own policy does not keep.

    The data only they referenced stays in the repository until a prune."""
    if config:
        from strongroom.cli.cmd_managed import forget_config
        return forget_config(config.manage(common), config.name, dry_run=dry_run, prune=then_prune)
    if min(keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly) < 0:
        raise click.BadParameter("keep counts cannot be negative")
    policy = Policy(keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly,
                    parse_duration(keep_within) if keep_within else None, tuple(keep_tag))
    if snapshot_ids and not policy.empty:
        raise UsageError("give snapshot ids or a retention policy, not both")
    if snapshot_ids and (host or tags or paths):
        raise UsageError("snapshot ids name the points themselves: leave out --host, --tag and --path")
    repo = common.open()
    with common.lock(repo, exclusive=not dry_run, writes=not dry_run, what="forget"):
        snapshots = repo.list_snapshots()
        if snapshot_ids:
            named = {}
            for spec in snapshot_ids:
                if spec == "latest":
                    raise UsageError("forget takes snapshot ids, not 'latest'")
                snap = find_snapshot(snapshots, spec)
                named[snap.id] = snap
            plan = plan_remove(list(named.values()))
        else:
            chosen = filter_snapshots(snapshots, SnapshotFilter(host, tuple(tags), tuple(paths)))
            plan = plan_forget(chosen, policy, parse_group_by(group_by), allow_remove_all)
        held: list = []
        removed = [] if dry_run else remove_snapshots(repo, plan, held)
        pruned = None
        if then_prune and not dry_run:
            # Every point this command kept must be in prune's listing. None kept is
            # what was asked for only when this command removed the last ones: an
            # empty listing from the start proves nothing.
            kept = {s.id for s in snapshots} - set(removed)
            pruned = run_prune(repo, plan_prune(repo, must_see=kept, allow_remove_all=bool(removed) and not kept))
    if common.json:
        for group in plan:
            emit_json({"type": "group", "group": group.key, "points": [
                {"id": s.id, "short_id": s.short_id, "time": rfc3339(s.time), "keep": d.keep, "reasons": d.reasons} for s, d in group.decisions]})
        emit_json({"type": "summary", "dry_run": dry_run, "removed": removed,
                   "kept": sum(d.keep for g in plan for _, d in g.decisions), "prune": pruned,
                   "held": [{"id": i, "until": u.strftime("%Y-%m-%dT%H:%M:%SZ") if u else None} for i, u in held],
                   "storage": repo.requests})
        return
    for group in plan:
        label = ", ".join(f"{k} {v if not isinstance(v, list) else ','.join(v)}" for k, v in group.key.items())
        if not snapshot_ids:
            print(f"group: {label or 'all'}")
        for snap, d in group.decisions:
            verdict = "keep  " if d.keep else "remove"
            print(f"  {verdict} {snap.short_id}  {local_time(snap.time)}  "
                  f"{', '.join(d.reasons)}")
    kept = sum(d.keep for g in plan for _, d in g.decisions)
    gone = sum(not d.keep for g in plan for _, d in g.decisions)
    print(f"{'would remove' if dry_run else 'removed'} {plural(gone, 'snapshot')}"
          + ("" if snapshot_ids else f", kept {kept}"))
    if held:
        print(f"kept {plural(len(held), 'snapshot')} a lock holds (S3 Object Lock): forget them again once it expires")
    if pruned:
        print(f"pruned: freed {human_size(pruned['bytes_freed'])}")
        if pruned.get("objects_held"):
            print(held_line(pruned))


def held_line(result: dict) -> str:
    """prune's one line on what the locks keep, and when it can go."""
    until = result["held_until"] or "a legal hold is lifted"
    return (f"held by locks: {plural(result['objects_held'], 'object')}, "
            f"{human_size(result['bytes_held'])} to free when the locks expire (the last on {until})")


COMMANDS = [forget]
