#!/usr/bin/env python3
"""Start-up time of the command line, against restic and borg.

Times `strongroom --version`, `strongroom --help` and `strongroom version`
(this checkout's src/, run as `python -m strongroom`), the bare interpreter
(`python -c pass`, the floor no Python tool goes below), `restic version` and
`borg --version`, over N runs each, interleaved so a slow moment of the
machine spreads over all of them. Prints the median and the fastest run of
each, the median CPU time (which a busy machine inflates less than the wall
time), and the medians' ratios to restic's and to the bare interpreter.

    python bench/startup.py [--runs 30] [--compare OTHER_CHECKOUT/src] [--json FILE]

`--compare` adds the same strongroom rows run from another source tree (for
example the main branch), for a before-and-after in one run. As root, missing
peers are installed with apt-get, as bench/run.py does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import ensure_command  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
STRONGROOM_ARGS = (["--version"], ["--help"], ["version"])


def strongroom_rows(source: Path, label: str) -> list[tuple[str, list[str], dict]]:
    env = dict(os.environ, PYTHONPATH=str(source))
    return [(f"{label} {' '.join(args)}", [sys.executable, "-m", "strongroom", *args], env)
            for args in STRONGROOM_ARGS]


def time_once(argv: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, from wait4) of one run. On a
    busy machine the wall time counts waiting for a core; the CPU time does not."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {child.returncode}")
    return elapsed, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs of each command (default 30)")
    parser.add_argument("--compare", type=Path, metavar="SRC", help="also time strongroom from this source tree")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)

    rows = strongroom_rows(REPO_ROOT / "src", "strongroom")
    if args.compare:
        rows += strongroom_rows(args.compare.resolve(), f"strongroom ({args.compare})")
    rows.append(("python -c pass", [sys.executable, "-c", "pass"], dict(os.environ)))
    for binary, package, version_args in (("restic", "restic", ["version"]), ("borg", "borgbackup", ["--version"])):
        why_not = ensure_command(binary, package)
        if why_not:
            print(f"{binary}: skipped: {why_not}", file=sys.stderr)
        else:
            rows.append((f"{binary} {' '.join(version_args)}", [binary, *version_args], dict(os.environ)))

    runnable = []
    for label, command, env in rows:  # warm the page cache and the bytecode caches
        if subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
            print(f"{label}: skipped: it exits with an error", file=sys.stderr)
        else:
            runnable.append((label, command, env))
    rows = runnable
    times: dict[str, list[float]] = {label: [] for label, _, _ in rows}
    cpu: dict[str, list[float]] = {label: [] for label, _, _ in rows}
    for _ in range(args.runs):
        for label, command, env in rows:
            wall, used = time_once(command, env)
            times[label].append(wall)
            cpu[label].append(used)

    medians = {label: statistics.median(t) for label, t in times.items()}
    cpu_medians = {label: statistics.median(t) for label, t in cpu.items()}
    restic = medians.get("restic version")
    python = medians["python -c pass"]
    load = os.getloadavg()[0]
    print(f"start-up, {args.runs} runs each, {os.cpu_count()} cores (load {load:.1f}), "
          f"python {sys.version.split()[0]}\n")
    print("| command | median ms | fastest ms | median CPU ms | x restic | x python -c pass |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, median in medians.items():
        vs_restic = f"{median / restic:.1f}" if restic else "-"
        print(f"| `{label}` | {median * 1000:.1f} | {min(times[label]) * 1000:.1f} | "
              f"{cpu_medians[label] * 1000:.1f} | {vs_restic} | {median / python:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"runs": args.runs, "load": load, "medians_s": medians,
                                         "fastest_s": {k: min(v) for k, v in times.items()},
                                         "cpu_medians_s": cpu_medians}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
