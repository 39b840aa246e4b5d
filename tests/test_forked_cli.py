"""The suite's fast way to run the command line (tests/forked_cli.py) gives
what a new interpreter gives: the same output, exit status, environment,
time zone, working directory and standard input."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import forked_cli
from conftest import PASSWORD


def both(args: list[str], env: dict, **kwargs) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    forked = forked_cli.run(args, env=env, timeout=120, **kwargs)
    execed = forked_cli.run(args, env={**env, "STRONGROOM_TEST_EXEC": "1"}, timeout=120, **kwargs)
    return forked, execed


@pytest.fixture
def env(cli, src) -> dict:
    cli.run("init", check=True)
    cli.run("backup", str(src), check=True)
    return dict(cli.env)


@pytest.mark.parametrize("args", [["snapshots", "--json"], ["ls", "latest"], ["check"], ["--version"],
                                  ["snapshots", "--no-such-option"], ["restore", "nosuchsnapshot", "--target", "x"]])
def test_output_and_exit_status_are_the_same(env, args):
    forked, execed = both(args, env)
    assert (forked.returncode, forked.stdout, forked.stderr) == (execed.returncode, execed.stdout, execed.stderr)


def test_each_command_has_its_own_environment_working_directory_and_time_zone(env, tmp_path):
    (tmp_path / "here").mkdir()
    for tz in ("UTC", "Asia/Shanghai", "America/Santiago"):
        forked, execed = both(["snapshots"], {**env, "TZ": tz})
        assert forked.returncode == 0 and forked.stdout == execed.stdout
    # A relative target lands in the command's own working directory.
    forked = forked_cli.run(["restore", "latest", "--target", "out"], env=env, cwd=tmp_path / "here", timeout=120)
    assert forked.returncode == 0, forked.stderr
    assert (tmp_path / "here" / "out").is_dir()
    # A wrong password given to one command is not seen by the next.
    wrong = forked_cli.run(["snapshots"], env={**env, "STRONGROOM_PASSWORD": "wrong"}, timeout=120)
    right = forked_cli.run(["snapshots"], env=env, timeout=120)
    assert wrong.returncode != 0 and right.returncode == 0


def test_standard_input_reaches_the_command(env, tmp_path):
    stdin_env = {k: v for k, v in env.items() if k != "STRONGROOM_PASSWORD"}
    forked, execed = both(["snapshots", "--password-file", "/dev/stdin"], stdin_env, input=PASSWORD + b"\n")
    assert forked.returncode == execed.returncode == 0, forked.stderr
    assert forked.stdout == execed.stdout
    big = os.urandom(3 * 1024 * 1024)  # more than a pipe holds: written while the command reads
    forked = forked_cli.run(["backup", "--stdin", "--stdin-filename", "big.bin"], env=env, input=big, timeout=120)
    assert forked.returncode == 0, forked.stderr
    dumped = forked_cli.run(["dump", "latest", "/big.bin"], env=env, timeout=120)
    assert dumped.returncode == 0 and dumped.stdout == big


def test_a_command_past_its_timeout_is_killed(env, tmp_path):
    with pytest.raises(subprocess.TimeoutExpired):
        forked_cli.run(["backup", "--stdin-from-command", "--stdin-filename", "slow", "--",
                        sys.executable, "-c", "import time; time.sleep(60)"], env=env, timeout=2)
