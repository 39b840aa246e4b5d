"""A writer in one thread, an iterator of its bytes in another: for streaming
what an engine function writes to a file object (a tar of a folder) as an
HTTP answer, with at most a few pieces held at once."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

import anyio
from starlette.responses import StreamingResponse

PIECE = 256 * 1024  # bytes gathered before a piece goes to the reader
DEPTH = 8  # pieces waiting at most


class PipeClosed(Exception):
    """The reader went away (the browser closed the download)."""


class _Writer:
    def __init__(self, pieces: queue.Queue, closed: threading.Event) -> None:
        self._pieces, self._closed = pieces, closed
        self._buffer = bytearray()

    def write(self, data) -> int:
        self._buffer += data
        if len(self._buffer) >= PIECE:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._put(bytes(self._buffer))
            self._buffer.clear()

    def _put(self, item) -> None:
        while True:
            if self._closed.is_set():
                raise PipeClosed("the reader went away")
            try:
                self._pieces.put(item, timeout=0.5)
                return
            except queue.Full:
                continue


def piped(write: Callable[[BinaryIO], object], name: str = "pipe") -> Iterator[bytes]:
    """Run `write(out)` in a thread of its own and yield what it writes to `out`.
    An error in `write` is raised here after the bytes before it; closing the
    iterator early stops the writer at its next write."""
    pieces: queue.Queue = queue.Queue(maxsize=DEPTH)
    closed = threading.Event()
    failure: list[BaseException] = []
    end = object()

    def run() -> None:
        out = _Writer(pieces, closed)
        try:
            write(out)  # type: ignore[arg-type]
            out.flush()
        except PipeClosed:
            return
        except BaseException as e:  # handed to the reader, which raises it
            failure.append(e)
        try:
            out._put(end)
        except PipeClosed:
            pass

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = pieces.get()
            if item is end:
                break
            yield item
        if failure:
            raise failure[0]
    finally:
        closed.set()


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse of a plain (sync) iterator that closes the iterator
    when the answer ends in any way: finished, failed, or cut by a browser that
    went away. Starlette's own leaves a sync iterator open when the client
    disconnects, so its `finally` (a repository lock let go, a writer thread
    told to stop) waited for the garbage collector."""

    def __init__(self, content: Iterator[bytes], *args, on_close: Callable[[], object] | None = None,
                 **kwargs) -> None:
        super().__init__(content, *args, **kwargs)
        self._source = content
        self._on_close = on_close  # also run when the iterator never started (its `finally` would not)

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):  # runs though the answer was cancelled
                await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        try:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
        finally:
            if self._on_close is not None:
                self._on_close()
