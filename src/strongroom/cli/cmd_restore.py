"""restore, ls, diff."""

from __future__ import annotations

import time
from datetime import datetime

import click

from strongroom.cli.by_config import config_option
from strongroom.cli.options import Common, common_options, snapshot_filter_options
from strongroom.cli.output import (Reporter, emit_json, human_duration, human_size, local_time, plural, rfc3339,
                                   terminal_safe, warn_damaged_snapshot)
from strongroom.engine.diff import diff_trees
from strongroom.engine.restore import OVERWRITE_MODES, RestoreOptions, run_restore
from strongroom.engine.tree_walk import resolve, walk
from strongroom.errors import UsageError
from strongroom.model.select import SnapshotFilter, find_snapshot, parse_time
from strongroom.model.tree import DIR

# As backup's (cli/cmd_backup.py), not imported from there: that would load
# the whole backup engine into every restore.
EXIT_PARTIAL = 3

SHOWN_FAILURES = 20


def choose(repo, spec: str, host, tags, paths, at: str | None = None):
    """Resolve SNAPSHOT[:subpath] into (snapshot, subpath)."""
    spec, _, subpath = spec.partition(":")
    snap = find_snapshot(repo.list_snapshots(warn_damaged_snapshot), spec or "latest",
                         SnapshotFilter(host, tuple(tags), tuple(paths)), parse_time(at) if at else None)
    return snap, subpath


@click.command()
@common_options
@config_option(allowed=("snapshot", "target", "at", "include", "exclude", "verify"))
@click.argument("snapshot", required=False)
@click.option("-t", "--target", required=True, type=click.Path(), help="Directory to restore into.")
@click.option("--at", help="With `latest`: the newest snapshot at or before this time.")
@click.option("-i", "--include", multiple=True, metavar="GLOB", help="Restore only matching paths.")
@click.option("-e", "--exclude", multiple=True, metavar="GLOB", help="Leave out matching paths.")
@click.option("--overwrite", type=click.Choice(OVERWRITE_MODES), default="if-changed", show_default=True)
@click.option("--verify/--no-verify", default=None,
              help="Read every restored file back and check it (the default with --config only).")
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be restored.")
@snapshot_filter_options
def restore(common: Common, snapshot, target, at, include, exclude, overwrite, verify, dry_run,
            host, tags, paths, config) -> int:
    """Restore SNAPSHOT (an id, `latest`, or SNAPSHOT:subpath) into --target; with
    --config NAME, a snapshot of that configuration (its latest when none is named)."""
    if config:
        from strongroom.cli.cmd_managed import restore_config
        return restore_config(config.manage(common), config.name, target, snapshot=snapshot, at=at,
                              include=include, exclude=exclude, verify=verify is not False)
    if snapshot is None:
        raise UsageError("restore needs SNAPSHOT: an id, `latest`, or SNAPSHOT:subpath")
    verify = bool(verify)
    repo = common.open()
    reporter = Reporter(common.json, "restore", quiet=common.quiet)
    common.events.listener = reporter
    started = time.monotonic()
    try:
        with common.lock(repo, writes=False, what="restore"):
            snap, subpath = choose(repo, snapshot, host, tags, paths, at)
            options = RestoreOptions(target, subpath, tuple(include), tuple(exclude), overwrite, verify, dry_run)
            result = run_restore(repo, snap, options, reporter)
    finally:
        reporter.close()
    s = result.summary
    s["duration"] = round(time.monotonic() - started, 3)
    if common.json:
        emit_json({"message_type": "summary", "action": "restore", **s, "storage": repo.requests})
    else:
        verb = "would restore" if dry_run else "restored"
        done = plural(s["total_files"], "file") if dry_run else f"{s['files_restored']} of {plural(s['total_files'], 'file')}"
        print(f"{verb} snapshot {snap.short_id} of {local_time(snap.time)} into {s['target']}: {done}, "
              f"{human_size(s['total_bytes'] if dry_run else s['bytes_restored'])}"
              + (f" of {human_size(s['total_bytes'])}" if not dry_run else "")
              + f"; {s['files_skipped']} already current, {plural(s['packs'], 'pack')} "
              f"{'to read' if dry_run else 'read'}, "
              f"in {human_duration(s['duration'])}")
        if verify and not dry_run:
            print(f"verified {plural(s['files_verified'], 'file')}")
        failed = s["files_failed"]
        if failed:
            print(f"{len(failed)} of {plural(s['total_files'], 'file')} could not be restored:")
            for entry in failed[:SHOWN_FAILURES]:
                print(f"  {terminal_safe(entry['path'])}: {terminal_safe(entry['message'])}")
            if len(failed) > SHOWN_FAILURES:
                print(f"  ... and {len(failed) - SHOWN_FAILURES} more (all are named in the errors above)")
        elif result.errors:
            print(f"{plural(len(result.errors), 'problem')} with restored files; see the errors above")
    # As for a backup that could not read everything: done, but not all of it.
    return EXIT_PARTIAL if result.errors else 0


@click.command(name="ls")
@common_options
@click.argument("snapshot")
@click.argument("path", required=False, default="")
@click.option("-l", "--long", "long_format", is_flag=True, help="Show mode, size and time.")
@snapshot_filter_options
def ls_command(common: Common, snapshot, path, long_format, host, tags, paths) -> None:
    """List the files of SNAPSHOT (below PATH)."""
    repo = common.open()
    repo.load_index()
    snap, subpath = choose(repo, snapshot, host, tags, paths)
    base = "/".join(p for p in (subpath + "/" + path).split("/") if p)
    tree_id, node = resolve(repo, bytes.fromhex(snap.tree), base)
    prefix = ("/" + base) if base else ""
    entries = [(prefix.encode(), node)] if node is not None and node.type != DIR else []
    if tree_id:
        entries = ((prefix.encode("utf-8", "surrogateescape") + p, n) for p, n in walk(repo, tree_id))
    if common.json:
        emit_json({"message_type": "snapshot", "id": snap.id, "short_id": snap.short_id, "time": rfc3339(snap.time),
                   "tree": snap.tree, "paths": list(snap.paths), "hostname": snap.hostname})
    for rel, n in entries:
        shown = rel.decode("utf-8", "backslashreplace") if n is not node else prefix
        if common.json:
            emit_json({"type": "node", "path": shown, "node_type": n.type, "size": n.size, "mode": n.mode,
                       "uid": n.uid, "gid": n.gid, "mtime_ns": n.mtime_ns})
        elif long_format:
            when = local_time(datetime.fromtimestamp(n.mtime_ns / 1e9))
            print(f"{n.type:8} {n.mode:04o} {terminal_safe(n.user or n.uid):>8} {n.size:>12}  {when}  "
                  f"{terminal_safe(shown)}")
        else:
            print(terminal_safe(shown))
    if common.json:
        emit_json({"type": "summary", "snapshot": snap.id, "storage": repo.requests})


@click.command()
@common_options
@click.argument("first")
@click.argument("second")
def diff(common: Common, first, second) -> None:
    """Show what changed between two snapshots."""
    repo = common.open()
    repo.load_index()
    snaps = repo.list_snapshots(warn_damaged_snapshot)
    a, b = find_snapshot(snaps, first), find_snapshot(snaps, second)
    counts = {"+": 0, "-": 0, "M": 0, "T": 0, "U": 0}
    for change in diff_trees(repo, bytes.fromhex(a.tree), bytes.fromhex(b.tree)):
        counts[change["change"]] += 1
        if common.json:
            emit_json({"type": "change", **change})
        else:
            print(f"{change['change']}    {terminal_safe(change['path'])}")
    summary = {"added": counts["+"], "removed": counts["-"], "modified": counts["M"],
               "type_changed": counts["T"], "metadata_changed": counts["U"]}
    if common.json:
        emit_json({"type": "summary", "first": a.id, "second": b.id, **summary, "storage": repo.requests})
    else:
        print(f"\n{summary['added']} added, {summary['removed']} removed, {summary['modified']} modified, "
              f"{summary['metadata_changed']} metadata changed")


COMMANDS = [restore, ls_command, diff]
