"""The bundled sample staging server.

An aiohttp application that speaks the staging chat protocol (E2E bypass auth,
health endpoints, an authenticated WebSocket streaming agent events) so wsreplay
can be demonstrated and tested without the real staging system.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from wsreplay.jwt import e2e_user_id, encode_hs256, mint_access_token, verify_hs256

__all__ = [
    "AGENT_EVENT_TYPES",
    "DEFAULT_BYPASS_KEY",
    "SampleServer",
    "SampleServerConfig",
    "WS_PATHS",
    "agent_event_frames",
    "build_app",
    "serve_forever",
    "start_sample_server",
]

DEFAULT_BYPASS_KEY = "sample-e2e-bypass-key"
WS_PATHS = ("/ws", "/api/v1/websocket")
AGENT_EVENT_TYPES = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")
CHAT_MESSAGE_TYPES = frozenset({"message", "user_message", "start_agent"})
TEST_HEADERS = ("X-Test-Type", "X-Test-Environment", "X-E2E-Test", "X-Test-Session")
AUTH_FAILED_REASON = "Authentication failed"
POLICY_VIOLATION = 1008
GOING_AWAY = 1001
MAX_MESSAGE_SIZE = 8192
AGENT_NAME = "triage_agent"


@dataclass(frozen=True)
class SampleServerConfig:
    bypass_key: str = DEFAULT_BYPASS_KEY
    jwt_secret: str = "sample-staging-jwt-secret"
    auth_bug: bool = False
    """Reproduce the report: accept, send the AUTH_REQUIRED error frame, close 1008."""
    drop_events: frozenset[str] = frozenset()
    """Agent event types that are not sent (the "missing critical events" regression)."""
    event_interval: float = 0.0
    """Seconds between the agent events of one chat turn."""
    heartbeat_interval: float = 30.0


def _now() -> float:
    return time.time()


def _iso_now() -> str:
    return datetime.now(UTC).isoformat()


def _json_dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


# ---------------------------------------------------------------- HTTP endpoints


def _detail(status: int, detail: Any) -> web.Response:
    return web.json_response({"detail": detail}, status=status)


def _unprocessable(message: str) -> web.Response:
    return _detail(422, [{"loc": ["body"], "msg": message, "type": "value_error"}])


def _parse_auth_body(raw: str) -> dict[str, Any] | str:
    """The validated E2E auth body, or an error message."""
    try:
        body = json.loads(raw)
    except ValueError:
        return "body is not valid JSON"
    if not isinstance(body, dict):
        return "body must be a JSON object"
    email = body.get("email")
    if not isinstance(email, str) or "@" not in email:
        return "field 'email' must be an email address"
    permissions = body.get("permissions", ["read", "write"])
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        return "field 'permissions' must be a list of strings"
    name = body.get("name", email.partition("@")[0])
    if not isinstance(name, str):
        return "field 'name' must be a string"
    return {"email": email, "name": name, "permissions": permissions}


def _auth_handler(config: SampleServerConfig) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def e2e_test_auth(request: web.Request) -> web.Response:
        key = request.headers.get("X-E2E-Bypass-Key")
        if not key:
            return _detail(401, "E2E bypass key required")
        if key != config.bypass_key:
            return _detail(401, "Invalid E2E bypass key")
        body = _parse_auth_body(await request.text())
        if isinstance(body, str):
            return _unprocessable(body)
        return web.json_response(_token_response(body, config.jwt_secret))

    return e2e_test_auth


def _token_response(body: dict[str, Any], secret: str) -> dict[str, Any]:
    email, permissions = body["email"], body["permissions"]
    user_id = e2e_user_id(email)
    issued_at = int(_now())
    refresh_claims = {
        "sub": user_id,
        "iat": issued_at,
        "exp": issued_at + 7 * 24 * 3600,
        "type": "refresh",
        "token_type": "refresh",
        "jti": str(uuid.uuid4()),
        "env": "staging",
    }
    return {
        "access_token": mint_access_token(email, permissions, secret),
        "refresh_token": encode_hs256(refresh_claims, secret),
        "token_type": "Bearer",
        "expires_in": 900,
        "user": {
            "id": user_id,
            "email": email,
            "name": body["name"],
            "permissions": permissions,
            "oauth_simulated": True,
        },
    }


def _static_json(payload: dict[str, Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(payload)

    return handler


def _health_payload() -> dict[str, Any]:
    return {"status": "healthy", "service": "netra-backend", "environment": "staging", "version": "sample"}


def _discovery_payload() -> dict[str, Any]:
    return {
        "services": {
            "backend": {"status": "healthy", "websocket_paths": list(WS_PATHS)},
            "auth": {"status": "healthy", "endpoints": ["/auth/e2e/test-auth"]},
        },
        "environment": "staging",
    }


def _mcp_config_payload() -> dict[str, Any]:
    return {"enabled": True, "transport": "websocket", "max_message_size": MAX_MESSAGE_SIZE, "servers": ["netra-tools"]}


def _mcp_servers_payload() -> dict[str, Any]:
    return {"servers": [{"name": "netra-tools", "status": "connected", "tools": ["data_analyzer", "cost_optimizer"]}]}


# ---------------------------------------------------------------- WebSocket auth


@dataclass(frozen=True)
class _AuthAttempt:
    token: str | None
    subprotocol: str | None
    """The subprotocol echoed back on accept: the token-bearing one, else plain `jwt-auth`."""


def _offered_subprotocols(request: web.Request) -> list[str]:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [value.strip() for value in header.split(",") if value.strip()]


def _token_from_subprotocol(value: str) -> str | None:
    encoded = value.removeprefix("jwt.")
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        return None


def _auth_attempt(request: web.Request) -> _AuthAttempt:
    authorization = request.headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    bearer = credentials.strip() if scheme.lower() == "bearer" else ""
    offered = _offered_subprotocols(request)
    token_protocol = next((p for p in offered if p.startswith("jwt.")), None)
    from_protocol = _token_from_subprotocol(token_protocol) if token_protocol else None
    token = bearer or from_protocol or request.query.get("token") or None
    echoed = token_protocol or ("jwt-auth" if "jwt-auth" in offered else None)
    return _AuthAttempt(token=token, subprotocol=echoed)


def _has_test_headers(request: web.Request) -> bool:
    return any(name in request.headers for name in TEST_HEADERS)


def _auth_error_frame(error: str) -> dict[str, Any]:
    return {
        "type": "error_message",
        "error_code": "AUTH_REQUIRED",
        "error_message": "Authentication failed: Valid JWT token required for WebSocket connection",
        "details": {"environment": "staging", "error": error},
        "timestamp": _now(),
        "recovery_suggestions": None,
    }


def _check_token(token: str | None, config: SampleServerConfig) -> dict[str, Any] | str:
    """The verified claims, or why authentication failed."""
    if config.auth_bug:
        return "user_context must be a UserExecutionContext instance"
    if token is None:
        return "No JWT token provided"
    try:
        return verify_hs256(token, config.jwt_secret)
    except ValueError as exc:
        return str(exc)


# ---------------------------------------------------------------- server frames


def _heartbeat_frame() -> dict[str, Any]:
    now = _now()
    return {"type": "ping", "data": {"timestamp": now}, "timestamp": now, "server_id": None, "correlation_id": None}


def _connection_established_frame(connection_id: str, user_id: str, heartbeat_interval: float) -> dict[str, Any]:
    return {
        "type": "system_message",
        "data": {
            "event": "connection_established",
            "connection_id": connection_id,
            "user_id": user_id,
            "server_time": _iso_now(),
            "connection_ready": True,
            "environment": "staging",
            "config": {"heartbeat_interval": heartbeat_interval, "max_message_size": MAX_MESSAGE_SIZE},
        },
        "timestamp": _now(),
    }


def _invalid_message_frame(reason: str) -> dict[str, Any]:
    return {
        "type": "error_message",
        "error_code": "INVALID_MESSAGE",
        "error_message": reason,
        "details": {"environment": "staging"},
        "timestamp": _now(),
        "recovery_suggestions": ["Send a JSON object with a 'type' field"],
    }


def _replies_to(message: dict[str, Any]) -> dict[str, Any]:
    """The immediate reply to a typed client frame."""
    kind = message["type"]
    if kind == "ping":
        return {"type": "pong", "data": {"timestamp": _now()}, "timestamp": _now()}
    if kind == "heartbeat":
        return {"type": "heartbeat_ack", "timestamp": _now()}
    return {"type": "ack", "received_type": kind, "status": "acknowledged", "timestamp": _now()}


@dataclass(frozen=True)
class _Turn:
    number: int
    thread_id: str
    run_id: str
    request_id: str
    user_request: str


def _turn_for(message: dict[str, Any], number: int) -> _Turn:
    payload: dict[str, Any] = nested if isinstance(nested := message.get("payload"), dict) else {}
    sources = (message, payload)

    def pick(*keys: str) -> str | None:
        values = (str(source[key]) for key in keys for source in sources if source.get(key) is not None)
        return next(values, None)

    return _Turn(
        number=number,
        thread_id=pick("thread_id") or f"thread_{uuid.uuid4().hex[:12]}",
        run_id=pick("run_id") or f"run_{uuid.uuid4().hex[:12]}",
        request_id=f"req_{uuid.uuid4().hex[:12]}",
        user_request=pick("content", "user_request", "message") or "",
    )


def _event_payloads(turn: _Turn) -> list[tuple[str, dict[str, Any]]]:
    """The agent events of one turn, in order, as (type, flat payload)."""
    tool = "data_analyzer"
    return [
        ("agent_started", {"status": "started", "user_request": turn.user_request}),
        ("agent_thinking", {"reasoning": "Understanding the request", "step_number": 1, "progress_percentage": 25}),
        ("agent_thinking", {"reasoning": "Choosing a tool", "step_number": 2, "progress_percentage": 50}),
        ("tool_executing", {"tool_name": tool, "parameters": {"query": turn.user_request}}),
        ("tool_completed", {"tool_name": tool, "result": {"rows": 3, "summary": "ok"}, "execution_time_ms": 42}),
        ("agent_completed", {"result": {"answer": "Analysis complete"}, "execution_time_ms": 120}),
    ]


def _flat_event(kind: str, payload: dict[str, Any], turn: _Turn) -> dict[str, Any]:
    return {
        "type": kind,
        "run_id": turn.run_id,
        "thread_id": turn.thread_id,
        "agent_name": AGENT_NAME,
        "timestamp": _iso_now(),
        "payload": payload,
    }


def _wrapped_event(kind: str, payload: dict[str, Any], turn: _Turn) -> dict[str, Any]:
    data = {**payload, "run_id": turn.run_id, "thread_id": turn.thread_id, "request_id": turn.request_id}
    if kind == "agent_thinking":
        data["thought"] = payload["reasoning"]
    return {"type": kind, "data": data, "timestamp": _iso_now(), "critical": True}


def _system_event(kind: str, payload: dict[str, Any], turn: _Turn) -> dict[str, Any]:
    return {
        "type": "system_message",
        "event": kind,
        "payload": {**payload, "run_id": turn.run_id, "thread_id": turn.thread_id, "agent_name": AGENT_NAME},
        "timestamp": _iso_now(),
    }


_SHAPES = (_flat_event, _wrapped_event, _system_event)


def agent_event_frames(
    turn_number: int, message: dict[str, Any], drop: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """The agent event frames for chat turn `turn_number` (1-based) answering `message`."""
    turn = _turn_for(message, turn_number)
    shape = _SHAPES[(turn_number - 1) % len(_SHAPES)]
    return [shape(kind, payload, turn) for kind, payload in _event_payloads(turn) if kind not in drop]


# ---------------------------------------------------------------- connections


@dataclass
class _Connection:
    ws: web.WebSocketResponse
    config: SampleServerConfig
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    turn_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    turns: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.send_lock:
            if not self.ws.closed:
                await self.ws.send_str(_json_dumps(frame))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def heartbeats(self) -> None:
        with contextlib.suppress(ConnectionError):
            while not self.ws.closed:
                await asyncio.sleep(self.config.heartbeat_interval)
                await self.send(_heartbeat_frame())

    async def run_turn(self, message: dict[str, Any]) -> None:
        async with self.turn_lock:
            self.turns += 1
            frames = agent_event_frames(self.turns, message, self.config.drop_events)
            with contextlib.suppress(ConnectionError):
                for index, frame in enumerate(frames):
                    if index and self.config.event_interval > 0:
                        await asyncio.sleep(self.config.event_interval)
                    await self.send(frame)

    async def on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            await self.send(_invalid_message_frame("Message is not valid JSON"))
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.send(_invalid_message_frame("Message must be a JSON object with a 'type' field"))
            return
        await self.send(_replies_to(message))
        if message["type"] in CHAT_MESSAGE_TYPES:
            self.spawn(self.run_turn(message))

    async def on_binary(self, data: bytes) -> None:
        async with self.send_lock:
            await self.ws.send_bytes(b"echo:" + data)

    async def cancel_tasks(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _refusal() -> web.Response:
    return web.json_response({"detail": "WebSocket authentication required", "error_code": "AUTH_REQUIRED"}, status=403)


def _websocket_handler(
    config: SampleServerConfig, open_sockets: set[web.WebSocketResponse]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def websocket(request: web.Request) -> web.StreamResponse:
        attempt = _auth_attempt(request)
        if attempt.token is None and not _has_test_headers(request):
            return _refusal()
        ws = web.WebSocketResponse(protocols=(attempt.subprotocol,) if attempt.subprotocol else (), timeout=5.0)
        if not ws.can_prepare(request).ok:
            return web.json_response({"detail": "WebSocket upgrade required"}, status=400)
        await ws.prepare(request)
        open_sockets.add(ws)
        try:
            await _serve_connection(ws, attempt, config)
        finally:
            open_sockets.discard(ws)
        return ws

    return websocket


async def _serve_connection(ws: web.WebSocketResponse, attempt: _AuthAttempt, config: SampleServerConfig) -> None:
    conn = _Connection(ws, config)
    claims = _check_token(attempt.token, config)
    if isinstance(claims, str):
        await conn.send(_auth_error_frame(claims))
        await ws.close(code=POLICY_VIOLATION, message=AUTH_FAILED_REASON.encode())
        return
    await conn.send(_heartbeat_frame())
    connection_id = f"conn_{uuid.uuid4().hex[:16]}"
    await conn.send(_connection_established_frame(connection_id, str(claims.get("sub")), config.heartbeat_interval))
    conn.spawn(conn.heartbeats())
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await conn.on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await conn.on_binary(msg.data)
    except ConnectionError:
        pass
    finally:
        await conn.cancel_tasks()


# ---------------------------------------------------------------- app and server


def build_app(config: SampleServerConfig) -> web.Application:
    """The aiohttp application implementing the staging protocol."""
    app = web.Application()
    open_sockets: set[web.WebSocketResponse] = set()

    async def close_open_sockets(app: web.Application) -> None:
        closing = [ws.close(code=GOING_AWAY, message=b"Server shutdown") for ws in list(open_sockets)]
        await asyncio.gather(*closing, return_exceptions=True)

    app.on_shutdown.append(close_open_sockets)
    app.router.add_post("/auth/e2e/test-auth", _auth_handler(config))
    app.router.add_get("/health", _static_json(_health_payload()))
    app.router.add_get("/api/health", _static_json(_health_payload()))
    app.router.add_get("/api/discovery/services", _static_json(_discovery_payload()))
    app.router.add_get("/api/mcp/config", _static_json(_mcp_config_payload()))
    app.router.add_get("/api/mcp/servers", _static_json(_mcp_servers_payload()))
    websocket = _websocket_handler(config, open_sockets)
    for path in WS_PATHS:
        app.router.add_get(path, websocket)
    return app


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass
class SampleServer:
    """A running sample staging server."""

    host: str
    port: int
    runner: web.AppRunner
    tls: bool = False

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{_url_host(self.host)}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{_url_host(self.host)}:{self.port}/ws"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_sample_server(
    host: str = "127.0.0.1",
    port: int = 0,
    config: SampleServerConfig = SampleServerConfig(),
    ssl_context: ssl.SSLContext | None = None,
) -> SampleServer:
    """Start the sample server; with port 0 the bound ephemeral port is in `.port`."""
    runner = web.AppRunner(build_app(config), handle_signals=False, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    return SampleServer(host=host, port=bound_port, runner=runner, tls=ssl_context is not None)


async def serve_forever(
    host: str,
    port: int,
    config: SampleServerConfig,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Run the sample server until cancelled."""
    server = await start_sample_server(host, port, config, ssl_context)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()
