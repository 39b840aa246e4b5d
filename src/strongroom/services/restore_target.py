"""Where a restore asked for from outside (the web console, a script) may write.

The rule: an absolute path, without NUL and without `..` components,
normalised; not `/` and not in a system folder (`/etc`, `/usr`, `/var/lib`...,
checked on the path as given and on the real path its existing part leads
to, so a symlink cannot point the restore there); not an existing file;
not inside the repository of the configuration (or of any other local
one), nor inside a folder strongroom keeps its own files in (the catalog's,
the cache's, the secrets file's: `BackupManager.own_folders`), where a
restored file could take the place of the catalog or a secret. The restore itself then writes only below the target: the engine
refuses names in a tree that would climb out of it.
"""

from __future__ import annotations

import os

from strongroom.errors import UsageError

# Folders of the system: a restore into them (or below them) is refused.
SYSTEM_FOLDERS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run",
                  "/sbin", "/sys", "/usr", "/var/lib", "/var/cache", "/var/log", "/var/spool")


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def check_restore_target(target: str, repositories: tuple[str, ...] = (), own: tuple[str, ...] = ()) -> str:
    """The target folder as a real path (symlinks resolved: the restore then opens
    it without following one, RestoreOptions.real_target), or UsageError saying
    in one line why not.
    `repositories` are the local repository folders the target must stay out of;
    `own` strongroom's own folders (BackupManager.own_folders), likewise."""
    if not isinstance(target, str) or not target:
        raise UsageError("a restore needs a target folder")
    if "\0" in target:
        raise UsageError("the target folder holds a NUL character")
    if not target.startswith("/"):
        raise UsageError("the target folder must be an absolute path (starting with /)")
    if ".." in target.split("/"):
        raise UsageError("the target folder must not hold `..`")
    path = os.path.normpath(target)
    path = "/" + path.lstrip("/")  # normpath keeps a leading //
    real = os.path.realpath(path)
    for candidate in (path, real):
        if candidate == "/":
            raise UsageError("the target folder must not be /")
        for folder in SYSTEM_FOLDERS:
            if _inside(candidate, folder):
                raise UsageError(f"the target folder must not be in the system folder {folder}")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UsageError(f"the target {path} exists and is not a folder")
    for repo in repositories:
        repo_real = os.path.realpath(repo)
        if _inside(real, repo_real) or _inside(path, os.path.normpath(repo)):
            raise UsageError("the target folder must not be inside a repository")
    for folder in own:
        if _inside(real, os.path.realpath(folder)) or _inside(path, os.path.normpath(folder)):
            raise UsageError("the target folder must not be inside strongroom's own folders "
                             "(the catalog's, the cache's or the secrets')")
    return real
