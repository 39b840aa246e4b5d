"""The web console attacked as an adversary would, with real requests against
one real `strongroom serve`: a spoofed client address at sign-in, session
fixation, old sessions, oversized and malformed bodies, markup in names a
page shows (configuration names, file names inside a snapshot, error
text), open redirects, download headers, restore targets that point into
the catalog's own folder, and odd methods and CORS."""

from __future__ import annotations

import json
import os
import re

import httpx
import pytest

from console_server import PASSWORD, ConsoleServer

HOSTILE_NAMES = ('<img src=x onerror=alert(1)>', '"><script>alert(2)', "javascript:alert(3)",
                 "new\nline<b>", "rtl\u202etxt.exe", "semi;colon\"quote'.html")
HTML_FILE = "page.html"
FILE_PASSWORD = "kept-in-a-file-Zq81x"
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
        (tmp / "pw").write_text(FILE_PASSWORD + "\n")
        s.ok("config", "add", "byfile", "--source", str(source), "--target-dir", str(tmp / "repo-f"),
             "--password-file", str(tmp / "pw"))
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


# ---- bodies -------------------------------------------------------------------------------

def test_a_huge_body_is_refused_before_it_is_read(served, client):
    big = b'{"name": "' + b"x" * (100 << 20) + b'"}'
    answer = client.post("/api/configs", content=big,
                         headers={**client.send_csrf(), "content-type": "application/json"})
    assert answer.status_code == 413 and "larger than" in answer.json()["error"]
    # Without a caller, the body is not even looked at.
    stranger = served.client().post("/api/configs", content=b"x" * (2 << 20),
                                    headers={"content-type": "application/json"})
    assert stranger.status_code == 401


def test_a_huge_chunked_body_is_cut_at_the_limit(client):
    def chunks():
        for _ in range(40):
            yield b"x" * (64 << 10)
    answer = client.post("/api/configs", content=chunks(),
                         headers={**client.send_csrf(), "content-type": "application/json"})
    assert answer.status_code == 413


@pytest.mark.parametrize("body", [
    b"[" * 200_000 + b"]" * 200_000,
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    json.dumps({f"f{n}": n for n in range(50_000)}).encode(),
    json.dumps({"name": "n" * 500_000, "sources": ["s" * 200_000]}).encode(),
    b'{"name": "\\ud800"}',
    b"\xff\xfe not json",
], ids=["deep-list", "deep-object", "many-fields", "long-strings", "lone-surrogate", "not-json"])
def test_a_malformed_body_is_a_clean_client_error(client, body):
    for route in ("/api/configs", "/api/points/0000/restore", "/api/dr/plans"):
        answer = client.post(route, content=body, headers={**client.send_csrf(), "content-type": "application/json"})
        assert 400 <= answer.status_code < 500, (route, answer.status_code, answer.text[:300])
        assert "Traceback" not in answer.text


# ---- markup in what pages show ------------------------------------------------------------

def markup_free(text: str) -> None:
    for name in HOSTILE_NAMES:
        for line in name.splitlines():
            if "<" in line:
                assert line not in text, line
    assert "<script>alert" not in text and "<img src=x" not in text and '<a href="x">' not in text


def test_names_inside_a_snapshot_never_become_markup(served, client):
    point = point_id(client)
    folder = str(served.source).lstrip("/")
    page = client.get(f"/points/{point}", params={"path": folder})
    assert page.status_code == 200, page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    markup_free(page.text)
    assert 'href="javascript:' not in page.text
    tree = client.get(f"/api/points/{point}/tree", params={"path": folder})
    assert tree.headers["content-type"].startswith("application/json")


def test_a_query_string_is_never_echoed_as_markup(served, client):
    point = point_id(client)
    evil = '"><img src=x onerror=alert(9)><base href="//evil.example/">'
    for url, params in ((f"/points/{point}", {"path": evil}), ("/points", {"config": evil}),
                        ("/jobs", {"config": evil, "status": evil}), ("/login", {"next": evil}),
                        ("/configs/" + evil, {}), ("/dr/" + evil, {}), ("/points/diff", {"a": evil, "b": evil})):
        answer = client.get(url, params=params)
        assert answer.status_code < 500, (url, answer.status_code)
        if not answer.headers["content-type"].startswith("text/html"):
            assert answer.headers["content-type"].startswith("application/json"), url
            assert answer.headers["x-content-type-options"] == "nosniff"
            continue
        assert "<img src=x" not in answer.text and '<base href="//evil' not in answer.text, url


def test_a_configuration_name_with_markup_is_refused_or_escaped(served, client):
    name = '<b onmouseover=x>"q\'s'
    answer = client.post_json("/api/configs", {"name": name, "source_paths": [str(served.source)],
                                               "target_path": str(served.tmp / "repo2")})
    assert answer.status_code in (200, 201, 400, 422), answer.text
    for url in ("/", "/configs", "/points", "/jobs", "/dr", "/notify"):
        assert "<b onmouseover" not in client.get(url).text, url


def test_an_error_printed_by_a_source_command_is_shown_as_text(served, client):
    answer = client.get("/api/points/not-a-point/tree", params={"path": "<script>x"})
    assert answer.status_code in (400, 404) and answer.headers["content-type"].startswith("application/json")
    page = client.get("/points/<script>alert(1)")
    assert "<script>alert" not in page.text


def wait_for(probe, seconds: float = 60.0):
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("it did not happen in time")


def test_a_job_error_with_markup_is_shown_as_text(served, client):
    lost = served.tmp / '<img src=x onerror=alert(5)>"><form action=evil>'
    lost.mkdir()
    made = client.post_json("/api/configs", {"name": "broken", "source_paths": [str(lost)],
                                             "target_path": str(served.tmp / "repo-broken"), "max_attempts": 1})
    assert made.status_code == 201, made.text
    lost.rmdir()  # the run fails, naming the path
    queued = client.post_json("/api/configs/broken/run")
    assert queued.status_code == 202, queued.text
    job = queued.json()["job"]
    done = wait_for(lambda: (d := client.get(f"/api/jobs/{job}").json())["status"] in ("failed", "error") and d)
    assert "onerror" in done["error"], done
    for url in (f"/jobs/{job}", "/jobs", "/", "/configs/broken"):
        page = client.get(url)
        assert page.status_code == 200, url
        assert "<img src=x" not in page.text and "<form action=evil" not in page.text, url


def test_a_dr_plan_and_its_report_never_turn_names_into_markup(served, client):
    name = 'drill <svg onload=alert(7)> "q\''
    made = client.post_json("/api/dr/plans", {"name": name, "order": ["docs"], "target_base": str(served.tmp / "dr")})
    assert made.status_code in (200, 201), made.text
    from urllib.parse import quote
    path = quote(name, safe="")
    for url in ("/dr", f"/dr/{path}"):
        page = client.get(url)
        assert page.status_code == 200, (url, page.text[:300])
        assert "<svg onload" not in page.text, url
    started = client.post_json(f"/api/dr/plans/{path}/test", {})
    assert started.status_code == 202, started.text
    run = started.json()["run"]
    wait_for(lambda: client.get(f"/api/dr/runs/{run}").json()["status"] not in ("running", "pending", "queued"),
             120)
    html = client.get(f"/api/dr/plans/{path}/reports/latest", params={"format": "html"})
    assert html.status_code == 200
    assert "<svg onload" not in html.text and "<script" not in html.text.lower()
    csp = html.headers["content-security-policy"]
    assert "sandbox" in csp and "allow-" not in csp and "script-src" not in csp
    report_page = client.get(f"/dr/reports/{run}")
    assert report_page.status_code == 200 and "<svg onload" not in report_page.text
    frame = re.search(r"<iframe[^>]*>", report_page.text).group(0)
    assert 'sandbox=""' in frame
    assert secret(served) not in html.text


# ---- redirects ----------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["//evil.example", "/\\evil.example", "\\evil.example", "/\t/evil.example",
                                    "/%2F%2Fevil.example", "https://evil.example", "javascript:alert(1)",
                                    "/\n/evil.example", " //evil.example", "/\x00/evil.example"])
def test_the_sign_in_page_sends_nowhere_but_this_console(served, target):
    page = served.client().get("/login", params={"next": target})
    found = re.search(r'data-next="([^"]*)"', page.text).group(1)
    assert found.startswith("/") and not found.startswith("//") and "\\" not in found
    assert not any(c in found for c in "\t\n\r\x00 "), found
    assert "evil.example" not in found or found.startswith("/%2F"), found


def test_a_page_without_a_session_redirects_to_sign_in_on_this_console(served):
    answer = served.client().get("//evil.example/x")
    assert answer.status_code in (303, 404)
    if answer.status_code == 303:
        assert answer.headers["location"].startswith("/login?next=")


# ---- downloads ----------------------------------------------------------------------------

def test_a_downloaded_file_name_cannot_inject_headers(served, client):
    point = point_id(client)
    for name in HOSTILE_NAMES:
        path = str(served.source / name).lstrip("/")
        answer = client.get(f"/api/points/{point}/file", params={"path": path})
        assert answer.status_code == 200, (name, answer.text)
        disposition = answer.headers["content-disposition"]
        assert "\n" not in disposition and "\r" not in disposition
        plain = re.fullmatch(r'attachment; filename="([^"]*)"; filename\*=UTF-8\'\'(\S+)', disposition)
        assert plain, disposition
        assert ";" not in plain.group(1) and "\\" not in plain.group(1)


def test_an_html_file_from_a_snapshot_is_never_a_page_of_the_console(served, client):
    point = point_id(client)
    path = str(served.source / HTML_FILE).lstrip("/")
    answer = client.get(f"/api/points/{point}/file", params={"path": path})
    assert answer.status_code == 200 and answer.content == HTML_BODY.encode()
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-disposition"].startswith("attachment;")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    archive = client.get(f"/api/points/{point}/archive", params={"path": str(served.source).lstrip("/")})
    assert archive.headers["content-disposition"].startswith("attachment;")


# ---- methods, CORS, caching, static -------------------------------------------------------

def test_odd_methods_cors_and_static_escapes(served, client):
    for method in ("TRACE", "TRACK", "CONNECT", "PROPFIND"):
        answer = client.request(method, "/api/configs", headers=client.send_csrf())
        assert answer.status_code == 405, (method, answer.status_code)
        assert "sr_session" not in answer.text
    pre = served.client().options("/api/configs", headers={"Origin": "https://evil.example",
                                                           "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers
    cross = client.get("/api/configs", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in cross.headers
    assert client.get("/configs").headers["cache-control"] == "no-store"
    assert client.get("/api/configs").headers["cache-control"] == "no-store"
    for escape in ("/static/../web/console.py", "/static/%2e%2e/console.py", "/static/..%2fconsole.py",
                   "/static/%2e%2e%2f%2e%2e%2fcatalog.db", "/static/"):
        answer = served.client().get(escape)
        assert answer.status_code in (401, 303, 404), (escape, answer.status_code)
        assert "import" not in answer.text


def test_no_answer_carries_the_repository_password(served, client):
    key = secret(served)
    point = point_id(client)
    for url in ("/", "/configs", "/configs/docs", "/api/configs", "/api/configs/docs", "/points", "/api/points",
                "/configs/byfile", "/api/configs/byfile", "/configs/byfile/edit",
                f"/points/{point}", f"/api/points/{point}", "/jobs", "/api/jobs", "/dr", "/notify",
                "/api/openapi.json", "/login"):
        answer = client.get(url)
        assert key not in answer.text and FILE_PASSWORD not in answer.text, url
    # The password file's path may be shown, never what it holds.
    assert str(served.tmp / "pw") in client.get("/api/configs/byfile").text


# ---- restore targets ----------------------------------------------------------------------

def test_a_restore_cannot_write_into_the_catalogs_cache_or_secrets_folder(served, client, tmp_path):
    point = point_id(client)
    link = tmp_path / "looks-harmless"
    link.symlink_to(served.tmp)
    for target in (served.tmp, served.tmp / "inside", served.tmp / "cache" / "x", link, link / "deeper",
                   str(served.tmp) + "/./inside/", served.tmp / "repo" / "x"):
        answer = client.post_json(f"/api/points/{point}/restore", {"paths": [], "target": str(target)})
        assert answer.status_code == 400, (target, answer.text)
        assert "must not be inside" in answer.json()["error"]
    assert not (served.tmp / "inside").exists()
    fine = client.post_json(f"/api/points/{point}/restore", {"paths": [], "target": str(tmp_path / "out")})
    assert fine.status_code == 200, fine.text


def test_a_restore_target_swapped_for_a_symlink_after_its_check_is_not_followed(served, client, tmp_path):
    """The console resolves the target once and the restore opens that real path
    without following a symlink: one planted on the way later fails the restore."""
    from strongroom.engine.target_dirs import open_real_dir

    real = tmp_path / "real"
    real.mkdir()
    via = tmp_path / "via"
    via.symlink_to(real)
    point = point_id(client)
    started = client.post_json(f"/api/points/{point}/restore", {"paths": [], "target": str(via / "out")})
    assert started.status_code == 200 and started.json()["target"] == str(real / "out"), started.text
    # What the restore does with the path it was given, when a component became a symlink.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    swapped = tmp_path / "swapped"
    swapped.symlink_to(elsewhere)
    with pytest.raises(OSError):
        open_real_dir(str(swapped / "out").encode())
    assert not (elsewhere / "out").exists()
    fd = open_real_dir(str(tmp_path / "new" / "deeper").encode())
    os.close(fd)
    assert (tmp_path / "new" / "deeper").is_dir()


def test_a_webdav_url_stored_with_its_password_by_an_old_version_is_never_shown(served, client):
    import sqlite3
    import time
    old = "dav-old-Pw-93k"
    doc = {"username": "someone", "url": f"https://someone:{old}@dav.example.net/dav/", "service_type": "generic",
           "secret_ref": "webdav:legacy"}
    with sqlite3.connect(served.tmp / "catalog.db") as db:
        db.execute("INSERT INTO clients (id, doc, created, updated) VALUES (?, ?, ?, ?)",
                   ("legacy", json.dumps(doc), time.time(), time.time()))
    listed = client.get("/api/clients")
    assert listed.status_code == 200 and "dav.example.net" in listed.text
    for url in ("/api/clients", "/api/storage/budget", "/configs/new", "/configs", "/", "/api/openapi.json"):
        answer = client.get(url)
        assert answer.status_code == 200, (url, answer.status_code)
        assert old not in answer.text, url


# ---- served beyond loopback, behind a TLS proxy --------------------------------------------

def test_a_remote_console_behind_a_proxy_answers_its_public_origin_only(tmp_path):
    origin = "https://backup.example.org"
    with ConsoleServer(tmp_path) as remote:
        remote.env["STRONGROOM_SERVE_TOKEN"] = "a-serve-token-of-32-characters-x"
        url = remote.start("--listen", "0.0.0.0:0", "--allow-remote", "--console-origin", origin + "/")
        port = url.rsplit(":", 1)[1]
        proxied = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                               headers={"Host": "backup.example.org"})
        # Nothing without a session, whatever the Host; another Host is refused outright.
        assert proxied.get("/api/configs").status_code == 401
        assert proxied.get("/configs").status_code == 303
        assert proxied.get("/configs", headers={"Host": "evil.example"}).status_code == 421
        assert proxied.get("/metrics").status_code == 401  # the daemon's own token rule
        page = proxied.get("/login")
        assert "; secure" in page.headers["set-cookie"].lower()
        value = re.search(r'data-login-csrf="([^"]+)"', page.text).group(1)
        cookie = {"Cookie": f"sr_login={value}", "X-CSRF-Token": value}
        refused = proxied.post("/api/session", json={"password": PASSWORD},
                               headers={**cookie, "Origin": "http://backup.example.org"})
        assert refused.status_code == 403
        signed = proxied.post("/api/session", json={"password": PASSWORD}, headers={**cookie, "Origin": origin})
        assert signed.status_code == 200, signed.text
        assert "; secure" in signed.headers["set-cookie"].lower()
        session = re.search(r"sr_session=([^;]+)", signed.headers["set-cookie"]).group(1)
        who = proxied.get("/api/session", headers={"Cookie": f"sr_session={session}"})
        assert who.status_code == 200 and who.json() == {"kind": "session"}
    bad = ConsoleServer(tmp_path / "bad")
    (tmp_path / "bad").mkdir()
    done = bad.run("serve", "--console-origin", "https://user:pw@backup.example.org/path", "--no-listen")
    assert done.returncode != 0 and "console origin" in done.stderr and "pw@" not in done.stderr


# ---- kept near the end: a new password ends every session, the module's client's too --------

def test_a_session_from_before_a_password_change_is_over(served, client):
    before = served.signed_in()
    assert before.get("/api/session").status_code == 200
    served.set_password("a-new-console-password-2")
    try:
        assert before.get("/api/session").status_code == 401
        assert client.get("/api/configs").status_code == 401
        again = served.client()
        value = login_value(again)
        assert again.post("/api/session", json={"password": PASSWORD},
                          headers={"X-CSRF-Token": value}).status_code == 401
    finally:
        served.set_password(PASSWORD)


def test_no_secret_reached_the_daemons_output(served):
    out, err = served.output()
    for secret_text in (secret(served), FILE_PASSWORD, PASSWORD, "dav-old-Pw-93k"):
        assert secret_text not in out and secret_text not in err


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
    # (An earlier test spent one failure of this address already.)
    assert set(codes) == {401, 429} and codes.count(401) <= 5 and codes[-2:] == [429, 429], codes
    # The limit is per address; the right password from the same (real) address waits too.
    answer = fresh.post("/api/session", json={"password": PASSWORD}, headers={"X-CSRF-Token": value})
    assert answer.status_code == 429 and "retry-after" in answer.headers


