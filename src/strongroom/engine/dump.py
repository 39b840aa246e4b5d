"""Dump: one file's bytes, or a folder as a tar or zip stream, out of a snapshot.

A file is streamed a window of blobs at a time (WINDOW stored bytes): the
window's blobs are fetched with few ranged reads (see _read_window), each is
authenticated, decompressed and checked against its id as restore checks
it, and written before the next window is read. Memory stays at one window
whatever the size of the file. Before the first byte goes out,
every blob is looked up in the index and their lengths must add up to the
file's size, so a file the index cannot serve fails before anything is
written; damage found later stops the stream with an error (the exit code
says the output is incomplete).

Archives are written in stream mode (tar `w|`, zip without seeking), so
stdout may be a pipe. A tar carries modes, owners, mtimes (to the
nanosecond, in PAX headers), symlinks, hard links (by the inode and device
the snapshot recorded), FIFOs and device nodes. A zip carries files,
folders, modes and symlinks; it has no hard links (each link is a copy),
no special files, and times only from 1980 on, to two seconds. Neither
carries extended attributes, and sockets are left out of both.
"""

from __future__ import annotations

import os
import stat
import tarfile
import time
import zipfile
from typing import BinaryIO, Iterator

from strongroom.engine.tree_walk import resolve, walk_nodes
from strongroom.errors import IntegrityError, SnapshotNotFound, UsageError
from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Node
from strongroom.repo.index import BlobLocation
from strongroom.repo.pack import pack_name
from strongroom.repo.repository import Repository

WINDOW = 16 * 1024 * 1024  # stored bytes of a file planned and held at once
SPAN_LIMIT = 16 * 1024 * 1024  # the longest range read
ARCHIVES = ("tar", "zip")


def file_chunks(repo: Repository, node: Node, path: str = "") -> Iterator[bytes]:
    """The plaintext of a file node, blob by blob, each one verified."""
    repo.load_index()
    locs = []
    for blob_id in node.content:
        loc = repo.index.get(blob_id)
        if loc is None:
            raise IntegrityError(f"{path or node.display_name}: blob {blob_id.hex()[:16]} is not in the index")
        locs.append(loc)
    if sum(loc.raw_length for loc in locs) != node.size:
        raise IntegrityError(f"{path or node.display_name}: its blobs do not add up to its size of {node.size} bytes")
    return _stream(repo, node, locs)


def _stream(repo: Repository, node: Node, locs) -> Iterator[bytes]:
    i = 0
    while i < len(locs):
        # A window: the next blobs of the file, up to WINDOW stored bytes (at least one).
        j, needed = i, 0
        while j < len(locs) and (j == i or needed + locs[j].length <= WINDOW):
            needed += locs[j].length
            j += 1
        stored = _read_window(repo, locs[i:j])
        for k in range(i, j):
            loc = locs[k]
            name, data = stored[(loc.pack, loc.offset)]
            yield repo.open_blob(loc.type, node.content[k], data, loc.raw_length, name, verify_id=True)
        i = j


def _read_window(repo: Repository, locs: list[BlobLocation]) -> dict[tuple[bytes, int], tuple[str, memoryview]]:
    """The stored bytes of each blob in the window, read as few ranges as waste allows.

    A backup's blob workers store the chunks of a file out of order and
    between other files' chunks, so a file's blobs are near each other in a
    pack rather than contiguous. Blobs of one pack are read as one range
    while the gap before the next is no longer than that blob: at most as
    many bytes are wasted as are needed, so a window never holds more than
    twice WINDOW, and a file is read in a few ranges per pack, not one per chunk.
    """
    by_pack: dict[bytes, dict[int, BlobLocation]] = {}
    for loc in locs:
        by_pack.setdefault(loc.pack, {})[loc.offset] = loc
    stored: dict[tuple[bytes, int], tuple[str, memoryview]] = {}
    for pack, blobs in by_pack.items():
        name = pack_name(pack, repo.config.data_fanout)
        ordered = [blobs[o] for o in sorted(blobs)]
        runs, run = [], [ordered[0]]
        for loc in ordered[1:]:
            end = run[-1].offset + run[-1].length
            if 0 <= loc.offset - end <= loc.length and loc.offset + loc.length - run[0].offset <= SPAN_LIMIT:
                run.append(loc)
            else:
                runs.append(run)
                run = [loc]
        runs.append(run)
        for run in runs:
            start = run[0].offset
            span = memoryview(repo.storage.read(name, start, run[-1].offset + run[-1].length - start))
            for loc in run:
                stored[(pack, loc.offset)] = (name, span[loc.offset - start:loc.offset - start + loc.length])
    return stored


class _ChunkReader:
    """A read() over file_chunks, for the archive writers that copy from a file object."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes, fewer only at the end: tarfile takes a short read for the end."""
        parts, wanted = [], size
        while wanted != 0:
            if not self._buffer:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._buffer = memoryview(chunk)
            take = len(self._buffer) if wanted < 0 else min(wanted, len(self._buffer))
            parts.append(self._buffer[:take])
            self._buffer = self._buffer[take:]
            if wanted > 0:
                wanted -= take
        return b"".join(parts)


def find_path(repo: Repository, snapshot: Snapshot, path: str) -> tuple[list[bytes], Node | None, bytes | None]:
    """(the path's names, its node or None for the root, the tree to walk below it or None)."""
    names = [p.encode("utf-8", "surrogateescape") for p in path.split("/") if p]
    tree_id, node = resolve(repo, bytes.fromhex(snapshot.tree), path)
    if node is not None and node.type == DIR and node.subtree is None:
        tree_id = None
    return names, node, tree_id


def dump_file(repo: Repository, node: Node, out: BinaryIO, path: str = "") -> int:
    """Write a file's bytes to `out`; returns how many."""
    written = 0
    for chunk in file_chunks(repo, node, path):
        out.write(chunk)
        written += len(chunk)
    return written


def _entries(repo: Repository, names: list[bytes], node: Node | None, tree_id: bytes | None
             ) -> Iterator[tuple[bytes, Node]]:
    """(archive name, node) of the path itself (unless it is the root) and everything below it."""
    base = b"/".join(names)
    if node is not None:
        yield base, node
    if tree_id is None:
        return
    below: list[bytes] = []
    for depth, child in walk_nodes(repo, tree_id):
        del below[depth:]
        below.append(child.name)
        yield b"/".join(([base] if base else []) + below), child


def dump_archive(repo: Repository, names: list[bytes], node: Node | None, tree_id: bytes | None,
                 out: BinaryIO, archive: str = "tar") -> int:
    """Write the path and everything below it as an archive; returns the entry count.
    Names in the archive are the paths in the snapshot without the leading `/`."""
    if archive not in ARCHIVES:
        raise UsageError(f"unknown archive format {archive!r}: use tar or zip")
    entries = _entries(repo, names, node, tree_id)
    return _write_tar(repo, entries, out) if archive == "tar" else _write_zip(repo, entries, out)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _write_tar(repo: Repository, entries, out: BinaryIO) -> int:
    count = 0
    linked: dict[tuple[int, int], str] = {}  # (device, inode) of files with links -> first name
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for raw, n in entries:
            if n.type == SOCKET:
                continue
            name = _text(raw)
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.uname, info.gname = n.mode & 0o7777, n.uid, n.gid, n.user, n.group
            seconds, nanos = divmod(n.mtime_ns, 1_000_000_000)
            info.mtime = seconds
            info.pax_headers = {"mtime": f"{seconds}.{nanos:09d}"}
            content = None
            if n.type == FILE:
                key = (n.device, n.inode)
                if n.links > 1 and n.inode and key in linked:
                    info.type, info.linkname = tarfile.LNKTYPE, linked[key]
                else:
                    if n.links > 1 and n.inode:
                        linked[key] = name
                    info.size = n.size
                    content = _ChunkReader(file_chunks(repo, n, "/" + name))
            elif n.type == DIR:
                info.type = tarfile.DIRTYPE
            elif n.type == SYMLINK:
                info.type, info.linkname = tarfile.SYMTYPE, _text(n.target)
            elif n.type == FIFO:
                info.type = tarfile.FIFOTYPE
            elif n.type in (CHARDEV, BLOCKDEV):
                info.type = tarfile.CHRTYPE if n.type == CHARDEV else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(n.rdev), os.minor(n.rdev)
            tar.addfile(info, content)
            count += 1
    return count


_ZIP_EPOCH = time.mktime((1980, 1, 1, 0, 0, 0, 0, 0, -1))


def _zip_info(name: str, n: Node, kind: int) -> zipfile.ZipInfo:
    seconds = max(n.mtime_ns / 1e9, _ZIP_EPOCH)
    when = time.localtime(seconds)[:6]
    if when[0] > 2107:
        when = (2107, 12, 31, 23, 59, 58)
    info = zipfile.ZipInfo(name, when)
    info.external_attr = ((kind | (n.mode & 0o7777)) << 16) | (0x10 if kind == stat.S_IFDIR else 0)
    info.create_system = 3  # unix, so the mode bits above are read
    return info


def _write_zip(repo: Repository, entries, out: BinaryIO) -> int:
    count = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for raw, n in entries:
            name = raw.decode("utf-8", "backslashreplace")
            if n.type == DIR:
                info = _zip_info(name + "/", n, stat.S_IFDIR)
                info.compress_type = zipfile.ZIP_STORED
                archive.writestr(info, b"")
            elif n.type == SYMLINK:
                info = _zip_info(name, n, stat.S_IFLNK)
                info.compress_type = zipfile.ZIP_STORED
                archive.writestr(info, n.target)
            elif n.type == FILE:
                info = _zip_info(name, n, stat.S_IFREG)
                info.file_size = n.size
                info.compress_type = zipfile.ZIP_DEFLATED
                chunks = file_chunks(repo, n, "/" + name)  # checked before the entry's header goes out
                with archive.open(info, "w", force_zip64=n.size >= 2**31) as dest:
                    for chunk in chunks:
                        dest.write(chunk)
            else:
                continue
            count += 1
    return count


def dump_target(repo: Repository, snapshot: Snapshot, path: str, out: BinaryIO, archive: str = "tar") -> dict:
    """Dump `path` of the snapshot: a file as its bytes, anything else (a folder, the
    root, a symlink) as an archive of that format. Returns what was written."""
    names, node, tree_id = find_path(repo, snapshot, path)
    shown = "/" + "/".join(_text(n) for n in names)
    if node is not None and node.type == FILE:
        return {"path": shown, "kind": "file", "bytes": dump_file(repo, node, out, shown)}
    if node is not None and node.type == SOCKET:
        raise SnapshotNotFound(f"{shown} is a socket: nothing to dump")
    return {"path": shown, "kind": archive, "entries": dump_archive(repo, names, node, tree_id, out, archive)}
