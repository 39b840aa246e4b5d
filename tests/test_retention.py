"""Retention policies over tables of dates, computed by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from strongroom.errors import UsageError
from strongroom.model.retention import Duration, Point, Policy, apply_policy, parse_duration

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def points(*stamps: str, tz=UTC, tags: dict[str, tuple[str, ...]] | None = None) -> list[Point]:
    result = []
    for stamp in stamps:
        when = datetime.fromisoformat(stamp)
        when = when.replace(tzinfo=tz) if when.tzinfo is None else when
        result.append(Point(stamp, when, (tags or {}).get(stamp, ())))
    return result


def kept(pts, policy, tz=UTC) -> list[str]:
    return sorted(d.point.id for d in apply_policy(pts, policy, tz) if d.keep)


def test_keep_last_keeps_the_newest():
    pts = points("2024-01-01 10:00", "2024-01-02 10:00", "2024-01-03 10:00")
    assert kept(pts, Policy(last=2)) == ["2024-01-02 10:00", "2024-01-03 10:00"]


def test_daily_keeps_the_newest_of_each_day():
    pts = points("2024-01-01 09:00", "2024-01-01 18:00", "2024-01-02 08:00", "2024-01-02 23:59",
                 "2024-01-03 00:00")
    assert kept(pts, Policy(daily=2)) == ["2024-01-02 23:59", "2024-01-03 00:00"]
    assert kept(pts, Policy(daily=10)) == ["2024-01-01 18:00", "2024-01-02 23:59", "2024-01-03 00:00"]


def test_month_ends_and_leap_days():
    pts = points("2024-01-31 23:00", "2024-02-28 12:00", "2024-02-29 12:00", "2024-03-01 00:30",
                 "2023-12-31 23:59")
    assert kept(pts, Policy(monthly=3)) == ["2024-01-31 23:00", "2024-02-29 12:00", "2024-03-01 00:30"]
    assert kept(pts, Policy(yearly=5)) == ["2023-12-31 23:59", "2024-03-01 00:30"]


def test_weekly_uses_iso_weeks():
    # 2024-12-30 (Mon) is in ISO week 1 of 2025, with 2025-01-05 (Sun).
    pts = points("2024-12-29 12:00", "2024-12-30 12:00", "2025-01-05 12:00", "2025-01-06 12:00")
    assert kept(pts, Policy(weekly=3)) == ["2024-12-29 12:00", "2025-01-05 12:00", "2025-01-06 12:00"]


def test_days_follow_local_time_across_a_dst_change():
    # Berlin leaves summer time on 2024-10-27 at 03:00 -> 02:00. In Berlin these
    # fall on the 26th (23:30 +02), the 27th (00:30 +02) and the 28th (00:30 +01).
    pts = points("2024-10-26T21:30:00+00:00", "2024-10-26T22:30:00+00:00", "2024-10-27T23:30:00+00:00")
    assert kept(pts, Policy(daily=5), tz=BERLIN) == sorted(p.id for p in pts)
    # In UTC the first two share the 26th.
    assert kept(pts, Policy(daily=5), tz=UTC) == ["2024-10-26T22:30:00+00:00", "2024-10-27T23:30:00+00:00"]
    # The repeated hour: 02:30 local happens twice on 2024-10-27, one hour apart.
    twice = points("2024-10-27T00:30:00+00:00", "2024-10-27T01:30:00+00:00")
    assert kept(twice, Policy(hourly=5), tz=BERLIN) == ["2024-10-27T01:30:00+00:00"]


def test_rules_combine_and_report_their_reasons():
    pts = points("2024-01-01 10:00", "2024-01-15 10:00", "2024-02-01 10:00", "2024-02-02 10:00",
                 tags={"2024-01-01 10:00": ("keep",)})
    decisions = {d.point.id: d for d in apply_policy(pts, Policy(last=1, monthly=2, tags=("keep",)), UTC)}
    assert decisions["2024-02-02 10:00"].reasons == ["last", "monthly"]
    assert decisions["2024-01-15 10:00"].reasons == ["monthly"]
    assert decisions["2024-01-01 10:00"].reasons == ["tag"]
    assert not decisions["2024-02-01 10:00"].keep


def test_keep_within_is_relative_to_the_newest_point():
    pts = points("2024-03-31 12:00", "2024-02-29 12:00", "2024-02-28 12:00", "2024-01-30 12:00")
    # One month before March 31 is February 29 (leap year): the end of the shorter month.
    assert kept(pts, Policy(within=parse_duration("1m"))) == ["2024-02-29 12:00", "2024-03-31 12:00"]
    assert kept(pts, Policy(within=parse_duration("30d"))) == ["2024-03-31 12:00"]
    assert kept(pts, Policy(within=parse_duration("2m"))) == sorted(p.id for p in pts[:3])


@pytest.mark.parametrize("text, duration", [
    ("30d", Duration(days=30)), ("2w", Duration(days=14)), ("1y6m", Duration(years=1, months=6)),
    ("12h", Duration(hours=12)), ("1y2m3w4d5h", Duration(1, 2, 25, 5)),
])
def test_parse_duration(text, duration):
    assert parse_duration(text) == duration


@pytest.mark.parametrize("text", ["", "30", "d", "1x", "3 d", "-1d"])
def test_bad_durations_are_refused(text):
    with pytest.raises(UsageError):
        parse_duration(text)


def test_duration_before_handles_leap_years():
    assert Duration(years=1).before(datetime(2024, 2, 29, 12)) == datetime(2023, 2, 28, 12)
    assert Duration(months=1).before(datetime(2024, 3, 31)) == datetime(2024, 2, 29)
    assert Duration(months=13).before(datetime(2024, 1, 31)) == datetime(2022, 12, 31)
    assert Duration(days=1, hours=1).before(datetime(2024, 3, 1, 0, 30)) == datetime(2024, 2, 28, 23, 30)


def test_an_empty_policy_is_refused():
    with pytest.raises(UsageError):
        apply_policy(points("2024-01-01 10:00"), Policy())


def test_hourly_table():
    base = datetime(2024, 6, 1, tzinfo=UTC)
    pts = [Point(str(i), base + timedelta(minutes=20 * i)) for i in range(9)]  # 00:00 .. 02:40
    assert kept(pts, Policy(hourly=2)) == ["5", "8"]  # newest of 02:xx and of 01:xx
