"""Configuration as a file: `strongroom apply` and `export-config`, run as a
person runs them (the real CLI in subprocesses), against local repositories
and a real WebDAV server (wsgidav in-process)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from strongroom.configfile import apply_file
import forked_cli
from catalog_cli import catalog_bytes

# Variables of the surrounding shell that would change what is tested.
_SCRUBBED = ("STRONGROOM_PASSWORD", "STRONGROOM_PASSWORD_FILE", "STRONGROOM_PASSWORD_COMMAND", "STRONGROOM_REPO",
             "STRONGROOM_WEBDAV_PASSWORD", "STRONGROOM_WEBDAV_PASSWORD_FILE", "STRONGROOM_WEBDAV_VENDOR",
             "STRONGROOM_CONFIG", "STRONGROOM_CONFIG_FILE", "XDG_CONFIG_HOME")
REPO_PASSWORD = "file-declared repository pass 7f3a"


class Strongroom:
    """The real `strongroom` in subprocesses, its catalog, secrets and cache in tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.catalog = tmp_path / "state" / "catalog.db"
        self.secrets = tmp_path / "state" / "secrets.json"
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        env.update(STRONGROOM_CATALOG=str(self.catalog), STRONGROOM_SECRETS=str(self.secrets),
                   STRONGROOM_CACHE_DIR=str(tmp_path / "cache"), STRONGROOM_SECRETS_BACKEND="file",
                   STRONGROOM_WEBDAV_RETRY_DELAY="0.05", STRONGROOM_WEBDAV_DEADLINE="30")
        self.env = env
        self.argvs: list[list[str]] = []

    def run(self, *args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
        self.argvs.append([sys.executable, "-m", "strongroom", *args])
        done = forked_cli.run(args, env={**self.env, **(env or {})}, timeout=120, cwd=self.tmp)
        if check and done.returncode != 0:
            raise AssertionError(f"strongroom {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout.decode()}\n{done.stderr.decode()}")
        return done

    def catalog_bytes(self) -> bytes:
        return catalog_bytes(self.catalog)

    def catalog_rows(self) -> list[str]:
        """The catalog's content, whichever of its files it is in."""
        db = sqlite3.connect(f"file:{self.catalog}?mode=ro", uri=True)
        try:
            return list(db.iterdump())
        finally:
            db.close()

    def out(self, *args: str, env: dict | None = None) -> str:
        return self.run(*args, env=env, check=True).stdout.decode()

    def json(self, *args: str, env: dict | None = None) -> list[dict]:
        return [json.loads(line) for line in self.out(*args, "--json", env=env).splitlines()
                if line.startswith("{")]


@pytest.fixture
def sr(tmp_path) -> Strongroom:
    return Strongroom(tmp_path)


@pytest.fixture
def manager(tmp_path, monkeypatch):
    """A BackupManager in this process, over a catalog and secrets in tmp_path (as the daemon holds one)."""
    from strongroom import create_backup_manager
    monkeypatch.setenv("STRONGROOM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    monkeypatch.setenv("STRONGROOM_SECRETS", str(tmp_path / "secrets.json"))
    with create_backup_manager(None, str(tmp_path / "catalog.db")) as made:
        yield made


@pytest.fixture
def setup(tmp_path) -> Path:
    """Two source trees and a password command beside the file."""
    for name in ("home", "db"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_text(f"the {name} data\n")
    with sqlite3.connect(tmp_path / "shop.sqlite") as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        db.execute("INSERT INTO orders (item) VALUES ('tea')")
    command = tmp_path / "repo-pass.sh"
    command.write_text(f"#!/bin/sh\nprintf '%s\\n' '{REPO_PASSWORD}'\n")
    command.chmod(0o700)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


FILE = """
[client.dav]
url = "{url}"
user = "{user}"
password_env = "DAV_PASSWORD"

[config.home]
source = ["home"]
target_dir = "repos/home"
password_command = "{command}"
exclude = ["*.tmp"]
tag = ["laptop"]
max_attempts = 2
retention_after_run = "forget"

[config.home.retention]
keep_daily = 7
keep_weekly = 4

[[config.home.schedule]]
spec = "30 2 * * *"
window = "22:00-06:00"
missed = "skip"

[[config.home.check_schedule]]
spec = "every 1d"
subset = "10%"

[config.db]
sqlite = "shop.sqlite"
client = "dav"
target_path = "db-repo"
compression = "lz4"
schedule = "every 6h"
window = "01:00-05:00"

[notify.ops]
webhook_env = "OPS_HOOK"
min_severity = "error"
config = ["home"]

[dr.nightly]
target_base = "restored"
rto = "30m"
schedule = "every 1w"

[[dr.nightly.steps]]
config = "home"

[[dr.nightly.steps]]
config = "db"
"""


def declare(setup: Path, dav) -> tuple[Path, dict]:
    path = write(setup / "strongroom.toml", FILE.format(url=dav.url, user=dav.username,
                                                        command=setup / "repo-pass.sh"))
    return path, {"DAV_PASSWORD": dav.password, "OPS_HOOK": "http://127.0.0.1:9/hook/SECRET-TOKEN"}


def test_apply_creates_everything_and_a_second_apply_changes_nothing(sr, setup, wsgidav_server):
    path, env = declare(setup, wsgidav_server)
    dry = sr.out("apply", str(path), "--dry-run", env=env)
    assert dry.splitlines()[:5] == ["+ client dav", "+ config db", "+ config home", "+ dr nightly", "+ notify ops"]
    assert configs_in(sr) == []  # the dry run changed nothing

    applied = sr.out("apply", str(path), env=env)
    assert applied.splitlines() == ["+ client dav", "+ config db", "+ config home", "+ dr nightly",
                                    "+ notify ops"]
    [home] = sr.json("config", "show", "home")
    assert home["source_paths"] == [str(setup / "home")] and home["target"] == str(setup / "repos" / "home")
    assert home["password"] == "command" and home["excludes"] == ["*.tmp"] and home["tags"] == ["laptop"]
    assert home["retention"] == {"keep_daily": 7, "keep_weekly": 4} and home["retention_after_run"] == "forget"
    assert home["max_attempts"] == 2
    [db] = sr.json("config", "show", "db")
    assert db["target_client_id"] == "dav" and db["codec"] == "lz4" and db["password"] == "secrets store"
    assert db["source_kind"] == "sqlite" and db["sqlite"] == str(setup / "shop.sqlite")
    schedules = {(e.get("config") or e.get("plan"), e["kind"], e["id"], e.get("window"), e.get("missed"),
                  e.get("subset")) for e in sr.json("schedule", "list") if e["type"] == "schedule"}
    assert schedules == {("home", "incremental", "30 2 * * *", "22:00-06:00", "skip", None),
                         ("home", "check", "check:every 1d", None, "run-once", "10%"),
                         ("db", "incremental", "every 6h", "01:00-05:00", "run-once", None),
                         ("nightly", "dr-test", "every 1w", None, "run-once", None)}
    [channel, _] = sr.json("notify", "list")
    assert (channel["name"], channel["kind"], channel["min_severity"], channel["configs"]) == \
        ("ops", "webhook", "error", ["home"])
    assert "SECRET-TOKEN" not in json.dumps(channel)
    [plan] = sr.json("dr", "show", "nightly")
    assert plan["target_base"] == str(setup / "restored") and [s["config"] for s in plan["steps"]] == ["home", "db"]
    assert sr.json("client", "list")[0]["url"] == wsgidav_server.url

    before = sr.catalog_rows()
    assert sr.out("apply", str(path), env=env).splitlines() == ["no changes"]
    assert sr.catalog_rows() == before  # nothing was written

    # One key edited: one line naming it.
    path.write_text(path.read_text().replace("keep_daily = 7", "keep_daily = 14"))
    assert sr.out("apply", str(path), env=env).splitlines() == ["~ config home: retention"]
    path.write_text(path.read_text().replace('spec = "30 2 * * *"', 'spec = "45 3 * * *"')
                    .replace('compression = "lz4"', 'compression = "zstd"'))
    changes = [e for e in sr.json("apply", str(path), "--dry-run", env=env) if e["type"] == "change"]
    assert [(c["name"], c["action"], c["fields"]) for c in changes] == \
        [("db", "change", ["compression"]), ("home", "change", ["schedule"])]
    assert sr.json("config", "show", "home")[0]["schedules"][0]["id"] == "30 2 * * *"  # a dry run

    # A changed secret is a change too, named but never shown.
    changed = sr.run("apply", str(path), env={**env, "OPS_HOOK": "http://127.0.0.1:9/hook/OTHER-TOKEN"}, check=True)
    assert "~ notify ops: webhook" in changed.stdout.decode()
    assert b"TOKEN" not in changed.stdout + changed.stderr


def test_export_then_apply_is_a_no_op(sr, setup, wsgidav_server):
    path, env = declare(setup, wsgidav_server)
    sr.run("apply", str(path), env=env, check=True)
    exported = setup / "exported" / "strongroom.toml"
    exported.parent.mkdir()
    sr.run("export-config", "-o", str(exported), check=True)
    text = exported.read_text()
    for secret in (wsgidav_server.password, REPO_PASSWORD, "SECRET-TOKEN"):
        assert secret not in text
    assert 'password_command = "' in text and "kept in the secrets store" in text
    # No variables now: the exported file references no secret, the stored ones stay.
    assert sr.out("apply", str(exported)).splitlines() == ["no changes"]
    assert sr.out("export-config") == text


def test_a_backup_through_a_password_command_keeps_the_password_out_of_everything(sr, setup, wsgidav_server):
    path, env = declare(setup, wsgidav_server)
    outputs = [sr.run("apply", str(path), env=env, check=True)]
    outputs.append(sr.run("backup", "--config", "home", check=True))
    outputs.append(sr.run("snapshots", "--config", "home", check=True))
    assert "1 snapshot" in outputs[-1].stdout.decode()
    outputs.append(sr.run("backup", "--config", "db", check=True))  # SQLite to WebDAV
    assert "1 snapshot" in sr.out("snapshots", "--config", "db")
    # The repository opens with the command's password, and with nothing else.
    opened = sr.run("snapshots", "--repo", str(setup / "repos" / "home"), "--password-file",
                    str(write(setup / "pw.txt", REPO_PASSWORD + "\n")), check=True)
    assert "1 snapshot" in opened.stdout.decode()
    secret = REPO_PASSWORD.encode()
    assert secret not in sr.catalog_bytes() and secret not in sr.secrets.read_bytes()
    assert not any(secret in part for done in outputs for part in (done.stdout, done.stderr))
    assert not any(REPO_PASSWORD in " ".join(argv) for argv in sr.argvs)

    # A failing command: one line, without what it printed.
    (setup / "repo-pass.sh").write_text("#!/bin/sh\necho LEAKED-OUTPUT; echo LEAKED-ERROR >&2; exit 3\n")
    failed = sr.run("backup", "--config", "home")
    assert failed.returncode != 0
    assert b"config home: the password command failed with exit status 3" in failed.stderr
    assert b"LEAKED" not in failed.stdout + failed.stderr
    # Applying a change that opens the repository fails the same way, after the file was read whole.
    path.write_text(path.read_text().replace("max_attempts = 2", "max_attempts = 4"))
    refused = sr.run("apply", str(path), env=env)
    assert refused.returncode == 2 and b"LEAKED" not in refused.stdout + refused.stderr
    assert refused.stderr.decode().splitlines() == \
        ["strongroom: config home: the password command failed with exit status 3"]


@pytest.mark.parametrize("body, line, key, words", [
    ('[config.a]\nsource = ["home"]\ntarget_dir = "r"\nschedule = "every banana"\n', 4, "config.a.schedule",
     "interval 'banana'"),
    ('[config.a]\nsource = ["home"]\ntarget_dir = "r"\n\ncolour = "blue"\n', 5, "config.a.colour", "unknown key"),
    ('[config.a]\nsource = ["home"]\ntarget_dir = "r"\npassword = "hunter2"\n', 4, "config.a.password",
     "password_file, password_env or password_command"),
    ('[config.a]\nsource = ["home"]\ntarget_dir = "r"\nmax_attempts = "three"\n', 4, "config.a.max_attempts",
     "give a whole number"),
    ('[config.a]\nsource = ["home"\ntarget_dir = "r"\n', 3, "", "not valid TOML"),
    ('[notify.ops]\nwebhook = "https://example.org/h"\nhmac_key = "k"\n', 3, "notify.ops.hmac_key",
     "hmac_key_file, hmac_key_env or hmac_key_command"),
    ('[dr.p]\ntarget_base = "/r"\n[[dr.p.steps]]\nconfig = "a"\nwhen = "now"\n', 5, "dr.p.steps[0].when",
     "unknown key 'when'"),
])
def test_an_error_names_the_line_and_key_and_changes_nothing(manager, setup, body, line, key, words):
    good = '[config.first]\nsource = ["db"]\ntarget_dir = "repos/first"\n\n'
    path = write(setup / "strongroom.toml", good + body)
    report = apply_file(manager, path, environ={})
    assert not report.ok and report.exit_code == 2 and report.changes == []
    where = f"{path}:{line + 4}: " + (f"{key}: " if key else "")
    assert len(report.errors) == 1 and report.errors[0].startswith(where) and words in report.errors[0], \
        report.errors
    assert "hunter2" not in report.errors[0]
    assert manager.list_configs() == [] and not (setup / "repos").exists()


def configs_in(sr: Strongroom) -> list[str]:
    """The configurations in the catalog, read from its SQLite file."""
    if not sr.catalog.exists():
        return []
    with sqlite3.connect(sr.catalog) as db:
        return [row[0] for row in db.execute("SELECT name FROM configs ORDER BY name")]


def test_every_error_of_a_file_at_once(sr, setup):
    path = write(setup / "strongroom.toml", """
        [config.a]
        source = ["home"]
        target_dir = "r"
        schedule = ["every 6h", "every 6h"]
        window = "25:00-26:00"

        [config.b]
        source = "home"
        target_dir = "r2"
        token = "abc"
        encrypt = "yes"

        [nonsense.x]
        a = 1

        [config.c]
        source = ["home"]
        client = "nowhere"
        target_path = "c"

        [notify.hook]
        webhook = "ftp://example.org/hook"
        config = ["a", "b", "c"]
    """)
    human = sr.run("apply", str(path))
    assert human.returncode == 2 and human.stdout == b""
    assert human.stderr.decode().splitlines()[0] == \
        f"strongroom: {path}:5: config.a.window: window '25:00-26:00': hours run 00-23 and minutes 00-59"
    done = sr.run("apply", str(path), "--json")
    assert done.returncode == 2
    [summary] = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert not summary["ok"] and len(summary["errors"]) == 6, summary["errors"]
    assert [e.split(": ", 2)[1] for e in summary["errors"]] == \
        ["config.a.window", "config.b.token", "config.b.encrypt", "nonsense", "config.c.client", "notify.hook"]


def test_prune_removes_what_the_file_does_not_declare(sr, setup):
    sr.run("config", "add", "old", "--source", str(setup / "db"), "--target-dir", str(setup / "repos" / "old"),
           check=True)
    path = write(setup / "strongroom.toml", '[config.home]\nsource = ["home"]\ntarget_dir = "repos/home"\n')
    kept = sr.out("apply", str(path))
    assert kept.splitlines() == ["+ config home", "  config old: not in the file (kept; --prune removes it)"]
    assert configs_in(sr) == ["home", "old"]
    sr.out("key", "export", "old")  # its generated key: pruned only with a recovery kit on record
    assert sr.out("apply", str(path), "--prune", "--dry-run").splitlines() == \
        ["- config old", "(dry run: nothing was changed)"]
    assert sr.out("apply", str(path), "--prune").splitlines() == ["- config old"]
    assert configs_in(sr) == ["home"]
    assert (setup / "repos" / "old" / "config").exists()  # its repository stays
    # Declared again without its password: a new key would not open the repository that is there.
    again = write(setup / "again.toml", '[config.old]\nsource = ["db"]\ntarget_dir = "repos/old"\n')
    refused = sr.run("apply", str(again))
    assert refused.returncode == 12 and refused.stderr.decode().splitlines() == [
        "strongroom: config old: its target holds a repository already: reference that repository's password "
        "with password_file, password_env or password_command"]
    assert configs_in(sr) == ["home"]
    # A file that declares nothing is more likely the wrong file: --prune refuses it.
    empty = sr.run("apply", str(write(setup / "empty.toml", "# nothing yet\n")), "--prune")
    assert empty.returncode == 2 and b"the file declares nothing" in empty.stderr
    assert configs_in(sr) == ["home"]


def test_the_file_is_found_from_the_command_line_then_the_environment(sr, setup):
    from strongroom.configfile import locate
    home = {"HOME": "/home/me"}
    assert locate(None, home) == Path("/home/me/.config/strongroom/strongroom.toml")
    assert locate(None, {**home, "XDG_CONFIG_HOME": "/xdg"}) == Path("/xdg/strongroom/strongroom.toml")
    assert locate(None, {**home, "XDG_CONFIG_HOME": "relative"}) == Path("/home/me/.config/strongroom/strongroom.toml")
    assert locate(None, {**home, "XDG_CONFIG_HOME": "/xdg", "STRONGROOM_CONFIG": "/etc/s.toml"}) == Path("/etc/s.toml")
    assert locate("mine.toml", {"STRONGROOM_CONFIG": "/etc/s.toml"}) == Path("mine.toml")
    both = {**home, "STRONGROOM_CONFIG": "/etc/s.toml", "STRONGROOM_CONFIG_FILE": "/etc/f.toml"}
    assert locate(None, both) == Path("/etc/f.toml")
    # In a DR step's commands STRONGROOM_CONFIG is the step's configuration name, never a file.
    in_a_step = {**home, "STRONGROOM_STEP": "db", "STRONGROOM_CONFIG": "db"}
    assert locate(None, in_a_step) == Path("/home/me/.config/strongroom/strongroom.toml")
    assert locate(None, {**in_a_step, "STRONGROOM_CONFIG_FILE": "/etc/f.toml"}) == Path("/etc/f.toml")

    xdg = setup / "xdg"
    (xdg / "strongroom").mkdir(parents=True)
    write(xdg / "strongroom" / "strongroom.toml", '[config.home]\nsource = ["../../home"]\ntarget_dir = "../../r"\n')
    other = write(setup / "other.toml", '[config.db]\nsource = ["db"]\ntarget_dir = "repos/db"\n')
    env = {"XDG_CONFIG_HOME": str(xdg), "STRONGROOM_CONFIG": str(other)}
    assert sr.out("apply", "--dry-run", env=env).splitlines()[0] == "+ config db"
    assert sr.out("apply", "--dry-run", env={"XDG_CONFIG_HOME": str(xdg)}).splitlines()[0] == "+ config home"
    missing = sr.run("apply", env={"XDG_CONFIG_HOME": str(setup / "none")})
    assert missing.returncode == 2 and b"cannot read the configuration file" in missing.stderr


def test_lines_are_found_past_multi_line_values_and_in_arrays_of_tables():
    from strongroom.configfile.lines import KeyLines, dotted
    text = textwrap.dedent('''
        # a comment [config.nope]
        [config.db]
        source = [
          "/a",  # ] not the end
          "/b",
        ]
        note = """
        password = "not a key"
        [config.not-a-table]
        """
        "quoted.key" = 1
        target_dir = '/t'
        [[config.db.schedule]]
        spec = "every 6h"
        [[config.db.schedule]]
        spec = "bad"
        [dr."my plan"]
        [[dr."my plan".steps]]
        config = "db"
        [[dr."my plan".steps]]
        config = "db2"
        before = [{ command = "x" }]
    ''').lstrip()
    lines = KeyLines(text)
    expected = {("config", "db", "source"): 3, ("config", "db", "note"): 7, ("config", "db", "quoted.key"): 11,
                ("config", "db", "target_dir"): 12, ("config", "db", "schedule", 1, "spec"): 16,
                ("config", "db", "schedule", 0): 13, ("config", "db", "password"): 2,
                ("config", "not-a-table"): 2, ("dr", "my plan", "steps", 1, "config"): 21,
                ("dr", "my plan", "steps", 1, "before", 0, "command"): 22}
    assert {path: lines.line_of(path) for path in expected} == expected
    assert dotted(("dr", "my plan", "steps", 1, "config")) == 'dr."my plan".steps[1].config'


def test_config_add_takes_a_password_command(sr, setup):
    sr.run("config", "add", "home", "--source", str(setup / "home"), "--target-dir", str(setup / "repos" / "home"),
           "--password-command", str(setup / "repo-pass.sh"), check=True)
    [shown] = sr.json("config", "show", "home")
    assert shown["password"] == "command" and shown["password_command"] == str(setup / "repo-pass.sh")
    assert REPO_PASSWORD.encode() not in sr.catalog_bytes()
    assert not sr.secrets.exists() or REPO_PASSWORD.encode() not in sr.secrets.read_bytes()


def test_apply_file_from_another_thread_as_the_daemon_calls_it(manager, setup, monkeypatch):
    """The API the daemon uses at start and on SIGHUP: a report, never a raise for a bad file."""
    import threading

    path = write(setup / "strongroom.toml", """
        [config.home]
        source = ["home"]
        target_dir = "repos/home"
        password_env = "HOME_REPO_PASSWORD"
        schedule = "every 6h"
    """)
    # A repository password is read at each use, from the process's environment;
    # `environ` is what the file's own references (clients, channels) read.
    monkeypatch.setenv("HOME_REPO_PASSWORD", REPO_PASSWORD)
    environ: dict[str, str] = {}
    reports = []

    def reload(dry_run: bool = False) -> None:
        reports.append(apply_file(manager, path, dry_run=dry_run, environ=environ))

    for _ in range(2):
        worker = threading.Thread(target=reload)
        worker.start()
        worker.join()
    path.write_text(path.read_text().replace("every 6h", "every banana"))
    reload()
    assert [c.name for c in manager.list_configs()] == ["home"]
    assert manager.get_config("home").schedules[0]["spec"] == "every 6h"  # the bad file changed nothing
    first, second, bad = reports
    assert [(c.kind, c.name, c.action) for c in first.changes] == [("config", "home", "add")] and first.ok
    assert second.lines() == ["no changes"] and second.exit_code == 0
    assert not bad.ok and bad.exit_code == 2 and bad.changes == []
    assert bad.errors == [f"{path}:5: config.home.schedule: schedule 'every banana': interval 'banana': give a "
                          "duration such as 5s, 30m, 6h, 1h30m, 2d"]


def test_a_database_password_is_referenced_and_kept_in_the_secrets_store(manager, setup):
    from strongroom.configfile import export_text
    path = write(setup / "strongroom.toml", """
        [config.shop]
        postgres = "host=127.0.0.1 dbname=shop user=backup"
        postgres_password_env = "SHOP_DB_PASSWORD"
        target_dir = "repos/shop"
    """)
    first = apply_file(manager, path, environ={"SHOP_DB_PASSWORD": "db-secret-one"})
    assert first.ok and first.lines() == ["+ config shop"], first.errors
    config = manager.get_config("shop")
    assert config.postgres_secret_ref and manager.backup_service.secrets.get(config.postgres_secret_ref) == \
        "db-secret-one"
    assert b"db-secret-one" not in (setup / "catalog.db").read_bytes()
    assert apply_file(manager, path, environ={"SHOP_DB_PASSWORD": "db-secret-one"}).lines() == ["no changes"]
    changed = apply_file(manager, path, environ={"SHOP_DB_PASSWORD": "db-secret-two"})
    assert changed.lines() == ["~ config shop: postgres_password"]
    config = manager.get_config("shop")
    assert manager.backup_service.secrets.get(config.postgres_secret_ref) == "db-secret-two"
    # Exported, the stored password is a comment; applied, that keeps it.
    text = export_text(manager)
    assert "db-secret" not in text and "# postgres_password: kept in the secrets store" in text
    exported = write(setup / "exported.toml", text)
    assert apply_file(manager, exported, environ={}).lines() == ["no changes"]
    # Inline in the connection string is refused like any inline secret.
    path.write_text(path.read_text().replace("user=backup", "user=backup password=hunter2"))
    refused = apply_file(manager, path, environ={"SHOP_DB_PASSWORD": "db-secret-two"})
    assert refused.exit_code == 2 and "config.shop.postgres: a secret is never written in the file" in \
        refused.errors[0] and "hunter2" not in refused.errors[0]


def test_a_client_password_is_read_from_its_reference_and_compared_unseen(manager, setup):
    secret = write(setup / "nas.pass", "first-dav-password\n")
    path = write(setup / "strongroom.toml", """
        [client.nas]
        url = "https://nas.example.org/remote.php/dav/files/me/"
        user = "me"
        password_file = "nas.pass"
    """)
    assert apply_file(manager, path, environ={}).lines() == ["+ client nas"]
    assert manager.webdav_service.get_client("nas").service_type == "nextcloud"  # guessed, as `client add` does
    assert apply_file(manager, path, environ={}).lines() == ["no changes"]
    secret.write_text("second-dav-password\n")
    changed = apply_file(manager, path, environ={})
    assert changed.lines() == ["~ client nas: password"] and "dav-password" not in repr(changed)
    assert manager.webdav_service.get_client("nas").password == "second-dav-password"
    assert b"dav-password" not in (setup / "catalog.db").read_bytes()

    fresh = write(setup / "fresh.toml", '[client.other]\nurl = "https://dav.example.org/"\nuser = "me"\n'
                                        '[client.leaky]\nurl = "https://me:pw@dav.example.org/"\nuser = "me"\n'
                                        'password_env = "NOPE"\n')
    refused = apply_file(manager, fresh, environ={})
    assert refused.errors == [
        f"{fresh}:1: client.other: a new client needs its password: give password_file, password_env or "
        "password_command",
        f"{fresh}:5: client.leaky.url: never put the WebDAV password in the URL: give password_file, "
        "password_env or password_command",
        f"{fresh}:7: client.leaky.password_env: variable NOPE is not set"]


def test_a_mail_channel_keeps_its_stored_password_when_the_file_names_none(manager, setup):
    from strongroom.configfile import export_text
    path = write(setup / "strongroom.toml", """
        [notify.mail]
        email = ["ops@example.org"]
        smtp = "smtp://mail.example.org:587"
        starttls = true
        smtp_user = "alerts"
        smtp_password_command = "printf 'smtp-secret-1\\\\n'"
        min_severity = "info"
    """)
    assert apply_file(manager, path, environ={}).lines() == ["+ notify mail"]
    [row] = manager.catalog.list_channels()
    assert row["settings"]["to"] == ["ops@example.org"] and row["min_severity"] == "info"
    assert manager.backup_service.secrets.get(row["secret_refs"]["password"]) == "smtp-secret-1"
    assert apply_file(manager, path, environ={}).lines() == ["no changes"]
    text = export_text(manager)
    assert "smtp-secret" not in text and "# smtp_password: kept in the secrets store" in text
    assert apply_file(manager, write(setup / "exported.toml", text), environ={}).lines() == ["no changes"]
    path.write_text(path.read_text().replace('min_severity = "info"', 'min_severity = "error"'))
    assert apply_file(manager, path, environ={}).lines() == ["~ notify mail: min_severity"]
    # A login without TLS is refused as `notify add` refuses it.
    path.write_text(path.read_text().replace("starttls = true", "starttls = false"))
    refused = apply_file(manager, path, environ={})
    assert refused.errors == [f"{path}:1: notify.mail: an SMTP login needs TLS: add starttls = true or use smtps://"]


def test_secrets_read_for_the_file_are_kept_out_of_the_daemon_log_lines(manager, setup):
    from strongroom.daemon.logs import scrub
    # Values of this test's own: the registry of logged-out secrets is the process's.
    command = write(setup / "own-pass.sh", "#!/bin/sh\necho 'repo-secret-of-this-test-91'\n")
    command.chmod(0o700)
    path = write(setup / "strongroom.toml", f"""
        [client.nas]
        url = "https://nas.example.org/dav/"
        user = "me"
        password_command = "printf 'client-secret-77\\\\n'"

        [config.home]
        source = ["home"]
        target_dir = "repos/home"
        password_command = "{command}"
    """)
    assert apply_file(manager, path, environ={}).ok
    assert manager.backup_service.password_for(manager.get_config("home")) == b"repo-secret-of-this-test-91"
    line = scrub("a message quoting client-secret-77 and repo-secret-of-this-test-91")
    assert "client-secret-77" not in line and "repo-secret-of-this-test-91" not in line
