"""prune on a metered WebDAV target: the request budget, the upload cap,
--max-repack-size and the dry run's request estimate.

Everything runs against wsgidav behind `FaultMiddleware` behaving like
Nutstore (paged listings, its status codes), with the real command line and
the `nutstore` vendor profile. The middleware's request log is the witness:
arrival times for the budget, PUT sizes for the cap, counts for the
estimate.
"""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from conftest import CLI, PASSWORD
from faults import FaultMiddleware, RequestRecord
from strongroom.engine.prune import plan_prune, run_prune
from strongroom.storage import object_size_cap, request_budget
from strongroom.repo.repository import Repository
from strongroom.storage.base import StorageInfo
from strongroom.storage.budget import RequestBudget
from strongroom.storage.retry import RetryingStorage, RetryPolicy
from strongroom.storage.vendors import VENDORS
from strongroom.storage.webdav import WebDAVStorage
from treeutil import snapshot_tree
from webdav_servers import DavServer, faulty_wsgidav

MiB = 1024 * 1024
PACK = 1 * MiB  # `init --pack-size 1`: many packs from little data
FILE = 150_000  # one chunk each (below the chunker's minimum), incompressible
# A token bucket of 3 requests refilled at 15 per second: a prune here
# waits for nearly every token (so a request that skipped the bucket would
# show), and still takes seconds only.
BUDGET = (3, 0.2)

ENV = {
    "STRONGROOM_WEBDAV_VENDOR": "nutstore",
    "STRONGROOM_WEBDAV_BLOCKED_WAIT": "0.5",
    "STRONGROOM_WEBDAV_RETRY_DELAY": "0.05",
    "STRONGROOM_WEBDAV_DEADLINE": "30",
    "STRONGROOM_WEBDAV_TIMEOUT": "10",
    "STRONGROOM_WEBDAV_BUDGET": "off",
}
METERED = {"STRONGROOM_WEBDAV_BUDGET": f"{BUDGET[0]}/{BUDGET[1]}"}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[DavServer, FaultMiddleware]]:
    with faulty_wsgidav() as pair:
        yield pair


@dataclasses.dataclass
class Target:
    server: DavServer  # this test's collection
    mw: FaultMiddleware
    cli: CLI
    url: str

    def run(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run a command on the repository; the middleware's log holds its requests alone."""
        self.mw.reset_counts()
        return self.cli.run(*args, "--repo", self.url,
                            env={**ENV, "STRONGROOM_WEBDAV_PASSWORD": self.server.password, **(env or {})})

    def ok(self, *args: str, env: dict | None = None) -> dict:
        done = self.run(*args, "--json", env=env)
        assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr.decode()[-3000:]}"
        return events(done, "summary")[-1]

    def sequence(self) -> str:
        return "\n".join(f"  {r.method} {r.path} -> {r.status}" for r in self.mw.log)


@pytest.fixture
def target(served, cli) -> Iterator[Target]:
    server, mw = served
    mw.clear()
    mw.nutstore()
    mw.reset_counts()
    scratch = server.scratch()
    yield Target(scratch, mw, cli, scratch.storage_url())
    mw.clear()


def events(done: subprocess.CompletedProcess, kind: str) -> list[dict]:
    found = [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]
    return [e for e in found if e.get("type") == kind]


def prepared(target: Target, tmp_path: Path, files: int = 48) -> Path:
    """A repository of 1 MiB packs in which about half of every data pack is
    no longer needed: a prune repacks all of them."""
    rnd = random.Random(11)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(files):
        (src / f"f{i:02d}.bin").write_bytes(rnd.randbytes(FILE))
    target.ok("init", "--pack-size", "1")
    target.ok("backup", str(src), "--time", "2024-01-01 10:00")
    for i in range(0, files, 2):
        (src / f"f{i:02d}.bin").unlink()
    target.ok("backup", str(src), "--time", "2024-01-02 10:00")
    target.ok("forget", "--keep-last", "1")
    return src


def data_puts(log: list[RequestRecord]) -> list[int]:
    return [r.content_length for r in log if r.method == "PUT" and "/data/" in r.path]


def busiest_window(arrivals: list[float], window: float, jitter: float = 0.05) -> int:
    """The most arrivals in any stretch of `window` seconds, less `jitter` for
    the time between the budget letting a request go and the server seeing it."""
    arrivals = sorted(arrivals)
    return max((sum(1 for t in arrivals[i:] if t < start + window - jitter) for i, start in enumerate(arrivals)),
               default=0)


def check_clean(target: Target) -> None:
    target.mw.clear()
    report = target.ok("check", "--read-data")
    assert report["ok"] and not report["problems"] and not report["warnings"], report


def restored_equal(target: Target, src: Path, where: Path) -> None:
    target.ok("restore", "latest", "--target", str(where), "--verify")
    assert snapshot_tree(where / src.relative_to("/")) == snapshot_tree(src)


def test_prune_keeps_to_the_budget_and_the_cap_and_the_estimate_holds(target, tmp_path):
    src = prepared(target, tmp_path)
    # Nutstore's cap, lowered to the pack size: a pack one blob too large is refused.
    target.mw.cap_uploads(PACK)

    dry = target.ok("prune", "--dry-run", env=METERED)
    assert dry["dry_run"] and dry["packs_repacked"] >= 5, dry
    # A dry run writes no pack and deletes nothing but its own lock.
    assert not data_puts(target.mw.log)
    assert all("/locks/" in r.path for r in target.mw.log if r.method == "DELETE")
    assert dry["budget"]["requests"] == BUDGET[0] and dry["budget"]["seconds"] == BUDGET[1], dry
    assert dry["budget"]["seconds_at_rate"] == pytest.approx(dry["requests_estimated"] * BUDGET[1] / BUDGET[0],
                                                             abs=0.1)
    assert dry["max_pack_size"] == PACK

    done = target.run("prune", "--json", env=METERED)
    assert done.returncode == 0, done.stderr.decode()
    result = events(done, "summary")[-1]
    log = target.mw.log
    made = len(log)
    assert result["storage"]["requests"] == made  # the client counts what the server sees

    # The budget: many windows' worth of requests, so the prune waited, and
    # no window of the run saw more than the budget allows.
    capacity, rate = BUDGET[0], BUDGET[0] / BUDGET[1]
    assert made > 5 * capacity
    assert busiest_window([r.arrived for r in log], BUDGET[1]) <= capacity, target.sequence()
    assert log[-1].arrived - log[0].arrived >= (made - capacity - 1) / rate
    assert result["budget_waited"] > 0
    assert any("request budget" in w["message"] for w in events(done, "waiting"))
    # One read for each pack to repack, paced by the bucket like every other request.
    reads = [r for r in log if r.method == "GET" and "/data/" in r.path]
    assert len(reads) == result["packs_repacked"]

    # The cap: every new pack is within the pack size, none was refused.
    assert data_puts(log) and max(data_puts(log)) <= PACK, data_puts(log)
    assert target.mw.count(status=413) == 0
    assert result["largest_pack_written"] <= PACK and result["packs_written"] == result["new_packs"]

    # The dry run's estimate covers the real run, and not by much.
    assert made <= dry["requests_estimated"] <= made + 5, (dry["requests_estimated"], made, target.sequence())
    assert result["bytes_freed"] == dry["bytes_freed"] >= 20 * FILE

    check_clean(target)
    restored_equal(target, src, tmp_path / "restore")
    assert target.ok("prune", "--dry-run")["bytes_freed"] == 0


def test_max_repack_size_leaves_work_for_the_next_prune(target, tmp_path):
    src = prepared(target, tmp_path)
    whole = target.ok("prune", "--dry-run")
    assert whole["packs_repacked"] >= 4 and whole["packs_left_to_repack"] == 0

    first = target.ok("prune", "--max-repack-size", "2.5M", env=METERED)
    repacked = [r for r in target.mw.log if r.method == "GET" and "/data/" in r.path]
    assert first["packs_repacked"] == len(repacked) == 2, first
    assert first["bytes_repacked"] <= 2.5 * MiB
    assert first["packs_left_to_repack"] == whole["packs_repacked"] - 2
    assert first["bytes_left_to_free"] > 0 and first["bytes_freed"] > 0
    # What stays, repacked or not, is described by one consolidated index.
    assert len([p for p in (target.server.root / "index").iterdir()]) == 1
    check_clean(target)
    restored_equal(target, src, tmp_path / "restore-1")

    dry = target.ok("prune", "--dry-run")
    assert dry["packs_repacked"] == first["packs_left_to_repack"]
    second = target.ok("prune", env=METERED)
    assert second["packs_repacked"] == first["packs_left_to_repack"] and second["packs_left_to_repack"] == 0
    assert first["bytes_freed"] + second["bytes_freed"] == pytest.approx(whole["bytes_freed"], rel=0.02)
    check_clean(target)
    restored_equal(target, src, tmp_path / "restore-2")
    assert target.ok("prune", "--dry-run")["packs_repacked"] == 0


def test_dry_run_text_names_the_requests_and_the_budget_time(target, tmp_path):
    prepared(target, tmp_path, files=16)
    done = target.run("prune", "--dry-run", "--max-repack-size", "1.5M",
                      env={"STRONGROOM_WEBDAV_BUDGET": "540/1800"})
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert out.startswith("would free") and "requests" in out, out
    assert "left for the next prune" in out, out
    assert "request budget 540 per 1800 s" in out and "s at its rate" in out, out


def test_a_cap_below_the_pack_size_bounds_repacked_packs(target, tmp_path, cache_dir):
    """A target whose upload cap is below the repository's pack size (a
    repository made elsewhere): repacked packs stay within the cap. The
    vendor profile's cap is lowered for this test by building the storage
    stack the way open_storage does, with a profile of our own."""
    prepared(target, tmp_path)
    cap = 600_000
    target.mw.cap_uploads(cap)
    vendor = dataclasses.replace(VENDORS["nutstore"], max_object_size=cap)
    budget = RequestBudget(*BUDGET, None)
    path = urlsplit(target.server.url).path
    client = WebDAVStorage(f"http://127.0.0.1:{target.server.port}{path}", target.server.username,
                           target.server.password, vendor, timeout=10, gate=budget.take)
    client.info = StorageInfo(vendor=vendor, max_object_size=cap, budget=budget)
    storage = RetryingStorage(client, RetryPolicy(deadline=30, base_delay=0.05, blocked_wait=0.5))
    repo = Repository.open(storage, PASSWORD, str(cache_dir))
    assert object_size_cap(repo.storage) == cap and request_budget(repo.storage) is budget
    target.mw.reset_counts()
    try:
        with repo.lock(exclusive=True):
            plan = plan_prune(repo)
            assert plan.pack_limit == cap and plan.repack
            result = run_prune(repo, plan)
    finally:
        storage.close()
    puts = data_puts(target.mw.log)
    assert puts and max(puts) <= cap and target.mw.count(status=413) == 0, puts
    assert len(puts) == result["packs_written"] > result["packs_repacked"]  # more, smaller packs
    assert budget.waited > 0
    check_clean(target)
