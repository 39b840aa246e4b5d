"""Tag: change the tags of snapshots, as restic does.

A snapshot is never rewritten in place (its name is the hash of its bytes):
a copy with the new tags is stored and only then the old one is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from strongroom.engine.replace import changed_copy, store_copy
from strongroom.errors import UsageError
from strongroom.model.snapshot import Snapshot
from strongroom.repo.repository import Repository


@dataclass(frozen=True)
class TagChange:
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    set: tuple[str, ...] | None = None  # None: --set not given; () clears every tag

    @classmethod
    def parse(cls, add=(), remove=(), set_=()) -> "TagChange":
        """From the options: each may be given several times and hold a comma list."""
        def split(values) -> tuple[str, ...]:
            return tuple(dict.fromkeys(t.strip() for v in values for t in v.split(",") if t.strip()))
        if set_ and (add or remove):
            raise UsageError("--set replaces every tag: give it without --add and --remove")
        if not (set_ or add or remove):
            raise UsageError("nothing to do: give --add, --remove or --set")
        return cls(split(add), split(remove), split(set_) if set_ else None)

    def apply(self, tags: tuple[str, ...]) -> tuple[str, ...]:
        if self.set is not None:
            return self.set
        kept = [t for t in dict.fromkeys(tags) if t not in self.remove]
        return tuple(kept + [t for t in self.add if t not in kept and t not in self.remove])


@dataclass(frozen=True)
class Retagged:
    old: Snapshot
    new: Snapshot


def retag(repo: Repository, snapshots: list[Snapshot], change: TagChange) -> list[Retagged]:
    """Store a copy of each snapshot whose tags change, then delete the old one.
    A snapshot whose set of tags stays the same is left alone."""
    done = []
    for snap in snapshots:
        tags = change.apply(snap.tags)
        if set(tags) == set(snap.tags):
            continue
        done.append(Retagged(snap, store_copy(repo, snap, changed_copy(snap, tags=tags), remove_old=True)))
    return done
