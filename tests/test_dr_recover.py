"""Recovery from nothing: configurations read back from their repositories
(merged when added again, imported whole), the recovery kit of a plan, and
`dr recover` on a machine with an empty catalog, cache and secrets store,
against a local directory and a real WebDAV server (wsgidav on loopback)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from postgres_server import running_postgres
from treeutil import snapshot_tree

from strongroom.dr.manager import DisasterRecoveryManager
from strongroom.errors import UsageError, WrongPassword
from strongroom.services.backup_manager import create_backup_manager
from strongroom.services.configs import BackupConfig
from strongroom.services.webdav_service import WebDAVCredentials, WebDAVService
import forked_cli
from catalog_cli import catalog_bytes

REPO_PASSWORD = "kit test password"
# Variables of the surrounding shell that would change what is tested.
_SCRUBBED = ("STRONGROOM_PASSWORD", "STRONGROOM_PASSWORD_FILE", "STRONGROOM_PASSWORD_COMMAND", "STRONGROOM_REPO",
             "STRONGROOM_WEBDAV_PASSWORD", "STRONGROOM_WEBDAV_PASSWORD_FILE", "STRONGROOM_WEBDAV_VENDOR",
             "STRONGROOM_CATALOG", "STRONGROOM_SECRETS", "STRONGROOM_CACHE_DIR")


class Machine:
    """One machine's state (catalog, secrets store, cache) in its own folder,
    and the real `strongroom` run in a subprocess against it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.catalog = home / "catalog.db"
        self.secrets = home / "secrets.json"
        self.cache = home / "cache"
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        env.update(STRONGROOM_SECRETS=str(self.secrets), STRONGROOM_SECRETS_BACKEND="file",
                   XDG_DATA_HOME=str(home / "data"), STRONGROOM_WEBDAV_RETRY_DELAY="0.05",
                   STRONGROOM_WEBDAV_DEADLINE="30")
        self.env = env

    def catalog_bytes(self) -> bytes:
        return catalog_bytes(self.catalog)

    def run(self, *args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
        done = forked_cli.run([*args, "--catalog", str(self.catalog), "--cache-dir", str(self.cache)],
                              env={**self.env, **(env or {})}, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"strongroom {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout.decode()}\n{done.stderr.decode()}")
        return done

    def json(self, *args: str, env: dict | None = None) -> list[dict]:
        done = self.run(*args, "--json", env=env, check=True)
        return [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]

    def summary(self, *args: str, env: dict | None = None) -> dict:
        return [e for e in self.json(*args, env=env) if e.get("type") == "summary"][-1]

    @contextlib.contextmanager
    def manager(self, webdav_service: WebDAVService | None = None):
        """The Python API's manager over this machine's state, closed (workers, catalog) afterwards."""
        manager = create_backup_manager(webdav_service, str(self.catalog), str(self.secrets), str(self.cache))
        try:
            yield manager
        finally:
            manager.close()
    
    def wipe(self) -> None:
        """The machine is gone: nothing of its state is left."""
        import shutil
        shutil.rmtree(self.home)
        assert not self.home.exists()


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr.decode()
    assert lines[0].startswith("strongroom: ") and "Traceback" not in lines[0]
    return lines[0]


def config_doc(machine: Machine, name: str) -> dict:
    [doc] = [e for e in machine.json("config", "show", name) if e["type"] == "config"]
    return doc


# ---- configurations read back -------------------------------------------------------------


def test_a_configuration_added_again_on_a_new_machine_keeps_what_it_does_not_say(tmp_path, src):
    repo = tmp_path / "repo"
    env = {"STRONGROOM_PASSWORD": REPO_PASSWORD}
    old = Machine(tmp_path / "old")
    added = old.summary("config", "add", "docs", "--source", str(src), "--target-dir", str(repo),
                        "--store-password", "--tag", "daily", "--tag", "office", "--keep-daily", "7",
                        "--keep-last", "3", "--exclude", "*.tmp", "--max-attempts", "5",
                        "--retention-after-run", "forget", env=env)
    assert added["taken_from_repository"] == []  # a new repository holds nothing to take
    old.run("backup", "--config", "docs", check=True)
    old.wipe()

    new = Machine(tmp_path / "new")
    done = new.run("config", "add", "docs", "--source", str(src), "--target-dir", str(repo), "--store-password",
                   "--tag", "moved", env=env, check=True)
    assert "took excludes, max_attempts, retention, retention_after_run from the copy stored in the repository" \
        in done.stdout.decode()
    doc = config_doc(new, "docs")
    assert doc["tags"] == ["moved"]  # given: it wins
    assert doc["retention"] == {"keep_daily": 7, "keep_last": 3}
    assert doc["excludes"] == ["*.tmp"] and doc["max_attempts"] == 5 and doc["retention_after_run"] == "forget"

    # The repository now holds the new machine's copy: a third machine takes its tags.
    third = Machine(tmp_path / "third")
    added = third.summary("config", "add", "docs", "--source", str(src), "--target-dir", str(repo),
                          "--store-password", env=env)
    assert added["taken_from_repository"] == ["excludes", "max_attempts", "retention", "retention_after_run",
                                              "tags"]
    assert config_doc(third, "docs")["tags"] == ["moved"]
    # A configuration of another name takes nothing from docs.
    other = third.summary("config", "add", "other", "--source", str(src), "--target-dir", str(repo),
                          "--store-password", env=env)
    assert other["taken_from_repository"] == []
    assert config_doc(third, "other")["retention"] == {}


def test_import_configs_reads_every_stored_configuration_into_an_empty_catalog(tmp_path, src, wsgidav_server):
    dav = wsgidav_server
    old = Machine(tmp_path / "old")
    webdav = WebDAVService()
    webdav.add_client("cloud", WebDAVCredentials(dav.username, dav.password, dav.url))
    with old.manager(webdav) as manager:
        manager.add_config(BackupConfig("docs", [str(src)], target_path=str(tmp_path / "repo"),
                                        password=REPO_PASSWORD, tags=["a"], retention={"keep_last": 2}))
        manager.add_config(BackupConfig("more", [str(src / "sub")], target_path=str(tmp_path / "repo"),
                                        password=REPO_PASSWORD, excludes=["*.bak"]))
        manager.add_config(BackupConfig("far", [str(src)], target_client_id="cloud", target_path="backups/far",
                                        password=REPO_PASSWORD, tags=["cloud"]))
        point = manager.manual_backup("docs").snapshot_id
    old.wipe()

    new = Machine(tmp_path / "new")
    webdav = WebDAVService()
    webdav.add_client("dav2", WebDAVCredentials(dav.username, dav.password, dav.url))
    with new.manager(webdav) as manager:
        with pytest.raises(WrongPassword):
            manager.import_configs(str(tmp_path / "repo"), "not the password")
        with pytest.raises(UsageError, match="holds no configuration named 'nope'"):
            manager.import_configs(str(tmp_path / "repo"), REPO_PASSWORD, names=["nope"])
        assert manager.list_configs() == []

        made = manager.import_configs(str(tmp_path / "repo"), REPO_PASSWORD)
        assert [c.name for c in made] == ["docs", "more"]
        docs, more = manager.get_config("docs"), manager.get_config("more")
        assert docs.tags == ["a"] and docs.retention == {"keep_last": 2} and more.excludes == ["*.bak"]
        assert docs.target_path == str(tmp_path / "repo") and docs.is_local
        assert docs.secret_ref and docs.secret_ref != more.secret_ref
        assert manager.backup_service.password_for(docs) == REPO_PASSWORD.encode()
        assert REPO_PASSWORD not in new.catalog_bytes().decode("utf-8", "replace")
        # The imported configuration works: its snapshots are there, a backup runs.
        assert [s.id for s in manager.backup_service.snapshots(docs)] == [point]
        assert manager.manual_backup("more").snapshot_id

        with pytest.raises(UsageError, match="'docs' exists already"):
            manager.import_configs(str(tmp_path / "repo"), REPO_PASSWORD, names=["docs"])
        [again] = manager.import_configs(str(tmp_path / "repo"), REPO_PASSWORD, names=["docs"], replace=True)
        assert again.secret_ref != docs.secret_ref
        assert manager.backup_service.secrets.get(docs.secret_ref) is None  # the replaced one is gone

        # Over WebDAV, pointed at the client this machine has.
        [far] = manager.import_configs("backups/far", REPO_PASSWORD, client_id="dav2")
        assert (far.target_client_id, far.target_path, far.tags) == ("dav2", "backups/far", ["cloud"])
        assert manager.manual_backup("far").snapshot_id


# ---- a plan over a local directory and WebDAV, its kit, and recovery from nothing ------------------


PLAN = "Production DR"
LOCAL_PLAN = "Local only"
BEGIN, END = "-----BEGIN STRONGROOM RECOVERY KIT-----", "-----END STRONGROOM RECOVERY KIT-----"


def small_tree(root: Path, seed: int) -> Path:
    rng = random.Random(seed)
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(f"tree {seed}\n".encode())
    (root / "sub" / "b.bin").write_bytes(rng.randbytes(50 * 1024))
    return root


@pytest.fixture
def estate(tmp_path, wsgidav_server):
    """The old machine: three configurations, two in one local repository and
    one on WebDAV, each backed up once, and a plan over them."""
    from strongroom.dr.plan import plan_from_order
    from strongroom.dr.store import PlanStore

    dav = wsgidav_server
    sources = {name: small_tree(tmp_path / "sources" / name, seed)
               for seed, name in enumerate(("app", "far", "files"))}
    old = Machine(tmp_path / "old")
    webdav = WebDAVService()
    webdav.add_client("cloud", WebDAVCredentials(dav.username, dav.password, dav.url))
    local = tmp_path / "local-repo"
    with old.manager(webdav) as manager:
        manager.add_config(BackupConfig("app", [str(sources["app"])], target_path=str(local),
                                        password=REPO_PASSWORD, tags=["app"]))
        manager.add_config(BackupConfig("files", [str(sources["files"])], target_path=str(local),
                                        password=REPO_PASSWORD, retention={"keep_last": 4}))
        manager.add_config(BackupConfig("far", [str(sources["far"])], target_client_id="cloud",
                                        target_path="backups/far", password=REPO_PASSWORD))
        for name in sources:
            manager.manual_backup(name)
        store = PlanStore(manager.backup_service)
        store.save(plan_from_order(PLAN, ["app", "far", "files"], str(tmp_path / "restore-here")))
        store.save(plan_from_order(LOCAL_PLAN, ["files", "app"], str(tmp_path / "restore-local")))
    return SimpleNamespace(old=old, dav=dav, sources=sources, local=local, tmp=tmp_path)


def test_the_kit_of_a_plan_holds_every_repository_and_no_webdav_password_unless_asked(estate):
    old, dav, tmp = estate.old, estate.dav, estate.tmp
    done = old.run("dr", "kit", PLAN, "--output", str(tmp / "kit.txt"), check=True)
    assert f"to {tmp / 'kit.txt'}" in done.stdout.decode()
    kit_file = tmp / "kit.txt"
    assert stat.S_IMODE(kit_file.stat().st_mode) == 0o600
    text = kit_file.read_text()
    assert dav.password not in text and "WebDAV password: not in this kit" in text
    assert text.count(f"Password:        {REPO_PASSWORD}") == 2  # the local repository and the WebDAV one
    assert f"strongroom dr recover --kit {kit_file} --plan '{PLAN}' --target-base {tmp / 'restore-here'}" in text
    assert f"Configurations:  app, files" in text and f"Location:        {estate.local}" in text

    from strongroom.dr.kit import read_kit
    kit = read_kit(str(kit_file))
    assert kit.plan == PLAN and not kit.webdav_passwords
    local, far = kit.repositories
    assert (local.location, local.configs, local.password) == (str(estate.local), ("app", "files"), REPO_PASSWORD)
    assert far.location == dav.storage_url() + "backups/far/" and far.account.password is None
    assert far.account.folder == "backups/far" and far.account.url == dav.url
    # The kit is on record for the repositories it names, as `key export` puts it.
    from strongroom.services.catalog import Catalog
    with Catalog(old.catalog) as catalog:
        assert catalog.kit_export(local.repository_id)["config"] == "files"  # the last of the two
        assert catalog.kit_export(far.repository_id)["config"] == "far"

    with_passwords = old.summary("dr", "kit", PLAN, "-o", str(tmp / "kit-all.txt"), "--include-passwords")
    assert with_passwords["webdav_passwords"] and dav.password in (tmp / "kit-all.txt").read_text()
    assert dav.password not in json.dumps(with_passwords) and REPO_PASSWORD not in json.dumps(with_passwords)
    assert stat.S_IMODE((tmp / "kit-all.txt").stat().st_mode) == 0o600
    # Printed, it is the same page; the kit of an unknown plan is one line.
    assert "-----BEGIN STRONGROOM RECOVERY KIT-----" in old.run("dr", "kit", PLAN, check=True).stdout.decode()
    done = old.run("dr", "kit", "No such plan")
    assert done.returncode == 2 and "no DR plan named 'No such plan'" in one_error_line(done)


def test_recovery_reads_configurations_and_plans_from_the_repositories_alone(estate):
    old, dav, tmp = estate.old, estate.dav, estate.tmp
    old.run("dr", "kit", PLAN, "--output", str(tmp / "kit.txt"), check=True)
    old.wipe()

    new = Machine(tmp / "new")
    done = new.run("dr", "recover", "--kit", str(tmp / "kit.txt"))
    assert done.returncode == 2 and "no WebDAV password for tester" in one_error_line(done)
    for wrong, says in ((("--kit", str(tmp / "kit.txt"), "--repo", str(estate.local)), "give --kit FILE or --repo URL"),
                        (("--kit", str(tmp / "kit.txt"), "--plan", PLAN, "--test", "--target-base", str(tmp)),
                         "--target-base is for a recovery")):
        done = new.run("dr", "recover", *wrong)
        assert done.returncode == 2 and says in one_error_line(done)
    listing = new.summary("dr", "recover", "--kit", str(tmp / "kit.txt"),
                          env={"STRONGROOM_WEBDAV_PASSWORD": dav.password})
    assert [p["name"] for p in listing["plans"]] == [LOCAL_PLAN, PLAN]
    assert listing["plans"][1]["configs"] == ["app", "far", "files"] and listing["plans"][1]["missing_configs"] == []
    assert {c["name"]: c["repository"] for c in listing["configs"]} == {
        "app": str(estate.local), "files": str(estate.local), "far": dav.storage_url() + "backups/far/"}
    # Listing changes nothing on this machine.
    with new.manager() as manager:
        assert manager.list_configs() == [] and manager.catalog.list_plans() == []

    # A kit whose repository is not the one at its location, or that was cut off, is refused.
    text = (tmp / "kit.txt").read_text()
    kit_doc = json.loads(text.split(BEGIN, 1)[1].split(END, 1)[0])
    kit_doc["repositories"][0]["repository_id"] = "0" * 32
    (tmp / "other.txt").write_text(f"{BEGIN}\n{json.dumps(kit_doc)}\n{END}\n")
    done = new.run("dr", "recover", "--kit", str(tmp / "other.txt"))
    assert done.returncode == 1 and "not 0000000000000000 as the recovery kit says" in one_error_line(done)
    (tmp / "cut.txt").write_text(text.split(END, 1)[0])
    done = new.run("dr", "recover", "--kit", str(tmp / "cut.txt"))
    assert done.returncode == 2 and "the recovery kit is cut off" in one_error_line(done)

    # By URL and password alone: the local repository holds the plan, but not all it needs.
    done = new.run("dr", "recover", "--repo", str(estate.local), env={"STRONGROOM_PASSWORD": REPO_PASSWORD},
                   check=True)
    out = done.stdout.decode()
    assert f"plan {PLAN} (version" in out and "needs configuration far, which none of these repositories holds" in out
    done = new.run("dr", "recover", "--repo", str(estate.local), "--plan", PLAN,
                   env={"STRONGROOM_PASSWORD": REPO_PASSWORD})
    assert done.returncode == 1 and "needs configuration 'far'" in one_error_line(done)
    done = new.run("dr", "recover", "--repo", str(estate.local), env={"STRONGROOM_PASSWORD": "wrong"})
    assert done.returncode == 12


def test_recovery_rebuilds_the_catalog_a_plan_needs(estate):
    from strongroom.dr.kit import read_kit
    from strongroom.dr.recover import Recovery, sources_from_kit

    old, dav, tmp = estate.old, estate.dav, estate.tmp
    old.run("dr", "kit", PLAN, "--output", str(tmp / "kit.txt"), "--include-passwords", check=True)
    old.wipe()
    new = Machine(tmp / "new")
    with new.manager() as manager:
        recovery = Recovery(manager, sources_from_kit(read_kit(str(tmp / "kit.txt"))))
        plan = recovery.rebuild(PLAN)
        assert plan.configs == ("app", "far", "files")
        assert manager.get_config("app").tags == ["app"] and manager.get_config("files").retention == {"keep_last": 4}
        far = manager.get_config("far")
        assert (far.target_client_id, far.target_path) == ("cloud", "backups/far")
        assert manager.webdav_service.get_client("cloud").url == dav.url
        assert manager.catalog.get_plan(PLAN)["version"] == plan.version
        # Each configuration opens from here on, and a second rebuild changes nothing.
        assert all(manager.backup_service.snapshots(manager.get_config(n)) for n in plan.configs)
        assert recovery.rebuild(PLAN) == plan
        assert REPO_PASSWORD not in new.catalog_bytes().decode("utf-8", "replace")


def restored(target: Path, source: Path) -> Path:
    """Where a step restoring into `target` puts `source` (its absolute path below the target)."""
    return target / str(source).lstrip("/")


def summary_of(done: subprocess.CompletedProcess) -> dict:
    lines = [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("message_type") == "summary"][-1]


@pytest.fixture(scope="module")
def pg():
    with running_postgres() as server:
        yield server


def rows_of(pg, database: str) -> list[str]:
    return pg.psql(database, "SELECT id, item FROM orders ORDER BY id").splitlines()


def test_a_database_password_travels_in_the_kit_only_when_asked_and_backs_up_again_after_recovery(tmp_path, pg):
    from strongroom.dr.plan import Plan, Step
    from strongroom.dr.store import PlanStore

    secret = "till-Pw-93c1e0"
    pg.psql("postgres", "DROP DATABASE IF EXISTS till; CREATE DATABASE till;"
                        f"DROP ROLE IF EXISTS cashier; CREATE ROLE cashier LOGIN PASSWORD '{secret}';"
                        "GRANT pg_read_all_data TO cashier;")
    pg.psql("till", "CREATE TABLE sales (id int PRIMARY KEY); INSERT INTO sales SELECT generate_series(1, 50);")
    pg.require_password("cashier")
    old = Machine(tmp_path / "old")
    with old.manager() as manager:
        manager.add_config(BackupConfig("till", [], postgres=pg.dsn("till", user="cashier"),
                                        postgres_password=secret, target_path=str(tmp_path / "repo"),
                                        password=REPO_PASSWORD))
        manager.manual_backup("till")
        PlanStore(manager.backup_service).save(Plan("Tills", (Step("till"),), str(tmp_path / "restore")))

    old.run("dr", "kit", "Tills", "--output", str(tmp_path / "plain.txt"), check=True)
    plain = (tmp_path / "plain.txt").read_text()
    assert secret not in plain
    [line] = [line for line in plain.splitlines() if line.strip().startswith("Database:")]
    assert "till: PostgreSQL" in line and "user='cashier'" in line and "not in this kit" in line
    old.run("dr", "kit", "Tills", "--include-passwords", "--output", str(tmp_path / "kit.txt"), check=True)
    kit = (tmp_path / "kit.txt").read_text()
    [line] = [line for line in kit.splitlines() if line.strip().startswith("Database:")]
    assert line.endswith(f"password: {secret}")
    assert oct(stat.S_IMODE((tmp_path / "kit.txt").stat().st_mode)) == "0o600"
    old.wipe()

    # From the kit with the password: the recovered configuration backs the database up again.
    new = Machine(tmp_path / "new")
    new.run("dr", "recover", "--kit", str(tmp_path / "kit.txt"), "--plan", "Tills", "--target-base",
            str(tmp_path / "recovered"), check=True)
    [shown] = new.json("config", "show", "till")
    assert shown["database_password"] == "secrets store"
    backed_up = new.summary("backup", "--config", "till")
    assert backed_up["files_new"] + backed_up["files_changed"] + backed_up["files_unmodified"] == 1
    assert secret not in new.catalog_bytes().decode("utf-8", "replace")

    # From the kit without it: the recovery works, the database's password is asked for again.
    other = Machine(tmp_path / "other")
    other.run("dr", "recover", "--kit", str(tmp_path / "plain.txt"), "--plan", "Tills", "--target-base",
              str(tmp_path / "recovered-too"), check=True)
    [shown] = other.json("config", "show", "till")
    assert shown["database_password"] == "none given"
    assert other.run("backup", "--config", "till").returncode != 0


def test_recovery_from_the_kit_restores_every_step_byte_identical(estate, pg):
    from strongroom.dr.plan import Plan, Step
    from strongroom.dr.store import PlanStore

    old, dav, tmp = estate.old, estate.dav, estate.tmp
    # A PostgreSQL database first, in the local repository, loaded by its step into a new database.
    pg.psql("postgres", "DROP DATABASE IF EXISTS shop; DROP DATABASE IF EXISTS shop_recovered; CREATE DATABASE shop;")
    pg.psql("shop", "CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL);"
                    "INSERT INTO orders SELECT g, 'item ' || md5(g::text) FROM generate_series(1, 300) g;")
    rows = rows_of(pg, "shop")
    with old.manager() as manager:
        manager.add_config(BackupConfig("database", [], postgres=pg.dsn("shop"), target_path=str(estate.local),
                                        password=REPO_PASSWORD))
        manager.manual_backup("database")
        PlanStore(manager.backup_service).save(Plan(PLAN, (Step("database", database=pg.dsn("shop_recovered")),
                                                           Step("app"), Step("far"), Step("files")),
                                                    str(tmp / "restore-here")), replace=True)
    old.run("dr", "kit", PLAN, "--output", str(tmp / "kit.txt"), check=True)
    old.wipe()
    pg.psql("postgres", "DROP DATABASE shop")

    new = Machine(tmp / "new")
    env = {"STRONGROOM_WEBDAV_PASSWORD": dav.password}
    rehearsal = summary_of(new.run("dr", "recover", "--kit", str(tmp / "kit.txt"), "--plan", PLAN, "--test",
                                   "--json", env=env, check=True))
    assert rehearsal["mode"] == "test" and rehearsal["verdict"] == "pass"
    assert not (tmp / "restore-here").exists()  # a rehearsal never writes the real targets

    target = tmp / "recovered"
    done = new.run("dr", "recover", "--kit", str(tmp / "kit.txt"), "--plan", PLAN, "--target-base", str(target),
                   "--json", env=env)
    assert done.returncode == 0, done.stderr.decode()
    summary = summary_of(done)
    assert summary["mode"] == "run" and summary["verdict"] == "pass"
    assert [s["config"] for s in summary["steps"]] == ["database", "app", "far", "files"]
    assert [s["files_verified"] for s in summary["steps"]] == [1, 2, 2, 2]
    for name, source in estate.sources.items():
        assert snapshot_tree(restored(target / name, source)) == snapshot_tree(source), name
    assert rows_of(pg, "shop_recovered") == rows  # the dump, restored from the kit alone, loaded and queried
    # What the recovery made: the plan's catalog entries, its run on record, no password in the catalog.
    with new.manager() as manager:
        assert sorted(c.name for c in manager.list_configs()) == ["app", "database", "far", "files"]
        runs = DisasterRecoveryManager(manager.backup_service).store.runs(PLAN)
        assert [(r["mode"], r["trigger"], r["verdict"]) for r in runs] == [("test", "recover", "pass"),
                                                                           ("run", "recover", "pass")]
    catalog_text = new.catalog_bytes().decode("utf-8", "replace")
    assert REPO_PASSWORD not in catalog_text and dav.password not in catalog_text
    # The same machine lists and rehearses the local plan from the repository's URL alone.
    done = new.run("dr", "recover", "--repo", str(estate.local), "--plan", LOCAL_PLAN, "--target-base",
                   str(tmp / "again"), env={"STRONGROOM_PASSWORD": REPO_PASSWORD}, check=True)
    assert f"plan {LOCAL_PLAN} (run, version" in done.stdout.decode()
    for name in ("app", "files"):
        source = estate.sources[name]
        assert snapshot_tree(restored(tmp / "again" / name, source)) == snapshot_tree(source)


def test_recovery_from_repository_urls_alone_on_an_empty_machine(estate):
    dav, tmp = estate.dav, estate.tmp
    estate.old.wipe()
    new = Machine(tmp / "new")
    far = dav.storage_url() + "backups/far/"
    env = {"STRONGROOM_PASSWORD": REPO_PASSWORD, "STRONGROOM_WEBDAV_PASSWORD": dav.password}
    listing = new.summary("dr", "recover", "--repo", far, env=env)
    assert [(r["location"], r["configs"], r["plans"]) for r in listing["repositories"]] == [(far, ["far"], [PLAN])]
    assert listing["plans"][0]["missing_configs"] == ["app", "files"]

    target = tmp / "by-url"
    done = new.run("dr", "recover", "--repo", str(estate.local), "--repo", far, "--plan", PLAN, "--target-base",
                   str(target), "--json", env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert summary_of(done)["verdict"] == "pass"
    for name, source in estate.sources.items():
        assert snapshot_tree(restored(target / name, source)) == snapshot_tree(source), name
    with new.manager() as manager:
        # The account is the repository's URL without the folder its configuration names.
        client = manager.get_config("far").target_client_id
        assert manager.webdav_service.get_client(client).url == dav.url
        assert manager.get_config("far").target_path == "backups/far"


def test_recovery_reads_its_passwords_from_files_named_on_the_command_line(estate):
    dav, tmp = estate.dav, estate.tmp
    estate.old.wipe()
    new = Machine(tmp / "new")
    far = dav.storage_url() + "backups/far/"
    (tmp / "repo-password").write_text(REPO_PASSWORD + "\n")
    (tmp / "dav-password").write_text(dav.password + "\n")
    files = ["--password-file", str(tmp / "repo-password"), "--webdav-password-file", str(tmp / "dav-password")]
    target = tmp / "from-files"
    done = new.run("dr", "recover", "--repo", str(estate.local), "--repo", far, *files, "--plan", PLAN,
                   "--target-base", str(target), "--json")
    assert done.returncode == 0, done.stderr.decode()
    assert summary_of(done)["verdict"] == "pass"
    for name, source in estate.sources.items():
        assert snapshot_tree(restored(target / name, source)) == snapshot_tree(source), name
    assert REPO_PASSWORD.encode() not in done.stdout + done.stderr and dav.password.encode() not in done.stdout
    # A file with the wrong password is refused as a wrong password.
    (tmp / "wrong").write_text("wrong\n")
    done = new.run("dr", "recover", "--repo", str(estate.local), "--password-file", str(tmp / "wrong"))
    assert done.returncode == 12


def test_the_newest_stored_copy_of_a_configuration_wins_across_repositories(tmp_path, src):
    from strongroom.dr.recover import Recovery, source_from_url
    from strongroom.repo.repository import Repository
    from strongroom.storage import LocalStorage

    for name, tags in (("old", ["first"]), ("new", ["second"])):
        repo = Repository.init(LocalStorage(str(tmp_path / name)), b"pw", cache_root="")
        repo.save_managed_config("app", {"name": "app", "source_paths": [str(src)], "target_path": str(tmp_path / name),
                                         "tags": tags})
    machine = Machine(tmp_path / "machine")
    with machine.manager() as manager:
        # Listed newest first: the order of the URLs does not decide.
        recovery = Recovery(manager, [source_from_url(str(tmp_path / "new"), "pw"),
                                      source_from_url(str(tmp_path / "old"), "pw")])
        found = recovery.read()
        assert found.configs["app"][0] == 0 and found.configs["app"][1]["tags"] == ["second"]
        assert any("the newer copy" in w for w in found.warnings)
        recovery = Recovery(manager, [source_from_url(str(tmp_path / "old"), "pw"),
                                      source_from_url(str(tmp_path / "new"), "pw")])
        assert recovery.read().configs["app"][1]["tags"] == ["second"]


def test_the_listing_shows_every_step_target_and_command_before_anything_runs(tmp_path, src):
    from strongroom.dr.plan import Hook, Plan, Step
    from strongroom.dr.store import PlanStore

    old = Machine(tmp_path / "old")
    repo = tmp_path / "repo"
    with old.manager() as manager:
        manager.add_config(BackupConfig("app", [str(src)], target_path=str(repo), password=REPO_PASSWORD))
        PlanStore(manager.backup_service).save(Plan("shop", (Step("app", before=(Hook("systemctl stop shop"),),
                                                                  after=(Hook("curl -f http://127.0.0.1/\x1b[2J"),)),),
                                                    str(tmp_path / "there")))
    old.wipe()
    new = Machine(tmp_path / "new")
    done = new.run("dr", "recover", "--repo", str(repo), env={"STRONGROOM_PASSWORD": REPO_PASSWORD}, check=True)
    out = done.stdout.decode()
    assert f"step app: restores app into {tmp_path / 'there' / 'app'}" in out
    assert "runs before: systemctl stop shop" in out
    assert "runs after: curl -f http://127.0.0.1/\\x1b[2J" in out and "\x1b" not in out
    listing = new.summary("dr", "recover", "--repo", str(repo), env={"STRONGROOM_PASSWORD": REPO_PASSWORD})
    [step] = listing["plans"][0]["details"]
    assert step["before"] == ["systemctl stop shop"] and step["target"] == str(tmp_path / "there" / "app")


def test_the_newest_version_of_a_plan_wins_across_repositories(tmp_path, src):
    from strongroom.dr.plan import Plan, Step
    from strongroom.dr.recover import Recovery, source_from_url
    from strongroom.dr.store import PlanStore

    old = Machine(tmp_path / "old")
    with old.manager() as manager:
        for name in ("a", "b"):
            manager.add_config(BackupConfig(name, [str(src)], target_path=str(tmp_path / name), password=REPO_PASSWORD))
        store = PlanStore(manager.backup_service)
        store.save(Plan("shop", (Step("a"), Step("b")), str(tmp_path / "first")))
        first = store.get("shop")
        # The second version needs b only: a's repository keeps the first.
        store.save(Plan("shop", (Step("b"),), str(tmp_path / "second")), replace=True)
        second = store.get("shop")
        held = {name: [p.version for p in PlanStore.plans_in_repository(
            manager.backup_service.open_repository(manager.get_config(name)))] for name in ("a", "b")}
    assert first.version != second.version and held == {"a": [first.version], "b": [second.version]}
    machine = Machine(tmp_path / "machine")
    with machine.manager() as manager:
        for order in (("a", "b"), ("b", "a")):  # the order of the repositories does not decide
            recovery = Recovery(manager, [source_from_url(str(tmp_path / n), REPO_PASSWORD) for n in order])
            plan = recovery.plan("shop")
            assert (plan.version, plan.target_base) == (second.version, str(tmp_path / "second"))
