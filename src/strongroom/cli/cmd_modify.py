"""tag, rewrite, repair: commands that change existing snapshots and mend a repository.

Each takes the exclusive lock when it writes: a copy of a snapshot written
while a forget removes the original would bring a forgotten point back, and
a prune running beside a rewrite could free the blobs of trees it has just
stored but not yet named in a snapshot.
"""

from __future__ import annotations

import click

from strongroom.cli.cmd_restore import snapshot_filter_options
from strongroom.cli.options import Common, common_options
from strongroom.cli.output import emit_json
from strongroom.errors import UsageError
from strongroom.model.select import SnapshotFilter, filter_snapshots, find_snapshot
from strongroom.model.snapshot import Snapshot


def select_snapshots(repo, snapshot_ids, host, tags, paths) -> list[Snapshot]:
    """The snapshots named (ids, prefixes, `latest`), else those the filters match (all without any)."""
    snapshots = repo.list_snapshots()
    flt = SnapshotFilter(host, tuple(tags), tuple(paths))
    if not snapshot_ids:
        return filter_snapshots(snapshots, flt)
    chosen = {}
    for spec in snapshot_ids:
        snap = find_snapshot(snapshots, spec, flt)
        chosen[snap.id] = snap
    return sorted(chosen.values(), key=lambda s: (s.datetime, s.id))


def _snapshot_json(snap: Snapshot) -> dict:
    return {"snapshot_id": snap.id, "short_id": snap.short_id, "time": snap.time, "paths": list(snap.paths),
            "hostname": snap.hostname, "tags": list(snap.tags), "original": snap.original}


@click.command()
@common_options
@click.option("--add", multiple=True, metavar="TAG", help="Add TAG (a,b adds both; may be repeated).")
@click.option("--remove", multiple=True, metavar="TAG", help="Remove TAG (a,b removes both; may be repeated).")
@click.option("--set", "set_", multiple=True, metavar="TAG",
              help="Replace every tag by these (--set '' removes them all).")
@snapshot_filter_options
@click.argument("snapshot_ids", nargs=-1, metavar="[SNAPSHOT]...")
def tag(common: Common, add, remove, set_, host, tags, paths, snapshot_ids) -> None:
    """Change the tags of the SNAPSHOTs named, or of those the filters match
    (every snapshot without either).

    Each changed snapshot is stored anew, naming the old one as its original,
    and only then is the old one deleted; its id changes."""
    from strongroom.engine.tag import TagChange, retag

    change = TagChange.parse(add, remove, set_)
    repo = common.open()
    with common.lock(repo, exclusive=True, writes=True, what="tag"):
        chosen = select_snapshots(repo, snapshot_ids, host, tags, paths)
        done = retag(repo, chosen, change)
    if common.json:
        emit_json({"changed_snapshots": len(done), "matched_snapshots": len(chosen),
                   "changes": [{"old_snapshot_id": d.old.id, "new_snapshot_id": d.new.id,
                                "old_tags": list(d.old.tags), "tags": list(d.new.tags)} for d in done]})
        return
    for d in done:
        print(f"{d.old.short_id} -> {d.new.short_id}  tags: {','.join(d.old.tags) or '-'} -> "
              f"{','.join(d.new.tags) or '-'}")
    print(f"changed {len(done)} of {len(chosen)} snapshot(s)")


@click.command()
@common_options
@click.option("-e", "--exclude", multiple=True, metavar="GLOB", help="Drop paths matching GLOB (as backup's).")
@click.option("--exclude-file", multiple=True, type=click.Path(), help="Read exclude globs from a file.")
@click.option("--forget", "forget_old", is_flag=True, help="Delete each original once its copy is stored.")
@click.option("-n", "--dry-run", is_flag=True, help="Say what would change; write nothing.")
@snapshot_filter_options
@click.argument("snapshot_ids", nargs=-1, metavar="[SNAPSHOT]...")
def rewrite(common: Common, exclude, exclude_file, forget_old, dry_run, host, tags, paths, snapshot_ids) -> None:
    """Drop paths from existing snapshots: each SNAPSHOT named, or those the
    filters match (every snapshot without either).

    A snapshot holding an excluded path gets a copy without it (same time,
    host, paths and tags); the original stays unless --forget is given.
    `prune` then frees the data only the originals referenced."""
    from strongroom.engine.rewrite import rewrite_snapshots
    from strongroom.engine.walk import ExcludeRules

    rules = ExcludeRules.build(exclude, exclude_file)
    if not rules.patterns:
        raise UsageError("nothing to drop: give --exclude or --exclude-file")
    repo = common.open()
    with common.lock(repo, exclusive=not dry_run, writes=not dry_run, what="rewrite"):
        chosen = select_snapshots(repo, snapshot_ids, host, tags, paths)
        report = rewrite_snapshots(repo, chosen, rules, forget=forget_old, dry_run=dry_run)
    changed = [r for r in report.results if r.new is not None]
    if common.json:
        emit_json({"dry_run": dry_run, "forget": forget_old, "matched_snapshots": len(chosen),
                   "rewritten_snapshots": len(changed),
                   "rewritten": [{"snapshot_id": r.old.id, "new_snapshot_id": None if dry_run else r.new.id,
                                  "removed": r.removed, "forgotten": forget_old and not dry_run}
                                 for r in changed],
                   "removed_paths": report.removed_paths, "storage": repo.requests})
        return
    for path in report.removed_paths:
        print(f"  drop {path}")
    verb = "would rewrite" if dry_run else "rewrote"
    for r in changed:
        target = "" if dry_run else f" -> {r.new.short_id}" + (" (original forgotten)" if forget_old else "")
        print(f"{verb} {r.old.short_id}{target}: {r.removed} entr{'y' if r.removed == 1 else 'ies'} dropped")
    print(f"{verb} {len(changed)} of {len(chosen)} snapshot(s)")


COMMANDS = [tag, rewrite]
