"""Results of a benchmark run and their Markdown report.

Every round's numbers are kept (the JSON has them all); the tables show the
median over the rounds in which a step succeeded, and say when it failed in
some. Goals are the issue's, strongroom against restic: time ratios of at most
0.8 for the backups and the check, 0.6 for the restore, 1.0 for `snapshots`;
peak RSS and repository size at most restic's.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from verify import Verification

MIB = 1 << 20

STEPS = ("init", "backup_initial", "backup_unchanged", "backup_changed", "restore", "check",
         "snapshots", "forget_prune")
STEP_TITLES = {
    "init": "init",
    "backup_initial": "first backup",
    "backup_unchanged": "unchanged re-backup",
    "backup_changed": "small-change backup",
    "restore": "restore latest",
    "check": "check --read-data",
    "snapshots": "snapshots (list)",
    "forget_prune": "forget all but the latest, prune",
}
BACKUP_STEPS = ("backup_initial", "backup_unchanged", "backup_changed")
TIME_GOALS = {"backup_initial": 0.8, "backup_unchanged": 0.8, "backup_changed": 0.8, "check": 0.8,
              "restore": 0.6, "snapshots": 1.0}
RSS_GOAL = SIZE_GOAL = 1.0
STARTUP_GOAL_SECONDS = 0.060
MET, MISSED = "✓", "✗ missed"


@dataclass
class StepResult:
    status: str  # ok, warning, failed, not run
    seconds: float | None = None
    cpu_seconds: float | None = None
    peak_rss_mib: float | None = None
    exit_code: int | None = None
    load: float | None = None  # one-minute load average as the step started
    cache_seconds: float | None = None  # syncing and dropping the cache before it, not counted
    log_tail: str = ""

    @property
    def usable(self) -> bool:
        return self.status in ("ok", "warning")


@dataclass
class ToolRound:
    steps: dict[str, StepResult] = field(default_factory=dict)
    repo_size: dict[str, dict[str, int]] = field(default_factory=dict)
    restore: Verification | None = None
    verify_seconds: float | None = None  # hashing the restored tree, not counted
    stopped_after: str = ""  # the fatal step that failed


@dataclass
class Round:
    index: int
    dataset: dict
    tools: dict[str, ToolRound]


@dataclass
class ToolInfo:
    name: str
    version: str = ""
    skipped: str = ""  # why the tool did not run at all


@dataclass
class Report:
    meta: dict
    dataset: dict
    tools: dict[str, ToolInfo]
    rounds: list[Round] = field(default_factory=list)
    startup: dict[str, dict[str, list[float]]] = field(default_factory=dict)


# --------------------------------------------------------------------------
# Medians


def step_runs(report: Report, tool: str, step: str) -> list[StepResult]:
    return [r.tools[tool].steps[step] for r in report.rounds if step in r.tools[tool].steps]


def median_of(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def step_median(report: Report, tool: str, step: str, what: str) -> float | None:
    return median_of([getattr(s, what) for s in step_runs(report, tool, step) if s.usable])


def size_median(report: Report, tool: str, key: str) -> float | None:
    return median_of([r.tools[tool].repo_size[key]["allocated_bytes"] for r in report.rounds
                      if key in r.tools[tool].repo_size])


def worst_rss(report: Report, tool: str) -> tuple[float, str] | None:
    """The largest median peak RSS over the steps, and that step."""
    peaks = [(step_median(report, tool, step, "peak_rss_mib"), step) for step in STEPS]
    peaks = [(peak, step) for peak, step in peaks if peak is not None]
    return max(peaks) if peaks else None


def medians(report: Report) -> dict:
    """Per tool and step, the medians the tables show (also written to the JSON)."""
    result = {}
    for name, info in report.tools.items():
        if info.skipped:
            continue
        steps = {step: {what: step_median(report, name, step, what)
                        for what in ("seconds", "cpu_seconds", "peak_rss_mib")} for step in STEPS}
        sizes = {key: size_median(report, name, key) for key in ("after_first_backup", "final", "after_prune")}
        startup = report.startup.get(name, {})
        result[name] = {"steps": steps, "repo_allocated_bytes": sizes,
                        "startup_seconds": median_of(startup.get("seconds", []))}
    return result


# --------------------------------------------------------------------------
# Cells


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def format_ratio(value: float | None) -> str:
    return f"{value:.2f}×" if value is not None else "–"


def goal_mark(value: float | None, goal: float) -> str:
    if value is None:
        return f"≤ {goal:.1f} ?"
    return f"≤ {goal:.1f} {MET if value <= goal else MISSED}"


def failures(report: Report, tool: str, step: str) -> str:
    runs = step_runs(report, tool, step)
    failed = [s for s in runs if s.status == "failed"]
    if not failed:
        return ""
    return f" **FAILED in {len(failed)} of {len(runs)} rounds** (exit {failed[0].exit_code})"


def step_cell(report: Report, tool: str, step: str) -> str:
    runs = step_runs(report, tool, step)
    if not runs or all(s.status == "not run" for s in runs):
        return "not run"
    seconds = step_median(report, tool, step, "seconds")
    if seconds is None:
        return failures(report, tool, step).strip()
    cell = f"{seconds:.2f} s · {step_median(report, tool, step, 'peak_rss_mib'):.0f} MiB"
    warned = [s for s in runs if s.status == "warning"]
    if warned:
        cell += f" (exit {warned[0].exit_code}: files unreadable)"
    return cell + failures(report, tool, step)


def cpu_cell(report: Report, tool: str, step: str) -> str:
    cpu = step_median(report, tool, step, "cpu_seconds")
    return f"{cpu:.2f} s" if cpu is not None else "–"


def restore_cell(report: Report, tool: str) -> str:
    checked = [r.tools[tool].restore for r in report.rounds if r.tools[tool].restore is not None]
    if not checked:
        return "not verified"
    bad = [v for v in checked if not v.identical]
    if bad:
        return f"**{bad[0].describe()}** ({len(bad)} of {len(checked)} rounds)"
    return f"{checked[0].describe()} ({len(checked)} of {len(report.rounds)} rounds)"


# --------------------------------------------------------------------------
# Tables


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main_rows(report: Report, columns: list[str], peers: list[str]) -> list[list[str]]:
    ours = "strongroom" if "strongroom" in columns else None
    restic = "restic" if "restic" in columns and ours else None
    rows = []

    def ratios(get) -> list[str]:
        return [format_ratio(ratio(get(ours), get(peer))) for peer in peers]

    for step in STEPS:
        row = [STEP_TITLES[step]] + [step_cell(report, t, step) for t in columns]
        for peer in peers:
            time_ratio = ratio(step_median(report, ours, step, "seconds"), step_median(report, peer, step, "seconds"))
            rss_ratio = ratio(step_median(report, ours, step, "peak_rss_mib"),
                              step_median(report, peer, step, "peak_rss_mib"))
            row.append(f"{format_ratio(time_ratio)} · {format_ratio(rss_ratio)}")
        if restic:
            time_ratio = ratio(step_median(report, ours, step, "seconds"), step_median(report, restic, step, "seconds"))
            rss_ratio = ratio(step_median(report, ours, step, "peak_rss_mib"),
                              step_median(report, restic, step, "peak_rss_mib"))
            time_goal = goal_mark(time_ratio, TIME_GOALS[step]) if step in TIME_GOALS else "–"
            row.append(f"{time_goal} · {goal_mark(rss_ratio, RSS_GOAL)}")
        rows.append(row)

    worst = {t: worst_rss(report, t) for t in columns}
    row = ["peak RSS, worst step"]
    row += [f"{worst[t][0]:.0f} MiB ({STEP_TITLES[worst[t][1]]})" if worst[t] else "–" for t in columns]
    row += ratios(lambda t: worst[t][0] if worst[t] else None)
    if restic:
        row.append("– · " + goal_mark(ratio(worst[ours][0] if worst[ours] else None,
                                            worst[restic][0] if worst[restic] else None), RSS_GOAL))
    rows.append(row)

    for key, title in (("after_first_backup", "repository size after the first backup"),
                       ("final", "repository size, 3 snapshots"),
                       ("after_prune", "repository size after forget + prune")):
        row = [title] + [f"{size / MIB:.1f} MiB" if (size := size_median(report, t, key)) else "–" for t in columns]
        row += ratios(lambda t: size_median(report, t, key))
        if restic:
            size_ratio = ratio(size_median(report, ours, key), size_median(report, restic, key))
            row.append(goal_mark(size_ratio, SIZE_GOAL) if key == "after_first_backup" else "–")
        rows.append(row)

    if report.startup:
        runs = max(len(v["seconds"]) for v in report.startup.values())
        start = {t: median_of(report.startup.get(t, {}).get("seconds", [])) for t in columns}
        row = [f"start-up, `--version` (median of {runs}, warm)"]
        row += [f"{start[t] * 1000:.0f} ms" if start[t] else "–" for t in columns]
        row += ratios(lambda t: start[t])
        if restic:
            ok = start[ours] is not None and start[ours] < STARTUP_GOAL_SECONDS
            row.append(f"< {STARTUP_GOAL_SECONDS * 1000:.0f} ms {MET if ok else MISSED}" if start[ours] else "–")
        rows.append(row)

    rows.append(["restore identical to source"] + [restore_cell(report, t) for t in columns]
                + [""] * (len(peers) + (1 if restic else 0)))
    return rows


def cpu_rows(report: Report, columns: list[str], peers: list[str]) -> list[list[str]]:
    rows = []
    for step in STEPS:
        row = [STEP_TITLES[step]] + [cpu_cell(report, t, step) for t in columns]
        row += [format_ratio(ratio(step_median(report, "strongroom", step, "cpu_seconds"),
                                   step_median(report, peer, step, "cpu_seconds"))) for peer in peers]
        rows.append(row)
    return rows


def load_range(report: Report) -> str:
    loads = [s.load for r in report.rounds for t in r.tools.values() for s in t.steps.values()
             if s.load is not None]
    return f"{min(loads):.1f} to {max(loads):.1f}" if loads else "unknown"


def render_markdown(report: Report) -> str:
    columns = [name for name, info in report.tools.items() if not info.skipped]
    ours = "strongroom" in columns
    peers = [t for t in columns if t != "strongroom"] if ours else []
    data, meta = report.dataset, report.meta
    header = ["step"] + columns + [f"strongroom/{p} (time · peak)" for p in peers]
    if ours and "restic" in columns:
        header.append("goal vs restic (time · peak)")
    changed = data.get("changed_files", [])
    lines = [
        "## Backup benchmark",
        "",
        f"Data set `{data['shape']}` (scale {data['scale']}, seed {data['seed']}, sha256 {data['sha256'][:16]}): "
        f"{data['files']} file names ({data['hardlink_groups']} files with {data['hardlink_names']} hard-linked names), "
        f"{data['symlinks']} symlinks, "
        f"{data['directories']} directories, {data['bytes'] / MIB:.1f} MiB; "
        f"small change: {len(changed)} files ({data.get('change', '')}).",
        f"Machine: {meta['cpus']} CPUs, {meta['memory_gib']} GiB RAM, {meta['platform']}, "
        f"Python {meta['python']}; load average {load_range(report)} over the steps.",
        "Versions: " + "; ".join(f"{t}: {report.tools[t].version}" for t in columns) + ".",
        f"Page cache: {meta['cache']}.",
        "",
        f"Cells: the median over {len(report.rounds)} round(s), each with fresh repositories and caches, of "
        f"wall time · peak RSS ({meta['peak_rss_method']}; 'true' measures {meta['peak_rss_floor_mib']:.1f} MiB). "
        "Repository sizes are allocated bytes (du). Timings are indicative, never pass/fail.",
        "",
        markdown_table(header, main_rows(report, columns, peers)),
        "",
        "CPU time (user + system, median), which a busy machine inflates less than wall time:",
        "",
        markdown_table(["step"] + columns + [f"strongroom/{p}" for p in peers], cpu_rows(report, columns, peers)),
    ]
    lines += [f"\nSkipped {name}: {info.skipped}" for name, info in report.tools.items() if info.skipped]
    return "\n".join(lines)
