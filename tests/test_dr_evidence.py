"""The evidence a plan's steps give: commands run before and after them, room
at the target, the damaged objects a restore met and the files they take, and
the check of the repository a rehearsal restored from."""

from __future__ import annotations

import os
import random
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from crafted import dir_node, file_node, save_snapshot, save_tree
from strongroom.dr import hooks
from strongroom.dr.damage import FILES_NAMED, problems_of
from strongroom.dr.hooks import LINE_CHARS, TAIL_LINES, OutputTail, hook_env, run_hook
from strongroom.dr.plan import Hook, Plan, Step
from strongroom.dr.repocheck import check_repository
from strongroom.dr.space import InsufficientSpace, check_free_space
from strongroom.engine.backup import BackupOptions, run_backup
from strongroom.engine.restore import RestoreOptions, run_restore
from strongroom.repo.repository import Repository
from strongroom.storage import LocalStorage

from conftest import PASSWORD

KiB = 1024
MiB = 1024 * KiB
ENV = {"PATH": "/usr/bin:/bin"}


# ---- hooks ---------------------------------------------------------------------------


def test_a_hook_gives_its_exit_code_and_its_output_merged_in_order():
    done = run_hook(Hook("echo one; echo two >&2; echo three; exit 3", mode="optional"), "after", ENV)
    assert (done.exit_code, done.ok, done.timed_out) == (3, False, False)
    assert done.output_tail == ("one", "two", "three")
    assert (done.phase, done.mode, done.command) == ("after", "optional", "echo one; echo two >&2; echo three; exit 3")
    ok = run_hook(Hook("printf 'no newline at the end'"), "before", ENV)
    assert (ok.exit_code, ok.ok, ok.output_tail) == (0, True, ("no newline at the end",))


def test_a_hook_reads_nothing_from_stdin_and_gets_control_characters_made_safe():
    done = run_hook(Hook(r"cat; printf '\033[2J\033]0;title\007ok\r\n\377\376 end\n'"), "before", ENV)
    assert done.ok
    assert done.output_tail == ("\\x1b[2J\\x1b]0;title\\x07ok", "\ufffd\ufffd end")


def _gone(pid: int) -> bool:
    """Dead: no such process, or a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_timeout_stops_the_whole_group_a_grandchild_included(tmp_path):
    pid_file = tmp_path / "pid"
    done = run_hook(Hook(f"echo started; sleep 600 & echo $! > {pid_file}; wait", timeout=1), "before", ENV)
    assert (done.exit_code, done.timed_out, done.ok) == (None, True, False)
    assert done.output_tail[0] == "started"
    assert done.output_tail[-1] == "strongroom: stopped after its timeout of 1s"
    assert _gone(int(pid_file.read_text()))


def test_a_grandchild_that_ignores_sigterm_is_killed(tmp_path):
    pid_file = tmp_path / "pid"
    command = f"(trap '' TERM; exec sleep 600) & echo $! > {pid_file}; trap '' TERM; wait"
    done = run_hook(Hook(command, timeout=1), "after", ENV)
    assert (done.exit_code, done.timed_out) == (None, True)
    assert _gone(int(pid_file.read_text()))


def test_cancel_stops_a_running_hook_and_its_children(tmp_path):
    pid_file = tmp_path / "pid"
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    done = run_hook(Hook(f"sleep 600 & echo $! > {pid_file}; wait"), "before", ENV, cancel=cancel)
    assert (done.exit_code, done.timed_out, done.ok) == (None, False, False)
    assert done.output_tail[-1] == "strongroom: stopped: the run was cancelled"
    assert _gone(int(pid_file.read_text()))


def test_output_is_bounded_whatever_the_command_prints():
    # 50 MB on one line, then 100 000 short lines, then one line of 10 000 characters.
    command = ("head -c 50000000 /dev/zero | tr '\\0' 'x'; echo; seq 1 100000; "
               "head -c 10000 /dev/zero | tr '\\0' 'y'; echo; echo last")
    done = run_hook(Hook(command), "after", ENV)
    assert done.ok
    assert len(done.output_tail) == TAIL_LINES
    assert all(len(line) <= LINE_CHARS for line in done.output_tail)
    assert done.output_tail[-1] == "last"
    assert done.output_tail[-2] == "y" * (LINE_CHARS - 1) + "…"
    assert done.output_tail[:-2] == tuple(str(n) for n in range(100000 - TAIL_LINES + 3, 100001))


def test_the_tail_holds_a_few_kib_while_a_line_without_end_comes_in():
    tail = OutputTail()
    chunk = b"z" * 65536
    for _ in range(800):  # 50 MiB, no newline
        tail.feed(chunk)
        assert tail.held_bytes() <= 64 * KiB
    for _ in range(5000):
        tail.feed(b"\xff" * 1000 + b"\n")
        assert tail.held_bytes() <= 64 * KiB
    lines = tail.close()
    assert len(lines) == TAIL_LINES and lines[0] == "\ufffd" * (LINE_CHARS - 1) + "…"


def test_a_hook_that_cannot_start_says_why(tmp_path, monkeypatch):
    missing = tmp_path / "no" / "such" / "dir"
    done = run_hook(Hook("true"), "before", ENV, cwd=str(missing))
    assert (done.exit_code, done.ok, done.timed_out) == (None, False, False)
    assert done.output_tail == (f"cannot start: No such file or directory: {missing}",)
    monkeypatch.setattr(hooks, "SHELL", str(tmp_path / "sh"))  # a system without /bin/sh
    done = run_hook(Hook("true"), "before", ENV)
    assert done.exit_code is None and done.output_tail == (f"cannot start: No such file or directory: {tmp_path}/sh",)


def test_an_environment_that_cannot_be_given_is_a_hook_that_cannot_start():
    done = run_hook(Hook("true"), "before", {"PATH": "/bin", "BAD": "a\0b"})
    assert done.exit_code is None and done.output_tail == ("cannot start: embedded null byte",)


def test_a_hook_runs_in_its_working_directory(tmp_path):
    done = run_hook(Hook("pwd; echo made > here"), "after", ENV, cwd=str(tmp_path))
    assert done.output_tail == (str(tmp_path),) and (tmp_path / "here").read_text() == "made\n"


SECRETS = {"STRONGROOM_PASSWORD": "repo-secret", "STRONGROOM_PASSWORD_FILE": "/etc/secret",
           "STRONGROOM_PASSWORD_COMMAND": "cat /etc/secret", "STRONGROOM_WEBDAV_PASSWORD": "dav-secret",
           "STRONGROOM_WEBDAV_PASSWORD_BACKUPS": "dav-secret-2", "AWS_SECRET_ACCESS_KEY": "aws-secret",
           "AWS_ACCESS_KEY_ID": "AKIA", "PGPASSWORD": "pg-secret", "PGPASSFILE": "/root/.pgpass",
           "STRONGROOM_REPO": "/srv/repo", "PYTHONPATH": "/x"}


def _plan(tmp_path: Path) -> tuple[Plan, Step]:
    step = Step("db", name="database step")
    return Plan("Production DR", (step,), str(tmp_path / "targets")), step


def _env_seen(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    done = run_hook(Hook("env > seen.env"), "before", env, cwd=str(tmp_path))
    assert done.ok, done.output_tail
    seen = dict(line.split("=", 1) for line in (tmp_path / "seen.env").read_text().splitlines())
    for added_by_the_shell in ("PWD", "OLDPWD", "SHLVL", "_"):
        seen.pop(added_by_the_shell, None)
    return seen


def test_a_hook_gets_the_steps_facts_and_no_secret(tmp_path):
    plan, step = _plan(tmp_path)
    parent = {**SECRETS, "PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "TZ": "UTC"}
    when = datetime(2026, 11, 30, 2, 0, 5, tzinfo=timezone.utc)
    env = hook_env(plan, step, "db", "/restore/db", "3fa2c1d0", when, "test", parent=parent)
    assert env == {
        "PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "TZ": "UTC",
        "STRONGROOM_PLAN": "Production DR", "STRONGROOM_STEP": "database step", "STRONGROOM_CONFIG": "db",
        "STRONGROOM_TARGET": "/restore/db", "STRONGROOM_SNAPSHOT": "3fa2c1d0",
        "STRONGROOM_SNAPSHOT_TIME": "2026-11-30T02:00:05Z", "STRONGROOM_MODE": "test"}
    assert _env_seen(tmp_path, env) == env


def test_this_process_secrets_do_not_reach_a_hook(tmp_path, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("USER", "operator")
    plan, step = _plan(tmp_path)
    env = hook_env(plan, step, "db", "/restore/db", None, None, "run")
    seen = _env_seen(tmp_path, env)
    assert seen["USER"] == "operator" and seen["STRONGROOM_SNAPSHOT"] == "" and seen["STRONGROOM_MODE"] == "run"
    text = (tmp_path / "seen.env").read_text()
    assert not any(secret in text for secret in SECRETS.values())
    assert set(seen) <= {*hooks.PASSED_THROUGH, "STRONGROOM_PLAN", "STRONGROOM_STEP", "STRONGROOM_CONFIG",
                         "STRONGROOM_TARGET", "STRONGROOM_SNAPSHOT", "STRONGROOM_SNAPSHOT_TIME", "STRONGROOM_MODE"}


# ---- free space ----------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs with 64 inodes, mounted (the tests run as root) and unmounted after."""
    assert os.geteuid() == 0, "the free-space tests mount a tmpfs and need root"
    mount = tmp_path / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=64", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_enough_room_passes_and_too_little_is_one_clear_line(small_fs):
    target = small_fs / "restore"
    target.mkdir()
    check_free_space(str(target), 500 * KiB)
    with pytest.raises(InsufficientSpace) as raised:
        check_free_space(str(target), 2 * MiB)
    message = str(raised.value)
    assert "\n" not in message
    assert message == (f"not enough space at {target}: the restore needs 2.02 MiB "
                       "(2.00 MiB and a margin of 20.5 KiB), 1.00 MiB is free")


def test_a_target_not_made_yet_is_measured_on_its_nearest_parent(small_fs):
    target = small_fs / "not" / "made" / "yet"
    check_free_space(str(target), 100 * KiB)
    (small_fs / "filler").write_bytes(b"\0" * (900 * KiB))
    with pytest.raises(InsufficientSpace, match=rf"at {target}: .* is free \(on the file system of {small_fs}\)$"):
        check_free_space(str(target), 200 * KiB)


def test_what_already_sits_at_the_target_is_not_needed_again(small_fs):
    check_free_space(str(small_fs / "t"), 3 * MiB, existing_bytes=int(2.5 * MiB))
    with pytest.raises(InsufficientSpace):
        check_free_space(str(small_fs / "t"), 3 * MiB, existing_bytes=1 * MiB)


def test_too_few_inodes_is_refused(small_fs):
    check_free_space(str(small_fs / "t"), 1 * KiB, needed_files=20)
    with pytest.raises(InsufficientSpace, match=rf"^not enough inodes at {small_fs}/t: the restore makes 100 files"):
        check_free_space(str(small_fs / "t"), 1 * KiB, needed_files=100)


# ---- damaged objects -----------------------------------------------------------------


def _data_packs(repo_path: Path) -> set[Path]:
    return {p for p in (repo_path / "data").rglob("*") if p.is_file()}


@pytest.fixture
def two_backups(tmp_path, repo_path, cache_dir):
    """A first backup whose data pack holds first/a.bin and first/b.bin; a second that adds
    second/c.bin in a pack of its own and second/a-copy.bin, the same bytes as a.bin."""
    repo = Repository.init(LocalStorage(str(repo_path)), PASSWORD, cache_root=str(cache_dir), pack_size=64 * KiB)
    src = tmp_path / "src"
    (src / "first").mkdir(parents=True)
    rng = random.Random(5)
    a = rng.randbytes(40 * KiB)
    (src / "first" / "a.bin").write_bytes(a)
    (src / "first" / "b.bin").write_bytes(rng.randbytes(40 * KiB))
    run_backup(repo, BackupOptions(paths=(str(src),)))
    [first_pack] = [p for p in _data_packs(repo_path) if p.stat().st_size > 64 * KiB]
    (src / "second").mkdir()
    (src / "second" / "c.bin").write_bytes(rng.randbytes(40 * KiB))
    (src / "second" / "a-copy.bin").write_bytes(a)
    snap = run_backup(repo, BackupOptions(paths=(str(src),))).snapshot
    return {"repo": repo, "src": src, "snapshot": snap, "pack": first_pack, "repo_path": repo_path}


def _flip(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x55
    path.write_bytes(bytes(data))


def _restore(repo, snapshot, target, include=()):
    return run_restore(repo, snapshot, RestoreOptions(str(target), include=include, verify=True))


def test_a_flipped_byte_names_its_pack_and_exactly_the_files_with_content_in_it(two_backups, tmp_path):
    b = two_backups
    _flip(b["pack"], 0.25)  # inside the first blob written; the other blob of the pack still reads
    restored = _restore(b["repo"], b["snapshot"], tmp_path / "target")
    assert [e["object"] for e in restored.errors] == [f"pack {b['pack'].name}"] * len(restored.errors)
    assert len(restored.errors) in (1, 2)  # the damaged blob's files: a.bin and its copy, or b.bin
    [problem] = problems_of(b["repo"], b["snapshot"], restored.errors)
    src = str(b["src"])
    assert problem.object == f"pack {b['pack'].name}"
    assert b["pack"].name[:16] in problem.message
    assert sorted(problem.files) == [f"{src}/first/a.bin", f"{src}/first/b.bin", f"{src}/second/a-copy.bin"]


def test_a_missing_pack_is_named_with_the_files_of_the_step_selection_only(two_backups, tmp_path):
    b = two_backups
    b["pack"].unlink()
    include = ("second",)
    restored = _restore(b["repo"], b["snapshot"], tmp_path / "target", include)
    assert (tmp_path / "target" / str(b["src"]).lstrip("/") / "second" / "c.bin").is_file()
    [problem] = problems_of(b["repo"], b["snapshot"], restored.errors, include)
    assert problem.object == f"pack {b['pack'].name}" and problem.message.startswith("cannot read pack: ")
    assert problem.files == (f"{b['src']}/second/a-copy.bin",)


def test_an_undamaged_restore_has_no_problems(two_backups, tmp_path):
    restored = _restore(two_backups["repo"], two_backups["snapshot"], tmp_path / "target")
    assert restored.errors == [] and restored.summary["files_verified"] == 4
    assert problems_of(two_backups["repo"], two_backups["snapshot"], restored.errors) == ()


def test_a_file_that_does_not_verify_is_named_by_its_snapshot_path(two_backups, tmp_path):
    b = two_backups
    target = tmp_path / "restore" / "here"
    restored_path = f"{target}{b['src']}/first/b.bin"
    event = {"message_type": "error", "message": "verify: restored content differs from the snapshot",
             "path": restored_path, "item": restored_path, "during": "restore"}
    [problem] = problems_of(b["repo"], b["snapshot"], [event])
    assert (problem.object, problem.files) == ("file content", (f"{b['src']}/first/b.bin",))
    assert problem.message == "verify: restored content differs from the snapshot"


def test_a_crafted_graph_of_trees_is_not_walked_path_by_path(repo):
    """60 levels, each a directory holding the level below twice: 2^60 paths to one damaged file."""
    bad = file_node(repo, b"bad\xff.bin", b"the damaged chunk")
    tree = save_tree(repo, bad, file_node(repo, b"good.bin", b"a chunk that is fine"))
    for _ in range(60):
        tree = save_tree(repo, dir_node(b"l", tree), dir_node(b"r", tree))
    snapshot = repo.load_snapshot(save_snapshot(repo, tree))
    event = {"message": "blob in data/…: does not authenticate", "object": f"blob {bad.content[0].hex()}"}
    [problem] = problems_of(repo, snapshot, [event])
    assert len(problem.files) == FILES_NAMED
    assert problem.message.endswith(f"(the first {FILES_NAMED} files it touches are named)")
    assert all(f.endswith("/bad\\xff.bin") and f.count("/") == 61 for f in problem.files)
    assert problems_of(repo, snapshot, [event], include=("*/good.bin",))[0].files == ()


# ---- the repository check ------------------------------------------------------------


def test_a_clean_repository_checks_and_counts_what_was_read(two_backups):
    repo, repo_path = two_backups["repo"], two_backups["repo_path"]
    packs = len(_data_packs(repo_path))
    done = check_repository(repo, packs_read=1)
    assert (done.structure_ok, done.problems) == (True, ())
    assert (done.packs_total, done.packs_read, done.share_read) == (packs, 1, round(1 / packs, 4))
    assert done.repository == f"local:{repo_path}"
    everything = check_repository(repo, packs_read=0, read_data_subset=1.0)
    assert (everything.structure_ok, everything.problems, everything.share_read) == (True, (), 1.0)
    assert everything.packs_read == packs


def test_the_check_reads_packs_the_restores_did_not(two_backups, tmp_path):
    b = two_backups
    restored = _restore(b["repo"], b["snapshot"], tmp_path / "target", ("first",))
    assert restored.read_packs == {bytes.fromhex(b["pack"].name)}
    packs = len(_data_packs(b["repo_path"]))
    share = 1 / packs
    done = check_repository(b["repo"], len(restored.read_packs), read_data_subset=share, read_packs=restored.read_packs)
    assert (done.packs_read, done.share_read) == (2, round(2 / packs, 4))
    whole = check_repository(b["repo"], 0, read_data_subset=1.0, read_packs=restored.read_packs)
    assert (whole.packs_read, whole.share_read) == (packs, 1.0)


def test_a_damaged_pack_is_a_problem_the_structure_does_not_show(two_backups):
    b = two_backups
    _flip(b["pack"])
    structure = check_repository(b["repo"], 0)
    assert (structure.structure_ok, structure.problems) == (True, ())
    read = check_repository(b["repo"], 0, read_data_subset=1.0)
    assert read.structure_ok and read.problems
    assert all(b["pack"].name in line and "\n" not in line for line in read.problems)


def test_a_missing_pack_or_a_damaged_index_fails_the_structure(two_backups, repo_path, cache_dir):
    b = two_backups
    b["pack"].unlink()
    missing = check_repository(b["repo"], 0)
    assert not missing.structure_ok
    assert any(line.startswith(f"data/") and "pack is missing" in line and "files: " in line
               for line in missing.problems)
    [index] = [p for p in (repo_path / "index").iterdir() if p.is_file()][:1]
    _flip(index)
    fresh = Repository.open(LocalStorage(str(repo_path)), PASSWORD, cache_root=str(cache_dir))
    damaged = check_repository(fresh, 0)
    assert not damaged.structure_ok and any(index.name in line for line in damaged.problems)


def test_a_check_that_cannot_be_finished_is_not_taken_for_a_clean_one(two_backups):
    b = two_backups
    for p in (b["repo_path"] / "snapshots").iterdir():
        p.unlink()
    (b["repo_path"] / "snapshots").rmdir()  # a folder that cannot be listed is no empty folder
    done = check_repository(b["repo"], 3)
    assert (done.structure_ok, done.packs_read, done.share_read) == (False, 0, 0.0)
    [line] = done.problems
    assert line.startswith("the check could not be finished: ")


def test_a_repository_over_webdav_is_checked_and_named_without_its_password(wsgidav_server, tmp_path):
    from strongroom.storage.webdav import WebDAVStorage
    server = wsgidav_server.scratch()
    storage = WebDAVStorage(server.url, server.username, server.password)
    repo = Repository.init(storage, PASSWORD, cache_root=str(tmp_path / "cache"), pack_size=64 * KiB)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(random.Random(3).randbytes(100 * KiB))
    run_backup(repo, BackupOptions(paths=(str(src),)))
    done = check_repository(repo, 0, read_data_subset=0.5)
    assert (done.structure_ok, done.problems) == (True, ())
    assert done.repository == f"webdav+{server.url}"
    assert done.packs_total == len([p for p in (server.root / "data").rglob("*") if p.is_file()])
    assert done.packs_read == -(-done.packs_total // 2)
    assert server.password not in repr(done)
