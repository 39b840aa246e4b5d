"""A persistent request budget: a token bucket per target, shared across runs.

Services such as Nutstore count requests over a 30-minute window that spans
separate runs, so the bucket lives in a file (under the cache directory)
and is updated under an exclusive file lock by every process using that
account. When it runs dry, the caller waits, and says so, instead of
failing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from typing import Callable


class RequestBudget:
    def __init__(self, capacity: int, window: float, state_path: str | None,
                 on_wait: Callable[[dict], None] | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        if capacity < 1 or window <= 0:
            raise ValueError("a request budget needs at least one request per positive window")
        self.capacity = capacity
        self.window = window
        self.rate = capacity / window  # tokens per second
        self.state_path = state_path
        self.on_wait = on_wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._memory = {"tokens": float(capacity), "updated": clock()}
        self.waited = 0.0

    @staticmethod
    def state_file(cache_root: str, key: str) -> str:
        return os.path.join(cache_root, "budgets", hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    def _update(self, state: dict) -> dict:
        now = self._clock()
        elapsed = max(0.0, now - float(state.get("updated", now)))
        tokens = min(float(self.capacity), float(state.get("tokens", self.capacity)) + elapsed * self.rate)
        return {"tokens": tokens, "updated": now}

    def _take_or_wait_time(self) -> float:
        """Take a token and return 0, or return how long until one is there."""
        if self.state_path is None:
            state = self._update(self._memory)
            if state["tokens"] >= 1:
                state["tokens"] -= 1
                self._memory = state
                return 0.0
            self._memory = state
            return (1 - state["tokens"]) / self.rate
        os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
        fd = os.open(self.state_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 4096)
            try:
                state = json.loads(raw) if raw else {}
            except ValueError:
                state = {}
            state = self._update(state)
            wait = 0.0
            if state["tokens"] >= 1:
                state["tokens"] -= 1
            else:
                wait = (1 - state["tokens"]) / self.rate
            data = json.dumps(state).encode()
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, data)
            return wait
        finally:
            os.close(fd)

    def take(self) -> None:
        """Spend one request, waiting for the bucket to refill if it is empty."""
        with self._lock:
            while True:
                wait = self._take_or_wait_time()
                if wait <= 0:
                    return
                if self.on_wait:
                    self.on_wait({"type": "warning", "message":
                                  f"request budget of {self.capacity} per {self.window:.0f} s is used up; "
                                  f"waiting {wait:.0f} s"})
                self.waited += wait
                self._sleep(wait)

    def available(self) -> float:
        with self._lock:
            if self.state_path is None:
                return self._update(self._memory)["tokens"]
            try:
                with open(self.state_path) as f:
                    return self._update(json.load(f))["tokens"]
            except (OSError, ValueError):
                return float(self.capacity)
