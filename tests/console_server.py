"""A real `strongroom serve` with its web console, for the console's tests.

`ConsoleServer(tmp_path)` is the command line over a catalog of its own
(tests/catalog_cli.py); `start()` sets the console password with `strongroom
console set-password`, starts `serve --listen 127.0.0.1:0` and reads the URL
from its JSON start line; `signed_in()` is an httpx client signed in through
the sign-in page, as a browser is (its `.csrf` goes in X-CSRF-Token);
`stop()` ends the daemon with SIGTERM. Use it as a context manager.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from catalog_cli import CatalogCLI
import forked_cli

PASSWORD = "console-test-password-1"
DEADLINE = 60.0


class ConsoleClient(httpx.Client):
    """An httpx client with a console session; `csrf` is its CSRF token."""

    csrf: str = ""

    def send_csrf(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf}

    def post_json(self, url: str, body: dict | None = None, **kw) -> httpx.Response:
        return self.post(url, json=body if body is not None else {}, headers=self.send_csrf(), **kw)


class ConsoleServer(CatalogCLI):
    def __init__(self, tmp_path: Path, tz: str = "UTC") -> None:
        super().__init__(tmp_path, tz=tz, cache="cache")
        self.tmp = tmp_path
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.out_path = tmp_path / "serve.out"
        self.err_path = tmp_path / "serve.err"

    def set_password(self, password: str = PASSWORD) -> None:
        done = forked_cli.run(["console", "set-password"],
                              text=True, env={**self.env, "STRONGROOM_CONSOLE_PASSWORD": password}, timeout=60)
        assert done.returncode == 0, done.stderr

    def popen(self, *args: str) -> subprocess.Popen:
        """`strongroom ARGS` in the background, its output in `out_path` and `err_path`."""
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            return subprocess.Popen([sys.executable, "-m", "strongroom", *args], stdout=out, stderr=err,
                                    env=self.env)

    def start(self, *args: str, password: str | None = PASSWORD) -> str:
        """Start the daemon (after setting `password`, unless None) and return its URL."""
        if password is not None:
            self.set_password(password)
        self.proc = self.popen("serve", "--tick", "0.2", "--json", "--listen", "127.0.0.1:0", *args)
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            for line in self.out_path.read_text().splitlines():
                doc = json.loads(line)
                if doc.get("type") == "serve_started":
                    self.url = doc["url"]
                    return self.url
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"serve did not start: {self.output()}")

    def output(self) -> tuple[str, str]:
        return self.out_path.read_text(), self.err_path.read_text()

    def client(self, **kw) -> ConsoleClient:
        return ConsoleClient(base_url=self.url, timeout=60, **kw)

    def signed_in(self, password: str = PASSWORD) -> ConsoleClient:
        client = self.client()
        page = client.get("/login")
        assert page.status_code == 200, page.text
        value = re.search(r'data-login-csrf="([^"]+)"', page.text).group(1)
        done = client.post("/api/session", json={"password": password}, headers={"X-CSRF-Token": value})
        assert done.status_code == 200, done.text
        client.csrf = done.json()["csrf"]
        return client

    def token(self, name: str = "tests") -> str:
        """A new API token from `strongroom console token`."""
        return self.ok("console", "token", "--name", name).strip()

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> ConsoleServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def family_documents(server: ConsoleServer, tmp: Path) -> Path:
    """A configuration `family-documents` over a small tree in `tmp`, backed up
    once, so pages have rows to show; returns the tree."""
    source = tmp / "source"
    (source / "letters").mkdir(parents=True)
    (source / "letters" / "to the bank.txt").write_text("Dear bank,\n")
    (source / "photo.jpg").write_bytes(bytes(range(256)) * 64)
    server.ok("config", "add", "family-documents", "--source", str(source), "--target-dir", str(tmp / "repo"))
    server.ok("backup", "--config", "family-documents")
    return source
