"""Where each table and key of a TOML text is: its line, for error messages.

tomllib gives values, not positions. This reads the text once more, only as
far as it needs to: table headers (`[a.b]`, `[[a.b]]`, counting the entries
of an array of tables), and the keys of key/value lines (dotted and quoted
keys too), skipping over the values themselves, multi-line strings and
arrays included. A value's inner keys (an inline table) take the line of
their key. The text is one tomllib has read already, so the scan can trust
its form; anything it cannot place falls back to the nearest enclosing
table, then to no line at all.
"""

from __future__ import annotations

import re

Path = tuple  # of str (a key) and int (an entry of an array of tables)

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "e": "\x1b", '"': '"', "\\": "\\"}


def _read_key(text: str, i: int) -> tuple[list[str], int]:
    """The (dotted) key starting at text[i], and where it ends."""
    keys: list[str] = []
    while True:
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] in "\"'":
            quote = text[i]
            j = i + 1
            out = []
            while j < len(text) and text[j] != quote:
                if quote == '"' and text[j] == "\\" and j + 1 < len(text):
                    escaped = text[j + 1]
                    width = {"u": 4, "U": 8}.get(escaped)
                    if width:  # \u with 4 hex digits, \U with 8: tomllib has checked them
                        try:
                            out.append(chr(int(text[j + 2:j + 2 + width], 16)))
                        except ValueError:
                            out.append(escaped)
                        j += 2 + width
                        continue
                    out.append(_ESCAPES.get(escaped, escaped))
                    j += 2
                    continue
                out.append(text[j])
                j += 1
            keys.append("".join(out))
            i = j + 1
        else:
            match = _BARE.match(text, i)
            if not match:
                return keys, i
            keys.append(match.group())
            i = match.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == ".":
            i += 1
            continue
        return keys, i


class _ValueScanner:
    """Follows a value across lines: open strings and brackets."""

    def __init__(self) -> None:
        self.depth = 0
        self.multiline: str | None = None  # '"""' or "'''" while inside one

    @property
    def open(self) -> bool:
        return self.depth > 0 or self.multiline is not None

    def feed(self, line: str) -> None:
        i = 0
        while i < len(line):
            if self.multiline is not None:
                end = line.find(self.multiline, i)
                if self.multiline == '"""':
                    while end > 0 and _escaped(line, end):
                        end = line.find(self.multiline, end + 1)
                if end < 0:
                    return
                i = end + 3
                while i < len(line) and line[i] == self.multiline[0]:
                    i += 1  # up to two quotes may close the string's content
                self.multiline = None
                continue
            ch = line[i]
            if ch == "#":
                return
            if line.startswith('"""', i) or line.startswith("'''", i):
                self.multiline = line[i:i + 3]
                i += 3
                continue
            if ch in "\"'":
                j = i + 1
                while j < len(line) and line[j] != ch:
                    j += 2 if ch == '"' and line[j] == "\\" else 1
                i = j + 1
                continue
            if ch in "[{":
                self.depth += 1
            elif ch in "]}":
                self.depth = max(0, self.depth - 1)
            i += 1


def _escaped(line: str, at: int) -> bool:
    backslashes = 0
    while at - 1 - backslashes >= 0 and line[at - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


class KeyLines:
    """The line (1-based) of each table and key of one TOML text."""

    def __init__(self, text: str) -> None:
        self._lines: dict[Path, int] = {}
        self._arrays: dict[Path, int] = {}
        self._scan(text)

    def _resolve(self, keys: list[str]) -> list:
        out: list = []
        for key in keys:
            out.append(key)
            count = self._arrays.get(tuple(out))
            if count:
                out.append(count - 1)
        return out

    def _scan(self, text: str) -> None:
        table: Path = ()
        value = _ValueScanner()
        for number, line in enumerate(text.splitlines(), start=1):
            if value.open:
                value.feed(line)
                continue
            stripped = line.lstrip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("[["):
                keys, _ = _read_key(stripped, 2)
                parent = self._resolve(keys[:-1])
                array = (*parent, *keys[-1:])
                self._arrays[array] = self._arrays.get(array, 0) + 1
                table = (*array, self._arrays[array] - 1)
                self._lines.setdefault(array, number)
                self._lines[table] = number
                continue
            if stripped.startswith("["):
                keys, _ = _read_key(stripped, 1)
                table = tuple(self._resolve(keys))
                for n in range(1, len(table)):
                    self._lines.setdefault(table[:n], number)
                self._lines[table] = number
                continue
            keys, end = _read_key(stripped, 0)
            if not keys or end >= len(stripped) or stripped[end] != "=":
                continue
            for n in range(1, len(keys) + 1):
                self._lines.setdefault((*table, *keys[:n]), number)
            value.feed(stripped[end + 1:])

    def line_of(self, path: Path) -> int | None:
        """The line of `path`, else of the nearest table or key that holds it."""
        path = tuple(path)
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return None


def dotted(path: Path) -> str:
    """A key path as a person reads it: config.db.schedule[1].spec."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _BARE.fullmatch(part) else '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'
            out += ("." if out else "") + text
    return out
