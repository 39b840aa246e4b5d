"""A PostgreSQL step of a plan, against a real server: a run loads the dump
into the step's database before the after-commands; a rehearsal loads it into
a scratch database on the same server, lets the after-commands probe it, and
drops it, never touching the real database."""

from __future__ import annotations

import shutil

import pytest

from postgres_server import running_postgres
from test_dr_run import DR, summary_of


@pytest.fixture(scope="module")
def pg():
    with running_postgres() as server:
        yield server


@pytest.fixture
def dr(tmp_path, monkeypatch) -> DR:
    return DR(tmp_path, monkeypatch)


def databases(pg) -> set[str]:
    return set(pg.psql("postgres", "SELECT datname FROM pg_database").split())


def shop(pg, rows: int = 3) -> None:
    pg.psql("postgres", "DROP DATABASE IF EXISTS shop WITH (FORCE); DROP DATABASE IF EXISTS shop_live WITH (FORCE);"
                        " CREATE DATABASE shop;")
    pg.psql("shop", "CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL);"
                    + "".join(f"INSERT INTO orders VALUES ({i}, 'item {i}');" for i in range(rows)))


def postgres_config(dr: DR, pg) -> None:
    from strongroom import BackupConfig
    with dr.manager() as manager:
        manager.add_config(BackupConfig("database", [], postgres=pg.dsn("shop"), target_path=str(dr.root / "repo")))
        manager.manual_backup("database", "full")


def probe(pg, out) -> dict:
    """An after-command that counts the orders in the database it is given."""
    psql = shutil.which("psql")
    return {"command": f'{psql} -X -t -A -h {pg.socket_dir} -p {pg.port} -U {pg.user} -d "$STRONGROOM_DATABASE" '
                       f'-c "SELECT count(*) FROM orders" > {out} && echo "$STRONGROOM_DATABASE" >> {out}',
            "timeout": 60}


def test_a_rehearsal_loads_the_dump_into_a_scratch_database_and_drops_it(dr, pg, tmp_path):
    shop(pg)
    postgres_config(dr, pg)
    pg.psql("shop", "INSERT INTO orders VALUES (99, 'after the backup')")  # the live database moved on
    out = tmp_path / "probe.txt"
    dr.plan("shop", [{"config": "database", "database": pg.dsn("shop_live"), "after": [probe(pg, out)]}])
    before = databases(pg)
    code, events, err = dr.json("dr", "test", "shop")
    summary = summary_of(events)
    assert code == 0 and summary["verdict"] == "pass", (summary, err)
    count, name = out.read_text().split()
    assert count == "3" and name.startswith("shop_live_drtest_") and name != "shop_live"
    assert databases(pg) == before  # the scratch database is gone, and no real one was made
    assert pg.psql("shop", "SELECT count(*) FROM orders").strip() == "4"  # the live one untouched

    # With --keep the scratch database stays for a person to look at.
    code, events, _ = dr.json("dr", "test", "shop", "--keep", "--scratch", str(tmp_path / "kept"))
    kept = databases(pg) - before
    assert code == 0 and len(kept) == 1 and next(iter(kept)).startswith("shop_live_drtest_")
    pg.psql("postgres", f'DROP DATABASE "{next(iter(kept))}"')


def test_a_run_loads_the_dump_before_the_after_commands(dr, pg, tmp_path):
    shop(pg, rows=5)
    postgres_config(dr, pg)
    out = tmp_path / "probe.txt"
    dr.plan("shop", [{"config": "database", "database": pg.dsn("shop_live"), "after": [probe(pg, out)]}])
    code, events, err = dr.json("dr", "run", "shop")
    summary = summary_of(events)
    assert code == 0 and summary["verdict"] == "pass", (summary, err)
    assert out.read_text().split() == ["5", "shop_live"]
    assert pg.psql("shop_live", "SELECT item FROM orders WHERE id = 4").strip() == "item 4"


def test_a_dump_that_does_not_load_fails_the_rehearsal(dr, pg, tmp_path):
    from strongroom import BackupConfig
    source = tmp_path / "notadump"
    source.mkdir()
    (source / "broken.dump").write_bytes(b"PGDMP but not really")
    with dr.manager() as manager:
        manager.add_config(BackupConfig("database", [str(source)], target_path=str(dr.root / "repo")))
        manager.manual_backup("database", "full")
    dr.plan("shop", [{"config": "database", "database": pg.dsn("shop_live")}])
    before = databases(pg)
    code, events, _ = dr.json("dr", "test", "shop")
    summary = summary_of(events)
    assert code == 1 and summary["verdict"] == "fail"
    assert "pg_restore" in summary["steps"][0]["messages"][0]
    assert databases(pg) == before
