"""Authenticated encryption and keyed ids.

Every object and blob is AES-256-GCM with a fresh random 96-bit nonce:
``nonce (12) || ciphertext || tag (16)``. The associated data names what the
bytes are (and, for blobs, their id), so an object of one kind can never be
passed off as another.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.errors import IntegrityError

NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE
ID_SIZE = 32


@dataclass(frozen=True, repr=False)
class MasterKey:
    """The repository's secrets. Never printed, never logged."""

    encryption: bytes  # 32 bytes, AES-256-GCM
    id_key: bytes  # 32 bytes, keyed BLAKE3 for blob ids
    chunker_seed: int  # 1..2**63-1, perturbs the FastCDC gear table

    def __repr__(self) -> str:
        return "MasterKey(<secret>)"

    @classmethod
    def generate(cls) -> "MasterKey":
        return cls(
            encryption=secrets.token_bytes(32),
            id_key=secrets.token_bytes(32),
            chunker_seed=secrets.randbelow(2**63 - 1) + 1,
        )

    def to_dict(self) -> dict:
        return {
            "encryption": base64.b64encode(self.encryption).decode(),
            "id_key": base64.b64encode(self.id_key).decode(),
            "chunker_seed": self.chunker_seed,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "MasterKey":
        key = cls(
            encryption=base64.b64decode(d["encryption"]),
            id_key=base64.b64decode(d["id_key"]),
            chunker_seed=int(d["chunker_seed"]),
        )
        if len(key.encryption) != 32 or len(key.id_key) != 32 or not 0 < key.chunker_seed < 2**63:
            raise IntegrityError("master key has the wrong shape")
        return key


class Crypto:
    """Encryption and ids under one master key. Thread-safe."""

    def __init__(self, key: MasterKey) -> None:
        self.key = key
        self._aead = AESGCM(key.encryption)

    def blob_id(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data, key=self.key.id_key).digest()

    def encrypt(self, plaintext: bytes | memoryview, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def encrypt_into(self, plaintext: bytes | memoryview, aad: bytes, out: memoryview) -> None:
        """Encrypt into `out`, which is exactly len(plaintext) + OVERHEAD bytes:
        the same ``nonce || ciphertext || tag`` as `encrypt`, without a copy."""
        nonce = os.urandom(NONCE_SIZE)
        out[:NONCE_SIZE] = nonce
        self._aead.encrypt_into(nonce, plaintext, aad, out[NONCE_SIZE:])

    def decrypt(self, data: bytes | memoryview, aad: bytes, what: str) -> bytes:
        if len(data) < OVERHEAD:
            raise IntegrityError(f"{what}: too short to be an encrypted object")
        view = memoryview(data)
        try:
            return self._aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], aad)
        except InvalidTag:
            raise IntegrityError(f"{what}: does not authenticate (damaged or altered)") from None


    def decrypt_into(self, data: bytes | memoryview, aad: bytes, what: str, out: memoryview) -> memoryview:
        """`decrypt` into `out` (at least len(data) - OVERHEAD bytes): the
        plaintext, as the front of `out`."""
        if len(data) < OVERHEAD:
            raise IntegrityError(f"{what}: too short to be an encrypted object")
        view = memoryview(data)
        plain = out[:len(view) - OVERHEAD]
        try:
            self._aead.decrypt_into(view[:NONCE_SIZE], view[NONCE_SIZE:], aad, plain)
        except InvalidTag:
            raise IntegrityError(f"{what}: does not authenticate (damaged or altered)") from None
        return plain


def wrap_with(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unwrap_with(key: bytes, data: bytes, aad: bytes) -> bytes | None:
    """Decrypt with a derived key; None when the key is not the right one."""
    if len(data) < OVERHEAD:
        return None
    try:
        return AESGCM(key).decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], aad)
    except InvalidTag:
        return None
