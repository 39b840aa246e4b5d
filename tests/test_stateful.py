"""Random sequences of backup, forget and prune: every point left restores as it was made.

A hypothesis state machine changes a source tree (files of all sizes, many
larger than a chunk, duplicates and near-duplicates so that dedup matters),
backs it up, forgets points by policy or by id and prunes with every
--max-unused share. The commands run through the real command line in this
process (`strongroom.cli.main.main`), so options, locks, JSON output and exit
codes are the ones a person gets. After every step that touches the
repository, `check --read-data` must be clean and every remaining point must
restore byte for byte to the tree it was made from.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import signal
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from conftest import PASSWORD
from strongroom.cli.main import main as strongroom_main

KiB = 1024
MiB = 1024 * KiB
SOURCE_CAP = 12 * MiB  # beyond this, new files are kept small
MAX_POINTS = 5  # then the machine must forget before it backs up again

DIRS = st.sampled_from(["", "d0", "d0/d1", "d2"])
NAMES = st.sampled_from([f"f{i}" for i in range(6)])
SIZES = st.one_of(
    st.sampled_from([0, 1]),
    st.integers(2, 2 * KiB),
    st.integers(2 * KiB, 300 * KiB),
    st.integers(2 * KiB, 300 * KiB),
    st.integers(MiB + MiB // 2, 4 * MiB),  # a few chunks each
)
KINDS = st.sampled_from(["random", "text"])
SEEDS = st.integers(0, 2**32 - 1)
PICK = st.integers(0, 1000)
TAGS = ["keep", "monthly"]
SHARES = st.sampled_from(["0%", "5%", "50%", "100%"])


def content(seed: int, size: int, kind: str) -> bytes:
    rnd = random.Random(seed)
    if kind == "random":
        return rnd.randbytes(size)
    words = [rnd.randbytes(rnd.randint(2, 8)).hex().encode() for _ in range(64)]
    out = b" ".join(rnd.choices(words, k=size // 8 + 1))
    return out[:size]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parents(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def read_tree(root: Path) -> tuple[dict[str, str], set[str]]:
    """(relative file path -> sha256, relative directories) below root."""
    files, dirs = {}, set()
    for dirpath, dirnames, filenames in os.walk(root):
        base = os.path.relpath(dirpath, root)
        for name in dirnames:
            dirs.add(os.path.normpath(os.path.join(base, name)))
        for name in filenames:
            path = os.path.join(dirpath, name)
            assert os.path.isfile(path) and not os.path.islink(path), path
            with open(path, "rb") as f:
                files[os.path.normpath(os.path.join(base, name))] = sha(f.read())
    return files, dirs


@dataclass(frozen=True)
class RecoveryPoint:
    time: datetime
    tags: tuple[str, ...]
    files: dict[str, str]
    dirs: frozenset[str]


class BackupForgetPrune(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="strongroom-stateful-"))
        self.src = self.tmp / "src"
        self.src.mkdir()
        self.repo_path = self.tmp / "repo"
        (self.tmp / "password").write_bytes(PASSWORD)
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = set()
        self.points: dict[str, RecoveryPoint] = {}
        self.clock = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
        self.restores = 0
        self.forgotten = False  # since the last prune

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- the command line, in this process ---------------------------------------------

    def run(self, *args: str) -> tuple[int, str, str]:
        argv = [args[0], "--repo", str(self.repo_path), "--password-file", str(self.tmp / "password"),
                "--cache-dir", str(self.tmp / "cache"), *args[1:]]
        out, err = io.StringIO(), io.StringIO()
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                strongroom_main(argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            signal.signal(signal.SIGTERM, sigterm)
        return code, out.getvalue(), err.getvalue()

    def summary(self, *args: str) -> dict:
        code, out, err = self.run(*args)
        assert code == 0, f"strongroom {' '.join(args)} exited {code}:\n{out}\n{err}"
        last = json.loads(out.strip().splitlines()[-1])
        assert last["type"] == "summary", last
        return last

    @initialize(pack_mib=st.sampled_from([4, 1]),
                big=st.tuples(DIRS, NAMES, st.integers(MiB + MiB // 2, 4 * MiB), SEEDS),
                more=st.lists(st.tuples(DIRS, NAMES, SIZES, SEEDS, KINDS), max_size=5))
    def init_repository(self, pack_mib: int, big: tuple, more: list) -> None:
        """An empty repository, and a source tree that holds at least one file of several chunks."""
        self.summary("init", "--pack-size", str(pack_mib), "--json")
        where, name, size, seed = big
        self.write_file(where, name, size, seed, "random")
        for spec in more:
            self.write_file(*spec)

    # ---- the source tree -----------------------------------------------------------------

    def pick(self, which: int) -> str:
        names = sorted(self.files)
        return names[which % len(names)]

    def put(self, rel: str, data: bytes) -> None:
        for d in parents(rel):
            self.dirs.add(d)
        (self.src / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.src / rel).write_bytes(data)
        self.files[rel] = data

    def room(self, size: int) -> int:
        left = SOURCE_CAP - sum(len(d) for d in self.files.values())
        return size if size <= left else min(size, 64 * KiB)

    @rule(where=DIRS, name=NAMES, size=SIZES, seed=SEEDS, kind=KINDS)
    def write_file(self, where: str, name: str, size: int, seed: int, kind: str) -> None:
        self.put(f"{where}/{name}".lstrip("/"), content(seed, self.room(size), kind))

    @rule(where=DIRS, specs=st.lists(st.tuples(SEEDS, st.integers(10 * KiB, 250 * KiB), KINDS), min_size=2, max_size=8))
    def write_many(self, where: str, specs: list) -> None:
        """Small files that share packs, so a later forget leaves packs partly used."""
        for i, (seed, size, kind) in enumerate(specs):
            self.put(f"{where}/s{i}".lstrip("/"), content(seed, self.room(size), kind))

    @precondition(lambda self: self.files)
    @rule(which=PICK, where=DIRS, name=NAMES)
    def copy_file(self, which: int, where: str, name: str) -> None:
        """A duplicate: every chunk of it is already stored."""
        data = self.files[self.pick(which)]
        self.put(f"{where}/{name}".lstrip("/"), data[:self.room(len(data))])

    @precondition(lambda self: self.files)
    @rule(which=PICK, how=st.sampled_from(["flip", "insert", "append", "truncate", "rewrite"]), seed=SEEDS)
    def modify_file(self, which: int, how: str, seed: int) -> None:
        rel = self.pick(which)
        data = self.files[rel]
        rnd = random.Random(seed)
        at = rnd.randint(0, len(data))
        if how == "flip" and data:  # same size: only the contents tell
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
        elif how == "insert":  # most chunks of a large file survive the shift
            data = data[:at] + rnd.randbytes(rnd.randint(1, 4 * KiB)) + data[at:]
        elif how == "append":
            data = data + rnd.randbytes(self.room(rnd.randint(1, 600 * KiB)))
        elif how == "truncate":
            data = data[:at]
        else:
            data = rnd.randbytes(len(data))
        self.put(rel, data)

    @precondition(lambda self: self.files)
    @rule(which=PICK, where=DIRS, name=NAMES)
    def rename_file(self, which: int, where: str, name: str) -> None:
        old, new = self.pick(which), f"{where}/{name}".lstrip("/")
        if old == new:
            return
        for d in parents(new):
            self.dirs.add(d)
        (self.src / new).parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.src / old, self.src / new)
        self.files[new] = self.files.pop(old)

    @precondition(lambda self: self.files)
    @rule(which=PICK)
    def delete_file(self, which: int) -> None:
        rel = self.pick(which)
        (self.src / rel).unlink()
        del self.files[rel]

    @precondition(lambda self: self.dirs)
    @rule(which=PICK)
    def remove_dir(self, which: int) -> None:
        gone = sorted(self.dirs)[which % len(self.dirs)]
        shutil.rmtree(self.src / gone)
        self.dirs = {d for d in self.dirs if d != gone and not d.startswith(gone + "/")}
        self.files = {f: d for f, d in self.files.items() if not f.startswith(gone + "/")}

    # ---- the repository ------------------------------------------------------------------

    @precondition(lambda self: len(self.points) < MAX_POINTS)
    @rule(tag=st.sampled_from([None, *TAGS]), minutes=st.integers(1, 3000))
    def backup(self, tag: str | None, minutes: int) -> None:
        files, dirs = read_tree(self.src)
        assert files == {rel: sha(data) for rel, data in self.files.items()} and dirs == self.dirs
        self.clock += timedelta(minutes=minutes)
        args = ["backup", str(self.src), "--time", self.clock.isoformat(), "--json"]
        s = self.summary(*args, *(["--tag", tag] if tag else []))
        assert s["errors"] == 0 and s["total_files"] == len(files)
        assert s["total_bytes"] == sum(len(d) for d in self.files.values())
        # Dedup: a chunk is stored once, and content a kept point holds is not stored again.
        known = {digest for p in self.points.values() for digest in p.files.values()}
        new_content = {data for data in self.files.values() if sha(data) not in known}
        new_bytes = sum(len(d) for d in new_content)
        assert s["data_added_raw"] <= new_bytes, s
        if new_bytes == 0:  # at most the one empty chunk of an empty file
            assert s["data_blobs"] <= len(new_content), s
        assert s["snapshot"] not in self.points
        self.points[s["snapshot"]] = RecoveryPoint(self.clock, (tag,) if tag else (), files, frozenset(dirs))
        self.verify(after_prune=False)

    def newest_first(self) -> list[str]:
        return sorted(self.points, key=lambda i: self.points[i].time, reverse=True)

    def forget(self, args: list[str], keep: set[str], then_prune: bool) -> None:
        s = self.summary("forget", *args, *(["--prune"] if then_prune else []), "--json")
        assert sorted(s["removed"]) == sorted(set(self.points) - keep)
        assert s["kept"] == len(keep)
        self.points = {i: p for i, p in self.points.items() if i in keep}
        self.forgotten = not then_prune
        if then_prune:
            assert s["prune"]["bytes_freed"] >= 0
        self.verify(after_prune=then_prune)

    @precondition(lambda self: self.points)
    @rule(n=st.integers(1, 3), also_tag=st.sampled_from([None, *TAGS]), then_prune=st.booleans())
    def forget_keep_last(self, n: int, also_tag: str | None, then_prune: bool) -> None:
        keep = set(self.newest_first()[:n])
        args = ["--keep-last", str(n)]
        if also_tag:
            keep |= {i for i, p in self.points.items() if also_tag in p.tags}
            args += ["--keep-tag", also_tag]
        self.forget(args, keep, then_prune)

    @precondition(lambda self: self.points)
    @rule(tag=st.sampled_from([*TAGS, "absent"]), allow_remove_all=st.booleans())
    def forget_keep_tag(self, tag: str, allow_remove_all: bool) -> None:
        keep = {i for i, p in self.points.items() if tag in p.tags}
        args = ["--keep-tag", tag, *(["--allow-remove-all"] if allow_remove_all else [])]
        if keep or allow_remove_all:
            self.forget(args, keep, then_prune=False)
            return
        code, _, err = self.run("forget", *args, "--json")
        assert code == 2 and "every recovery point" in err, err
        self.verify(after_prune=False)

    @precondition(lambda self: self.points)
    @rule(which=PICK)
    def forget_one(self, which: int) -> None:
        """Forget one point by (a prefix of) its id."""
        gone = self.newest_first()[::-1][which % len(self.points)]
        removed = self.summary("forget", gone[:12], "--json")["removed"]
        assert removed == [gone]
        del self.points[gone]
        self.forgotten = True
        self.verify(after_prune=False)

    @precondition(lambda self: self.forgotten)
    @rule(share=SHARES)
    def prune(self, share: str) -> None:
        # With every point forgotten, prune deletes everything only when told to.
        told = () if self.points else ("--allow-remove-all",)
        if not self.points:
            code, _, err = self.run("prune", "--max-unused", share)
            assert code == 2 and "--allow-remove-all" in err, err
        done = self.summary("prune", "--max-unused", share, "--json", *told)
        self.forgotten = False
        assert done["bytes_freed"] >= 0
        # What a prune leaves, the same prune would not touch again.
        again = self.summary("prune", "--max-unused", share, "--dry-run", "--json", *told)
        assert (again["bytes_freed"], again["packs_deleted"], again["packs_repacked"],
                again["packs_unindexed_deleted"], again["leftovers"]) == (0, 0, 0, 0, 0), again
        if not self.points:
            packs = [p for p in (self.repo_path / "data").rglob("*") if p.is_file()]
            assert packs == [], packs
        self.verify(after_prune=True)

    # ---- what must hold ------------------------------------------------------------------

    def verify(self, after_prune: bool) -> None:
        code, out, err = self.run("snapshots", "--json")
        assert code == 0, err
        listed = {doc["id"]: doc for doc in json.loads(out)}
        assert set(listed) == set(self.points)
        for sid, point in self.points.items():
            assert tuple(listed[sid]["tags"]) == point.tags
            assert datetime.fromisoformat(listed[sid]["time"]) == point.time

        report = self.summary("check", "--read-data", "--json")
        assert report["ok"] and not report["problems"], report
        if after_prune:
            assert not report["warnings"], report
        assert report["snapshots"] == len(self.points)

        for sid, point in self.points.items():
            self.restores += 1
            target = self.tmp / f"restore-{self.restores}"
            args = ["restore", sid, "--target", str(target), "--json"]
            read_back = self.restores % 2 == 1
            s = self.summary(*args, *(["--verify"] if read_back else []))
            assert s["total_files"] == len(point.files)
            assert s["files_verified"] == (len(point.files) if read_back else 0), s
            files, dirs = read_tree(target / self.src.relative_to("/"))
            assert files == point.files
            assert dirs == point.dirs
            shutil.rmtree(target)


BackupForgetPrune.TestCase.settings = settings(
    # 30 runs of up to 60 steps: the suite's longest test, kept inside its time budget.
    max_examples=30, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
test_backup_forget_prune = BackupForgetPrune.TestCase
