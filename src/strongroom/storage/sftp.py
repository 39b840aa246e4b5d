"""A repository on an SSH server, over SFTP (asyncssh).

asyncssh runs in an event loop of its own, in one thread that this storage
owns; the Storage verbs, called from the repository's threads, hand their
work to it and wait. One SSH connection carries `connections` SFTP
channels (each one a server process on OpenSSH), and the requests of each
are pipelined by asyncssh, so large reads and writes keep many requests in
flight. Choice of library and measurements: docs/sftp.md.

A write goes to `.tmp-<32 hex>` in the object's folder and is renamed over
the name (posix-rename@openssh.com: atomic, replaces), so a reader never
sees half an object; one cut off leaves its temporary, which `temporaries`
reports and listings pass over, as in a local directory.

Errors are typed for the retry decorator: a connection that drops, times
out or cannot be reopened after it once worked is TransientStorageError
(the next request reconnects); a host key that is not trusted, refused
keys, or a host that does not answer before the first login are set-up
mistakes, raised at once.
"""

from __future__ import annotations

import asyncio
import itertools
import posixpath
import stat as stat_mode
import threading
import time
import uuid
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import asyncssh

from strongroom.errors import (AuthenticationFailed, FolderNotFound, ListingFailed, ObjectNotFound, StorageError,
                               StorageUnreachable, TransientStorageError, UsageError)
from strongroom.storage.base import Attempt, ObjectInfo, Storage, StorageInfo, Temporary, check_name
from strongroom.storage.connect_failures import classify_connect_failure
from strongroom.storage.local import _NAME_PART, _TEMP_NAME, _TEMP_PREFIX
from strongroom.storage.sftp_access import SFTPAccess, SFTPLocation

T = TypeVar("T")
DEFAULT_CONNECTIONS = 4
_THROTTLED = "throttled"  # what _speaks_other finds when sshd turns connections away
# A dead connection (a cable pulled, a server frozen) is noticed within
# about a minute even when no request is waiting on it.
_KEEPALIVE_SECONDS = 15
_KEEPALIVE_COUNT = 4
# A request's time allowance grows with its bytes: the timeout says how long
# a silent server may keep us, not how long a pack may take on a slow link.
_SLOWEST_BYTES_PER_SECOND = 64 * 1024
_LOST = (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)
# Failures of the connection itself, as asyncssh and the socket raise them.
_CONNECTION_ERRORS = (asyncssh.DisconnectError, asyncssh.ChannelOpenError, asyncssh.SFTPConnectionLost,
                      asyncssh.SFTPNoConnection, ConnectionError, OSError, EOFError)


class SFTPStorage(Storage):
    def __init__(self, location: SFTPLocation, access: SFTPAccess, *, connections: int = DEFAULT_CONNECTIONS,
                 timeout: float = 60.0) -> None:
        self.location = location
        self.access = access
        self.root = location.path.rstrip("/") or "/"
        self.url = location.url
        self.target = f"sftp host {location.netloc}"
        self.info = StorageInfo(connections=connections)
        self.timeout = timeout
        self._channels = max(1, connections)
        self._next = itertools.count()
        # Set at the first login: from then on a failure to connect is trouble
        # to wait out, not a mistake in the URL.
        self.answered = False
        self._known_dirs: set[str] = set()
        self._dirs_lock = threading.Lock()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._clients: list[asyncssh.SFTPClient] = []
        self._refused: StorageError | None = None
        self._login: tuple[Any, list] | None = None
        self._loop = asyncio.new_event_loop()
        self._connecting: asyncio.Lock | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="sftp", daemon=True)
        self._thread.start()
        self.connects = 0

    def __repr__(self) -> str:
        return f"SFTPStorage({self.url!r})"

    # ---- the event loop and the connection -----------------------------------------------

    def _allowance(self, nbytes: int) -> float:
        return self.timeout + nbytes / _SLOWEST_BYTES_PER_SECOND

    def _run(self, what: str, work: Callable[[asyncssh.SFTPClient], Awaitable[T]], nbytes: int | None = 0,
             pinned: asyncssh.SSHClientConnection | None = None) -> T:
        """Run `work` with one of the SFTP channels (or on the connection
        `pinned`, whose handle it uses), in the loop; its failures typed. It
        may take the timeout and the time `nbytes` take at the slowest rate
        (None: `work` bounds its own steps)."""
        if self._loop.is_closed():
            raise StorageError(f"{what}: the SFTP storage is closed")
        future = asyncio.run_coroutine_threadsafe(self._attempt(what, work, nbytes, pinned), self._loop)
        return future.result()

    async def _attempt(self, what: str, work: Callable[[asyncssh.SFTPClient], Awaitable[T]], nbytes: int | None,
                       pinned: asyncssh.SSHClientConnection | None) -> T:
        if pinned is None:
            client, conn = await self._client(what)
        else:
            client, conn = self._clients[0] if self._clients else None, pinned
        try:
            if nbytes is None:
                return await work(client)
            return await asyncio.wait_for(work(client), self._allowance(nbytes))
        except asyncio.TimeoutError:
            self._drop(conn)
            raise TransientStorageError(f"{what}: no answer from {self.location.netloc} in time "
                                        f"({self.timeout:.0f} s, and more for the bytes)",
                                        reason="the server does not answer") from None
        except _ConnectionLost:
            # Converted below the verbs (`_failed`): the connection is gone all the same.
            self._drop(conn)
            raise
        except asyncssh.SFTPError as e:
            if isinstance(e, _LOST):
                self._drop(conn)
                raise _lost(what, e) from None
            raise _failed(what, e) from None
        except _CONNECTION_ERRORS as e:
            self._drop(conn)
            raise _lost(what, e) from None

    async def _client(self, what: str) -> tuple[asyncssh.SFTPClient, asyncssh.SSHClientConnection]:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is None:
                await self._connect(what)
            conn, clients = self._conn, self._clients
        return clients[next(self._next) % len(clients)], conn

    async def _connect(self, what: str) -> None:
        if self._refused is not None:
            raise type(self._refused)(str(self._refused))
        loc = self.location
        if self._login is None:
            self._login = self._read_login()
        known, keys = self._login
        try:
            conn = await asyncio.wait_for(asyncssh.connect(
                loc.host, loc.port, username=loc.user, known_hosts=known, client_keys=keys or None,
                agent_path=self.access.agent_path, config=[], password=None, kbdint_auth=False, gss_auth=False,
                host_based_auth=False, keepalive_interval=_KEEPALIVE_SECONDS, keepalive_count_max=_KEEPALIVE_COUNT,
                connect_timeout=min(self.timeout, 20.0)), self.timeout)
        except asyncssh.HostKeyNotVerifiable:
            self._refused = StorageUnreachable(await self._host_key_story(known))
            raise self._refused from None
        except asyncssh.PermissionDenied:
            self._refused = AuthenticationFailed(
                f"{what}: the SSH server at {loc.netloc} refused the key{'s' if len(keys) > 1 else ''} offered for "
                f"user {loc.user!r}: check the user, --sftp-key-file and the server's authorized_keys")
            raise self._refused from None
        except asyncio.TimeoutError:
            raise self._unreachable(what, f"no answer from {loc.netloc} in {self.timeout:.0f} s",
                                    "the server does not answer", False) from None
        except (OSError, asyncssh.Error) as e:
            if isinstance(e, OSError):
                failure = classify_connect_failure(e, loc.host, loc.netloc)
                raise self._unreachable(what, failure.explanation, failure.reason, failure.setup_mistake) from None
            if isinstance(e, asyncssh.ProtocolError) and not self.answered:
                raise StorageUnreachable(f"{what}: {loc.netloc} does not speak SSH ({e.reason})") from None
            if isinstance(e, asyncssh.ConnectionLost) and not self.answered:
                other = await self._speaks_other()
                if other == _THROTTLED:
                    raise self._unreachable(what, f"the SSH server at {loc.netloc} turns new connections away "
                                            "(too many at once: its MaxStartups)", "the server is busy",
                                            False) from None
                if other:
                    raise StorageUnreachable(f"{what}: {loc.netloc} does not speak SSH: it answers something "
                                             "else (check the port)") from None
            raise self._unreachable(what, f"the SSH connection to {loc.netloc} failed ({e.reason})",
                                    f"SSH connection failed ({type(e).__name__})", False) from None
        clients = []
        try:
            for _ in range(self._channels):
                clients.append(await conn.start_sftp_client())
        except (asyncssh.Error, OSError) as e:
            # A server allows so many sessions per connection (OpenSSH's
            # MaxSessions, 10 by default): past that, the channels there are serve.
            if not clients or not isinstance(e, asyncssh.ChannelOpenError):
                conn.close()
                if not self.answered and isinstance(e, asyncssh.ChannelOpenError):
                    raise StorageUnreachable(f"{what}: {loc.netloc} offers no SFTP ({e.reason})") from None
                raise _lost(what, e) from None
        self._conn, self._clients = conn, clients
        self.answered = True
        self.connects += 1

    async def _speaks_other(self) -> bool | str:
        """Whether the port answers an SSH greeting with something that is not
        SSH (a web server's 400): asyncssh only says the connection was lost,
        which a server restarting says too. _THROTTLED when it is OpenSSH
        refusing more connections that have not logged in yet (MaxStartups,
        10:30:100 by default: a fleet's hosts starting together meet it), which
        says so in one line before it closes: trouble that passes."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.location.host, self.location.port), min(self.timeout, 10.0))
        except (OSError, asyncio.TimeoutError):
            return False
        try:
            writer.write(b"SSH-2.0-strongroom\r\n")
            answer = await asyncio.wait_for(reader.read(1024), min(self.timeout, 10.0))
        except (OSError, asyncio.TimeoutError):
            return False
        finally:
            writer.close()
        if answer.startswith(b"Exceeded MaxStartups"):
            return _THROTTLED
        return bool(answer) and not any(line.startswith(b"SSH-") for line in answer.splitlines())

    def _read_login(self) -> tuple[Any, list]:
        """The trusted host keys and the private keys, read once for the run:
        a reconnect does not read (or decrypt) them again."""
        access = self.access
        try:
            known = asyncssh.read_known_hosts(access.known_hosts)
        except FileNotFoundError:
            known = asyncssh.import_known_hosts("")
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read the known hosts file {access.known_hosts}: {e}") from None
        keys = []
        for path in access.key_files:
            try:
                keys.append(asyncssh.read_private_key(path, access.passphrase))
            except FileNotFoundError:
                raise UsageError(f"the SSH key file {path} does not exist") from None
            except asyncssh.KeyEncryptionError:
                raise UsageError(f"the SSH key {path} is encrypted and the passphrase given does not open it") \
                    from None
            except asyncssh.KeyImportError as e:
                if access.passphrase is None and "assphrase" in str(e):
                    # asyncssh has no type of its own for "encrypted, and no passphrase".
                    raise UsageError(f"the SSH key {path} is encrypted: give its passphrase in "
                                     "STRONGROOM_SFTP_KEY_PASSPHRASE_FILE (or STRONGROOM_SFTP_KEY_PASSPHRASE)") from None
                raise UsageError(f"cannot read the SSH key {path}: {e}") from None
            except OSError as e:
                raise UsageError(f"cannot read the SSH key {path}: {e.strerror}") from None
        if not keys and not access.agent_path:
            raise UsageError("no SSH key to log in with: use --sftp-key-file, or an SSH agent (SSH_AUTH_SOCK)")
        return known, keys

    def _unreachable(self, what: str, explanation: str, reason: str, setup_mistake: bool) -> StorageError:
        if setup_mistake and not self.answered:
            return StorageUnreachable(f"{what}: {explanation}")
        return TransientStorageError(f"{what}: {explanation}", reason=reason)

    async def _host_key_story(self, known: Any) -> str:
        """Why the server's host key is refused, with its fingerprint and what to do."""
        loc = self.location
        file = self.access.known_hosts
        try:
            key = await asyncio.wait_for(asyncssh.get_server_host_key(loc.host, loc.port, config=[]),
                                         min(self.timeout, 20.0))
            offered = f"{key.get_algorithm()} key {key.get_fingerprint('sha256')}" if key else "no host key"
        except (OSError, asyncssh.Error, asyncio.TimeoutError):
            offered = "a key it did not show again"
        host = loc.host if loc.port == 22 else f"[{loc.host}]:{loc.port}"
        if known.match(loc.host, loc.host, loc.port)[0]:
            return (f"the host key of {loc.netloc} has CHANGED: {file} holds another key for it, and the server "
                    f"now offers the {offered}. This may be an attack; if the server was reinstalled, remove the "
                    f"old entry (ssh-keygen -R '{host}' -f {file}) and accept the new one after checking its "
                    f"fingerprint")
        return (f"the host key of {loc.netloc} is unknown: {file} holds no key for it; the server offers the "
                f"{offered}. If that is its fingerprint (ask its administrator: ssh-keygen -l -f on its host key), "
                f"accept it: ssh-keyscan -p {loc.port} {loc.host} >> {file}; or log in once with "
                f"ssh -p {loc.port} {loc.user}@{loc.host}")

    def _drop(self, conn: asyncssh.SSHClientConnection | None) -> None:
        """Forget a connection that failed, so the next request opens a new one."""
        if conn is not None and conn is self._conn:
            self._conn, self._clients = None, []
            conn.abort()

    # ---- paths --------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return f"{self.root}/{check_name(name)}" if self.root != "/" else f"/{check_name(name)}"

    async def _below_an_object(self, sftp: asyncssh.SFTPClient, name: str) -> bool:
        """Whether a folder on the way to `name` is an object: there is nothing below it."""
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            try:
                attrs = await sftp.lstat(self._path("/".join(parts[:i])))
            except asyncssh.SFTPNoSuchFile:
                return False
            if not stat_mode.S_ISDIR(attrs.permissions or 0):
                return True
        return False

    # ---- read ---------------------------------------------------------------------------

    async def _open_object(self, sftp: asyncssh.SFTPClient, name: str) -> tuple[Any, int]:
        path = self._path(name)
        try:
            handle = await sftp.open(path, "rb")
        except asyncssh.SFTPNoSuchFile:
            raise ObjectNotFound(f"{name} does not exist") from None
        except asyncssh.SFTPError as e:
            if await self._below_an_object(sftp, name):
                raise ObjectNotFound(f"{name} does not exist (below an object)") from None
            raise _failed(f"read {name}", e) from None
        try:
            attrs = await handle.stat()
        except BaseException:
            await _close(handle)
            raise
        if not stat_mode.S_ISREG(attrs.permissions or 0) or attrs.size is None:
            await _close(handle)
            raise ObjectNotFound(f"{name} does not exist (not an object)")
        return handle, attrs.size

    @staticmethod
    async def _pread(handle: Any, size: int, offset: int, length: int | None) -> bytes:
        # As on a local disk: past the end holds nothing, a range past it is cut to the object.
        length = max(0, size - offset) if length is None else min(length, max(0, size - offset))
        if length == 0:
            return b""
        data = await handle.read(length, offset)
        return data[:length]

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        check_name(name)

        async def work(sftp: asyncssh.SFTPClient) -> bytes:
            handle, size = await asyncio.wait_for(self._open_object(sftp, name), self.timeout)
            try:
                wanted = max(0, size - offset) if length is None else min(length, max(0, size - offset))
                return await asyncio.wait_for(self._pread(handle, size, offset, length), self._allowance(wanted))
            except asyncssh.SFTPError as e:
                if isinstance(e, _LOST):
                    raise
                raise _failed(f"read {name}", e) from None
            finally:
                await _close(handle)
        return self._run(f"read {name}", work, nbytes=None)

    def read_spans(self, name: str, spans) -> Iterator[bytes]:
        """Every span from one open file handle, on one channel."""
        check_name(name)
        spans = list(spans)
        what = f"read {name}"
        opened: dict[str, Any] = {}

        async def open_it(sftp: asyncssh.SFTPClient) -> None:
            opened["handle"], opened["size"] = await self._open_object(sftp, name)
            opened["conn"] = self._conn

        self._run(what, open_it)
        try:
            for offset, length in spans:
                async def one(_: asyncssh.SFTPClient, offset=offset, length=length) -> bytes:
                    try:
                        return await self._pread(opened["handle"], opened["size"], offset, length)
                    except asyncssh.SFTPError as e:
                        if isinstance(e, _LOST):
                            raise
                        raise _failed(what, e) from None
                yield self._run(what, one, nbytes=length, pinned=opened["conn"])
        finally:
            if not self._loop.is_closed():
                with_handle = opened["handle"]
                try:
                    asyncio.run_coroutine_threadsafe(_close(with_handle), self._loop).result(self.timeout)
                except Exception:
                    pass  # a handle on a dropped connection went with it

    # ---- write --------------------------------------------------------------------------

    def write(self, name: str, data: bytes | memoryview) -> None:
        check_name(name)
        what = f"write {name}"
        body = bytes(data)
        path = self._path(name)
        directory = posixpath.dirname(path)
        temp = f"{directory}/{_TEMP_PREFIX}{uuid.uuid4().hex}"
        parent = name.rsplit("/", 1)[0] if "/" in name else ""

        async def work(sftp: asyncssh.SFTPClient) -> None:
            try:
                try:
                    handle = await sftp.open(temp, "xb")
                except asyncssh.SFTPNoSuchFile:
                    if not parent:
                        raise
                    await self._make_parents(sftp, parent)
                    handle = await sftp.open(temp, "xb")
            except asyncssh.SFTPError as e:
                if isinstance(e, _LOST):
                    raise
                raise _failed(what, e) from None
            try:
                try:
                    if body:
                        await handle.write(body, 0)
                    await _fsync(handle)
                finally:
                    await _close(handle)
                await _replace(sftp, temp, path)
            except asyncssh.SFTPError as e:
                await _remove_quietly(sftp, temp)
                if isinstance(e, _LOST):
                    raise
                raise _failed(what, e) from None
            except asyncio.CancelledError:
                await _remove_quietly(sftp, temp)
                raise
            if parent:
                with self._dirs_lock:
                    self._known_dirs.add(parent)
        self._run(what, work, nbytes=len(body))

    async def _make_parents(self, sftp: asyncssh.SFTPClient, directory: str) -> None:
        parts = directory.split("/")
        for i in range(1, len(parts) + 1):
            await self._mkdir(sftp, "/".join(parts[:i]))

    async def _mkdir(self, sftp: asyncssh.SFTPClient, directory: str) -> None:
        if directory in self._known_dirs:
            return
        path = self._path(directory)
        try:
            await sftp.mkdir(path)
        except asyncssh.SFTPError as e:
            if isinstance(e, _LOST):
                raise
            # OpenSSH answers "failure" for one that exists: only a look tells that
            # apart from a refusal, or from an object in its place.
            try:
                attrs = await sftp.lstat(path)
            except asyncssh.SFTPNoSuchFile:
                raise _failed(f"create {directory}/", e) from None
            if not stat_mode.S_ISDIR(attrs.permissions or 0):
                raise StorageError(f"create {directory}/: an object of that name is in its place") from None
        with self._dirs_lock:
            self._known_dirs.add(directory)

    def make_dirs(self, directories: list[str]) -> None:
        for directory in directories:
            check_name(directory)

        async def work(sftp: asyncssh.SFTPClient) -> None:
            for directory in directories:
                await self._make_parents(sftp, directory)
        self._run("create folders", work)

    def create(self) -> None:
        async def work(sftp: asyncssh.SFTPClient) -> None:
            absolute = self.root.startswith("/")
            parts = [p for p in self.root.split("/") if p]
            for i in range(1, len(parts) + 1):
                path = ("/" if absolute else "") + "/".join(parts[:i])
                try:
                    attrs = await sftp.stat(path)
                except asyncssh.SFTPNoSuchFile:
                    try:
                        await sftp.mkdir(path)
                    except asyncssh.SFTPError as e:
                        if isinstance(e, _LOST):
                            raise
                        if not await _is_dir(sftp, path):
                            raise _failed(f"create {path}/", e) from None
                    continue
                if not stat_mode.S_ISDIR(attrs.permissions or 0):
                    raise StorageError(f"create the repository folder: {path} is a file, not a folder")
        self._run("create the repository folder", work)

    # ---- delete, stat -------------------------------------------------------------------

    def delete(self, name: str) -> None:
        check_name(name)

        async def work(sftp: asyncssh.SFTPClient) -> None:
            try:
                await sftp.remove(self._path(name))
            except asyncssh.SFTPNoSuchFile:
                pass
            except asyncssh.SFTPError as e:
                if isinstance(e, _LOST):
                    raise
                if await self._below_an_object(sftp, name):
                    return  # nothing lives below an object: it is missing
                raise _failed(f"delete {name}", e) from None
        self._run(f"delete {name}", work)

    def stat(self, name: str) -> ObjectInfo:
        check_name(name)

        async def work(sftp: asyncssh.SFTPClient) -> ObjectInfo:
            try:
                attrs = await sftp.lstat(self._path(name))
            except asyncssh.SFTPNoSuchFile:
                raise ObjectNotFound(f"{name} does not exist") from None
            except asyncssh.SFTPError as e:
                if isinstance(e, _LOST):
                    raise
                if await self._below_an_object(sftp, name):
                    raise ObjectNotFound(f"{name} does not exist (below an object)") from None
                raise _failed(f"stat {name}", e) from None
            if not stat_mode.S_ISREG(attrs.permissions or 0) or attrs.size is None:
                raise ObjectNotFound(f"{name} does not exist (not an object)")
            return ObjectInfo(name, attrs.size)
        return self._run(f"stat {name}", work)

    def exists(self) -> bool:
        async def work(sftp: asyncssh.SFTPClient) -> bool:
            try:
                attrs = await sftp.stat(self.root)
            except asyncssh.SFTPNoSuchFile:
                return False
            if not stat_mode.S_ISDIR(attrs.permissions or 0):
                raise StorageError(f"look up the repository: {self.root} on {self.location.netloc} is a file, "
                                   "not a folder")
            return True
        return self._run("look up the repository", work)

    # ---- listings -----------------------------------------------------------------------

    async def _read_folder(self, sftp: asyncssh.SFTPClient, path: str, what: str, vanished: bool) -> list:
        """The entries of one folder (without . and ..); a missing folder or an object is FolderNotFound."""
        try:
            entries = await sftp.readdir(path)
        except asyncssh.SFTPNoSuchFile:
            if vanished:
                raise FolderNotFound(f"{what}: the folder was in the listing a moment ago, but is gone") from None
            raise FolderNotFound(f"{what}: the folder does not exist") from None
        except asyncssh.SFTPError as e:
            if isinstance(e, _LOST):
                raise
            try:
                attrs = await sftp.lstat(path)
            except asyncssh.SFTPNoSuchFile:
                raise FolderNotFound(f"{what}: the folder does not exist") from None
            except asyncssh.SFTPError as again:
                if isinstance(again, _LOST):
                    raise
                raise ListingFailed(f"{what}: {_reason(e)}") from None
            if not stat_mode.S_ISDIR(attrs.permissions or 0):
                raise FolderNotFound(f"{what}: it is an object, not a folder") from None
            raise ListingFailed(f"{what}: {_reason(e)}") from None
        return [e for e in entries if _text(e.filename) not in (".", "..")]

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.list_by_request(prefix, _once)

    def list_by_request(self, prefix: str, attempt: Attempt) -> Iterator[ObjectInfo]:
        """One readdir per folder, each through `attempt`: a folder's entries are
        yielded once it is read whole, so a retried folder yields nothing twice."""
        check_name(prefix)
        pending = [prefix]
        while pending:
            directory = pending.pop()
            what = f"list {directory}/"

            async def work(sftp: asyncssh.SFTPClient, directory=directory, what=what) -> list:
                return await self._read_folder(sftp, self._path(directory), what, directory != prefix)

            entries = attempt(lambda: self._run(what, work))
            files, folders = [], []
            for entry in sorted(entries, key=lambda e: _text(e.filename)):
                child = _text(entry.filename)
                if not _NAME_PART.fullmatch(child):
                    continue  # a leftover ".tmp-" file, or something not ours
                if entry.attrs.permissions is None:
                    # Without its type an entry could be a pack or a folder of
                    # them: passing over it would make a listing look short.
                    raise ListingFailed(f"{what}: the server does not say whether {child} is a file or a folder")
                mode = entry.attrs.permissions
                if stat_mode.S_ISDIR(mode):
                    folders.append(f"{directory}/{child}")
                elif stat_mode.S_ISREG(mode):
                    if entry.attrs.size is None:
                        raise ListingFailed(f"{what}: the server does not give the size of {child}")
                    files.append(ObjectInfo(f"{directory}/{child}", entry.attrs.size))
            with self._dirs_lock:
                self._known_dirs.update(folders)
            pending.extend(reversed(folders))
            yield from files

    def entries(self) -> list[str]:
        async def work(sftp: asyncssh.SFTPClient) -> list[str]:
            what = "list the repository folder"
            return sorted(_text(e.filename) for e in await self._read_folder(sftp, self.root, what, False))
        return self._run("list the repository folder", work)

    def temporaries(self) -> list[Temporary]:
        async def work(sftp: asyncssh.SFTPClient) -> list[Temporary]:
            found, pending, now = [], [""], time.time()
            # A walk that misses a folder only finds fewer leftovers: nothing is
            # deleted for what it did not see.
            while pending:
                rel = pending.pop()
                try:
                    entries = await sftp.readdir(self._path(rel) if rel else self.root)
                except asyncssh.SFTPError as e:
                    if isinstance(e, _LOST):
                        raise
                    continue
                for entry in entries:
                    child = _text(entry.filename)
                    name = f"{rel}/{child}" if rel else child
                    mode = entry.attrs.permissions or 0
                    if stat_mode.S_ISDIR(mode) and _NAME_PART.fullmatch(child):
                        pending.append(name)
                    elif stat_mode.S_ISREG(mode) and _TEMP_NAME.fullmatch(name):
                        age = max(0.0, now - (entry.attrs.mtime or now))
                        found.append(Temporary(name, entry.attrs.size or 0, age))
            return sorted(found, key=lambda t: t.name)
        return self._run("look for temporary files", work)

    def remove_temporary(self, name: str) -> None:
        if not _TEMP_NAME.fullmatch(name):
            raise StorageError(f"invalid temporary file name {name!r}")

        async def work(sftp: asyncssh.SFTPClient) -> None:
            try:
                await sftp.remove(f"{self.root}/{name}")
            except asyncssh.SFTPNoSuchFile:
                pass
        self._run(f"delete {name}", work)

    def quota(self) -> tuple[int | None, int | None]:
        """The server's file system, where it answers statvfs@openssh.com."""
        async def work(sftp: asyncssh.SFTPClient) -> tuple[int | None, int | None]:
            path = self.root
            while True:
                try:
                    st = await sftp.statvfs(path)
                    break
                except asyncssh.SFTPOpUnsupported:
                    return None, None
                except asyncssh.SFTPNoSuchFile:
                    parent = posixpath.dirname(path)
                    if parent == path or not parent:
                        return None, None
                    path = parent
            # The server's numbers: a free count above the total is not taken for negative use.
            return max(0, st.blocks - st.bfree) * st.frsize, st.bavail * st.frsize
        return self._run("read the quota", work)

    def close(self) -> None:
        if self._loop.is_closed():
            return

        async def shut() -> None:
            conn, self._conn, self._clients = self._conn, None, []
            if conn is not None:
                conn.close()
                try:
                    await asyncio.wait_for(conn.wait_closed(), 5)
                except (asyncio.TimeoutError, OSError, asyncssh.Error):
                    pass
        try:
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


def _once(request: Callable[[], T]) -> T:
    return request()


def _text(name: str | bytes) -> str:
    return name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name


def _reason(error: asyncssh.SFTPError) -> str:
    return error.reason or type(error).__name__


class _ConnectionLost(TransientStorageError):
    """The SSH connection or its channel is gone: retried over a new one."""


def _failed(what: str, error: asyncssh.SFTPError) -> StorageError:
    if isinstance(error, _LOST):
        return _lost(what, error)
    if isinstance(error, asyncssh.SFTPPermissionDenied):
        return StorageError(f"{what}: the server refused it (permission denied): check the account's rights "
                            "to the repository folder")
    if isinstance(error, (asyncssh.SFTPNoSpaceOnFilesystem, asyncssh.SFTPQuotaExceeded)):
        return StorageError(f"{what}: the SFTP target is full ({_reason(error)})")
    return StorageError(f"{what}: {_reason(error)}")


def _lost(what: str, error: BaseException) -> TransientStorageError:
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or type(error).__name__
    return _ConnectionLost(f"{what}: the SSH connection failed ({reason})",
                                 reason=f"SSH connection lost ({type(error).__name__})")


async def _close(handle: Any) -> None:
    try:
        await handle.close()
    except (asyncssh.Error, OSError):
        pass


async def _fsync(handle: Any) -> None:
    try:
        await handle.fsync()
    except asyncssh.SFTPOpUnsupported:
        pass  # a server without fsync@openssh.com: its own durability


async def _replace(sftp: asyncssh.SFTPClient, temp: str, path: str) -> None:
    try:
        await sftp.posix_rename(temp, path)
    except asyncssh.SFTPOpUnsupported:
        # SFTP v3's rename refuses an existing target: the object is replaced
        # in two steps, so a reader may briefly find it missing, never half-written.
        try:
            await sftp.rename(temp, path)
        except asyncssh.SFTPFailure:
            await sftp.remove(path)
            await sftp.rename(temp, path)


async def _remove_quietly(sftp: asyncssh.SFTPClient, path: str) -> None:
    try:
        await sftp.remove(path)
    except (asyncssh.Error, OSError):
        pass


async def _is_dir(sftp: asyncssh.SFTPClient, path: str) -> bool:
    try:
        return stat_mode.S_ISDIR((await sftp.stat(path)).permissions or 0)
    except asyncssh.SFTPError as e:
        if isinstance(e, _LOST):
            raise
        return False
