"""A fleet of hosts backing up into one repository: the harness of test_fleet.py.

Every host is a set of real `strongroom` processes with a source tree, a
cache directory and a `--host` name of its own, and a machine of its own for
the locks' "same machine" judgement (STRONGROOM_MACHINE_ID, read at the
edge): so a host killed with SIGKILL leaves a lock the others must wait out
by the stale rule, as they would for another computer, and never take for
dead by its pid. Lock intervals are seconds, not minutes, through the test
hook in tests/hooks/sitecustomize.py (STRONGROOM_TEST_LOCK_TIMING).

The target is one entry of TARGETS: a factory that, given the pytest
request, returns a FleetTarget (a repository URL that does not exist yet,
and the environment every process needs to reach it: credentials travel in
the environment, never in argv). Another backend joins the fleet tests with
one more entry there, e.g.

    TARGETS["radosgw"] = s3_fleet_target   # a URL s3:http://127.0.0.1:PORT/bucket/fleet-XXXX
                                           # and {"AWS_ACCESS_KEY_ID": ..., "AWS_SECRET_ACCESS_KEY": ...}
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import pytest

from conftest import PASSWORD
from treeutil import snapshot_tree
import forked_cli

# refresh every 0.5 s, lost after 2.5 s unrefreshed, stale after 5 s seen
# unchanged: the proportions of the real 5, 15 and 30 minutes, with room for a
# loaded machine (a refresh late by 2 s is still no lost lock).
LOCK_TIMING = (0.5, 2.5, 5.0)
STALE_AFTER = LOCK_TIMING[2]
LOCKED = 11  # the exit code of a command refused by a lock
PACK_MIB = 1  # `init --pack-size 1`: several packs from a few MiB
TIMEOUT = 60  # seconds any one command may take before the test fails

# The command modules load lazily; the gate loads them before it waits, so
# that "go" starts the work itself and not a second of imports.
GATE = ("import sys\n"
        "from strongroom.cli.main import main\n"
        "import strongroom.cli.cmd_backup, strongroom.cli.cmd_prune, strongroom.cli.cmd_forget\n"
        "import strongroom.engine.prune, strongroom.engine.backup\n"
        "sys.stderr.write('ready\\n'); sys.stderr.flush()\n"
        "if sys.stdin.readline() == 'go\\n':\n"
        "    main(sys.argv[1:])\n")

# `restore SNAPSHOT --target DIR --verify` for each (SNAPSHOT, DIR) of argv, in
# one process; each exit code is checked, the first failure's message kept.
RESTORE_ALL = ("import sys\n"
               "from strongroom.cli.main import main\n"
               "failed = 0\n"
               "for snap, out in zip(sys.argv[1::2], sys.argv[2::2]):\n"
               "    try:\n"
               "        main(['restore', snap, '--target', out, '--verify', '--no-lock'])\n"
               "    except SystemExit as e:\n"
               "        if e.code:\n"
               "            sys.stderr.write(f'restore {snap[:8]} exited {e.code}\\n')\n"
               "            failed = 1\n"
               "    else:\n"
               "        sys.stderr.write(f'restore {snap[:8]} did not exit\\n')\n"
               "        failed = 1\n"
               "sys.exit(failed)\n")


@dataclass(frozen=True)
class FleetTarget:
    name: str
    url: str  # a repository that does not exist yet
    env: Mapping[str, str] = field(default_factory=dict)  # what every process needs to reach it


TargetFactory = Callable[[pytest.FixtureRequest], FleetTarget]


def local_target(request: pytest.FixtureRequest) -> FleetTarget:
    return FleetTarget("local", str(request.getfixturevalue("tmp_path") / "repo"))


def webdav_target(kind: str) -> TargetFactory:
    def factory(request: pytest.FixtureRequest) -> FleetTarget:
        server = request.getfixturevalue("webdav_session_servers").fresh_collection(kind)
        return FleetTarget(kind, server.storage_url() + "repo/", {
            "STRONGROOM_WEBDAV_PASSWORD": server.password, "STRONGROOM_WEBDAV_DEADLINE": "60",
            "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05", "STRONGROOM_WEBDAV_BUDGET": "off"})
    return factory


REMOTE_ENV = {"STRONGROOM_WEBDAV_DEADLINE": "60", "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05"}


def s3_target(request: pytest.FixtureRequest) -> FleetTarget:
    """A fresh prefix of the session's bucket on the radosgw of tests/s3_server.py."""
    bucket = request.getfixturevalue("s3_shared_bucket")
    prefix = f"fleet-{secrets.token_hex(6)}"
    return FleetTarget("s3", bucket.cluster.url(bucket.name, prefix), {**REMOTE_ENV, **bucket.cluster.env()})


def sftp_target(request: pytest.FixtureRequest) -> FleetTarget:
    """A fresh folder on the sshd of tests/sftp_server.py, logged in by key file."""
    server = request.getfixturevalue("sftp_server")
    return FleetTarget("sftp", server.url(server.scratch()), {
        **REMOTE_ENV, "STRONGROOM_SFTP_KEY_FILE": str(server.client_key),
        "STRONGROOM_SFTP_KNOWN_HOSTS": str(server.known_hosts), "SSH_AUTH_SOCK": ""})


# Any server of webdav_servers.SERVERS plugs in as webdav_target(KIND). Which
# test runs on which target is test_fleet.py's choice (its time budget).
TARGETS: dict[str, TargetFactory] = {
    "local": local_target,
    "wsgidav": webdav_target("wsgidav"),
    "s3": s3_target,
    "sftp": sftp_target,
}


def summary_of(done: subprocess.CompletedProcess) -> dict:
    """The last JSON line of a command that must have succeeded."""
    assert done.returncode == 0, f"{done.args} exited {done.returncode}:\n{done.stderr.decode(errors='replace')}"
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


class Running:
    """A `strongroom` process started at the gate; `go()` lets it run."""

    def __init__(self, argv: list[str], env: dict, out: Path) -> None:
        self.args = argv
        self.out_path = out
        self._out = open(out, "wb")
        self.proc = subprocess.Popen([sys.executable, "-c", GATE, *argv], stdin=subprocess.PIPE, stdout=self._out,
                                     stderr=subprocess.PIPE, env=env)
        assert self.proc.stderr.readline() == b"ready\n", f"{argv}: did not reach the gate"

    def go(self) -> "Running":
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        return self

    def finish(self) -> subprocess.CompletedProcess:
        _, err = self.proc.communicate(timeout=TIMEOUT)
        self._out.close()
        return subprocess.CompletedProcess(self.args, self.proc.returncode, self.out_path.read_bytes(), err)

    def kill(self) -> subprocess.CompletedProcess:
        self.proc.send_signal(signal.SIGKILL)
        return self.finish()


class Host:
    """One machine of the fleet: its files, its cache, its name and machine id."""

    def __init__(self, fleet: "Fleet", name: str) -> None:
        self.fleet = fleet
        self.name = name
        self.home = fleet.root / name
        self.source = self.home / "src"
        self.cache = self.home / "cache"
        self.rng = random.Random(name)
        self.backed_up: dict[str, dict] = {}  # snapshot id -> the source as that backup saw it
        self._runs = 0
        self.source.mkdir(parents=True)
        for i in range(4):
            self._write(f"f{i}.bin", 40_000 + self.rng.randrange(60_000))
        (self.source / "notes.txt").write_text(f"{name}\n" * 100)
        (self.source / "shared.bin").write_bytes(random.Random(7).randbytes(150_000))  # the same on every host

    def _write(self, name: str, size: int) -> None:
        path = self.source / "sub" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.rng.randbytes(size))

    def change(self) -> None:
        """Between two runs: one file rewritten, one new, one gone."""
        files = sorted((self.source / "sub").iterdir())
        self._write(files[0].name, 30_000 + self.rng.randrange(60_000))
        files[-1].unlink()
        self._write(f"n{self._runs}-{self.rng.randrange(10**6)}.bin", 30_000 + self.rng.randrange(60_000))
        (self.source / "notes.txt").write_text(f"{self.name} run {self._runs}\n" * 100)

    @property
    def env(self) -> dict:
        return {**self.fleet.env, "STRONGROOM_CACHE_DIR": str(self.cache),
                "STRONGROOM_MACHINE_ID": f"fleet-{self.fleet.token}-{self.name}",
                "XDG_DATA_HOME": str(self.home / "data")}

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return forked_cli.run([*args], env=self.env,
                              timeout=TIMEOUT)

    def start(self, *args: str) -> Running:
        """A command held at the gate: `.go()` runs it."""
        self._runs += 1
        return Running(list(args), self.env, self.home / f"run-{self._runs}.out")

    def locks(self) -> list[dict]:
        """The locks on the target, as this host sees them (`strongroom locks`)."""
        done = self.run("locks", "--json")
        lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
        assert done.returncode == 0 and lines[-1]["type"] == "summary", done.stderr.decode()
        return [line for line in lines if line["type"] == "lock"]

    def backup_args(self) -> list[str]:
        return ["backup", "--json", "--host", self.name, "--retry-lock", "60", str(self.source)]

    def record(self, done: subprocess.CompletedProcess, tree: dict) -> str:
        snap = summary_of(done)["snapshot"]
        self.backed_up[snap] = tree
        return snap

    def backup(self) -> str:
        tree = snapshot_tree(self.source)
        return self.record(self.run(*self.backup_args()), tree)

    def backup_loop(self, times: int, done: Callable[[str], None] = lambda snap: None) -> None:
        """`times` backups one after the other, the source changed before each
        but the first; `done` hears of each snapshot (run it in a thread)."""
        for n in range(times):
            if n:
                self.change()
            done(self.backup())


class Fleet:
    def __init__(self, target: FleetTarget, root: Path) -> None:
        self.target = target
        self.root = root
        self.token = secrets.token_hex(4)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("STRONGROOM_", "AWS_")) and k != "XDG_DATA_HOME"}
        self.env.update(target.env)
        self.env.update(STRONGROOM_PASSWORD=PASSWORD.decode(), STRONGROOM_REPO=target.url,
                        STRONGROOM_TEST_LOCK_TIMING=",".join(str(x) for x in LOCK_TIMING))
        self.hosts: dict[str, Host] = {}

    def host(self, name: str) -> Host:
        if name not in self.hosts:
            self.hosts[name] = Host(self, name)
        return self.hosts[name]

    def init(self) -> None:
        done = self.host("admin").run("init", "--pack-size", str(PACK_MIB))
        assert done.returncode == 0, done.stderr.decode()

    # ---- what the repository holds ------------------------------------------------------

    def snapshots(self) -> dict[str, dict]:
        done = self.host("admin").run("snapshots", "--json")
        assert done.returncode == 0, done.stderr.decode()
        return {doc["id"]: doc for doc in json.loads(done.stdout)}

    def assert_every_point_restores(self) -> int:
        """Every snapshot on the target restores to what its host backed up, and
        each one is a backup some host made. Returns how many were restored."""
        made = {snap: (host, tree) for host in self.hosts.values() for snap, tree in host.backed_up.items()}
        listed = self.snapshots()
        assert set(listed) <= set(made), f"snapshots no host made: {set(listed) - set(made)}"
        admin = self.host("admin")
        restores = [(snap, self.root / "restored" / snap) for snap in listed]
        for snap, _ in restores:
            assert listed[snap]["hostname"] == made[snap][0].name
        # One process restores them all, one after the other, beside the check
        # the caller runs: a process start and a repository open per point
        # cost more than the small restores themselves.
        done = subprocess.run([sys.executable, "-c", RESTORE_ALL, *(str(x) for pair in restores for x in pair)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=admin.env, timeout=TIMEOUT)
        assert done.returncode == 0, f"restores: {done.stderr.decode(errors='replace')}"
        for snap, out in restores:
            host, tree = made[snap]
            assert snapshot_tree(out / host.source.relative_to("/")) == tree, \
                f"snapshot {snap[:8]} of {host.name} restores differently from what it backed up"
            shutil.rmtree(out)
        return len(listed)


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen | None = None,
             timeout: float = TIMEOUT) -> None:
    """Poll `condition` until it holds; fail if `proc` ends first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def pending_packs(host: Host) -> list[str]:
    """The packs a host's running backup stored and has not indexed yet (its
    cache's journal: written after each pack is on the target)."""
    found = []
    for journal in host.cache.glob("*/pending-packs"):
        found += [line for line in journal.read_text().split() if len(line) == 64]
    return found
