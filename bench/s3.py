#!/usr/bin/env python3
"""First backup and restore on S3 (radosgw on loopback), strongroom beside restic.

A throw-away Ceph cluster (tests/s3_server.py) serves S3 on 127.0.0.1;
tests/fault_proxy.py sits in front of it, doing nothing but count the HTTP
requests each step sends, for both tools alike. For each tool: a fresh
bucket and repository (init, not timed), then timed with /usr/bin/time the
first backup of the data set and a restore into an empty directory with an
empty cache, compared with the source. Ratios are strongroom's over
restic's, in the same run.

    python bench/s3.py [--source DIR | --scale 0.02 --shape home] [--connections N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests"), str(HERE.parent / "src")]
import make_dataset  # noqa: E402
from remote import PASSWORD, Row, run_timed, same_tree, table  # noqa: E402


def _steps(tool: str, work: Path, source: Path, env: dict, init: list[str], backup: list[str],
           restore: list[str], proxy) -> list[Row]:
    subprocess.run(init, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    for step, argv in (("first backup", backup), ("restore", restore)):
        before = sum(proxy.requests.values())
        wall, cpu, peak, _ = run_timed(argv, env, work / f"{tool}-{step.replace(' ', '-')}.log")
        ok = step != "restore" or same_tree(source, work / f"restore-{tool}" / str(source).lstrip("/"))
        rows.append(Row(tool, 0, None, step, wall, cpu, peak, sum(proxy.requests.values()) - before, ok))
    return rows


def main(argv: list[str] | None = None) -> int:
    from fault_proxy import FaultProxy
    from s3_server import start_ceph

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path)
    parser.add_argument("--scale", type=float, default=0.02)
    parser.add_argument("--shape", default=make_dataset.DEFAULT_SHAPE)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    restic = shutil.which("restic")
    if restic is None:
        raise SystemExit("restic is not installed (apt-get install restic)")
    work = Path(tempfile.mkdtemp(prefix="strongroom-s3-bench-"))
    rows: list[Row] = []
    try:
        source = args.source or work / "data"
        if args.source is None:
            make_dataset.generate(source, scale=args.scale, shape=args.shape)
        source = source.resolve()
        size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file() and not p.is_symlink())
        with start_ceph() as cluster, FaultProxy(("127.0.0.1", int(cluster.endpoint.rsplit(":", 1)[1]))) as proxy:
            endpoint = f"http://{proxy.address}"
            base = {k: v for k, v in os.environ.items() if not k.startswith(("STRONGROOM_", "RESTIC_", "AWS_"))}
            base.update(cluster.env())
            url = f"s3:{endpoint}/bench-strongroom/repo"
            env = {**base, "STRONGROOM_PASSWORD": PASSWORD, "STRONGROOM_CACHE_DIR": str(work / "sr-cache"),
                   "PYTHONPATH": str(HERE.parent / "src")}
            sr = [sys.executable, "-m", "strongroom"]
            conn = ["--connections", str(args.connections)]
            rows += _steps("strongroom", work, source, env, sr + ["init", "--repo", url],
                           sr + ["backup", "--repo", url, "--json", *conn, str(source)],
                           sr + ["restore", "latest", "--repo", url, "--json", *conn, "--no-cache",
                                 "--target", str(work / "restore-strongroom")], proxy)
            env = {**base, "RESTIC_PASSWORD": PASSWORD, "RESTIC_REPOSITORY": f"s3:{endpoint}/bench-restic/repo",
                   "RESTIC_CACHE_DIR": str(work / "restic-cache")}
            rows += _steps("restic", work, source, env, [restic, "init"],
                           [restic, "backup", "-q", "-o", f"s3.connections={args.connections}", str(source)],
                           [restic, "restore", "latest", "-q", "--no-cache", "-o",
                            f"s3.connections={args.connections}", "--target", str(work / "restore-restic")], proxy)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"data set: {size / 1e6:.0f} MB; radosgw on loopback; {args.connections} connections; "
          f"{os.cpu_count()} CPUs")
    print(table(rows))
    by = {(r.tool, r.step): r for r in rows}
    for step in ("first backup", "restore"):
        ours, theirs = by[("strongroom", step)], by[("restic", step)]
        print(f"{step}: time x{ours.seconds / theirs.seconds:.2f}, requests x{ours.requests / theirs.requests:.2f} "
              f"(strongroom / restic)")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
