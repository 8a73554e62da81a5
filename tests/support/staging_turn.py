"""One chat turn against the staging protocol with `websockets`: a fresh thread_id, a
user_message, the agent events up to agent_completed. Prints a JSON transcript as its last line.

Usage: python staging_turn.py TOKEN   (the proxy's URL comes from WSREPLAY_WS_URL)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import Any

from websockets.asyncio.client import connect

TIMEOUT = 15.0
MAX_FRAMES = 64


def event_of(frame: dict[str, Any]) -> str:
    return frame["event"] if frame["type"] == "system_message" else frame["type"]


async def main(token: str) -> dict[str, Any]:
    thread_id = f"thread_{uuid.uuid4().hex[:12]}"
    events: list[tuple[str, str]] = []
    url = f"{os.environ['WSREPLAY_WS_URL']}/ws"
    async with asyncio.timeout(TIMEOUT), connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        for _ in range(MAX_FRAMES):
            frame = json.loads(await ws.recv())
            if frame["type"] == "system_message" and "event" not in frame:
                message = {"type": "user_message", "payload": {"content": "Weather in Paris?", "thread_id": thread_id}}
                await ws.send(json.dumps(message))
                continue
            kind = event_of(frame)
            if kind.startswith(("agent_", "tool_")):
                body = frame if "thread_id" in frame else frame.get("data") or frame["payload"]
                events.append((kind, body["thread_id"]))
            if kind == "agent_completed":
                break
    return {"thread_id": thread_id, "events": events, "close": ws.close_code}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
