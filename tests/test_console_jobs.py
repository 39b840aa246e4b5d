"""The console's jobs, live events, cancel and notification channels, against a
real `strongroom serve` (one worker, so a second job waits in the queue).

Jobs are queued by writing them to the catalog, as any process may (the
catalog is the queue): the daemon's idle worker claims them within its poll.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import httpx
import pytest

from console_server import ConsoleServer
from notify_receivers import HTTPReceiver

from strongroom.services.catalog import Catalog

DEADLINE = 60.0
REPO_PASSWORD = "repo-secret-Qw7-hunter2-zx"
URL_TOKEN = "urltoken-9f8e7d6c5b4a"
HMAC_KEY = "hmac-key-5a4b3c2d1e0f"

# Writes 12 MiB in 1 MiB pieces; after the 8th it touches the mark file and
# then waits while the hold file exists (a run that is caught in the middle).
SOURCE = """
import os, pathlib, sys, time
mark, hold = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for i in range(12):
    sys.stdout.buffer.write(os.urandom(1 << 20))
    sys.stdout.flush()
    if i == 7:
        mark.touch()
        while hold.exists():
            time.sleep(0.05)
    time.sleep(0.08)
"""


def wait_for(what: str, predicate, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Stream:
    """`GET /api/events` read in a thread until `until(event)` is true or the stream ends."""

    def __init__(self, client: httpx.Client, until=lambda event: False) -> None:
        self.client, self.until = client, until
        self.events: list[dict] = []
        self.lines: list[str] = []
        self.status: int | None = None
        self.error: BaseException | None = None
        self.ended = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            with self.client.stream("GET", "/api/events", timeout=httpx.Timeout(DEADLINE)) as answer:
                self.status = answer.status_code
                self.headers = answer.headers
                for line in answer.iter_lines():
                    self.lines.append(line)
                    if line.startswith("data: "):
                        event = json.loads(line[len("data: "):])
                        self.events.append(event)
                        if self.until(event):
                            return
            self.ended = True
        except BaseException as e:  # kept for the test to see
            self.error = e

    def join(self) -> None:
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), "the event stream did not end"
        assert self.error is None, repr(self.error)

    def text(self) -> str:
        return "\n".join(self.lines)


class Served(ConsoleServer):
    """The module's daemon, its configurations, and every answer it gave (for the secrets test)."""

    answers: list[str]

    def queue(self, config: str, kind: str = "incremental", max_attempts: int = 3) -> int:
        catalog = Catalog(str(self.tmp / "catalog.db"))
        try:
            return catalog.add_job(config, kind, 0, max_attempts)
        finally:
            catalog.close()

    def keep(self, answer: httpx.Response) -> httpx.Response:
        self.answers.append(answer.text)
        return answer

    def job(self, client: httpx.Client, job_id: int) -> dict:
        answer = self.keep(client.get(f"/api/jobs/{job_id}"))
        assert answer.status_code == 200, answer.text
        return answer.json()

    def finished(self, client: httpx.Client, job_id: int) -> dict:
        return wait_for(f"job {job_id} to finish",
                        lambda: (lambda j: j if j["status"] in ("succeeded", "failed", "cancelled") else None)(
                            self.job(client, job_id)))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-jobs")
    s = Served(tmp)
    s.answers = []
    script = tmp / "source.py"
    script.write_text(SOURCE)
    data = tmp / "data"
    data.mkdir()
    for i in range(5):
        (data / f"file-{i}.txt").write_text(f"file {i}\n" * 200)
    (tmp / "repo-password").write_text(REPO_PASSWORD + "\n")
    (tmp / "other-password").write_text("the first password\n")
    for name in ("stream", "held"):
        s.ok("config", "add", name, "--source-command",
             f"{sys.executable} {script} {tmp / (name + '.mark')} {tmp / (name + '.hold')}",
             "--stdin-filename", "data.bin", "--target-dir", str(tmp / f"repo-{name}"), "--no-encrypt")
    s.ok("config", "add", "quick", "--source", str(data), "--target-dir", str(tmp / "repo-quick"),
         "--password-file", str(tmp / "repo-password"))
    s.ok("config", "add", "wrongpw", "--source", str(data), "--target-dir", str(tmp / "repo-wrongpw"),
         "--password-file", str(tmp / "other-password"))
    (tmp / "other-password").write_text("not the password it was made with\n")
    s.ok("config", "add", "loud", "--source-command",
         "sh -c 'echo \"<script>alert(1)</script> went wrong\" >&2; exit 3'", "--stdin-filename", "x.bin",
         "--target-dir", str(tmp / "repo-loud"), "--no-encrypt", "--max-attempts", "1")
    s.start("--jobs", "1")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def client(served):
    c = served.signed_in()
    yield c
    c.close()


@pytest.mark.parametrize("line, words", [
    ("wrong password: no key file opens with it", "password was refused"),
    ("upload data/ab: the WebDAV server refused access (HTTP 401): check the user", "refused the user name"),
    ("write packs/1f: [Errno 28] No space left on device", "target is full"),
    ("repository is locked: exclusive lock held by prune on nas (pid 4), 20 s old", "Another process"),
    ("config home: source path /mnt/photos does not exist", "does not exist"),
    ("connect to nas.local:443: the target does not answer (connection refused)", "did not answer"),
    ("check of home (all of the packs) found damage: 2 packs", "found damage"),
    ("cancelled: its configuration was removed", "no longer exists"),
    ("backup home cancelled", "was cancelled"),
    ("something nobody has seen before", None),
])
def test_known_errors_are_said_in_plain_words(line, words):
    from strongroom.services.plain_errors import explain_error
    plain = explain_error(line)
    assert (plain is None) if words is None else (words in plain)


def test_the_schema_builds_with_the_jobs_and_notify_routes(served, client):
    schema = client.get("/api/openapi.json").json()
    for path in ("/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/cancel", "/api/events",
                 "/api/notify/channels", "/api/notify/channels/{name}/test"):
        assert path in schema["paths"], path
    assert "text/event-stream" in schema["paths"]["/api/events"]["get"]["responses"]["200"]["content"]


def test_a_run_streams_its_progress_and_each_change_of_status_until_it_succeeds(served, client):
    job_id = -1
    stream = Stream(served.signed_in(), until=lambda e: e.get("type") == "job" and e["job"] == job_id
                    and e["status"] in ("succeeded", "failed", "cancelled"))
    wait_for("the stream to open", lambda: stream.lines)
    assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
    assert stream.lines[0] == "retry: 3000"
    job_id = served.queue("stream")
    # Caught in the middle of its run: the API answers its live progress.
    wait_for("a progress event", lambda: any(e["type"] == "progress" and e["job"] == job_id for e in stream.events))
    running = served.job(client, job_id)
    assert running["status"] == "running" and running["config"] == "stream" and running["attempts"] == 1
    assert running["started_at"].endswith("Z") and running["finished_at"] is None
    assert running["bytes_read"] is not None and running["seconds_elapsed"] is not None
    assert running["percent_done"] is None or 0 <= running["percent_done"] < 1
    stream.join()
    served.answers.append(stream.text())

    mine = [e for e in stream.events if e.get("job") == job_id]
    statuses = [e["status"] for e in mine if e["type"] == "job"]
    assert statuses[-1] == "succeeded" and "running" in statuses
    assert len(statuses) == len(set(statuses))  # one event per change
    for event in (e for e in mine if e["type"] == "job"):
        assert event["config"] == "stream" and event["kind"] in ("full", "incremental")
    progress = [e["event"] for e in mine if e["type"] == "progress"]
    # A command's output has no size known beforehand: it counts what it read.
    assert any(p.get("message_type") == "status" and p.get("bytes_read") for p in progress)

    done = served.job(client, job_id)
    assert done["status"] == "succeeded" and done["percent_done"] == 1 and done["seconds_remaining"] == 0
    assert done["snapshot_id"] and done["summary"]["total_bytes_processed"] == 12 << 20
    assert done["bytes_done"] == 12 << 20 and done["error"] is None and done["error_plain"] is None
    assert "owner" not in done["summary"]
    listed = served.keep(client.get("/api/jobs", params={"config": "stream"})).json()
    assert [j["id"] for j in listed] == [job_id] and listed[0]["status"] == "succeeded"


def test_a_page_that_opens_in_the_middle_of_a_run_gets_its_progress_at_once(served, client):
    hold = served.tmp / "held.hold"
    mark = served.tmp / "held.mark"
    hold.touch()
    job_id = served.queue("held")
    try:
        wait_for("the source to be held", mark.exists)
        wait_for("its progress", lambda: served.job(client, job_id)["seconds_elapsed"] is not None)
        stream = Stream(served.signed_in(), until=lambda e: e.get("type") == "progress" and e["job"] == job_id)
        stream.join()
        first = stream.events[0]  # before anything changed: what the hub last had of the job
        assert first["type"] == "progress" and first["job"] == job_id and first["event"]["bytes_read"] > 0
    finally:
        hold.unlink()
    assert served.finished(client, job_id)["status"] == "succeeded"


def test_cancel_a_queued_job_and_a_running_one(served, client):
    hold, mark = served.tmp / "held.hold", served.tmp / "held.mark"
    mark.unlink(missing_ok=True)
    hold.touch()
    running_id = served.queue("held")
    try:
        wait_for("the source to be held", mark.exists)
        queued_id = served.queue("quick")  # the one worker is busy: it waits
        assert served.job(client, queued_id)["status"] == "queued"
        assert client.post(f"/api/jobs/{queued_id}/cancel").status_code == 403  # no CSRF token
        answer = served.keep(client.post_json(f"/api/jobs/{queued_id}/cancel"))
        assert answer.status_code == 200, answer.text
        cancelled = answer.json()
        assert cancelled["status"] == "cancelled" and cancelled["attempts"] == 0
        assert cancelled["started_at"] is None and cancelled["finished_at"] is not None
        assert "cancelled" in cancelled["error"] and cancelled["error_plain"].startswith("The job was cancelled")

        answer = served.keep(client.post_json(f"/api/jobs/{running_id}/cancel"))
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "running"  # it stops at its next chunk
    finally:
        hold.unlink()
    stopped = served.finished(client, running_id)
    assert stopped["status"] == "cancelled" and stopped["attempts"] == 1 and stopped["snapshot_id"] is None
    assert "cancelled" in stopped["error"]
    # Not tried again, and the queued one never ran.
    later = served.queue("quick")
    assert served.finished(client, later)["status"] == "succeeded"
    assert served.job(client, running_id)["status"] == "cancelled"
    assert served.job(client, queued_id)["started_at"] is None
    # A cancelled run is not a failure: the status says so in amber, not red.
    held = next(d for d in status_docs(served) if d["config"] == "held")
    assert held["status"] != "red" and held["last_run"]["status"] == "cancelled"

    again = client.post_json(f"/api/jobs/{running_id}/cancel")
    assert again.status_code == 400 and again.json() == {"error": f"job {running_id} is cancelled already"}
    assert client.post_json("/api/jobs/987654/cancel").status_code == 404
    assert client.get("/api/jobs/987654").json() == {"error": "no job 987654"}
    for bad in ("abc", "0", "-1", str(2 ** 70)):
        answer = client.get(f"/api/jobs/{bad}")
        assert answer.status_code == 422 and "error" in answer.json()
    assert client.get("/api/jobs", params={"status": "bogus"}).status_code == 422
    assert client.get("/api/jobs", params={"limit": 501}).status_code == 422
    assert len(client.get("/api/jobs", params={"limit": 2}).json()) == 2
    assert {j["status"] for j in client.get("/api/jobs", params={"status": "cancelled"}).json()} == {"cancelled"}


def test_a_failed_job_says_what_went_wrong_in_plain_words(served, client):
    job = served.finished(client, served.queue("wrongpw"))
    assert job["status"] == "failed" and job["attempts"] == 1  # a refused password is not tried again
    assert "wrong password" in job["error"]
    assert "password" in job["error_plain"] and job["error_plain"] != job["error"]
    loud = served.finished(client, served.queue("loud", max_attempts=1))
    assert loud["status"] == "failed" and "<script>" in loud["error"]
    assert "command" in loud["error_plain"]


def test_pages_show_jobs_and_escape_what_they_show(served, client):
    listed = served.keep(client.get("/jobs"))
    assert listed.status_code == 200 and listed.headers["content-type"].startswith("text/html")
    html = listed.text
    assert "data-live-jobs" in html and "data-reload-on-change" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" not in html  # plain words shown
    assert "succeeded" in html and "failed" in html and "cancelled" in html
    assert 'style="' not in html and "<style" not in html
    failed = next(j for j in client.get("/api/jobs", params={"config": "loud"}).json())
    page = served.keep(client.get(f"/jobs/{failed['id']}"))
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "The command that produces" in page.text and "Cancel this job" not in page.text
    filtered = served.keep(client.get("/jobs", params={"config": "wrongpw", "status": "failed"}))
    assert filtered.status_code == 200 and "wrongpw" in filtered.text and "/jobs/" in filtered.text
    assert "Job " + str(failed["id"]) not in filtered.text
    assert client.get("/jobs", params={"config": "<b>x</b>"}).text.count("<b>x</b>") == 0

    done = next(j for j in client.get("/api/jobs", params={"config": "stream"}).json())
    page = served.keep(client.get(f"/jobs/{done['id']}"))
    assert f'data-live-job="{done["id"]}"' in page.text and f'href="/points/{done["snapshot_id"]}"' in page.text
    assert 'value="1' in page.text and "100 %" in page.text and "total bytes processed" in page.text
    assert client.get("/jobs/987654").status_code == 404
    assert client.get("/jobs/nope").status_code == 422

    hold, mark = served.tmp / "held.hold", served.tmp / "held.mark"
    mark.unlink(missing_ok=True)
    hold.touch()
    job_id = served.queue("held")
    try:
        wait_for("the source to be held", mark.exists)
        page = served.keep(client.get(f"/jobs/{job_id}"))
        assert f'data-api="POST /api/jobs/{job_id}/cancel"' in page.text and "<progress" in page.text
        assert "data-reload-on-done" in page.text
    finally:
        hold.unlink()
    served.finished(client, job_id)
    assert served.signed_in().get("/jobs").status_code == 200
    assert served.client().get("/api/jobs").status_code == 401
    assert served.client().get("/api/events").status_code == 401


def test_notification_channels_are_listed_without_secrets_and_send_a_test(served, client, tmp_path):
    receiver = HTTPReceiver()
    try:
        key = tmp_path / "hmac"
        key.write_text(HMAC_KEY)
        served.ok("notify", "add", "hook", "--webhook", f"{receiver.url}/hook/{URL_TOKEN}", "--hmac-key-file",
                  str(key), "--config", "quick")
        listed = served.keep(client.get("/api/notify/channels")).json()
        assert listed == [{"name": "hook", "kind": "webhook", "target": f"http://127.0.0.1:{receiver.port}/… (signed)",
                           "min_severity": "warning", "configs": ["quick"], "signed": True}]
        sent = served.keep(client.post_json("/api/notify/channels/hook/test"))
        assert sent.status_code == 200 and sent.json()["delivered"] is True
        got = receiver.at(f"/hook/{URL_TOKEN}")
        assert len(got) == 1 and b"test message" in got[0].body and "X-Strongroom-Signature" in got[0].headers

        receiver.status = 500
        refused = served.keep(client.post_json("/api/notify/channels/hook/test")).json()
        assert refused["delivered"] is False and refused["error"] and "\n" not in refused["error"]
        assert client.post("/api/notify/channels/hook/test").status_code == 403  # no CSRF token
        assert client.post_json("/api/notify/channels/nope/test").json() == {
            "error": "no notification channel named 'nope'"}
        assert client.post_json("/api/notify/channels/a%20b/test").status_code == 422

        page = served.keep(client.get("/notify"))
        assert page.status_code == 200 and 'data-api="POST /api/notify/channels/hook/test"' in page.text
        assert "Send a test" in page.text and '<script src="/static/notify.js" defer></script>' in page.text
        assert client.get("/static/notify.js").status_code == 200
    finally:
        receiver.close()


def open_raw_stream(server: ConsoleServer, client: httpx.Client) -> socket.socket:
    """An event stream on a socket of its own, its answer's head read: closing
    the socket is a browser that goes away."""
    url = httpx.URL(server.url)
    sock = socket.create_connection((url.host, url.port), timeout=DEADLINE)
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    sock.sendall(f"GET /api/events HTTP/1.1\r\nHost: {url.host}:{url.port}\r\nCookie: {cookie}\r\n"
                 f"Accept: text/event-stream\r\n\r\n".encode())
    head = b""
    while b"retry: 3000" not in head:
        piece = sock.recv(4096)
        assert piece, head
        head += piece
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def test_the_33rd_event_stream_is_refused(served):
    client = served.signed_in()
    streams = [open_raw_stream(served, client) for _ in range(32)]
    try:
        refused = client.get("/api/events")
        assert refused.status_code == 503 and "too many event streams" in refused.json()["error"]
    finally:
        for sock in streams:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
    # A stream that went away gives its place back.
    wait_for("a stream slot again", lambda: _opens(client))
    client.close()


def status_docs(server: ConsoleServer) -> list[dict]:
    return json.loads(server.ok("status", "--json"))


def _opens(client: httpx.Client) -> bool:
    with client.stream("GET", "/api/events") as answer:
        return answer.status_code == 200


def test_no_secret_reaches_any_answer(served, client):
    for url in ("/api/jobs?limit=500", "/api/notify/channels", "/jobs", "/notify", "/api/openapi.json"):
        served.keep(client.get(url))
    for job in client.get("/api/jobs").json():
        served.keep(client.get(f"/jobs/{job['id']}"))
    text = "\n".join(served.answers)
    assert len(served.answers) > 10
    for secret in (REPO_PASSWORD, URL_TOKEN, HMAC_KEY, "the first password"):
        assert secret not in text


def test_serve_stops_promptly_with_an_event_stream_open(tmp_path):
    with ConsoleServer(tmp_path) as server:
        server.start()
        stream = Stream(server.signed_in())
        wait_for("the stream to open", lambda: stream.lines)
        assert server.stop() == 0
        # The stream was ended by the console (a complete answer), not cut by the server's deadline.
        stream.join()
        assert stream.ended and stream.lines[0] == "retry: 3000"
        assert json.loads(server.output()[0].splitlines()[-1])["type"] == "serve_stopped"

