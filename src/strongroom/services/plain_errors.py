"""A job's error in plain words: what happened and what to do about it.

The catalog keeps a failed job's error as the one line the error gave (its
type is not stored), so the known lines are recognised by what they say.
The first rule that matches wins; an error no rule knows gets None, and the
original line is shown alone.
"""

from __future__ import annotations

import re

# (pattern, sentence), tried in order; the patterns are case-insensitive.
RULES: tuple[tuple[str, str], ...] = (
    (r"its configuration was removed|no configuration|config .* not found",
     "The configuration this job belongs to no longer exists."),
    (r"cancelled|interrupted",
     "The job was cancelled before it finished. Nothing is wrong; run it again when you want a new point."),
    (r"wrong password|no key file opens",
     "The repository's password was refused. Check the password stored for this configuration "
     "(or its password command) and run the job again."),
    (r"refused access|HTTP 401|HTTP 403|authenticat|credentials",
     "The storage server refused the user name or password. Check the WebDAV credentials of the target."),
    (r"no space left|ENOSPC|insufficient storage|HTTP 507|quota",
     "The target is full. Free some space there (forget and prune old points) or give it more room, "
     "then run the job again."),
    (r"repository is locked|lock(ed)? (is )?held|RepositoryLocked",
     "Another process is using the repository (a backup, a prune or a check). Wait for it to finish; "
     "if nothing runs, the lock is stale and `strongroom unlock` removes it."),
    (r"lock lost",
     "The repository's lock could not be kept (the target stopped answering for a while). "
     "The job stopped before writing more; run it again."),
    (r"source path .* does not exist|no such file or directory",
     "A folder or file to back up does not exist. Mount the disk or share it lives on, "
     "or fix the configuration's sources."),
    (r"does not answer|unreachable|connection refused|timed out|name or service not known|"
     r"temporary failure in name resolution|network is unreachable|certificate",
     "The target did not answer. Check that the server is on and reachable from this machine "
     "(address, port, network, certificate); the queue tries again on its own."),
    (r"found damage|damage|does not authenticate|integrity|corrupt",
     "A check found damage in the repository. Run `strongroom check --read-data` to see what is "
     "affected, and keep the existing points until it is repaired."),
    (r"exited with status",
     "The command that produces the backup's data failed. Run it by hand to see why, then fix it."),
    (r"permission denied",
     "strongroom was not allowed to read or write something it needs. Check the files' permissions "
     "and the user strongroom runs as."),
)

_COMPILED = tuple((re.compile(pattern, re.IGNORECASE), sentence) for pattern, sentence in RULES)


def explain_error(line: str | None) -> str | None:
    """The plain-words sentence for a job's error `line`, or None when none fits."""
    if not line:
        return None
    first = line.splitlines()[0]
    for pattern, sentence in _COMPILED:
        if pattern.search(first):
            return sentence
    return None
