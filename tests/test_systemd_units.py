"""The shipped systemd units (verified by systemd-analyze, and their keys
read back) and the sleep inhibitor a job runs under.

logind cannot run in this test container (systemd is installed, but is not
PID 1 and there is no system bus): the real systemd-inhibit is run and must
fail cleanly here, and, where the machine does boot with systemd, hold the
lock. The lifecycle of the inhibitor's process (started with the right
arguments, alive during the block, gone after it, also after an error) is
tested with a stand-in script in place of systemd-inhibit, since the real
one exits at once without logind."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from strongroom.daemon.inhibit import SleepInhibitor
from strongroom.daemon.systemd_units import unit_text
from strongroom.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "src" / "strongroom" / "data" / "systemd"


def keys(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> every value given, in order (a unit may repeat a key)."""
    out: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key), []).append(value)
    return out


def verify(tmp_path: Path, name: str, text: str, user: bool) -> subprocess.CompletedProcess:
    """`systemd-analyze verify` of a copy of the unit whose ExecStart is this test's strongroom
    (verify checks that the program exists)."""
    path = tmp_path / name
    path.write_text(text)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}  # a user manager needs one
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: scripts/test.sh installs Debian's systemd"
    return subprocess.run([analyze, *(["--user"] if user else []), "verify", str(path)], capture_output=True,
                          text=True, env=env, timeout=60)


def test_the_system_unit_verifies_and_says_what_the_service_needs(tmp_path):
    text = unit_text()
    assert text == (UNITS / "strongroom.service").read_text()
    assert (ROOT / "contrib" / "systemd" / "strongroom.service").read_text() == text
    done = verify(tmp_path, "strongroom.service", unit_text(executable=sys.executable), user=False)
    assert (done.returncode, done.stderr) == (0, "")
    k = keys(text)
    assert k[("Unit", "After")] == ["network-online.target"] and k[("Unit", "Wants")] == ["network-online.target"]
    assert k[("Service", "ExecStart")] == ["/usr/bin/strongroom serve"]
    assert k[("Service", "ExecReload")] == ["/bin/kill -HUP $MAINPID"]
    assert k[("Service", "User")] == ["strongroom"] and k[("Service", "Restart")] == ["on-failure"]
    assert k[("Service", "KillSignal")] == ["SIGTERM"] and k[("Service", "TimeoutStopSec")] == ["5min"]
    assert k[("Service", "ProtectSystem")] == ["strict"]
    writable = k[("Service", "ReadWritePaths")][0].split()
    assert {"/var/lib/strongroom", "/var/cache/strongroom"} <= set(writable)
    env = dict(v.split("=", 1) for v in k[("Service", "Environment")])
    assert env["STRONGROOM_CATALOG"] == "/var/lib/strongroom/catalog.db"
    assert env["STRONGROOM_CACHE_DIR"] == "/var/cache/strongroom"
    assert k[("Service", "AmbientCapabilities")] == ["CAP_DAC_READ_SEARCH"]  # reads what it backs up
    assert k[("Install", "WantedBy")] == ["multi-user.target"]

    # The check catches a broken unit: a key systemd does not know.
    broken = verify(tmp_path, "broken.service", unit_text(executable=sys.executable) + "Bogus=1\n", user=False)
    assert "Unknown key 'Bogus'" in broken.stderr


def test_the_user_unit_verifies_and_starts_with_the_session(tmp_path):
    text = unit_text(user=True)
    assert text == (UNITS / "strongroom-user.service").read_text()
    assert (ROOT / "contrib" / "systemd" / "strongroom-user.service").read_text() == text
    done = verify(tmp_path, "strongroom.service", unit_text(user=True, executable=sys.executable), user=True)
    assert (done.returncode, done.stderr) == (0, "")
    k = keys(text)
    assert k[("Service", "ExecStart")] == ["%h/.local/bin/strongroom serve"]
    assert k[("Install", "WantedBy")] == ["default.target"]
    assert ("Service", "User") not in k and k[("Service", "Restart")] == ["on-failure"]
    assert k[("Service", "ExecReload")] == ["/bin/kill -HUP $MAINPID"]
    moved = unit_text(user=True, executable="/opt/sr/bin/strongroom")
    assert keys(moved)[("Service", "ExecStart")] == ["/opt/sr/bin/strongroom serve"]
    with pytest.raises(UsageError, match="absolute path"):
        unit_text(executable="strongroom")
    with pytest.raises(UsageError, match="absolute path"):
        unit_text(executable="/opt/my strongroom/bin/strongroom")


STAND_IN = """#!/bin/sh
# Stands in for systemd-inhibit, which needs logind (not running here): records how it was called.
printf '%s\\n' "$$" "$@" > "{record}"
exec sleep infinity
"""


def test_the_inhibitor_runs_only_while_the_block_runs(tmp_path):
    record = tmp_path / "called.txt"
    stand_in = tmp_path / "systemd-inhibit"
    stand_in.write_text(STAND_IN.format(record=record))
    stand_in.chmod(0o755)
    with SleepInhibitor("strongroom backup of files", binary=str(stand_in)) as inhibitor:
        for _ in range(200):  # it records itself as it starts
            if record.exists() and record.read_text().endswith("infinity\n"):
                break
            subprocess.run(["sleep", "0.02"])
        assert inhibitor.held
        pid, *args = record.read_text().splitlines()
        assert args == ["--what=sleep", "--who=strongroom", "--why=strongroom backup of files", "--mode=block",
                        "sleep", "infinity"]
        assert int(pid) == inhibitor.process.pid
    assert not inhibitor.held and inhibitor.process is None
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)

    # A job that fails ends its inhibitor too.
    record.unlink()
    with pytest.raises(RuntimeError):
        with SleepInhibitor("strongroom backup of db\nwith a newline", binary=str(stand_in)) as failing:
            for _ in range(200):
                if record.exists() and record.read_text().endswith("infinity\n"):
                    break
                subprocess.run(["sleep", "0.02"])
            pid = int(record.read_text().splitlines()[0])
            assert "--why=strongroom backup of db with a newline" in record.read_text().splitlines()
            raise RuntimeError("the backup failed")
    assert not failing.held
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_without_systemd_inhibit_or_logind_a_job_runs_all_the_same(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="strongroom.daemon.inhibit")
    with SleepInhibitor("strongroom backup of files", binary=None) as nothing:
        assert not nothing.held
    with SleepInhibitor("strongroom backup of files", binary=str(tmp_path / "no-such-binary")) as missing:
        assert not missing.held
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "systemd-inhibit is not installed: sleep is not held off during strongroom backup of files"
    assert lines[1].startswith(f"{tmp_path / 'no-such-binary'} could not start (No such file or directory)")
    assert len(lines) == 2

    caplog.clear()
    real = shutil.which("systemd-inhibit")
    assert real, "systemd-inhibit is missing: scripts/test.sh installs Debian's systemd"
    booted_with_systemd = os.path.isdir("/run/systemd/system")
    with SleepInhibitor("strongroom backup of files") as inhibitor:
        if booted_with_systemd:
            listed = subprocess.run([real, "--list"], capture_output=True, text=True, timeout=30).stdout
            assert inhibitor.held and "strongroom backup of files" in listed
        else:
            inhibitor.process.wait(timeout=30)  # no logind: it gives up at once
    assert inhibitor.process is None
    if not booted_with_systemd:
        [line] = [r.getMessage() for r in caplog.records]
        assert line.startswith("systemd-inhibit did not hold off sleep during strongroom backup of files: ")
