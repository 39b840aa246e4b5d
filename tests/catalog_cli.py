"""The real `strongroom` command line over one catalog of its own (in a test's
tmp_path), with the secrets in a file beside it and a time zone of the test's
choosing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
import forked_cli

SRC = str(Path(__file__).resolve().parents[1] / "src")
HOOKS = str(Path(__file__).resolve().parent / "hooks")


def catalog_bytes(path: Path) -> bytes:
    """A catalog's file and its write-ahead log, where recent writes may still be."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


class CatalogCLI:
    def __init__(self, tmp_path: Path, tz: str = "UTC", cache: str = "c") -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
        self.env.update(STRONGROOM_CATALOG=str(tmp_path / "catalog.db"), STRONGROOM_SECRETS_BACKEND="file",
                        STRONGROOM_SECRETS=str(tmp_path / "secrets.json"), STRONGROOM_CACHE_DIR=str(tmp_path / cache),
                        TZ=tz, PYTHONPATH=os.pathsep.join([SRC, HOOKS]))

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return forked_cli.run([*args], text=True,
                              env=self.env, timeout=120)

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def json(self, *args: str) -> list[dict]:
        """The JSON lines `strongroom ARGS --json` prints (it must exit 0)."""
        return [json.loads(line) for line in self.ok(*args, "--json").splitlines()]
