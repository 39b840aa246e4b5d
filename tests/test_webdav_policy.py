"""Retry, request budget, vendor profiles and WebDAV URLs, with a fake clock."""

from __future__ import annotations

import json
import threading

import pytest

from strongroom.errors import AuthenticationFailed, StorageError, TransientStorageError, UsageError
from strongroom.storage import open_storage
from strongroom.storage.base import ObjectInfo, Storage
from strongroom.storage.budget import RequestBudget
from strongroom.storage.retry import RetryingStorage, RetryPolicy
from strongroom.storage.vendors import guess_vendor, parse_budget, vendor_profile


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Flaky(Storage):
    """Fails with the given errors in order, then answers."""

    url = "flaky:"

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def _maybe_fail(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)

    def read(self, name, offset=0, length=None):
        self._maybe_fail()
        return b"data"

    def write(self, name, data):
        self._maybe_fail()

    def delete(self, name):
        self._maybe_fail()

    def list(self, prefix):
        self._maybe_fail()
        yield ObjectInfo(f"{prefix}/a", 1)
        yield ObjectInfo(f"{prefix}/b", 2)

    def stat(self, name):
        self._maybe_fail()
        return ObjectInfo(name, 4)


def retrying(inner: Storage, clock: FakeClock, **policy) -> RetryingStorage:
    return RetryingStorage(inner, RetryPolicy(**policy), clock=clock, sleep=clock.sleep)


def test_transient_errors_are_retried_with_growing_back_off():
    clock = FakeClock()
    inner = Flaky([TransientStorageError("HTTP 502")] * 4)
    assert retrying(inner, clock, base_delay=1.0).read("x") == b"data"
    assert inner.calls == 5
    assert len(clock.slept) == 4
    # Full jitter within [0.5, 1] of 1, 2, 4, 8 seconds.
    for attempt, delay in enumerate(clock.slept):
        assert 0.5 * 2 ** attempt <= delay <= 2 ** attempt


class Spans(Storage):
    """Hands out spans from one stream (as WebDAV does) that breaks once, at the third span."""

    url = "spans:"

    def __init__(self) -> None:
        self.asked: list[list[tuple[int, int]]] = []

    def read(self, name, offset=0, length=None):
        raise AssertionError("spans are read through read_spans")

    def read_spans(self, name, spans):
        spans = list(spans)
        self.asked.append(spans)
        for number, (offset, length) in enumerate(spans):
            if len(self.asked) == 1 and number == 2:
                raise TransientStorageError("connection failed while reading")
            yield bytes([offset % 251]) * length

    write = delete = list = stat = read


def test_a_span_read_broken_midway_resumes_at_the_first_span_not_handed_out():
    clock = FakeClock()
    inner = Spans()
    spans = [(0, 3), (10, 2), (20, 4), (30, 0), (40, 5)]
    got = list(retrying(inner, clock, base_delay=1.0).read_spans("pack", spans))
    assert got == [bytes([o % 251]) * n for o, n in spans]
    assert inner.asked == [spans, spans[2:]]
    assert len(clock.slept) == 1
    # A storage without a stream of its own reads each span on its own, each retried alike.
    flaky = Flaky([TransientStorageError("HTTP 502")])
    assert list(retrying(flaky, clock, base_delay=1.0).read_spans("pack", spans)) == [b"data"] * len(spans)
    assert flaky.calls == len(spans) + 1


def test_retry_after_is_honoured():
    clock = FakeClock()
    inner = Flaky([TransientStorageError("HTTP 429", retry_after=7.0)])
    retrying(inner, clock).write("x", b"1")
    assert clock.slept == [7.0]


def test_throttling_waits_long():
    clock = FakeClock()
    inner = Flaky([TransientStorageError("503 BlockedTemporarily", throttled=True)] * 2)
    retrying(inner, clock, blocked_wait=40.0).stat("x")
    assert len(clock.slept) == 2 and all(36.0 <= d <= 44.0 for d in clock.slept)


def test_gives_up_at_the_deadline_with_a_clear_error():
    clock = FakeClock()
    inner = Flaky([TransientStorageError("HTTP 503 Service Unavailable")] * 1000)
    with pytest.raises(StorageError) as caught:
        retrying(inner, clock, deadline=60.0, base_delay=1.0).read("x")
    assert not isinstance(caught.value, TransientStorageError)
    assert "HTTP 503" in str(caught.value) and "gave up after" in str(caught.value)
    assert clock.now - 1_000_000.0 <= 60.0


def test_refused_credentials_are_never_retried():
    clock = FakeClock()
    inner = Flaky([AuthenticationFailed("check the WebDAV app password")] * 5)
    with pytest.raises(AuthenticationFailed):
        retrying(inner, clock).read("x")
    assert inner.calls == 1 and clock.slept == []


def test_a_listing_without_request_steps_is_retried_whole():
    # Flaky has no list_by_request of its own: the default takes the listing
    # in one attempt, so a retry never yields an entry twice.
    clock = FakeClock()
    inner = Flaky([TransientStorageError("reset")])
    assert [i.name for i in retrying(inner, clock).list("data")] == ["data/a", "data/b"]


def test_a_wait_is_told_once_with_its_end_and_its_recovery():
    clock = FakeClock()
    events = []
    errors = [TransientStorageError("delete x: HTTP 503 Service Unavailable", reason="HTTP 503 Service Unavailable")]
    storage = RetryingStorage(Flaky(errors * 6), RetryPolicy(deadline=600.0), on_wait=events.append,
                              clock=clock, sleep=clock.sleep, wall_clock=lambda: 1_800_000_000.0)
    storage.delete("x")
    assert len(clock.slept) == 6
    assert [e["type"] for e in events] == ["waiting", "recovered"], events
    waiting = events[0]
    # Told at the second failure, half a second or less after the first: the
    # deadline runs from the first attempt, 600 s after it.
    assert waiting["reason"] == "HTTP 503 Service Unavailable"
    assert waiting["until"] == "2027-01-15T08:09:59Z"
    assert waiting["message"] == "waiting for flaky:: HTTP 503 Service Unavailable; retrying until 08:09:59 UTC"


def test_a_request_that_passes_at_its_first_retry_is_not_a_wait():
    clock = FakeClock()
    events = []
    storage = RetryingStorage(Flaky([TransientStorageError("HTTP 500")]), RetryPolicy(), on_wait=events.append,
                              clock=clock, sleep=clock.sleep)
    storage.delete("x")
    assert len(clock.slept) == 1 and events == []


def test_budget_lets_no_more_than_its_count_through_in_any_window(tmp_path):
    clock = FakeClock()
    events = []
    state = str(tmp_path / "budget.json")
    budget = RequestBudget(10, 100.0, state, on_wait=events.append, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(10):
        budget.take()
        sent.append(clock())
        clock.sleep(1.0)
    assert clock.slept == [1.0] * 10
    budget.take()  # the eleventh waits until the first leaves the window: at t=100
    sent.append(clock())
    assert clock.slept[-1] == pytest.approx(90.0)
    assert "request budget" in events[0]["message"]
    for _ in range(40):
        budget.take()
        sent.append(clock())
    # A bucket that starts full and refills would let 2x through in one window.
    for i, start in enumerate(sent):
        assert sum(1 for t in sent[i:] if t < start + 100.0) <= 10


def test_a_spent_budget_is_told_at_most_once_per_window():
    clock = FakeClock()
    events = []
    budget = RequestBudget(10, 100.0, None, on_wait=events.append, clock=clock, sleep=clock.sleep)
    started = clock()
    for _ in range(10):
        budget.take()
        clock.now += 1.0
    assert clock.slept == []
    for _ in range(60):
        budget.take()  # each waits for the one a window older to leave it
    assert len(clock.slept) == 60
    windows = (clock() - started) / 100.0
    assert all(e["type"] == "waiting" and e["until"].endswith("Z") for e in events), events
    assert 1 <= len(events) <= windows + 1, (len(events), windows)


def test_budget_persists_across_runs_and_processes(tmp_path):
    clock = FakeClock()
    state = str(tmp_path / "budget.json")
    first = RequestBudget(5, 1800.0, state, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        first.take()
    assert len(json.loads(open(state).read())["times"]) == 5
    second = RequestBudget(5, 1800.0, state, clock=clock, sleep=clock.sleep)  # a later run
    assert second.available() == 0
    second.take()
    assert clock.slept and clock.slept[0] == pytest.approx(1800.0)
    # A state file of another form (or damaged) starts afresh instead of failing.
    with open(state, "w") as f:
        f.write('{"tokens": 0.5, "updated": 1}')
    assert RequestBudget(5, 1800.0, state, clock=clock, sleep=clock.sleep).available() == 5


def test_budget_is_shared_between_threads(tmp_path):
    clock = FakeClock()
    budget = RequestBudget(100, 1800.0, str(tmp_path / "b.json"), clock=clock, sleep=clock.sleep)
    threads = [threading.Thread(target=lambda: [budget.take() for _ in range(25)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert budget.available() == pytest.approx(0.0, abs=1e-6)
    assert clock.slept == []


@pytest.mark.parametrize("url, vendor", [
    ("https://dav.jianguoyun.com/dav/Backups/r", "nutstore"),
    ("https://cloud.example.org/remote.php/dav/files/me/r", "nextcloud"),
    ("https://nextcloud.example.org/x", "nextcloud"),
    ("https://files.example.org/remote.php/webdav/r", "owncloud"),
    ("http://127.0.0.1:8080/r", "generic"),
])
def test_vendor_is_guessed_from_the_url(url, vendor):
    assert guess_vendor(url) == vendor


def test_vendor_profiles_and_budgets():
    nutstore = vendor_profile(None, "https://dav.jianguoyun.com/dav/x/")
    assert nutstore.budget == (540, 1800.0)
    assert nutstore.pack_size * 4 < nutstore.max_object_size
    assert vendor_profile("generic", "https://dav.jianguoyun.com/dav/x/").budget is None
    assert parse_budget("1350/1800") == (1350, 1800.0)
    with pytest.raises(UsageError):
        vendor_profile("dropbox", "https://x/")
    with pytest.raises(UsageError):
        parse_budget("lots")


def test_webdav_urls_are_checked(monkeypatch):
    monkeypatch.setenv("STRONGROOM_WEBDAV_PASSWORD", "pw")
    with pytest.raises(UsageError, match="never put the WebDAV password in the URL"):
        open_storage("webdav+https://me:secret@dav.example.org/r")
    with pytest.raises(UsageError, match="needs a user"):
        open_storage("webdav+https://dav.example.org/r")
    with pytest.raises(UsageError, match="sync folder"):
        open_storage("webdav+https://me@dav.jianguoyun.com/dav/")
    with pytest.raises(UsageError, match="unsupported"):
        open_storage("ftp://me@example.org/r")
    monkeypatch.delenv("STRONGROOM_WEBDAV_PASSWORD")
    with pytest.raises(UsageError, match="STRONGROOM_WEBDAV_PASSWORD"):
        open_storage("webdav+https://me@dav.example.org/r")
    storage = open_storage("webdav+https://me%40example.org@dav.example.org:8443/a/r", webdav_password="pw",
                           vendor="generic")
    assert storage.base_url == "https://dav.example.org:8443/a/r/"
    assert "pw" not in repr(storage) and "pw" not in storage.url
