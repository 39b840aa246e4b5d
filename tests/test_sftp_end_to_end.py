"""The whole cycle on Debian's OpenSSH server, through the command line: init,
backup, snapshots, restore, check --read-data, forget --prune; and the ways a
login fails (an unknown or changed host key, a wrong key, a password in the
URL, nothing listening), and a connection killed in the middle of a backup."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import asyncssh

from conftest import CLI
from sftp_server import SSHServer
from treeutil import snapshot_tree

MiB = 1024 * 1024


def summary(done) -> dict:
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def sftp_env(server: SSHServer, root: Path, **extra: str) -> dict:
    env = {"STRONGROOM_REPO": server.url(root), "STRONGROOM_SFTP_KEY_FILE": str(server.client_key),
           "STRONGROOM_SFTP_KNOWN_HOSTS": str(server.known_hosts), "SSH_AUTH_SOCK": "",
           "STRONGROOM_WEBDAV_DEADLINE": "60", "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05"}
    return {**env, **extra}


def make_source(tmp_path: Path, random_mib: int = 3) -> Path:
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    rnd = random.Random(5)
    for i in range(random_mib):
        (src / f"big{i}.bin").write_bytes(rnd.randbytes(MiB))
    (src / "sub" / "text.txt").write_text("strongroom\n" * 5000)
    (src / "sub" / "deeper" / "empty").write_bytes(b"")
    (src / "link").symlink_to("sub/text.txt")
    return src


def test_backup_restore_check_and_prune(sftp_server: SSHServer, tmp_path: Path):
    src = make_source(tmp_path)
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    root = sftp_server.scratch()
    env = sftp_env(sftp_server, root)

    assert summary(cli.run("init", "--pack-size", "1", "--json", env=env))["encrypted"] is True
    assert (root / "config").is_file()
    first = summary(cli.run("backup", str(src), "--json", env=env))
    assert first["kind"] == "full" and first["files_new"] == 6
    (src / "sub" / "text.txt").write_text("changed\n")
    second = summary(cli.run("backup", str(src), "--json", env=env))
    assert second["kind"] == "incremental" and second["files_changed"] == 1
    assert len(summary(cli.run("snapshots", "--json", env=env))) == 2

    target = tmp_path / "restore"
    restored = summary(cli.run("restore", "latest", "--target", str(target), "--verify", "--json", env=env))
    assert restored["files_verified"] == 5
    assert snapshot_tree(target / src.relative_to("/")) == snapshot_tree(src)

    report = summary(cli.run("check", "--read-data", "--json", env=env))
    assert report["ok"] and report["packs_read"] == report["packs"] >= 3

    summary(cli.run("forget", "--keep-last", "1", "--prune", "--json", env=env))
    after = summary(cli.run("check", "--json", env=env))
    assert after["ok"] and after["snapshots"] == 1
    # Nothing half-written is left beside the objects.
    assert not [p for p in root.rglob(".tmp-*")]


def test_an_unknown_host_key_is_refused_with_its_fingerprint(sftp_server: SSHServer, tmp_path: Path):
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    root = sftp_server.scratch()
    started = time.monotonic()
    done = cli.run("init", env=sftp_env(sftp_server, root, STRONGROOM_SFTP_KNOWN_HOSTS=str(sftp_server.unknown_hosts)))
    message = done.stderr.decode()
    assert done.returncode != 0
    assert "unknown" in message and sftp_server.host_fingerprint in message
    assert "ssh-keyscan" in message
    assert not root.exists()
    # Not waited for: a set-up mistake fails at once (the deadline is 60 s).
    assert time.monotonic() - started < 30

    missing = cli.run("init", env=sftp_env(sftp_server, root, STRONGROOM_SFTP_KNOWN_HOSTS=str(tmp_path / "none")))
    assert missing.returncode != 0 and sftp_server.host_fingerprint in missing.stderr.decode()


def test_a_changed_host_key_is_refused(sftp_server: SSHServer, tmp_path: Path):
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    root = sftp_server.scratch()
    done = cli.run("init", env=sftp_env(sftp_server, root, STRONGROOM_SFTP_KNOWN_HOSTS=str(sftp_server.changed_hosts)))
    message = done.stderr.decode()
    assert done.returncode != 0
    assert "CHANGED" in message and sftp_server.host_fingerprint in message and "ssh-keygen -R" in message
    assert not root.exists()


def test_a_wrong_key_is_refused(sftp_server: SSHServer, tmp_path: Path):
    other = tmp_path / "other_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(other))
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    root = sftp_server.scratch()
    done = cli.run("init", env=sftp_env(sftp_server, root, STRONGROOM_SFTP_KEY_FILE=str(other)))
    assert done.returncode != 0
    assert "refused the key" in done.stderr.decode()
    assert not root.exists()


def test_an_encrypted_key_with_its_passphrase_from_a_file(sftp_server: SSHServer, tmp_path: Path):
    key = asyncssh.generate_private_key("ssh-ed25519")
    secret = "a passphrase of the user key"
    (tmp_path / "locked_key").write_bytes(key.export_private_key(passphrase=secret, rounds=50))
    (tmp_path / "locked_key").chmod(0o600)
    with open(sftp_server.directory / "authorized_keys", "ab") as f:
        f.write(key.export_public_key())
    (tmp_path / "passphrase").write_text(secret + "\n")
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    root = sftp_server.scratch()
    env = sftp_env(sftp_server, root, STRONGROOM_SFTP_KEY_FILE=str(tmp_path / "locked_key"))
    without = cli.run("init", env=env)
    assert without.returncode == 2 and "passphrase" in without.stderr.decode()
    summary(cli.run("init", "--json", env={**env, "STRONGROOM_SFTP_KEY_PASSPHRASE_FILE": str(tmp_path / "passphrase")}))
    assert (root / "config").is_file()


def test_a_password_in_the_url_is_refused_before_any_connection(sftp_server: SSHServer, tmp_path: Path):
    # The other URLs refused before a connection: tests/test_sftp_storage.py.
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    repo = f"sftp://{sftp_server.user}:secret@127.0.0.1:{sftp_server.port}//x"
    logins = sum("Accepted publickey" in line or "Connection from" in line for line in sftp_server.log)
    done = cli.run("snapshots", env={**sftp_env(sftp_server, tmp_path), "STRONGROOM_REPO": repo})
    assert done.returncode == 2, done.stderr.decode()
    assert "never put a password" in done.stderr.decode() and "secret" not in done.stderr.decode()
    assert sum("Accepted publickey" in line or "Connection from" in line for line in sftp_server.log) == logins


def test_nothing_listening_fails_fast(sftp_server: SSHServer, tmp_path: Path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: the connection is refused
        cli = CLI(tmp_path / "unused", tmp_path / "cache")
        repo = f"sftp://{sftp_server.user}@127.0.0.1:{port}//tmp/x"
        done = cli.run("snapshots", env={**sftp_env(sftp_server, tmp_path), "STRONGROOM_REPO": repo})
    assert done.returncode != 0
    assert f"127.0.0.1:{port}" in done.stderr.decode() and "waiting" not in done.stderr.decode()


def test_a_connection_killed_mid_backup_is_retried(sftp_server: SSHServer, tmp_path: Path):
    src = make_source(tmp_path, random_mib=12)
    cli = CLI(tmp_path / "unused", tmp_path / "cache")
    root = sftp_server.scratch()
    env = sftp_env(sftp_server, root)
    summary(cli.run("init", "--pack-size", "1", "--json", env=env))
    logins_before = sum("Accepted publickey" in line for line in sftp_server.log)
    proc = cli.popen("backup", str(src), "--json", "--connections", "2", env=env)
    try:
        deadline = time.monotonic() + 120
        # init made the folders data/00 to data/ff: wait for packs in them.
        while sum(p.is_file() for p in (root / "data").rglob("[0-9a-f]*")) < 4 and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert proc.poll() is None, "the backup ended before its connection was killed"
        assert sftp_server.kill_sessions() > 0
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    s = json.loads(out.decode().strip().splitlines()[-1])
    assert s["files_new"] == 15  # 12 random files, a text file, an empty one, a symlink
    # It logged in again after the kill, and went on.
    assert sum("Accepted publickey" in line for line in sftp_server.log) > logins_before + 1

    target = tmp_path / "restore"
    summary(cli.run("restore", "latest", "--target", str(target), "--json", env=env))
    assert snapshot_tree(target / src.relative_to("/")) == snapshot_tree(src)
    assert summary(cli.run("check", "--json", env=env))["ok"]
