"""A command's standard output as the source: `pg_dump -Fc mydb`, `mysqldump`, ...

The output is streamed into the backup, never staged on disk. The stream
ends (read() gives b"") only after the command has exited with status 0;
any other end (a status, a signal, a command not found) raises from read()
at the end of the output, so the backup fails and no snapshot is written:
a dump cut short is never stored as good.
"""

from __future__ import annotations

import io
import os
import shutil
import shlex
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from strongroom.errors import StrongroomError, UsageError
from strongroom.sources.base import SourceSpec

STDERR_TAIL = 8192  # bytes of the command's stderr kept for the error message
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when a backup stops early


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without strongroom's own passwords, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not (k.startswith("STRONGROOM_") and "PASSWORD" in k)}
    env.update(extra or {})
    return env


class CommandStream(io.RawIOBase):
    """The stdout of a child in its own process group, stdin /dev/null,
    stderr read aside (its last STDERR_TAIL bytes kept)."""

    def __init__(self, argv: list[str], what: str, env_extra: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.what = what
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, bufsize=0, start_new_session=True,
                                          env=child_environment(env_extra))
        except OSError as e:
            raise StrongroomError(f"{what} could not start: {e.strerror}") from None
        self._tail = bytearray()
        self._stderr = threading.Thread(target=self._drain_stderr, name="source-stderr", daemon=True)
        self._stderr.start()
        self._finished = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _drain_stderr(self) -> None:
        while True:
            data = self._proc.stderr.read(65536)
            if not data:
                return
            self._tail += data
            del self._tail[:-STDERR_TAIL]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._finished:
            return 0
        n = self._proc.stdout.readinto(buffer)
        if n:
            return n
        self._finish()
        return 0

    def _finish(self) -> None:
        status = self._proc.wait()
        self._stderr.join(STOP_GRACE)
        if status != 0:
            raise StrongroomError(f"{self.what} {_ending(status)}{self._last_line()}; nothing was stored")
        self._finished = True

    def _last_line(self) -> str:
        lines = [line.strip() for line in bytes(self._tail).decode("utf-8", "replace").splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            return ""
        shown = "".join(c if c.isprintable() else "?" for c in lines[-1])
        return f": {shown[:300]}"

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._proc.poll() is None:
                # The backup stopped before the end of the output: stop the whole group.
                _signal_group(self._proc.pid, signal.SIGTERM)
                try:
                    self._proc.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    _signal_group(self._proc.pid, signal.SIGKILL)
                    self._proc.wait()
            self._proc.stdout.close()
            self._stderr.join(STOP_GRACE)
            self._proc.stderr.close()
        finally:
            super().close()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _ending(status: int) -> str:
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = str(-status)
        return f"was killed by signal {name}"
    if status == 127:
        return "exited with status 127 (command not found)"
    return f"exited with status {status}"


@contextmanager
def command_stream(argv: list[str], what: str, env_extra: Mapping[str, str] | None = None) -> Iterator[CommandStream]:
    """Run `argv` and give its stdout; the child is stopped and reaped on leaving."""
    stream = CommandStream(argv, what, env_extra)
    try:
        yield stream
    finally:
        stream.close()


def plain_file_name(name: str | None, what: str) -> str:
    """A stored file's name: one path component, printable."""
    if not name or "/" in name or name in (".", "..") or not name.isprintable():
        raise UsageError(f"{what}: give the stored file's name as a plain file name (e.g. mydb.dump)")
    return name


class CommandSource:
    """`/bin/sh -c COMMAND`; its output stored as `file_name`."""

    kind = "command"

    def __init__(self, spec: SourceSpec) -> None:
        self.command = spec.target
        self.file_name = plain_file_name(spec.file_name, "source command")

    def check(self) -> None:
        try:
            words = shlex.split(self.command)
        except ValueError:
            raise UsageError("source command: unbalanced quotes") from None
        if not words:
            raise UsageError("source command: empty")
        first = words[0]
        # A shell word (a variable, a built-in) is left to the shell at run time.
        if "=" not in first and shutil.which(first) is None and first not in _SHELL_WORDS:
            raise UsageError(f"source command: {first} is not found on PATH")

    def open(self):
        return command_stream(["/bin/sh", "-c", self.command], "source command")


_SHELL_WORDS = {"exec", "set", "cd", "echo", "printf", "test", "[", "(", "{", "!", "if", "for", "while",
                "true", "false", "exit", ":", "."}
