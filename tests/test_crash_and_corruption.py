"""Faults for real: kill -9 and Ctrl-C mid-backup, flipped bytes, missing packs, every exit code."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from strongroom.words import plural
from treeutil import snapshot_tree

MiB = 1024 * 1024
BLOCK = 8 * MiB


# ---- helpers -------------------------------------------------------------------------


def json_lines(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]


def summary_of(done: subprocess.CompletedProcess) -> dict:
    found = [e for e in json_lines(done.stdout) if e.get("type") == "summary"]
    assert found, f"no summary in output:\n{done.stdout.decode()}\n{done.stderr.decode()}"
    return found[-1]


def objects(directory: Path) -> dict[str, int]:
    """Stored objects below a repository directory (name -> size), without temp files."""
    found = {}
    if not directory.is_dir():
        return found
    for dirpath, _, names in os.walk(directory):
        for name in names:
            if not name.startswith(".tmp-"):
                found[name] = os.path.getsize(os.path.join(dirpath, name))
    return found


def pack_path(repo_path: Path, pack_hex: str) -> Path:
    return repo_path / "data" / pack_hex[:2] / pack_hex


def wait_until(condition, proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the backup ended (exit {proc.returncode}) before {what}:\n{err.decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def interruptible(cli, *args: str, stdin=None) -> subprocess.Popen:
    """Start strongroom with Ctrl-C at its default, even when these tests run as a background job
    (a shell starts those with SIGINT ignored, and a child would inherit that)."""
    return subprocess.Popen([sys.executable, "-m", "strongroom", *args], stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli.env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def snapshot_ids(cli) -> list[str]:
    return [e["id"] for e in json.loads(cli.run("snapshots", "--json", check=True).stdout)]


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def write_random(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


# ---- crash: kill -9 in the middle of a backup ---------------------------------------------


@pytest.fixture(scope="module")
def big_source(tmp_path_factory) -> Path:
    """384 MiB of incompressible files, enough for the backup to be killed mid-way."""
    root = tmp_path_factory.mktemp("big") / "source"
    (root / "sub").mkdir(parents=True)
    rng = random.Random(20261127)
    for i in range(40):
        (root / f"part{i:02}.bin").write_bytes(rng.randbytes(BLOCK))
    for i in range(8):
        (root / "sub" / f"tail{i}.bin").write_bytes(rng.randbytes(BLOCK))
    (root / "sub" / "small.txt").write_bytes(b"a small file next to big ones\n")
    yield root
    shutil.rmtree(root.parent, ignore_errors=True)


def test_kill9_after_checkpoints_then_check_passes_and_next_backup_resumes(cli, repo_path, cache_dir,
                                                                           big_source, tmp_path):
    cli.run("init", "--pack-size", "4", check=True)
    total = tree_size(big_source)

    proc = cli.popen("backup", str(big_source), env={"STRONGROOM_CHECKPOINT_SECONDS": "0"})
    wait_until(lambda: len(objects(repo_path / "index")) >= 24, proc, "24 index checkpoints")
    kill9(proc)

    stored_before = sum(objects(repo_path / "data").values())
    assert 24 * 4 * MiB <= stored_before < total
    assert snapshot_ids(cli) == []  # nothing became visible

    checked = cli.run("check")
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert "no errors were found" in checked.stdout.decode()

    done = cli.run("backup", str(big_source), "--json", check=True)
    s = summary_of(done)
    assert s["bytes_read"] == total and s["errors"] == 0
    # What was stored (and checkpointed) before the kill is not sent again.
    assert s["data_added_packed"] <= total - stored_before + 3 * 4 * MiB, (s["data_added_packed"], total, stored_before)
    assert s["data_added_packed"] < 0.8 * total
    assert sum(objects(repo_path / "data").values()) < 1.1 * total

    checked = cli.run("check", "--json")
    assert checked.returncode == 0
    assert summary_of(checked)["ok"] is True

    target = tmp_path / "restore"
    cli.run("restore", "latest", "--target", str(target), check=True)
    assert snapshot_tree(target / str(big_source).lstrip("/")) == snapshot_tree(big_source)
    shutil.rmtree(target)
    shutil.rmtree(repo_path)  # 400 MiB that kept test directories need not hold


def test_kill9_before_any_checkpoint_adopts_packs_from_the_journal(cli, repo_path, cache_dir, big_source):
    cli.run("init", "--pack-size", "4", check=True)
    total = tree_size(big_source)

    proc = cli.popen("backup", str(big_source))  # checkpoints every 60 s: none is reached
    wait_until(lambda: len(objects(repo_path / "data")) >= 30, proc, "30 packs")
    kill9(proc)

    assert objects(repo_path / "index") == {}
    packs = objects(repo_path / "data")
    stored_before = sum(packs.values())
    journals = list(cache_dir.glob("*/pending-packs"))
    assert len(journals) == 1
    pending = set(journals[0].read_text().split())
    # Each pack is noted right after it is stored; the kill may fall between the two.
    assert pending <= set(packs) and len(pending) >= len(packs) - 2

    checked = cli.run("check")
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert "not in any index" in checked.stdout.decode()

    done = cli.run("backup", str(big_source), "--json", check=True)
    events = json_lines(done.stdout)
    resumed = [e for e in events if e["type"] == "warning" and "resumed" in e["message"]]
    assert resumed and f"resumed: {len(pending)} packs" in resumed[0]["message"]
    s = summary_of(done)
    assert s["data_added_packed"] <= total - stored_before + 3 * 4 * MiB, (s["data_added_packed"], total, stored_before)
    assert s["data_added_packed"] < 0.8 * total
    assert sum(objects(repo_path / "data").values()) < 1.1 * total
    assert journals[0].read_text().split() == []  # the adopted packs are indexed now

    checked = cli.run("check", "--json")
    assert checked.returncode == 0
    # Only a pack stored in the instant before it could be noted stays unindexed (prune removes it).
    orphans = len(set(packs) - pending)
    # A pack being written when the kill came stays as a .tmp- file, which check names.
    temporaries = [p for p in repo_path.rglob(".tmp-*") if p.is_file()]
    expected = [f"{plural(orphans, 'pack')} {'is' if orphans == 1 else 'are'} not in any index (left by an "
                "interrupted run; prune removes them)"] if orphans else []
    if temporaries:
        expected.insert(0, f"{plural(len(temporaries), 'temporary file')} of "
                           f"{plural(sum(p.stat().st_size for p in temporaries), 'byte')} "
                           f"{'was' if len(temporaries) == 1 else 'were'} left by interrupted writes or "
                           f"{'is' if len(temporaries) == 1 else 'are'} being written by a backup running now (e.g. "
                           f"{sorted(p.relative_to(repo_path).as_posix() for p in temporaries)[0]}); prune removes them")
    assert summary_of(checked)["warnings"] == expected
    shutil.rmtree(repo_path)


def test_ctrl_c_stops_a_large_file_promptly_and_exits_130(cli, repo_path, cache_dir, tmp_path):
    cli.run("init", "--pack-size", "4", check=True)
    src = tmp_path / "src"
    src.mkdir()
    size = 160 * MiB
    big = write_random(src / "huge.bin", size, 7)

    # gzip keeps the backup slow enough that it is surely still reading the file.
    proc = interruptible(cli, "backup", str(src), "--compression", "gzip")
    wait_until(lambda: len(objects(repo_path / "data")) >= 2, proc, "the first packs")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert err.decode().strip() == "strongroom: interrupted"
    # The workers stop at the next chunk instead of reading the whole file.
    stored_before = sum(objects(repo_path / "data").values())
    assert stored_before < size / 2
    assert objects(repo_path / "locks") == {}
    assert snapshot_ids(cli) == []
    # What was stored is indexed on the way out: no pack is left for the journal.
    assert objects(repo_path / "index")
    assert [p.read_text() for p in cache_dir.glob("*/pending-packs")] in ([], [""])
    report = summary_of(cli.run("check", "--json", check=True))
    assert report["ok"] is True and report["warnings"] == []

    s = summary_of(cli.run("backup", str(src), "--json", check=True))
    assert s["data_added_packed"] <= size - stored_before + 2 * 4 * MiB
    target = tmp_path / "restore"
    cli.run("restore", "latest", "--target", str(target), check=True)
    assert (target / str(src).lstrip("/") / "huge.bin").read_bytes() == big


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_stdin_backup_exits_130_and_releases_the_lock(cli, repo_path, signum):
    cli.run("init", check=True)
    proc = interruptible(cli, "backup", "--stdin", "--stdin-filename", "dump.sql", stdin=subprocess.PIPE)
    proc.stdin.write(os.urandom(MiB))
    proc.stdin.flush()
    wait_until(lambda: len(objects(repo_path / "locks")) == 1, proc, "the lock")
    time.sleep(0.2)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted" in err.decode()
    assert "Traceback" not in err.decode()
    assert objects(repo_path / "locks") == {}
    assert snapshot_ids(cli) == []


# ---- corruption ---------------------------------------------------------------------------


@pytest.fixture
def damaged(cli, repo_path, tmp_path):
    """Two snapshots; the second adds hit.bin, whose data lives in a pack of its own."""
    cli.run("init", check=True)
    src = tmp_path / "src"
    src.mkdir()
    keep = write_random(src / "keep.bin", 3 * MiB, 1)
    (src / "notes.txt").write_bytes(b"untouched\n" * 100)
    first = summary_of(cli.run("backup", str(src), "--json", check=True))["snapshot"]
    packs_before = set(objects(repo_path / "data"))
    hit = write_random(src / "hit.bin", 3 * MiB, 2)
    second = summary_of(cli.run("backup", str(src), "--json", check=True))["snapshot"]
    new = {name: size for name, size in objects(repo_path / "data").items() if name not in packs_before}
    pack_hex = max(new, key=new.get)
    assert new[pack_hex] > 3 * MiB  # the data pack of hit.bin, not a tree pack
    return {"src": src, "keep": keep, "hit": hit, "first": first, "second": second, "pack": pack_hex,
            "pack_file": pack_path(repo_path, pack_hex)}


def test_flipped_byte_is_found_named_and_limited_to_what_it_touches(cli, damaged, tmp_path):
    src, pack_hex = damaged["src"], damaged["pack"]
    assert cli.run("check", "--read-data").returncode == 0
    flip_byte(damaged["pack_file"], damaged["pack_file"].stat().st_size // 2)

    assert cli.run("check").returncode == 0  # the structure is intact; only the data is damaged

    done = cli.run("check", "--read-data")
    out = done.stdout.decode()
    assert done.returncode == 1, out
    assert pack_hex in out
    assert f"{src}/hit.bin" in out
    assert damaged["second"][:8] in out
    assert damaged["first"][:8] not in out
    assert "keep.bin" not in out and "notes.txt" not in out

    report = summary_of(cli.run("check", "--read-data", "--json"))
    assert report["ok"] is False
    named = [p for p in report["problems"] if p.get("pack") == pack_hex]
    assert named
    assert {f for p in named for f in p["files"]} == {f"{src}/hit.bin"}
    assert {s for p in named for s in p["snapshots"]} == {damaged["second"][:8]}

    # Everything the damaged pack does not hold still restores.
    everything = tmp_path / "all"
    done = cli.run("restore", "latest", "--target", str(everything))
    assert done.returncode == 3
    restored = everything / str(src).lstrip("/")
    # One line per error, naming the file and the pack, however long the names.
    error_lines = [line for line in done.stderr.decode().splitlines() if line.strip()]
    assert error_lines and all(f"{restored}/hit.bin" in line and pack_hex in line for line in error_lines)
    assert (restored / "keep.bin").read_bytes() == damaged["keep"]
    assert (restored / "notes.txt").read_bytes() == b"untouched\n" * 100

    chosen = tmp_path / "chosen"
    done = cli.run("restore", "latest", "--target", str(chosen), "--include", "keep.bin", "--include", "notes.txt")
    assert done.returncode == 0, done.stderr.decode()
    restored = chosen / str(src).lstrip("/")
    assert (restored / "keep.bin").read_bytes() == damaged["keep"]
    assert not (restored / "hit.bin").exists()

    older = tmp_path / "older"
    done = cli.run("restore", damaged["first"][:8], "--target", str(older), "--verify")
    assert done.returncode == 0, done.stderr.decode()
    assert (older / str(src).lstrip("/") / "keep.bin").read_bytes() == damaged["keep"]


def test_missing_pack_is_named_by_check_without_read_data(cli, damaged):
    damaged["pack_file"].unlink()
    done = cli.run("check")
    out = done.stdout.decode()
    assert done.returncode == 1, out
    assert "missing" in out
    assert damaged["pack"] in out
    assert f"{damaged['src']}/hit.bin" in out
    assert damaged["second"][:8] in out

    report = summary_of(cli.run("check", "--json"))
    assert report["ok"] is False
    assert [p["pack"] for p in report["problems"] if "missing" in p["message"]] == [damaged["pack"]]


def test_truncated_pack_is_named(cli, damaged):
    data = damaged["pack_file"].read_bytes()
    damaged["pack_file"].write_bytes(data[: len(data) - 100])
    done = cli.run("check")
    assert done.returncode == 1
    assert damaged["pack"] in done.stdout.decode()


@pytest.fixture
def many_packs(cli, repo_path, tmp_path) -> list[str]:
    cli.run("init", "--pack-size", "1", check=True)
    src = tmp_path / "src"
    src.mkdir()
    write_random(src / "a.bin", 12 * MiB, 3)
    write_random(src / "b.bin", 12 * MiB, 4)
    cli.run("backup", str(src), check=True)
    packs = sorted(objects(repo_path / "data"))
    assert len(packs) >= 12
    return packs


def test_read_data_subset_reads_part_of_the_packs(cli, many_packs):
    total = len(many_packs)
    half = summary_of(cli.run("check", "--read-data-subset", "50%", "--json", check=True))
    assert half["packs"] == total
    assert half["packs_read"] == (total + 1) // 2 < total

    first = summary_of(cli.run("check", "--read-data-subset", "1/2", "--json", check=True))
    second = summary_of(cli.run("check", "--read-data-subset", "2/2", "--json", check=True))
    assert 0 < first["packs_read"] < total and 0 < second["packs_read"] < total
    assert first["packs_read"] + second["packs_read"] == total

    every = summary_of(cli.run("check", "--read-data", "--json", check=True))
    assert every["packs_read"] == total

    bad = cli.run("check", "--read-data-subset", "150%")
    assert bad.returncode == 2 and "subset" in bad.stderr.decode()


def test_read_data_subset_n_of_t_finds_damage_only_in_its_group(cli, repo_path, many_packs):
    # A data pack: damage in the tree pack is found by every check, since the
    # structure check reads all trees from the target.
    data_packs = [p for p in many_packs if pack_path(repo_path, p).stat().st_size > 512 * 1024]
    victim = data_packs[len(data_packs) // 2]
    flip_byte(pack_path(repo_path, victim), 100)
    group = int(victim[:2], 16) % 3 + 1
    other = group % 3 + 1
    hit = cli.run("check", "--read-data-subset", f"{group}/3")
    assert hit.returncode == 1 and victim in hit.stdout.decode()
    miss = cli.run("check", "--read-data-subset", f"{other}/3")
    assert miss.returncode == 0, miss.stdout.decode()


# ---- exit codes, provoked for real ------------------------------------------------------------


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr.decode()
    assert "Traceback" not in lines[0]
    return lines[0]


def test_exit_10_when_the_repository_does_not_exist(cli, tmp_path):
    missing = tmp_path / "nowhere"
    done = cli.run("snapshots", "--repo", str(missing))
    assert done.returncode == 10
    assert str(missing) in one_error_line(done)

    empty = tmp_path / "empty"
    empty.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    done = cli.run("backup", str(src), "--repo", str(empty))
    assert done.returncode == 10
    assert "no repository" in one_error_line(done)
    assert list(empty.iterdir()) == []
    assert cli.run("backup", str(src), "--repo", str(missing)).returncode == 10
    assert not missing.exists()


LOCK_HOLDER = """
import os, sys, time
from strongroom.repo.repository import Repository
from strongroom.storage import LocalStorage
repo = Repository.open(LocalStorage(sys.argv[1]), os.environb[b"STRONGROOM_PASSWORD"], cache_root=sys.argv[2])
repo.lock(exclusive=True)
print("locked", flush=True)
time.sleep(600)
"""


def test_exit_11_when_locked_and_unlock_removes_the_stale_lock(cli, repo_path, cache_dir, tmp_path):
    cli.run("init", check=True)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(repo_path), str(cache_dir)],
                              stdout=subprocess.PIPE, env=cli.env)
    try:
        assert holder.stdout.readline() == b"locked\n"
        done = cli.run("backup", str(src))
        assert done.returncode == 11
        line = one_error_line(done)
        assert "locked" in line and "exclusive lock" in line and f"pid {holder.pid}" in line
        assert cli.run("unlock").stdout.decode().strip() == "removed 0 locks"  # it is alive
        assert len(objects(repo_path / "locks")) == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    done = cli.run("unlock", "--json", check=True)
    removed = summary_of(done)["removed"]
    assert len(removed) == 1 and f"pid {holder.pid}" in removed[0]
    assert objects(repo_path / "locks") == {}
    cli.run("backup", str(src), check=True)
    assert len(snapshot_ids(cli)) == 1


def test_exit_12_on_a_wrong_password(cli, tmp_path):
    cli.run("init", check=True)
    done = cli.run("snapshots", env={"STRONGROOM_PASSWORD": "not the password"})
    assert done.returncode == 12
    assert "wrong password" in one_error_line(done)
    assert "not the password" not in done.stderr.decode() + done.stdout.decode()


def test_exit_3_for_an_unreadable_file_and_the_snapshot_is_still_made(cli, repo_path, cache_dir, tmp_path):
    cli.run("init", check=True)
    src = tmp_path / "src"
    src.mkdir()
    (src / "readable.txt").write_bytes(b"fine\n")
    secret = src / "secret.txt"
    secret.write_bytes(b"nobody may read this\n")
    secret.chmod(0)
    # Root reads anything; without the capabilities that bypass file modes it cannot.
    command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
               sys.executable, "-m", "strongroom", "backup", str(src), "--json"]
    done = subprocess.run(command, capture_output=True, env=cli.env, timeout=120)
    assert done.returncode == 3, done.stderr.decode()
    errors = [e for e in json_lines(done.stdout) if e["type"] == "error"]
    assert [e["path"] for e in errors] == [str(secret)]
    assert "Permission denied" in errors[0]["message"]
    s = summary_of(done)
    assert s["snapshot"] and s["errors"] == 1

    human = subprocess.run(command[:-1] + ["--tag", "again"], capture_output=True, env=cli.env, timeout=120)
    assert human.returncode == 3
    assert str(secret) in human.stderr.decode()

    assert len(snapshot_ids(cli)) == 2
    target = tmp_path / "restore"
    cli.run("restore", s["snapshot"], "--target", str(target), check=True)
    assert (target / str(src).lstrip("/") / "readable.txt").read_bytes() == b"fine\n"


def test_exit_1_for_a_general_error(cli, tmp_path):
    cli.run("init", check=True)
    done = cli.run("restore", "deadbeef", "--target", str(tmp_path / "t"))
    assert done.returncode == 1
    assert "deadbeef" in one_error_line(done)


def test_exit_2_for_a_bad_command_line(cli, tmp_path):
    done = cli.run("backup", "--no-such-option")
    assert done.returncode == 2
    assert "no-such-option" in done.stderr.decode()
    cli.run("init", check=True)
    done = cli.run("backup", str(tmp_path / "no-such-dir"))  # an argument that names nothing
    assert done.returncode == 2
    assert "does not exist" in one_error_line(done)
