"""`wsreplay record` then `wsreplay replay` with the upstream stopped: the client sees the same.

Clients are aiohttp, `websockets` and websocket-client; each run mints fresh tokens,
ids and timestamps. The upstream is the scripted test server, stopped before replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from tests.support.cli import RunningWsreplay, run_proxy
from tests.support.clients import (
    aiohttp_scenario,
    chat_message,
    websocket_client_scenario,
    websockets_scenario,
)
from tests.support.scenario import staging_upstream
from tests.support.staging_upstream import WsScript
from tests.support.timing import TIMING_TOLERANCE, loop_lag
from tests.support.tls import make_private_ca
from wsreplay.cassette import load_cassette
from wsreplay.jwt import mint_access_token
from wsreplay.records import WebSocketFrame
from wsreplay.sample_server import AGENT_EVENT_TYPES, SampleServerConfig, start_sample_server

Scenario = Callable[[str, str], Awaitable[list]]

SCENARIOS: dict[str, Scenario] = {
    "aiohttp": aiohttp_scenario,
    "websockets": websockets_scenario,
    "websocket-client": lambda http_url, ws_url: asyncio.to_thread(websocket_client_scenario, http_url, ws_url),
}


@pytest.mark.parametrize("library", SCENARIOS)
async def test_replay_gives_each_client_library_the_recorded_transcript(tmp_path: Path, library: str) -> None:
    scenario = SCENARIOS[library]
    cassette = tmp_path / "staging.cassette"

    async def client(port: int) -> list:
        return await scenario(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}")

    async with staging_upstream() as upstream:
        live, _ = await run_proxy(["record", "--upstream", upstream.http_url, "-o", str(cassette)], client)
    replayed, replay = await run_proxy(["replay", str(cassette), "--speed", "max", "--strict"], client)

    assert replayed == live
    assert ("closed", 1008, "Authentication failed") in replayed
    assert ("refused", 403) in replayed
    assert "replay: 2 HTTP responses, 2 WebSocket connections (1 refused upgrades)" in replay.output
    assert "never used" not in replay.output


async def test_replay_in_regular_mode_over_tls_is_offline(
    tmp_path: Path, mitm_confdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = "api.staging.wsreplay.test"
    ca = make_private_ca(tmp_path)
    cassette = tmp_path / "regular.cassette"
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)

    async def client_through_env_proxy(process_port: int, process: RunningWsreplay) -> list:
        bundle = (await asyncio.to_thread(process.wait_for_line, r"export SSL_CERT_FILE=(\S+)"))[1]
        for name in ("https_proxy", "wss_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{process_port}")
        monkeypatch.setenv("SSL_CERT_FILE", bundle)
        return await websockets_scenario(f"https://{host}", f"wss://{host}", via_env_proxy=True)

    common = ["--mode", "regular", "--confdir", str(mitm_confdir), "--listen", "127.0.0.1:0"]
    async with staging_upstream(ssl_context=ca.server_ssl_context([host])) as upstream:
        recorder = RunningWsreplay(
            "record",
            *common,
            "-o",
            str(cassette),
            "--upstream-ca",
            str(ca.ca_cert_path),
            "--resolve",
            f"{host}=127.0.0.1:{upstream.port}",
        )
        try:
            live = await client_through_env_proxy(await asyncio.to_thread(recorder.wait_listening), recorder)
        finally:
            assert await asyncio.to_thread(recorder.stop) == 0, recorder.output
        reached_upstream = len(upstream.connections)

    replayer = RunningWsreplay("replay", str(cassette), *common, "--speed", "max")
    try:
        replayed = await client_through_env_proxy(await asyncio.to_thread(replayer.wait_listening), replayer)
    finally:
        assert await asyncio.to_thread(replayer.stop) == 0, replayer.output
    assert replayed == live
    assert live[-1] == ("closed", 1008, "Authentication failed")
    assert reached_upstream == 3


async def test_seven_concurrent_connections_each_get_a_whole_recorded_conversation(tmp_path: Path) -> None:
    cassette = tmp_path / "concurrent.cassette"
    script = WsScript(
        on_open=({"type": "ping"},),
        reply=lambda message: [
            {"type": "ack", "content": json.loads(message)["content"]},
            *({"type": event, "for": json.loads(message)["content"]} for event in ("agent_started", "agent_completed")),
        ],
    )

    async def seven_clients(port: int) -> list[list[str]]:
        async def one(number: int) -> list[str]:
            async with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
                received = [await asyncio.wait_for(ws.recv(), 10)]
                await ws.send(
                    json.dumps({"type": "message", "content": f"client-{number}", "run_id": str(uuid.uuid4())})
                )
                for _ in range(3):
                    received.append(await asyncio.wait_for(ws.recv(), 10))
                return received

        return list(await asyncio.gather(*(one(number) for number in range(7))))

    async with staging_upstream() as upstream:
        upstream.websocket("/ws", script)
        live, _ = await run_proxy(["record", "--upstream", upstream.ws_url, "-o", str(cassette)], seven_clients)
    replayed, replay = await run_proxy(["replay", str(cassette), "--speed", "max", "--strict"], seven_clients)

    assert len(replayed) == 7
    for conversation in replayed:
        owner = json.loads(conversation[1])["content"]
        assert all(json.loads(frame).get("for", owner) == owner for frame in conversation[1:])
    assert sorted(map(tuple, replayed)) == sorted(map(tuple, live))
    assert "7 WebSocket connections" in replay.output


async def test_speed_1_keeps_the_recorded_gaps(tmp_path: Path) -> None:
    cassette = tmp_path / "timed.cassette"
    config = SampleServerConfig(event_interval=0.15)

    async def agent_event_gaps(port: int) -> list[float]:
        token = mint_access_token("e2e-timing@example.test", ["read"], config.jwt_secret)
        async with connect(
            f"ws://127.0.0.1:{port}/ws", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10
        ) as ws:
            await ws.send(chat_message())
            arrivals = []
            for _ in range(20):
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame["type"] in AGENT_EVENT_TYPES:
                    arrivals.append(time.monotonic())
                if frame["type"] == "agent_completed":
                    break
            return [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]

    server = await start_sample_server(config=config)
    try:
        await run_proxy(["record", "--upstream", server.http_url, "-o", str(cassette)], agent_event_gaps)
    finally:
        await server.close()
    events = [
        r
        for r in load_cassette(cassette).records
        if isinstance(r, WebSocketFrame) and (r.json() or {}).get("type") in AGENT_EVENT_TYPES
    ]
    recorded_gaps = [later.time - earlier.time for earlier, later in zip(events, events[1:], strict=False)]
    assert len(recorded_gaps) == 5 and min(recorded_gaps) > 0.1

    for speed in (1, 3):
        async with loop_lag() as lags:
            replayed_gaps, _ = await run_proxy(["replay", str(cassette), "--speed", str(speed)], agent_event_gaps)
        expected = [gap / speed for gap in recorded_gaps]
        assert replayed_gaps == pytest.approx(expected, abs=TIMING_TOLERANCE + max(lags)), (speed, max(lags))


async def test_a_client_frame_unlike_the_recording_fails_with_a_readable_diff(tmp_path: Path) -> None:
    cassette = tmp_path / "chat.cassette"

    async def chat(content_type: str) -> Callable[[int], Awaitable[tuple[int | None, str]]]:
        async def client(port: int) -> tuple[int | None, str]:
            async with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
                message = json.loads(chat_message())
                message["type"] = content_type
                await ws.send(json.dumps(message))
                with contextlib.suppress(websockets.ConnectionClosed):
                    for _ in range(10):
                        await asyncio.wait_for(ws.recv(), 10)
                return ws.close_code, ws.close_reason or ""

        return client

    async with staging_upstream() as upstream:
        upstream.websocket("/ws", WsScript(reply=lambda message: ["ok"], close_after=1, close_code=1000))
        await run_proxy(["record", "--upstream", upstream.ws_url, "-o", str(cassette)], await chat("message"))
    (code, reason), replay = await run_proxy(
        ["replay", str(cassette), "--speed", "max", "--on-mismatch", "fail"], await chat("start_agent")
    )
    assert code == 4000
    assert "type" in reason
    assert '$.type: expected "message", received "start_agent"' in replay.output
