"""Shared fixtures: real repositories in temporary directories, the real CLI."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from strongroom.repo import keys
from strongroom.repo.repository import Repository
from strongroom.storage import LocalStorage
from webdav_fixtures import *  # noqa: F403  (the WebDAV test servers)
from sftp_server import sftp_server  # noqa: F401  (the OpenSSH test server)
from s3_server import *  # noqa: F403  (the radosgw of the S3 tests)
import forked_cli

PASSWORD = b"correct horse battery staple"

# Key derivation stays Argon2id with a small memory cost, in this process and
# in every Python process a test starts (tests/hooks/sitecustomize.py).
_HOOKS = str(Path(__file__).parent / "hooks")
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_HOOKS, os.environ.get("PYTHONPATH")) if p)
keys.DEFAULT_KDF = keys.KdfParams(memory_kib=1024, iterations=1, lanes=1)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def repo_path(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def repo(repo_path: Path, cache_dir: Path) -> Repository:
    return Repository.init(LocalStorage(str(repo_path)), PASSWORD, cache_root=str(cache_dir))


def reopen(repo_path: Path, cache_dir: Path) -> Repository:
    return Repository.open(LocalStorage(str(repo_path)), PASSWORD, cache_root=str(cache_dir))


class CLI:
    """Runs the real `strongroom` command in a subprocess."""

    def __init__(self, repo_path: Path, cache_dir: Path) -> None:
        self.repo_path = repo_path
        # check looks for a recovery kit on record in the catalog: never the user's own.
        self.env = {k: v for k, v in os.environ.items() if k != "STRONGROOM_CATALOG"}
        self.env.update(STRONGROOM_PASSWORD=PASSWORD.decode(), STRONGROOM_REPO=str(repo_path),
                        STRONGROOM_CACHE_DIR=str(cache_dir), XDG_DATA_HOME=str(cache_dir.parent / "data"))

    def run(self, *args: str, input: bytes | None = None, env: dict | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
        done = forked_cli.run([*args], input=input,
                              env={**self.env, **(env or {})}, timeout=600)
        if check and done.returncode != 0:
            raise AssertionError(f"strongroom {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout.decode()}\n{done.stderr.decode()}")
        return done

    def popen(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "strongroom", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env={**self.env, **(env or {})})


@pytest.fixture
def cli(repo_path: Path, cache_dir: Path) -> CLI:
    return CLI(repo_path, cache_dir)


@pytest.fixture
def src(tmp_path) -> Path:
    """A small source tree: two text files and a 300 KiB random one in a subfolder."""
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "b.txt").write_bytes(b"bravo\n" * 1000)
    (root / "sub" / "c.bin").write_bytes(random.Random(5).randbytes(300 * 1024))
    return root



def hold_shared_lock(repo_path: Path, cache_dir: Path) -> subprocess.Popen:
    """Another process holding a shared lock on the repository at `repo_path`
    (for a minute), returned once it holds it; the caller kills it."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from strongroom.repo.repository import Repository;"
        "from strongroom.storage import LocalStorage;"
        f"r = Repository.open(LocalStorage({str(repo_path)!r}), {PASSWORD!r}, {str(cache_dir)!r});"
        "l = r.lock(exclusive=False); print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"locked"
    return holder
