"""``wsreplay demo``: record a staging session from the sample server, replay it offline, compare.

The scripted client is the kind of test the staging suite runs: the bypass-key auth
(accepted and refused), a health check, a refused upgrade without a token, a chat turn
with the five agent events and a binary frame, and the report's auth bug (an
``error_message`` frame, then close 1008). It runs twice: live through the recorder,
then against the replay with the sample server stopped. Both transcripts must match.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import aiohttp

from wsreplay.mitm import ProxyHost, ProxySettings
from wsreplay.sample_server import DEFAULT_BYPASS_KEY, SampleServerConfig, start_sample_server

TIMEOUT = aiohttp.ClientTimeout(total=15)
MAX_FRAMES = 100
PREVIEW = 110
Transcript = list[str]


def _preview(text: str) -> str:
    return text if len(text) <= PREVIEW else text[: PREVIEW - 3] + "..."


def _auth_body() -> dict[str, object]:
    return {"email": "demo@example.test", "name": "Demo", "permissions": ["read", "write"], "simulate_oauth": True}


async def run_demo_client(base_url: str) -> Transcript:
    """The scripted staging session; returns one line per thing the client observed."""
    lines: Transcript = []
    ws_url = base_url.replace("http", "ws", 1)
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        token = ""
        for key in (DEFAULT_BYPASS_KEY, "wrong-bypass-key"):
            async with session.post(
                f"{base_url}/auth/e2e/test-auth", json=_auth_body(), headers={"X-E2E-Bypass-Key": key}
            ) as response:
                body = await response.text()
                if response.status == 200:
                    issued = json.loads(body)
                    token = issued["access_token"]
                    body = f"{issued['token_type']} token for {issued['user']['email']}, keys {sorted(issued)}"
                lines.append(_preview(f"HTTP POST /auth/e2e/test-auth -> {response.status} {body}"))
        async with session.get(f"{base_url}/health") as response:
            lines.append(f"HTTP GET /health -> {response.status} {await response.text()}")
        try:
            async with session.ws_connect(f"{ws_url}/ws"):
                lines.append("WS /ws without token -> accepted (unexpected)")
        except aiohttp.WSServerHandshakeError as exc:
            lines.append(f"WS /ws without token -> refused {exc.status}")
        async with session.ws_connect(
            f"{ws_url}/ws",
            headers={"Authorization": f"Bearer {token}", "X-Test-Type": "E2E"},
            protocols=("jwt-auth", f"jwt.{token}"),
        ) as ws:
            lines.append("WS /ws with token -> open")
            await _read_frames(ws, lines, until=lambda frame: "connection_established" in frame)
            await ws.send_str(json.dumps({"type": "message", "content": "Summarise my costs", "thread_id": "t-1"}))
            await _read_frames(ws, lines, until=lambda frame: "agent_completed" in frame)
            await ws.send_bytes(b"\x00\x01wsreplay\xff")
            await _read_frames(ws, lines, until=lambda frame: frame.startswith("binary"))
            await ws.close()
            lines.append(f"WS closed by client {ws.close_code}")
        async with session.ws_connect(f"{ws_url}/ws", headers={"Authorization": "Bearer not-a-valid-token"}) as ws:
            lines.append("WS /ws with an invalid token -> open")
            await _read_frames(ws, lines, until=lambda frame: False)
    return lines


async def _read_frames(ws: aiohttp.ClientWebSocketResponse, lines: Transcript, until: Callable[[str], bool]) -> None:
    for _ in range(MAX_FRAMES):
        message = await ws.receive()
        if message.type == aiohttp.WSMsgType.TEXT:
            frame = message.data
        elif message.type == aiohttp.WSMsgType.BINARY:
            frame = f"binary {message.data.hex()}"
        else:
            lines.append(f"WS closed by server {ws.close_code} {message.extra or ''!r}")
            return
        lines.append(_preview(f"WS <- {frame}"))
        if until(frame):
            return


async def record_demo(cassette: Path, confdir: str | None) -> Transcript:
    from wsreplay.addons.recorder import Recorder

    server = await start_sample_server(config=SampleServerConfig(heartbeat_interval=3600))
    try:
        settings = ProxySettings(
            mode=f"reverse:{server.http_url}",
            confdir=confdir,
            extra_options={"wsreplay_output": str(cassette), "wsreplay_overwrite": "true"},
        )
        host = ProxyHost(settings, [Recorder()])
        _, port = await host.start()
        try:
            return await run_demo_client(f"http://127.0.0.1:{port}")
        finally:
            await host.stop()
    finally:
        await server.close()


async def replay_demo(cassette: Path, confdir: str | None) -> Transcript:
    from wsreplay.addons.replayer import Replayer

    settings = ProxySettings(
        mode="reverse:http://127.0.0.1:9",
        confdir=confdir,
        connection_strategy="lazy",
        extra_options={"wsreplay_cassette": str(cassette), "wsreplay_speed": "max"},
    )
    host = ProxyHost(settings, [Replayer()])
    _, port = await host.start()
    try:
        return await run_demo_client(f"http://127.0.0.1:{port}")
    finally:
        await host.stop()
