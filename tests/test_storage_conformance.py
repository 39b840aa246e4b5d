"""The contract every storage backend keeps.

Each backend is one entry in BACKENDS: a factory that, given the pytest
request, returns a Target for a location that does not exist yet. A Target
pairs the Storage with a way to leave a raw file behind the storage's back,
the way an interrupted upload would. Adding a backend (a WebDAV server, say)
is one more line in BACKENDS.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from strongroom.errors import FolderNotFound, ListingFailed, ObjectNotFound, StorageError
from strongroom.storage import CountingStorage, LocalStorage, ObjectInfo, Storage


@dataclass
class Target:
    storage: Storage
    # Writes `data` at relative path `path` without going through `storage`.
    put_raw: Callable[[str, bytes], None]
    # False for servers that write uploads in place (wsgidav, rclone): a
    # reader may see an object half-written, so the repository checks sizes
    # and hashes on every read instead of trusting the target (docs/webdav.md).
    atomic_overwrite: bool = True


def _local_put_raw(root: Path) -> Callable[[str, bytes], None]:
    def put(path: str, data: bytes) -> None:
        full = root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
    return put


def local_target(request: pytest.FixtureRequest) -> Target:
    root = request.getfixturevalue("tmp_path") / "target"
    return Target(LocalStorage(str(root)), _local_put_raw(root))


def counting_local_target(request: pytest.FixtureRequest) -> Target:
    root = request.getfixturevalue("tmp_path") / "target"
    return Target(CountingStorage(LocalStorage(str(root))), _local_put_raw(root))


def webdav_target(kind: str) -> Callable[[pytest.FixtureRequest], Target]:
    def factory(request: pytest.FixtureRequest) -> Target:
        from strongroom.storage.retry import RetryingStorage, RetryPolicy
        from strongroom.storage.webdav import WebDAVStorage

        server = request.getfixturevalue("webdav_session_servers").get(kind).scratch()
        client = WebDAVStorage(server.url, server.username, server.password, timeout=20)
        storage = RetryingStorage(client, RetryPolicy(deadline=30, base_delay=0.05))
        return Target(storage, server.put_raw, atomic_overwrite=kind not in ("wsgidav", "rclone"))
    return factory


def sftp_target(request: pytest.FixtureRequest) -> Target:
    from strongroom.storage.retry import RetryingStorage, RetryPolicy
    from strongroom.storage.sftp import SFTPStorage
    from strongroom.storage.sftp_access import SFTPAccess, parse_sftp_url

    server = request.getfixturevalue("sftp_server")
    root = server.scratch()
    access = SFTPAccess(str(server.known_hosts), (str(server.client_key),))
    client = SFTPStorage(parse_sftp_url(server.url(root)), access, connections=2, timeout=20)
    return Target(RetryingStorage(client, RetryPolicy(deadline=30, base_delay=0.05)), _local_put_raw(root))
def s3_target(request: pytest.FixtureRequest) -> Target:
    """A fresh prefix of the session's bucket on the radosgw of tests/s3_server.py."""
    import uuid

    from strongroom.storage.retry import RetryingStorage, RetryPolicy

    bucket = request.getfixturevalue("s3_shared_bucket")
    prefix = f"c-{uuid.uuid4().hex[:16]}"
    storage = RetryingStorage(bucket.cluster.storage(bucket.name, prefix), RetryPolicy(deadline=30, base_delay=0.05))
    return Target(storage, lambda path, data: bucket.cluster.put_raw(bucket.name, f"{prefix}/{path}", data))


BACKENDS = [
    pytest.param(local_target, id="local"),
    pytest.param(counting_local_target, id="counting-local"),
    pytest.param(webdav_target("wsgidav"), id="wsgidav"),
    pytest.param(webdav_target("rclone"), id="rclone"),
    pytest.param(webdav_target("apache"), id="apache"),
    pytest.param(webdav_target("nginx"), id="nginx"),
    pytest.param(sftp_target, id="sftp"),
    pytest.param(s3_target, id="s3-radosgw"),
]


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest) -> Target:
    t = request.param(request)
    yield t
    t.storage.close()


@pytest.fixture
def storage(target: Target) -> Storage:
    target.storage.create()
    return target.storage


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def names_in(storage: Storage, prefix: str) -> dict[str, int]:
    infos = list(storage.list(prefix))
    assert all(isinstance(i, ObjectInfo) for i in infos)
    result = {i.name: i.size for i in infos}
    assert len(result) == len(infos), "an object was listed twice"
    return result


# ---- the target itself ------------------------------------------------------------


def test_exists_and_create(target: Target):
    s = target.storage
    assert s.exists() is False
    s.create()
    assert s.exists() is True
    s.create()  # creating an existing target is harmless
    assert s.exists() is True
    s.write("config", b"x")
    s.create()
    assert s.read("config") == b"x"


def test_entries_name_everything_in_the_target_folder(target: Target):
    # What init looks at: every name, ours or not, objects and folders alike.
    with pytest.raises(FolderNotFound):
        target.storage.entries()
    target.storage.create()
    assert target.storage.entries() == []
    target.storage.write("config", b"c")
    target.storage.write("data/00/pack", b"p")
    target.put_raw("My Notes (1).txt", b"not ours")
    assert target.storage.entries() == ["My Notes (1).txt", "config", "data"]


def test_new_target_has_no_folders(storage: Storage):
    # A folder nobody made is missing, not empty: a listing says so.
    for prefix in ("data", "keys"):
        with pytest.raises(FolderNotFound):
            list(storage.list(prefix))


def test_made_folders_list_empty(storage: Storage):
    storage.make_dirs(["keys", "data", "data/00", "data/ff", "deep/er/still"])
    assert names_in(storage, "keys") == {}
    assert names_in(storage, "data") == {}
    assert names_in(storage, "data/00") == {}
    assert names_in(storage, "deep") == {}
    assert names_in(storage, "deep/er/still") == {}
    storage.make_dirs(["keys", "data/00"])  # making them again is harmless
    storage.write("data/00/pack", b"p")
    assert names_in(storage, "data") == {"data/00/pack": 1}


def test_make_dirs_refuses_invalid_names(storage: Storage):
    for name in ("../outside", ".hidden", "a//b"):
        with pytest.raises(StorageError):
            storage.make_dirs([name])


# ---- write and read ---------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4096, 5 * 1024 * 1024 + 7])
def test_write_then_read_whole(storage: Storage, size: int):
    data = payload(size, seed=size)
    storage.write("data/ab/object", data)
    assert storage.read("data/ab/object") == data
    assert storage.stat("data/ab/object") == ObjectInfo("data/ab/object", size)


def test_write_accepts_memoryview(storage: Storage):
    data = payload(10_000)
    storage.write("snapshots/mv", memoryview(data)[100:])
    assert storage.read("snapshots/mv") == data[100:]


def test_read_ranges(storage: Storage):
    data = payload(1000, seed=1)
    storage.write("data/ranged", data)
    assert storage.read("data/ranged", 10, 20) == data[10:30]
    assert storage.read("data/ranged", 0, 1000) == data
    assert storage.read("data/ranged", 990) == data[990:]
    assert storage.read("data/ranged", 0) == data
    assert storage.read("data/ranged", 500, 0) == b""
    assert storage.read("data/ranged", 0, 0) == b""


def test_read_range_beyond_end_returns_what_exists(storage: Storage):
    data = payload(1000, seed=2)
    storage.write("data/short", data)
    assert storage.read("data/short", 990, 100) == data[990:]
    assert storage.read("data/short", 0, 5000) == data
    assert storage.read("data/short", 1000, 10) == b""
    assert storage.read("data/short", 1000) == b""
    assert storage.read("data/short", 2000, 10) == b""
    assert storage.read("data/short", 2000) == b""


def test_read_spans_give_what_each_range_read_gives(storage: Storage):
    data = payload(3000, seed=4)
    storage.write("data/spans", data)
    spans = [(0, 0), (0, 10), (10, 0), (100, 900), (1500, 5), (2990, 100), (3000, 10), (4000, 7)]
    # A piece is good until the next one is asked for (a backend may read
    # every span into one buffer): each is copied as it comes.
    assert [bytes(piece) for piece in storage.read_spans("data/spans", spans)] == [data[o:o + n] for o, n in spans]
    with pytest.raises(ObjectNotFound):
        list(storage.read_spans("data/no-such-object", [(0, 10)]))


def test_a_span_claiming_a_petabyte_comes_back_as_what_the_object_holds(storage: Storage):
    # A damaged index may place a blob of any length: what is allocated for
    # a span is bounded by the object, not by the claim.
    data = payload(3000, seed=5)
    storage.write("data/claims", data)
    spans = [(10, 20), (2000, 2 ** 50)]
    assert [bytes(piece) for piece in storage.read_spans("data/claims", spans)] == [data[10:30], data[2000:]]


def test_read_range_of_large_object(storage: Storage):
    data = payload(3 * 1024 * 1024, seed=3)
    storage.write("data/large", data)
    tail = 64 * 1024
    assert storage.read("data/large", len(data) - tail, tail) == data[-tail:]
    assert storage.read("data/large", 1024 * 1024, 17) == data[1024 * 1024:1024 * 1024 + 17]


def test_stat_sizes(storage: Storage):
    for i, size in enumerate([0, 1, 777, 65536]):
        storage.write(f"index/obj{i}", payload(size, seed=i))
    for i, size in enumerate([0, 1, 777, 65536]):
        info = storage.stat(f"index/obj{i}")
        assert info == ObjectInfo(f"index/obj{i}", size)


def test_overwrite_with_identical_content(storage: Storage):
    data = payload(3000, seed=4)
    storage.write("keys/k1", data)
    storage.write("keys/k1", data)
    assert storage.read("keys/k1") == data
    assert names_in(storage, "keys") == {"keys/k1": 3000}


def test_top_level_object(storage: Storage):
    storage.write("config", b"cfg")
    assert storage.read("config") == b"cfg"
    assert storage.stat("config").size == 3


# ---- missing objects ----------------------------------------------------------------


def test_missing_object(storage: Storage):
    with pytest.raises(ObjectNotFound):
        storage.read("data/nothing")
    with pytest.raises(ObjectNotFound):
        storage.read("data/nothing", 10, 10)
    with pytest.raises(ObjectNotFound):
        storage.stat("data/nothing")
    with pytest.raises(ObjectNotFound):
        storage.read("config")


def test_prefix_is_not_an_object(storage: Storage):
    storage.write("data/00/pack", b"p")
    for name in ("data", "data/00"):
        with pytest.raises(ObjectNotFound):
            storage.read(name)
        with pytest.raises(ObjectNotFound):
            storage.stat(name)
    assert storage.read("data/00/pack") == b"p"


def test_nothing_lives_below_an_object(storage: Storage):
    storage.write("snapshots/one", b"s")
    with pytest.raises(ObjectNotFound):
        storage.read("snapshots/one/child")
    with pytest.raises(ObjectNotFound):
        storage.stat("snapshots/one/child")
    storage.delete("snapshots/one/child")  # missing, so not an error
    # An object is not a folder: listing it is no empty listing. Apache
    # answers 400 there (ListingFailed), the others describe the object.
    with pytest.raises((FolderNotFound, ListingFailed)):
        list(storage.list("snapshots/one"))
    with pytest.raises(StorageError):
        storage.write("snapshots/one/child", b"c")
    assert storage.read("snapshots/one") == b"s"


def test_writing_over_a_prefix_fails(storage: Storage):
    storage.write("locks/sub/lock", b"l")
    with pytest.raises(StorageError):
        storage.write("locks/sub", b"x")
    assert names_in(storage, "locks") == {"locks/sub/lock": 1}


# ---- list ---------------------------------------------------------------------------


def test_list_is_recursive_with_sizes(storage: Storage):
    expected = {
        "data/00/aa": 10,
        "data/00/ab": 0,
        "data/01/bb": 333,
        "data/ff/deeper/cc": 5,
        "data/top": 7,
    }
    for name, size in expected.items():
        storage.write(name, payload(size, seed=size))
    storage.write("index/elsewhere", b"i")
    assert names_in(storage, "data") == expected
    assert names_in(storage, "data/00") == {"data/00/aa": 10, "data/00/ab": 0}
    assert names_in(storage, "data/ff") == {"data/ff/deeper/cc": 5}
    assert names_in(storage, "index") == {"index/elsewhere": 1}


def test_list_prefix_is_a_directory_not_a_string_prefix(storage: Storage):
    storage.write("data/a", b"1")
    storage.write("data2/b", b"22")
    storage.write("database", b"333")
    assert names_in(storage, "data") == {"data/a": 1}
    assert names_in(storage, "data2") == {"data2/b": 2}


def test_list_missing_folder_is_not_empty(storage: Storage):
    storage.write("data/x", b"x")
    for prefix in ("snapshots", "data/zz", "no/such/deep/prefix"):
        with pytest.raises(FolderNotFound) as caught:
            list(storage.list(prefix))
        assert not isinstance(caught.value, ObjectNotFound)
        assert prefix in str(caught.value)
    assert names_in(storage, "data") == {"data/x": 1}


def test_list_of_a_folder_emptied_by_deletes(storage: Storage):
    storage.write("locks/sub/l1", b"1")
    storage.delete("locks/sub/l1")
    assert names_in(storage, "locks") == {}


def test_list_hides_temporary_files_of_interrupted_writes(target: Target, storage: Storage):
    storage.write("data/00/complete", b"whole")
    target.put_raw("data/00/.tmp-5f1c2d3e4b5a69788796a5b4c3d2e1f0", b"half of a pa")
    target.put_raw("data/.tmp-0123456789abcdef0123456789abcdef", b"")
    target.put_raw("data/11/.tmp-xxx", b"partial")
    assert names_in(storage, "data") == {"data/00/complete": 5}
    # A write after the interruption is unaffected by the leftovers.
    storage.write("data/11/next", b"next")
    assert names_in(storage, "data") == {"data/00/complete": 5, "data/11/next": 4}


def test_list_after_delete(storage: Storage):
    for i in range(5):
        storage.write(f"locks/l{i}", bytes([i]) * (i + 1))
    storage.delete("locks/l1")
    storage.delete("locks/l3")
    assert names_in(storage, "locks") == {"locks/l0": 1, "locks/l2": 3, "locks/l4": 5}


# ---- delete -------------------------------------------------------------------------


def test_delete(storage: Storage):
    storage.write("locks/lock1", b"l")
    storage.delete("locks/lock1")
    with pytest.raises(ObjectNotFound):
        storage.read("locks/lock1")
    with pytest.raises(ObjectNotFound):
        storage.stat("locks/lock1")
    assert names_in(storage, "locks") == {}


def test_delete_missing_is_not_an_error(storage: Storage):
    storage.delete("locks/never-written")
    storage.delete("no/such/directory/object")
    storage.write("locks/once", b"o")
    storage.delete("locks/once")
    storage.delete("locks/once")
    assert names_in(storage, "locks") == {}


# ---- names --------------------------------------------------------------------------

ODD_NAMES = [
    "a.b-c_d",
    "data/00/0123456789abcdef",
    "MixedCase/UPPER/lower",
    "x/trailing.",
    "x/a..b",
    "x/-leading-dash",
    "x/_under_",
    "9/8/7/6/5",
]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_but_allowed_names(storage: Storage, name: str):
    data = name.encode() * 3
    storage.write(name, data)
    assert storage.read(name) == data
    assert storage.stat(name) == ObjectInfo(name, len(data))
    top = name.split("/", 1)[0]
    if "/" in name:
        assert names_in(storage, top) == {name: len(data)}
    storage.delete(name)
    with pytest.raises(ObjectNotFound):
        storage.read(name)


def test_names_differing_only_in_case_are_different_objects(storage: Storage):
    storage.write("keys/Abc", b"upper")
    storage.write("keys/abc", b"lower")
    assert storage.read("keys/Abc") == b"upper"
    assert storage.read("keys/abc") == b"lower"


INVALID_NAMES = [
    "",
    "x/.dotted",
    "x/...",
    ".hidden",
    "../x",
    "data/../../x",
    "..",
    ".",
    "/abs",
    "/",
    "a//b",
    "a/./b",
    "a/../b",
    "a/",
    "a/..",
    "a b",
    " a",
    "a\tb",
    "a\nb",
    "a\n",
    "a\0b",
    "a\\b",
    "a:b",
    "~x",
    "caf\u00e9",
    "\u6570\u636e/x",
    "data/\U0001f600",
]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names_refused_by_every_verb(tmp_path: Path, storage: Storage, name: str):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(StorageError):
        storage.write(name, b"must not land anywhere")
    with pytest.raises(StorageError):
        storage.read(name)
    with pytest.raises(StorageError):
        storage.read(name, 0, 1)
    with pytest.raises(StorageError):
        storage.stat(name)
    with pytest.raises(StorageError):
        storage.delete(name)
    with pytest.raises(StorageError):
        list(storage.list(name))
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before


def test_invalid_name_is_not_reported_as_missing(storage: Storage):
    # A refused name is a StorageError, but not ObjectNotFound: callers must
    # not mistake a bad name for an absent object.
    with pytest.raises(StorageError) as e:
        storage.read("../config")
    assert not isinstance(e.value, ObjectNotFound)


# ---- concurrency --------------------------------------------------------------------


def test_concurrent_writers_leave_every_object_whole(target: Target, storage: Storage):
    distinct = {f"data/{i % 4:02x}/obj{i:03d}": payload(50_000 + i * 1000, seed=100 + i) for i in range(50)}
    # Every writer of the shared name writes a different, internally uniform
    # version, so a torn object (a mix of two versions) is detectable.
    versions = [bytes([v]) * 400_000 for v in range(1, 13)]
    barrier = threading.Barrier(8)
    seen_while_writing: list[bytes] = []
    seen_lock = threading.Lock()

    def write_distinct(item):
        barrier_wait(barrier)
        storage.write(*item)

    def write_shared(version: bytes):
        barrier_wait(barrier)
        storage.write("data/shared", version)

    def read_shared(_):
        barrier_wait(barrier)
        for _ in range(20):
            try:
                data = storage.read("data/shared")
            except ObjectNotFound:
                continue
            except StorageError:
                if target.atomic_overwrite:
                    raise
                continue  # a body that shrank under the reader: the server writes in place
            with seen_lock:
                seen_while_writing.append(data)

    jobs = [(write_distinct, item) for item in distinct.items()]
    jobs += [(write_shared, v) for v in versions]
    jobs += [(read_shared, None) for _ in range(4)]
    random.Random(7).shuffle(jobs)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(fn, arg) for fn, arg in jobs]:
            future.result()

    listed = names_in(storage, "data")
    assert listed == {**{n: len(d) for n, d in distinct.items()}, "data/shared": 400_000}
    for name, data in distinct.items():
        assert storage.read(name) == data
    if target.atomic_overwrite:
        assert storage.read("data/shared") in versions
        assert all(seen in versions for seen in seen_while_writing)
    else:
        # Uploads land in place: what a reader saw may be cut short, which the
        # repository detects by size and hash; once writing stops, the object
        # has the full length.
        assert len(storage.read("data/shared")) == 400_000


def barrier_wait(barrier: threading.Barrier) -> None:
    # Jobs outnumber workers: only the first round meets at the barrier.
    try:
        barrier.wait(timeout=0.5)
    except threading.BrokenBarrierError:
        pass


def test_list_while_objects_are_deleted(storage: Storage):
    # Locks come and go while others list them: a listing may or may not show
    # an object deleted meanwhile, but it must not fail.
    names = [f"locks/{i:04d}" for i in range(400)]
    for name in names:
        storage.write(name, b"lock")
    stop = threading.Event()

    def delete_all():
        for name in names:
            storage.delete(name)
        stop.set()

    deleter = threading.Thread(target=delete_all)
    deleter.start()
    listings = 0
    try:
        while not stop.is_set() or listings == 0:
            listed = names_in(storage, "locks")
            assert set(listed) <= set(names)
            assert all(size == 4 for size in listed.values())
            listings += 1
    finally:
        deleter.join()
    assert names_in(storage, "locks") == {}


def test_concurrent_writes_of_the_same_content(storage: Storage):
    data = payload(200_000, seed=9)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(storage.write, "index/same", data) for _ in range(24)]:
            future.result()
    assert storage.read("index/same") == data
    assert names_in(storage, "index") == {"index/same": len(data)}
