"""The command line's front door: lazy loading, grouped help, global options,
logging, exit_error with --json, and `generate`. Through the real CLI."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import strongroom
from conftest import PASSWORD
from strongroom.cli import registry

HEAVY = ("strongroom.repo", "strongroom.engine", "strongroom.storage", "strongroom.services", "cryptography",
         "httpx", "zstandard", "rich", "strongroom.daemon", "fastapi", "starlette", "uvicorn", "prometheus_client")

# Runs the command line in a child, as `python -m strongroom` does ("module") or
# through cli/main.py's main() (the click path, "click"), and reports on stderr
# where strongroom came from and every module imported by the time it exited.
_PROBE = """
import json, runpy, sys
entry, sys.argv = sys.argv[1], ["strongroom", *sys.argv[2:]]
try:
    if entry == "module":
        runpy.run_module("strongroom", run_name="__main__")
    else:
        from strongroom.cli.main import main
        main(sys.argv[1:])
except SystemExit:
    pass
import strongroom
sys.stderr.write("\\nPROBE " + json.dumps({"file": strongroom.__file__, "modules": sorted(sys.modules)}) + "\\n")
"""


def imported_by(cli, entry: str, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    # Without tests/hooks: its sitecustomize imports the repository's key module into every process.
    path = [p for p in cli.env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).name != "hooks"]
    env = {**cli.env, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run([sys.executable, "-c", _PROBE, entry, *args], capture_output=True, env=env, timeout=120)
    probe = json.loads(done.stderr.decode().rsplit("PROBE ", 1)[1])
    return done, probe


def json_documents(stdout: bytes) -> list[dict]:
    """The objects printed: one array (restic's form for `snapshots`), or one object a line."""
    try:
        whole = json.loads(stdout)
    except ValueError:
        return [json.loads(line) for line in stdout.decode().splitlines()]
    return whole if isinstance(whole, list) else [whole]


def heavy_modules(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.mark.parametrize("entry", ["module", "click"])
@pytest.mark.parametrize("args", [["--version"], ["--help"], ["version"], ["version", "--json"],
                                  ["-r", "/nowhere", "--version"]])
def test_start_up_imports_no_repository_crypto_or_engine(cli, entry, args):
    done, probe = imported_by(cli, entry, *args)
    assert done.returncode == 0, done.stderr
    assert probe["file"] == strongroom.__file__  # the child runs this checkout's code
    assert heavy_modules(probe["modules"]) == []
    out = done.stdout.decode()
    if "--help" in args:
        assert "Repository commands:" in out
    elif "--json" in args:
        assert json.loads(out) == {"message_type": "version", "version": strongroom.__version__,
                                   "python": sys.version.split()[0]}
    else:
        assert out == f"strongroom {strongroom.__version__} (python {sys.version.split()[0]})\n"


def test_version_alone_is_answered_before_click_is_imported(cli):
    for args in (["--version"], ["version"], ["version", "--json"]):
        done, probe = imported_by(cli, "module", *args)
        assert "click" not in probe["modules"], args
    done, probe = imported_by(cli, "module", "--help")
    assert "click" in probe["modules"]


def test_the_import_probe_sees_a_command_that_does_load_the_repository(cli):
    # The check above can fail: a command's own help imports its module, and with it the repository.
    done, probe = imported_by(cli, "module", "snapshots", "--help")
    assert done.returncode == 0, done.stderr
    assert "strongroom.repo.repository" in probe["modules"]


def test_global_repo_before_the_command(cli, tmp_path):
    repo = tmp_path / "elsewhere"
    env = {"STRONGROOM_REPO": str(tmp_path / "not-this-one")}
    cli.run("-r", str(repo), "init", env=env, check=True)
    done = cli.run("-r", str(repo), "snapshots", env=env, check=True)
    assert "0 snapshot" in done.stdout.decode()
    # A value after the command wins over the one before it.
    assert cli.run("-r", str(tmp_path / "missing"), "snapshots", "-r", str(repo), env=env).returncode == 0
    late = cli.run("-r", str(repo), "snapshots", "-r", str(tmp_path / "missing"), env=env)
    assert late.returncode == 10
    assert "no repository" in late.stderr.decode()


def test_global_flags_and_catalog_reach_the_command(cli, src, tmp_path):
    cli.run("init", check=True)
    refused = cli.run("--no-lock", "backup", str(src))
    assert refused.returncode == 2 and "--no-lock is only for commands that do not write" in refused.stderr.decode()
    assert cli.run("--no-lock", "snapshots").returncode == 0
    catalog = tmp_path / "elsewhere" / "catalog.db"
    catalog.parent.mkdir()
    cli.run("--catalog", str(catalog), "config", "list", check=True)
    assert catalog.exists()
    cache = tmp_path / "other-cache"
    cli.run("--cache-dir", str(cache), "snapshots", check=True)
    assert cache.is_dir() and any(cache.iterdir())


def test_global_json_and_password_file(cli, src, tmp_path):
    cli.run("init", check=True)
    cli.run("backup", str(src), check=True)
    password_file = tmp_path / "pw"
    password_file.write_bytes(PASSWORD + b"\n")
    env = {"STRONGROOM_PASSWORD": "wrong"}
    done = cli.run("--json", "--password-file", str(password_file), "snapshots", env=env, check=True)
    snapshots = [doc for doc in json_documents(done.stdout) if "paths" in doc]
    assert snapshots and snapshots[0]["paths"] == [str(src)]
    assert cli.run("snapshots", env=env).returncode == 12  # without it the wrong password is used


def test_help_groups_commands_under_headings(cli):
    done = cli.run("--help", check=True)
    text = done.stdout.decode()
    headings = list(registry.GROUPS.values())
    positions = [text.index(heading + ":") for heading in headings]
    assert positions == sorted(positions)
    sections = dict(zip(headings, (text[a:b] for a, b in zip(positions, positions[1:] + [len(text)]))))
    for entry in registry.ENTRIES:
        shown = any(line.split()[:1] == [entry.name] for line in text.splitlines()[1:] if line.startswith("  "))
        assert shown == (not entry.hidden and registry.available(entry)), entry.name
        if shown:
            section = sections[registry.GROUPS[entry.group]]
            assert any(line.split()[:1] == [entry.name] for line in section.splitlines()), entry.name
    for url_form in ("local:PATH", "webdav+https://USER@HOST/PATH", "webdav+http://"):
        assert url_form in " ".join(text.split())


def test_hidden_alias_still_works(cli, tmp_path):
    done = cli.run("points", "--catalog", str(tmp_path / "catalog.db"), check=True)
    assert "0 snapshots" in done.stdout.decode()
    listed = [line.split()[0] for line in cli.run("--help").stdout.decode().splitlines() if line.startswith("  ")]
    assert "points" not in listed and "snapshots" in listed


def test_a_commands_own_options_come_before_the_shared_ones(cli):
    text = cli.run("backup", "--help", check=True).stdout.decode()
    assert text.index("--exclude") < text.index("--stdin") < text.index("--repo") < text.index("--cache-dir")
    manage = cli.run("config", "add", "--help", check=True).stdout.decode()
    assert manage.index("--source") < manage.index("--catalog")
    assert "local:PATH" in text and "webdav+https://" in text


def test_registry_names_what_the_modules_define():
    for entry in registry.ENTRIES:
        if not registry.available(entry):
            continue
        module = importlib.import_module(entry.module)
        assert any(c.name == entry.name for c in module.COMMANDS), f"{entry.module} defines no command {entry.name}"
        command = registry.load(entry)
        if not entry.hidden:  # the registry's line is what --help lists, loaded or not
            assert command.get_short_help_str(limit=300) == entry.help, entry.name
            assert len(entry.help) <= 60 and entry.help.endswith("."), entry.name


def test_fatal_error_with_json_prints_exit_error(cli, tmp_path):
    done = cli.run("--json", "-r", str(tmp_path / "missing"), "snapshots")
    assert done.returncode == 10
    error = json.loads(done.stdout.decode().splitlines()[-1])
    assert error["message_type"] == "exit_error" and error["code"] == 10
    assert "no repository" in error["message"]
    assert done.stderr.decode().strip().splitlines() == [f"strongroom: {error['message']}"]
    usage = cli.run("snapshots", "--json", "--no-such-option")
    assert usage.returncode == 2
    assert json.loads(usage.stdout.decode().splitlines()[-1])["message_type"] == "exit_error"


def test_quiet_backup_prints_nothing(cli, src):
    cli.run("init", check=True)
    done = cli.run("-q", "backup", str(src), check=True)
    assert done.stdout == b"" and done.stderr == b""
    assert "1 snapshot" in cli.run("snapshots", check=True).stdout.decode()
    again = cli.run("backup", "--quiet", str(src), check=True)
    assert again.stdout == b"" and again.stderr == b""


def test_quiet_acting_commands_print_nothing_and_answers_stay(cli, src, tmp_path):
    """-q mutes what acts (init, backup, restore, forget, prune, check's
    summary, unlock, tag); what answers (snapshots, ls, find) still prints."""
    silent = [("init",), ("backup", str(src)), ("backup", str(src)),
              ("restore", "latest", "--target", str(tmp_path / "out")), ("check",), ("unlock",),
              ("tag", "--add", "q", "latest"), ("forget", "--keep-last", "1"), ("prune",)]
    for args in silent:
        done = cli.run("-q", *args, check=True)
        assert done.stdout == b"" and done.stderr == b"", (args, done.stdout, done.stderr)
    assert (tmp_path / "out").is_dir() and any((tmp_path / "out").rglob("*"))
    listing = cli.run("-q", "snapshots", check=True).stdout.decode()
    assert "1 snapshot" in listing and "q" in listing
    assert cli.run("-q", "ls", "latest", check=True).stdout.strip()
    assert cli.run("-q", "find", "*", check=True).stdout.strip()
    summary = json.loads(cli.run("-q", "--json", "check", check=True).stdout.decode().splitlines()[-1])
    assert summary["message_type"] == "summary" and summary["ok"] is True  # --json is never muted


def test_log_file_and_verbose(cli, src, tmp_path):
    cli.run("init", check=True)
    log = tmp_path / "run.log"
    done = cli.run("--log-file", str(log), "backup", str(src), check=True)
    records = log.read_text()
    assert "strongroom.repo.repository: opened repository" in records
    assert "strongroom.repo.locks: took a shared lock" in records
    assert PASSWORD.decode() not in records
    assert "took a shared lock" not in done.stderr.decode()  # the console shows warnings only by default
    verbose = cli.run("-v", "backup", str(src), check=True)
    assert "strongroom: took a shared lock" in verbose.stderr.decode()
    after = cli.run("forget", "--keep-last", "1", "-v", check=True)
    assert "took an exclusive lock" in after.stderr.decode()


def test_generate_bash_completion_is_valid_and_completes(cli, tmp_path):
    script = cli.run("generate", "--bash-completion", "-", check=True).stdout
    path = tmp_path / "strongroom.bash"
    path.write_bytes(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    assert b"_STRONGROOM_COMPLETE" in script
    # The words the script asks for, as bash would ask.
    done = cli.run(env={"_STRONGROOM_COMPLETE": "bash_complete", "COMP_WORDS": "strongroom sna", "COMP_CWORD": "1"})
    assert "snapshots" in done.stdout.decode()
    for shell in ("zsh", "fish"):
        target = tmp_path / f"completion.{shell}"
        cli.run("generate", f"--{shell}-completion", str(target), check=True)
        assert "_STRONGROOM_COMPLETE" in target.read_text()


def test_generate_man_pages(cli, tmp_path):
    out = tmp_path / "man"
    cli.run("generate", "--man", str(out), check=True)
    pages = {p.name for p in out.iterdir()}
    assert {"strongroom.1", "strongroom-backup.1", "strongroom-key.1", "strongroom-key-add.1"} <= pages
    assert not {"strongroom-points.1", "strongroom-run.1"} & pages  # hidden aliases have no page
    backup = (out / "strongroom-backup.1").read_text()
    assert backup.startswith('.TH "STRONGROOM\\-BACKUP" "1"')
    for request in (".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".TP"):
        assert request in backup
    if shutil.which("man"):
        shown = subprocess.run(["man", "-l", str(out / "strongroom-backup.1")], capture_output=True,
                               env={"MANPAGER": "cat", "MANWIDTH": "100", "PATH": "/usr/bin:/bin"})
        assert shown.returncode == 0, shown.stderr
        text = shown.stdout.decode()
        assert "Back up PATHS into a new snapshot" in text
        assert "--exclude" in text and "--repo" in text


def test_generate_needs_something_to_write(cli):
    done = cli.run("generate")
    assert done.returncode == 2
    assert done.stderr.decode().count("\n") == 1


@pytest.fixture(scope="module")
def served():
    from webdav_servers import faulty_wsgidav
    with faulty_wsgidav() as pair:
        yield pair


def test_verbose_and_the_log_file_show_each_retry_without_the_password(served, cli, tmp_path):
    server, mw = served
    mw.clear()
    scratch = server.scratch()
    env = {"STRONGROOM_WEBDAV_PASSWORD": scratch.password, "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05",
           "STRONGROOM_WEBDAV_DEADLINE": "30", "STRONGROOM_WEBDAV_BUDGET": "off"}
    url = scratch.storage_url()
    cli.run("-r", url, "init", env=env, check=True)
    mw.fail(500, 2, methods=["PROPFIND"])
    log = tmp_path / "webdav.log"
    done = cli.run("-v", "--log-file", str(log), "-r", url, "snapshots", env=env, check=True)
    assert mw.count(status=500) == 2
    records = [line for line in log.read_text().splitlines() if "strongroom.storage.retry" in line]
    assert len(records) == 2 and all("retrying in" in line for line in records)
    assert done.stderr.decode().count("failed, retrying in") == 2
    assert scratch.password not in log.read_text() + done.stderr.decode()
    mw.clear()


def test_commands_that_only_read_leave_the_chunker_lz4_and_the_restore_engine_unimported(cli, src, tmp_path):
    # pyfastcdc and lz4 were a fifth of a cold start's imports: only a backup
    # cuts, and only an lz4 repository decompresses with lz4.
    cli.run("init", check=True)
    cli.run("backup", str(src), check=True)
    for args in (["snapshots"], ["forget", "--keep-last", "1", "--dry-run"], ["check", "--read-data"],
                 ["ls", "latest"]):
        done, probe = imported_by(cli, "module", *args)
        assert done.returncode == 0, (args, done.stderr)
        assert "pyfastcdc" not in probe["modules"] and "lz4" not in probe["modules"], args
    done, probe = imported_by(cli, "module", "snapshots")
    assert "strongroom.engine.restore" not in probe["modules"]
    # The probe sees them where they are used.
    done, probe = imported_by(cli, "module", "backup", str(src))
    assert done.returncode == 0, done.stderr
    assert "pyfastcdc" in probe["modules"]
    fresh = tmp_path / "fresh"  # new content, so new blobs, stored with lz4
    fresh.mkdir()
    (fresh / "text").write_bytes(b"compressible " * 50_000 + os.urandom(64))
    cli.run("backup", "--compression", "lz4", str(fresh), check=True)
    done, probe = imported_by(cli, "module", "check", "--read-data")
    assert done.returncode == 0, done.stderr
    assert "lz4" in probe["modules"]
