"""The staging scenario, written three times with client libraries that are not wsreplay's.

Each run mints fresh ids, timestamps and tokens, as real staging tests do, and returns
a transcript of everything the client observed, so two runs (live and replayed) can be
compared for equality.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import websocket as websocket_client
import websockets
from websockets.asyncio.client import connect

from wsreplay.jwt import mint_access_token

Transcript = list[tuple[Any, ...]]
BAD_BYPASS_KEY = "definitely-not-the-key"
BINARY_PROBE = bytes(range(256))
CLOSE_OK = 1000
TIMEOUT = 10.0
MAX_FRAMES = 64


def fresh_token() -> str:
    return mint_access_token(f"e2e-{uuid.uuid4().hex[:8]}@example.test", ["read", "write"], uuid.uuid4().hex)


def chat_message() -> str:
    return json.dumps(
        {
            "type": "message",
            "content": "What is the weather in Paris?",
            "thread_id": f"test_{time.time_ns()}",
            "run_id": str(uuid.uuid4()),
            "timestamp": time.time(),
        }
    )


def auth_body() -> dict[str, Any]:
    return {"email": "e2e@example.test", "name": "E2E", "permissions": ["read"], "simulate_oauth": True}


def is_last_event(payload: str | bytes) -> bool:
    """True for the frame that ends a chat turn (in any of the protocol's shapes)."""
    if isinstance(payload, bytes):
        return False
    try:
        frame = json.loads(payload)
    except ValueError:
        return False
    return isinstance(frame, dict) and "agent_completed" in (frame.get("type"), frame.get("event"))


def _frame(payload: str | bytes) -> tuple[str, str | bytes]:
    return ("binary", payload) if isinstance(payload, bytes) else ("text", payload)


# --- aiohttp ----------------------------------------------------------------------


async def aiohttp_scenario(http_url: str, ws_url: str, **session_options: Any) -> Transcript:
    transcript: Transcript = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT), **session_options) as session:
        async with session.post(
            f"{http_url}/auth/e2e/test-auth", json=auth_body(), headers={"X-E2E-Bypass-Key": BAD_BYPASS_KEY}
        ) as response:
            transcript.append(("http", "POST /auth/e2e/test-auth", response.status, await response.read()))
        async with session.get(f"{http_url}/health") as response:
            transcript.append(("http", "GET /health", response.status, await response.read()))
        try:
            await session.ws_connect(f"{ws_url}/ws")
            transcript.append(("unexpected-upgrade",))
        except aiohttp.WSServerHandshakeError as exc:
            transcript.append(("refused", exc.status))
        token = fresh_token()
        async with session.ws_connect(
            f"{ws_url}/ws",
            headers={"Authorization": f"Bearer {token}", "X-Test-Session": f"e2e-staging-{uuid.uuid4().hex}"},
            protocols=("jwt-auth", f"jwt.{token}"),
        ) as ws:
            transcript.append(("subprotocol", "jwt-auth" if ws.protocol == "jwt-auth" else _shape(ws.protocol)))

            async def receive() -> tuple[str, str | bytes] | None:
                message = await ws.receive(timeout=TIMEOUT)
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    return _frame(message.data)
                transcript.append(("closed", ws.close_code, message.extra or ""))
                return None

            await _chat_turn(transcript, receive, ws.send_str, ws.send_bytes)
            await ws.close(code=CLOSE_OK)
        async with session.ws_connect(f"{ws_url}/ws-bug", headers={"Authorization": f"Bearer {fresh_token()}"}) as ws:
            for _ in range(MAX_FRAMES):
                message = await ws.receive(timeout=TIMEOUT)
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    transcript.append(("recv", *_frame(message.data)))
                    continue
                transcript.append(("closed", ws.close_code, message.extra or ""))
                break
    return transcript


def _shape(subprotocol: str | None) -> str | None:
    """A token-bearing subprotocol differs on every run; keep only its shape."""
    if subprotocol and subprotocol.startswith("jwt."):
        return "jwt.<token>"
    return subprotocol


async def _chat_turn(
    transcript: Transcript,
    receive: Callable[[], Awaitable[tuple[str, str | bytes] | None]],
    send_text: Callable[[str], Awaitable[None]],
    send_bytes: Callable[[bytes], Awaitable[None]],
) -> None:
    """Greeting frames, one chat turn up to agent_completed, one binary echo."""
    for _ in range(2):
        frame = await receive()
        if frame is None:
            return
        transcript.append(("recv", *frame))
    await send_text(chat_message())
    for _ in range(MAX_FRAMES):
        frame = await receive()
        if frame is None:
            return
        transcript.append(("recv", *frame))
        if is_last_event(frame[1]):
            break
    await send_bytes(BINARY_PROBE)
    frame = await receive()
    if frame is not None:
        transcript.append(("recv", *frame))


# --- websockets -------------------------------------------------------------------


async def websockets_scenario(
    http_url: str, ws_url: str, *, via_env_proxy: bool = False, **connect_options: Any
) -> Transcript:
    """The WebSocket part with `websockets`; HTTP with the standard library in a thread.

    With `via_env_proxy`, both reach the server through ``https_proxy``/``wss_proxy``
    and trust what ``SSL_CERT_FILE`` names, as hard-coded staging suites do.
    """
    transcript: Transcript = []
    transcript.extend(await asyncio.to_thread(_urllib_http, http_url, via_env_proxy))
    try:
        async with connect(f"{ws_url}/ws", open_timeout=TIMEOUT, **connect_options):
            transcript.append(("unexpected-upgrade",))
    except websockets.InvalidStatus as exc:
        transcript.append(("refused", exc.response.status_code))
    token = fresh_token()
    async with connect(
        f"{ws_url}/ws",
        additional_headers={"Authorization": f"Bearer {token}", "X-Test-Session": uuid.uuid4().hex},
        subprotocols=["jwt-auth", f"jwt.{token}"],
        open_timeout=TIMEOUT,
        **connect_options,
    ) as ws:
        transcript.append(("subprotocol", _shape(ws.subprotocol)))

        async def receive() -> tuple[str, str | bytes] | None:
            try:
                return _frame(await asyncio.wait_for(ws.recv(), TIMEOUT))
            except websockets.ConnectionClosed as exc:
                transcript.append(("closed", exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else ""))
                return None

        await _chat_turn(transcript, receive, ws.send, ws.send)
        await ws.close(code=CLOSE_OK)
    async with connect(
        f"{ws_url}/ws-bug",
        additional_headers={"Authorization": f"Bearer {fresh_token()}"},
        open_timeout=TIMEOUT,
        **connect_options,
    ) as ws:
        try:
            for _ in range(MAX_FRAMES):
                transcript.append(("recv", *_frame(await asyncio.wait_for(ws.recv(), TIMEOUT))))
        except websockets.ConnectionClosed as exc:
            transcript.append(("closed", exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else ""))
    return transcript


def _urllib_http(http_url: str, via_env_proxy: bool = False) -> Transcript:
    import urllib.error
    import urllib.request

    transcript: Transcript = []
    request = urllib.request.Request(
        f"{http_url}/auth/e2e/test-auth",
        data=json.dumps(auth_body()).encode(),
        headers={"X-E2E-Bypass-Key": BAD_BYPASS_KEY, "Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(None if via_env_proxy else {}))
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            transcript.append(("http", "POST /auth/e2e/test-auth", response.status, response.read()))
    except urllib.error.HTTPError as exc:
        transcript.append(("http", "POST /auth/e2e/test-auth", exc.code, exc.read()))
    with opener.open(f"{http_url}/health", timeout=TIMEOUT) as response:
        transcript.append(("http", "GET /health", response.status, response.read()))
    return transcript


# --- websocket-client (synchronous) --------------------------------------------------


def websocket_client_scenario(http_url: str, ws_url: str) -> Transcript:
    """The WebSocket part with websocket-client (blocking); HTTP with urllib."""
    transcript = _urllib_http(http_url)
    try:
        websocket_client.create_connection(f"{ws_url}/ws", timeout=TIMEOUT).close()
        transcript.append(("unexpected-upgrade",))
    except websocket_client.WebSocketBadStatusException as exc:
        transcript.append(("refused", exc.status_code))
    token = fresh_token()
    ws = websocket_client.create_connection(
        f"{ws_url}/ws",
        timeout=TIMEOUT,
        header=[f"Authorization: Bearer {token}", f"X-Test-Session: {uuid.uuid4().hex}"],
        subprotocols=["jwt-auth", f"jwt.{token}"],
    )
    transcript.append(("subprotocol", _shape(ws.getsubprotocol())))

    def receive_sync() -> tuple[str, str | bytes] | None:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket_client.ABNF.OPCODE_TEXT:
            return "text", frame.data.decode()
        if opcode == websocket_client.ABNF.OPCODE_BINARY:
            return "binary", frame.data
        code = int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else None
        transcript.append(("closed", code, frame.data[2:].decode()))
        return None

    async def receive() -> tuple[str, str | bytes] | None:
        return receive_sync()

    async def send_text(text: str) -> None:
        ws.send(text)

    async def send_bytes(data: bytes) -> None:
        ws.send_binary(data)

    asyncio.run(_chat_turn(transcript, receive, send_text, send_bytes))
    ws.close(status=CLOSE_OK)
    ws = websocket_client.create_connection(
        f"{ws_url}/ws-bug", timeout=TIMEOUT, header=[f"Authorization: Bearer {fresh_token()}"]
    )
    for _ in range(MAX_FRAMES):
        frame = receive_sync()
        if frame is None:
            break
        transcript.append(("recv", *frame))
    ws.close()
    return transcript
