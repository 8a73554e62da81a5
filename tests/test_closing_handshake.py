"""The closing handshake through mitmproxy: each side's TCP connection is closed after that
side has answered the close frame (RFC 6455, 7.1.1), or after a bounded wait.

Python's WebSocket clients hide an early close; Node's WebSocket (undici's, as in
browsers) does not: when the proxy closes the TCP connection before the client's close
frame is read, the kernel resets it, and the client drops frames it had received but
not delivered and reports 1006. So the crowd tests use Node, and the wire tests use raw
sockets that see exactly when the proxy closes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.support.cli import run_wsreplay
from tests.support.scenario import AUTH_FAILURE_FRAME
from tests.support.staging_upstream import ScriptedUpstream, WsScript
from wsreplay.addons.closing_handshake import CLOSE_TIMEOUT_OPTION
from wsreplay.mitm import ProxyHost, ProxySettings

NODE = shutil.which("node")
BURST_CLIENT = Path(__file__).parent / "support" / "node_close_burst.mjs"
NODE_TIMEOUT = 90
TIMEOUT = 10.0
CLOSE_TIMEOUT = 1
"""The proxy's bound in the wire tests (`wsreplay_close_timeout`), in seconds."""
MARGIN = 5.0
"""How much longer than the bound the proxy may take to close, on a busy machine."""

AUTH_FAILURE = "/auth-failure"
CHAT = "/chat"
AUTH_FAILED = "Authentication failed"
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OPCODE_TEXT, OPCODE_CLOSE = 0x1, 0x8


def closing_upstream() -> ScriptedUpstream:
    """/auth-failure sends an error frame and closes 1008; /chat answers "hi" with an echo and "bye"."""
    upstream = ScriptedUpstream()
    upstream.websocket(
        AUTH_FAILURE,
        WsScript(on_open=(AUTH_FAILURE_FRAME,), close_after=0, close_code=1008, close_reason=AUTH_FAILED),
    )
    upstream.websocket(CHAT, WsScript(on_open=("hello",), reply=lambda message: [f"echo:{message!s}", "bye"]))
    return upstream


# --- Node's WebSocket, 30 sockets at once -------------------------------------------

AUTH_FAILURE_SEEN = {"texts": [AUTH_FAILURE_FRAME], "code": 1008, "reason": AUTH_FAILED, "wasClean": True}
CHAT_SEEN = {"texts": ["hello", "echo:hi", "bye"], "code": 1000, "wasClean": True}
"""The reason of the close that answers the client's is the answerer's: none from aiohttp, the client's from mitmproxy."""


def node_command() -> list[str]:
    if NODE is None:
        pytest.skip("Node.js 20.10+ is not installed (its WebSocket is the client that sees a reset)")
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=True).stdout
    if tuple(int(part) for part in version.strip().lstrip("v").split(".")[:2]) < (20, 10):
        pytest.skip(f"Node's WebSocket needs Node 20.10 or later, not {version.strip()}")
    return [NODE, "--experimental-websocket", str(BURST_CLIENT), AUTH_FAILURE, CHAT]


def observed_by_node(stdout: str) -> dict[str, list[dict[str, Any]]]:
    """Node's JSON transcript, with JSON text frames decoded for comparison."""
    observed: dict[str, list[dict[str, Any]]] = json.loads(stdout.strip().splitlines()[-1])
    for sockets in observed.values():
        for seen in sockets:
            seen["texts"] = [json.loads(text) if text.startswith("{") else text for text in seen["texts"]]
    return observed


def faithful_counts(observed: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Per path, how many sockets saw everything, the close code and reason, cleanly."""
    expected = {AUTH_FAILURE: AUTH_FAILURE_SEEN, CHAT: CHAT_SEEN}
    return {
        path: sum(all(seen[key] == value for key, value in expected[path].items()) for seen in sockets)
        for path, sockets in observed.items()
    }


async def node_burst(*wsreplay_args: str) -> dict[str, int]:
    """Run the Node burst under `wsreplay ARGS -- node ...` (exit 0); the faithful counts."""
    result = await asyncio.to_thread(
        run_wsreplay, *wsreplay_args, "--listen", "127.0.0.1:0", "--", *node_command(), timeout=NODE_TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    return faithful_counts(observed_by_node(result.stdout))


async def node_burst_without_proxy(upstream: ScriptedUpstream) -> dict[str, int]:
    result = await asyncio.to_thread(
        subprocess.run,
        node_command(),
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        env={**os.environ, "WSREPLAY_WS_URL": upstream.ws_url},
    )
    assert result.returncode == 0, result.stderr
    return faithful_counts(observed_by_node(result.stdout))


async def test_thirty_node_websockets_see_every_close_recorded_and_replayed(tmp_path: Path) -> None:
    """An error frame then close 1008 from the server, and a chat the client closes with 1000:
    each of 30 sockets sees every frame, the code and reason, and a clean close."""
    node_command()
    everyone = {AUTH_FAILURE: 30, CHAT: 30}
    cassette = tmp_path / "closes.cassette"
    async with closing_upstream() as upstream:
        assert await node_burst_without_proxy(upstream) == everyone, "the scenario itself is not clean"
        recorded = await node_burst("record", "--upstream", upstream.ws_url, "-o", str(cassette))
    replayed = await node_burst("replay", str(cassette), "--speed", "max")
    assert (recorded, replayed) == (everyone, everyone), f"of 30 sockets, recorded: {recorded}, replayed: {replayed}"


# --- the wire, seen by raw sockets --------------------------------------------------


@asynccontextmanager
async def proxy_to(upstream_url: str, confdir: Path) -> AsyncIterator[int]:
    """wsreplay's mitmproxy (no recorder) in reverse mode to `upstream_url`, bound `CLOSE_TIMEOUT`; its port."""
    settings = ProxySettings(
        mode=f"reverse:{upstream_url}",
        confdir=str(confdir),
        extra_options={CLOSE_TIMEOUT_OPTION: str(CLOSE_TIMEOUT)},
    )
    host = ProxyHost(settings, [])
    _, port = await asyncio.wait_for(host.start(), TIMEOUT)
    try:
        yield port
    finally:
        await asyncio.wait_for(host.stop(), TIMEOUT)


def frame(opcode: int, payload: bytes, *, masked: bool) -> bytes:
    """One final WebSocket frame (payloads under 126 bytes)."""
    assert len(payload) < 126
    if not masked:
        return bytes([0x80 | opcode, len(payload)]) + payload
    mask = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_frame(code: int, reason: str, *, masked: bool) -> bytes:
    return frame(OPCODE_CLOSE, struct.pack("!H", code) + reason.encode(), masked=masked)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next unfragmented frame: (opcode, unmasked payload)."""
    first, second = await asyncio.wait_for(reader.readexactly(2), TIMEOUT)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    mask = await reader.readexactly(4) if second & 0x80 else b""
    payload = await asyncio.wait_for(reader.readexactly(length), TIMEOUT)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


async def frames_until_close(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    """Frames up to and including a close frame (at most 16)."""
    frames: list[tuple[int, bytes]] = []
    while len(frames) < 16:
        frames.append(await read_frame(reader))
        if frames[-1][0] == OPCODE_CLOSE:
            return frames
    raise AssertionError(f"no close frame among {frames}")


async def raw_client(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-made WebSocket client connection through the proxy, upgraded."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def accept_key(request_head: bytes) -> str:
    for line in request_head.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            return base64.b64encode(hashlib.sha1(value.strip().encode() + WEBSOCKET_GUID).digest()).decode()
    raise AssertionError(f"no Sec-WebSocket-Key in {request_head!r}")


async def read_to_eof(reader: asyncio.StreamReader, timeout: float) -> tuple[bytes, float]:
    """Everything until the peer closes (a reset raises); the bytes and the seconds it took."""
    started = time.monotonic()
    rest = await asyncio.wait_for(reader.read(), timeout)
    return rest, time.monotonic() - started


def socket_error(writer: asyncio.StreamWriter) -> int:
    """SO_ERROR: nonzero when the peer reset the connection (even after its FIN)."""
    sock = writer.get_extra_info("socket")
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


class RawUpstream:
    """A hand-made WebSocket server: accepts one upgrade, sends nothing; the test drives the wire."""

    def __init__(self) -> None:
        self.accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawUpstream:
        self.server = await asyncio.start_server(self._upgrade, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _upgrade(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(head).encode() + b"\r\n\r\n"
        )
        await self.accepted.put((reader, writer))

    async def next_connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(self.accepted.get(), TIMEOUT)


async def test_the_client_answers_the_servers_close_before_the_proxy_closes(mitm_confdir: Path) -> None:
    """The wire order on a server's close: the client reads the frames and the close with no
    EOF after them, answers, and only then sees the proxy close, with a FIN, not a reset."""
    async with closing_upstream() as upstream, proxy_to(upstream.http_url, mitm_confdir) as port:
        reader, writer = await raw_client(port, AUTH_FAILURE)
        try:
            frames = await frames_until_close(reader)
            assert [opcode for opcode, _ in frames] == [OPCODE_TEXT, OPCODE_CLOSE]
            assert frames[-1][1] == struct.pack("!H", 1008) + AUTH_FAILED.encode()
            assert not reader.at_eof(), "the proxy closed before the client could answer the close"
            writer.write(close_frame(1008, AUTH_FAILED, masked=True))
            rest, _ = await read_to_eof(reader, TIMEOUT)
            assert rest == b"" and socket_error(writer) == 0
        finally:
            writer.close()
        await asyncio.wait_for(upstream.connections[-1].closed.wait(), TIMEOUT)
    assert upstream.connections[-1].close_code == 1008


async def test_the_upstream_answers_the_clients_close_before_the_proxy_closes(mitm_confdir: Path) -> None:
    """The wire order on a client's close, toward the upstream: the close reaches it with no
    EOF after it; it answers, and only then sees the proxy close, with a FIN, not a reset."""
    async with RawUpstream() as upstream, proxy_to(upstream.url, mitm_confdir) as port:
        async with connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT, ping_interval=None) as client:
            reader, writer = await upstream.next_connection()
            closing = asyncio.create_task(client.close(1000, "done"))
            try:
                assert await read_frame(reader) == (OPCODE_CLOSE, struct.pack("!H", 1000) + b"done")
                assert not reader.at_eof(), "the proxy closed before the upstream could answer the close"
                writer.write(close_frame(1000, "done", masked=False))
                rest, _ = await read_to_eof(reader, TIMEOUT)
                assert rest == b"" and socket_error(writer) == 0
            finally:
                writer.close()
            await asyncio.wait_for(closing, TIMEOUT)
        assert (client.close_code, client.close_reason) == (1000, "done")


async def test_a_client_that_never_answers_the_close_is_closed_after_the_bound(mitm_confdir: Path) -> None:
    async with closing_upstream() as upstream, proxy_to(upstream.http_url, mitm_confdir) as port:
        reader, writer = await raw_client(port, AUTH_FAILURE)
        try:
            assert (await frames_until_close(reader))[-1][0] == OPCODE_CLOSE
            rest, waited = await read_to_eof(reader, CLOSE_TIMEOUT + MARGIN)
        finally:
            writer.close()
    assert rest == b"" and waited < CLOSE_TIMEOUT + MARGIN


async def test_an_upstream_that_never_answers_the_close_is_closed_after_the_bound(mitm_confdir: Path) -> None:
    async with RawUpstream() as upstream, proxy_to(upstream.url, mitm_confdir) as port:
        async with connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT, ping_interval=None) as client:
            reader, writer = await upstream.next_connection()
            closing = asyncio.create_task(client.close(1000, "done"))
            try:
                assert (await read_frame(reader))[0] == OPCODE_CLOSE
                rest, waited = await read_to_eof(reader, CLOSE_TIMEOUT + MARGIN)
            finally:
                writer.close()
            await asyncio.wait_for(closing, TIMEOUT)
    assert rest == b"" and waited < CLOSE_TIMEOUT + MARGIN
    assert (client.close_code, client.close_reason) == (1000, "done")
