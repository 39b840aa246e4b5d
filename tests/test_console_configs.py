"""The dashboard and the configuration pages and API of the web console,
against a real `strongroom serve` with real repositories on disk: create a
configuration, run it through the daemon's queue, see it green (or red when
its run fails), edit and remove it, and find its password in no answer."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from console_server import ConsoleServer
import forked_cli

REPO_PASSWORD = "repo-secret-Zq81-not-to-be-seen"
WEBDAV_PASSWORD = "dav-secret-Yw27-not-to-be-seen"
DEADLINE = 90.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-configs")
    with ConsoleServer(tmp) as s:
        # A WebDAV client of a vendor with a request budget, for the form's
        # choice of target and the dashboard's budgets (no request is sent).
        done = forked_cli.run(["client", "add", "box", "--url",
                               "https://dav.example.net/dav/", "--user", "someone", "--vendor", "nutstore"],
                              text=True, timeout=60,
                              env={**s.env, "STRONGROOM_WEBDAV_PASSWORD": WEBDAV_PASSWORD})
        assert done.returncode == 0, done.stderr
        s.start()
        s.seen: list[str] = []  # every answer's text, for the password test at the end
        yield s


@pytest.fixture(scope="module")
def client(server):
    c = server.signed_in()
    original = c.send

    def recording(request, *args, **kw):
        response = original(request, *args, **kw)
        response.read()
        server.seen.append(f"{request.method} {request.url}\n{response.headers}\n{response.text}")
        return response

    c.send = recording
    return c


def source_tree(server, name: str):
    root = server.tmp / "src" / name
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.txt").write_text("alpha " * 500)
    (root / "b.bin").write_bytes(bytes(range(256)) * 40)
    return root


def create(client, server, name: str, **fields):
    body = {"name": name, "source_paths": [str(source_tree(server, name))],
            "target_path": str(server.tmp / "repos" / name), **fields}
    return client.post_json("/api/configs", body)


def listed(client, name: str) -> dict:
    answer = client.get("/api/configs")
    assert answer.status_code == 200, answer.text
    return next(c for c in answer.json() if c["name"] == name)


def wait_finished(client, name: str) -> dict:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        item = listed(client, name)
        if item["pending"] is None and item["last_run"] and item["last_run"]["status"] in ("succeeded", "failed"):
            return item
        time.sleep(0.2)
    raise AssertionError(f"the run of {name} did not finish: {listed(client, name)}")


def one_line_error(answer) -> str:
    assert answer.status_code in (400, 404, 422), (answer.status_code, answer.text)
    message = answer.json()["error"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


def test_a_configuration_made_here_runs_and_turns_green(server, client):
    made = create(client, server, "home.docs_1", password=REPO_PASSWORD, schedules=["every 6h"],
                  retention={"keep_last": 5})
    assert made.status_code == 201, made.text
    doc = made.json()
    assert doc["password"] == "secrets store" and doc["generated_key"] is False
    assert doc["schedule_specs"] == ["every 6h"]
    before = listed(client, "home.docs_1")
    assert before["points"] == 0 and before["last_success"] is None and before["status"] == "red"
    assert before["next_run"] is not None

    run = client.post_json("/api/configs/home.docs_1/run", {"kind": "incremental"})
    assert run.status_code == 202, run.text
    job = run.json()["job"]
    assert isinstance(job, int)
    item = wait_finished(client, "home.docs_1")
    assert item["last_run"]["status"] == "succeeded", item
    assert item["points"] == 1 and item["size"] > 0
    assert item["status"] == "green" and item["overdue"] is False, item
    assert item["last_success"].endswith("Z") and item["target"] == str(server.tmp / "repos" / "home.docs_1")
    jobs = server.json("jobs", "home.docs_1")
    assert any(j.get("id") == job and j.get("status") == "succeeded" for j in jobs), jobs

    # The pages show it: its card with the word as well as the colour, the chart, the run button.
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    html = dashboard.text
    assert 'class="status green">green<' in html and "home.docs_1" in html
    assert '<svg class="chart"' in html and "style=" not in html and "<script>" not in html
    assert 'data-api="POST /api/configs/home.docs_1/run"' in html and 'data-then="go:/jobs/{job}"' in html
    assert ">box<" in html and "of 540" in html  # the budget of the WebDAV client
    # A DR plan rehearsed from the command line: its verdict is on the dashboard.
    scratch = server.tmp / "scratch"
    server.ok("dr", "create", "weekly", "--order", "home.docs_1", "--target-base", str(server.tmp / "dr-base"))
    assert "No DR plan yet" not in client.get("/").text and "never tested" in client.get("/").text
    tested = server.run("dr", "test", "weekly", "--scratch", str(scratch), "--json")
    assert tested.returncode == 0, tested.stderr
    html = client.get("/").text
    assert 'href="/dr/weekly"' in html and 'class="status pass">pass<' in html
    page = client.get("/configs/home.docs_1")
    assert page.status_code == 200
    assert f'href="/jobs/{job}"' in page.text and 'href="/points?config=home.docs_1"' in page.text
    assert "secrets store" in page.text and 'data-confirm="Remove the configuration home.docs_1?"' in page.text


def test_a_failing_run_shows_red_with_its_reason(server, client):
    made = create(client, server, "gone-source", max_attempts=1)
    assert made.status_code == 201, made.text
    assert made.json()["generated_key"] is True
    shutil.rmtree(server.tmp / "src" / "gone-source")
    assert client.post_json("/api/configs/gone-source/run", {"kind": "full"}).status_code == 202
    item = wait_finished(client, "gone-source")
    assert item["last_run"]["status"] == "failed"
    assert item["status"] == "red" and item["status_reason"].startswith("the last run failed: ")
    assert item["points"] == 0
    table = client.get("/configs")
    assert table.status_code == 200 and 'class="status red">red<' in table.text
    assert "the last run failed" in table.text


def test_every_page_renders_and_an_unknown_name_is_a_404(server, client):
    assert create(client, server, "pages.x-1_y").status_code == 201
    for path in ("/", "/configs", "/configs/new", "/configs/pages.x-1_y", "/configs/pages.x-1_y/edit"):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.text.count("<h1>") == 1
        assert path == "/configs/new" or "pages.x-1_y" in answer.text
        assert "style=" not in answer.text and "<style" not in answer.text
    form = client.get("/configs/new").text
    assert 'autocomplete="new-password"' in form and '<option value="box">' in form
    edit = client.get("/configs/pages.x-1_y/edit").text
    assert 'data-api="PUT /api/configs/pages.x-1_y"' in edit
    for path in ("/configs/a<b>c", "/configs/a<b>c/edit"):
        missing = client.get(path)
        assert missing.status_code == 404
        assert "a&lt;b&gt;c" in missing.text and "a<b>c" not in missing.text
    missing = client.get("/api/configs/a<b>c")
    assert missing.status_code == 404 and missing.json() == {"error": "no configuration named 'a<b>c'"}
    assert one_line_error(client.post_json("/api/configs/nothing/run", {"kind": "full"}))
    assert client.delete("/api/configs/nothing", headers=client.send_csrf()).status_code == 404


def test_an_edit_changes_the_fields_given_and_keeps_the_password(server, client):
    assert create(client, server, "edited", password=REPO_PASSWORD).status_code == 201
    changed = client.put("/api/configs/edited", json={"schedules": ["0 3 * * *", "every 12h"],
                                                      "retention": {"keep_daily": 7}, "excludes": ["*.tmp"],
                                                      "retention_after_run": "forget"},
                         headers=client.send_csrf())
    assert changed.status_code == 200, changed.text
    doc = client.get("/api/configs/edited").json()
    assert doc["schedule_specs"] == ["0 3 * * *", "every 12h"] and doc["retention"] == {"keep_daily": 7}
    assert doc["excludes"] == ["*.tmp"] and doc["password"] == "secrets store"
    assert doc["source_paths"] == [str(server.tmp / "src" / "edited")]
    # The password kept opens the repository: a run succeeds.
    assert client.post_json("/api/configs/edited/run", {"kind": "incremental"}).status_code == 202
    assert wait_finished(client, "edited")["last_run"]["status"] == "succeeded"


def test_removing_needs_a_recovery_kit_unless_told(server, client):
    assert create(client, server, "to-remove").status_code == 201
    refused = client.request("DELETE", "/api/configs/to-remove", headers=client.send_csrf())
    assert "recovery kit" in one_line_error(refused)
    assert client.get("/api/configs/to-remove").status_code == 200
    done = client.request("DELETE", "/api/configs/to-remove", json={"without_kit": True},
                          headers=client.send_csrf())
    assert done.status_code == 200 and done.json() == {"removed": "to-remove"}
    assert client.get("/api/configs/to-remove").status_code == 404
    assert client.get("/configs/to-remove").status_code == 404


@pytest.mark.parametrize("body, words", [
    ({"name": "bad1", "source_paths": "/etc", "target_path": "/tmp/x"}, "source_paths"),
    ({"name": "bad2", "source_paths": ["relative/path"], "target_path": "/tmp/x"}, "source_paths"),
    ({"name": "bad3", "source_paths": ["/tmp"], "target_path": "relative"}, "target_path"),
    ({"name": "bad4", "source_paths": ["/tmp\x00/x"], "target_path": "/tmp/x"}, "NUL"),
    ({"name": "bad5", "source_paths": ["/tmp"], "target_path": "/tmp/x", "password_command": "id"}, "password_command"),
    ({"name": "bad6", "source_paths": ["/tmp"], "target_path": "/tmp/x", "schedules": ["every sometimes"]}, "schedule"),
    ({"name": "bad7", "source_paths": ["/tmp"], "target_path": "/tmp/x", "retention": {"keep_daily": -1}},
     "keep_daily"),
    ({"name": "bad8", "source_paths": ["/tmp"], "target_path": "/tmp/x", "compression": "brotli-max"}, "compression"),
    ({"name": "bad name", "source_paths": ["/tmp"], "target_path": "/tmp/x"}, "name"),
    ({"name": "bad9", "source_paths": ["/tmp"], "target_client_id": "nobody", "target_path": "f"}, "nobody"),
    ({"name": "bad10", "source_paths": ["/tmp"], "target_client_id": "box", "target_path": "../up"}, "target_path"),
    ({"name": "bad11", "source_paths": [str("/no/such/source")], "target_path": "/tmp/x"}, "does not exist"),
    ({"name": "bad12", "source_paths": ["/tmp"], "target_path": "/tmp/x", "encrypt": False, "password": "p"},
     "password"),
    ({"source_paths": ["/tmp"], "target_path": "/tmp/x"}, "name"),
])
def test_a_bad_body_is_one_line_naming_the_field(server, client, body, words):
    message = one_line_error(client.post_json("/api/configs", body))
    assert words in message, message
    assert client.get(f"/api/configs/{body.get('name', 'x')}").status_code == 404


def test_bad_requests_elsewhere_are_refused_in_one_line(server, client):
    assert create(client, server, "for-bad-requests").status_code == 201
    assert "kind" in one_line_error(client.post_json("/api/configs/for-bad-requests/run", {"kind": "weekly"}))
    raw = client.post("/api/configs", content=b"{not json", headers={**client.send_csrf(),
                                                                      "content-type": "application/json"})
    one_line_error(raw)
    edit = client.put("/api/configs/for-bad-requests", json={"source_paths": ["x/../y"]},
                      headers=client.send_csrf())
    assert "source_paths" in one_line_error(edit)
    assert client.get("/api/configs/for-bad-requests").json()["source_paths"][0].startswith("/")
    taken = client.post_json("/api/configs", {"name": "for-bad-requests", "source_paths": ["/tmp"],
                                               "target_path": str(server.tmp / "repos" / "other")})
    assert "exists already" in one_line_error(taken)


def test_clients_and_budgets_never_show_a_password(server, client):
    clients = client.get("/api/clients")
    assert clients.status_code == 200
    assert clients.json() == [{"id": "box", "url": "https://dav.example.net/dav/", "user": "someone",
                               "vendor": "nutstore"}]
    budget = client.get("/api/storage/budget").json()
    assert [(b["client"], b["capacity"], b["window_seconds"]) for b in budget] == [("box", 540, 1800.0)]
    assert 0 <= budget[0]["remaining"] <= 540


def test_the_schema_lists_the_routes(server):
    schema = server.client().get("/api/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert set(paths["/api/configs"]) >= {"get", "post"}
    assert set(paths["/api/configs/{name}"]) >= {"get", "put", "delete"}
    assert "post" in paths["/api/configs/{name}/run"]
    assert "get" in paths["/api/clients"] and "get" in paths["/api/storage/budget"]


def test_without_a_caller_or_csrf_the_routes_refuse(server):
    anonymous = server.client()
    for method, path in (("GET", "/api/configs"), ("GET", "/api/configs/x"), ("GET", "/api/clients"),
                         ("GET", "/api/storage/budget"), ("POST", "/api/configs"), ("PUT", "/api/configs/x"),
                         ("DELETE", "/api/configs/x"), ("POST", "/api/configs/x/run")):
        assert anonymous.request(method, path, json={}).status_code == 401, (method, path)
    signed = server.signed_in()
    assert signed.post("/api/configs", json={"name": "no-csrf"}).status_code == 403
    assert signed.post("/api/configs/x/run", json={"kind": "full"}).status_code == 403


def test_in_a_browser_a_form_makes_a_configuration_that_runs_without_a_script_error(server):
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import sync_playwright

    from browser import CHROMIUM, CHROMIUM_FLAGS
    from console_server import PASSWORD

    source = source_tree(server, "browser")
    # Enough data that the run is still going when the page reloads to follow it.
    with open(source / "big.bin", "wb") as f:
        f.write(os.urandom(32 * 1024 * 1024))
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_FLAGS))
        try:
            page = browser.new_page(viewport={"width": 360, "height": 800})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/login")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(server.url + "/")
            page.goto(server.url + "/configs/new")
            page.fill("#f-name", "browser")
            page.fill("#f-sources", str(source))
            page.fill("#f-target", str(server.tmp / "repos" / "browser"))
            page.fill("#f-password", REPO_PASSWORD)
            page.fill("#f-keep_last", "4")
            page.fill("#f-schedules", "every 2h")
            page.click("button[type=submit]")
            page.wait_for_url(server.url + "/configs/browser")
            assert errors == []  # signing in, the form and its page
            page.click("text=Run incremental now")
            page.wait_for_selector("[data-live-job] progress")  # the page follows the job it queued
            job = page.get_attribute("[data-live-job]", "data-live-job")
            assert page.get_attribute("[data-live-job] button.danger", "data-api") == f"POST /api/jobs/{job}/cancel"
            assert wait_finished(server.signed_in(), "browser")["last_run"]["status"] == "succeeded"
            # The live box's own stream (/api/events) is the jobs part's; from here on
            # no page follows a job, and none may log an error.
            errors.clear()
            page.goto(server.url + "/configs/browser")
            assert page.locator("table .status.succeeded").count() == 1
            serious = {}
            for path in ("/", "/configs", "/configs/new", "/configs/browser", "/configs/browser/edit"):
                page.goto(server.url + path)
                assert page.evaluate("document.documentElement.scrollWidth") <= 360, path
                found = Axe().run(page).response["violations"]
                serious[path] = [v["id"] for v in found if v["impact"] in ("serious", "critical")]
            assert serious == {path: [] for path in serious}
            html = page.content()
        finally:
            browser.close()
    assert errors == []
    assert REPO_PASSWORD not in html
    doc = server.signed_in().get("/api/configs/browser").json()
    assert doc["retention"] == {"keep_last": 4} and doc["schedule_specs"] == ["every 2h"]
    assert doc["password"] == "secrets store"


def test_no_answer_holds_a_password(server, client):
    """Last: every answer of this module, pages included, read back."""
    for path in ("/", "/configs", "/configs/new", "/configs/home.docs_1", "/configs/home.docs_1/edit",
                 "/configs/edited", "/api/configs", "/api/configs/home.docs_1", "/api/configs/edited",
                 "/api/clients", "/api/storage/budget"):
        assert client.get(path).status_code == 200, path
    assert len(server.seen) > 40
    for text in server.seen:
        assert REPO_PASSWORD not in text and WEBDAV_PASSWORD not in text, text[:200]
