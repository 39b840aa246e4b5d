"""Rewrite: drop paths from existing snapshots (the file that should never
have been backed up).

Each snapshot that holds a path the rules exclude gets a copy with new
trees that leave those paths out: same time, host, paths and tags, and
`original` naming the snapshot it came from. New trees go through the
repository's normal save path and are flushed (packs, then the index) before
the copy is written, so every blob a rewritten snapshot references is
indexed when it becomes visible. The old snapshot stays unless asked to be
forgotten; either way its data is freed only by a later prune.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from strongroom.engine.replace import changed_copy, store_copy
from strongroom.engine.tree_rewrite import TreeRewriter, updated_summary
from strongroom.engine.walk import ExcludeRules
from strongroom.model.snapshot import Snapshot
from strongroom.model.tree import Node
from strongroom.repo.repository import Repository

PATHS_SHOWN = 1000  # removed paths listed in the result; the count is always whole


@dataclass
class RewriteResult:
    old: Snapshot
    new: Snapshot | None  # None: nothing to drop, left alone
    removed: int = 0  # entries dropped (a directory counts once, with everything below it)


@dataclass
class RewriteReport:
    results: list[RewriteResult] = field(default_factory=list)
    removed_paths: list[str] = field(default_factory=list)  # the first PATHS_SHOWN, in walk order


def rewrite_snapshots(repo: Repository, snapshots: list[Snapshot], rules: ExcludeRules, forget: bool = False,
                      dry_run: bool = False) -> RewriteReport:
    """Copy each snapshot without the paths `rules` exclude. In a dry run nothing
    is written: the results say what would change."""
    report = RewriteReport()

    def edit(path: bytes, node: Node) -> Node | None:
        if not rules.excludes_path(path):
            return node
        if len(report.removed_paths) < PATHS_SHOWN:
            report.removed_paths.append(path.decode("utf-8", "backslashreplace"))
        return None

    repo.load_index()
    rewriter = TreeRewriter(repo, edit, store=not dry_run)
    for snap in snapshots:
        result = rewriter.rewrite(bytes.fromhex(snap.tree))
        if not result.changed:
            report.results.append(RewriteResult(snap, None))
            continue
        copy = changed_copy(snap, tree=result.tree.hex(), summary=updated_summary(snap.summary, result),
                            excludes=tuple(dict.fromkeys((*snap.excludes, *rules.patterns))))
        if not dry_run:
            repo.flush()  # packs, then the index naming them, then the snapshot
            copy = store_copy(repo, snap, copy, remove_old=forget)
        report.results.append(RewriteResult(snap, copy, result.edits))
    return report
