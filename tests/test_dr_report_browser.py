"""The report file `dr test NAME --report FILE.html` writes, opened from disk
(file://) in a real headless Chromium (Debian's, driven by Playwright): it
loads without a JavaScript error and without a single request beyond the file
itself, shows the verdict, the plan, its version hash and every step, passes
axe-core, fits a phone's 360 px without anything scrolling sideways (the page
or a box inside it), and prints with nothing cut off.

The plan and the rehearsals are real: configurations backed up into real
repositories and `dr test` through the real command (tests/test_dr_run.py's
DR). Screenshots and the printed PDF go to tests/browser.py's artifacts()."""

from __future__ import annotations

import json
import random

import pytest
from playwright.sync_api import expect

from browser import artifacts, browser, check_accessibility, open_page  # noqa: F401  (fixtures)
from test_dr_run import DR, hook

KiB = 1024
PLAN = "Production DR"
STEPS = ("database", "files")
PROBE = 'echo "probe of $STRONGROOM_STEP"; ls "$STRONGROOM_TARGET" > /dev/null && echo healthy'
# A4 is 210 mm wide; less 1 cm margins each side that is 190 mm, 718 px at 96 px an inch.
PRINT_MARGIN = "1cm"
PRINT_WIDTH = 718

# Every element that sticks out past the viewport's right edge, and every box
# whose content is wider than the box (scrolled or clipped): what a reader
# would have to scroll sideways for, or would not see on paper. A visually
# hidden box (1 px, for screen readers: the stacked tables' header row) and
# what it holds are passed over.
OVERFLOWING = """() => [...document.body.querySelectorAll('*')].flatMap(e => {
    for (let a = e; a; a = a.parentElement) {
        const r = a.getBoundingClientRect();
        if (r.width <= 1 && r.height <= 1) return [];
    }
    const box = e.getBoundingClientRect();
    const clips = getComputedStyle(e).overflowX !== 'visible' && e.scrollWidth > e.clientWidth + 1;
    if (box.right <= window.innerWidth + 1 && !clips) return [];
    return [`${e.tagName.toLowerCase()}.${e.className}: right ${Math.round(box.right)}, ` +
            `content ${e.scrollWidth} in ${e.clientWidth}`];
})"""

# Every word of a table's column names and short cells (not the free-form
# text of paths and commands, which may break anywhere) that the layout split
# across lines: a table squeezed until "Phase" reads P-h-a-s-e.
BROKEN_WORDS = """() => [...document.querySelectorAll('th, td:not(.free)')]
    .filter(cell => !cell.closest('table.facts') || cell.tagName === 'TH')
    .flatMap(cell => [...cell.childNodes].filter(n => n.nodeType === Node.TEXT_NODE).flatMap(node => {
        const broken = [];
        for (const word of node.data.matchAll(/\\S+/g)) {
            const range = document.createRange();
            range.setStart(node, word.index);
            range.setEnd(node, word.index + word[0].length);
            const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
            if (lines.size > 1) broken.push(word[0]);
        }
        return broken;
    }))"""


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory):
    """A two-step plan (the second with a command and its output) rehearsed
    twice into one report file, so the page has a commands table, a command's
    last lines and the two trend charts; returns the file and the plan's version."""
    tmp = tmp_path_factory.mktemp("dr-report-browser")
    monkeypatch = pytest.MonkeyPatch()
    try:
        dr = DR(tmp, monkeypatch)
        dr.config("database", {"dump.bin": random.Random(11).randbytes(64 * KiB)})
        dr.config("files", {"docs/a.txt": b"alpha\n" * 40, "docs/b.txt": b"beta\n"})
        dr.plan(PLAN, ["database", {"config": "files", "after": [hook(PROBE)]}], rto="1h", rpo="1d")
        report = tmp / "out" / "report.html"
        report.parent.mkdir()
        for _ in range(2):  # the second rehearsal has the first in its trend
            done = dr.run("dr", "test", PLAN, "--report", str(report))
            assert done.returncode == 0, done.stderr.decode()
        shown = dr.run("dr", "show", PLAN, "--json")
        assert shown.returncode == 0, shown.stderr.decode()
        [version] = {json.loads(line).get("version") for line in shown.stdout.decode().splitlines()} - {None}
        yield report, version
    finally:
        monkeypatch.undo()


def open_report(open_page, report, phone: bool = False):
    """The report opened from its file; returns the page and every URL it requested."""
    bp = open_page(report.parent.as_uri() + "/", phone=phone)
    requested: list[str] = []
    bp.page.on("request", lambda request: requested.append(request.url))
    bp.goto(report.as_uri())
    bp.page.wait_for_load_state("networkidle")
    return bp, requested


def check_content_shown(page, version: str) -> None:
    """The verdict, the plan with its version hash and every step are on the page, visible."""
    expect(page.locator(".verdict")).to_have_text("Verdict: pass")
    expect(page.get_by_role("heading", level=1)).to_contain_text(PLAN)
    expect(page.get_by_role("row", name=f"Plan {PLAN} (version {version})")).to_be_visible()
    for number, name in enumerate(STEPS, 1):
        expect(page.get_by_role("heading", name=f"Step {number}: {name} (passed)")).to_be_visible()
        expect(page.locator("section", has=page.get_by_role("heading", name=f"RTO", exact=True))
               .get_by_role("row").filter(has_text=name).first).to_be_visible()
    commands = page.get_by_role("table").filter(has=page.get_by_role("columnheader", name="Exit code"))
    expect(commands.get_by_role("row").filter(has_text=PROBE[:20])).to_contain_text("essential")
    expect(page.locator("pre").filter(has_text="probe of files")).to_contain_text("healthy")
    expect(page.locator("svg[role=img]")).to_have_count(2)


@pytest.mark.parametrize("phone", [False, True])
def test_the_report_file_is_self_contained_readable_and_accessible(rehearsed, open_page, phone):
    report, version = rehearsed
    bp, requested = open_report(open_page, report, phone)
    assert requested == [report.as_uri()], f"the report fetched more than itself: {requested}"
    check_content_shown(bp.page, version)
    check_accessibility(bp)
    assert not bp.scrolls_sideways(), "the report scrolls sideways"
    assert bp.page.evaluate(OVERFLOWING) == []
    assert bp.page.evaluate(BROKEN_WORDS) == []
    bp.screenshot("dr-report-file")


def test_the_report_file_prints_with_nothing_cut_off(rehearsed, open_page):
    report, version = rehearsed
    bp, requested = open_report(open_page, report)
    bp.page.set_viewport_size({"width": PRINT_WIDTH, "height": 1000})
    bp.page.emulate_media(media="print")
    check_content_shown(bp.page, version)
    assert bp.page.evaluate(OVERFLOWING) == []
    assert bp.page.evaluate(BROKEN_WORDS) == []
    pdf = bp.page.pdf(format="A4", print_background=True,
                      margin={side: PRINT_MARGIN for side in ("top", "right", "bottom", "left")})
    (artifacts() / "dr-report-file.pdf").write_bytes(pdf)
    assert pdf.startswith(b"%PDF-") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page/") >= 1
    assert requested == [report.as_uri()], f"printing fetched more than the report: {requested}"
