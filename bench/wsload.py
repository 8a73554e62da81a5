"""WebSocket load for the benchmark: ~100-byte JSON frames, a plain `websockets` server, clients.

The server answers two paths:

* ``/burst?n=N``: waits for the client's start frame, then sends N frames as fast as
  ``websockets`` can, then waits for the client to close;
* ``/echo``: sends every message back.

Clients time from their first send to the last frame received. Compression is off on
both sides (the figures are about framing and relaying, not deflate).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve

FRAME_BYTES = 100
START_FRAME = json.dumps({"type": "start", "subscribe": ["agent_event"]}, separators=(",", ":"))
CONNECT_OPTIONS = {"compression": None, "ping_interval": None, "max_size": None, "open_timeout": 30}


def make_frame(seq: int) -> str:
    """One JSON text frame of exactly FRAME_BYTES bytes."""
    head = f'{{"type":"agent_event","seq":{seq},"ts":{1700000000 + seq / 1000:.3f},"data":{{"text":"'
    tail = '"}}'
    return head + "x" * max(0, FRAME_BYTES - len(head) - len(tail)) + tail


def make_frames(count: int) -> list[str]:
    return [make_frame(seq) for seq in range(count)]


def burst_path(count: int) -> str:
    return f"/burst?n={count}"


class LoadServer:
    """The plain `websockets` server on 127.0.0.1 (port 0); the physical baseline's server side."""

    def __init__(self, frames: list[str]) -> None:
        self.frames = frames
        self._server: Server | None = None
        self.port = 0

    async def start(self) -> int:
        self._server = await serve(self._handle, "127.0.0.1", 0, **_server_options())
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, ws: ServerConnection) -> None:
        parts = urlsplit(ws.request.path)
        if parts.path == "/burst":
            count = int(parse_qs(parts.query)["n"][0])
            if count > len(self.frames):
                await ws.close(1011, "not enough frames prepared")
                return
            await ws.recv()
            send, frames = ws.send, self.frames
            for index in range(count):
                await send(frames[index])
            await ws.wait_closed()
        elif parts.path == "/echo":
            async for message in ws:
                await ws.send(message)
        else:
            await ws.close(1008, "unknown path")


def _server_options() -> dict[str, object]:
    return {"compression": None, "ping_interval": None, "max_size": None}


async def burst(base_url: str, count: int, expected_last: str, at_end: Callable[[], object] | None = None) -> float:
    """Ask for `count` frames, receive them all; return the seconds it took.

    `at_end` runs (in a thread) after the last frame arrived, before closing: the
    connection and its flow are still live then.
    """
    async with connect(base_url + burst_path(count), **CONNECT_OPTIONS) as ws:
        recv = ws.recv
        started = time.perf_counter()
        await ws.send(START_FRAME)
        message = None
        for _ in range(count):
            message = await recv()
        elapsed = time.perf_counter() - started
        if message != expected_last:
            raise RuntimeError(f"burst: last frame was {str(message)[:80]!r}, expected {expected_last[:80]!r}")
        if at_end is not None:
            await asyncio.to_thread(at_end)
    return elapsed


async def round_trips(base_url: str, frames: list[str], count: int) -> float:
    """Send a frame, wait for its echo, `count` times in sequence; return the seconds it took."""
    async with connect(base_url + "/echo", **CONNECT_OPTIONS) as ws:
        send, recv = ws.send, ws.recv
        size = len(frames)
        started = time.perf_counter()
        for index in range(count):
            frame = frames[index % size]
            await send(frame)
            if await recv() != frame:
                raise RuntimeError("echo: the echoed frame differs from the one sent")
        return time.perf_counter() - started
