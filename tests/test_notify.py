"""Notifications to real receivers on 127.0.0.1: mail over SMTP (aiosmtpd, with
AUTH over STARTTLS or implicit TLS), signed webhooks, an Apprise json:// URL
and heartbeat pings; a failing backup notified once after its retries, a
reminder a day later (on a moved clock), one "recovered"; the severity and
configuration filters; no secret in a message, the catalog or the output."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from notify_receivers import HTTPReceiver, SMTPReceiver, make_certificate
from strongroom.notify.events import Event
from strongroom.notify.policy import AlertState, decide
import forked_cli

SMTP_PASSWORD = "smtp-s3cret-Xq7"
HMAC_KEY = "hmac-k3y-Zr9"
HOOK_TOKEN = "hook-t0ken-Lm4"
BEAT_TOKEN = "beat-t0ken-Pw2"
SECRETS = (SMTP_PASSWORD, HMAC_KEY, HOOK_TOKEN, BEAT_TOKEN)
_SCRUBBED = ("STRONGROOM_PASSWORD", "STRONGROOM_PASSWORD_FILE", "STRONGROOM_PASSWORD_COMMAND", "STRONGROOM_REPO",
             "STRONGROOM_SMTP_PASSWORD", "STRONGROOM_CATALOG", "STRONGROOM_SECRETS")


class Managed:
    """The real `strongroom` in subprocesses, with its catalog and secrets in tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.catalog = tmp_path / "state" / "catalog.db"
        self.secrets = tmp_path / "state" / "secrets.json"
        self.env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        self.env.update(STRONGROOM_CATALOG=str(self.catalog), STRONGROOM_SECRETS=str(self.secrets),
                        STRONGROOM_CACHE_DIR=str(tmp_path / "cache"), STRONGROOM_SECRETS_BACKEND="file")
        self.argv: list[list[str]] = []

    def run(self, *args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
        self.argv.append(list(args))
        done = forked_cli.run([*args],
                              env={**self.env, **(env or {})}, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"strongroom {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout.decode()}\n{done.stderr.decode()}")
        return done

    def json(self, *args: str) -> list[dict]:
        done = self.run(*args, "--json", check=True)
        return [json.loads(line) for line in done.stdout.decode().splitlines()]

    def catalog_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.catalog.parent.glob("catalog.db*"))


@pytest.fixture
def m(tmp_path) -> Managed:
    return Managed(tmp_path)


@pytest.fixture
def http():
    receiver = HTTPReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("cert"))


def secret_file(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")
    return str(path)


def assert_no_secret(*blobs: bytes | str) -> None:
    for blob in blobs:
        text = blob if isinstance(blob, str) else blob.decode("utf-8", "replace")
        for secret in SECRETS:
            assert secret not in text


# ---- the policy: a pure function of the state, the event and the time -----------------------


def test_policy_first_failure_one_reminder_a_day_then_recovered():
    day = 86400.0
    state = None
    sent = []
    # Failures every hour for 30 hours, then a success.
    for hour in range(30):
        decision, state = decide(state, "failing", True, "error", False, hour * 3600.0)
        sent.append((hour, decision.send))
    assert [(h, s) for h, s in sent if s] == [(0, "started"), (24, "reminder")]
    assert state.active and state.since == 0.0 and state.repeats == 30
    decision, state = decide(state, "failing", False, "info", False, 30 * 3600.0)
    assert decision.send == "recovered" and decision.severity == "error" and decision.since == 0.0
    assert not state.active
    # Nothing was wrong: a success says nothing, a passed DR test is news.
    assert decide(state, "failing", False, "info", False, 31 * 3600.0)[0].send is None
    assert decide(None, "dr_test", False, "info", True, 0.0)[0].send == "news"
    # A new failure after the recovery starts again, however soon.
    assert decide(state, "failing", True, "error", False, 30 * 3600.0 + 1)[0].send == "started"
    assert decide(AlertState("c", "failing", True, 0.0, 0.0, 3, "error"), "failing", True, "error", False,
                  day - 1)[0].send is None


def test_one_message_per_event_even_when_it_ends_one_condition_and_starts_another():
    from strongroom.notify.events import run_failed, run_finished
    from strongroom.notify.notifier import compose
    from strongroom.notify.policy import decide_event

    states: dict = {}
    decisions, changed = decide_event(states, run_failed("docs", 100.0, "boom\nTraceback: secret", 3))
    states.update(changed)
    message, route = compose(run_failed("docs", 100.0, "boom\nTraceback: secret", 3), decisions)
    assert message.event == "run_failed" and route == "error" and "Traceback" not in message.text
    # A run with warnings ends the failures and starts the warnings: one message says both.
    warned = run_finished("docs", 200.0, "2 files could not be read", "abc")
    decisions, changed = decide_event(states, warned)
    states.update(changed)
    message, route = compose(warned, decisions)
    assert message.event == "run_warning" and message.severity == "warning" and route == "error"
    assert "finished with warnings: 2 files could not be read" in message.text
    assert "docs has recovered: no more failing backups" in message.text
    assert message.details["recovered"] == ["failing"] and message.details["notice"] == "started"
    clean = run_finished("docs", 300.0, None, "def")
    decisions, changed = decide_event(states, clean)
    message, route = compose(clean, decisions)
    assert message.event == "recovered" and route == "warning" and "no more backup warnings" in message.text
    states.update(changed)
    assert compose(clean, decide_event(states, clean)[0])[0] is None


# ---- channels, each tried with `notify test` ----------------------------------------------------


def test_email_with_login_over_starttls_and_implicit_tls(m, tmp_path, cert):
    users = {"alerts": SMTP_PASSWORD}
    starttls = SMTPReceiver("starttls", cert, users)
    implicit = SMTPReceiver("tls", cert, users)
    plain = SMTPReceiver("plain")
    try:
        password = secret_file(tmp_path, "smtp.pw", SMTP_PASSWORD)
        m.run("notify", "add", "mail", "--email", "ops@example.org", "--email", "oncall@example.org",
              "--smtp", starttls.url, "--starttls", "--smtp-user", "alerts", "--smtp-password-file", password,
              "--smtp-ca-file", str(cert[0]), "--from", "backups@example.org", check=True)
        m.run("notify", "add", "mail-tls", "--email", "ops@example.org", "--smtp", implicit.url,
              "--smtp-user", "alerts", "--smtp-ca-file", str(cert[0]), env={"STRONGROOM_SMTP_PASSWORD": SMTP_PASSWORD},
              check=True)
        m.run("notify", "add", "mail-plain", "--email", "ops@example.org", "--smtp", plain.url, check=True)
        for name in ("mail", "mail-tls", "mail-plain"):
            done = m.run("notify", "test", name, check=True)
            assert f"sent a test message on channel {name}" in done.stdout.decode()
        [(sender, rcpts, body, login)] = starttls.messages
        assert sender == "backups@example.org" and rcpts == ["ops@example.org", "oncall@example.org"]
        assert login == "alerts" and b"Subject: [strongroom] test message" in body
        assert implicit.messages[0][3] == "alerts" and len(plain.messages) == 1
        assert starttls.logins == implicit.logins == [("alerts", True)]

        # A login without TLS is refused when the channel is added; a wrong password when it is tried.
        done = m.run("notify", "add", "bad", "--email", "ops@example.org", "--smtp", plain.url, "--smtp-user", "x",
                     env={"STRONGROOM_SMTP_PASSWORD": "y"})
        assert done.returncode == 2 and "needs TLS" in done.stderr.decode()
        m.run("notify", "add", "wrong", "--email", "ops@example.org", "--smtp", starttls.url, "--starttls",
              "--smtp-user", "alerts", "--smtp-ca-file", str(cert[0]),
              env={"STRONGROOM_SMTP_PASSWORD": "not-" + SMTP_PASSWORD}, check=True)
        done = m.run("notify", "test", "wrong")
        err = done.stderr.decode()
        assert done.returncode == 1 and "refused the login of alerts" in err and len(err.strip().splitlines()) == 1
        assert "not-" not in err
        # Without the CA file the self-signed certificate is not trusted.
        m.run("notify", "add", "untrusted", "--email", "ops@example.org", "--smtp", implicit.url, check=True)
        done = m.run("notify", "test", "untrusted")
        assert done.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in done.stderr.decode()

        listed = [e for e in m.json("notify", "list") if e["type"] == "channel"]
        mail = next(e for e in listed if e["name"] == "mail")
        assert mail["kind"] == "email" and mail["secrets"] == ["password"] and mail["settings"]["user"] == "alerts"
        assert_no_secret(m.catalog_bytes(), json.dumps(listed), *(b for _, _, b, _ in starttls.messages))
        assert any(SMTP_PASSWORD in v for v in json.loads(m.secrets.read_text())["secrets"].values())
    finally:
        for server in (starttls, implicit, plain):
            server.close()


def test_webhook_signed_apprise_json_and_heartbeat(m, tmp_path, http):
    hook = secret_file(tmp_path, "hook.url", f"{http.url}/hook/{HOOK_TOKEN}")
    key = secret_file(tmp_path, "hmac.key", HMAC_KEY)
    beat = secret_file(tmp_path, "beat.url", f"{http.url}/ping/{BEAT_TOKEN}")
    m.run("notify", "add", "hook", "--webhook-file", hook, "--hmac-key-file", key, check=True)
    m.run("notify", "add", "plain-hook", "--webhook", f"{http.url}/open", "--json", check=True)
    m.run("notify", "add", "app", "--apprise", f"json://127.0.0.1:{http.port}/apprise", check=True)
    m.run("notify", "add", "beat", "--heartbeat-file", beat, check=True)
    for name in ("hook", "plain-hook", "app", "beat"):
        m.run("notify", "test", name, check=True)

    [signed] = http.at("/hook/")
    body = json.loads(signed.body)
    assert {"event", "severity", "config", "message", "time"} <= set(body)
    assert body["event"] == "test" and body["severity"] == "info" and body["config"] is None
    expected = "sha256=" + hmac.new(HMAC_KEY.encode(), signed.body, hashlib.sha256).hexdigest()
    assert signed.headers["X-Strongroom-Signature"] == expected
    [unsigned] = http.at("/open")
    assert "X-Strongroom-Signature" not in unsigned.headers
    [apprise] = http.at("/apprise")
    sent = json.loads(apprise.body)
    assert sent["title"] == "test message" and "on channel app" in sent["message"]
    [ping] = http.at("/ping/")
    assert ping.path == f"/ping/{BEAT_TOKEN}" and ping.method == "POST"

    listed = [e for e in m.json("notify", "list") if e["type"] == "channel"]
    assert {e["name"]: e["target"] for e in listed}["hook"] == f"http://127.0.0.1:{http.port}/… (signed)"
    text = m.run("notify", "list", check=True).stdout.decode()
    assert "4 channels" in text
    assert_no_secret(m.catalog_bytes(), text, json.dumps(listed), *(" ".join(a) for a in m.argv))

    # A receiver that fails: one line, exit 1; removing a channel forgets its secrets.
    http.status = 500
    done = m.run("notify", "test", "hook")
    assert done.returncode == 1 and done.stderr.decode().strip() == "strongroom: http://127.0.0.1:" \
        f"{http.port}/… answered HTTP 500"
    m.run("notify", "remove", "hook", check=True)
    assert HOOK_TOKEN not in m.secrets.read_text() and HMAC_KEY not in m.secrets.read_text()
    done = m.run("notify", "test", "hook")
    assert done.returncode == 2 and "no notification channel named 'hook'" in done.stderr.decode()
    done = m.run("notify", "add", "x", "--apprise", "nonsense-not-a-service://foo")
    assert done.returncode == 2 and "Apprise does not understand this URL" in done.stderr.decode()
    done = m.run("notify", "add", "x", "--webhook", "http://h/", "--config", "nope")
    assert done.returncode == 2 and "no configuration or DR plan named nope" in done.stderr.decode()


# ---- a failing backup: once after its retries, a reminder a day later, one recovery ---------------


def test_a_failing_backup_is_notified_once_reminded_daily_and_recovers(tmp_path, http, monkeypatch):
    from strongroom import BackupConfig, create_backup_manager
    from strongroom.errors import StrongroomError
    from strongroom.notify.channels import ChannelSpec, add_channel

    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    offset = [0.0]
    manager = create_backup_manager(db_path=str(tmp_path / "c.db"), secrets_path=str(tmp_path / "secrets.json"),
                                    cache_root=str(tmp_path / "cache"), retry_delay=0.05,
                                    clock=lambda: time.time() + offset[0])
    try:
        sources = {}
        for name in ("docs", "other"):
            sources[name] = tmp_path / "src" / name
            sources[name].mkdir(parents=True)
            (sources[name] / "f.txt").write_text(name)
            manager.add_config(BackupConfig(name=name, source_paths=[str(sources[name])],
                                            target_path=str(tmp_path / "repo" / name), max_attempts=2))
        secrets = manager.backup_service.secrets
        manager.add_notification_channel(ChannelSpec(
            "hook", "webhook", {"shown_url": "hook"}, {"url": f"{http.url}/hook/{HOOK_TOKEN}"}))
        add_channel(manager.catalog, secrets, ChannelSpec(
            "errors-of-docs", "apprise", {}, {"url": f"json://127.0.0.1:{http.port}/apprise"},
            min_severity="error", configs=("docs",)))
        add_channel(manager.catalog, secrets, ChannelSpec(
            "of-other", "webhook", {}, {"url": f"{http.url}/other"}, configs=("other",)))
        add_channel(manager.catalog, secrets, ChannelSpec(
            "beat", "heartbeat", {}, {"url": f"{http.url}/ping/{BEAT_TOKEN}"}, configs=("docs",)))

        manager.manual_backup("docs")
        assert http.at("/hook/") == [] and [r.path for r in http.at("/ping/")] == \
            [f"/ping/{BEAT_TOKEN}/start", f"/ping/{BEAT_TOKEN}"]

        shutil.rmtree(sources["docs"])

        def hook_events() -> list[dict]:
            return [json.loads(r.body) for r in http.at("/hook/")]

        for run in range(3):
            with pytest.raises(StrongroomError, match="source path .* does not exist"):
                manager.manual_backup("docs", timeout=60)
            offset[0] += 3600
        [failed] = hook_events()
        assert failed["event"] == "run_failed" and failed["severity"] == "error" and failed["config"] == "docs"
        assert "failed after 2 attempts" in failed["message"] and "does not exist" in failed["message"]
        assert "What to do:" in failed["message"] and "strongroom jobs docs" in failed["message"]
        assert len(http.at("/apprise")) == 1  # its minimum severity is error: a failure is one
        assert len(http.at(f"/ping/{BEAT_TOKEN}/fail")) == 3  # a heartbeat hears every run

        offset[0] += 86400
        with pytest.raises(StrongroomError):
            manager.manual_backup("docs", timeout=60)
        with pytest.raises(StrongroomError):
            manager.manual_backup("docs", timeout=60)
        events = hook_events()
        assert [e["event"] for e in events] == ["run_failed", "run_failed"]
        assert events[1]["message"].count("This has been so since") == 1 and "(4 times)" in events[1]["message"]
        assert events[1]["details"]["notice"] == "reminder"

        sources["docs"].mkdir()
        (sources["docs"] / "f.txt").write_text("back")
        manager.manual_backup("docs")
        manager.manual_backup("docs")
        events = hook_events()
        assert [e["event"] for e in events] == ["run_failed", "run_failed", "recovered"]
        assert events[2]["severity"] == "info" and "docs has recovered" in events[2]["message"]
        # The recovery reaches the channel that heard the failure, whatever its minimum severity.
        assert [json.loads(r.body)["title"] for r in http.at("/apprise")] == \
            ["backup of docs failed", "still: backup of docs failed", "docs recovered"]

        # The configuration filter: `other` was never failing, and its channel heard nothing of docs.
        assert http.at("/other") == []
        # The minimum severity: a warning reaches `hook` (warning) but not `errors-of-docs` (error).
        manager.notifier.emit(Event("overdue", "docs", manager.notifier.now(), details={"since": "for 3 days"}))
        assert hook_events()[-1]["event"] == "overdue" and len(http.at("/apprise")) == 3
        manager.notifier.emit(Event("overdue", "docs", manager.notifier.now()))
        assert len(hook_events()) == 4  # still overdue: no second message the same day

        states = {s["condition"]: s for s in manager.catalog.alert_states("docs")}
        assert not states["failing"]["active"] and states["overdue"]["active"]
        catalog = b"".join(p.read_bytes() for p in tmp_path.glob("c.db*"))
        assert_no_secret(catalog, *(r.body for r in http.requests))
    finally:
        manager.close()


def test_a_failed_send_does_not_change_the_result(m, tmp_path, http):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(tmp_path / "repo"), check=True)
    m.run("notify", "add", "hook", "--webhook", f"{http.url}/hook", "--min-severity", "info", check=True)
    m.run("notify", "add", "dead", "--webhook", "http://127.0.0.1:9/", check=True)
    http.status = 503
    done = m.run("backup", "--config", "docs", "--attempts", "1", check=True)
    assert done.returncode == 0
    shutil.rmtree(src)
    done = m.run("backup", "--config", "docs", "--attempts", "1")
    err = done.stderr.decode()
    assert done.returncode == 1 and "does not exist" in err
    assert "notification channel hook: run_failed not sent: http://127.0.0.1:" in err and "HTTP 503" in err
    assert "notification channel dead: run_failed not sent" in err
    [sent] = [json.loads(r.body) for r in http.at("/hook")]
    assert sent["event"] == "run_failed" and sent["config"] == "docs"


def test_dr_rehearsals_are_notified_with_their_verdict(tmp_path, http, monkeypatch):
    import strongroom
    from strongroom.notify.channels import ChannelSpec, add_channel

    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    with strongroom.create_backup_manager(db_path=str(tmp_path / "c.db"), secrets_path=str(tmp_path / "s.json"),
                                          cache_root=str(tmp_path / "cache")) as manager:
        src = tmp_path / "src"
        src.mkdir()
        (src / "a.txt").write_text("a")
        manager.add_config(strongroom.BackupConfig(name="files", source_paths=[str(src)],
                                                   target_path=str(tmp_path / "repo")))
        manager.manual_backup("files")
        add_channel(manager.catalog, manager.backup_service.secrets, ChannelSpec(
            "hook", "webhook", {}, {"url": f"{http.url}/hook"}, min_severity="info", configs=("files",)))
        dr = strongroom.DisasterRecoveryManager(manager.backup_service)
        dr.create_dr_plan("strict", recovery_order=["files"], target_base_path=str(tmp_path / "prod"),
                          rto="0.001s")
        dr.create_dr_plan("nightly", recovery_order=["files"], target_base_path=str(tmp_path / "prod"))
        failed = dr.test_dr_plan("strict", scratch=str(tmp_path / "scratch1"))
        passed = dr.test_dr_plan("nightly", scratch=str(tmp_path / "scratch2"))
        assert failed.verdict == "fail" and passed.verdict == "pass"
        events = [json.loads(r.body) for r in http.at("/hook")]
        # The channel is filtered to configuration files: the plans restore it, so it hears of both.
        assert [(e["event"], e["config"], e["severity"]) for e in events] == \
            [("dr_test_failed", "strict", "error"), ("dr_test_passed", "nightly", "info")]
        assert "RTO" in events[0]["message"] and "strongroom dr report strict" in events[0]["message"]
        dr.test_dr_plan("nightly", scratch=str(tmp_path / "scratch3"))
        assert len(http.at("/hook")) == 3  # a pass is news each time, at severity info


def test_overdue_and_filling_targets_raise_once_and_clear(tmp_path, http, monkeypatch):
    from strongroom import create_backup_manager
    from strongroom.notify.channels import ChannelSpec
    from strongroom.notify.checks import overdue_event, target_full_events
    from strongroom.services.results import StorageTrend, TargetTrend, TrendLine

    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    day = 86400.0
    assert overdue_event("docs", 1000.0, day, 1000.0 + day) is None
    assert overdue_event("docs", None, day, 5.0).details["since"] == "ever"

    def trend(full_in_days):
        line = TrendLine(10.0, 10**9, 7 * 10**9, 10**10, 5 * 10**9, full_in_days, None, full_in_days is None)
        return StorageTrend(90.0, {}, {"/repo": TargetTrend("/repo", ("docs",), line)})

    with create_backup_manager(db_path=str(tmp_path / "c.db"), secrets_path=str(tmp_path / "s.json")) as manager:
        manager.add_notification_channel(ChannelSpec("hook", "webhook", {}, {"url": f"{http.url}/hook"}))
        notifier = manager.notifier
        for hours in range(0, 30, 6):  # checked every 6 hours for a day and more
            now = 10 * day + hours * 3600
            notifier.emit(overdue_event("docs", 0.0, 2 * day, now))
            for event in target_full_events(trend(5.0), 14, now):
                notifier.emit(event)
        for event in target_full_events(trend(None), 14, 12 * day):  # pruned: not filling any more
            notifier.emit(event)
        sent = [json.loads(r.body) for r in http.at("/hook")]
        assert [(e["event"], e["details"]["notice"]) for e in sent] == [
            ("overdue", "started"), ("target_full_soon", "started"),
            ("overdue", "reminder"), ("target_full_soon", "reminder"), ("recovered", "recovered")]
        assert "has no successful backup since 1970-01-01 00:00 UTC" in sent[0]["message"]
        assert "full in about 5.0 days" in sent[1]["message"]


def test_verification_reports_damage_once(tmp_path, http, monkeypatch):
    import strongroom
    from strongroom.notify.channels import ChannelSpec

    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    with strongroom.create_backup_manager(db_path=str(tmp_path / "c.db"), secrets_path=str(tmp_path / "s.json"),
                                          cache_root=str(tmp_path / "cache")) as manager:
        src = tmp_path / "src"
        src.mkdir()
        (src / "a.txt").write_text("a" * 1000)
        manager.add_config(strongroom.BackupConfig(name="files", source_paths=[str(src)],
                                                   target_path=str(tmp_path / "repo")))
        point = manager.manual_backup("files").snapshot_id
        manager.add_notification_channel(ChannelSpec("hook", "webhook", {}, {"url": f"{http.url}/hook"},
                                                     min_severity="info"))
        assert manager.validator.validate_backup(point).ok
        packs = [p for p in (tmp_path / "repo" / "data").rglob("*") if p.is_file()]
        assert packs
        for pack in packs:
            pack.unlink()
        for _ in range(2):
            assert not manager.validator.validate_backup(point).ok
        sent = [json.loads(r.body) for r in http.at("/hook")]
        assert [(e["event"], e["severity"]) for e in sent] == [("verification_passed", "info"),
                                                               ("damage_found", "error")]
        assert "Damage was found in the repository of configuration files" in sent[1]["message"]
        assert "What to do: Run `strongroom check --config files --read-data`" in sent[1]["message"]
