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
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from strongroom.errors import FolderNotFound, IntegrityError, KeyFileDamaged, WrongPassword
from strongroom.repo.crypto import MasterKey, unwrap_with, wrap_with
from strongroom.storage.base import Storage, read_bounded

KEY_DIR = "keys"
_AAD = b"strongroom key v1"


@dataclass(frozen=True)
class KdfParams:
    """Argon2id parameters; stored in each key file, so any reader derives the same key."""

    memory_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 4

    def to_dict(self) -> dict:
        return {"memory_kib": self.memory_kib, "iterations": self.iterations, "lanes": self.lanes}


# New keys: 64 MiB, 3 passes, 4 lanes (about 0.2 s here). Callers that need
# other parameters pass them in; nothing lowers this from outside.
DEFAULT_KDF = KdfParams()
# What a key file may ask of a reader: a planted key file must not make an
# open allocate gigabytes or spin for hours.
MAX_KDF_MEMORY_KIB = 4 * 1024 * 1024
MAX_KDF_ITERATIONS = 64
MAX_KDF_LANES = 64
MAX_KEY_FILE = 64 * 1024  # a key file is under a kilobyte


@dataclass(frozen=True)
class KeyInfo:
    id: str
    kdf: str
    created: str
    hostname: str
    username: str
    memory_kib: int = 0


def _derive(password: bytes, salt: bytes, params: dict) -> bytes:
    return Argon2id(
        salt=salt,
        length=32,
        iterations=params["iterations"],
        lanes=params["lanes"],
        memory_cost=params["memory_kib"],
    ).derive(password)


def make_key_file(master: MasterKey, password: bytes | None, kdf: KdfParams | None = None) -> bytes:
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
        params = (kdf or DEFAULT_KDF).to_dict()
        salt = os.urandom(16)
        doc["kdf"] = "argon2id"
        doc["kdf_params"] = params
        doc["salt"] = base64.b64encode(salt).decode()
        doc["data"] = base64.b64encode(wrap_with(_derive(password, salt, params), payload, _AAD)).decode()
    return json.dumps(doc, sort_keys=True, indent=1).encode()


def store_key(storage: Storage, master: MasterKey, password: bytes | None, kdf: KdfParams | None = None) -> str:
    data = make_key_file(master, password, kdf)
    key_id = hashlib.sha256(data).hexdigest()
    storage.write(f"{KEY_DIR}/{key_id}", data)
    return key_id


def parse_key_file(data: bytes, name: str) -> dict:
    """The key file's document, or KeyFileDamaged: a key file names itself by the
    SHA-256 of its bytes, so any change to it shows."""
    if hashlib.sha256(data).hexdigest() != name.rsplit("/", 1)[-1]:
        raise KeyFileDamaged(f"key file {name} is damaged: its content does not match its name")
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != 1 or doc.get("kdf") not in ("argon2id", "none"):
            raise ValueError
        if doc["kdf"] == "argon2id":
            params = doc["kdf_params"]
            if not (isinstance(params, dict) and all(isinstance(params.get(k), int) for k in
                                                     ("memory_kib", "iterations", "lanes"))):
                raise ValueError
            if not (1 <= params["lanes"] <= MAX_KDF_LANES and 1 <= params["iterations"] <= MAX_KDF_ITERATIONS
                    and 8 * params["lanes"] <= params["memory_kib"] <= MAX_KDF_MEMORY_KIB):
                raise KeyFileDamaged(f"key file {name} asks for key derivation parameters outside what this "
                                     f"version accepts ({params})")
            base64.b64decode(doc["salt"], validate=True)
            base64.b64decode(doc["data"], validate=True)
        else:
            base64.b64decode(doc["master"], validate=True)
        return doc
    except KeyFileDamaged:
        raise
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: JSON nested too deep
        raise KeyFileDamaged(f"key file {name}: not a key file this version understands") from None


class _Unwrapped:
    """Master keys this process has unwrapped, by key file and password.

    Unwrapping is a pure function of a key file's bytes and the password,
    and costs an Argon2id derivation (64 MiB, about 0.2-0.4 s here): a
    process that opens the same repository again (the daemon, for every
    job, API call and schedule; a command that opens twice) derives once.
    Kept in this process's memory only, never written anywhere; looked up
    by a digest of the key file and the password, so a wrong password finds
    nothing and derives as before. Module-level, unlike the rest of the
    code, because the openers share no object but the process.
    """

    LIMIT = 64  # key files; beyond it the oldest is forgotten

    def __init__(self) -> None:
        self._keys: OrderedDict[bytes, MasterKey] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _slot(data: bytes, password: bytes) -> bytes:
        return hashlib.sha256(b"strongroom unwrapped key\0" + hashlib.sha256(data).digest() + password).digest()

    def get(self, data: bytes, password: bytes) -> MasterKey | None:
        slot = self._slot(data, password)
        with self._lock:
            master = self._keys.get(slot)
            if master is not None:
                self._keys.move_to_end(slot)
            return master

    def put(self, data: bytes, password: bytes, master: MasterKey) -> None:
        slot = self._slot(data, password)
        with self._lock:
            self._keys[slot] = master
            while len(self._keys) > self.LIMIT:
                self._keys.popitem(last=False)


_UNWRAPPED = _Unwrapped()


def try_key(data: bytes, name: str, password: bytes | None) -> MasterKey | None:
    doc = parse_key_file(data, name)
    if doc["kdf"] == "none":
        try:
            return MasterKey.from_dict(json.loads(base64.b64decode(doc["master"])))
        except (ValueError, KeyError, TypeError, RecursionError):
            raise KeyFileDamaged(f"key file {name}: its master key is malformed") from None
    if password is None:
        return None
    master = _UNWRAPPED.get(data, password)
    if master is not None:
        return master
    derived = _derive(password, base64.b64decode(doc["salt"]), doc["kdf_params"])
    payload = unwrap_with(derived, base64.b64decode(doc["data"]), _AAD)
    if payload is None:
        return None
    try:
        master = MasterKey.from_dict(json.loads(payload))
    except (ValueError, KeyError, TypeError, RecursionError):
        raise KeyFileDamaged(f"key file {name}: its master key is malformed") from None
    _UNWRAPPED.put(data, password, master)
    return master


def open_key(storage: Storage, password, listed=None, read=None) -> tuple[MasterKey, str]:
    """Find the key file that opens; returns (master key, key id).

    `password` is bytes, None, or a function that returns it. A "no password"
    key opens only a repository that has no password keys: anyone who can
    write the target can plant one, with a config under a master key of
    their own, and a password-protected repository must never be opened by
    a key its password does not unwrap. Each key file is read once (through
    `read`, which may answer from a cache), from the listing given or a
    fresh one. When no key opens and some key file is damaged, that is
    what the error says: a wrong password is not the only cause.
    """
    files = []
    damaged: list[KeyFileDamaged] = []
    if listed is None:
        try:
            listed = list(storage.list(KEY_DIR))
        except FolderNotFound:
            listed = []
    if not listed:
        raise IntegrityError("the repository has no key files")
    for info in listed:
        key_id = info.name.rsplit("/", 1)[-1]
        try:
            data = (read or (lambda name: read_key_file(storage, name)))(info.name)
            files.append((key_id, data, parse_key_file(data, info.name)))
        except KeyFileDamaged as e:
            damaged.append(e)
    password_keys = [f for f in files if f[2]["kdf"] == "argon2id"]
    if not password_keys:
        for key_id, data, doc in files:
            try:
                return try_key(data, f"{KEY_DIR}/{key_id}", None), key_id
            except KeyFileDamaged as e:
                damaged.append(e)
        if damaged:
            raise damaged[0]
        raise IntegrityError("the repository has no usable key files")
    if callable(password):
        password = password()
    for key_id, data, _ in password_keys:
        try:
            master = try_key(data, f"{KEY_DIR}/{key_id}", password)
        except KeyFileDamaged as e:
            damaged.append(e)
            continue
        if master is not None:
            return master, key_id
    if damaged:
        raise KeyFileDamaged(f"{damaged[0]}; no other key file opens with this password "
                             f"(use another password or the recovery kit)")
    raise WrongPassword("wrong password: no key file opens with it")


def read_key_file(storage: Storage, name: str) -> bytes:
    """A key file's bytes, to MAX_KEY_FILE: a larger one is damaged."""
    try:
        return read_bounded(storage, name, MAX_KEY_FILE, "key file")
    except KeyFileDamaged:
        raise
    except IntegrityError as e:
        raise KeyFileDamaged(f"key file {name} is damaged: {str(e).split(': ', 1)[-1]}") from None


def list_keys(storage: Storage) -> list[KeyInfo]:
    result = []
    for info in storage.list(KEY_DIR):
        doc = parse_key_file(read_key_file(storage, info.name), info.name)
        result.append(
            KeyInfo(
                id=info.name.rsplit("/", 1)[-1],
                kdf=doc["kdf"],
                created=str(doc.get("created", "")),
                hostname=str(doc.get("hostname", "")),
                username=str(doc.get("username", "")),
                memory_kib=doc.get("kdf_params", {}).get("memory_kib", 0),
            )
        )
    return result
