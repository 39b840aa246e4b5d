"""A repository in a local or mounted directory."""

from __future__ import annotations

import errno
import os
import threading
import uuid
from typing import Iterator

from strongroom.errors import ObjectNotFound, StorageError
from strongroom.storage.base import ObjectInfo, Storage, check_name

_TEMP_PREFIX = ".tmp-"


class LocalStorage(Storage):
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.url = f"local:{self.root}"
        self._made_dirs: set[str] = set()
        self._lock = threading.Lock()

    def _path(self, name: str) -> str:
        return os.path.join(self.root, check_name(name))

    def exists(self) -> bool:
        return os.path.isdir(self.root)

    def create(self) -> None:
        os.makedirs(self.root, exist_ok=True)

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            fd = os.open(self._path(name), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ObjectNotFound(f"{name} does not exist") from None
        except OSError as e:
            raise StorageError(f"cannot read {name}: {e.strerror}") from None
        try:
            if length is None:
                length = os.fstat(fd).st_size - offset
            data = os.pread(fd, length, offset)
            while len(data) < length:
                more = os.pread(fd, length - len(data), offset + len(data))
                if not more:
                    break
                data += more
            return data
        finally:
            os.close(fd)

    def _ensure_dir(self, directory: str) -> None:
        if directory in self._made_dirs:
            return
        os.makedirs(directory, exist_ok=True)
        with self._lock:
            self._made_dirs.add(directory)

    def write(self, name: str, data: bytes | memoryview) -> None:
        path = self._path(name)
        directory = os.path.dirname(path)
        self._ensure_dir(directory)
        temp = os.path.join(directory, f"{_TEMP_PREFIX}{uuid.uuid4().hex}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
            _fsync_dir(directory)
        except OSError as e:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise StorageError(f"cannot write {name}: {e.strerror}") from None

    def delete(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StorageError(f"cannot delete {name}: {e.strerror}") from None

    def stat(self, name: str) -> ObjectInfo:
        try:
            return ObjectInfo(name, os.lstat(self._path(name)).st_size)
        except FileNotFoundError:
            raise ObjectNotFound(f"{name} does not exist") from None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self._path(prefix)
        stack = [(base, prefix)]
        while stack:
            directory, rel = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            except OSError as e:
                raise StorageError(f"cannot list {rel}: {e.strerror}") from None
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.startswith(_TEMP_PREFIX):
                    continue
                child = f"{rel}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, child))
                elif entry.is_file(follow_symlinks=False):
                    yield ObjectInfo(check_name(child), entry.stat(follow_symlinks=False).st_size)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
