"""Managed configurations on S3 (the radosgw of tests/s3_server.py) and SFTP
(the sshd of tests/sftp_server.py): clients of kind s3 and sftp added with
`client add`, a configuration on each with the other as its second target,
backup, restore, status, export and apply, a DR plan; and the S3 secret key and
the SSH key's passphrase never in the catalog, the export or the console."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from catalog_cli import CatalogCLI
from console_server import ConsoleServer
from sftp_server import SSHServer
from treeutil import snapshot_tree
import forked_cli

REPO_PASSWORD = "the repository's own password"


def make_data(root: Path) -> Path:
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "notes.txt").write_text("notes\n" * 1000)
    (root / "photo.bin").write_bytes(bytes(range(256)) * 2000)
    return root


def passphrased_key(server: SSHServer, tmp_path: Path, passphrase: str) -> Path:
    """A copy of the user key the server accepts, encrypted with `passphrase`."""
    key = tmp_path / "id_sftp"
    key.write_bytes(server.client_key.read_bytes())
    key.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-f", str(key), "-P", "", "-N", passphrase], check=True,
                   capture_output=True)
    return key


@dataclass
class Estate:
    """One machine's catalog with an S3 client (ceph) and an SFTP client (ssh),
    a configuration on each (ons3, onsftp) with the other as its second target,
    each backed up once."""

    cli: ConsoleServer
    secrets: dict[str, str]  # the S3 secret key and the SSH key's passphrase
    data: Path
    sftp_root: Path
    sftp_port: int
    s3_url: str
    tmp: Path


@pytest.fixture(scope="module")
def estate(tmp_path_factory, s3_cluster, sftp_server: SSHServer) -> Estate:
    from s3_server import _new_bucket
    tmp = tmp_path_factory.mktemp("managed")
    bucket = _new_bucket(s3_cluster)
    (tmp / "old").mkdir()
    cli = ConsoleServer(tmp / "old")
    cli.env.update(REPO_PW=REPO_PASSWORD, STRONGROOM_WEBDAV_DEADLINE="60", STRONGROOM_WEBDAV_RETRY_DELAY="0.05",
                   SSH_AUTH_SOCK="")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        cli.env.pop(key, None)
    secret_file = tmp / "s3-secret"
    secret_file.write_text(s3_cluster.secret_key + "\n")
    passphrase = "a passphrase for the SFTP key"
    phrase_file = tmp / "ssh-phrase"
    phrase_file.write_text(passphrase)
    key = passphrased_key(sftp_server, tmp, passphrase)
    root = sftp_server.scratch()
    root.mkdir()
    cli.ok("client", "add", "ceph", "--url", bucket.url, "--user", s3_cluster.access_key,
           "--s3-secret-key-file", str(secret_file))
    cli.ok("client", "add", "ssh", "--url", sftp_server.url(root), "--sftp-key-file", str(key),
           "--sftp-known-hosts", str(sftp_server.known_hosts), "--sftp-key-passphrase-file", str(phrase_file))
    data = make_data(tmp / "data")
    for name, client, other in (("ons3", "ceph", "ssh"), ("onsftp", "ssh", "ceph")):
        cli.ok("config", "add", name, "--source", str(data), "--client", client, "--target-path", "home",
               "--password-env", "REPO_PW", "--keep-last", "1",
               "--copy-to", f"copy-of-{name}", "--copy-to-client", other, "--copy-to-password-env", "REPO_PW")
        cli.ok("backup", "--config", name)
    return Estate(cli, {"s3": s3_cluster.secret_key, "passphrase": passphrase}, data, root, sftp_server.port, bucket.url, tmp)


def assert_no_secret(data: bytes | str, secrets: dict) -> None:
    raw = data.encode() if isinstance(data, str) else data
    for name, value in secrets.items():
        assert value.encode() not in raw, f"the {name} secret leaked"


def test_configurations_on_s3_and_sftp_back_up_copy_restore_and_round_trip(estate: Estate, s3_cluster):
    cli, secrets, data, tmp = estate.cli, estate.secrets, estate.data, estate.tmp
    # S3: a second point, forget and prune by the policy (keep_last 1), a full check.
    cli.ok("backup", "--config", "ons3")
    assert len(cli.json("snapshots", "--config", "ons3")[-1]) == 2
    cli.ok("forget", "--config", "ons3", "--prune")
    assert len(cli.json("snapshots", "--config", "ons3")[-1]) == 1
    cli.ok("check", "--config", "ons3", "--read-data")
    for name in ("ons3", "onsftp"):
        restored = tmp / f"restored-{name}"
        cli.ok("restore", "latest", "--config", name, "--target", str(restored))
        assert snapshot_tree(restored / data.relative_to("/")) == snapshot_tree(data)

    status = {s["config"]: s for s in json.loads(cli.ok("status", "--json"))}
    for name in ("ons3", "onsftp"):
        assert status[name]["status"] == "green" and status[name]["copy_error"] is None
        assert status[name]["last_copy"] is not None
    # The second target on S3 holds the SFTP configuration's copy, opened as a repository of its own.
    second = forked_cli.run(["snapshots", "--json", "-r",
                             estate.s3_url + "/copy-of-onsftp"],
                            env={**cli.env, "STRONGROOM_PASSWORD": REPO_PASSWORD,
                                 "AWS_ACCESS_KEY_ID": s3_cluster.access_key,
                                 "AWS_SECRET_ACCESS_KEY": secrets["s3"]}, text=True)
    assert second.returncode == 0, second.stderr
    assert len(json.loads(second.stdout.splitlines()[-1])) == 1

    # `client test` writes and removes a probe; a wrong secret key is refused in one line, never echoed.
    for client in ("ceph", "ssh"):
        assert cli.json("client", "test", client, "--path", "home")[-1]["ok"] is True
    wrong = tmp / "wrong-secret"
    wrong.write_text("not-the-secret-key")
    cli.ok("client", "add", "wrong", "--url", estate.s3_url, "--user", s3_cluster.access_key,
           "--s3-secret-key-file", str(wrong))
    refused = cli.run("client", "test", "wrong", "--path", "home")
    assert refused.returncode != 0 and "not-the-secret-key" not in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    secrets = {**secrets, "wrong": "not-the-secret-key"}
    cli.ok("client", "remove", "wrong")
    for bad in ("s3://bucket/prefix", "s3:https://KEY:hunter2-in-url@s3.example.net/bucket"):
        done = cli.run("client", "add", "bad", "--url", bad, "--user", "x", "--s3-secret-key-file", str(wrong))
        assert done.returncode != 0 and "hunter2" not in done.stderr and "Traceback" not in done.stderr

    shown = cli.json("config", "show", "ons3")[0]
    assert shown["target"] == estate.s3_url + "/home"
    assert shown["copy_to"]["target"] == "copy-of-ons3 on SFTP server ssh"
    text = cli.ok("export-config")
    assert 'vendor = "s3"' in text and 'vendor = "sftp"' in text and "key_file = " in text
    for output in (text, json.dumps(shown), cli.ok("client", "list", "--json"), json.dumps(status),
                   (tmp / "old" / "catalog.db").read_bytes()):
        assert_no_secret(output, secrets)
    (tmp / "strongroom.toml").write_text(text)
    assert "no changes" in cli.ok("apply", str(tmp / "strongroom.toml"))

    # The console shows the targets in words, and never a secret.
    with cli:
        cli.start()
        browser = cli.signed_in()
        answers = [browser.get(path) for path in ("/api/configs", "/api/configs/onsftp", "/api/clients",
                                                  "/configs/ons3", "/configs/onsftp", "/")]
        browser.close()
    assert all(a.status_code == 200 for a in answers), [a.status_code for a in answers]
    assert answers[1].json()["target"] == f"sftp://root@127.0.0.1:{estate.sftp_port}/{estate.sftp_root}/home"
    assert answers[1].json()["copy_to"]["target"] == "copy-of-onsftp on S3 bucket ceph"
    assert {c["vendor"] for c in answers[2].json()} >= {"s3", "sftp"}
    assert estate.s3_url + "/home" in answers[3].text
    for answer in answers:
        assert_no_secret(answer.content, secrets)


def test_a_dr_plan_over_s3_and_sftp_runs_and_its_kit_recovers_on_a_new_machine(estate: Estate):
    cli, secrets, data, tmp = estate.cli, estate.secrets, estate.data, estate.tmp
    cli.ok("dr", "create", "both", "--order", "ons3,onsftp", "--target-base", str(tmp / "restore-here"))
    rehearsal = cli.json("dr", "test", "both")[-1]
    assert rehearsal["verdict"] == "pass", rehearsal

    kit = cli.ok("dr", "kit", "both")
    assert "S3 bucket:" in kit and "SFTP server:" in kit and "SSH key file:" in kit
    assert "not in this kit" in kit
    assert_no_secret(kit, secrets)
    cli.ok("dr", "kit", "both", "--include-passwords", "--output", str(tmp / "kit.txt"))
    assert secrets["s3"] in (tmp / "kit.txt").read_text()

    (tmp / "new").mkdir()
    new = CatalogCLI(tmp / "new")
    new.env.update(SSH_AUTH_SOCK="", STRONGROOM_WEBDAV_DEADLINE="60", STRONGROOM_WEBDAV_RETRY_DELAY="0.05")
    target = tmp / "recovered"
    done = new.json("dr", "recover", "--kit", str(tmp / "kit.txt"), "--plan", "both",
                    "--target-base", str(target))[-1]
    assert done["verdict"] == "pass", done
    for name in ("ons3", "onsftp"):
        assert snapshot_tree(target / name / data.relative_to("/")) == snapshot_tree(data)
    assert_no_secret((tmp / "new" / "catalog.db").read_bytes(), secrets)
    assert {c["name"] for c in new.json("config", "list")[:-1]} == {"ons3", "onsftp"}
