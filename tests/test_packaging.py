"""The wheel as a person installs it: built from a copy of the source tree,
installed into a fresh virtual environment outside it, and used there.

Offline: the wheel is built with this environment's setuptools (no build
isolation), and the fresh environment reaches the dependencies already
installed here through a .pth line naming this environment's site-packages.
A .pth line only adds a directory to the path; the .pth files inside that
directory (the editable install of the source tree among them) are not run,
so strongroom itself can come only from the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import PASSWORD
from treeutil import snapshot_tree

ROOT = Path(__file__).resolve().parent.parent
HOOKS = Path(__file__).resolve().parent / "hooks"

pytestmark = pytest.mark.slow


def run(argv: list, cwd: Path, env: dict, input: bytes | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, input=input, capture_output=True, timeout=600)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout.decode()}\n{done.stderr.decode()}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the source tree so the tree stays clean."""
    copy = tmp_path_factory.mktemp("source") / "strongroom"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                               "__pycache__", ".pytest_cache", ".hypothesis",
                                                               "demo", "test-artifacts"))
    out = tmp_path_factory.mktemp("wheelhouse")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", out, "."],
        cwd=copy, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    [built] = out.glob("strongroom-*.whl")
    return built


def test_the_wheel_holds_the_package_its_types_and_its_licence(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n) for n in names if n.endswith(".dist-info/METADATA")).decode()
        entry_points = next(archive.read(n) for n in names if n.endswith(".dist-info/entry_points.txt")).decode()
    assert "strongroom/py.typed" in names and "strongroom/__init__.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "src/")) for n in names)
    assert "License-Expression: Apache-2.0" in metadata
    assert "Requires-Dist: pyfastcdc<0.4,>=0.3.1" in metadata
    assert 'Requires-Dist: keyring<26,>=24; extra == "keyring"' in metadata
    assert "strongroom = strongroom.cli.start:main" in entry_points


def test_the_wheel_holds_every_page_and_asset_of_the_console(wheel):
    """The console fetches nothing at run time: its templates and static files come with the package."""
    web = ROOT / "src" / "strongroom" / "web"
    wanted = {f"strongroom/web/{p.relative_to(web).as_posix()}" for folder in ("templates", "static")
              for p in (web / folder).iterdir() if p.is_file()}
    assert len(wanted) > 20
    with zipfile.ZipFile(wheel) as archive:
        assert wanted <= set(archive.namelist())


def test_the_installed_command_backs_up_and_restores_outside_the_source_tree(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", venv], cwd=tmp_path,
        env=dict(os.environ))
    python = venv / "bin" / "python"
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp_path,
               env={"PATH": os.environ["PATH"]}).stdout.decode().strip()
    (Path(site) / "here-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel],
        cwd=tmp_path, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})

    # A person's shell: no PYTHONPATH into the source tree; only the tests' weak
    # key derivation (tests/hooks holds a sitecustomize.py and nothing else).
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path / "home"),
           "PYTHONPATH": str(HOOKS), "STRONGROOM_REPO": str(work / "repo"),
           "STRONGROOM_PASSWORD": PASSWORD.decode(), "STRONGROOM_CACHE_DIR": str(work / "cache"),
           "XDG_DATA_HOME": str(work / "data")}
    where = run([python, "-c", "import strongroom, strongroom.cli.main as m, sys; "
                               "print(strongroom.__file__); print(m.__file__); print(*sys.path, sep='\\n')"],
                cwd=work, env=env).stdout.decode().splitlines()
    assert where[0] == f"{site}/strongroom/__init__.py" and where[1] == f"{site}/strongroom/cli/main.py"
    assert not any(p.startswith(str(ROOT / "src")) or p.endswith("/src") for p in where[2:]), where

    command = venv / "bin" / "strongroom"
    assert command.is_file() and shutil.which("strongroom", path=env["PATH"]) == str(command)
    # `version`, the command restic has; the `--version` option comes with the new front door.
    version = run(["strongroom", "version"], cwd=work, env=env).stdout.decode()
    assert version.startswith("strongroom 0.1.0 ")

    source = work / "tree"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("alpha\n")
    (source / "sub" / "b.bin").write_bytes(os.urandom(200_000))
    run(["strongroom", "init"], cwd=work, env=env)
    run(["strongroom", "backup", source], cwd=work, env=env)
    run(["strongroom", "restore", "latest", "--target", work / "restored"], cwd=work, env=env)
    assert snapshot_tree(work / "restored" / str(source).lstrip("/")) == snapshot_tree(source)
