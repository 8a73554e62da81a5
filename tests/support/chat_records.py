"""Recordings of the staging chat session built in memory: good, regressed, failing (for diff, verify, interop)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsreplay.cassette import Cassette, write_cassette
from wsreplay.records import (
    Annotation,
    CassetteHeader,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    Record,
    WebSocketClose,
    WebSocketFrame,
    WebSocketOpen,
)

AGENT_EVENTS = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")


AUTH_FAILED = {
    "type": "error_message",
    "error_code": "AUTH_REQUIRED",
    "error_message": "Authentication failed: Valid JWT token required for WebSocket connection",
    "details": {"environment": "staging", "error": "user_context must be a UserExecutionContext instance"},
}


AUTH_OK = {
    "access_token": "eyJ.token.sig",
    "refresh_token": "refresh",
    "token_type": "Bearer",
    "expires_in": 900,
    "user": {"id": "e2e-test", "email": "e2e@example.test", "permissions": ["read"], "oauth_simulated": True},
}


def agent_frame(event: str, shape: str, step: int) -> dict[str, Any]:
    """An agent event in one of the protocol's three shapes."""
    if shape == "flat":
        return {"type": event, "run_id": "run-1", "agent_name": "triage", "payload": {"step_number": step}}
    if shape == "wrapped":
        return {"type": event, "data": {"thought": "...", "run_id": "run-1"}, "critical": True}
    return {"type": "system_message", "event": event, "payload": {"run_id": "run-1", "step": step}}


def text_frame(record_id: int, time: float, from_client: bool, message: Any) -> WebSocketFrame:
    return WebSocketFrame(record_id, time, from_client, True, json.dumps(message).encode())


def auth_exchange(record_id: int, time: float, status: int = 200) -> HttpExchange:
    body = AUTH_OK if status == 200 else {"detail": "Invalid E2E bypass key"}
    request = HttpRequest(
        "POST",
        "https",
        "auth.staging.example",
        443,
        "/auth/e2e/test-auth",
        headers=(("Content-Type", "application/json"), ("X-E2E-Bypass-Key", "key")),
        body=json.dumps({"email": "e2e@example.test", "simulate_oauth": True}).encode(),
    )
    response = HttpResponse(
        status,
        "OK" if status == 200 else "Unauthorized",
        headers=(("Content-Type", "application/json"),),
        body=json.dumps(body).encode(),
    )
    return HttpExchange(record_id, time, request, response, duration=0.05)


def upgrade(record_id: int, time: float, status: int = 101, duration: float = 0.0) -> WebSocketOpen:
    request = HttpRequest(
        "GET",
        "https",
        "api.staging.example",
        443,
        "/ws",
        query="v=1",
        headers=(("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Authorization", "Bearer eyJ.token.sig")),
    )
    body = b"" if status == 101 else b'{"detail": "upgrade refused"}'
    response = HttpResponse(status, headers=(("Upgrade", "websocket"),), body=body)
    return WebSocketOpen(record_id, time, request, response, duration)


def chat_session(
    events: tuple[str, ...] = AGENT_EVENTS,
    *,
    shape: str = "flat",
    auth_status: int = 200,
    chat_type: str = "message",
    auth_failure: bool = False,
) -> list[Record]:
    """Auth POST, then a WebSocket: heartbeat, connection_established, one chat turn, close."""
    records: list[Record] = [auth_exchange(1, 0.0, auth_status), upgrade(2, 0.2)]
    records += [
        text_frame(2, 0.21, False, {"type": "ping", "data": {"timestamp": 1.0}}),
        text_frame(2, 0.22, False, {"type": "system_message", "data": {"event": "connection_established"}}),
        text_frame(2, 0.30, True, {"type": chat_type, "content": "weather in Paris?", "thread_id": "test_1"}),
        text_frame(2, 0.31, False, {"type": "ack", "received_type": chat_type, "status": "acknowledged"}),
    ]
    if auth_failure:
        records += [
            text_frame(2, 0.32, False, AUTH_FAILED),
            WebSocketClose(2, 0.33, 1008, "Authentication failed", "server"),
        ]
        return records
    records += [
        text_frame(2, round(0.4 + 0.1 * step, 6), False, agent_frame(event, shape, step))
        for step, event in enumerate(events)
    ]
    return [*records, WebSocketClose(2, 1.5, 1000, "", "client")]


REGRESSED_EVENTS = ("agent_started", "tool_completed", "agent_completed")


HOSTILE_TEXT = '</script><script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
"""Frame text that would run script if a report injected it as HTML."""


def demo_session() -> list[Record]:
    """What ``wsreplay demo`` records: the chat turn with a binary frame, a refused upgrade,
    the auth bug (error frame, close 1008), the 401 of a wrong bypass key, and the redaction note."""
    good = chat_session()
    binary = WebSocketFrame(2, 1.45, True, False, b"\x00\x01wsreplay\xff")
    hostile = text_frame(2, 1.46, True, {"type": "message", "content": HOSTILE_TEXT})
    return [
        *good[:-1],
        binary,
        hostile,
        good[-1],
        upgrade(3, 1.6, 403),
        upgrade(4, 1.7),
        text_frame(4, 1.71, False, AUTH_FAILED),
        WebSocketClose(4, 1.72, 1008, "Authentication failed", "server"),
        auth_exchange(5, 1.8, 401),
        Annotation(0, 1.9, {"redactions": [{"kind": "header", "where": "request X-E2E-Bypass-Key", "count": 2}]}),
    ]


def write_session(path: Path, records: Sequence[Record], *, age: float = 0.0, upstream: str | None = None) -> Path:
    """Write `records` as a cassette whose header says it was created `age` seconds ago."""
    header = CassetteHeader(time.time() - age, "0.1.0", upstream=upstream, metadata={"suite": "e2e"})
    write_cassette(path, Cassette(header, list(records)))
    return path
