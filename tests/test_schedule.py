"""Schedules and due slots: cron over zoneinfo (edge cases, the Europe/Berlin
changes of clock, named zones), a missed slot runs once, windows and their
random delay, intervals on a grid, daily-since-last, clock jumps; slots
claimed once in the catalog by racing processes; and `config --schedule`,
`schedule next` through the real command line.

Time is moved, never slept: every function here takes the time as an
argument, and the clock watch takes its two clocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from strongroom import BackupConfig, create_backup_manager
from strongroom.errors import UsageError
from strongroom.schedule.clock import ClockWatch
from strongroom.schedule.slots import due, next_slot, prev_slot, start_at
from strongroom.schedule.spec import parse_schedule
from strongroom.services.catalog import Catalog
from catalog_cli import CatalogCLI

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc
SRC = str(Path(__file__).resolve().parents[1] / "src")
HOOKS = str(Path(__file__).resolve().parent / "hooks")


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)


def following(spec: str, start: datetime, count: int, zone: ZoneInfo = BERLIN) -> list[str]:
    schedule = parse_schedule(spec, local_zone=zone)
    out, t = [], start
    for _ in range(count):
        t = next_slot(schedule, t)
        out.append(t.astimezone(zone).isoformat())
    return out


# -- cron ---------------------------------------------------------------------

@pytest.mark.parametrize("spec, start, expected", [
    # the last days of a month through a list of days: short months take what they have
    ("0 0 30,31 * *", berlin(2026, 1, 30, 12),
     ["2026-01-31T00:00:00+01:00", "2026-03-30T00:00:00+02:00", "2026-03-31T00:00:00+02:00"]),
    # 29 February: only in leap years
    ("0 12 29 2 *", berlin(2026, 1, 1), ["2028-02-29T12:00:00+01:00", "2032-02-29T12:00:00+01:00"]),
    # Sunday is 0 and 7 alike
    ("0 6 * * 0", berlin(2026, 1, 1), ["2026-01-04T06:00:00+01:00", "2026-01-11T06:00:00+01:00"]),
    ("0 6 * * 7", berlin(2026, 1, 1), ["2026-01-04T06:00:00+01:00", "2026-01-11T06:00:00+01:00"]),
    # steps
    ("*/15 * * * *", berlin(2026, 5, 1, 10, 7),
     ["2026-05-01T10:15:00+02:00", "2026-05-01T10:30:00+02:00", "2026-05-01T10:45:00+02:00",
      "2026-05-01T11:00:00+02:00"]),
    ("10-40/15 9 * * *", berlin(2026, 5, 1, 8),
     ["2026-05-01T09:10:00+02:00", "2026-05-01T09:25:00+02:00", "2026-05-01T09:40:00+02:00",
      "2026-05-02T09:10:00+02:00"]),
    # names of months and days, any case, in ranges
    ("0 8 * JAN-feb mon-Fri", berlin(2026, 2, 27, 9),
     ["2027-01-01T08:00:00+01:00", "2027-01-04T08:00:00+01:00"]),
    # both day fields restricted: either matches (the 13th, and every Friday)
    ("0 0 13 * 5", berlin(2026, 2, 1),
     ["2026-02-06T00:00:00+01:00", "2026-02-13T00:00:00+01:00", "2026-02-20T00:00:00+01:00"]),
    # one day field starred (even with a step): only the other one counts
    ("0 0 13 * */1", berlin(2026, 2, 1), ["2026-02-13T00:00:00+01:00", "2026-03-13T00:00:00+01:00"]),
    # the strict "after": a slot exactly at the start is not the next one
    ("30 2 * * *", berlin(2026, 5, 1, 2, 30), ["2026-05-02T02:30:00+02:00"]),
])
def test_cron_edge_cases(spec, start, expected):
    assert following(spec, start, len(expected)) == expected


def test_spring_forward_a_skipped_time_runs_once_at_the_change():
    # 29 March 2026: Europe/Berlin goes from 02:00 CET straight to 03:00 CEST.
    assert following("30 2 * * *", berlin(2026, 3, 28, 12), 2) == \
        ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    # Every quarter hour: 02:00..02:45 do not exist and fall on 03:00 together, once.
    assert following("*/15 * * * *", berlin(2026, 3, 29, 1, 40), 3) == \
        ["2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"]
    # Backwards too: the last slot at 03:10 CEST is the one moved to 03:00.
    schedule = parse_schedule("30 2 * * *", local_zone=BERLIN)
    assert prev_slot(schedule, berlin(2026, 3, 29, 3, 10)) == berlin(2026, 3, 29, 3, 0)
    assert prev_slot(schedule, berlin(2026, 3, 29, 2, 59, fold=1).astimezone(UTC)) == berlin(2026, 3, 28, 2, 30)


def test_fall_back_a_repeated_time_runs_once_the_first_time():
    # 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happen twice.
    assert following("30 2 * * *", berlin(2026, 10, 24, 12), 2) == \
        ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    assert following("0 * * * *", berlin(2026, 10, 25, 0, 30), 4) == \
        ["2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00",
         "2026-10-25T04:00:00+01:00"]
    schedule = parse_schedule("30 2 * * *", local_zone=BERLIN)
    # In the second 02:45 (CET), the last slot is still the first 02:30 (CEST).
    second = berlin(2026, 10, 25, 2, 45, fold=1)
    assert second.utcoffset() == timedelta(hours=1)
    # (Compared in UTC: an aware datetime in a repeated hour never equals one of another zone, PEP 495.)
    assert prev_slot(schedule, second) == berlin(2026, 10, 25, 2, 30).astimezone(UTC)


@pytest.mark.parametrize("day, expected_local", [((2026, 3, 29), "03:00:00+02:00"),
                                                    ((2026, 10, 25), "02:30:00+02:00")])
def test_a_scheduler_ticking_through_a_change_of_clock_runs_the_slot_once(day, expected_local):
    schedule = parse_schedule("30 2 * * *", local_zone=BERLIN)
    started = berlin(*day, 0, 0).astimezone(UTC)
    claimed: list[datetime] = []
    now = started
    # A tick a minute, stepped in UTC: arithmetic on a Berlin datetime would
    # step wall-clock minutes and never pass through the repeated hour.
    while now < started + timedelta(hours=6):
        slot = due(schedule, now, claimed[-1] if claimed else None, None, started, "db")
        if slot is not None:
            claimed.append(slot.time)
        now += timedelta(minutes=1)
    assert [t.astimezone(BERLIN).isoformat()[11:] for t in claimed] == [expected_local]


def test_named_zones():
    shanghai = parse_schedule("TZ=Asia/Shanghai 30 2 * * *", local_zone=BERLIN)
    assert shanghai.id == "TZ=Asia/Shanghai 30 2 * * *" and shanghai.zone.key == "Asia/Shanghai"
    slot = next_slot(shanghai, datetime(2026, 7, 1, tzinfo=UTC))
    assert slot == datetime(2026, 7, 1, 18, 30, tzinfo=UTC)  # 02:30 on 2 July in UTC+8
    assert parse_schedule("CRON_TZ=UTC  0  0 * * *").id == "TZ=UTC 0 0 * * *"
    # The same expression in local (Berlin) time is another instant.
    assert next_slot(parse_schedule("30 2 * * *", local_zone=BERLIN), datetime(2026, 7, 1, tzinfo=UTC)) == \
        datetime(2026, 7, 1, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize("spec, window, message", [
    ("61 * * * *", None, "cron minute field '61': 61 is outside 0-59"),
    ("* 24 * * *", None, "cron hour field '24'"),
    ("0 0 31 2 *", None, "no month of those has such a day"),
    ("0 0 * * mon-fry", None, "'fry' is not a number from 0 to 7 or a name"),
    ("0 0 * * fri-mon", None, "the range fri-mon runs backwards"),
    ("5-1 * * * *", None, "the range 5-1 runs backwards"),
    ("*/0 * * * *", None, "the step must be a whole number above 0"),
    ("\u0663 * * * *", None, "is not a number from 0 to 59"),  # an Arabic-Indic three
    ("0 0 * *", None, "not a cron expression"),
    ("TZ=Mars/Olympus 0 0 * * *", None, "unknown time zone 'Mars/Olympus'"),
    ("TZ=../../etc/passwd 0 0 * * *", None, "unknown time zone"),
    ("every 0s", None, "must be at least 1s"),
    ("every soon", None, "give a duration"),
    ("every 5s", "22:00-22:00", "opens and closes at the same time"),
    ("every 5s", "22:00-6", "give local times HH:MM-HH:MM"),
    ("every 5s", "24:00-06:00", "hours run 00-23"),
])
def test_refusals_name_what_is_wrong(spec, window, message):
    with pytest.raises(UsageError) as caught:
        parse_schedule(spec, window=window)
    assert message in str(caught.value) and "\n" not in str(caught.value)


# -- due slots ------------------------------------------------------------------

def test_a_missed_slot_runs_once_not_once_per_missed_slot():
    daily = parse_schedule("30 2 * * *", local_zone=BERLIN)
    started = berlin(2026, 6, 1, 0, 0)
    ran = berlin(2026, 6, 1, 2, 30)
    assert due(daily, ran, None, None, started).time == ran
    # The machine sleeps from the 1st at 03:00 to the 4th at 10:00: three slots passed.
    woke = berlin(2026, 6, 4, 10, 0)
    slot = due(daily, woke, ran, None, started)
    assert slot is not None and slot.missed and slot.time == berlin(2026, 6, 4, 2, 30)
    claimed = [slot.time]
    now = woke
    while now < berlin(2026, 6, 5, 2, 0):
        assert due(daily, now, claimed[-1], None, started) is None
        now += timedelta(minutes=7)
    on_time = due(daily, berlin(2026, 6, 5, 2, 31), claimed[-1], None, started)
    assert on_time is not None and not on_time.missed


def test_skip_leaves_a_missed_slot_and_takes_the_next():
    daily = parse_schedule("30 2 * * *", missed="skip", local_zone=BERLIN)
    started = berlin(2026, 6, 1)
    ran = berlin(2026, 6, 1, 2, 30)
    assert due(daily, berlin(2026, 6, 4, 10), ran, None, started) is None
    # Down over the slot: the daemon started after it, so it was missed too.
    assert due(daily, berlin(2026, 6, 2, 2, 31), ran, None, berlin(2026, 6, 2, 2, 31)) is None
    slot = due(daily, berlin(2026, 6, 5, 2, 31), ran, None, started)
    assert slot is not None and slot.time == berlin(2026, 6, 5, 2, 30)


def test_a_schedule_that_never_ran_starts_after_the_daemon():
    daily = parse_schedule("30 2 * * *", local_zone=BERLIN)
    assert due(daily, berlin(2026, 6, 1, 15), None, None, berlin(2026, 6, 1, 14)) is None
    assert due(daily, berlin(2026, 6, 2, 2, 30), None, None, berlin(2026, 6, 1, 14)) is not None


def test_a_window_across_midnight_and_its_random_delay_are_stable_across_a_restart():
    nightly = parse_schedule("0 20 * * *", window="22:00-06:00", random_delay="2h", local_zone=BERLIN)
    slot = berlin(2026, 6, 1, 20, 0)
    begin = start_at(nightly, slot, "db")
    assert berlin(2026, 6, 1, 22, 0) <= begin <= berlin(2026, 6, 2, 0, 0)
    assert start_at(nightly, slot, "db") == begin  # the same draw, every time
    others = {start_at(nightly, slot, name) for name in ("a", "b", "c", "d", "e")}
    assert len(others) > 1  # the delay spreads configurations apart
    started = berlin(2026, 6, 1, 12)
    assert due(nightly, berlin(2026, 6, 1, 21, 0), None, None, started) is None  # outside the window
    assert due(nightly, begin - timedelta(seconds=1), None, None, started, "db") is None
    found = due(nightly, begin, None, None, started, "db")
    assert found is not None and found.time == slot and found.start_at == begin and not found.missed
    # A "restart" just after: a new process, started after the slot's start, finds the same start
    # (and, the daemon having been down over it, counts it missed; run-once runs it).
    yesterday = berlin(2026, 5, 31, 20, 0)
    restarted = due(nightly, begin + timedelta(seconds=30), yesterday, None, begin + timedelta(seconds=10), "db")
    assert restarted is not None and restarted.start_at == begin and restarted.missed
    # Down all night: the next morning, with the window closed, nothing starts...
    assert due(nightly, berlin(2026, 6, 2, 7, 0), None, None, started, "db") is None
    # ...and in the next window the slot of that evening runs, once, in place of the old one.
    evening = berlin(2026, 6, 2, 20, 0)
    late = due(nightly, start_at(nightly, evening, "db"), None, None, started, "db")
    assert late is not None and late.time == evening


def test_the_random_delay_stays_inside_the_window():
    spec = parse_schedule("50 5 * * *", window="22:00-06:00", random_delay="3h", local_zone=BERLIN)
    for day in range(1, 29):
        slot = berlin(2026, 2, day, 5, 50)
        assert slot <= start_at(spec, slot, f"config-{day}") < berlin(2026, 2, day, 6, 0)


def test_an_interval_is_measured_from_its_grid_not_from_the_last_run():
    every = parse_schedule("every 6h")
    started = datetime(2026, 6, 1, tzinfo=UTC)
    last = datetime(2026, 6, 1, 6, tzinfo=UTC)
    assert due(every, datetime(2026, 6, 1, 7, 13, tzinfo=UTC), last, None, started) is None
    # The run of 06:00 started late (07:13); the next slot is still 12:00.
    slot = due(every, datetime(2026, 6, 1, 12, 0, 3, tzinfo=UTC), last, None, started)
    assert slot is not None and slot.time == datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert next_slot(every, datetime(2026, 6, 1, 12, 0, 3, tzinfo=UTC)) == datetime(2026, 6, 1, 18, tzinfo=UTC)
    fast = parse_schedule("every 5s")
    assert next_slot(fast, datetime(2026, 6, 1, 0, 0, 3, tzinfo=UTC)) == datetime(2026, 6, 1, 0, 0, 5, tzinfo=UTC)


def test_daily_since_last_counts_from_the_last_success():
    laptop = parse_schedule("daily-since-last")
    started = datetime(2026, 6, 1, 8, tzinfo=UTC)
    # Never ran: due as soon as the daemon is up.
    first = due(laptop, started, None, None, started)
    assert first is not None and first.time == started
    success = datetime(2026, 6, 1, 10, tzinfo=UTC)
    assert due(laptop, success + timedelta(hours=23, minutes=59), first.time, success, started) is None
    # Off at the hour it would have run: due when it is back, once.
    back = success + timedelta(days=2, hours=5)
    slot = due(laptop, back, first.time, success, started, last_claimed=first.time)
    assert slot is not None and slot.time == success + timedelta(days=1)
    # Claimed at `back`: not due again a minute later, though its nominal time is two days old.
    assert due(laptop, back + timedelta(minutes=1), slot.time, success, started, last_claimed=back) is None
    # That slot failed (no newer success): the next try is a day after its claim, not at every tick.
    assert due(laptop, back + timedelta(hours=23), slot.time, success, started, last_claimed=back) is None
    retry = due(laptop, back + timedelta(hours=24), slot.time, success, started, last_claimed=back)
    assert retry is not None and retry.time == back + timedelta(days=1)
    # It succeeded instead: a day after the success.
    done = back + timedelta(minutes=20)
    assert due(laptop, done + timedelta(hours=23), slot.time, done, started, last_claimed=back) is None
    assert due(laptop, done + timedelta(hours=24), slot.time, done, started, last_claimed=back).time == \
        done + timedelta(days=1)


class FakeClocks:
    def __init__(self) -> None:
        self.wall = 1_780_000_000.0
        self.mono = 5_000.0

    def advance(self, wall: float, mono: float) -> None:
        self.wall += wall
        self.mono += mono


def test_clock_jumps_are_reported_and_a_backward_jump_does_not_run_a_slot_again():
    clocks = FakeClocks()
    watch = ClockWatch(lambda: clocks.wall, lambda: clocks.mono, tolerance=2.0)
    clocks.advance(1.0, 1.0)
    assert watch.tick() is None
    clocks.advance(1.5, 1.0)  # drift under the tolerance
    assert watch.tick() is None
    clocks.advance(3 * 86400, 1.0)  # suspended three days: the monotonic clock stood still
    jump = watch.tick()
    assert jump is not None and jump.kind == "forward" and jump.seconds == pytest.approx(3 * 86400 - 1)
    clocks.advance(-3600, 1.0)  # NTP sets the clock back an hour
    jump = watch.tick()
    assert jump is not None and jump.kind == "backward" and jump.seconds == pytest.approx(3601)
    assert watch.tick() is None

    daily = parse_schedule("30 2 * * *", local_zone=BERLIN)
    started = berlin(2026, 6, 1)
    ran = due(daily, berlin(2026, 6, 1, 2, 30, 5), None, None, started)
    assert ran is not None
    # The clock goes back to 02:10, and on to 02:31 again: the slot is not due twice.
    for minute in range(10, 40):
        assert due(daily, berlin(2026, 6, 1, 2, minute), ran.time, None, started) is None


# -- claims in the catalog -------------------------------------------------------

def test_claim_slot_once_with_its_job(tmp_path):
    with Catalog(tmp_path / "catalog.db") as catalog:
        slot = datetime(2026, 6, 1, 0, 30, tzinfo=UTC).timestamp()
        owner = {"owner": "host:1", "owner_started": 5}
        assert catalog.last_slot("db", "30 2 * * *") is None
        assert catalog.claim_slot("db", "30 2 * * *", slot, owner, job={"kind": "incremental", "priority": 3,
                                                                          "max_attempts": 2})
        assert not catalog.claim_slot("db", "30 2 * * *", slot, {"owner": "host:2"}, job={"kind": "incremental"})
        assert catalog.claim_slot("db", "every 6h", slot, owner)  # another schedule, its own slots
        last = catalog.last_slot("db", "30 2 * * *")
        assert last["slot"] == slot and last["owner"] == owner and last["outcome"] is None
        jobs = catalog.list_jobs(config="db")
        assert [(j["id"], j["priority"], j["max_attempts"], j["status"]) for j in jobs] == \
            [(last["job_id"], 3, 2, "queued")]
        assert catalog.update_slot("db", "30 2 * * *", slot, outcome="succeeded")
        assert catalog.get_slot("db", "30 2 * * *", slot)["outcome"] == "succeeded"
        assert not catalog.update_slot("db", "30 2 * * *", slot + 1, outcome="failed")
        assert catalog.claim_slot("db", "30 2 * * *", slot - 86400, owner)
        assert not catalog.claim_slot("db", "30 2 * * *", datetime.fromtimestamp(slot, BERLIN), owner)  # same slot
        assert catalog.last_slot("db", "30 2 * * *")["slot"] == slot  # the latest slot, not the latest claim


_RACER = """
import json, os, sys, time
from strongroom.services.catalog import Catalog
from strongroom.services.jobs import current_owner
catalog = Catalog(sys.argv[1])
go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.005)
won = [slot for slot in range(40) if catalog.claim_slot("db", "every 5s", 1780000000.0 + 5 * slot, current_owner(),
                                                          job={"kind": "incremental"})]
print(json.dumps(won))
"""


def test_two_processes_racing_for_the_same_slots_each_slot_is_won_once(tmp_path):
    path = tmp_path / "catalog.db"
    Catalog(path).close()  # made and migrated before the race
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, HOOKS])}
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, str(path), str(go)], stdout=subprocess.PIPE,
                               env=env) for _ in range(2)]
    go.touch()
    won = []
    for racer in racers:
        out, _ = racer.communicate(timeout=60)
        assert racer.returncode == 0
        won.append(json.loads(out))
    assert sorted(won[0] + won[1]) == list(range(40))  # every slot won, none twice
    with Catalog(path) as catalog:
        slots = catalog.list_slots("db", limit=None)
        assert len(slots) == 40 and len({s["job_id"] for s in slots}) == 40
        assert len(catalog.list_jobs(config="db", limit=None)) == 40
        pids = {s["owner"]["owner"].rsplit(":", 1)[1] for s in slots}
        assert pids <= {str(r.pid) for r in racers}


# -- configurations ----------------------------------------------------------------

def test_schedules_are_stored_in_the_catalog_and_the_repository(tmp_path, monkeypatch):
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("alpha\n")
    old = BackupConfig.from_doc({"name": "old", "source_paths": ["/x"], "target_path": "/y"})
    assert old.schedules == [] and "schedules" not in old.to_doc()
    manager = create_backup_manager(db_path=str(tmp_path / "catalog.db"), cache_root=str(tmp_path / "cache"))
    try:
        schedule = parse_schedule("TZ=Asia/Shanghai 30 2 * * *", window="01:00-05:00", missed="skip").to_doc()
        config = BackupConfig(name="db", source_paths=[str(tmp_path / "src")], target_path=str(tmp_path / "repo"),
                              encrypt=False, schedules=[schedule])
        manager.add_config(config)
        assert manager.get_config("db").schedules == [schedule]
        stored = manager.backup_service.open_repository(config).load_managed_configs()["db"]
        assert stored["schedules"] == [schedule]
        with pytest.raises(UsageError, match=r"config db: schedules\.0\.missed: use one of run-once, skip"):
            BackupConfig(name="db", source_paths=[], schedules=[{**schedule, "missed": "twice"}])
    finally:
        manager.close()
        manager.catalog.close()


def CLI(tmp_path: Path) -> CatalogCLI:
    return CatalogCLI(tmp_path, tz="Europe/Berlin")


def test_cli_config_schedules_and_schedule_next(tmp_path):
    cli = CLI(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("a")
    added = cli.run("config", "add", "db", "--source", str(tmp_path / "src"), "--target-dir", str(tmp_path / "r"),
                    "--no-encrypt", "--schedule", "TZ=Asia/Shanghai 30 2 * * *", "--schedule", "every 6h",
                    "--missed", "skip")
    assert added.returncode == 0, added.stderr
    show = cli.json("config", "show", "db")[0]
    assert [s["spec"] for s in show["schedules"]] == ["TZ=Asia/Shanghai 30 2 * * *", "every 6h"]
    assert {s["missed"] for s in show["schedules"]} == {"skip"}
    text = cli.run("config", "show", "db").stdout
    assert "cron 30 2 * * * in Asia/Shanghai" in text and "every 6h (on a fixed grid)" in text

    before = datetime.now(UTC)
    # Six slots: at most four of the 6-hour grid fall before the daily cron slot,
    # whatever the time of day the test runs at.
    slots = [e for e in cli.json("schedule", "next", "db", "--count", "6") if e["type"] == "slot"]
    assert len(slots) == 6
    starts = [datetime.fromisoformat(s["start"]) for s in slots]
    assert starts == sorted(starts) and all(t > before for t in starts)
    # Shown in local time (Europe/Berlin here), with the offset.
    assert all(t.utcoffset() == BERLIN.utcoffset(t.replace(tzinfo=None)) for t in starts)
    cron = [t for t, s in zip(starts, slots) if s["schedule"].startswith("TZ=")]
    assert cron and all(t.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%H:%M:%S") == "02:30:00" for t in cron)
    grid = [t for t, s in zip(starts, slots) if s["schedule"] == "every 6h"]
    assert grid and all(t.timestamp() % (6 * 3600) == 0 for t in grid)

    listed = [e for e in cli.json("schedule", "list") if e["type"] == "schedule"]
    assert [(e["config"], e["id"]) for e in listed] == [("db", "TZ=Asia/Shanghai 30 2 * * *"), ("db", "every 6h")]
    assert [e["last_slot"] for e in listed] == [None, None]
    # A slot claimed (as the scheduler would) shows as the last one.
    claimed = (grid[0] - timedelta(hours=12)).astimezone(UTC)
    with Catalog(tmp_path / "catalog.db") as catalog:
        assert catalog.claim_slot("db", "every 6h", claimed, {"owner": "test:1"})
    listed = [e for e in cli.json("schedule", "list") if e["type"] == "schedule"]
    assert datetime.fromisoformat(listed[1]["last_slot"]) == claimed and not listed[1]["due_now"]

    edited = cli.run("config", "edit", "db", "--window", "22:00-06:00")
    assert edited.returncode == 0, edited.stderr
    assert {s["window"] for s in cli.json("config", "show", "db")[0]["schedules"]} == {"22:00-06:00"}
    assert cli.run("config", "edit", "db", "--no-schedule").returncode == 0
    assert cli.json("config", "show", "db")[0]["schedules"] == []
    assert "has no schedule" in cli.run("schedule", "next", "db").stdout


@pytest.mark.parametrize("options, message", [
    (["--schedule", "30 25 * * *"], "cron hour field '25': 25 is outside 0-23"),
    (["--schedule", "every 6h", "--window", "22-06"], "window '22-06': give local times HH:MM-HH:MM"),
    (["--schedule", "TZ=Europe/Atlantis 0 3 * * *"], "unknown time zone 'Europe/Atlantis'"),
    (["--window", "22:00-06:00"], "--window goes with a schedule"),
])
def test_cli_refusals_store_nothing(tmp_path, options, message):
    cli = CLI(tmp_path)
    (tmp_path / "src").mkdir()
    done = cli.run("config", "add", "db", "--source", str(tmp_path / "src"), "--target-dir", str(tmp_path / "r"),
                   "--no-encrypt", *options)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "r").exists()
    listed = cli.json("config", "list")
    assert listed[-1] == {"type": "summary", "count": 0, "message_type": "summary", "schema": listed[-1]["schema"]}


def _transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    """The instants (to the hour) around which `zone` changed its clocks in `year`."""
    t = datetime(year, 1, 1, tzinfo=UTC)
    found, offset = [], t.astimezone(zone).utcoffset()
    while t.year == year:
        t += timedelta(hours=1)
        now = t.astimezone(zone).utcoffset()
        if now != offset:
            found.append(t)
            offset = now
    return found


@pytest.mark.parametrize("zone_name", ["Europe/Berlin", "Australia/Lord_Howe", "America/Santiago", "Asia/Shanghai"])
def test_cron_searches_from_the_local_time_agree_with_searches_from_three_hours_away(zone_name):
    """Away from a change of the clocks a search starts at the instant's own local
    time (fast for dense expressions); near one it starts three hours away. Both
    must name the same instants, across every change of 2026 (Lord Howe's is
    half an hour)."""
    from strongroom.schedule.cron import parse_cron
    zone = ZoneInfo(zone_name)
    instants = [edge + timedelta(minutes=7 * k) for edge in _transitions(zone, 2026) for k in range(-45, 46)]
    instants += [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=7919 * k) for k in range(60)]
    for text in ("* * * * *", "*/5 * * * *", "30 2 * * *", "0,30 1-3 * * *", "59 23 * * 6", "15 0 1 * *"):
        cron = parse_cron(text)
        for at in instants:
            assert cron.next_after(at, zone) == cron.next_after(at, zone, _always_shift=True), (text, at)
            assert cron.prev_at_or_before(at, zone) == cron.prev_at_or_before(at, zone, _always_shift=True), \
                (text, at)
