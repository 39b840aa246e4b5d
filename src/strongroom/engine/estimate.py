"""What a backup is likely to cost, from a dry run and what earlier runs showed.

A dry run reads and chunks everything a real run would, against the index,
so `bytes_read` and the new (uncompressed) bytes are exact. What is not
known until it is done is estimated from the repository's history:

- stored bytes: the new bytes over a compression ratio, plus each blob's
  pack header entry. The ratio is measured: the dry run compresses the first
  32 MiB of new data and one new chunk in sixteen after that (chosen by id,
  so spread evenly). Where the dry run found nothing new, the ratio the
  repository's data blobs show (raw over stored length, encryption
  included); with neither, no compression;
- requests: one per pack (the pack size is the repository's), one for the
  tree pack, the index and the snapshot, three for the lock, and an index
  checkpoint per checkpoint interval of expected run time;
- time: the read rate and the storing rate of the recent runs that read or
  stored enough to be measured (their snapshots keep `duration`,
  `bytes_read` and `data_added`), taking the slower of the two since the
  run reads and uploads at the same time; and, on a target with a request
  budget, at least the time the budget needs to let that many requests pass.
"""

from __future__ import annotations

import math

from strongroom.engine.progress import stored_bytes
from strongroom.model.snapshot import Snapshot
from strongroom.repo.crypto import OVERHEAD
from strongroom.repo.pack import DATA, ENTRY_SIZE
from strongroom.storage import request_budget

MEASURABLE = 4 << 20  # a run that moved less than this says little about rates
RECENT = 10  # snapshots looked at for rates
LOCK_REQUESTS = 3  # write the lock, list the locks, delete the lock
CHECKPOINT_SECONDS = 60.0


def compression_ratio(repo) -> float | None:
    """Raw over stored bytes of the data blobs indexed so far; None when empty."""
    repo.load_index()
    raw = stored = 0
    for _, loc in repo.index.items():
        if loc.type == DATA:
            raw += loc.raw_length
            stored += loc.length
    return raw / stored if stored else None


def run_summaries(snapshots: list[Snapshot]) -> list[dict]:
    """The run summaries the snapshots keep, oldest first."""
    return [s.summary or {} for s in sorted(snapshots, key=lambda s: (s.datetime, s.id))]


def observed_rates(summaries: list[dict]) -> dict:
    """Bytes read and bytes stored per second over the recent measurable runs
    among `summaries` (oldest first)."""
    read = read_time = stored = store_time = 0.0
    for s in summaries[-RECENT:]:
        duration = float(s.get("duration") or 0)
        if duration <= 0:
            continue
        if (s.get("bytes_read") or 0) >= MEASURABLE:
            read += s["bytes_read"]
            read_time += duration
        if stored_bytes(s) >= MEASURABLE:
            stored += stored_bytes(s)
            store_time += duration
    return {"read_bytes_per_second": round(read / read_time) if read_time else None,
            "store_bytes_per_second": round(stored / store_time) if store_time else None}


def estimate_backup(repo, summary: dict, history: list[dict]) -> dict:
    """The likely cost of the backup a dry run just described in `summary`,
    with the rates of the earlier runs in `history` (run summaries, oldest first)."""
    new_raw = summary.get("data_added_raw") or 0
    new_blobs = summary.get("data_blobs") or 0
    sample_raw, sample_stored = summary.get("sample_raw") or 0, summary.get("sample_stored") or 0
    if sample_raw:
        ratio, source = sample_raw / sample_stored, "sampled"
    else:
        ratio, source = compression_ratio(repo), "repository"
    # A stored blob's length includes its encryption overhead, so the ratio does too.
    per_blob = ENTRY_SIZE if ratio else ENTRY_SIZE + OVERHEAD
    stored = round(new_raw / (ratio or 1.0)) + new_blobs * per_blob if new_raw else 0
    packs = math.ceil(stored / repo.config.pack_size) if stored else 0
    rates = observed_rates(history)
    seconds = None
    parts = []
    if rates["read_bytes_per_second"]:
        parts.append((summary.get("bytes_read") or 0) / rates["read_bytes_per_second"])
    if rates["store_bytes_per_second"] and stored:
        parts.append(stored / rates["store_bytes_per_second"])
    if parts:
        seconds = max(parts)
    checkpoint = repo.checkpoint_interval
    checkpoints = int(seconds // checkpoint) if seconds and checkpoint > 0 else 0
    requests = packs + 1 + 1 + 1 + LOCK_REQUESTS + checkpoints
    budget = request_budget(repo.storage)
    rate = budget.rate if budget is not None else None
    budget_seconds = requests / rate if rate else None
    if budget_seconds is not None:
        seconds = max(seconds or 0.0, budget_seconds)
    return {
        "bytes_to_read": summary.get("bytes_read") or 0,
        "new_bytes": new_raw,
        "compression_ratio": round(ratio, 3) if ratio else None,
        "compression_ratio_from": source if ratio else None,
        "bytes_likely_stored": stored,
        "packs": packs,
        "requests": requests,
        **rates,
        "request_budget_per_second": rate,
        "seconds": round(seconds, 1) if seconds is not None else None,
    }
