"""The plan model: what a plan may say, its TOML form and its version hash."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from strongroom.dr.durations import format_seconds, parse_seconds
from strongroom.dr.plan import Hook, Plan, PointRule, Step, plan_from_order
from strongroom.errors import UsageError

FULL = '''
name = "Production DR"
description = "the shop"
target_base = "/srv/restore"
rto = "30m"
rpo = "24h"
on_failure = "continue"

[[steps]]
config = "database"
database = "shop"
point = "random"
within = "7d"

[[steps.before]]
command = "systemctl stop shop"
timeout = "1m"
mode = "optional"

[[steps.after]]
command = "pg_isready -h /run/postgresql"

[[steps]]
config = "app"
name = "app \\"quoted\\" step"
point = "at"
at = "2026-11-30T02:00:00+08:00"
include = ["/etc/**", "*.conf"]
rto = "90s"

[[steps]]
config = "files"
target = "/mnt/files"
'''


def test_the_toml_form_reads_back_to_an_equal_plan_with_the_same_version():
    plan = Plan.from_toml(FULL)
    assert [s.name for s in plan.steps] == ["database", 'app "quoted" step', "files"]
    assert plan.rto == 1800 and plan.rpo == 86400 and plan.on_failure == "continue"
    assert plan.steps[0].point == PointRule("random", within=7 * 86400)
    assert plan.steps[1].point.at == datetime(2026, 11, 29, 18, tzinfo=timezone.utc)
    assert plan.steps[0].before == (Hook("systemctl stop shop", 60, "optional"),)
    assert plan.steps[0].after[0].mode == "essential" and plan.steps[0].after[0].timeout == 300
    again = Plan.from_toml(plan.to_toml())
    assert again == plan and again.version == plan.version
    assert Plan.from_doc(plan.to_doc()).version == plan.version


def test_targets_default_below_the_base_by_config_name():
    plan = Plan.from_toml(FULL)
    assert [s.target_in(plan.target_base) for s in plan.steps] == [
        "/srv/restore/database", "/srv/restore/app", "/mnt/files"]


def test_the_version_changes_with_the_plan_and_not_with_the_number_type():
    a = plan_from_order("p", ["a", "b"], "/t", rto=1800)
    assert a.version == plan_from_order("p", ["a", "b"], "/t", rto=1800.0).version
    assert a.version != plan_from_order("p", ["b", "a"], "/t", rto=1800).version


@pytest.mark.parametrize("toml, message", [
    ('name = "p"\ntarget_base = "/t"\n', "at least one step"),
    ('name = "p"\ntarget_base = "rel"\nsteps = ["a"]\n', "absolute"),
    ('name = "p"\ntarget_base = "/t"\nsteps = ["a", "a"]\n', "two steps are named"),
    ('name = "p"\ntarget_base = "/t"\nrto = "soon"\nsteps = ["a"]\n', "cannot read RTO"),
    ('name = "p"\ntarget_base = "/t"\nsteps = ["a"]\ncolour = "red"\n', "unknown key 'colour'"),
    ('name = "p"\ntarget_base = "/t"\non_failure = "panic"\nsteps = ["a"]\n', "on_failure"),
    ('name = " p"\ntarget_base = "/t"\nsteps = ["a"]\n', "plan name"),
    ('name = "p"\ntarget_base = "/t"\n[[steps]]\nconfig = "a"\npoint = "at"\n', "needs a time"),
    ('name = "p"\ntarget_base = "/t"\n[[steps]]\nconfig = "a"\ntarget = "../up"\n', "may not leave"),
    ('name = "p"\ntarget_base = "/t"\n[[steps]]\nconfig = "a"\ntarget = "/t/x"\n[[steps]]\nconfig = "b"\n'
     'target = "/t/x/y"\n', "two steps restore into /t/x"),
    ('name = "p"\ntarget_base = "/t"\n[[steps]]\nconfig = "a"\n[[steps.after]]\ncommand = ""\n', "needs a command"),
    ('name = "p"\ntarget_base = "/t"\n[[steps]]\nconfig = "a"\n[[steps.after]]\ncommand = "x"\nmode = "maybe"\n',
     "mode must be"),
    ("name = [", "not valid TOML"),
])
def test_refusals_name_the_problem(toml, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        Plan.from_toml(toml)


def test_durations():
    assert parse_seconds("1h30m") == 5400 and parse_seconds("90s") == 90 and parse_seconds("2w") == 14 * 86400
    assert parse_seconds("45") == 45 and parse_seconds(1.5) == 1.5
    for bad in ("", "10x", "h", "-5m", True):
        with pytest.raises(UsageError):
            parse_seconds(bad)
    assert format_seconds(5400) == "1h30m" and format_seconds(12.5) == "12.5s" and format_seconds(None) == "-"


def test_a_step_given_as_a_bare_name_and_the_names_people_use():
    plan = Plan.from_doc({"name": "Production DR", "target_base": "/dr", "steps": ["database", "app"]})
    assert plan.id == "Production DR" and plan.configs == ("database", "app")
    assert Step("db").name == "db" and Step("db", name="first").target_in("/dr") == "/dr/db"
