"""A SQLite database as the source, copied with SQLite's online backup API.

Copying the file itself while another process writes it can store a
database torn between two transactions. `Connection.backup` with every page
in one step reads the whole database inside one read transaction, so the
copy holds exactly the transactions committed before it began. The copy
goes to a private temporary file (0600 in a 0700 directory, removed on
leaving whatever happens) and is streamed from there; it is stored under
the database's base name.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from strongroom.errors import StrongroomError, UsageError
from strongroom.sources.base import SourceSpec

BUSY_TIMEOUT = 60.0  # seconds to wait for a writer's lock before giving up


class SqliteSource:
    kind = "sqlite"

    def __init__(self, spec: SourceSpec) -> None:
        self.path = os.path.abspath(spec.target)
        self.file_name = os.path.basename(self.path)
        if not self.file_name:
            raise UsageError("sqlite: give the database file's path")

    def check(self) -> None:
        if not os.path.isfile(self.path):
            raise UsageError(f"sqlite: {self.path} is not a file")

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        if not os.path.isfile(self.path):
            # Not a UsageError: a database on a disk not mounted yet may come back.
            raise StrongroomError(f"sqlite: {self.path} does not exist")
        folder = tempfile.mkdtemp(prefix="strongroom-sqlite-")  # 0700
        try:
            copy = os.path.join(folder, "copy.db")
            os.close(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            self._copy_into(copy)
            with open(copy, "rb") as stream:
                yield stream
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _copy_into(self, copy: str) -> None:
        uri = Path(self.path).as_uri() + "?mode=ro"
        try:
            source = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT)
        except sqlite3.Error as e:
            raise StrongroomError(f"sqlite: cannot open {self.path}: {e}") from None
        try:
            target = sqlite3.connect(copy)
            try:
                # pages=-1: all in one step, under one read transaction.
                source.backup(target, pages=-1)
                # The copy is the one stored: a file with a torn page would be
                # stored as good, so it is checked here, not after a restore.
                if target.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    raise StrongroomError(f"sqlite: the copy of {self.path} does not pass quick_check")
            finally:
                target.close()
        except sqlite3.Error as e:
            raise StrongroomError(f"sqlite: cannot back up {self.path}: {e}") from None
        finally:
            source.close()
