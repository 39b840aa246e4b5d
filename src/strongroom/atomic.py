"""Files on this machine written whole or not at all.

A recovery kit, a report or a dumped file is written to a private temporary
file beside its final name, synced, then renamed over it: a crash, a full
disk or an error half-way leaves the old file (or none), never half a new one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO


@contextmanager
def replaced_whole(path: str, mode: int = 0o600, prefix: str = ".strongroom-") -> Iterator[BinaryIO]:
    """A binary file to write that becomes `path` (with `mode`) when the block ends
    without an exception; with one, it is removed and `path` is left as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=prefix, dir=folder)  # 0600 from the start
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
