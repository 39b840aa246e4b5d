"""The report of a plan run, for a person and an auditor: Markdown, JSON or one HTML page.

`render(run, fmt, history)` gives the report of one run; `history` is the
plan's earlier runs (oldest first), of which the tests before this run make
the trend of RTO and RPO. Every value that came from a repository or a
command (names, paths, hook output) is escaped for the format: in Markdown
table-breaking and markup characters are backslashed and control characters
shown as \\xNN; in HTML everything is HTML-escaped (report_html.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence

from strongroom.dr.durations import format_seconds
from strongroom.dr.results import PlanRun, StepResult
from strongroom.dr.run_document import RunDocumentError, plan_run_from_dict
from strongroom.errors import UsageError

FORMATS = ("md", "json", "html")
TREND_RUNS = 20  # tests shown in the trend, this one included
OUTPUT_LINES = 20  # last lines of a command's output in a report
PROBLEM_FILES = 20  # files named per damaged object
REPORT_SCHEMA = "strongroom/1"  # the schema of the command line's JSON (cli/output.py)


# ---- facts common to every format -----------------------------------------------------


@dataclass(frozen=True)
class TrendPoint:
    """One test in the trend: when, its verdict, the RTO achieved and the oldest point it restored."""

    id: str
    started: datetime
    verdict: str
    rto_seconds: float
    rpo_seconds: float | None
    rto_target: float | None
    rpo_target: float | None

    def to_dict(self) -> dict:
        return {"id": self.id, "started": utc_text(self.started), "verdict": self.verdict,
                "rto_seconds": self.rto_seconds, "rpo_seconds": self.rpo_seconds,
                "rto_target": self.rto_target, "rpo_target": self.rpo_target}


def worst_rpo(run: PlanRun) -> float | None:
    """The age of the oldest point a run restored: the RPO it achieved."""
    ages = [s.rpo_seconds for s in run.steps if s.rpo_seconds is not None]
    return max(ages) if ages else None


def trend(run: PlanRun, history: Iterable[PlanRun]) -> list[TrendPoint]:
    """The tests of its plan up to and including `run` (the last point whatever its mode), at most TREND_RUNS."""
    earlier = [h for h in history if h.id != run.id and h.plan == run.plan and h.mode == "test"
               and h.started <= run.started]
    earlier.sort(key=lambda h: h.started)
    return [TrendPoint(r.id, r.started, r.verdict, r.rto_seconds, worst_rpo(r), r.rto_target, r.rpo_target)
            for r in (earlier + [run])[-TREND_RUNS:]]


def utc_text(when: datetime | None) -> str:
    if when is None:
        return "-"
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def size_text(n: float | None) -> str:
    """Binary units, as the command line shows sizes."""
    if n is None:
        return "-"
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{value:.0f} B" if unit == "B" else f"{value:.3g} {unit}"


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds:.2f}s"
    return f"{seconds:.1f}s" if seconds < 10 else format_seconds(seconds)


def against(achieved: float | None, target: float | None) -> str:
    """An achieved duration beside its target, and whether it met it."""
    if achieved is None:
        return "-" if target is None else f"- (target {format_seconds(target)})"
    if target is None:
        return f"{seconds_text(achieved)} (no target)"
    verdict = "met" if achieved <= target else "exceeded"
    return f"{seconds_text(achieved)} of {format_seconds(target)}: {verdict}"


def verification(step: StepResult) -> str:
    if step.verified:
        return f"every file verified ({step.files_verified})"
    if step.status == "skipped":
        return "not restored"
    if step.problems or step.errors:
        return f"failed: {len(step.problems)} damaged object(s), {step.files_verified} file(s) verified"
    return f"not verified ({step.files_verified} file(s) checked)"


def run_title(run: PlanRun) -> str:
    kind = "rehearsal (dr test)" if run.mode == "test" else "recovery (dr run)"
    return f"Disaster-recovery {kind}: {run.plan}"


def header_rows(run: PlanRun) -> list[tuple[str, str]]:
    return [
        ("Plan", f"{run.plan} (version {run.plan_version})"),
        ("Mode", f"{run.mode}, triggered by {run.trigger}"),
        ("Run", run.id),
        ("Host", run.host),
        ("strongroom", run.strongroom_version),
        ("Started", utc_text(run.started)),
        ("Finished", utc_text(run.finished)),
        ("Restored below", run.target_base + (" (kept)" if run.scratch_kept else
                                               " (removed afterwards)" if run.mode == "test" else "")),
        ("RTO target", format_seconds(run.rto_target)),
        ("RPO target", format_seconds(run.rpo_target)),
        ("RTO achieved", against(run.rto_seconds, run.rto_target)),
        ("RPO achieved", against(worst_rpo(run), run.rpo_target)),
        ("Cleanup", seconds_text(run.cleanup_seconds)),
    ]


def step_rows(step: StepResult) -> list[tuple[str, str]]:
    snapshot = "-" if step.snapshot is None else f"{step.snapshot[:16]} taken {utc_text(step.snapshot_time)}"
    rows = [
        ("Configuration", step.config),
        ("Repository", step.repository),
        ("Restored into", step.target),
        ("Snapshot", snapshot),
        ("Chosen by", step.rule),
        ("Age (RPO)", against(step.rpo_seconds, step.rpo_target)),
        ("Step duration", against(step.duration_seconds, step.rto_target)),
        ("Restore", f"{seconds_text(step.restore_seconds)}, {step.files} file(s), {size_text(step.bytes)}, "
                    f"{size_text(step.throughput)}/s"),
        ("Verification", verification(step)),
        ("Warnings, errors", f"{step.warnings}, {step.errors}"),
    ]
    if step.database:
        rows.append(("Database", step.database))
    return rows


def hook_result(hook) -> str:
    if hook.timed_out:
        return "timed out"
    if hook.exit_code is None:
        return "did not start"
    return "ok" if hook.ok else ("failed" if hook.mode == "essential" else "failed (optional)")


# ---- rendering ------------------------------------------------------------------------


def render(run: PlanRun, fmt: str, history: Sequence[PlanRun] = ()) -> str:
    """The report of `run` in `fmt` ("md", "json" or "html")."""
    return render_runs([run], fmt, history)


def render_runs(runs: Sequence[PlanRun], fmt: str, history: Sequence[PlanRun] = ()) -> str:
    """Several runs' reports: Markdown one after the other, JSON one object a line, HTML one page."""
    if fmt not in FORMATS:
        raise UsageError(f"report format must be one of {', '.join(FORMATS)}")
    if not runs:
        raise UsageError("no run to report")
    seen = {h.id for h in history}
    everything = list(history) + [r for r in runs if r.id not in seen]
    if fmt == "json":
        return "".join(json.dumps(report_document(r, trend(r, everything))) + "\n" for r in runs)
    if fmt == "html":
        from strongroom.dr.report_html import html_page
        return html_page([(r, trend(r, everything)) for r in runs])
    return "\n---\n\n".join(markdown(r, trend(r, everything)) for r in runs)


def report_document(run: PlanRun, points: list[TrendPoint]) -> dict:
    """The JSON report: the run as recorded, and the trend of RTO and RPO."""
    return {"message_type": "dr_report", "schema": REPORT_SCHEMA, **run.to_dict(),
            "rpo_seconds": worst_rpo(run), "trend": [p.to_dict() for p in points]}


HOOK_HEAD = ("Phase", "Command", "Mode", "Exit code", "Duration", "Result")
CHECK_HEAD = ("Repository", "Structure", "Packs read", "Share read", "Duration", "Problems")
RTO_HEAD = ("Step", "Duration", "Share", "Target")
TREND_HEAD = ("Started", "Verdict", "RTO", "RPO (oldest point)")


def hook_rows(step: StepResult) -> list[tuple[str, ...]]:
    return [(h.phase, h.command, h.mode, "-" if h.exit_code is None else str(h.exit_code),
             seconds_text(h.duration_seconds), hook_result(h)) for h in step.hooks]


def problem_lines(step: StepResult) -> list[str]:
    """Each damaged object and (some of) the files it touches, in words."""
    lines = []
    for p in step.problems:
        files = ", ".join(p.files[:PROBLEM_FILES]) or "-"
        more = f" and {len(p.files) - PROBLEM_FILES} more" if len(p.files) > PROBLEM_FILES else ""
        lines.append(f"damaged {p.object}: {p.message}; files: {files}{more}")
    return lines


def rto_rows(run: PlanRun) -> list[tuple[str, ...]]:
    """The RTO achieved, step by step, against the targets."""
    total = run.rto_seconds or 0.0
    rows = [(s.name, seconds_text(s.duration_seconds),
             f"{s.duration_seconds / total:.0%}" if total else "-", format_seconds(s.rto_target))
            for s in run.steps]
    rows.append(("whole plan", seconds_text(run.rto_seconds), "100%" if total else "-",
                 against(run.rto_seconds, run.rto_target)))
    return rows


def check_rows(run: PlanRun) -> list[tuple[str, ...]]:
    return [(c.repository, "ok" if c.structure_ok else "damaged", f"{c.packs_read} of {c.packs_total}",
             f"{c.share_read:.0%}", seconds_text(c.duration_seconds), "; ".join(c.problems) or "-")
            for c in run.checks]


def trend_rows(points: Sequence[TrendPoint]) -> list[tuple[str, ...]]:
    return [(utc_text(p.started), p.verdict, against(p.rto_seconds, p.rto_target),
             against(p.rpo_seconds, p.rpo_target)) for p in points]


# ---- Markdown -------------------------------------------------------------------------

_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7f, *range(0x80, 0xa0))}
_MARKUP = {ord(c): "\\" + c for c in "\\|<>[]`*"}


def md(text: object) -> str:
    """A value for a Markdown line or table cell: one line, nothing read as markup or a cell break."""
    return str(text).translate(_CONTROLS).translate(_MARKUP)


def _code_block(lines: Iterable[str]) -> list[str]:
    body = [str(line).translate(_CONTROLS) for line in lines]
    longest = max((len(run) for line in body for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, *body, fence]


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(md(cell) for cell in row) + " |" for row in rows]
    return lines


def markdown(run: PlanRun, points: list[TrendPoint]) -> str:
    out = [f"# {md(run_title(run))}", "", f"**Verdict: {md(run.verdict)}**", ""]
    out += [f"- {md(reason)}" for reason in run.reasons] or [f"- {md(pass_words(run))}"]
    out += ["", *_table(("", ""), header_rows(run))]
    for number, step in enumerate(run.steps, 1):
        out += ["", f"## Step {number}: {md(step.name)} ({md(step.status)})", "", *_table(("", ""), step_rows(step))]
        if step.messages:
            out += ["", *[f"- {md(m)}" for m in step.messages]]
        if step.problems:
            out += ["", *[f"- {md(line)}" for line in problem_lines(step)]]
        if step.hooks:
            out += ["", *_table(HOOK_HEAD, hook_rows(step))]
            for h in step.hooks:
                if h.output_tail:
                    out += ["", f"Last lines of the {md(h.phase)} command {md(h.command[:60])}:", "",
                            *_code_block(h.output_tail[-OUTPUT_LINES:])]
    out += ["", "## RTO", "", *_table(RTO_HEAD, rto_rows(run))]
    if run.checks:
        out += ["", "## Repository checks", "", *_table(CHECK_HEAD, check_rows(run))]
    out += ["", f"## Trend of the last {len(points)} test(s)", "", *_table(TREND_HEAD, trend_rows(points))]
    return "\n".join(out) + "\n"


__all__ = ["FORMATS", "RunDocumentError", "TrendPoint", "plan_run_from_dict", "render", "render_runs", "trend",
           "worst_rpo"]


def pass_words(run: PlanRun) -> str:
    """What a verdict without reasons means, in words."""
    if run.verdict != "pass":
        return "no reason recorded"
    targets = " and ".join(name for name, value in (("RTO", run.rto_target), ("RPO", run.rpo_target))
                           if value is not None)
    return (f"every step ({len(run.steps)}) restored and verified its files"
            + (f", within the plan's {targets} target{'s' if ' and ' in targets else ''}" if targets else ""))
