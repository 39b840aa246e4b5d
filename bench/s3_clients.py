"""Our thin S3 client against boto3, on the radosgw of tests/s3_server.py.

    python bench/s3_clients.py [--boto3-python PATH] [--small 50] [--big-mib 32] [--rounds 3]

Starts a throw-away Ceph cluster, then in a fresh process for each client:
the time and resident memory of importing it and making a client, the
throughput of PUT and GET of one `--big-mib` object (median of `--rounds`),
and the median latency of small (4 KiB) PUT, GET and LIST requests. boto3
runs under `--boto3-python` (a venv that has it: boto3 is no dependency of
strongroom), the thin client under this interpreter. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = r'''
import json, os, resource, statistics, sys, time
kind, endpoint, key, secret, bucket, small, big_mib, rounds = sys.argv[1:9]
small, big, rounds = int(small), int(big_mib) << 20, int(rounds)
t0 = time.perf_counter()
if kind == "boto3":
    import boto3
    from botocore.config import Config
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                      region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
    put = lambda k, b: s3.put_object(Bucket=bucket, Key=k, Body=b)
    get = lambda k: s3.get_object(Bucket=bucket, Key=k)["Body"].read()
    lst = lambda p: s3.list_objects_v2(Bucket=bucket, Prefix=p)
else:
    from strongroom.storage.s3 import S3Client, S3Credentials, S3Endpoint, S3Storage
    from strongroom.storage.s3_providers import PROVIDERS
    client = S3Client(S3Endpoint.parse(endpoint, "us-east-1", True), S3Credentials(key, secret))
    st = S3Storage(client, bucket, "", PROVIDERS["ceph"], part_size=1 << 30)
    put = lambda k, b: st.write(k, b)
    get = lambda k: st.read(k)
    lst = lambda p: list(st.list(p.rstrip("/")))
ready = time.perf_counter() - t0
rss_ready = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if kind == "boto3":
    s3.put_object(Bucket=bucket, Key="bench/", Body=b"")
else:
    st.make_dirs(["bench"])
first = time.perf_counter() - t
payload = os.urandom(big)
puts, gets = [], []
for i in range(rounds):
    t = time.perf_counter(); put(f"bench/big{i}", payload); puts.append(time.perf_counter() - t)
    t = time.perf_counter(); assert len(get(f"bench/big{i}")) == big; gets.append(time.perf_counter() - t)
little = os.urandom(4096)
lat = {"put": [], "get": [], "list": []}
for i in range(small):
    t = time.perf_counter(); put(f"bench/s{i:04d}", little); lat["put"].append(time.perf_counter() - t)
    t = time.perf_counter(); get(f"bench/s{i:04d}"); lat["get"].append(time.perf_counter() - t)
    t = time.perf_counter(); lst("bench/"); lat["list"].append(time.perf_counter() - t)
print(json.dumps({
    "import_and_client_s": round(ready, 3), "rss_after_import_mib": round(rss_ready / 1024, 1),
    "first_request_s": round(first, 3),
    "put_mib_s": round(big / 2**20 / statistics.median(puts), 1),
    "get_mib_s": round(big / 2**20 / statistics.median(gets), 1),
    **{f"small_{k}_ms": round(1000 * statistics.median(v), 2) for k, v in lat.items()},
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boto3-python", help="an interpreter that can import boto3 (default: skip boto3)")
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--big-mib", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]
    from s3_server import start_ceph

    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    results = {}
    with start_ceph() as cluster:
        for kind, python in (("thin", sys.executable), ("boto3", args.boto3_python)):
            if python is None:
                continue
            bucket = f"bench-{kind}"
            with cluster.client() as client:
                client.create_bucket(bucket)
                # radosgw's first object request after start takes over a second: not the client's.
                client.request("PUT", bucket, "warm-up", "warm up", body=b"x")
            done = subprocess.run([python, "-c", WORKER, kind, cluster.endpoint, cluster.access_key,
                                   cluster.secret_key, bucket, str(args.small), str(args.big_mib),
                                   str(args.rounds)], capture_output=True, text=True, env=env, timeout=600)
            if done.returncode != 0:
                raise SystemExit(f"{kind}: {done.stderr[-2000:]}")
            results[kind] = json.loads(done.stdout)
        results["cluster_start_s"] = cluster.timings
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
