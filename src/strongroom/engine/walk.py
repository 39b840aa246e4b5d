"""What to back up: exclusion rules and reading file metadata."""

from __future__ import annotations

import fnmatch
import grp
import os
import pwd
import re
import stat
from dataclasses import dataclass, field
from functools import lru_cache

from strongroom.errors import UsageError
from strongroom.model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Node, new_node


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*", text.lower())
    if not m:
        raise UsageError(f"cannot read size {text!r}: use e.g. 500K, 20M, 1G")
    factor = 1024 ** " kmgtp".index(m.group(2) or " ")
    return int(float(m.group(1)) * factor)


@dataclass(frozen=True)
class ExcludeRules:
    patterns: tuple[str, ...] = ()
    if_present: tuple[str, ...] = ()
    caches: bool = False
    larger_than: int | None = None
    one_file_system: bool = False

    @classmethod
    def build(cls, patterns=(), files=(), if_present=(), caches=False, larger_than=None,
              one_file_system=False) -> "ExcludeRules":
        pats = list(patterns)
        for path in files:
            try:
                with open(path, encoding="utf-8") as f:
                    pats += [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
            except OSError as e:
                raise UsageError(f"cannot read exclude file {path}: {e.strerror}") from None
        size = parse_size(larger_than) if isinstance(larger_than, str) else larger_than
        return cls(tuple(pats), tuple(if_present), caches, size, one_file_system)

    def excludes_path(self, path: bytes) -> bool:
        """Glob rules: a pattern with a slash matches the whole path, else any name."""
        if not self.patterns:
            return False
        text = os.fsdecode(path)
        name = text.rsplit("/", 1)[-1]
        for pat in self.patterns:
            if "/" in pat.rstrip("/"):
                if fnmatch.fnmatchcase(text, pat) or fnmatch.fnmatchcase(text, pat.rstrip("/") + "/*"):
                    return True
            elif fnmatch.fnmatchcase(name, pat.rstrip("/")):
                return True
        return False

    def excludes_dir_contents(self, path: bytes, names: set[bytes]) -> bool:
        for marker in self.if_present:
            if os.fsencode(marker) in names:
                return True
        if self.caches and b"CACHEDIR.TAG" in names:
            try:
                with open(os.path.join(path, b"CACHEDIR.TAG"), "rb") as f:
                    return f.read(43) == b"Signature: 8a477f597d28d172789f06886806bc55"
            except OSError:
                return False
        return False

    def excludes_size(self, size: int) -> bool:
        return self.larger_than is not None and size > self.larger_than


@lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@lru_cache(maxsize=1024)
def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def read_xattrs(path: bytes) -> tuple[tuple[bytes, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    if not names:
        return ()
    out = []
    for name in sorted(names):
        try:
            out.append((os.fsencode(name), os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(out)


_TYPES = {stat.S_IFREG: FILE, stat.S_IFDIR: DIR, stat.S_IFLNK: SYMLINK, stat.S_IFIFO: FIFO,
          stat.S_IFCHR: CHARDEV, stat.S_IFBLK: BLOCKDEV}


def node_type(st: os.stat_result) -> str:
    return _TYPES.get(stat.S_IFMT(st.st_mode), SOCKET)


def metadata_node(name: bytes, path: bytes, st: os.stat_result, size: int = 0, content: tuple[bytes, ...] = (),
                  subtree: bytes | None = None, parent: Node | None = None) -> Node:
    """The node of one entry as the system describes it now. Built through
    new_node: the walk makes one for every entry of every backup.

    `parent`: the parent snapshot's node of the entry. When it is of the same
    type, inode, device and change time, its extended attributes and a
    symbolic link's target are taken from it instead of being read again: a
    change to an xattr sets the inode's change time (which no program can set
    back), and a link's target never changes in place."""
    mode = st.st_mode
    kind = _TYPES.get(stat.S_IFMT(mode), SOCKET)
    uid, gid = st.st_uid, st.st_gid
    if (parent is not None and parent.ctime_ns == st.st_ctime_ns and parent.inode == st.st_ino
            and parent.device == st.st_dev and parent.type == kind and st.st_ctime_ns):
        target, xattrs = parent.target, parent.xattrs
    else:
        target = os.readlink(path) if kind == SYMLINK else b""
        xattrs = read_xattrs(path)
    return new_node({
        "name": name, "type": kind, "mode": stat.S_IMODE(mode), "uid": uid, "gid": gid,
        "user": user_name(uid), "group": group_name(gid), "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns, "inode": st.st_ino, "device": st.st_dev, "links": st.st_nlink,
        "size": size, "content": content, "subtree": subtree, "target": target,
        "rdev": st.st_rdev if kind == CHARDEV or kind == BLOCKDEV else 0,
        "xattrs": xattrs,
    })


@dataclass
class SourceTree:
    """The source paths as a tree of names; leaves are walked for real."""

    children: dict[bytes, "SourceTree"] = field(default_factory=dict)
    real: bool = False

    @classmethod
    def from_paths(cls, paths: list[str]) -> "SourceTree":
        root = cls()
        for p in paths:
            node = root
            for part in [c for c in os.fsencode(p).split(b"/") if c]:
                if node.real:
                    break
                node = node.children.setdefault(part, cls())
            else:
                node.real = True
                node.children = {}
        return root
