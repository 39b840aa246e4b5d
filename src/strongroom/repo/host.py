"""Which machine, boot and process space we run in: what a lock records so that
a later reader can tell whether the process that wrote it still runs.

A hostname is not enough for that: cloned virtual machines and containers
share hostnames, and a pid means nothing outside the pid namespace (and the
boot) it was handed out in. A pid is only looked up when all three match.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
PID_NAMESPACE = "/proc/self/ns/pid"


@dataclass(frozen=True)
class HostIdentity:
    hostname: str
    machine_id: str
    boot_id: str | None  # None where the system does not say (not Linux)
    pid_ns: str | None

    @classmethod
    def current(cls, state_dir: str | None = None, machine: str | None = None) -> "HostIdentity":
        """This process's identity. `machine` (the edge's STRONGROOM_MACHINE_ID)
        names the machine in place of the system's machine id; without either,
        a random one is kept in `state_dir`; without that either, a new one for
        this process (then no lock is ever taken for dead by its pid: the safe
        side). A name given here can never make another machine's pid look
        like ours: the boot id and pid namespace must match as well."""
        return cls(socket.gethostname(), machine or machine_id(state_dir), _read_first_line(BOOT_ID_FILE),
                   _pid_namespace())

    def shares_pids_with(self, machine: str | None, boot: str | None, pid_ns: str | None) -> bool:
        """Whether a pid recorded there names a process we can look up here."""
        return (machine is not None and machine == self.machine_id
                and self.boot_id is not None and boot == self.boot_id
                and self.pid_ns is not None and pid_ns == self.pid_ns)


def machine_id(state_dir: str | None) -> str:
    for path in MACHINE_ID_FILES:
        found = _read_first_line(path)
        if found:
            return found
    if state_dir:
        path = os.path.join(state_dir, "machine-id")
        found = _read_first_line(path)
        if found:
            return found
        made = os.urandom(16).hex()
        try:
            os.makedirs(state_dir, exist_ok=True)
            # O_EXCL: two processes starting at once agree on the first one written.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "w") as f:
                f.write(made + "\n")
            return made
        except FileExistsError:
            return _read_first_line(path) or made
        except OSError:
            pass
    return "process-" + os.urandom(16).hex()


def _read_first_line(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            line = f.readline().strip()
    except OSError:
        return None
    return line or None


def _pid_namespace() -> str | None:
    try:
        st = os.stat(PID_NAMESPACE)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"
