"""Socket.IO client sessions (python-socketio's AsyncClient), run as `wsreplay ... -- python THIS_FILE`.

Two sessions against $WSREPLAY_URL (argv[1] overrides it), one after the other:

- ``polling``: Engine.IO long-polling only (``transports=["polling"]``, as behind a proxy that
  blocks WebSockets): every packet travels in a GET or POST to ``/socket.io/``, each GET with a
  fresh cache-busting ``t``;
- ``upgraded``: long-polling first, then the upgrade to a WebSocket (``["polling", "websocket"]``,
  the default of Socket.IO clients): the handshake GET and the upgrade each carry a fresh ``t``.

Each session sends two ``chat`` calls and a ``bye``, collects the acks and every event the server
sends until the server disconnects it, and the transcripts are printed as JSON on the last line.
python-engineio's ``t`` is ``time.time()`` (``t=1796281233.5024185``); the POSTs carry none.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import aiohttp
import socketio

TIMEOUT = 20
CHATS = ({"text": "hello over polling", "room": "lobby"}, {"text": "and again", "room": "kitchen"})


async def session(url: str, transports: list[str]) -> list[Any]:
    """One client session; its own aiohttp session, closed at the end (python-engineio leaves open
    the one it makes when the server disconnects it)."""
    async with aiohttp.ClientSession() as http:
        return await _session(url, transports, socketio.AsyncClient(reconnection=False, http_session=http))


async def _session(url: str, transports: list[str], client: socketio.AsyncClient) -> list[Any]:
    transcript: list[Any] = []
    disconnected = asyncio.Event()

    @client.on("*")
    def event(name: str, *data: Any) -> None:
        transcript.append([name, *data])

    @client.event
    def disconnect(reason: str) -> None:
        transcript.append(["disconnected", reason])
        disconnected.set()

    await client.connect(url, transports=transports, wait_timeout=TIMEOUT)
    transcript.append(["connected", client.transport()])
    for chat in CHATS:
        transcript.append(["ack", await client.call("chat", chat, timeout=TIMEOUT)])
    # The server says goodbye and disconnects this client. (A client's own disconnect over
    # long-polling waits for its pending GET, which python-engineio's server leaves unanswered
    # until the client's 30 s request timeout.)
    await client.emit("bye", "see you")
    await asyncio.wait_for(disconnected.wait(), TIMEOUT)
    return transcript


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ["WSREPLAY_URL"]
    transcript = {
        "polling": asyncio.run(session(url, ["polling"])),
        "upgraded": asyncio.run(session(url, ["polling", "websocket"])),
    }
    print(json.dumps(transcript), flush=True)


if __name__ == "__main__":
    main()
