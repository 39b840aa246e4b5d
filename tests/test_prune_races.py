"""prune against other processes: a backup started at the same moment, and kill -9 at random points.

The processes are the real `strongroom` command. Each is started, has imported
strongroom, and then waits at a gate (a line on its standard input) before it
runs its command: so two of them reach the repository within a millisecond or
so of each other, and a kill delay counts from the start of the prune's work,
not from Python's start-up.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import CLI
from treeutil import snapshot_tree

BLOB = 256 * 1024  # below the chunker's minimum: one file, one blob
LOCKED = 11

# The command modules load lazily; the gate loads them before it opens, so
# "go" starts the work itself and not seconds of imports.
GATE = ("import sys\n"
        "from strongroom.cli.main import main\n"
        "import strongroom.cli.cmd_backup, strongroom.cli.cmd_prune, strongroom.engine.prune\n"
        "sys.stderr.write('ready\\n'); sys.stderr.flush()\n"
        "if sys.stdin.readline() == 'go\\n':\n"
        "    main(sys.argv[1:])\n")  # a test that failed first closes the gate: nothing runs


class Gated:
    """A `strongroom` process held at the gate until `go`."""

    def __init__(self, cli: CLI, workdir: Path, label: str, *args: str) -> None:
        self.args = args
        self.out_path = workdir / f"{label}.out"
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-c", GATE, *args], stdin=subprocess.PIPE,
                                     stdout=self.out, stderr=subprocess.PIPE, env=cli.env)
        assert self.proc.stderr.readline() == b"ready\n"

    def go(self) -> None:
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def finish(self) -> subprocess.CompletedProcess:
        _, err = self.proc.communicate(timeout=180)
        self.out.close()
        return subprocess.CompletedProcess(self.args, self.proc.returncode, self.out_path.read_bytes(), err)

    def kill(self) -> subprocess.CompletedProcess:
        self.proc.kill()
        return self.finish()


def summary(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, f"{done.args} exited {done.returncode}: {done.stderr.decode()}"
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def held_locks(repo_path: Path) -> list[str]:
    return [n for n in os.listdir(repo_path / "locks") if not n.startswith(".")]


def write_files(folder: Path, contents: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (folder / name).write_bytes(data)


@dataclass(frozen=True)
class Template:
    """A repository with one forgotten snapshot, whose packs are partly garbage."""
    repo: Path
    snapshots: dict[str, tuple[Path, dict]]  # id -> (source, what the backup saw)
    incoming: Path  # what the racing backup backs up
    incoming_tree: dict


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Template:
    root = tmp_path_factory.mktemp("prune-races")
    rnd = random.Random(31)
    cli = CLI(root / "repo", root / "cache")
    cli.run("init", "--pack-size", "1", check=True)  # 1 MiB packs: four blobs each
    first = {f"f{i:03d}.bin": rnd.randbytes(BLOB) for i in range(192)}
    src = root / "src"
    write_files(src, first)
    summary(cli.run("backup", str(src), "--json"))
    dropped = sorted(first)[1::2]
    for name in dropped:
        (src / name).unlink()
    kept = summary(cli.run("backup", str(src), "--json"))["snapshot"]
    assert summary(cli.run("forget", "--keep-last", "1", "--json"))["kept"] == 1
    # Half of it is data the forgotten snapshot held (prune wants it gone), half is new.
    incoming = root / "incoming"
    write_files(incoming, {name: first[name] for name in dropped[::2]})
    write_files(incoming, {f"n{i:03d}.bin": rnd.randbytes(BLOB) for i in range(48)})
    return Template(root / "repo", {kept: (src, snapshot_tree(src))}, incoming, snapshot_tree(incoming))


def snapshot_ids(cli: CLI) -> set[str]:
    done = cli.run("snapshots", "--json", check=True)
    return {doc["id"] for doc in json.loads(done.stdout)}


def assert_restores(cli: CLI, tmp_path: Path, expected: dict[str, tuple[Path, dict]]) -> None:
    assert snapshot_ids(cli) == set(expected)
    for snap_id, (src, tree) in expected.items():
        target = tmp_path / f"restore-{snap_id[:16]}"
        cli.run("restore", snap_id, "--target", str(target), "--verify", check=True)
        assert snapshot_tree(target / src.relative_to("/")) == tree, f"snapshot {snap_id[:8]} restores differently"
        shutil.rmtree(target)


def assert_checks_clean(cli: CLI, warnings_allowed: bool = False) -> dict:
    report = summary(cli.run("check", "--read-data", "--json"))
    assert report["ok"] and not report["problems"], report
    assert warnings_allowed or not report["warnings"], report
    return report


def pack_names(repo_path: Path) -> set[str]:
    return {name for _, _, files in os.walk(repo_path / "data") for name in files if not name.startswith(".")}


def wait_until_it_stores_packs(repo_path: Path, proc: Gated, packs: set[str]) -> None:
    """A lock object alone may still be given up (its writer looks for others only
    after writing it); a pack written means the process is at work under its lock."""
    while not pack_names(repo_path) - packs:
        assert proc.proc.poll() is None, "the first process ended before it was seen at work"
        time.sleep(0.0005)


# ---- backup and prune at the same moment ----------------------------------------------------

STARTS = [
    # (what opens first, whether the other opens only once the first is at work,
    #  or else how many milliseconds after it)
    pytest.param("backup", True, 0, id="prune-during-backup"),
    pytest.param("prune", True, 0, id="backup-during-prune"),
    *(pytest.param("backup", False, ms, id=f"together-backup-first-{ms}ms") for ms in (0, 3)),
    *(pytest.param("prune", False, ms, id=f"together-prune-first-{ms}ms") for ms in (0, 3)),
]


@pytest.mark.parametrize("wait", [False, True], ids=["no-wait", "retry-lock"])
@pytest.mark.parametrize("first,staggered,lag_ms", STARTS)
def test_backup_and_prune_started_together(cli, repo_path, tmp_path, template, first, staggered, lag_ms, wait):
    shutil.copytree(template.repo, repo_path)
    assert held_locks(repo_path) == []
    retry = ("--retry-lock", "60") if wait else ()
    procs = {
        "backup": Gated(cli, tmp_path, "backup", "backup", str(template.incoming), "--json", *retry),
        "prune": Gated(cli, tmp_path, "prune", "prune", "--json", *retry),
    }
    second = "prune" if first == "backup" else "backup"
    packs = pack_names(repo_path)
    procs[first].go()
    if staggered:
        wait_until_it_stores_packs(repo_path, procs[first], packs)
    else:
        time.sleep(lag_ms / 1000)
    procs[second].go()
    done = {name: proc.finish() for name, proc in procs.items()}
    codes = {name: d.returncode for name, d in done.items()}

    for name, d in done.items():
        assert d.returncode in (0, LOCKED), f"{name} exited {d.returncode}: {d.stderr.decode()}"
        if d.returncode == LOCKED:
            assert "locked" in d.stderr.decode(), d.stderr.decode()
    if wait:
        assert codes == {"backup": 0, "prune": 0}, {n: d.stderr.decode() for n, d in done.items()}
    elif staggered:
        # The first was at work under its lock when the second looked: the second must not go ahead.
        assert codes == {first: 0, second: LOCKED}, {n: d.stderr.decode() for n, d in done.items()}
    else:
        assert LOCKED in codes.values(), "both ran at once without either seeing the other's lock"
    assert held_locks(repo_path) == []  # every process released what it held

    assert_checks_clean(cli)
    expected = dict(template.snapshots)
    if codes["backup"] == 0:
        new = summary(done["backup"])["snapshot"]
    else:
        new = summary(cli.run("backup", str(template.incoming), "--json"))["snapshot"]
    expected[new] = (template.incoming, template.incoming_tree)
    if codes["prune"] == 0:
        pruned = summary(done["prune"])
        assert pruned["packs_repacked"] > 0 and pruned["bytes_freed"] > 0, pruned
    else:
        pruned = summary(cli.run("prune", "--json"))
        assert pruned["packs_repacked"] > 0 and pruned["bytes_freed"] > 0, pruned
    assert_checks_clean(cli)
    assert_restores(cli, tmp_path, expected)
    # Nothing of the forgotten snapshot is left behind for a later prune.
    assert summary(cli.run("prune", "--json"))["bytes_freed"] == 0


# ---- prune killed at random points ----------------------------------------------------------

def stored_objects(repo_path: Path) -> set[tuple[str, int]]:
    """The packs and index objects, by name and inode (a rewritten one counts as new)."""
    found, folders = set(), [repo_path / "data", repo_path / "index"]
    while folders:
        with os.scandir(folders.pop()) as entries:  # inodes from the listing: prune may delete meanwhile
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                elif not entry.name.startswith("."):
                    found.add((entry.name, entry.inode()))
    return found


def measure_prune(cli: CLI, repo_path: Path, scratch: Path) -> tuple[float, int]:
    """How long a whole prune of this repository takes here, and how many packs and
    index objects it writes and deletes: measured on a copy."""
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(repo_path, scratch / "repo")
    before = stored_objects(scratch / "repo")
    prune = Gated(CLI(scratch / "repo", scratch / "cache"), scratch, "prune", "prune", "--json")
    started = time.monotonic()
    prune.go()
    done = prune.finish()
    elapsed = time.monotonic() - started
    assert summary(done)["packs_repacked"] > 0
    changes = len(stored_objects(scratch / "repo") ^ before)
    shutil.rmtree(scratch)
    return elapsed, changes


def kill_prune(cli: CLI, repo_path: Path, tmp_path: Path, rnd: random.Random, by_time: bool) -> str:
    """Kill -9 a prune at a random point: after a random delay over its duration, or
    after a random number of its writes and deletes (most of which come late and fast).
    Returns where it was: "before" its lock, "planning", "repacking", "deleting", or "ended"."""
    duration, changes = measure_prune(cli, repo_path, tmp_path / "scratch")
    before, locks_before = stored_objects(repo_path), set(held_locks(repo_path))
    prune = Gated(cli, tmp_path, "prune", "prune", "--json")
    prune.go()
    if by_time:
        time.sleep(rnd.uniform(0.0, 0.95) * duration)
    else:
        wanted = rnd.randint(1, changes - 1)
        give_up = time.monotonic() + 120  # a prune that hangs is killed too, and the checks below judge it
        while prune.proc.poll() is None and len(stored_objects(repo_path) ^ before) < wanted:
            if time.monotonic() > give_up:
                break
    done = prune.kill()
    assert done.returncode in (-9, 0), done.stderr.decode()
    now = stored_objects(repo_path)
    if not set(held_locks(repo_path)) - locks_before:  # it had not taken its lock, or had let it go
        return "ended" if now != before else "before"
    return "deleting" if before - now else "repacking" if now - before else "planning"


def test_prune_killed_at_random_points(cli, repo_path, tmp_path, template):
    shutil.copytree(template.repo, repo_path)
    rnd = random.Random(20240917)
    expected = dict(template.snapshots)
    work = tmp_path / "work"
    write_files(work, {f"w0-{i:02d}.bin": rnd.randbytes(BLOB) for i in range(48)})
    current = summary(cli.run("backup", str(work), "--json"))["snapshot"]
    expected[current] = (work, snapshot_tree(work))

    stages = []
    for r in range(1, 9):
        # The work folder changes and its older snapshot is forgotten: half of
        # the packs it alone used become garbage, so every prune repacks.
        for p in sorted(work.iterdir())[::2]:
            p.unlink()
        write_files(work, {f"w{r}-{i:02d}.bin": rnd.randbytes(BLOB) for i in range(24)})
        newer = summary(cli.run("backup", str(work), "--json"))["snapshot"]  # after a killed prune, too
        expected[newer] = (work, snapshot_tree(work))
        forgot = summary(cli.run("forget", "--keep-last", "1", "--json"))
        assert forgot["removed"] == [current], forgot
        del expected[current]
        current = newer

        stages.append(kill_prune(cli, repo_path, tmp_path, rnd, by_time=r % 2 == 1))
        assert_checks_clean(cli, warnings_allowed=True)
        assert_restores(cli, tmp_path, expected)

    assert {"repacking", "deleting"} <= set(stages), f"the kills missed a stage of the work: {stages}"
    summary(cli.run("prune", "--json"))
    report = assert_checks_clean(cli, warnings_allowed=True)
    # A prune killed while it wrote its lock leaves that write's temporary
    # file, which prune keeps for an hour (it may be a live writer's): the
    # one warning a check may still give here.
    assert all("being written by a backup running now (e.g. locks/.tmp-" in w for w in report["warnings"]), report
    assert_restores(cli, tmp_path, expected)
    # The killed prunes' locks are stale (their pids are gone on this machine):
    # nothing above waited for them, and the next command that took a lock
    # past each one removed it, so unlock finds none.
    assert len([s for s in stages if s not in ("before", "ended")]) > 0
    assert held_locks(repo_path) == []
    assert summary(cli.run("unlock", "--json"))["removed"] == []
    extra = summary(cli.run("backup", str(work), "--json"))["snapshot"]
    expected[extra] = (work, snapshot_tree(work))
    assert_restores(cli, tmp_path, expected)
