"""docs/api.md stays true: its Python blocks run, in order, as one script,
against a temporary directory and a real WebDAV server on loopback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from treeutil import snapshot_tree

import strongroom

PAGE = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_the_api_page_runs(tmp_path, wsgidav_server):
    blocks = python_blocks(PAGE.read_text())
    assert len(blocks) >= 5
    script = tmp_path / "api_page.py"
    script.write_text("\n".join(blocks))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    src = str(Path(strongroom.__file__).parent.parent)  # this tree's code, whatever the caller's path
    env = {k: v for k, v in os.environ.items()
           if k not in ("STRONGROOM_CATALOG", "STRONGROOM_SECRETS", "STRONGROOM_PASSWORD", "STRONGROOM_REPO")}
    env.update(PYTHONPATH=os.pathsep.join([src, env.get("PYTHONPATH", "")]), TMPDIR=str(scratch),
               STRONGROOM_CACHE_DIR=str(tmp_path / "cache"), STRONGROOM_SECRETS_BACKEND="file",
               XDG_DATA_HOME=str(tmp_path / "data-home"), DAV_URL=wsgidav_server.url,
               DAV_USER=wsgidav_server.username, DAV_PASSWORD=wsgidav_server.password)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, timeout=600)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"{out}\n{err}"

    lines = out.splitlines()
    assert re.fullmatch(r"snapshot [0-9a-f]{8} new files: 2", lines[0]), out
    assert "restore completed: 2/2 files" in lines
    assert 'config bad: source_paths: give a list (e.g. ["/data"]), not one string' in lines
    assert "True UTC" in lines
    assert "events seen: True" in lines and "job 3 is True" in lines
    assert "selective completed" in lines and "valid: True ()" in lines
    assert "stored bytes > 0: True" in lines
    assert "next run reads 0 bytes" in lines  # nothing changed since the last run
    assert "removed 2 snapshot(s), kept 1" in lines
    assert "cloud restore completed: 2/2" in lines
    assert "dr step completed: 2/2 files" in lines
    assert "dr test pass ['passed'] True" in lines
    assert "dr test pass-with-warnings step my_backup: after-command 'exit 3' exited 3" in lines

    # What the page says happened, happened.
    [work] = scratch.iterdir()
    data = work / "data"
    assert snapshot_tree(work / "restore" / str(data).lstrip("/")) == snapshot_tree(data)
    notes = work / "notes" / str(data).lstrip("/")
    assert sorted(p.name for p in notes.rglob("*") if p.is_file()) == ["notes.txt"]
    assert snapshot_tree(work / "from-cloud" / str(data).lstrip("/")) == snapshot_tree(data)
    assert snapshot_tree(work / "dr" / "my_backup" / str(data).lstrip("/")) == snapshot_tree(data)
    assert not (work / "dr2").exists()  # a rehearsal never touches the real targets
    stored = list((wsgidav_server.root / "backups" / "snapshots").iterdir())
    assert len(stored) == 1
    # The WebDAV password is in the secrets file only, not in the catalog.
    catalog = b"".join(p.read_bytes() for p in work.glob("cloud.db*"))
    assert catalog and wsgidav_server.password.encode() not in catalog
