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
    return {"host": socket.gethostname(), "pid": pid, "pid_started": _started(pid)}


def owner_ended(owner: Any) -> bool:
    """True only when `owner` is a stamp of this host whose process is known to be gone."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return False
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


def _started(pid: int) -> int | None:
    """The pid's start time in clock ticks since boot (/proc/PID/stat, field 22); None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read(4096).rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None
