"""The web console in a real headless Chromium (Debian's, driven by
Playwright) against a real `strongroom serve` on loopback: signing in and
out, the session cookie as the browser keeps it, and every page of the app
at desktop and phone width, with axe-core and no JavaScript error.

Screenshots go to tests/browser.py's artifacts() folder."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from browser import browser, check_accessibility, open_page  # noqa: F401  (fixtures)
from console_routes import page_paths, route_table
from console_server import PASSWORD, ConsoleServer, family_documents
from strongroom.web.guard import SESSION_COOKIE


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A served console over one configuration with one recovery point, so the
    pages have rows to show."""
    tmp = tmp_path_factory.mktemp("served")
    with ConsoleServer(tmp) as s:
        family_documents(s, tmp)
        s.start()
        yield s


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> list[str]:
    return page_paths(route_table(tmp_path_factory.mktemp("routes")))


def sign_in(bp, password: str = PASSWORD):
    """Sign in through the form; returns the answer of POST /api/session."""
    bp.goto("/login")
    bp.page.get_by_label("Console password").fill(password)
    with bp.page.expect_response(lambda r: r.url.endswith("/api/session") and r.request.method == "POST") as done:
        bp.page.get_by_role("button", name="Sign in").click()
    if done.value.ok:  # the page moves on by itself: let it arrive before going elsewhere
        bp.page.wait_for_url(lambda url: urlsplit(url).path != "/login", wait_until="load")
    return done.value


def screenshot_name(path: str) -> str:
    return "page" + (path.rstrip("/").replace("/", "-") or "-dashboard")


def test_the_sign_in_page_passes_axe_at_desktop_and_phone_width(server, open_page):
    for phone in (False, True):
        bp = open_page(server.url, phone=phone)
        answer = bp.goto("/login")
        assert answer.status == 200
        expect(bp.page.get_by_label("Console password")).to_be_visible()
        check_accessibility(bp)
        assert not bp.scrolls_sideways()
        bp.screenshot("sign-in")


def test_a_wrong_password_is_shown_in_the_page(server, open_page):
    bp = open_page(server.url)
    bp.expect(401, "/api/session")
    answer = sign_in(bp, "not-the-console-password")
    assert answer.status == 401
    alert = bp.page.get_by_role("alert")
    expect(alert).to_have_text("wrong password")
    assert bp.page.url.startswith(server.url + "/login")
    assert not [c for c in bp.context.cookies() if c["name"] == SESSION_COOKIE]
    check_accessibility(bp)  # with the error shown
    bp.screenshot("sign-in-wrong-password")


def test_signing_in_keeps_the_session_out_of_reach_of_scripts_and_signing_out_ends_it(server, open_page):
    bp = open_page(server.url)
    bp.expect(404, "/")  # until there is a dashboard
    signed = {}

    def keep_the_answer(route):  # the page moves on at once, and its body with it
        answer = route.fetch()
        if route.request.method == "POST" and answer.ok:
            signed.update(answer.json())
        route.fulfill(response=answer)

    bp.page.route("**/api/session", keep_the_answer)
    assert sign_in(bp).status == 200
    bp.page.unroute("**/api/session")
    csrf = signed["csrf"]
    bp.page.wait_for_url(server.url + "/")
    [cookie] = [c for c in bp.context.cookies() if c["name"] == SESSION_COOKIE]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    seen_by_scripts = bp.page.evaluate("document.cookie")
    assert SESSION_COOKIE not in seen_by_scripts and cookie["value"] not in seen_by_scripts
    assert PASSWORD not in bp.page.content()

    sign_out = bp.page.locator("button[data-sign-out]")
    if sign_out.count():
        sign_out.first.click()
        bp.page.wait_for_url(server.url + "/login")
    else:  # a page without the menu: the same request the menu's button sends
        done = bp.context.request.delete(server.url + "/api/session", headers={"X-CSRF-Token": csrf})
        assert done.status == 200
    assert not [c for c in bp.context.cookies() if c["name"] == SESSION_COOKIE]
    bp.goto("/")
    assert bp.page.url == server.url + "/login?next=%2F"
    refused = bp.context.request.get(server.url + "/api/session", headers={"Cookie": f"{SESSION_COOKIE}={cookie['value']}"})
    assert refused.status == 401  # the old cookie is dead on the server too, not only forgotten


def test_every_page_loads_without_errors_passes_axe_and_fits_a_phone(server, pages, open_page):
    assert "/login" in pages
    print("pages visited:", " ".join(pages))
    for phone in (False, True):
        bp = open_page(server.url, phone=phone)
        bp.expect(404, "/")  # where sign-in lands, until there is a dashboard
        assert sign_in(bp).status == 200
        for path in pages:
            answer = bp.goto(path)
            assert answer is not None and answer.status < 400, f"{path}: {answer and answer.status}"
            check_accessibility(bp)
            if phone:
                assert not bp.scrolls_sideways(), f"{path} scrolls sideways at 360 px"
            bp.screenshot(screenshot_name(path))


def test_the_harness_sees_what_it_must_fail_on(server, open_page):
    """A test that cannot fail is not a test: the recorder catches an uncaught
    exception, an error logged to the console, an inline script the CSP
    refuses and an unexpected 404 (and is emptied afterwards)."""
    bp = open_page(server.url)
    bp.goto("/login")
    bp.page.evaluate("setTimeout(() => { throw new Error('thrown on purpose') }, 0)")
    bp.page.evaluate("console.error('logged on purpose')")
    bp.page.evaluate("""() => { const s = document.createElement('script'); s.textContent = '1';
                                document.body.appendChild(s); }""")
    bp.page.evaluate("fetch('/static/not-there.js')")
    expect(bp.page.get_by_label("Console password")).to_be_visible()
    for _ in range(50):
        if len(bp.problems) >= 4:
            break
        bp.page.wait_for_timeout(100)
    seen = "\n".join(bp.problems)
    assert "thrown on purpose" in seen and "logged on purpose" in seen
    assert "Content Security Policy" in seen and "answer 404" in seen and "not-there.js" in seen
    bp.problems.clear()
