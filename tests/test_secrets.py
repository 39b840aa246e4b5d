"""The secrets store: a private file replaced atomically under a lock, or the OS keyring."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from strongroom.errors import StrongroomError
from strongroom.services.secrets import SecretsStore, default_secrets_path

SECRET = "hunter2-correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def file_backend_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRONGROOM_SECRETS_BACKEND", raising=False)
    monkeypatch.delenv("STRONGROOM_SECRETS", raising=False)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "private" / "secrets.json"


@pytest.fixture
def store(path: Path) -> SecretsStore:
    return SecretsStore(str(path))


def test_set_get_delete_refs(store: SecretsStore) -> None:
    assert store.backend == "file"  # keyring is not installed here
    assert store.get("repo:a:1") is None
    assert store.refs() == []
    store.set("repo:a:1", SECRET)
    store.set("webdav:cloud:2", "pässwörd with ünïcode")
    assert store.get("repo:a:1") == SECRET
    assert store.get("webdav:cloud:2") == "pässwörd with ünïcode"
    assert store.refs() == ["repo:a:1", "webdav:cloud:2"]
    store.set("repo:a:1", "replaced")
    assert store.get("repo:a:1") == "replaced"
    store.delete("repo:a:1")
    store.delete("repo:a:1")  # forgetting twice is fine
    assert store.get("repo:a:1") is None
    assert store.refs() == ["webdav:cloud:2"]


def test_file_and_directory_are_private_and_nothing_is_left_behind(store: SecretsStore, path: Path) -> None:
    store.set("r", SECRET)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["secrets.json", "secrets.json.lock"]
    assert stat.S_IMODE((path.parent / "secrets.json.lock").stat().st_mode) == 0o600
    assert SECRET not in (path.parent / "secrets.json.lock").read_text()


def test_secrets_survive_reopening(path: Path) -> None:
    SecretsStore(str(path)).set("repo:x:1", SECRET)
    assert SecretsStore(str(path)).get("repo:x:1") == SECRET


def test_a_failed_write_leaves_the_old_file_whole(store: SecretsStore, path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store.set("kept", "old value")
    before = path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        store.set("new", SECRET)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["secrets.json", "secrets.json.lock"]
    assert store.get("kept") == "old value" and store.get("new") is None


def test_a_file_readable_by_others_is_refused(store: SecretsStore, path: Path) -> None:
    store.set("r", SECRET)
    os.chmod(path, 0o644)
    with pytest.raises(StrongroomError, match=r"chmod 600") as caught:
        store.get("r")
    assert "0644" in str(caught.value)
    assert SECRET not in str(caught.value)
    with pytest.raises(StrongroomError, match=r"chmod 600"):
        store.set("other", "x")  # nor is it rewritten behind the user's back
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    os.chmod(path, 0o640)
    with pytest.raises(StrongroomError, match=r"chmod 600"):
        store.refs()
    os.chmod(path, 0o600)
    assert store.get("r") == SECRET


def test_a_damaged_file_is_one_clear_error_without_its_content(store: SecretsStore, path: Path) -> None:
    store.set("r", SECRET)
    path.write_text(path.read_text()[:-5])
    with pytest.raises(StrongroomError, match="damaged") as caught:
        store.get("r")
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_secret_values_stay_out_of_repr(store: SecretsStore, path: Path) -> None:
    store.set("repo:a:1", SECRET)
    assert SECRET not in repr(store)
    assert SECRET not in str(vars(store))
    assert repr(store) == f"SecretsStore(backend='file', path={str(path)!r})"


def test_new_ref_is_fresh_and_well_formed(store: SecretsStore) -> None:
    refs = {store.new_ref("repo:my_backup") for _ in range(200)}
    assert len(refs) == 200
    for ref in refs:
        prefix, _, tail = ref.rpartition(":")
        assert prefix == "repo:my_backup" and len(tail) == 8 and int(tail, 16) >= 0
    with pytest.raises(ValueError):
        store.new_ref("")


def test_bad_references_and_values_are_refused(store: SecretsStore) -> None:
    with pytest.raises(ValueError):
        store.set("", "x")
    with pytest.raises(ValueError):
        store.set("a\nb", "x")
    with pytest.raises(TypeError):
        store.set("a", b"bytes")  # type: ignore[arg-type]
    assert store.refs() == []


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STRONGROOM_SECRETS", str(tmp_path / "s.json"))
    assert default_secrets_path() == str(tmp_path / "s.json")
    assert SecretsStore().path == str(tmp_path / "s.json")
    monkeypatch.delenv("STRONGROOM_SECRETS")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert SecretsStore().path == str(tmp_path / "data" / "strongroom" / "secrets.json")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_secrets_path() == str(tmp_path / "home" / ".local" / "share" / "strongroom" / "secrets.json")


WRITER = textwrap.dedent("""
    import sys
    from strongroom.services.secrets import SecretsStore
    store = SecretsStore(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(int(sys.argv[3])):
        store.set(f"{sys.argv[2]}:{i}", f"secret-{sys.argv[2]}-{i}")
""")


def test_two_processes_setting_different_refs_lose_nothing(path: Path) -> None:
    count = 60
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(count)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for name in ("alpha", "beta")]
    try:
        for w in writers:
            assert w.stdout.readline().strip() == "ready"
        for w in writers:  # start both together
            w.stdin.write("go\n")
            w.stdin.flush()
        for w in writers:
            w.communicate(timeout=60)
            assert w.returncode == 0
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
    store = SecretsStore(str(path))
    assert len(store.refs()) == 2 * count
    for name in ("alpha", "beta"):
        for i in range(count):
            assert store.get(f"{name}:{i}") == f"secret-{name}-{i}"
    assert json.loads(path.read_text())["version"] == 1


# -- backend choice ---------------------------------------------------------------
# keyring is not installed here; a stand-in module shows how the store
# chooses between it and the file.

def fake_keyring(monkeypatch: pytest.MonkeyPatch, usable: bool) -> dict:
    stored: dict = {}

    class Backend:
        priority = 5

        def set_password(self, service: str, user: str, password: str) -> None:
            stored[(service, user)] = password

        def get_password(self, service: str, user: str) -> str | None:
            return stored.get((service, user))

        def delete_password(self, service: str, user: str) -> None:
            del stored[(service, user)]

    class Refusing:
        priority = 0

    Refusing.__module__ = "keyring.backends.fail"
    module = types.ModuleType("keyring")
    module.get_keyring = lambda: Backend() if usable else Refusing()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyring", module)
    return stored


def test_a_usable_keyring_is_preferred(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    stored = fake_keyring(monkeypatch, usable=True)
    store = SecretsStore(str(path))
    assert store.backend == "keyring"
    store.set("repo:a:1", SECRET)
    assert stored == {("strongroom", "repo:a:1"): SECRET}
    assert store.get("repo:a:1") == SECRET
    assert store.refs() == ["repo:a:1"]
    assert SECRET not in repr(store)
    store.delete("repo:a:1")
    store.delete("repo:a:1")
    assert stored == {} and store.refs() == []
    assert not path.exists()


def test_the_fail_backend_means_the_file(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    fake_keyring(monkeypatch, usable=False)
    assert SecretsStore(str(path)).backend == "file"
    with pytest.raises(StrongroomError, match="no usable OS keyring"):
        SecretsStore(str(path), backend="keyring")


def test_the_environment_can_insist_on_the_file(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    stored = fake_keyring(monkeypatch, usable=True)
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    store = SecretsStore(str(path))
    assert store.backend == "file"
    store.set("r", SECRET)
    assert stored == {} and path.exists()
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "vault")
    with pytest.raises(StrongroomError, match="unknown secrets backend"):
        SecretsStore(str(path))
