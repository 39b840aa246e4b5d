"""The commands a plan runs before and after a step.

A hook is `/bin/sh -c COMMAND` in a process group of its own, with exactly
the environment the runner gives it (`hook_env`: the step's facts and a few
harmless variables, never a password), stdin from /dev/null, and stdout and
stderr merged into one pipe read as the bytes come. Only the last lines are
kept, each cut short, so a command printing without end costs a few KiB.
At its timeout, or when the run is cancelled, the whole group gets SIGTERM,
then SIGKILL five seconds later: a grandchild (`sleep 600 &`) goes too.

A process the command leaves running in the background with the pipe still
open would keep the output from ever ending: once the shell has exited, its
output is read for a short grace period more and then left. Such a command
should redirect its output (`daemon >/var/log/daemon.log 2>&1 &`), or start
the service through the service manager.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from strongroom.dr.one_line import one_line
from strongroom.dr.plan import Hook, Plan, Step
from strongroom.dr.results import HookResult
from strongroom.paths import config_file_named_in

SHELL = "/bin/sh"
TAIL_LINES = 20
LINE_CHARS = 400
KILL_AFTER = 5.0  # seconds between SIGTERM and SIGKILL
OUTPUT_GRACE = 2.0  # seconds the output is read on after the shell has exited
POLL = 0.05

# The parent's variables a hook may see. Everything else (passwords of
# repositories, WebDAV, databases, cloud keys) stays out.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME")


def safe_line(raw: bytes) -> str:
    """One line of output fit for a terminal and a report: undecodable bytes
    replaced, control characters as \\xNN, at most LINE_CHARS characters."""
    return one_line(raw, LINE_CHARS)


class OutputTail:
    """The last TAIL_LINES lines of a stream fed in chunks, in bounded memory.

    A line is cut once it holds more bytes than a cut line can show (a line
    of 50 MB without a newline is kept as its first few KiB), so what is held
    is at most TAIL_LINES * LINE_BYTES plus one partial line of that size.
    """

    LINE_BYTES = LINE_CHARS * 4  # enough for LINE_CHARS characters of UTF-8

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=TAIL_LINES)
        self._partial = bytearray()
        self._lock = threading.Lock()  # the reader feeds while run_hook may give up on it
        self._closed = False

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            if not self._closed:
                self._feed(chunk)

    def _feed(self, chunk: bytes) -> None:
        # Only the last TAIL_LINES lines of a chunk can be kept: split those off in
        # one go rather than walking a chunk of 30 000 short lines one by one.
        first = chunk.find(b"\n")
        if first < 0:
            self._add(chunk)
            return
        self._add(chunk[:first])
        self._end_line()
        parts = chunk[first + 1:].rsplit(b"\n", TAIL_LINES)
        if len(parts) == TAIL_LINES + 1:
            parts[0] = parts[0][parts[0].rfind(b"\n") + 1:]
        for line in parts[:-1]:
            self._add(line)
            self._end_line()
        self._add(parts[-1])

    def _add(self, piece: bytes) -> None:
        room = self.LINE_BYTES + 1 - len(self._partial)  # one byte over tells a cut line
        if room > 0:
            self._partial += piece[:room]

    def _end_line(self) -> None:
        raw = bytes(self._partial)
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        line = safe_line(raw)
        if len(raw) > self.LINE_BYTES and not line.endswith("…"):
            line = line[:LINE_CHARS - 1] + "…"
        self.lines.append(line)
        self._partial.clear()

    def held_bytes(self) -> int:
        """What the tail holds now, about: the kept lines and the partial one."""
        with self._lock:
            return len(self._partial) + sum(len(line.encode()) for line in self.lines)

    def close(self) -> tuple[str, ...]:
        """The lines kept, the partial last one included; what is fed later is dropped."""
        with self._lock:
            if not self._closed and self._partial:
                self._end_line()
            self._closed = True
            return tuple(self.lines)


def hook_env(plan: Plan, step: Step, config: Any, target: str, snapshot_id: str | None,
             snapshot_time: datetime | None, mode: str,
             parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a step's commands get: its facts as STRONGROOM_*
    variables and, when the parent has them, PATH, HOME, LANG, LC_ALL, TZ,
    USER and LOGNAME, and the configuration file the parent names as
    STRONGROOM_CONFIG_FILE (STRONGROOM_CONFIG is the step's configuration
    name here); nothing else. `config` is the configuration or its name;
    `parent` is the environment to take those few from (default: this
    process's)."""
    parent = os.environ if parent is None else parent
    env = {name: parent[name] for name in PASSED_THROUGH if name in parent}
    config_file = config_file_named_in(parent)
    if config_file:
        env["STRONGROOM_CONFIG_FILE"] = os.path.abspath(config_file)
    when = ""
    if snapshot_time is not None:
        when = snapshot_time.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    env.update(STRONGROOM_PLAN=plan.name, STRONGROOM_STEP=step.name,
               STRONGROOM_CONFIG=str(getattr(config, "name", config)), STRONGROOM_TARGET=str(target),
               STRONGROOM_SNAPSHOT=snapshot_id or "", STRONGROOM_SNAPSHOT_TIME=when, STRONGROOM_MODE=mode)
    return env


def run_hook(hook: Hook, phase: str, env: dict[str, str], cwd: str | None = None,
             cancel: threading.Event | None = None) -> HookResult:
    """Run one command and say how it went; never raises for the command's sake."""
    started = time.monotonic()

    def result(exit_code: int | None, timed_out: bool, tail: tuple[str, ...]) -> HookResult:
        return HookResult(phase=phase, command=hook.command, mode=hook.mode, exit_code=exit_code,
                          timed_out=timed_out, duration_seconds=round(time.monotonic() - started, 3),
                          output_tail=tail, ok=exit_code == 0 and not timed_out)

    try:
        proc = subprocess.Popen([SHELL, "-c", hook.command], env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True)
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        return result(None, False, (safe_line(f"cannot start: {e.strerror or e}{where}".encode()),))
    except ValueError as e:  # a NUL byte in the environment given
        return result(None, False, (safe_line(f"cannot start: {e}".encode()),))

    tail = OutputTail()
    reader = threading.Thread(target=_read_all, args=(proc.stdout, tail), name="hook-output", daemon=True)
    reader.start()
    deadline = started + hook.timeout
    stopped_by = None
    try:
        while proc.poll() is None:
            if cancel is not None and cancel.is_set():
                stopped_by = "cancelled"
            elif time.monotonic() >= deadline:
                stopped_by = "timeout"
            if stopped_by:
                _stop_group(proc)
                break
            time.sleep(POLL)
    finally:
        if proc.poll() is None:  # interrupted while waiting (KeyboardInterrupt): leave nothing behind
            _stop_group(proc)
    reader.join(OUTPUT_GRACE)  # still alive: a background process holds the pipe; stop listening to it
    lines = tail.close()
    if stopped_by == "timeout":
        lines = (*lines, f"strongroom: stopped after its timeout of {hook.timeout:g}s")[-TAIL_LINES:]
        return result(None, True, lines)
    if stopped_by == "cancelled":
        lines = (*lines, "strongroom: stopped: the run was cancelled")[-TAIL_LINES:]
        return result(None, False, lines)
    return result(proc.returncode, False, lines)


def _read_all(stream, tail: OutputTail) -> None:
    fd = stream.fileno()
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            tail.feed(chunk)
    except OSError:
        pass
    finally:
        stream.close()


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the command's process group; SIGKILL to what is left of it after KILL_AFTER."""
    pgid = proc.pid  # start_new_session: the shell leads its own group
    _signal_group(pgid, signal.SIGTERM)
    until = time.monotonic() + KILL_AFTER
    while time.monotonic() < until:
        proc.poll()  # reap the shell, so a dead one does not count as the group still there
        if not _group_alive(pgid):
            return
        time.sleep(POLL)
    _signal_group(pgid, signal.SIGKILL)
    try:
        proc.wait(KILL_AFTER)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs. A zombie does not: where init
    reaps orphans late (or strongroom is itself pid 1 in a container), a
    killed grandchild would otherwise look alive until SIGKILL time."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return True  # no /proc to ask: take the group's word
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] != b"Z":
            return True
    return False
