"""A throw-away single-node Ceph cluster with radosgw, for the S3 tests.

One monitor, one OSD on memstore (its objects live in the OSD's memory, up
to MEMSTORE_BYTES), no manager, and radosgw's beast frontend: all from
Debian's ceph-mon, ceph-osd and radosgw, started on 127.0.0.1 and free
ports with every file in one temporary directory (never /etc/ceph or
/var/lib/ceph), and stopped, directory and all, when the session ends.

Authentication inside the cluster is "none" (nothing but loopback reaches
it); radosgw still checks S3 signatures against the user the fixture makes
with radosgw-admin. radosgw asks the monitor for a "secure" connection
mode by default, which needs cephx: `ms mon client mode = crc` lets it in.
The monitor speaks only msgr2 (a monmap made with --addv). What each piece
takes to start, and the memory it holds: docs/s3.md.

- `s3_cluster` (session): the running cluster, started on first use.
- `s3_bucket`: a fresh, empty bucket on it for one test.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from webdav_servers import free_port

__all__ = ["CephCluster", "S3Bucket", "s3_bucket", "s3_cluster", "s3_shared_bucket", "start_ceph"]

MEMSTORE_BYTES = 2 * 1024 ** 3
START_TIMEOUT = 120.0
_BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph-authtool", "ceph")


@dataclass
class CephCluster:
    root: Path
    endpoint: str  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str
    region: str = "default"  # radosgw's zonegroup is its region
    timings: dict[str, float] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def rss_kib(self) -> dict[str, int]:
        """Resident memory of each daemon, from /proc."""
        out = {}
        for name, process in self.processes.items():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        out[name] = int(line.split()[1])
        return out

    def admin(self, *args: str) -> str:
        """radosgw-admin against this cluster (its own config, never /etc/ceph)."""
        return _run(["radosgw-admin", "-c", str(self.root / "ceph.conf"), *args], self.root)

    def new_user(self, uid: str) -> tuple[str, str]:
        access, secret = "AK" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30)
        self.admin("user", "create", "--uid", uid, "--display-name", uid, "--access-key", access,
                   "--secret", secret)
        return access, secret

    def url(self, bucket: str, prefix: str = "") -> str:
        """The restic-style repository URL of a bucket (and prefix) here."""
        return f"s3:{self.endpoint}/{bucket}" + (f"/{prefix}" if prefix else "")

    def env(self) -> dict[str, str]:
        """The variables a strongroom (or restic) process reads its S3 access from."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        from strongroom.storage.s3 import S3Client, S3Credentials, S3Endpoint

        return S3Client(S3Endpoint.parse(self.endpoint, region="us-east-1", path_style=True),
                        S3Credentials(access_key or self.access_key, secret_key or self.secret_key), timeout=20)

    def storage(self, bucket: str, prefix: str = "", **options):
        """An S3Storage (no retries) for `prefix` in `bucket`."""
        from strongroom.storage.s3 import S3Storage
        from strongroom.storage.s3_providers import PROVIDERS

        return S3Storage(self.client(), bucket, prefix, PROVIDERS["ceph"], **options)

    def put_raw(self, bucket: str, key: str, data: bytes) -> None:
        """Write a key as another tool would, past every check of ours."""
        with self.client() as client:
            client.request("PUT", bucket, key, f"put {key}", body=data)


@dataclass(frozen=True)
class S3Bucket:
    cluster: CephCluster
    name: str

    @property
    def url(self) -> str:
        return self.cluster.url(self.name)


def _run(argv: list[str], root: Path, timeout: float = 60.0) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=root)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}... exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def _config(root: Path, fsid: str, mon_port: int, rgw_port: int) -> str:
    return f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr1 = false
ms bind ipv6 = false
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms mon client mode = crc
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = {MEMSTORE_BYTES}
run dir = {root}/run
admin socket = {root}/run/$name.asok
log file = {root}/log/$name.log
pid file = {root}/run/$name.pid
mon data = {root}/mon.$id
osd data = {root}/osd.$id
keyring = {root}/keyring
crash dir = {root}/crash
exec dir = {root}/run

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
rgw data = {root}/rgw
rgw thread pool size = 32
rgw enable ops log = false
"""


def _wait(what: str, ready, processes: dict[str, subprocess.Popen], root: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited {process.returncode} while waiting for {what}; "
                                   f"see its log in {root}/log")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}; logs in {root}/log")
        time.sleep(0.1)


def _die_with_parent() -> None:
    """In the child: SIGKILL when the process that started it dies, however
    it dies (a killed pytest leaves no cluster behind)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _daemon(argv: list[str], root: Path, name: str) -> subprocess.Popen:
    out = open(root / "log" / f"{name}.out", "wb")
    try:
        # Its own session: a Ctrl-C of pytest does not reach it before the
        # fixture stops it.
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=root, start_new_session=True,
                                preexec_fn=_die_with_parent)
    finally:
        out.close()


def _osd_up(conf: Path, root: Path) -> bool:
    dump = json.loads(_run(["ceph", "-c", str(conf), "osd", "dump", "--format", "json"], root))
    return any(osd["osd"] == 0 and osd["up"] for osd in dump["osds"])


def _http_answers(endpoint: str) -> bool:
    import httpx

    try:
        httpx.get(endpoint + "/", timeout=2)
    except httpx.TransportError:
        return False
    return True


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    # Everything they hold is thrown away: SIGKILL, not the 5 s radosgw and
    # the OSD take to shut down in order on SIGTERM.
    for process in reversed(list(processes.values())):
        if process.poll() is None:
            process.kill()
    for process in processes.values():
        process.wait(timeout=10)


@contextlib.contextmanager
def start_ceph() -> Iterator[CephCluster]:
    missing = [b for b in _BINARIES if shutil.which(b) is None]
    if missing:
        raise RuntimeError(f"the S3 tests need Debian's ceph-mon, ceph-osd, radosgw and ceph-common "
                           f"({', '.join(missing)} not found): run scripts/test.sh as root")
    root = Path(tempfile.mkdtemp(prefix="strongroom-ceph-"))
    processes: dict[str, subprocess.Popen] = {}
    timings: dict[str, float] = {}
    try:
        for sub in ("run", "log", "crash", "rgw", "osd.0"):
            (root / sub).mkdir()
        fsid, mon_port, rgw_port = str(uuid.uuid4()), free_port(), free_port()
        conf = root / "ceph.conf"
        conf.write_text(_config(root, fsid, mon_port, rgw_port))
        c = ["-c", str(conf)]

        began = step = time.monotonic()

        def lap(name: str) -> None:
            nonlocal step
            now = time.monotonic()
            timings[name] = round(now - step, 2)
            step = now

        _run(["monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{mon_port}]", "--fsid", fsid,
              str(root / "monmap")], root)
        _run(["ceph-authtool", "--create-keyring", str(root / "keyring"), "--gen-key", "-n", "mon.",
              "--cap", "mon", "allow *"], root)
        _run(["ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", str(root / "monmap"),
              "--keyring", str(root / "keyring")], root)
        lap("mon mkfs")
        processes["ceph-mon"] = _daemon(["ceph-mon", *c, "-i", "a", "-f"], root, "ceph-mon")
        osd_uuid = str(uuid.uuid4())
        # The first command waits for the monitor to form its quorum of one.
        _run(["ceph", *c, "osd", "new", osd_uuid], root)
        lap("mon start (to its first answer)")
        _run(["ceph-osd", *c, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid], root)
        lap("osd mkfs")
        processes["ceph-osd"] = _daemon(["ceph-osd", *c, "-i", "0", "-f"], root, "ceph-osd")
        _wait("the OSD to come up", lambda: _osd_up(conf, root), processes, root)
        lap("osd start (until up)")
        endpoint = f"http://127.0.0.1:{rgw_port}"
        processes["radosgw"] = _daemon(["radosgw", *c, "-n", "client.rgw.a", "-f"], root, "radosgw")
        _wait("radosgw to answer", lambda: _http_answers(endpoint), processes, root)
        lap("radosgw start (makes its pools, then answers)")
        cluster = CephCluster(root, endpoint, "", "", timings=timings, processes=processes)
        cluster.access_key, cluster.secret_key = cluster.new_user("strongroom-test")
        lap("user create")
        timings["total"] = round(time.monotonic() - began, 2)
        yield cluster
    finally:
        _stop(processes)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_cluster() -> Iterator[CephCluster]:
    with start_ceph() as cluster:
        yield cluster


def _new_bucket(cluster: CephCluster) -> S3Bucket:
    name = f"t-{uuid.uuid4().hex[:20]}"
    with cluster.client() as client:
        client.create_bucket(name)
    return S3Bucket(cluster, name)


@pytest.fixture
def s3_bucket(s3_cluster: CephCluster) -> S3Bucket:
    """A new, empty bucket for one test, made with a signed CreateBucket."""
    return _new_bucket(s3_cluster)


@pytest.fixture(scope="session")
def s3_shared_bucket(s3_cluster: CephCluster) -> S3Bucket:
    """One bucket for the session, for tests that each take a prefix of their own."""
    return _new_bucket(s3_cluster)


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # python tests/s3_server.py: start, print the measurements, stop
    # Stopped by a signal (a background job ignores SIGINT), it still stops the cluster.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    with start_ceph() as cluster:
        print(json.dumps({"timings_s": cluster.timings, "rss_kib": cluster.rss_kib(),
                          "endpoint": cluster.endpoint, "access_key": cluster.access_key,
                          "secret_key": cluster.secret_key}, indent=1))
        if os.environ.get("S3_SERVER_HOLD"):
            print("holding; Ctrl-C to stop", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
