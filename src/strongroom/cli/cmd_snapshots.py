"""snapshots, stats."""

from __future__ import annotations

import dataclasses

import click

from strongroom.cli.by_config import config_option
from strongroom.cli.options import Common, common_options, snapshot_filter_options
from strongroom.cli.output import (emit_json, emit_json_array, human_ratio, human_size, local_time, plural,
                                   rfc3339, warn_damaged_snapshot)
from strongroom.engine.stats import repository_stats
from strongroom.errors import SnapshotNotFound
from strongroom.model.select import SnapshotFilter, filter_snapshots


@click.command()
@common_options
@config_option(all_configs=True, managed=[
    click.option("--since", help="With --config: only snapshots taken at or after this time."),
    click.option("--until", help="With --config: only snapshots taken at or before this time.")])
@snapshot_filter_options
def snapshots(common: Common, host, tags, paths, config) -> None:
    """List snapshots (of configuration NAME with --config, of all with --configs)."""
    if config:
        from strongroom.cli.cmd_managed import snapshots_config
        return snapshots_config(config.manage(common), config.name, **config.options)
    repo = common.open()
    found = filter_snapshots(repo.list_snapshots(warn_damaged_snapshot),
                             SnapshotFilter(host, tuple(tags), tuple(paths)))
    if common.json:
        emit_json_array([snapshot_json(s) for s in found])
        return
    print(f"{'ID':8}  {'Time':19}  {'Host':12}  {'Kind':11}  {'Tags':12}  {'Size':>10}  Paths")
    for s in found:
        size = human_size(s.summary.get("total_bytes"))
        print(f"{s.short_id}  {local_time(s.time)}  {s.hostname[:12]:12}  {s.kind:11}  "
              f"{','.join(s.tags)[:12]:12}  {size:>10}  {', '.join(s.paths)}")
    print(plural(len(found), "snapshot"))


def snapshot_json(s) -> dict:
    """A snapshot as restic prints one (time in RFC 3339, id, short_id, ...), with strongroom's fields."""
    return {**dataclasses.asdict(s), "time": rfc3339(s.time), "short_id": s.short_id}


@click.command()
@common_options
@config_option(all_configs=True, managed=[
    click.option("--trend", is_flag=True, help="With --config(s): growth per day and week, and when the target fills."),
    click.option("--days", type=click.FloatRange(min=0, min_open=True), default=90,
                 help="With --trend: the samples of this many days (90).")])
@click.argument("snapshot_ids", nargs=-1)
@snapshot_filter_options
def stats(common: Common, snapshot_ids, host, tags, paths, config) -> None:
    """Restore size, stored size, dedup and compression ratios (per configuration with --config or --configs)."""
    if config:
        from strongroom.cli.cmd_managed import stats_configs
        return stats_configs(config.manage(common), config.name, **config.options)
    repo = common.open()
    chosen = filter_snapshots(repo.list_snapshots(), SnapshotFilter(host, tuple(tags), tuple(paths)))
    if snapshot_ids:
        for wanted in snapshot_ids:  # a mistyped id must not quietly count nothing
            if not any(s.id.startswith(wanted.lower()) for s in chosen):
                raise SnapshotNotFound(f"no snapshot with id {wanted}")
        chosen = [s for s in chosen if any(s.id.startswith(i.lower()) for i in snapshot_ids)]
    result = repository_stats(repo, chosen)
    if common.json:
        # restic's names (its restore-size and raw-data modes) beside strongroom's own.
        restic = {"total_size": result["restore_size"], "total_file_count": result["files"],
                  "snapshots_count": result["snapshots"], "total_uncompressed_size": result["unique_size"],
                  "total_blob_count": result["data_blobs"] + result["tree_blobs"]}
        emit_json({"message_type": "summary", "type": "summary", "action": "stats", **result, **restic})
        return
    print(f"snapshots:          {result['snapshots']}")
    print(f"files:              {result['files']}")
    print(f"restore size:       {human_size(result['restore_size'])}"
          + (f" (latest {human_size(result['latest_restore_size'])})" if result["snapshots"] > 1 else ""))
    print(f"unique data:        {human_size(result['unique_size'])}")
    print(f"stored (unique):    {human_size(result['unique_stored_size'])}")
    print(f"repository size:    {human_size(result['repository_size'])} in {result['packs']} packs")
    dedup, compression = result["dedup_ratio"], result["compression_ratio"]
    print(f"dedup:              {human_ratio(dedup) if dedup else '-'} (the snapshots' file bytes over the "
          "unique file data)")
    print(f"compression:        {human_ratio(compression) if compression else '-'} (unique data over its "
          "stored size)")
    space = result["target"]
    if space["used"] is not None or space["available"] is not None:
        print(f"target space:       {human_size(space['used'])} used, {human_size(space['available'])} available")
    else:
        print("target space:       not reported by the target")
    print(f"requests:           {result['requests']}")


COMMANDS = [snapshots, stats]
