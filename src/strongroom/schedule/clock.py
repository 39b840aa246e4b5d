"""Noticing that the wall clock jumped.

Between two ticks the wall clock (time.time) and the monotonic clock
(CLOCK_MONOTONIC) should advance alike. On Linux the monotonic clock stops
while the machine is suspended, and NTP or a person setting the time moves
only the wall clock. So wall advance well beyond monotonic advance is a
forward jump (a sleep, or the clock set forward), wall advance short of it
a backward jump (the clock set back). Either way the scheduler recomputes
what is due from the wall clock and the catalog at once, instead of waiting
for a timer armed before the jump.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ClockJump:
    kind: str  # forward or backward
    seconds: float  # how far the wall clock moved beyond (or short of) the monotonic clock


class ClockWatch:
    """`tick()` on every pass of the scheduler's loop; it returns a ClockJump when
    the two clocks disagree by more than `tolerance` seconds since the last tick."""

    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, tolerance: float = 2.0) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self.tolerance = tolerance
        self._last = (wall(), monotonic())

    def tick(self) -> ClockJump | None:
        wall, mono = self._wall(), self._monotonic()
        drift = (wall - self._last[0]) - (mono - self._last[1])
        self._last = (wall, mono)
        if drift > self.tolerance:
            return ClockJump("forward", drift)
        if drift < -self.tolerance:
            return ClockJump("backward", -drift)
        return None
