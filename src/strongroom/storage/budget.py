"""A persistent request budget: at most N requests in any window of W
seconds per account, shared across runs and processes.

Services such as Nutstore count requests over a 30-minute window that spans
separate runs, so the budget lives in a file (under the cache directory)
and is updated under an exclusive file lock by every process using that
account. It is a sliding-window log, the times of the requests of the last
window, not a token bucket: a bucket that starts full and refills at N/W
lets up to 2N requests through in one window, which is what gets an
account blocked. When the budget is spent, the caller waits, and says so,
instead of failing: one "waiting" event, at most once per window however
many requests wait (each wait goes to the log at DEBUG).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from datetime import datetime, timezone
from typing import Callable

log = logging.getLogger(__name__)


class RequestBudget:
    def __init__(self, capacity: int, window: float, state_path: str | None,
                 on_wait: Callable[[dict], None] | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        if capacity < 1 or window <= 0:
            raise ValueError("a request budget needs at least one request per positive window")
        self.capacity = capacity
        self.window = window
        self.rate = capacity / window  # requests per second over a long run
        self.state_path = state_path
        self.on_wait = on_wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._memory: list[float] = []
        self._told_at: float | None = None
        self.waited = 0.0

    @staticmethod
    def state_file(cache_root: str, key: str) -> str:
        return os.path.join(cache_root, "budgets", hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    def _recent(self, times: list[float], now: float) -> list[float]:
        """The request times still inside the window ending now (a clock set
        back leaves times in the future: they count until they pass)."""
        return sorted(t for t in times if t > now - self.window)[-self.capacity:]

    def _decide(self, times: list[float]) -> tuple[list[float], float]:
        """Take a request (returning 0) or say how long until one is allowed."""
        now = self._clock()
        times = self._recent(times, now)
        if len(times) < self.capacity:
            return times + [now], 0.0
        return times, max(times[0] + self.window - now, 1e-3)

    @staticmethod
    def _parse(raw: bytes) -> list[float]:
        try:
            state = json.loads(raw) if raw else {}
            return [float(t) for t in state.get("times", [])]
        except (ValueError, TypeError, AttributeError):
            return []  # an unreadable or older state: start afresh

    def _take_or_wait_time(self) -> float:
        if self.state_path is None:
            self._memory, wait = self._decide(self._memory)
            return wait
        os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
        fd = os.open(self.state_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            times, wait = self._decide(self._parse(b"".join(chunks)))
            data = json.dumps({"window": self.window, "times": [round(t, 3) for t in times]}).encode()
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, data)
            return wait
        finally:
            os.close(fd)

    def take(self) -> None:
        """Spend one request, waiting until the window lets one more through."""
        with self._lock:
            while True:
                wait = self._take_or_wait_time()
                if wait <= 0:
                    return
                self._tell(wait)
                self.waited += wait
                self._sleep(wait)

    def _tell(self, wait: float) -> None:
        now = self._clock()
        log.debug("request budget used up: waiting %.1f s", wait)
        if self._told_at is not None and now - self._told_at < self.window:
            return
        self._told_at = now
        until = datetime.fromtimestamp(now + wait, timezone.utc).replace(microsecond=0)
        if self.on_wait:
            self.on_wait({"type": "waiting", "reason": "request budget used up",
                          "until": until.isoformat().replace("+00:00", "Z"),
                          "message": f"request budget of {self.capacity} per {self.window:.0f} s is used up: "
                                     f"waiting until {until:%H:%M:%S} UTC, then going at its pace"})

    def available(self) -> float:
        """Requests that may go now without waiting."""
        with self._lock:
            if self.state_path is None:
                times = self._memory
            else:
                try:
                    with open(self.state_path, "rb") as f:
                        times = self._parse(f.read())
                except OSError:
                    times = []
            return float(self.capacity - len(self._recent(times, self._clock())))
