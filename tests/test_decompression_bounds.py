"""Blobs that claim or inflate to more than a blob may be.

A reader allocates no more than the most a blob of its kind may hold: a
raw length above that fails before anything is decompressed, and a
payload that inflates past its raw length (a gzip or zstd bomb) fails at
raw length + 1 bytes. The bombs run in a child process whose peak RSS is
measured, since a failing bound shows as memory, not as an exception.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import lz4.block
import pytest
import zstandard

from measure import run_measured
from strongroom.errors import IntegrityError
from strongroom.repo.chunker import ChunkerParams
from strongroom.repo.compression import (GZIP, LZ4, MAX_DATA_BLOB, MAX_TREE_BLOB, RAW, ZSTD, Compressor,
                                         decompress, decompress_into)
from strongroom.repo.pack import DATA, TREE, blob_aad

MiB = 1024 * 1024
SRC = str(Path(__file__).resolve().parent.parent / "src")


def test_the_default_bound_is_the_largest_chunk():
    assert MAX_DATA_BLOB == ChunkerParams().max_size == 4 * MiB
    data = os.urandom(1024) * (MAX_DATA_BLOB // 1024)
    for codec in (ZSTD, LZ4, GZIP, RAW):
        assert decompress(Compressor(codec, 1).compress(data), len(data)) == data


@pytest.mark.parametrize("codec", [RAW, ZSTD, LZ4, GZIP])
def test_a_raw_length_above_the_bound_fails_before_decompressing(codec: int):
    blob = Compressor(codec, 1).compress(bytes(1000))
    # A claim of a terabyte: allocating it first would be a MemoryError, not this.
    with pytest.raises(IntegrityError) as caught:
        decompress(blob, 1 << 40)
    assert "more than a blob may have" in str(caught.value)
    with pytest.raises(IntegrityError):
        decompress(blob, MAX_DATA_BLOB + 1)
    with pytest.raises(IntegrityError):
        decompress(blob, 5 * MiB, limit=4 * MiB)
    with pytest.raises(IntegrityError):
        decompress(blob, -1)


def test_a_tree_may_be_larger_than_a_chunk():
    tree = b'{"nodes":[' + b'{"name":"f","type":"file"},' * (10 * MiB // 27) + b"]}"
    blob = Compressor(ZSTD, 1).compress(tree)
    with pytest.raises(IntegrityError):
        decompress(blob, len(tree))
    assert decompress(blob, len(tree), limit=MAX_TREE_BLOB) == tree


def test_a_zstd_frame_must_declare_the_raw_length():
    data = b"strongroom " * 1000
    blob = bytes([ZSTD]) + zstandard.ZstdCompressor().compress(data)
    with pytest.raises(IntegrityError) as caught:
        decompress(blob, len(data) - 1)
    assert f"declares {len(data)} bytes" in str(caught.value)
    undeclared = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    blob = bytes([ZSTD]) + undeclared.compress(data) + undeclared.flush()
    with pytest.raises(IntegrityError) as caught:
        decompress(blob, len(data))
    assert "without a content size" in str(caught.value)


def test_a_zlib_stream_must_end_where_the_blob_does():
    data = b"strongroom " * 1000
    stream = zlib.compress(data)
    assert decompress(bytes([GZIP]) + stream, len(data)) == data
    with pytest.raises(IntegrityError):
        decompress(bytes([GZIP]) + stream + b"trailing", len(data))
    with pytest.raises(IntegrityError):
        decompress(bytes([GZIP]) + stream[:-6], len(data))  # the end of the stream cut off
    with pytest.raises(IntegrityError):
        decompress(bytes([GZIP]) + stream, len(data) - 1)


def test_lz4_writes_no_more_than_the_raw_length():
    data = bytes(64 * 1024)
    blob = bytes([LZ4]) + lz4.block.compress(data, store_size=False)
    with pytest.raises(IntegrityError):
        decompress(blob, 1000)


def test_the_repository_bounds_each_kind_of_blob(repo):
    """open_blob passes the repository's own chunk limit for data, the tree cap for trees."""
    big = os.urandom(64) * (5 * MiB // 64)  # over the 4 MiB chunk limit, under the tree cap
    sealed = {kind: repo.crypto.encrypt(Compressor(ZSTD, 1).compress(big), blob_aad(kind, b"\0" * 32))
              for kind in (DATA, TREE)}
    with pytest.raises(IntegrityError):
        repo.open_blob(DATA, b"\0" * 32, sealed[DATA], len(big), "test")
    assert repo.open_blob(TREE, b"\0" * 32, sealed[TREE], len(big), "test") == big


BOMB = """
import json, sys, zlib, zstandard
from strongroom.errors import IntegrityError
from strongroom.repo.compression import GZIP, ZSTD, decompress
kind, inflated, claimed = json.loads(sys.argv[1])
zeros = bytes(1 << 20)
if kind == "gzip":
    c = zlib.compressobj(9)
    payload = b"".join(c.compress(zeros) for _ in range(inflated >> 20)) + c.flush()
    blob = bytes([GZIP]) + payload
else:
    c = zstandard.ZstdCompressor(level=1).compressobj(size=inflated if kind == "zstd" else -1)
    payload = b"".join(c.compress(zeros) for _ in range(inflated >> 20)) + c.flush()
    blob = bytes([ZSTD]) + payload
del payload
try:
    decompress(blob, claimed)
    print(json.dumps({"result": "decompressed", "blob": len(blob)}))
except IntegrityError as e:
    print(json.dumps({"result": "IntegrityError", "message": str(e), "blob": len(blob)}))
"""


@pytest.mark.parametrize("kind, claimed", [
    ("gzip", 4 * MiB),             # 1 GiB of zeros in about 1 MiB, claiming one chunk
    ("zstd", 4 * MiB),             # a frame that declares 1 GiB
    ("zstd", 1024 * MiB),          # ... and an index that agrees, over the bound
    ("zstd-undeclared", 4 * MiB),  # a frame that declares nothing
])
def test_a_compression_bomb_fails_in_bounded_memory(kind: str, claimed: int):
    answer, rss = run_measured(BOMB, kind, 1024 * MiB, claimed)
    assert answer["blob"] < 2 * MiB  # it is a bomb
    assert answer["result"] == "IntegrityError", answer
    assert rss < 300 * MiB, f"the reader peaked at {rss // MiB} MiB"


# ---- into a reader's scratch buffers (restore, check) ----------------------------

SAMPLES = [b"x", b"strongroom " * 1000, os.urandom(300_000), bytes(2 * MiB), os.urandom(64) * (MAX_DATA_BLOB // 64)]


@pytest.mark.parametrize("codec", [RAW, ZSTD, LZ4, GZIP])
def test_decompress_into_gives_what_decompress_gives(codec: int):
    out = memoryview(bytearray(MAX_DATA_BLOB))
    for data in SAMPLES:
        blob = Compressor(codec, 1).compress(data)
        assert bytes(decompress_into(memoryview(blob), len(data), MAX_DATA_BLOB, out)) == data
        assert decompress(blob, len(data)) == data


@pytest.mark.parametrize("codec", [RAW, ZSTD, LZ4, GZIP])
def test_decompress_into_refuses_what_decompress_refuses(codec: int):
    out = memoryview(bytearray(MAX_DATA_BLOB + 1))
    data = b"strongroom " * 1000
    blob = memoryview(Compressor(codec, 1).compress(data))
    for raw_length in (len(data) - 1, len(data) + 1, MAX_DATA_BLOB + 1, -1):
        with pytest.raises(IntegrityError):
            decompress_into(blob, raw_length, MAX_DATA_BLOB, out)
    with pytest.raises(IntegrityError):
        decompress_into(memoryview(b""), 0, MAX_DATA_BLOB, out)


def test_decompress_into_refuses_a_cut_or_undeclared_zstd_frame():
    out = memoryview(bytearray(MiB))
    data = os.urandom(1000) * 100
    frame = zstandard.ZstdCompressor().compress(data)
    with pytest.raises(IntegrityError):
        decompress_into(memoryview(bytes([ZSTD]) + frame[:len(frame) // 2]), len(data), MAX_DATA_BLOB, out)
    undeclared = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    blob = bytes([ZSTD]) + undeclared.compress(data) + undeclared.flush()
    with pytest.raises(IntegrityError) as caught:
        decompress_into(memoryview(blob), len(data), MAX_DATA_BLOB, out)
    assert "without a content size" in str(caught.value)


def test_the_scratch_reader_bounds_and_authenticates_as_open_blob_does(repo):
    big = os.urandom(64) * (5 * MiB // 64)
    blob_id = repo.crypto.blob_id(big)
    sealed = {kind: repo.crypto.encrypt(Compressor(ZSTD, 1).compress(big), blob_aad(kind, blob_id))
              for kind in (DATA, TREE)}
    with pytest.raises(IntegrityError):
        repo.open_blob_scratch(DATA, blob_id, sealed[DATA], len(big), "test")
    with pytest.raises(IntegrityError) as caught:
        repo.open_blob_scratch(DATA, blob_id, sealed[DATA], 1 << 40, "test")  # before any buffer is made
    assert "more than a blob may have" in str(caught.value)
    assert repo.open_blob_scratch(TREE, blob_id, sealed[TREE], len(big), "test", verify_id=True) == big
    with pytest.raises(IntegrityError) as caught:
        repo.open_blob_scratch(TREE, b"\1" * 32, sealed[TREE], len(big), "test")  # sealed for another id
    assert "does not authenticate" in str(caught.value)
    other = repo.crypto.encrypt(Compressor(ZSTD, 1).compress(big[:1000]), blob_aad(DATA, blob_id))
    with pytest.raises(IntegrityError) as caught:
        repo.open_blob_scratch(DATA, blob_id, other, 1000, "test", verify_id=True)
    assert "does not match its id" in str(caught.value)
    # One thread's buffers serve every blob it reads: a view is good until its next one.
    first = repo.open_blob_scratch(TREE, blob_id, sealed[TREE], len(big), "test")
    small = b"small " * 10
    view = repo.open_blob_scratch(DATA, repo.crypto.blob_id(small), repo.crypto.encrypt(
        Compressor(ZSTD, 1).compress(small), blob_aad(DATA, repo.crypto.blob_id(small))), len(small), "test")
    assert view == small and first.obj is view.obj
