"""The systemd units shipped with strongroom (package data in
strongroom/data/systemd, the same files as contrib/systemd): the system
unit, which runs `strongroom serve` as the user strongroom with its catalog
in /var/lib/strongroom, and the user unit for `systemctl --user`. See
docs/service.md."""

from __future__ import annotations

import re
from importlib import resources

from strongroom.errors import UsageError

SYSTEM_UNIT = "strongroom.service"
USER_UNIT = "strongroom-user.service"
_EXEC = re.compile(r"^ExecStart=(\S+)(.*)$", re.M)


def unit_text(user: bool = False, executable: str | None = None) -> str:
    """The text of the system unit (or with `user`, the user unit); with
    `executable`, its ExecStart runs that strongroom instead of the path the
    file names (/usr/bin/strongroom, ~/.local/bin/strongroom)."""
    text = resources.files("strongroom").joinpath("data", "systemd", USER_UNIT if user else SYSTEM_UNIT) \
        .read_text(encoding="utf-8")
    if executable is not None:
        if not executable.startswith("/") or any(ch.isspace() or ch in "%$\\;" for ch in executable):
            raise UsageError(f"the unit's ExecStart needs an absolute path without spaces or % $ \\ ;, "
                             f"not {executable!r}")
        text = _EXEC.sub(lambda m: f"ExecStart={executable}{m.group(2)}", text, count=1)
    return text
