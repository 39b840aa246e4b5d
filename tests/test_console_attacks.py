"""The web console attacked as an adversary would, with real requests against
one real `strongroom serve`: a spoofed client address at sign-in, session
fixation, old sessions, oversized and malformed bodies, markup in names a
page shows (configuration names, file names inside a snapshot, error
text), open redirects, download headers, restore targets that point into
the catalog's own folder, and odd methods and CORS."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from console_server import PASSWORD, ConsoleServer

HOSTILE_NAMES = ('<img src=x onerror=alert(1)>', '"><script>alert(2)', "javascript:alert(3)",
                 "new\nline<b>", "rtl\u202etxt.exe", "semi;colon\"quote'.html")
HTML_FILE = "page.html"
HTML_BODY = "<html><script>alert('owned')</script></html>"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attacks")
    source = tmp / "source"
    source.mkdir()
    for name in HOSTILE_NAMES:
        (source / name).write_text("hostile name\n")
    (source / '<a href="x">dir').mkdir()
    (source / HTML_FILE).write_text(HTML_BODY)
    with ConsoleServer(tmp) as s:
        s.ok("config", "add", "docs", "--source", str(source), "--target-dir", str(tmp / "repo"))
        s.ok("backup", "--config", "docs")
        s.start()
        s.source = source
        yield s


@pytest.fixture(scope="module")
def client(served):
    return served.signed_in()


def secret(served) -> str:
    return next(iter(json.loads((served.tmp / "secrets.json").read_text())["secrets"].values()))


def login_value(client: httpx.Client) -> str:
    return re.search(r'data-login-csrf="([^"]+)"', client.get("/login").text).group(1)


def point_id(client) -> str:
    return client.get("/api/points", params={"config": "docs"}).json()["points"][0]["id"]


# ---- sign-in -----------------------------------------------------------------------------

def test_a_forwarded_https_scheme_is_not_believed(served):
    answer = served.client().get("/login", headers={"X-Forwarded-Proto": "https"})
    assert answer.status_code == 200
    # The cookie follows the real scheme: a plain-HTTP console does not pretend to be https.
    assert "secure" not in answer.headers["set-cookie"].lower()


def test_a_session_id_set_by_an_attacker_is_not_adopted(served):
    browser = served.client()
    browser.cookies.set("sr_session", "attacker-chosen-id")
    value = login_value(browser)
    answer = browser.post("/api/session", json={"password": PASSWORD}, headers={"X-CSRF-Token": value})
    assert answer.status_code == 200, answer.text
    given = re.search(r"sr_session=([^;]+)", answer.headers["set-cookie"]).group(1)
    assert given != "attacker-chosen-id" and len(given) >= 40
    attacker = served.client()
    attacker.cookies.set("sr_session", "attacker-chosen-id")
    assert attacker.get("/api/session").status_code == 401


def test_a_signed_out_session_is_over_on_the_server(served):
    browser = served.signed_in()
    kept = browser.cookies.get("sr_session")
    assert browser.request("DELETE", "/api/session", headers=browser.send_csrf()).status_code == 200
    replay = served.client()
    replay.cookies.set("sr_session", kept)
    assert replay.get("/api/session").status_code == 401


def test_the_sign_in_form_value_is_spent_by_a_sign_in(served):
    browser = served.client()
    value = login_value(browser)
    assert browser.post("/api/session", json={"password": PASSWORD},
                        headers={"X-CSRF-Token": value}).status_code == 200
    again = served.client()
    again.cookies.set("sr_login", value)
    answer = again.post("/api/session", json={"password": PASSWORD}, headers={"X-CSRF-Token": value})
    assert answer.status_code == 403, answer.text


# ---- kept for last: it fills 127.0.0.1's sign-in limit for a minute ------------------------

def test_a_spoofed_forwarded_address_does_not_reset_the_sign_in_limit(served):
    """uvicorn believes X-Forwarded-For from 127.0.0.1 unless told not to: a local
    guesser could then name a new address with every attempt."""
    fresh = served.client()
    value = login_value(fresh)
    codes = []
    for n in range(7):
        answer = fresh.post("/api/session", json={"password": f"wrong-{n}"},
                            headers={"X-CSRF-Token": value, "X-Forwarded-For": f"10.0.0.{n}",
                                     "X-Real-IP": f"10.0.1.{n}", "Forwarded": f"for=10.0.2.{n}"})
        codes.append(answer.status_code)
    assert codes[:5] == [401] * 5 and 429 in codes[5:], codes
    # The limit is per address; the right password from the same (real) address waits too.
    answer = fresh.post("/api/session", json={"password": PASSWORD}, headers={"X-CSRF-Token": value})
    assert answer.status_code == 429 and "retry-after" in answer.headers


