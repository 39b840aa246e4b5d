"""One daemon per catalog: an exclusive flock on a file beside the catalog.

The kernel drops a flock when the process that holds it ends, however it
ends (kill -9 included), so a stale lock cannot outlive its daemon and
nothing has to guess whether the pid in the file is still alive. The file
stays on disk (removing it would let a third process lock a new file while
a second one still holds the old one); the pid in it only names the holder
in the refusal."""

from __future__ import annotations

import fcntl
import os

from strongroom.errors import StrongroomError


class DaemonRunning(StrongroomError):
    """Another `strongroom serve` holds the catalog."""


def lock_path_for(catalog_path: str) -> str:
    return os.path.abspath(catalog_path) + ".serve.lock"


class ServeLock:
    def __init__(self, path: str, catalog_path: str | None = None) -> None:
        self.path = path
        self.catalog_path = catalog_path or path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise DaemonRunning naming the pid that holds it."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StrongroomError(f"cannot open the daemon lock {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise DaemonRunning(f"strongroom serve is already running on the catalog {self.catalog_path} "
                                f"({who}); one daemon per catalog") from None
        except OSError as e:
            os.close(fd)
            raise StrongroomError(f"cannot lock {self.path}: {e.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> int | None:
    """The pid the holder wrote; a few bytes at most, digits only."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
