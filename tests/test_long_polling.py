"""Socket.IO's long-polling with per-request cache-busters, recorded and replayed (issue #12).

Engine.IO clients open a session over HTTP long-polling before upgrading to a WebSocket, and
every polling request carries a cache-buster that differs in every request and every run
(``GET /socket.io/?EIO=4&transport=polling&t=7ki2v9rz``). Replay has to answer each one with
the next recorded request of the same method, path, parameter names and body shape, or the
client never connects.

The server is python-socketio's AsyncServer on aiohttp (tests/support/socketio_server.py). Two
real clients run under `wsreplay record` and then under `wsreplay replay` (through mitmproxy,
and with --direct) with the server gone, and must see the same session:

- python-socketio's AsyncClient (tests/support/socketio_client.py), a long-polling-only session
  and one that upgrades; its ``t`` is ``time.time()`` (``t=1796281233.5024185``);
- the JS socket.io-client in Node (tests/support/socketio_client.mjs), whose ``t`` is a random
  8-character token (``t=7ki2v9rz``) on every polling GET and POST: the case of issue #12.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.support.cli import run_wsreplay
from tests.support.node import NODE
from tests.support.socketio_client import CHATS
from tests.support.socketio_server import SocketIoServer
from wsreplay.cassette import load_cassette
from wsreplay.records import HttpExchange, WebSocketFrame, WebSocketOpen

SUPPORT = Path(__file__).parent / "support"
PYTHON_CLIENT = [sys.executable, str(SUPPORT / "socketio_client.py")]
JS_CLIENT = [NODE or "node", str(SUPPORT / "socketio_client.mjs")]
JS_PACKAGE = SUPPORT / "npm" / "node_modules" / "socket.io-client" / "package.json"
TIMEOUT = 90


def conversation(*, replies: int = 3, disconnect_reason: str) -> list[Any]:
    """What a client sees between connecting and being disconnected: for each chat its replies
    and then its ack, the goodbye, the server's disconnect."""
    seen: list[Any] = []
    for chat in CHATS:
        text = chat["text"]
        seen += [["reply", {"to": text, "part": part, "of": replies}] for part in range(1, replies + 1)]
        seen.append(["ack", {"ok": True, "echo": text, "length": len(text), "room": chat["room"]}])
    return [*seen, ["goodbye", "SEE YOU"], ["disconnected", disconnect_reason]]


async def under_wsreplay(*args: str, command: list[str]) -> Any:
    """Run `wsreplay ARGS --listen 127.0.0.1:0 -- COMMAND`; the client's transcript (exit 0 required)."""
    result = await asyncio.to_thread(run_wsreplay, *args, "--listen", "127.0.0.1:0", "--", *command, timeout=TIMEOUT)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines, (
        f"wsreplay {args[0]} exited {result.returncode}\nclient: {result.stdout}\nwsreplay:\n{result.stderr}"
    )
    return json.loads(lines[-1])


@dataclass(frozen=True)
class Request:
    """One Engine.IO request of a cassette: a polling GET or POST, or the WebSocket upgrade."""

    kind: str  # "GET", "POST" or "upgrade"
    query: dict[str, str]
    body: bytes
    response: bytes

    @property
    def sid(self) -> str | None:
        return self.query.get("sid")


def engineio_requests(cassette: Path) -> tuple[list[Request], list[bytes]]:
    """The cassette's requests to /socket.io/ in recorded order, and the client's WebSocket frames."""
    requests: list[Request] = []
    frames: list[bytes] = []
    for record in load_cassette(cassette).records:
        match record:
            case HttpExchange(request=request, response=response) if request.path == "/socket.io/":
                query = {name: values[0] for name, values in parse_qs(request.query).items()}
                body = b"" if response is None else response.body
                requests.append(Request(request.method, query, request.body, body))
            case WebSocketOpen(request=request) if request.path == "/socket.io/":
                query = {name: values[0] for name, values in parse_qs(request.query).items()}
                requests.append(Request("upgrade", query, b"", b""))
            case WebSocketFrame(from_client=True, payload=payload):
                frames.append(payload)
    return requests, frames


def handshake_sid(request: Request) -> str:
    """The session id in the answer to an Engine.IO handshake GET (``0{"sid": ...}``)."""
    assert request.kind == "GET" and request.sid is None and request.response.startswith(b"0"), request
    return json.loads(request.response[1:])["sid"]


async def test_python_socketio_long_polls_and_upgrades_the_same_live_and_replayed(tmp_path: Path) -> None:
    cassette = tmp_path / "socketio-python.cassette"
    async with SocketIoServer() as server:
        live = await under_wsreplay("record", "--upstream", server.url, "-o", str(cassette), command=PYTHON_CLIENT)
    assert server.chats == [*CHATS, *CHATS], "both sessions' chats reached the real server"
    assert live == {
        "polling": [["connected", "polling"], *conversation(disconnect_reason="server disconnect")],
        "upgraded": [["connected", "websocket"], *conversation(disconnect_reason="server disconnect")],
    }

    # What makes it long-polling with cache-busters: the polling session's packets in GETs, each
    # with its own `t`, and POSTs; then a second handshake GET and its upgrade to a WebSocket.
    requests, frames = engineio_requests(cassette)
    first = handshake_sid(requests[0])
    polling = [request for request in requests if request.sid == first]
    gets = [request for request in polling if request.kind == "GET"]
    posts = [request for request in polling if request.kind == "POST"]
    assert len(gets) >= 5, "the namespace's connect, the replies and acks, the goodbye: each answers a GET"
    assert any(b'"chat"' in post.body for post in posts), "the chats went up in POSTs"
    handshake = next(index for index, request in enumerate(requests) if request.sid is None and index > 0)
    second = handshake_sid(requests[handshake])
    upgrades = [request for request in requests if request.kind == "upgrade"]
    assert [(upgrade.query["transport"], upgrade.sid) for upgrade in upgrades] == [("websocket", second)]
    assert requests.index(upgrades[0]) > handshake, "the upgrade follows the second session's handshake"
    assert sum(b'"chat"' in frame for frame in frames) == len(CHATS), "the upgraded session chats over the WebSocket"
    busters = [request.query.get("t", "") for request in requests if request.kind != "POST"]
    assert len(set(busters)) == len(busters) > len(gets) + 2, (
        f"every GET and the upgrade carry their own `t`: {busters}"
    )
    assert all(re.fullmatch(r"\d{10}\.\d+", t) for t in busters), "python-engineio's `t` is time.time()"

    for direct in ((), ("--direct",)):
        replayed = await under_wsreplay("replay", str(cassette), *direct, command=PYTHON_CLIENT)
        assert replayed == live, f"replay {' '.join(direct)}"


@pytest.mark.skipif(NODE is None, reason="Node.js 20+ is not installed")
@pytest.mark.skipif(
    not JS_PACKAGE.is_file(),
    reason="socket.io-client is not in tests/support/npm/node_modules (a dependency of tests/support/npm/package.json, "
    "installed by `bash tests/support/npm_env.sh`)",
)
async def test_javascript_socketio_client_with_random_cache_busters_connects_to_a_replay(tmp_path: Path) -> None:
    cassette = tmp_path / "socketio-js.cassette"
    async with SocketIoServer() as server:
        live = await under_wsreplay("record", "--upstream", server.url, "-o", str(cassette), command=JS_CLIENT)
    assert server.chats == list(CHATS), "the chats reached the real server"
    assert live == [
        ["connected"],
        *conversation(disconnect_reason="io server disconnect")[:-2],
        ["transport", "websocket"],
        *conversation(disconnect_reason="io server disconnect")[-2:],
    ]

    # Issue #12's traffic: the handshake GET, then GETs and POSTs of the session, every one with a
    # fresh random `t` that no matcher can take for a timestamp; then the upgrade to a WebSocket.
    requests, frames = engineio_requests(cassette)
    sid = handshake_sid(requests[0])
    polling = [request for request in requests if request.kind != "upgrade"]
    assert {request.sid for request in polling[1:]} == {sid}, "one session"
    assert {request.kind for request in polling[1:]} == {"GET", "POST"}
    busters = [request.query.get("t", "") for request in polling]
    assert len(set(busters)) == len(busters) >= 3, f"every GET and POST carries its own `t`: {busters}"
    assert all(t and not t.isdigit() for t in busters), f"engine.io-client's `t` is a random token: {busters}"
    upgrades = [request for request in requests if request.kind == "upgrade"]
    assert [(upgrade.query["transport"], upgrade.sid) for upgrade in upgrades] == [("websocket", sid)]
    assert requests.index(upgrades[0]) > 1, "the client long-polls before it upgrades"
    assert sum(b'"chat"' in frame for frame in frames) == len(CHATS), "the chats went over the WebSocket"

    for direct in ((), ("--direct",)):
        replayed = await under_wsreplay("replay", str(cassette), *direct, command=JS_CLIENT)
        assert replayed == live, f"replay {' '.join(direct)}"
