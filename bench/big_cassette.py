"""Build big cassettes for the "big cassette" benchmark: an agent streaming tokens for a long time.

`write_big_cassette` writes, with :class:`~wsreplay.cassette.CassetteWriter`, a token POST
and then `connections` concurrent WebSocket chat sessions, their frames interleaved as
concurrent sessions interleave: each turn is a client ``message`` frame answered by
``agent_started``, many ``agent_thinking`` token frames of about 200 bytes, ``tool_executing``,
``tool_completed`` and ``agent_completed``. Every session ends with a normal close.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from wsreplay.cassette import CassetteWriter
from wsreplay.records import (
    CassetteHeader,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    WebSocketClose,
    WebSocketOpen,
)

TOKENS_PER_TURN = 1000
"""``agent_thinking`` frames per chat turn."""
FRAME_GAP = 0.000_05
"""Recorded seconds between two frames of the cassette."""
HOST = "staging.example"


def _upgrade(number: int) -> HttpRequest:
    return HttpRequest(
        "GET",
        "http",
        HOST,
        80,
        "/ws",
        f"session={number}",
        headers=(
            ("Host", HOST),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ),
    )


def _accepted() -> HttpResponse:
    return HttpResponse(
        101,
        "Switching Protocols",
        headers=(("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")),
    )


def _event(kind: str, session: int, turn: int, step: int) -> bytes:
    data = {
        "type": kind,
        "payload": {
            "run_id": f"run-{session}-{turn}",
            "step_number": step,
            "reasoning": "The agent keeps streaming its reasoning one token at a time, word by word",
        },
    }
    return json.dumps(data, separators=(",", ":")).encode()


def _turn(session: int, turn: int) -> list[tuple[bool, bytes]]:
    """One chat turn's frames: (from the client, payload)."""
    question = json.dumps({"type": "message", "payload": {"content": f"question {turn}", "thread": session}}).encode()
    frames = [(True, question), (False, _event("agent_started", session, turn, 0))]
    frames += [(False, _event("agent_thinking", session, turn, step)) for step in range(1, TOKENS_PER_TURN + 1)]
    frames += [(False, _event(kind, session, turn, 0)) for kind in ("tool_executing", "tool_completed", "agent_completed")]
    return frames


def write_big_cassette(path: Path, target_bytes: int, connections: int = 20) -> dict[str, int]:
    """Write a cassette of about `target_bytes` to `path`; its frame and turn counts."""
    header = CassetteHeader(created=time.time(), wsreplay_version="bench", upstream=f"reverse:http://{HOST}")
    clock = 0.0
    frames = turns = 0
    with CassetteWriter(path, header, overwrite=True) as writer:
        token = HttpRequest("POST", "http", HOST, 80, "/auth/e2e/token", body=b'{"bypass_key":"REDACTED"}')
        answer = HttpResponse(200, "OK", headers=(("Content-Type", "application/json"),), body=b'{"token":"t"}')
        writer.write(HttpExchange(1, clock, token, answer, 0.01))
        for number in range(connections):
            writer.write(WebSocketOpen(number + 2, clock, _upgrade(number), _accepted(), 0.01))
        clock += 0.01
        turn = 0
        while writer.bytes_written < target_bytes:
            turn += 1
            per_session = [_turn(number, turn) for number in range(connections)]
            for position in range(len(per_session[0])):
                for number, session_frames in enumerate(per_session):
                    from_client, payload = session_frames[position]
                    clock += FRAME_GAP
                    writer.write_frame(number + 2, clock, from_client, True, payload)
            frames += connections * len(per_session[0])
            turns += connections
        for number in range(connections):
            clock += FRAME_GAP
            writer.write(WebSocketClose(number + 2, clock, 1000, "bye", "client"))
    return {"frames": frames, "turns": turns, "bytes": path.stat().st_size}


if __name__ == "__main__":
    import sys

    print(write_big_cassette(Path(sys.argv[1]), int(float(sys.argv[2]) * 1_000_000)))
