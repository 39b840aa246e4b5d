"""Sources that are not files: a command's output, a SQLite database, a
PostgreSQL database; and loading a PostgreSQL dump back. Run as a person
runs them (the real CLI in a subprocess) against a real PostgreSQL cluster
made for the test (tests/postgres_server.py) and real SQLite files."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from postgres_server import running_postgres
from strongroom.errors import StrongroomError, UsageError
from strongroom.services.configs import BackupConfig
from strongroom.sources import KINDS, SourceSpec, source_for
from strongroom.sources.dsn import database_of, parse_dsn, split_password
from strongroom.sources.postgres import load_dump
from test_manage_cli import Managed, one_error_line
import forked_cli

ROWS = 500


@pytest.fixture(scope="module")
def pg():
    with running_postgres() as server:
        yield server


@pytest.fixture
def m(tmp_path) -> Managed:
    return Managed(tmp_path)


def jobs_of(m: Managed, name: str) -> list[dict]:
    return m.jobs(name)


def snapshots_of(m: Managed, name: str) -> list[dict]:
    return json.loads(m.run("snapshots", "--config", name, "--json", check=True).stdout)


def make_app_database(pg, name: str) -> list[tuple[str, str]]:
    pg.psql("postgres", f'DROP DATABASE IF EXISTS "{name}"; CREATE DATABASE "{name}";')
    pg.psql(name, f"CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL);"
                  f"INSERT INTO orders SELECT g, 'item ' || md5(g::text) FROM generate_series(1, {ROWS}) g;")
    return rows_of(pg, name)


def rows_of(pg, name: str) -> list[tuple[str, str]]:
    return [tuple(line.split("\t")) for line in pg.psql(name, "SELECT id, item FROM orders ORDER BY id").splitlines()]


def all_bytes_below(*folders: Path) -> bytes:
    return b"".join(p.read_bytes() for folder in folders for p in folder.rglob("*") if p.is_file())


# ---- the family: every source passes the same checks ----------------------------------------------------


@pytest.fixture
def members(tmp_path, pg):
    """For each kind: a source that gives known bytes, and one that fails."""
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES ('sqlite row')")
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    make_app_database(pg, "family")
    return {
        "command": (SourceSpec("command", "printf 'a\\nb\\n'", "ab.txt"), "ab.txt",
                    lambda data: data == b"a\nb\n",
                    SourceSpec("command", "echo partial; echo 'it broke' >&2; exit 3", "p.txt")),
        "sqlite": (SourceSpec("sqlite", str(db)), "shop.db", lambda data: b"sqlite row" in data,
                   SourceSpec("sqlite", str(tmp_path / "junk.db"))),
        "postgres": (SourceSpec("postgres", pg.dsn("family")), "family.dump",
                     lambda data: data.startswith(b"PGDMP") and b"orders" in data,
                     SourceSpec("postgres", pg.dsn("no_such_database"))),
    }


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_source_gives_its_bytes_and_raises_instead_of_ending_short(members, kind):
    good, name, looks_right, bad = members[kind]
    source = source_for(good)
    source.check()
    assert source.file_name == name
    with source.open() as stream:
        data = stream.read()
        assert stream.read() == b""  # the end, once it has finished well
    assert looks_right(data)
    with pytest.raises(StrongroomError) as failed:
        with source_for(bad).open() as stream:
            while stream.read(65536):
                pass
    assert "\n" not in str(failed.value)


def test_an_unknown_kind_is_refused():
    with pytest.raises(UsageError, match="unknown source kind 'mysql'"):
        source_for(SourceSpec("mysql", "x"))


# ---- a command -------------------------------------------------------------------------------------


def test_a_failing_command_makes_no_snapshot_and_a_failed_job(m, tmp_path):
    repo = tmp_path / "repo"
    m.run("config", "add", "dump", "--source-command", "echo partial; echo 'dump broke at table 7' >&2; exit 3",
          "--stdin-filename", "db.dump", "--target-dir", str(repo), "--max-attempts", "1", check=True)
    done = m.run("backup", "--config", "dump")
    assert done.returncode == 1
    line = one_error_line(done)
    assert "exited with status 3" in line and "dump broke at table 7" in line
    [job] = jobs_of(m, "dump")
    assert job["status"] == "failed" and "status 3" in job["error"] and "dump broke at table 7" in job["error"]
    assert list((repo / "snapshots").iterdir()) == []


@pytest.mark.parametrize("command, expected", [
    ("echo partial; exit 3", "source command exited with status 3; nothing was stored"),
    ("echo some; kill -TERM $$", "source command was killed by signal SIGTERM"),
    ("no-such-program --all", "status 127 (command not found): /bin/sh: 1: no-such-program: not found"),
])
def test_every_bad_end_of_a_command_raises_at_the_end_of_its_output(command, expected):
    with pytest.raises(StrongroomError) as failed:
        with source_for(SourceSpec("command", command, "d")).open() as stream:
            stream.read()
    assert expected in str(failed.value)


def test_a_command_not_on_path_is_refused_up_front():
    with pytest.raises(UsageError, match="no-such-program is not found on PATH"):
        source_for(SourceSpec("command", "no-such-program --all", "d")).check()
    source_for(SourceSpec("command", "PGHOST=x pg_dump db", "d")).check()  # a shell word: left to the shell


def test_a_command_is_streamed_not_staged(m, tmp_path):
    """1 GB through a backup: no temporary file appears, and the peak memory
    of the backup process (the kernel's accounting of that child alone)
    stays far below the size of the data. (What the pipeline holds is
    bounded by its chunks in flight, 16 of at most 4 MiB, and its packs; on a
    busy machine the allocator's arenas add to that, so the data must be far
    larger than the bound for the comparison to mean anything. The peak is
    the child's VmHWM, read while it runs: the kernel's ru_maxrss of a child
    also counts the address space it was forked from, up to its exec, so in
    the whole suite it reported the pytest worker's own 530-560 MB.)"""
    size = 1_000_000_000
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    m.run("config", "add", "zeros", "--source-command", f"head -c {size} /dev/zero", "--stdin-filename",
          "zeros.bin", "--target-dir", str(tmp_path / "repo"), check=True)
    child = m.popen("backup", "--config", "zeros", env={"TMPDIR": str(scratch)})
    seen, stop, peaks = [], threading.Event(), [0]

    def watch() -> None:
        while not stop.wait(0.05):
            seen.append(sum(p.stat().st_size for p in scratch.rglob("*") if p.is_file()))
            try:
                status = Path(f"/proc/{child.pid}/status").read_text()
            except OSError:
                continue  # it has ended
            for line in status.splitlines():
                if line.startswith("VmHWM:"):  # the peak of the process as it is since its exec
                    peaks.append(int(line.split()[1]) * 1024)

    # The pipes are drained by threads while the watcher reads the child's peak.
    threads = [threading.Thread(target=watch, daemon=True),
               threading.Thread(target=child.stdout.read, daemon=True)]
    errors = []
    threads.append(threading.Thread(target=lambda: errors.append(child.stderr.read()), daemon=True))
    for thread in threads:
        thread.start()
    try:
        child.wait()
    finally:
        stop.set()
    for thread in threads:
        thread.join(30)
    assert child.returncode == 0, errors
    assert seen and max(seen) == 0 and list(scratch.iterdir()) == []
    peak = max(peaks)
    assert 0 < peak < 400 * 1024 * 1024, f"peak RSS {peak} bytes for {size} bytes streamed"
    [snap] = snapshots_of(m, "zeros")
    assert snap["paths"] == ["/zeros.bin"] and snap["total_bytes"] == size


def test_backup_stdin_from_command(tmp_path):
    env = {**os.environ, "STRONGROOM_PASSWORD": "pw", "STRONGROOM_CACHE_DIR": str(tmp_path / "cache")}

    def strongroom(*args: str) -> subprocess.CompletedProcess:
        return forked_cli.run(["-r", str(tmp_path / "repo"), *args], env=env,
                              timeout=120)

    assert strongroom("init", "-q").returncode == 0
    done = strongroom("backup", "--stdin-from-command", "--stdin-filename", "words.txt", "--",
                      "sh", "-c", "echo one; echo two")
    assert done.returncode == 0, done.stderr.decode()
    assert strongroom("dump", "latest", "/words.txt").stdout == b"one\ntwo\n"
    done = strongroom("backup", "--stdin-from-command", "--", "sh", "-c", "echo half; echo 'disk full' >&2; exit 4")
    assert done.returncode == 1
    assert "status 4: disk full; nothing was stored" in done.stderr.decode()
    assert len(list((tmp_path / "repo" / "snapshots").iterdir())) == 1


# ---- SQLite ------------------------------------------------------------------------------------------


WRITER = r"""
import sqlite3, sys, time
db, mode, per = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = sqlite3.connect(db, timeout=60, isolation_level=None)
conn.execute(f"PRAGMA journal_mode={mode}")
print("writing", flush=True)
txn = 0
while True:
    txn += 1
    conn.execute("BEGIN IMMEDIATE")
    for i in range(per):
        conn.execute("INSERT INTO rows (txn, pad) VALUES (?, randomblob(200))", (txn,))
    conn.execute("UPDATE counter SET done = ?", (txn,))
    conn.execute("COMMIT")
"""


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_sqlite_under_a_concurrent_writer_is_a_consistent_copy(m, tmp_path, journal):
    db = tmp_path / "live.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA journal_mode={journal}")
        conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, txn INTEGER NOT NULL, pad BLOB)")
        conn.execute("CREATE TABLE counter (done INTEGER)")
        conn.execute("INSERT INTO counter VALUES (0)")
        # Some bulk, so the copy takes a while beside the writer.
        conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 8000) "
                     "INSERT INTO rows (txn, pad) SELECT 0, randomblob(1000) FROM n")
    per = 50
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    m.run("config", "add", "live", "--sqlite", str(db), "--target-dir", str(tmp_path / "repo"), check=True)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), journal, str(per)], stdout=subprocess.PIPE)
    try:
        assert writer.stdout.readline() == b"writing\n"
        time.sleep(0.2)
        m.run("backup", "--config", "live", env={"TMPDIR": str(scratch)}, check=True)
        with sqlite3.connect(db, timeout=60) as conn:
            assert conn.execute("SELECT done FROM counter").fetchone()[0] > 0
    finally:
        writer.kill()
        writer.wait()
    assert list(scratch.iterdir()) == []  # the private copy is gone
    out = tmp_path / "out"
    m.run("restore", "latest", "--config", "live", "--target", str(out), check=True)
    with sqlite3.connect(out / "live.db") as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        done = copy.execute("SELECT done FROM counter").fetchone()[0]
        counts = dict(copy.execute("SELECT txn, count(*) FROM rows WHERE txn > 0 GROUP BY txn"))
    assert done > 0, "the writer committed nothing before the backup"
    # Every transaction the counter says was committed is there whole, and nothing of a later one.
    assert counts == {t: per for t in range(1, done + 1)}


def test_the_sqlite_copy_is_private_and_removed_whatever_happens(tmp_path):
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    source = source_for(SourceSpec("sqlite", str(db)))
    with source.open() as stream:
        copy = Path(stream.name)
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    assert not copy.parent.exists()
    with pytest.raises(RuntimeError):
        with source.open() as stream:
            copy = Path(stream.name)
            raise RuntimeError("the backup stopped")
    assert not copy.parent.exists()


# ---- PostgreSQL -----------------------------------------------------------------------------------------


def test_postgres_backup_drop_restore_and_load(m, tmp_path, pg):
    rows = make_app_database(pg, "shop")
    assert len(rows) == ROWS
    done = m.run("config", "add", "shopdb", "--postgres", pg.dsn("shop"), "--target-dir", str(tmp_path / "repo"),
                 check=True)
    assert "PostgreSQL" in done.stdout.decode()
    m.run("backup", "--config", "shopdb", check=True)
    [snap] = snapshots_of(m, "shopdb")
    assert snap["paths"] == ["/shop.dump"]

    pg.psql("postgres", "DROP DATABASE shop")
    m.run("restore", "latest", "--config", "shopdb", "--target", str(tmp_path / "out"), check=True)
    dump = tmp_path / "out" / "shop.dump"
    load_dump(str(dump), pg.dsn("shop_restored"))  # created, as it does not exist
    assert rows_of(pg, "shop_restored") == rows
    load_dump(str(dump), "shop", env_extra=pg.env)  # a bare name: the server from the environment
    assert rows_of(pg, "shop") == rows
    pg.psql("shop", "DELETE FROM orders WHERE id > 10")
    load_dump(str(dump), pg.dsn("shop"))  # over an existing database: its tables are replaced
    assert rows_of(pg, "shop") == rows


def test_load_dump_failures_are_one_line(tmp_path, pg):
    bad = tmp_path / "bad.dump"
    bad.write_bytes(b"not a dump at all\n" * 10)
    with pytest.raises(StrongroomError) as failed:
        load_dump(str(bad), pg.dsn("never_loaded"))
    message = str(failed.value)
    assert message.startswith("pg_restore exited with status 1: ") and "\n" not in message
    assert "input file" in message  # pg_restore's own last line
    with pytest.raises(StrongroomError, match='role "nobody" does not exist'):
        load_dump(str(bad), pg.dsn("x", user="nobody"))
    with pytest.raises(UsageError, match="is not a file"):
        load_dump(str(tmp_path / "missing.dump"), pg.dsn("x"))


def _pg_dump_processes(socket_dir: str) -> list[int]:
    """The pg_dump processes talking to this test's server (other tests may run their own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"pg_dump") and socket_dir.encode() in b" ".join(argv):
                found.append(int(entry.name))
    return found


def test_a_database_password_stays_secret(m, tmp_path, pg, monkeypatch):
    secret = "Pw-for-the-shop-4f1d9e"
    make_app_database(pg, "vault")
    pg.psql("postgres", f"CREATE ROLE keeper LOGIN PASSWORD '{secret}'; GRANT pg_read_all_data TO keeper;")
    pg.require_password("keeper")
    repo = tmp_path / "repo"

    # On the command line it is refused, and not repeated.
    uri = f"postgresql://keeper:{secret}@/vault?host={pg.socket_dir}&port={pg.port}"
    done = m.run("config", "add", "vault", "--postgres", uri, "--target-dir", str(repo))
    assert done.returncode == 2 and secret not in done.stderr.decode() + done.stdout.decode()
    assert "--postgres-password-file" in done.stderr.decode()

    # Through the API, in the URI: taken out of it into the secrets store.
    from strongroom.services.backup_manager import create_backup_manager
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    with create_backup_manager(db_path=str(m.catalog), secrets_path=str(m.secrets),
                               cache_root=str(tmp_path / "cache")) as manager:
        config = BackupConfig(name="vault", source_paths=[], postgres=uri, target_path=str(repo), max_attempts=1)
        assert secret not in repr(config) and secret not in json.dumps(config.to_doc())
        manager.add_config(config)
        manager.catalog.close()
    assert secret in m.stored_secrets().values()

    # The dump waits on a lock we hold, so its process can be looked at.
    holder = subprocess.Popen(["psql", "-X", "-q", "-t", "-A", "-h", pg.socket_dir, "-p", str(pg.port), "-U", pg.user,
                               "-d", "vault"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    holder.stdin.write("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "locked"
    child = m.popen("backup", "--config", "vault")
    try:
        deadline = time.monotonic() + 60
        while not (dumps := _pg_dump_processes(pg.socket_dir)):
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.05)
        [pid] = dumps
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"keeper" in argv and b"vault" in argv and secret.encode() not in argv
        assert f"PGPASSWORD={secret}".encode() in environ
        assert not any(v.startswith(b"STRONGROOM_PASSWORD") for v in environ)
    finally:
        holder.stdin.write("COMMIT;\n")
        holder.stdin.close()
        holder.wait(30)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err.decode()
    assert len(list((repo / "snapshots").iterdir())) == 1

    # Nowhere in plain text: the catalog, the repository, the cache, what `config show` prints.
    shown = m.run("config", "show", "vault", check=True).stdout.decode()
    shown_json = m.run("config", "show", "vault", "--json", check=True).stdout.decode()
    assert "keeper" in shown and "db password:     secrets store" in shown
    for text in (shown, shown_json):
        assert secret not in text
    stored = all_bytes_below(m.catalog.parent, repo, tmp_path / "cache").replace(
        m.secrets.read_bytes(), b"")
    assert secret.encode() not in stored and b"keeper" not in all_bytes_below(repo)  # sealed, every object

    # With a wrong password the server refuses, and that fails the run.
    pg.psql("postgres", "ALTER ROLE keeper PASSWORD 'another'")
    done = m.run("backup", "--config", "vault")
    assert done.returncode == 1 and "password authentication failed" in one_error_line(done)
    assert len(list((repo / "snapshots").iterdir())) == 1
    m.run("config", "remove", "vault", "--without-kit", check=True)  # its generated key: no kit exported
    assert secret not in m.stored_secrets().values()  # the database password goes with it


def test_a_password_file_on_the_command_line(m, tmp_path, pg):
    make_app_database(pg, "filed")
    pg.psql("postgres", "CREATE ROLE filer LOGIN PASSWORD 'from-a-file-77'; GRANT pg_read_all_data TO filer;")
    pg.require_password("filer")
    (tmp_path / "pw").write_text("from-a-file-77\n")
    m.run("config", "add", "filed", "--postgres", pg.dsn("filed", user="filer"), "--postgres-password-file",
          str(tmp_path / "pw"), "--target-dir", str(tmp_path / "repo"), check=True)
    m.run("backup", "--config", "filed", check=True)
    assert b"from-a-file-77" not in all_bytes_below(m.catalog.parent).replace(m.secrets.read_bytes(), b"")


# ---- configurations ------------------------------------------------------------------------------------


def test_config_show_names_the_source(m, tmp_path, pg):
    db = tmp_path / "notes.db"
    sqlite3.connect(db).close()
    m.run("config", "add", "notes", "--sqlite", str(db), "--target-dir", str(tmp_path / "r1"), check=True)
    m.run("config", "add", "cmd", "--source-command", "echo hi", "--stdin-filename", "hi.txt",
          "--target-dir", str(tmp_path / "r2"), check=True)
    m.run("config", "add", "pgdb", "--postgres", pg.dsn("shop"), "--target-dir", str(tmp_path / "r3"), check=True)

    shown = m.run("config", "show", "notes", check=True).stdout.decode()
    assert f"source:          SQLite database {db}" in shown
    shown = m.run("config", "show", "cmd", check=True).stdout.decode()
    assert "source:          command echo hi (stored as hi.txt)" in shown
    shown = m.run("config", "show", "pgdb", check=True).stdout.decode()
    assert "source:          PostgreSQL" in shown and "dbname='shop'" in shown
    assert "db password:     none given" in shown
    docs = {e["name"]: e for e in m.json("config", "list") if e["type"] == "config"}
    assert {name: d["source_kind"] for name, d in docs.items()} == {"notes": "sqlite", "cmd": "command",
                                                                    "pgdb": "postgres"}
    assert docs["pgdb"]["source_paths"] == [] and "postgres_secret_ref" not in docs["pgdb"]
    assert parse_dsn(docs["pgdb"]["postgres"])["dbname"] == "shop"
    assert docs["cmd"]["source_command"] == "echo hi" and docs["cmd"]["stdin_filename"] == "hi.txt"

    # An edit that names another kind of source replaces the old one.
    src = tmp_path / "files"
    src.mkdir()
    edited = m.summary("config", "edit", "cmd", "--source", str(src))
    assert edited["source_kind"] == "files" and edited["source_paths"] == [str(src)]
    assert edited["source_command"] is None and edited["stdin_filename"] is None


def test_refusals(m, tmp_path):
    db = tmp_path / "x.db"
    sqlite3.connect(db).close()
    repo = str(tmp_path / "repo")
    for args, expected in [
        (("--sqlite", str(db), "--source", str(tmp_path)), "give one kind of source, not --source and --sqlite"),
        (("--sqlite", str(tmp_path / "missing.db")), f"{tmp_path / 'missing.db'} is not a file"),
        ((), "give what to back up"),
    ]:
        done = m.run("config", "add", "bad", *args, "--target-dir", repo)
        assert done.returncode == 2 and expected in one_error_line(done), (args, done.stderr)
    assert not (tmp_path / "repo").exists()  # nothing was made for a refused configuration

    for fields, expected in [
        ({"sqlite": str(db), "postgres": "shop"}, "not a SQLite database and a PostgreSQL database"),
        ({"source_command": "echo", "source_paths": ["/srv"]}, "not source paths and a source command"),
        ({"postgres": "host=/tmp port=5432"}, "names no database"),
        ({"sqlite": str(db), "stdin_filename": "x.dump"}, "goes with a source command"),
        ({"source_command": "echo", "stdin_filename": "a/b"}, "plain file name"),
    ]:
        config = BackupConfig(name="bad", **{"source_paths": [], **fields}, target_path=repo)
        with pytest.raises(UsageError, match=expected):
            config.validate()


def test_configs_stored_before_these_sources_load_as_files():
    old = {"name": "docs", "source_paths": ["/srv"], "target_path": "/backup", "secret_ref": "repo:docs:1"}
    config = BackupConfig.from_doc(old)
    assert config.source_kind == "files" and config.postgres is None and config.stdin_filename is None
    config.validate()


@pytest.mark.parametrize("text, without, password, database", [
    ("shop", "shop", None, "shop"),
    ("host=/run/pg port=5433 dbname=shop user=app password=s3cret", "host='/run/pg' port='5433' dbname='shop' "
     "user='app'", "s3cret", "shop"),
    ("dbname = 'my shop' password='it s' ", "dbname='my shop'", "it s", "my shop"),
    ("postgresql://app:p%40ss@db.example:6543/shop?sslmode=require", "user='app' host='db.example' port='6543' "
     "dbname='shop' sslmode='require'", "p@ss", "shop"),
    ("postgres://[::1]:5432,other/shop", "host='::1,other' port='5432,' dbname='shop'", None, "shop"),
    ("dbname='a\\'b' password=x\\ y", "dbname='a\\'b'", "x y", "a'b"),
])
def test_connection_strings(text, without, password, database):
    assert split_password(text) == (without, password)
    assert database_of(text) == database
    assert split_password(without) == (without, None)
