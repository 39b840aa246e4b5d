"""find, dump, cat, cache: the read-only commands for looking into a repository."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from datetime import datetime, timezone

import click

from strongroom.atomic import replaced_whole
from strongroom.cli.cmd_restore import choose
from strongroom.cli.options import Common, common_options, snapshot_filter_options
from strongroom.cli.output import emit_json, human_size, terminal_safe, warn_damaged_snapshot
from strongroom.errors import UsageError
from strongroom.model.select import SnapshotFilter, filter_snapshots, find_snapshot, parse_time


def rfc3339(ns: int) -> str:
    """A time in nanoseconds as RFC 3339 in local time, to the nanosecond."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, timezone.utc).astimezone().isoformat(timespec="seconds")
    return f"{text[:19]}.{nanos:09d}{text[19:]}" if nanos else text


def _permissions(node) -> str:
    kinds = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "fifo": stat.S_IFIFO,
             "chardev": stat.S_IFCHR, "blockdev": stat.S_IFBLK, "socket": stat.S_IFSOCK}
    return stat.filemode(kinds[node.type] | node.mode)


# ---- find -------------------------------------------------------------------------


def _match_document(path: str, n) -> dict:
    doc = {"path": path, "type": n.type, "permissions": _permissions(n), "mode": n.mode,
           "mtime": rfc3339(n.mtime_ns), "ctime": rfc3339(n.ctime_ns), "uid": n.uid, "gid": n.gid,
           "user": n.user, "group": n.group, "inode": n.inode, "device_id": n.device, "links": n.links}
    if n.type == "file":
        doc["size"] = n.size
    elif n.type == "symlink":
        doc["linktarget"] = n.target.decode("utf-8", "backslashreplace")
    return doc


def _bound(text: str | None) -> int | None:
    if text is None:
        return None
    return int(parse_time(text).timestamp() * 1_000_000) * 1000


@click.command()
@common_options
@click.argument("patterns", nargs=-1, required=True)
@click.option("--oldest", metavar="TIME", help="Only entries modified at or after TIME.")
@click.option("--newest", metavar="TIME", help="Only entries modified at or before TIME.")
@click.option("-s", "--snapshot", "snapshot_ids", multiple=True, metavar="ID",
              help="Search only this snapshot (an id, a prefix or `latest`; repeat for more).")
@click.option("-i", "--ignore-case", is_flag=True, help="Match names without regard to case.")
@click.option("-l", "--long", "long_format", is_flag=True, help="Show mode, owner, size and time.")
@snapshot_filter_options
def find(common: Common, patterns, oldest, newest, snapshot_ids, ignore_case, long_format, host, tags,
         paths) -> None:
    """Find entries whose name (or, with `/`, whose path) matches a PATTERN, in every snapshot."""
    from strongroom.engine.find import FindQuery, find_in_snapshot
    query = FindQuery(tuple(patterns), ignore_case, _bound(oldest), _bound(newest))
    repo = common.open()
    with common.lock(repo, writes=False, what="find"):
        repo.load_index()
        every = repo.list_snapshots(warn_damaged_snapshot)
        flt = SnapshotFilter(host, tuple(tags), tuple(paths))
        if snapshot_ids:
            chosen = {s.id: s for s in (find_snapshot(every, spec, flt) for spec in snapshot_ids)}
            snaps = sorted(chosen.values(), key=lambda s: (s.datetime, s.id))
        else:
            snaps = filter_snapshots(every, flt)
        printer = _FindPrinter(common.json, long_format)
        for snap in snaps:
            hits = 0
            for path, node in find_in_snapshot(repo, snap, query):
                printer.match(snap, hits, path, node)
                hits += 1
            printer.end_snapshot(hits)
        printer.close()


class _FindPrinter:
    """The two shapes of find's output: text grouped per snapshot, or one JSON array
    written as matches are found (nothing is collected, whatever the number of hits)."""

    def __init__(self, json_mode: bool, long_format: bool) -> None:
        self.json_mode, self.long_format = json_mode, long_format
        self.out = sys.stdout
        self.groups = 0
        if json_mode:
            self.out.write("[")

    def match(self, snap, hits: int, path: str, node) -> None:
        if self.json_mode:
            if hits == 0:
                self.out.write(("," if self.groups else "") + f'{{"snapshot_id": {json.dumps(snap.id)}, "matches": [')
                self.groups += 1
            self.out.write(("" if hits == 0 else ", ") + json.dumps(_match_document(path, node), sort_keys=True))
            return
        if hits == 0:
            self.out.write(f"Found matching entries in snapshot {snap.short_id} from "
                           f"{snap.datetime.astimezone().strftime('%Y-%m-%d %H:%M:%S')}\n")
        if self.long_format:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(node.mtime_ns / 1e9))
            self.out.write(f"{_permissions(node)} {terminal_safe(node.user or node.uid):>8} "
                           f"{terminal_safe(node.group or node.gid):>8} {node.size:>12}  {when}  "
                           f"{terminal_safe(path)}\n")
        else:
            self.out.write(terminal_safe(path) + "\n")

    def end_snapshot(self, hits: int) -> None:
        if hits:
            self.out.write(f'], "hits": {hits}}}' if self.json_mode else "\n")

    def close(self) -> None:
        if self.json_mode:
            self.out.write("]\n")
        self.out.flush()


# ---- dump -------------------------------------------------------------------------


@click.command()
@common_options
@click.argument("snapshot")
@click.argument("path")
@click.option("-a", "--archive", type=click.Choice(["tar", "zip"]), default="tar", show_default=True,
              help="The archive format for a folder (a file is always its bytes).")
@click.option("-t", "--target", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@snapshot_filter_options
def dump(common: Common, snapshot, path, archive, target, host, tags, paths) -> None:
    """Write PATH of SNAPSHOT to stdout: a file byte for byte, a folder (or /) as an archive."""
    from strongroom.engine.dump import dump_target
    if target is None and sys.stdout.isatty():
        raise UsageError("stdout is a terminal: redirect it, or write to a file with --target FILE")
    repo = common.open()
    with common.lock(repo, writes=False, what="dump"):
        repo.load_index()
        snap, subpath = choose(repo, snapshot, host, tags, paths)
        where = "/".join(p for p in (subpath + "/" + path).split("/") if p)
        if target is None:
            result = dump_target(repo, snap, where, sys.stdout.buffer, archive)
            sys.stdout.buffer.flush()
            return
        result = _dump_to_file(repo, snap, where, archive, target, dump_target)
    result.update(snapshot_id=snap.id, target=target, storage=repo.requests)
    if common.json:
        emit_json(result)
    else:
        size = human_size(result["bytes"]) if "bytes" in result else f"{result['entries']} entries"
        print(f"dumped {result['path']} of snapshot {snap.short_id} to {target} ({size})", file=sys.stderr)


def _dump_to_file(repo, snap, where: str, archive: str, target: str, dump_target) -> dict:
    """Dump into a new file beside `target` (mode 0600), renamed over it once complete,
    so a failed dump never leaves a partial file or spoils an existing one."""
    with replaced_whole(target, 0o600, prefix=".strongroom-dump-") as out:
        return dump_target(repo, snap, where, out, archive)


# ---- cat --------------------------------------------------------------------------

_NEEDS_ID = {"snapshot": "ID", "index": "ID", "pack": "ID", "blob": "ID", "key": "ID", "lock": "ID",
             "tree": "SNAPSHOT[:PATH]"}


@click.command()
@common_options
@click.argument("kind", type=click.Choice(["config", "snapshot", "index", "pack", "blob", "key", "lock", "tree"]))
@click.argument("object_id", required=False, metavar="ID")
@snapshot_filter_options
def cat(common: Common, kind, object_id, host, tags, paths) -> None:
    """Print a repository object, decrypted: its JSON (a blob: its raw bytes)."""
    from strongroom.engine import cat as objects
    from strongroom.engine.tree_walk import resolve
    from strongroom.model.snapshot import SNAPSHOT_DIR
    if kind != "config" and not object_id:
        raise UsageError(f"cat {kind} needs {_NEEDS_ID[kind]}")
    if kind == "config" and object_id:
        raise UsageError("cat config takes no id")
    repo = common.open()
    with common.lock(repo, writes=False, what="cat"):
        if kind == "config":
            doc = objects.config_document(repo)
        elif kind == "snapshot":
            if object_id == "latest":
                snap = choose(repo, "latest", host, tags, paths)[0]
            else:
                snap = repo.load_snapshot(objects.find_object(repo, "snapshot", SNAPSHOT_DIR, object_id))
            doc = objects.snapshot_document(snap)
        elif kind == "index":
            doc = objects.index_document(repo, object_id)
        elif kind == "pack":
            doc = objects.pack_document(repo, object_id)
        elif kind == "key":
            doc = objects.key_document(repo, object_id)
        elif kind == "lock":
            doc = objects.lock_document(repo, object_id)
        elif kind == "blob":
            data = objects.blob_bytes(repo, objects.find_blob(repo, object_id))
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        else:
            repo.load_index()
            snap, subpath = choose(repo, object_id, host, tags, paths)
            tree_id, node = resolve(repo, bytes.fromhex(snap.tree), subpath)
            if tree_id is None:
                raise UsageError(f"{subpath} is not a folder in snapshot {snap.short_id}")
            doc = objects.tree_document(repo, tree_id)
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")


# ---- cache ------------------------------------------------------------------------


def _age(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:.0f} days ago" if days >= 2 else f"{seconds / 3600:.0f} hours ago" if seconds >= 7200 \
        else "just now" if seconds < 120 else f"{seconds / 60:.0f} minutes ago"


def _cache_document(c, now: float) -> dict:
    when = datetime.fromtimestamp(c.last_used, timezone.utc).astimezone().isoformat(timespec="seconds")
    return {"name": c.name, "path": c.path, "kind": c.kind, "repository_id": c.repository_id,
            "last_used": when, "age_days": round((now - c.last_used) / 86400, 2), "size": c.size}


@click.command()
@click.option("--cache-dir", envvar="STRONGROOM_CACHE_DIR", help="The cache root (default: the usual one).")
@click.option("--cleanup", is_flag=True, help="Remove repository caches not used for --max-age days.")
@click.option("--max-age", type=float, default=30, show_default=True, metavar="DAYS",
              help="With --cleanup: how long unused before a cache goes.")
@click.option("--no-size", is_flag=True, help="Do not measure the caches (faster on a large cache).")
@click.option("--json", "json_output", is_flag=True, help="One JSON object.")
def cache(cache_dir, cleanup, max_age, no_size, json_output) -> None:
    """List the local caches: what they belong to, their size, when last used."""
    from strongroom.paths import default_cache_root
    from strongroom.repo.cache_dirs import list_caches, remove_old
    root = cache_dir or default_cache_root()
    removed = remove_old(root, max_age, home=os.path.expanduser("~")) if cleanup else []
    caches = list_caches(root, measure=not no_size)
    now = time.time()
    if json_output:
        emit_json({"root": root, "caches": [_cache_document(c, now) for c in caches],
                   "removed": [_cache_document(c, now) for c in removed]})
        return
    for c in removed:
        print(f"removed {c.path} (last used {_age(now - c.last_used)})")
    if not caches:
        print(f"no caches in {root}")
        return
    print(f"caches in {root}:")
    print(f"{'kind':10} {'name':39} {'repository':32}  {'last used':>16}  {'size':>10}")
    for c in caches:
        size = "-" if c.size is None else human_size(c.size)
        old = "  (old)" if now - c.last_used > max_age * 86400 else ""
        print(f"{c.kind:10} {c.name:39} {c.repository_id or '?':32}  {_age(now - c.last_used):>16}  {size:>10}{old}")


COMMANDS = [find, dump, cat, cache]
