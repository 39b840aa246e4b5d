"""Content-defined chunking (FastCDC, gear table keyed by the repository)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Iterator

from pyfastcdc import FastCDC


@dataclass(frozen=True)
class ChunkerParams:
    # pyfastcdc's cut points average avg_size + min_size, about 1.25 MiB here.
    min_size: int = 256 * 1024
    avg_size: int = 1024 * 1024
    max_size: int = 4 * 1024 * 1024

    def to_dict(self) -> dict:
        return {"algorithm": "fastcdc2020", "min_size": self.min_size, "avg_size": self.avg_size, "max_size": self.max_size}

    @classmethod
    def from_dict(cls, d: dict) -> "ChunkerParams":
        return cls(min_size=d["min_size"], avg_size=d["avg_size"], max_size=d["max_size"])


class Chunker:
    def __init__(self, params: ChunkerParams, seed: int) -> None:
        self.params = params
        self.seed = seed

    def chunks(self, stream: BinaryIO) -> Iterator[memoryview]:
        """Yield chunk views; each is valid only until the next one is taken."""
        cdc = FastCDC(self.params.avg_size, min_size=self.params.min_size,
                      max_size=self.params.max_size, seed=self.seed)
        for chunk in cdc.cut_stream(stream):
            yield chunk.data
