"""A process that has imported strongroom once and forks a child for each
command it is sent (tests/forked_cli.py is the other end).

Usage: python cli_zygote.py SOCKET_PATH. One request per connection: a
length-prefixed JSON header (argv, environment, working directory) with the
child's stdin, stdout and stderr as file descriptors beside it. The answer is
two JSON lines: {"pid": N} once the child runs, {"returncode": N} when it has
ended (negative: the signal that ended it, as subprocess reports it).

The child then is what `python -m strongroom ARGS` would be after its imports:
its own process, argv, environment (and time zone), working directory and
standard streams; it ends through the interpreter's own exit (exit status,
atexit handlers, non-daemon threads, the teardown that closes databases and
flushes files). This process starts no thread, so forking it is safe.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import pkgutil
import selectors
import signal
import socket
import struct
import sys
import time

MAX_HEADER = 4 * 1024 * 1024


def preload() -> None:
    """Import every strongroom module a command may need (not __main__, which runs the command)."""
    import strongroom

    for info in pkgutil.walk_packages(strongroom.__path__, "strongroom."):
        if info.name.endswith(".__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception:  # an optional dependency missing: the child fails as `python -m` would
            pass


def read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    while len(data) < 4:
        more = conn.recv(65536)
        if not more:
            raise EOFError("short request")
        data += more
    (size,) = struct.unpack("!I", data[:4])
    if size > MAX_HEADER:
        raise ValueError("request too large")
    while len(data) < 4 + size:
        more = conn.recv(65536)
        if not more:
            raise EOFError("short request")
        data += more
    return json.loads(data[4:4 + size]), list(fds)


def become_command(request: dict, fds: list[int]) -> None:
    """In the child: take the request's streams, environment and folder."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds):
        if fd > 2:
            os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    os.chdir(request["cwd"])
    sys.argv = [request["argv0"], *request["args"]]
    sys.path[0] = os.getcwd()  # what `python -m` puts first


def serve(path: str) -> dict | None:
    """Answer requests until stdin closes (the test process ended, or is done
    with us); in a forked child, return its request."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    waiting: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "parent")
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            if key.data == "parent":  # the test process is gone, or closed our stdin
                return None
            if key.data == "child":
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
                while waiting:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    conn = waiting.pop(pid, None)
                    if conn is not None:
                        try:
                            conn.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                        except OSError:
                            pass
                        conn.close()
                continue
            conn, _ = listener.accept()
            try:
                request, fds = read_request(conn)
            except (OSError, ValueError, EOFError):
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                selector.close()
                listener.close()
                for other in waiting.values():
                    other.close()
                conn.close()
                os.close(wake_r)
                os.close(wake_w)
                become_command(request, fds)
                return request
            for fd in fds:
                os.close(fd)
            waiting[pid] = conn
            try:
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            except OSError:
                pass


def main() -> dict | None:
    preload()
    # What the imports made is shared with every child: kept out of the
    # collector, a child's collections do not touch (and copy) those pages.
    gc.freeze()
    return serve(sys.argv[1])


if __name__ == "__main__":
    if main() is not None:  # a child: the command, and the interpreter's own exit
        import runpy

        runpy.run_module("strongroom", run_name="__main__", alter_sys=True)
