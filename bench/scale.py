#!/usr/bin/env python3
"""Scale measurements: a large index, many snapshots, a tree of a million files.

    python bench/scale.py index --blobs 10000000       # index objects of N blobs: load time, peak RSS, lookups
    python bench/scale.py snapshots --count 1000       # `snapshots` and `forget --keep-last 10 --dry-run`
    python bench/scale.py tree --files 1000000 --dirs 100000   # first and unchanged backup

Everything goes under --workdir (default /tmp/wt-scale-data) and is built once
per size, then reused. Each measured step runs in a fresh process, timed with
/usr/bin/time when it is there (wall, user, sys, peak RSS), so the numbers are
those a person running the command meets. The index objects are synthetic
(random ids, no packs behind them) but written through the real encoder and
sealed as any index object is; they are read back by Repository.load_index.
Run it with the checkout to measure on PYTHONPATH, e.g.
`PYTHONPATH=src python bench/scale.py index --blobs 1000000`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

PASSWORD = "scale-bench"
# The key derivation is not what is measured: a small Argon2id cost keeps its
# 64 MiB out of the peaks (the parameters travel in the key file).
SMALL_KDF = dict(memory_kib=1024, iterations=1, lanes=1)


def _env(repo: Path, cache: Path) -> dict:
    # Byte code is kept, as an installed program's is: a run that compiles
    # every module it imports measures the compiler, not the command.
    env = {k: v for k, v in os.environ.items() if k not in ("STRONGROOM_CATALOG", "PYTHONDONTWRITEBYTECODE")}
    env.update(STRONGROOM_PASSWORD=PASSWORD, STRONGROOM_REPO=str(repo), STRONGROOM_CACHE_DIR=str(cache),
               XDG_DATA_HOME=str(cache.parent / "data"))
    return env


def _timed(argv: list[str], env: dict, out: Path | None = None) -> dict:
    """Run a command; wall, user and sys seconds and peak RSS (MiB)."""
    timer = shutil.which("time") and Path("/usr/bin/time").exists()
    out = out or Path(env["STRONGROOM_CACHE_DIR"]).parent / "time.out"
    cmd = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(out), *argv] if timer else argv
    start = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True)
    wall = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout.decode()}\n{done.stderr.decode()}")
    if timer:
        e, u, s, m = out.read_text().split()[-4:]
        return {"wall": float(e), "user": float(u), "sys": float(s), "rss_mib": round(int(m) / 1024, 1)}
    return {"wall": round(wall, 2)}


def _strongroom() -> list[str]:
    return [sys.executable, "-m", "strongroom"]


def _new_repository(path: Path, cache: Path, full_kdf: bool = False):
    """A repository with the small KDF cost, or the default one (what a user has)."""
    from strongroom.repo import keys
    from strongroom.repo.repository import Repository
    from strongroom.storage import LocalStorage
    return Repository.init(LocalStorage(str(path)), PASSWORD.encode(), cache_root=str(cache),
                           kdf=None if full_kdf else keys.KdfParams(**SMALL_KDF))


def _open_repository(path: Path, cache: Path):
    from strongroom.repo.repository import Repository
    from strongroom.storage import LocalStorage
    return Repository.open(LocalStorage(str(path)), PASSWORD.encode(), cache_root=str(cache))


def _vm(field: str) -> int:
    """A VmHWM/VmRSS line of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# ---- an index of many blobs ------------------------------------------------------

def build_index(repo_path: Path, cache: Path, blobs: int, per_pack: int, per_object: int, seed: int) -> None:
    from strongroom.repo.pack import DATA, TREE, PackedBlob
    repo = _new_repository(repo_path, cache)
    rng = random.Random(seed)
    made = 0
    with repo.lock(exclusive=True):
        while made < blobs:
            n = min(per_object, blobs - made)
            objects: dict[bytes, list[PackedBlob]] = {}
            for p in range(0, n, per_pack):
                count = min(per_pack, n - p)
                ids = rng.randbytes(32 * count)
                offset, plist = 0, []
                for i in range(count):
                    length = 1000 + ((p + i) * 7919) % 60000
                    plist.append(PackedBlob(TREE if (p + i) % 50 == 0 else DATA, ids[32 * i:32 * i + 32], offset,
                                            length, length + 100))
                    offset += length
                objects[rng.randbytes(32)] = plist
            repo.write_index_object(objects)
            made += n


def load_index(repo_path: Path, cache: Path, lookups: int) -> dict:
    """In this process: open, load the index, look ids up. Peaks from /proc/self/status."""
    repo = _open_repository(repo_path, cache)
    before = _vm("VmHWM")
    rss_before = _vm("VmRSS")
    start = time.process_time()
    wall = time.monotonic()
    repo.load_index()
    result = {"blobs": len(repo.index), "load_wall": round(time.monotonic() - wall, 2),
              "load_cpu": round(time.process_time() - start, 2)}
    result["vmhwm_mib"] = round(_vm("VmHWM") / 1024, 1)
    result["vmrss_mib"] = round(_vm("VmRSS") / 1024, 1)
    result["rss_added_per_blob"] = round((_vm("VmRSS") - rss_before) * 1024 / max(1, len(repo.index)), 1)
    result["peak_added_per_blob"] = round((_vm("VmHWM") - before) * 1024 / max(1, len(repo.index)), 1)
    known = [blob_id for blob_id, _ in _first(repo.index.items(), lookups)]
    absent = [random.Random(7).randbytes(32) for _ in range(lookups)]
    index = repo.index
    for name, ids in (("hit", known), ("miss", absent)):
        t = time.process_time()
        for blob_id in ids:
            blob_id in index
        result[f"contains_{name}_us"] = round((time.process_time() - t) / len(ids) * 1e6, 2)
    t = time.process_time()
    for blob_id in known:
        index.get(blob_id)
    result["get_us"] = round((time.process_time() - t) / len(known) * 1e6, 2)
    return result


def _first(items, n):
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item


def cmd_index(args) -> None:
    where = args.workdir / f"index-{args.blobs}-{args.per_pack}-{args.per_object}"
    repo, cache = where / "repo", where / "cache"
    if not (where / "built").exists():
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        t = time.monotonic()
        build_index(repo, cache, args.blobs, args.per_pack, args.per_object, args.seed)
        (where / "built").write_text(f"{time.monotonic() - t:.1f}\n")
    for _ in range(args.runs):
        done = subprocess.run([sys.executable, __file__, "load-index", str(repo), str(cache),
                               "--lookups", str(args.lookups)], capture_output=True, env=os.environ)
        if done.returncode != 0:
            sys.exit(done.stderr.decode())
        print(json.dumps({"step": "index", "per_pack": args.per_pack, "per_object": args.per_object,
                          **json.loads(done.stdout)}), flush=True)


# ---- many snapshots --------------------------------------------------------------

def build_snapshots(where: Path, count: int) -> None:
    import dataclasses
    from datetime import datetime, timedelta, timezone

    src = where / "src"
    src.mkdir(parents=True)
    (src / "a.txt").write_text("one small file\n")
    repo_path, cache = where / "repo", where / "cache"
    _new_repository(repo_path, cache)
    env = _env(repo_path, cache)
    subprocess.run([*_strongroom(), "backup", str(src)], env=env, check=True, capture_output=True)
    repo = _open_repository(repo_path, cache)
    (snap,) = repo.list_snapshots()
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    with repo.lock():
        for i in range(1, count):
            # One an hour, on two hosts: forget's policy sees two groups.
            when = (start + timedelta(hours=i)).isoformat(timespec="microseconds")
            repo.save_snapshot(dataclasses.replace(snap, time=when, hostname=f"host{i % 2}", id=""))


def cmd_snapshots(args) -> None:
    where = args.workdir / f"snapshots-{args.count}"
    if not (where / "built").exists():
        shutil.rmtree(where, ignore_errors=True)
        build_snapshots(where, args.count)
        (where / "built").write_text("")
    env = _env(where / "repo", where / "cache")
    steps = {"snapshots": ["snapshots"], "snapshots --json": ["snapshots", "--json"],
             "forget --keep-last 10 --dry-run": ["forget", "--keep-last", "10", "--dry-run"]}
    for _ in range(args.runs):
        for name, argv in steps.items():
            print(json.dumps({"step": name, "count": args.count, **_timed([*_strongroom(), *argv], env)}),
                  flush=True)


# ---- a tree of many small files --------------------------------------------------

def generate_tree(root: Path, files: int, dirs: int, seed: int = 1) -> None:
    """`files` files of 100-700 bytes in `dirs` directories (two levels: about
    the square root of `dirs` on top, the rest below them). Names, contents and
    modification times follow from the seed alone."""
    pool = random.Random(seed).randbytes(1 << 20)
    top = max(1, int(dirs ** 0.5))
    per_dir = files // dirs
    extra = files - per_dir * dirs
    mtime = 1_600_000_000 * 10**9
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    number = 0
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for d in range(dirs):
        parent = tmp / f"t{d % top:04d}"
        if d < top:
            parent.mkdir(parents=True)
        folder = parent / f"d{d:06d}"
        folder.mkdir()
        for _ in range(per_dir + (1 if d < extra else 0)):
            offset = (number * 2654435761) % (len(pool) - 1024)
            size = 100 + (number * 40503) % 600
            fd = os.open(folder / f"f{number:07d}.txt", flags, 0o644)
            try:
                os.write(fd, b"%d\n" % number + pool[offset:offset + size])
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)
            number += 1
    tmp.rename(root)


def cmd_tree(args) -> None:
    where = args.workdir / f"tree-{args.files}-{args.dirs}"
    data = where / "data"
    if not data.exists():
        where.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        generate_tree(data, args.files, args.dirs)
        print(json.dumps({"step": "generate", "files": args.files, "dirs": args.dirs,
                          "seconds": round(time.monotonic() - t, 1)}), flush=True)
    for run in range(args.runs):
        repo, cache = where / "repo", where / "cache"
        shutil.rmtree(repo, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        # Beside restic, the default Argon2id cost (64 MiB), as restic pays its scrypt's.
        _new_repository(repo, cache, full_kdf=args.restic)
        env = _env(repo, cache)
        for step in ("first backup", "unchanged backup"):
            _drop_caches(args.drop_caches)
            print(json.dumps({"tool": "strongroom", "step": step, "files": args.files, "dirs": args.dirs,
                              **_timed([*_strongroom(), "backup", str(data)], env)}), flush=True)
        shutil.rmtree(repo, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        if args.restic and shutil.which("restic"):
            _restic_tree(where, data, args)


def _restic_tree(where: Path, data: Path, args) -> None:
    """The same two backups by restic, in the same run, for the ratios."""
    repo, cache = where / "restic-repo", where / "restic-cache"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(repo), RESTIC_CACHE_DIR=str(cache))
    cache.mkdir(parents=True)
    subprocess.run(["restic", "init", "-q"], env=env, check=True, capture_output=True)
    for step in ("first backup", "unchanged backup"):
        _drop_caches(args.drop_caches)
        print(json.dumps({"tool": "restic", "step": step, "files": args.files, "dirs": args.dirs,
                          **_timed(["restic", "backup", "-q", str(data)], env, where / "time.out")}), flush=True)
    shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)


def _drop_caches(wanted: bool) -> None:
    """Page cache, dentries and inodes dropped (as root), as a nightly run meets them."""
    if not wanted:
        return
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as e:
        sys.exit(f"--drop-caches needs root: {e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workdir", type=Path, default=Path("/tmp/wt-scale-data"))
    common.add_argument("--runs", type=int, default=1, help="measured runs (default 1)")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("index", parents=[common])
    p.add_argument("--blobs", type=int, default=1_000_000)
    p.add_argument("--per-pack", type=int, default=30, help="blobs per pack (default 30)")
    p.add_argument("--per-object", type=int, default=100_000, help="blobs per index object (default 100,000)")
    p.add_argument("--lookups", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("load-index")  # the measured process of `index`
    p.add_argument("repo", type=Path)
    p.add_argument("cache", type=Path)
    p.add_argument("--lookups", type=int, default=100_000)
    p = sub.add_parser("snapshots", parents=[common])
    p.add_argument("--count", type=int, default=1000)
    p = sub.add_parser("tree", parents=[common])
    p.add_argument("--files", type=int, default=1_000_000)
    p.add_argument("--dirs", type=int, default=100_000)
    p.add_argument("--restic", action="store_true", help="the same backups by restic, after strongroom's")
    p.add_argument("--drop-caches", action="store_true",
                   help="drop the page cache, dentries and inodes before every backup (root)")
    args = parser.parse_args()
    if args.what == "load-index":
        print(json.dumps(load_index(args.repo, args.cache, args.lookups)))
    else:
        {"index": cmd_index, "snapshots": cmd_snapshots, "tree": cmd_tree}[args.what](args)


if __name__ == "__main__":
    main()
