"""Content-defined chunking (FastCDC, gear table keyed by the repository)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Iterator

if TYPE_CHECKING:
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

    def problem(self) -> str | None:
        """Why these parameters are not ones the chunker can cut with, or None.

        The maximum is also the most a data blob may decompress to, so a
        config asking for more would lift the bound on every reader.
        """
        sizes = (self.min_size, self.avg_size, self.max_size)
        if not all(type(v) is int for v in sizes):
            return "chunk sizes must be integers"
        if not MIN_CHUNK_SIZE <= self.min_size <= self.avg_size <= self.max_size <= MAX_CHUNK_SIZE:
            return (f"chunk sizes {sizes} are not within {MIN_CHUNK_SIZE} <= min <= avg <= max <= "
                    f"{MAX_CHUNK_SIZE}")
        return None


# What pyfastcdc accepts for each of the sizes: a chunk is never larger than 16 MiB.
MIN_CHUNK_SIZE = 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024


# Below this size a file is read whole and cut in memory: the streaming cutter
# allocates a buffer of twice the maximum chunk size for every file.
WHOLE_READ_LIMIT = 8 * 1024 * 1024


class Chunker:
    def __init__(self, params: ChunkerParams, seed: int) -> None:
        self.params = params
        self.seed = seed
        self._cdc = self._new()

    def _new(self) -> FastCDC:
        # Imported here: only a backup cuts, and the extension is a fifth of a
        # cold start's imports for every other command.
        from pyfastcdc import FastCDC
        return FastCDC(self.params.avg_size, min_size=self.params.min_size,
                       max_size=self.params.max_size, seed=self.seed)

    def chunks_of_buffer(self, data: bytes | memoryview) -> Iterator[memoryview]:
        """Cut an in-memory buffer; the views stay valid as long as `data`."""
        if len(data) <= self.params.min_size:
            yield memoryview(data)
            return
        for chunk in self._cdc.cut_buf(data):
            yield chunk.data

    def chunks(self, stream: BinaryIO) -> Iterator[memoryview]:
        """Yield chunk views; each is valid only until the next one is taken."""
        for chunk in self._new().cut_stream(stream):
            yield chunk.data
