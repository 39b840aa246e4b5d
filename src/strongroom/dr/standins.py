"""Plain forms of the pieces the plan runner calls, for as long as their own
modules (strongroom.dr.hooks, .space, .damage) are not installed.

Each has the signature of the real one: the runner imports the real one when
it is there and falls back to these. They do less (no output bound beyond a
line count, no process-group kill, no damaged-object analysis), never more.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from datetime import datetime, timezone

from strongroom.dr.plan import Hook, Plan, Step
from strongroom.dr.results import HookResult, Problem
from strongroom.errors import StrongroomError

TAIL_LINES = 20
PASSED_ON = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME")


class InsufficientSpace(StrongroomError):
    """Too little free space at a restore target for what the restore will write."""


def check_free_space(target: str, needed_bytes: int) -> None:
    """Raise InsufficientSpace when the file system of `target` (or of its
    nearest existing parent) has fewer than `needed_bytes` free."""
    place = os.path.abspath(target)
    while not os.path.exists(place) and place != os.path.dirname(place):
        place = os.path.dirname(place)
    st = os.statvfs(place)
    free = st.f_bavail * st.f_frsize
    if needed_bytes > free:
        raise InsufficientSpace(f"not enough space at {target}: the restore needs {needed_bytes} bytes, "
                                f"{free} are free")


def hook_env(plan: Plan, step: Step, config: str, target: str, snapshot_id: str | None,
             snapshot_time: datetime | None, mode: str) -> dict[str, str]:
    """The step's facts as STRONGROOM_* variables, and a few of this process's (no secret among them)."""
    env = {k: os.environ[k] for k in PASSED_ON if k in os.environ}
    env.update(STRONGROOM_PLAN=plan.name, STRONGROOM_STEP=step.name, STRONGROOM_CONFIG=config,
               STRONGROOM_TARGET=target, STRONGROOM_SNAPSHOT=snapshot_id or "",
               STRONGROOM_SNAPSHOT_TIME="" if snapshot_time is None else
               snapshot_time.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
               STRONGROOM_MODE=mode)
    return env


def run_hook(hook: Hook, phase: str, env: dict[str, str], cwd: str | None = None,
             cancel: threading.Event | None = None) -> HookResult:
    """`/bin/sh -c hook.command` with exactly `env`, stopped at its timeout or when `cancel` is set."""
    started = time.monotonic()
    try:
        child = subprocess.Popen(["/bin/sh", "-c", hook.command], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        return HookResult(phase, hook.command, hook.mode, None, False, time.monotonic() - started,
                          (f"cannot start: {e.strerror}",), False)
    lines: list[str] = []

    def read() -> None:
        for raw in child.stdout:
            lines.append(raw.decode("utf-8", "replace").rstrip("\n")[:400])
            del lines[:-TAIL_LINES]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    timed_out = False
    while child.poll() is None:
        if time.monotonic() - started > hook.timeout or (cancel is not None and cancel.is_set()):
            timed_out = time.monotonic() - started > hook.timeout
            try:
                os.killpg(child.pid, 9)
            except ProcessLookupError:
                pass
            child.wait()
            break
        time.sleep(0.02)
    reader.join(5)
    code = child.returncode if child.returncode >= 0 else None
    return HookResult(phase, hook.command, hook.mode, code, timed_out, time.monotonic() - started,
                      tuple(lines), code == 0 and not timed_out)


def problems_of(repo: object, snapshot: object, errors: list[dict], include: tuple[str, ...] = ()) -> tuple[Problem, ...]:
    """One problem per restore error, naming the file it is about."""
    return tuple(Problem("file content", str(e.get("message", "")), (str(e.get("path") or ""),)) for e in errors)
