"""`/metrics`: how every configuration, WebDAV target, the job queue and
every disaster-recovery plan stand, in the Prometheus text format.

Everything is read from the catalog at each scrape (and a WebDAV target's
request budget from the state file its runs share): nothing is opened, no
request goes out, so a scrape is quick and works with the targets offline.
Each scrape builds a fresh registry, so the series of a configuration, a
client or a plan that was removed are gone from the next scrape rather than
left at their last value. A scrape that cannot read the catalog fails whole
(the HTTP layer answers 500, Prometheus marks the target down): series left
out because a read failed would look like a removed configuration.

Names from the catalog are label values, never part of a metric name;
prometheus_client escapes them. The metric names and what they mean are in
docs/design.md ("HTTP endpoints and metrics").
"""

from __future__ import annotations

import math
import platform
from collections.abc import Iterable, Mapping

from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from strongroom import __version__
from strongroom.dr.results import VERDICTS
from strongroom.engine.progress import stored_bytes
from strongroom.daemon.standing import BACKUP_KINDS, ScheduleGaps, standing
from strongroom.schedule.spec import system_zone

RUN_STATUSES = ("running", "succeeded", "failed", "cancelled")
MAX_DR_STEPS = 1000  # steps of one run document read for its RPO; a plan has a few
_METRIC_NAME = "strongroom_"


def render_metrics(manager, now: float, extra: Mapping[str, float] | None = None,
                   zone: ZoneInfo | None = None, gaps: ScheduleGaps | None = None) -> bytes:
    """The metrics at unix time `now`, as the Prometheus text format (0.0.4).

    `extra` adds gauges of the process that serves them (the daemon's
    `strongroom_scheduler_heartbeat_timestamp_seconds`, say): metric name to
    value, each name starting with `strongroom_`. `zone` is the one cron
    schedules are read in when they name none (default: the machine's);
    `gaps` keeps cron schedules' gaps between scrapes (see standing.ScheduleGaps)."""
    families = list(_families(manager, now, zone or system_zone(), extra or {}, gaps or ScheduleGaps()))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)


class _Fixed:
    """A collector of metric families made before it is registered."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self.families)


def _number(value) -> float | None:
    """A catalog value as a float, or None when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class _Gauges:
    """Gauge families by name, filled one labelled sample at a time."""

    def __init__(self) -> None:
        self.families: dict[str, GaugeMetricFamily] = {}

    def define(self, name: str, help_text: str, labels: tuple[str, ...]) -> None:
        self.families[name] = GaugeMetricFamily(name, help_text, labels=list(labels))

    def set(self, name: str, labels: tuple[str, ...], value) -> None:
        number = _number(value)
        if number is not None:
            self.families[name].add_metric(list(labels), number)


_CONFIG_GAUGES = (
    ("strongroom_config_last_success_timestamp_seconds", "When the newest successful backup finished (unix time)."),
    ("strongroom_config_last_run_timestamp_seconds",
     "When the newest backup run finished, or started while it runs (unix time)."),
    ("strongroom_config_last_duration_seconds", "How long the newest successful backup took."),
    ("strongroom_config_last_read_bytes", "Bytes the newest successful backup read from its sources."),
    ("strongroom_config_last_added_bytes", "Bytes the newest successful backup stored (compressed, encrypted)."),
    ("strongroom_config_last_files", "Files the newest successful backup went through."),
    ("strongroom_config_last_errors", "Files the newest successful backup could not read."),
    ("strongroom_config_points", "Recovery points (snapshots) of the configuration, in the newest storage sample."),
    ("strongroom_config_stored_size_bytes",
     "What the configuration's points take on the target, in the newest storage sample."),
    ("strongroom_config_repository_size_bytes", "The whole repository's size, in the newest storage sample."),
    ("strongroom_config_schedule_period_seconds",
     "The schedule's longest normal gap between runs (the shortest of several schedules)."),
    ("strongroom_config_overdue_after_seconds",
     "How old the newest success may be before the configuration is overdue."),
    ("strongroom_config_next_run_timestamp_seconds", "When the next scheduled run is due (unix time)."),
    ("strongroom_config_overdue", "1 when no success came within the time its schedule allows, as `strongroom status`."),
)


def _families(manager, now: float, zone: ZoneInfo, extra: Mapping[str, float],
              gaps: ScheduleGaps) -> Iterable[Metric]:
    build = InfoMetricFamily("strongroom_build", "The strongroom that serves these metrics.")
    build.add_metric([], {"version": __version__, "python": platform.python_version()})
    yield build
    yield from _config_families(manager, now, zone, gaps)
    yield from _budget_families(manager)
    yield from _queue_families(manager.catalog)
    yield from _dr_families(manager.catalog)
    for name, value in sorted(extra.items()):
        if not name.startswith(_METRIC_NAME):
            raise ValueError(f"an extra metric's name must start with {_METRIC_NAME!r}: {name!r}")
        family = GaugeMetricFamily(name, "Of the process that serves these metrics.")
        if _number(value) is not None:
            family.add_metric([], float(value))
        yield family


def _config_families(manager, now: float, zone: ZoneInfo, gaps: ScheduleGaps) -> Iterable[Metric]:
    catalog = manager.catalog
    gauges = _Gauges()
    for name, help_text in _CONFIG_GAUGES:
        gauges.define(name, help_text, ("config",))
    gauges.define("strongroom_config_last_status",
                  "1 for the status of the newest backup run (running, succeeded, failed, cancelled), 0 for the others.",
                  ("config", "status"))
    configs = manager.list_configs()
    for config in configs:
        key = (config.name,)
        last = catalog.last_job(config.name, BACKUP_KINDS, RUN_STATUSES)
        if last is not None:
            when = last["finished_at"] if last["finished_at"] is not None else last["started_at"]
            gauges.set("strongroom_config_last_run_timestamp_seconds", key, when)
            for status in RUN_STATUSES:
                gauges.set("strongroom_config_last_status", (config.name, status), int(last["status"] == status))
        now_standing = standing(catalog, config, now, zone, gaps)
        success = now_standing.success
        if success is not None:
            stats = success["stats"] if isinstance(success["stats"], dict) else {}
            gauges.set("strongroom_config_last_success_timestamp_seconds", key, success["finished_at"])
            gauges.set("strongroom_config_last_duration_seconds", key, stats.get("duration"))
            gauges.set("strongroom_config_last_read_bytes", key, stats.get("bytes_read"))
            gauges.set("strongroom_config_last_added_bytes", key, _number(stored_bytes(stats)))
            gauges.set("strongroom_config_last_files", key, stats.get("total_files_processed"))
            gauges.set("strongroom_config_last_errors", key, stats.get("errors"))
        sample = catalog.latest_sample(config.name) or {}
        gauges.set("strongroom_config_points", key, sample.get("points"))
        gauges.set("strongroom_config_stored_size_bytes", key, sample.get("stored_size"))
        gauges.set("strongroom_config_repository_size_bytes", key, sample.get("repository_size"))
        gauges.set("strongroom_config_schedule_period_seconds", key, now_standing.period)
        gauges.set("strongroom_config_overdue_after_seconds", key, now_standing.allowed_age)
        gauges.set("strongroom_config_next_run_timestamp_seconds", key, now_standing.next_run)
        gauges.set("strongroom_config_overdue", key, int(now_standing.overdue))
    count = GaugeMetricFamily("strongroom_configs", "Configurations in the catalog.")
    count.add_metric([], len(configs))
    yield count
    yield from gauges.families.values()


def _budget_families(manager) -> Iterable[Metric]:
    from strongroom.services.budgets import webdav_budgets

    gauges = _Gauges()
    gauges.define("strongroom_webdav_budget_remaining_requests",
                  "Requests the WebDAV account may still send in its current window.", ("client",))
    gauges.define("strongroom_webdav_budget_capacity_requests", "Requests the WebDAV account may send per window.",
                  ("client",))
    gauges.define("strongroom_webdav_budget_window_seconds", "The window the WebDAV account's budget counts over.",
                  ("client",))
    for budget in webdav_budgets(manager):
        key = (budget.client,)
        gauges.set("strongroom_webdav_budget_remaining_requests", key, budget.remaining)
        gauges.set("strongroom_webdav_budget_capacity_requests", key, budget.capacity)
        gauges.set("strongroom_webdav_budget_window_seconds", key, budget.window_seconds)
    yield from gauges.families.values()


def _queue_families(catalog) -> Iterable[Metric]:
    depth = GaugeMetricFamily("strongroom_queue_depth", "Jobs queued (due or waiting to retry), by priority.",
                              labels=["priority"])
    for priority, count in sorted(catalog.queue_depth().items()):
        depth.add_metric([str(priority)], count)
    yield depth


def _dr_families(catalog) -> Iterable[Metric]:
    gauges = _Gauges()
    gauges.define("strongroom_dr_last_test_timestamp_seconds", "When the newest test of the plan finished (unix time).",
                  ("plan",))
    gauges.define("strongroom_dr_last_test_rto_seconds", "Recovery time the newest test achieved.", ("plan",))
    gauges.define("strongroom_dr_last_test_rpo_seconds",
                  "Recovery point the newest test achieved: the age of its oldest restored point.", ("plan",))
    gauges.define("strongroom_dr_rto_target_seconds", "The plan's recovery time objective, as its newest test had it.",
                  ("plan",))
    gauges.define("strongroom_dr_rpo_target_seconds", "The plan's recovery point objective, as its newest test had it.",
                  ("plan",))
    gauges.define("strongroom_dr_last_test_verdict",
                  "1 for the verdict of the newest test (pass, pass-with-warnings, fail), 0 for the others.",
                  ("plan", "verdict"))
    for plan in catalog.list_plans():
        runs = catalog.list_dr_runs(plan["name"], limit=1, mode="test")
        if not runs:
            continue
        run, key = runs[-1], (plan["name"],)
        doc = run["doc"] if isinstance(run["doc"], dict) else {}
        gauges.set("strongroom_dr_last_test_timestamp_seconds", key, run["finished"])
        gauges.set("strongroom_dr_last_test_rto_seconds", key, doc.get("rto_seconds"))
        gauges.set("strongroom_dr_last_test_rpo_seconds", key, _achieved_rpo(doc))
        gauges.set("strongroom_dr_rto_target_seconds", key, doc.get("rto_target"))
        gauges.set("strongroom_dr_rpo_target_seconds", key, doc.get("rpo_target"))
        for verdict in VERDICTS:
            gauges.set("strongroom_dr_last_test_verdict", (plan["name"], verdict), int(run["verdict"] == verdict))
    yield from gauges.families.values()


def _achieved_rpo(doc: dict) -> float | None:
    steps = doc.get("steps")
    if not isinstance(steps, list):
        return None
    ages = [_number(step.get("rpo_seconds")) for step in steps[:MAX_DR_STEPS] if isinstance(step, dict)]
    return max((age for age in ages if age is not None), default=None)
