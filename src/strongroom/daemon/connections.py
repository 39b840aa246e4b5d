"""How the daemon's HTTP server holds its connections: uvicorn's h11
protocol with a deadline on a request's head and a cap that sheds idle
connections instead of refusing requests.

uvicorn alone gives a connection no deadline until its first response, and
its `limit_concurrency` counts open connections: a client that opens a few
dozen connections and never finishes a request line (or a client that
leaves keep-alive connections dangling) makes every later request a 503,
`/healthz` included, for as long as it likes. Here a connection that has
not sent a complete request head `HEAD_TIMEOUT` seconds after it opened
(or after its last response) is closed, and when `MAX_CONNECTIONS` are open
a new one closes the oldest connection that has no request in progress, so
a request that arrives whole is served. Requests in progress are never cut
by this; there are at most `MAX_CONNECTIONS` of them, one per connection.

Imported only by `HttpEndpoints.start` (it loads uvicorn).
"""

from __future__ import annotations

import time

from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT = 5.0  # seconds for a request's line and headers to arrive
MAX_CONNECTIONS = 64


class BoundedH11Protocol(H11Protocol):
    """H11Protocol with the head deadline and the idle-first cap (module doc)."""

    head_timeout = HEAD_TIMEOUT
    max_connections = MAX_CONNECTIONS

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._opened = time.monotonic()
        self._head_timer = None
        super().connection_made(transport)
        self._shed_idle()
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            # Idle again: the next request's head has its own deadline. Armed before
            # the parent serves a pipelined request, whose new cycle then disarms it.
            self._opened = time.monotonic()
            self._await_head()
        super().on_response_complete()

    # ---- the head deadline ----------------------------------------------------------------

    def _await_head(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_overdue, self.cycle)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self, cycle_when_armed) -> None:
        self._head_timer = None
        # A new cycle means a request head arrived since the timer was armed.
        if self.cycle is cycle_when_armed and not self.transport.is_closing():
            self.transport.close()

    # ---- the cap ---------------------------------------------------------------------------

    def _busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _shed_idle(self) -> None:
        if len(self.connections) <= self.max_connections:
            return
        idle = [c for c in self.connections
                if c is not self and isinstance(c, BoundedH11Protocol) and not c._busy()
                and not c.transport.is_closing()]
        idle.sort(key=lambda c: c._opened)
        for connection in idle[:len(self.connections) - self.max_connections]:
            connection.transport.close()
