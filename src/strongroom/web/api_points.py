"""Recovery points in the console's API: the list, a point's folders, one
file's bytes, a folder as a tar stream, a name searched across points, the
comparison of two points, and restores running in the background.

Everything goes through the services (BackupService, RecoveryService) and
the engine functions the command line uses (`strongroom dump`, `find`,
`diff`). A path from the browser is a path inside the point (`point_path`);
a restore's target passes `check_restore_target` (services/restore_target.py).
"""

from __future__ import annotations

import glob
import re
import threading
import time
from datetime import datetime, timezone
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from concurrent.futures import Future

from strongroom.errors import SnapshotNotFound, StorageError, StrongroomError, UsageError

POINT_ID = re.compile(r"[0-9a-fA-F]{8,64}")
SESSION_ID = re.compile(r"[0-9A-Za-z_-]{1,100}")
MAX_MATCHES = 1000  # names a search answers at most
MAX_CHANGES = 5000  # changes a comparison answers at most
MAX_PATHS = 1000  # entries a restore may select
MAX_ENTRIES = 5000  # entries of a folder one answer holds at most
PAGE_ENTRIES = 500  # entries of a folder the browse page shows at once
PUBLISH_EVERY = 0.25  # seconds between two progress events of one restore
LIST_WAIT = 5.0  # seconds a list of points waits for one repository


class RestoreRequest(BaseModel):
    paths: list[str] = Field(default_factory=list, max_length=MAX_PATHS,
                             description="Paths in the point to restore; empty: the whole point.")
    target: str = Field(description="The absolute folder to restore into.")


# ---- paths and points ------------------------------------------------------------------


def point_path(path: str | None) -> str:
    """A path inside a point, from the browser: relative to the point's root,
    normalised (`a//b/./c` is `a/b/c`, the root is ""). NUL and `..` are refused."""
    path = path or ""
    if "\0" in path:
        raise UsageError("a path must not hold a NUL character")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UsageError("a path must not hold `..`")
    return "/".join(parts)


def shown(path: str) -> str:
    return "/" + path


def check_point_id(point_id: str) -> str:
    if not POINT_ID.fullmatch(point_id):
        raise UsageError("a point id is 8 to 64 hexadecimal characters")
    return point_id.lower()


def locate(service, point_id: str):
    """(config, repository, snapshot) of a point, by id or unique prefix, in any configuration."""
    return service.find_snapshot(check_point_id(point_id))


def point_document(p) -> dict:
    return {"id": p.id, "short_id": p.id[:8], "time": p.time.isoformat(), "config": p.config_name,
            "kind": p.kind, "paths": list(p.paths), "hostname": p.hostname, "tags": list(p.tags),
            "size": p.total_bytes or None, "files": p.total_files or None}


def mtime(ns: int) -> str:
    """A node's time as RFC 3339 in UTC, to the microsecond."""
    return datetime.fromtimestamp(ns // 1000 / 1e6, timezone.utc).isoformat()


def entry_document(node, parent: str) -> dict:
    path = (parent + "/" if parent else "") + node.display_name
    doc = {"name": node.display_name, "path": shown(path), "type": node.type, "size": node.size,
           "mtime": mtime(node.mtime_ns), "mode": node.mode}
    if node.type == "symlink":
        doc["target"] = node.target.decode("utf-8", "backslashreplace")
    return doc


def attachment(name: str) -> str:
    """A Content-Disposition naming the download: an ASCII fallback with anything
    doubtful replaced, and the exact name percent-encoded (RFC 6266 / 8187)."""
    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;%' else "_" for c in name) or "download"
    exact = quote(name.encode("utf-8", "surrogateescape"), safe="")
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{exact}"


def download_headers(name: str) -> dict[str, str]:
    return {"Content-Disposition": attachment(name), "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store"}


def local_repositories(service) -> tuple[str, ...]:
    return tuple(c.target_path for c in service.list_configs() if c.is_local and c.target_path)


def session_document(progress) -> dict:
    """A restore session as the API and the live feed say it."""
    status = "done" if progress.status == "completed" else progress.status
    percent = 1.0 if status == "done" else round(progress.percent / 100.0, 4)
    return {"session": progress.session_id, "status": status,
            "progress": {"percent_done": percent, "files_done": progress.processed_files,
                         "total_files": progress.total_files, "bytes_done": progress.processed_bytes,
                         "total_bytes": progress.total_bytes,
                         "seconds_elapsed": round(max(0.0, time.time() - progress.started.timestamp()), 1),
                         "seconds_remaining": progress.eta},
            "error": "; ".join(progress.errors[:5]) or None}


def include_globs(paths: list[str]) -> tuple[str, ...]:
    """Anchored restore globs matching exactly these paths (and what is below them)."""
    return tuple("/" + glob.escape(p) for p in paths)


# ---- what the routes and the pages answer --------------------------------------------


_listing_lock = threading.Lock()
_listings: dict[tuple[int, str], Future] = {}  # (manager, configuration): its listing in flight


def points_within(manager, name: str, wait: float = LIST_WAIT) -> list:
    """`manager.list_recovery_points(name)`, waited for at most `wait` seconds: a
    repository that does not answer (a dead WebDAV server, a hung mount) costs a
    page `wait` seconds and an error in words, not the storage's own timeouts.
    The listing goes on in its thread; a request for the same configuration
    meanwhile waits on that one instead of starting another, so a user who
    clicks again and again does not pile up threads behind a dead target."""
    key = (id(manager), name)
    with _listing_lock:
        future = _listings.get(key)
        if future is None:
            future = _listings[key] = Future()

            def run() -> None:
                try:
                    future.set_result(manager.list_recovery_points(name))
                except BaseException as e:  # handed to the waiting request
                    future.set_exception(e)
                finally:
                    with _listing_lock:
                        if _listings.get(key) is future:
                            del _listings[key]

            threading.Thread(target=run, name=f"points-{name[:20]}", daemon=True).start()
    try:
        return future.result(timeout=wait)
    except TimeoutError:
        raise StorageError(f"its repository did not answer within {wait:g} s") from None


def points_document(service, manager, config: str | None = None) -> dict:
    """The points of one configuration (or of all), newest first, and the
    configurations whose repository could not be read (never an empty list as
    if they had none)."""
    configs = [service.get_config(config)] if config else service.list_configs()
    points, errors = [], []
    for c in configs:
        try:
            points += points_within(manager, c.name)
        except StrongroomError as e:
            errors.append({"config": c.name, "error": str(e)})
    points.sort(key=lambda p: (p.time, p.id), reverse=True)
    return {"points": [point_document(p) for p in points], "errors": errors}


def search_points(service, name: str, config: str | None = None, limit: int = MAX_MATCHES) -> dict:
    """Entries whose name matches the glob (`strongroom find`), newest points
    first, at most `limit` of them (`truncated` says when there were more)."""
    from strongroom.engine.find import FindQuery, find_in_snapshot

    if "\0" in name:
        raise UsageError("a name must not hold a NUL character")
    query = FindQuery((name,))
    configs = [service.get_config(config)] if config else service.list_configs()
    matches, errors, searched, truncated = [], [], 0, False
    for c in configs:
        if truncated:
            break
        try:
            repo = service.open_repository(c)
            with repo.lock(exclusive=False, wait=10):
                for snap in reversed(service.snapshots(c, repo)):
                    searched += 1
                    for path, node in find_in_snapshot(repo, snap, query):
                        if len(matches) >= limit:
                            truncated = True
                            break
                        folder = path.rsplit("/", 1)[0]
                        matches.append({"point": snap.id, "short_id": snap.short_id, "config": c.name,
                                        "time": snap.datetime.isoformat(), "path": path,
                                        "folder": folder or "/", "type": node.type, "size": node.size})
                    if truncated:
                        break
        except StrongroomError as e:
            errors.append({"config": c.name, "error": str(e)})
    return {"name": name, "matches": matches, "truncated": truncated, "limit": limit,
            "points_searched": searched, "errors": errors}


CHANGE_WORDS = {"+": "added", "-": "removed", "M": "changed", "T": "type changed", "U": "metadata changed"}


def compare_points(service, first: str, second: str, limit: int = MAX_CHANGES) -> dict:
    """The engine's diff of two points of one repository (`strongroom diff`), at most `limit` changes."""
    from strongroom.engine.diff import diff_trees
    from strongroom.model.select import find_snapshot

    config, repo, a = locate(service, first)
    try:
        b = find_snapshot(service.snapshots(config, repo), check_point_id(second))
    except SnapshotNotFound:
        service.find_snapshot(check_point_id(second))  # 404 when it is nowhere
        raise UsageError("the two points are in different configurations") from None
    changes, counts, truncated = [], dict.fromkeys(CHANGE_WORDS.values(), 0), False
    with repo.lock(exclusive=False, wait=10):
        for change in diff_trees(repo, bytes.fromhex(a.tree), bytes.fromhex(b.tree)):
            status = CHANGE_WORDS[change["change"]]
            counts[status] += 1
            if len(changes) >= limit:
                truncated = True
                continue
            changes.append({"status": status, "change": change["change"], "path": change["path"],
                            "size": change["size"]})
    return {"from": a.id, "to": b.id, "config": config.name, "changes": changes, "counts": counts,
            "added": [c["path"] for c in changes if c["change"] == "+"],
            "removed": [c["path"] for c in changes if c["change"] == "-"],
            "changed": [c["path"] for c in changes if c["change"] in ("M", "T", "U")],
            "truncated": truncated, "limit": limit}


def folder_document(service, point_id: str, path: str | None, offset: int = 0,
                    limit: int = MAX_ENTRIES, dirs_first: bool = False) -> dict:
    """The entries of folder `path` of a point (404 when it has none such; 400 for
    a file): at most `limit` of them from `offset`, in name order (folders first
    with `dirs_first`). `total` counts them all; `truncated` says more follow."""
    from strongroom.engine.tree_walk import resolve

    config, repo, snap = locate(service, point_id)
    where = point_path(path)
    tree_id, node = resolve(repo, bytes.fromhex(snap.tree), where)
    if node is not None and node.type != "dir":
        raise UsageError(f"{shown(where)} is a {node.type}, not a folder")
    nodes = repo.load_tree(tree_id).nodes if tree_id is not None else []
    if dirs_first:
        nodes = sorted(nodes, key=lambda n: (n.type != "dir", n.display_name))
    offset, limit = max(0, offset), max(1, min(limit, MAX_ENTRIES))
    shown_nodes = nodes[offset:offset + limit]
    return {"point": snap.id, "short_id": snap.short_id, "config": config.name,
            "time": snap.datetime.isoformat(), "kind": snap.kind, "path": shown(where),
            "entries": [entry_document(n, where) for n in shown_nodes],
            "total": len(nodes), "offset": offset, "limit": limit,
            "truncated": offset + len(shown_nodes) < len(nodes)}


# ---- the routes ------------------------------------------------------------------------


def routes(console) -> APIRouter:
    from strongroom.services.recovery import RecoveryService

    router = APIRouter(tags=["points"])
    service = console.reader.backup_service
    recovery = RecoveryService(service)

    @router.get("/api/points", summary="Recovery points, newest first")
    def list_points(config: str | None = None) -> dict:
        return points_document(service, recovery.points, config)

    @router.get("/api/points/search", summary="A file name (glob) searched across points")
    def search(name: str = Query(min_length=1, max_length=1000), config: str | None = None,
               limit: int = Query(MAX_MATCHES, ge=1, le=MAX_MATCHES)) -> dict:
        return search_points(service, name, config, limit)

    @router.get("/api/points/diff", summary="What changed between two points")
    def diff(from_: str = Query(alias="from"), to: str = Query(),
             limit: int = Query(MAX_CHANGES, ge=1, le=MAX_CHANGES)) -> dict:
        return compare_points(service, from_, to, limit)

    @router.get("/api/points/{point_id}", summary="One recovery point")
    def one_point(point_id: str) -> dict:
        return point_document(recovery.points.get_recovery_point(check_point_id(point_id)))

    @router.get("/api/points/{point_id}/tree", summary="The entries of a folder of a point")
    def tree(point_id: str, path: str = "", offset: int = Query(0, ge=0),
             limit: int = Query(MAX_ENTRIES, ge=1, le=MAX_ENTRIES)) -> dict:
        """At most `limit` entries from `offset` (name order); `total` counts them all."""
        return folder_document(service, point_id, path, offset, limit)

    @router.get("/api/points/{point_id}/file", summary="The bytes of one file of a point",
                response_class=StreamingResponse)
    def file(point_id: str, path: str = ""):
        from strongroom.engine.dump import file_chunks
        from strongroom.engine.tree_walk import resolve
        from strongroom.web.byte_pipe import ClosingStreamingResponse

        config, repo, snap = locate(service, point_id)
        where = point_path(path)
        _, node = resolve(repo, bytes.fromhex(snap.tree), where)
        if node is None or node.type == "dir":
            raise UsageError(f"{shown(where)} is a folder: download it with /api/points/ID/archive")
        if node.type != "file":
            raise UsageError(f"{shown(where)} is a {node.type}, not a file")
        lock = repo.lock(exclusive=False, wait=10)
        try:
            chunks = file_chunks(repo, node, shown(where))  # the index is checked before a byte goes out
        except BaseException:
            lock.release(best_effort=True)
            raise

        def stream():
            try:
                yield from chunks
            finally:
                lock.release(best_effort=True)

        headers = {**download_headers(node.display_name), "Content-Length": str(node.size)}
        return ClosingStreamingResponse(stream(), media_type="application/octet-stream", headers=headers,
                                        on_close=lambda: lock.release(best_effort=True))

    @router.get("/api/points/{point_id}/archive", summary="A folder of a point as a tar stream",
                response_class=StreamingResponse)
    def archive(point_id: str, path: str = ""):
        from strongroom.engine.dump import dump_archive, find_path
        from strongroom.web.byte_pipe import ClosingStreamingResponse, piped

        config, repo, snap = locate(service, point_id)
        where = point_path(path)
        names, node, tree_id = find_path(repo, snap, where)
        repo.load_index()

        def write(out) -> None:
            with repo.lock(exclusive=False, wait=10):
                dump_archive(repo, names, node, tree_id, out, "tar")

        name = (node.display_name if node is not None else f"point-{snap.short_id}") + ".tar"
        return ClosingStreamingResponse(piped(write, name=f"tar-{snap.short_id}"), media_type="application/x-tar",
                                 headers=download_headers(name))

    @router.post("/api/points/{point_id}/restore", summary="Restore a point, or some of its paths, into a folder")
    def restore(point_id: str, body: RestoreRequest) -> dict:
        from strongroom.engine.tree_walk import resolve
        from strongroom.services.restore_target import check_restore_target

        config, repo, snap = locate(service, point_id)
        paths = sorted({point_path(p) for p in body.paths})
        for p in paths:
            resolve(repo, bytes.fromhex(snap.tree), p)  # 404 for a path the point does not hold
        target = check_restore_target(body.target, local_repositories(service), console.reader.own_folders())
        known = threading.Event()
        holder: dict[str, object] = {"last": 0.0}

        def progress(event: dict) -> None:
            if event.get("message_type") != "status" or not known.wait(5):
                return
            now = time.monotonic()
            if now - holder["last"] < PUBLISH_EVERY:  # type: ignore[operator]
                return
            holder["last"] = now
            console.hub.publish({"type": "session", "session": holder["id"], "status": "running", "error": None,
                                 "progress": {k: event.get(k) for k in (
                                     "percent_done", "files_done", "total_files", "bytes_done", "total_bytes",
                                     "seconds_elapsed", "seconds_remaining")}})

        if paths and "" not in paths:
            session = recovery.selective_restore(config.name, include_globs(paths), target, point_id=snap.id,
                                                 progress=progress, real_target=True)
        else:
            session = recovery.one_click_restore(config.name, target, point_id=snap.id, progress=progress,
                                                 real_target=True)
        holder["id"] = session
        known.set()

        def finished() -> None:
            done = recovery.wait(session)
            console.hub.publish({"type": "session", **session_document(done)})

        threading.Thread(target=finished, name=f"restore-end-{session[:6]}", daemon=True).start()
        return {"session": session, "target": target, "point": snap.id, "config": config.name}

    def session_progress(session: str):
        if not SESSION_ID.fullmatch(session):
            raise UsageError("a session id is letters, digits, - and _")
        try:
            return recovery.get_recovery_progress(session)
        except UsageError:
            raise HTTPException(404, f"no restore session {session}") from None

    @router.get("/api/restores/{session}", summary="A restore session's progress")
    def restore_progress(session: str) -> dict:
        return session_document(session_progress(session))

    @router.post("/api/restores/{session}/cancel", summary="Ask a running restore to stop")
    def restore_cancel(session: str) -> dict:
        session_progress(session)
        return {"session": session, "cancelled": recovery.cancel_recovery(session)}

    return router
