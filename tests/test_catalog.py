"""The SQLite catalog: every call, migrations, and two threads or processes sharing one job queue."""

from __future__ import annotations

import inspect
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from contextlib import closing
from pathlib import Path

import pytest

from strongroom.errors import StrongroomError
from strongroom.services import catalog as catalog_module
from strongroom.services.catalog import MIGRATIONS, Catalog, kit_on_record


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "catalog.db"


@pytest.fixture
def catalog(db_path: Path, clock: FakeClock):
    with Catalog(db_path, clock=clock) as cat:
        yield cat


def raw_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT version FROM schema_version").fetchone()[0]


def tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# -- the file -----------------------------------------------------------------

def test_wal_busy_timeout_and_foreign_keys_are_on(catalog: Catalog, db_path: Path) -> None:
    with catalog._read() as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    # WAL is a property of the file: a plain connection sees it too.
    with closing(sqlite3.connect(db_path)) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_new_file_and_directory_are_private(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "catalog.db"
    with Catalog(path) as cat:
        cat.put_config("c", {"x": 1})
        for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):
            assert stat.S_IMODE(os.stat(path.parent / name).st_mode) == 0o600, name
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STRONGROOM_CATALOG", str(tmp_path / "x.db"))
    assert Catalog.default_path() == str(tmp_path / "x.db")
    monkeypatch.delenv("STRONGROOM_CATALOG")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert Catalog.default_path() == str(tmp_path / "data" / "strongroom" / "catalog.db")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Catalog.default_path() == str(tmp_path / "home" / ".local" / "share" / "strongroom" / "catalog.db")


def test_closed_catalog_refuses_calls(db_path: Path) -> None:
    cat = Catalog(db_path)
    cat.close()
    cat.close()  # twice is fine
    with pytest.raises(StrongroomError, match="closed"):
        cat.list_configs()


def test_a_file_that_is_not_a_database_is_one_clear_error(db_path: Path) -> None:
    db_path.write_bytes(b"this is not sqlite at all, just some text" * 100)
    with pytest.raises(StrongroomError, match="cannot open the catalog"):
        Catalog(db_path)


# -- migrations ---------------------------------------------------------------

def test_a_new_file_gets_the_current_schema(catalog: Catalog, db_path: Path) -> None:
    assert catalog.schema_version() == len(MIGRATIONS) == raw_version(db_path)
    assert {"schema_version", "configs", "clients", "jobs", "sessions", "samples", "recovery_kits"} <= tables(db_path)


def test_an_empty_file_at_version_0_is_upgraded(db_path: Path) -> None:
    db_path.touch(mode=0o600)
    assert db_path.stat().st_size == 0
    with Catalog(db_path) as cat:
        cat.add_session("s1", None, {"files": 1})
        assert cat.get_session("s1")["status"] == "pending"
    assert raw_version(db_path) == len(MIGRATIONS)


def test_a_file_with_only_the_first_migration_is_upgraded_and_keeps_its_rows(db_path: Path) -> None:
    with sqlite3.connect(db_path, isolation_level=None) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (1)")
        MIGRATIONS[0](db)
        db.execute("INSERT INTO configs VALUES ('old', '{\"source_paths\": [\"/data\"]}', 10.0, 20.0)")
        db.execute("INSERT INTO jobs (config, kind, status, queued_at) VALUES ('old', 'full', 'succeeded', 5.0)")
    db.close()
    assert "sessions" not in tables(db_path)

    with Catalog(db_path) as cat:
        assert cat.schema_version() == len(MIGRATIONS)
        assert cat.get_config("old") == {"name": "old", "source_paths": ["/data"], "created": 10.0, "updated": 20.0}
        assert [j["status"] for j in cat.list_jobs("old")] == ["succeeded"]
        cat.add_sample("old", {"stored_size": 7})
        assert cat.list_samples("old")[0]["stored_size"] == 7
    assert raw_version(db_path) == len(MIGRATIONS)


def test_a_file_from_a_newer_strongroom_is_refused_and_left_alone(db_path: Path) -> None:
    Catalog(db_path).close()
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS) + 5,))
    db.close()
    before = db_path.read_bytes()
    with pytest.raises(StrongroomError, match=rf"schema version {len(MIGRATIONS) + 5}.*newer strongroom"):
        Catalog(db_path)
    assert raw_version(db_path) == len(MIGRATIONS) + 5
    assert db_path.read_bytes() == before


def test_a_migration_added_later_is_applied_once(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Catalog(db_path).close()
    calls = []

    def v_next(db: sqlite3.Connection) -> None:
        calls.append(1)
        db.execute("ALTER TABLE configs ADD COLUMN note TEXT")

    monkeypatch.setattr(catalog_module, "MIGRATIONS", [*MIGRATIONS, v_next])
    Catalog(db_path).close()
    Catalog(db_path).close()
    assert calls == [1]
    assert raw_version(db_path) == len(MIGRATIONS) + 1
    with sqlite3.connect(db_path) as db:
        assert "note" in [r[1] for r in db.execute("PRAGMA table_info(configs)")]
    db.close()


def test_a_failing_migration_rolls_back_whole(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Catalog(db_path).close()

    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x)")
        db.execute("INSERT INTO no_such_table VALUES (1)")

    monkeypatch.setattr(catalog_module, "MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(StrongroomError, match=f"from schema version {len(MIGRATIONS)}"):
        Catalog(db_path)
    assert raw_version(db_path) == len(MIGRATIONS)
    assert "half_done" not in tables(db_path)


# -- configs and clients --------------------------------------------------------

def test_configs(catalog: Catalog, clock: FakeClock) -> None:
    assert catalog.get_config("b") is None
    assert catalog.list_configs() == []
    catalog.put_config("b", {"source_paths": ["/data"], "encrypt": True})
    clock.advance(5)
    catalog.put_config("a", {"source_paths": ["/a"]})
    clock.advance(5)
    catalog.put_config("b", {"source_paths": ["/other"], "encrypt": False})
    b = catalog.get_config("b")
    assert b == {"name": "b", "source_paths": ["/other"], "encrypt": False,
                 "created": clock.now - 10, "updated": clock.now}
    assert [c["name"] for c in catalog.list_configs()] == ["a", "b"]
    assert catalog.delete_config("a") is True
    assert catalog.delete_config("a") is False
    assert [c["name"] for c in catalog.list_configs()] == ["b"]


def test_clients(catalog: Catalog, clock: FakeClock) -> None:
    assert catalog.get_client("cloud") is None
    catalog.put_client("cloud", {"url": "https://dav.example.com/", "username": "u", "secret_ref": "webdav:cloud:1"})
    catalog.put_client("archive", {"url": "https://nas/"})
    clock.advance(3)
    catalog.put_client("cloud", {"url": "https://dav2.example.com/", "username": "u", "secret_ref": "webdav:cloud:1"})
    cloud = catalog.get_client("cloud")
    assert cloud["id"] == "cloud" and cloud["url"] == "https://dav2.example.com/"
    assert cloud["updated"] - cloud["created"] == 3
    assert [c["id"] for c in catalog.list_clients()] == ["archive", "cloud"]
    assert catalog.delete_client("cloud") is True
    assert catalog.delete_client("cloud") is False
    assert catalog.get_client("cloud") is None


# -- jobs -------------------------------------------------------------------------

def test_job_lifecycle(catalog: Catalog, clock: FakeClock) -> None:
    job_id = catalog.add_job("photos", "full", 5, 3)
    job = catalog.get_job(job_id)
    assert job == {"id": job_id, "config": "photos", "kind": "full", "priority": 5, "status": "queued",
                   "attempts": 0, "max_attempts": 3, "queued_at": clock.now, "started_at": None,
                   "finished_at": None, "next_try_at": None, "error": None, "snapshot_id": None, "stats": None}
    assert catalog.claim_job(job_id) is True
    assert catalog.claim_job(job_id) is False
    assert catalog.update_job(job_id, attempts=1, started_at=clock.now + 1) is True
    assert catalog.update_job(job_id, status="succeeded", finished_at=clock.now + 9, snapshot_id="ab12",
                              stats={"files": 3, "bytes_read": 1024}, error=None) is True
    job = catalog.get_job(job_id)
    assert (job["status"], job["attempts"], job["started_at"], job["finished_at"], job["snapshot_id"]) == \
        ("succeeded", 1, clock.now + 1, clock.now + 9, "ab12")
    assert job["stats"] == {"files": 3, "bytes_read": 1024}
    assert catalog.get_job(9999) is None
    assert catalog.update_job(9999, status="failed") is False


def test_update_job_refuses_unknown_fields_and_statuses(catalog: Catalog) -> None:
    job_id = catalog.add_job("c", "full", 0, 1)
    with pytest.raises(TypeError, match="bogus"):
        catalog.update_job(job_id, bogus=1)
    with pytest.raises(ValueError, match="exploded"):
        catalog.update_job(job_id, status="exploded")
    assert catalog.get_job(job_id)["status"] == "queued"


def test_list_jobs_newest_first_with_filters(catalog: Catalog, clock: FakeClock) -> None:
    ids = []
    for i in range(6):
        ids.append(catalog.add_job("a" if i % 2 == 0 else "b", "incremental", 0, 1))
        clock.advance(1)
    catalog.update_job(ids[0], status="failed", error="unreachable")
    catalog.update_job(ids[2], status="succeeded")
    assert [j["id"] for j in catalog.list_jobs()] == ids[::-1]
    assert [j["id"] for j in catalog.list_jobs(config="a")] == [ids[4], ids[2], ids[0]]
    assert [j["id"] for j in catalog.list_jobs(status="queued")] == [ids[5], ids[4], ids[3], ids[1]]
    assert [j["id"] for j in catalog.list_jobs(config="a", status="failed")] == [ids[0]]
    assert catalog.list_jobs(config="a", status="failed")[0]["error"] == "unreachable"
    assert [j["id"] for j in catalog.list_jobs(limit=2)] == [ids[5], ids[4]]
    assert len(catalog.list_jobs(limit=None)) == 6


def test_next_queued_is_highest_priority_then_oldest_and_waits_for_next_try_at(
        catalog: Catalog, clock: FakeClock) -> None:
    assert catalog.next_queued(clock.now) is None
    low_old = catalog.add_job("c", "full", 1, 1)
    clock.advance(1)
    high_new = catalog.add_job("c", "full", 9, 1)
    clock.advance(1)
    high_newer = catalog.add_job("c", "full", 9, 1)
    clock.advance(1)
    low_new = catalog.add_job("c", "full", 1, 1)
    now = clock.now

    order = []
    while (job := catalog.next_queued(now)) is not None:
        assert catalog.claim_job(job["id"])
        order.append(job["id"])
    assert order == [high_new, high_newer, low_old, low_new]

    # A job waiting for its retry is skipped until its time comes.
    catalog.update_job(high_new, status="queued", next_try_at=now + 60)
    catalog.update_job(low_old, status="queued")
    assert catalog.next_queued(now)["id"] == low_old
    assert catalog.next_queued(now + 60)["id"] == high_new
    catalog.claim_job(low_old)
    assert catalog.next_queued(now + 59.9) is None
    assert catalog.next_queued(now + 61)["id"] == high_new
    catalog.update_job(high_new, next_try_at=None)
    assert catalog.next_queued(now)["id"] == high_new


def test_claim_next_claims_counts_the_attempt_and_names_the_owner_at_once(catalog: Catalog,
                                                                          clock: FakeClock) -> None:
    a = catalog.add_job("c", "full", 0, 1)
    b = catalog.add_job("c", "full", 2, 1)
    catalog.update_job(b, error="the last attempt failed")
    owner = {"owner": "host:42", "owner_started": 7}
    job = catalog.claim_next(clock.now + 5, owner)
    assert job == {**catalog.get_job(b), "id": b}
    assert (job["status"], job["attempts"], job["started_at"], job["error"], job["stats"]) == \
        ("running", 1, clock.now + 5, None, owner)
    job = catalog.claim_next(clock.now, owner)
    assert (job["id"], job["status"], job["attempts"]) == (a, "running", 1)
    assert catalog.claim_next(clock.now, owner) is None


def test_requeue_job_only_puts_back_the_claim_it_saw(catalog: Catalog, clock: FakeClock) -> None:
    job_id = catalog.add_job("c", "full", 0, 3)
    seen = catalog.claim_next(clock.now, {"owner": "host:1"})
    assert catalog.requeue_job(job_id, seen["attempts"], "requeued") is True
    assert catalog.get_job(job_id)["status"] == "queued" and catalog.get_job(job_id)["stats"] is None
    # Claimed again by someone else: the stale sighting must not put it back.
    catalog.claim_next(clock.now, {"owner": "host:2"})
    assert catalog.requeue_job(job_id, seen["attempts"], "requeued") is False
    assert catalog.get_job(job_id)["status"] == "running"
    assert catalog.get_job(job_id)["stats"] == {"owner": "host:2"}


def test_eight_threads_adding_and_claiming_never_claim_a_job_twice(catalog: Catalog) -> None:
    per_thread, threads_count = 40, 8
    claimed: list[list[int]] = [[] for _ in range(threads_count)]
    adders_done = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(per_thread):
                catalog.add_job(f"c{n}", "full", i % 3, 1)
                if i % 4 == 0:
                    job = catalog.next_queued(1e12)
                    if job and catalog.claim_job(job["id"]):
                        claimed[n].append(job["id"])
            adders_done.wait()
            while (job := catalog.next_queued(1e12)) is not None:
                if catalog.claim_job(job["id"]):
                    claimed[n].append(job["id"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    everything = [job_id for ids in claimed for job_id in ids]
    assert len(everything) == len(set(everything)) == per_thread * threads_count
    assert sum(1 for ids in claimed if ids) > 1
    assert catalog.list_jobs(status="queued") == []
    assert len(catalog.list_jobs(status="running", limit=None)) == per_thread * threads_count


def claim_all(cat: Catalog) -> tuple[list[int], int]:
    """Claim queued jobs until none is left: (ids won, claims lost to someone else).

    Both processes run this. The pause between picking a job and claiming it
    widens the window in which both have picked the same one, so that
    claim_job, not luck, decides who runs it.
    """
    import random
    import time
    won, lost = [], 0
    while (job := cat.next_queued(1e12)) is not None:
        time.sleep(random.random() * 0.002)
        if cat.claim_job(job["id"]):
            won.append(job["id"])
        else:
            lost += 1
    return won, lost


CLAIMER = "from __future__ import annotations\n" + inspect.getsource(claim_all) + textwrap.dedent("""
    import sys
    from strongroom.services.catalog import Catalog
    cat = Catalog(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    won, lost = claim_all(cat)
    print(lost, " ".join(map(str, won)), flush=True)
""")


def test_two_processes_claiming_at_once_never_claim_a_job_twice(db_path: Path) -> None:
    total = 200
    with Catalog(db_path) as cat:
        for i in range(total):
            cat.add_job("c", "full", i % 5, 1)
        other = subprocess.Popen([sys.executable, "-c", CLAIMER, str(db_path)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout.readline().strip() == "ready"
            other.stdin.write("go\n")
            other.stdin.flush()
            mine, lost = claim_all(cat)
            out, _ = other.communicate(timeout=60)
        finally:
            if other.poll() is None:
                other.kill()
        assert other.returncode == 0
        their_lost, *theirs = [int(x) for x in out.split()]
        assert not set(mine) & set(theirs)
        assert sorted(mine + theirs) == sorted(j["id"] for j in cat.list_jobs(limit=None))
        assert len(mine + theirs) == total
        assert mine and theirs, "both processes should have won some claims"
        assert lost + their_lost > 0, "the two processes should have contended for some jobs"


def test_a_forked_child_uses_its_own_connection(catalog: Catalog) -> None:
    catalog.put_config("before", {})
    pid = os.fork()
    if pid == 0:  # the child: exit status tells the parent what happened
        try:
            catalog.put_config("child", {"pid": os.getpid()})
            os._exit(0 if catalog.get_config("before") is not None else 2)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert catalog.get_config("child") is not None
    catalog.put_config("after", {})
    assert [c["name"] for c in catalog.list_configs()] == ["after", "before", "child"]


# -- recovery sessions ------------------------------------------------------------

def test_sessions(catalog: Catalog, clock: FakeClock) -> None:
    assert catalog.get_session("nope") is None
    catalog.add_session("s1", "photos", {"mode": "full", "files": 10, "bytes": 1000})
    clock.advance(1)
    catalog.add_session("s2", None, {"mode": "selective", "include": ["*.jpg"]})
    s1 = catalog.get_session("s1")
    assert s1 == {"id": "s1", "config": "photos", "status": "pending",
                  "plan": {"mode": "full", "files": 10, "bytes": 1000}, "progress": None, "error": None,
                  "created": clock.now - 1, "updated": clock.now - 1}

    clock.advance(1)
    assert catalog.update_session("s1", status="running", progress={"processed_files": 3, "total_files": 10})
    clock.advance(1)
    assert catalog.update_session("s1", progress={"processed_files": 7, "total_files": 10})
    s1 = catalog.get_session("s1")
    assert (s1["status"], s1["progress"], s1["updated"]) == ("running", {"processed_files": 7, "total_files": 10},
                                                             clock.now)
    assert catalog.update_session("s1", status="cancelled", error="cancelled by the user")
    s1 = catalog.get_session("s1")
    assert (s1["status"], s1["error"], s1["progress"]["processed_files"]) == ("cancelled", "cancelled by the user", 7)
    assert catalog.update_session("nope", status="running") is False

    assert [s["id"] for s in catalog.list_sessions()] == ["s2", "s1"]
    assert [s["id"] for s in catalog.list_sessions(limit=1)] == ["s2"]
    with pytest.raises(sqlite3.IntegrityError):
        catalog.add_session("s1", None, {})


# -- storage samples ----------------------------------------------------------------

def test_samples(catalog: Catalog, clock: FakeClock) -> None:
    assert catalog.list_samples() == []
    t0 = clock.now
    catalog.add_sample("a", {"restore_size": 100, "stored_size": 40, "unique_size": 30, "points": 1,
                             "packs": 2, "requests": 9})
    clock.advance(10)
    catalog.add_sample("b", {"restore_size": 5, "stored_size": 5})
    clock.advance(10)
    catalog.add_sample("a", {"restore_size": 200, "stored_size": 60})
    every = catalog.list_samples()
    assert [(s["config"], s["time"]) for s in every] == [("a", t0), ("b", t0 + 10), ("a", t0 + 20)]
    assert every[0] == {"config": "a", "time": t0, "restore_size": 100, "stored_size": 40, "unique_size": 30,
                        "points": 1, "packs": 2, "requests": 9}
    assert [s["restore_size"] for s in catalog.list_samples("a")] == [100, 200]
    assert [s["config"] for s in catalog.list_samples(since=t0 + 10)] == ["b", "a"]
    assert [s["time"] for s in catalog.list_samples("a", since=t0 + 1)] == [t0 + 20]


def test_recovery_kits(catalog: Catalog, clock: FakeClock, db_path: Path) -> None:
    assert catalog.kit_export("repo-a") is None and not catalog.kit_on_record("repo-a", "key-1")
    catalog.record_kit_export("repo-a", "key-1", "docs")
    clock.advance(60)
    catalog.record_kit_export("repo-b", "key-9", "photos")
    assert catalog.kit_export("repo-a") == {"repository_id": "repo-a", "key_id": "key-1", "config": "docs",
                                            "exported_at": clock.now - 60}
    assert catalog.kit_on_record("repo-a", "key-1") and not catalog.kit_on_record("repo-a", "key-2")
    # A second export (another configuration, a new key) replaces the record.
    catalog.record_kit_export("repo-a", "key-2", "docs-too")
    latest = catalog.kit_export("repo-a")
    assert latest["config"] == "docs-too" and latest["exported_at"] == clock.now
    assert catalog.kit_on_record("repo-a", "key-2") and not catalog.kit_on_record("repo-a", "key-1")
    assert kit_on_record("repo-b", "key-9", str(db_path)) and not kit_on_record("repo-c", "key-9", str(db_path))


def test_looking_for_a_kit_makes_no_catalog(tmp_path: Path) -> None:
    path = tmp_path / "none" / "catalog.db"
    assert not kit_on_record("repo-a", "key-1", str(path))
    assert not path.parent.exists()


def test_values_survive_reopening(db_path: Path) -> None:
    with Catalog(db_path) as cat:
        cat.put_config("c", {"keep": {"daily": 30}})
        job_id = cat.add_job("c", "full", 1, 2)
        cat.add_session("s", "c", {"files": 1})
        cat.add_sample("c", {"points": 1})
    with Catalog(db_path) as cat:
        assert cat.get_config("c")["keep"] == {"daily": 30}
        assert cat.get_job(job_id)["max_attempts"] == 2
        assert cat.get_session("s")["plan"] == {"files": 1}
        assert cat.list_samples()[0]["points"] == 1
