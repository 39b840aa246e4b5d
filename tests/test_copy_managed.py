"""A managed configuration's second target: a copy after each run, through the
real services, the real command line and a real WebDAV server; a failed copy
keeps the backup good and is reported, and the next run catches up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import strongroom
from catalog_cli import CatalogCLI
from notify_receivers import HTTPReceiver
from strongroom.engine.copy import shares_chunker
from strongroom.notify.channels import ChannelSpec
from strongroom.repo.repository import Repository
from strongroom.storage import LocalStorage
from treeutil import snapshot_tree
import forked_cli

SECOND_PASSWORD = "the second target's own password"


@pytest.fixture
def env(tmp_path: Path, monkeypatch) -> CatalogCLI:
    cli = CatalogCLI(tmp_path)
    for key in ("STRONGROOM_CATALOG", "STRONGROOM_SECRETS_BACKEND", "STRONGROOM_SECRETS", "STRONGROOM_CACHE_DIR"):
        monkeypatch.setenv(key, cli.env[key])
    monkeypatch.setenv("COPY_PW", SECOND_PASSWORD)
    cli.env["COPY_PW"] = SECOND_PASSWORD
    return cli


def make_data(root: Path) -> Path:
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "notes.txt").write_text("notes\n" * 1000)
    (root / "photo.bin").write_bytes(bytes(range(256)) * 2000)
    return root


def open_second(path: Path, cache: str) -> Repository:
    return Repository.open(LocalStorage(str(path)), SECOND_PASSWORD.encode(), cache)


def copy_stats(manager, name: str) -> dict:
    return manager.catalog.list_jobs(config=name, limit=1)[0]["stats"]["copy"]


def test_each_run_is_copied_to_the_second_target(env: CatalogCLI, tmp_path: Path):
    data = make_data(tmp_path / "data")
    second = tmp_path / "second"
    with strongroom.create_backup_manager() as manager:
        manager.add_config(strongroom.BackupConfig(
            name="home", source_paths=[str(data)], target_path=str(tmp_path / "primary"),
            copy_to={"path": str(second), "password_env": "COPY_PW"}))
        # Made when the configuration is added, with the primary's chunker parameters and ids.
        primary = manager.backup_service.open_repository(manager.get_config("home"))
        assert shares_chunker(primary, open_second(second, env.env["STRONGROOM_CACHE_DIR"]))

        first = manager.manual_backup("home", "full")
        assert first.warning is None
        stats = copy_stats(manager, "home")
        assert stats["ok"] and stats["points_copied"] == 1 and stats["blobs_sent"] >= 4

        (data / "docs" / "new.txt").write_text("a new file\n")
        latest = manager.manual_backup("home")
        stats = copy_stats(manager, "home")
        assert stats["ok"] and stats["points_copied"] == 1 and stats["points_skipped"] == 1
        # Only the new file's chunk and the trees above it are sent.
        assert stats["blobs_sent"] <= len(data.parts) + 3, stats

        again = manager.copy_to_second_target("home")
        assert isinstance(again, strongroom.CopyResult)
        assert (again.points_copied, again.points_skipped, again.blobs_sent) == (0, 2, 0)
        assert again.to_dict()["target"] == f"directory {second}"

    copies = open_second(second, env.env["STRONGROOM_CACHE_DIR"]).list_snapshots()
    assert sorted(s.original for s in copies) == sorted([first.snapshot_id, latest.snapshot_id])
    second_env = {**env.env, "STRONGROOM_PASSWORD": SECOND_PASSWORD}
    check = forked_cli.run(["check", "-r", str(second), "--read-data", "--json"],
                           env=second_env)
    assert check.returncode == 0 and json.loads(check.stdout.decode().splitlines()[-1])["ok"], check.stderr
    done = forked_cli.run(["restore", "latest", "-r", str(second),
                           "--target", str(tmp_path / "restored")], env=second_env)
    assert done.returncode == 0, done.stderr
    assert snapshot_tree(tmp_path / "restored" / data.relative_to("/")) == snapshot_tree(data)

    [status] = json.loads(env.ok("status", "--json"))
    assert status["last_copy"] is not None and status["copy_error"] is None and status["status"] == "green"
    shown = env.json("config", "show", "home")[0]
    assert shown["copy_to"]["target"] == f"directory {second}" and shown["copy_to"]["password"] == "variable COPY_PW"

    # The configuration file writes it and reads it back to the same catalog.
    text = env.ok("export-config")
    assert "[config.home.copy_to]" in text and 'password_env = "COPY_PW"' in text
    (tmp_path / "strongroom.toml").write_text(text)
    assert "no changes" in env.ok("apply", str(tmp_path / "strongroom.toml"))
    env.ok("config", "edit", "home", "--no-copy-to")
    assert "copy_to" in env.ok("apply", str(tmp_path / "strongroom.toml"))  # `~ config home: copy_to`


def test_a_failed_copy_keeps_the_backup_good_is_reported_and_the_next_run_catches_up(
        env: CatalogCLI, tmp_path: Path, monkeypatch):
    data = make_data(tmp_path / "data")
    second = tmp_path / "second"
    http = HTTPReceiver()
    try:
        with strongroom.create_backup_manager() as manager:
            manager.add_config(strongroom.BackupConfig(
                name="home", source_paths=[str(data)], target_path=str(tmp_path / "primary"),
                copy_to={"path": str(second), "password_env": "COPY_PW"}))
            manager.add_notification_channel(ChannelSpec("hook", "webhook", {}, {"url": f"{http.url}/hook"}))
            monkeypatch.delenv("COPY_PW")

            result = manager.manual_backup("home")
            assert result.snapshot_id and "copy to the second target failed" in result.warning
            assert "COPY_PW is not set" in result.warning
            job = manager.catalog.list_jobs(config="home", limit=1)[0]
            assert job["status"] == "succeeded" and not job["stats"]["copy"]["ok"]
            assert [s.id for s in manager.backup_service.snapshots(manager.get_config("home"))] == \
                [result.snapshot_id]
            [event] = [json.loads(r.body) for r in http.requests]
            assert event["event"] == "run_warning" and "copy to the second target failed" in event["message"]
            assert "The backup itself is good" in event["message"]

            env.env.pop("COPY_PW")
            [status] = json.loads(env.ok("status", "--json"))
            assert "COPY_PW is not set" in status["copy_error"] and status["last_copy"] is None

            monkeypatch.setenv("COPY_PW", SECOND_PASSWORD)
            (data / "more.txt").write_text("more\n")
            manager.manual_backup("home")
            stats = copy_stats(manager, "home")
            assert stats["ok"] and stats["points_copied"] == 2  # the one the failed copy missed, too
        assert len(open_second(second, env.env["STRONGROOM_CACHE_DIR"]).list_snapshots()) == 2
    finally:
        http.close()


def test_a_wrong_second_target_is_refused_when_the_configuration_is_added(env: CatalogCLI, tmp_path: Path):
    data = make_data(tmp_path / "data")
    other = tmp_path / "other"
    Repository.init(LocalStorage(str(other)), b"not the one", cache_root=str(tmp_path / "c2"))
    done = env.run("config", "add", "home", "--source", str(data), "--target-dir", str(tmp_path / "primary"),
                   "--copy-to", str(other), "--copy-to-password-env", "COPY_PW")
    assert done.returncode == 12 and "the second target" in done.stderr and "wrong password" in done.stderr
    assert env.json("config", "list")[-1]["count"] == 0
    assert not (tmp_path / "primary").exists()  # refused before the primary was made
    same = env.run("config", "add", "home", "--source", str(data), "--target-dir", str(tmp_path / "primary"),
                   "--copy-to", str(tmp_path / "primary"), "--copy-to-password-env", "COPY_PW")
    assert same.returncode == 2 and "the second target is the configuration's own target" in same.stderr
    none = env.run("config", "add", "home", "--source", str(data), "--target-dir", str(tmp_path / "primary"),
                   "--copy-to", str(tmp_path / "new"))
    assert none.returncode == 2 and "needs one password source" in none.stderr


def test_second_target_on_webdav(env: CatalogCLI, tmp_path: Path, wsgidav_server):
    data = make_data(tmp_path / "data")
    password_file = tmp_path / "second.pw"
    password_file.write_text(SECOND_PASSWORD + "\n")
    webdav = strongroom.WebDAVService()
    with strongroom.create_backup_manager(webdav) as manager:
        webdav.add_client("dav", strongroom.WebDAVCredentials(
            username=wsgidav_server.username, password=wsgidav_server.password, url=wsgidav_server.url,
            service_type="generic"))
        manager.add_config(strongroom.BackupConfig(
            name="home", source_paths=[str(data)], target_path=str(tmp_path / "primary"),
            copy_to={"path": "offsite/home", "client_id": "dav", "password_file": str(password_file)}))
        result = manager.manual_backup("home", "full")
        assert result.warning is None and copy_stats(manager, "home")["points_copied"] == 1
        config = manager.get_config("home")
        assert config.describe_copy_target() == "offsite/home on WebDAV client dav"
        second = manager.backup_service.open_copy_target(config)
        [copy] = second.list_snapshots()
        assert copy.original == result.snapshot_id
    dav_env = {**env.env, "STRONGROOM_PASSWORD": SECOND_PASSWORD, "STRONGROOM_WEBDAV_PASSWORD": wsgidav_server.password,
               "STRONGROOM_REPO": wsgidav_server.storage_url() + "offsite/home/"}
    done = forked_cli.run(["check", "--read-data", "--json"], env=dav_env)
    assert done.returncode == 0 and json.loads(done.stdout.decode().splitlines()[-1])["ok"], done.stderr


def test_a_stored_second_target_password_stays_out_of_the_catalog(env: CatalogCLI, tmp_path: Path):
    data = make_data(tmp_path / "data")
    second = tmp_path / "second"
    env.env["STRONGROOM_COPY_TO_PASSWORD"] = SECOND_PASSWORD
    env.ok("config", "add", "home", "--source", str(data), "--target-dir", str(tmp_path / "primary"),
           "--copy-to", str(second), "--copy-to-store-password")
    del env.env["STRONGROOM_COPY_TO_PASSWORD"]
    env.ok("backup", "--config", "home")
    assert open_second(second, env.env["STRONGROOM_CACHE_DIR"]).list_snapshots()  # the copy opened with it
    shown = env.json("config", "show", "home")[0]["copy_to"]
    assert shown["password"] == "secrets store" and "secret_ref" not in shown
    assert "# password: kept in the secrets store" in env.ok("export-config")
    for path in tmp_path.glob("catalog.db*"):
        assert SECOND_PASSWORD.encode() not in path.read_bytes()
