"""init, key, locks, unlock."""

from __future__ import annotations

import functools
import os
import sys

import click

from strongroom.cli.options import Common, FromRepo, common_options, from_repository_options, read_password
from strongroom.cli.output import emit_json
from strongroom.errors import ObjectLocked, UsageError, WrongPassword
from strongroom.repo import keys
from strongroom.repo.repository import DEFAULT_PACK_SIZE, Repository
from strongroom.words import plural


@click.command()
@common_options
@click.option("--compression", default="zstd", show_default=True, help="Default codec: zstd[:LEVEL], lz4, gzip, none.")
@click.option("--pack-size", type=int, default=None,
              help=f"Target pack size in MiB (default {DEFAULT_PACK_SIZE >> 20}; 64 on Nutstore).")
@click.option("--no-password", "no_password", is_flag=True,
              help="Store the master key unwrapped: integrity without secrecy.")
@functools.partial(from_repository_options, repo_option="--copy-chunker-params")
def init(common: Common, compression: str, pack_size: int, no_password: bool, from_repo, from_password_file,
         from_password_command, from_webdav_password_file, from_webdav_vendor) -> None:
    """Create a new repository (and its directory).

    Refuses a location that holds a repository, or anything else (exit 1).
    With --copy-chunker-params URL, the new repository takes that one's chunker
    parameters, chunker seed and blob id key (its password read as `copy`
    reads the source's), so dedup holds between them and `copy` sends blobs
    and trees as they are."""
    ids_of = None
    if from_repo:
        ids_of = FromRepo(from_repo, from_password_file, from_password_command, from_webdav_password_file,
                          from_webdav_vendor).open(common)
    elif from_password_file or from_password_command or from_webdav_password_file or from_webdav_vendor:
        raise UsageError("the --from-* options go with --copy-chunker-params URL")
    storage = common.storage()
    vendor = storage.info.vendor
    pack_bytes = pack_size * 1024 * 1024 if pack_size else vendor.pack_size if vendor else DEFAULT_PACK_SIZE
    cap = vendor.max_object_size if vendor else None
    if not 1 << 20 <= pack_bytes <= 400 << 20 or cap and pack_bytes + (8 << 20) > cap:
        raise UsageError("--pack-size must be between 1 and 400 MiB, and well below the server's upload limit")
    password = None if no_password else read_password(common, "new repository password: ")
    if password is not None and not password:
        raise UsageError("empty password: use --no-password for a repository without one")
    repo = Repository.init(storage, password, compression=compression, pack_size=pack_bytes,
                           data_fanout=vendor.data_fanout if vendor else 2, cache_root=common.cache_root,
                           settings=common.settings, on_warning=common.warn, ids_of=ids_of)
    if common.json:
        emit_json({"type": "summary", "repository_id": repo.config.id, "url": repo.storage.url,
                   "encrypted": password is not None,
                   "chunker_params_of": ids_of.storage.url if ids_of is not None else None})
    else:
        mode = "without a password (not secret)" if password is None else "encrypted"
        print(f"created repository {repo.config.id[:8]} at {repo.storage.url}, {mode}")
        if ids_of is not None:
            print(f"chunker parameters, chunker seed and blob id key taken from {ids_of.config.id[:8]} "
                  f"at {ids_of.storage.url}")


@click.group()
def key() -> None:
    """Manage the passwords (key files) of a repository."""


def _new_password(common: Common) -> bytes:
    path = os.environ.get("STRONGROOM_NEW_PASSWORD_FILE")
    if path:
        with open(path, "rb") as f:
            return f.read().rstrip(b"\r\n")
    if "STRONGROOM_NEW_PASSWORD" in os.environ:
        return os.environb[b"STRONGROOM_NEW_PASSWORD"]
    if sys.stdin.isatty():
        import getpass
        first = getpass.getpass("new password: ").encode()
        if getpass.getpass("new password again: ").encode() != first:
            raise UsageError("the passwords differ")
        return first
    raise UsageError("no new password: set STRONGROOM_NEW_PASSWORD or STRONGROOM_NEW_PASSWORD_FILE")


@key.command("add")
@common_options
def key_add(common: Common) -> None:
    """Add a password (new password from STRONGROOM_NEW_PASSWORD[_FILE] or a prompt)."""
    repo = common.open()
    with common.lock(repo, exclusive=True, writes=True, what="key add"):
        key_id = keys.store_key(repo.storage, repo.crypto.key, _new_password(common))
    print(f"added key {key_id[:8]}")


@key.command("list")
@common_options
def key_list(common: Common) -> None:
    """List key files."""
    repo = common.open()
    found = keys.list_keys(repo.storage)
    if common.json:
        emit_json({"type": "summary", "keys": [dict(k.__dict__, current=k.id == repo.key_id) for k in found]})
        return
    for k in found:
        mark = "*" if k.id == repo.key_id else " "
        print(f"{mark}{k.id[:8]}  {k.kdf:8}  {k.created}  {k.username}@{k.hostname}")


@key.command("passwd")
@common_options
def key_passwd(common: Common) -> None:
    """Change the password that opened the repository."""
    repo = common.open()
    with common.lock(repo, exclusive=True, writes=True, what="key passwd"):
        key_id = keys.store_key(repo.storage, repo.crypto.key, _new_password(common))
        try:
            repo.storage.delete(f"{keys.KEY_DIR}/{repo.key_id}")
        except ObjectLocked as e:
            # The new key is stored; the target keeps the old one (S3 Object
            # Lock), so the old password opens the repository until its date.
            print(f"password changed: key {key_id[:8]} added; key {repo.key_id[:8]} stays: {e}")
            return
    print(f"password changed: key {repo.key_id[:8]} replaced by {key_id[:8]}")


@key.command("remove")
@common_options
@click.argument("key_id")
def key_remove(common: Common, key_id: str) -> None:
    """Remove a key file (not the one in use)."""
    repo = common.open()
    matches = [k.id for k in keys.list_keys(repo.storage) if k.id.startswith(key_id.lower())]
    if len(matches) != 1:
        raise UsageError(f"key {key_id} is {'ambiguous' if matches else 'not found'}")
    if matches[0] == repo.key_id:
        raise UsageError("refusing to remove the key in use: open with another password first")
    with common.lock(repo, exclusive=True, writes=True, what="key remove"):
        repo.storage.delete(f"{keys.KEY_DIR}/{matches[0]}")
    print(f"removed key {matches[0][:8]}")


@click.command()
@common_options
@click.option("--remove-all", is_flag=True, help="Remove every lock, not only stale ones.")
def unlock(common: Common, remove_all: bool) -> None:
    """Remove stale locks."""
    repo = common.open()
    removed = repo.remove_locks(remove_all)
    if common.json:
        emit_json({"type": "summary", "removed": [lock.describe() for lock in removed]})
    else:
        print(f"removed {plural(len(removed), 'lock')}")


@click.command()
@common_options
def locks(common: Common) -> None:
    """Show who holds locks on the repository."""
    repo = common.open()
    found = repo.list_locks()
    if common.json:
        for lock, seen, stale in found:
            emit_json({"type": "lock", "name": lock.name, "exclusive": lock.exclusive, "hostname": lock.hostname,
                       "username": lock.username, "pid": lock.pid, "time": lock.time, "machine_id": lock.machine_id,
                       "seen_unchanged": round(seen, 1), "stale": stale})
        emit_json({"type": "summary", "locks": len(found), "stale": sum(stale for *_, stale in found)})
        return
    for lock, seen, stale in found:
        verdict = "stale" if stale else f"seen unchanged for {seen:.0f} s here"
        print(f"{lock.name.rsplit('/', 1)[-1][:8]}  {lock.describe()}  ({verdict})")
    print(f"{plural(len(found), 'lock')}")


COMMANDS = [init, key, locks, unlock]
__all__ = ["COMMANDS", "WrongPassword"]
