"""Reports of plan runs: Markdown, JSON and one HTML page, from PlanRun objects built
here and from runs recorded in a real catalog and repository; and the reading back
of recorded runs (plan_run_from_dict), which are hostile input."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from dr_runs import EVIL_OUTPUT, EVIL_PLAN, START, failed_run, plan_run, step
from strongroom.cli.output import SCHEMA
from strongroom.dr.report import REPORT_SCHEMA, plan_run_from_dict, render, render_runs
from strongroom.dr.run_document import MAX_LIST, RunDocumentError, _Reader
from strongroom.errors import IntegrityError, UsageError

# ---- HTML: one self-contained page, every value escaped ----------------------------------


class Tags(HTMLParser):
    """Every tag and attribute of a page, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "article", "section", "h1", "h2", "h3", "p", "span",
                "ul", "li", "table", "thead", "tbody", "tr", "th", "td", "div", "pre", "code", "svg", "text", "line",
                "polyline", "circle"}


def parsed(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    tags.close()
    return tags


def test_html_is_one_self_contained_page_with_every_value_escaped():
    page = render(failed_run(), "html")
    tags = parsed(page)
    names = {tag for tag, _ in tags.tags}
    assert names <= ALLOWED_TAGS, names - ALLOWED_TAGS
    assert "script" not in names and "img" not in names
    for tag, attrs in tags.tags:
        for attr in attrs:
            assert attr not in ("src", "href", "xlink:href", "action", "srcset") and not attr.startswith("on"), \
                (tag, attr)
    lowered = page.lower()
    assert "url(" not in lowered and "@import" not in lowered and "http://" not in lowered \
        and "https://" not in lowered
    text = "".join(tags.text)
    # The crafted values are there, as text.
    assert EVIL_PLAN in text and "<script>alert('x')</script>" in text
    assert "\x1b" not in page and "\\x1b[2J" in text
    assert "&lt;script&gt;" in page and "&quot;&gt;&lt;img" in page
    # What an auditor needs is on the page.
    for fact in ("0123456789abcdef", "backup-01", "0.9.0", "2026-11-30 02:00:00 UTC", "pack 3fa2c1d0",
                 "/app/main.py", "systemctl stop app", "Exit code", "100%", "40 of 40", "damaged", "fail",
                 "RPO exceeded: app's point is 2d old", "/srv/repos/app", "Cleanup"):
        assert fact in text, fact
    assert 'name="viewport"' in page and "@media print" in page and "@media (max-width" in page


def test_html_draws_the_trend_when_there_are_several_tests():
    history = [plan_run(started=START - timedelta(days=d), rto=30.0 + d, run_id=f"old-{d}") for d in (3, 2, 1)]
    latest = plan_run(rto=2000.0, verdict="fail", reasons=("RTO exceeded",))
    page = render(latest, "html", history)
    tags = parsed(page)
    [rto_chart, rpo_chart] = [attrs for tag, attrs in tags.tags if tag == "svg"]
    assert rto_chart["aria-label"] == "RTO achieved"
    polylines = [attrs["points"].split() for tag, attrs in tags.tags if tag == "polyline"]
    assert [len(p) for p in polylines] == [4, 4]  # four tests, RTO and RPO
    ys = [float(point.split(",")[1]) for point in polylines[0]]
    assert ys[-1] == min(ys)  # the slowest test is the highest point
    assert sum(1 for tag, attrs in tags.tags if tag == "circle" and attrs["class"] == "dot-fail") == 2
    # The RTO target is drawn; the RPO target (1d, the points 2h old) would flatten the line: it is named.
    assert sum(1 for tag, attrs in tags.tags if tag == "line" and attrs.get("class") == "chart-target") == 1
    assert "target 1d, above the chart" in page
    # A single test has no line to draw.
    assert "<svg" not in render(latest, "html")


# ---- Markdown ----------------------------------------------------------------------------


def test_markdown_escapes_what_would_break_a_table_or_become_markup():
    text = render(failed_run(), "md")
    assert "\x1b" not in text and "\\x1b[2J" in text
    assert "| after | ./probe.sh \\| tee probe.log |" in text
    assert "| pack 3fa2c1d0:\\\\x0ashort \\| read |" in text  # the backslash of \\x0a is escaped too
    outside_code = re.sub(r"(?ms)^(`{3,})\n.*?^\1$", "", text)  # a fenced block is shown as it is
    assert "<script>" in text and not re.search(r"(?<!\\)<", outside_code) and "\\<img src=x onerror=alert(1)\\>" in text
    for line in text.splitlines():
        if line.startswith("| "):
            cells = line.replace("\\|", "").split("|")[1:-1]
            assert len(cells) in (2, 4, 6), line
    # Hook output sits in a fence longer than any backtick run inside it.
    assert "````\nloading dump\n<script>alert('x')</script>\n| col | break |\n```\ndone\\x1b[2J\n````" in text
    for fact in ("**Verdict: fail**", "## Step 2: app (failed)", "pack 3fa2c1d0", "/app/lib.py", "## RTO",
                 "| whole plan | 40s | 100% | 40s of 30m: met |", "| Repository | Structure |",
                 "## Trend of the last 1 test(s)", "| Age (RPO) | 1h of 1d: met |"):
        assert fact in text, fact


def test_markdown_trend_has_a_row_per_test_and_leaves_out_real_runs_and_later_ones():
    history = [plan_run(started=START - timedelta(days=d), run_id=f"old-{d}") for d in (2, 1)]
    history.append(plan_run(started=START - timedelta(hours=1), mode="run", run_id="real"))
    history.append(plan_run(started=START + timedelta(days=1), run_id="later"))
    text = render(plan_run(rto=3600.0, verdict="fail"), "md", history)
    trend = text.split("## Trend of the last 3 test(s)")[1].strip().splitlines()
    assert len(trend) == 2 + 3
    assert trend[-1].startswith("| 2026-11-30 02:00:00 UTC | fail | 1h of 30m: exceeded")
    assert "2026-11-28 02:00:00 UTC" in trend[2]


def test_several_runs_one_after_the_other():
    runs = [plan_run(started=START - timedelta(days=1), run_id="a"), plan_run(run_id="b")]
    assert render_runs(runs, "md").count("# Disaster-recovery rehearsal") == 2
    page = render_runs(runs, "html")
    assert page.count("<article>") == 2 and page.count("<html") == 1
    lines = render_runs(runs, "json").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b"]
    with pytest.raises(UsageError):
        render(runs[0], "pdf")


# ---- JSON --------------------------------------------------------------------------------


def test_json_report_is_the_run_with_schema_and_trend():
    history = [plan_run(plan=EVIL_PLAN, started=START - timedelta(days=1), rto=50.0, run_id="old"),
               plan_run(started=START - timedelta(days=1), run_id="another plan's")]
    run = failed_run()
    doc = json.loads(render(run, "json", history))
    assert doc["schema"] == REPORT_SCHEMA == SCHEMA and doc["message_type"] == "dr_report"
    assert {k: v for k, v in doc.items() if k not in ("schema", "message_type", "trend", "rpo_seconds")} \
        == run.to_dict()
    assert [(p["id"], p["rto_seconds"]) for p in doc["trend"]] == [("old", 50.0), (run.id, 40.0)]
    assert doc["rpo_seconds"] == doc["trend"][-1]["rpo_seconds"] == 3600.0
    assert plan_run_from_dict(doc) == run  # a report reads back as its run


# ---- reading recorded runs back ---------------------------------------------------------


def test_plan_run_from_dict_is_the_inverse_of_to_dict():
    for run in (plan_run(), failed_run(), plan_run(steps=(step(snapshot=None, snapshot_time=None,
                                                                 rpo_seconds=None, status="skipped"),))):
        doc = run.to_dict()
        assert plan_run_from_dict(doc) == run
        assert plan_run_from_dict(json.dumps(doc)) == run
        assert plan_run_from_dict(json.dumps(doc).encode()) == run


def test_plan_run_from_dict_reads_older_and_newer_records():
    doc = plan_run().to_dict()
    for s in doc["steps"]:
        del s["database"]  # a field with a default, as an older record lacks a newer field
        s["added_later"] = {"anything": [1, 2]}  # and a newer record's field is passed over
    doc["also_later"] = "x"
    assert plan_run_from_dict(doc) == plan_run()


def _broken(change) -> dict:
    doc = failed_run().to_dict()
    change(doc)
    return doc


@pytest.mark.parametrize("change, says", [
    (lambda d: d.pop("verdict"), "has no verdict"),
    (lambda d: d.update(verdict="great"), "verdict"),
    (lambda d: d.update(mode="drill"), "mode"),
    (lambda d: d.update(rto_seconds="40"), "run.rto_seconds is not a number"),
    (lambda d: d.update(rto_seconds=float("nan")), "not a number"),
    (lambda d: d.update(rto_target=True), "not a number"),
    (lambda d: d.update(started="yesterday"), "run.started is not a time"),
    (lambda d: d.update(started="2026-11-30T02:00:00"), "no offset"),
    (lambda d: d.update(steps={"0": {}}), "run.steps is not a list"),
    (lambda d: d["steps"][1].update(files=True), "run.steps[1].files is not an integer"),
    (lambda d: d["steps"][1].update(files=2 ** 70), "out of range"),
    (lambda d: d["steps"][1].update(status="fine"), "status"),
    (lambda d: d["steps"][1]["hooks"][1].update(output_tail="one line"), "output_tail is not a list"),
    (lambda d: d["steps"][1]["hooks"][1].update(output_tail=[["nested"]]), "output_tail[0] is not text"),
    (lambda d: d["steps"][1]["problems"][0].update(files=["f"] * (MAX_LIST + 1)), "more than"),
    (lambda d: d["steps"][0].update(name="x" * 70_000), "longer than"),
    (lambda d: d["checks"].append("check"), "run.checks[1] is not an object"),
    (lambda d: d["steps"][1].update(problems=[{"object": "p", "message": "m", "files": ["f"] * MAX_LIST}] * 21),
     "more than 2000000 values"),
])
def test_plan_run_from_dict_refuses_malformed_records(change, says):
    with pytest.raises(RunDocumentError, match=None) as caught:
        plan_run_from_dict(_broken(change))
    assert says in str(caught.value) and len(str(caught.value).splitlines()) == 1
    assert isinstance(caught.value, IntegrityError)


def test_plan_run_from_dict_refuses_crafted_text():
    for text, says in ((b"[" * 100_000 + b"]" * 100_000, "nested too deeply"), (b"{not json", "not JSON"),
                       (b"\xff\xfe", "not JSON"), (b"[1, 2]", "run is not an object"),
                       (b" " * (16 * 1024 * 1024 + 1), "larger than")):
        with pytest.raises(RunDocumentError) as caught:
            plan_run_from_dict(text)
        assert says in str(caught.value)


# ---- runs as the store keeps them ---------------------------------------------------------


def test_runs_recorded_by_the_store_read_back_and_render(tmp_path, monkeypatch):
    from strongroom import BackupConfig, create_backup_manager
    from strongroom.dr.store import PlanStore

    for name in ("STRONGROOM_SECRETS", "STRONGROOM_CATALOG", "STRONGROOM_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    (tmp_path / "src").mkdir()
    manager = create_backup_manager(db_path=str(tmp_path / "catalog.db"), cache_root=str(tmp_path / "cache"))
    try:
        for name in ("database", "app"):
            manager.add_config(BackupConfig(name=name, source_paths=[str(tmp_path / "src")],
                                            target_path=str(tmp_path / f"repo-{name}"), password="pw"))
        store = PlanStore(manager.backup_service)
        older = plan_run(started=START - timedelta(days=1), rto=90.0, run_id="older")
        latest = failed_run()
        for run in (older, latest):
            store.record_run(run)
        from_catalog = [plan_run_from_dict(doc) for doc in store.runs(EVIL_PLAN)]
        assert from_catalog == [latest]  # runs() is per plan: the older one is another plan's
        assert [plan_run_from_dict(d) for d in store.runs()] == [older, latest]
        repo = manager.backup_service.open_repository(manager.get_config("app"))
        from_repository = [plan_run_from_dict(doc) for doc in PlanStore.runs_in_repository(repo)]
        assert from_repository == [older, latest]
    finally:
        manager.close()
        manager.catalog.close()
    for fmt in ("md", "json", "html"):
        assert render(from_repository[-1], fmt, from_repository[:-1]) == render(latest, fmt, [older])
    assert "&lt;script&gt;" in render(from_repository[-1], "html")


@dataclass(frozen=True)
class Newer:
    """Field types a later result may add."""

    counts: dict[str, int]
    names: list[str]
    extra: Any = None
    when: tuple[str, ...] = field(default=())


def test_plan_run_from_dict_reads_the_field_types_a_newer_result_may_add():
    doc = {"counts": {"a": 1}, "names": ["x"], "extra": {"deep": [1, {"k": "v"}]}}
    assert _Reader().value(Newer, doc, "n") == Newer({"a": 1}, ["x"], {"deep": [1, {"k": "v"}]})
    nested: Any = "end"
    for _ in range(9):
        nested = [nested]
    for bad, says in (({**doc, "counts": {"a": "1"}}, "n.counts.a is not an integer"),
                      ({**doc, "counts": [1]}, "n.counts is not an object"),
                      ({**doc, "extra": nested}, "nested deeper than 8"),
                      ({**doc, "extra": float("inf")}, "not finite")):
        with pytest.raises(RunDocumentError) as caught:
            _Reader().value(Newer, bad, "n")
        assert says in str(caught.value)
