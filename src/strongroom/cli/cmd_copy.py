"""copy."""

from __future__ import annotations

import click

from strongroom.cli.options import Common, FromRepo, common_options, from_repository_options, snapshot_filter_options
from strongroom.cli.output import Reporter, emit_json, human_size, plural, warn_damaged_snapshot
from strongroom.errors import IntegrityError, UsageError
from strongroom.model.select import SnapshotFilter, filter_snapshots, find_snapshot


def choose_points(snapshots, specs: tuple[str, ...], flt: SnapshotFilter) -> list:
    """The points SNAPSHOT... names (ids, prefixes, `latest`), or all that the filters pass."""
    if not specs:
        return filter_snapshots(snapshots, flt)
    chosen: dict[str, object] = {}
    for spec in specs:
        snap = find_snapshot(snapshots, spec, flt)
        chosen[snap.id] = snap
    return sorted(chosen.values(), key=lambda s: (s.datetime, s.id))


@click.command()
@common_options
@from_repository_options
@click.argument("snapshot_ids", nargs=-1, metavar="[SNAPSHOT]...")
@snapshot_filter_options
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be sent; write nothing.")
def copy(common: Common, from_repo, from_password_file, from_password_command, from_webdav_password_file,
         from_webdav_vendor, snapshot_ids, host, tags, paths, dry_run) -> None:
    """Copy recovery points from --from-repo into --repo.

    All of them, or SNAPSHOT... (ids, prefixes, `latest`). Only the blobs the destination lacks are sent, every one authenticated
    first; points already copied are skipped. Each copy names its source
    point, so a later copy (also of a copy) recognises it."""
    from strongroom.engine.copy import run_copy

    source = FromRepo(from_repo, from_password_file, from_password_command, from_webdav_password_file,
                      from_webdav_vendor)
    src = source.open(common)  # first: a wrong source password stops before anything is written
    dst = common.open()
    if src.config.id == dst.config.id:
        raise UsageError("--from-repo and --repo name the same repository")
    reporter = Reporter(common.json, "copy", quiet=common.quiet)
    common.events.listener = reporter
    try:
        with common.lock(src, writes=False, what="copy"), common.lock(dst, writes=not dry_run, what="copy"):
            chosen = choose_points(src.list_snapshots(warn_damaged_snapshot), tuple(snapshot_ids),
                                   SnapshotFilter(host, tuple(tags), tuple(paths)))
            summary = run_copy(src, dst, chosen, reporter, dry_run=dry_run,
                               existing=dst.list_snapshots(warn_damaged_snapshot))
    finally:
        reporter.close()
    if common.json:
        emit_json({"message_type": "summary", "action": "copy", **summary.to_dict(),
                   "source": src.storage.url, "destination": dst.storage.url,
                   "storage": {"source": src.requests, "destination": dst.requests}})
    elif not common.quiet:
        would = "would copy" if dry_run else "copied"
        print(f"{would} {plural(summary.points_copied, 'recovery point')}, "
              f"{summary.points_skipped} already in {dst.storage.url}"
              + (f", {summary.points_failed} failed" if summary.points_failed else ""))
        print(f"{'would send' if dry_run else 'sent'} {plural(summary.blobs_sent, 'blob')} "
              f"({summary.data_blobs_sent} data, {summary.tree_blobs_sent} trees), {human_size(summary.bytes_sent)}")
        for point in summary.points:
            if point.copy:
                print(f"snapshot {point.source[:8]} -> {point.copy[:8]}")
    if summary.failures:
        first = summary.failures[0].error
        raise IntegrityError(f"{plural(len(summary.failures), 'recovery point')} could not be copied "
                             f"(nothing of {'it' if len(summary.failures) == 1 else 'them'} is a point in the "
                             f"destination): {first}")


COMMANDS = [copy]
