"""The read-only file system a mount serves: path in, attributes or bytes out.

The operations follow the high-level (path-based) API of libfuse, as the
mfusepy binding passes it: paths arrive as text with undecodable bytes
escaped (surrogateescape), so every raw name of a tree can be reached. The
class itself does not import the binding; `serve` does.
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import signal
import stat
import threading
import time
from typing import Callable, Iterator

from strongroom.engine.mount.contents import BlobCache, OpenFile, TreeReader
from strongroom.engine.mount.views import Folder, InSnapshot, Link, Views, locate
from strongroom.errors import StrongroomError
from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Node
from strongroom.repo.repository import Repository

# Seconds a snapshot listing is used before a listing of a top folder reads it again.
REFRESH_SECONDS = 60.0
# libfuse's worker threads: each blocks on one read from the repository.
MAX_THREADS = 8
XATTR_NAME_MAX, XATTR_SIZE_MAX = 255, 65536  # Linux's limits

_KINDS = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK, FIFO: stat.S_IFIFO,
          CHARDEV: stat.S_IFCHR, BLOCKDEV: stat.S_IFBLK, SOCKET: stat.S_IFSOCK}
_WRITING = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class MountFailed(StrongroomError):
    """libfuse could not mount, or its loop ended in an error."""


def _fs_errors(method):
    """Map our errors to errno for the kernel; a repository error is also a warning."""
    @functools.wraps(method)
    def wrapper(self, path, *args):
        try:
            return method(self, path, *args)
        except FileNotFoundError:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT)) from None
        except OSError:
            raise
        except StrongroomError as e:
            self.warn(f"{path}: {e}")
            raise OSError(errno.EIO, os.strerror(errno.EIO)) from None
        except (MemoryError, RecursionError) as e:
            self.warn(f"{path}: {type(e).__name__}")
            raise OSError(errno.EIO, os.strerror(errno.EIO)) from None
    return wrapper


class SnapshotFS:
    """Snapshots by time, id, host and tag, each showing its tree, read only."""

    use_ns = True  # times in nanoseconds, as the trees keep them

    def __init__(self, repo: Repository, snapshots: list[Snapshot], warn: Callable[[str], None],
                 list_snapshots: Callable[[], list[Snapshot]], on_ready: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.repo = repo
        self.warn = warn
        self.trees = TreeReader(repo, warn)
        self.blobs = BlobCache(repo)
        self._list_snapshots = list_snapshots
        self._on_ready = on_ready
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._said: set[str] = set()
        self._views = self._build(snapshots)
        self._listed_at = clock()
        self._refreshing = threading.Lock()
        self._files: dict[int, OpenFile] = {}
        self._handles = itertools.count(1)
        self._files_lock = threading.Lock()
        self.uid, self.gid = os.getuid(), os.getgid()
        self.served = False  # the kernel came to us: the mount stands
        self.cwd: str | None = None  # where to be while serving: set by serve()

    # ---- the snapshot listing ------------------------------------------------------

    def _build(self, snapshots: list[Snapshot]) -> Views:
        views = Views.of(snapshots)
        for line in views.left_out:
            if line not in self._said and len(self._said) < 10_000:  # once, not at every refresh
                self._said.add(line)
                self.warn(line)
        return views

    def _refresh(self) -> None:
        """Read the snapshot listing again when it is old. A failed listing keeps
        the old one: no snapshot disappears because a listing failed."""
        if self._clock() - self._listed_at < self._refresh_seconds or not self._refreshing.acquire(blocking=False):
            return
        try:
            try:
                snapshots = self._list_snapshots()
            except StrongroomError as e:
                self.warn(f"could not read the snapshot listing again, showing the one before: {e}")
            else:
                self._views = self._build(snapshots)
            self._listed_at = self._clock()
        finally:
            self._refreshing.release()

    # ---- resolving paths -------------------------------------------------------------

    def _find(self, path: str):
        """(what the path is, its node inside a snapshot or None, the snapshot or None)."""
        place = locate(self._views, [p for p in path.split("/") if p])
        if place is None:
            raise FileNotFoundError(path)
        if isinstance(place, InSnapshot):
            parts = [p.encode("utf-8", "surrogateescape") for p in place.rest]
            return place, self.trees.lookup(bytes.fromhex(place.snap.tree), parts), place.snap
        return place, None, place.snap

    def _dir_attrs(self, snap: Snapshot | None) -> dict:
        when = _ns(snap)
        return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2, "st_uid": self.uid, "st_gid": self.gid,
                "st_size": 0, "st_mtime": when, "st_ctime": when, "st_atime": when}

    def _node_attrs(self, node: Node) -> dict:
        size = node.size if node.type == FILE else len(node.target) if node.type == SYMLINK else 0
        perm = 0o777 if node.type == SYMLINK else stat.S_IMODE(node.mode)
        return {"st_mode": _KINDS[node.type] | perm, "st_nlink": 2 if node.type == DIR else 1,
                "st_uid": node.uid, "st_gid": node.gid, "st_size": size, "st_blocks": (size + 511) // 512,
                "st_mtime": node.mtime_ns, "st_ctime": node.ctime_ns or node.mtime_ns, "st_atime": node.mtime_ns,
                "st_rdev": node.rdev if node.type in (CHARDEV, BLOCKDEV) else 0}

    # ---- the operations ----------------------------------------------------------

    def init(self, path) -> None:
        # libfuse has changed to / by now (as a daemon would); a relative
        # cache directory or repository path must still mean what it meant.
        if self.cwd is not None:
            os.chdir(self.cwd)
        self.served = True
        self._on_ready()

    @_fs_errors
    def getattr(self, path: str, fh=None) -> dict:
        place, node, snap = self._find(path)
        if isinstance(place, Link):
            when = _ns(snap)
            return {"st_mode": stat.S_IFLNK | 0o777, "st_nlink": 1, "st_uid": self.uid, "st_gid": self.gid,
                    "st_size": len(place.target.encode()), "st_mtime": when, "st_ctime": when, "st_atime": when}
        if node is None:
            return self._dir_attrs(snap)
        return self._node_attrs(node)

    @_fs_errors
    def readdir_with_offset(self, path: str, offset: int, fh) -> Iterator[tuple[str, dict, int]]:
        # Only at the start of a listing: one listed a buffer at a time keeps its offsets.
        if offset == 0 and isinstance(locate(self._views, [p for p in path.split("/") if p]), Folder):
            self._refresh()
        place, node, _ = self._find(path)
        if isinstance(place, Folder):
            names, modes = place.names, place.link
        elif isinstance(place, InSnapshot) and (node is None or node.type == DIR):
            listing = self.trees.listing((node.subtree or b"") if node else bytes.fromhex(place.snap.tree))
            names, modes = listing.names, listing.nodes
        else:
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        return self._entries(names, modes, offset)

    @staticmethod
    def _entries(names, nodes: dict[bytes, Node] | str | None, offset: int) -> Iterator[tuple[str, dict, int]]:
        """The entries from `offset` on; `nodes` gives their types, or for a folder
        above the snapshots the name of its one symlink."""
        # Offsets let the kernel ask for a large folder a buffer at a time,
        # so no listing is ever copied whole into libfuse's memory.
        if offset < 1:
            yield ".", {"st_mode": stat.S_IFDIR}, 1
        if offset < 2:
            yield "..", {"st_mode": stat.S_IFDIR}, 2
        for i in range(max(0, offset - 2), len(names)):
            name = names[i]
            if not isinstance(nodes, dict):
                yield name, {"st_mode": stat.S_IFLNK if name == nodes else stat.S_IFDIR}, i + 3
            else:
                yield name.decode("utf-8", "surrogateescape"), {"st_mode": _KINDS[nodes[name].type]}, i + 3

    @_fs_errors
    def readlink(self, path: str) -> str:
        place, node, _ = self._find(path)
        if isinstance(place, Link):
            return place.target
        if node is None or node.type != SYMLINK:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        if b"\0" in node.target:  # C would cut it short at the NUL: a different link
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return node.target.decode("utf-8", "surrogateescape")

    @_fs_errors
    def open(self, path: str, flags: int) -> int:
        if flags & _WRITING:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        place, node, _ = self._find(path)
        if node is None or node.type != FILE:
            code = errno.EISDIR if node is None or node.type == DIR else errno.EACCES
            raise OSError(code, os.strerror(code))
        opened = OpenFile(self.repo, node)
        with self._files_lock:
            fh = next(self._handles)
            self._files[fh] = opened
        return fh

    @_fs_errors
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._files_lock:
            opened = self._files.get(fh)
        if opened is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return opened.read(self.blobs, size, offset)

    def release(self, path: str, fh: int) -> int:
        with self._files_lock:
            self._files.pop(fh, None)
        return 0

    @_fs_errors
    def listxattr(self, path: str) -> list[str]:
        _, node, _ = self._find(path)
        return [name.decode("utf-8", "surrogateescape") for name, value in _xattrs(node)]

    @_fs_errors
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        _, node, _ = self._find(path)
        wanted = name.encode("utf-8", "surrogateescape")
        for key, value in _xattrs(node):
            if key == wanted:
                return value
        raise OSError(errno.ENODATA, os.strerror(errno.ENODATA))

    def statfs(self, path: str) -> dict:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}


def _xattrs(node: Node | None) -> Iterator[tuple[bytes, bytes]]:
    """The stored extended attributes the kernel can pass on: a name with NUL
    would split the list of names, and the kernel caps names and values."""
    for name, value in node.xattrs if node is not None else ():
        if name and b"\0" not in name and len(name) <= XATTR_NAME_MAX and len(value) <= XATTR_SIZE_MAX:
            yield name, value


def _ns(snap: Snapshot | None) -> int:
    return int(snap.datetime.timestamp() * 1e9) if snap is not None else 0


def serve(fs: SnapshotFS, mountpoint: str, allow_other: bool = False) -> None:
    """Mount `fs` at `mountpoint` and serve it until it is unmounted, or until
    SIGINT, SIGTERM or SIGHUP, which unmount it. Raises ImportError or OSError
    when the binding or libfuse cannot be loaded."""
    import mfusepy

    options = {"foreground": True, "ro": True, "nosuid": True, "nodev": True, "fsname": "strongroom",
               "subtype": "strongroom", "kernel_cache": True}
    if mfusepy.fuse_version_major == 3:  # libfuse 2 refuses these options
        options["max_idle_threads"] = MAX_THREADS
        if mfusepy.fuse_version_minor >= 12:
            options["max_threads"] = MAX_THREADS
    if allow_other:
        # Others see it too: then the kernel checks the modes and owners stored.
        options.update(allow_other=True, default_permissions=True)
    # libfuse catches these signals to unmount, but only where no handler is set:
    # Python's would wait for a main thread that is inside libfuse until unmount.
    saved = {sig: signal.signal(sig, signal.SIG_DFL) for sig in (signal.SIGTERM, signal.SIGHUP)}
    fs.cwd = os.getcwd()
    try:
        mfusepy.FUSE(fs, mountpoint, **options)
    except RuntimeError as e:
        # libfuse 3 reports a loop ended by a signal as an error (8) too: once
        # the mount stood, its end is the unmount asked for. Before, libfuse
        # has said on stderr why it could not mount.
        if not fs.served:
            raise MountFailed(f"could not mount at {mountpoint} (libfuse returned {e})") from None
    finally:
        os.chdir(fs.cwd)
        for sig, handler in saved.items():
            signal.signal(sig, handler)
