"""The directories of a restore target, reached only through file descriptors.

Every create, remove and metadata call of a restore names one entry relative
to an open directory (openat and friends), never a path. So a symlink
planted at a parent cannot redirect it, and a tree deeper than PATH_MAX
(4096 bytes) restores like a shallow one: no system call sees the whole path.

A directory is opened from its parent with O_NOFOLLOW | O_DIRECTORY, so what
is opened is the real directory or nothing. Descriptors are kept in a small
least-recently-used cache: a restore walks its items depth first, so the
parent of the next item is nearly always open already, and a deep tree
costs a bounded number of descriptors however deep it is.
"""

from __future__ import annotations

import errno
import os
import resource
import stat
import threading
from collections import OrderedDict
from typing import Protocol, Sequence

from strongroom.model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Node

ROOT = -1  # the target directory itself, the parent of the top-level items
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Entry(Protocol):
    parent: int  # index of the directory entry holding it, or ROOT
    name: bytes


def _cache_size() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 8))  # leave most descriptors to the files being written


def open_real_dir(path: bytes) -> int:
    """A descriptor of the directory at the absolute `path`, made where missing
    (0700), each component opened from its parent with O_NOFOLLOW: a symlink
    anywhere on the way (one swapped in after the target was checked) makes
    it fail (OSError) rather than lead elsewhere."""
    if not path.startswith(b"/"):
        raise ValueError("open_real_dir needs an absolute path")
    fd = os.open(b"/", _OPEN_DIR)
    try:
        for part in [p for p in path.split(b"/") if p]:
            if part in (b".", b".."):
                raise OSError(errno.EINVAL, "a target path holds . or ..", os.fsdecode(path))
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
            except FileExistsError:
                pass
            child = os.open(part, _OPEN_DIR, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


class TargetDirs:
    """Descriptors of the target and of the directories below it that a restore made.

    Only in a directory made (or found to be a real directory) by this restore
    is anything created: `mark_made` records one, `made` asks. All use of a
    descriptor happens under `lock`, so the cache never closes one in use.
    """

    def __init__(self, target: bytes, entries: Sequence[Entry], cache_size: int | None = None,
                 no_symlinks: bool = False) -> None:
        self.entries = entries
        self.lock = threading.RLock()
        self._capacity = cache_size or _cache_size()
        self._fds: OrderedDict[int, int] = OrderedDict()
        self._made: set[int] = {ROOT}
        self._root = open_real_dir(target) if no_symlinks else os.open(target, os.O_RDONLY | os.O_DIRECTORY
                                                                          | os.O_CLOEXEC)

    def __enter__(self) -> "TargetDirs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def made(self, index: int) -> bool:
        return index in self._made

    def mark_made(self, index: int) -> None:
        self._made.add(index)

    def fd(self, index: int) -> int:
        """The descriptor of a directory entry (or ROOT); hold `lock` while using it."""
        with self.lock:
            if index == ROOT:
                return self._root
            fd = self._fds.get(index)
            if fd is not None:
                self._fds.move_to_end(index)
                return fd
            # Open the way down from the nearest directory still open.
            missing = []
            while index != ROOT and index not in self._fds:
                missing.append(index)
                index = self.entries[index].parent
            fd = self._root if index == ROOT else self._fds[index]
            if index != ROOT:
                self._fds.move_to_end(index)
            for index in reversed(missing):
                fd = os.open(self.entries[index].name, _OPEN_DIR, dir_fd=fd)
                self._fds[index] = fd
                if len(self._fds) > self._capacity:  # the oldest is never the one just opened
                    os.close(self._fds.popitem(last=False)[1])
            return fd

    def at(self, index: int) -> "_HeldDir":
        """Hold the lock and the descriptor of the directory `index`."""
        return _HeldDir(self, index)

    def open(self, parent: int, name: bytes, flags: int, mode: int = 0o600) -> int:
        """Open `name` in the directory `parent`; the descriptor is the caller's to close."""
        with self.lock:
            return os.open(name, flags | os.O_CLOEXEC, mode, dir_fd=self.fd(parent))

    def close(self) -> None:
        with self.lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            if self._root >= 0:
                os.close(self._root)
                self._root = -1


class _HeldDir:
    """`with dirs.at(index) as dir_fd`: a class, not a generator context
    manager, since a restore enters one per file several times over."""

    __slots__ = ("dirs", "index")

    def __init__(self, dirs: TargetDirs, index: int) -> None:
        self.dirs = dirs
        self.index = index

    def __enter__(self) -> int:
        self.dirs.lock.acquire()
        try:
            return self.dirs.fd(self.index)
        except BaseException:
            self.dirs.lock.release()
            raise

    def __exit__(self, *exc) -> None:
        self.dirs.lock.release()


# ---- metadata, applied without following any symlink ------------------------------------

_KIND = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK, FIFO: stat.S_IFIFO,
         CHARDEV: stat.S_IFCHR, BLOCKDEV: stat.S_IFBLK, SOCKET: stat.S_IFSOCK}


class WrongType(OSError):
    """What stands under the name is not what the snapshot has there: nothing is applied to it."""

    def __init__(self, found: int) -> None:
        super().__init__(errno.EEXIST, f"{_describe(found)} is in the way")


def _describe(mode: int) -> str:
    kinds = {stat.S_IFREG: "a file", stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symlink",
             stat.S_IFIFO: "a fifo", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device", stat.S_IFSOCK: "a socket"}
    return kinds.get(stat.S_IFMT(mode), "something else")


def set_metadata(dir_fd: int, name: bytes, node: Node, as_root: bool) -> None:
    """Owner, mode, xattrs and times of `name` in `dir_fd`, on what is there only if it has the node's type.

    Files and directories are opened with O_NOFOLLOW and changed through the
    descriptor. A fifo or device is never opened (a device's driver would
    act on it): an O_PATH descriptor pins it, and the calls go through
    /proc/self/fd, which names that very inode. A symlink gets the calls that
    take AT_SYMLINK_NOFOLLOW, and no mode (Linux has none for links).
    """
    if node.type == SYMLINK:
        found = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        if not stat.S_ISLNK(found):
            raise WrongType(found)
        if as_root:
            os.chown(name, node.uid, node.gid, dir_fd=dir_fd, follow_symlinks=False)
        _set_xattrs(b"/proc/self/fd/%d/%s" % (dir_fd, name), node, follow_symlinks=False)
        os.utime(name, ns=(node.mtime_ns, node.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
        return
    fd, handle = _open_for_metadata(dir_fd, name, node)
    try:
        found = os.fstat(fd).st_mode
        if stat.S_IFMT(found) != _KIND[node.type]:
            raise WrongType(found)
        _apply(handle, node, as_root)
    finally:
        os.close(fd)


def set_dir_metadata(fd: int, node: Node, as_root: bool) -> None:
    """The same for a directory held open (opened with O_NOFOLLOW | O_DIRECTORY)."""
    _apply(fd, node, as_root)


def _open_for_metadata(dir_fd: int, name: bytes, node: Node) -> tuple[int, int | bytes]:
    """(descriptor to close, what the calls take: the descriptor or its /proc/self/fd name)."""
    if node.type in (FILE, DIR):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
            return fd, fd
        except PermissionError:
            pass  # not readable for this user: pin it by O_PATH as below
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise WrongType(stat.S_IFLNK) from None
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    return fd, b"/proc/self/fd/%d" % fd


def _apply(handle: int | bytes, node: Node, as_root: bool) -> None:
    if as_root:
        os.chown(handle, node.uid, node.gid)  # before the mode: chown clears setuid and setgid
    os.chmod(handle, node.mode)
    _set_xattrs(handle, node)
    os.utime(handle, ns=(node.mtime_ns, node.mtime_ns))


def _set_xattrs(handle: int | bytes, node: Node, follow_symlinks: bool = True) -> None:
    for key, value in node.xattrs:
        try:
            os.setxattr(handle, key, value, follow_symlinks=follow_symlinks)
        except OSError:
            pass  # not every filesystem or user may set every attribute
