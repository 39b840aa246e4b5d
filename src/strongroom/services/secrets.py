"""Where repository keys and WebDAV passwords live: never in the catalog.

The catalog stores only a reference such as `repo:my_backup:3f9a0c1e`; the
secret behind it is kept by one of two backends:

- the OS keyring (service "strongroom"), when the `keyring` package is
  installed and finds a real backend, unless STRONGROOM_SECRETS_BACKEND is
  "file";
- otherwise a JSON file, mode 0600 in a 0700 directory, that is replaced
  atomically (temporary file, fsync, rename) under an exclusive lock on a
  sibling lock file, so two processes setting different references both
  keep their change. Like ssh with its keys, a file that group or others
  can read is refused rather than used.

Secret values never enter a repr, an exception message or a log line.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from strongroom.daemon.logs import register_secret
from strongroom.errors import StrongroomError
from strongroom.paths import data_dir

SERVICE = "strongroom"
_FORMAT_VERSION = 1


def default_secrets_path() -> str:
    """`$STRONGROOM_SECRETS`, else `$XDG_DATA_HOME/strongroom/secrets.json` (~/.local/share by default)."""
    return os.environ.get("STRONGROOM_SECRETS") or os.path.join(data_dir(), "secrets.json")


def _usable_keyring() -> Any | None:
    """The keyring backend if one that really stores secrets is available, else None."""
    try:
        import keyring
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:
        return None
    # The fail and null backends are what keyring falls back to when the
    # system has no secret service: they refuse or discard every secret.
    module = type(backend).__module__
    if module.startswith(("keyring.backends.fail", "keyring.backends.null")):
        return None
    if getattr(backend, "priority", 1) <= 0:
        return None
    if hasattr(backend, "backends") and not backend.backends:  # a chainer with nothing to chain
        return None
    return backend


class _FileBackend:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_path = path + ".lock"
        self._thread_lock = threading.Lock()

    def _ensure_parent(self) -> None:
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700, exist_ok=True)
            os.chmod(parent, 0o700)  # makedirs' mode is filtered by the umask

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        # flock locks belong to an open file description, so this excludes
        # other processes; the thread lock excludes the threads of this one.
        self._ensure_parent()
        with self._thread_lock:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def load(self) -> dict[str, str]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return {}
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_mode & 0o077:
                raise StrongroomError(
                    f"the secrets file {self.path} can be read by group or others "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {self.path}`")
            if st.st_uid != os.getuid():
                raise StrongroomError(f"the secrets file {self.path} belongs to another user "
                                      f"(uid {st.st_uid}); it must be owned by uid {os.getuid()}")
            raw = f.read()
        try:
            doc = json.loads(raw)
        except ValueError:
            # `from None`: the decode error carries the whole document.
            raise StrongroomError(f"the secrets file {self.path} is damaged (not JSON)") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("secrets"), dict):
            raise StrongroomError(f"the secrets file {self.path} is damaged (no secrets table)")
        if doc.get("version", 0) > _FORMAT_VERSION:
            raise StrongroomError(f"the secrets file {self.path} was written by a newer strongroom")
        return doc["secrets"]

    def _store(self, secrets: dict[str, str]) -> None:
        data = json.dumps({"version": _FORMAT_VERSION, "secrets": secrets}, sort_keys=True, indent=1).encode()
        directory = os.path.dirname(os.path.abspath(self.path))
        temp = os.path.join(directory, f".{os.path.basename(self.path)}.{os.urandom(6).hex()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self.path)
        except BaseException:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)

    def set(self, ref: str, secret: str) -> None:
        with self._exclusive():
            secrets = self.load()
            secrets[ref] = secret
            self._store(secrets)

    def get(self, ref: str) -> str | None:
        # No lock: the file is only ever replaced whole, so a reader sees
        # the old or the new version.
        return self.load().get(ref)

    def delete(self, ref: str) -> None:
        with self._exclusive():
            secrets = self.load()
            if secrets.pop(ref, None) is not None:
                self._store(secrets)

    def refs(self) -> list[str]:
        return sorted(self.load())


class _KeyringBackend:
    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self._set_here: set[str] = set()  # keyrings cannot be listed portably

    def set(self, ref: str, secret: str) -> None:
        try:
            self.backend.set_password(SERVICE, ref, secret)
        except Exception as exc:
            raise StrongroomError(f"the OS keyring refused to store {ref} ({type(exc).__name__})") from None
        self._set_here.add(ref)

    def get(self, ref: str) -> str | None:
        try:
            return self.backend.get_password(SERVICE, ref)
        except Exception as exc:
            raise StrongroomError(f"the OS keyring could not read {ref} ({type(exc).__name__})") from None

    def delete(self, ref: str) -> None:
        try:
            if self.backend.get_password(SERVICE, ref) is not None:
                self.backend.delete_password(SERVICE, ref)
        except Exception as exc:
            raise StrongroomError(f"the OS keyring could not delete {ref} ({type(exc).__name__})") from None
        self._set_here.discard(ref)

    def refs(self) -> list[str]:
        return sorted(self._set_here)


class SecretsStore:
    """Secrets by reference: `set`, `get`, `delete`, `refs`, and `new_ref` to name a new one.

    `backend` is "file", "keyring" or None (the default): None follows
    STRONGROOM_SECRETS_BACKEND, and else takes the OS keyring when a usable
    one is installed, the file otherwise. `path` is the file backend's file
    (default: `default_secrets_path()`).
    """

    def __init__(self, path: str | os.PathLike | None = None, backend: str | None = None) -> None:
        self.path = os.fspath(path) if path is not None else default_secrets_path()
        choice = backend or os.environ.get("STRONGROOM_SECRETS_BACKEND") or "auto"
        if choice not in ("auto", "file", "keyring"):
            raise StrongroomError(f"unknown secrets backend {choice!r}: use 'file' or 'keyring'")
        keyring_backend = None if choice == "file" else _usable_keyring()
        if choice == "keyring" and keyring_backend is None:
            raise StrongroomError("the secrets backend 'keyring' was asked for, but no usable OS keyring "
                                  "is installed (pip install keyring, and a secret service)")
        self._impl: _FileBackend | _KeyringBackend
        if keyring_backend is not None:
            self.backend = "keyring"
            self._impl = _KeyringBackend(keyring_backend)
        else:
            self.backend = "file"
            self._impl = _FileBackend(self.path)

    def __repr__(self) -> str:
        where = f", path={self.path!r}" if self.backend == "file" else ""
        return f"SecretsStore(backend={self.backend!r}{where})"

    @staticmethod
    def _check_ref(ref: str) -> None:
        if not isinstance(ref, str) or not ref or any(ord(c) < 32 for c in ref):
            raise ValueError(f"a secret reference must be a non-empty printable string, not {ref!r}")

    def set(self, ref: str, secret: str) -> None:
        """Store (or replace) the secret behind `ref`."""
        self._check_ref(ref)
        if not isinstance(secret, str):
            raise TypeError(f"a secret must be a str, not {type(secret).__name__}")
        self._impl.set(ref, secret)

    def get(self, ref: str) -> str | None:
        """The secret behind `ref`, or None. A secret read is kept out of the
        daemon's log lines from then on (strongroom.daemon.logs)."""
        self._check_ref(ref)
        value = self._impl.get(ref)
        register_secret(value)
        return value

    def delete(self, ref: str) -> None:
        """Forget `ref`; deleting an unknown reference is not an error."""
        self._check_ref(ref)
        self._impl.delete(ref)

    def refs(self) -> list[str]:
        """The stored references, sorted (with the keyring: those set by this process)."""
        return self._impl.refs()

    def new_ref(self, prefix: str) -> str:
        """A fresh reference, `<prefix>:<8 hex digits>`, not yet in use."""
        self._check_ref(prefix)
        taken = set(self._impl.refs())
        while True:
            ref = f"{prefix}:{os.urandom(4).hex()}"
            if ref not in taken:
                return ref
