"""`strongroom serve` as a real process over a real catalog and repositories:
schedules every few seconds make points, each slot runs once, a second
daemon is refused, SIGTERM puts the running backup back and the next start
resumes it, kill -9 is recovered from, a missed slot runs once (or not
with --missed skip).

Nothing waits a fixed time for something to happen: the catalog is polled
with a deadline. The one fixed wait lets schedule slots pass while no
daemon runs, which is the point of that test."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from strongroom.services.catalog import Catalog
from catalog_cli import CatalogCLI

DEADLINE = 60.0

# A source command that streams 16 MiB of incompressible but repeatable data
# slowly (so a run can be stopped in the middle, and the next run of the same
# command finds the same chunks), and leaves a mark once 10 MiB are out;
# then, while a hold file exists, it waits (a run that does not stop at once).
SLOW_SOURCE = """
import pathlib, random, sys, time
r = random.Random(7)
for i in range(16):
    sys.stdout.buffer.write(r.randbytes(1 << 20))
    sys.stdout.flush()
    if i == 9:
        pathlib.Path(sys.argv[1]).touch()
        while pathlib.Path(sys.argv[2]).exists():
            time.sleep(0.1)
    time.sleep(0.15)
"""


class Serve(CatalogCLI):
    """The real command line over one catalog in `tmp_path`."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, tz="UTC", cache="cache")
        self.tmp = tmp_path
        self.catalog_path = tmp_path / "catalog.db"
        self.started = 0
        self.hold = tmp_path / "hold"

    def serve(self, *args: str) -> subprocess.Popen:
        """A daemon with its output in files (a pipe nobody reads would fill up)."""
        self.started += 1
        out = open(self.tmp / f"serve-{self.started}.out", "w")
        err = open(self.tmp / f"serve-{self.started}.err", "w")
        listen = () if any(a.startswith("--listen") or a == "--no-listen" for a in args) \
            else ("--listen", "127.0.0.1:0")
        proc = subprocess.Popen([sys.executable, "-m", "strongroom", "serve", "--tick", "0.2", *listen, *args],
                                stdout=out, stderr=err, env=self.env)
        proc.out_path, proc.err_path = out.name, err.name  # type: ignore[attr-defined]
        out.close()
        err.close()
        return proc

    def catalog(self) -> Catalog:
        return Catalog(str(self.catalog_path))

    def add_slow_config(self, name: str, schedule: str) -> Path:
        script = self.tmp / "slow.py"
        script.write_text(SLOW_SOURCE)
        mark = self.tmp / "mark"
        self.ok("config", "add", name, "--source-command", f"{sys.executable} {script} {mark} {self.hold}",
                "--stdin-filename", "data.bin", "--target-dir", str(self.tmp / "repo"), "--no-encrypt",
                "--schedule", schedule)
        return mark


def output(proc: subprocess.Popen) -> tuple[str, str]:
    return Path(proc.out_path).read_text(), Path(proc.err_path).read_text()  # type: ignore[attr-defined]


def wait_for(what: str, predicate, proc: subprocess.Popen | None = None, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode} while waiting for {what}: {output(proc)}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f": {output(proc)}" if proc else ""))


def started(proc: subprocess.Popen) -> bool:
    return "pid" in output(proc)[0]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=DEADLINE)


def jobs(catalog: Catalog, config: str) -> list[dict]:
    return catalog.list_jobs(config=config, limit=None)


def test_every_2s_makes_several_points_and_each_slot_runs_once(tmp_path):
    s = Serve(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("alpha")
    s.ok("config", "add", "docs", "--source", str(tmp_path / "src"), "--target-dir", str(tmp_path / "repo"),
         "--no-encrypt", "--schedule", "every 2s")
    log_file = tmp_path / "serve.log"
    proc = s.serve("--jobs", "1", "--log-file", str(log_file))
    catalog = s.catalog()
    wait_for("three successes", lambda: len(catalog.list_jobs(config="docs", status="succeeded")) >= 3, proc)
    assert stop(proc) == 0
    out, err = output(proc)
    assert f"pid {proc.pid}, 1 schedule" in out and "stopped (SIGTERM)" in out
    assert "slot claimed: docs, schedule every 2s" in err and "succeeded: docs" in err
    # The same events in the log file, which only its owner may read.
    logged = log_file.read_text()
    assert "slot claimed: docs, schedule every 2s" in logged and "succeeded: docs" in logged
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600

    slots = catalog.list_slots("docs", limit=None)
    all_jobs = jobs(catalog, "docs")
    assert len(slots) == len(all_jobs) >= 3
    assert sorted(slot["job_id"] for slot in slots) == sorted(job["id"] for job in all_jobs)
    assert len({slot["slot"] for slot in slots}) == len(slots)
    assert all(slot["owner"]["owner"].endswith(f":{proc.pid}") for slot in slots)
    # Every slot on the 2-second grid.
    assert all(slot["slot"] % 2 == 0 for slot in slots)
    points = json.loads(s.ok("snapshots", "--repo", str(tmp_path / "repo"), "--json"))
    assert len(points) == len(catalog.list_jobs(config="docs", status="succeeded", limit=None))


def _url(proc: subprocess.Popen) -> str:
    line = output(proc)[0].splitlines()[0]
    return line.rsplit(" on ", 1)[1].strip()


def test_metrics_and_healthz_of_a_real_daemon(tmp_path):
    """/metrics shows the values of the runs the daemon made; /healthz turns 503
    once the configuration's backups fail for longer than its schedule allows."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    s = Serve(tmp_path)
    stop_file = tmp_path / "stop"
    # The source fails once the stop file exists.
    s.ok("config", "add", "app", "--source-command",
         f"{sys.executable} -c \"import os,sys; sys.exit(3) if os.path.exists({str(stop_file)!r}) "
         f"else sys.stdout.write('x' * 5000)\"",
         "--stdin-filename", "app.txt", "--target-dir", str(tmp_path / "repo"), "--no-encrypt",
         "--schedule", "every 2s", "--max-attempts", "1")
    proc = s.serve("--jobs", "1", "--listen", "127.0.0.1:0")
    catalog = s.catalog()
    try:
        wait_for("the daemon", lambda: started(proc), proc)
        url = _url(proc)
        assert url.startswith("http://127.0.0.1:")
        wait_for("two successes", lambda: len(catalog.list_jobs(config="app", status="succeeded")) >= 2, proc)
        wait_for("a healthy daemon", lambda: httpx.get(url + "/healthz").status_code == 200, proc)
        families = {f.name: f for f in text_string_to_metric_families(httpx.get(url + "/metrics").text)}

        def value(family: str, **labels: str) -> float:
            found = [x.value for x in families[family].samples
                     if all(x.labels.get(k) == v for k, v in labels.items())]
            assert found, (family, labels, families[family].samples)
            return found[0]

        assert value("strongroom_config_schedule_period_seconds", config="app") == 2.0
        assert value("strongroom_config_points", config="app") >= 2
        assert value("strongroom_config_last_files", config="app") == 1
        assert value("strongroom_config_last_read_bytes", config="app") == 5000
        assert value("strongroom_config_last_status", config="app", status="succeeded") == 1
        assert value("strongroom_config_overdue", config="app") == 0
        assert "strongroom_build_info" in families

        stop_file.touch()  # from now on every run fails
        # 1.5 periods without a success: overdue, and the daemon says so.
        wait_for("503", lambda: httpx.get(url + "/healthz").status_code == 503, proc)
        body = httpx.get(url + "/healthz").json()
        assert any("app" in reason for reason in body["reasons"]), body
        assert catalog.list_jobs(config="app", status="failed")
    finally:
        assert stop(proc) == 0


def test_a_second_serve_on_the_same_catalog_refuses_naming_the_first(tmp_path):
    s = Serve(tmp_path)
    first = s.serve()
    try:
        wait_for("the first daemon", lambda: started(first), first)
        second = s.run("serve")
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "already running" in lines[0]
        assert str(s.catalog_path) in lines[0]
        assert first.poll() is None
    finally:
        assert stop(first) == 0
    # The lock went with the first daemon.
    third = s.serve()
    wait_for("a daemon after the first", lambda: started(third), third)
    assert stop(third, signal.SIGINT) == 0


def test_sigterm_puts_the_running_backup_back_and_the_next_start_resumes_it(tmp_path):
    s = Serve(tmp_path)
    mark = s.add_slow_config("slow", "daily-since-last")
    catalog = s.catalog()
    proc = s.serve()
    wait_for("the backup to be under way", mark.exists, proc)
    assert stop(proc) == 0
    out, err = output(proc)
    assert "1 job put back" in out
    [job] = jobs(catalog, "slow")
    assert job["status"] == "queued" and job["attempts"] == 0 and "stopped" in job["error"]

    again = s.serve()
    done = wait_for("the backup to finish", lambda: catalog.get_job(job["id"])["status"] == "succeeded", again)
    assert done
    assert stop(again) == 0
    finished = catalog.get_job(job["id"])
    assert finished["attempts"] == 1
    # What the first run stored before it stopped was not sent again.
    assert 0 < finished["stats"]["data_added"] < finished["stats"]["bytes_read"] == 16 << 20
    assert len(catalog.list_slots("slow")) == 1 and len(jobs(catalog, "slow")) == 1
    s.ok("check", "--repo", str(tmp_path / "repo"))


@pytest.mark.parametrize("how", ["kill -9", "two SIGINTs"])
def test_a_killed_backup_is_requeued_at_the_next_start_and_checks_clean(tmp_path, how):
    s = Serve(tmp_path)
    mark = s.add_slow_config("slow", "daily-since-last")
    catalog = s.catalog()
    if how == "two SIGINTs":
        s.hold.touch()  # the source stalls: the first Ctrl-C cannot stop the backup at its next chunk
    proc = s.serve()
    wait_for("the backup to be under way", mark.exists, proc)
    if how == "kill -9":
        proc.kill()
        proc.wait(timeout=DEADLINE)
    else:
        proc.send_signal(signal.SIGINT)
        wait_for("the first Ctrl-C", lambda: "stopping (SIGINT)" in output(proc)[1], proc)
        proc.send_signal(signal.SIGINT)  # the second: out at once
        assert proc.wait(timeout=DEADLINE) == 130
        assert "stopped at once" in output(proc)[1]
        s.hold.unlink()
    [job] = jobs(catalog, "slow")
    assert job["status"] == "running" and job["stats"]["owner"].endswith(f":{proc.pid}")

    again = s.serve()
    wait_for("the backup to finish", lambda: catalog.get_job(job["id"])["status"] == "succeeded", again)
    assert stop(again) == 0
    assert "requeued 1 job(s) left running by a process that ended" in output(again)[1]
    assert catalog.get_job(job["id"])["attempts"] == 2  # the killed run counts as an attempt
    [slot] = catalog.list_slots("slow")
    assert slot["job_id"] == job["id"] and len(jobs(catalog, "slow")) == 1
    s.ok("check", "--repo", str(tmp_path / "repo"))
    points = json.loads(s.ok("snapshots", "--repo", str(tmp_path / "repo"), "--json"))
    assert len(points) == 1


def slots_of(catalog: Catalog, pid: int) -> list[float]:
    return sorted(slot["slot"] for slot in catalog.list_slots("docs", limit=None)
                  if slot["owner"]["owner"].endswith(f":{pid}"))


def test_a_missed_slot_runs_once_after_a_downtime_and_not_at_all_with_skip(tmp_path):
    s = Serve(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("alpha")
    s.ok("config", "add", "docs", "--source", str(tmp_path / "src"), "--target-dir", str(tmp_path / "repo"),
         "--no-encrypt", "--schedule", "every 2s")
    catalog = s.catalog()

    def downtime() -> tuple[float, float]:
        """Run a daemon until it claimed a slot, stop it, let two slots pass."""
        proc = s.serve()
        wait_for("a slot", lambda: slots_of(catalog, proc.pid), proc)
        assert stop(proc) == 0
        last = catalog.list_slots("docs", limit=1)[0]["slot"]
        time.sleep(max(0.0, last + 5.5 - time.time()))  # slots last+2 and +4 pass with no daemon
        return last, time.time()

    last, back = downtime()
    proc = s.serve()
    wait_for("the missed slot", lambda: slots_of(catalog, proc.pid), proc)
    assert stop(proc) == 0
    first = slots_of(catalog, proc.pid)[0]
    # One run for the downtime: the latest slot before the start, none of the earlier ones.
    assert first >= back - 2 and first > last + 2
    assert not [t for t in (slot["slot"] for slot in catalog.list_slots("docs", limit=None))
                if last < t < first]
    assert "(missed)" in output(proc)[1]

    s.ok("config", "edit", "docs", "--missed", "skip")
    last, back = downtime()
    proc = s.serve()
    wait_for("a slot after the start", lambda: slots_of(catalog, proc.pid), proc)
    assert stop(proc) == 0
    # With skip, no slot from before the start runs: the first is the next one on the grid.
    assert slots_of(catalog, proc.pid)[0] > back
    assert "(missed)" not in output(proc)[1]
    assert all(slot["job_id"] for slot in catalog.list_slots("docs", limit=None))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_before_any_schedule_stops_cleanly(tmp_path, sig):
    s = Serve(tmp_path)
    proc = s.serve("--json")
    wait_for("the daemon", lambda: "serve_started" in output(proc)[0], proc)
    assert stop(proc, sig) == 0
    lines = [json.loads(line) for line in output(proc)[0].splitlines()]
    assert [line["type"] for line in lines] == ["serve_started", "serve_stopped"]
    assert lines[0]["pid"] == proc.pid and lines[0]["schedules"] == 0
    assert lines[1]["reason"] == signal.Signals(sig).name and lines[1]["slots_claimed"] == 0


def test_serve_applies_its_configuration_file_at_start_and_on_sighup(tmp_path):
    s = Serve(tmp_path)
    for name in ("one", "two"):
        (tmp_path / f"src-{name}").mkdir()
        (tmp_path / f"src-{name}" / "a.txt").write_text(name)
    file = tmp_path / "strongroom.toml"
    file.write_text(f'''
[config.one]
source = ["{tmp_path / "src-one"}"]
target_dir = "{tmp_path / "repo-one"}"
encrypt = false
schedule = "every 2s"
''')
    proc = s.serve("--jobs", "1", "--config", str(file))
    catalog = s.catalog()
    try:
        wait_for("the daemon", lambda: started(proc), proc)
        assert f"1 schedule, 1 at a time, from {file}" in output(proc)[0]
        wait_for("a point of one", lambda: catalog.list_jobs(config="one", status="succeeded"), proc)

        # A second configuration, then SIGHUP: applied, scheduled, run.
        file.write_text(file.read_text() + f'''
[config.two]
source = ["{tmp_path / "src-two"}"]
target_dir = "{tmp_path / "repo-two"}"
encrypt = false
schedule = "every 2s"
''')
        proc.send_signal(signal.SIGHUP)
        wait_for("a point of two", lambda: catalog.list_jobs(config="two", status="succeeded"), proc)
        assert "+ config two" in output(proc)[1]

        # A broken file on SIGHUP: said with its line, the catalog as it was, the daemon runs on.
        good = file.read_text()
        file.write_text(good.replace('schedule = "every 2s"\n', 'schedule = "every fortnight"\n', 1))
        proc.send_signal(signal.SIGHUP)
        wait_for("the error", lambda: "not applied" in output(proc)[1], proc)
        err = output(proc)[1]
        assert f"{file}:6: config.one.schedule" in err, err
        assert catalog.get_config("one")["schedules"][0]["spec"] == "every 2s"
        before = len(catalog.list_jobs(config="one", status="succeeded"))
        wait_for("one running on", lambda: len(catalog.list_jobs(config="one", status="succeeded")) > before, proc)
    finally:
        assert stop(proc) == 0

    # A broken file at start: nothing starts, exit 2, the line named.
    refused = s.run("serve", "--no-listen", "--config", str(file))
    assert refused.returncode == 2 and f"{file}:6: config.one.schedule" in refused.stderr
    assert "pid" not in refused.stdout
    missing = s.run("serve", "--no-listen", "--config", str(tmp_path / "nowhere.toml"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
