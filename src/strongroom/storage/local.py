"""A repository in a local or mounted directory."""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
import time
import uuid
from typing import Iterator

from strongroom.errors import FolderNotFound, ListingFailed, ObjectNotFound, StorageError
from strongroom.storage.base import ObjectInfo, Spool, Storage, Temporary, check_name

_TEMP_PREFIX = ".tmp-"  # never a valid name, so listings pass over it
_NAME_PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


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

    def entries(self) -> list[str]:
        try:
            return sorted(os.listdir(self.root))
        except FileNotFoundError:
            raise FolderNotFound(f"cannot list {self.root}: the folder does not exist") from None
        except NotADirectoryError:
            raise FolderNotFound(f"cannot list {self.root}: it is a file, not a folder") from None
        except OSError as e:
            raise ListingFailed(f"cannot list {self.root}: {e.strerror}") from None

    def quota(self) -> tuple[int | None, int | None]:
        """The file system's used and free space (free as an ordinary user may use it)."""
        path = self.root
        while not os.path.isdir(path):
            parent = os.path.dirname(path)
            if parent == path:
                return None, None
            path = parent
        st = os.statvfs(path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_bavail * st.f_frsize

    def create(self) -> None:
        os.makedirs(self.root, exist_ok=True)

    def _open_object(self, name: str) -> tuple[int, int]:
        """An open descriptor of the object and its size."""
        try:
            fd = os.open(self._path(name), os.O_RDONLY | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"{name} does not exist") from None
        except OSError as e:
            raise StorageError(f"cannot read {name}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
        except OSError as e:
            os.close(fd)
            raise StorageError(f"cannot read {name}: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise ObjectNotFound(f"{name} does not exist (not an object)")
        return fd, st.st_size

    @staticmethod
    def _held(size: int, offset: int, length: int | None) -> int:
        """What of a range the object of `size` bytes holds. A range starting
        past the end holds nothing, like HTTP; one past the end is cut to the
        object, so a length an index claims is never allocated."""
        left = max(0, size - offset)
        return left if length is None else min(length, left)

    @staticmethod
    def _pread(fd: int, size: int, offset: int, length: int | None) -> bytes:
        length = LocalStorage._held(size, offset, length)
        data = os.pread(fd, length, offset)
        while len(data) < length:
            more = os.pread(fd, length - len(data), offset + len(data))
            if not more:
                break
            data += more
        return data

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        fd, size = self._open_object(name)
        try:
            return self._pread(fd, size, offset, length)
        except OSError as e:
            raise StorageError(f"cannot read {name}: {e.strerror}") from None
        finally:
            os.close(fd)

    def read_spans(self, name: str, spans) -> Iterator[bytes | memoryview]:
        """Every span from one open descriptor, read ahead as one sequential
        read, into one buffer the size of the largest span: each piece is
        good until the next is asked for (the contract of read_spans), and
        no span costs fresh memory."""
        spans = list(spans)
        fd, size = self._open_object(name)
        try:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            longest = max((self._held(size, offset, length) for offset, length in spans), default=0)
            buffer = memoryview(bytearray(longest))
            for offset, length in spans:
                yield self._pread_into(fd, size, offset, length, buffer)
        except OSError as e:
            raise StorageError(f"cannot read {name}: {e.strerror}") from None
        finally:
            os.close(fd)

    @staticmethod
    def _pread_into(fd: int, size: int, offset: int, length: int, buffer: memoryview) -> memoryview:
        want = LocalStorage._held(size, offset, length)
        got = 0
        while got < want:
            n = os.preadv(fd, [buffer[got:want]], offset + got)
            if not n:
                break
            got += n
        return buffer[:got]

    def _ensure_dir(self, directory: str) -> None:
        if directory in self._made_dirs:
            return
        os.makedirs(directory, exist_ok=True)
        with self._lock:
            self._made_dirs.add(directory)

    def write(self, name: str, data: bytes | memoryview) -> None:
        path = self._path(name)
        directory = os.path.dirname(path)
        temp = _temp_in(directory)
        try:
            self._ensure_dir(directory)
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

    def spool(self, directory: str) -> "LocalSpool":
        path = self._path(directory)
        temp = _temp_in(path)
        try:
            self._ensure_dir(path)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StorageError(f"cannot write in {directory}/: {e.strerror}") from None
        return LocalSpool(self, fd, temp)

    def delete(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as e:
            raise StorageError(f"cannot delete {name}: {e.strerror}") from None

    def stat(self, name: str) -> ObjectInfo:
        try:
            st = os.lstat(self._path(name))
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"{name} does not exist") from None
        except OSError as e:
            raise StorageError(f"cannot stat {name}: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"{name} does not exist (not an object)")
        return ObjectInfo(name, st.st_size)

    def temporaries(self) -> list[Temporary]:
        return _temporaries(self)

    def remove_temporary(self, name: str) -> None:
        if not _TEMP_NAME.fullmatch(name):
            raise StorageError(f"invalid temporary file name {name!r}")
        try:
            os.unlink(os.path.join(self.root, name))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StorageError(f"cannot delete {name}: {e.strerror}") from None

    def make_dirs(self, directories: list[str]) -> None:
        for directory in directories:
            path = self._path(directory)
            try:
                self._ensure_dir(path)
            except OSError as e:
                raise StorageError(f"cannot create {directory}/: {e.strerror}") from None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self._path(prefix)
        stack = [(base, prefix)]
        while stack:
            directory, rel = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                # The top folder, or a sub-folder seen a moment ago: either way
                # the listing is not whole, and must not pass for empty.
                if rel == prefix:
                    raise FolderNotFound(f"cannot list {prefix}/: the folder does not exist") from None
                raise FolderNotFound(f"cannot list {prefix}/: its folder {rel}/ vanished while it was listed") \
                    from None
            except NotADirectoryError:
                raise FolderNotFound(f"cannot list {rel}/: it is an object, not a folder") from None
            except OSError as e:
                raise ListingFailed(f"cannot list {rel}/: {e.strerror}") from None
            for entry in sorted(entries, key=lambda e: e.name):
                child = f"{rel}/{entry.name}"
                if not _NAME_PART.fullmatch(entry.name):
                    continue  # a leftover ".tmp-" file, or something not ours
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, child))
                elif entry.is_file(follow_symlinks=False):
                    try:
                        size = entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue  # deleted while we listed, e.g. a released lock
                    yield ObjectInfo(child, size)


_TEMP_NAME = re.compile(r"(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/)*\.tmp-[0-9a-f]{32}")


def _temporaries(storage: "LocalStorage") -> list[Temporary]:
    found = []
    now = time.time()
    # A walk that misses a folder only finds fewer leftovers: nothing is deleted for what it did not see.
    for directory, _, files in os.walk(storage.root):
        for name in files:
            path = os.path.join(directory, name)
            if not _TEMP_NAME.fullmatch(os.path.relpath(path, storage.root)):
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append(Temporary(os.path.relpath(path, storage.root), st.st_size, max(0.0, now - st.st_mtime)))
    return sorted(found, key=lambda t: t.name)


class LocalSpool(Spool):
    """A temporary file beside the objects, renamed to its object's name."""

    def __init__(self, storage: LocalStorage, fd: int, temp: str) -> None:
        self._storage = storage
        self._fd = fd
        self._temp = temp
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        if self._fd < 0:
            raise StorageError("a spool written after it was committed or discarded")
        view = memoryview(data).cast("B")
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
                self.size += written
        except OSError as e:
            raise StorageError(f"cannot write {os.path.basename(self._temp)}: {e.strerror}") from None

    def commit(self, name: str) -> None:
        if self._fd < 0:
            raise StorageError(f"cannot write {name}: its spool was committed or discarded")
        path = self._storage._path(name)
        directory = os.path.dirname(path)
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            self._storage._ensure_dir(directory)
            try:
                os.replace(self._temp, path)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                # Another file system mounted below the repository: copied, not renamed.
                with open(self._temp, "rb") as f:
                    data = f.read()
                self._storage.write(name, data)
                os.unlink(self._temp)
                return
            # The new name is made durable; the old one's going need not be (a
            # crash may leave it as a temporary, which prune removes).
            _fsync_dir(directory)
        except OSError as e:
            self.discard()
            raise StorageError(f"cannot write {name}: {e.strerror}") from None
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        try:
            os.unlink(self._temp)
        except OSError:
            pass  # gone already (committed), or left to prune as a dead writer's temporary


def _temp_in(directory: str) -> str:
    """A fresh temporary name in `directory` (see _TEMP_NAME)."""
    return os.path.join(directory, f"{_TEMP_PREFIX}{uuid.uuid4().hex}")


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
