"""Progress is one stream of events from the engine.

An event is a plain dict with a "type" key ("status", "error", "warning",
"summary"); the CLI draws bars or JSON lines from it, the services store it.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

Listener = Callable[[dict], None]


def ignore(event: dict) -> None:
    pass


class Counters:
    """Thread-safe running totals with a throttled status event."""

    def __init__(self, listener: Listener, action: str, every: float = 0.25) -> None:
        self.listener = listener
        self.action = action
        self.every = every
        self.start = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()
        self.values: dict[str, int] = {}
        self.total_files = 0
        self.total_bytes = 0

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                self.values[k] = self.values.get(k, 0) + v
        self.maybe_emit()

    def get(self, key: str) -> int:
        return self.values.get(key, 0)

    def maybe_emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        with self._lock:
            event = {"type": "status", "action": self.action, "elapsed": round(now - self.start, 3),
                     "total_files": self.total_files, "total_bytes": self.total_bytes, **self.values}
        self.listener(event)
