"""mount: the snapshots as a read-only file system, until it is unmounted."""

from __future__ import annotations

import ctypes.util
import errno
import os
import sys
import threading

import click

from strongroom.cli.options import Common, common_options
from strongroom.cli.output import emit_json, warn_damaged_snapshot
from strongroom.errors import StrongroomError, UsageError


class MountUnavailable(StrongroomError):
    """This machine lacks what a FUSE mount needs."""


def _check_fuse() -> None:
    """Say in one line what to install, before any password is asked for."""
    # mfusepy takes libfuse 2 where both are installed; 3 is the one maintained,
    # and the one whose fusermount3 the help names. FUSE_LIBRARY_NAME still wins.
    if "FUSE_LIBRARY_NAME" not in os.environ and ctypes.util.find_library("fuse3"):
        os.environ["FUSE_LIBRARY_NAME"] = "fuse3"
    try:
        import mfusepy  # noqa: F401  (loads libfuse as it is imported)
    except ImportError:
        raise MountUnavailable("mount needs the mfusepy package: pip install 'strongroom[mount]'") from None
    except OSError:
        raise MountUnavailable("mount needs libfuse 3: install the fuse3 package "
                               "(apt-get install fuse3 on Debian and Ubuntu)") from None
    if not os.path.exists("/dev/fuse"):
        raise MountUnavailable("mount needs /dev/fuse: load the fuse kernel module (modprobe fuse), or give a "
                               "container the device (--device /dev/fuse)")


@click.command()
@common_options
@click.argument("mountpoint")
@click.option("--allow-other", is_flag=True,
              help="Let other users see the mount (the stored owners and modes then apply; a user other "
                   "than root needs user_allow_other in /etc/fuse.conf).")
def mount(common: Common, mountpoint: str, allow_other: bool) -> None:
    """Serve the snapshots read-only at MOUNTPOINT until Ctrl-C or `fusermount3 -u MOUNTPOINT`.

    snapshots/TIME, ids/ID, hosts/HOST/TIME and tags/TAG/TIME each hold one
    snapshot's files; `latest` links to the newest of a folder.
    """
    _check_fuse()
    try:
        with os.scandir(mountpoint):
            pass
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            raise UsageError(f"a mount whose process has ended is still at {mountpoint}: "
                             f"unmount it with `fusermount3 -u {mountpoint}`") from None
    if not os.path.isdir(mountpoint):
        raise UsageError(f"mount point {mountpoint} is not a directory")
    if os.path.ismount(mountpoint):
        raise UsageError(f"something is already mounted at {mountpoint}")
    from strongroom.engine.mount.fs import SnapshotFS, serve

    said = threading.Lock()  # warnings come from libfuse's threads: one whole line each

    def warn(message: str) -> None:
        with said:
            if common.json:
                emit_json({"type": "warning", "message": message})
            else:
                sys.stderr.write(f"strongroom: warning: {message}\n")
                sys.stderr.flush()

    def snapshots():
        return repo.list_snapshots(warn_damaged_snapshot)

    repo = common.open()
    common.events.listener = lambda event: warn(str(event.get("message", event)))
    with common.lock(repo, writes=False, what="mount") as lock:
        if lock is not None:
            lock.on_lost(lambda reason: warn(f"repository lock lost ({reason}): a prune elsewhere may remove "
                                             "what this mount reads"))
        repo.load_index()
        found = snapshots()

        def ready() -> None:
            if common.json:
                emit_json({"state": "mounted", "mountpoint": os.path.abspath(mountpoint), "snapshots": len(found)})
            else:
                print(f"serving {len(found)} snapshots at {mountpoint}; unmount with Ctrl-C or "
                      f"`fusermount3 -u {mountpoint}`", flush=True)

        serve(SnapshotFS(repo, found, warn, snapshots, on_ready=ready), mountpoint, allow_other)
    if common.json:
        emit_json({"state": "unmounted", "mountpoint": os.path.abspath(mountpoint), "storage": repo.requests})
    else:
        print(f"unmounted {mountpoint}", flush=True)


COMMANDS = [mount]
