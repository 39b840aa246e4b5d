"""The compact in-memory index answers as the dict of locations did: the
first location of a blob listed twice, None for an absent id, every blob
once in items(), packs as they were added; and it reads back what the
real encoder wrote into a real repository."""

from __future__ import annotations

import hashlib

import pytest

from conftest import reopen
from strongroom.errors import IntegrityError
from strongroom.repo.index import BlobLocation, Index, encode_index, parse_index
from strongroom.repo.pack import DATA, TREE, PackedBlob


def _id(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(8, "little")).digest()


def _pack(n: int, first: int, count: int, blob_type: int = DATA) -> tuple[bytes, list[PackedBlob]]:
    blobs = [PackedBlob(blob_type, _id(first + i), 100 * i, 90 + i, 200 + i) for i in range(count)]
    return _id(10**9 + n), blobs


def test_duplicates_absent_ids_items_and_packs():
    index = Index()
    p1, b1 = _pack(1, 0, 3)
    p2, b2 = _pack(2, 2, 3, TREE)  # its first blob is already in p1
    index.add_pack(p1, b1)
    index.add_pack(p2, b2)

    assert len(index) == 5
    assert index.get(_id(2)) == BlobLocation(p1, DATA, 200, 92, 202)  # the first location stays
    assert index.get(_id(3)) == BlobLocation(p2, TREE, 100, 91, 201)
    for absent in (_id(99), bytes(32), b"", _id(2)[:16], _id(2) + b"x"):
        assert absent not in index and index.get(absent) is None
    assert [blob_id for blob_id, _ in index.items()] == [_id(i) for i in range(5)]
    assert dict(index.items())[_id(2)].pack == p1

    assert list(index.packs) == [p1, p2] and len(index.packs) == 2
    assert index.packs[p2] == b2 and index.packs.get(_id(7)) is None and p1 in index.packs
    assert dict(index.packs.blob_counts()) == {p1: 3, p2: 3}

    # A pack added again is listed once, as last added; its blobs' first locations stay.
    again = [PackedBlob(DATA, _id(0), 5, 6, 7)]
    index.add_pack(p1, again)
    assert list(index.packs) == [p1, p2] and index.packs[p1] == again
    assert index.get(_id(0)).offset == 0 and len(index) == 5


def test_many_blobs_grow_the_table_and_stay_found():
    index = Index()
    index.expect(10**12)  # a listing's claim: the table grows to at most eight times what is there
    for n in range(300):
        index.add_pack(*_pack(n, 10 * n, 10))  # 3,000 blobs: the table grows past its first size
    assert len(index) == 3000 and len(index._table) <= 2 * 2 * 8 * 3000
    assert all(index.get(_id(i)).offset == 100 * (i % 10) for i in range(3000))
    assert index.get(_id(2999)).pack == _id(10**9 + 299)
    assert not any(_id(i) in index for i in range(3000, 3100))
    assert len(list(index.items())) == 3000
    # Old ids again, in a pack large enough to grow the table as it is added.
    again = [PackedBlob(DATA, _id(i), 7, 8, 9) for i in range(5000)]
    index.add_pack(_id(5), again)
    assert len(index) == 5000 and index.get(_id(10)).pack == _id(10**9 + 1) and index.get(_id(4999)).offset == 7
    assert len(list(index.items())) == 5000
    fewer = index.without_packs(set(range(0, 300, 2)) | {300})
    assert len(fewer) == 1500 and _id(0) not in fewer and fewer.get(_id(15)).pack == _id(10**9 + 1)


def test_parse_refuses_what_decode_refused():
    pack_id, blobs = _pack(1, 0, 2)
    data = encode_index({pack_id: blobs}, [_id(5)])
    parsed = parse_index(data, "x")
    assert parsed.supersedes == [_id(5)] and parsed.blob_count == 2
    with pytest.raises(IntegrityError, match="trailing"):
        parse_index(data + b"\0", "x")
    with pytest.raises(IntegrityError, match="truncated"):
        parse_index(data[:-1], "x")
    bad = bytearray(data)
    bad[len(data) - 2 * 45] = 7  # the first blob's type
    with pytest.raises(IntegrityError, match="unknown blob type 7"):
        parse_index(bytes(bad), "x")
    with pytest.raises(IntegrityError, match="truncated"):
        parse_index(data[:5] + b"\xff\xff\xff\xff", "x")


def test_index_objects_round_trip_through_a_repository(repo, repo_path, cache_dir):
    first = dict([_pack(1, 0, 4), _pack(2, 4, 4)])
    second = dict([_pack(3, 6, 4, TREE)])  # two blobs also in pack 2
    with repo.lock(exclusive=True):
        repo.write_index_object(first)
        repo.write_index_object(second)
    fresh = reopen(repo_path, cache_dir)
    fresh.load_index()
    assert len(fresh.index) == 10
    assert set(fresh.index.packs) == set(first) | set(second)
    assert fresh.index.get(_id(6)).pack == _id(10**9 + 2) or fresh.index.get(_id(6)).pack == _id(10**9 + 3)
    assert fresh.index.get(_id(9)) == BlobLocation(_id(10**9 + 3), TREE, 300, 93, 203)
    assert fresh.index.packs[_id(10**9 + 1)] == first[_id(10**9 + 1)]


def test_lookups_in_another_thread_while_packs_are_added():
    import threading

    index = Index()
    added = threading.Event()
    errors = []

    def look():
        while not added.is_set():
            try:
                n = len(index)  # every blob counted is found
                for i in range(0, n, 97):
                    assert index.get(_id(i)) is not None
                for pack_id in index.packs:
                    assert index.packs[pack_id]
            except Exception as e:  # reported below, in the test's thread
                errors.append(e)
                return

    reader = threading.Thread(target=look)
    reader.start()
    for n in range(400):  # 8,000 blobs: the table grows several times under the reader
        index.add_pack(*_pack(n, 20 * n, 20))
    added.set()
    reader.join()
    assert not errors and len(index) == 8000
