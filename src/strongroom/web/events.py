"""The console's live feed: engine events of running jobs and restores, and job
changes, fanned out to every open `/api/events` stream.

Producers are worker threads (the job queue's `on_job_event` hook, restore
sessions); consumers are asyncio tasks of the HTTP server. `publish` hands an
event to each subscriber's loop with `call_soon_threadsafe`; a subscriber
that does not keep up loses its oldest events (its queue is bounded) and is
told so once with a `lagged` event, so a stalled browser costs bounded memory.

Progress events come many per second; the hub keeps only the last of each
job (what a page that opens in the middle of a run shows first) and passes
them on at most `rate` times a second per job.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from strongroom.engine.progress import event_type

QUEUE_LIMIT = 256


class Subscription:
    def __init__(self, hub: EventHub, loop: asyncio.AbstractEventLoop) -> None:
        self.hub = hub
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE_LIMIT)
        self.lagged = False

    def _put(self, event: dict) -> None:  # in the loop's thread
        if self.queue.full():
            try:
                self.queue.get_nowait()
            except asyncio.QueueEmpty:
                pass
            if not self.lagged:
                self.lagged = True
                event = {"type": "lagged"}
        self.queue.put_nowait(event)

    async def get(self, timeout: float) -> dict | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    def close(self) -> None:
        self.hub._drop(self)


class EventHub:
    """See the module docstring. `clock` is monotonic seconds."""

    def __init__(self, rate: float = 4.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._progress: dict[int, dict] = {}  # job id: its last progress event
        self._sent: dict[int, float] = {}  # job id: when its last progress went out

    def subscribe(self) -> Subscription:
        sub = Subscription(self, asyncio.get_running_loop())
        with self._lock:
            self._subscribers.append(sub)
        return sub

    def _drop(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def publish(self, event: dict) -> None:
        """Send `event` (a JSON-able dict with a "type") to every subscriber; from any thread."""
        with self._lock:
            subs = list(self._subscribers)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub._put, event)
            except RuntimeError:  # its loop is closed
                self._drop(sub)

    def job_event(self, job_id: int, event: dict) -> None:
        """The job queue's hook (BackupManager.on_job_event): an engine event of job `job_id`."""
        now = self.clock()
        message = {"type": "progress", "job": job_id, "event": event}
        final = event_type(event) != "status"  # a summary, an error or a warning always goes out
        with self._lock:
            self._progress[job_id] = message
            if not final and now - self._sent.get(job_id, -1e9) < 1.0 / self.rate:
                return
            self._sent[job_id] = now
            if len(self._progress) > 1000:  # keep the newest jobs' only
                for old in sorted(self._progress)[:-500]:
                    self._progress.pop(old, None)
                    self._sent.pop(old, None)
        self.publish(message)

    def last_progress(self, job_id: int) -> dict | None:
        with self._lock:
            return self._progress.get(job_id)
