"""The daemon's logs (strongroom.daemon.logs): real lines in a real file and
on a child process's stderr, journal form when stderr is the stream
JOURNAL_STREAM names, rotation at the size, and secrets (a registered one,
a URL's password, in a message or in a traceback) never written."""

from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from strongroom.daemon.logs import PROCESS_SECRETS, register_secret, setup_logging
from strongroom.errors import UsageError

SRC = str(Path(__file__).resolve().parents[1] / "src")
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) strongroom[.\w]*: ")
SECRET = "Hunter2-is-not-a-password"
URL_PASSWORD = "pa55word-in-url"


@pytest.fixture(autouse=True)
def known_secrets(monkeypatch):
    """Only this test's secrets: the set is process-wide, and a test run in the
    same process before may have registered a password such as "wrong"."""
    monkeypatch.setattr(PROCESS_SECRETS, "_values", ())


@pytest.fixture(autouse=True)
def restore_logger():
    logger = logging.getLogger("strongroom")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in list(logger.handlers):
        if handler not in saved[0]:
            logger.removeHandler(handler)
            handler.close()
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_lines_in_the_file_are_stamped_one_per_event_and_hold_no_secret(tmp_path):
    path = tmp_path / "logs" / "strongroom.log"
    setup_logging(stderr=False, file=str(path), level="info")
    register_secret(SECRET)
    log = logging.getLogger("strongroom.test")
    log.debug("not at info")
    log.info("backup of %s started", "files")
    log.warning("target https://alice:%s@dav.example.com/backup did not answer", URL_PASSWORD)
    log.error("first line\nsecond line with %s\r\n", SECRET)
    try:
        raise RuntimeError(f"wrong password {SECRET} for https://bob:{URL_PASSWORD}@nas.local/")
    except RuntimeError:
        log.exception("the run broke off")
    odd = "tøp secret/42@x"
    register_secret(odd)
    log.info("as a URL holds it: https://dav.example.com/?token=%s", quote(odd, safe=""))
    not_utf8 = b"key-\xff\xfe-bytes"
    register_secret(not_utf8)  # as the secrets store keeps it: text with surrogate escapes
    register_secret(not_utf8.decode("utf-8", "surrogateescape"))
    log.info("read %s", not_utf8.decode("utf-8", "replace"))
    text = path.read_text()
    lines = text.splitlines()
    assert len(lines) == 6  # the debug line is below the level; a traceback stays on its line
    assert all(STAMPED.match(line) for line in lines), lines
    assert lines[0].endswith("INFO strongroom.test: backup of files started")
    assert "https://alice:***@dav.example.com/backup did not answer" in lines[1]
    assert lines[2].endswith("ERROR strongroom.test: first line\\nsecond line with ***\\r\\n")
    assert "Traceback (most recent call last):\\n" in lines[3] and "RuntimeError: wrong password ***" in lines[3]
    assert "https://bob:***@nas.local/" in lines[3]
    assert lines[4].endswith("as a URL holds it: https://dav.example.com/?token=***")
    assert lines[5].endswith("INFO strongroom.test: read ***")
    assert SECRET not in text and URL_PASSWORD not in text and quote(odd, safe="") not in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_file_rotates_at_its_size_and_keeps_its_backups(tmp_path):
    path = tmp_path / "strongroom.log"
    setup_logging(stderr=False, file=str(path), level="debug", max_bytes=2048, backups=2)
    log = logging.getLogger("strongroom.rotation")
    for i in range(200):
        log.debug("event %03d %s", i, "x" * 60)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["strongroom.log", "strongroom.log.1", "strongroom.log.2"]
    sizes = [(tmp_path / name).stat().st_size for name in files]
    assert all(0 < size <= 2048 for size in sizes), sizes
    newest = path.read_text().splitlines()
    assert newest[-1].endswith(f"event 199 {'x' * 60}")
    kept = [line for name in reversed(files) for line in (tmp_path / name).read_text().splitlines()]
    numbers = [int(re.search(r"event (\d{3})", line).group(1)) for line in kept]
    assert numbers == list(range(numbers[0], 200))  # the newest events, in order, none lost between files
    assert numbers[0] > 0  # the oldest went with the file rotated out
    assert all(stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600 for name in files)


CHILD = """
import logging, sys
from strongroom.daemon.logs import register_secret, setup_logging
setup_logging(stderr=True, level=sys.argv[1])
register_secret(sys.argv[2])
log = logging.getLogger("strongroom.daemon")
log.info("serving the catalog at %s", "/var/lib/strongroom/catalog.db")
log.warning("webdav https://u:%s@h/ unreachable", sys.argv[2])
log.error("job 3 failed:\\nline two")
log.debug("details")
"""


def run_child(tmp_path: Path, level: str, journal: bool) -> str:
    err = tmp_path / f"stderr-{level}-{journal}.txt"
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    env["PYTHONPATH"] = SRC
    with open(err, "wb") as f:
        if journal:
            st = os.fstat(f.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        done = subprocess.run([sys.executable, "-c", CHILD, level, SECRET], stderr=f, stdout=subprocess.PIPE,
                              env=env, timeout=60)
    assert done.returncode == 0, err.read_text()
    return err.read_text()


def test_stderr_of_a_process_plain_and_in_the_journal_form(tmp_path):
    plain = run_child(tmp_path, "info", journal=False).splitlines()
    assert len(plain) == 3 and all(STAMPED.match(line) for line in plain), plain
    assert plain[0].endswith("INFO strongroom.daemon: serving the catalog at /var/lib/strongroom/catalog.db")
    assert plain[1].endswith("WARNING strongroom.daemon: webdav https://u:***@h/ unreachable")
    assert plain[2].endswith("ERROR strongroom.daemon: job 3 failed:\\nline two")

    journal = run_child(tmp_path, "debug", journal=True).splitlines()
    assert journal == ["<6>strongroom.daemon: serving the catalog at /var/lib/strongroom/catalog.db",
                       "<4>strongroom.daemon: webdav https://u:***@h/ unreachable",
                       "<3>strongroom.daemon: job 3 failed:\\nline two",
                       "<7>strongroom.daemon: details"]
    # JOURNAL_STREAM that names another stream (stderr was redirected since) is not the journal.
    env_names_other = {"JOURNAL_STREAM": "1:2"}
    from strongroom.daemon.logs import stderr_is_journal
    with open(tmp_path / "x", "w") as f:
        assert not stderr_is_journal(f, env_names_other)
        assert not stderr_is_journal(f, {})


def test_a_second_setup_replaces_the_first_and_bad_settings_are_refused(tmp_path):
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    setup_logging(stderr=False, file=str(first))
    setup_logging(stderr=False, file=str(second))
    logging.getLogger("strongroom.x").warning("once")
    assert first.read_text() == "" and len(second.read_text().splitlines()) == 1
    with pytest.raises(UsageError, match="log level 'loud': use one of debug, info, warning, error"):
        setup_logging(level="loud")
    (tmp_path / "dir.log").mkdir()
    with pytest.raises(UsageError, match=r"cannot open log file .*dir\.log: Is a directory"):
        setup_logging(stderr=False, file=str(tmp_path / "dir.log"))


def test_a_password_a_service_reads_is_scrubbed_from_then_on(tmp_path, monkeypatch):
    from strongroom import BackupConfig, create_backup_manager
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    path = tmp_path / "daemon.log"
    setup_logging(stderr=False, file=str(path))
    password, stored = "file-held repository key 7731", "store-held key 0042"
    (tmp_path / "pw").write_text(password + "\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a")
    with create_backup_manager(db_path=str(tmp_path / "c.db"), secrets_path=str(tmp_path / "s.json"),
                               cache_root=str(tmp_path / "cache")) as manager:
        for name, extra in (("by-file", {"password_file": str(tmp_path / "pw")}), ("by-store", {"password": stored})):
            manager.add_config(BackupConfig(name=name, source_paths=[str(tmp_path / "src")],
                                            target_path=str(tmp_path / name), **extra))
            manager.manual_backup(name)
    manager.catalog.close()
    log = logging.getLogger("strongroom.services")
    log.warning("a library quoted %r and %r", password, stored)
    text = path.read_text()
    assert text.endswith("WARNING strongroom.services: a library quoted '***' and '***'\n")
    assert password not in text and stored not in text
