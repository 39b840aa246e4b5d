"""Key files: the master key wrapped by a password, one file per password.

The wrapping key comes from Argon2id (memory-hard). A key file's name is the
SHA-256 of its bytes, so adding or changing a password only adds or removes
a key file. "No password" key files hold the master key unwrapped: the
repository is still authenticated, but anyone who can read the target can
read the data.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from strongroom.errors import IntegrityError, WrongPassword
from strongroom.repo.crypto import MasterKey, unwrap_with, wrap_with
from strongroom.storage.base import Storage

KEY_DIR = "keys"
_AAD = b"strongroom key v1"

# Argon2id parameters for new keys: 64 MiB, 3 passes, 4 lanes (about 0.2 s here).
DEFAULT_KDF = {"memory_kib": 64 * 1024, "iterations": 3, "lanes": 4}


@dataclass(frozen=True)
class KeyInfo:
    id: str
    kdf: str
    created: str
    hostname: str
    username: str


def _derive(password: bytes, salt: bytes, params: dict) -> bytes:
    return Argon2id(
        salt=salt,
        length=32,
        iterations=params["iterations"],
        lanes=params["lanes"],
        memory_cost=params["memory_kib"],
    ).derive(password)


def _kdf_params() -> dict:
    # Tests may lower the cost; the parameters are stored in the key file, so
    # any reader derives the same key.
    memory = os.environ.get("STRONGROOM_TEST_KDF_MEMORY_KIB")
    if memory:
        return {"memory_kib": int(memory), "iterations": 1, "lanes": 1}
    return dict(DEFAULT_KDF)


def make_key_file(master: MasterKey, password: bytes | None) -> bytes:
    """Serialise a key file; password None makes a "no password" key."""
    doc = {
        "version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hostname": socket.gethostname(),
        "username": getpass.getuser(),
    }
    payload = json.dumps(master.to_dict()).encode()
    if password is None:
        doc["kdf"] = "none"
        doc["master"] = base64.b64encode(payload).decode()
    else:
        params = _kdf_params()
        salt = os.urandom(16)
        doc["kdf"] = "argon2id"
        doc["kdf_params"] = params
        doc["salt"] = base64.b64encode(salt).decode()
        doc["data"] = base64.b64encode(wrap_with(_derive(password, salt, params), payload, _AAD)).decode()
    return json.dumps(doc, sort_keys=True, indent=1).encode()


def store_key(storage: Storage, master: MasterKey, password: bytes | None) -> str:
    data = make_key_file(master, password)
    key_id = hashlib.sha256(data).hexdigest()
    storage.write(f"{KEY_DIR}/{key_id}", data)
    return key_id


def _parse(data: bytes, name: str) -> dict:
    try:
        doc = json.loads(data)
        if doc.get("version") != 1 or doc.get("kdf") not in ("argon2id", "none"):
            raise ValueError
        return doc
    except ValueError:
        raise IntegrityError(f"{name}: not a key file this version understands") from None


def try_key(data: bytes, name: str, password: bytes | None) -> MasterKey | None:
    doc = _parse(data, name)
    if doc["kdf"] == "none":
        return MasterKey.from_dict(json.loads(base64.b64decode(doc["master"])))
    if password is None:
        return None
    derived = _derive(password, base64.b64decode(doc["salt"]), doc["kdf_params"])
    payload = unwrap_with(derived, base64.b64decode(doc["data"]), _AAD)
    if payload is None:
        return None
    return MasterKey.from_dict(json.loads(payload))


def open_key(storage: Storage, password, listed=None, read=None) -> tuple[MasterKey, str]:
    """Find the key file that opens; returns (master key, key id).

    `password` is bytes, None, or a function that returns it: it is only
    called when no "no password" key exists. Each key file is read once
    (through `read`, which may answer from a cache), from the listing given
    or a fresh one.
    """
    files = []
    listed = list(storage.list(KEY_DIR)) if listed is None else listed
    if not listed:
        raise IntegrityError("the repository has no key files")
    for info in listed:
        data = (read or storage.read)(info.name)
        key_id = info.name.rsplit("/", 1)[-1]
        if hashlib.sha256(data).hexdigest() == key_id:
            files.append((key_id, data, _parse(data, info.name)))
    for key_id, data, doc in files:
        if doc["kdf"] == "none":
            return try_key(data, key_id, None), key_id
    if callable(password):
        password = password()
    for key_id, data, _ in files:
        master = try_key(data, key_id, password)
        if master is not None:
            return master, key_id
    raise WrongPassword("wrong password: no key file opens with it")


def list_keys(storage: Storage) -> list[KeyInfo]:
    result = []
    for info in storage.list(KEY_DIR):
        doc = _parse(storage.read(info.name), info.name)
        result.append(
            KeyInfo(
                id=info.name.rsplit("/", 1)[-1],
                kdf=doc["kdf"],
                created=doc.get("created", ""),
                hostname=doc.get("hostname", ""),
                username=doc.get("username", ""),
            )
        )
    return result
