"""Text from a command or a repository as one line, safe on a terminal and in a report."""

from __future__ import annotations

# As cli/output.py's terminal_safe: C0 and C1 control characters and DEL as \xNN.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7f, *range(0x80, 0xa0))}


def one_line(text: str | bytes, limit: int) -> str:
    """`text` (bytes are decoded, undecodable ones replaced) with control
    characters, newlines included, as \\xNN, cut to `limit` characters."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    text = text.translate(_CONTROLS)
    return text if len(text) <= limit else text[:limit - 1] + "…"
