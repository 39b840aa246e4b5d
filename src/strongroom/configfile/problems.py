"""The errors of one configuration file, each as `FILE:LINE: KEY: message`."""

from __future__ import annotations

from dataclasses import dataclass

from strongroom.configfile.lines import KeyLines, Path, dotted
from strongroom.errors import UsageError

# A file with more problems than this has a deeper one: the first ones say what.
MAX_PROBLEMS = 50


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class Problems:
    """Collects the problems of one file, up to MAX_PROBLEMS; `add` places each by its key path."""

    def __init__(self, file: str, lines: KeyLines | None) -> None:
        self.file = file
        self.lines = lines
        self.found: list[Problem] = []
        self.more = 0

    def add(self, path: Path, message: str, placed: bool = True) -> None:
        """`placed` False: the problem of an object the file does not hold (no line to show)."""
        if len(self.found) >= MAX_PROBLEMS:
            self.more += 1
            return
        line = self.lines.line_of(path) if self.lines and placed else None
        self.found.append(Problem(self.file, line, dotted(path), message))

    def check(self, path: Path, step, *args, **kwargs):
        """`step(*args, **kwargs)`, its UsageError kept as a problem at `path` (then None)."""
        try:
            return step(*args, **kwargs)
        except UsageError as e:
            self.add(path, str(e))
            return None

    def table(self, path: Path, value: object, what: str, keys, unknown: str) -> bool:
        """Whether `value` is a table (else the problem `what` at `path`); each key
        of it not in `keys` is a problem saying `unknown`."""
        if not isinstance(value, dict):
            self.add(path, what)
            return False
        for key in value:
            if key not in keys:
                self.add((*path, key), unknown)
        return True

    def __bool__(self) -> bool:
        return bool(self.found)

    def lines_out(self) -> list[str]:
        out = [str(p) for p in sorted(self.found, key=lambda p: (p.line or 0))]
        if self.more:
            out.append(f"{self.file}: and {self.more} more problems")
        return out


class ConfigFileError(UsageError):
    """A configuration file that cannot be applied: every problem, one a line (exit status 2)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
