"""What differs between S3-compatible services, as one small table.

Only Ceph radosgw is exercised by the tests (tests/s3_server.py); the
other rows are the providers' published limits, written down in
docs/s3.md with where each comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from strongroom.errors import UsageError

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class S3Provider:
    name: str
    region: str  # the signing region when neither the URL nor a profile names one
    path_style: bool  # bucket in the path (host/bucket/key), not in the host name
    max_parts: int = 10_000
    min_part_size: int = 5 * MiB  # every part but the last
    max_part_size: int = 5 * GiB
    # Sends x-amz-checksum-sha256 (stored and checked by the service) beside
    # Content-MD5 and the signed payload hash that every provider checks.
    checksums: bool = False
    object_lock: bool = False
    connections: int = 8
    # The shape of a new repository here: packs of 32 MiB (two parts of
    # 16 MiB), in one data folder (S3 has no folders to keep small).
    pack_size: int = 32 * MiB
    data_fanout: int = 0
    max_object_size: int | None = None
    blocked_wait: float = 5.0  # after a SlowDown answer, at least


GENERIC = S3Provider("generic", "us-east-1", path_style=True)
PROVIDERS = {
    "aws": S3Provider("aws", "us-east-1", path_style=False, checksums=True, object_lock=True),
    # radosgw takes any region name in the signature; its zonegroup is "default".
    "ceph": S3Provider("ceph", "us-east-1", path_style=True, object_lock=True, connections=4),
    "minio": S3Provider("minio", "us-east-1", path_style=True, checksums=True, object_lock=True, connections=4),
    "b2": S3Provider("b2", "us-west-004", path_style=False, object_lock=True),
    "wasabi": S3Provider("wasabi", "us-east-1", path_style=False, object_lock=True),
    # R2 signs with region "auto"; it has no S3 Object Lock API.
    "r2": S3Provider("r2", "auto", path_style=True, checksums=True, min_part_size=5 * MiB),
    "generic": GENERIC,
}


def guess_provider(endpoint: str) -> str:
    host = (urlsplit(endpoint).hostname or "").lower()
    if host.endswith(".amazonaws.com"):
        return "aws"
    if host.endswith(".backblazeb2.com"):
        return "b2"
    if host.endswith(".wasabisys.com"):
        return "wasabi"
    if host.endswith(".r2.cloudflarestorage.com"):
        return "r2"
    return "generic"


def region_of(endpoint: str) -> str | None:
    """The region an endpoint's host name carries (s3.eu-central-1.wasabisys.com,
    s3.us-west-004.backblazeb2.com, s3.eu-west-1.amazonaws.com), if any."""
    labels = (urlsplit(endpoint).hostname or "").lower().split(".")
    for i, label in enumerate(labels[:-2]):
        if label in ("s3", "s3-fips") and i + 1 < len(labels) - 2:
            candidate = labels[i + 1]
            if candidate.count("-") >= 2:
                return candidate
    return None


def provider_profile(name: str | None, endpoint: str) -> S3Provider:
    key = (name or guess_provider(endpoint)).lower()
    if key not in PROVIDERS:
        raise UsageError(f"unknown S3 provider {name!r}: use {', '.join(sorted(PROVIDERS))}")
    return PROVIDERS[key]
