"""Progress is one stream of events from the engine.

An event is a plain dict with a "message_type" key ("status", "error",
"warning"; restic's names) and the fields docs/json.md lists for it. The CLI
draws bars or JSON lines from the stream, the services store it, and any
`listener` given to run_backup, run_restore or run_check gets the same dicts. A status event is
built by one of the `*_status` functions below from the running counters, so
each action's fields are defined in one place.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

Listener = Callable[[dict], None]

CURRENT_FILES_SHOWN = 4  # paths in a status event's current_files, at most


def ignore(event: dict) -> None:
    pass


def event_type(event: dict) -> str | None:
    """The kind of an event; storage-level warnings still say it as "type"."""
    return event.get("message_type") or event.get("type")


def error_event(message: str, item: str | None, during: str, **extra) -> dict:
    """An error as restic reports one (error.message, during, item); `path` and
    `message` at the top are strongroom's, kept for scripts that read them."""
    return {"message_type": "error", "error": {"message": message}, "during": during, "item": item or "",
            "path": item, "message": message, **extra}


def warning_event(message: str) -> dict:
    return {"message_type": "warning", "message": message}


class Counters:
    """Thread-safe running totals, the files being worked on now, and a
    throttled status event built by `status` (one of the functions below)."""

    def __init__(self, listener: Listener, status: Callable[["Counters", float], dict],
                 every: float = 0.25) -> None:
        self.listener = listener
        self.status = status
        self.every = every
        self.start = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()
        self.values: dict[str, int] = {}
        self.totals: dict[str, int] = {}
        self.totals_final = False
        self.current: dict[str, None] = {}  # insertion-ordered set

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                self.values[k] = self.values.get(k, 0) + v
        self.maybe_emit()

    def get(self, key: str) -> int:
        return self.values.get(key, 0)

    def set_totals(self, final: bool = False, **totals: int) -> None:
        with self._lock:
            self.totals.update(totals)
            self.totals_final = self.totals_final or final

    def total(self, key: str) -> int:
        return self.totals.get(key, 0)

    def begin(self, item: str) -> None:
        with self._lock:
            self.current[item] = None

    def end(self, item: str) -> None:
        with self._lock:
            self.current.pop(item, None)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def maybe_emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        with self._lock:
            event = self.status(self, now - self.start)
        self.listener(event)


def _fraction(done: int, total: int) -> float:
    """Done of total; nothing to do is all of it done (callers hold back a total not yet final)."""
    return min(1.0, done / total) if total > 0 else 1.0


def _remaining(elapsed: float, fraction: float, final: bool) -> dict:
    """restic's seconds_remaining, left out while it cannot be known."""
    if not final or fraction <= 0 or fraction >= 1:
        return {"seconds_remaining": 0} if fraction >= 1 else {}
    return {"seconds_remaining": int(elapsed / fraction - elapsed)}


def backup_status(c: Counters, elapsed: float) -> dict:
    total_files, total_bytes = c.total("files"), c.total("bytes")
    files_done, bytes_done = c.get("files_done"), c.get("bytes_done")
    if total_bytes:
        fraction = _fraction(bytes_done, total_bytes)
    else:  # nothing but empty files, links and the like: count the entries
        fraction = _fraction(files_done, total_files)
    if not c.totals_final:  # a total still growing is no finish line
        fraction = min(fraction, 0.999) if total_files else 0.0
    return {
        "message_type": "status", "action": "backup",
        "seconds_elapsed": int(elapsed), **_remaining(elapsed, fraction, c.totals_final),
        "percent_done": round(fraction, 4), "total_files": total_files, "files_done": files_done,
        "total_bytes": total_bytes, "bytes_done": bytes_done, "error_count": c.get("errors"),
        "current_files": list(c.current)[:CURRENT_FILES_SHOWN], "scan_finished": c.totals_final,
        "bytes_read": c.get("bytes_read"), "data_added_packed": c.get("data_added"),
    }


def restore_status(c: Counters, elapsed: float) -> dict:
    total_files, total_bytes = c.total("files"), c.total("bytes")
    files_done = c.get("files_restored") + c.get("files_skipped")
    bytes_done = c.get("bytes_restored") + c.get("bytes_skipped")
    fraction = _fraction(bytes_done, total_bytes) if total_bytes else _fraction(files_done, total_files)
    return {
        "message_type": "status", "action": "restore",
        "seconds_elapsed": int(elapsed), **_remaining(elapsed, fraction, True),
        "percent_done": round(fraction, 4), "total_files": total_files,
        "files_restored": c.get("files_restored"), "files_skipped": c.get("files_skipped"),
        "total_bytes": total_bytes, "bytes_restored": c.get("bytes_restored"),
        "bytes_skipped": c.get("bytes_skipped"), "error_count": c.get("errors"),
        "packs_read": c.get("packs_read"), "files_done": files_done, "bytes_done": bytes_done,
    }


def check_status(c: Counters, elapsed: float) -> dict:
    """Snapshots and trees while the structure is checked; packs with --read-data."""
    total_packs = c.total("packs")
    reading = total_packs > 0 or c.get("packs_done") > 0
    if reading:
        fraction = _fraction(c.get("packs_done"), total_packs)
    else:  # the snapshots are counted once they are loaded
        fraction = _fraction(c.get("snapshots_done"), c.total("snapshots")) if c.totals_final else 0.0
    return {
        "message_type": "status", "action": "check", "phase": "read-data" if reading else "structure",
        "seconds_elapsed": int(elapsed), **_remaining(elapsed, fraction, True),
        "percent_done": round(fraction, 4),
        "total_snapshots": c.total("snapshots"), "snapshots_done": c.get("snapshots_done"),
        "trees_done": c.get("trees_done"),
        "total_packs": total_packs, "packs_done": c.get("packs_done"),
        "total_bytes": c.total("bytes"), "bytes_done": c.get("bytes_done"),
        "error_count": c.get("errors"),
    }


def stored_bytes(summary: dict) -> int:
    """What a backup stored (after compression and encryption), from its summary
    of any schema: before schema 1, `data_added` held that number."""
    return summary.get("data_added_packed", summary.get("data_added")) or 0
