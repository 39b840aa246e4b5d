"""Repository objects as documents, for debugging: config, snapshots, index
objects, pack headers, key files, locks, trees, and blobs as raw bytes.

Each object is read and authenticated as the commands that use it read it;
a damaged or foreign one raises the same typed error. Nothing secret is in
any document: the config holds no keys, and a key file is shown by its
public parameters only (id, creation, host, user, KDF and its parameters),
never its salt, its wrapped or unwrapped master key, or anything derived
from them. There is deliberately no way to show the master key.
"""

from __future__ import annotations

import json

from strongroom.errors import IntegrityError, ObjectNotFound, UsageError
from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import Tree
from strongroom.repo import keys
from strongroom.repo.index import INDEX_DIR
from strongroom.repo.locks import LOCK_AAD, LOCK_DIR, MAX_LOCK
from strongroom.repo.pack import BLOB_TYPES, PACK_DIR, TREE, pack_name, read_pack_header
from strongroom.repo.repository import Repository
from strongroom.storage.base import read_bounded

KINDS = ("config", "snapshot", "index", "pack", "blob", "key", "lock", "tree")
_HEX = set("0123456789abcdef")


def _check_prefix(kind: str, prefix: str) -> str:
    prefix = prefix.lower()
    if not prefix or len(prefix) > 64 or not set(prefix) <= _HEX:
        raise UsageError(f"cat {kind}: an id is up to 64 hex digits, not {prefix!r}")
    return prefix


def find_object(repo: Repository, kind: str, folder: str, prefix: str) -> str:
    """The one object in `folder` whose id starts with `prefix` (one listing)."""
    prefix = _check_prefix(kind, prefix)
    found = [info.name for info in repo.storage.list(folder) if info.name.rsplit("/", 1)[-1].startswith(prefix)]
    if not found:
        raise ObjectNotFound(f"no {kind} with id {prefix}")
    if len(found) > 1:
        raise UsageError(f"{kind} id prefix {prefix} is ambiguous ({len(found)} match)")
    return found[0]


def config_document(repo: Repository) -> dict:
    return json.loads(repo.config.encode())


def snapshot_document(snap: Snapshot) -> dict:
    return {"id": snap.id, **json.loads(snap.encode())}


def _blob_entries(blobs) -> list[dict]:
    return [{"type": BLOB_TYPES[b.type], "id": b.id.hex(), "offset": b.offset, "length": b.length,
             "uncompressed_length": b.raw_length} for b in blobs]


def index_document(repo: Repository, prefix: str) -> dict:
    name = find_object(repo, "index", INDEX_DIR, prefix)
    packs, supersedes = repo.read_index_object(name)
    return {"id": name.rsplit("/", 1)[-1], "supersedes": [s.hex() for s in supersedes],
            "packs": [{"id": pack_id.hex(), "blobs": _blob_entries(blobs)} for pack_id, blobs in packs.items()]}


def pack_document(repo: Repository, prefix: str) -> dict:
    """A pack's header, read from the pack itself (not the index)."""
    prefix = _check_prefix("pack", prefix)
    if len(prefix) == 64:
        name = pack_name(bytes.fromhex(prefix), repo.config.data_fanout)
    else:
        repo.load_index()
        known = [p for p in repo.index.packs if p.hex().startswith(prefix)]
        name = pack_name(known[0], repo.config.data_fanout) if len(known) == 1 else \
            find_object(repo, "pack", PACK_DIR, prefix)
    size = repo.storage.stat(name).size
    blobs = read_pack_header(repo.storage, repo.crypto, name, size)
    return {"id": name.rsplit("/", 1)[-1], "size": size, "blobs": _blob_entries(blobs)}


def key_document(repo: Repository, prefix: str) -> dict:
    name = find_object(repo, "key", keys.KEY_DIR, prefix)
    doc = keys.parse_key_file(keys.read_key_file(repo.storage, name), name)
    shown = {"id": name.rsplit("/", 1)[-1], "kdf": doc["kdf"], "current": name.endswith("/" + repo.key_id)}
    for field in ("version", "created", "hostname", "username"):
        if isinstance(doc.get(field), (str, int)):
            shown[field] = doc[field]
    if doc["kdf"] == "argon2id":
        shown["kdf_params"] = {k: doc["kdf_params"][k] for k in ("memory_kib", "iterations", "lanes")}
    return shown


def lock_document(repo: Repository, prefix: str) -> dict:
    name = find_object(repo, "lock", LOCK_DIR, prefix)
    plain = repo.crypto.decrypt(read_bounded(repo.storage, name, MAX_LOCK, "lock"), LOCK_AAD, name)
    try:
        doc = json.loads(plain)
    except (ValueError, RecursionError):
        raise IntegrityError(f"{name}: not a lock") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"{name}: not a lock")
    return {"id": name.rsplit("/", 1)[-1], **doc}


def find_blob(repo: Repository, prefix: str) -> bytes:
    prefix = _check_prefix("blob", prefix)
    repo.load_index()
    if len(prefix) == 64:
        blob_id = bytes.fromhex(prefix)
        if blob_id not in repo.index:
            raise ObjectNotFound(f"no blob with id {prefix} in the index")
        return blob_id
    found = []
    for blob_id, _ in repo.index.items():
        if blob_id.hex().startswith(prefix):
            found.append(blob_id)
            if len(found) > 1:
                raise UsageError(f"blob id prefix {prefix} is ambiguous")
    if not found:
        raise ObjectNotFound(f"no blob with id {prefix} in the index")
    return found[0]


def blob_bytes(repo: Repository, blob_id: bytes) -> bytes:
    """A blob's plaintext, authenticated and checked against its id."""
    data = repo.read_blob(blob_id)
    if repo.crypto.blob_id(data) != blob_id:
        raise IntegrityError(f"blob {blob_id.hex()[:16]}: content does not match its id")
    return data


def tree_document(repo: Repository, tree_id: bytes) -> dict:
    repo.load_index()
    loc = repo.index.get(tree_id)
    if loc is None or loc.type != TREE:
        raise IntegrityError(f"blob {tree_id.hex()[:16]} is not a tree")
    data = blob_bytes(repo, tree_id)
    Tree.decode(data)  # a valid tree, or the one-line error every reader of it gives
    return {"id": tree_id.hex(), **json.loads(data)}
