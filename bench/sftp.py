#!/usr/bin/env python3
"""First backup and restore over SFTP, strongroom beside restic, against
Debian's OpenSSH server on loopback.

The server is the tests' throw-away sshd (tests/sftp_server.py: its own
config, host key and user key, 127.0.0.1 and a free port). For each tool a
fresh repository is made on it (not timed), then timed with /usr/bin/time:
the first backup of the data set, and a restore into an empty directory
with an empty cache. Each restore is compared with the source. restic
speaks SFTP through the ssh client (`-o sftp.command=...` with the same key
and known_hosts); strongroom through asyncssh. Times are also given as
ratios to restic's, the same step in the same run.

    python bench/sftp.py [--source DIR | --scale 0.05 --shape home] [--connections 4] [--json FILE] [--keep]
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
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
import make_dataset  # noqa: E402
from remote import PASSWORD, REPO_ROOT, Row, run_timed, same_tree, storage_requests  # noqa: E402
from sftp_server import SSHServer, run_sshd  # noqa: E402


def strongroom_rows(work: Path, source: Path, server: SSHServer, connections: int) -> list[Row]:
    url = server.url(server.root / "strongroom")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_") and k != "SSH_AUTH_SOCK"}
    env.update(STRONGROOM_PASSWORD=PASSWORD, STRONGROOM_REPO=url, STRONGROOM_SFTP_KEY_FILE=str(server.client_key),
               STRONGROOM_SFTP_KNOWN_HOSTS=str(server.known_hosts), STRONGROOM_CACHE_DIR=str(work / "sr-cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    sr = [sys.executable, "-m", "strongroom"]
    subprocess.run(sr + ["init"], env=env, check=True, stdout=subprocess.DEVNULL)
    rows = []
    wall, cpu, peak, out = run_timed(sr + ["backup", "--json", "--connections", str(connections), str(source)],
                                     env, work / "sr-backup.log")
    rows.append(Row("strongroom", 0, connections, "first backup", wall, cpu, peak, storage_requests(out), True))
    target = work / "sr-restore"
    env["STRONGROOM_CACHE_DIR"] = str(work / "sr-cache-restore")
    wall, cpu, peak, out = run_timed(sr + ["restore", "latest", "--json", "--connections", str(connections),
                                           "--target", str(target)], env, work / "sr-restore.log")
    ok = same_tree(source, target / str(source).lstrip("/"))
    rows.append(Row("strongroom", 0, connections, "restore", wall, cpu, peak, storage_requests(out), ok))
    return rows


def restic_rows(work: Path, source: Path, server: SSHServer, connections: int) -> list[Row]:
    restic = shutil.which("restic")
    if restic is None:
        print("restic is not installed (Debian: restic): its rows are left out", file=sys.stderr)
        return []
    command = (f"ssh -p {server.port} -i {server.client_key} -o UserKnownHostsFile={server.known_hosts} "
               f"-o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes "
               f"{server.user}@127.0.0.1 -s sftp")
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD,
           "RESTIC_REPOSITORY": f"sftp:{server.user}@127.0.0.1:{server.root / 'restic'}",
           "RESTIC_CACHE_DIR": str(work / "restic-cache")}
    options = ["-o", f"sftp.command={command}", "-o", f"sftp.connections={connections}"]
    subprocess.run([restic, *options, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
    rows = []
    wall, cpu, peak, _ = run_timed([restic, *options, "backup", "-q", str(source)], env, work / "restic-backup.log")
    rows.append(Row("restic", 0, connections, "first backup", wall, cpu, peak, None, True))
    target = work / "restic-restore"
    env["RESTIC_CACHE_DIR"] = str(work / "restic-cache-restore")
    wall, cpu, peak, _ = run_timed([restic, *options, "restore", "latest", "-q", "--target", str(target)], env,
                                   work / "restic-restore.log")
    rows.append(Row("restic", 0, connections, "restore", wall, cpu, peak, None,
                    same_tree(source, target / str(source).lstrip("/"))))
    return rows


def table(rows: list[Row]) -> str:
    restic = {r.step: r.seconds for r in rows if r.tool == "restic"}
    lines = ["| tool | connections | step | wall s | / restic | CPU s | peak MiB | requests | identical |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r.seconds / restic[r.step]:.2f}" if restic.get(r.step) else "-"
        lines.append(f"| {r.tool} | {r.connections} | {r.step} | {r.seconds:.2f} | {ratio} | {r.cpu_seconds:.2f} | "
                     f"{r.peak_mib:.0f} | {r.requests if r.requests is not None else '-'} | "
                     f"{'yes' if r.ok else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="a directory to back up (read only)")
    parser.add_argument("--scale", type=float, default=0.05, help="make_dataset.py's scale, without --source")
    parser.add_argument("--shape", default=make_dataset.DEFAULT_SHAPE, help="make_dataset.py's shape")
    parser.add_argument("--connections", type=int, default=4, help="for both tools (restic's sftp.connections)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="strongroom-sftp-bench-", dir=args.workdir))
    rows: list[Row] = []
    try:
        source = args.source
        if source is None:
            source = work / "data"
            make_dataset.generate(source, scale=args.scale, shape=args.shape)
        source = source.resolve()
        size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file() and not p.is_symlink())
        with run_sshd() as server:
            rows += restic_rows(work, source, server, args.connections)
            rows += strongroom_rows(work, source, server, args.connections)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"data set: {source} ({size / 1e6:.0f} MB); OpenSSH on loopback; {os.cpu_count()} CPUs")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
