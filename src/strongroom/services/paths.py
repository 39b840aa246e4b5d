"""Where the management layer keeps its files on this machine."""

from __future__ import annotations

import os


def data_dir() -> str:
    """`$XDG_DATA_HOME/strongroom`, or ~/.local/share/strongroom (relative XDG values are ignored, as the spec says)."""
    data_home = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(data_home):
        data_home = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data_home, "strongroom")
