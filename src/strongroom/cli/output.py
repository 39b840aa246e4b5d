"""Showing engine events: a progress bar on a terminal, JSON lines, or quiet."""

from __future__ import annotations

import json
import sys
import threading

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn


def emit_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


class Reporter:
    """Turns engine events into output; use as the engine's listener."""

    def __init__(self, json_mode: bool, action: str, quiet: bool = False) -> None:
        self.json_mode = json_mode
        self.action = action
        # soft_wrap: an error stays one line (a path is never broken at column 80).
        self.console = Console(stderr=True, soft_wrap=True)
        self._lock = threading.Lock()
        self.progress: Progress | None = None
        self._task = None
        if not json_mode and not quiet and sys.stderr.isatty():
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TextColumn("{task.fields[files]} files"), TimeRemainingColumn(),
                console=self.console, transient=True,
            )
            self.progress.start()
            self._task = self.progress.add_task(action, total=None, files=0)

    def __call__(self, event: dict) -> None:
        with self._lock:
            kind = event.get("type")
            if self.json_mode:
                emit_json(event)
            elif kind == "error":
                # Escaped: a path like x[/y] or a name like a[b] is text, never markup
                # (an unmatched closing tag raised, and stopped a restore halfway).
                what = escape(str(event.get('path') or event.get('object')))
                self.console.print(f"[red]error:[/red] {what}: {escape(str(event['message']))}",
                                   markup=True, highlight=False)
            elif kind == "warning":
                self.console.print(f"warning: {event['message']}", markup=False, highlight=False)
            elif kind in ("waiting", "recovered"):
                # The storage's one line per wait, as EventRelay prints it
                # when no progress is shown.
                self.console.print(f"strongroom: {event['message']}", markup=False, highlight=False)
            if kind == "status" and self.progress is not None:
                total = event.get("total_bytes") or None
                self.progress.update(self._task, completed=event.get("bytes_done", event.get("bytes_read", 0)),
                                     total=total, files=event.get("files_done", 0))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def warn_damaged_snapshot(name: str, error: Exception) -> None:
    """Listing snapshots goes on past a damaged one; say which was left out."""
    print(f"strongroom: warning: skipping {name}: {error}", file=sys.stderr)


def human_size(n: int | float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def describe_estimate(e: dict) -> str:
    """One paragraph on what a backup is likely to cost."""
    seen = "measured on a sample of the new data" if e.get("compression_ratio_from") == "sampled" \
        else "seen in the repository so far"
    ratio = f"compression ratio {e['compression_ratio']} {seen}" if e["compression_ratio"] \
        else "no compression assumed: nothing to learn it from"
    when = f"about {human_duration(e['seconds'])}" if e["seconds"] is not None \
        else "time unknown until a run has been measured"
    budget = f" (the request budget allows {e['request_budget_per_second'] * 3600:.0f} per hour)" \
        if e["request_budget_per_second"] else ""
    return (f"estimate: read {human_size(e['bytes_to_read'])}, {human_size(e['new_bytes'])} of it new; "
            f"likely stored {human_size(e['bytes_likely_stored'])} ({ratio}); about {e['requests']} "
            f"requests{budget}; {when}")
