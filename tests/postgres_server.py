"""A throw-away PostgreSQL cluster for tests: `initdb -A trust` in a
temporary directory, started by `pg_ctl` on a unix socket only (no TCP),
stopped with `pg_ctl stop -m immediate` and removed afterwards.

initdb refuses to run as root: as root (here and in CI) the cluster is made
and run by the `postgres` system user of Debian's package, with the data
directory owned by it and the socket directory world-writable; otherwise
by the current user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from webdav_servers import free_port


def server_bin(name: str) -> str:
    """initdb, pg_ctl...: not on Debian's PATH, they live in /usr/lib/postgresql/VERSION/bin."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4].split(".")[0]))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"{name} is not installed: install Debian's postgresql package (scripts/test.sh does)")
    return on_path


@dataclass(frozen=True)
class PostgresServer:
    socket_dir: str
    port: int
    data_dir: str
    user: str  # the cluster's superuser

    def dsn(self, dbname: str, **extra: str) -> str:
        params = {"host": self.socket_dir, "port": str(self.port), "user": self.user, "dbname": dbname, **extra}
        return " ".join(f"{k}={v}" for k, v in params.items())

    @property
    def env(self) -> dict[str, str]:
        """For clients that take the server from the environment."""
        return {"PGHOST": self.socket_dir, "PGPORT": str(self.port), "PGUSER": self.user}

    def psql(self, dbname: str, sql: str, user: str | None = None) -> str:
        """Run SQL as the superuser (or `user`); the rows, tab-separated."""
        done = subprocess.run([shutil.which("psql") or server_bin("psql"), "-X", "-q", "-t", "-A", "-F", "\t",
                               "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir, "-p", str(self.port),
                               "-U", user or self.user, "-d", dbname],
                              input=sql, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def as_owner(self, *argv: str) -> subprocess.CompletedProcess:
        return _as_owner(list(argv), self.user)

    def require_password(self, role: str) -> None:
        """Make `role` authenticate with its password (scram) on the socket."""
        hba = os.path.join(self.data_dir, "pg_hba.conf")
        self.as_owner("sh", "-c", f"printf 'local all {role} scram-sha-256\\n' | cat - {hba} > {hba}.new "
                                  f"&& mv {hba}.new {hba}")
        self.as_owner(server_bin("pg_ctl"), "reload", "-D", self.data_dir)


def _owner() -> str:
    return "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def _as_owner(argv: list[str], owner: str) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        argv = ["runuser", "-u", owner, "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}... failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    owner = _owner()
    top = tempfile.mkdtemp(prefix="strongroom-pg-")
    data, sockets, log = os.path.join(top, "data"), os.path.join(top, "sockets"), os.path.join(top, "log")
    os.mkdir(data, 0o700)
    os.mkdir(sockets)
    os.chmod(sockets, 0o1777)
    os.chmod(top, 0o755)
    info = pwd.getpwnam(owner)
    os.chown(data, info.pw_uid, info.pw_gid)
    open(log, "w").close()
    os.chown(log, info.pw_uid, info.pw_gid)
    port = free_port()
    started = False
    try:
        _as_owner([server_bin("initdb"), "-A", "trust", "-U", owner, "-D", data, "--no-sync"], owner)
        _as_owner([server_bin("pg_ctl"), "start", "-w", "-t", "60", "-D", data, "-l", log,
                   "-o", f"-k {sockets} -p {port} -c listen_addresses='' -c fsync=off"], owner)
        started = True
        yield PostgresServer(sockets, port, data, owner)
    finally:
        try:
            if started:
                _as_owner([server_bin("pg_ctl"), "stop", "-m", "immediate", "-w", "-D", data], owner)
        finally:
            shutil.rmtree(top, ignore_errors=True)
