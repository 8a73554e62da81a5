"""The staging scenario served by the scripted upstream (a server that is not the sample)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable

from aiohttp import web

from tests.support.staging_upstream import ScriptedUpstream, WsScript, require_header

AUTH_FAILURE_FRAME = {
    "type": "error_message",
    "error_code": "AUTH_REQUIRED",
    "error_message": "Authentication failed: Valid JWT token required for WebSocket connection",
    "details": {"environment": "staging", "error": "user_context must be a UserExecutionContext instance"},
    "timestamp": 1757292881.27,
    "recovery_suggestions": None,
}
AGENT_EVENTS = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")
GREETING: tuple[dict, ...] = (
    {"type": "ping", "data": {"timestamp": 1.0}, "timestamp": 1.0, "server_id": None},
    {"type": "system_message", "data": {"event": "connection_established", "connection_ready": True}},
)
"""What `/ws` sends as soon as the upgrade is accepted."""
REQUIRE_AUTHORIZATION = require_header("Authorization")


def agent_turn(message: str | bytes) -> list[str | bytes | dict]:
    """The frames `/ws` answers a client message with: an ack and the five agent events (a binary is echoed)."""
    if isinstance(message, bytes):
        return [b"echo:" + message]
    received_type = json.loads(message).get("type", "unknown")
    frames: list[str | bytes | dict] = [{"type": "ack", "received_type": received_type, "status": "acknowledged"}]
    for step, event in enumerate(AGENT_EVENTS):
        frames.append({"type": event, "run_id": "run-1", "agent_name": "triage", "payload": {"step": step}})
    return frames


def _select_token_subprotocol(offered: list[str]) -> str | None:
    return next((value for value in offered if value.startswith("jwt.")), None)


def require_token_subprotocol(request: web.Request) -> int | None:
    """403 unless a ``jwt.<token>`` subprotocol is offered (how a browser's WebSocket authenticates)."""
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    return None if any(value.strip().startswith("jwt.") for value in offered.split(",")) else 403


def browser_staging_upstream() -> ScriptedUpstream:
    """The staging scenario for a browser-like client: upgrades authenticate by subprotocol,
    and ``/drop`` greets, then loses the connection (no close frame) after the client's first message."""
    upstream = staging_upstream(refuse=require_token_subprotocol)
    upstream.websocket(
        "/drop",
        WsScript(
            on_open=("hello",),
            drop_after=1,
            refuse=require_token_subprotocol,
            select_subprotocol=_select_token_subprotocol,
        ),
    )
    return upstream


def staging_upstream(
    ssl_context: ssl.SSLContext | None = None,
    host: str = "127.0.0.1",
    refuse: Callable[[web.Request], int | None] = REQUIRE_AUTHORIZATION,
) -> ScriptedUpstream:
    """The staging scenario; `refuse` decides which upgrades are refused (default: without ``Authorization``)."""
    upstream = ScriptedUpstream(ssl_context=ssl_context, host=host)
    upstream.route("POST", "/auth/e2e/test-auth", status=401, json_body={"detail": "Invalid E2E bypass key"})
    upstream.route("GET", "/health", json_body={"status": "healthy"})
    upstream.websocket(
        "/ws",
        WsScript(
            on_open=GREETING,
            reply=agent_turn,
            refuse=refuse,
            select_subprotocol=_select_token_subprotocol,
        ),
    )
    upstream.websocket(
        "/ws-bug",
        WsScript(
            on_open=(AUTH_FAILURE_FRAME,),
            close_after=0,
            close_code=1008,
            close_reason="Authentication failed",
            refuse=refuse,
            select_subprotocol=_select_token_subprotocol,
        ),
    )
    return upstream
