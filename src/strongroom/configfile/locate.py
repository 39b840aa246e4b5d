"""Where the configuration file is, decided once at the edge."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from strongroom.paths import config_file_named_in

FILE_NAME = "strongroom.toml"


def locate(argv_path: str | os.PathLike | None, environ: Mapping[str, str]) -> Path:
    """The path given on the command line (FILE or --config), else the one the
    environment names (paths.config_file_named_in), else $XDG_CONFIG_HOME/strongroom/strongroom.toml
    (~/.config/strongroom/strongroom.toml without XDG_CONFIG_HOME)."""
    if argv_path:
        return Path(argv_path)
    named = config_file_named_in(environ)
    if named:
        return Path(named)
    base = environ.get("XDG_CONFIG_HOME")
    if not base or not os.path.isabs(base):  # the XDG rule: a relative value is ignored
        base = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base) / "strongroom" / FILE_NAME
