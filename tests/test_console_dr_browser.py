"""DR plans in a real headless Chromium against a real `strongroom serve`:
rehearse a plan from its list, follow it to its verdict, read its report, and
every DR page (with runs, the trend chart, the report's frame) passes axe-core
without a JavaScript error, at desktop and phone width."""

from __future__ import annotations

import pytest

from browser import browser, check_accessibility, open_page  # noqa: F401  (fixtures)
from console_server import ConsoleServer, family_documents
from test_console_browser import sign_in

VERDICT_WAIT = 90_000  # ms a rehearsal of a few files may take on a loaded machine


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dr-browser")
    with ConsoleServer(tmp) as s:
        family_documents(s, tmp)
        s.ok("dr", "create", "Home DR", "--order", "family-documents", "--target-base", str(tmp / "restore"),
             "--rto", "1h")
        s.start()
        yield s


def rehearse_from_the_list(bp) -> None:
    bp.goto("/dr")
    bp.page.get_by_role("button", name="Test now Home DR").click()
    bp.page.wait_for_url("**/dr/Home%20DR?run=*")
    bp.page.get_by_text("Read the report of this run").wait_for(timeout=VERDICT_WAIT)


@pytest.mark.parametrize("phone", [False, True])
def test_a_rehearsal_from_the_page_to_its_report(server, open_page, phone):
    bp = open_page(server.url, phone=phone)
    assert sign_in(bp).status == 200
    rehearse_from_the_list(bp)
    assert bp.page.locator(".status.pass").first.inner_text() == "passed"
    rehearse_from_the_list(bp)  # a second test draws the trend
    for path, name in (("/dr", "dr-plans"), ("/dr/Home%20DR", "dr-plan")):
        bp.goto(path)
        check_accessibility(bp)
        if phone:
            assert not bp.scrolls_sideways(), f"{path} scrolls sideways at 360 px"
        bp.screenshot(name)
    assert bp.page.locator(".dr-charts svg").count() == 2
    bp.page.get_by_role("link", name="Report").first.click()
    bp.page.wait_for_url("**/dr/reports/*")
    frame = bp.page.frame_locator("iframe.report")
    assert "Verdict: pass" in frame.locator(".verdict").inner_text()
    check_accessibility(bp)
    if phone:
        assert not bp.scrolls_sideways(), "the report page scrolls sideways at 360 px"
    bp.screenshot("dr-report")
