"""A client in another language: Node's WebSocket API (undici, as in browsers) and fetch().

The scenario (tests/support/node_client.mjs) runs unchanged under `wsreplay record -- node ...`
against a scripted staging upstream, then under `wsreplay replay -- node ...` with the
upstream gone: the refused auth handshake, a chat turn with the JWT in a subprotocol, a
refused upgrade and a lost connection must look the same to it both times.

A server's close is left out: mitmproxy closes the client's TCP connection right after
forwarding the server's close frame, and Node 20's WebSocket then sometimes drops the
frames it had not yet handed over (1006 instead of the close), live and replayed alike.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_wsreplay
from tests.support.node import NODE, node_version
from tests.support.scenario import AGENT_EVENTS, browser_staging_upstream

CLIENT = Path(__file__).parent / "support" / "node_client.mjs"
TIMEOUT = 60

pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js 20+ is not installed")


async def node_under(*wsreplay_args: str) -> list[Any]:
    """Run the Node scenario under `wsreplay ARGS -- node ...`; its transcript (exit 0 required)."""
    assert NODE is not None
    result = await asyncio.to_thread(
        run_wsreplay, *wsreplay_args, "--listen", "127.0.0.1:0", "--", NODE, "--experimental-websocket",
        str(CLIENT), timeout=TIMEOUT,
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
