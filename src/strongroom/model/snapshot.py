"""Snapshots: one small encrypted JSON object per recovery point."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

from strongroom.errors import IntegrityError

SNAPSHOT_DIR = "snapshots"
SNAPSHOT_AAD = b"strongroom snapshot v1"
FULL, INCREMENTAL = "full", "incremental"


@dataclass(frozen=True)
class Snapshot:
    time: str  # ISO 8601 with offset, microseconds
    tree: str  # root tree id, hex
    paths: tuple[str, ...]
    hostname: str
    username: str = ""
    uid: int = 0
    gid: int = 0
    tags: tuple[str, ...] = ()
    kind: str = FULL
    parent: str | None = None
    config_name: str | None = None
    excludes: tuple[str, ...] = ()
    compression: str = ""
    program_version: str = ""
    summary: dict = field(default_factory=dict)
    # The id of the snapshot this one was made from by `tag`, `rewrite` or
    # `repair snapshots` (the first one, when changed again); None for a backup.
    original: str | None = None
    id: str = ""  # the object's name; not part of its content

    @property
    def datetime(self) -> datetime:
        return datetime.fromisoformat(self.time)

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def encode(self) -> bytes:
        doc = asdict(self)
        del doc["id"]
        if doc["original"] is None:  # a backup's bytes stay as they were before the field existed
            del doc["original"]
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes, snapshot_id: str) -> "Snapshot":
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise TypeError("not an object")
            for key in ("paths", "tags", "excludes"):
                doc[key] = tuple(doc.get(key, ()))
                if not all(isinstance(v, str) for v in doc[key]):
                    raise TypeError(f"{key} holds something other than text")
            known = set(cls.__dataclass_fields__) - {"id"}
            snap = cls(**{k: v for k, v in doc.items() if k in known}, id=snapshot_id)
            for key in _TEXT:
                if not isinstance(getattr(snap, key), str):
                    raise TypeError(f"{key} is not text")
            for key in ("parent", "config_name", "original"):
                if not isinstance(getattr(snap, key), (str, type(None))):
                    raise TypeError(f"{key} is not text")
            if not all(type(getattr(snap, key)) is int for key in ("uid", "gid")) or \
                    not isinstance(snap.summary, dict):
                raise TypeError("uid, gid or summary of the wrong type")
            if snap.datetime.tzinfo is None:  # every snapshot is sorted against every other
                raise ValueError("time without an offset")
            bytes.fromhex(snap.tree)
            if snap.original is not None:
                bytes.fromhex(snap.original)
            return snap
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
            # RecursionError: JSON nested deeper than the parser's stack allows.
            raise IntegrityError(f"snapshot {snapshot_id[:8]}: malformed: {e}") from None


_TEXT = ("time", "tree", "hostname", "username", "kind", "compression", "program_version")
