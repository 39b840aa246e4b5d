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
import subprocess
from collections.abc import Mapping

from strongroom.errors import UsageError

DEFAULT_TIMEOUT = 60.0
# A password is a line; a command that prints more than this is not printing one.
MAX_OUTPUT = 64 * 1024


def run_password_command(command: str, what: str, timeout: float = DEFAULT_TIMEOUT,
                         environ: Mapping[str, str] | None = None) -> bytes:
    """The first line of `command`'s output, for `what` (e.g. "config db: the password
    command"); UsageError when it fails, prints nothing, or takes longer than `timeout`."""
    if not isinstance(command, str) or not command.strip() or "\0" in command:
        raise UsageError(f"{what} is empty")
    try:
        with subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env=dict(environ) if environ is not None else None,
                              start_new_session=True) as child:
            try:
                out, _ = child.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                # The whole group: a child the shell started would hold the pipe open.
                os.killpg(child.pid, signal.SIGKILL)
                child.communicate()
                raise UsageError(f"{what} did not finish within {timeout:g}s") from None
    except OSError as e:
        raise UsageError(f"{what} could not start: {e.strerror}") from None
    if child.returncode != 0:
        raise UsageError(f"{what} failed with exit status {child.returncode}")
    if len(out) > MAX_OUTPUT:
        raise UsageError(f"{what} printed more than {MAX_OUTPUT // 1024} KiB: not a password")
    line = out.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        raise UsageError(f"{what} printed no password")
    return line
