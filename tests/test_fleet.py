"""Many hosts, one repository: real `strongroom` processes as different
machines, backing up, forgetting, pruning and checking at the same time.

Not every test runs on every target of fleet.TARGETS, for the suite's time
budget: the busy test (three hosts backing up while a fourth forgets,
prunes and checks) runs on all four, a local directory, wsgidav, S3
(radosgw) and SFTP (OpenSSH); the host killed mid-backup and the three
pruners run on the local directory and S3, the remote target whose locks
and listings are the least like a file system's. Every test passes on every
target (`on(*TARGETS)` runs it so). What is asserted is the outcome: exit
codes, what prune reports, `check --read-data`, every point restored byte
for byte to what its host backed up, no lock left behind.
"""

from __future__ import annotations

import threading
from typing import Callable

import pytest

from fleet import LOCKED, TARGETS, TIMEOUT, Fleet, Host, pending_packs, summary_of, wait_for


def on(*targets: str):
    """Run a test on these entries of fleet.TARGETS."""
    return pytest.mark.parametrize("fleet", targets, indirect=True)


@pytest.fixture
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
    check = fleet.host("admin").start("check", "--read-data", "--json").go()  # beside the restores
    assert fleet.assert_every_point_restores() == sum(len(h.backed_up) for h in fleet.hosts.values())
    report = summary_of(check.finish())
    assert report["ok"] and not report["problems"], report
    warnings = report["warnings"]
    if warnings and all("temporary file" in w for w in warnings):
        # The restores beside it take their locks by writing a temporary file
        # and renaming it (SFTP): a check that lists the target in between sees
        # one, as docs/sftp.md says. Nothing runs now, so none may be left.
        warnings = summary_of(fleet.host("admin").run("check", "--json"))["warnings"]
    assert not warnings, report
    assert fleet.host("admin").locks() == []


RUNS = 3  # backups per host in the busy test


@on("local", "wsgidav", "s3", "sftp")
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
        assert progress.wait_for(lambda: min(made.values()) >= 2 or background.errors, TIMEOUT)
    keeper = fleet.host("keeper")
    # Every host has two points and is still at work: forget and prune wait
    # for their exclusive lock, and hold back new backups while they wait.
    forgot = summary_of(keeper.run("forget", "--keep-last", "1", "--prune", "--retry-lock", "90", "--json"))
    checked = summary_of(keeper.run("check", "--json", "--retry-lock", "90"))
    background.join()
    assert checked["ok"] and not checked["problems"], checked
    assert len(forgot["removed"]) >= len(hosts)
    pruned = forgot["prune"]
    assert pruned["bytes_freed"] > 0 and pruned["packs_deleted"] + pruned["packs_repacked"] > 0, pruned
    forget_from(hosts, forgot["removed"])
    assert all(len(host.backed_up) >= 1 for host in hosts)
    assert_clean_end(fleet)
    # Prune left nothing to free that it could see then: only what the
    # backups after it made (none forgotten since) is in the repository.
    again = summary_of(keeper.run("prune", "--dry-run", "--json"))
    assert again["packs_deleted"] == again["packs_unindexed_deleted"] == 0, again


@on("local", "s3")
def test_a_host_killed_mid_backup_holds_prune_back_for_the_stale_window_only(fleet: Fleet):
    live = [fleet.host("host1"), fleet.host("host2")]
    victim = fleet.host("victim")
    # Its backup reads a stream that gives a few packs, then a byte now and
    # then (the stream ends when its reader is gone): it is killed with packs
    # stored and none of them indexed. The chunker fills an 8 MiB buffer
    # before it cuts, so only what lies more than 8 MiB before the trickle is
    # surely cut and stored: 12 MiB left as few as two chunks (11 seeds in 300),
    # sometimes not two sealed 1 MiB packs; 32 MiB leaves at least 24 MiB.
    stream = f"head -c {32 << 20} /dev/urandom; while printf x; do sleep 0.2; done"
    run = victim.start("backup", "--json", "--host", victim.name, "--stdin-from-command", "--",
                       "sh", "-c", stream).go()
    wait_for(lambda: len(pending_packs(victim)) >= 2, "the victim's first packs", run.proc)
    run.kill()
    leftovers = set(pending_packs(victim))

    # Its lock stays. Another machine (the pruner's) cannot know the process
    # is gone; one on the victim's own machine can, by its pid. The pruner's
    # sighting stays in its cache and counts for the runs after it (in this
    # boot), so its prune waits out only the rest of the stale window.
    pruner = fleet.host("pruner")
    [lock] = pruner.locks()
    assert not lock["exclusive"] and not lock["stale"]
    assert [(doc["name"], doc["stale"]) for doc in victim.locks()] == [(lock["name"], True)]
    background = Background()  # the live hosts go on beside the dead lock
    for host in live:
        background.start(lambda host=host: host.backup_loop(1))
    done = pruner.run("prune", "--retry-lock", "90", "--json")
    pruned = summary_of(done)
    # It said once what it waits for: the lock seen unchanged longest, the dead host's.
    waits = [line for line in done.stderr.decode().splitlines() if "repository is locked" in line]
    assert len(waits) == 1 and f"shared lock by {lock['username']}@{lock['hostname']} pid {run.proc.pid} " \
        in waits[0], done.stderr
    background.join()
    assert pruned["packs_unindexed_deleted"] >= len(leftovers), pruned
    # The victim backs up again: its journal names packs prune deleted.
    victim.backup()
    assert_clean_end(fleet)


@on("local", "s3")
def test_hosts_pruning_at_once_never_prune_side_by_side(fleet: Fleet):
    host = fleet.host("host1")
    first = host.backup()
    host.change()
    host.backup()
    forget_from([host], summary_of(host.run("forget", first, "--json"))["removed"])
    # Two wait for their turn (--retry-lock); one without it is refused while
    # another holds or tries for the lock, or runs alone.
    runs = [fleet.host(name).start("prune", "--json", *wait)
            for name, wait in (("pruner1", ("--retry-lock", "60")), ("pruner2", ("--retry-lock", "60")),
                               ("pruner3", ()))]
    for run in runs:
        run.go()
    finished = [run.finish() for run in runs]
    assert finished[0].returncode == finished[1].returncode == 0, [d.stderr for d in finished]
    assert finished[2].returncode in (0, LOCKED), finished[2].stderr
    if finished[2].returncode == LOCKED:
        assert "repository is locked" in finished[2].stderr.decode()
    results = sorted((summary_of(done) for done in finished if done.returncode == 0), key=lambda r: r["bytes_freed"])
    # One freed the space; each other ran on what it left: one consolidated
    # index, nothing more to free. Side by side, both would have planned the same deletes.
    assert results[-1]["bytes_freed"] > 0 and results[-1]["packs_deleted"] + results[-1]["packs_repacked"] > 0
    for later in results[:-1]:
        assert later["bytes_freed"] == 0 and later["index_objects"] == 1, results
    assert_clean_end(fleet)
