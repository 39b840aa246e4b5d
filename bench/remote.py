#!/usr/bin/env python3
"""First backup and restore against a WebDAV server on loopback, with and
without added latency, over 1, 2, 4 and 8 connections.

wsgidav (the server the tests use) serves a directory on 127.0.0.1, in a
thread of this process; `latency_proxy.py`, a process of its own, sits in
front of it and holds every byte `--delay` seconds each way (25 ms: a 50 ms
round trip). For each latency (none, then the delay) and each number of
connections, a fresh repository is made (not timed), then timed with
/usr/bin/time: the first backup of the data set, and a restore of it into an
empty directory with an empty cache (as a new machine restores). Each restore
is compared with the source (names, sizes and bytes). Requests are what
strongroom's own storage metrics count (its `--json` summary), every HTTP
request with its retries.

restic cannot speak WebDAV; its row is its first backup and restore on a
local repository, for reference.

    python bench/remote.py [--source DIR | --scale 0.1 --shape home] [--connections 1,2,4,8]
                           [--delay 0.025] [--pack-size MIB] [--workdir DIR] [--keep] [--json FILE]

The data set by default is make_dataset.py's at --scale 0.1 (about 100 MB);
--source backs up a directory of your own instead (read only).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_dataset  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-not-a-secret"
USER = "bench"


@dataclass
class Row:
    tool: str
    latency_ms: float  # added round trip
    connections: int | None
    step: str
    seconds: float
    cpu_seconds: float
    peak_mib: float
    requests: int | None
    ok: bool


def run_timed(argv: list[str], env: dict, log: Path) -> tuple[float, float, float, str]:
    """Wall seconds, user+sys seconds, peak RSS MiB and stdout of one command under /usr/bin/time."""
    stats = log.with_suffix(".time")
    started = time.monotonic()
    with open(log, "wb") as err:
        done = subprocess.run(["/usr/bin/time", "-o", str(stats), "-f", "%e %U %S %M", *argv], env=env,
                              stdout=subprocess.PIPE, stderr=err)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}... exited {done.returncode}; see {log}")
    _, user, system, kib = stats.read_text().split()[-4:]
    return wall, float(user) + float(system), int(kib) / 1024, done.stdout.decode()


def storage_requests(out: str) -> int | None:
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            doc = json.loads(line)
            if doc.get("type") == "summary" and "storage" in doc:
                return doc["storage"]["requests"]
    return None


def same_tree(a: Path, b: Path) -> bool:
    """Every file, link and directory of `a` in `b` with the same bytes, and nothing more."""
    def walk(top: Path) -> dict[str, str]:
        found = {}
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                path = Path(root, name)
                rel = str(path.relative_to(top))
                found[rel] = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        return found
    left, right = walk(a), walk(b)
    if left != right:
        return False
    return all(filecmp.cmp(a / rel, b / rel, shallow=False) for rel, kind in left.items() if kind == "file")


class DavServer:
    """wsgidav over a directory on 127.0.0.1, in a thread."""

    def __init__(self, root: Path) -> None:
        from cheroot import wsgi
        from wsgidav.wsgidav_app import WsgiDAVApp

        self.password = secrets.token_urlsafe(12)
        app = WsgiDAVApp({
            "provider_mapping": {"/dav": str(root)},
            "http_authenticator": {"domain_controller": None, "accept_basic": True, "accept_digest": False,
                                   "default_to_digest": False},
            "simple_dc": {"user_mapping": {"*": {USER: {"password": self.password}}}},
            "dir_browser": {"enable": False}, "verbose": 1, "logging": {"enable": False},
        })
        self.server = wsgi.Server(("127.0.0.1", 0), app, numthreads=16, shutdown_timeout=1)
        self.server.prepare()
        self.port = self.server.bind_addr[1]
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(5)


class Proxy:
    """latency_proxy.py in front of the server; it ends when we close its stdin."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("latency_proxy.py")),
                                      "--upstream", f"127.0.0.1:{upstream_port}", "--delay", str(delay)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.port = int(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


def strongroom_env(cache: Path, dav_password: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
    env.update(STRONGROOM_PASSWORD=PASSWORD, STRONGROOM_WEBDAV_PASSWORD=dav_password,
               STRONGROOM_CACHE_DIR=str(cache), STRONGROOM_WEBDAV_BUDGET="off")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    return env


def measure_strongroom(work: Path, source: Path, port: int, dav: DavServer, latency_ms: float,
                       connections: int, pack_size: int | None) -> list[Row]:
    name = f"r{int(latency_ms)}-c{connections}-{secrets.token_hex(3)}"
    url = f"webdav+http://{USER}@127.0.0.1:{port}/dav/{name}"
    env = strongroom_env(work / f"cache-{name}", dav.password)
    sr = [sys.executable, "-m", "strongroom"]
    init = sr + ["init", "--repo", url] + (["--pack-size", str(pack_size)] if pack_size else [])
    subprocess.run(init, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    wall, cpu, peak, out = run_timed(sr + ["backup", "--repo", url, "--json", "--connections", str(connections),
                                           str(source)], env, work / f"{name}-backup.log")
    rows.append(Row("strongroom", latency_ms, connections, "first backup", wall, cpu, peak,
                    storage_requests(out), True))
    target = work / f"restore-{name}"
    env = strongroom_env(work / f"cache-{name}-restore", dav.password)
    wall, cpu, peak, out = run_timed(sr + ["restore", "latest", "--repo", url, "--json", "--target", str(target),
                                           "--connections", str(connections)], env, work / f"{name}-restore.log")
    ok = same_tree(source, target / str(source).lstrip("/"))
    rows.append(Row("strongroom", latency_ms, connections, "restore", wall, cpu, peak, storage_requests(out), ok))
    # Kept until the run ends: a restore that follows the deletion of another
    # is slowed by the file system (docs/performance.md, "What the machine
    # does to everyone").
    return rows


def measure_transfers(port: int, dav: DavServer, latency_ms: float, connections: int, objects: int,
                      size: int) -> list[Row]:
    """`objects` writes of `size` random bytes, then their reads, `connections` at a time,
    through strongroom's own storage stack: the network alone, without the backup's CPU work."""
    from concurrent.futures import ThreadPoolExecutor

    from strongroom.settings import Settings
    from strongroom.storage import open_storage

    url = f"webdav+http://{USER}@127.0.0.1:{port}/dav/t{int(latency_ms)}-c{connections}-{secrets.token_hex(3)}"
    storage = open_storage(url, webdav_password=dav.password, cache_root="",
                           settings=Settings(connections=connections, webdav_budget=None))
    payload = [os.urandom(size) for _ in range(objects)]
    rows = []
    with ThreadPoolExecutor(connections) as pool:
        storage.create()
        before, started, cpu = storage.http_requests, time.monotonic(), time.process_time()
        list(pool.map(lambda i: storage.write(f"data/{i:04d}", payload[i]), range(objects)))
        rows.append(Row("storage only", latency_ms, connections, f"{objects} PUTs of {size >> 20} MiB",
                        time.monotonic() - started, time.process_time() - cpu, 0, storage.http_requests - before,
                        True))
        before, started, cpu = storage.http_requests, time.monotonic(), time.process_time()
        read = list(pool.map(lambda i: storage.read(f"data/{i:04d}", 0, size), range(objects)))
        rows.append(Row("storage only", latency_ms, connections, f"{objects} GETs of {size >> 20} MiB",
                        time.monotonic() - started, time.process_time() - cpu, 0, storage.http_requests - before,
                        read == payload))
    storage.close()
    return rows


def measure_restic(work: Path, source: Path) -> list[Row]:
    restic = shutil.which("restic")
    if restic is None:
        return []
    repo = work / "restic-repo"
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD, "RESTIC_REPOSITORY": str(repo),
           "RESTIC_CACHE_DIR": str(work / "restic-cache")}
    subprocess.run([restic, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
    rows = []
    wall, cpu, peak, _ = run_timed([restic, "backup", "-q", str(source)], env, work / "restic-backup.log")
    rows.append(Row("restic (local)", 0, None, "first backup", wall, cpu, peak, None, True))
    target = work / "restore-restic"
    wall, cpu, peak, _ = run_timed([restic, "restore", "latest", "-q", "--target", str(target)], env,
                                   work / "restic-restore.log")
    ok = same_tree(source, target / str(source).lstrip("/"))
    rows.append(Row("restic (local)", 0, None, "restore", wall, cpu, peak, None, ok))
    return rows  # the restore stays until the run ends, as strongroom's


def table(rows: list[Row]) -> str:
    lines = ["| tool | added RTT | connections | step | wall s | CPU s | peak MiB | requests | identical |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.tool} | {r.latency_ms:.0f} ms | {r.connections or '-'} | {r.step} | {r.seconds:.2f} | "
                     f"{r.cpu_seconds:.2f} | {r.peak_mib:.0f} | {r.requests if r.requests is not None else '-'} | "
                     f"{'yes' if r.ok else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="a directory to back up (read only)")
    parser.add_argument("--scale", type=float, default=0.1, help="make_dataset.py's scale, without --source")
    parser.add_argument("--shape", default=make_dataset.DEFAULT_SHAPE, help="make_dataset.py's shape")
    parser.add_argument("--connections", default="1,2,4,8")
    parser.add_argument("--delay", type=float, default=0.025, help="seconds added each way (0.025: 50 ms RTT)")
    parser.add_argument("--pack-size", type=int, help="MiB, for init (default: the repository's default)")
    parser.add_argument("--no-plain", action="store_true", help="skip the runs without added latency")
    parser.add_argument("--transfers", type=int, default=0, metavar="N",
                        help="also time N uploads and downloads of 4 MiB through the storage alone")
    parser.add_argument("--transfers-only", action="store_true", help="only those: no backups, no restores")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.connections.split(",")]
    # Stopped by a signal, it still stops its server and proxy and removes its directory.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    work = Path(tempfile.mkdtemp(prefix="strongroom-remote-", dir=args.workdir))
    served = work / "served"
    served.mkdir()
    dav = DavServer(served)
    proxy = Proxy(dav.port, args.delay)
    rows: list[Row] = []
    try:
        source = args.source
        if source is None and args.transfers_only:
            source = work
        elif source is None:
            source = work / "data"
            make_dataset.generate(source, scale=args.scale, shape=args.shape)
        source = source.resolve()
        size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file() and not p.is_symlink())
        plans = ([] if args.no_plain else [(0.0, dav.port)]) + [(2000 * args.delay, proxy.port)]
        if args.transfers or args.transfers_only:
            for latency_ms, port in plans:
                for n in counts:
                    rows += measure_transfers(port, dav, latency_ms, n, args.transfers or 24, 4 << 20)
                    print("\n".join(table(rows[-2:]).splitlines()[2:]), file=sys.stderr, flush=True)
        if args.transfers_only:
            plans = []
        else:
            rows += measure_restic(work, source)
        for latency_ms, port in plans:
            for n in counts:
                rows += measure_strongroom(work, source, port, dav, latency_ms, n, args.pack_size)
                print("\n".join(table(rows[-2:]).splitlines()[2:]), file=sys.stderr, flush=True)
    finally:
        proxy.stop()
        dav.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"data set: {source} ({size / 1e6:.0f} MB); added round trip {2000 * args.delay:.0f} ms; "
          f"{os.cpu_count()} CPUs")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
