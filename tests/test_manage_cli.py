"""The managed-backup commands, run as a person runs them: clients, configs,
backup, snapshots, restore, check and stats with --config, jobs and key
export, against local directories and a real WebDAV server (wsgidav
in-process). The old names of these commands are tested in test_vocabulary.py."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faults import FaultMiddleware
from treeutil import snapshot_tree
from webdav_servers import free_port, run_wsgidav
import forked_cli

KiB = 1024
MiB = 1024 * 1024

# Variables of the surrounding shell that would change what is tested.
_SCRUBBED = ("STRONGROOM_PASSWORD", "STRONGROOM_PASSWORD_FILE", "STRONGROOM_PASSWORD_COMMAND", "STRONGROOM_REPO",
             "STRONGROOM_WEBDAV_PASSWORD", "STRONGROOM_WEBDAV_PASSWORD_FILE", "STRONGROOM_WEBDAV_VENDOR")


class Managed:
    """The real `strongroom` in subprocesses, with its catalog, secrets and cache in tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.catalog = tmp_path / "state" / "catalog.db"
        self.secrets = tmp_path / "state" / "secrets.json"
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        env.update(STRONGROOM_CATALOG=str(self.catalog), STRONGROOM_SECRETS=str(self.secrets),
                   STRONGROOM_CACHE_DIR=str(tmp_path / "cache"), STRONGROOM_SECRETS_BACKEND="file",
                   STRONGROOM_WEBDAV_RETRY_DELAY="0.05", STRONGROOM_WEBDAV_DEADLINE="30")
        self.env = env

    def run(self, *args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
        done = forked_cli.run([*args],
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

    def popen(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        # Ctrl-C as a terminal sends it: a suite started in the background
        # (SIGINT ignored, which a child keeps through exec) must not make the
        # command deaf to it.
        return subprocess.Popen([sys.executable, "-m", "strongroom", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env={**self.env, **(env or {})},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def jobs(self, *args: str) -> list[dict]:
        return [e for e in self.json("jobs", *args) if e["type"] == "job"]

    def stored_secrets(self) -> dict[str, str]:
        return json.loads(self.secrets.read_text())["secrets"]


@pytest.fixture
def m(tmp_path) -> Managed:
    return Managed(tmp_path)


def restored(target: Path, source: Path) -> Path:
    """Where a restore into `target` puts `source` (its absolute path below the target)."""
    return target / str(source).lstrip("/")


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr.decode()
    assert lines[0].startswith("strongroom: ") and "Traceback" not in lines[0]
    return lines[0]


def points_of(m: Managed, name: str, *args: str) -> list[dict]:
    return json.loads(m.run("snapshots", "--config", name, *args, "--json", check=True).stdout)


# ---- configurations --------------------------------------------------------------------------


def test_config_add_list_show_edit_remove(m, tmp_path, src):
    repo = tmp_path / "repo"
    done = m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(repo),
                 "--exclude", "*.tmp", "--tag", "daily", check=True)
    assert "strongroom key export docs" in done.stdout.decode()
    assert (repo / "config").is_file()
    [key] = m.stored_secrets().values()

    [listed] = [e for e in m.json("config", "list") if e["type"] == "config"]
    assert listed["name"] == "docs" and listed["source_paths"] == [str(src)]
    assert listed["target"] == str(repo) and listed["encrypt"] is True and listed["codec"] == "zstd"
    assert listed["password"] == "secrets store" and listed["last_job"] is None

    shown = m.run("config", "show", "docs", check=True).stdout.decode()
    assert "daily" in shown and "*.tmp" in shown and str(repo) in shown
    shown_json = m.run("config", "show", "docs", "--json", check=True).stdout.decode()
    catalog_bytes = b"".join(p.read_bytes() for p in m.catalog.parent.glob("catalog.db*"))
    for text in (shown, shown_json):
        assert key not in text
    assert key.encode() not in catalog_bytes

    assert "connections" not in shown
    m.run("config", "edit", "docs", "--compression", "lz4", "--tag", "weekly", "--exclude", "*.bak",
          "--connections", "3", check=True)
    [edited] = [e for e in m.json("config", "show", "docs") if e["type"] == "config"]
    assert edited["codec"] == "lz4" and edited["tags"] == ["weekly"] and edited["excludes"] == ["*.bak"]
    assert edited["connections"] == 3 and "connections" in m.run("config", "show", "docs").stdout.decode()
    assert edited["source_paths"] == [str(src)] and edited["target"] == str(repo)
    assert list(m.stored_secrets().values()) == [key]  # editing keeps the key

    done = m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(tmp_path / "other"))
    assert done.returncode == 2 and "exists already" in one_error_line(done)
    done = m.run("config", "add", "bad", "--source", str(src))
    assert done.returncode == 2 and "--target-dir" in one_error_line(done)

    m.run("config", "remove", "docs", "--without-kit", check=True)  # its generated key: no kit exported
    assert m.summary("config", "list")["count"] == 0
    done = m.run("config", "show", "docs")
    assert done.returncode == 2 and "no backup configuration named 'docs'" in one_error_line(done)
    assert (repo / "config").is_file()  # the repository stays


# ---- run, points, recover, jobs --------------------------------------------------------------


def test_run_points_and_recover_at_a_time(m, tmp_path, src):
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(tmp_path / "repo"), check=True)
    first = m.summary("backup", "--config", "docs", "--full")
    assert first["status"] == "succeeded" and first["kind"] == "full" and first["files_new"] == 3
    before = snapshot_tree(src)

    (src / "b.txt").write_bytes(b"changed\n" * 500)
    (src / "new.txt").write_bytes(b"new\n")
    done = m.run("backup", "--config", "docs", check=True)
    lines = done.stdout.decode().splitlines()
    assert lines[-1].startswith("snapshot ") and lines[-1].endswith("(incremental)")
    second_id = lines[-1].split()[1]
    after = snapshot_tree(src)

    points = points_of(m, "docs")
    assert [p["id"] for p in points] == [first["snapshot"], second_id]
    assert [p["kind"] for p in points] == ["full", "incremental"]
    assert points[1]["total_files"] == 4
    assert points_of(m, "docs", "--since", points[1]["time"]) == points[1:]
    assert points_of(m, "docs", "--until", points[0]["time"]) == points[:1]

    events = m.json("restore", "--config", "docs", "--target", str(tmp_path / "latest"))
    assert snapshot_tree(restored(tmp_path / "latest", src)) == after
    statuses = [e for e in events if e["type"] == "status"]
    assert statuses and all({"processed_files", "total_files", "processed_bytes", "total_bytes", "percent", "rate",
                             "eta"} <= e.keys() for e in statuses)
    summary = events[-1]
    assert summary["status"] == "completed" and summary["point"] == second_id
    assert summary["processed_files"] == summary["total_files"] and summary["percent"] == 100.0

    m.run("restore", "--config", "docs", "--target", str(tmp_path / "then"), "--at", points[0]["time"], check=True)
    assert snapshot_tree(restored(tmp_path / "then", src)) == before
    m.run("restore", "--config", "docs", "--target", str(tmp_path / "byid"), first["snapshot"][:10], check=True)
    assert snapshot_tree(restored(tmp_path / "byid", src)) == before
    done = m.run("restore", "--config", "docs", "--target", str(tmp_path / "x"), "--at", "2001-01-01 00:00")
    assert done.returncode == 1 and "no snapshot at or before 2001-01-01" in one_error_line(done)

    jobs = m.jobs("docs")
    assert [(j["kind"], j["status"], j["snapshot_id"]) for j in jobs] == [
        ("incremental", "succeeded", second_id), ("full", "succeeded", first["snapshot"])]
    table = m.run("jobs", check=True).stdout.decode()
    assert table.count("succeeded") == 2 and second_id[:8] in table


def test_a_job_is_listed_with_the_kind_of_the_point_it_made(m, tmp_path, src):
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(tmp_path / "repo"), check=True)
    first = m.summary("backup", "--config", "docs")  # incremental asked for, but there is no parent yet
    assert first["status"] == "succeeded" and first["kind"] == "full"
    assert first["snapshot_kind"] == "full" and first["requested_kind"] == "incremental"
    second = m.summary("backup", "--config", "docs")
    assert second["kind"] == "incremental"
    assert [(j["kind"], j["snapshot_id"]) for j in m.jobs("docs")] == [
        ("incremental", second["snapshot"]), ("full", first["snapshot"])]
    assert [p["kind"] for p in points_of(m, "docs")] == ["full", "incremental"]
    rows = m.run("jobs", "docs", check=True).stdout.decode().splitlines()[1:3]
    assert rows[0].split()[2] == "incremental" and rows[1].split()[2] == "full"


def test_run_without_waiting_queues_a_job_that_runs_in_the_background(m, tmp_path, src):
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(tmp_path / "repo"), check=True)
    done = m.run("backup", "--config", "docs", "--no-wait", "--priority", "4", check=True)
    job_id = int(done.stdout.decode().split()[1])
    deadline = time.monotonic() + 60
    while True:
        [job] = [j for j in m.jobs("docs") if j["id"] == job_id]
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert job["status"] == "succeeded" and job["priority"] == 4
    assert [p["id"] for p in points_of(m, "docs")] == [job["snapshot_id"]]


def test_run_is_stopped_by_ctrl_c(m, tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    rng = random.Random(7)
    for i in range(4):
        (big / f"f{i}").write_bytes(rng.randbytes(24 * MiB))
    repo = tmp_path / "repo"
    m.run("config", "add", "big", "--source", str(big), "--target-dir", str(repo), "--compression", "gzip",
          check=True)
    proc = m.popen("backup", "--config", "big", "--json")
    for line in proc.stdout:  # gzip on random data is slow: the backup is under way
        event = json.loads(line)
        if event["type"] == "status" and event.get("bytes_read", 0) > 0:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert "interrupted" in err.decode().splitlines()[-1]
    [job] = m.jobs("big")
    assert job["status"] == "cancelled" and job["attempts"] == 1
    assert not os.listdir(repo / "locks")
    assert points_of(m, "big") == []


# ---- validate and usage --------------------------------------------------------------------------


def test_validate_quick_and_deep_then_a_flipped_byte(m, tmp_path, src):
    repo = tmp_path / "repo"
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(repo), "--compression", "none",
          check=True)
    point = m.summary("backup", "--config", "docs")["snapshot"]
    quick = m.summary("check", "--config", "docs")
    assert quick["ok"] and quick["backup_id"] == point and quick["packs_read"] == 0 and quick["blobs_checked"] >= 4
    deep = m.summary("check", "--config", "docs", "--read-data", "--snapshot", point[:8])
    assert deep["ok"] and deep["packs_read"] == deep["packs_checked"] >= 2
    assert deep["blobs_authenticated"] == deep["blobs_checked"]

    pack = max((p for p in (repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    os.chmod(pack, 0o600)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x01
    pack.write_bytes(bytes(data))

    # Quick mode checks presence and sizes only, so it cannot see a flipped bit.
    assert m.run("check", "--config", "docs").returncode == 0
    done = m.run("check", "--config", "docs", "--read-data")
    assert done.returncode == 1
    out = done.stdout.decode()
    assert f"damaged: pack {pack.name[:16]}" in out and re.search(r"\d+ problems? found", out)
    report = json.loads(m.run("check", "--config", "docs", "--read-data", "--json").stdout)
    assert not report["ok"] and any(pack.name[:16] in p for p in report["problems"])


def test_validate_looks_at_its_point_only_and_knows_the_kit(m, tmp_path, src):
    repo = tmp_path / "repo"
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(repo), check=True)
    first = m.summary("backup", "--config", "docs")["snapshot"]
    packs_of_first = set((repo / "data").rglob("*"))
    (src / "new.bin").write_bytes(random.Random(9).randbytes(200 * KiB))
    second = m.summary("backup", "--config", "docs")["snapshot"]
    only_second = [p for p in set((repo / "data").rglob("*")) - packs_of_first if p.is_file()]
    assert only_second

    report = m.summary("check", "--config", "docs")
    assert report["ok"] and report["backup_id"] == second
    assert any("single key and no recovery kit is on record" in a for a in report["advice"])
    m.run("key", "export", "docs", check=True)
    assert m.summary("check", "--config", "docs")["advice"] == []

    # A pack only the newer point needs is gone: the older point is still whole.
    only_second[0].unlink()
    older = m.summary("check", "--config", "docs", "--read-data", "--snapshot", first[:8])
    assert older["ok"] and older["packs_read"] == older["packs_checked"] >= 1
    assert older["blobs_authenticated"] == older["blobs_checked"] < report["blobs_checked"]
    done = m.run("check", "--config", "docs")
    assert done.returncode == 1
    assert f"damaged: pack {only_second[0].name[:16]} is missing" in done.stdout.decode()


def test_usage_reports_every_configuration(m, tmp_path, src):
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.bin").write_bytes(random.Random(2).randbytes(200 * KiB))
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(tmp_path / "r1"), check=True)
    m.run("config", "add", "more", "--source", str(other), "--target-dir", str(tmp_path / "r2"), check=True)
    m.run("backup", "--config", "docs", check=True)
    m.run("backup", "--config", "docs", check=True)
    m.run("backup", "--config", "more", check=True)
    usage = m.summary("stats", "--configs")
    src_bytes = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert usage["configs"]["docs"]["restore_size"] == src_bytes and usage["configs"]["docs"]["snapshots"] == 2
    assert usage["configs"]["more"]["restore_size"] == 200 * KiB and usage["configs"]["more"]["snapshots"] == 1
    assert usage["total"]["snapshots"] == 3 and usage["errors"] == {}
    assert usage["configs"]["more"]["stored_size"] > 0
    table = m.run("stats", "--configs", check=True).stdout.decode()
    assert "docs" in table and "more" in table and "total" in table


# ---- the recovery kit ------------------------------------------------------------------------------


def kit_fields(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


def test_key_export_prints_a_kit_that_opens_the_repository(m, tmp_path, src):
    repo = tmp_path / "repo"
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(repo), check=True)
    point = m.summary("backup", "--config", "docs")["snapshot"]
    out = m.run("key", "export", "docs", check=True).stdout.decode()
    kit = kit_fields(out)
    assert kit["repository"] == str(repo)
    assert "somewhere other than this machine" in out
    done = m.run("snapshots", "--repo", kit["repository"], "--json", env={"STRONGROOM_PASSWORD": kit["password"]})
    assert done.returncode == 0, done.stderr.decode()
    assert [e["id"] for e in json.loads(done.stdout)] == [point]
    done = m.run("snapshots", "--repo", str(repo), env={"STRONGROOM_PASSWORD": "not the key"})
    assert done.returncode == 12

    # A new machine: an empty catalog and secrets store, the kit, and the target.
    fresh = Managed(tmp_path / "new-machine")
    fresh.run("config", "add", "docs", "--source", str(src), "--target-dir", kit["repository"], "--store-password",
              env={"STRONGROOM_PASSWORD": kit["password"]}, check=True)
    assert [p["id"] for p in points_of(fresh, "docs")] == [point]

    m.run("config", "add", "plain", "--source", str(src), "--target-dir", str(tmp_path / "plain"), "--no-encrypt",
          check=True)
    done = m.run("key", "export", "plain")
    assert done.returncode == 2 and "not encrypted" in one_error_line(done)
    m.run("config", "add", "byenv", "--source", str(src), "--target-dir", str(tmp_path / "byenv"),
          "--password-env", "MY_PASSWORD", env={"MY_PASSWORD": "s3cret"}, check=True)
    done = m.run("key", "export", "byenv")
    assert done.returncode == 2 and "variable MY_PASSWORD" in one_error_line(done)
    assert "s3cret" not in done.stdout.decode() + done.stderr.decode()


def test_store_password_reads_it_as_the_repository_commands_do(m, tmp_path, src):
    repo = tmp_path / "repo"
    secret = tmp_path / "password.txt"
    secret.write_bytes(b"from a file \xff\n")  # not UTF-8, and a newline that is not part of it
    m.run("init", "--repo", str(repo), env={"STRONGROOM_PASSWORD_FILE": str(secret)}, check=True)
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(repo), "--store-password",
          env={"STRONGROOM_PASSWORD_COMMAND": f"cat {secret}"}, check=True)
    point = m.summary("backup", "--config", "docs")["snapshot"]
    done = m.run("snapshots", "--repo", str(repo), "--json", env={"STRONGROOM_PASSWORD_FILE": str(secret)})
    assert point in done.stdout.decode()

    done = m.run("config", "edit", "docs", "--store-password",
                 env={"STRONGROOM_PASSWORD_FILE": str(tmp_path / "missing")})
    assert done.returncode == 2 and "cannot read password file" in one_error_line(done)
    done = m.run("config", "edit", "docs", "--store-password")
    assert done.returncode == 2 and one_error_line(done).endswith(
        "--store-password: set STRONGROOM_PASSWORD, STRONGROOM_PASSWORD_FILE or STRONGROOM_PASSWORD_COMMAND")


SINGLE_KEY = "the repository has a single key and no recovery kit is on record"


def test_an_exported_kit_is_on_record_for_check(m, tmp_path, src):
    repo = tmp_path / "repo"
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(repo), check=True)
    m.run("backup", "--config", "docs", check=True)
    password = m.json("key", "export", "docs")[0]["password"]
    m.catalog.unlink()  # as if the kit had never been exported: a catalog without its record
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(repo), "--store-password",
          env={"STRONGROOM_PASSWORD": password}, check=True)
    as_person = {"STRONGROOM_PASSWORD": password}

    done = m.run("check", "--repo", str(repo), env=as_person, check=True)
    assert f"warning: {SINGLE_KEY}" in done.stdout.decode()

    [kit] = m.json("key", "export", "docs")
    assert kit["recorded"] and kit["password"] == password
    # The record is the repository's id, however its location is written.
    for spelling in (str(repo), f"local:{repo}", f"{repo}/"):
        done = m.run("check", "--repo", spelling, env=as_person, check=True)
        assert SINGLE_KEY not in done.stdout.decode() and "no errors were found" in done.stdout.decode()
    summary = m.summary("check", "--repo", str(repo), env=as_person)
    assert summary["keys"] == 1 and summary["advice"] == []

    # A kit of a key that is gone opens nothing: the advice is back.
    m.run("key", "passwd", "--repo", str(repo), env={**as_person, "STRONGROOM_NEW_PASSWORD": "another one"},
          check=True)
    done = m.run("check", "--repo", str(repo), env={"STRONGROOM_PASSWORD": "another one"}, check=True)
    assert f"warning: {SINGLE_KEY}" in done.stdout.decode()


def test_check_makes_no_catalog_to_look_for_a_kit(m, tmp_path, src):
    repo = tmp_path / "repo"
    m.run("init", "--repo", str(repo), env={"STRONGROOM_PASSWORD": "pw"}, check=True)
    done = m.run("check", "--repo", str(repo), env={"STRONGROOM_PASSWORD": "pw"}, check=True)
    assert f"warning: {SINGLE_KEY}" in done.stdout.decode()
    assert not m.catalog.exists() and not m.catalog.parent.exists()


# ---- errors: one clear line, and a failed job in the history ---------------------------------------


def test_a_missing_source_path(m, tmp_path, src):
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(tmp_path / "repo"), check=True)
    (src / "sub" / "c.bin").unlink()
    (src / "sub").rmdir()
    for child in src.iterdir():
        child.unlink()
    src.rmdir()
    done = m.run("backup", "--config", "docs", "--attempts", "1")
    assert done.returncode == 1
    line = one_error_line(done)
    assert "backup docs failed" in line and f"source path {src} does not exist" in line
    [job] = m.jobs("docs")
    assert job["status"] == "failed" and f"source path {src} does not exist" in job["error"]
    assert job["attempts"] == job["max_attempts"] == 1


def test_a_wrong_password(m, tmp_path, src):
    other = tmp_path / "other"
    m.run("init", "--repo", str(other), env={"STRONGROOM_PASSWORD": "the real one"}, check=True)
    done = m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(other),
                 "--password-env", "DOCS_PASSWORD", env={"DOCS_PASSWORD": "another one"})
    assert done.returncode == 12
    assert "wrong password" in one_error_line(done)
    assert m.summary("config", "list")["count"] == 0

    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(other),
          "--password-env", "DOCS_PASSWORD", env={"DOCS_PASSWORD": "the real one"}, check=True)
    done = m.run("backup", "--config", "docs", env={"DOCS_PASSWORD": "changed since"})
    assert done.returncode == 1
    assert "wrong password" in one_error_line(done)
    [job] = m.jobs("docs", "--status", "failed")
    # Another attempt could not help, and repeated bad passwords can lock accounts.
    assert "wrong password" in job["error"] and job["attempts"] == 1 and job["max_attempts"] == 3
    assert m.summary("backup", "--config", "docs", env={"DOCS_PASSWORD": "the real one"})["status"] == "succeeded"

    # Keeping the password in the secrets store instead; a wrong one does not replace it.
    m.run("config", "edit", "docs", "--store-password", env={"STRONGROOM_PASSWORD": "the real one"}, check=True)
    assert list(m.stored_secrets().values()) == ["the real one"]
    done = m.run("config", "edit", "docs", "--store-password", env={"STRONGROOM_PASSWORD": "a typo"})
    assert done.returncode == 12 and "wrong password" in one_error_line(done)
    assert list(m.stored_secrets().values()) == ["the real one"]  # the typo was not kept
    assert m.summary("backup", "--config", "docs")["status"] == "succeeded"
    # Storing it again replaces the old entry instead of adding one.
    m.run("config", "edit", "docs", "--store-password", env={"STRONGROOM_PASSWORD": "the real one"}, check=True)
    assert list(m.stored_secrets().values()) == ["the real one"]

    # A generated key cannot open a repository made with a password: say what to do,
    # and keep no key that opens nothing.
    done = m.run("config", "add", "again", "--source", str(src), "--target-dir", str(other))
    assert done.returncode == 12 and "--store-password" in one_error_line(done)
    assert list(m.stored_secrets().values()) == ["the real one"]


def test_a_webdav_password_file_is_read_alike_by_client_add_and_repository_commands(m, tmp_path, wsgidav_server):
    dav = wsgidav_server
    secret = tmp_path / "dav-password"
    secret.write_text(dav.password + "\n")
    m.run("client", "add", "cloud", "--url", dav.url, "--user", dav.username, "--webdav-password-file", str(secret),
          check=True)
    assert "credentials accepted yes" in m.run("client", "test", "cloud", check=True).stdout.decode()
    done = m.run("init", "--repo", dav.storage_url(), "--webdav-password-file", str(secret),
                 env={"STRONGROOM_PASSWORD": "pw"})
    assert done.returncode == 0, done.stderr.decode()
    for args in (("client", "add", "other", "--url", dav.url, "--user", dav.username),
                 ("snapshots", "--repo", dav.storage_url())):
        done = m.run(*args, env={"STRONGROOM_WEBDAV_PASSWORD_FILE": str(tmp_path / "absent"),
                                 "STRONGROOM_PASSWORD": "pw"})
        assert done.returncode == 2 and "cannot read WebDAV password file" in one_error_line(done)


def test_an_unreachable_server(m, tmp_path, src, wsgidav_server):
    dav_env = {"STRONGROOM_WEBDAV_PASSWORD": wsgidav_server.password, "STRONGROOM_WEBDAV_DEADLINE": "1.5"}
    closed = f"http://127.0.0.1:{free_port()}/dav/"
    m.run("client", "add", "gone", "--url", closed, "--user", "tester", env=dav_env, check=True)
    done = m.run("client", "test", "gone", env=dav_env)
    assert done.returncode == 1
    assert "Connection refused" in one_error_line(done)
    assert "reachable no" in done.stdout.decode()
    done = m.run("config", "add", "docs", "--source", str(src), "--client", "gone", "--target-path", "repo",
                 env=dav_env)
    assert done.returncode == 1 and "Connection refused" in one_error_line(done)

    # A configuration made while its server answered, run after it went away.
    m.run("client", "add", "dav", "--url", wsgidav_server.url, "--user", wsgidav_server.username,
          env=dav_env, check=True)
    m.run("config", "add", "docs", "--source", str(src), "--client", "dav", "--target-path", "repo",
          env=dav_env, check=True)
    m.run("client", "add", "dav", "--url", closed, "--user", "tester", "--replace", env=dav_env, check=True)
    started = time.monotonic()
    done = m.run("backup", "--config", "docs", "--attempts", "1", env=dav_env)
    assert done.returncode == 1
    line = one_error_line(done)
    assert "backup docs failed" in line and "Connection refused" in line
    assert time.monotonic() - started < 30
    [job] = m.jobs("docs")
    assert job["status"] == "failed" and "Connection refused" in job["error"]


# ---- WebDAV ----------------------------------------------------------------------------------------


def test_client_test_of_a_nutstore_root_says_to_test_a_sync_folder(m, wsgidav_server):
    env = {"STRONGROOM_WEBDAV_PASSWORD": "the account password"}
    m.run("client", "add", "cloud", "--url", "https://dav.jianguoyun.com/dav/", "--user", "me@example.com",
          env=env, check=True)
    done = m.run("client", "test", "cloud")
    line = one_error_line(done)
    assert done.returncode == 1 and "not tested: Nutstore keeps files only inside sync folders" in line
    assert "--path FOLDER" in line and "reachable" not in done.stdout.decode() + line
    # The summary, then the exit_error every fatal error prints with --json.
    summary, error = [json.loads(x) for x in m.run("client", "test", "cloud", "--json").stdout.decode().splitlines()]
    assert summary["tested"] is False and summary["requests"] == 0 and not summary["ok"]
    assert error["message_type"] == "exit_error" and error["code"] == 1

    # The same account form on a server that answers: a folder below the root is tested for real.
    root, folder = wsgidav_server.url.rstrip("/").rsplit("/", 1)
    m.run("client", "add", "dav", "--url", root + "/", "--user", wsgidav_server.username, "--vendor", "nutstore",
          env={"STRONGROOM_WEBDAV_PASSWORD": wsgidav_server.password}, check=True)
    report = m.summary("client", "test", "dav", "--path", folder)
    assert report["tested"] and report["ok"] and report["writable"]


def test_webdav_client_and_config_end_to_end(m, tmp_path, src, wsgidav_server):
    dav = wsgidav_server
    env = {"STRONGROOM_WEBDAV_PASSWORD": dav.password}
    done = m.run("client", "add", "cloud", "--url", dav.url, "--user", dav.username)
    assert done.returncode == 2 and "no WebDAV password" in one_error_line(done)
    m.run("client", "add", "cloud", "--url", dav.url, "--user", dav.username, env=env, check=True)
    [client] = [e for e in m.json("client", "list") if e["type"] == "client"]
    assert client == {"message_type": "client", "schema": "strongroom/1", "type": "client", "id": "cloud",
                      "url": dav.url, "username": dav.username, "vendor": "generic"}
    assert dav.password in m.stored_secrets().values()
    report = m.summary("client", "test", "cloud")
    assert report["ok"] and report["writable"] and report["requests"] <= 5

    # The WebDAV password lives in the secrets store: no variable needed from here on.
    m.run("config", "add", "docs", "--source", str(src), "--client", "cloud", "--target-path", "backups/docs",
          "--connections", "3", check=True)
    assert (dav.root / "backups" / "docs" / "config").is_file()
    point = m.summary("backup", "--config", "docs", "--full")["snapshot"]
    assert [p["id"] for p in points_of(m, "docs")] == [point]
    m.run("restore", "--config", "docs", "--target", str(tmp_path / "back"), check=True)
    assert snapshot_tree(restored(tmp_path / "back", src)) == snapshot_tree(src)
    assert m.summary("check", "--config", "docs", "--read-data")["ok"]

    out = m.run("key", "export", "docs", check=True).stdout.decode()
    kit = kit_fields(out)
    assert kit["repository"] == dav.storage_url() + "backups/docs/"
    assert dav.password not in out
    done = m.run("snapshots", "--repo", kit["repository"], "--json",
                 env={"STRONGROOM_PASSWORD": kit["password"], **env})
    assert done.returncode == 0 and point in done.stdout.decode()

    done = m.run("client", "remove", "cloud")
    assert done.returncode == 2 and "used by docs" in one_error_line(done)
    m.run("config", "remove", "docs", check=True)
    m.run("client", "remove", "cloud", check=True)
    assert dav.password not in m.stored_secrets().values()


def test_recover_is_cancelled_by_ctrl_c(m, tmp_path, src):
    made: list[FaultMiddleware] = []

    def wrap(app):
        made.append(FaultMiddleware(app, root="/dav/"))
        return made[0]

    with run_wsgidav(wrap_app=wrap) as dav:
        env = {"STRONGROOM_WEBDAV_PASSWORD": dav.password}
        m.run("client", "add", "slow", "--url", dav.url, "--user", dav.username, env=env, check=True)
        m.run("config", "add", "docs", "--source", str(src), "--client", "slow", "--target-path", "repo",
              check=True)
        m.run("backup", "--config", "docs", check=True)
        made[0].slow(1.0, methods=["GET"])  # a slow link: each pack takes a second to arrive
        proc = m.popen("restore", "--config", "docs", "--target", str(tmp_path / "back"), "--json")
        for line in proc.stdout:
            event = json.loads(line)
            if event["type"] == "status" and event["status"] == "running":
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err.decode()
        assert "the restore was cancelled" in err.decode().splitlines()[-1]
        with sqlite3.connect(m.catalog) as db:
            [(status,)] = db.execute("SELECT status FROM sessions").fetchall()
        assert status == "cancelled"
        assert not list((dav.root / "repo" / "locks").iterdir())
        made[0].clear()
        m.run("restore", "--config", "docs", "--target", str(tmp_path / "back"), check=True)
        assert snapshot_tree(restored(tmp_path / "back", src)) == snapshot_tree(src)
