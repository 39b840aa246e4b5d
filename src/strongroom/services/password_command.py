"""A secret given as a command: its standard output's first line, read when
the secret is needed (as restic's --password-command).

The command runs through /bin/sh with no input. Its output is never shown:
a failure (an exit status other than 0, no output, too much output, a run
past the timeout) is one line that names the command's owner, not what it
printed. Its standard error is discarded too: a command that fails may say
more there than it should.
"""

from __future__ import annotations

import os
import signal
import selectors
import subprocess
import time
from collections.abc import Mapping

from strongroom.errors import UsageError

DEFAULT_TIMEOUT = 60.0
# A password is a line; a command that prints more than this is not printing one.
MAX_OUTPUT = 64 * 1024


def run_password_command(command: str, what: str, timeout: float = DEFAULT_TIMEOUT,
                         environ: Mapping[str, str] | None = None) -> bytes:
    """The first line of `command`'s output, for `what` (e.g. "config db: the password
    command"); UsageError when it fails, prints nothing, prints more than MAX_OUTPUT
    or takes longer than `timeout`. Its output is read as it comes, never more than
    MAX_OUTPUT of it: a command that prints without end is stopped there."""
    if not isinstance(command, str) or not command.strip() or "\0" in command:
        raise UsageError(f"{what} is empty")
    try:
        child = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, env=dict(environ) if environ is not None else None,
                                 start_new_session=True)
    except OSError as e:
        raise UsageError(f"{what} could not start: {e.strerror}") from None
    deadline = time.monotonic() + timeout
    try:
        out, stopped = _read_bounded(child, deadline)
        if stopped is None:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stopped = "timeout"
    finally:
        child.stdout.close()
        if child.poll() is None or stopped:
            # The whole group: a child the shell started would hold the pipe open.
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()
    if stopped == "timeout":
        raise UsageError(f"{what} did not finish within {timeout:g}s")
    if stopped == "too much":
        raise UsageError(f"{what} printed more than {MAX_OUTPUT // 1024} KiB: not a password")
    if child.returncode != 0:
        raise UsageError(f"{what} failed with exit status {child.returncode}")
    line = out.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        raise UsageError(f"{what} printed no password")
    return line


def _read_bounded(child: subprocess.Popen, deadline: float) -> tuple[bytes, str | None]:
    """The child's output to its end, and None; or what was read and why it
    stopped: "timeout" past `deadline`, "too much" past MAX_OUTPUT."""
    fd = child.stdout.fileno()
    chunks: list[bytes] = []
    size = 0
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return b"".join(chunks), "timeout"
            if not selector.select(remaining):
                continue
            data = os.read(fd, 64 * 1024)
            if not data:
                return b"".join(chunks), None
            size += len(data)
            if size > MAX_OUTPUT:
                return b"", "too much"
            chunks.append(data)
