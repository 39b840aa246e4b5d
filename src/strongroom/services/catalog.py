"""The local catalog: one SQLite file of configs, clients, jobs, recovery sessions, storage
samples, the recovery kits exported, disaster-recovery plans and runs, the
schedule slots claimed, and notification channels with the alert state of
each configuration.

The catalog is history and cache (the repository describes itself), but it
is also where two processes meet: a scheduler and a `strongroom run` may
share one job queue. So the file is in WAL mode (readers never block the
writer), every connection waits up to ten seconds for a lock instead of
failing, and every write is a short `BEGIN IMMEDIATE` transaction: taking
the write lock up front means a transaction never has to upgrade a read
lock, which in WAL mode fails at once instead of waiting.

Times are unix seconds as floats, everywhere. JSON documents are stored as
TEXT and decoded on the way out.

The schema is versioned: `schema_version` holds one number, the count of
entries of `MIGRATIONS` applied. Opening an older file applies the missing
ones in order, each in its own transaction together with the new version
number; a file written by a newer strongroom is refused, untouched.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from strongroom.errors import StrongroomError
from strongroom.paths import data_dir
from strongroom.services.urls import has_password, redact_password

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
_JOB_FIELDS = {"kind", "status", "attempts", "started_at", "finished_at", "error", "snapshot_id", "stats",
               "next_try_at", "priority", "max_attempts"}
BUSY_TIMEOUT = 10.0  # seconds


def _v1_configs_clients_jobs(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE configs (name TEXT PRIMARY KEY, doc TEXT NOT NULL,"
               " created REAL NOT NULL, updated REAL NOT NULL)")
    db.execute("CREATE TABLE clients (id TEXT PRIMARY KEY, doc TEXT NOT NULL,"
               " created REAL NOT NULL, updated REAL NOT NULL)")
    # No foreign key to configs: the history of a removed config stays readable.
    db.execute("""CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        config TEXT NOT NULL,
        kind TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('queued','running','succeeded','failed','cancelled')),
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 1,
        queued_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        next_try_at REAL,
        error TEXT,
        snapshot_id TEXT,
        stats TEXT)""")
    db.execute("CREATE INDEX jobs_queue ON jobs (status, priority DESC, queued_at, id)")
    db.execute("CREATE INDEX jobs_config ON jobs (config, id)")


def _v2_sessions_samples(db: sqlite3.Connection) -> None:
    db.execute("""CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        config TEXT,
        status TEXT NOT NULL,
        plan TEXT NOT NULL,
        progress TEXT,
        error TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL)""")
    db.execute("CREATE INDEX sessions_created ON sessions (created)")
    db.execute("CREATE TABLE samples (id INTEGER PRIMARY KEY AUTOINCREMENT, config TEXT NOT NULL,"
               " time REAL NOT NULL, data TEXT NOT NULL)")
    db.execute("CREATE INDEX samples_config_time ON samples (config, time)")


def _v3_mask_passwords_in_urls(db: sqlite3.Connection) -> None:
    # Earlier versions stored a WebDAV URL given as https://user:password@host/
    # as it was (and printed it back); none was ever used to log in. Those
    # passwords become *** (secure_delete, set on every connection, zeroes
    # the bytes they leave behind).
    for table, key, field in (("clients", "id", "url"), ("configs", "name", "target_path")):
        for row in db.execute(f"SELECT {key}, doc FROM {table}").fetchall():
            doc = json.loads(row[1])
            value = doc.get(field)
            if isinstance(value, str) and has_password(value):
                doc[field] = redact_password(value)
                db.execute(f"UPDATE {table} SET doc = ? WHERE {key} = ?", (_dumps(doc), row[0]))


def _v4_recovery_kits(db: sqlite3.Connection) -> None:
    # Keyed by the repository's id, not its URL: the same repository reached
    # as a path, local:PATH or through another configuration is one record.
    # key_id is the key the kit's password opens: a kit for a key removed
    # since opens nothing. IF NOT EXISTS: a file whose version number was set
    # back by hand (tests do, to stand for an older file) keeps its table.
    db.execute("CREATE TABLE IF NOT EXISTS recovery_kits (repository_id TEXT PRIMARY KEY, key_id TEXT NOT NULL,"
               " config TEXT NOT NULL, exported_at REAL NOT NULL)")


def _v5_dr_plans_runs(db: sqlite3.Connection) -> None:
    # A plan's document is its whole definition; `updated` is when this
    # version was made (the newest of the catalog's and the repositories'
    # copies wins). A run is the evidence of one execution or rehearsal,
    # kept after its plan is deleted.
    db.execute("CREATE TABLE IF NOT EXISTS dr_plans (name TEXT PRIMARY KEY, doc TEXT NOT NULL,"
               " version TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS dr_runs (id TEXT PRIMARY KEY, plan TEXT NOT NULL, mode TEXT NOT NULL,"
               " verdict TEXT NOT NULL, started REAL NOT NULL, finished REAL NOT NULL, doc TEXT NOT NULL)")
    db.execute("CREATE INDEX IF NOT EXISTS dr_runs_plan ON dr_runs (plan, started)")


def _v6_schedule_slots(db: sqlite3.Connection) -> None:
    # One row per slot of a schedule that was claimed to run: the primary key
    # is what makes a slot run at most once across processes and restarts.
    # `slot` is unix seconds of the slot's time on the schedule's grid.
    db.execute("CREATE TABLE IF NOT EXISTS schedule_slots (config TEXT NOT NULL, schedule TEXT NOT NULL,"
               " slot REAL NOT NULL, claimed_at REAL NOT NULL, owner TEXT NOT NULL, job_id INTEGER,"
               " outcome TEXT, PRIMARY KEY (config, schedule, slot))")


def _v7_notify_channels_alerts(db: sqlite3.Connection) -> None:
    # A channel's settings hold no secret: its password, HMAC key or
    # token-bearing URL is in the secrets store, named in secret_refs.
    # configs is a JSON list of configuration names, empty for all.
    db.execute("CREATE TABLE IF NOT EXISTS notify_channels (name TEXT PRIMARY KEY, kind TEXT NOT NULL,"
               " settings TEXT NOT NULL, secret_refs TEXT NOT NULL, min_severity TEXT NOT NULL,"
               " configs TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL)")
    # What was last said about one condition of one configuration (notify/policy.py).
    db.execute("CREATE TABLE IF NOT EXISTS alert_state (config TEXT NOT NULL, condition TEXT NOT NULL,"
               " active INTEGER NOT NULL, since REAL, last_sent REAL, repeats INTEGER NOT NULL,"
               " severity TEXT NOT NULL, PRIMARY KEY (config, condition))")


def _v8_console(db: sqlite3.Connection) -> None:
    # The web console's password (an Argon2id hash, never the password) and
    # its API tokens (a SHA-256 of each: a token is 256 random bits, so a
    # slow hash would add nothing but cost on every request).
    db.execute("CREATE TABLE IF NOT EXISTS console_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
               " updated REAL NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS console_tokens (id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE,"
               " name TEXT NOT NULL, created REAL NOT NULL, last_used REAL)")


# Append only: a released entry never changes, or files made with it would
# be upgraded differently from new ones.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v1_configs_clients_jobs,
    _v2_sessions_samples,
    _v3_mask_passwords_in_urls,
    _v4_recovery_kits,
    _v5_dr_plans_runs,
    _v6_schedule_slots,
    _v7_notify_channels_alerts,
    _v8_console,
]


def _seconds(moment: float | datetime) -> float:
    return moment.timestamp() if isinstance(moment, datetime) else float(moment)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _run_doc(text: str) -> Any:
    """A recorded run's document; one that is not JSON (a damaged row) stays its text, so the
    reader of runs (dr/run_document.py) says what is wrong with it rather than the catalog failing."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


class Catalog:
    """The SQLite catalog. Every method is one short transaction and is thread-safe.

    One connection, guarded by a lock, serves all threads of a process
    (`check_same_thread=False`). SQLite admits one writer at a time anyway,
    and catalog transactions are a few rows each, so per-thread connections
    would buy nothing but connections left open by worker threads that
    `close()` cannot reach. Another process gets its own connection and is
    kept in step by SQLite's file locks and the busy timeout. After a fork
    the child opens a connection of its own (SQLite connections must not
    cross a fork).
    """

    def __init__(self, path: str | os.PathLike, clock: Callable[[], float] = time.time) -> None:
        self.path = os.fspath(path)
        self._clock = clock
        self._closed = False
        self._prepare_file()
        self._open()

    @staticmethod
    def default_path() -> str:
        """`$STRONGROOM_CATALOG`, else `$XDG_DATA_HOME/strongroom/catalog.db` (~/.local/share by default)."""
        return os.environ.get("STRONGROOM_CATALOG") or os.path.join(data_dir(), "catalog.db")

    # -- connection ---------------------------------------------------------

    def _prepare_file(self) -> None:
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700, exist_ok=True)
            os.chmod(parent, 0o700)  # makedirs' mode is filtered by the umask
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        # SQLite gives the -wal and -shm files the mode of the database file.
        os.fchmod(fd, 0o600)
        os.close(fd)

    def _open(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.RLock()
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                 check_same_thread=False)
        except sqlite3.Error as exc:
            raise StrongroomError(f"cannot open the catalog {self.path}: {exc}") from exc
        db.row_factory = sqlite3.Row
        try:
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StrongroomError(f"the catalog {self.path} cannot use WAL mode (got {mode!r})")
            db.execute("PRAGMA foreign_keys = ON")
            # What a write replaces or deletes is zeroed, not left in free
            # space where reading the file's bytes would find it.
            db.execute("PRAGMA secure_delete = ON")
            self._db = db
            self._migrate()
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StrongroomError(f"cannot open the catalog {self.path}: {exc}") from exc
        except BaseException:
            db.close()
            raise

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise StrongroomError(f"the catalog {self.path} is closed")
        if os.getpid() != self._pid:
            # Checked before taking the lock: a lock inherited from the
            # parent may be held by a thread that does not exist here.
            self._open()
        with self._lock:
            yield self._db

    def close(self) -> None:
        with self._lock:
            if not self._closed and os.getpid() == self._pid:
                self._db.close()
            self._closed = True

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({self.path!r})"

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._locked() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # A single SELECT in autocommit mode is its own consistent snapshot.
        with self._locked() as db:
            yield db

    # -- schema -------------------------------------------------------------

    def _migrate(self) -> None:
        db = self._db
        upgraded = False
        while True:
            db.execute("BEGIN IMMEDIATE")
            try:
                # Read under the write lock: a second process opening the
                # same new file at the same time must not migrate it twice.
                version = self._read_version(db)
                if version > len(MIGRATIONS):
                    raise StrongroomError(
                        f"the catalog {self.path} has schema version {version}, written by a newer "
                        f"strongroom; this one understands up to version {len(MIGRATIONS)}. "
                        f"Upgrade strongroom, or point it at another catalog")
                if version == len(MIGRATIONS):
                    db.execute("COMMIT")
                    if upgraded:
                        # The pages as they were before the upgrade stay in the WAL
                        # until a checkpoint: write them over and empty it. Another
                        # process reading at this moment may keep it from finishing;
                        # the next checkpoint then does.
                        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    return
                try:
                    MIGRATIONS[version](db)
                except sqlite3.Error as exc:
                    raise StrongroomError(f"cannot upgrade the catalog {self.path} from schema version "
                                          f"{version}: {exc}") from exc
                db.execute("UPDATE schema_version SET version = ?", (version + 1,))
                db.execute("COMMIT")
                upgraded = True
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @staticmethod
    def _read_version(db: sqlite3.Connection) -> int:
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
                            ).fetchone()
        if not exists:
            db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            db.execute("INSERT INTO schema_version (version) VALUES (0)")
            return 0
        row = db.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            db.execute("INSERT INTO schema_version (version) VALUES (0)")
            return 0
        return int(row[0])

    def schema_version(self) -> int:
        with self._read() as db:
            return int(db.execute("SELECT version FROM schema_version").fetchone()[0])

    # -- configs and WebDAV clients -----------------------------------------
    # Both return the stored document with the key ("name" or "id"),
    # "created" and "updated" (unix floats) merged in; those keys win over
    # keys of the same name in the document.

    def _put_doc(self, table: str, key: str, value: str, doc: dict) -> None:
        if not isinstance(doc, dict):
            raise TypeError(f"a {table} document must be a dict, not {type(doc).__name__}")
        now = self._clock()
        with self._write() as db:
            db.execute(f"INSERT INTO {table} ({key}, doc, created, updated) VALUES (?, ?, ?, ?)"
                       f" ON CONFLICT ({key}) DO UPDATE SET doc = excluded.doc, updated = excluded.updated",
                       (value, _dumps(doc), now, now))

    @staticmethod
    def _doc(row: sqlite3.Row, key: str) -> dict:
        return {**json.loads(row["doc"]), key: row[key], "created": row["created"], "updated": row["updated"]}

    def _get_doc(self, table: str, key: str, value: str) -> dict | None:
        with self._read() as db:
            row = db.execute(f"SELECT * FROM {table} WHERE {key} = ?", (value,)).fetchone()
        return None if row is None else self._doc(row, key)

    def _list_docs(self, table: str, key: str) -> list[dict]:
        with self._read() as db:
            rows = db.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
        return [self._doc(row, key) for row in rows]

    def _delete_doc(self, table: str, key: str, value: str) -> bool:
        with self._write() as db:
            return db.execute(f"DELETE FROM {table} WHERE {key} = ?", (value,)).rowcount > 0

    def put_config(self, name: str, doc: dict) -> None:
        """Insert or replace; a replaced config keeps its `created` time."""
        self._put_doc("configs", "name", name, doc)

    def get_config(self, name: str) -> dict | None:
        return self._get_doc("configs", "name", name)

    def list_configs(self) -> list[dict]:
        """All configs, sorted by name."""
        return self._list_docs("configs", "name")

    def delete_config(self, name: str) -> bool:
        """True if a config was removed. Its jobs, sessions and samples stay as
        history; its queued jobs are cancelled in the same transaction (a job
        already running finishes). Run later, they would fail for want of the
        configuration, and alert as failed backups."""
        with self._write() as db:
            if db.execute("DELETE FROM configs WHERE name = ?", (name,)).rowcount == 0:
                return False
            db.execute("UPDATE jobs SET status = 'cancelled', error = ?, finished_at = ?"
                       " WHERE config = ? AND status = 'queued'",
                       ("cancelled: its configuration was removed", self._clock(), name))
            return True

    def put_client(self, client_id: str, doc: dict) -> None:
        """Insert or replace a WebDAV client; the doc holds a secret reference, never a password."""
        self._put_doc("clients", "id", client_id, doc)

    def get_client(self, client_id: str) -> dict | None:
        return self._get_doc("clients", "id", client_id)

    def list_clients(self) -> list[dict]:
        """All clients, sorted by id."""
        return self._list_docs("clients", "id")

    def delete_client(self, client_id: str) -> bool:
        return self._delete_doc("clients", "id", client_id)

    # -- jobs ---------------------------------------------------------------
    # A job is a dict of its columns: id, config, kind, priority, status,
    # attempts, max_attempts, queued_at, started_at, finished_at,
    # next_try_at (unix floats or None), error, snapshot_id, and stats
    # decoded from JSON (a dict or None). `kind` is the kind asked for until
    # the job succeeds, then the kind of the point it made. While a job runs,
    # its stats name the owner (see `claim_next`).

    @staticmethod
    def _job(row: sqlite3.Row) -> dict:
        job = dict(row)
        job["stats"] = _loads(job["stats"])
        return job

    def add_job(self, config: str, kind: str, priority: int, max_attempts: int) -> int:
        """Queue a job (status "queued", no attempts yet) and return its id."""
        with self._write() as db:
            cursor = db.execute("INSERT INTO jobs (config, kind, priority, status, attempts, max_attempts,"
                                " queued_at) VALUES (?, ?, ?, 'queued', 0, ?, ?)",
                                (config, kind, int(priority), int(max_attempts), self._clock()))
            return int(cursor.lastrowid)

    def add_job_once(self, config: str, kind: str, priority: int, max_attempts: int) -> tuple[int, bool]:
        """Queue a job unless one of the same configuration and kind waits to
        start already (queued, never tried): (its id, False); else (the new
        job's id, True). One transaction, so two callers at once queue one job."""
        with self._write() as db:
            row = db.execute("SELECT id FROM jobs WHERE config = ? AND kind = ? AND status = 'queued'"
                             " AND attempts = 0 ORDER BY id LIMIT 1", (config, kind)).fetchone()
            if row is not None:
                return int(row["id"]), False
            cursor = db.execute("INSERT INTO jobs (config, kind, priority, status, attempts, max_attempts,"
                                " queued_at) VALUES (?, ?, ?, 'queued', 0, ?, ?)",
                                (config, kind, int(priority), int(max_attempts), self._clock()))
            return int(cursor.lastrowid), True

    def update_job(self, job_id: int, **fields: Any) -> bool:
        """Set the given columns (see `_JOB_FIELDS`); `stats` is a dict. True if the job exists."""
        unknown = set(fields) - _JOB_FIELDS
        if unknown:
            raise TypeError(f"update_job() got unknown fields: {', '.join(sorted(unknown))}")
        if "status" in fields and fields["status"] not in JOB_STATUSES:
            raise ValueError(f"unknown job status {fields['status']!r}")
        if "stats" in fields and fields["stats"] is not None:
            fields["stats"] = _dumps(fields["stats"])
        if not fields:
            return self.get_job(job_id) is not None
        names = sorted(fields)
        assignments = ", ".join(f"{name} = ?" for name in names)
        with self._write() as db:
            cursor = db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?",
                                [fields[name] for name in names] + [job_id])
            return cursor.rowcount > 0

    def get_job(self, job_id: int) -> dict | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._job(row)

    def configs_of_snapshot(self, prefix: str) -> list[str]:
        """The configurations whose jobs made a snapshot whose id starts with `prefix`."""
        with self._read() as db:
            rows = db.execute("SELECT DISTINCT config FROM jobs WHERE snapshot_id IS NOT NULL"
                              " AND substr(snapshot_id, 1, ?) = ?", (len(prefix), prefix)).fetchall()
        return [row["config"] for row in rows]

    def list_jobs(self, config: str | None = None, status: str | None = None, limit: int | None = 100,
                  kinds: tuple[str, ...] | None = None) -> list[dict]:
        """Jobs, newest first, optionally of one config and/or one status and/or
        one of `kinds` (e.g. jobs.BACKUP_KINDS); `limit=None` for all."""
        where, args = [], []
        if config is not None:
            where.append("config = ?")
            args.append(config)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if kinds is not None:
            where.append(f"kind IN ({', '.join('?' * len(kinds))})" if kinds else "0")
            args.extend(kinds)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(-1 if limit is None else int(limit))
        with self._read() as db:
            return [self._job(row) for row in db.execute(sql, args).fetchall()]

    def last_job(self, config: str, kinds: tuple[str, ...], statuses: tuple[str, ...]) -> dict | None:
        """The newest job of `config` whose kind is one of `kinds` and status one of `statuses`, or None."""
        if not kinds or not statuses:
            return None
        sql = (f"SELECT * FROM jobs WHERE config = ? AND kind IN ({', '.join('?' * len(kinds))})"
               f" AND status IN ({', '.join('?' * len(statuses))}) ORDER BY id DESC LIMIT 1")
        with self._read() as db:
            row = db.execute(sql, (config, *kinds, *statuses)).fetchone()
        return None if row is None else self._job(row)

    def queue_depth(self) -> dict[int, int]:
        """How many jobs are queued (due or waiting for a retry), by priority."""
        with self._read() as db:
            rows = db.execute("SELECT priority, COUNT(*) FROM jobs WHERE status = 'queued' GROUP BY priority").fetchall()
        return {int(row[0]): int(row[1]) for row in rows}

    _NEXT_QUEUED = ("SELECT * FROM jobs WHERE status = 'queued' AND (next_try_at IS NULL OR next_try_at <= ?)"
                    " ORDER BY priority DESC, queued_at, id LIMIT 1")

    def next_queued(self, now: float) -> dict | None:
        """The queued job to run next: highest priority, then oldest, among those due at `now`.

        Only a hint: another thread or process may claim it first. The job
        queue uses `claim_next`, which picks and claims in one transaction.
        """
        with self._read() as db:
            row = db.execute(self._NEXT_QUEUED, (now,)).fetchone()
        return None if row is None else self._job(row)

    def claim_job(self, job_id: int, owner: dict | None = None) -> bool:
        """Atomically move a job from queued to running; False if it was not queued (someone else won).

        With `owner`, the claim also counts the attempt, stamps `started_at`
        and keeps `owner` as the job's stats, all in the same transaction
        (see `claim_next`); without, only the status changes.
        """
        with self._write() as db:
            if owner is None:
                cursor = db.execute("UPDATE jobs SET status = 'running' WHERE id = ? AND status = 'queued'",
                                    (job_id,))
            else:
                cursor = db.execute(self._CLAIM + " AND status = 'queued'",
                                    (self._clock(), _dumps(owner), job_id))
            return cursor.rowcount == 1

    _CLAIM = ("UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, error = NULL,"
              " finished_at = NULL, next_try_at = NULL, stats = ? WHERE id = ?")

    def claim_next(self, now: float, owner: dict) -> dict | None:
        """Pick the next queued job (as `next_queued`) and claim it for `owner`, in one transaction.

        The claimed job comes back as it now is: status "running", one more
        attempt, `started_at` = `now` and `stats` = `owner` (who runs it, so
        that a job whose process died can be found and put back). A process
        killed before the commit leaves the job queued; after it, running
        with its owner: never running without one. None if no job is due.
        """
        with self._write() as db:
            row = db.execute(self._NEXT_QUEUED, (now,)).fetchone()
            if row is None:
                return None
            db.execute(self._CLAIM, (now, _dumps(owner), row["id"]))
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()
        return self._job(row)

    def finish_abandoned_job(self, job_id: int, attempts: int, error: str, finished_at: float) -> bool:
        """Mark succeeded a running job whose point is made (its snapshot_id is
        set) but whose process ended before it finished (retention, accounting),
        under the same condition as `requeue_job`. True if it was marked."""
        with self._write() as db:
            cursor = db.execute("UPDATE jobs SET status = 'succeeded', error = ?, finished_at = ?, stats = NULL"
                                " WHERE id = ? AND status = 'running' AND attempts = ? AND snapshot_id IS NOT NULL",
                                (error, finished_at, job_id, attempts))
            return cursor.rowcount == 1

    def cancel_queued_job(self, job_id: int, error: str) -> bool:
        """Cancel a job that is queued (waiting to run, or for a retry), in one
        transaction: a worker's claim either came first (False) or finds it
        cancelled. True if it was cancelled."""
        with self._write() as db:
            cursor = db.execute("UPDATE jobs SET status = 'cancelled', error = ?, finished_at = ?, next_try_at = NULL"
                                " WHERE id = ? AND status = 'queued'", (error, self._clock(), job_id))
            return cursor.rowcount == 1

    def requeue_job(self, job_id: int, attempts: int, error: str) -> bool:
        """Put a running job back in the queue, unless it moved on since it was seen
        running at `attempts` (finished, or requeued and claimed again by another
        process: every claim counts an attempt). True if it was put back."""
        with self._write() as db:
            cursor = db.execute("UPDATE jobs SET status = 'queued', error = ?, stats = NULL"
                                " WHERE id = ? AND status = 'running' AND attempts = ?",
                                (error, job_id, attempts))
            return cursor.rowcount == 1

    # -- recovery sessions --------------------------------------------------
    # A session is a dict of id, config, status, plan (dict), progress
    # (dict or None), error, created, updated (unix floats).

    @staticmethod
    def _session(row: sqlite3.Row) -> dict:
        session = dict(row)
        session["plan"] = _loads(session["plan"])
        session["progress"] = _loads(session["progress"])
        return session

    def add_session(self, session_id: str, config: str | None, plan: dict) -> None:
        """Record a new recovery session with status "pending"."""
        now = self._clock()
        with self._write() as db:
            db.execute("INSERT INTO sessions (id, config, status, plan, created, updated)"
                       " VALUES (?, ?, 'pending', ?, ?, ?)", (session_id, config, _dumps(plan), now, now))

    def update_session(self, session_id: str, status: str | None = None, progress: dict | None = None,
                       error: str | None = None) -> bool:
        """Change what is given (a new `progress` replaces the old one whole); True if the session exists."""
        fields: dict[str, Any] = {"updated": self._clock()}
        if status is not None:
            fields["status"] = status
        if progress is not None:
            fields["progress"] = _dumps(progress)
        if error is not None:
            fields["error"] = error
        names = sorted(fields)
        with self._write() as db:
            cursor = db.execute(f"UPDATE sessions SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
                                [fields[n] for n in names] + [session_id])
            return cursor.rowcount > 0

    def get_session(self, session_id: str) -> dict | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else self._session(row)

    def list_sessions(self, limit: int | None = 50) -> list[dict]:
        """Sessions, newest first."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM sessions ORDER BY created DESC, rowid DESC LIMIT ?",
                              (-1 if limit is None else int(limit),)).fetchall()
        return [self._session(row) for row in rows]

    # -- recovery kits ------------------------------------------------------
    # That a configuration's recovery kit (its repository key) was printed,
    # per repository id; the newest export replaces an older one.

    def record_kit_export(self, repository_id: str, key_id: str, config: str) -> None:
        with self._write() as db:
            db.execute("INSERT INTO recovery_kits (repository_id, key_id, config, exported_at) VALUES (?, ?, ?, ?)"
                       " ON CONFLICT (repository_id) DO UPDATE SET key_id = excluded.key_id,"
                       " config = excluded.config, exported_at = excluded.exported_at",
                       (repository_id, key_id, config, self._clock()))

    def kit_export(self, repository_id: str) -> dict | None:
        """The last kit export for this repository: repository_id, key_id, config, exported_at; or None."""
        with self._read() as db:
            row = db.execute("SELECT * FROM recovery_kits WHERE repository_id = ?", (repository_id,)).fetchone()
        return None if row is None else dict(row)

    def kit_on_record(self, repository_id: str, key_id: str) -> bool:
        """Whether a kit was exported for this repository with the password of this key."""
        kit = self.kit_export(repository_id)
        return kit is not None and kit["key_id"] == key_id

    # -- disaster-recovery plans and runs -----------------------------------

    def put_plan(self, name: str, doc: dict, version: str, updated: float) -> None:
        """Insert or replace a plan; a replaced plan keeps its `created` time."""
        with self._write() as db:
            db.execute("INSERT INTO dr_plans (name, doc, version, created, updated) VALUES (?, ?, ?, ?, ?)"
                       " ON CONFLICT (name) DO UPDATE SET doc = excluded.doc, version = excluded.version,"
                       " updated = excluded.updated", (name, _dumps(doc), version, self._clock(), updated))

    def get_plan(self, name: str) -> dict | None:
        """name, doc (dict), version, created, updated; or None."""
        with self._read() as db:
            row = db.execute("SELECT * FROM dr_plans WHERE name = ?", (name,)).fetchone()
        return None if row is None else {**dict(row), "doc": _run_doc(row["doc"])}

    def list_plans(self) -> list[dict]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM dr_plans ORDER BY name").fetchall()
        return [{**dict(row), "doc": _loads(row["doc"])} for row in rows]

    def delete_plan(self, name: str) -> bool:
        """True if a plan was removed; its runs stay as history."""
        with self._write() as db:
            return db.execute("DELETE FROM dr_plans WHERE name = ?", (name,)).rowcount > 0

    def add_dr_run(self, run_id: str, plan: str, mode: str, verdict: str, started: float, finished: float,
                   doc: dict) -> None:
        """Record a finished run (again: the newer record replaces it)."""
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO dr_runs (id, plan, mode, verdict, started, finished, doc)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)", (run_id, plan, mode, verdict, started, finished, _dumps(doc)))

    def list_dr_runs(self, plan: str | None = None, limit: int | None = None, mode: str | None = None) -> list[dict]:
        """Runs (of one plan, of one mode), oldest first; with `limit`, the newest that many.
        Each: id, plan, mode, verdict, started, finished, doc (dict)."""
        where = [(clause, value) for clause, value in (("plan = ?", plan), ("mode = ?", mode)) if value is not None]
        query = "SELECT * FROM dr_runs" + (" WHERE " + " AND ".join(c for c, _ in where) if where else "") \
            + " ORDER BY started DESC, rowid DESC LIMIT ?"
        args: list[Any] = [v for _, v in where] + [-1 if limit is None else int(limit)]
        with self._read() as db:
            rows = db.execute(query, args).fetchall()
        return [{**dict(row), "doc": _run_doc(row["doc"])} for row in reversed(rows)]

    def count_dr_runs(self, plan: str) -> int:
        with self._read() as db:
            return int(db.execute("SELECT COUNT(*) FROM dr_runs WHERE plan = ?", (plan,)).fetchone()[0])

    def get_dr_run(self, run_id: str) -> dict | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM dr_runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else {**dict(row), "doc": _run_doc(row["doc"])}

    # -- schedule slots -----------------------------------------------------
    # A claimed slot is a dict of config, schedule (the spec's id), slot,
    # claimed_at (unix floats), owner (dict: who claimed it, as
    # jobs.current_owner), job_id (the job it queued, or None) and outcome.

    def claim_slot(self, config: str, schedule_id: str, slot_time: float | datetime, owner: dict,
                   job: dict | None = None) -> bool:
        """Claim one slot of a schedule; False if it was claimed before (by any process).
        `slot_time` is unix seconds or an aware datetime (as slots.Slot.time).

        With `job` (kind, priority, max_attempts), the job is queued in the same
        transaction and its id recorded with the claim: a crash leaves either
        both or neither."""
        slot_time = _seconds(slot_time)
        with self._write() as db:
            cursor = db.execute("INSERT OR IGNORE INTO schedule_slots (config, schedule, slot, claimed_at, owner)"
                                " VALUES (?, ?, ?, ?, ?)",
                                (config, schedule_id, float(slot_time), self._clock(), _dumps(owner)))
            if cursor.rowcount != 1:
                return False
            if job is not None:
                queued = db.execute("INSERT INTO jobs (config, kind, priority, status, attempts, max_attempts,"
                                    " queued_at) VALUES (?, ?, ?, 'queued', 0, ?, ?)",
                                    (config, job["kind"], int(job.get("priority", 0)),
                                     int(job.get("max_attempts", 1)), self._clock()))
                db.execute("UPDATE schedule_slots SET job_id = ? WHERE config = ? AND schedule = ? AND slot = ?",
                           (queued.lastrowid, config, schedule_id, float(slot_time)))
            return True

    def update_slot(self, config: str, schedule_id: str, slot_time: float | datetime, job_id: int | None = None,
                    outcome: str | None = None) -> bool:
        """Record the job a claimed slot queued and/or its outcome; True if the slot was claimed."""
        slot_time = _seconds(slot_time)
        fields = {k: v for k, v in (("job_id", job_id), ("outcome", outcome)) if v is not None}
        if not fields:
            return self.get_slot(config, schedule_id, slot_time) is not None
        names = sorted(fields)
        with self._write() as db:
            cursor = db.execute(f"UPDATE schedule_slots SET {', '.join(f'{n} = ?' for n in names)}"
                                " WHERE config = ? AND schedule = ? AND slot = ?",
                                [fields[n] for n in names] + [config, schedule_id, float(slot_time)])
            return cursor.rowcount > 0

    @staticmethod
    def _slot(row: sqlite3.Row) -> dict:
        return {**dict(row), "owner": _loads(row["owner"])}

    def get_slot(self, config: str, schedule_id: str, slot_time: float | datetime) -> dict | None:
        slot_time = _seconds(slot_time)
        with self._read() as db:
            row = db.execute("SELECT * FROM schedule_slots WHERE config = ? AND schedule = ? AND slot = ?",
                             (config, schedule_id, float(slot_time))).fetchone()
        return None if row is None else self._slot(row)

    def last_slot(self, config: str, schedule_id: str) -> dict | None:
        """The latest slot claimed of this schedule (the latest slot time, not the latest claim)."""
        with self._read() as db:
            row = db.execute("SELECT * FROM schedule_slots WHERE config = ? AND schedule = ?"
                             " ORDER BY slot DESC LIMIT 1", (config, schedule_id)).fetchone()
        return None if row is None else self._slot(row)

    def slot_of_job(self, job_id: int) -> dict | None:
        """The claimed slot that queued job `job_id`, or None (a job queued by hand)."""
        with self._read() as db:
            row = db.execute("SELECT * FROM schedule_slots WHERE job_id = ? LIMIT 1", (job_id,)).fetchone()
        return None if row is None else self._slot(row)

    def list_slots(self, config: str | None = None, limit: int | None = 100) -> list[dict]:
        """Claimed slots, latest slot first, optionally of one configuration."""
        sql = "SELECT * FROM schedule_slots" + (" WHERE config = ?" if config is not None else "") \
            + " ORDER BY slot DESC, rowid DESC LIMIT ?"
        args: list[Any] = ([config] if config is not None else []) + [-1 if limit is None else int(limit)]
        with self._read() as db:
            return [self._slot(row) for row in db.execute(sql, args).fetchall()]
    # -- notification channels and alert state -------------------------------

    @staticmethod
    def _channel(row: sqlite3.Row) -> dict:
        return {"name": row["name"], "kind": row["kind"], "settings": _loads(row["settings"]),
                "secret_refs": _loads(row["secret_refs"]), "min_severity": row["min_severity"],
                "configs": _loads(row["configs"]), "created": row["created"], "updated": row["updated"]}

    def put_channel(self, name: str, kind: str, settings: dict, secret_refs: dict, min_severity: str,
                    configs: list[str]) -> None:
        """Insert or replace a notification channel (no secret in `settings`)."""
        now = self._clock()
        with self._write() as db:
            db.execute("INSERT INTO notify_channels (name, kind, settings, secret_refs, min_severity, configs,"
                       " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                       " kind = excluded.kind, settings = excluded.settings, secret_refs = excluded.secret_refs,"
                       " min_severity = excluded.min_severity, configs = excluded.configs,"
                       " updated = excluded.updated",
                       (name, kind, _dumps(settings), _dumps(secret_refs), min_severity, _dumps(list(configs)),
                        now, now))

    def get_channel(self, name: str) -> dict | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM notify_channels WHERE name = ?", (name,)).fetchone()
        return None if row is None else self._channel(row)

    def list_channels(self) -> list[dict]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM notify_channels ORDER BY name").fetchall()
        return [self._channel(row) for row in rows]

    def delete_channel(self, name: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM notify_channels WHERE name = ?", (name,)).rowcount > 0

    def alert_states(self, config: str | None = None) -> list[dict]:
        """Rows of alert_state (of one configuration, or all)."""
        sql = "SELECT * FROM alert_state" + (" WHERE config = ?" if config is not None else "") \
            + " ORDER BY config, condition"
        with self._read() as db:
            rows = db.execute(sql, () if config is None else (config,)).fetchall()
        return [{**dict(row), "active": bool(row["active"])} for row in rows]

    def update_alert_states(self, config: str, decide: Callable[[list[dict]], tuple[Any, dict[str, dict]]]) -> Any:
        """Read the alert states of `config`, let `decide` return (result, changed
        rows by condition), write those, all in one write transaction: two
        processes reporting the same failure send one message between them."""
        with self._write() as db:
            rows = db.execute("SELECT * FROM alert_state WHERE config = ?", (config,)).fetchall()
            result, changed = decide([{**dict(row), "active": bool(row["active"])} for row in rows])
            for condition, row in changed.items():
                db.execute("INSERT OR REPLACE INTO alert_state (config, condition, active, since, last_sent,"
                           " repeats, severity) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (config, condition, int(bool(row["active"])), row.get("since"), row.get("last_sent"),
                            int(row.get("repeats") or 0), row.get("severity") or "info"))
        return result

    # -- storage samples ----------------------------------------------------

    # -- the web console ------------------------------------------------------

    def get_console_setting(self, key: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT value FROM console_settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["value"]

    def put_console_setting(self, key: str, value: str, only_if_absent: bool = False) -> bool:
        """Store `value` under `key`; with `only_if_absent`, only when nothing is
        stored there yet (two first starts must not both set a password)."""
        with self._write() as db:
            verb = "INSERT OR IGNORE" if only_if_absent else "INSERT OR REPLACE"
            cur = db.execute(f"{verb} INTO console_settings (key, value, updated) VALUES (?, ?, ?)",
                             (key, value, self._clock()))
            return cur.rowcount > 0

    def add_console_token(self, token_id: str, digest: str, name: str) -> None:
        with self._write() as db:
            db.execute("INSERT INTO console_tokens (id, digest, name, created) VALUES (?, ?, ?, ?)",
                       (token_id, digest, name, self._clock()))

    def console_token_by_digest(self, digest: str) -> dict | None:
        with self._read() as db:
            row = db.execute("SELECT id, name, created, last_used FROM console_tokens WHERE digest = ?",
                             (digest,)).fetchone()
        return None if row is None else dict(row)

    def touch_console_token(self, token_id: str) -> None:
        with self._write() as db:
            db.execute("UPDATE console_tokens SET last_used = ? WHERE id = ?", (self._clock(), token_id))

    def list_console_tokens(self) -> list[dict]:
        with self._read() as db:
            rows = db.execute("SELECT id, name, created, last_used FROM console_tokens ORDER BY created").fetchall()
        return [dict(r) for r in rows]

    def delete_console_token(self, token_id: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM console_tokens WHERE id = ?", (token_id,)).rowcount > 0

    def now(self) -> float:
        """The catalog's clock (unix seconds): what it stamps jobs and samples with."""
        return self._clock()

    def add_sample(self, config: str, sample: dict) -> None:
        """Record a storage sample (restore_size, stored_size, unique_size, points, ...) taken now."""
        if not isinstance(sample, dict):
            raise TypeError(f"a storage sample must be a dict, not {type(sample).__name__}")
        with self._write() as db:
            db.execute("INSERT INTO samples (config, time, data) VALUES (?, ?, ?)",
                       (config, self._clock(), _dumps(sample)))

    def list_samples(self, config: str | None = None, since: float | None = None) -> list[dict]:
        """Samples oldest first, each the sample's fields plus `config` and `time` (unix float)."""
        where, args = [], []
        if config is not None:
            where.append("config = ?")
            args.append(config)
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        sql = "SELECT * FROM samples" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY time, id"
        with self._read() as db:
            rows = db.execute(sql, args).fetchall()
        return [{**json.loads(row["data"]), "config": row["config"], "time": row["time"]} for row in rows]

    def latest_sample(self, config: str) -> dict | None:
        """The newest storage sample of `config` (as in `list_samples`), or None."""
        with self._read() as db:
            row = db.execute("SELECT * FROM samples WHERE config = ? ORDER BY time DESC, id DESC LIMIT 1",
                             (config,)).fetchone()
        return None if row is None else {**json.loads(row["data"]), "config": row["config"], "time": row["time"]}


def kit_on_record(repository_id: str, key_id: str, path: str | None = None) -> bool:
    """`Catalog.kit_on_record` in the catalog at `path` (default: `Catalog.default_path()`),
    for commands that work on a repository rather than the catalog. No catalog
    file is made to find out, and one that cannot be read records nothing."""
    path = path or Catalog.default_path()
    if not os.path.isfile(path):
        return False
    try:
        with Catalog(path) as catalog:
            return catalog.kit_on_record(repository_id, key_id)
    except StrongroomError:
        return False
