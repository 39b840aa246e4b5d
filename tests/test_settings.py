"""Settings are built at the edge and passed down: two configurations in one
process each get their own, and nothing below the edge reads the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import strongroom
from strongroom.errors import UsageError
from strongroom.services.webdav_service import WebDAVCredentials, WebDAVService
from strongroom.settings import Settings
from strongroom.storage import LocalStorage, object_size_cap, open_storage, request_budget
from strongroom.storage.metrics import CountingStorage

URL = "webdav+http://me@127.0.0.1:9/dav/repo"


def test_two_configurations_in_one_process_get_their_own_budget_and_timeouts(monkeypatch, tmp_path):
    monkeypatch.setenv("STRONGROOM_WEBDAV_BUDGET", "1/1")  # read by neither: settings are passed in
    small = open_storage(URL, webdav_password="pw", cache_root="",
                         settings=Settings(webdav_budget=(10, 60.0), webdav_deadline=5.0, webdav_timeout=3.0))
    large = open_storage(URL, webdav_password="pw", cache_root="",
                         settings=Settings(webdav_budget=(500, 1800.0), webdav_deadline=50.0))
    none = open_storage(URL, webdav_password="pw", cache_root="", settings=Settings(webdav_budget=None))
    assert request_budget(small).capacity == 10 and request_budget(large).capacity == 500
    assert request_budget(none) is None
    assert small.policy.deadline == 5.0 and large.policy.deadline == 50.0
    # Every decorator passes the description on.
    assert request_budget(CountingStorage(small)) is request_budget(small)
    nutstore = open_storage("webdav+https://me@dav.jianguoyun.com/dav/Backups/r", webdav_password="pw",
                            cache_root="", settings=Settings())
    assert object_size_cap(CountingStorage(nutstore)) == nutstore.info.vendor.max_object_size
    assert request_budget(nutstore).capacity == nutstore.info.vendor.budget[0]
    assert object_size_cap(LocalStorage(str(tmp_path))) is None

    a = WebDAVService(Settings(webdav_budget=(7, 60.0)))
    b = WebDAVService(Settings(webdav_budget=None))
    for service in (a, b):
        service.add_client("cloud", WebDAVCredentials("me", "pw", "http://127.0.0.1:9/dav/"))
    assert request_budget(a.open_storage("cloud", "r", cache_root="")).capacity == 7
    assert request_budget(b.open_storage("cloud", "r", cache_root="")) is None


def test_settings_from_the_environment_are_read_in_one_place():
    s = Settings.from_env({"STRONGROOM_WEBDAV_BUDGET": "540/1800", "STRONGROOM_WEBDAV_DEADLINE": "30",
                           "STRONGROOM_CHECKPOINT_SECONDS": "5", "STRONGROOM_WEBDAV_BLOCKED_WAIT": "0.5"})
    assert (s.webdav_budget, s.webdav_deadline, s.checkpoint_seconds, s.webdav_blocked_wait) == \
        ((540, 1800.0), 30.0, 5.0, 0.5)
    assert Settings.from_env({"STRONGROOM_WEBDAV_BUDGET": "off"}).webdav_budget is None
    with pytest.raises(UsageError, match="STRONGROOM_WEBDAV_TIMEOUT must be a number"):
        Settings.from_env({"STRONGROOM_WEBDAV_TIMEOUT": "soon"})


def test_connections_come_from_the_run_then_the_url_then_the_vendor(tmp_path):
    from strongroom.repo.repository import Repository
    from strongroom.services.configs import BackupConfig

    def connections(url: str, settings: Settings = Settings()) -> int:
        storage = open_storage(url, webdav_password="pw", cache_root="", settings=settings)
        return storage.info.connections

    assert connections(URL) == 4  # generic
    assert connections("webdav+https://me@dav.jianguoyun.com/dav/Backups/r") == 2
    assert connections(URL + "?connections=7") == 7
    assert connections(URL + "?connections=7", Settings(connections=3)) == 3
    # The client's pool has room for every upload and the lock refresh beside them.
    storage = open_storage(URL + "?connections=7", webdav_password="pw", cache_root="")
    assert storage.inner._client._transport._pool._max_connections == 9
    for bad, said in (("?connections=0", "from 1 to 32"), ("?connections=many", "whole number"),
                      ("?vendor=nutstore", "unknown parameter 'vendor'"), ("?connections=2&x=1", "unknown")):
        with pytest.raises(UsageError, match=said):
            connections(URL + bad)
    assert Settings.from_env({"STRONGROOM_CONNECTIONS": "6"}).connections == 6
    with pytest.raises(UsageError, match="STRONGROOM_CONNECTIONS"):
        Settings.from_env({"STRONGROOM_CONNECTIONS": "99"})
    # A directory: two, unless the run says otherwise; the repository takes the run's number first.
    local = open_storage(str(tmp_path / "r"))
    assert local.info.connections == 2
    repo = Repository.init(local, b"pw", cache_root="", settings=Settings(connections=5))
    assert repo.connections == 5 and repo.download_workers(3) == 3  # local reads keep their own count
    with pytest.raises(UsageError, match="connections"):
        BackupConfig("c", ["/x"], target_path="/r", connections=0)
    config = BackupConfig("c", ["/x"], target_path="/r", connections=8)
    assert config.to_doc()["connections"] == 8 and "connections" not in BackupConfig("c", ["/x"]).to_doc()


LOWER_LAYERS = ("storage", "repo", "model", "engine")


def test_no_module_below_the_edge_reads_the_environment():
    root = Path(strongroom.__file__).parent
    readers = []
    for layer in LOWER_LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv"):
                    readers.append(f"{path.relative_to(root)}:{node.lineno}")
    assert readers == [], readers
