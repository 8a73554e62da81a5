"""Tests for wsreplay.replay_server and wsreplay.addons.replayer, on real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import ssl
import struct
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import httpx
import pytest
import websocket as websocket_client
import websockets
from websockets.asyncio.client import ClientConnection, connect

from tests.support.replay_records import (
    AUTH_FAILED,
    HEADER,
    accepted_open,
    client,
    conversations_for,
    http_request,
    json_response,
    server,
    upgrade_request,
)
from tests.support.timing import TIMING_TOLERANCE, loop_lag
from wsreplay.addons.replayer import Replayer
from wsreplay.cassette import Cassette, write_cassette
from wsreplay.jwt import mint_access_token
from wsreplay.mitm import ProxyHost, ProxySettings
from wsreplay.records import (
    HttpExchange,
    HttpResponse,
    Record,
    WebSocketClose,
    WebSocketOpen,
)
from wsreplay.replay import Accepted, ReplayOptions, ReplaySession
from wsreplay.replay_server import CONNECTION_HEADER, ReplayServer

TIMEOUT = 10.0
MAX_FRAMES = 100
STAGING_HOST = "api.staging.wsreplay.test"
UNAUTHORIZED = HttpResponse(
    401,
    "Unauthorized",
    headers=(
        ("date", "Mon, 08 Sep 2025 01:34:41 GMT"),
        ("server", "uvicorn"),
        ("content-type", "application/json"),
        ("x-request-id", "4f1c"),
    ),
    body=b'{"detail":"Invalid E2E bypass key"}',
)
FORBIDDEN = HttpResponse(403, "Forbidden", headers=(("content-type", "text/plain"),), body=b"no token")


AUTH_BODY = {"email": "e2e@example.test", "simulate_oauth": True}


def auth_exchange() -> HttpExchange:
    request = http_request("/auth/e2e/test-auth", "POST", json.dumps(AUTH_BODY).encode())
    return HttpExchange(1, 0.0, request, UNAUTHORIZED)


def staging_records() -> list[Record]:
    """The core scenario: a 401, a refused upgrade, a conversation ending in 1008."""
    return [
        auth_exchange(),
        WebSocketOpen(2, 0.1, upgrade_request("/ws/refused"), FORBIDDEN),
        accepted_open(3, 0.2),
        server(3, 0.21, {"type": "ping", "timestamp": 1757292881.0}),
        client(3, 0.30, {"type": "message", "content": "hello", "thread_id": "test_1757292881"}),
        server(3, 0.31, {"type": "ack", "received_type": "message"}),
        server(3, 0.32, b"\x00\x01\xff", text=False),
        server(3, 0.33, AUTH_FAILED),
        WebSocketClose(3, 0.34, 1008, "Authentication failed", "server"),
    ]


CHAT_MESSAGE = json.dumps({"type": "message", "content": "hello", "thread_id": f"test_{time.time_ns()}"})
EXPECTED_FRAMES: list[str | bytes] = [
    '{"type": "ping", "timestamp": 1757292881.0}',
    '{"type": "ack", "received_type": "message"}',
    b"\x00\x01\xff",
    AUTH_FAILED.decode(),
]


@asynccontextmanager
async def replay_server(records: Sequence[Record], **options: object) -> AsyncIterator[ReplayServer]:
    session = ReplaySession(Cassette(HEADER, list(records)), ReplayOptions(**options))  # type: ignore[arg-type]
    server_ = ReplayServer(session)
    await asyncio.wait_for(server_.start(), TIMEOUT)
    try:
        yield server_
    finally:
        await asyncio.wait_for(server_.close(), TIMEOUT)


def ws_url(server_: ReplayServer, path: str = "/ws") -> str:
    return f"ws://{server_.host}:{server_.port}{path}"


async def raw_http(host: str, port: int, request: bytes) -> bytes:
    """Send one request on a fresh connection and read the response to EOF."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()


async def websockets_chat(connection: ClientConnection) -> tuple[list[str | bytes], websockets.ConnectionClosed]:
    """Receive the greeting, send the chat message, receive until the server closes."""
    frames = [await asyncio.wait_for(connection.recv(), TIMEOUT)]
    await connection.send(CHAT_MESSAGE)
    for _ in range(MAX_FRAMES):
        try:
            frames.append(await asyncio.wait_for(connection.recv(), TIMEOUT))
        except websockets.ConnectionClosed as closed:
            return frames, closed
    raise AssertionError("the server never closed")


# --- direct mode: HTTP ------------------------------------------------------------


async def test_http_401_is_replayed_byte_identical_every_time() -> None:
    body = b'{"simulate_oauth": true, "email": "e2e@example.test"}'
    request = (
        b"POST /auth/e2e/test-auth HTTP/1.1\r\nHost: auth.staging.example\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    async with replay_server([auth_exchange()]) as server_:
        first = await raw_http(server_.host, server_.port, request)
        second = await raw_http(server_.host, server_.port, request)
    assert first == second
    head, _, payload = first.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 401 Unauthorized"
    for name, value in UNAUTHORIZED.headers:
        assert f"{name}: {value}".encode() in lines
    assert payload == UNAUTHORIZED.body
    assert {line.split(b":")[0].lower() for line in lines[1:]} == {
        b"date",
        b"server",
        b"content-type",
        b"x-request-id",
        b"content-length",
        b"connection",
    }


async def test_http_adds_no_headers_the_recording_lacks() -> None:
    exchange = HttpExchange(1, 0.0, http_request("/health"), HttpResponse(200, "OK", body=b"healthy"))
    async with replay_server([exchange]) as server_:
        response = await raw_http(
            server_.host, server_.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    assert response == b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nhealthy"


async def test_any_method_with_a_body_and_unmatched_requests() -> None:
    exchange = HttpExchange(1, 0.0, http_request("/items", "PATCH", b'{"n": 1}'), json_response(200, {"ok": True}))
    async with replay_server([exchange]) as server_, httpx.AsyncClient(base_url=server_.url, timeout=TIMEOUT) as http:
        matched = await http.patch("/items", json={"n": 1})
        unmatched = await http.patch("/items", json={"n": 2})
    assert matched.status_code == 200 and matched.json() == {"ok": True}
    assert unmatched.status_code == 404
    assert unmatched.json()["closest"] == "PATCH /items"
    assert unmatched.json()["differences"] == ["body.n: expected 1, received 2"]


# --- direct mode: WebSockets ------------------------------------------------------


async def test_refused_upgrade_403_with_websockets_and_aiohttp() -> None:
    async with replay_server(staging_records()) as server_:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await asyncio.wait_for(connect(ws_url(server_, "/ws/refused")), TIMEOUT)
        assert refused.value.response.status_code == 403
        assert refused.value.response.body == b"no token"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
                await session.ws_connect(ws_url(server_, "/ws/refused"))
        assert handshake.value.status == 403


async def test_frames_in_order_and_close_1008_with_aiohttp() -> None:
    async with replay_server(staging_records()) as server_:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
            async with session.ws_connect(ws_url(server_)) as ws:
                received: list[str | bytes] = [(await ws.receive(timeout=TIMEOUT)).data]
                await ws.send_str(CHAT_MESSAGE)
                for _ in range(MAX_FRAMES):
                    message = await ws.receive(timeout=TIMEOUT)
                    if message.type is not aiohttp.WSMsgType.TEXT and message.type is not aiohttp.WSMsgType.BINARY:
                        break
                    received.append(message.data)
                assert message.type is aiohttp.WSMsgType.CLOSE
                assert (message.data, message.extra) == (1008, "Authentication failed")
        report = server_.session.report()
    assert received == EXPECTED_FRAMES
    assert report.mismatch_count == 0 and report.websockets_accepted == 1


async def test_frames_in_order_and_close_1008_with_websockets() -> None:
    async with replay_server(staging_records()) as server_:
        async with connect(ws_url(server_), open_timeout=TIMEOUT) as connection:
            frames, closed = await websockets_chat(connection)
    assert frames == EXPECTED_FRAMES
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "Authentication failed")


def websocket_client_chat(url: str) -> tuple[list[str | bytes], int, bytes]:
    """The scenario with websocket-client (blocking, run in a thread)."""
    ws = websocket_client.create_connection(url, timeout=TIMEOUT)
    try:
        frames: list[str | bytes] = [ws.recv()]
        ws.send(CHAT_MESSAGE)
        for _ in range(MAX_FRAMES):
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket_client.ABNF.OPCODE_CLOSE:
                return frames, struct.unpack("!H", data[:2])[0], data[2:]
            frames.append(data.decode() if opcode == websocket_client.ABNF.OPCODE_TEXT else data)
        raise AssertionError("the server never closed")
    finally:
        ws.close()


async def test_frames_in_order_and_close_1008_with_websocket_client() -> None:
    async with replay_server(staging_records()) as server_:
        chat = asyncio.to_thread(websocket_client_chat, ws_url(server_))
        frames, code, reason = await asyncio.wait_for(chat, TIMEOUT)
    assert frames == EXPECTED_FRAMES
    assert (code, reason) == (1008, b"Authentication failed")


async def test_fail_mode_closes_with_4000_naming_the_mismatch() -> None:
    async with replay_server(staging_records(), on_mismatch="fail") as server_:
        async with connect(ws_url(server_), open_timeout=TIMEOUT) as connection:
            await asyncio.wait_for(connection.recv(), TIMEOUT)
            await connection.send(json.dumps({"type": "user_message", "content": "hello"}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(connection.recv(), TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    assert closed.value.rcvd.reason == 'frame 1 mismatch: $.type: expected "message", received "user_message"'


async def test_recorded_abrupt_drop_reaches_the_client_without_a_close_frame() -> None:
    records = [accepted_open(1), server(1, 0.01, "last words"), WebSocketClose(1, 0.02, 1006, "", None)]
    async with replay_server(records, speed=None) as server_:
        async with connect(ws_url(server_), open_timeout=TIMEOUT) as connection:
            assert await asyncio.wait_for(connection.recv(), TIMEOUT) == '"last words"'
            with pytest.raises(websockets.ConnectionClosedError) as closed:
                await asyncio.wait_for(connection.recv(), TIMEOUT)
    assert closed.value.rcvd is None


@pytest.mark.parametrize(("speed", "scale"), [(1.0, 1.0), (2.0, 0.5), (None, 0.0)])
async def test_recorded_gaps_are_kept_at_the_replay_speed(speed: float | None, scale: float) -> None:
    records = [
        accepted_open(1, 0.0),
        server(1, 0.10, 1),
        server(1, 0.25, 2),
        server(1, 0.30, 3),
        client(1, 0.40, "go"),
        server(1, 0.55, 4),
        WebSocketClose(1, 0.60, 1000, "", "server"),
    ]
    async with replay_server(records, speed=speed) as server_, loop_lag() as lags:
        async with connect(ws_url(server_), open_timeout=TIMEOUT) as connection:
            opened = time.monotonic()
            arrivals = []
            for _ in range(3):
                await asyncio.wait_for(connection.recv(), TIMEOUT)
                arrivals.append(time.monotonic() - opened)
            sent = time.monotonic()
            await connection.send('"go"')
            await asyncio.wait_for(connection.recv(), TIMEOUT)
            after_trigger = time.monotonic() - sent
            with pytest.raises(websockets.ConnectionClosedOK):
                await asyncio.wait_for(connection.recv(), TIMEOUT)
    gaps = [arrivals[0], arrivals[1] - arrivals[0], arrivals[2] - arrivals[1], after_trigger]
    tolerance = TIMING_TOLERANCE + max(lags)
    for measured, recorded in zip(gaps, (0.10, 0.15, 0.05, 0.15), strict=True):
        assert abs(measured - recorded * scale) <= tolerance, (gaps, speed, max(lags))


async def test_seven_concurrent_connections_each_play_their_own_conversation() -> None:
    owners = [f"client-{n}" for n in range(7)]
    records = conversations_for(owners)
    records += [WebSocketClose(n, 9.0, 1000, "", "server") for n in range(1, 8)]

    async def converse(url: str, owner: str) -> list[object]:
        async with connect(url, open_timeout=TIMEOUT) as connection:
            greeting = json.loads(await asyncio.wait_for(connection.recv(), TIMEOUT))
            await connection.send(json.dumps({"content": owner}))
            return [greeting["type"], json.loads(await asyncio.wait_for(connection.recv(), TIMEOUT))]

    async with replay_server(records, speed=None) as server_:
        talks = asyncio.gather(*(converse(ws_url(server_), owner) for owner in reversed(owners)))
        results = await asyncio.wait_for(talks, TIMEOUT)
        report = server_.session.report()
    assert results == [["connected", {"for": owner}] for owner in reversed(owners)]
    assert report.websockets_accepted == 7 and report.unused_connections == () and report.mismatch_count == 0


async def test_subprotocol_with_a_fresh_token_and_deflate_only_when_recorded() -> None:
    recorded = f"jwt.{mint_access_token('e2e@example.test', ['read'], 'secret')}"
    request = upgrade_request(subprotocols=["jwt-auth", recorded])
    records = [
        accepted_open(1, 0.0, request, sec_websocket_protocol=recorded, sec_websocket_extensions="permessage-deflate"),
        accepted_open(2, 1.0, request, sec_websocket_protocol=recorded),
    ]
    async with replay_server(records) as server_:
        fresh = f"jwt.{mint_access_token('e2e@example.test', ['read'], 'secret')}"
        for deflate in (True, False):
            async with connect(ws_url(server_), subprotocols=["jwt-auth", fresh], open_timeout=TIMEOUT) as connection:
                assert connection.subprotocol == fresh
                assert bool(connection.protocol.extensions) is deflate


async def test_close_ends_live_connections_with_1001() -> None:
    records = [accepted_open(1), server(1, 30.0, "too late")]
    async with replay_server(records) as server_:
        connection = await connect(ws_url(server_), open_timeout=TIMEOUT)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(connection.recv(), TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


async def test_registered_connection_is_played_for_its_token_only() -> None:
    session = ReplaySession(Cassette(HEADER, staging_records()), ReplayOptions(speed=None))
    accepted = session.open_websocket(upgrade_request())
    assert isinstance(accepted, Accepted)
    server_ = ReplayServer(None)
    await asyncio.wait_for(server_.start(), TIMEOUT)
    try:
        token = server_.register(accepted)
        with pytest.raises(websockets.InvalidStatus) as unknown:
            await connect(ws_url(server_), additional_headers={CONNECTION_HEADER: "nope"}, open_timeout=TIMEOUT)
        assert unknown.value.response.status_code == 404
        async with connect(ws_url(server_), additional_headers={CONNECTION_HEADER: token}, open_timeout=TIMEOUT) as ws:
            frames, closed = await websockets_chat(ws)
    finally:
        await asyncio.wait_for(server_.close(), TIMEOUT)
    assert frames == EXPECTED_FRAMES and closed.rcvd is not None and closed.rcvd.code == 1008


# --- behind mitmproxy -------------------------------------------------------------


@asynccontextmanager
async def replaying_proxy(
    records: Sequence[Record], mode: str, confdir: Path, tmp_path: Path
) -> AsyncIterator[tuple[ProxyHost, int, Replayer]]:
    cassette = tmp_path / "replay.cassette"
    write_cassette(cassette, Cassette(HEADER, list(records)))
    replayer = Replayer()
    settings = ProxySettings(
        mode=mode,
        connection_strategy="lazy",
        confdir=str(confdir),
        extra_options={"wsreplay_cassette": str(cassette), "wsreplay_speed": "max"},
    )
    host = ProxyHost(settings, [replayer])
    _, port = await asyncio.wait_for(host.start(), TIMEOUT)
    try:
        yield host, port, replayer
    finally:
        await asyncio.wait_for(host.stop(), TIMEOUT)


async def test_reverse_proxy_replays_the_core_scenario(mitm_confdir: Path, tmp_path: Path) -> None:
    async with replaying_proxy(staging_records(), f"reverse:https://{STAGING_HOST}", mitm_confdir, tmp_path) as (
        _,
        port,
        replayer,
    ):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as http:
            response = await http.post("/auth/e2e/test-auth", json=AUTH_BODY)
        with pytest.raises(websockets.InvalidStatus) as refused:
            await connect(f"ws://127.0.0.1:{port}/ws/refused", open_timeout=TIMEOUT)
        async with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT) as connection:
            frames, closed = await websockets_chat(connection)
    assert response.status_code == 401 and response.content == UNAUTHORIZED.body
    assert response.headers["x-request-id"] == "4f1c"
    assert refused.value.response.status_code == 403 and refused.value.response.body == b"no token"
    assert frames == EXPECTED_FRAMES
    assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (1008, "Authentication failed")
    report = replayer.report()
    assert report is not None and report.clean, report.format()


async def test_a_clients_close_comes_back_as_it_sent_it_directly_and_through_the_proxy(
    mitm_confdir: Path, tmp_path: Path
) -> None:
    async def close_after_greeting(url: str) -> tuple[int, str]:
        async with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as connection:
            await asyncio.wait_for(connection.recv(), TIMEOUT)
            await connection.close(4001, "bye for now")
        assert connection.close_code is not None
        return connection.close_code, connection.close_reason or ""

    async with replay_server(staging_records()) as direct:
        directly = await close_after_greeting(ws_url(direct))
    async with replaying_proxy(staging_records(), f"reverse:https://{STAGING_HOST}", mitm_confdir, tmp_path) as (
        _,
        port,
        _replayer,
    ):
        proxied = await close_after_greeting(f"ws://127.0.0.1:{port}/ws")
    assert directly == proxied == (4001, "bye for now")


async def test_regular_proxy_intercepts_hard_coded_staging_urls(mitm_confdir: Path, tmp_path: Path) -> None:
    async with replaying_proxy(staging_records(), "regular", mitm_confdir, tmp_path) as (host, port, replayer):
        trust = ssl.create_default_context(cafile=str(host.ca_cert_path))
        proxy_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(proxy=proxy_url, verify=trust, timeout=TIMEOUT) as http:
            response = await http.post(f"https://{STAGING_HOST}/auth/e2e/test-auth", json=AUTH_BODY)
        url = f"wss://{STAGING_HOST}/ws"
        async with connect(url, proxy=proxy_url, ssl=trust, open_timeout=TIMEOUT) as connection:
            frames, closed = await websockets_chat(connection)
    assert response.status_code == 401 and response.content == UNAUTHORIZED.body
    assert frames == EXPECTED_FRAMES
    assert closed.rcvd is not None and closed.rcvd.code == 1008
    report = replayer.report()
    assert report is not None and report.unmatched_count == 0 and report.mismatch_count == 0
