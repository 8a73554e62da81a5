"""Staging-style chat tests under wsreplay: the bypass-key auth, the socket with the token,
the agent events, the 403 without a token, seven concurrent connections, and a client
that only knows the hard-coded wss:// staging URL. They replay offline by default."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

import aiohttp
import httpx
import pytest
import websocket as websocket_client
import websockets
from websockets.asyncio.client import connect

from wsreplay.sample_server import DEFAULT_BYPASS_KEY

STAGING_WS_URL = "wss://api.staging.wsreplay.test/ws"
CRITICAL_EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]
TIMEOUT = 10


def auth_body() -> dict[str, object]:
    return {"email": f"e2e-{os.getpid()}@example.test", "name": "E2E", "permissions": ["read"], "simulate_oauth": True}


async def bypass_token(base_url: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT, trust_env=False) as client:
        response = await client.post(
            "/auth/e2e/test-auth", headers={"X-E2E-Bypass-Key": DEFAULT_BYPASS_KEY}, json=auth_body()
        )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def event_of(frame: dict) -> str | None:
    return frame.get("event") if frame.get("type") == "system_message" else frame.get("type")


async def agent_events(ws: websockets.ClientConnection) -> list[str]:
    await ws.send(
        json.dumps(
            {
                "type": "message",
                "content": "Where did my spend go?",
                "thread_id": f"test_{time.time_ns()}",
                "run_id": str(uuid.uuid4()),
                "timestamp": time.time(),
            }
        )
    )
    seen: list[str] = []
    async with asyncio.timeout(TIMEOUT):
        async for raw in ws:
            event = event_of(json.loads(raw))
            if event in CRITICAL_EVENTS and event not in seen:
                seen.append(event)
            if event == "agent_completed":
                return seen
    return seen


@pytest.mark.wsreplay
async def test_invalid_bypass_key_is_refused(wsreplay) -> None:
    async with httpx.AsyncClient(base_url=wsreplay.url, timeout=TIMEOUT, trust_env=False) as client:
        response = await client.post("/auth/e2e/test-auth", headers={"X-E2E-Bypass-Key": "old-key"}, json=auth_body())
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid E2E bypass key"}


@pytest.mark.wsreplay
async def test_agent_events_arrive_in_order(wsreplay) -> None:
    token = await bypass_token(wsreplay.url)
    async with connect(
        f"{wsreplay.ws_url}/ws", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=TIMEOUT
    ) as ws:
        assert await agent_events(ws) == CRITICAL_EVENTS


@pytest.mark.wsreplay
async def test_upgrade_without_token_is_refused(wsreplay) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{wsreplay.ws_url}/ws")
    assert refused.value.status == 403


@pytest.mark.wsreplay
async def test_seven_concurrent_connections(wsreplay) -> None:
    token = await bypass_token(wsreplay.url)

    async def one() -> float:
        started = time.monotonic()
        async with connect(
            f"{wsreplay.ws_url}/ws", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=TIMEOUT
        ) as ws:
            async with asyncio.timeout(3):
                async for raw in ws:
                    if "connection_established" in raw:
                        return time.monotonic() - started
        raise AssertionError("no connection_established")

    assert all(seconds < 3 for seconds in await asyncio.gather(*(one() for _ in range(7))))


@pytest.mark.wsreplay
def test_sync_client_sees_the_auth_bug_close(wsreplay) -> None:
    ws = websocket_client.create_connection(
        f"{wsreplay.ws_url}/ws", timeout=TIMEOUT, header=["Authorization: Bearer not-a-valid-token"]
    )
    frames = []
    for _ in range(5):
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket_client.ABNF.OPCODE_CLOSE:
            code, reason = int.from_bytes(frame.data[:2], "big"), frame.data[2:].decode()
            break
        frames.append(json.loads(frame.data))
    ws.close()
    assert frames[-1]["error_code"] == "AUTH_REQUIRED"
    assert (code, reason) == (1008, "Authentication failed")


@pytest.mark.wsreplay
async def test_hard_coded_staging_url_through_the_proxy(wsreplay) -> None:
    """The client knows only wss://api.staging...; the marker set https_proxy/wss_proxy and SSL_CERT_FILE."""
    assert STAGING_WS_URL.startswith("wss://") and "staging" in STAGING_WS_URL
    token = await bypass_token(wsreplay.url)
    async with connect(
        STAGING_WS_URL, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=TIMEOUT
    ) as ws:
        assert await agent_events(ws) == CRITICAL_EVENTS
