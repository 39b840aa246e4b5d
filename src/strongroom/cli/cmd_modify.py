"""tag, rewrite, repair: commands that change existing snapshots and mend a repository.

Each takes the exclusive lock when it writes: a copy of a snapshot written
while a forget removes the original would bring a forgotten point back, and
a prune running beside a rewrite could free the blobs of trees it has just
stored but not yet named in a snapshot.
"""

from __future__ import annotations

import click

from strongroom.cli.options import Common, common_options, snapshot_filter_options
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


@click.group()
def repair() -> None:
    """Mend a repository: rebuild the index, or snapshots whose data is gone."""


@repair.command("index")
@common_options
@click.option("--read-all-packs", is_flag=True,
              help="Read every pack whole and verify every blob, instead of trusting the old index where it fits.")
def repair_index_command(common: Common, read_all_packs: bool) -> int:
    """Rebuild the index from the packs' headers.

    A new, complete index is written first; only then are the old index
    objects deleted. Packs whose header cannot be read are reported (exit 1)
    and left on the target."""
    from strongroom.engine.repair import repair_index

    repo = common.open()
    with common.lock(repo, exclusive=True, writes=True, what="repair index"):
        result = repair_index(repo, read_all=read_all_packs)
    if common.json:
        emit_json({**result.to_dict(), "storage": repo.requests})
    else:
        for problem in result.unreadable:
            print(f"unreadable pack {problem}")
        print(f"new index: {result.packs} pack(s), {result.blobs} blob(s); read {result.headers_read} pack(s), "
              f"reused {result.reused} index entr{'y' if result.reused == 1 else 'ies'}; "
              f"removed {result.index_removed} old index object(s)")
        if result.dropped:
            print(f"{result.dropped} pack(s) the old index named are gone from the target")
        if result.damaged_blobs:
            print(f"{result.damaged_blobs} damaged blob(s) left out")
        if result.unreadable or result.damaged_blobs or result.dropped:
            print("run `repair snapshots` to find the snapshots that lost data")
    return 1 if result.unreadable or result.damaged_blobs else 0


@repair.command("snapshots")
@common_options
@click.option("--forget", "forget_old", is_flag=True,
              help="Store repaired copies and delete the damaged originals (without it, only report).")
def repair_snapshots_command(common: Common, forget_old: bool) -> int:
    """Find snapshots whose trees or file contents are missing (exit 1 if any).

    With --forget each gets a copy in which a file with missing content is
    empty and an unreadable directory is empty, naming the original, which is
    then deleted; a snapshot whose root tree is gone is deleted. Run `repair
    index` first when packs were lost or damaged."""
    from strongroom.engine.repair import repair_snapshots

    repo = common.open()
    with common.lock(repo, exclusive=forget_old, writes=forget_old, what="repair snapshots"):
        report = repair_snapshots(repo, forget=forget_old)
    damaged = report.damaged
    if common.json:
        emit_json({"forget": forget_old, "snapshots": len(report.snapshots), "damaged_snapshots": len(damaged),
                   "damaged": [{"snapshot_id": r.snapshot.id, "short_id": r.snapshot.short_id,
                                "damaged_nodes": r.damaged, "root_missing": r.root_missing,
                                "new_snapshot_id": r.new.id if r.new else None, "removed": r.removed}
                               for r in damaged],
                   "paths": report.paths, "unreadable_snapshots": report.damaged_objects,
                   "missing_packs": report.missing_packs,
                   "storage": repo.requests})
    else:
        for problem in report.damaged_objects:
            print(f"unreadable snapshot {problem}")
        for line in report.paths:
            print(f"  {line}")
        for r in damaged:
            if r.root_missing:
                print(f"{r.snapshot.short_id}: root tree unreadable ({r.root_missing}): "
                      + ("removed" if r.removed else "would be removed"))
            else:
                print(f"{r.snapshot.short_id}: {r.damaged} damaged entr{'y' if r.damaged == 1 else 'ies'}"
                      + (f": repaired as {r.new.short_id}" if r.new else ""))
        print(f"{len(damaged)} of {len(report.snapshots)} snapshot(s) damaged"
              + ("" if forget_old or not damaged else "; run `repair snapshots --forget` to repair them"))
        if report.missing_packs:
            print(f"{report.missing_packs} pack(s) the index names are gone from the target: run `repair index` "
                  f"so that it no longer names them")
    if forget_old:
        return 1 if report.damaged_objects else 0
    return 1 if damaged or report.damaged_objects else 0


COMMANDS = [tag, rewrite, repair]
