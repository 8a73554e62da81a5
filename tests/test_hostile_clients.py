"""The replay server under clients that misbehave.

A small cassette (a health check and one chat conversation) is replayed by the real
`wsreplay replay --direct` command, shared by the tests of this module, and hit with
malformed frames from raw sockets, an oversized message, half-open connections and a
flood of upgrades. Each misbehaving client must get a clear error or close, and the
server must go on serving: a client connected since before the trouble, and clients
connecting after it, get exactly the recorded conversation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode

from tests.support.cli import RunningWsreplay, run_wsreplay
from wsreplay.cassette import MAX_RECORD_BYTES, Cassette, write_cassette
from wsreplay.records import (
    CassetteHeader,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    Record,
    WebSocketClose,
    WebSocketFrame,
    WebSocketOpen,
)
from wsreplay.replay import ReplayOptions, ReplaySession
from wsreplay.replay_server import CLOSE_TIMEOUT, ReplayServer

TIMEOUT = 10.0
PROMPT = 3.0
"""Seconds within which a healthy server answers something it can answer at once."""
MAX_FRAMES = 20
OP_TEXT, OP_BINARY, OP_CLOSE = 0x1, 0x2, 0x8

WELCOME = {"type": "welcome", "server": "staging"}
ACK = {"type": "ack", "received_type": "message"}
REPLY = {"type": "agent_completed", "content": "It is sunny in Paris."}
CLOSED = ("closed", 1000, "done")
CONVERSATION = [WELCOME, ACK, REPLY, CLOSED]
HEALTH = b'{"status": "healthy"}'
AUTH_ERROR = {"type": "error_message", "error_code": "AUTH_REQUIRED", "error_message": "Authentication failed"}
AUTH_FAILED = b"Authentication failed"


def hello() -> dict[str, Any]:
    """The client's chat message, with the fresh id a new run would carry."""
    return {"type": "message", "content": "What is the weather in Paris?", "message_id": str(uuid.uuid4())}


def chat_records() -> list[Record]:
    """A health check, the chat at /chat and, at /auth-failed, an error frame and a close 1008."""
    headers = (
        ("Host", "127.0.0.1:8765"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    )
    upgrade = HttpRequest("GET", "http", "127.0.0.1", 8765, "/chat", headers=headers)
    refused_auth = HttpRequest("GET", "http", "127.0.0.1", 8765, "/auth-failed", headers=headers)
    switching = HttpResponse(
        101,
        "Switching Protocols",
        headers=(
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ),
    )
    health = HttpRequest("GET", "http", "127.0.0.1", 8765, "/health", headers=(("Host", "127.0.0.1:8765"),))
    healthy = HttpResponse(200, "OK", headers=(("Content-Type", "application/json"),), body=HEALTH)

    def frame(time_: float, from_client: bool, document: dict[str, Any], record_id: int = 2) -> WebSocketFrame:
        return WebSocketFrame(record_id, time_, from_client, True, json.dumps(document).encode())

    return [
        HttpExchange(1, 0.0, health, healthy, 0.001),
        WebSocketOpen(2, 0.1, upgrade, switching),
        frame(0.11, False, WELCOME),
        frame(0.2, True, hello()),
        frame(0.21, False, ACK),
        frame(0.22, False, REPLY),
        WebSocketClose(2, 0.23, 1000, "done", "server"),
        WebSocketOpen(3, 0.3, refused_auth, switching),
        frame(0.31, False, AUTH_ERROR, record_id=3),
        WebSocketClose(3, 0.32, 1008, AUTH_FAILED.decode(), "server"),
    ]


HEADER = CassetteHeader(created=1_757_292_800.0, wsreplay_version="test", metadata={"test": "hostile clients"})

# --- the shared replay server ---------------------------------------------------------


class ReplayProcess(RunningWsreplay):
    """`wsreplay replay` whose log lines can be counted and awaited."""

    def count(self, pattern: str) -> int:
        with self._changed:
            return sum(1 for line in self.lines if re.search(pattern, line))

    def wait_for_count(self, pattern: str, count: int, timeout: float = 30) -> None:
        """Block until `pattern` has matched `count` stderr lines (log lines are events)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(1 for line in self.lines if re.search(pattern, line)) < count:
                left = deadline - time.monotonic()
                if left <= 0 or self._stderr_done or not self._changed.wait(left):
                    raise AssertionError(f"fewer than {count} lines matching {pattern!r}:\n{self.output[-3000:]}")


@dataclass
class Replay:
    process: ReplayProcess
    host: str
    port: int


@pytest.fixture(scope="module")
def cassette(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "chat.cassette"
    write_cassette(path, Cassette(HEADER, chat_records()))
    return path


def start_replay(cassette: Path, *args: str) -> Replay:
    """`wsreplay replay CASSETTE ARGS --listen :0` (no host: the default one)."""
    process = ReplayProcess("replay", str(cassette), *args, "--listen", ":0")
    try:
        found = process.wait_for_line(r" on (?P<host>[\d.]+):(?P<port>\d+)")
    except BaseException:
        process.kill()
        raise
    return Replay(process, found["host"], int(found["port"]))


@pytest.fixture(scope="module")
def direct(cassette: Path) -> Iterator[Replay]:
    """One `wsreplay replay --direct` for the whole module: it must survive every test."""
    replay = start_replay(cassette, "--direct", "--speed", "max", "--on-mismatch", "fail")
    yield replay
    assert replay.process.stop() == 0, replay.process.output


@pytest.fixture(scope="module")
def proxied(cassette: Path) -> Iterator[Replay]:
    """One `wsreplay replay` (mitmproxy in front of the replay server) for the whole module."""
    replay = start_replay(cassette, "--speed", "max", "--on-mismatch", "fail")
    yield replay
    assert replay.process.stop() == 0, replay.process.output


@pytest.fixture(params=["direct", "proxied"])
def served(request: pytest.FixtureRequest) -> Replay:
    """Each way of replaying: clients must not be able to tell them apart."""
    return request.getfixturevalue(request.param)


# --- well-behaved clients ---------------------------------------------------------------


async def until_closed(ws: ClientConnection, timeout: float = TIMEOUT) -> list[Any]:
    """Every frame (as JSON) up to the close, which ends the list as ("closed", code, reason)."""
    seen: list[Any] = []
    try:
        for _ in range(MAX_FRAMES):
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    except websockets.ConnectionClosed as exc:
        seen.append(("closed", exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else ("closed", None, "no close frame"))
    return seen


def open_chat(port: int, **options: Any) -> Any:
    return connect(
        f"ws://127.0.0.1:{port}/chat", open_timeout=TIMEOUT, close_timeout=TIMEOUT, ping_interval=None, **options
    )


async def chat(port: int) -> list[Any]:
    """The whole conversation as a well-behaved client has it."""
    async with open_chat(port) as ws:
        seen = [json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))]
        await ws.send(json.dumps(hello()))
        return seen + await until_closed(ws)


async def health(port: int) -> tuple[int, bytes]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        async with session.get(f"http://127.0.0.1:{port}/health") as response:
            return response.status, await response.read()


class EarlyClient:
    """A client connected (and greeted) before the trouble starts, finishing its chat after it."""

    def __init__(self, ws: ClientConnection, greeting: Any) -> None:
        self.ws = ws
        self.seen = [greeting]

    async def finish(self) -> list[Any]:
        await self.ws.send(json.dumps(hello()))
        return self.seen + await until_closed(self.ws)


@asynccontextmanager
async def early_client(port: int) -> AsyncIterator[EarlyClient]:
    async with open_chat(port) as ws:
        yield EarlyClient(ws, json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))


async def assert_still_serving(port: int, early: EarlyClient) -> None:
    """A new client, a plain request and the client connected throughout are all served."""
    assert await chat(port) == CONVERSATION
    assert await health(port) == (200, HEALTH)
    assert await early.finish() == CONVERSATION


# --- raw WebSocket ------------------------------------------------------------------------


def upgrade_request(path: str = "/chat") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def raw_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)


async def raw_upgrade(port: int, path: str = "/chat") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection upgraded to a WebSocket by hand (the 101 read, nothing else)."""
    reader, writer = await raw_connection(port)
    writer.write(upgrade_request(path))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return reader, writer


def client_frame(opcode: int, payload: bytes, *, masked: bool = True, rsv: int = 0) -> bytes:
    """One final frame as a client sends it."""
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    head = bytes([0x80 | rsv | opcode])
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each whole unmasked frame in `data`."""
    frames = []
    position = 0
    while position + 2 <= len(data):
        opcode, size = data[position] & 0x0F, data[position + 1] & 0x7F
        position += 2
        if size == 126:
            size, position = struct.unpack("!H", data[position : position + 2])[0], position + 2
        elif size == 127:
            size, position = struct.unpack("!Q", data[position : position + 8])[0], position + 8
        if position + size > len(data):
            break
        frames.append((opcode, data[position : position + size]))
        position += size
    return frames


def described(frames: list[tuple[int, bytes]]) -> list[Any]:
    """Text frames as JSON, the close frame as ("close", code)."""
    out: list[Any] = []
    for opcode, payload in frames:
        if opcode == OP_CLOSE:
            out.append(("close", struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None))
        elif opcode == OP_TEXT:
            out.append(json.loads(payload))
        else:
            out.append((opcode, payload[:32]))
    return out


async def read_to_eof(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (AssertionError if it does not)."""
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    except TimeoutError:
        raise AssertionError(f"the server neither closed nor answered within {timeout}s") from None


def abort(writer: asyncio.StreamWriter) -> None:
    """Vanish: reset the TCP connection, no close frame."""
    writer.transport.abort()


# --- malformed frames ---------------------------------------------------------------------

INCOMPLETE = r"client closed \(.*\) after 0 of 1 recorded client frames"
"""The replay server's line for a connection that ended before the client's first message."""

HELLO_BYTES = json.dumps(hello()).encode()
MALFORMED = [
    pytest.param(b"this is not a WebSocket frame\r\n\r\n", 1002, id="garbage"),
    pytest.param(client_frame(0x3, b"data"), 1002, id="reserved-opcode-3"),
    pytest.param(client_frame(0xB, b""), 1002, id="reserved-control-opcode-11"),
    pytest.param(client_frame(OP_TEXT, HELLO_BYTES, rsv=0x40), 1002, id="reserved-bit-without-extension"),
    pytest.param(client_frame(OP_TEXT, b"\xff\xfe\xfd"), 1007, id="text-not-utf8"),
    pytest.param(
        client_frame(OP_TEXT, HELLO_BYTES, masked=False),
        1002,
        id="unmasked",
    ),
]


@pytest.mark.parametrize(("malformed", "code"), MALFORMED)
async def test_malformed_frame_gets_a_protocol_error_close(direct: Replay, malformed: bytes, code: int) -> None:
    ended_before = await asyncio.to_thread(direct.process.count, INCOMPLETE)
    async with early_client(direct.port) as early:
        reader, writer = await raw_upgrade(direct.port)
        try:
            writer.write(malformed)
            answer = described(server_frames(await read_to_eof(reader, PROMPT)))
        finally:
            abort(writer)
        assert answer == [WELCOME, ("close", code)], "expected the greeting, then a close with the error's code"
        await asyncio.to_thread(direct.process.wait_for_count, INCOMPLETE, ended_before + 1)
        await assert_still_serving(direct.port, early)


async def test_a_bad_upgrade_gets_400_and_the_connection_goes_on_serving_http(direct: Replay) -> None:
    """An upgrade without its key is refused; the same keep-alive connection then asks for /health."""
    reader, writer = await raw_connection(direct.port)
    try:
        writer.write(upgrade_request().replace(b"Sec-WebSocket-Key", b"X-Not-The-Key"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 400 "), head
        length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])
        await asyncio.wait_for(reader.readexactly(length), TIMEOUT)
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])
        assert await asyncio.wait_for(reader.readexactly(length), TIMEOUT) == HEALTH
    finally:
        abort(writer)


# --- a strict server, directly and through the proxy ------------------------------------------

OP_PING, OP_PONG = 0x9, 0xA
INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]
VALID_CLOSES = [(1000, b""), (1001, b"going"), (3000, b"registered"), (4999, "privé".encode())]
SURROGATE = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
"""Valid UTF-8 (κόσμε), then the encoding of a UTF-16 surrogate, which UTF-8 forbids."""


def masked(opcode: Opcode, payload: bytes, *, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin).serialize(mask=True)


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return masked(Opcode.CLOSE, struct.pack("!H", code) + reason)


async def next_frame(reader: asyncio.StreamReader, timeout: float = TIMEOUT) -> tuple[int, bytes]:
    """(opcode, payload) of the next frame from the server."""

    async def read() -> tuple[int, bytes]:
        first, second = await reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await reader.readexactly(8))[0]
        return first & 0x0F, await reader.readexactly(size)

    return await asyncio.wait_for(read(), timeout)


async def greeted(port: int, path: str = "/chat") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw WebSocket to `path` that has read the 101 and, for /chat, the greeting."""
    reader, writer = await raw_upgrade(port, path)
    if path == "/chat":
        assert described([await next_frame(reader)]) == [WELCOME]
    return reader, writer


async def answer_after_greeting(port: int, *sent: bytes) -> list[tuple[int, bytes]]:
    """Send `sent` after the greeting; the frames the server sends up to its close frame."""
    reader, writer = await greeted(port)
    try:
        writer.write(b"".join(sent))
        answer = [await next_frame(reader)]
        while answer[-1][0] != OP_CLOSE and len(answer) < MAX_FRAMES:
            answer.append(await next_frame(reader))
        return answer
    finally:
        abort(writer)


async def ending_after_greeting(port: int, *sent: bytes) -> list[tuple[int, bytes]]:
    """Send `sent` (ending with the client's close) after the greeting; the frames the server sends
    until it ends the connection, which must be a FIN (a reset raises here)."""
    reader, writer = await greeted(port)
    try:
        writer.write(b"".join(sent))
        return server_frames(await read_to_eof(reader, PROMPT))
    finally:
        abort(writer)


@pytest.mark.parametrize(("malformed", "code"), MALFORMED)
async def test_malformed_frames_get_the_same_close_directly_and_through_the_proxy(
    served: Replay, malformed: bytes, code: int
) -> None:
    assert described(await answer_after_greeting(served.port, malformed)) == [("close", code)]


async def test_invalid_utf8_in_a_fragment_is_failed_with_1007_before_the_message_ends(served: Replay) -> None:
    """Autobahn 6.4.1-6.4.4: the message never ends; the close must come when the bad bytes do."""
    start = masked(Opcode.TEXT, b'{"type": "message", "content": "', fin=False)
    answer = await answer_after_greeting(served.port, start, masked(Opcode.CONT, SURROGATE, fin=False))
    assert described(answer) == [("close", 1007)]


async def test_invalid_utf8_in_an_unfinished_frame_is_failed_with_1007_at_once(served: Replay) -> None:
    """Autobahn 6.4.3-6.4.4: the frame's header and its payload up to the invalid bytes, the rest
    never sent; the close must come when the bad bytes do, not when the frame would end."""
    frame = masked(Opcode.TEXT, b'{"type": "message", "content": "' + SURROGATE + b'"}')
    assert described(await answer_after_greeting(served.port, frame[:-2])) == [("close", 1007)]


async def test_a_character_split_across_fragments_is_valid(served: Replay) -> None:
    """The first fragment ends inside "κ": not an error, the message is judged whole (and differs: 4000)."""
    message = json.dumps({**hello(), "content": "κόσμε"}, ensure_ascii=False).encode()
    cut = message.index("κ".encode()) + 1
    fragments = masked(Opcode.TEXT, message[:cut], fin=False), masked(Opcode.CONT, message[cut:])
    assert described(await answer_after_greeting(served.port, *fragments)) == [("close", 4000)]


async def test_a_fragmented_message_is_played_like_a_whole_one(served: Replay) -> None:
    message = json.dumps(hello()).encode()
    fragments = (
        masked(Opcode.TEXT, message[:10], fin=False),
        masked(Opcode.PING, b"between fragments"),
        masked(Opcode.CONT, message[10:20], fin=False),
        masked(Opcode.CONT, message[20:]),
    )
    answer = await answer_after_greeting(served.port, *fragments)
    assert described(answer) == [(OP_PONG, b"between fragments"), ACK, REPLY, ("close", 1000)]


@pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
async def test_an_invalid_close_code_is_answered_with_1002_never_echoed(served: Replay, code: int) -> None:
    """Autobahn 7.9.x and 7.13.1-2."""
    answer = await answer_after_greeting(served.port, close_frame(code, b"bye"))
    assert described(answer) == [("close", 1002)]


async def test_a_close_reason_that_is_not_utf8_is_answered_with_1007(served: Replay) -> None:
    answer = await answer_after_greeting(served.port, close_frame(1000, b"\xff\xfe"))
    assert described(answer) == [("close", 1007)]


@pytest.mark.parametrize(("code", "reason"), VALID_CLOSES)
async def test_a_valid_close_is_echoed_then_the_server_closes_tcp(served: Replay, code: int, reason: bytes) -> None:
    """Autobahn 7.3.1 and 7.7.x: the client's close comes back as sent, then a clean end of stream."""
    answer = await ending_after_greeting(served.port, close_frame(code, reason))
    assert answer == [(OP_CLOSE, struct.pack("!H", code) + reason)]


async def test_a_close_between_fragments_is_a_normal_close(served: Replay) -> None:
    """Autobahn 7.1.5: a text fragment, the close, then the message's last fragment; the close is
    echoed and the unfinished message dropped."""
    sent = (
        masked(Opcode.TEXT, b"fragment1", fin=False),
        close_frame(1000),
        masked(Opcode.CONT, b"fragment2"),
    )
    assert await ending_after_greeting(served.port, *sent) == [(OP_CLOSE, struct.pack("!H", 1000))]


async def test_a_client_that_breaks_the_protocol_is_dropped_without_waiting_for_its_close(served: Replay) -> None:
    """Autobahn 6.4.x, 7.5.1, 7.9.x (RFC 6455 7.1.7): after invalid UTF-8 the server closes with
    1007 and ends the connection at once; the close the client sends back is not waited for."""
    reader, writer = await greeted(served.port)
    try:
        writer.write(masked(Opcode.TEXT, SURROGATE))
        assert described([await next_frame(reader)]) == [("close", 1007)]
        started = time.monotonic()
        writer.write(close_frame(1007))
        with contextlib.suppress(ConnectionResetError):
            assert await read_to_eof(reader, CLOSE_TIMEOUT + PROMPT) == b""
        waited = time.monotonic() - started
    finally:
        abort(writer)
    assert waited < PROMPT


async def test_an_empty_close_is_echoed_empty(served: Replay) -> None:
    assert await ending_after_greeting(served.port, masked(Opcode.CLOSE, b"")) == [(OP_CLOSE, b"")]


async def test_a_recorded_close_waits_for_the_clients_close_before_ending_tcp(served: Replay) -> None:
    """The recorded error frame and close 1008; the connection stays open (a ping is answered)
    until the client answers the close, then ends with a FIN (a reset would raise here)."""
    reader, writer = await greeted(served.port, "/auth-failed")
    try:
        assert described([await next_frame(reader)]) == [AUTH_ERROR]
        assert await next_frame(reader) == (OP_CLOSE, struct.pack("!H", 1008) + AUTH_FAILED)
        writer.write(masked(Opcode.PING, b"still there?"))
        assert await next_frame(reader) == (OP_PONG, b"still there?")
        writer.write(close_frame(1008, AUTH_FAILED))
        assert await read_to_eof(reader, PROMPT) == b""
    finally:
        abort(writer)


async def test_a_client_that_never_answers_the_close_is_cut_within_the_bound(served: Replay) -> None:
    reader, writer = await greeted(served.port, "/auth-failed")
    try:
        assert described([await next_frame(reader), await next_frame(reader)]) == [AUTH_ERROR, ("close", 1008)]
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            assert await read_to_eof(reader, CLOSE_TIMEOUT + PROMPT) == b""
        waited = time.monotonic() - started
    finally:
        abort(writer)
    assert waited < CLOSE_TIMEOUT + PROMPT


# --- oversized message ----------------------------------------------------------------------

TWENTY_MB = 20 * 1024 * 1024
TEN_MB = 10 * 1024 * 1024
BIG_TIMEOUT = 60.0
HUGE_TIMEOUT = 180.0
"""Seconds for mitmproxy to collect and relay a 64 MiB message."""


def big_message(filler: str, size: int = TWENTY_MB) -> str:
    """A chat message whose content is `size` characters of `filler`."""
    head = json.dumps({"type": "message", "message_id": str(uuid.uuid4()), "content": ""})[:-2]
    return head + (filler * (size // len(filler) + 1))[:size] + '"}'


async def send_big(port: int, message: str) -> list[Any]:
    async with open_chat(port, max_size=None) as ws:
        seen = [json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))]
        await asyncio.wait_for(ws.send(message), TIMEOUT)
        try:
            return seen + await until_closed(ws, BIG_TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"no answer to the big message within {BIG_TIMEOUT} s") from None


async def test_twenty_mb_text_frame_gets_a_clear_close_and_others_are_served(direct: Replay) -> None:
    """Digits: the filler the replay's matching scans fastest (see the stall test for prose)."""
    async with early_client(direct.port) as early:
        answer = await send_big(direct.port, big_message("0123456789"))
        assert answer[0] == WELCOME and len(answer) == 2, answer
        _, code, reason = answer[1]
        if code == 4000:  # --on-mismatch fail: the message is unlike the recording
            assert reason.startswith("frame 1 mismatch: $.content: expected"), reason
        else:
            assert code == 1009, f"expected 1009 (too big) or 4000 (mismatch), got {code} {reason!r}"
        await assert_still_serving(direct.port, early)


async def test_a_10_mb_text_frame_does_not_stall_the_other_clients(direct: Replay) -> None:
    """Prose this time; a health check is probed in a loop until the big message is answered."""
    big = asyncio.create_task(send_big(direct.port, big_message("lorem ipsum dolor sit amet ", TEN_MB)))
    latencies = []
    deadline = time.monotonic() + BIG_TIMEOUT
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=BIG_TIMEOUT)) as session:
            for _ in range(100_000):
                if big.done() or time.monotonic() > deadline:
                    break
                started = time.monotonic()
                async with session.get(f"http://127.0.0.1:{direct.port}/health") as response:
                    assert (response.status, await response.read()) == (200, HEALTH)
                latencies.append(time.monotonic() - started)
        answer = await asyncio.wait_for(big, BIG_TIMEOUT)
    finally:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(big, BIG_TIMEOUT)  # leave the shared server idle for the next test
    assert answer[-1][:2] == ("closed", 4000)
    assert max(latencies) < 1.0, f"a health check waited {max(latencies):.1f}s while the server read a 10 MB frame"


async def test_a_message_over_64_mib_is_closed_with_1009_and_others_are_served(served: Replay) -> None:
    """A whole binary message of 64 MiB and 1 byte, sent in full. Through the proxy, mitmproxy
    collects it (half a minute: it grows the frame's bytes chunk by chunk), relays it to the
    replay server and relays its close."""
    async with early_client(served.port) as early:
        reader, writer = await greeted(served.port)
        try:
            writer.write(masked(Opcode.BINARY, bytes(MAX_RECORD_BYTES + 1)))
            assert described([await next_frame(reader, HUGE_TIMEOUT)]) == [("close", 1009)]
        finally:
            abort(writer)
        await assert_still_serving(served.port, early)


# --- half-open connections and floods --------------------------------------------------------


async def test_half_open_connections_do_not_block_anyone(direct: Replay) -> None:
    """Clients that connect and never send the upgrade (or only half of it), one that upgrades and
    then neither reads nor writes, and two that upgrade and vanish without a close frame."""
    vanished_before = await asyncio.to_thread(direct.process.count, INCOMPLETE)
    held: list[asyncio.StreamWriter] = []
    try:
        async with early_client(direct.port) as early:
            for _ in range(10):
                held.append((await raw_connection(direct.port))[1])
            for _ in range(10):
                _, writer = await raw_connection(direct.port)
                writer.write(upgrade_request()[:40])
                held.append(writer)
            held.append((await raw_upgrade(direct.port))[1])
            _, fin = await raw_upgrade(direct.port)
            fin.close()
            _, rst = await raw_upgrade(direct.port)
            abort(rst)
            await asyncio.to_thread(direct.process.wait_for_count, INCOMPLETE, vanished_before + 2)
            await assert_still_serving(direct.port, early)
    finally:
        for writer in held:
            abort(writer)
    # the silent upgraded client, once it drops, is noticed too
    await asyncio.to_thread(direct.process.wait_for_count, INCOMPLETE, vanished_before + 3)


async def test_a_flood_of_200_upgrades_that_vanish(direct: Replay) -> None:
    """200 connect/disconnects, 50 at a time: half drop before the 101, half just after it."""
    vanished_before = await asyncio.to_thread(direct.process.count, INCOMPLETE)

    async def hit_and_run(number: int) -> bool:
        reader, writer = await raw_connection(direct.port)
        writer.write(upgrade_request())
        upgraded = False
        if number % 2:
            upgraded = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)).startswith(b"HTTP/1.1 101")
        if number % 4 < 2:
            abort(writer)
        else:
            writer.close()
        return upgraded

    async with early_client(direct.port) as early:
        upgraded = 0
        for batch in range(4):
            results = await asyncio.gather(*(hit_and_run(batch * 50 + number) for number in range(50)))
            upgraded += sum(results)
        assert upgraded == 100
        # each connection that got its 101 is ended and accounted for by the server
        await asyncio.to_thread(direct.process.wait_for_count, INCOMPLETE, vanished_before + upgraded)
        await assert_still_serving(direct.port, early)


async def test_connections_that_never_finish_a_request_are_closed_after_the_idle_timeout() -> None:
    """ReplayServer in-process with a short idle timeout: a silent connection and one that sent half
    an upgrade are closed; a WebSocket that stays quiet as long is not."""
    server = ReplayServer(ReplaySession(Cassette(HEADER, chat_records()), ReplayOptions(speed=None)), idle_timeout=0.5)
    _, port = await asyncio.wait_for(server.start(), TIMEOUT)
    try:
        async with open_chat(port) as quiet:
            idle = await raw_connection(port)
            partial = await raw_connection(port)
            partial[1].write(upgrade_request()[:40])
            try:
                assert await read_to_eof(idle[0], PROMPT) == b""
                assert await read_to_eof(partial[0], PROMPT) == b""
            finally:
                abort(idle[1])
                abort(partial[1])
            await quiet.send(json.dumps(hello()))
            assert await until_closed(quiet) == [WELCOME, ACK, REPLY, CLOSED]
    finally:
        await asyncio.wait_for(server.close(), TIMEOUT)


async def test_stopping_the_server_closes_half_open_connections() -> None:
    """ReplayServer in-process: close() ends idle, half-sent and silent upgraded connections."""
    server = ReplayServer(ReplaySession(Cassette(HEADER, chat_records()), ReplayOptions(speed=None)))
    _, port = await asyncio.wait_for(server.start(), TIMEOUT)
    try:
        idle = await raw_connection(port)
        partial = await raw_connection(port)
        partial[1].write(upgrade_request()[:40])
        silent = await raw_upgrade(port)
    except BaseException:
        await asyncio.wait_for(server.close(), TIMEOUT)
        raise
    started = time.monotonic()
    await asyncio.wait_for(server.close(), TIMEOUT)
    took = time.monotonic() - started
    try:
        assert await read_to_eof(idle[0], PROMPT) == b""
        assert await read_to_eof(partial[0], PROMPT) == b""
        assert described(server_frames(await read_to_eof(silent[0], PROMPT))) == [WELCOME, ("close", 1001)]
    finally:
        for _, writer in (idle, partial, silent):
            abort(writer)
    assert took < PROMPT, f"close() took {took:.1f}s"


# --- binding ------------------------------------------------------------------------------------


def non_loopback_addresses() -> list[str]:
    """This machine's IPv4 and global IPv6 addresses other than loopback."""
    addresses = []
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                packed = fcntl.ioctl(probe.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:
                continue
        addresses.append(socket.inet_ntoa(packed[20:24]))
    with contextlib.suppress(OSError), open("/proc/net/if_inet6") as table:
        for line in table:
            addresses.append(str(ipaddress.IPv6Address(bytes.fromhex(line.split()[0]))))
    return [
        address
        for address in addresses
        if not (ipaddress.ip_address(address).is_loopback or ipaddress.ip_address(address).is_link_local)
    ]


async def assert_loopback_only(replay: Replay) -> None:
    assert replay.host == "127.0.0.1", replay.process.output
    assert await health(replay.port) == (200, HEALTH)
    addresses = non_loopback_addresses()
    if not addresses:
        pytest.skip("this machine has only loopback addresses")
    for address in addresses:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(asyncio.open_connection(address, replay.port), PROMPT)


def test_replay_listens_on_127_0_0_1_by_default() -> None:
    help_text = run_wsreplay("replay", "--help").stdout
    assert "127.0.0.1:8080" in " ".join(help_text.split()), help_text


async def test_direct_replay_binds_loopback_only(direct: Replay) -> None:
    await assert_loopback_only(direct)


async def test_proxy_replay_binds_loopback_only(cassette: Path) -> None:
    replay = await asyncio.to_thread(start_replay, cassette)
    try:
        await assert_loopback_only(replay)
    finally:
        assert await asyncio.to_thread(replay.process.stop) == 0, replay.process.output
