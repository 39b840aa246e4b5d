"""Signing in to the web console of a real `strongroom serve`: the password,
sessions, CSRF, API tokens, the attempt limit and the Host check."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time

import httpx
import pytest

from console_server import PASSWORD, ConsoleServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One daemon for the tests that leave its password and attempt limit as they were."""
    with ConsoleServer(tmp_path_factory.mktemp("auth")) as s:
        s.start()
        yield s


@pytest.fixture
def fresh(tmp_path):
    with ConsoleServer(tmp_path) as s:
        s.start()
        yield s


def login_value(client: httpx.Client) -> str:
    return re.search(r'data-login-csrf="([^"]+)"', client.get("/login").text).group(1)


def test_sign_in_sets_a_strict_http_only_cookie_and_pages_need_it(server):
    anonymous = server.client()
    assert anonymous.get("/api/session").status_code == 401
    page = anonymous.get("/")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F"
    client = server.client()
    value = login_value(client)
    done = client.post("/api/session", json={"password": PASSWORD}, headers={"X-CSRF-Token": value})
    assert done.status_code == 200
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert client.get("/api/session").json() == {"kind": "session"}
    assert "default-src 'none'" in done.headers["content-security-policy"]
    assert done.headers["cache-control"] == "no-store"


def test_a_state_changing_request_needs_the_csrf_token(server):
    client = server.signed_in()
    assert client.delete("/api/session").status_code == 403
    assert client.delete("/api/session", headers={"X-CSRF-Token": "wrong"}).status_code == 403
    # A page elsewhere cannot pass itself off as the console.
    crossed = client.delete("/api/session", headers={**client.send_csrf(), "Origin": "http://evil.example"})
    assert crossed.status_code == 403
    assert client.delete("/api/session", headers=client.send_csrf()).status_code == 200
    assert client.get("/api/session").status_code == 401  # signed out


def test_the_sign_in_form_has_its_own_csrf_value(server):
    client = server.client()
    login_value(client)
    assert client.post("/api/session", json={"password": PASSWORD}).status_code == 403
    assert client.post("/api/session", json={"password": PASSWORD},
                       headers={"X-CSRF-Token": "forged"}).status_code == 403


def test_wrong_passwords_are_limited_per_address(fresh):
    server = fresh
    client = server.client()
    value = login_value(client)
    codes = [client.post("/api/session", json={"password": f"wrong-{i}-password"},
                         headers={"X-CSRF-Token": value}).status_code for i in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429
    refused = client.post("/api/session", json={"password": PASSWORD}, headers={"X-CSRF-Token": value})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0


def test_a_token_opens_the_api_until_it_is_revoked(server):
    token = server.token("backup script")
    assert token.startswith("srt_")
    api = server.client(headers={"Authorization": f"Bearer {token}"})
    assert api.get("/api/session").json() == {"kind": "token"}
    # A script's token is not an ambient credential: no CSRF token is asked for.
    assert api.delete("/api/session").status_code == 200
    listed = server.json("console", "tokens")[0]["tokens"]
    assert [t["name"] for t in listed] == ["backup script"] and listed[0]["last_used"] is not None
    with sqlite3.connect(server.tmp / "catalog.db") as db:
        stored = " ".join(str(v) for row in db.execute("SELECT * FROM console_tokens") for v in row)
        settings = " ".join(str(v) for row in db.execute("SELECT * FROM console_settings") for v in row)
    assert token not in stored and token[4:] not in stored
    assert PASSWORD not in settings and settings.split()[1].startswith("argon2id$")
    server.ok("console", "revoke", listed[0]["id"])
    assert api.get("/api/session").status_code == 401
    assert server.client(headers={"Authorization": "Bearer srt_not-a-token"}).get("/api/session").status_code == 401


def test_a_new_password_signs_every_browser_out(fresh):
    server = fresh
    client = server.signed_in()
    server.set_password("another-password-2")
    assert client.get("/api/session").status_code == 401
    server.signed_in("another-password-2")


def test_a_host_header_that_is_not_loopback_is_refused(server):
    refused = httpx.get(server.url + "/login", headers={"Host": "rebound.example:80"}, timeout=10)
    assert refused.status_code == 421
    assert httpx.get(server.url + "/login", headers={"Host": "localhost"}, timeout=10).status_code == 200


def test_a_first_start_prints_a_password_once(tmp_path):
    with ConsoleServer(tmp_path) as s:
        s.start(password=None)
        shown = [json.loads(line) for line in s.output()[0].splitlines()]
        password = next(d["console_password"] for d in shown if d["type"] == "serve_started")
        assert password not in s.output()[1]  # stdout only, never the log
        s.signed_in(password)
        s.stop()
        s.start(password=None)
        assert "console_password" not in s.output()[0]
        s.signed_in(password)


def test_the_password_line_follows_the_start_line(tmp_path):
    with ConsoleServer(tmp_path) as s:
        proc = s.popen("serve", "--listen", "127.0.0.1:0")
        try:
            for _ in range(1200):
                if "console password is" in s.output()[0]:
                    break
                time.sleep(0.05)
            lines = s.output()[0].splitlines()
            assert lines[0].startswith("strongroom serve: catalog") and "console password is" in lines[1]
            assert "password is" not in s.output()[1]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def test_serve_without_the_console_serves_the_endpoints_only(tmp_path):
    with ConsoleServer(tmp_path) as s:
        url = s.start("--no-console", password=None)
        assert httpx.get(url + "/healthz", timeout=10).status_code in (200, 503)
        assert httpx.get(url + "/login", timeout=10).status_code == 404
        assert "console_password" not in s.output()[0]


# ---- the pieces, in-process --------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stored_hash_with_absurd_parameters_matches_nothing():
    from strongroom.web.auth import hash_password, verify_password

    stored = hash_password("right password")
    assert verify_password("right password", stored) and not verify_password("wrong password", stored)
    kind, version, params, salt, digest = stored.split("$")
    for bad in (f"{kind}${version}$m=4194304,t=2,p=1${salt}${digest}",  # 4 GiB of memory
                f"{kind}${version}$m=65536,t=100000,p=1${salt}${digest}",
                f"argon2i${version}${params}${salt}${digest}", f"{kind}${version}${params}${salt}$!!",
                "", "argon2id", stored + "$extra"):
        assert not verify_password("right password", bad)
    assert not verify_password("x" * 5000, stored)


def test_sessions_end_when_idle_when_old_and_when_the_password_changes():
    from strongroom.web.auth import Sessions

    clock = Clock()
    sessions = Sessions(clock=clock, idle=100, lifetime=1000, limit=3)
    one = sessions.create("stamp-1")
    clock.now += 99
    assert sessions.get(one.id, "stamp-1") is one
    clock.now += 101
    assert sessions.get(one.id, "stamp-1") is None  # idle too long
    two = sessions.create("stamp-1")
    for _ in range(11):
        clock.now += 90
        assert sessions.get(two.id, "stamp-1") is two
    clock.now += 90
    assert sessions.get(two.id, "stamp-1") is None  # older than its lifetime however busy
    three = sessions.create("stamp-1")
    assert sessions.get(three.id, "stamp-2") is None  # begun under another password
    many = [sessions.create("s") for _ in range(5)]
    assert sum(sessions.get(s.id, "s") is not None for s in many) == 3  # bounded: the oldest went


def test_the_attempt_limit_is_per_address_overall_and_bounded():
    from strongroom.web.auth import SignInLimiter

    clock = Clock()
    limiter = SignInLimiter(clock=clock, window=60, per_client=2, overall=5, clients=3)
    for _ in range(2):
        assert limiter.wait_for("a") == 0
        limiter.failed("a")
    assert limiter.wait_for("a") > 0 and limiter.wait_for("b") == 0
    clock.now += 61
    assert limiter.wait_for("a") == 0  # the failures fell out of the window
    for client in "cdef":
        limiter.wait_for(client)
    assert limiter.wait_for("g") > 0  # every address together: 5 a minute
    for client in "hijklm":
        limiter.failed(client)
    assert len(limiter._failures) <= 3


def test_a_password_given_to_serve_is_set_at_start_and_not_inherited(tmp_path):
    with ConsoleServer(tmp_path) as s:
        script = tmp_path / "env.py"
        script.write_text("import os, sys\nsys.stdout.write(os.environ.get('STRONGROOM_CONSOLE_PASSWORD', 'absent'))\n")
        s.ok("config", "add", "envcheck", "--source-command", f"{__import__('sys').executable} {script}",
             "--stdin-filename", "env.txt", "--target-dir", str(tmp_path / "repo"), "--no-encrypt")
        s.env["STRONGROOM_CONSOLE_PASSWORD"] = "given-to-the-daemon"
        try:
            s.start(password=None)
        finally:
            del s.env["STRONGROOM_CONSOLE_PASSWORD"]
        assert "console_password" not in s.output()[0]  # nothing made up, nothing shown
        client = s.signed_in("given-to-the-daemon")
        job = client.post_json("/api/configs/envcheck/run", {"kind": "full"}).json()["job"]
        deadline = time.monotonic() + 60
        while client.get(f"/api/jobs/{job}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        s.stop()
        restored = tmp_path / "out"
        s.ok("restore", "--config", "envcheck", "latest", "--target", str(restored))
        assert (restored / "env.txt").read_text() == "absent"
