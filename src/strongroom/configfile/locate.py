"""Where the configuration file is, decided once at the edge."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

FILE_NAME = "strongroom.toml"


def locate(argv_path: str | os.PathLike | None, environ: Mapping[str, str]) -> Path:
    """The path given on the command line (FILE or --config), else
    STRONGROOM_CONFIG, else $XDG_CONFIG_HOME/strongroom/strongroom.toml
    (~/.config/strongroom/strongroom.toml without XDG_CONFIG_HOME)."""
    if argv_path:
        return Path(argv_path)
    if environ.get("STRONGROOM_CONFIG"):
        return Path(environ["STRONGROOM_CONFIG"])
    base = environ.get("XDG_CONFIG_HOME")
    if not base or not os.path.isabs(base):  # the XDG rule: a relative value is ignored
        base = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base) / "strongroom" / FILE_NAME
