#!/usr/bin/env python3
"""Benchmark strongroom against restic and borg on one shared data set.

For every tool, on the same data set on local disk, the harness runs: init,
first backup, unchanged re-backup, backup after a small change, full restore
into a fresh directory, a check that reads all data, and forgetting all but
the latest snapshot followed by a prune (borg: prune and compact). It records the wall
time and peak RSS of every step and the repository size, verifies that each
restore is identical to the source, prints a Markdown table and optionally
writes JSON.

Steps run step by step across tools (every tool's init, then every tool's
first backup, ...), so all tools see the same data set and the same small
change, and slow drifts of the machine spread over all of them. The page cache
is not dropped between steps: all numbers are warm-cache numbers.

    python bench/run.py --scale 1 [--tools strongroom,restic,borg]
                        [--workdir DIR] [--json results.json] [--keep]
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_dataset  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-not-a-secret"
MIB = 1 << 20

STEPS = ("init", "backup_initial", "backup_unchanged", "backup_changed", "restore", "check", "forget_prune")
STEP_TITLES = {
    "init": "init",
    "backup_initial": "first backup",
    "backup_unchanged": "unchanged re-backup",
    "backup_changed": "small-change backup",
    "restore": "full restore",
    "check": "check, reading all data",
    "forget_prune": "forget all but the latest, prune",
}
BACKUP_STEPS = ("backup_initial", "backup_unchanged", "backup_changed")
# A failure here leaves nothing meaningful to measure for that tool.
FATAL_STEPS = ("init", "backup_initial")
ALL_TOOLS = ("strongroom", "restic", "borg")
LOG_TAIL_LINES = 15


# --------------------------------------------------------------------------
# Running one command


@dataclass
class Command:
    argv: list[str]
    cwd: Path | None = None


@dataclass
class Measurement:
    seconds: float
    peak_rss_mib: float
    exit_code: int


class RssMeter:
    """Measures a command's peak RSS.

    ``os.wait4`` alone is not enough on Linux: a child started from this
    process inherits this process's RSS high-water mark across exec, so even
    ``true`` would report the harness's own peak. GNU time forks the command
    from its own tiny process and reports the child's ``ru_maxrss`` (``%M``),
    so it is used whenever it is available; ``os.wait4`` is the fallback.
    """

    def __init__(self, gnu_time: str | None):
        self.gnu_time = gnu_time

    @property
    def method(self) -> str:
        return "GNU time %M" if self.gnu_time else "os.wait4 ru_maxrss (includes the harness's peak)"

    def wrap(self, argv: list[str], rss_path: Path) -> list[str]:
        if not self.gnu_time:
            return argv
        return [self.gnu_time, "-f", "%M", "-o", str(rss_path), *argv]

    def peak_kib(self, usage: os.struct_rusage | None, rss_path: Path) -> int:
        if not self.gnu_time:
            return usage.ru_maxrss
        # GNU time may write "Command exited with non-zero status N" first.
        lines = rss_path.read_text().split()
        return int(lines[-1]) if lines and lines[-1].isdigit() else 0


def find_gnu_time() -> str | None:
    """Path of a working GNU time, installing Debian's 'time' if root."""
    if ensure_command("time", "time") is not None:
        return None
    path = shutil.which("time")
    probe = subprocess.run([path, "-f", "%M", "-o", os.devnull, "true"], capture_output=True)
    return path if probe.returncode == 0 else None


def run_measured(command: Command, env: dict[str, str], log_path: Path, meter: RssMeter) -> Measurement:
    """Run ``command`` with its output in ``log_path``; time it and take its peak RSS."""
    rss_path = log_path.with_suffix(".rss")
    with open(log_path, "wb") as log:
        log.write(("$ " + " ".join(command.argv) + "\n").encode())
        log.flush()
        started = time.perf_counter()
        process = subprocess.Popen(meter.wrap(command.argv, rss_path), cwd=command.cwd, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measurement(seconds, meter.peak_kib(usage, rss_path) / 1024, process.returncode)


def log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def first_output_line(argv: list[str], env: dict[str, str] | None = None) -> str | None:
    """First line a quick command prints, or None if it fails."""
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""


# --------------------------------------------------------------------------
# Installing peers


def install_debian_package(package: str) -> bool:
    """apt-get install ``package``, refreshing the package lists once if needed."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", package]
    print(f"installing {package} with apt-get ...", file=sys.stderr)
    if subprocess.run(install, env=env, capture_output=True).returncode == 0:
        return True
    subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
    return subprocess.run(install, env=env, capture_output=True).returncode == 0


def ensure_command(binary: str, package: str) -> str | None:
    """Make ``binary`` available; return why it is not, or None if it is."""
    if shutil.which(binary):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"'{binary}' not found; install the Debian package '{package}' (needs root)"
    if install_debian_package(package) and shutil.which(binary):
        return None
    return f"'{binary}' not found and 'apt-get install {package}' failed"


# --------------------------------------------------------------------------
# Tools


class Tool(ABC):
    """One backup program: how to make it available and its commands."""

    name = ""
    # Exit codes of a backup that mean "done, but some files were unreadable".
    backup_warning_codes: frozenset[int] = frozenset()

    def __init__(self, workdir: Path):
        self.repo = workdir / "repos" / self.name
        self.home = workdir / "homes" / self.name
        self.extra_env: dict[str, str] = {}

    def environment(self) -> dict[str, str]:
        """The process environment: temp and cache files stay in the workdir."""
        (self.home / "tmp").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(TMPDIR=str(self.home / "tmp"), XDG_CACHE_HOME=str(self.home / "cache"))
        env.update(self.extra_env)
        return env

    @abstractmethod
    def prepare(self) -> str | None:
        """Make the tool runnable; return why it cannot run, or None."""

    @abstractmethod
    def version(self) -> str:
        """The tool's version line."""

    @abstractmethod
    def init(self) -> Command:
        """Create the repository."""

    @abstractmethod
    def backup(self, source: Path, label: str) -> Command:
        """Back up `source`."""

    @abstractmethod
    def restore(self, target: Path) -> Command:
        """Restore the latest point into `target`."""

    @abstractmethod
    def check(self) -> Command:
        """Check, reading all data."""

    @abstractmethod
    def forget_prune(self) -> Command:
        """Keep the latest snapshot only and free the space of the others."""


class Strongroom(Tool):
    name = "strongroom"
    backup_warning_codes = frozenset({3})

    def base(self) -> list[str]:
        return [sys.executable, "-m", "strongroom"]

    def environment(self) -> dict[str, str]:
        return dict(super().environment(), STRONGROOM_PASSWORD=PASSWORD)

    def runs(self) -> bool:
        return first_output_line(self.base() + ["--help"], self.environment()) is not None

    def prepare(self) -> str | None:
        """Use the installed package, else the checkout's src/ on PYTHONPATH."""
        if self.runs():
            return None
        source_dir = REPO_ROOT / "src"
        pythonpath = os.pathsep.join(filter(None, [str(source_dir), os.environ.get("PYTHONPATH")]))
        self.extra_env = {"PYTHONPATH": pythonpath}
        if source_dir.is_dir() and self.runs():
            print(f"strongroom: not installed, using {source_dir} on PYTHONPATH", file=sys.stderr)
            return None
        return f"'{sys.executable} -m strongroom --help' fails (install it with 'pip install -e .')"

    def version(self) -> str:
        env = self.environment()
        line = (first_output_line(self.base() + ["version"], env)
                or first_output_line(self.base() + ["--version"], env))
        return f"{line or 'strongroom (version unknown)'}, {git_revision()}"

    def init(self) -> Command:
        return Command(self.base() + ["init", "--repo", str(self.repo)])

    def backup(self, source: Path, label: str) -> Command:
        return Command(self.base() + ["backup", str(source), "--repo", str(self.repo)])

    def restore(self, target: Path) -> Command:
        return Command(self.base() + ["restore", "latest", "--target", str(target),
                                      "--repo", str(self.repo)])

    def check(self) -> Command:
        return Command(self.base() + ["check", "--read-data", "--repo", str(self.repo)])

    def forget_prune(self) -> Command:
        return Command(self.base() + ["forget", "--keep-last", "1", "--prune", "--repo", str(self.repo)])


class Restic(Tool):
    name = "restic"
    backup_warning_codes = frozenset({3})

    def environment(self) -> dict[str, str]:
        return dict(super().environment(), RESTIC_PASSWORD=PASSWORD,
                    RESTIC_CACHE_DIR=str(self.home / "restic-cache"))

    def prepare(self) -> str | None:
        return ensure_command("restic", "restic")

    def version(self) -> str:
        return first_output_line(["restic", "version"]) or "restic (version unknown)"

    def base(self) -> list[str]:
        return ["restic", "-r", str(self.repo)]

    def init(self) -> Command:
        return Command(self.base() + ["init"])

    def backup(self, source: Path, label: str) -> Command:
        return Command(self.base() + ["backup", str(source)])

    def restore(self, target: Path) -> Command:
        return Command(self.base() + ["restore", "latest", "--target", str(target)])

    def check(self) -> Command:
        return Command(self.base() + ["check", "--read-data"])

    def forget_prune(self) -> Command:
        return Command(self.base() + ["forget", "--keep-last", "1", "--prune"])


class Borg(Tool):
    name = "borg"
    backup_warning_codes = frozenset({1})
    compression = "zstd,3"  # strongroom's default is zstd level 3

    def environment(self) -> dict[str, str]:
        return dict(super().environment(), BORG_PASSPHRASE=PASSWORD,
                    BORG_BASE_DIR=str(self.home / "borg-base"),
                    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
                    BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")

    def prepare(self) -> str | None:
        return ensure_command("borg", "borgbackup")

    def version(self) -> str:
        return first_output_line(["borg", "--version"]) or "borg (version unknown)"

    def init(self) -> Command:
        return Command(["borg", "init", "--encryption=repokey-blake2", str(self.repo)])

    def backup(self, source: Path, label: str) -> Command:
        self.latest_archive = label
        return Command(["borg", "create", "--compression", self.compression,
                        f"{self.repo}::{label}", str(source)])

    def restore(self, target: Path) -> Command:
        return Command(["borg", "extract", f"{self.repo}::{self.latest_archive}"], cwd=target)

    def check(self) -> Command:
        return Command(["borg", "check", "--verify-data", str(self.repo)])

    def forget_prune(self) -> Command:
        # borg 1.2 frees space only at `compact`.
        return Command(["sh", "-c", 'borg prune --keep-last 1 "$1" && borg compact "$1"', "sh", str(self.repo)])


TOOL_CLASSES = {cls.name: cls for cls in (Strongroom, Restic, Borg)}


def git_revision() -> str:
    revision = first_output_line(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"])
    return f"git {revision}" if revision else "no git revision"


# --------------------------------------------------------------------------
# Data set manifests and restore verification


@dataclass
class Manifest:
    files: dict[str, tuple[int, str]]  # relative path -> (size, sha256)
    directories: set[str]

    def digest(self) -> str:
        """One sha256 over all paths, sizes and content hashes."""
        summary = hashlib.sha256()
        for path in sorted(self.files):
            size, sha = self.files[path]
            summary.update(f"{path}\0{size}\0{sha}\n".encode())
        return summary.hexdigest()


@dataclass
class Verification:
    identical: bool
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    restored_root: str = ""

    def describe(self) -> str:
        if self.identical:
            return "identical"
        counts = [(len(self.missing), "missing"), (len(self.extra), "extra"),
                  (len(self.differing), "differ")]
        return "MISMATCH: " + ", ".join(f"{n} {what}" for n, what in counts if n)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def build_manifest(root: Path) -> Manifest:
    files, directories = {}, set()
    for directory, dirnames, filenames in os.walk(root):
        relative_dir = Path(directory).relative_to(root)
        directories.update(str(relative_dir / name) for name in dirnames)
        for name in filenames:
            path = Path(directory) / name
            files[str(relative_dir / name)] = (path.lstat().st_size, file_sha256(path))
    return Manifest(files, directories)


def find_restored_root(target: Path, source: Path, probe: str) -> Path:
    """Where the source tree landed inside ``target``.

    Tools differ: restic and borg recreate the absolute source path below the
    target, others restore the contents directly or under the source's name.
    """
    candidates = (target, target / source.name, target / source.relative_to(source.anchor))
    for candidate in candidates:
        if (candidate / probe).is_file():
            return candidate
    return target


def compare_manifests(expected: Manifest, actual: Manifest) -> Verification:
    missing = sorted(expected.files.keys() - actual.files.keys())
    missing += sorted(expected.directories - actual.directories)
    extra = sorted(actual.files.keys() - expected.files.keys())
    extra += sorted(actual.directories - expected.directories)
    differing = sorted(path for path in expected.files.keys() & actual.files.keys()
                       if expected.files[path] != actual.files[path])
    identical = not (missing or extra or differing)
    return Verification(identical, missing[:20], extra[:20], differing[:20])


def verify_restore(expected: Manifest, target: Path, source: Path) -> Verification:
    probe = min(expected.files) if expected.files else ""
    root = find_restored_root(target, source, probe)
    verification = compare_manifests(expected, build_manifest(root))
    verification.restored_root = str(root)
    return verification


def disk_usage(path: Path) -> dict[str, int]:
    """Apparent size and allocated bytes (like du) of a tree; hard links once."""
    apparent = allocated = 0
    seen: set[tuple[int, int]] = set()
    for directory, _, filenames in os.walk(path):
        for name in filenames:
            info = os.lstat(os.path.join(directory, name))
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            apparent += info.st_size
            allocated += info.st_blocks * 512
    return {"apparent_bytes": apparent, "allocated_bytes": allocated}


# --------------------------------------------------------------------------
# The benchmark


@dataclass
class StepResult:
    status: str  # ok, warning, failed, not run
    seconds: float | None = None
    peak_rss_mib: float | None = None
    exit_code: int | None = None
    log_tail: str = ""


@dataclass
class ToolResult:
    name: str
    version: str = ""
    skipped: str = ""  # reason the tool did not run at all
    stopped_after: str = ""  # fatal step that failed
    steps: dict[str, StepResult] = field(default_factory=dict)
    repo_size: dict[str, dict[str, int]] = field(default_factory=dict)
    restore: Verification | None = None


@dataclass
class Report:
    meta: dict
    dataset: dict
    tools: dict[str, ToolResult]


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
    if step == "forget_prune":
        return tool.forget_prune()
    return tool.check()


@dataclass
class RunContext:
    """What every step of one benchmark run shares."""
    workdir: Path
    source: Path
    meter: RssMeter
    keep: bool
    expected: Manifest | None = None  # the source tree at restore time

    def restore_dir(self, tool: Tool) -> Path:
        return self.workdir / "restores" / tool.name

    def log_path(self, tool: Tool, step: str) -> Path:
        return self.workdir / "logs" / f"{tool.name}-{step}.log"


def run_step(tool: Tool, result: ToolResult, step: str, context: RunContext) -> None:
    if step == "restore":
        context.restore_dir(tool).mkdir(parents=True)
    tool.repo.parent.mkdir(parents=True, exist_ok=True)
    log_path = context.log_path(tool, step)
    command = step_command(tool, step, context.source, context.restore_dir(tool))
    measured = run_measured(command, tool.environment(), log_path, context.meter)
    status = step_status(tool, step, measured.exit_code)
    tail = log_tail(log_path) if status != "ok" else ""
    result.steps[step] = StepResult(status, measured.seconds, measured.peak_rss_mib,
                                    measured.exit_code, tail)
    print(f"[{tool.name}] {STEP_TITLES[step]}: {measured.seconds:.2f} s, "
          f"{measured.peak_rss_mib:.0f} MiB peak, exit {measured.exit_code} ({status})",
          file=sys.stderr)
    if tail:
        print(indent(tail), file=sys.stderr)
    if status == "failed" and step in FATAL_STEPS:
        result.stopped_after = step


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def record_repo_size(tool: Tool, result: ToolResult, step: str) -> None:
    keys = {"backup_initial": "after_first_backup", "backup_changed": "final", "forget_prune": "after_prune"}
    if step in keys and tool.repo.exists():
        result.repo_size[keys[step]] = disk_usage(tool.repo)


def check_restore(tool: Tool, result: ToolResult, context: RunContext) -> None:
    """Compare the restored tree with the source, then remove it unless kept."""
    restore_dir = context.restore_dir(tool)
    if result.steps["restore"].status != "failed":
        result.restore = verify_restore(context.expected, restore_dir, context.source)
        if not result.restore.identical:
            print(f"!!! [{tool.name}] RESTORE {result.restore.describe()} "
                  f"(compared {result.restore.restored_root})", file=sys.stderr)
    if not context.keep:
        shutil.rmtree(restore_dir, ignore_errors=True)


def prepare_tools(names: list[str], workdir: Path) -> tuple[list[Tool], dict[str, ToolResult]]:
    tools, results = [], {}
    for name in names:
        tool = TOOL_CLASSES[name](workdir)
        result = ToolResult(name)
        reason = tool.prepare()
        if reason:
            result.skipped = reason
            print(f"skipping {name}: {reason}", file=sys.stderr)
        else:
            result.version = tool.version()
            tools.append(tool)
        results[name] = result
    return tools, results


def rss_floor_mib(context: RunContext) -> float:
    """Peak RSS that the meter reports for 'true': the measurement's floor."""
    log_path = context.workdir / "logs" / "rss-floor.log"
    return run_measured(Command(["true"]), dict(os.environ), log_path, context.meter).peak_rss_mib


def machine_info(context: RunContext) -> dict:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory / (1 << 30), 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "workdir": str(context.workdir),
        "cache": "warm (page cache not dropped)",
        "peak_rss_method": context.meter.method,
        "peak_rss_floor_mib": round(rss_floor_mib(context), 1),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def generate_dataset(source: Path, scale: float, seed: int) -> dict:
    """Generate the data set in a child process, keeping this process small."""
    print(f"generating data set (scale {scale}, seed {seed}) in {source} ...", file=sys.stderr)
    started = time.perf_counter()
    subprocess.run([sys.executable, make_dataset.__file__, str(source),
                    "--scale", str(scale), "--seed", str(seed)], check=True, stdout=sys.stderr)
    seconds = time.perf_counter() - started
    manifest = build_manifest(source)
    return {"scale": scale, "seed": seed, "files": len(manifest.files),
            "directories": len(manifest.directories),
            "bytes": sum(size for size, _ in manifest.files.values()),
            "generation_seconds": round(seconds, 2), "sha256": manifest.digest()}


def prepare_step(step: str, context: RunContext, dataset: dict, seed: int) -> None:
    """Data set work due before all tools run ``step``."""
    if step == "backup_changed":
        dataset["changed_files"] = make_dataset.apply_small_change(context.source, seed)
    if step == "restore":
        context.expected = build_manifest(context.source)
        dataset["sha256_after_change"] = context.expected.digest()


def run_benchmark(args: argparse.Namespace, workdir: Path) -> Report:
    for name in ("logs", "repos", "restores"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
    context = RunContext(workdir, workdir / "data", RssMeter(find_gnu_time()), args.keep)
    meta = machine_info(context)
    dataset = generate_dataset(context.source, args.scale, args.seed)
    tools, results = prepare_tools(args.tools, workdir)
    for step in STEPS:
        prepare_step(step, context, dataset, args.seed)
        for tool in tools:
            result = results[tool.name]
            if result.stopped_after:
                result.steps[step] = StepResult("not run")
                continue
            run_step(tool, result, step, context)
            record_repo_size(tool, result, step)
            if step == "restore":
                check_restore(tool, result, context)
    return Report(meta, dataset, results)


# --------------------------------------------------------------------------
# Output


def format_step(step: StepResult | None) -> str:
    if step is None or step.status == "not run":
        return "not run"
    if step.status == "failed":
        return f"**FAILED** (exit {step.exit_code})"
    cell = f"{step.seconds:.2f} s · {step.peak_rss_mib:.0f} MiB"
    if step.status == "warning":
        cell += f" (exit {step.exit_code}: files unreadable)"
    return cell


def ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "–"
    return f"{numerator / denominator:.2f}×"


def step_ratio(ours: StepResult | None, theirs: StepResult | None) -> str:
    usable = [s for s in (ours, theirs) if s is not None and s.status in ("ok", "warning")]
    if len(usable) != 2:
        return "–"
    return (f"{ratio(ours.seconds, theirs.seconds)} · "
            f"{ratio(ours.peak_rss_mib, theirs.peak_rss_mib)}")


def format_size(size: dict[str, int] | None) -> str:
    return f"{size['allocated_bytes'] / MIB:.1f} MiB" if size else "–"


def size_ratio(ours: dict[str, int] | None, theirs: dict[str, int] | None) -> str:
    if not ours or not theirs:
        return "–"
    return ratio(ours["allocated_bytes"], theirs["allocated_bytes"])


def format_restore(result: ToolResult) -> str:
    if result.restore is None:
        return "not verified"
    text = result.restore.describe()
    return text if result.restore.identical else f"**{text}**"


def table_rows(report: Report, columns: list[ToolResult], peers: list[ToolResult]) -> list[list[str]]:
    ours = report.tools.get("strongroom")
    rows = []
    for step in STEPS:
        row = [STEP_TITLES[step]] + [format_step(t.steps.get(step)) for t in columns]
        row += [step_ratio(ours.steps.get(step), p.steps.get(step)) for p in peers]
        rows.append(row)
    rows.append(["restore identical to source"] + [format_restore(t) for t in columns]
                + [""] * len(peers))
    for key, title in (("after_first_backup", "repo size after first backup"),
                       ("final", "repo size, final (3 snapshots)"),
                       ("after_prune", "repo size after forget + prune (1 snapshot)")):
        row = [title] + [format_size(t.repo_size.get(key)) for t in columns]
        row += [size_ratio(ours.repo_size.get(key), p.repo_size.get(key)) for p in peers]
        rows.append(row)
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: Report) -> str:
    columns = [t for t in report.tools.values() if not t.skipped]
    ours = report.tools.get("strongroom")
    peers = [t for t in columns if t.name != "strongroom"] if ours and not ours.skipped else []
    header = ["step"] + [t.name for t in columns]
    header += [f"strongroom/{p.name} (time · peak)" for p in peers]
    data, meta = report.dataset, report.meta
    lines = [
        "## Backup benchmark",
        "",
        f"Data set: {data['files']} files, {data['bytes'] / MIB:.1f} MiB "
        f"(scale {data['scale']}, seed {data['seed']}, sha256 {data['sha256'][:16]}); "
        f"small change: {len(data.get('changed_files', []))} files.",
        f"Machine: {meta['cpus']} CPUs, {meta['memory_gib']} GiB RAM, {meta['platform']}, "
        f"Python {meta['python']}.",
        "Versions: " + "; ".join(f"{t.name}: {t.version}" for t in columns) + ".",
        "",
        f"Cells: wall time · peak RSS of the step ({meta['peak_rss_method']}; "
        f"'true' measures {meta['peak_rss_floor_mib']:.1f} MiB). "
        "Repository sizes are allocated bytes (du). "
        "Warm page cache; timings are indicative, never pass/fail.",
        "",
        markdown_table(header, table_rows(report, columns, peers)),
    ]
    lines += [f"\nSkipped {t.name}: {t.skipped}" for t in report.tools.values() if t.skipped]
    return "\n".join(lines)


def write_json(report: Report, path: Path) -> None:
    path.write_text(json.dumps(asdict(report), indent=2) + "\n")


# --------------------------------------------------------------------------
# Command line


def parse_tools(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in TOOL_CLASSES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {','.join(ALL_TOOLS)}; got {text!r}")
    return names


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="data set size factor, 1.0 is about 1 GiB (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=make_dataset.DEFAULT_SEED,
                        help="data set seed (default: %(default)s)")
    parser.add_argument("--tools", type=parse_tools, default=list(ALL_TOOLS),
                        help="comma-separated tools (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="local-disk directory in which a fresh run directory is made "
                             "(default: the system temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run directory (data set, repositories, restores, logs)")
    return parser.parse_args(argv)


def make_run_dir(parent: Path | None) -> Path:
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="strongroom-bench-", dir=parent)).resolve()


def exit_status(report: Report) -> int:
    """1 if any step failed or any restore differed; timings never matter."""
    for result in report.tools.values():
        if any(step.status == "failed" for step in result.steps.values()):
            return 1
        if result.restore is not None and not result.restore.identical:
            return 1
    return 0


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
