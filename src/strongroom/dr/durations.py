"""Durations as people write them in plans: `90s`, `30m`, `24h`, `7d`, `1h30m`."""

from __future__ import annotations

import re

from strongroom.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_seconds(text: str | int | float, what: str = "duration") -> float:
    """Seconds from `90s`, `30m`, `24h`, `7d`, `2w` or `1h30m` (a bare number is seconds)."""
    if isinstance(text, bool):
        raise UsageError(f"cannot read {what} {text!r}: use e.g. 30m, 24h, 7d")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        value = text.strip().lower()
        parts = _PART.findall(value)
        if re.fullmatch(r"\d+(\.\d+)?", value):
            seconds = float(value)
        elif parts and "".join(n + u for n, u in parts) == value:
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
        else:
            raise UsageError(f"cannot read {what} {text!r}: use e.g. 90s, 30m, 24h, 7d, 1h30m")
    if not seconds >= 0 or seconds > 100 * 365 * 86400:
        raise UsageError(f"{what} {text!r} is out of range")
    return seconds


def format_seconds(seconds: float | None) -> str:
    """`1h30m`, `45s`, `2d3h`: the shortest exact-enough form of a duration."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds != int(seconds) else f"{int(seconds)}s"
    whole = int(round(seconds))
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            out.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(out[:2])
