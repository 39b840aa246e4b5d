"""Reading a strongroom.toml: its tables as the objects they declare.

    [client.ID]    a WebDAV account           (as `client add`)
    [config.NAME]  a backup configuration     (as `config add`)
    [notify.NAME]  a notification channel     (as `notify add`)
    [dr.NAME]      a disaster-recovery plan   (the body of a plan file)

Every problem of the file is collected (up to a bound), each placed at its
line and key; a file with any problem declares nothing.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strongroom.configfile.config_table import FileConfig, read_config
from strongroom.configfile.lines import KeyLines
from strongroom.configfile.other_tables import FileChannel, FileClient, read_channel, read_client, read_plan
from strongroom.configfile.problems import Problems
from strongroom.configfile.regular_file import NotRegular, read_regular_file
from strongroom.configfile.references import find_inline_secrets

TABLES = ("client", "config", "notify", "dr")
# A configuration file is a page or a few of text, not a data set.
MAX_FILE = 4 * 1024 * 1024
MAX_OBJECTS = 10_000


@dataclass
class Declared:
    """What one file declares, by kind and name."""

    clients: dict[str, FileClient] = field(default_factory=dict)
    configs: dict[str, FileConfig] = field(default_factory=dict)
    channels: dict[str, FileChannel] = field(default_factory=dict)
    plans: dict[str, Any] = field(default_factory=dict)  # name: dr.plan.Plan
    # Every name the file declares, by table (client, config, notify, dr), those
    # with problems too: what refers to them is not an error of its own.
    names: dict[str, set[str]] = field(default_factory=dict)
    readable: bool = False  # the text is TOML and its tables are the known ones


def read_text(path: Path) -> str:
    from strongroom.errors import UsageError
    try:
        data = read_regular_file(path, MAX_FILE + 1)
    except NotRegular:
        raise UsageError(f"{path}: not a regular file; not a configuration file") from None
    except OSError as e:
        raise UsageError(f"cannot read the configuration file {path}: {e.strerror}") from None
    if len(data) > MAX_FILE:
        raise UsageError(f"{path}: larger than {MAX_FILE // (1024 * 1024)} MiB; not a configuration file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8 text") from None


def parse(text: str, file: str, environ: Mapping[str, str], base_dir: str) -> tuple[Declared, Problems]:
    """The objects `text` declares, and its problems (when there are any, the objects are not to be used)."""
    declared = Declared()
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problems = Problems(file, None)
        problems.found.append(_syntax_problem(file, str(e), max(1, len(text.splitlines()))))
        return declared, problems
    except RecursionError:
        problems = Problems(file, None)
        problems.add((), "nested too deeply")
        return declared, problems
    problems = Problems(file, KeyLines(text))
    find_inline_secrets(doc, (), problems)
    for key, value in list(doc.items()):
        if key not in TABLES:
            problems.add((key,), f"unknown table: use {', '.join(f'[{t}.NAME]' for t in TABLES)}")
            del doc[key]
        elif not isinstance(value, dict):
            problems.add((key,), f"give tables: [{key}.NAME]")
            del doc[key]
    if sum(len(doc.get(t, {})) for t in TABLES) > MAX_OBJECTS:
        problems.add((), f"more than {MAX_OBJECTS} objects")
        return declared, problems
    declared.names = {t: set(doc.get(t, {})) for t in TABLES}
    declared.readable = True
    from strongroom.services.config_schema import NAME_PATTERN
    for name, table in doc.get("client", {}).items():
        if _named(problems, "client", name, NAME_PATTERN):
            client = read_client(name, table, problems, environ, base_dir)
            if client:
                declared.clients[name] = client
    for name, table in doc.get("config", {}).items():
        if _named(problems, "config", name, NAME_PATTERN):
            config = read_config(name, table, problems, environ, base_dir)
            if config:
                declared.configs[name] = config
    for name, table in doc.get("notify", {}).items():
        if _named(problems, "notify", name, r"^[A-Za-z0-9_.-]{1,64}$"):
            channel = read_channel(name, table, problems, environ, base_dir)
            if channel:
                declared.channels[name] = channel
    for name, table in doc.get("dr", {}).items():
        plan = read_plan(name, table, problems, base_dir)
        if plan:
            declared.plans[name] = plan
    return declared, problems


def _named(problems: Problems, kind: str, name: str, pattern: str) -> bool:
    if re.match(pattern, name):
        return True
    problems.add((kind, name), "a name is letters, digits, '.', '-', '_' (up to 64), starting with a letter "
                               "or digit")
    return False


def _syntax_problem(file: str, message: str, last_line: int):
    """tomllib's message ends "(at line L, column C)": the line goes in front, as for every other problem."""
    from strongroom.configfile.problems import Problem
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if match:
        return Problem(file, int(match.group(1)), "", f"not valid TOML: {message[:match.start()]} "
                                                      f"(column {match.group(2)})")
    match = re.search(r"\s*\(at end of document\)$", message)
    return Problem(file, last_line if match else None, "",
                   f"not valid TOML: {message[:match.start()] if match else message}"
                   + (" (at the end of the file)" if match else ""))


def base_dir_of(path: Path) -> str:
    """Relative paths in a file are relative to the file's own directory."""
    return os.path.dirname(os.path.abspath(path))
