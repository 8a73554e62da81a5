"""The recorded pace of everything (issue 11): a latency-sensitive client times each phase live
and replayed.

The upstream thinks before each answer: 120 ms before the token, 150 ms before accepting the
upgrade (130 ms before refusing one), 100 ms before the first frame, 80 and 120 ms within the
chat turn. Recorded through the real `wsreplay record`, replayed through the proxy and with
`--direct`: at `--speed 1` every phase takes as long as live, at `--speed 2` half, at `--speed
max` next to nothing. Clients: aiohttp and `websockets`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import connect

from tests.support.cli import run_proxy
from tests.support.staging_upstream import Pause, ScriptedUpstream, WsScript
from tests.support.timing import TIMING_TOLERANCE, loop_lag
from wsreplay.cassette import load_cassette, write_cassette
from wsreplay.records import HttpExchange, WebSocketFrame, WebSocketOpen

Phases = dict[str, float]
TIMEOUT = 10.0
THINKING = {"token": 0.12, "connect": 0.15, "first frame": 0.1, "chat turn": 0.2, "refused": 0.13}
"""What the upstream spends before each phase's answer."""
RELATIVE_TOLERANCE = 0.2
QUICK = 0.05
"""A phase at --speed max takes at most this (plus the measured loop lag)."""


def thinking_upstream() -> ScriptedUpstream:
    upstream = ScriptedUpstream()
    upstream.route("POST", "/auth/token", json_body={"access_token": "t"}, delay=THINKING["token"])
    upstream.websocket(
        "/ws",
        WsScript(
            accept_delay=THINKING["connect"],
            on_open=(Pause(THINKING["first frame"]), {"type": "connected"}),
            reply=lambda _message: [Pause(0.08), {"type": "ack"}, Pause(0.12), {"type": "agent_completed"}],
        ),
    )
    upstream.websocket("/ws/refused", WsScript(accept_delay=THINKING["refused"], refuse=lambda _request: 403))
    return upstream


def _since(start: float) -> float:
    return time.monotonic() - start


async def aiohttp_phases(port: int) -> Phases:
    """Each phase as an aiohttp client times it."""
    base = f"http://127.0.0.1:{port}"
    phases: Phases = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        start = time.monotonic()
        async with session.post(f"{base}/auth/token", json={"email": "e2e@example.test"}) as response:
            assert (await response.json())["access_token"]
        phases["token"] = _since(start)
        start = time.monotonic()
        async with session.ws_connect(f"{base}/ws") as ws:
            phases["connect"] = _since(start)
            start = time.monotonic()
            assert json.loads(await ws.receive_str(timeout=TIMEOUT))["type"] == "connected"
            phases["first frame"] = _since(start)
            start = time.monotonic()
            await ws.send_str(json.dumps({"type": "message", "content": "hello"}))
            assert json.loads(await ws.receive_str(timeout=TIMEOUT))["type"] == "ack"
            assert json.loads(await ws.receive_str(timeout=TIMEOUT))["type"] == "agent_completed"
            phases["chat turn"] = _since(start)
        start = time.monotonic()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{base}/ws/refused")
        phases["refused"] = _since(start)
        assert refused.value.status == 403
    return phases


async def websockets_phases(port: int) -> Phases:
    """Each phase as a `websockets` client times it (the token through aiohttp)."""
    phases: Phases = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        start = time.monotonic()
        async with session.post(f"http://127.0.0.1:{port}/auth/token", json={"email": "e2e@example.test"}) as response:
            assert (await response.json())["access_token"]
        phases["token"] = _since(start)
    start = time.monotonic()
    async with connect(f"ws://127.0.0.1:{port}/ws", proxy=None, open_timeout=TIMEOUT) as ws:
        phases["connect"] = _since(start)
        start = time.monotonic()
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "connected"
        phases["first frame"] = _since(start)
        start = time.monotonic()
        await ws.send(json.dumps({"type": "message", "content": "hello"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "ack"
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "agent_completed"
        phases["chat turn"] = _since(start)
    start = time.monotonic()
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect(f"ws://127.0.0.1:{port}/ws/refused", proxy=None, open_timeout=TIMEOUT)
    phases["refused"] = _since(start)
    assert refused.value.response.status_code == 403
    return phases


CLIENTS: dict[str, Callable[[int], Awaitable[Phases]]] = {"aiohttp": aiohttp_phases, "websockets": websockets_phases}


async def replayed_phases(args: list[str], client: Callable[[int], Awaitable[Phases]]) -> tuple[Phases, float]:
    """The client's phases against `wsreplay ARGS`, and the worst event-loop lag meanwhile."""
    async with loop_lag() as lags:
        phases, _ = await run_proxy(args, client)
    return phases, max(lags)


def assert_paced(replayed: Phases, live: Phases, scale: float, lag: float, how: str) -> None:
    """Each replayed phase takes `scale` times its live duration, within 20% or 20 ms (plus the loop lag)."""
    for phase, seconds in live.items():
        expected = seconds * scale
        tolerance = max(RELATIVE_TOLERANCE * expected, TIMING_TOLERANCE) + lag
        assert abs(replayed[phase] - expected) <= tolerance, (how, phase, replayed, live, lag)


async def record(cassette: Path, client: Callable[[int], Awaitable[Phases]]) -> Phases:
    async with thinking_upstream() as upstream:
        live, _ = await run_proxy(["record", "--upstream", upstream.http_url, "-o", str(cassette)], client)
    for phase, thinking in THINKING.items():
        assert live[phase] >= thinking - TIMING_TOLERANCE, (phase, live)
    return live


@pytest.mark.parametrize("library", CLIENTS)
async def test_replay_keeps_the_pace_of_every_phase(tmp_path: Path, library: str) -> None:
    client = CLIENTS[library]
    cassette = tmp_path / "paced.cassette"
    live = await record(cassette, client)

    records = load_cassette(cassette).records
    [token] = [r for r in records if isinstance(r, HttpExchange)]
    opened, refused = (r for r in records if isinstance(r, WebSocketOpen))
    connected = next(r for r in records if isinstance(r, WebSocketFrame) and r.id == opened.id)
    assert token.duration >= THINKING["token"]
    assert opened.accepted and THINKING["connect"] <= opened.duration < live["connect"]
    assert refused.response.status == 403 and THINKING["refused"] <= refused.duration < live["refused"]
    assert connected.time - opened.answered_at == pytest.approx(THINKING["first frame"], abs=TIMING_TOLERANCE)

    for direct in ([], ["--direct"]):
        how = "direct" if direct else "proxy"
        for speed, scale in (("1", 1.0), ("2", 0.5)):
            replayed, lag = await replayed_phases(["replay", str(cassette), "--speed", speed, *direct], client)
            assert_paced(replayed, live, scale, lag, f"{how} --speed {speed}")
        replayed, lag = await replayed_phases(["replay", str(cassette), "--speed", "max", *direct], client)
        assert max(replayed.values()) <= QUICK + lag, (how, replayed, lag)


async def test_a_version_1_cassette_replays_without_upgrade_pacing(tmp_path: Path) -> None:
    """Version 1 recorded no wait before the 101 or the refusal: those are answered at once, the rest keeps pace."""
    cassette, v1 = tmp_path / "paced.cassette", tmp_path / "v1.cassette"
    live = await record(cassette, aiohttp_phases)
    recorded = load_cassette(cassette)
    write_cassette(v1, replace(recorded, header=replace(recorded.header, version=1)))
    assert load_cassette(v1).header.version == 1

    upgrades = ("connect", "refused")
    paced_live = {phase: seconds for phase, seconds in live.items() if phase not in upgrades}
    for direct in ([], ["--direct"]):
        replayed, lag = await replayed_phases(["replay", str(v1), *direct], aiohttp_phases)
        assert_paced(replayed, paced_live, 1.0, lag, "v1")
        assert all(replayed[phase] <= QUICK + lag for phase in upgrades), (replayed, lag)
