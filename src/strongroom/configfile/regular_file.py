"""Reading a file that a configuration file names (itself, a secret's
`NAME_file`) without hanging: a FIFO with no writer blocks an ordinary open
forever, and a device never ends. Only a regular file is read."""

from __future__ import annotations

import os
import stat


class NotRegular(OSError):
    """The path is a FIFO, a device, a directory or a socket."""


def read_regular_file(path: str | os.PathLike, limit: int) -> bytes:
    """Up to `limit` bytes of the regular file at `path`; OSError (NotRegular for
    anything but a regular file) when it cannot be read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegular(0, "not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    with open(fd, "rb") as f:
        return f.read(limit)
