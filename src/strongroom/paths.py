"""Where strongroom keeps its files on this machine: the cache and the data directory.

Every layer may need one of these (storage keeps a request budget's state in
the cache, repositories their caches, the services their catalog), so they
live here, below all of them, and read the environment in this one place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO


def default_cache_root() -> str:
    """`$STRONGROOM_CACHE_DIR`, else `$XDG_CACHE_HOME/strongroom` (~/.cache by default)."""
    root = os.environ.get("STRONGROOM_CACHE_DIR")
    if root:
        return root
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "strongroom")


def data_dir() -> str:
    """`$XDG_DATA_HOME/strongroom`, or ~/.local/share/strongroom (relative XDG values are ignored, as the spec says)."""
    data_home = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(data_home):
        data_home = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data_home, "strongroom")


def open_private_append(path: str, encoding: str | None = "utf-8", errors: str | None = None) -> IO[str]:
    """`path` opened for appending text, created 0600 when it does not exist (a
    log says what is backed up and from where); an existing file keeps its mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "a", encoding=encoding, errors=errors)


def config_file_named_in(environ: Mapping[str, str]) -> str | None:
    """The configuration file the environment names: STRONGROOM_CONFIG_FILE,
    else STRONGROOM_CONFIG, except in a DR step's commands (STRONGROOM_STEP
    is set), where STRONGROOM_CONFIG is the step's configuration name and
    STRONGROOM_CONFIG_FILE carries the file on."""
    if environ.get("STRONGROOM_CONFIG_FILE"):
        return environ["STRONGROOM_CONFIG_FILE"]
    if environ.get("STRONGROOM_CONFIG") and not environ.get("STRONGROOM_STEP"):
        return environ["STRONGROOM_CONFIG"]
    return None
