"""Recovery points in the web console of a real `strongroom serve`: the list,
browsing, downloads (a file, a folder as tar), search, restores with
progress, the comparison of two points, and the paths the browser cannot use."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from console_server import ConsoleServer

ODD = 'q"uote \'it\' é\nline.txt'
BIG = os.urandom(3 * 1024 * 1024 + 17)


def inside(path: Path) -> str:
    """`path` as a path inside a point (the point holds sources by their absolute paths)."""
    return str(path).lstrip("/")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("points")
    src = tmp / "src"
    (src / "docs" / "sub").mkdir(parents=True)
    (src / "docs" / "a.txt").write_text("first a\n")
    (src / "docs" / "sub" / "b.txt").write_text("bee\n")
    (src / "docs" / "[x]*.txt").write_text("glob-like name\n")
    (src / "big.bin").write_bytes(BIG)
    (src / ODD).write_text("odd name\n")
    (src / "link").symlink_to("docs/a.txt")
    server = ConsoleServer(tmp)
    server.ok("config", "add", "docs", "--source", str(src), "--target-dir", str(tmp / "repo"))
    server.ok("backup", "--config", "docs")
    (src / "docs" / "a.txt").write_text("second a, longer\n")
    (src / "docs" / "new.txt").write_text("new\n")
    server.ok("backup", "--config", "docs")
    # A configuration whose repository is gone: reported, never shown as "no points".
    lost = tmp / "lost-src"
    lost.mkdir()
    (lost / "f").write_text("x")
    server.ok("config", "add", "lost", "--source", str(lost), "--target-dir", str(tmp / "lost-repo"))
    os.rename(tmp / "lost-repo", tmp / "lost-repo.gone")
    server.start()
    client = server.signed_in()
    secret = next(iter(json.loads((tmp / "secrets.json").read_text())["secrets"].values()))
    responses: list[str] = []
    original = client.send

    def send(request, **kw):  # every answer is kept, to look for the repository's password in it
        response = original(request, **kw)
        if not kw.get("stream"):
            responses.append(response.text if "json" in response.headers.get("content-type", "")
                             or "html" in response.headers.get("content-type", "") else
                             response.content.decode("latin-1"))
        return response

    client.send = send
    yield {"server": server, "client": client, "src": src, "tmp": tmp, "secret": secret, "responses": responses}
    server.stop()


def points(env) -> list[dict]:
    answer = env["client"].get("/api/points", params={"config": "docs"})
    assert answer.status_code == 200, answer.text
    return answer.json()["points"]


def test_the_points_are_listed_newest_first_and_a_lost_repository_is_said(env):
    newest, oldest = points(env)
    assert newest["time"] > oldest["time"] and newest["config"] == "docs"
    assert {newest["kind"], oldest["kind"]} <= {"full", "incremental"}
    assert newest["short_id"] == newest["id"][:8] and newest["paths"] == [str(env["src"])]
    every = env["client"].get("/api/points").json()
    assert [p["id"] for p in every["points"]] == [newest["id"], oldest["id"]]
    assert [e["config"] for e in every["errors"]] == ["lost"] and every["errors"][0]["error"]
    assert env["client"].get("/api/points", params={"config": "nope"}).status_code == 400
    one = env["client"].get(f"/api/points/{newest['short_id']}").json()
    assert one["id"] == newest["id"]


def test_a_tree_is_browsed_from_the_root_down(env):
    point = points(env)[0]["id"]
    client = env["client"]
    root = client.get(f"/api/points/{point}/tree").json()
    assert root["path"] == "/" and [e["type"] for e in root["entries"]] == ["dir"]
    docs = client.get(f"/api/points/{point[:8]}/tree", params={"path": inside(env["src"] / "docs")}).json()
    names = {e["name"]: e for e in docs["entries"]}
    assert set(names) == {"a.txt", "new.txt", "sub", "[x]*.txt"}
    assert names["sub"]["type"] == "dir" and names["a.txt"]["size"] == len("second a, longer\n")
    assert names["a.txt"]["path"] == str(env["src"] / "docs" / "a.txt")
    top = client.get(f"/api/points/{point}/tree", params={"path": "/" + inside(env["src"])}).json()
    assert {e["name"]: e["type"] for e in top["entries"]}["link"] == "symlink"
    assert client.get(f"/api/points/{point}/tree", params={"path": inside(env["src"] / "nope")}).status_code == 404
    assert client.get(f"/api/points/{point}/tree",
                      params={"path": inside(env["src"] / "big.bin")}).status_code == 400


def test_files_download_byte_for_byte_with_a_safe_name(env):
    point = points(env)[0]["id"]
    client = env["client"]
    with client.stream("GET", f"/api/points/{point}/file", params={"path": inside(env["src"] / "big.bin")}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-disposition"].endswith("filename*=UTF-8''big.bin")
        assert b"".join(r.iter_bytes()) == BIG
    odd = client.get(f"/api/points/{point}/file", params={"path": inside(env["src"] / ODD)})
    assert odd.status_code == 200 and odd.content == b"odd name\n"
    disposition = odd.headers["content-disposition"]
    assert "\n" not in disposition and disposition.count('"') == 2
    assert disposition.endswith("filename*=UTF-8''" + quote(ODD.encode(), safe=""))
    folder = client.get(f"/api/points/{point}/file", params={"path": inside(env["src"] / "docs")})
    assert folder.status_code == 400 and "folder" in folder.json()["error"]
    assert client.get(f"/api/points/{point}/file", params={"path": ""}).status_code == 400


def test_a_folder_downloads_as_a_tar_stream(env):
    point = points(env)[0]["id"]
    answer = env["client"].get(f"/api/points/{point}/archive", params={"path": inside(env["src"] / "docs")})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-tar"
    assert 'filename="docs.tar"' in answer.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    base = inside(env["src"] / "docs")
    assert files == {f"{base}/a.txt": b"second a, longer\n", f"{base}/new.txt": b"new\n",
                     f"{base}/sub/b.txt": b"bee\n", f"{base}/[x]*.txt": b"glob-like name\n"}


def test_a_name_is_searched_across_points(env):
    client = env["client"]
    found = client.get("/api/points/search", params={"name": "a.txt"}).json()
    assert len(found["matches"]) == 2 and not found["truncated"]
    assert {m["point"] for m in found["matches"]} == {p["id"] for p in points(env)}
    assert found["matches"][0]["folder"] == str(env["src"] / "docs")
    assert [e["config"] for e in found["errors"]] == ["lost"]
    new = client.get("/api/points/search", params={"name": "new*", "config": "docs"}).json()
    assert [m["point"] for m in new["matches"]] == [points(env)[0]["id"]]
    cut = client.get("/api/points/search", params={"name": "*", "config": "docs", "limit": 3}).json()
    assert len(cut["matches"]) == 3 and cut["truncated"]


def test_two_points_are_compared(env):
    newest, oldest = points(env)
    answer = env["client"].get("/api/points/diff", params={"from": oldest["id"], "to": newest["short_id"]})
    assert answer.status_code == 200, answer.text
    diff = answer.json()
    assert str(env["src"] / "docs" / "new.txt") in diff["added"]
    assert str(env["src"] / "docs" / "a.txt") in diff["changed"]
    assert diff["removed"] == [] and diff["counts"]["added"] == 1
    assert env["client"].get("/api/points/diff", params={"from": oldest["id"], "to": "0" * 12}).status_code == 404


def wait_session(client, session: str) -> dict:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        doc = client.get(f"/api/restores/{session}").json()
        if doc["status"] not in ("pending", "running"):
            return doc
        time.sleep(0.1)
    raise AssertionError(f"restore {session} did not end")


def test_a_folder_and_a_selection_are_restored(env, tmp_path):
    client = env["client"]
    point = points(env)[0]["id"]
    docs = inside(env["src"] / "docs")
    target = tmp_path / "whole-docs"
    started = client.post_json(f"/api/points/{point}/restore", {"paths": [docs], "target": str(target)})
    assert started.status_code == 200, started.text
    done = wait_session(client, started.json()["session"])
    assert done["status"] == "done" and done["progress"]["percent_done"] == 1.0, done
    here = target / docs
    assert (here / "a.txt").read_text() == "second a, longer\n" and (here / "sub" / "b.txt").read_text() == "bee\n"
    assert not (target / inside(env["src"]) / "big.bin").exists()

    picked = tmp_path / "picked"
    chosen = [f"{docs}/[x]*.txt", inside(env["src"] / ODD)]
    started = client.post_json(f"/api/points/{point}/restore", {"paths": chosen, "target": str(picked) + "/./"})
    assert started.status_code == 200, started.text
    assert started.json()["target"] == str(picked)
    assert wait_session(client, started.json()["session"])["status"] == "done"
    restored = sorted(str(p.relative_to(picked)) for p in picked.rglob("*") if p.is_file())
    assert restored == sorted(chosen)
    assert (picked / chosen[0]).read_text() == "glob-like name\n"


def test_paths_from_the_browser_cannot_leave_the_point_or_the_target(env, tmp_path):
    client = env["client"]
    point = points(env)[0]["id"]
    for bad in ("../etc/passwd", inside(env["src"]) + "/../../etc", "a\0b"):
        for route in ("tree", "file", "archive"):
            answer = client.get(f"/api/points/{point}/{route}", params={"path": bad})
            assert answer.status_code == 400 and "error" in answer.json(), (route, bad)
    # An absolute path is a path inside the point, not on the server.
    assert client.get(f"/api/points/{point}/file", params={"path": "/etc/passwd"}).status_code == 404
    for bad_id in ("abc", "zzzzzzzzzz", "0" * 8):
        assert client.get(f"/api/points/{bad_id}/tree").status_code in (400, 404)
    victim = tmp_path / "file"
    victim.write_text("keep")
    repo = env["tmp"] / "repo"
    refused = {
        "relative/target": "absolute", str(tmp_path / "a" / ".." / "b"): "..", "/": "/", "/etc": "system",
        "/usr/local/x": "system", "/var/lib/x": "system", "/proc/self": "system", str(victim): "not a folder",
        str(repo / "inside"): "repository", str(tmp_path) + "/x\0y": "NUL",
    }
    (tmp_path / "to-etc").symlink_to("/etc")
    refused[str(tmp_path / "to-etc" / "sub")] = "system"
    before = sorted(p.name for p in tmp_path.iterdir())
    for target, why in refused.items():
        answer = client.post_json(f"/api/points/{point}/restore", {"paths": [], "target": target})
        assert answer.status_code == 400, (target, answer.text)
        assert why in answer.json()["error"], (target, answer.json())
    selected = client.post_json(f"/api/points/{point}/restore", {"paths": ["../x"], "target": str(tmp_path / "t")})
    assert selected.status_code == 400
    missing = client.post_json(f"/api/points/{point}/restore", {"paths": ["nope"], "target": str(tmp_path / "t")})
    assert missing.status_code == 404
    assert sorted(p.name for p in tmp_path.iterdir()) == before and victim.read_text() == "keep"
    assert not (repo / "inside").exists()


def test_restore_sessions_answer_404_when_unknown(env):
    client = env["client"]
    assert client.get("/api/restores/0123456789abcdef").status_code == 404
    assert client.get("/api/restores/bad%20id").status_code == 400
    assert client.post_json("/api/restores/0123456789abcdef/cancel").status_code == 404
    assert client.post("/api/points/0123456789/restore", json={"target": "/tmp/x"}).status_code == 403


def test_the_schema_lists_the_routes(env):
    schema = env["client"].get("/api/openapi.json").json()
    for route in ("/api/points", "/api/points/search", "/api/points/diff", "/api/points/{point_id}/tree",
                  "/api/points/{point_id}/file", "/api/points/{point_id}/archive",
                  "/api/points/{point_id}/restore", "/api/restores/{session}", "/api/restores/{session}/cancel"):
        assert route in schema["paths"], route


def no_inline_script_or_style(html: str) -> None:
    import re
    assert "<style" not in html and " style=" not in html
    for tag in re.findall(r"<script[^>]*>", html):
        assert " src=" in tag, tag


def test_the_pages_list_browse_search_and_compare(env):
    client = env["client"]
    newest, oldest = points(env)
    listing = client.get("/points", params={"config": "docs"})
    assert listing.status_code == 200 and f'href="/points/{newest["id"]}"' in listing.text
    assert listing.text.index(newest["short_id"]) < listing.text.index(oldest["short_id"])
    every = client.get("/points").text
    assert "Configuration lost: its snapshots could not be read" in every
    found = client.get("/points", params={"name": "b.txt"}).text
    folder = quote(str(env["src"] / "docs" / "sub"))
    assert f'href="/points/{newest["id"]}?path={folder}"' in found and "sub/b.txt" in found

    browse = client.get(f"/points/{newest['id']}", params={"path": inside(env["src"] / "docs")})
    assert browse.status_code == 200
    html = browse.text
    assert f'/api/points/{newest["id"]}/file?path={quote(str(env["src"] / "docs" / "a.txt"))}' in html
    assert f'/api/points/{newest["id"]}/archive?path={quote(str(env["src"] / "docs" / "sub"))}' in html
    assert "Download as tar" in html and 'data-restore' in html and "/static/points.js" in html
    assert html.count("<h1") == 1 and 'for="restore-target"' in html
    assert 'for="pick-1"' in html and f'value="{oldest["id"]}"' in html  # compare with the other point
    assert client.get(f"/points/{newest['id']}", params={"path": "../x"}).status_code == 400
    assert client.get("/points/0000000000").status_code == 404

    diff = client.get("/points/diff", params={"from": oldest["id"], "to": newest["id"]})
    assert diff.status_code == 200
    assert "added" in diff.text and str(env["src"] / "docs" / "new.txt") in diff.text
    assert "changed" in diff.text and str(env["src"] / "docs" / "a.txt") in diff.text
    assert client.get("/points/diff").status_code == 200
    for text in (listing.text, every, found, html, diff.text):
        no_inline_script_or_style(text)
    script = client.get("/static/points.js")
    assert script.status_code == 200 and "data-restore" in script.text


def test_a_restore_started_from_the_page_shows_its_session(env, tmp_path):
    client = env["client"]
    point = points(env)[0]["id"]
    started = client.post_json(f"/api/points/{point}/restore", {"paths": [], "target": str(tmp_path / "all")})
    session = started.json()["session"]
    assert wait_session(client, session)["status"] == "done"
    assert (tmp_path / "all" / inside(env["src"]) / "big.bin").read_bytes() == BIG
    html = client.get(f"/points/{point}", params={"session": session}).text
    assert f'data-live-session="{session}"' in html and 'data-status="done"' in html and "100 %" in html


def test_the_restore_target_rule_in_the_services_layer(tmp_path):
    from strongroom.errors import UsageError
    from strongroom.services.restore_target import check_restore_target

    assert check_restore_target(str(tmp_path) + "//a/./b/") == str(tmp_path / "a" / "b")
    assert check_restore_target("//srv/restore") == "/srv/restore"
    for bad in ("", "a/b", "/", "//", "/etc/", "/usr/share/x", "/var/lib", str(tmp_path / ".." / "x"), "/tmp/\0"):
        with pytest.raises(UsageError):
            check_restore_target(bad)
    with pytest.raises(UsageError, match="repository"):
        check_restore_target(str(tmp_path / "repo" / "x"), (str(tmp_path / "repo"),))
    assert check_restore_target(str(tmp_path / "repository-next"), (str(tmp_path / "repo"),))


def test_no_answer_holds_the_repository_password(env):
    assert env["responses"] and env["secret"]
    assert not [r for r in env["responses"] if env["secret"] in r]
