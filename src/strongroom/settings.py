"""Settings: the knobs of one configuration's run, as one object.

Built once at the edge (the command line, the Python API, later the daemon)
and passed down to storage and the repository. Nothing below the edge reads
the environment, so one process can run many configurations, each with its
own budget, timeouts and cache. `Settings.from_env` is the one place the
`STRONGROOM_*` variables that tune a run are read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Mapping

from strongroom.errors import UsageError

VENDOR_DEFAULT = "vendor"  # the WebDAV budget of the vendor profile (Nutstore's, or none)
# Packs stored (and read) at once on a local directory: the disk, not the
# latency, bounds it; two keep it busy while the next pack fills.
LOCAL_CONNECTIONS = 2


@dataclass(frozen=True)
class Settings:
    # The local cache: None for the default place, "" for none at all.
    cache_root: str | None = None
    # WebDAV: seconds one request may take, seconds one operation keeps
    # retrying, the first back-off delay, the wait after a throttling answer
    # (None: the vendor's).
    webdav_timeout: float = 60.0
    webdav_deadline: float = 900.0
    webdav_retry_delay: float = 0.5
    webdav_blocked_wait: float | None = None
    # Requests per window: (requests, seconds), None for no budget, or
    # VENDOR_DEFAULT for the vendor profile's.
    webdav_budget: tuple[int, float] | None | str = VENDOR_DEFAULT
    # Seconds between index checkpoints during a backup.
    checkpoint_seconds: float = 60.0
    # Requests to the target at once (pack uploads, pack downloads); None:
    # the target's own (a WebDAV URL's ?connections=N, else its vendor's
    # default; LOCAL_CONNECTIONS for a directory).
    connections: int | None = None
    # The machine this process names in the locks it writes, in place of
    # /etc/machine-id: containers or images that share one machine id, or
    # several hosts of a fleet simulated on one machine. None: the system's.
    machine_id: str | None = None

    def with_cache(self, cache_root: str | None) -> "Settings":
        return replace(self, cache_root=cache_root)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if env is None else env

        def number(name: str, default: float) -> float:
            text = env.get(name)
            if text is None or text == "":
                return default
            try:
                value = float(text)
            except ValueError:
                raise UsageError(f"{name} must be a number of seconds, not {text!r}") from None
            if value < 0:
                raise UsageError(f"{name} cannot be negative")
            return value

        budget: tuple[int, float] | None | str = VENDOR_DEFAULT
        spec = env.get("STRONGROOM_WEBDAV_BUDGET")
        if spec is not None:
            if spec.strip().lower() in ("none", "off", "0"):
                budget = None
            else:
                from strongroom.storage.vendors import parse_budget
                budget = parse_budget(spec)
        blocked = env.get("STRONGROOM_WEBDAV_BLOCKED_WAIT")
        connections = None
        if env.get("STRONGROOM_CONNECTIONS"):
            from strongroom.storage.vendors import parse_connections
            connections = parse_connections(env["STRONGROOM_CONNECTIONS"], "STRONGROOM_CONNECTIONS")
        settings = cls(
            cache_root=env.get("STRONGROOM_CACHE_DIR") or None,
            webdav_timeout=number("STRONGROOM_WEBDAV_TIMEOUT", cls.webdav_timeout),
            webdav_deadline=number("STRONGROOM_WEBDAV_DEADLINE", cls.webdav_deadline),
            webdav_retry_delay=number("STRONGROOM_WEBDAV_RETRY_DELAY", cls.webdav_retry_delay),
            webdav_blocked_wait=number("STRONGROOM_WEBDAV_BLOCKED_WAIT", 0.0) if blocked else None,
            webdav_budget=budget,
            checkpoint_seconds=number("STRONGROOM_CHECKPOINT_SECONDS", cls.checkpoint_seconds),
            connections=connections,
            machine_id=_machine_id(env.get("STRONGROOM_MACHINE_ID")),
        )
        return replace(settings, **overrides) if overrides else settings


def _machine_id(text: str | None) -> str | None:
    if text is None or text.strip() == "":
        return None
    text = text.strip()
    if len(text) > 128 or not text.isprintable():
        raise UsageError("STRONGROOM_MACHINE_ID must be a short printable name (at most 128 characters)")
    return text


DEFAULT = Settings()
