"""The command line contract: options, passwords, filters, listings, keys, excludes, errors."""

from __future__ import annotations

import json
import os
import random
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import PASSWORD
from treeutil import snapshot_tree
import forked_cli

KiB = 1024
MiB = 1024 * 1024


# ---- helpers -------------------------------------------------------------------------


def json_lines(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]


def summary_of(done: subprocess.CompletedProcess) -> dict:
    found = [e for e in json_lines(done.stdout) if e.get("type") == "summary"]
    assert found, f"no summary in output:\n{done.stdout.decode()}\n{done.stderr.decode()}"
    return found[-1]


def run_with(cli, *args: str, drop: tuple[str, ...] = (), input: bytes | None = None,
             **env: str) -> subprocess.CompletedProcess:
    """Run strongroom with the test environment minus `drop`, plus `env`."""
    environ = {k: v for k, v in cli.env.items() if k not in drop}
    environ.update(env)
    return forked_cli.run([*args], env=environ,
                          input=input, timeout=120)


NO_PASSWORD_VARS = ("STRONGROOM_PASSWORD", "STRONGROOM_PASSWORD_FILE", "STRONGROOM_PASSWORD_COMMAND")


def backup(cli, *args: str, env: dict | None = None) -> dict:
    return summary_of(cli.run("backup", *args, "--json", env=env, check=True))


def snapshot_list(cli, *args: str) -> list[dict]:
    return json.loads(cli.run("snapshots", "--json", *args, check=True).stdout)


def listed_paths(cli, snapshot: str = "latest", *args: str) -> set[str]:
    done = cli.run("ls", snapshot, *args, "--json", check=True)
    return {e["path"] for e in json_lines(done.stdout) if e["type"] == "node"}


def objects(directory: Path) -> dict[str, int]:
    found = {}
    for dirpath, _, names in os.walk(directory):
        for name in names:
            if not name.startswith(".tmp-"):
                found[os.path.join(dirpath, name)] = os.path.getsize(os.path.join(dirpath, name))
    return found


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr.decode()
    assert "Traceback" not in lines[0]
    return lines[0]


# ---- repository location and init ----------------------------------------------------------


def test_options_after_the_command_name_and_local_urls(cli, tmp_path, src):
    repo = tmp_path / "deep" / "er" / "repo"
    done = run_with(cli, "init", "--repo", f"local:{repo}", drop=("STRONGROOM_REPO",))
    assert done.returncode == 0, done.stderr.decode()
    assert (repo / "config").is_file() and (repo / "keys").is_dir()

    done = run_with(cli, "backup", str(src), "--repo", str(repo), "--json", drop=("STRONGROOM_REPO",))
    assert done.returncode == 0, done.stderr.decode()
    snap = summary_of(done)["snapshot"]
    done = run_with(cli, "snapshots", "--json", "--repo", f"local:{repo}", drop=("STRONGROOM_REPO",))
    assert [e["id"] for e in json.loads(done.stdout)] == [snap]
    # STRONGROOM_REPO alone is enough; --repo wins over it.
    done = run_with(cli, "snapshots", "--json", STRONGROOM_REPO=f"local:{repo}")
    assert len(json.loads(done.stdout)) == 1
    done = run_with(cli, "snapshots", "--json", "--repo", str(repo), STRONGROOM_REPO=str(tmp_path / "elsewhere"))
    assert len(json.loads(done.stdout)) == 1

    done = run_with(cli, "snapshots", drop=("STRONGROOM_REPO",))
    assert done.returncode == 2
    assert "--repo" in one_error_line(done)


def test_init_refuses_an_existing_repository(cli, repo_path):
    cli.run("init", check=True)
    config = (repo_path / "config").read_bytes()
    keys = sorted(os.listdir(repo_path / "keys"))
    done = cli.run("init")
    assert done.returncode == 1
    assert "already exists" in one_error_line(done)
    assert (repo_path / "config").read_bytes() == config
    assert sorted(os.listdir(repo_path / "keys")) == keys


@pytest.mark.parametrize("url", ["ftp://example.invalid/repo", "azure:container:/repo",
                                 "rest:http://example.invalid/"])
def test_unsupported_url_scheme_is_one_clear_error(cli, tmp_path, url):
    done = cli.run("init", "--repo", url, env={"PWD": str(tmp_path)})
    assert done.returncode == 2
    assert f"unsupported repository URL scheme {url.split(':')[0]!r}" in one_error_line(done)
    assert not any(Path.cwd().glob(url.split(":")[0] + ":*"))


@pytest.mark.parametrize("args", [["backup"], ["backup", "/tmp", "--compression", "brotli"],
                                  ["check", "--read-data-subset", "200%"]])
def test_a_bad_command_line_exits_2(cli, args):
    cli.run("init", check=True)
    done = cli.run(*args)
    assert done.returncode == 2, done.stderr.decode()
    one_error_line(done)


# ---- passwords ------------------------------------------------------------------------------


def test_password_from_file_env_file_and_command(cli, tmp_path, src):
    cli.run("init", check=True)
    backup(cli, str(src))
    secret = tmp_path / "password"
    secret.write_bytes(PASSWORD + b"\n")

    done = run_with(cli, "snapshots", "--json", "--password-file", str(secret), drop=NO_PASSWORD_VARS)
    assert done.returncode == 0 and len(json.loads(done.stdout)) == 1
    done = run_with(cli, "snapshots", "--json", drop=NO_PASSWORD_VARS, STRONGROOM_PASSWORD_FILE=str(secret))
    assert done.returncode == 0 and len(json.loads(done.stdout)) == 1
    done = run_with(cli, "snapshots", "--json", "--password-command", f"cat {secret}", drop=NO_PASSWORD_VARS)
    assert done.returncode == 0 and len(json.loads(done.stdout)) == 1
    done = run_with(cli, "snapshots", "--json", drop=NO_PASSWORD_VARS, STRONGROOM_PASSWORD_COMMAND=f"cat {secret}")
    assert done.returncode == 0 and len(json.loads(done.stdout)) == 1

    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"nope\n")
    done = run_with(cli, "snapshots", "--password-file", str(wrong), drop=NO_PASSWORD_VARS)
    assert done.returncode == 12
    done = run_with(cli, "snapshots", "--password-command", "false", drop=NO_PASSWORD_VARS)
    assert done.returncode == 2 and "password command" in one_error_line(done)
    done = run_with(cli, "snapshots", "--password-file", str(tmp_path / "absent"), drop=NO_PASSWORD_VARS)
    assert done.returncode == 2
    assert "cannot read password file" in one_error_line(done)
    done = run_with(cli, "snapshots", drop=NO_PASSWORD_VARS)  # no TTY, no password
    assert done.returncode == 2
    assert "no password" in one_error_line(done)


def test_an_empty_password_is_refused_at_init(cli, repo_path):
    done = run_with(cli, "init", drop=NO_PASSWORD_VARS, STRONGROOM_PASSWORD="")
    assert done.returncode == 2
    assert "--no-password" in one_error_line(done)
    assert not (repo_path / "config").exists()


def test_no_option_takes_the_password_itself(cli, repo_path, src):
    for command in (["init"], ["backup", str(src)], ["snapshots"]):
        done = run_with(cli, *command, "--password", "hunter2", drop=NO_PASSWORD_VARS)
        assert done.returncode == 2, (command, done.stderr.decode())
        assert "--password" in done.stderr.decode()
    assert not repo_path.exists()


def test_no_password_repository_opens_without_one_and_is_still_authenticated(cli, repo_path, src):
    done = run_with(cli, "init", "--no-password", "--json", drop=NO_PASSWORD_VARS)
    assert done.returncode == 0, done.stderr.decode()
    assert summary_of(done)["encrypted"] is False
    key_files = list((repo_path / "keys").iterdir())
    assert len(key_files) == 1 and json.loads(key_files[0].read_bytes())["kdf"] == "none"

    done = run_with(cli, "backup", str(src), "--json", drop=NO_PASSWORD_VARS)
    assert done.returncode == 0, done.stderr.decode()
    done = run_with(cli, "snapshots", "--json", drop=NO_PASSWORD_VARS)
    assert len(json.loads(done.stdout)) == 1
    assert run_with(cli, "check", "--read-data", drop=NO_PASSWORD_VARS).returncode == 0

    # Every object is still authenticated: a flipped byte in a pack is found...
    pack = max((p for p in (repo_path / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    original = pack.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0x01
    pack.write_bytes(bytes(damaged))
    done = run_with(cli, "check", "--read-data", drop=NO_PASSWORD_VARS)
    assert done.returncode == 1 and pack.name in done.stdout.decode()
    pack.write_bytes(original)

    # ...and so is one in the config.
    config = repo_path / "config"
    data = bytearray(config.read_bytes())
    data[len(data) // 2] ^= 0x01
    config.write_bytes(bytes(data))
    # The cache keeps the config once read; a fresh read and check both see the damage.
    done = run_with(cli, "snapshots", "--no-cache", drop=NO_PASSWORD_VARS)
    assert done.returncode == 1
    line = one_error_line(done)
    assert "config" in line and "authenticate" in line
    done = run_with(cli, "check", drop=NO_PASSWORD_VARS)
    assert done.returncode == 1 and "config" in done.stdout.decode()


# ---- snapshots, ls, diff, stats ----------------------------------------------------------------


def test_snapshots_filters_and_json(cli, tmp_path, src):
    cli.run("init", check=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_bytes(b"x")
    one = backup(cli, str(src), "--tag", "daily", "--host", "alpha")["snapshot"]
    two = backup(cli, str(src), "--tag", "daily,weekly", "--host", "beta")["snapshot"]
    three = backup(cli, str(other), "--tag", "monthly", "--host", "alpha")["snapshot"]

    everything = snapshot_list(cli)
    assert [s["id"] for s in everything] == [one, two, three]
    assert {s["id"]: tuple(s["tags"]) for s in everything} == {
        one: ("daily",), two: ("daily", "weekly"), three: ("monthly",)}
    assert everything[0]["hostname"] == "alpha" and everything[0]["paths"] == [str(src)]
    assert everything[0]["summary"]["total_files"] == 3

    ids = lambda *args: [s["id"] for s in snapshot_list(cli, *args)]  # noqa: E731
    assert ids("--tag", "daily") == [one, two]
    assert ids("--tag", "daily,weekly") == [two]
    assert ids("--tag", "weekly", "--tag", "monthly") == [two, three]
    assert ids("--host", "alpha") == [one, three]
    assert ids("--host", "alpha", "--tag", "daily") == [one]
    assert ids("--path", str(other)) == [three]
    assert ids("--path", str(src), "--host", "beta") == [two]
    assert ids("--tag", "nosuch") == []

    text = cli.run("snapshots", "--host", "alpha", check=True).stdout.decode()
    assert one[:8] in text and three[:8] in text and two[:8] not in text
    assert "2 snapshots" in text


def test_ls_with_a_path_and_json(cli, src):
    cli.run("init", check=True)
    snap = backup(cli, str(src))["snapshot"]
    root = str(src)
    assert listed_paths(cli) >= {root, f"{root}/a.txt", f"{root}/b.txt", f"{root}/sub", f"{root}/sub/c.bin"}
    assert listed_paths(cli, snap[:8], f"{root}/sub") == {f"{root}/sub/c.bin"}

    nodes = {e["path"]: e for e in json_lines(cli.run("ls", "latest", root, "--json", check=True).stdout)
             if e["type"] == "node"}
    assert nodes[f"{root}/sub/c.bin"]["size"] == 300 * KiB
    assert nodes[f"{root}/sub/c.bin"]["node_type"] == "file"
    assert nodes[f"{root}/sub"]["node_type"] == "dir"
    assert nodes[f"{root}/a.txt"]["mtime_ns"] == (src / "a.txt").stat().st_mtime_ns
    assert nodes[f"{root}/a.txt"]["mode"] == (src / "a.txt").stat().st_mode & 0o7777

    text = cli.run("ls", "latest", f"{root}/sub", check=True).stdout.decode().split()
    assert text == [f"{root}/sub/c.bin"]
    long_text = cli.run("ls", "latest", f"{root}/sub", "--long", check=True).stdout.decode()
    assert str(300 * KiB) in long_text

    done = cli.run("ls", "latest", f"{root}/nothing-here")
    assert done.returncode == 1 and "nothing-here" in one_error_line(done)


def test_diff_shows_added_removed_and_modified(cli, src):
    cli.run("init", check=True)
    first = backup(cli, str(src))["snapshot"]
    (src / "a.txt").unlink()
    (src / "b.txt").write_bytes(b"changed\n")
    (src / "sub" / "new.txt").write_bytes(b"new\n")
    (src / "sub" / "c.bin").chmod(0o600)
    second = backup(cli, str(src))["snapshot"]

    lines = cli.run("diff", first[:8], second[:8], check=True).stdout.decode().splitlines()
    root = str(src)
    assert f"-    {root}/a.txt" in lines
    assert f"M    {root}/b.txt" in lines
    assert f"+    {root}/sub/new.txt" in lines
    assert f"U    {root}/sub/c.bin" in lines  # only its mode changed
    assert not any(line.endswith("/a.txt") and not line.startswith("-") for line in lines)

    events = json_lines(cli.run("diff", first, second, "--json", check=True).stdout)
    changes = {(e["change"], e["path"]) for e in events if e["type"] == "change"}
    assert {("-", f"{root}/a.txt"), ("M", f"{root}/b.txt"), ("+", f"{root}/sub/new.txt")} <= changes
    s = events[-1]
    assert s["type"] == "summary" and (s["added"], s["removed"], s["modified"]) == (1, 1, 1)
    assert s["metadata_changed"] >= 1


def test_stats_json(cli, tmp_path):
    cli.run("init", check=True)
    data = tmp_path / "data"
    data.mkdir()
    text = b"".join(b"line %d of a very compressible text file\n" % i for i in range(50_000))
    (data / "text.txt").write_bytes(text)
    (data / "copy.txt").write_bytes(text)
    first = backup(cli, str(data))["snapshot"]
    backup(cli, str(data), "--full")

    one = summary_of(cli.run("stats", first[:8], "--json", check=True))
    assert one["snapshots"] == 1 and one["restore_size"] == 2 * len(text)
    assert one["dedup_ratio"] == pytest.approx(2.0, rel=0.01)
    done = cli.run("stats", "0000ffff", "--json")
    assert done.returncode == 1 and "0000ffff" in one_error_line(done)

    s = summary_of(cli.run("stats", "--json", check=True))
    assert s["snapshots"] == 2
    assert s["restore_size"] == 4 * len(text)
    assert len(text) <= s["unique_size"] < len(text) + 64 * KiB  # one copy of the data, plus the trees
    assert s["dedup_ratio"] == pytest.approx(4.0, rel=0.01)
    assert s["compression_ratio"] > 3
    assert 0 < s["unique_stored_size"] < len(text) / 3
    assert s["repository_size"] >= s["unique_stored_size"]

    human = cli.run("stats", check=True).stdout.decode()
    assert "dedup:              4.0x" in human and "compression: " in human


# ---- keys -----------------------------------------------------------------------------------


def test_key_add_list_passwd_remove(cli, repo_path, src):
    cli.run("init", check=True)
    backup(cli, str(src))
    first_key = os.listdir(repo_path / "keys")[0]

    assert cli.run("key", "add", env={"STRONGROOM_NEW_PASSWORD": "second"}, check=True).returncode == 0
    keys = summary_of(cli.run("key", "list", "--json", check=True))["keys"]
    assert len(keys) == 2
    assert [k["id"] for k in keys if k["current"]] == [first_key]
    second_key = next(k["id"] for k in keys if not k["current"])
    assert all(k["kdf"] == "argon2id" for k in keys)

    assert cli.run("snapshots", env={"STRONGROOM_PASSWORD": "second"}).returncode == 0

    # passwd changes the password that opened the repository, and only that one.
    cli.run("key", "passwd", env={"STRONGROOM_PASSWORD": "second", "STRONGROOM_NEW_PASSWORD": "third"}, check=True)
    assert cli.run("snapshots", env={"STRONGROOM_PASSWORD": "second"}).returncode == 12
    assert cli.run("snapshots", env={"STRONGROOM_PASSWORD": "third"}).returncode == 0
    assert cli.run("snapshots").returncode == 0
    keys = summary_of(cli.run("key", "list", "--json", check=True))["keys"]
    assert len(keys) == 2 and second_key not in {k["id"] for k in keys}
    third_key = next(k["id"] for k in keys if not k["current"])

    done = cli.run("key", "remove", first_key[:8])
    assert done.returncode == 2
    assert "in use" in one_error_line(done)
    assert (repo_path / "keys" / first_key).exists()

    cli.run("key", "remove", first_key[:8], env={"STRONGROOM_PASSWORD": "third"}, check=True)
    assert sorted(os.listdir(repo_path / "keys")) == [third_key]
    assert cli.run("snapshots").returncode == 12
    assert cli.run("snapshots", env={"STRONGROOM_PASSWORD": "third"}).returncode == 0

    done = run_with(cli, "key", "add", drop=("STRONGROOM_NEW_PASSWORD", "STRONGROOM_NEW_PASSWORD_FILE"),
                    STRONGROOM_PASSWORD="third")
    assert done.returncode == 2 and "new password" in one_error_line(done)


def test_version(cli):
    done = cli.run("version", check=True)
    from strongroom import __version__
    assert done.stdout.decode().startswith(f"strongroom {__version__}")
    assert json.loads(cli.run("version", "--json", check=True).stdout)["version"] == __version__


# ---- backup options ------------------------------------------------------------------------------


def test_stdin_backup_restores_the_same_bytes(cli, tmp_path):
    cli.run("init", check=True)
    dump = random.Random(9).randbytes(3 * MiB) + b"-- end of dump\n"
    done = cli.run("backup", "--stdin", "--stdin-filename", "db.sql", "--json", input=dump, check=True)
    s = summary_of(done)
    assert s["total_bytes"] == len(dump)
    snaps = snapshot_list(cli)
    assert snaps[0]["paths"] == ["/db.sql"]
    assert listed_paths(cli) == {"/db.sql"}
    target = tmp_path / "restore"
    cli.run("restore", "latest", "--target", str(target), check=True)
    assert (target / "db.sql").read_bytes() == dump

    again = summary_of(cli.run("backup", "--stdin", "--stdin-filename", "db.sql", "--json", input=dump, check=True))
    assert again["data_blobs"] == 0  # the same dump deduplicates

    done = cli.run("backup", "--stdin", "--stdin-filename", "../evil", input=b"x")
    assert done.returncode == 2 and "plain file name" in one_error_line(done)


def test_excludes(cli, tmp_path):
    cli.run("init", check=True)
    root = tmp_path / "src"
    for d in ("keep", "logs", "cache", "fakecache", "marked", "deep/build"):
        (root / d).mkdir(parents=True)
    files = {
        "keep/a.txt": b"a", "keep/b.tmp": b"tmp", "logs/x.log": b"log", "deep/build/out.o": b"obj",
        "deep/readme": b"r", "cache/blob": b"cached", "fakecache/blob": b"not really cached",
        "marked/data": b"marked", "marked/.nobackup": b"", "small.bin": b"s" * 1024, "large.bin": b"L" * 1025,
    }
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    (root / "cache" / "CACHEDIR.TAG").write_bytes(
        b"Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag.\n")
    (root / "fakecache" / "CACHEDIR.TAG").write_bytes(b"Signature: not the right one\n")
    exclude_file = tmp_path / "excludes"
    exclude_file.write_text("# comment\n\n*.log\n")

    backup(cli, str(root), "--exclude", "*.tmp", "--exclude", f"{root}/deep/build",
           "--exclude-file", str(exclude_file), "--exclude-if-present", ".nobackup",
           "--exclude-caches", "--exclude-larger-than", "1K")
    got = {p[len(str(root)) + 1:] for p in listed_paths(cli) if p.startswith(f"{root}/")}
    assert {"keep/a.txt", "deep/readme", "fakecache/blob", "fakecache/CACHEDIR.TAG", "small.bin"} <= got
    for gone in ("keep/b.tmp", "logs/x.log", "deep/build", "deep/build/out.o", "cache/blob", "marked/data",
                 "large.bin"):
        assert gone not in got, gone

    backup(cli, str(root))
    everything = {p[len(str(root)) + 1:] for p in listed_paths(cli) if p.startswith(f"{root}/")}
    assert {"keep/b.tmp", "logs/x.log", "deep/build/out.o", "cache/blob", "marked/data", "large.bin"} <= everything

    done = cli.run("backup", str(root), "--exclude-larger-than", "lots")
    assert done.returncode == 2 and "lots" in one_error_line(done)


def test_one_file_system(cli, tmp_path):
    cli.run("init", check=True)
    root = tmp_path / "src"
    mnt = root / "mnt"
    mnt.mkdir(parents=True)
    (root / "here.txt").write_bytes(b"here")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "there.txt").write_bytes(b"on another file system")
        backup(cli, str(root), "--one-file-system")
        crossed = listed_paths(cli)
        backup(cli, str(root))
        everything = listed_paths(cli)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert f"{root}/here.txt" in crossed and f"{root}/mnt" in crossed
    assert f"{root}/mnt/there.txt" not in crossed
    assert f"{root}/mnt/there.txt" in everything


def test_time_is_recorded_in_local_time_unless_a_zone_is_given(cli, src):
    cli.run("init", check=True)
    shanghai = timezone(timedelta(hours=8))
    backup(cli, str(src), "--time", "2026-01-02 03:04", env={"TZ": "Asia/Shanghai"})
    backup(cli, str(src), "--time", "2026-01-02T03:04:05", env={"TZ": "Asia/Shanghai"})
    backup(cli, str(src), "--time", "2026-03-04T05:06:07+02:00", env={"TZ": "Asia/Shanghai"})
    backup(cli, str(src), "--time", "2026-05-06 07:08:09Z", env={"TZ": "Asia/Shanghai"})
    times = [datetime.fromisoformat(s["time"]) for s in snapshot_list(cli)]
    assert times == [
        datetime(2026, 1, 2, 3, 4, tzinfo=shanghai),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=shanghai),
        datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
    ]
    assert snapshot_list(cli)[0]["time"].endswith("+08:00")

    done = cli.run("backup", str(src), "--time", "yesterday-ish")
    assert done.returncode == 2 and "yesterday-ish" in one_error_line(done)


def test_dry_run_stores_nothing(cli, repo_path, src):
    cli.run("init", check=True)
    before = objects(repo_path)
    s = backup(cli, str(src), "--dry-run")
    assert s["dry_run"] is True
    assert s["data_added_raw"] >= 300 * KiB and s["bytes_read"] == s["total_bytes"] > 0
    assert objects(repo_path) == before
    assert snapshot_list(cli) == []
    text = cli.run("backup", str(src), "--dry-run", check=True).stdout.decode()
    assert "would add" in text
    assert objects(repo_path) == before


def test_compression_per_backup(cli, tmp_path):
    cli.run("init", check=True)
    added = {}
    for codec in ("lz4", "gzip", "none", "zstd:9"):
        root = tmp_path / f"src-{codec.replace(':', '-')}"
        root.mkdir()
        text = b"".join(b"%s line %d, compressible\n" % (codec.encode(), i) for i in range(40_000))
        (root / "text.txt").write_bytes(text)
        (root / "random.bin").write_bytes(os.urandom(200 * KiB))
        s = backup(cli, str(root), "--compression", codec)
        added[codec] = (s["data_added_packed"], s["data_added_raw"])
        target = tmp_path / f"restore-{codec.replace(':', '-')}"
        cli.run("restore", s["snapshot"], "--target", str(target), "--verify", check=True)
        assert snapshot_tree(target / str(root).lstrip("/")) == snapshot_tree(root)
        assert snapshot_list(cli)[-1]["compression"] == codec
    stored, raw = added["none"]
    assert stored >= raw
    for codec in ("lz4", "gzip", "zstd:9"):
        stored, raw = added[codec]
        assert stored < raw * 0.5, codec

    done = cli.run("backup", str(tmp_path), "--compression", "rar")
    assert done.returncode == 2 and "rar" in one_error_line(done)


# ---- errors ------------------------------------------------------------------------------------


def test_errors_are_one_line_and_debug_adds_the_traceback(cli, tmp_path):
    cli.run("init", check=True)
    done = cli.run("restore", "abcdef12", "--target", str(tmp_path / "t"))
    assert done.returncode == 1
    assert one_error_line(done) == "strongroom: no snapshot with id abcdef12"

    done = cli.run("restore", "abcdef12", "--target", str(tmp_path / "t"), "--debug")
    assert done.returncode == 1
    err = done.stderr.decode()
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1] == "strongroom: no snapshot with id abcdef12"

    done = run_with(cli, "snapshots", "--repo", str(tmp_path / "none"), "--debug")
    assert done.returncode == 10 and "Traceback" in done.stderr.decode()
