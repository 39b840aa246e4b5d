#!/usr/bin/env python3
"""A TCP proxy on loopback that adds latency, for benchmarks of remote targets.

Every byte that passes is held for `--delay` seconds in each direction (25 ms
by default: a round trip of 50 ms), as a long link would hold it, without
limiting how many bytes may be on their way: a sender that keeps writing
sees its bytes arrive a delay later, not one chunk per delay. What may be
on its way per connection and direction is bounded (`--window`, 4 MiB), as a
TCP window bounds it on a real link, so one connection carries at most
window / delay bytes per second.

It prints the port it listens on as the first line of its output, then
serves until one of: `--lifetime` seconds have passed (an hour by default),
its standard input is closed (the process that started it has ended), or
SIGTERM/SIGINT. So it stops by itself even when its parent dies.

    python bench/latency_proxy.py --upstream 127.0.0.1:8080 [--listen-port 0]
                                  [--delay 0.025] [--window 4194304] [--lifetime 3600]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time

CHUNK = 256 * 1024


class _Direction:
    """One direction of one connection: bytes read now are written `delay` later."""

    def __init__(self, delay: float, window: int) -> None:
        self.delay = delay
        self.window = window
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.buffered = 0
        self.room = asyncio.Event()
        self.room.set()

    async def read_from(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                await self.room.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                self.buffered += len(data)
                if self.buffered >= self.window:
                    self.room.clear()
                self.queue.put_nowait((time.monotonic() + self.delay, data))
        except (ConnectionError, OSError):
            pass
        finally:
            self.queue.put_nowait((time.monotonic() + self.delay, b""))

    async def write_to(self, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                due, data = await self.queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    await writer.drain()
                    break
                writer.write(data)
                await writer.drain()
                self.buffered -= len(data)
                if self.buffered < self.window:
                    self.room.set()
        except (ConnectionError, OSError):
            pass


class LatencyProxy:
    def __init__(self, upstream: tuple[str, int], delay: float, window: int) -> None:
        self.upstream = upstream
        self.delay = delay
        self.window = window
        self.connections = 0

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        up, down = _Direction(self.delay, self.window), _Direction(self.delay, self.window)
        try:
            await asyncio.gather(up.read_from(client_reader), up.write_to(server_writer),
                                 down.read_from(server_reader), down.write_to(client_writer))
        finally:
            for writer in (client_writer, server_writer):
                writer.close()


async def serve(upstream: tuple[str, int], port: int, delay: float, window: int, lifetime: float) -> None:
    proxy = LatencyProxy(upstream, delay, window)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", port)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The parent's end of our stdin closes when it exits, however it exits.
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(4096) else None)
    try:
        await asyncio.wait_for(stop.wait(), lifetime)
    except asyncio.TimeoutError:
        pass
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT")
    parser.add_argument("--listen-port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.025, help="seconds added in each direction")
    parser.add_argument("--window", type=int, default=4 * 1024 * 1024,
                        help="bytes on their way per connection and direction")
    parser.add_argument("--lifetime", type=float, default=3600.0, help="seconds before it stops by itself")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    asyncio.run(serve((host, int(port)), args.listen_port, args.delay, args.window, args.lifetime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
