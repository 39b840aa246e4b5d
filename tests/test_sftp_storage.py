"""What the SFTP backend does beyond the conformance suite: the URL forms it
reads, leftovers of interrupted writes, the quota, the connections setting,
and a connection that drops between requests."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sftp_server import SSHServer
from strongroom.errors import UsageError
from strongroom.settings import Settings
from strongroom.storage import open_storage
from strongroom.storage.sftp_access import SFTPAccess, SFTPLocation, parse_sftp_url


@pytest.mark.parametrize("url, location", [
    ("sftp://alice@host.example:2222//srv/repo", SFTPLocation("alice", "host.example", 2222, "/srv/repo")),
    ("sftp://alice@host.example/backups/repo/", SFTPLocation("alice", "host.example", 22, "backups/repo")),
    ("sftp://alice@[::1]:23//srv/repo?connections=3", SFTPLocation("alice", "::1", 23, "/srv/repo", "connections=3")),
    ("sftp:alice@host.example:/srv/repo", SFTPLocation("alice", "host.example", 22, "/srv/repo")),
    ("sftp:alice@host.example:repo", SFTPLocation("alice", "host.example", 22, "repo")),
    ("sftp:alice@[::1]:/srv/repo", SFTPLocation("alice", "::1", 22, "/srv/repo")),
    # The restic form has no port: what follows the colon is a path, as restic reads it.
    ("sftp:alice@host:2222/srv", SFTPLocation("alice", "host", 22, "2222/srv")),
])
def test_url_forms(url: str, location: SFTPLocation):
    assert parse_sftp_url(url) == location


@pytest.mark.parametrize("url", [
    "sftp://alice:hunter2@host//srv/repo",  # a password
    "sftp://host//srv/repo",  # no user
    "sftp:host:/srv/repo",
    "sftp://alice@host/",  # no folder
    "sftp://alice@host:99999//srv",
    "sftp://alice@host//srv/../etc",
])
def test_urls_refused(url: str):
    with pytest.raises(UsageError) as caught:
        parse_sftp_url(url)
    assert "hunter2" not in str(caught.value)


def _open(server: SSHServer, root: Path, url_suffix: str = "", **settings):
    access = SFTPAccess(str(server.known_hosts), (str(server.client_key),))
    return open_storage(server.url(root) + url_suffix, sftp_access=access,
                        settings=Settings(webdav_retry_delay=0.01, webdav_deadline=20, **settings))


def test_leftovers_of_interrupted_writes_are_reported_and_removed(sftp_server: SSHServer):
    root = sftp_server.scratch()
    with _open(sftp_server, root) as storage:
        storage.create()
        storage.write("data/00/pack", b"whole")
        old = root / "data" / "00" / (".tmp-" + "a" * 32)
        old.write_bytes(b"x" * 1000)
        hour_ago = time.time() - 3600
        os.utime(old, (hour_ago, hour_ago))
        stranger = root / "data" / ".tmp-notours"
        stranger.write_bytes(b"z")
        [leftover] = storage.temporaries()
        assert leftover.name == "data/00/.tmp-" + "a" * 32 and leftover.size == 1000 and leftover.age > 3000
        storage.remove_temporary(leftover.name)
        storage.remove_temporary(leftover.name)  # gone already: fine
        assert storage.temporaries() == [] and stranger.exists() and not old.exists()
        with pytest.raises(Exception):
            storage.remove_temporary("data/.tmp-notours")


def test_quota_is_the_servers_file_system(sftp_server: SSHServer):
    with _open(sftp_server, sftp_server.scratch()) as storage:
        used, available = storage.quota()  # before the folder exists: its parent's
    st = os.statvfs(sftp_server.root)
    assert available is not None and used is not None
    assert abs(available - st.f_bavail * st.f_frsize) < 1024 ** 3


def test_connections_from_the_url_and_the_settings(sftp_server: SSHServer):
    root = sftp_server.scratch()
    with _open(sftp_server, root, "?connections=3") as storage:
        storage.create()
        assert storage.info.connections == 3
        assert len(storage.inner._clients) == 3  # one SFTP channel (one server process) each
    with _open(sftp_server, root, "?connections=3", connections=5) as storage:
        assert storage.info.connections == 5
    with _open(sftp_server, root) as storage:
        assert storage.info.connections == 4
    with pytest.raises(UsageError):
        _open(sftp_server, root, "?conections=3")


def test_a_dropped_connection_is_opened_again(sftp_server: SSHServer):
    root = sftp_server.scratch()
    with _open(sftp_server, root) as storage:
        storage.create()
        storage.write("keys/k", b"key")
        assert sftp_server.kill_sessions() > 0
        assert storage.read("keys/k") == b"key"
        storage.write("keys/k2", b"key2")
        assert {i.name for i in storage.list("keys")} == {"keys/k", "keys/k2"}
        assert storage.inner.connects == 2
        assert storage.retries >= 1


def test_a_port_that_does_not_speak_ssh_fails_fast(sftp_server: SSHServer):
    import socket
    import threading

    from strongroom.errors import StorageUnreachable

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_like_a_web_server() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=answer_like_a_web_server, daemon=True).start()
    access = SFTPAccess(str(sftp_server.known_hosts), (str(sftp_server.client_key),))
    try:
        storage = open_storage(f"sftp://{sftp_server.user}@127.0.0.1:{port}//srv", sftp_access=access,
                               settings=Settings(webdav_retry_delay=0.01, webdav_deadline=20))
        with storage, pytest.raises(StorageUnreachable) as caught:
            storage.exists()
        assert f"127.0.0.1:{port}" in str(caught.value) and "SSH" in str(caught.value)
        assert storage.retries == 0
    finally:
        listener.close()


def test_a_wrong_user_is_refused_without_retries(sftp_server: SSHServer):
    from strongroom.errors import AuthenticationFailed

    access = SFTPAccess(str(sftp_server.known_hosts), (str(sftp_server.client_key),))
    storage = open_storage(f"sftp://nobody-here@127.0.0.1:{sftp_server.port}//srv", sftp_access=access,
                           settings=Settings(webdav_retry_delay=0.01, webdav_deadline=20))
    with storage:
        with pytest.raises(AuthenticationFailed) as caught:
            storage.exists()
        assert "nobody-here" in str(caught.value)
        with pytest.raises(AuthenticationFailed):
            storage.exists()  # refused once: not sent again
        assert storage.retries == 0


def test_a_server_gone_mid_run_is_waited_for_and_told_once(tmp_path: Path):
    # Its own server, stopped in the middle: after a first login, a refused
    # connection is trouble to wait out (until the deadline), not a set-up mistake.
    from sftp_server import run_sshd
    from strongroom.errors import StorageError, StorageUnreachable

    events: list[dict] = []
    with run_sshd() as server:
        # Read at the first login, once: the key files may go with the server.
        access = SFTPAccess(str(server.known_hosts), (str(server.client_key),))
        storage = open_storage(server.url(server.scratch()), sftp_access=access, on_event=events.append,
                               settings=Settings(webdav_retry_delay=0.02, webdav_deadline=1.5))
        storage.create()
        storage.write("config", b"c")
    with storage:
        with pytest.raises(StorageError) as caught:
            storage.read("config")
    assert not isinstance(caught.value, StorageUnreachable)
    assert "gave up after" in str(caught.value)
    waits = [e for e in events if e["type"] == "waiting"]
    assert len(waits) == 1 and "sftp host 127.0.0.1" in waits[0]["message"]
    assert storage.retries >= 2


def test_hashed_known_hosts_entries_are_trusted(sftp_server: SSHServer, tmp_path: Path):
    import shutil
    import subprocess

    hashed = Path(shutil.copy(sftp_server.known_hosts, tmp_path / "known_hosts"))
    subprocess.run(["ssh-keygen", "-H", "-f", str(hashed)], check=True, capture_output=True)
    assert "127.0.0.1" not in hashed.read_text()
    access = SFTPAccess(str(hashed), (str(sftp_server.client_key),))
    with open_storage(sftp_server.url(sftp_server.scratch()), sftp_access=access) as storage:
        assert storage.exists() is False


def test_fewer_channels_where_the_server_allows_fewer_sessions():
    from sftp_server import run_sshd

    with run_sshd(max_sessions=2) as server:
        access = SFTPAccess(str(server.known_hosts), (str(server.client_key),))
        with open_storage(server.url(server.scratch()) + "?connections=5", sftp_access=access) as storage:
            storage.create()
            storage.write("data/x", b"x")
            assert storage.read("data/x") == b"x"
            assert len(storage.inner._clients) == 2
