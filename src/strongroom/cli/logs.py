"""Logging for a run of the command line: the library only logs (to loggers
named `strongroom.*`); the handlers are set up here, from -v, -q and --log-file."""

from __future__ import annotations

import logging
import sys

_MARK = "_strongroom_cli"  # handlers this module added, replaced on the next call


def console_level(verbose: int, quiet: bool) -> int:
    """Warnings by default; -v adds each decision (a lock, a retry), -vv everything; -q only errors."""
    if quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


def configure_logging(*, verbose: int = 0, quiet: bool = False, log_file: str | None = None) -> None:
    """Set the `strongroom` logger's handlers for this run (again, when a command's
    own -v or --log-file changes what the options before it said)."""
    logger = logging.getLogger("strongroom")
    for handler in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(console_level(verbose, quiet))
    console.setFormatter(logging.Formatter("strongroom: %(message)s"))
    handlers: list[logging.Handler] = [console]
    if log_file:
        try:
            to_file = _PrivateFile(log_file, encoding="utf-8", delay=False)
        except OSError as e:
            from strongroom.errors import UsageError
            raise UsageError(f"cannot open log file {log_file}: {e.strerror}") from None
        to_file.setLevel(logging.DEBUG)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(to_file)
    for handler in handlers:
        setattr(handler, _MARK, True)
        logger.addHandler(handler)
    logger.setLevel(min(h.level for h in handlers))
    # Records stop here: a program that embeds the library keeps its own root handlers for its own logs.
    logger.propagate = False


class _PrivateFile(logging.FileHandler):
    """A log file created 0600: it says what is backed up, and from where."""

    def _open(self):
        from strongroom.paths import open_private_append
        return open_private_append(self.baseFilename, self.encoding, self.errors)
