"""A client in another language: Node's WebSocket API (undici, as in browsers) and fetch().

The scenario (tests/support/node_client.mjs) runs unchanged under `wsreplay record -- node ...`
against a scripted staging upstream, then under `wsreplay replay -- node ...` with the
upstream gone: the refused auth handshake, a chat turn with the JWT in a subprotocol, a
refused upgrade and a lost connection must look the same to it both times.

A server's close is left out here; tests/test_closing_handshake.py has Node's WebSocket
see 30 of them at once, recorded and replayed.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import RunningWsreplay, run_wsreplay
from tests.support.node import NODE, node_version
from tests.support.replay_records import HEADER, accepted_open, client, server, upgrade_request
from tests.support.scenario import AGENT_EVENTS, browser_staging_upstream
from wsreplay.cassette import Cassette, write_cassette
from wsreplay.records import WebSocketClose

CLIENT = Path(__file__).parent / "support" / "node_client.mjs"
TIMEOUT = 60

pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js 20+ is not installed")


async def node_under(*wsreplay_args: str) -> list[Any]:
    """Run the Node scenario under `wsreplay ARGS -- node ...`; its transcript (exit 0 required)."""
    assert NODE is not None
    result = await asyncio.to_thread(
        run_wsreplay,
        *wsreplay_args,
        "--listen",
        "127.0.0.1:0",
        "--",
        NODE,
        "--experimental-websocket",
        str(CLIENT),
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


async def test_nodes_websocket_and_fetch_see_the_same_session_live_and_replayed(tmp_path: Path) -> None:
    if node_version() < (20, 10):
        pytest.skip("Node's WebSocket needs Node 20.10 or later")
    cassette = tmp_path / "node.cassette"
    async with browser_staging_upstream() as upstream:
        live = await node_under("record", "--upstream", upstream.http_url, "-o", str(cassette))
    replayed = await node_under("replay", str(cassette))

    assert replayed == live
    texts = [json.loads(entry[1])["type"] for entry in live if entry[0] == "text" and entry[1].startswith("{")]
    assert live[0] == ["http", 401, {"detail": "Invalid E2E bypass key"}]
    assert live[1] == ["open", "/ws", "jwt.<token>"]
    assert texts[:3] == ["ping", "system_message", "ack"] and tuple(texts[3:8]) == AGENT_EVENTS
    assert ["binary", "6563686f3a000102fdfeff"] in live, "the binary frame comes back as echo:<bytes>"
    assert ["closed", "/ws", 1000, "done", True] in live, "the client closes; its close comes back"
    assert ["error", "/ws"] in live, "the upgrade without a token is refused"
    assert live[-3:] == [["open", "/drop", "jwt.<token>"], ["text", "hello"], ["closed", "/drop", 1006, "", False]]


SERVER_CLOSES = r"""
// 30 WebSockets at once; each sends two messages, the first of which the server answers with
// frames, an error frame and a close 1008.
const url = process.argv[1];
const one = () => new Promise((resolve) => {
  const ws = new WebSocket(url);
  const seen = [];
  ws.onopen = () => { ws.send('"hello"'); ws.send('"are you there?"'); };
  ws.onmessage = (event) => seen.push(JSON.parse(event.data).type);
  ws.onerror = () => {};
  ws.onclose = (event) => resolve([...seen, event.code, event.reason, event.wasClean]);
});
console.log(JSON.stringify(await Promise.all(Array.from({ length: 30 }, one))));
"""


async def test_nodes_websocket_gets_every_frame_and_a_clean_close_from_a_direct_replay(tmp_path: Path) -> None:
    """The second message reaches the server after its close: a server that ends TCP without waiting
    for the client's answer resets the connection, and Node reports an unclean close (or loses frames)."""
    if node_version() < (20, 10):
        pytest.skip("Node's WebSocket needs Node 20.10 or later")
    assert NODE is not None
    cassette = tmp_path / "auth-failed.cassette"
    request = upgrade_request("/ws")
    records = [
        accepted_open(1, 0.0, request),
        client(1, 0.0005, "hello"),
        *(server(1, 0.001 * n, {"type": f"event_{n}"}) for n in range(1, 4)),
        server(1, 0.005, {"type": "error_message", "error_message": "Authentication failed"}),
        WebSocketClose(1, 0.006, 1008, "Authentication failed", "server"),
    ]
    write_cassette(cassette, Cassette(HEADER, records))
    replay = RunningWsreplay("replay", str(cassette), "--direct", "--speed", "max", "--listen", "127.0.0.1:0")
    try:
        port = await asyncio.to_thread(replay.wait_listening)
        node = await asyncio.create_subprocess_exec(
            NODE,
            "--experimental-websocket",
            "--input-type=module",
            "-e",
            SERVER_CLOSES,
            f"ws://127.0.0.1:{port}/ws",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(node.communicate(), TIMEOUT)
    finally:
        await asyncio.to_thread(replay.stop)
    assert node.returncode == 0, stderr.decode()
    expected = ["event_1", "event_2", "event_3", "error_message", 1008, "Authentication failed", True]
    assert json.loads(stdout) == [expected] * 30
