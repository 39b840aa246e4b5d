"""backup."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import replace
from typing import BinaryIO, Callable

import click

from strongroom.cli.by_config import config_option
from strongroom.cli.options import Common, common_options
from strongroom.cli.output import (Reporter, describe_estimate, describe_storage, emit_json, human_duration,
                                   human_size, local_time, plural)
from strongroom.engine.backup import BackupOptions, run_backup
from strongroom.engine.estimate import estimate_backup, run_summaries
from strongroom.engine.walk import ExcludeRules
from strongroom.errors import UsageError
from strongroom.model.select import parse_time

EXIT_PARTIAL = 3


MANAGED_RUN = [
    click.option("--priority", type=int, default=0, help="With --config: higher runs first when jobs queue up."),
    click.option("--attempts", type=click.IntRange(1), help="With --config: tries before giving up."),
    click.option("--no-wait", is_flag=True, help="With --config: queue the job and return; it runs in the background."),
    click.option("--background-child", is_flag=True, hidden=True),
]


@click.command()
@common_options
@config_option(allowed=("full", "dry_run"), managed=MANAGED_RUN, refusals={
    "paths": "backup --config NAME takes no paths: the configuration names its sources "
             "(change them with `strongroom config edit NAME --source PATH`)"})
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("-e", "--exclude", multiple=True, metavar="GLOB", help="Leave out paths matching GLOB.")
@click.option("--exclude-file", multiple=True, type=click.Path(), help="Read exclude globs from a file.")
@click.option("--exclude-if-present", multiple=True, metavar="NAME", help="Leave out directories holding NAME.")
@click.option("--exclude-caches", is_flag=True, help="Leave out directories with a valid CACHEDIR.TAG.")
@click.option("--exclude-larger-than", metavar="SIZE", help="Leave out files larger than SIZE (e.g. 1G).")
@click.option("-x", "--one-file-system", is_flag=True, help="Do not cross file system boundaries.")
@click.option("--tag", multiple=True, help="Tag the snapshot (repeatable, or comma-separated).")
@click.option("--host", help="Record this host name.")
@click.option("--time", "when", help="Record this time instead of now.")
@click.option("--parent", help="Compare against this snapshot instead of the latest one.")
@click.option("--full", is_flag=True, help="Read every file, trusting no parent.")
@click.option("-n", "--dry-run", is_flag=True, help="Read and report, store nothing.")
@click.option("--compression", help="Codec for this backup: zstd[:LEVEL], lz4, gzip, none.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Back up standard input.")
@click.option("--stdin-from-command", "from_command", is_flag=True,
              help="Back up the output of the command given as the arguments (after --); it must exit 0.")
@click.option("--stdin-filename", default="stdin", show_default=True,
              help="File name for --stdin or --stdin-from-command.")
def backup(common: Common, paths, exclude, exclude_file, exclude_if_present, exclude_caches, exclude_larger_than,
           one_file_system, tag, host, when, parent, full, dry_run, compression, from_stdin, from_command,
           stdin_filename, config) -> int:
    """Back up PATHS into a new snapshot (or configuration NAME with --config)."""
    if config:
        from strongroom.cli.cmd_managed import backup_config
        return backup_config(config.manage(common), config.name, full=full, dry_run=dry_run, **config.options)
    if from_stdin and paths:
        raise UsageError("give paths or --stdin, not both")
    if from_command and (from_stdin or not paths):
        raise UsageError("--stdin-from-command takes the command as its arguments: backup --stdin-from-command "
                         "-- CMD ARGS...")
    open_stream = None
    if from_command:
        from strongroom.sources.command import command_stream
        argv, paths = list(paths), ()
        open_stream = lambda: command_stream(argv, f"command {argv[0]}")  # noqa: E731
    return _backup(common, paths, exclude, exclude_file, exclude_if_present, exclude_caches, exclude_larger_than,
                   one_file_system, tag, host, when, parent, full, dry_run, compression,
                   stdin_filename if from_stdin or from_command else None, open_stream)


def _backup(common: Common, paths, exclude, exclude_file, exclude_if_present, exclude_caches, exclude_larger_than,
            one_file_system, tag, host, when, parent, full, dry_run, compression, stdin_filename,
            open_stream: Callable[[], AbstractContextManager[BinaryIO]] | None) -> int:
    tags = tuple(t.strip() for group in tag for t in group.split(",") if t.strip())
    options = BackupOptions(
        paths=tuple(paths),
        excludes=ExcludeRules.build(exclude, exclude_file, exclude_if_present, exclude_caches,
                                    exclude_larger_than, one_file_system),
        tags=tags, host=host, time=parse_time(when) if when else None, parent=parent, full=full,
        dry_run=dry_run, compression=compression, stdin_filename=stdin_filename,
    )
    repo = common.open()
    reporter = Reporter(common.json, "backup", quiet=common.quiet)
    options = replace(options, count_totals=reporter.shows_progress)
    common.events.listener = reporter
    try:
        with common.lock(repo, writes=not dry_run, what="backup"):
            if open_stream is None:
                result = run_backup(repo, options, reporter)
            else:
                # The command starts once the repository is open and locked.
                with open_stream() as stream:
                    result = run_backup(repo, replace(options, stdin_stream=stream), reporter)
    finally:
        reporter.close()
    s = result.summary
    estimate = estimate_backup(repo, s, run_summaries(repo.list_snapshots(on_damaged=lambda *_: None))) \
        if dry_run else None
    snap = result.snapshot if result.snapshot and not dry_run else None
    if common.json:
        emit_json({"message_type": "summary", "action": "backup", **s,
                   "snapshot_id": snap.id if snap else None, "snapshot": snap.id if snap else None,
                   "kind": result.snapshot.kind if result.snapshot else None, "dry_run": dry_run,
                   **({"estimate": estimate} if dry_run else {}), "storage": repo.requests})
    elif not common.quiet:
        print(f"files: {s['files_new']} new, {s['files_changed']} changed, {s['files_unmodified']} unmodified; "
              f"directories: {s['dirs_new']} new, {s['dirs_changed']} changed, {s['dirs_unmodified']} unmodified")
        print(f"processed {plural(s['total_files_processed'], 'file')}, {human_size(s['total_bytes_processed'])} "
              f"(read {human_size(s['bytes_read'])}) in {human_duration(s['total_duration'])}")
        print(describe_storage(s["total_bytes_processed"], s["data_added"],
                               s["data_added_packed"] if not dry_run else 0, "stored")
              if not dry_run else f"would add {human_size(s['data_added_raw'])} of new data "
                                  f"({plural(s['data_blobs'], 'new chunk')})")
        if snap is not None:
            print(f"snapshot {snap.short_id} saved ({snap.kind}, {local_time(snap.time)})")
        if estimate is not None:
            print(describe_estimate(estimate))
        if result.errors:
            print(f"{plural(len(result.errors), 'file')} could not be read completely; see the errors above")
    return EXIT_PARTIAL if result.errors else 0


COMMANDS = [backup]
