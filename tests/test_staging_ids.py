"""The staging protocol's ids, live and replayed: a client mints a fresh thread_id for each
chat turn and checks that every agent event is for its own thread.

A Python client (`websockets`) and a Node client (its WebSocket API, as in browsers) each
run one turn through `wsreplay record` against the bundled sample server, then against
`wsreplay replay` and `replay --direct` with the server gone, each time with a new thread_id.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_wsreplay
from tests.support.node import NODE, node_version
from wsreplay.jwt import mint_access_token
from wsreplay.sample_server import SampleServerConfig, start_sample_server

SUPPORT = Path(__file__).parent / "support"
TIMEOUT = 60
TURN = ["agent_started", "agent_thinking", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]


def client_command(language: str, token: str) -> list[str]:
    if language == "node":
        if NODE is None or node_version() < (20, 10):
            pytest.skip("Node's WebSocket needs Node 20.10 or later")
        return [NODE, "--experimental-websocket", str(SUPPORT / "staging_turn.mjs"), token]
    return [sys.executable, str(SUPPORT / "staging_turn.py"), token]


async def turn_under(command: list[str], *wsreplay_args: str) -> dict[str, Any]:
    result = await asyncio.to_thread(
        run_wsreplay, *wsreplay_args, "--listen", "127.0.0.1:0", "--", *command, timeout=TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("language", ["python", "node"])
async def test_agent_events_carry_the_clients_own_thread_id_live_and_replayed(language: str, tmp_path: Path) -> None:
    config = SampleServerConfig()
    command = client_command(language, mint_access_token("chat-user@staging.example", ["read"], config.jwt_secret))
    cassette = tmp_path / "turn.cassette"
    server = await start_sample_server(config=config)
    try:
        live = await turn_under(command, "record", "--upstream", server.http_url, "-o", str(cassette))
    finally:
        await server.close()

    assert [kind for kind, _ in live["events"]] == TURN
    assert {thread for _, thread in live["events"]} == {live["thread_id"]}
    show = await asyncio.to_thread(run_wsreplay, "show", str(cassette))
    assert f"[correlated: {live['thread_id']}]" in show.stdout, show.stdout

    for replay_args in (["replay", str(cassette), "--strict"], ["replay", str(cassette), "--direct", "--strict"]):
        replayed = await turn_under(command, *replay_args)
        assert replayed["thread_id"] != live["thread_id"]
        assert replayed["events"] == [[kind, replayed["thread_id"]] for kind in TURN], replay_args
        assert replayed["close"] == live["close"]

    verbatim = await turn_under(command, "replay", str(cassette), "--no-correlate")
    assert verbatim["events"] == [[kind, live["thread_id"]] for kind in TURN], "--no-correlate: the recorded ids"
