"""The entry point. `strongroom --version` and `strongroom version` answer here,
before click is imported (importing click costs more than the rest of a start);
everything else goes to the command line in cli/main.py."""

from __future__ import annotations

import sys

from strongroom import __version__


def version_line() -> str:
    return f"strongroom {__version__} (python {sys.version.split()[0]})"


def version_json() -> str:
    import json
    return json.dumps({"message_type": "version", "version": __version__, "python": sys.version.split()[0]})


_VERSION_ONLY = {("--version",): version_line, ("version",): version_line, ("version", "--json"): version_json,
                 ("--json", "version"): version_json}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    answer = _VERSION_ONLY.get(tuple(argv))
    if answer is not None:
        print(answer())
        return
    from strongroom.memory import return_large_buffers
    return_large_buffers()
    from strongroom.cli.main import main as command_line
    command_line(argv)
