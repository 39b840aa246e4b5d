"""Comparing directory trees the way a restore must reproduce them."""

from __future__ import annotations

import hashlib
import os
import stat


def snapshot_tree(root: bytes | str, with_times: bool = True) -> dict:
    """Map relative path -> what must survive a round trip."""
    root = os.fsencode(root)
    result = {}
    inodes: dict[int, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames) + sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            entry = {"mode": stat.S_IMODE(st.st_mode), "type": stat.S_IFMT(st.st_mode)}
            if with_times and not stat.S_ISLNK(st.st_mode) and not stat.S_ISDIR(st.st_mode):
                entry["mtime_ns"] = st.st_mtime_ns
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    entry["sha256"] = hashlib.sha256(f.read()).hexdigest()
                if st.st_nlink > 1:
                    entry["link_group"] = inodes.setdefault(st.st_ino, rel)
            elif stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(path)
            result[rel] = entry
    return result
