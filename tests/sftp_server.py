"""A real OpenSSH server on loopback for the SFTP tests.

Debian's /usr/sbin/sshd, started in the foreground (`-D -e`) with its own
sshd_config, a throw-away host key and a throw-away user key in a temporary
directory, on 127.0.0.1 and a free port, serving the internal-sftp
subsystem and taking that user key only (no passwords, no PAM). It logs in
the user the tests run as (root here: allowed by key for this server alone).
Nothing system-wide is touched except the privilege-separation directory
/run/sshd, which sshd needs when it starts as root and which Debian's
package creates only when its own daemon starts.

`sftp_server` (session-scoped) yields an `SSHServer`; `scratch()` gives each
test a fresh folder on it. scripts/test.sh installs openssh-server when it
runs as root; when sshd is missing the fixture fails with a message that
says so, it is never skipped.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

SSHD = "/usr/sbin/sshd"
START_TIMEOUT = 15.0


class SSHServerUnavailable(RuntimeError):
    """sshd is not installed, or it did not come up."""


def _keygen(path: Path, comment: str) -> str:
    """A new ed25519 key pair without a passphrase at `path`; returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return (path.with_suffix(".pub") if path.suffix else Path(str(path) + ".pub")).read_text().strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SSHServer:
    port: int
    user: str
    directory: Path  # the server's own files: config, keys, known_hosts files
    root: Path  # where the tests' folders live
    client_key: Path  # the user key the server accepts (no passphrase)
    known_hosts: Path  # holds the server's host key
    unknown_hosts: Path  # holds nothing for this server
    changed_hosts: Path  # holds another key for this server, as after a reinstall
    host_fingerprint: str  # SHA256:... of the host key, as ssh-keygen -l shows it
    process: subprocess.Popen
    log: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"

    def url(self, path: Path | str) -> str:
        """The sftp:// URL of an absolute path on this server (restic's form: a
        double slash after the port starts an absolute path)."""
        return f"sftp://{self.user}@{self.host}:{self.port}/{path}"

    def scratch(self) -> Path:
        """A new folder name on the server, not yet created."""
        return self.root / uuid.uuid4().hex[:12]

    def session_pids(self) -> list[int]:
        """The sshd processes serving connections now (the listener's children)."""
        return _children(self.process.pid)

    def kill_sessions(self) -> int:
        """Kill every sshd child serving a connection (as a dropped network would
        end the session); the listener stays. Returns how many were killed."""
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def known_hosts_line(self) -> str:
        return self.known_hosts.read_text()


def _children(parent: int) -> list[int]:
    """Every descendant of `parent`, from /proc."""
    by_parent: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields after it start past the last ")".
        ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
        by_parent.setdefault(ppid, []).append(int(entry))
    found, todo = [], [parent]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {directory}/host_key
PidFile {directory}/sshd.pid
AuthorizedKeysFile {directory}/authorized_keys
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
AllowUsers {user}
StrictModes no
PermitTTY no
AllowTcpForwarding no
X11Forwarding no
MaxStartups {max_startups}
MaxSessions {max_sessions}
LogLevel INFO
Subsystem sftp internal-sftp
"""


@contextlib.contextmanager
def run_sshd(max_sessions: int = 64, max_startups: str = "100:30:200") -> Iterator[SSHServer]:
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        raise SSHServerUnavailable(f"{SSHD} or ssh-keygen is not installed (Debian: openssh-server, "
                                   "openssh-client; scripts/test.sh installs them when run as root)")
    if os.geteuid() == 0:
        # sshd refuses to start as root without its privilege-separation directory.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="strongroom-sshd-"))
    process = None
    try:
        root = directory / "files"
        root.mkdir()
        user = getpass.getuser()
        _keygen(directory / "host_key", "throw-away host key")
        public = _keygen(directory / "client_key", "throw-away user key")
        (directory / "authorized_keys").write_text(public + "\n")
        _keygen(directory / "other_host_key", "another host key")
        port = _free_port()
        (directory / "sshd_config").write_text(_CONFIG.format(port=port, directory=directory, user=user,
                                                                  max_sessions=max_sessions, max_startups=max_startups))
        host_public = (directory / "host_key.pub").read_text().split()
        other_public = (directory / "other_host_key.pub").read_text().split()
        (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
        (directory / "unknown_hosts").write_text("")
        (directory / "changed_hosts").write_text(f"[127.0.0.1]:{port} {other_public[0]} {other_public[1]}\n")
        fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(directory / "host_key.pub")], check=True,
                                     capture_output=True, text=True).stdout.split()[1]
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(directory / "sshd_config")],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
        server = SSHServer(port, user, directory, root, directory / "client_key", directory / "known_hosts",
                           directory / "unknown_hosts", directory / "changed_hosts", fingerprint, process)
        listening = threading.Event()

        def drain() -> None:
            for line in process.stderr:
                server.log.append(line.rstrip("\n"))
                if "Server listening on" in line:
                    listening.set()
            listening.set()  # it exited: the wait below sees that

        threading.Thread(target=drain, name="sshd-log", daemon=True).start()
        if not listening.wait(START_TIMEOUT) or process.poll() is not None:
            raise SSHServerUnavailable("sshd did not start: " + " | ".join(server.log[-10:]))
        yield server
    finally:
        if process is not None:
            for pid in _children(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def sftp_server() -> Iterator[SSHServer]:
    with run_sshd() as server:
        yield server
