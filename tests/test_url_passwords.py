"""A password written into a URL never reaches the catalog, stdout or stderr:
refused on the way in by the command line (a usage error, exit 2) and by the
Python API, and masked in catalogs an older version wrote."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest

from strongroom import BackupConfig, WebDAVCredentials, WebDAVService, create_backup_manager
from strongroom.errors import UsageError
from strongroom.services.catalog import MIGRATIONS
from strongroom.services.urls import has_password, redact_password, without_password
from test_manage_cli import Managed

SECRET = "Pa55-in-the-URL"


@pytest.fixture
def m(tmp_path) -> Managed:
    return Managed(tmp_path)


def with_password(url: str, user: str) -> str:
    return url.replace("://", f"://{user}:{SECRET}@", 1)


def catalog_bytes(m: Managed) -> bytes:
    return b"".join(p.read_bytes() for p in m.catalog.parent.glob("catalog.db*"))


def assert_nowhere(m: Managed, *runs) -> None:
    for done in runs:
        assert SECRET.encode() not in done.stdout + done.stderr, done
    assert SECRET.encode() not in catalog_bytes(m)


def usage_error(done) -> str:
    """The one line click gives a usage error, after the usage it prints."""
    assert done.returncode == 2, done
    [line] = [line for line in done.stderr.decode().splitlines() if line.startswith("Error: ")]
    return line


def test_the_url_forms_are_read_as_urls_are():
    assert has_password("https://me:pw@dav.example.com/dav/")
    assert has_password("https://me:@dav.example.com/")  # empty, but a password all the same
    assert not has_password("https://me@dav.example.com/dav/") and not has_password("/a/local:path@x")
    assert redact_password("https://me:p@ss@host:8443/dav/?q") == "https://me:***@host:8443/dav/?q"
    assert without_password("https://me:p@ss@host:8443/dav/") == "https://me@host:8443/dav/"
    assert redact_password("https://host/dav/") == "https://host/dav/"


def test_client_add_refuses_a_url_with_a_password(m, wsgidav_server):
    dav = wsgidav_server
    env = {"STRONGROOM_WEBDAV_PASSWORD": dav.password}
    m.run("client", "add", "good", "--url", dav.url, "--user", dav.username, env=env, check=True)
    runs = []
    for extra in ((), ("--json",)):
        done = m.run("client", "add", "cloud", "--url", with_password(dav.url, dav.username), "--user",
                     dav.username, *extra, env=env)
        assert "never put the WebDAV password in the URL" in usage_error(done)
        runs.append(done)
    # The same for a password the server would accept as the account's.
    done = m.run("client", "add", "cloud", "--url", dav.url.replace("://", f"://{dav.username}:{SECRET}@"),
                 "--user", dav.username, "--replace", env={"STRONGROOM_WEBDAV_PASSWORD": SECRET})
    assert done.returncode == 2
    runs.append(done)
    listed = [e for e in m.json("client", "list") if e["type"] == "client"]
    assert [c["id"] for c in listed] == ["good"]
    runs.append(m.run("client", "list", check=True))
    assert_nowhere(m, *runs)
    assert SECRET not in m.secrets.read_text()  # not kept as the account password either


def test_config_targets_refuse_urls(m, tmp_path, src, wsgidav_server, monkeypatch):
    # Where a URL taken for a local directory would have been made, had it been accepted.
    monkeypatch.chdir(tmp_path)
    dav = wsgidav_server
    m.run("client", "add", "cloud", "--url", dav.url, "--user", dav.username,
          env={"STRONGROOM_WEBDAV_PASSWORD": dav.password}, check=True)
    url = with_password("https://dav.example.com/dav/backups", "me")
    runs = [m.run("config", "add", "docs", "--source", str(src), "--target-dir", url),
            m.run("config", "add", "docs", "--source", str(src), "--client", "cloud", "--target-path", url),
            m.run("config", "add", "docs", "--source", str(src), "--target-dir", "webdav+" + url, "--json")]
    for done in runs:
        assert "not a URL" in usage_error(done)
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(tmp_path / "repo"), check=True)
    done = m.run("config", "edit", "docs", "--target-dir", url)
    assert "not a URL" in usage_error(done)
    runs += [done, m.run("config", "show", "docs", "--json", check=True)]
    assert_nowhere(m, *runs)


def test_a_password_an_older_version_stored_in_a_url_is_masked(m, wsgidav_server):
    dav = wsgidav_server
    m.run("client", "add", "cloud", "--url", dav.url, "--user", dav.username,
          env={"STRONGROOM_WEBDAV_PASSWORD": dav.password}, check=True)
    # What an older strongroom left: the URL as given, password and all, at schema version 2.
    with closing(sqlite3.connect(m.catalog, isolation_level=None)) as db:
        doc = json.loads(db.execute("SELECT doc FROM clients WHERE id = 'cloud'").fetchone()[0])
        doc["url"] = with_password(dav.url, dav.username)
        db.execute("UPDATE clients SET doc = ? WHERE id = 'cloud'", (json.dumps(doc),))
        db.execute("UPDATE schema_version SET version = 2")
    assert SECRET.encode() in catalog_bytes(m)
    assert len(MIGRATIONS) >= 3

    runs = [m.run("client", "list", check=True), m.run("client", "list", "--json", check=True)]
    assert with_password(dav.url, dav.username).replace(SECRET, "***") in runs[0].stdout.decode()
    [client] = [json.loads(line) for line in runs[1].stdout.decode().splitlines() if '"client"' in line]
    assert client["url"] == redact_password(with_password(dav.url, dav.username))
    # The client still works: the password in the URL was never the one it logs in with.
    done = m.run("client", "test", "cloud", "--json", check=True)
    assert json.loads(done.stdout.decode().splitlines()[-1])["ok"]
    assert_nowhere(m, *runs, done)


def test_the_python_api_refuses_a_url_with_a_password(tmp_path, monkeypatch):
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    with pytest.raises(UsageError, match="never put the WebDAV password in the URL") as refused:
        WebDAVCredentials("me", "the account password", with_password("https://dav.jianguoyun.com/dav/", "me"),
                          "nutstore")
    assert SECRET not in str(refused.value) and SECRET not in repr(refused.value)

    webdav = WebDAVService()
    manager = create_backup_manager(webdav, str(tmp_path / "catalog.db"))
    try:
        source = tmp_path / "src"
        source.mkdir()
        config = BackupConfig(name="docs", source_paths=[str(source)],
                              target_path=with_password("webdav+https://dav.example.com/dav/x", "me"))
        with pytest.raises(UsageError, match="target path is a URL") as refused:
            manager.add_config(config)
        assert SECRET not in str(refused.value)
        assert manager.list_configs() == [] and webdav.list_clients() == []
    finally:
        manager.close()
        manager.catalog.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("catalog*"))
    assert stored and SECRET.encode() not in stored
