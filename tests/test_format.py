"""The pieces of the on-disk format, one at a time: crypto, keys, compression,
packs, index, trees, snapshots, snapshot selection and chunking."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import time
from dataclasses import FrozenInstanceError, fields, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import blake3
import pytest

from strongroom.errors import IntegrityError, InvalidName, SnapshotNotFound, UsageError, WrongPassword, KeyFileDamaged
from strongroom.model.select import SnapshotFilter, find_snapshot, parse_time, snapshot_at
from strongroom.model.snapshot import INCREMENTAL, Snapshot
from strongroom.engine.walk import group_name, metadata_node, read_xattrs, user_name
from strongroom.model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Node, Tree, node_to_dict
from strongroom.repo import keys
from strongroom.repo.chunker import Chunker, ChunkerParams
from strongroom.repo.compression import (GZIP, LZ4, MAX_TREE_BLOB, RAW, ZSTD, Compressor, decompress,
                                         parse_compression)
from strongroom.repo.crypto import OVERHEAD, Crypto, MasterKey
from strongroom.repo.index import decode_index, encode_index
from strongroom.repo.pack import (DATA, TREE, PackedBlob, PackWriter, blob_aad, expected_pack_size,
                                  parse_header, read_pack_header)
from strongroom.storage import CountingStorage, LocalStorage

from conftest import PASSWORD

MiB = 1024 * 1024


def rand(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


TEXT = b"".join(b"line %d of a very ordinary source file, repeated\n" % i for i in range(2000))


@pytest.fixture
def crypto() -> Crypto:
    return Crypto(MasterKey.generate())


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    s = LocalStorage(str(tmp_path / "target"))
    s.create()
    return s


# ---- crypto ----------------------------------------------------------------------


def test_encrypt_decrypt_round_trip(crypto: Crypto):
    for plain in (b"", b"x", rand(100_000)):
        sealed = crypto.encrypt(plain, b"aad")
        assert len(sealed) == len(plain) + OVERHEAD
        assert crypto.decrypt(sealed, b"aad", "obj") == plain
        assert crypto.decrypt(memoryview(sealed), b"aad", "obj") == plain


def test_encryption_uses_fresh_nonces(crypto: Crypto):
    a, b = crypto.encrypt(b"same", b"aad"), crypto.encrypt(b"same", b"aad")
    assert a != b
    assert a[:12] != b[:12]


def test_wrong_aad_fails(crypto: Crypto):
    sealed = crypto.encrypt(b"a tree blob", blob_aad(TREE, b"\1" * 32))
    with pytest.raises(IntegrityError, match="index/abc"):
        crypto.decrypt(sealed, blob_aad(DATA, b"\1" * 32), "index/abc")
    with pytest.raises(IntegrityError):
        crypto.decrypt(sealed, blob_aad(TREE, b"\2" * 32), "blob")


def test_flipped_bit_fails_anywhere(crypto: Crypto):
    sealed = crypto.encrypt(rand(200), b"aad")
    for pos in (0, 11, 12, 100, len(sealed) - 17, len(sealed) - 1):
        damaged = bytearray(sealed)
        damaged[pos] ^= 0x01
        with pytest.raises(IntegrityError):
            crypto.decrypt(bytes(damaged), b"aad", "obj")


def test_truncated_or_foreign_ciphertext_fails(crypto: Crypto):
    sealed = crypto.encrypt(b"payload", b"aad")
    for short in (b"", sealed[:OVERHEAD - 1], sealed[:-1]):
        with pytest.raises(IntegrityError):
            crypto.decrypt(short, b"aad", "obj")
    with pytest.raises(IntegrityError):
        Crypto(MasterKey.generate()).decrypt(sealed, b"aad", "obj")


def test_blob_id_is_keyed():
    a, b = Crypto(MasterKey.generate()), Crypto(MasterKey.generate())
    data = b"a file everybody has"
    assert a.blob_id(data) == a.blob_id(data) == a.blob_id(memoryview(data))
    assert len(a.blob_id(data)) == 32
    assert a.blob_id(data) != b.blob_id(data)
    assert a.blob_id(data) != a.blob_id(data + b".")
    # The id does not reveal the content to someone without the key.
    assert a.blob_id(data) not in (blake3.blake3(data).digest(), hashlib.sha256(data).digest())


def test_master_key_round_trip_and_secrecy():
    key = MasterKey.generate()
    assert MasterKey.from_dict(json.loads(json.dumps(key.to_dict()))) == key
    assert "encryption" not in repr(key) and key.to_dict()["encryption"] not in repr(key)
    bad = dict(key.to_dict(), id_key=base64.b64encode(b"short").decode())
    with pytest.raises(IntegrityError):
        MasterKey.from_dict(bad)
    with pytest.raises(IntegrityError):
        MasterKey.from_dict(dict(key.to_dict(), chunker_seed=0))


# ---- key files ---------------------------------------------------------------------


def key_files(storage: LocalStorage) -> dict[str, bytes]:
    return {info.name: storage.read(info.name) for info in storage.list(keys.KEY_DIR)}


def test_password_key_opens_with_the_right_password_only(storage: LocalStorage):
    master = MasterKey.generate()
    key_id = keys.store_key(storage, master, PASSWORD)
    opened, opened_id = keys.open_key(storage, PASSWORD)
    assert opened == master
    assert opened_id == key_id
    with pytest.raises(WrongPassword):
        keys.open_key(storage, b"wrong horse battery staple")
    with pytest.raises(WrongPassword):
        keys.open_key(storage, None)
    asked = []
    assert keys.open_key(storage, lambda: asked.append(1) or PASSWORD) == (master, key_id)
    assert asked == [1]


def test_key_file_is_argon2id_and_hides_secrets(storage: LocalStorage):
    master = MasterKey.generate()
    keys.store_key(storage, master, PASSWORD)
    [(name, data)] = key_files(storage).items()
    doc = json.loads(data)
    assert doc["kdf"] == "argon2id"
    assert set(doc["kdf_params"]) == {"memory_kib", "iterations", "lanes"}
    assert PASSWORD not in data
    for secret in master.to_dict().values():
        assert str(secret).encode() not in data


def test_key_file_name_is_sha256_of_content(storage: LocalStorage):
    ids = [keys.store_key(storage, MasterKey.generate(), PASSWORD), keys.store_key(storage, MasterKey.generate(), None)]
    files = key_files(storage)
    assert sorted(files) == sorted(f"keys/{i}" for i in ids)
    for name, data in files.items():
        assert name == "keys/" + hashlib.sha256(data).hexdigest()


def test_key_file_under_a_wrong_name_is_reported_damaged(storage: LocalStorage):
    data = keys.make_key_file(MasterKey.generate(), PASSWORD)
    storage.write("keys/" + "0" * 64, data)
    with pytest.raises(KeyFileDamaged, match="is damaged: its content does not match its name"):
        keys.open_key(storage, PASSWORD)


def test_no_password_key_opens_with_none(storage: LocalStorage):
    master = MasterKey.generate()
    key_id = keys.store_key(storage, master, None)
    assert keys.open_key(storage, None) == (master, key_id)
    assert keys.open_key(storage, lambda: pytest.fail("a no-password key must not ask")) == (master, key_id)
    doc = json.loads(storage.read(f"keys/{key_id}"))
    assert doc["kdf"] == "none"


def test_two_passwords_open_the_same_master(storage: LocalStorage):
    master = MasterKey.generate()
    first = keys.store_key(storage, master, PASSWORD)
    second = keys.store_key(storage, master, b"another password")
    assert first != second
    assert keys.open_key(storage, PASSWORD) == (master, first)
    assert keys.open_key(storage, b"another password") == (master, second)
    assert sorted(k.id for k in keys.list_keys(storage)) == sorted([first, second])


def test_repository_without_key_files(storage: LocalStorage):
    with pytest.raises(IntegrityError):
        keys.open_key(storage, PASSWORD)


# ---- compression ---------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["zstd", "zstd:1", "zstd:19", "lz4", "gzip", "gzip:9"])
def test_codec_round_trip(spec: str):
    codec, level = parse_compression(spec)
    out = Compressor(codec, level).compress(TEXT)
    assert out[0] == codec
    assert len(out) < len(TEXT) // 3
    assert decompress(out, len(TEXT)) == TEXT
    assert decompress(Compressor(codec, level).compress(memoryview(TEXT)), len(TEXT)) == TEXT


@pytest.mark.parametrize("spec", ["zstd", "lz4", "gzip", "none"])
def test_incompressible_data_is_stored_raw(spec: str):
    data = rand(100_000, seed=5)
    out = Compressor(*parse_compression(spec)).compress(data)
    assert out == bytes([RAW]) + data
    assert decompress(out, len(data)) == data


@pytest.mark.parametrize("spec", ["zstd", "lz4", "gzip", "none"])
def test_empty_blob_round_trip(spec: str):
    out = Compressor(*parse_compression(spec)).compress(b"")
    assert decompress(out, 0) == b""


def test_none_codec_stores_raw():
    out = Compressor(*parse_compression("none")).compress(TEXT)
    assert out == bytes([RAW]) + TEXT


def test_parse_compression():
    assert parse_compression("zstd:19") == (ZSTD, 19)
    assert parse_compression("zstd") == (ZSTD, 3)
    assert parse_compression("lz4") == (LZ4, 0)
    assert parse_compression("gzip") == (GZIP, 6)
    assert parse_compression("gzip:1") == (GZIP, 1)
    assert parse_compression("none") == (RAW, 0)
    assert parse_compression(" ZSTD:5 ") == (ZSTD, 5)


@pytest.mark.parametrize("spec", ["", "zip", "brotli", "zstd:x", "zstd:1.5", "gzip:10", "gzip:-2", "zstd:23", "zstd:99"])
def test_parse_compression_refuses_bad_specs(spec: str):
    with pytest.raises(UsageError):
        parse_compression(spec)


def test_decompress_refuses_damage():
    good = Compressor(ZSTD, 3).compress(TEXT)
    with pytest.raises(IntegrityError):
        decompress(good, len(TEXT) - 1)
    with pytest.raises(IntegrityError):
        decompress(good, len(TEXT) + 1)
    with pytest.raises(IntegrityError):
        decompress(b"", 0)
    with pytest.raises(IntegrityError):
        decompress(bytes([9]) + TEXT, len(TEXT))
    for spec in ("zstd", "lz4", "gzip"):
        packed = Compressor(*parse_compression(spec)).compress(TEXT)
        with pytest.raises(IntegrityError):
            decompress(packed[:len(packed) // 2], len(TEXT))


# ---- packs --------------------------------------------------------------------------


def build_pack(crypto: Crypto, blobs: list[tuple[int, bytes]]) -> tuple[PackWriter, bytes, bytes]:
    writer = PackWriter()
    compressor = Compressor(ZSTD, 3)
    for blob_type, plain in blobs:
        blob_id = crypto.blob_id(plain)
        sealed = crypto.encrypt(compressor.compress(plain), blob_aad(blob_type, blob_id))
        writer.add(blob_type, blob_id, sealed, len(plain))
    entries = list(writer.blobs)
    pack_id, data = writer.seal(crypto)
    return entries, pack_id, data


def test_pack_seal_and_parse(crypto: Crypto):
    plains = [(DATA, rand(5000, 1)), (DATA, TEXT), (DATA, b""), (TREE, b'{"nodes":[]}')]
    entries, pack_id, data = build_pack(crypto, plains)
    assert pack_id == hashlib.sha256(data).digest()
    assert len(data) == expected_pack_size(entries)
    parsed, header_length = parse_header(crypto, data, len(data), "pack")
    assert parsed == entries
    assert header_length == OVERHEAD + 41 * len(plains)
    offset = 0
    for (blob_type, plain), entry in zip(plains, parsed):
        assert entry.offset == offset
        assert entry.type == blob_type
        assert entry.raw_length == len(plain)
        sealed = data[entry.offset:entry.offset + entry.length]
        compressed = crypto.decrypt(sealed, blob_aad(entry.type, entry.id), "blob")
        assert decompress(compressed, entry.raw_length) == plain
        offset += entry.length


def test_pack_grows_past_its_first_buffer(crypto: Crypto):
    """Blobs encrypted into the pack (seal_blob) and blobs moved in whole
    (add, as prune does) share one buffer that grows as it fills: every byte
    of a pack of several MiB reads back."""
    writer = PackWriter()
    compressor = Compressor(ZSTD, 3)
    plains = [(DATA, rand(700_000, seed)) for seed in range(10, 16)] + [(TREE, TEXT * 20)]
    for i, (blob_type, plain) in enumerate(plains):
        blob_id = crypto.blob_id(plain)
        packed = compressor.compress(plain)
        if i % 2:
            writer.add(blob_type, blob_id, crypto.encrypt(packed, blob_aad(blob_type, blob_id)), len(plain))
        else:
            assert writer.seal_blob(crypto, blob_type, blob_id, packed, len(plain)) == len(packed) + OVERHEAD
    entries = list(writer.blobs)
    pack_id, data = writer.seal(crypto)
    assert len(data) == expected_pack_size(entries) > 4 * 1024 * 1024
    assert pack_id == hashlib.sha256(data).digest()
    assert parse_header(crypto, data, len(data), "pack")[0] == entries
    for (blob_type, plain), entry in zip(plains, entries):
        sealed = data[entry.offset:entry.offset + entry.length]
        plain_back = decompress(crypto.decrypt(sealed, blob_aad(blob_type, entry.id), "blob"), entry.raw_length,
                                MAX_TREE_BLOB)
        assert plain_back == plain


def test_empty_pack(crypto: Crypto):
    entries, pack_id, data = build_pack(crypto, [])
    assert len(data) == expected_pack_size([])
    assert parse_header(crypto, data, len(data), "pack") == ([], OVERHEAD)


def test_truncated_pack_fails(crypto: Crypto):
    _, _, data = build_pack(crypto, [(DATA, rand(3000, 2)), (DATA, rand(3000, 3))])
    for cut in (1, 4, 50, len(data) - 10):
        with pytest.raises(IntegrityError):
            parse_header(crypto, data[:-cut], len(data) - cut, "pack")
        with pytest.raises(IntegrityError):
            parse_header(crypto, data[cut:], len(data) - cut, "pack")


def test_truncated_pack_on_storage_fails(crypto: Crypto, storage: LocalStorage):
    _, _, data = build_pack(crypto, [(DATA, rand(3000, 2))])
    storage.write("data/truncated", data[:-7])
    with pytest.raises(IntegrityError):
        read_pack_header(storage, crypto, "data/truncated", len(data) - 7)


def test_damaged_pack_header_fails(crypto: Crypto):
    _, _, data = build_pack(crypto, [(DATA, rand(3000, 2))])
    damaged = bytearray(data)
    damaged[-10] ^= 0x80
    with pytest.raises(IntegrityError):
        parse_header(crypto, bytes(damaged), len(data), "pack")
    with pytest.raises(IntegrityError):
        parse_header(crypto, data, len(data) + 1, "pack")


def test_read_pack_header_small_pack_is_one_read(crypto: Crypto, storage: LocalStorage):
    entries, pack_id, data = build_pack(crypto, [(DATA, rand(100_000, 4)), (TREE, b"{}")])
    storage.write("data/small", data)
    counting = CountingStorage(storage)
    assert read_pack_header(counting, crypto, "data/small", len(data)) == entries
    assert counting.requests["read"] == 1


def test_read_pack_header_bigger_than_first_tail_read(crypto: Crypto, storage: LocalStorage):
    plains = [(DATA, b"tiny %d" % i) for i in range(2100)]
    entries, pack_id, data = build_pack(crypto, plains)
    assert OVERHEAD + 41 * len(plains) > 64 * 1024
    storage.write("data/huge-header", data)
    counting = CountingStorage(storage)
    parsed = read_pack_header(counting, crypto, "data/huge-header", len(data))
    assert parsed == entries
    assert counting.requests["read"] == 2
    assert len(data) == expected_pack_size(parsed)


# ---- index ----------------------------------------------------------------------------


def sample_index() -> tuple[dict[bytes, list[PackedBlob]], list[bytes]]:
    packs = {
        bytes([p]) * 32: [PackedBlob(DATA if i % 3 else TREE, bytes([p, i]) * 16, i * 1000, 1000 - i, 4000 + i)
                          for i in range(p + 1)]
        for p in range(1, 4)
    }
    return packs, [b"\xaa" * 32, b"\xbb" * 32]


def test_index_round_trip_with_supersedes():
    packs, supersedes = sample_index()
    assert decode_index(encode_index(packs, supersedes), "index/x") == (packs, supersedes)
    assert decode_index(encode_index(packs), "index/x") == (packs, [])
    assert decode_index(encode_index({}), "index/x") == ({}, [])


def test_index_pack_with_no_blobs():
    packs = {b"\x01" * 32: []}
    assert decode_index(encode_index(packs, [b"\x02" * 32]), "i") == (packs, [b"\x02" * 32])


def test_truncated_index_fails_at_every_length():
    data = encode_index(*sample_index())
    for cut in range(len(data)):
        with pytest.raises(IntegrityError):
            decode_index(data[:cut], "index/x")


def test_index_with_extra_bytes_or_bad_type_fails():
    packs, supersedes = sample_index()
    data = encode_index(packs, supersedes)
    with pytest.raises(IntegrityError):
        decode_index(data + b"\0", "index/x")
    with pytest.raises(IntegrityError):
        decode_index(b"XXXX" + data[4:], "index/x")
    bad = {b"\x01" * 32: [PackedBlob(7, b"\x03" * 32, 0, 10, 10)]}
    with pytest.raises(IntegrityError):
        decode_index(encode_index(bad), "index/x")


# ---- trees -----------------------------------------------------------------------------


def sample_nodes() -> list[Node]:
    return [
        Node(b"zeta.txt", FILE, mode=0o644, mtime_ns=1_700_000_000_123_456_789, size=12,
             content=(b"\x01" * 32, b"\x02" * 32), inode=42, links=2, user="alice", group="staff"),
        Node(b"Alpha", DIR, mode=0o755, subtree=b"\x09" * 32, uid=1000, gid=1000),
        Node(b"link", SYMLINK, mode=0o777, target=b"../zeta.txt"),
        Node(b"caf\xc3\xa9", FILE, mode=0o600, size=0, xattrs=((b"user.k", b"\x00\xffv"),)),
        Node(b"bad-\xff\xfe-latin1-\xe9", FILE, mode=0o640, size=3, content=(b"\x03" * 32,)),
        Node(b"odd-link", SYMLINK, target=b"/srv/\xe9t\xe9/\xed\xa0\x80"),
    ]


def test_tree_encode_is_deterministic_regardless_of_order():
    nodes = sample_nodes()
    encoded = Tree(tuple(nodes)).encode()
    for seed in range(5):
        shuffled = list(nodes)
        random.Random(seed).shuffle(shuffled)
        assert Tree(tuple(shuffled)).encode() == encoded
    assert Tree(tuple(reversed(nodes))).encode() == encoded


def test_tree_round_trip_sorts_by_raw_name():
    nodes = sample_nodes()
    decoded = Tree.decode(Tree(tuple(nodes)).encode())
    assert decoded.nodes == tuple(sorted(nodes, key=lambda n: n.name))
    assert [n.name for n in decoded.nodes][0] == b"Alpha"


def test_non_utf8_names_and_targets_survive():
    decoded = Tree.decode(Tree(tuple(sample_nodes())).encode())
    assert decoded.get(b"bad-\xff\xfe-latin1-\xe9").content == (b"\x03" * 32,)
    assert decoded.get(b"odd-link").target == b"/srv/\xe9t\xe9/\xed\xa0\x80"
    assert decoded.get(b"caf\xc3\xa9").xattrs == ((b"user.k", b"\x00\xffv"),)


def test_empty_tree_round_trip():
    assert Tree.decode(Tree().encode()) == Tree()


def node_doc(name_key: str = "name", name_value: str = "ok") -> dict:
    doc = node_to_dict(Node(b"placeholder", FILE, mode=0o644, size=1))
    del doc["name"]
    doc[name_key] = name_value
    return doc


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("key,value", [
    ("name", ".."), ("name", "."), ("name", ""), ("name", "a/b"), ("name", "/abs"),
    ("name", "a\x00b"), ("name", "../../etc/passwd"),
    ("name_b64", b64(b"..")), ("name_b64", b64(b"x/\xff")), ("name_b64", b64(b"\xff\x00")), ("name_b64", ""),
])
def test_tree_decode_rejects_unsafe_names(key: str, value: str):
    data = json.dumps({"nodes": [node_doc(key, value)]}).encode()
    with pytest.raises(InvalidName):
        Tree.decode(data)


def test_tree_decode_rejects_missing_name():
    doc = node_doc()
    del doc["name"]
    with pytest.raises(IntegrityError):
        Tree.decode(json.dumps({"nodes": [doc]}).encode())


def test_tree_decode_rejects_duplicate_names():
    data = json.dumps({"nodes": [node_doc("name", "same"), node_doc("name_b64", b64(b"same"))]}).encode()
    with pytest.raises(InvalidName):
        Tree.decode(data)


@pytest.mark.parametrize("data", [
    b"", b"\xff", b"not json", b"[]", b"null", b"5", b'{"nodes": 5}', b'{"nodes": [1]}',
    b'{"nodes": [{"type": "file", "name": 5, "mode": 0, "uid": 0, "gid": 0, "mtime_ns": 0}]}',
    b'{"nodes": [{"type": "nonsense", "name": "x", "mode": 0, "uid": 0, "gid": 0, "mtime_ns": 0}]}',
    b'{"nodes": [{"type": "file", "name": "x", "mode": 0, "uid": 0, "gid": 0, "mtime_ns": 0, "content": ["zz"]}]}',
])
def test_tree_decode_rejects_malformed_blobs(data: bytes):
    with pytest.raises(IntegrityError):
        Tree.decode(data)


def golden_nodes() -> tuple[Node, ...]:
    return (
        Node(b"z-last.txt", FILE, mode=0o644, uid=1000, gid=1000, user="ann", group="staff",
             mtime_ns=1_700_000_000_123_456_789, ctime_ns=1_700_000_001_000_000_000, inode=2**40 + 7,
             device=2049, links=2, size=5_000_000, content=(bytes(range(32)), b"\xff" * 32)),
        Node(b"caf\xc3\xa9 \xe2\x82\xac", DIR, mode=0o755, uid=0, gid=0, user="root", group="root",
             mtime_ns=-5, ctime_ns=0, inode=12, device=2**64 - 1, links=3, subtree=b"\xab" * 32,
             xattrs=((b"user.comment", "h\u00e9 \"quoted\"\n".encode()), (b"user.bin", b"\x00\xff\x80"))),
        Node(b"bad-\xff\xfe-name", SYMLINK, mode=0o777, uid=1, gid=2, mtime_ns=3, ctime_ns=4, inode=5,
             device=6, target=b"/tmp/\xe9t\xe9"),
        Node(b"link-ok", SYMLINK, mode=0o777, target="../d\u00e9j\u00e0/\u2603".encode()),
        Node(b"sda", BLOCKDEV, mode=0o660, gid=6, group="disk", rdev=2048, inode=99),
        Node(b"tty0", CHARDEV, mode=0o620, rdev=(4 << 8) | 0, user="", group="tty"),
        Node(b"pipe", FIFO, mode=0o600),
        Node(b"sock", SOCKET, mode=0o755, uid=2**32 - 1, gid=2**32 - 1),
        Node(b"empty-dir", DIR, mode=0o700),
        Node(b"empty-file", FILE, mode=0o400, user="\u00fcser", group="gr\u00f6up"),
        Node(b"\x01ctl\ttab", FILE, mode=0o644, size=3, content=(b"\x11" * 32,)),
    )


# What the encoder wrote for golden_nodes() before the walk built nodes through
# new_node: trees must stay byte-identical, or every unchanged directory of a
# repository written by an older version would be stored again.
GOLDEN_TREE = (
    b'{"nodes":[{"content":["1111111111111111111111111111111111111111111111111111111111111111"],"ctime_ns":0,"device":0,"gid":0,"group":"","inode":0,"links":1,"mode":420,"mtime_ns":0,"name":"\\u0001ctl\\ttab","size":3,"type":"file","uid":0,"user":""},{'
    b'"ctime_ns":4,"device":6,"gid":2,"group":"","inode":5,"links":1,"mode":511,"mtime_ns":3,"name_b64":"YmFkLf/+LW5hbWU=","target_b64":"L3RtcC/pdOk=","type":"symlink","uid":1,"user":""},{'
    b'"ctime_ns":0,"device":18446744073709551615,"gid":0,"group":"root","inode":12,"links":3,"mode":493,"mtime_ns":-5,"name":"caf\xc3\xa9 \xe2\x82\xac","subtree":"abababababababababababababababababababababababababababababababab","type":"dir","uid":0,"user":"root","xattrs":[["dXNlci5jb21tZW50","aMOpICJxdW90ZWQiCg=="],["dXNlci5iaW4=","AP+A"]]},{'
    b'"ctime_ns":0,"device":0,"gid":0,"group":"","inode":0,"links":1,"mode":448,"mtime_ns":0,"name":"empty-dir","subtree":null,"type":"dir","uid":0,"user":""},{'
    b'"content":[],"ctime_ns":0,"device":0,"gid":0,"group":"gr\xc3\xb6up","inode":0,"links":1,"mode":256,"mtime_ns":0,"name":"empty-file","size":0,"type":"file","uid":0,"user":"\xc3\xbcser"},{'
    b'"ctime_ns":0,"device":0,"gid":0,"group":"","inode":0,"links":1,"mode":511,"mtime_ns":0,"name":"link-ok","target":"../d\xc3\xa9j\xc3\xa0/\xe2\x98\x83","type":"symlink","uid":0,"user":""},{'
    b'"ctime_ns":0,"device":0,"gid":0,"group":"","inode":0,"links":1,"mode":384,"mtime_ns":0,"name":"pipe","type":"fifo","uid":0,"user":""},{'
    b'"ctime_ns":0,"device":0,"gid":6,"group":"disk","inode":99,"links":1,"mode":432,"mtime_ns":0,"name":"sda","rdev":2048,"type":"blockdev","uid":0,"user":""},{'
    b'"ctime_ns":0,"device":0,"gid":4294967295,"group":"","inode":0,"links":1,"mode":493,"mtime_ns":0,"name":"sock","type":"socket","uid":4294967295,"user":""},{'
    b'"ctime_ns":0,"device":0,"gid":0,"group":"tty","inode":0,"links":1,"mode":400,"mtime_ns":0,"name":"tty0","rdev":1024,"type":"chardev","uid":0,"user":""},{'
    b'"content":["000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f","ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"],"ctime_ns":1700000001000000000,"device":2049,"gid":1000,"group":"staff","inode":1099511627783,"links":2,"mode":420,"mtime_ns":1700000000123456789,"name":"z-last.txt","size":5000000,"type":"file","uid":1000,"user":"ann"}]}'
)


def test_tree_encoding_is_byte_identical_to_the_golden_tree():
    assert Tree(golden_nodes()).encode() == GOLDEN_TREE
    decoded = Tree.decode(GOLDEN_TREE)
    assert decoded.nodes == tuple(sorted(golden_nodes(), key=lambda n: n.name))
    assert decoded.encode() == GOLDEN_TREE
    assert [vars(n) for n in decoded.nodes] == [vars(n) for n in sorted(golden_nodes(), key=lambda n: n.name)]


def test_decoded_nodes_are_ordinary_frozen_nodes():
    node = Tree.decode(GOLDEN_TREE).get(b"z-last.txt")
    assert node == golden_nodes()[0] and hash(node) == hash(golden_nodes()[0])
    assert replace(node, size=1).size == 1
    with pytest.raises(FrozenInstanceError):
        node.size = 2


@pytest.mark.parametrize("key,value", [
    ("mode", 0o200000), ("mode", -1), ("uid", 2**32), ("gid", -1), ("mtime_ns", 2**63), ("ctime_ns", -2**63 - 1),
    ("inode", 2**64), ("device", -1), ("links", 2**64), ("size", 2**63), ("size", -1), ("rdev", 2**64),
])
def test_tree_decode_rejects_numbers_out_of_range(key: str, value: int):
    doc = node_doc()
    doc[key] = value
    with pytest.raises(IntegrityError, match=f"{key} {value} is out of range"):
        Tree.decode(json.dumps({"nodes": [doc]}).encode())


@pytest.mark.parametrize("change", [
    {"content": None}, {"content": 5}, {"xattrs": None}, {"xattrs": [["AA=="]]}, {"name_b64": None},
    {"mode": "x"}, {"uid": None}, {"mode": []}, {"subtree": "not hex"},
])
def test_tree_decode_rejects_malformed_fields(change: dict):
    doc = node_doc()
    doc.update(change)
    with pytest.raises(IntegrityError):
        Tree.decode(json.dumps({"nodes": [doc]}).encode())


def test_metadata_nodes_equal_nodes_built_field_by_field(tmp_path: Path):
    (tmp_path / "f").write_bytes(b"abc")
    (tmp_path / "d").mkdir()
    os.symlink(b"caf\xe9-target", os.fsencode(tmp_path) + b"/l")
    os.mkfifo(tmp_path / "p")
    made = {}
    for entry in os.scandir(os.fsencode(tmp_path)):
        st = entry.stat(follow_symlinks=False)
        node = metadata_node(entry.name, entry.path, st, size=3 if entry.name == b"f" else 0)
        kind = {b"f": FILE, b"d": DIR, b"l": SYMLINK, b"p": FIFO}[entry.name]
        expected = Node(name=entry.name, type=kind, mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid,
                        user=user_name(st.st_uid), group=group_name(st.st_gid), mtime_ns=st.st_mtime_ns,
                        ctime_ns=st.st_ctime_ns, inode=st.st_ino, device=st.st_dev, links=st.st_nlink,
                        size=3 if kind == FILE else 0, target=b"caf\xe9-target" if kind == SYMLINK else b"",
                        xattrs=read_xattrs(entry.path))
        assert node == expected and vars(node) == vars(expected)
        assert set(vars(node)) == {f.name for f in fields(Node)}
        made[entry.name] = node
    assert Tree(tuple(made.values())).encode() == Tree(tuple(Node(**vars(n)) for n in made.values())).encode()


# ---- snapshots ---------------------------------------------------------------------------


def make_snapshot(**changes) -> Snapshot:
    snap = Snapshot(
        time="2024-03-01T12:30:15.123456+02:00", tree="ab" * 32, paths=("/home/alice", "/etc"),
        hostname="host1", username="alice", uid=1000, gid=1000, tags=("daily", "important"),
        kind=INCREMENTAL, parent="cd" * 32, config_name="home", excludes=("*.tmp",),
        compression="zstd:3", program_version="0.1.0", summary={"files_new": 3, "bytes_added": 1024},
    )
    return replace(snap, **changes)


def test_snapshot_round_trip():
    snap = make_snapshot()
    data = snap.encode()
    assert b'"id"' not in data
    decoded = Snapshot.decode(data, "ef" * 32)
    assert decoded == replace(snap, id="ef" * 32)
    assert decoded.datetime == datetime(2024, 3, 1, 10, 30, 15, 123456, tzinfo=timezone.utc)
    assert decoded.short_id == "efefefef"


def test_snapshot_decode_ignores_unknown_fields():
    doc = json.loads(make_snapshot().encode())
    doc["from_the_future"] = [1, 2]
    assert Snapshot.decode(json.dumps(doc).encode(), "01" * 32) == replace(make_snapshot(), id="01" * 32)


@pytest.mark.parametrize("change", [{"time": "yesterday"}, {"tree": "not hex"}, {"paths": 5}, {"tree": None}])
def test_snapshot_decode_rejects_malformed(change: dict):
    doc = json.loads(make_snapshot().encode())
    doc.update(change)
    with pytest.raises(IntegrityError):
        Snapshot.decode(json.dumps(doc).encode(), "01" * 32)


@pytest.mark.parametrize("data", [b"", b"[1, 2]", b"null", b"{}", b"\xff"])
def test_snapshot_decode_rejects_garbage(data: bytes):
    with pytest.raises(IntegrityError):
        Snapshot.decode(data, "01" * 32)


# ---- choosing snapshots ----------------------------------------------------------------------


def snap(snap_id: str, when: str, host: str = "host1", tags: tuple = (), paths: tuple = ("/data",)) -> Snapshot:
    return Snapshot(time=when, tree="00" * 32, paths=paths, hostname=host, tags=tags, id=snap_id.ljust(64, "0"))


SNAPS = [
    snap("abc1", "2024-03-01T10:00:00+00:00", tags=("daily",)),
    snap("abd2", "2024-03-02T10:00:00+00:00", host="host2", tags=("daily", "db")),
    snap("ffe3", "2024-03-03T10:00:00+00:00", tags=("weekly",), paths=("/data", "/etc")),
    snap("0124", "2024-03-04T12:00:00+02:00", host="host2", paths=("/srv",)),
]


def test_find_snapshot_by_unique_prefix():
    assert find_snapshot(SNAPS, "abc").id.startswith("abc1")
    assert find_snapshot(SNAPS, "ffe3").id.startswith("ffe3")
    assert find_snapshot(SNAPS, "ABD").id.startswith("abd2")
    assert find_snapshot(SNAPS, SNAPS[3].id) is SNAPS[3]


def test_find_snapshot_ambiguous_or_unknown_prefix():
    with pytest.raises(SnapshotNotFound, match="ambiguous"):
        find_snapshot(SNAPS, "ab")
    with pytest.raises(SnapshotNotFound):
        find_snapshot(SNAPS, "999")
    with pytest.raises(SnapshotNotFound):
        find_snapshot([], "latest")


def test_latest_with_filters():
    assert find_snapshot(SNAPS, "latest") is SNAPS[3]
    assert find_snapshot(SNAPS, "latest", SnapshotFilter(host="host1")) is SNAPS[2]
    assert find_snapshot(SNAPS, "latest", SnapshotFilter(tags=("daily",))) is SNAPS[1]
    assert find_snapshot(SNAPS, "latest", SnapshotFilter(host="host1", tags=("daily",))) is SNAPS[0]
    assert find_snapshot(SNAPS, "latest", SnapshotFilter(tags=("daily,db",))) is SNAPS[1]
    assert find_snapshot(SNAPS, "latest", SnapshotFilter(tags=("db", "weekly"))) is SNAPS[2]
    assert find_snapshot(SNAPS, "latest", SnapshotFilter(paths=("/data",))) is SNAPS[2]
    assert find_snapshot(SNAPS, "latest", SnapshotFilter(paths=("/data/../etc",))) is SNAPS[2]
    assert find_snapshot(SNAPS, "latest", SnapshotFilter(paths=("/srv",))) is SNAPS[3]
    with pytest.raises(SnapshotNotFound):
        find_snapshot(SNAPS, "latest", SnapshotFilter(tags=("db,weekly",)))
    with pytest.raises(SnapshotNotFound):
        find_snapshot(SNAPS, "latest", SnapshotFilter(host="nowhere"))


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_snapshot_at_picks_newest_at_or_before():
    assert snapshot_at(SNAPS, utc(2024, 3, 2, 10, 0)) is SNAPS[1]
    assert snapshot_at(SNAPS, utc(2024, 3, 2, 9, 59, 59)) is SNAPS[0]
    assert snapshot_at(SNAPS, utc(2024, 3, 3, 23, 0)) is SNAPS[2]
    # 12:00+02:00 is 10:00 UTC.
    assert snapshot_at(SNAPS, utc(2024, 3, 4, 10, 0)) is SNAPS[3]
    assert snapshot_at(SNAPS, utc(2024, 3, 4, 9, 59)) is SNAPS[2]
    assert snapshot_at(SNAPS, utc(2030, 1, 1)) is SNAPS[3]
    with pytest.raises(SnapshotNotFound):
        snapshot_at(SNAPS, utc(2024, 3, 1, 9, 59))


def test_find_snapshot_at_time_with_filter():
    when = utc(2024, 3, 3, 12, 0)
    assert find_snapshot(SNAPS, "latest", at=when) is SNAPS[2]
    assert find_snapshot(SNAPS, "latest", SnapshotFilter(host="host2"), at=when) is SNAPS[1]
    assert find_snapshot(SNAPS, "", SnapshotFilter(host="host1"), at=when) is SNAPS[2]


@pytest.fixture
def zone_utc_plus_8(monkeypatch):
    monkeypatch.setenv("TZ", "XST-8")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_parse_time_is_local_unless_a_zone_is_given(zone_utc_plus_8):
    assert parse_time("2024-03-01 12:30") == utc(2024, 3, 1, 4, 30)
    assert parse_time("2024-03-01 12:30:15") == utc(2024, 3, 1, 4, 30, 15)
    assert parse_time("2024-03-01T12:30:15") == utc(2024, 3, 1, 4, 30, 15)
    assert parse_time("2024-03-01T12:30:00+02:00") == utc(2024, 3, 1, 10, 30)
    assert parse_time("2024-03-01T12:30:00Z") == utc(2024, 3, 1, 12, 30)
    assert parse_time(" 2024-03-01 12:30 ").utcoffset() == timedelta(hours=8)


def test_parse_time_feeds_snapshot_at(zone_utc_plus_8):
    # 18:00 local (UTC+8) on 2 March is 10:00 UTC: exactly the second snapshot.
    assert snapshot_at(SNAPS, parse_time("2024-03-02 18:00")) is SNAPS[1]
    assert snapshot_at(SNAPS, parse_time("2024-03-02 17:59:59")) is SNAPS[0]


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-01 10:00", "2024-03-01 25:00", "01/03/2024"])
def test_parse_time_refuses_garbage(text: str):
    with pytest.raises(UsageError):
        parse_time(text)


# ---- chunking ---------------------------------------------------------------------------------


def chunk_list(data: bytes, seed: int = 1234, params: ChunkerParams = ChunkerParams()) -> list[bytes]:
    return [bytes(c) for c in Chunker(params, seed).chunks(io.BytesIO(data))]


def test_chunks_reassemble_and_respect_bounds():
    params = ChunkerParams()
    data = rand(48 * MiB, seed=11)
    chunks = chunk_list(data)
    assert b"".join(chunks) == data
    sizes = [len(c) for c in chunks]
    assert all(params.min_size <= s <= params.max_size for s in sizes[:-1])
    assert 0 < sizes[-1] <= params.max_size
    average = sum(sizes) / len(sizes)
    assert 0.8 * MiB <= average <= 2 * MiB, average


def test_constant_data_is_cut_at_max_size():
    params = ChunkerParams()
    sizes = [len(c) for c in chunk_list(bytes(10 * MiB))]
    assert sizes == [params.max_size, params.max_size, 10 * MiB - 2 * params.max_size]


def test_small_custom_params_are_respected():
    params = ChunkerParams(min_size=2048, avg_size=8192, max_size=32768)
    sizes = [len(c) for c in chunk_list(rand(2 * MiB, seed=12), params=params)]
    assert sum(sizes) == 2 * MiB
    assert all(2048 <= s <= 32768 for s in sizes[:-1])
    assert 4096 <= sum(sizes) / len(sizes) <= 32768


def test_small_and_empty_inputs():
    assert chunk_list(b"") == []
    assert chunk_list(b"x") == [b"x"]
    small = rand(100_000)
    assert chunk_list(small) == [small]


def test_insertion_near_the_start_changes_only_the_first_chunks():
    data = rand(16 * MiB, seed=13)
    edited = data[:1000] + b"!" + data[1000:]
    before = [hashlib.sha256(c).digest() for c in chunk_list(data)]
    after = [hashlib.sha256(c).digest() for c in chunk_list(edited)]
    assert len(before) >= 8
    changed = [h for h in after if h not in set(before)]
    assert 1 <= len(changed) <= 2
    shared = len(after) - len(changed)
    assert after[-shared:] == before[-shared:]
    assert shared >= len(before) - 2


def test_chunk_boundaries_depend_on_the_seed():
    data = rand(16 * MiB, seed=14)
    a = [len(c) for c in chunk_list(data, seed=1)]
    b = [len(c) for c in chunk_list(data, seed=2)]
    assert a != b
    assert a == [len(c) for c in chunk_list(data, seed=1)]
