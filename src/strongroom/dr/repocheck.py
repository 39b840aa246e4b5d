"""The check of a repository a rehearsal restored from: its structure, and a share of its data.

The structure is `check`'s (keys, config, index, snapshots, every tree, every
pack listed with its size). With `read_data_subset`, that share of the
packs is read and every blob in them authenticated, chosen at random among
the packs the restores did not read already when their ids are known
(`read_packs`), so a rehearsal's reading and the check's add up. The share
read counts both: exactly, as the union of ids, when `read_packs` is given;
otherwise as `packs_read` (the restores' count) plus the packs this check
read, which counts a pack twice when both read it.

The caller holds the repository's lock, as for the restores before it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Collection

from strongroom.dr.one_line import one_line
from strongroom.dr.results import RepositoryCheck
from strongroom.engine.check import Checker, percentage
from strongroom.engine.progress import Listener, ignore
from strongroom.errors import StrongroomError, UsageError
from strongroom.repo.repository import Repository
from strongroom.services.urls import redact_password

PROBLEM_CHARS = 400
FILES_SHOWN = 3  # files named on a problem's line; the rest counted


def share_of(text: str) -> float:
    """`N%` (0 < N <= 100) as a share of the packs, for `dr test --read-data-subset`."""
    share = percentage(text)
    if share is None or not 0 < share <= 100:
        raise UsageError(f"--read-data-subset is a share of the packs, more than 0% and at most 100%, not {text!r}")
    return share / 100


def check_repository(repo: Repository, packs_read: int, read_data_subset: float | None = None,
                     listener: Listener | None = None,
                     read_packs: Collection[bytes] | None = None) -> RepositoryCheck:
    """Check `repo`; `packs_read` packs (`read_packs`, when their ids are
    known) were read and authenticated by the restores; `read_data_subset`
    is the share of the packs (0 < share <= 1) this check reads too."""
    if read_data_subset is not None and not 0 < read_data_subset <= 1:
        raise UsageError(f"the share of packs to read is more than 0 and at most 1, not {read_data_subset}")
    started = time.monotonic()
    try:
        repo.load_index()  # the restores loaded it; a failure here is the check's to report
    except StrongroomError:
        pass
    known = set(repo.index.packs)
    already = known & set(read_packs) if read_packs is not None else set()
    chosen: list[bytes] | None = None
    if read_data_subset:
        unread = sorted(known - already)
        count = min(len(unread), math.ceil(len(known) * read_data_subset))
        chosen = random.SystemRandom().sample(unread, count)
    from_cache = repo.read_from_cache
    checker = Checker(repo, listener or ignore, kit_on_record=True)
    try:
        report = checker.run(packs=chosen)
    except StrongroomError as e:
        # A listing that failed, a target that stopped answering: the check could
        # not be made, and that is what the evidence says, not that all is well.
        return RepositoryCheck(
            repository=redact_password(repo.storage.url), structure_ok=False, packs_total=len(known),
            packs_read=0, share_read=0.0, problems=(one_line(f"the check could not be finished: {e}", PROBLEM_CHARS),),
            duration_seconds=round(time.monotonic() - started, 3))
    finally:
        repo.read_from_cache = from_cache  # the check reads the target only; the caller's reads stay as they were
    total = report.counts.get("packs", len(known))
    read_here = report.counts.get("packs_read", 0)
    if read_packs is not None:
        counted = len(already | set(chosen or ()))
    else:
        counted = max(0, packs_read) + read_here
    share = min(1.0, counted / total) if total else 1.0
    structure_problems = len(report.problems) - checker.read_problems
    return RepositoryCheck(
        repository=redact_password(repo.storage.url), structure_ok=structure_problems == 0, packs_total=total,
        packs_read=min(counted, total), share_read=round(share, 4),
        problems=tuple(problem_line(p) for p in report.problems),
        duration_seconds=round(time.monotonic() - started, 3))


def problem_line(problem: dict) -> str:
    """A problem check found, with the first files it touches, as one line."""
    line = f"{problem.get('object', '')}: {problem.get('message', '')}"
    files = problem.get("files") or []
    if files:
        shown = ", ".join(str(f) for f in files[:FILES_SHOWN])
        more = f" and {len(files) - FILES_SHOWN} more" if len(files) > FILES_SHOWN else ""
        line += f" (files: {shown}{more})"
    return one_line(line, PROBLEM_CHARS)
