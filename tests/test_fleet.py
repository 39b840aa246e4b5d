"""Many hosts, one repository: real `strongroom` processes as different
machines, backing up, forgetting, pruning and checking at the same time.

Each test runs on every target of fleet.TARGETS (a local directory, WebDAV
servers; S3 and SFTP join with one entry there). What is asserted is the
outcome: exit codes, what prune reports, `check --read-data`, every point
restored byte for byte to what its host backed up, no lock left behind.
"""

from __future__ import annotations

import random
import threading
from typing import Callable

import pytest

from fleet import LOCKED, TARGETS, TIMEOUT, Fleet, Host, pending_packs, summary_of, wait_for


@pytest.fixture(params=list(TARGETS))
def fleet(request: pytest.FixtureRequest, tmp_path) -> Fleet:
    fleet = Fleet(TARGETS[request.param](request), tmp_path)
    fleet.init()
    return fleet


class Background:
    """Functions run in threads; `join()` re-raises the first failure."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self, job: Callable[[], None]) -> None:
        def run() -> None:
            try:
                job()
            except BaseException as e:  # an assertion in a thread is reported by join()
                self.errors.append(e)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(TIMEOUT)
            assert not thread.is_alive(), "a host's backups did not finish"
        if self.errors:
            raise self.errors[0]


def forget_from(hosts: list[Host], removed: list[str]) -> None:
    for host in hosts:
        for snap in removed:
            host.backed_up.pop(snap, None)


def assert_clean_end(fleet: Fleet) -> None:
    """check --read-data without a warning (no unindexed pack, no superseded
    index object left), no lock object, every point restores as backed up."""
    report = fleet.check(read_data=True)
    assert not report["warnings"], report
    assert fleet.locks() == []
    assert fleet.assert_every_point_restores() == sum(len(h.backed_up) for h in fleet.hosts.values())


RUNS = 5  # backups per host in the busy test


def test_three_hosts_back_up_while_a_fourth_forgets_prunes_and_checks(fleet: Fleet):
    hosts = [fleet.host(f"host{i}") for i in (1, 2, 3)]
    made = {host.name: 0 for host in hosts}
    progress = threading.Condition()

    def count(host: Host) -> Callable[[str], None]:
        def done(_snap: str) -> None:
            with progress:
                made[host.name] += 1
                progress.notify_all()
        return done

    background = Background()
    for host in hosts:
        background.start(lambda host=host: host.backup_loop(RUNS, count(host)))
    with progress:
        assert progress.wait_for(lambda: min(made.values()) >= 3 or background.errors, TIMEOUT)
    keeper = fleet.host("keeper")
    # Every host has three points and is still at work: forget and prune wait
    # for their exclusive lock, and hold back new backups while they wait.
    forgot = summary_of(keeper.run("forget", "--keep-last", "2", "--prune", "--retry-lock", "90", "--json"))
    checked = summary_of(keeper.run("check", "--json", "--retry-lock", "90"))
    background.join()
    assert checked["ok"] and not checked["problems"], checked
    assert len(forgot["removed"]) >= len(hosts)
    pruned = forgot["prune"]
    assert pruned["bytes_freed"] > 0 and pruned["packs_deleted"] + pruned["packs_repacked"] > 0, pruned
    forget_from(hosts, forgot["removed"])
    assert all(len(host.backed_up) >= 2 for host in hosts)
    assert_clean_end(fleet)
    # Prune left nothing to free that it could see then: only what the
    # backups after it made (none forgotten since) is in the repository.
    again = summary_of(keeper.run("prune", "--dry-run", "--json"))
    assert again["packs_deleted"] == again["packs_unindexed_deleted"] == 0, again


def test_a_host_killed_mid_backup_holds_prune_back_for_the_stale_window_only(fleet: Fleet):
    live = [fleet.host("host1"), fleet.host("host2")]
    for host in live:
        host.backup()
    victim = fleet.host("victim")
    rnd = random.Random(3)
    for i in range(10):
        (victim.source / f"big{i}.bin").write_bytes(rnd.randbytes(600_000))
    run = victim.start(*victim.backup_args()).go()
    wait_for(lambda: len(pending_packs(victim)) >= 2, "the victim's first packs", run.proc)
    run.kill()
    leftovers = set(pending_packs(victim))

    # Its lock stays. Another machine cannot know the process is gone; one on
    # the victim's own machine can, by its pid.
    [lock] = fleet.locks()
    assert not lock["exclusive"] and not lock["stale"]
    same_machine = [doc for doc in victim.run("locks", "--json").stdout.decode().splitlines() if '"lock"' in doc]
    assert len(same_machine) == 1 and '"stale": true' in same_machine[0]

    background = Background()  # the live hosts go on beside the dead lock
    for host in live:
        background.start(lambda host=host: host.backup_loop(3))
    pruner = fleet.host("pruner")
    done = pruner.run("-v", "prune", "--retry-lock", "90", "--json")
    pruned = summary_of(done)
    assert "repository is locked" in done.stderr.decode()  # it waited
    background.join()
    assert pruned["packs_unindexed_deleted"] >= len(leftovers), pruned
    # The victim backs up again: its journal names packs prune deleted.
    victim.backup()
    assert_clean_end(fleet)


def test_two_hosts_pruning_at_once_one_waits_for_the_other(fleet: Fleet):
    host = fleet.host("host1")
    first = host.backup()
    host.change()
    host.backup()
    removed = summary_of(host.run("forget", first, "--json"))["removed"]
    forget_from([host], removed)
    one, two = fleet.host("pruner1"), fleet.host("pruner2")
    runs = [p.start("prune", "--retry-lock", "60", "--json") for p in (one, two)]
    for run in runs:
        run.go()
    results = sorted((summary_of(run.finish()) for run in runs), key=lambda r: r["bytes_freed"])
    # The second ran on what the first left: one consolidated index, nothing to free.
    assert results[0]["bytes_freed"] == 0 and results[0]["index_objects"] == 1, results
    assert results[1]["bytes_freed"] > 0 and results[1]["packs_deleted"] + results[1]["packs_repacked"] > 0, results

    host.change()
    second = host.backup()
    host.change()
    host.backup()
    forget_from([host], summary_of(host.run("forget", second, "--json"))["removed"])
    runs = [p.start("prune", "--json") for p in (one, two)]  # no --retry-lock: refused, never beside
    for run in runs:
        run.go()
    finished = [run.finish() for run in runs]
    assert {done.returncode for done in finished} <= {0, LOCKED}, [d.stderr for d in finished]
    for done in finished:
        if done.returncode == LOCKED:
            assert "repository is locked" in done.stderr.decode()
    freed = [summary_of(done)["bytes_freed"] for done in finished if done.returncode == 0]
    assert sum(1 for b in freed if b > 0) <= 1
    assert_clean_end(fleet)
