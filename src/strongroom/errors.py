"""The typed errors of strongroom; the command line maps each to an exit code."""


class StrongroomError(Exception):
    """Base of every error strongroom raises on purpose."""

    exit_code = 1


class StorageError(StrongroomError):
    """The storage target failed or refused an operation."""


class ObjectNotFound(StorageError):
    """A named object does not exist on the target."""


class FolderNotFound(StorageError):
    """A folder that was listed does not exist (or the server would not say).

    Deliberately not an ObjectNotFound: a missing folder is never taken for an
    empty one, so nothing is deleted because a listing came back short.
    """


class ListingFailed(StorageError):
    """A listing could not be taken whole: the server answered something that is
    not a listing of the folder asked for (a redirect, an empty multistatus)."""


class ObjectLocked(StorageError):
    """The target keeps the object until a date (S3 Object Lock): it cannot be
    deleted before then, and deleting it is not attempted again in this run."""

    def __init__(self, message: str, until=None, size: int = 0, name: str = "") -> None:
        super().__init__(message)
        self.until = until  # a timezone-aware datetime, or None when the target does not say (a legal hold)
        self.size = size
        self.name = name


class TransientStorageError(StorageError):
    """A failure that may pass: a network error, 5xx, 423, 429, throttling."""

    def __init__(self, message: str, retry_after: float | None = None, throttled: bool = False,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.throttled = throttled
        # What is wrong, without the request it happened to ("connection
        # refused"): the one line that says what a wait is for.
        self.reason = reason or message


class StorageUnreachable(StorageError):
    """The target cannot be reached as configured, and has not answered once in
    this run: an unknown host, a refused connection, TLS against a plain HTTP
    port, a certificate that does not verify. A set-up mistake, not retried."""


class AuthenticationFailed(StorageError):
    """The server refused the credentials; retrying would only lock the account."""


class RepositoryNotFound(StrongroomError):
    exit_code = 10


class RepositoryExists(StrongroomError):
    pass


class FolderNotEmpty(StrongroomError):
    """`init` was pointed at a folder that holds something but no repository.

    Exit code 1, as for an existing repository: the command line was right,
    the place is not. Nothing was written there."""


class RepositoryLocked(StrongroomError):
    exit_code = 11


class WrongPassword(StrongroomError):
    exit_code = 12


class IntegrityError(StrongroomError):
    """Data read back does not authenticate or does not match its name."""


class IncompleteObject(IntegrityError):
    """An object shorter than its own header says: an upload cut off midway.

    Some WebDAV servers keep such a leftover under the final name; it is
    not damage to any recovery point, and prune removes it.
    """


class DamageFound(IntegrityError):
    """A check found damage in a repository: reading it again finds the same."""


class InvalidName(IntegrityError):
    """A name read from the repository could escape the restore target."""


class SnapshotNotFound(StrongroomError):
    pass


class UsageError(StrongroomError):
    """The command line or the settings are wrong: nothing was attempted."""

    exit_code = 2


class KeyFileDamaged(IntegrityError):
    """A key file does not authenticate or does not match its name."""


class RepositoryChanged(IntegrityError):
    """The repository at a known URL is not the one seen there before."""


class ForeignObject(IntegrityError):
    """An object whose bytes match its name but that does not authenticate under
    the repository's key: written under another master key. Never skipped past:
    going on would write the repository again under a key that is not its own."""


class LockLost(StrongroomError):
    """The repository lock could not be kept; the command stops before it writes more."""

    exit_code = 11


class Interrupted(StrongroomError):
    exit_code = 130


class ShuttingDown(Interrupted):
    """The process is stopping (the daemon's SIGTERM): the job stops at its next
    chunk and goes back to the queue, to run again at the next start."""
