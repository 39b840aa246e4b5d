"""`python -m strongroom ARGS` in a child process, as subprocess.run would run
it, without paying the interpreter's start and the imports each time.

The suite runs the command line thousands of times, and a start (0.3 to 0.6 s
of CPU, almost all imports) was most of its time. run() sends the command to
a zygote (tests/cli_zygote.py) that has imported strongroom once and forks a
child for it: the child has the command's own argv, environment, time zone,
working directory, stdin, stdout and stderr, and its exit status is the
command's. What the interpreter reads only as it starts (PYTHON*, the locale,
TZ, the hooks' STRONGROOM_TEST_* variables) is the same as the zygote's,
because each different set of those gets its own zygote.

The plain way (a new interpreter per command) is kept for what a fork cannot
be: a terminal on a standard stream, a relative PYTHONPATH, and every command
when STRONGROOM_TEST_EXEC=1 (a check that the fast way changes no result).
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Mapping, Sequence

import strongroom

ZYGOTE = str(Path(__file__).resolve().parent / "cli_zygote.py")
MAIN = str(Path(strongroom.__file__).resolve().parent / "__main__.py")
MAX_ZYGOTES = 4
_STARTUP_PREFIXES = ("PYTHON", "LC_", "STRONGROOM_TEST_")
_STARTUP_NAMES = ("LANG", "LANGUAGE", "TZ")


def _startup_key(env: Mapping[str, str]) -> tuple:
    return tuple(sorted((k, v) for k, v in env.items()
                        if k.startswith(_STARTUP_PREFIXES) or k in _STARTUP_NAMES))


class _Zygote:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="sr-zygote-")
        self.path = os.path.join(self.dir, "s")
        self.process = subprocess.Popen([sys.executable, ZYGOTE, self.path], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=dict(env), cwd=self.dir)
        if self.process.stdout.readline().strip() != b"ready":
            self.process.kill()
            raise RuntimeError("the strongroom zygote did not start")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        try:
            self.process.stdin.close()
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass


_zygotes: OrderedDict[tuple, _Zygote] = OrderedDict()
_lock = threading.Lock()


def _zygote_for(env: Mapping[str, str]) -> _Zygote:
    key = _startup_key(env)
    with _lock:
        zygote = _zygotes.get(key)
        if zygote is not None and zygote.alive():
            _zygotes.move_to_end(key)
            return zygote
        if zygote is not None:
            zygote.stop()
        zygote = _zygotes[key] = _Zygote(env)
        while len(_zygotes) > MAX_ZYGOTES:
            _zygotes.popitem(last=False)[1].stop()
        return zygote


@atexit.register
def _stop_all() -> None:
    with _lock:
        while _zygotes:
            _zygotes.popitem()[1].stop()


def _exec_needed(env: Mapping[str, str]) -> bool:
    if env.get("STRONGROOM_TEST_EXEC") == "1" or os.environ.get("STRONGROOM_TEST_EXEC") == "1":
        return True
    if any(p and not os.path.isabs(p) for p in env.get("PYTHONPATH", "").split(os.pathsep)):
        return True
    return os.isatty(0)  # the child's stdin when no input is given


def run(args: Sequence[str], *, env: Mapping[str, str], input: bytes | str | None = None,
        cwd: str | os.PathLike | None = None, timeout: float | None = None,
        text: bool = False) -> subprocess.CompletedProcess:
    """subprocess.run([python, "-m", "strongroom", *args], capture_output=True, ...)."""
    argv = [sys.executable, "-m", "strongroom", *args]
    if text and isinstance(input, str):
        input = input.encode()
    if _exec_needed(env):
        done = subprocess.run(argv, input=input, capture_output=True, env=dict(env), cwd=cwd, timeout=timeout)
    else:
        done = _forked(argv, list(args), env, input, os.fspath(cwd) if cwd is not None else os.getcwd(), timeout)
    if text:
        done.stdout, done.stderr = done.stdout.decode(), done.stderr.decode()
    return done


def _forked(argv: list[str], args: list[str], env: Mapping[str, str], input: bytes | None, cwd: str,
            timeout: float | None) -> subprocess.CompletedProcess:
    zygote = _zygote_for(env)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    if input is not None:
        in_r, in_w = os.pipe()
    else:
        in_r, in_w = 0, None  # inherited, as subprocess.run does without input
    header = json.dumps({"argv0": MAIN, "args": args, "env": dict(env), "cwd": cwd}).encode()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(zygote.path)
        socket.send_fds(conn, [struct.pack("!I", len(header)) + header], [in_r, out_w, err_w])
    finally:
        for fd in (out_w, err_w) + ((in_r,) if in_w is not None else ()):
            os.close(fd)
    deadline = None if timeout is None else time.monotonic() + timeout
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    answer = b""
    pid = returncode = None
    pending = memoryview(input) if input is not None else None
    selector = selectors.DefaultSelector()
    selector.register(out_r, selectors.EVENT_READ)
    selector.register(err_r, selectors.EVENT_READ)
    selector.register(conn, selectors.EVENT_READ)
    if in_w is not None:
        if pending:
            os.set_blocking(in_w, False)
            selector.register(in_w, selectors.EVENT_WRITE)
        else:
            os.close(in_w)
            in_w = None
    try:
        while selector.get_map():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(argv, timeout, b"".join(chunks[out_r]), b"".join(chunks[err_r]))
            for key, _ in selector.select(left):
                fd = key.fd
                if fd == in_w:
                    try:
                        written = os.write(in_w, pending[:65536])
                    except BrokenPipeError:
                        written = len(pending)
                    pending = pending[written:]
                    if not pending:
                        selector.unregister(in_w)
                        os.close(in_w)
                        in_w = None
                elif key.fileobj is conn:
                    data = conn.recv(65536)
                    if not data:
                        selector.unregister(conn)
                        continue
                    answer += data
                    while b"\n" in answer:
                        line, answer = answer.split(b"\n", 1)
                        message = json.loads(line)
                        pid = message.get("pid", pid)
                        returncode = message.get("returncode", returncode)
                else:
                    data = os.read(fd, 65536)
                    if data:
                        chunks[fd].append(data)
                    else:
                        selector.unregister(fd)
    finally:
        selector.close()
        for fd in (out_r, err_r) + ((in_w,) if in_w is not None else ()):
            os.close(fd)
        conn.close()
    if returncode is None:
        raise RuntimeError(f"the strongroom zygote lost the command {args!r}")
    return subprocess.CompletedProcess(argv, returncode, b"".join(chunks[out_r]), b"".join(chunks[err_r]))
