"""The console's browser tests' harness: Debian's Chromium driven by
Playwright's sync API, never a browser Playwright downloads.

- `browser`: one headless Chromium per test module (`/usr/bin/chromium`,
  launched with `CHROMIUM_FLAGS`).
- `open_page`: `open_page(base_url, phone=False)` opens a new context (1280x800,
  or 360x740 at phone width) and returns a `BrowserPage`. Each one records
  every console message of type error, every uncaught exception
  (`pageerror`), every failed request and every answer of 400 or more that
  the test did not announce with `expect(status, path)`; at the end of the
  test, anything recorded fails it.
- `BrowserPage.screenshot(name)`: a full-page PNG in `artifacts()`.
- `check_accessibility(page)`: axe-core (shipped inside axe-playwright-python,
  so nothing is fetched) fails on any violation of impact serious or critical.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium (scripts/test.sh installs it)
CHROMIUM_FLAGS = (
    "--no-sandbox",  # the suite runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # a container's /dev/shm is often too small for a renderer
    # Without these Chromium reaches for update, sync and field-trial hosts,
    # which a closed network refuses (and which would log failed requests).
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
)
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
SEVERE = ("serious", "critical")
# A request the page itself gives up when it navigates away (an open
# /api/events stream, say) is aborted by the browser: not a failure.
ABORTED = "net::ERR_ABORTED"
RESOURCE_ERROR = re.compile(r"^Failed to load resource: the server responded with a status of (\d+)")


def artifacts() -> Path:
    """Where screenshots go: $STRONGROOM_TEST_ARTIFACTS, else test-artifacts/console/
    in the repository (scripts/test.sh empties it at the start of each run)."""
    chosen = os.environ.get("STRONGROOM_TEST_ARTIFACTS")
    folder = Path(chosen) if chosen else Path(__file__).resolve().parents[1] / "test-artifacts" / "console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class BrowserPage:
    """One browser context and its page, with what went wrong on it."""

    context: object
    page: object
    label: str  # "desktop" or "phone", part of each screenshot's name
    problems: list[str] = field(default_factory=list)
    expected: set[tuple[int, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"uncaught exception: {error}"))
        self.page.on("requestfailed", self._request_failed)
        self.page.on("response", self._response)

    def expect(self, status: int, path: str) -> None:
        """Announce that `path` may answer `status` (>= 400) in this test."""
        self.expected.add((status, path))

    def _is_expected(self, status: int, url: str) -> bool:
        return (status, urlsplit(url).path) in self.expected

    def _console(self, message) -> None:
        if message.type != "error":
            return
        # The browser logs every answer >= 400 as an error too: those the test
        # announced are not problems, the others are recorded by _response.
        if RESOURCE_ERROR.match(message.text):
            return
        where = message.location.get("url", "") if message.location else ""
        self.problems.append(f"console error: {message.text} ({where})")

    def _request_failed(self, request) -> None:
        failure = request.failure or ""
        if ABORTED in failure:
            return
        self.problems.append(f"request failed: {request.method} {request.url}: {failure}")

    def _response(self, response) -> None:
        if response.status >= 400 and not self._is_expected(response.status, response.url):
            self.problems.append(f"answer {response.status}: {response.request.method} {response.url}")

    def goto(self, path: str):
        """Open `path` (relative to the context's base URL) until its load event;
        returns the answer to the navigation. (Not "networkidle": a page that
        follows /api/events keeps a request open for as long as it is shown.)"""
        return self.page.goto(path, wait_until="load")

    def screenshot(self, name: str) -> Path:
        target = artifacts() / f"{name}-{self.label}.png"
        self.page.screenshot(path=str(target), full_page=True)
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{target} is not a PNG"
        return target

    def scrolls_sideways(self) -> bool:
        return bool(self.page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1"))

    def close(self) -> None:
        self.context.close()


def check_accessibility(page) -> None:
    """axe-core over the page as it is now: no violation of impact serious or critical."""
    from axe_playwright_python.sync_playwright import Axe

    target = page.page if isinstance(page, BrowserPage) else page
    results = Axe().run(target)
    severe = [v for v in results.response["violations"] if v.get("impact") in SEVERE]
    lines = [f"{v['id']} ({v['impact']}): {v.get('help', '')}; nodes: "
             + ", ".join(" ".join(map(str, n.get("target", ()))) for n in v.get("nodes", ()))
             for v in severe]
    assert not severe, f"accessibility violations on {target.url}:\n" + "\n".join(lines)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_FLAGS))
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser):
    """open_page(base_url, phone=False) -> BrowserPage; fails the test at its end
    on any JavaScript error, failed request or unexpected answer >= 400."""
    opened: list[BrowserPage] = []

    def open_one(base_url: str, phone: bool = False) -> BrowserPage:
        context = browser.new_context(base_url=base_url, viewport=PHONE if phone else DESKTOP)
        made = BrowserPage(context, context.new_page(), "phone" if phone else "desktop")
        opened.append(made)
        return made

    yield open_one
    problems = [p for made in opened for p in made.problems]
    for made in opened:
        made.close()
    assert not problems, "the browser saw errors:\n" + "\n".join(problems)
