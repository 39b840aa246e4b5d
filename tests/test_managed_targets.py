"""Managed configurations on S3 (the radosgw of tests/s3_server.py) and SFTP
(the sshd of tests/sftp_server.py): clients of kind s3 and sftp added with
`client add`, a configuration on each with the other as its second target,
backup, restore, status, export and apply, a DR plan; and the S3 secret key and
the SSH key's passphrase never in the catalog, the export or the console."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from catalog_cli import CatalogCLI
from console_server import ConsoleServer
from s3_server import S3Bucket
from sftp_server import SSHServer
from treeutil import snapshot_tree

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


def make_clients(tmp_path: Path, s3_bucket: S3Bucket, sftp_server: SSHServer) -> tuple[ConsoleServer, dict]:
    cli = ConsoleServer(tmp_path)
    cli.env.update(REPO_PW=REPO_PASSWORD, STRONGROOM_WEBDAV_DEADLINE="60", STRONGROOM_WEBDAV_RETRY_DELAY="0.05",
                   SSH_AUTH_SOCK="")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        cli.env.pop(key, None)
    cluster = s3_bucket.cluster
    secret_file = tmp_path / "s3-secret"
    secret_file.write_text(cluster.secret_key + "\n")
    passphrase = "a passphrase for the SFTP key"
    phrase_file = tmp_path / "ssh-phrase"
    phrase_file.write_text(passphrase)
    key = passphrased_key(sftp_server, tmp_path, passphrase)
    root = sftp_server.scratch()
    root.mkdir()
    cli.sftp_root = root
    cli.ok("client", "add", "ceph", "--url", s3_bucket.url, "--user", cluster.access_key,
           "--s3-secret-key-file", str(secret_file))
    cli.ok("client", "add", "ssh", "--url", sftp_server.url(root), "--sftp-key-file", str(key),
           "--sftp-known-hosts", str(sftp_server.known_hosts), "--sftp-key-passphrase-file", str(phrase_file))
    secrets = {"s3": cluster.secret_key, "passphrase": passphrase}
    return cli, secrets


def assert_no_secret(data: bytes | str, secrets: dict) -> None:
    raw = data.encode() if isinstance(data, str) else data
    for name, value in secrets.items():
        assert value.encode() not in raw, f"the {name} secret leaked"


def test_configurations_on_s3_and_sftp_back_up_copy_restore_and_round_trip(
        tmp_path: Path, s3_bucket: S3Bucket, sftp_server: SSHServer):
    cli, secrets = make_clients(tmp_path, s3_bucket, sftp_server)
    data = make_data(tmp_path / "data")
    cli.ok("config", "add", "ons3", "--source", str(data), "--client", "ceph", "--target-path", "home",
           "--password-env", "REPO_PW", "--keep-last", "1",
           "--copy-to", "copy-of-ons3", "--copy-to-client", "ssh", "--copy-to-password-env", "REPO_PW")
    cli.ok("config", "add", "onsftp", "--source", str(data), "--client", "ssh", "--target-path", "home",
           "--password-env", "REPO_PW", "--keep-last", "1",
           "--copy-to", "copy-of-onsftp", "--copy-to-client", "ceph", "--copy-to-password-env", "REPO_PW")

    for name in ("ons3", "onsftp"):
        cli.ok("backup", "--config", name)
        (data / "docs" / f"{name}.txt").write_text(f"changed for {name}\n")
        cli.ok("backup", "--config", name)
        restored = tmp_path / f"restored-{name}"
        cli.ok("restore", "latest", "--config", name, "--target", str(restored))
        assert snapshot_tree(restored / data.relative_to("/")) == snapshot_tree(data)
        cli.ok("forget", "--config", name, "--prune")  # keep_last 1: one of the two points goes
        assert len(cli.json("snapshots", "--config", name)[-1]) == 1
        cli.ok("check", "--config", name, *(("--read-data",) if name == "ons3" else ()))

    status = {s["config"]: s for s in json.loads(cli.ok("status", "--json"))}
    for name in ("ons3", "onsftp"):
        assert status[name]["status"] == "green" and status[name]["copy_error"] is None
        assert status[name]["last_copy"] is not None

    # The second targets hold the copies: opened as repositories of their own.
    second = subprocess.run([sys.executable, "-m", "strongroom", "snapshots", "--json", "-r",
                             s3_bucket.url + "/copy-of-onsftp"],
                            env={**cli.env, "STRONGROOM_PASSWORD": REPO_PASSWORD,
                                 "AWS_ACCESS_KEY_ID": s3_bucket.cluster.access_key,
                                 "AWS_SECRET_ACCESS_KEY": secrets["s3"]}, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert len([p for p in json.loads(second.stdout.splitlines()[-1]) if p]) >= 1

    shown = cli.json("config", "show", "ons3")[0]
    assert shown["target"] == s3_bucket.url + "/home"
    text = cli.ok("export-config")
    assert 'vendor = "s3"' in text and 'vendor = "sftp"' in text and "key_file = " in text
    for output in (text, json.dumps(shown), cli.ok("client", "list", "--json"), json.dumps(status),
                   (tmp_path / "catalog.db").read_bytes()):
        assert_no_secret(output, secrets)
    (tmp_path / "strongroom.toml").write_text(text)
    assert "no changes" in cli.ok("apply", str(tmp_path / "strongroom.toml"))

    # The console shows the targets in words, and never a secret.
    with cli:
        cli.start()
        browser = cli.signed_in()
        answers = [browser.get(path) for path in ("/api/configs", "/api/configs/onsftp", "/api/clients",
                                                  "/configs/ons3", "/configs/onsftp", "/")]
        browser.close()
    assert all(a.status_code == 200 for a in answers), [a.status_code for a in answers]
    assert answers[1].json()["target"] == sftp_server.url(cli.sftp_root) + "/home"
    assert {c["vendor"] for c in answers[2].json()} >= {"s3", "sftp"}
    assert s3_bucket.url + "/home" in answers[3].text
    for answer in answers:
        assert_no_secret(answer.content, secrets)


def test_a_dr_plan_over_s3_and_sftp_runs_and_its_kit_recovers_on_a_new_machine(
        tmp_path: Path, s3_bucket: S3Bucket, sftp_server: SSHServer):
    (tmp_path / "old").mkdir()
    cli, secrets = make_clients(tmp_path / "old", s3_bucket, sftp_server)
    cli.env["STRONGROOM_PASSWORD"] = REPO_PASSWORD
    data = make_data(tmp_path / "data")
    for name, client in (("ons3", "ceph"), ("onsftp", "ssh")):
        cli.ok("config", "add", name, "--source", str(data), "--client", client, "--target-path", name,
               "--store-password")
        cli.ok("backup", "--config", name)
    cli.ok("dr", "create", "both", "--order", "ons3,onsftp", "--target-base", str(tmp_path / "restore-here"))
    rehearsal = cli.json("dr", "test", "both")[-1]
    assert rehearsal["verdict"] == "pass", rehearsal

    kit = cli.ok("dr", "kit", "both")
    assert "S3 bucket:" in kit and "SFTP server:" in kit and "SSH key file:" in kit
    assert "not in this kit" in kit
    assert_no_secret(kit, secrets)
    cli.ok("dr", "kit", "both", "--include-passwords", "--output", str(tmp_path / "kit.txt"))
    assert secrets["s3"] in (tmp_path / "kit.txt").read_text()

    new = CatalogCLI(tmp_path / "new")
    new.env.update(SSH_AUTH_SOCK="", STRONGROOM_WEBDAV_DEADLINE="60", STRONGROOM_WEBDAV_RETRY_DELAY="0.05")
    target = tmp_path / "recovered"
    done = new.json("dr", "recover", "--kit", str(tmp_path / "kit.txt"), "--plan", "both",
                    "--target-base", str(target))[-1]
    assert done["verdict"] == "pass", done
    for name in ("ons3", "onsftp"):
        assert snapshot_tree(target / name / data.relative_to("/")) == snapshot_tree(data)
    assert_no_secret((tmp_path / "new" / "catalog.db").read_bytes(), secrets)
    shown = {c["name"]: c for c in new.json("config", "list")[:-1]}
    assert set(shown) == {"ons3", "onsftp"}
