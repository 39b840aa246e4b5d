"""The daemon's logs: one line per event to stderr and to a rotating file,
with secrets scrubbed out.

To stderr, each event is one line. When stderr is the journal (systemd sets
JOURNAL_STREAM to the device and inode of the stream it gave the service,
and they match stderr's), the line carries no time, since journald stamps
every line itself, and starts with a syslog priority, `<3>` error, `<4>`
warning, `<6>` info, `<7>` debug, which journald turns into the entry's
priority (`journalctl -p warning` works). Elsewhere (a terminal, a
redirect): `2026-12-01T19:05:00.123Z WARNING strongroom.notify: ...`, time
in UTC. The file has that same form and rotates at `max_bytes`, keeping
`backups` old files (strongroom.log.1 ... .N); it is created 0600.

Every line, whatever logged it, goes through `scrub`: a password in a URL
(`scheme://user:password@`) becomes `***`, and so does any value the
process registered with `register_secret` (a repository or WebDAV
password read at run time), also in its percent-encoded form. Newlines
and other control characters inside a message are escaped (`\\n`), so a
multi-line error or traceback stays one line and cannot forge a second
event.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import threading
import time
from typing import IO, Mapping
from urllib.parse import quote

from strongroom.errors import UsageError
from strongroom.paths import open_private_append

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# syslog priorities (sd-daemon(3)) by logging level
PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
MASK = "***"
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
MAX_LINE = 16384  # characters of one event; a longer one is cut, marked
_MARK = "_strongroom_daemon"
_CLI_MARK = "_strongroom_cli"  # the command line's own handlers (strongroom.cli.logs), replaced here
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s:/@]*):[^\s@/]*@")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class SecretSet:
    """The secret values this process knows, to be kept out of every log line.

    One set per process (`PROCESS_SECRETS`), because the logging tree it
    guards is one per process: a password read by any service must be
    scrubbed from whatever handler a line reaches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def add(self, value: str | bytes | None) -> None:
        """Keep `value` out of the logs: as given, as its bytes read as UTF-8 (a
        password that is not UTF-8 is text with surrogate escapes, or bytes),
        and percent-encoded as a URL would hold it."""
        if not value:
            return
        raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
        forms = {raw.decode("utf-8", "surrogateescape"), raw.decode("utf-8", "replace"), quote(raw, safe="")}
        with self._lock:
            # Longest first: a secret that holds another is masked whole.
            self._values = tuple(sorted(set(self._values) | forms, key=len, reverse=True))

    def values(self) -> tuple[str, ...]:
        return self._values


PROCESS_SECRETS = SecretSet()


def register_secret(value: str | bytes | None) -> None:
    """Never log `value` (a password, a token) from now on, in this process."""
    PROCESS_SECRETS.add(value)


def scrub(text: str, secrets: SecretSet = PROCESS_SECRETS) -> str:
    """`text` without URL passwords and known secrets, as one line."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
    for value in secrets.values():
        if value in text:
            text = text.replace(value, MASK)
    text = _CONTROL.sub(_escape, text)
    if len(text) > MAX_LINE:
        text = text[:MAX_LINE] + " [cut]"
    return text


def _escape(match: re.Match) -> str:
    ch = match.group()
    return {"\n": "\\n", "\r": "\\r"}.get(ch, f"\\x{ord(ch):02x}")


class OneLineFormatter(logging.Formatter):
    """A record (with its traceback, if any) as one scrubbed line; `journal`
    drops the time and starts with the syslog priority."""

    converter = time.gmtime

    def __init__(self, journal: bool = False, secrets: SecretSet = PROCESS_SECRETS) -> None:
        super().__init__("%(message)s" if journal else "%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.journal = journal
        self.secrets = secrets

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + f".{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.journal:
            text = f"<{PRIORITIES.get(record.levelno, 6)}>{record.name}: {text}"
        return scrub(text, self.secrets)


class _PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler whose files are created 0600: a log says what is backed up, and from where."""

    def _open(self) -> IO[str]:
        return open_private_append(self.baseFilename, self.encoding, self.errors)


def stderr_is_journal(stream: IO, environ: Mapping[str, str]) -> bool:
    """Whether `stream` is the journal stream systemd gave this service (JOURNAL_STREAM
    names its device and inode; a redirected stderr does not match)."""
    dev, _, ino = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def setup_logging(stderr: bool = True, file: str | None = None, level: str = "info", max_bytes: int = MAX_BYTES,
                  backups: int = BACKUPS, environ: Mapping[str, str] | None = None,
                  stream: IO | None = None, also: tuple[str, ...] = ()) -> None:
    """Send the `strongroom` loggers' events at `level` and above to stderr
    (`stream`) and/or the rotating file `file`. Called at the edge (`serve`),
    which passes `environ` (default: this process's) for JOURNAL_STREAM.
    `also` names other loggers the process owns (serve: uvicorn's) to send
    there too, at warning and above, rather than to Python's last-resort
    handler (bare, unscrubbed lines on stderr, none in the file).
    Called again, it replaces what it set up before (and the command line's
    handlers); UsageError for an unknown level or a file that cannot be opened."""
    if level not in LEVELS:
        raise UsageError(f"log level {level!r}: use one of {', '.join(LEVELS)}")
    if max_bytes < 1024 or backups < 1:
        raise UsageError("a rotating log needs at least 1 KiB per file and one old file kept")
    stream = stream or sys.stderr
    environ = os.environ if environ is None else environ
    handlers: list[logging.Handler] = []
    if stderr:
        console = logging.StreamHandler(stream)
        console.setFormatter(OneLineFormatter(journal=stderr_is_journal(stream, environ)))
        handlers.append(console)
    if file:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(file)), exist_ok=True)
            to_file = _PrivateRotatingFile(file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot open log file {file}: {e.strerror}") from None
        to_file.setFormatter(OneLineFormatter())
        handlers.append(to_file)
    for handler in handlers:
        handler.setLevel(LEVELS[level])
        setattr(handler, _MARK, True)
    for name in ("strongroom", *also):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _MARK, False) or getattr(h, _CLI_MARK, False)]:
            logger.removeHandler(old)
            if name == "strongroom":
                old.close()
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(LEVELS[level] if name == "strongroom" else max(LEVELS[level], logging.WARNING))
        logger.propagate = False  # an embedding program's root handlers keep to its own logs


def log_uncaught_in_threads(logger: logging.Logger) -> None:
    """Report an exception that ends a thread through `logger` (one scrubbed
    line, in the file too) instead of Python's default traceback on stderr.
    For the edge (`serve`) to call: it replaces `threading.excepthook`."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        logger.error("thread %s ended by an error: %s: %s", name, args.exc_type.__name__, args.exc_value,
                     exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    threading.excepthook = hook
