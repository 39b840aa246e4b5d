"""The console end to end, in Debian's Chromium against a real `strongroom serve`:
sign in, create a configuration through its form, run it and watch the
progress reach 100 %, browse the snapshot, download a file and compare its
bytes, restore a folder and compare it, make a DR plan, rehearse it and
open its report, and see a failing configuration in red. Every page on the way is
screenshotted (tests/browser.py `artifacts()`), passes axe-core and logs no
JavaScript error; no page holds the repository password."""

from __future__ import annotations

import filecmp
import os
import re
import time
from pathlib import Path

import pytest

from browser import browser, check_accessibility, open_page  # noqa: F401 (fixtures)
from console_server import PASSWORD, ConsoleServer

REPO_PASSWORD = "e2e-repository-password-31337"
TIMEOUT = 90_000  # ms: a run on a loaded machine


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    with ConsoleServer(tmp) as s:
        s.start()
        yield s


def make_source(root: Path) -> Path:
    source = root / "home"
    (source / "docs" / "deep").mkdir(parents=True)
    (source / "docs" / "letter.txt").write_text("Dear reader,\n" * 200)
    (source / "docs" / "deep" / "notes.md").write_text("# notes\n" + "line\n" * 1000)
    (source / "docs" / "deep" / "quote's \"name\" é.txt").write_text("odd name\n")
    (source / "photo.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    return source


def visit(bp, name: str) -> None:
    """What every page on the way must pass: axe, no sideways scroll at phone
    width is the every-page test's, and a screenshot kept as an artifact."""
    check_accessibility(bp)
    bp.screenshot(f"e2e-{name}")
    assert REPO_PASSWORD not in bp.page.content()


def sign_in(bp) -> None:
    bp.goto("/login")
    bp.page.get_by_label("Console password").fill(PASSWORD)
    bp.page.get_by_role("button", name="Sign in").click()
    bp.page.wait_for_url(lambda url: not url.endswith("/login") and "/login?" not in url, wait_until="load")


def test_a_configuration_from_its_form_to_a_restored_folder(server, open_page, tmp_path):  # noqa: F811
    source = make_source(tmp_path)
    bp = open_page(server.url)
    page = bp.page
    page.set_default_timeout(TIMEOUT)
    sign_in(bp)
    visit(bp, "dashboard-empty")

    # Create a configuration through the form.
    bp.goto("/configs/new")
    page.get_by_label("Name", exact=True).fill("e2e")
    page.get_by_label("What to back up", exact=True).fill(str(source))
    page.get_by_label("Folder", exact=True).fill(str(tmp_path / "repo"))
    page.get_by_label("Repository password", exact=True).fill(REPO_PASSWORD)
    page.get_by_label("Keep the last", exact=True).fill("5")
    visit(bp, "config-new")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(re.compile(r"/configs/e2e$"))
    visit(bp, "config")

    # Run it and watch its live box reach 100 %.
    page.get_by_role("button", name="Run incremental now").click()
    box = page.locator("[data-live-job]")
    box.wait_for()
    job = box.get_attribute("data-live-job")
    bp.goto(f"/jobs/{job}")
    live = page.locator(f"[data-live-job='{job}']")
    live.locator("[data-field=status]").first.filter(has_text="succeeded").wait_for()
    assert live.locator("[data-field=percent]").first.inner_text().strip() == "100 %"
    bp.goto(f"/jobs/{job}")  # the page reloads itself at the job's end: let that be done
    assert page.locator("progress").first.evaluate("p => p.value") == 1
    visit(bp, "job")

    # The snapshot: its list, its tree, a file downloaded and compared.
    bp.goto("/points?config=e2e")
    visit(bp, "points")
    page.locator("table a[href^='/points/']").first.click()
    page.wait_for_url(re.compile(r"/points/[0-9a-f]{8,}"))
    # Walk down the saved absolute path to the source folder.
    for part in source.parts[1:]:
        page.get_by_role("link", name=f"{part}/", exact=True).click()
        page.wait_for_load_state("load")
    visit(bp, "point-tree")
    tree = page.url
    with page.expect_download() as download:
        page.get_by_role("link", name="Download photo.bin", exact=True).click()
    fetched = tmp_path / "downloaded.bin"
    download.value.save_as(fetched)
    assert fetched.read_bytes() == (source / "photo.bin").read_bytes()

    # Restore the folder docs (its subfolders too) and compare it.
    target = tmp_path / "restored"
    page.get_by_label("Select docs").check()
    page.get_by_label("Target folder", exact=True).fill(str(target))
    page.get_by_role("button", name="Restore").click()
    progress = page.locator(".restore-progress")
    progress.locator("[data-field=status]").filter(has_text="done").wait_for()
    shown = progress.locator("[data-field=percent]").first.inner_text().strip()
    assert shown == "100 %", (shown, page.url, progress.inner_text())
    visit(bp, "point-restored")
    restored = target / str(source / "docs").lstrip("/")
    compared = filecmp.dircmp(source / "docs", restored)
    assert not compared.left_only and not compared.right_only and not compared.diff_files
    assert (restored / "deep" / "notes.md").read_bytes() == (source / "docs" / "deep" / "notes.md").read_bytes()
    assert not (target / str(source / "photo.bin").lstrip("/")).exists()  # only what was selected

    # A DR plan made in its form, rehearsed from its page, and its report.
    bp.goto("/dr")
    page.get_by_label("Name", exact=True).fill("e2e-plan")
    page.get_by_label("Configurations to restore, in order (one a line)").fill("e2e")
    page.get_by_label("Target base", exact=False).fill(str(tmp_path / "dr-target"))
    page.get_by_label("RTO target (e.g. 30m)").fill("1h")
    page.get_by_role("button", name="Create plan", exact=True).click()
    page.wait_for_url(re.compile(r"/dr/e2e-plan$"))
    bp.goto("/dr")
    page.get_by_role("button", name="Test now e2e-plan").click()
    page.wait_for_url(re.compile(r"/dr/e2e-plan\?run="))
    page.get_by_text("Read the report of this run").wait_for()
    visit(bp, "dr-plan-tested")
    page.get_by_text("Read the report of this run").click()
    page.wait_for_url(re.compile(r"/dr/reports/"))
    assert "Verdict: pass" in page.frame_locator("iframe.report").locator(".verdict").inner_text()
    visit(bp, "dr-report")
    assert not (tmp_path / "dr-target").exists()  # a rehearsal never writes to the real targets
    report = page.url

    # The same pages at phone width: nothing scrolls sideways.
    phone = open_page(server.url, phone=True)
    phone.page.set_default_timeout(TIMEOUT)
    sign_in(phone)
    for name, path in (("config", "/configs/e2e"), ("job", f"/jobs/{job}"), ("point-tree", tree),
                       ("dr-plan", "/dr/e2e-plan"), ("dr-report", report)):
        phone.goto(path)
        assert not phone.scrolls_sideways(), f"{path} scrolls sideways at phone width"
        visit(phone, name)


def test_a_failing_configuration_is_red_on_the_dashboard(server, open_page, tmp_path):  # noqa: F811
    gone = tmp_path / "gone"
    gone.mkdir()
    server.ok("config", "add", "broken", "--source", str(gone), "--target-dir", str(tmp_path / "r"),
              "--no-encrypt", "--max-attempts", "1")
    gone.rmdir()  # the disk it was on is gone
    client = server.signed_in()
    job = client.post_json("/api/configs/broken/run", {"kind": "incremental"}).json()["job"]
    deadline = time.monotonic() + TIMEOUT / 1000
    while client.get(f"/api/jobs/{job}").json()["status"] not in ("failed", "succeeded"):
        assert time.monotonic() < deadline, "the failing run did not end"
        time.sleep(0.1)
    bp = open_page(server.url)
    sign_in(bp)
    card = bp.page.locator("section.config-card", has=bp.page.get_by_role("heading", name="broken"))
    badge = card.locator(".status")
    assert badge.get_attribute("class").split() == ["status", "red"] and badge.inner_text() == "red"
    assert card.locator(".reason").inner_text().strip()  # and why, in words
    visit(bp, "dashboard-red")


RUNNING = ('{"status": "running", "progress": {"percent_done": 0, "files_done": 0, "total_files": 1, '
           '"bytes_done": 0, "total_bytes": 2000}}')


def test_a_poll_answer_that_comes_after_the_end_does_not_undo_it(server, open_page, tmp_path):  # noqa: F811
    """The restore box is told of the end twice: by /api/events and by its own
    poll of /api/restores/ID. A poll answer sent while the restore still ran
    but delivered after the events showed it done is stale: the box keeps
    saying done and 100 %, and a second restore from the same page is followed
    again from its start."""
    source = tmp_path / "late"
    source.mkdir()
    (source / "a.txt").write_text("a\n" * 1000)
    # Large enough that the restore outlasts the answer that starts it, so its
    # end reaches the page by /api/events while the first poll is held.
    (source / "big.bin").write_bytes(os.urandom(96 * 1024 * 1024))
    server.ok("config", "add", "late", "--source", str(source), "--target-dir", str(tmp_path / "repo"),
              "--no-encrypt")
    server.ok("backup", "--config", "late")
    client = server.signed_in()
    point = client.get("/api/points", params={"config": "late"}).json()["points"][0]["id"]

    bp = open_page(server.url)
    sign_in(bp)
    page = bp.page
    held, polled = [], []

    def hold_the_first_poll(route):
        """The first session's first poll is held; the second session's first
        poll answers what a poll sent while it ran would; every other goes to
        the server."""
        url = route.request.url
        if route.request.method != "GET" or url in polled:
            route.continue_()
        elif not polled:
            polled.append(url)
            held.append(route)
        else:
            polled.append(url)
            route.fulfill(status=200, content_type="application/json", body=RUNNING)

    page.route(re.compile(r".*/api/restores/[^/]+$"), hold_the_first_poll)
    bp.goto(f"/points/{point}")
    page.get_by_label("Target folder", exact=True).fill(str(tmp_path / "out"))
    page.get_by_role("button", name="Restore").click()
    progress = page.locator(".restore-progress")
    status = progress.locator("[data-field=status]")
    status.filter(has_text="done").wait_for()  # from /api/events: the poll is still held
    assert held, "the page did not poll its session"
    watch = """() => {
        window.shown = [];
        const field = document.querySelector('.restore-progress [data-field=status]');
        new MutationObserver(() => window.shown.push(field.textContent)).observe(field, {childList: true});
    }"""
    page.evaluate(watch)
    held[0].fulfill(status=200, content_type="application/json", body=RUNNING)
    page.wait_for_timeout(1500)  # the stale answer handled, and a poll after it would have come
    assert status.first.inner_text().strip() == "done"
    assert progress.locator("[data-field=percent]").first.inner_text().strip() == "100 %"
    assert progress.locator("[data-cancel-restore]").is_hidden()
    assert "running" not in page.evaluate("window.shown")  # not even for a moment

    # A second restore from the same page is followed from its start: its
    # events are shown, not skipped as if the first one's end still held.
    page.evaluate(watch)
    page.get_by_label("Target folder", exact=True).fill(str(tmp_path / "out2"))
    page.get_by_role("button", name="Restore").click()
    page.wait_for_function("() => window.shown.includes('done')")
    shown = page.evaluate("window.shown")
    assert "running" in shown and shown.index("running") < shown.index("done"), shown
    assert progress.locator("[data-field=percent]").first.inner_text().strip() == "100 %"
    assert (tmp_path / "out2" / str(source / "a.txt").lstrip("/")).read_text() == "a\n" * 1000
