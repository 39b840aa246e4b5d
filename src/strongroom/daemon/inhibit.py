"""Holding off sleep while a job runs: a laptop that suspends halfway through
an upload leaves a partial pack and a stale lock, and the slot's run fails.

`SleepInhibitor` takes a block inhibitor lock from logind for the length of
a `with` block by running `systemd-inhibit --what=sleep --mode=block ...
sleep infinity`, and ends it (its process group, which holds only that
process) when the block ends; logind drops the lock when the process goes,
so a daemon killed with -9 holds nothing either. Without systemd-inhibit it
is a no-op with one debug line; where systemd-inhibit cannot take the lock
(no logind, no system bus: a container), it says so in a debug line when
the block ends, and the job runs all the same.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from typing import IO

log = logging.getLogger(__name__)

BINARY = "systemd-inhibit"
STOP_WAIT = 5.0  # seconds for the inhibitor to end after SIGTERM before SIGKILL
MAX_ERROR = 300  # characters of its stderr kept for the debug line


def find_inhibitor() -> str | None:
    """The path of systemd-inhibit on PATH, or None."""
    return shutil.which(BINARY)


class SleepInhibitor:
    """`with SleepInhibitor(f"strongroom backup of {name}"):` keeps the machine
    awake while the block runs. `binary` is the systemd-inhibit to run (by
    default the one on PATH; None: do nothing)."""

    def __init__(self, why: str, binary: str | None = "", who: str = "strongroom") -> None:
        self.why = why
        self.who = who
        self.binary = find_inhibitor() if binary == "" else binary
        self.process: subprocess.Popen | None = None
        self._err: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        """Whether the inhibitor process is running (logind holds the lock while it does)."""
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> SleepInhibitor:
        if not self.binary:
            log.debug("%s is not installed: sleep is not held off during %s", BINARY, self.why)
            return self
        # One line, no control characters: the text ends up in `systemd-inhibit --list`.
        why = "".join(ch if ch.isprintable() else " " for ch in self.why)[:200]
        try:
            self.process = subprocess.Popen(
                [self.binary, "--what=sleep", f"--who={self.who}", f"--why={why}", "--mode=block",
                 "sleep", "infinity"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True)  # its own group: ended with its child, and not by a Ctrl-C meant for us
        except OSError as e:
            log.debug("%s could not start (%s): sleep is not held off during %s", self.binary, e.strerror, self.why)
            self.process = None
        return self

    def __exit__(self, *exc_info: object) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is not None:
            error = ""
            if process.stderr:
                error = process.stderr.read(MAX_ERROR).decode("utf-8", "replace")
                process.stderr.close()
            log.debug("%s did not hold off sleep during %s: %s", BINARY, self.why,
                      error.strip().splitlines()[0] if error.strip() else f"exit status {process.returncode}")
            return
        _end_group(process)
        if process.stderr:
            process.stderr.close()


def _end_group(process: subprocess.Popen) -> None:
    """SIGTERM to the inhibitor's own process group (it and its `sleep`), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, STOP_WAIT), (signal.SIGKILL, STOP_WAIT)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
