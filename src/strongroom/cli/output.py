"""Showing engine events: a progress bar on a terminal, JSON lines, or quiet.

Every JSON object printed carries `message_type` (restic's names) and
`schema` (SCHEMA); docs/json.md describes each one. Human text uses one size
format (binary units), one date format and counted nouns (`plural`).
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from strongroom.engine.progress import event_type
from strongroom.words import human_size, plural  # noqa: F401  (the commands import them from here)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

SCHEMA = "strongroom/1"


def json_object(obj: dict) -> dict:
    """`obj` as printed: message_type and schema first. `type`, the name
    before schema 1, is kept beside message_type for scripts that read it."""
    kind = event_type(obj)
    rest = {k: v for k, v in obj.items() if k not in ("message_type", "type", "schema")}
    return {"message_type": kind, "schema": SCHEMA, **rest, **({"type": kind} if kind else {})}


def emit_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(json_object(obj)) + "\n")
    sys.stdout.flush()


def emit_json_array(items: list[dict]) -> None:
    """One JSON array, as restic prints a listing (snapshots --json)."""
    sys.stdout.write(json.dumps(items) + "\n")
    sys.stdout.flush()


def local_time(when: str | datetime) -> str:
    """One date format for tables and summaries: local time, to the second."""
    moment = datetime.fromisoformat(when) if isinstance(when, str) else when
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def rfc3339(when: str | datetime) -> str:
    """The date format of JSON: RFC 3339 with the offset (local time when none was recorded)."""
    moment = datetime.fromisoformat(when) if isinstance(when, str) else when
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.isoformat()


def status_line(event: dict) -> str:
    """What a status event says, in words, beside the bar."""
    action = event.get("action")
    errors = event.get("error_count") or 0
    tail = f", {plural(errors, 'error')}" if errors else ""
    if action == "backup":
        current = event.get("current_files") or []
        now = f"  {current[0]}" if current else ""
        if not event.get("scan_finished"):
            return f"{event['files_done']} of {event['total_files']} files found so far{tail}{now}"
        return f"{event['files_done']} of {plural(event['total_files'], 'file')}{tail}{now}"
    if action == "restore":
        done = event["files_restored"] + event["files_skipped"]
        return f"{done} of {plural(event['total_files'], 'file')}{tail}"
    if action == "check":
        if event.get("phase") == "read-data":
            return f"{event['packs_done']} of {plural(event['total_packs'], 'pack')} read{tail}"
        return (f"{event['snapshots_done']} of {plural(event['total_snapshots'], 'snapshot')}, "
                f"{plural(event['trees_done'], 'tree')}{tail}")
    if "files_done" in event and action is None:
        return plural(event["files_done"], "file")
    if action == "prune":
        return f"{event['packs_done']} of {plural(event['total_packs'], 'pack')} repacked"
    if action == "copy":
        return (f"{event['points_done']} of {plural(event['total_points'], 'point')}, "
                f"{plural(event['blobs_sent'], 'blob')} sent{tail}")
    return ""


def _amounts(event: dict) -> tuple[int, int | None]:
    if event.get("action") == "restore":
        return event["bytes_restored"] + event["bytes_skipped"], event.get("total_bytes") or None
    if event.get("action") == "copy":
        return event["bytes_sent"], None
    return event.get("bytes_done", 0), event.get("total_bytes") or None


class Reporter:
    """Turns engine events into output; use as the engine's listener."""

    def __init__(self, json_mode: bool, action: str, quiet: bool = False) -> None:
        self.json_mode = json_mode
        self.action = action
        self._console: Console | None = None
        self._lock = threading.Lock()
        self.progress: Progress | None = None
        self._task = None
        if not json_mode and not quiet and sys.stderr.isatty():
            from rich import progress as bars

            BarColumn, TextColumn = bars.BarColumn, bars.TextColumn
            self.progress = bars.Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[line]}", markup=False),
                console=self.console, transient=True,
            )
            self.progress.start()
            self._task = self.progress.add_task(action, total=None, line="")

    @property
    def shows_progress(self) -> bool:
        """Whether progress reaches anyone: a bar on a terminal, or --json's
        status lines. Without either, work done only for progress (counting
        a backup's totals ahead of it) is left out."""
        return self.json_mode or self.progress is not None

    @property
    def console(self) -> "Console":
        """Made when first needed: rich costs a tenth of a second to import, and
        a quiet or JSON run that meets no error never prints through it."""
        if self._console is None:
            from rich.console import Console

            # soft_wrap: an error stays one line (a path is never broken at column 80).
            self._console = Console(stderr=True, soft_wrap=True)
        return self._console

    def __call__(self, event: dict) -> None:
        with self._lock:
            kind = event_type(event)
            if self.json_mode:
                emit_json(event)
            elif kind == "error":
                # Escaped: a path like x[/y] or a name like a[b] is text, never markup
                # (an unmatched closing tag raised, and stopped a restore halfway).
                from rich.markup import escape

                what = escape(terminal_safe(event.get("item") or event.get("path") or event.get("object")))
                self.console.print(f"[red]error:[/red] {what}: {escape(terminal_safe(event['message']))}",
                                   markup=True, highlight=False)
            elif kind == "warning":
                self.console.print(f"warning: {terminal_safe(event['message'])}", markup=False, highlight=False)
            elif kind in ("waiting", "recovered"):
                # The storage's one line per wait, as EventRelay prints it
                # when no progress is shown.
                self.console.print(f"strongroom: {event['message']}", markup=False, highlight=False)
            if kind == "status" and self.progress is not None:
                done, total = _amounts(event)
                fraction = event.get("percent_done")
                if fraction is None:  # a status from outside the engine (recover's, from its session)
                    fraction = min(1.0, done / total) if total else 0.0
                seconds = event.get("seconds_elapsed") or 0
                rate = f", {human_size(done / seconds)}/s" if seconds else ""
                left = event.get("seconds_remaining")
                eta = f", {human_duration(left)} left" if left else ""
                amount = f"{human_size(done)} of {human_size(total)}{rate}{eta}" if total else \
                    human_size(done) if done else ""
                line = "; ".join(part for part in (amount, status_line(event)) if part)
                self.progress.update(self._task, completed=fraction, total=1.0, line=line)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def warn_damaged_snapshot(name: str, error: Exception) -> None:
    """Listing snapshots goes on past a damaged one; say which was left out."""
    print(f"strongroom: warning: skipping {name}: {error}", file=sys.stderr)


_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7f, *range(0x80, 0xa0))}


def terminal_safe(text: object) -> str:
    """A name from a repository as text for a terminal: control characters
    (escape sequences, newlines, C1 codes) as \\xNN, so a crafted file name
    cannot move the cursor, rewrite the screen or fake an extra line."""
    return str(text).translate(_CONTROLS)


def human_ratio(x: float) -> str:
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"


def describe_storage(files_bytes: int, new_bytes: int, stored: int, verb: str = "stored") -> str:
    """How much less was stored than the files hold, in words: the whole gain,
    then its two parts. dedup = file bytes per new byte (data not already in
    the repository); compression = new bytes per stored byte (encryption's
    overhead included), so the whole is their product."""
    if not stored:
        return f"{verb} nothing new for {human_size(files_bytes)} of files: all of it was in the repository already"
    whole = f"{verb} {human_size(stored)} for {human_size(files_bytes)} of files"
    if not files_bytes or not new_bytes:
        return whole
    if stored >= files_bytes:
        return f"{whole}: no smaller (on this little data, encryption and trees cost more than dedup saves)"
    if files_bytes / stored < 1.05:
        return f"{whole}: about as much (little in it to dedup or compress)"
    return (f"{whole}: {human_ratio(files_bytes / stored)} smaller (dedup {human_ratio(files_bytes / new_bytes)}, "
            f"compression {human_ratio(new_bytes / stored)})")


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
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
