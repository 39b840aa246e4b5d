"""asyncssh against paramiko, on Debian's OpenSSH server on loopback.

    python bench/sftp_libraries.py [--files 2000] [--mib 32] [--threads 8] [--json FILE]

Starts the tests' throw-away sshd (tests/sftp_server.py), then runs each
library in a fresh interpreter of its own, so that its import time and
memory are its own: the import, a connection, one MIB-MiB write and read,
FILES small (4 KiB) writes, reads and stats one after another, a listing of
that folder, and the same small writes again from THREADS threads at once.
asyncssh runs as strongroom's backend uses it: its own event loop in one
thread, called from the caller's threads. Results in docs/sftp.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

SMALL = 4096


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_paramiko(port: int, user: str, key: str, known_hosts: str, root: str, files: int, mib: int,
                 threads: int) -> dict:
    from concurrent.futures import ThreadPoolExecutor, wait
    started = time.perf_counter()
    import paramiko
    out = {"library": f"paramiko {paramiko.__version__}", "import_s": time.perf_counter() - started}
    started = time.perf_counter()
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port, user, key_filename=key, allow_agent=False, look_for_keys=False)
    sftp = client.open_sftp()
    out["connect_s"] = time.perf_counter() - started
    big = os.urandom(mib << 20)
    started = time.perf_counter()
    with sftp.open(f"{root}/big", "wb") as f:
        f.set_pipelined(True)
        view = memoryview(big)
        for i in range(0, len(big), 32768):
            f.write(view[i:i + 32768])
    out["write_MiB_s"] = mib / (time.perf_counter() - started)
    started = time.perf_counter()
    with sftp.open(f"{root}/big", "rb") as f:
        # Prefetched, read a MiB at a time: one read of the whole file is
        # slower by twenty times (1.6 MiB/s measured).
        f.prefetch(len(big))
        back = b"".join(iter(lambda: f.read(1 << 20), b""))
    out["read_MiB_s"] = mib / (time.perf_counter() - started)
    assert back == big
    sftp.mkdir(f"{root}/small")
    data = os.urandom(SMALL)
    started = time.perf_counter()
    for i in range(files):
        with sftp.open(f"{root}/small/{i:05d}", "wb") as f:
            f.write(data)
    out["small_write_ms"] = (time.perf_counter() - started) * 1000 / files
    started = time.perf_counter()
    for i in range(files):
        with sftp.open(f"{root}/small/{i:05d}", "rb") as f:
            assert f.read(SMALL + 1) == data
    out["small_read_ms"] = (time.perf_counter() - started) * 1000 / files
    started = time.perf_counter()
    for i in range(files):
        sftp.stat(f"{root}/small/{i:05d}")
    out["stat_ms"] = (time.perf_counter() - started) * 1000 / files
    started = time.perf_counter()
    assert len(sftp.listdir_attr(f"{root}/small")) == files
    out["list_s"] = time.perf_counter() - started
    # Threads share one SFTP channel (SFTPClient takes a lock per request).
    # (One channel per thread over the same connection hung as well, and then
    # opening more channels hung too: docs/sftp.md.)
    sftp.mkdir(f"{root}/parallel")

    def put(i: int) -> None:
        with sftp.open(f"{root}/parallel/{i:05d}", "wb") as f:
            f.write(data)

    started = time.perf_counter()
    pool = ThreadPoolExecutor(threads)
    futures = [pool.submit(put, i) for i in range(files)]
    _, pending = wait(futures, timeout=120)
    pool.shutdown(wait=False, cancel_futures=True)
    if pending:
        out["parallel_small_write_ms_shared"] = f"hung after {len(os.listdir(f'{root}/parallel'))} of {files}"
    else:
        out["parallel_small_write_ms_shared"] = (time.perf_counter() - started) * 1000 / files
    out["peak_rss_MiB"] = _rss_kib() / 1024
    print(json.dumps(out), flush=True)
    os._exit(0)  # a hung channel's threads would keep the interpreter from exiting


def run_asyncssh(port: int, user: str, key: str, known_hosts: str, root: str, files: int, mib: int,
                 threads: int) -> dict:
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor
    started = time.perf_counter()
    import asyncssh
    out = {"library": f"asyncssh {asyncssh.__version__}", "import_s": time.perf_counter() - started}
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def call(awaitable):
        async def wrapped():
            return await awaitable
        return asyncio.run_coroutine_threadsafe(wrapped(), loop).result()

    started = time.perf_counter()
    conn = call(asyncssh.connect("127.0.0.1", port, username=user, client_keys=[key], known_hosts=known_hosts,
                                 agent_path=None))
    sftp = call(conn.start_sftp_client())
    out["connect_s"] = time.perf_counter() - started

    async def write(path, data):
        async with sftp.open(path, "wb") as f:
            await f.write(data)

    async def read(path, size):
        async with sftp.open(path, "rb") as f:
            return await f.read(size)

    big = os.urandom(mib << 20)
    started = time.perf_counter()
    call(write(f"{root}/big", big))
    out["write_MiB_s"] = mib / (time.perf_counter() - started)
    started = time.perf_counter()
    back = call(read(f"{root}/big", len(big)))
    out["read_MiB_s"] = mib / (time.perf_counter() - started)
    assert back == big
    call(sftp.mkdir(f"{root}/small"))
    data = os.urandom(SMALL)
    started = time.perf_counter()
    for i in range(files):
        call(write(f"{root}/small/{i:05d}", data))
    out["small_write_ms"] = (time.perf_counter() - started) * 1000 / files
    started = time.perf_counter()
    for i in range(files):
        assert call(read(f"{root}/small/{i:05d}", SMALL + 1)) == data
    out["small_read_ms"] = (time.perf_counter() - started) * 1000 / files
    started = time.perf_counter()
    for i in range(files):
        call(sftp.stat(f"{root}/small/{i:05d}"))
    out["stat_ms"] = (time.perf_counter() - started) * 1000 / files
    started = time.perf_counter()
    assert len(call(sftp.readdir(f"{root}/small"))) == files + 2  # with . and ..
    out["list_s"] = time.perf_counter() - started
    call(sftp.mkdir(f"{root}/parallel"))
    # One SFTP session: its requests are multiplexed by id, so threads share it.
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: call(write(f"{root}/parallel/{i:05d}", data)), range(files)))
    out["parallel_small_write_ms_shared"] = (time.perf_counter() - started) * 1000 / files
    out["peak_rss_MiB"] = _rss_kib() / 1024
    conn.close()
    return out


RUNNERS = {"asyncssh": run_asyncssh, "paramiko": run_paramiko}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(RUNNERS[args.child](*json.loads(sys.stdin.read()))), flush=True)
        return 0
    from sftp_server import run_sshd
    results = []
    with run_sshd() as server:
        for name in RUNNERS:
            root = tempfile.mkdtemp(prefix=f"{name}-", dir=server.root)
            params = [server.port, server.user, str(server.client_key), str(server.known_hosts), root, args.files,
                      args.mib, args.threads]
            done = subprocess.run([sys.executable, __file__, "--child", name], input=json.dumps(params),
                                  capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{name} failed:\n{done.stderr}")
            results.append(json.loads(done.stdout))
    keys = list(dict.fromkeys(k for r in results for k in r if k != "library"))
    cell = lambda v: f"{v:>24.3f}" if isinstance(v, float) else f"{v if v is not None else '-':>24}"  # noqa: E731
    print(f"{'':34}" + "".join(f"{r['library']:>24}" for r in results))
    for key in keys:
        print(f"{key:34}" + "".join(cell(r.get(key)) for r in results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
