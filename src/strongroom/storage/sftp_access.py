"""How to reach an SFTP target: where it is and how to log in, parsed at the edge.

Kept apart from storage/sftp.py so that building it (the command line does,
for every command) does not import the SSH library.

Accepted forms (restic's, so that a repository string can be pasted):

- `sftp://USER@HOST[:PORT]/PATH`: PATH relative to the login directory;
  `sftp://USER@HOST[:PORT]//PATH` for the absolute /PATH. An IPv6 address
  goes in brackets. `?connections=N` may follow.
- `sftp:USER@HOST:PATH`: the same without a port; PATH starting with `/`
  is absolute, else relative to the login directory.

A user is required (no guess from the local account), and a password in
the URL is refused: SFTP logs in by key only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from strongroom.errors import UsageError

DEFAULT_PORT = 22
_SCP_FORM = re.compile(r"sftp:(?P<user>[^@/:\[\]]+)@(?P<host>\[[0-9A-Fa-f:.]+\]|[^@/:\[\]]+):(?P<path>.*)")


@dataclass(frozen=True)
class SFTPLocation:
    user: str
    host: str  # without brackets
    port: int
    path: str  # absolute (/srv/repo) or relative to the login directory (repo)
    query: str = ""

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"sftp://{self.user}@{self.netloc}/{self.path}"


@dataclass(frozen=True)
class SFTPAccess:
    """How to log in: the keys to offer and the host keys to trust.

    `key_files` are private key files (tried in order), `agent_path` an SSH
    agent's socket (SSH_AUTH_SOCK, read at the edge), `passphrase` unlocks
    encrypted key files. `known_hosts` is the file of trusted host keys; a
    host whose key is not in it is refused, never trusted on first use.
    """

    known_hosts: str
    key_files: tuple[str, ...] = ()
    agent_path: str | None = None
    passphrase: str | None = field(default=None, repr=False)


def parse_sftp_url(url: str) -> SFTPLocation:
    if url.startswith("sftp://"):
        parts = urlsplit(url)
        if parts.password is not None:
            raise UsageError("never put a password in an SFTP URL: strongroom logs in by key only "
                             "(--sftp-key-file, or an SSH agent)")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise UsageError(f"the port in {url!r} is not a number from 1 to 65535") from None
        if not parts.username or not parts.hostname:
            raise UsageError("an SFTP repository URL needs a user and a host: sftp://USER@HOST:PORT//ABSOLUTE/PATH "
                             "or sftp://USER@HOST/PATH-IN-THE-LOGIN-DIRECTORY")
        if parts.fragment:
            raise UsageError(f"an SFTP repository URL has no #fragment: {url!r}")
        path = unquote(parts.path)[1:]  # the first slash only separates the path from the host
        user, host, query = unquote(parts.username), parts.hostname, parts.query
    else:
        match = _SCP_FORM.fullmatch(url)
        if not match or "?" in match["path"]:
            raise UsageError(f"cannot read the SFTP repository {url!r}: write sftp:USER@HOST:/PATH, or "
                             "sftp://USER@HOST:PORT//PATH with a port")
        user, host, path, port, query = match["user"], match["host"].strip("[]"), match["path"], DEFAULT_PORT, ""
    path = path.rstrip("/") if path.strip("/") else path[:1]
    if not path or path == "/":
        raise UsageError(f"the SFTP repository {url!r} names no folder: give its path after the host")
    if any(part in (".", "..") for part in path.split("/")) or "\0" in path:
        raise UsageError(f"the SFTP repository path {path!r} may not hold . or .. components")
    return SFTPLocation(user, host, port, path, query)
