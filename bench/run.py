#!/usr/bin/env python3
"""Benchmark strongroom against restic and borg on one shared data set.

For every tool, on the same data set on local disk, the harness runs: init,
first backup, unchanged re-backup, backup after a small change, restore of
the latest snapshot into a fresh directory, a check that reads all data, the
list of snapshots, and forgetting all but the latest snapshot followed by a
prune (borg: prune and compact). It records the wall time, CPU time and peak
RSS of every step and the repository sizes, verifies that each restore is
identical to the source (contents, symlink targets, hard links), and prints
Markdown tables of the medians over the rounds; the JSON has every round.

Every round starts from a freshly generated data set (byte-identical: its
sha256 is checked) and fresh repositories and caches for every tool. Inside a
round, steps run step by step across tools (every tool's init, then every
tool's first backup, ...), so slow drifts of the machine spread over all of
them; the order of the tools rotates by one every round. Before every step the page cache is dropped when permitted
(``--drop-caches``).

    python bench/run.py [--shape home|classic] [--scale 1] [--rounds 3]
                        [--drop-caches auto|always|never] [--tools strongroom,restic,borg]
                        [--workdir DIR] [--json results.json] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_dataset  # noqa: E402
from measure import Command, PageCache, RssMeter, find_gnu_time, log_tail, run_measured  # noqa: E402
from report import (BACKUP_STEPS, STEP_TITLES, STEPS, Report, Round, StepResult, ToolInfo,  # noqa: E402
                    ToolRound, medians, render_markdown)
from tools import TOOL_CLASSES, Tool  # noqa: E402
from verify import Manifest, build_manifest, disk_usage, verify_restore  # noqa: E402

ALL_TOOLS = ("strongroom", "restic", "borg")
# A failure here leaves nothing meaningful to measure for that tool in that round.
FATAL_STEPS = ("init", "backup_initial")
REPO_SIZE_AFTER = {"backup_initial": "after_first_backup", "backup_changed": "final", "forget_prune": "after_prune"}
CHANGES = {"home": "a stretch of 1 % of the small files rewritten, 32 MiB × scale appended to one log",
           "classic": "about 20 small files edited, a few bytes inserted near the start of one large file"}


# --------------------------------------------------------------------------
# One round


class RoundRun:
    """The directories, tools and data set of one round."""

    def __init__(self, index: int, workdir: Path, prepared: list[Tool]):
        self.index = index
        self.workdir = workdir
        self.source = workdir / "data"
        for name in ("logs", "repos", "restores"):
            (workdir / name).mkdir(parents=True, exist_ok=True)
        # The order rotates by one every round, so no tool always goes first after the data set work.
        shift = (index - 1) % max(1, len(prepared))
        self.tools = [tool.in_round(workdir) for tool in prepared[shift:] + prepared[:shift]]
        self.results = {tool.name: ToolRound() for tool in self.tools}
        self.expected: Manifest | None = None  # the source tree at restore time

    def restore_dir(self, tool: Tool) -> Path:
        return self.workdir / "restores" / tool.name

    def log_path(self, tool: Tool, step: str) -> Path:
        return self.workdir / "logs" / f"{tool.name}-{step}.log"

    def evictable(self) -> list[Path]:
        return [self.source, self.workdir / "repos"]


def step_status(tool: Tool, step: str, exit_code: int) -> str:
    if exit_code == 0:
        return "ok"
    if step in BACKUP_STEPS and exit_code in tool.backup_warning_codes:
        return "warning"
    return "failed"


def step_command(tool: Tool, step: str, source: Path, restore_dir: Path) -> Command:
    if step == "init":
        return tool.init()
    if step in BACKUP_STEPS:
        return tool.backup(source, step)
    if step == "restore":
        return tool.restore(restore_dir)
    if step == "snapshots":
        return tool.snapshots()
    if step == "forget_prune":
        return tool.forget_prune()
    return tool.check()


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def run_step(tool: Tool, run: RoundRun, step: str, meter: RssMeter, cache: PageCache) -> None:
    result = run.results[tool.name]
    if step == "restore":
        run.restore_dir(tool).mkdir(parents=True)
    tool.repo.parent.mkdir(parents=True, exist_ok=True)
    log_path = run.log_path(tool, step)
    command = step_command(tool, step, run.source, run.restore_dir(tool))
    env = tool.environment()
    started = time.perf_counter()
    cache.before_step(run.evictable())
    cache_seconds = time.perf_counter() - started
    load = os.getloadavg()[0]
    measured = run_measured(command, env, log_path, meter)
    status = step_status(tool, step, measured.exit_code)
    tail = log_tail(log_path) if status != "ok" else ""
    result.steps[step] = StepResult(status, measured.seconds, measured.cpu_seconds, measured.peak_rss_mib,
                                    measured.exit_code, load, cache_seconds, tail)
    print(f"[round {run.index}] [{tool.name}] {STEP_TITLES[step]}: {measured.seconds:.2f} s "
          f"(cpu {measured.cpu_seconds:.2f} s), {measured.peak_rss_mib:.0f} MiB peak, "
          f"exit {measured.exit_code} ({status})", file=sys.stderr)
    if tail:
        print(indent(tail), file=sys.stderr)
    if status == "failed" and step in FATAL_STEPS:
        result.stopped_after = step
    if step in REPO_SIZE_AFTER and tool.repo.exists():
        result.repo_size[REPO_SIZE_AFTER[step]] = disk_usage(tool.repo)


def check_restore(tool: Tool, run: RoundRun) -> None:
    """Compare the restored tree with the source. It stays until the run ends:
    see run_benchmark."""
    result = run.results[tool.name]
    restore_dir = run.restore_dir(tool)
    if result.steps["restore"].status != "failed":
        started = time.perf_counter()
        result.restore = verify_restore(run.expected, restore_dir, run.source, tool.restores_hardlinks)
        result.verify_seconds = time.perf_counter() - started
        if not result.restore.identical:
            print(f"!!! [round {run.index}] [{tool.name}] RESTORE {result.restore.describe()} "
                  f"(compared {result.restore.restored_root}): {asdict(result.restore)}", file=sys.stderr)


def generate_dataset(source: Path, args: argparse.Namespace) -> dict:
    """Generate the data set in a child process, keeping this process small."""
    print(f"generating the {args.shape} data set (scale {args.scale}, seed {args.seed}) in {source} ...",
          file=sys.stderr)
    started = time.perf_counter()
    subprocess.run([sys.executable, make_dataset.__file__, str(source), "--shape", args.shape,
                    "--scale", str(args.scale), "--seed", str(args.seed)], check=True, stdout=sys.stderr)
    seconds = time.perf_counter() - started
    manifest = build_manifest(source)  # reads every file: the data set is warm until the next drop
    return {"shape": args.shape, "scale": args.scale, "seed": args.seed, "files": len(manifest.files),
            "hardlink_names": len(manifest.inodes), "hardlink_groups": len(manifest.hardlink_groups()),
            "symlinks": len(manifest.symlinks),
            "directories": len(manifest.directories), "bytes": manifest.total_bytes(),
            "generation_seconds": round(seconds, 2), "sha256": manifest.digest(),
            "change": CHANGES[args.shape]}


def prepare_step(step: str, run: RoundRun, dataset: dict, args: argparse.Namespace) -> None:
    """Data set work due before all tools run ``step``."""
    if step == "backup_changed":
        dataset["changed_files"] = make_dataset.apply_small_change(run.source, args.seed, args.shape, args.scale)
    if step == "restore":
        run.expected = build_manifest(run.source)
        dataset["sha256_after_change"] = run.expected.digest()


def run_round(index: int, workdir: Path, prepared: list[Tool], args: argparse.Namespace,
              meter: RssMeter, cache: PageCache) -> Round:
    run = RoundRun(index, workdir, prepared)
    dataset = generate_dataset(run.source, args)
    for step in STEPS:
        prepare_step(step, run, dataset, args)
        for tool in run.tools:
            result = run.results[tool.name]
            if result.stopped_after:
                result.steps[step] = StepResult("not run")
                continue
            run_step(tool, run, step, meter, cache)
            if step == "restore":
                check_restore(tool, run)
    return Round(index, dataset, run.results)


# --------------------------------------------------------------------------
# The whole run


def prepare_tools(names: list[str], workdir: Path) -> tuple[list[Tool], dict[str, ToolInfo]]:
    tools, infos = [], {}
    for name in names:
        tool = TOOL_CLASSES[name](workdir)
        info = ToolInfo(name)
        reason = tool.prepare()
        if reason:
            info.skipped = reason
            print(f"skipping {name}: {reason}", file=sys.stderr)
        else:
            info.version = tool.version()
            tools.append(tool)
        infos[name] = info
    return tools, infos


def time_startup(tools: list[Tool], runs: int, workdir: Path, meter: RssMeter) -> dict[str, dict[str, list[float]]]:
    """``--version`` of every tool, ``runs`` times, interleaved, after one warm-up run each."""
    timings = {tool.name: {"seconds": [], "cpu_seconds": [], "peak_rss_mib": []} for tool in tools}
    log_path = workdir / "startup.log"
    active = list(tools)
    for attempt in range(runs + 1):
        for tool in list(active):
            measured = run_measured(Command(tool.startup()), tool.environment(), log_path, meter)
            if measured.exit_code != 0:
                print(f"[{tool.name}] start-up: {' '.join(tool.startup())} exited {measured.exit_code}",
                      file=sys.stderr)
                active.remove(tool)
                del timings[tool.name]
            elif attempt:
                timings[tool.name]["seconds"].append(measured.seconds)
                timings[tool.name]["cpu_seconds"].append(measured.cpu_seconds)
                timings[tool.name]["peak_rss_mib"].append(measured.peak_rss_mib)
    return timings


def rss_floor_mib(workdir: Path, meter: RssMeter) -> float:
    """Peak RSS that the meter reports for 'true': the measurement's floor."""
    return run_measured(Command(["true"]), dict(os.environ), workdir / "rss-floor.log", meter).peak_rss_mib


def machine_info(workdir: Path, meter: RssMeter) -> dict:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory / (1 << 30), 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "workdir": str(workdir),
        "peak_rss_method": meter.method,
        "peak_rss_floor_mib": round(rss_floor_mib(workdir, meter), 1),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run_benchmark(args: argparse.Namespace, workdir: Path) -> Report:
    meter = RssMeter(find_gnu_time())
    cache = PageCache(args.drop_caches)
    meta = machine_info(workdir, meter)
    prepared, infos = prepare_tools(args.tools, workdir)
    report = Report(meta, {}, infos)
    for index in range(1, args.rounds + 1):
        round_dir = workdir / f"round-{index}"
        started = time.perf_counter()
        result = run_round(index, round_dir, prepared, args, meter, cache)
        result.dataset["round_seconds"] = round(time.perf_counter() - started, 1)
        if report.rounds and result.dataset["sha256"] != report.dataset["sha256"]:
            raise SystemExit(f"round {index}: the data set differs from round 1's "
                             f"({result.dataset['sha256']} != {report.dataset['sha256']})")
        report.rounds.append(result)
        report.dataset = report.dataset or dict(result.dataset)
        # Nothing is deleted until the run ends (main removes the run directory):
        # on ext4 without a journal, creating a file skips, one lookup each, every
        # inode freed in the last minute or more, so a restore that follows the
        # deletion of another tool's restore (20,000 files) spent seconds of system
        # time in inode allocation that one on a quiet file system does not.
    if args.startup_runs:
        report.startup = time_startup(prepared, args.startup_runs, workdir, meter)
    meta["cache"] = cache.describe()
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return report


# --------------------------------------------------------------------------
# Command line


def parse_tools(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in TOOL_CLASSES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {','.join(ALL_TOOLS)}; got {text!r}")
    return names


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=make_dataset.SHAPES, default=make_dataset.DEFAULT_SHAPE,
                        help="home: shaped like a home directory (thousands of folders); classic: the old "
                             "warm-cache set of few, large folders (default: %(default)s)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="data set size factor, 1.0 is about 1 GB (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=make_dataset.DEFAULT_SEED,
                        help="data set seed (default: %(default)s)")
    parser.add_argument("--rounds", type=positive, default=3,
                        help="rounds, each with a fresh data set, repositories and caches (default: %(default)s)")
    parser.add_argument("--drop-caches", choices=("auto", "always", "never"), default="auto",
                        help="drop the page cache before every step: auto (when permitted; when not, evict "
                             "the data set's and repositories' pages with posix_fadvise), always (stop if "
                             "not permitted), never (warm cache) (default: %(default)s)")
    parser.add_argument("--startup-runs", type=int, default=10,
                        help="runs of every tool's --version for the start-up row, 0 to leave it out "
                             "(default: %(default)s)")
    parser.add_argument("--tools", type=parse_tools, default=list(ALL_TOOLS),
                        help="comma-separated tools (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="local-disk directory in which a fresh run directory is made "
                             "(default: the system temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write every round's results as JSON here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run directory (data sets, repositories, restores, logs)")
    return parser.parse_args(argv)


def make_run_dir(parent: Path | None) -> Path:
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="strongroom-bench-", dir=parent)).resolve()


def exit_status(report: Report) -> int:
    """1 if any step failed or any restore differed; timings never matter."""
    for round_ in report.rounds:
        for result in round_.tools.values():
            if any(step.status == "failed" for step in result.steps.values()):
                return 1
            if result.restore is not None and not result.restore.identical:
                return 1
    return 0


def write_json(report: Report, path: Path) -> None:
    document = asdict(report)
    document["medians"] = medians(report)
    path.write_text(json.dumps(document, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = make_run_dir(args.workdir)
    try:
        report = run_benchmark(args, workdir)
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(render_markdown(report))
    if args.json:
        write_json(report, args.json)
    return exit_status(report)


if __name__ == "__main__":
    sys.exit(main())
