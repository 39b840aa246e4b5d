"""Tree blobs: one directory's entries, serialised deterministically.

A tree is canonical JSON (sorted keys, no spaces, UTF-8) of
``{"nodes": [...]}`` with nodes sorted by their raw name bytes. Names and
link targets that are not valid UTF-8 are stored as base64 under
``name_b64`` / ``target_b64``. The same directory state always gives the same
bytes, so unchanged directories deduplicate.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from functools import cached_property

from strongroom.errors import IntegrityError, InvalidName

FILE, DIR, SYMLINK, FIFO, CHARDEV, BLOCKDEV, SOCKET = (
    "file", "dir", "symlink", "fifo", "chardev", "blockdev", "socket")
NODE_TYPES = {FILE, DIR, SYMLINK, FIFO, CHARDEV, BLOCKDEV, SOCKET}


class TreeContainsItself(IntegrityError):
    """A directory whose subtree is one of the trees above it.

    Impossible while every tree is stored under the hash of its content;
    a walk that meets one stops with this error instead of going round.
    """

    def __init__(self, tree_id: bytes) -> None:
        super().__init__(f"tree {tree_id.hex()[:16]} contains itself")
        self.tree_id = tree_id


def check_name(name: bytes) -> bytes:
    """Refuse any name that could lead outside the directory holding it."""
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise InvalidName(f"refusing unsafe name {name!r} in a tree")
    return name


@dataclass(frozen=True)
class Node:
    name: bytes
    type: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    user: str = ""
    group: str = ""
    mtime_ns: int = 0
    ctime_ns: int = 0
    inode: int = 0
    device: int = 0
    links: int = 1
    size: int = 0
    content: tuple[bytes, ...] = ()
    subtree: bytes | None = None
    target: bytes = b""
    rdev: int = 0
    xattrs: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def display_name(self) -> str:
        return self.name.decode("utf-8", "backslashreplace")


def _put_bytes(doc: dict, key: str, value: bytes) -> None:
    try:
        doc[key] = value.decode("utf-8")
    except UnicodeDecodeError:
        doc[key + "_b64"] = base64.b64encode(value).decode()


def node_to_dict(n: Node) -> dict:
    doc: dict = {
        "type": n.type, "mode": n.mode, "uid": n.uid, "gid": n.gid,
        "user": n.user, "group": n.group, "mtime_ns": n.mtime_ns, "ctime_ns": n.ctime_ns,
        "inode": n.inode, "device": n.device, "links": n.links,
    }
    _put_bytes(doc, "name", n.name)
    if n.type == FILE:
        doc["size"] = n.size
        doc["content"] = [c.hex() for c in n.content]
    elif n.type == DIR:
        doc["subtree"] = n.subtree.hex() if n.subtree else None
    elif n.type == SYMLINK:
        _put_bytes(doc, "target", n.target)
    elif n.type in (CHARDEV, BLOCKDEV):
        doc["rdev"] = n.rdev
    if n.xattrs:
        doc["xattrs"] = [[base64.b64encode(k).decode(), base64.b64encode(v).decode()] for k, v in n.xattrs]
    return doc


# The range of each number a node may hold: what the system calls that restore it
# take (a mode_t, a uid_t, nanoseconds in 64 bits). A number outside raised
# OverflowError from chown or chmod in the middle of a restore.
_U32, _U64, _I64 = (0, 2**32 - 1), (0, 2**64 - 1), (-2**63, 2**63 - 1)
_RANGES = {"mode": (0, 0o177777), "uid": _U32, "gid": _U32, "mtime_ns": _I64, "ctime_ns": _I64,
           "inode": _U64, "device": _U64, "links": _U64, "size": (0, 2**63 - 1), "rdev": _U64}
_U32_MAX, _U64_MAX, _I64_MIN, _I64_MAX = 2**32 - 1, 2**64 - 1, -2**63, 2**63 - 1


def _out_of_range(fields: dict) -> IntegrityError:
    for key, (low, high) in _RANGES.items():
        if not low <= fields[key] <= high:
            return IntegrityError(f"malformed tree node: {key} {fields[key]} is out of range")
    return IntegrityError("malformed tree node: a number is out of range")


_new_object, _set_attribute = object.__new__, object.__setattr__


def new_node(fields: dict) -> Node:
    """A Node whose instance dict is `fields`: a new dict, owned by the node from
    now on, holding every one of its fields, already checked.

    A frozen dataclass's __init__ sets each of its 18 fields through
    object.__setattr__; handing it its __dict__ at once costs a fifth of that,
    and a backup builds a node for every entry of every parent tree and of
    every directory it walks. The result is an ordinary Node: equal, hashed,
    replaced and frozen as any other.
    """
    node = _new_object(Node)
    _set_attribute(node, "__dict__", fields)
    return node


def node_from_dict(doc: dict) -> Node:
    try:
        get = doc.get
        node_type = doc["type"]
        if node_type not in NODE_TYPES:
            raise IntegrityError(f"unknown node type {node_type!r}")
        name = check_name(base64.b64decode(doc["name_b64"], validate=True) if "name_b64" in doc
                          else get("name", "").encode("utf-8"))
        mode, uid, gid = int(doc["mode"]), int(doc["uid"]), int(doc["gid"])
        mtime_ns, ctime_ns = int(doc["mtime_ns"]), int(get("ctime_ns", 0))
        inode, device = int(get("inode", 0)), int(get("device", 0))
        links, size, rdev = int(get("links", 1)), int(get("size", 0)), int(get("rdev", 0))
        content = get("content", ())
        subtree = get("subtree")
        target = b""
        if node_type == SYMLINK:
            target = base64.b64decode(doc["target_b64"], validate=True) if "target_b64" in doc \
                else get("target", "").encode("utf-8")
        xattrs = get("xattrs", ())
        fields = {
            "name": name, "type": node_type, "mode": mode, "uid": uid, "gid": gid,
            "user": str(get("user", "")), "group": str(get("group", "")),
            "mtime_ns": mtime_ns, "ctime_ns": ctime_ns, "inode": inode, "device": device, "links": links,
            "size": size, "content": tuple(map(bytes.fromhex, content)),
            "subtree": bytes.fromhex(subtree) if subtree else None, "target": target, "rdev": rdev,
            "xattrs": tuple((base64.b64decode(k), base64.b64decode(v)) for k, v in xattrs) if xattrs
            else tuple(xattrs),
        }
        if not (0 <= mode <= 0o177777 and 0 <= uid <= _U32_MAX and 0 <= gid <= _U32_MAX
                and _I64_MIN <= mtime_ns <= _I64_MAX and _I64_MIN <= ctime_ns <= _I64_MAX
                and 0 <= inode <= _U64_MAX and 0 <= device <= _U64_MAX and 0 <= links <= _U64_MAX
                and 0 <= size <= _I64_MAX and 0 <= rdev <= _U64_MAX):
            raise _out_of_range(fields)
        return new_node(fields)
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise IntegrityError(f"malformed tree node: {e}") from None


@dataclass(frozen=True)
class Tree:
    nodes: tuple[Node, ...] = field(default_factory=tuple)

    def encode(self) -> bytes:
        nodes = sorted(self.nodes, key=lambda n: n.name)
        doc = {"nodes": [node_to_dict(n) for n in nodes]}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> "Tree":
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser's stack
            raise IntegrityError("tree blob is not valid JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("nodes", []), list):
            raise IntegrityError("tree blob is not a tree")
        nodes = tuple(node_from_dict(d) for d in doc.get("nodes", ()))
        names = [n.name for n in nodes]
        if len(set(names)) != len(names):
            raise InvalidName("a tree names the same entry twice")
        return cls(nodes)

    @cached_property
    def _by_name(self) -> dict[bytes, Node]:
        return {n.name: n for n in self.nodes}

    def get(self, name: bytes) -> Node | None:
        """The entry of that name: a lookup, not a scan, so a backup that asks for
        every entry of a 20,000-entry folder stays linear."""
        return self._by_name.get(name)
