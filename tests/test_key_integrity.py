"""Key files and identity: damage is named as damage, and a writer of the target who
knows no password cannot get a repository opened, or written to, under a key of theirs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import PASSWORD
from strongroom.repo import keys
from strongroom.repo.crypto import Crypto, MasterKey
from strongroom.repo.repository import CONFIG, CONFIG_AAD, FORMAT_VERSION, RepoConfig, Repository
from strongroom.repo.chunker import ChunkerParams
from strongroom.storage import LocalStorage


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


def error_lines(done) -> list[str]:
    return [line for line in done.stderr.decode().splitlines() if line.strip()]


@pytest.fixture
def backed_up(cli, src):
    cli.run("init", check=True)
    cli.run("backup", str(src), check=True)
    return cli


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_the_only_key_is_found_by_check_and_named_on_open(backed_up, repo_path, tmp_path):
    cli = backed_up
    [key_file] = (repo_path / "keys").iterdir()
    flip_a_bit(key_file)

    # The warm cache still opens with its good copy, but check reads the target.
    for args in (("check",), ("check", "--read-data")):
        done = cli.run(*args)
        assert done.returncode == 1, done.stdout.decode()
        out = done.stdout.decode()
        assert f"damaged: keys/{key_file.name}: key file keys/{key_file.name} is damaged" in out
        assert "the key this command opened with is not (or no longer whole) on the target" in out

    # A new machine: the open says what is wrong, not "wrong password" (exit 12).
    done = cli.run("snapshots", env={"STRONGROOM_CACHE_DIR": str(tmp_path / "new-machine")})
    assert done.returncode == 1
    [line] = error_lines(done)
    assert f"key file keys/{key_file.name} is damaged" in line and "wrong password" not in line


def test_check_advises_on_a_single_key_and_not_on_two(backed_up):
    cli = backed_up
    done = cli.run("check", check=True)
    assert "warning: the repository has a single key and no recovery kit is on record" in done.stdout.decode()
    cli.run("key", "add", env={"STRONGROOM_NEW_PASSWORD": "a second password"}, check=True)
    done = cli.run("check", "--json", check=True)
    summary = [json.loads(x) for x in done.stdout.decode().splitlines() if '"summary"' in x][-1]
    assert summary["keys"] == 2 and not any("single key" in a for a in summary["advice"])


def plant(repo_path: Path, *, drop_password_keys: bool, same_id: bool) -> MasterKey:
    """What a writer of the target who knows no password can do: a key file of
    their own without a password, and a config under its master key (with the
    repository's id, for an attacker who learnt it, or a new one)."""
    storage = LocalStorage(str(repo_path))
    real = Repository.open(storage, PASSWORD, cache_root="").config
    if drop_password_keys:
        for info in list(storage.list("keys")):
            storage.delete(info.name)
    attacker = MasterKey.generate()
    keys.store_key(storage, attacker, None)
    config = RepoConfig(id=real.id if same_id else os.urandom(16).hex(), version=FORMAT_VERSION,
                        created="2026-01-01T00:00:00Z", chunker=ChunkerParams(), compression="zstd",
                        pack_size=real.pack_size, data_fanout=real.data_fanout)
    storage.write(CONFIG, Crypto(attacker).encrypt(config.encode(), CONFIG_AAD))
    return attacker


def test_a_planted_no_password_key_never_opens_a_password_repository(backed_up, repo_path, src, tmp_path):
    cli = backed_up
    plant(repo_path, drop_password_keys=False, same_id=True)
    before = files_under(repo_path / "data") | files_under(repo_path / "snapshots")

    # This machine: the password key opens, its own cached config is used, and
    # what it writes is under the real key; check names the planted config.
    (src / "new.txt").write_bytes(b"written after the key was planted\n")
    cli.run("backup", str(src), check=True)
    done = cli.run("check")
    assert done.returncode == 1 and "damaged: config: config: does not authenticate" in done.stdout.decode()
    assert len(json.loads(cli.run("snapshots", "--json", check=True).stdout)) == 2

    # A new machine: the planted key is not used, the planted config does not open: stop, write nothing.
    written = files_under(repo_path / "data") | files_under(repo_path / "snapshots")
    done = cli.run("backup", str(src), env={"STRONGROOM_CACHE_DIR": str(tmp_path / "new-machine")})
    assert done.returncode == 1
    [line] = error_lines(done)
    assert "config" in line and "does not authenticate" in line
    assert files_under(repo_path / "data") | files_under(repo_path / "snapshots") == written
    assert before <= written


@pytest.mark.parametrize("same_id", [True, False], ids=["attacker-knows-the-id", "new-id"])
def test_a_substituted_repository_is_refused_where_it_was_seen(backed_up, repo_path, src, tmp_path, same_id):
    cli = backed_up
    plant(repo_path, drop_password_keys=True, same_id=same_id)
    before = files_under(repo_path / "data") | files_under(repo_path / "snapshots")

    done = cli.run("backup", str(src))
    assert done.returncode == 1
    [line] = error_lines(done)
    assert "is not the one this machine opened there before" in line
    assert ("its master key changed" if same_id else "its id changed") in line
    assert files_under(repo_path / "data") | files_under(repo_path / "snapshots") == before


def test_a_substituted_repository_on_a_new_machine_stops_at_the_foreign_index(backed_up, repo_path, src, tmp_path):
    cli = backed_up
    plant(repo_path, drop_password_keys=True, same_id=True)
    before = files_under(repo_path / "data") | files_under(repo_path / "snapshots")
    new_machine = {"STRONGROOM_CACHE_DIR": str(tmp_path / "new-machine")}

    done = cli.run("backup", str(src), env=new_machine)
    assert done.returncode == 1
    [line] = error_lines(done)
    assert "is intact but does not authenticate under this repository's key" in line
    assert files_under(repo_path / "data") | files_under(repo_path / "snapshots") == before
    # Reading goes on past it, naming each such point.
    done = cli.run("snapshots", env=new_machine)
    assert "does not authenticate under this repository's key" in done.stderr.decode()


def test_hostile_key_derivation_parameters_are_refused_before_deriving(tmp_path):
    storage = LocalStorage(str(tmp_path / "repo"))
    data = keys.make_key_file(MasterKey.generate(), PASSWORD)
    doc = json.loads(data)
    doc["kdf_params"]["memory_kib"] = 64 * 1024 * 1024  # 64 GiB
    hostile = json.dumps(doc).encode()
    import hashlib
    storage.write(f"keys/{hashlib.sha256(hostile).hexdigest()}", hostile)
    with pytest.raises(keys.KeyFileDamaged, match="outside what this version accepts"):
        keys.open_key(storage, PASSWORD)


def test_new_keys_use_the_default_derivation_unless_given_other_parameters(tmp_path):
    storage = LocalStorage(str(tmp_path / "repo"))
    strong = keys.KdfParams()
    key_id = keys.store_key(storage, MasterKey.generate(), PASSWORD, strong)
    assert json.loads(storage.read(f"keys/{key_id}"))["kdf_params"] == strong.to_dict() == {
        "memory_kib": 65536, "iterations": 3, "lanes": 4}
    # Production code reads no test switch from the environment.
    source = Path(keys.__file__).read_text()
    assert "environ" not in source


def test_a_process_derives_each_key_once_and_a_wrong_password_still_fails(tmp_path, monkeypatch):
    """The daemon opens the same repository for every job and request: the
    Argon2id derivation runs once per key file and password, and a wrong
    password (or another key file) finds nothing remembered."""
    storage = LocalStorage(str(tmp_path / "repo"))
    master = MasterKey.generate()
    key_id = keys.store_key(storage, master, PASSWORD)
    derivations = []
    real = keys._derive

    def counted(password, salt, params):
        derivations.append(password)
        return real(password, salt, params)

    monkeypatch.setattr(keys, "_derive", counted)
    for _ in range(3):
        opened, opened_id = keys.open_key(storage, PASSWORD)
        assert (opened.to_dict(), opened_id) == (master.to_dict(), key_id)
    assert derivations == [PASSWORD]
    with pytest.raises(keys.WrongPassword):
        keys.open_key(storage, b"not the password")
    assert derivations == [PASSWORD, b"not the password"]
    # A second key file for the same master and password is derived on its own.
    other = LocalStorage(str(tmp_path / "other"))
    keys.store_key(other, master, PASSWORD)  # derives to wrap it
    assert keys.open_key(other, PASSWORD)[0].to_dict() == master.to_dict()
    assert len(derivations) == 4
