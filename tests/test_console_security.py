"""The console's gate, walked over the whole route table of serve's app
against a real `strongroom serve`: no route, however new, answers a caller
without a session or token, a browser's state-changing request without its
CSRF token, or a revoked token; odd spellings of a path do not slip past
the gate; and no answer carries the session cookie, a token or a
repository password.

The table comes from the app built in this process (tests/console_routes.py),
so a route added by any module is walked here without touching this file."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from console_routes import RouteEntry, route_table
from console_server import ConsoleServer
from strongroom.web.guard import DAEMON_PATHS, PUBLIC, SESSION_COOKIE, STATIC_PREFIX, is_public

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
# The contract (more routes may exist); parameter names do not matter.
CONTRACT = (
    ("GET", "/api/configs"), ("POST", "/api/configs/{}/run"), ("GET", "/api/jobs/{}"),
    ("GET", "/api/points"), ("GET", "/api/points/{}/tree"), ("GET", "/api/points/{}/file"),
    ("POST", "/api/points/{}/restore"), ("GET", "/api/events"), ("GET", "/api/dr/plans"),
    ("POST", "/api/dr/plans/{}/test"), ("GET", "/api/dr/plans/{}/reports/latest"),
)
READ_AT_MOST = 1 << 20  # of each answer's body, to look for secrets in


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("served")
    source = tmp / "source"
    source.mkdir()
    (source / "a.txt").write_text("a file to back up\n")
    with ConsoleServer(tmp) as s:
        s.ok("config", "add", "docs", "--source", str(source), "--target-dir", str(tmp / "repo"))
        s.start()
        yield s


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> list[RouteEntry]:
    return route_table(tmp_path_factory.mktemp("routes"))


@pytest.fixture(scope="module")
def protected(table) -> list[RouteEntry]:
    """Every route but the public ones, the static files and the daemon's own."""
    return [e for e in table if not is_public(e.method, e.path) and e.path not in DAEMON_PATHS
            and not e.path.startswith(STATIC_PREFIX)]


def repository_passwords(served) -> list[str]:
    stored = json.loads((served.tmp / "secrets.json").read_text())["secrets"]
    assert stored, "the configuration's repository key is in the secrets file"
    return list(stored.values())


def call(client: httpx.Client, method: str, path: str, headers: dict | None = None) -> httpx.Response:
    """`method path` with a JSON body for the unsafe methods; reads at most
    READ_AT_MOST of the body, and nothing of an event stream."""
    body = {"json": {}} if method in UNSAFE else {}
    with client.stream(method, path, headers=headers or {}, **body) as answer:
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            answer._content = b""
            return answer
        read = b""
        for chunk in answer.iter_bytes():
            read += chunk
            if len(read) >= READ_AT_MOST:
                break
        answer._content = read
        return answer


def check_headers(answer: httpx.Response, where: str, problems: list[str]) -> None:
    if "default-src 'none'" not in answer.headers.get("content-security-policy", ""):
        problems.append(f"{where}: no Content-Security-Policy")
    if answer.headers.get("x-content-type-options") != "nosniff":
        problems.append(f"{where}: no X-Content-Type-Options: nosniff")


def refused_as_a_stranger(method: str, path: str, answer: httpx.Response) -> str | None:
    """What is wrong with `answer` to a request the gate must treat as from no
    one: /api/ and unsafe methods answer 401 (JSON), pages 303 to /login."""
    if path.startswith("/api/") or method not in ("GET", "HEAD"):
        if answer.status_code != 401:
            return f"{answer.status_code}, not 401"
        if method != "HEAD" and "error" not in json.loads(answer.text):
            return "401 without an error line"
    elif answer.status_code != 303 or not answer.headers["location"].startswith("/login?next="):
        return f"{answer.status_code}, not 303 to /login"
    return None


def test_the_walk_covers_the_whole_table_and_names_the_contract(table, protected):
    public = [e for e in table if e not in protected]
    assert len(protected) + len(public) == len(table) and len(protected) >= 1
    assert all(is_public(e.method, e.path) or e.path in DAEMON_PATHS for e in public), public
    shapes = {(e.method, e.shape) for e in table}
    present = [c for c in CONTRACT if c in shapes]
    missing = [c for c in CONTRACT if c not in shapes]
    print(f"walking {len(protected)} of {len(table)} routes; contract routes present: {present}; "
          f"not in this app yet: {missing}")
    for method, shape in present:
        assert any(e.method == method and e.shape == shape for e in protected), f"{method} {shape} is public"


def test_without_a_session_or_token_every_route_is_refused(served, protected):
    anonymous = served.client()
    problems, walked = [], 0
    for entry in protected:
        path = entry.filled()
        for method in {entry.method, "OPTIONS"} | ({"HEAD"} if entry.method == "GET" else set()):
            answer = call(anonymous, method, path)
            walked += method == entry.method
            where = f"{method} {path} (route {entry.method} {entry.path})"
            check_headers(answer, where, problems)
            wrong = refused_as_a_stranger(method, path, answer)
            if wrong:
                problems.append(f"{where}: {wrong}")
    assert walked == len(protected)
    assert not problems, "\n".join(problems)


def test_every_state_changing_route_needs_the_csrf_token_and_the_same_origin(served, protected):
    client = served.signed_in()
    unsafe = [e for e in protected if e.method in UNSAFE]
    assert ("DELETE", "/api/session") in {(e.method, e.path) for e in unsafe}
    problems = []
    for entry in unsafe:
        path = entry.filled()
        for label, headers in (("no CSRF token", {}), ("a wrong CSRF token", {"X-CSRF-Token": "not-" + client.csrf}),
                               ("an empty CSRF token", {"X-CSRF-Token": ""}),
                               ("a cross-site Origin", {**client.send_csrf(), "Origin": "http://evil.example"}),
                               ("a look-alike Origin", {**client.send_csrf(),
                                                        "Origin": served.url + ".evil.example"})):
            answer = call(client, entry.method, path, headers)
            check_headers(answer, f"{entry.method} {path}", problems)
            if answer.status_code != 403:
                problems.append(f"{entry.method} {path} with {label}: {answer.status_code}, not 403")
    assert not problems, "\n".join(problems)
    assert client.get("/api/session").status_code == 200  # nothing went through: still signed in


def test_a_revoked_token_opens_nothing(served, protected):
    token = served.token("revoked in this test")
    api = served.client(headers={"Authorization": f"Bearer {token}"})
    assert api.get("/api/session").status_code == 200
    [listed] = [t for t in served.json("console", "tokens")[0]["tokens"] if t["name"] == "revoked in this test"]
    served.ok("console", "revoke", listed["id"])
    problems = []
    for entry in protected:  # a revoked token is no one: 401, or a page's way to the sign-in
        answer = call(api, entry.method, entry.filled())
        wrong = refused_as_a_stranger(entry.method, entry.filled(), answer)
        if wrong:
            problems.append(f"{entry.method} {entry.filled()}: {wrong}")
    assert not problems, "\n".join(problems)


def test_no_answer_to_a_signed_in_browser_or_a_script_holds_a_secret_or_fails(served, protected):
    """Every GET route, path parameters set to a harmless `x`: no 500, and the
    session cookie, the token and the repository's password in no body."""
    browser = served.signed_in()
    session = browser.cookies[SESSION_COOKIE]
    token = served.token("reads every route")
    script = served.client(headers={"Authorization": f"Bearer {token}"})
    secrets = [session, token, token.removeprefix("srt_"), *repository_passwords(served)]
    problems = []
    for entry in [e for e in protected if e.method == "GET"]:
        for who, client in (("browser", browser), ("script", script)):
            answer = call(client, "GET", entry.filled())
            where = f"GET {entry.filled()} ({who})"
            check_headers(answer, where, problems)
            if answer.status_code >= 500:
                problems.append(f"{where}: {answer.status_code}: {answer.text[:200]}")
            if "Traceback" in answer.text:
                problems.append(f"{where}: a traceback in the answer")
            problems += [f"{where}: a secret in the answer" for s in secrets if s in answer.text]
    for path in ("/login", "/api/openapi.json"):
        answer = browser.get(path)
        problems += [f"GET {path}: a secret in the answer" for s in secrets if s in answer.text]
    assert not problems, "\n".join(problems)


HOSTILE_PARAMETERS = ("%2e%2e", "..%2f..%2f..%2fetc%2fpasswd", "%00", "%2fetc%2fpasswd", "a" * 400, "%ff%fe", "~root")
HOSTILE_QUERY = "path=..%2f..%2f..%2f..%2fetc%2fpasswd&target=%2fetc&config=..%2f..&q=%00&name=..%2f"


def test_hostile_path_parameters_and_queries_are_refused_in_one_line(served, protected):
    """Every GET route, signed in, with hostile values in its parameters and in
    the query: never a 500 or a traceback, never a file from elsewhere."""
    browser = served.signed_in()
    problems = []
    for entry in [e for e in protected if e.method == "GET"]:
        values = HOSTILE_PARAMETERS if entry.parameters else ("x",)
        for value in values:
            path = entry.filled(value) + "?" + HOSTILE_QUERY
            answer = call(browser, "GET", path)
            where = f"GET {path[:120]}"
            if answer.status_code >= 500 or "Traceback" in answer.text:
                problems.append(f"{where}: {answer.status_code}: {answer.text[:200]}")
            if "root:x:0:0" in answer.text:
                problems.append(f"{where}: /etc/passwd in the answer")
    assert not problems, "\n".join(problems)


def test_signing_in_answers_the_csrf_token_but_never_the_session(served):
    client = served.client()
    page = client.get("/login")
    value = client.cookies["sr_login"]
    assert value in page.text  # the form's own value, which a page elsewhere cannot read
    done = client.post("/api/session", json={"password": "console-test-password-1"},
                       headers={"X-CSRF-Token": value})
    assert done.status_code == 200
    session = client.cookies[SESSION_COOKIE]
    assert session not in done.text and set(done.json()) == {"csrf"}


def test_the_schema_is_public_and_lists_every_api_route(served, table):
    assert {p for _, p in PUBLIC if p.startswith("/api/")} == {"/api/openapi.json", "/api/session"}
    answer = served.client().get("/api/openapi.json")
    assert answer.status_code == 200
    check_headers(answer, "GET /api/openapi.json", problems := [])
    assert not problems, problems
    paths = answer.json()["paths"]
    listed = [e for e in table if e.in_schema and e.path.startswith("/api/") and e.method in ("GET", *UNSAFE)]
    assert listed
    unlisted = [f"{e.method} {e.path}" for e in listed if e.method.lower() not in paths.get(e.schema_path, {})]
    assert not unlisted, f"routes missing from /api/openapi.json: {unlisted}"
    # The one public route that changes state needs the sign-in form's own value.
    assert served.client().post("/api/session", json={"password": "x"}).status_code == 403


def test_static_assets_are_public_and_carry_the_same_headers(served):
    anonymous = served.client()
    problems = []
    for path in ("/static/console.js", "/static/console.css", "/static/not-there.js"):
        answer = anonymous.get(path)
        check_headers(answer, f"GET {path}", problems)
        assert answer.status_code == (404 if "not-there" in path else 200), path
    assert anonymous.post("/static/console.js").status_code == 401  # only reading is public
    assert not problems, "\n".join(problems)


def raw_request(url: str, target: str, extra: str = "") -> bytes:
    """A request sent as bytes, so that no client library tidies its path up;
    returns what came back before the server closed (b"" if it cut it)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        try:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}Connection: close\r\n\r\n"
                         .encode("latin-1"))
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = b""
        try:
            while chunk := sock.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
        return got


def status_of(raw: bytes) -> int | None:
    line = raw.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[1].isdigit() else None


@pytest.mark.parametrize("target", [
    "//api/session", "/api/session/", "/API/session", "/api//session", "/static/../api/session",
    "/static/%2e%2e/api/session", "/static/%2E%2E/api/session", "/static/..%2fapi/session",
    "/api/%2e%2e/api/session", "/api/session%00", "/%2fapi/session", "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static//etc/passwd", "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
])
def test_odd_spellings_of_a_path_do_not_reach_a_route_unauthenticated(served, target):
    raw = raw_request(served.url, target)
    status = status_of(raw)
    assert status in (303, 400, 401, 404), raw[:300]
    assert b'"kind"' not in raw and b"root:" not in raw and b"Traceback" not in raw
    if status == 303:
        assert b"location: /login?next=" in raw.lower()


def test_very_long_headers_are_refused_cleanly(served):
    for extra in (f"Cookie: {SESSION_COOKIE}={'a' * 60_000}\r\n", f"X-CSRF-Token: {'b' * 60_000}\r\n",
                  f"Authorization: Bearer srt_{'c' * 60_000}\r\n", f"Cookie: {'d=1; ' * 10_000}\r\n",
                  f"Cookie: {SESSION_COOKIE}={'e' * 2_000_000}\r\n", f"X-Long: {'f' * 2_000_000}\r\n"):
        raw = raw_request(served.url, "/api/session", extra)
        status = status_of(raw)
        # Either a clean refusal, or the connection cut before any answer (too large to read).
        assert (status is not None and 400 <= status < 500) or raw == b"", raw[:300]
    assert served.client().get("/login").status_code == 200  # and the server is still there
