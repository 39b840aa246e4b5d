"""DR plans in the web console of a real `strongroom serve`: list, create (by
fields and by TOML), rehearse and read the reports, a failing verdict, a real
recovery behind its typed confirmation, the pages, and no secret anywhere."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from console_server import ConsoleServer

SECRET = "dr-console-repo-secret-7731"
DEADLINE = 90.0


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


DOCS = {"a.txt": b"alpha\n" * 50, "sub/b.bin": bytes(range(256)) * 40, "sub/deeper/c.txt": b"gamma"}
PHOTOS = {"p1.jpg": b"\xff\xd8" + b"x" * 3000, "album/p2.jpg": b"\xff\xd8" + b"y" * 1200}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-dr")
    with ConsoleServer(tmp) as s:
        s.env["DR_CONSOLE_PASSWORD"] = SECRET
        # One repository's password is read from a variable at every run, the other's kept in the secrets store.
        for name, files, password in (("docs", DOCS, ["--password-env", "DR_CONSOLE_PASSWORD"]),
                                      ("photos", PHOTOS, ["--store-password"])):
            write_tree(tmp / "src" / name, files)
            s.env["STRONGROOM_PASSWORD"] = SECRET
            s.ok("config", "add", name, "--source", str(tmp / "src" / name), "--target-dir",
                 str(tmp / "repos" / name), *password)
            del s.env["STRONGROOM_PASSWORD"]
            s.ok("backup", "--config", name)
        s.ok("dr", "create", "nightly", "--order", "docs,photos", "--target-base", str(tmp / "real"),
             "--rto", "1h", "--rpo", "24h")
        s.start()
        s.answers = []  # every body the tests received, checked for the secret
        yield s
        for text in s.answers:
            assert SECRET not in text


@pytest.fixture(scope="module")
def client(server):
    return server.signed_in()


def seen(server, response):
    server.answers.append(response.text)
    server.answers.append(json.dumps(dict(response.headers)))
    return response


def get(server, client, url, **kw):
    return seen(server, client.get(url, **kw))


def post(server, client, url, body=None):
    return seen(server, client.post_json(url, body))


def finished(server, client, run_id: str) -> dict:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        state = get(server, client, f"/api/dr/runs/{run_id}")
        assert state.status_code == 200, state.text
        if state.json()["status"] != "running":
            return state.json()
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish: {state.text}")


def one_line_error(response, status=400) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error and "\n" not in error and "Traceback" not in error
    return error


def test_the_schema_lists_the_routes(server):
    schema = seen(server, server.client().get("/api/openapi.json"))
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/dr/plans", "/api/dr/plans/{name}", "/api/dr/plans/{name}/test", "/api/dr/plans/{name}/run",
                 "/api/dr/plans/{name}/runs", "/api/dr/runs/{run_id}", "/api/dr/plans/{name}/reports/latest",
                 "/api/dr/reports/{run_id}"):
        assert path in paths, path
    assert "/dr" not in paths  # pages stay out of the API's schema


def test_the_api_needs_a_caller_and_a_csrf_token(server, client):
    assert server.client().get("/api/dr/plans").status_code == 401
    assert client.post("/api/dr/plans/nightly/test", json={}).status_code == 403
    token = server.token("dr")
    listed = seen(server, server.client().get("/api/dr/plans", headers={"Authorization": f"Bearer {token}"}))
    assert listed.status_code == 200 and [p["name"] for p in listed.json()] == ["nightly"]


def test_list_shows_steps_targets_and_goals(server, client):
    plans = get(server, client, "/api/dr/plans").json()
    nightly = next(p for p in plans if p["name"] == "nightly")
    assert [(s["config"], s["target"]) for s in nightly["steps"]] == [
        ("docs", str(server.tmp / "real" / "docs")), ("photos", str(server.tmp / "real" / "photos"))]
    assert nightly["rto"] == 3600 and nightly["rpo"] == 86400 and nightly["version"]
    assert "last_test" in nightly and "last_run" in nightly
    shown = get(server, client, "/api/dr/plans/nightly").json()
    assert shown["plan"]["name"] == "nightly" and 'name = "nightly"' in shown["toml"]


def test_create_by_fields_by_toml_and_refusals(server, client):
    made = post(server, client, "/api/dr/plans", {"name": "by-fields", "order": ["photos", "docs"],
                                                  "target_base": str(server.tmp / "bf"), "rto": "30m",
                                                  "rpo": 7200, "continue_on_error": True})
    assert made.status_code == 201, made.text
    plan = made.json()["plan"]
    assert plan["configs"] == ["photos", "docs"] and plan["rto_seconds"] == 1800 and plan["on_failure"] == "continue"
    assert made.json()["name"] == "by-fields"
    toml = get(server, client, "/api/dr/plans/by-fields").json()["toml"]
    one_line_error(post(server, client, "/api/dr/plans", {"toml": toml}))  # the name is taken
    assert seen(server, client.delete("/api/dr/plans/by-fields", headers=client.send_csrf())).status_code == 200
    again = post(server, client, "/api/dr/plans", {"toml": toml})
    assert again.status_code == 201, again.text
    assert again.json()["plan"]["version"] == plan["version"]
    # The same checks as `dr create`, each one line.
    assert "no backup configuration named 'nope'" in one_line_error(post(
        server, client, "/api/dr/plans", {"name": "x", "order": ["nope"], "target_base": str(server.tmp / "x")}))
    one_line_error(post(server, client, "/api/dr/plans", {"toml": "name = [unclosed"}))
    one_line_error(post(server, client, "/api/dr/plans", {"toml": toml, "name": "other"}))
    one_line_error(post(server, client, "/api/dr/plans", {"name": "rel", "order": ["docs"], "target_base": "rel/x"}))
    one_line_error(post(server, client, "/api/dr/plans", {"name": "up", "order": ["docs"],
                                                          "target_base": "/tmp/../etc"}))
    one_line_error(post(server, client, "/api/dr/plans", {"name": "", "order": ["docs"], "target_base": "/tmp/y"}))
    one_line_error(post(server, client, "/api/dr/plans", {"name": "rto", "order": ["docs"], "target_base": "/tmp/y",
                                                          "rto": "soon"}))
    assert post(server, client, "/api/dr/plans", {"name": "n", "what": 1}).status_code == 422
    one_line_error(get(server, client, "/api/dr/plans/missing"))
    seen(server, client.delete("/api/dr/plans/by-fields", headers=client.send_csrf()))


def test_a_test_passes_and_its_reports_read(server, client):
    started = post(server, client, "/api/dr/plans/nightly/test", {})
    assert started.status_code == 202, started.text
    run_id = started.json()["run"]
    state = finished(server, client, run_id)
    assert state["status"] == "pass", state
    assert [s["status"] for s in state["result"]["steps"]] == ["passed", "passed"]
    assert not (server.tmp / "real").exists()  # a rehearsal never touches the real targets

    listed = next(p for p in get(server, client, "/api/dr/plans").json() if p["name"] == "nightly")
    assert listed["last_test"]["run_id"] == run_id and listed["last_test"]["verdict"] == "pass"
    assert listed["last_test"]["rto_seconds"] > 0 and listed["last_test"]["finished"]

    as_json = get(server, client, "/api/dr/plans/nightly/reports/latest")
    assert as_json.status_code == 200 and as_json.headers["content-type"].startswith("application/json")
    report = as_json.json()
    assert report["id"] == run_id and report["verdict"] == "pass" and report["trend"][-1]["id"] == run_id
    md = get(server, client, "/api/dr/plans/nightly/reports/latest?format=md")
    assert md.status_code == 200 and "nightly" in md.text and "pass" in md.text
    html = get(server, client, "/api/dr/plans/nightly/reports/latest?format=html")
    assert html.status_code == 200 and html.text.startswith("<!DOCTYPE html>")
    csp = html.headers["content-security-policy"]
    assert "sandbox" in csp and "script-src" not in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'self'" in csp and html.headers["x-frame-options"] == "SAMEORIGIN"
    assert get(server, client, f"/api/dr/reports/{run_id}?format=md").text == md.text
    assert one_line_error(get(server, client, "/api/dr/plans/nightly/reports/latest?format=pdf"), 422)

    page = get(server, client, f"/dr/reports/{run_id}")
    assert page.status_code == 200 and 'sandbox=""' in page.text
    assert f"/api/dr/reports/{run_id}?format=html" in page.text
    assert "default-src 'none'; script-src 'self'" in page.headers["content-security-policy"]
    plan_page = get(server, client, "/dr/nightly")
    assert plan_page.status_code == 200 and f"/dr/reports/{run_id}" in plan_page.text and "passed" in plan_page.text
    following = get(server, client, f"/dr/nightly?run={run_id}")
    assert following.status_code == 200 and "Read the report of this run" in following.text

    # A second test makes the trend, drawn on the plan's page.
    second = post(server, client, "/api/dr/plans/nightly/test", {"keep": True,
                                                                 "scratch": str(server.tmp / "scratch")})
    assert finished(server, client, second.json()["run"])["status"] == "pass"
    assert (server.tmp / "scratch" / "docs").exists()
    charted = get(server, client, "/dr/nightly")
    assert "<svg" in charted.text and "RTO achieved" in charted.text and "style=" not in charted.text


def test_a_plan_over_its_rto_fails(server, client):
    made = post(server, client, "/api/dr/plans", {"name": "too-fast", "order": ["docs"],
                                                  "target_base": str(server.tmp / "tf"), "rto": 0.001})
    assert made.status_code == 201, made.text
    run_id = post(server, client, "/api/dr/plans/too-fast/test").json()["run"]
    state = finished(server, client, run_id)
    assert state["status"] == "fail" and any("RTO" in r for r in state["result"]["reasons"])
    listed = next(p for p in get(server, client, "/api/dr/plans").json() if p["name"] == "too-fast")
    assert listed["last_test"]["verdict"] == "fail"
    page = get(server, client, "/dr")
    assert page.status_code == 200 and 'class="status fail">failed<' in page.text
    assert get(server, client, "/api/dr/plans/too-fast/reports/latest").json()["verdict"] == "fail"


def test_a_real_run_needs_its_name_typed_again(server, client):
    one_line_error(post(server, client, "/api/dr/plans/nightly/run", {}))
    one_line_error(post(server, client, "/api/dr/plans/nightly/run", {"confirm": "Nightly"}))
    one_line_error(post(server, client, "/api/dr/plans/nightly/run", {"confirm": "nightly",
                                                                      "target_base": "relative"}))
    one_line_error(post(server, client, "/api/dr/plans/absent/run", {"confirm": "absent"}))
    one_line_error(post(server, client, "/api/dr/plans/nightly/run", {"confirm": "nightly", "at": "someday"}))
    for scratch in ("relative/dir", "/tmp/../etc", "/tmp/a\x00b"):
        one_line_error(post(server, client, "/api/dr/plans/nightly/test", {"scratch": scratch}))
    assert not (server.tmp / "real").exists()
    target = server.tmp / "recovered"
    started = post(server, client, "/api/dr/plans/nightly/run", {"confirm": "nightly", "target_base": str(target)})
    assert started.status_code == 202, started.text
    state = finished(server, client, started.json()["run"])
    assert state["status"] == "pass", state
    for config, files in (("docs", DOCS), ("photos", PHOTOS)):
        # A step restores its point's paths as they were backed up, below its folder.
        root = target / config / (server.tmp / "src" / config).relative_to("/")
        restored = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        assert restored == files
    listed = next(p for p in get(server, client, "/api/dr/plans").json() if p["name"] == "nightly")
    assert listed["last_run"]["run_id"] == started.json()["run"]


def test_pages_render_and_escape(server, client):
    evil = '<b>x</b> & "q"'
    made = post(server, client, "/api/dr/plans", {"name": evil, "order": ["docs"],
                                                  "target_base": str(server.tmp / "evil")})
    assert made.status_code == 201, made.text
    listing = get(server, client, "/dr")
    assert listing.status_code == 200 and "<b>x</b>" not in listing.text and "&lt;b&gt;x&lt;/b&gt;" in listing.text
    assert listing.text.count("<h1>") == 1 and "<script>" not in listing.text and "style=" not in listing.text
    href = "/dr/" + quote(evil, safe="")
    assert href in listing.text.replace("&#34;", '"').replace("&amp;", "&") or quote(evil, safe="") in listing.text
    page = get(server, client, href)
    assert get(server, client, "/api/dr/plans/" + quote(evil, safe="")).json()["plan"]["name"] == evil
    assert page.status_code == 200 and "<b>x</b>" not in page.text and page.text.count("<h1>") == 1
    assert 'for="dr-confirm"' in page.text
    # Hostile run ids and missing things: a clear line, never a 500.
    for url in ("/api/dr/runs/..%2F..%2Fetc", "/api/dr/runs/a%00b", "/api/dr/reports/" + "x" * 300):
        assert get(server, client, url).status_code in (400, 404)
    assert get(server, client, "/api/dr/runs/nosuchrun").status_code == 404
    assert get(server, client, "/api/dr/reports/nosuchrun?format=html").status_code == 404
    assert get(server, client, "/dr/reports/nosuchrun").status_code == 404
    assert get(server, client, "/dr/no-such-plan").status_code == 404
    one_line_error(get(server, client, "/api/dr/plans/%3Cnone%3E/reports/latest"))


def test_no_answer_held_a_repository_password(server, client):
    for url in ("/dr", "/dr/nightly", "/api/dr/plans", "/api/dr/plans/nightly",
                "/api/dr/plans/nightly/runs", "/api/dr/plans/nightly/reports/latest?format=html"):
        get(server, client, url)
    assert len(server.answers) > 50
    assert not [text for text in server.answers if SECRET in text]
