"""Which process runs a recovery session, and whether it is still there.

A session row says "running" until its process writes how it ended. A
process killed with -9 (or a machine that lost power) writes nothing, so the
row is stamped at its start with the owner: host, pid and the pid's start
time (a pid is reused; the pair is not). A reader on the same host whose
owner process is gone knows the session was interrupted. On another host, or
where the start time cannot be read, nothing is concluded: a process not
seen is not proof that it has ended.
"""

from __future__ import annotations

import os
import socket
from typing import Any


def this_process() -> dict[str, Any]:
    """The owner stamp of a session this process runs."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_started": _started(pid), "boot": _boot_id(),
            "pid_namespace": _pid_namespace()}


def owner_ended(owner: Any) -> bool:
    """True only when `owner` is a stamp of this host whose process is known to be gone."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return False
    boot, namespace = _boot_id(), _pid_namespace()
    if owner.get("pid_namespace") != namespace or namespace is None:
        return False  # another container's pids (or none to compare): not ours to judge
    if isinstance(owner.get("boot"), str) and boot is not None and owner["boot"] != boot:
        return True  # the machine has started again since: every process of then is gone
    pid, started = owner.get("pid"), owner.get("pid_started")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not isinstance(started, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    now = _started(pid)
    return now is not None and now != started


def describe(owner: dict) -> str:
    return f"process {owner.get('pid')} on {owner.get('host')}"


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read(64).strip() or None
    except (OSError, ValueError):
        return None


def _pid_namespace() -> str | None:
    """This process's pid namespace (`pid:[4026531836]`): pids mean something only within one."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _started(pid: int) -> int | None:
    """The pid's start time in clock ticks since boot (/proc/PID/stat, field 22); None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read(4096).rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None
