"""Pausing the cyclic garbage collector while a step builds its long-lived objects."""

import gc
import threading
import weakref

import pytest

from strongroom.memory import collector_paused


@pytest.fixture(autouse=True)
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_off_inside_on_after_even_when_the_step_fails():
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with collector_paused():
            raise RuntimeError("the step failed")
    assert gc.isenabled()


def test_nested_pauses_end_with_the_outer_one():
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_turned_off_before_stays_off():
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_pauses_that_overlap_in_two_threads():
    """The first thread to finish does not turn the collector back on under the other."""
    inside, first_done, second_checked = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def second():
        with collector_paused():
            inside.set()
            first_done.wait(5)
            seen["while the other had ended"] = gc.isenabled()
            second_checked.set()

    thread = threading.Thread(target=second)
    with collector_paused():
        thread.start()
        assert inside.wait(5)
    first_done.set()
    assert second_checked.wait(5)
    thread.join(5)
    assert seen == {"while the other had ended": False}
    assert gc.isenabled()


def test_cycles_made_while_paused_are_collected_afterwards():
    class Node:
        pass

    collected = threading.Event()
    with collector_paused():
        a, b = Node(), Node()
        a.other, b.other = b, a
        weakref.finalize(a, collected.set)
        del a, b
        assert not collected.is_set()  # only the collector frees a cycle, and it is off
    gc.collect()
    assert collected.is_set()


def test_a_restore_builds_its_items_with_the_collector_off_and_turns_it_back_on(tmp_path, repo, monkeypatch):
    from strongroom.engine import restore as restore_module
    from strongroom.engine.backup import BackupOptions, run_backup
    from strongroom.engine.restore import RestoreOptions, run_restore

    src = tmp_path / "src"
    for i in range(30):
        (src / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 3}" / f"f{i}").write_bytes(b"%d" % i * (i + 1))
    snap = run_backup(repo, BackupOptions(paths=(str(src),))).snapshot
    seen = []
    select = restore_module.select_items

    def watched(*args, **kwargs):
        seen.append(gc.isenabled())
        return select(*args, **kwargs)

    monkeypatch.setattr(restore_module, "select_items", watched)
    dry = run_restore(repo, snap, RestoreOptions(str(tmp_path / "dry"), dry_run=True))
    assert dry.summary["files_to_write"] == 30 and gc.isenabled()
    result = run_restore(repo, snap, RestoreOptions(str(tmp_path / "out")))
    assert result.summary["files_restored"] == 30 and not result.errors
    assert seen == [False, False] and gc.isenabled()
    out = tmp_path / "out" / str(src).lstrip("/")
    assert (out / "d2" / "f29").read_bytes() == b"29" * 30
