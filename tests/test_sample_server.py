"""Tests of the bundled sample staging server, the scripted upstream and wsreplay.jwt, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websocket as websocket_client
from cryptography.hazmat.primitives import hashes
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from tests.support.staging_upstream import ScriptedUpstream, WsScript, require_header
from tests.support.tls import PrivateCA, make_private_ca
from wsreplay.jwt import (
    JWT_PATTERN,
    decode_unverified,
    encode_hs256,
    mint_access_token,
    verify_hs256,
)
from wsreplay.sample_server import (
    DEFAULT_BYPASS_KEY,
    SampleServer,
    SampleServerConfig,
    start_sample_server,
)

TIMEOUT = 5.0
DEFAULT_CONFIG = SampleServerConfig()
SECRET = DEFAULT_CONFIG.jwt_secret
EMAIL = "chat-user@staging.example"
TURN_EVENTS = [
    "agent_started",
    "agent_thinking",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
]

StartServer = Callable[..., Awaitable[SampleServer]]


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Start sample servers on ephemeral ports; all are closed after the test."""
    servers: list[SampleServer] = []

    async def start(config: SampleServerConfig = DEFAULT_CONFIG, **kwargs: Any) -> SampleServer:
        server = await start_sample_server(config=config, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        async with asyncio.timeout(TIMEOUT):
            await server.close()


@pytest.fixture
async def server(start_server: StartServer) -> SampleServer:
    return await start_server()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def token() -> str:
    return mint_access_token(EMAIL, ["read", "write"], SECRET)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def jwt_subprotocol(token: str) -> str:
    return "jwt." + base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode()


async def recv_json(ws: aiohttp.ClientWebSocketResponse | ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        if isinstance(ws, ClientConnection):
            return json.loads(await ws.recv())
        return await ws.receive_json()


async def recv_n(ws: aiohttp.ClientWebSocketResponse | ClientConnection, count: int) -> list[dict[str, Any]]:
    return [await recv_json(ws) for _ in range(count)]


async def open_session(ws: aiohttp.ClientWebSocketResponse | ClientConnection) -> dict[str, Any]:
    """Consume the opening heartbeat and connection_established frames; return the latter."""
    heartbeat, established = await recv_n(ws, 2)
    assert heartbeat["type"] == "ping"
    assert established["type"] == "system_message"
    return established


def event_type(frame: dict[str, Any]) -> str:
    """The agent event type of a frame in any of the three shapes."""
    return frame["event"] if frame["type"] == "system_message" else frame["type"]


def run_and_thread(frame: dict[str, Any]) -> tuple[str, str]:
    """(run_id, thread_id): top level when flat, else inside `data` or `payload`."""
    body = frame if "run_id" in frame else frame.get("data") or frame["payload"]
    return body["run_id"], body["thread_id"]


async def post_auth(
    http: aiohttp.ClientSession, server: SampleServer, headers: dict[str, str], data: str
) -> tuple[int, Any]:
    async with asyncio.timeout(TIMEOUT):
        async with http.post(
            f"{server.http_url}/auth/e2e/test-auth",
            headers={"Content-Type": "application/json", **headers},
            data=data,
        ) as response:
            return response.status, await response.json()


AUTH_BODY = json.dumps({"email": EMAIL, "name": "Chat User", "permissions": ["read", "write"], "simulate_oauth": True})


# ---------------------------------------------------------------- HTTP


async def test_e2e_auth_returns_fresh_staging_tokens(server: SampleServer, http: aiohttp.ClientSession) -> None:
    status, first = await post_auth(http, server, {"X-E2E-Bypass-Key": DEFAULT_BYPASS_KEY}, AUTH_BODY)
    _, second = await post_auth(http, server, {"X-E2E-Bypass-Key": DEFAULT_BYPASS_KEY}, AUTH_BODY)

    assert status == 200
    assert first["token_type"] == "Bearer" and first["expires_in"] == 900
    assert first["user"] == {
        "id": "e2e-chat-user",
        "email": EMAIL,
        "name": "Chat User",
        "permissions": ["read", "write"],
        "oauth_simulated": True,
    }
    claims = verify_hs256(first["access_token"], SECRET)
    assert claims["email"] == EMAIL and claims["type"] == claims["token_type"] == "access"
    assert claims["iss"] == "netra-auth-service" and claims["aud"] == "netra-platform"
    assert claims["exp"] - claims["iat"] == 900
    assert verify_hs256(second["access_token"], SECRET)["jti"] != claims["jti"]
    assert first["refresh_token"] != second["refresh_token"]


@pytest.mark.parametrize(
    ("headers", "detail"),
    [({}, "E2E bypass key required"), ({"X-E2E-Bypass-Key": "wrong"}, "Invalid E2E bypass key")],
)
async def test_e2e_auth_rejects_missing_or_wrong_key(
    server: SampleServer, http: aiohttp.ClientSession, headers: dict[str, str], detail: str
) -> None:
    assert await post_auth(http, server, headers, AUTH_BODY) == (401, {"detail": detail})


async def test_e2e_auth_rejects_bad_json_with_422(server: SampleServer, http: aiohttp.ClientSession) -> None:
    status, body = await post_auth(http, server, {"X-E2E-Bypass-Key": DEFAULT_BYPASS_KEY}, "{not json")
    assert status == 422
    assert "detail" in body


async def test_e2e_auth_honours_configured_key(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(SampleServerConfig(bypass_key="custom"))
    status, _ = await post_auth(http, server, {"X-E2E-Bypass-Key": DEFAULT_BYPASS_KEY}, AUTH_BODY)
    assert status == 401
    status, _ = await post_auth(http, server, {"X-E2E-Bypass-Key": "custom"}, AUTH_BODY)
    assert status == 200


@pytest.mark.parametrize(
    "path", ["/health", "/api/health", "/api/discovery/services", "/api/mcp/config", "/api/mcp/servers"]
)
async def test_health_and_discovery_endpoints(server: SampleServer, http: aiohttp.ClientSession, path: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        async with http.get(server.http_url + path) as response:
            body = await response.json()
    assert response.status == 200
    assert isinstance(body, dict) and body
    if path.endswith("health"):
        assert body["status"] == "healthy"


# ---------------------------------------------------------------- WebSocket authentication


async def test_upgrade_without_token_is_refused_with_403_by_aiohttp(
    server: SampleServer, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with asyncio.timeout(TIMEOUT):
            await http.ws_connect(server.ws_url)
    assert refused.value.status == 403


async def test_upgrade_without_token_is_refused_with_403_by_websockets(server: SampleServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with asyncio.timeout(TIMEOUT):
            await connect(server.ws_url)
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body)["error_code"] == "AUTH_REQUIRED"


async def test_header_auth_opens_session(server: SampleServer, token: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(server.ws_url, additional_headers=bearer(token))
    async with ws:
        heartbeat, established = await recv_n(ws, 2)
    assert heartbeat["type"] == "ping"
    assert heartbeat["server_id"] is None and heartbeat["correlation_id"] is None
    assert heartbeat["data"]["timestamp"] == heartbeat["timestamp"]
    data = established["data"]
    assert data["event"] == "connection_established" and data["connection_ready"] is True
    assert data["user_id"] == "e2e-chat-user" and data["environment"] == "staging"
    assert data["config"]["max_message_size"] == 8192


async def test_token_from_http_auth_works_on_new_websocket_path(
    server: SampleServer, http: aiohttp.ClientSession
) -> None:
    _, body = await post_auth(http, server, {"X-E2E-Bypass-Key": DEFAULT_BYPASS_KEY}, AUTH_BODY)
    async with asyncio.timeout(TIMEOUT):
        ws = await http.ws_connect(f"{server.http_url}/api/v1/websocket", headers=bearer(body["access_token"]))
    async with ws:
        assert (await open_session(ws))["data"]["user_id"] == "e2e-chat-user"


async def test_subprotocol_auth_echoes_token_bearing_value_to_websockets(server: SampleServer, token: str) -> None:
    offered = jwt_subprotocol(token)
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(server.ws_url, subprotocols=[Subprotocol("jwt-auth"), Subprotocol(offered)])
    async with ws:
        assert ws.subprotocol == offered
        await open_session(ws)


async def test_subprotocol_auth_echoes_token_bearing_value_to_aiohttp(
    server: SampleServer, http: aiohttp.ClientSession, token: str
) -> None:
    offered = jwt_subprotocol(token)
    async with asyncio.timeout(TIMEOUT):
        ws = await http.ws_connect(server.ws_url, protocols=("jwt-auth", offered))
    async with ws:
        assert ws.protocol == offered
        await open_session(ws)


async def test_plain_jwt_auth_subprotocol_is_echoed_with_header_auth(
    server: SampleServer, http: aiohttp.ClientSession, token: str
) -> None:
    async with asyncio.timeout(TIMEOUT):
        ws = await http.ws_connect(server.ws_url, protocols=("jwt-auth",), headers=bearer(token))
    async with ws:
        assert ws.protocol == "jwt-auth"
        await open_session(ws)


async def test_query_token_auth(server: SampleServer, http: aiohttp.ClientSession, token: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        ws = await http.ws_connect(server.ws_url, params={"token": token})
    async with ws:
        await open_session(ws)


async def expect_auth_failure_close(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """Read the error_message frame, then check the 1008 close; return the frame."""
    error = await recv_json(ws)
    async with asyncio.timeout(TIMEOUT):
        closing = await ws.receive()
    assert closing.type == aiohttp.WSMsgType.CLOSE
    assert (closing.data, closing.extra) == (1008, "Authentication failed")
    assert ws.close_code == 1008
    return error


@pytest.mark.parametrize(
    "bad_token",
    [
        encode_hs256({"sub": "x", "exp": int(time.time()) + 60}, "another-secret"),
        encode_hs256({"sub": "x", "exp": int(time.time()) - 60}, SECRET),
    ],
    ids=["wrong-secret", "expired"],
)
async def test_bad_token_is_accepted_then_closed_1008(
    server: SampleServer, http: aiohttp.ClientSession, bad_token: str
) -> None:
    async with asyncio.timeout(TIMEOUT):
        ws = await http.ws_connect(server.ws_url, headers=bearer(bad_token))
    async with ws:
        error = await expect_auth_failure_close(ws)
    assert error["type"] == "error_message" and error["error_code"] == "AUTH_REQUIRED"


async def test_test_headers_without_token_are_accepted_then_closed_1008(
    server: SampleServer, http: aiohttp.ClientSession
) -> None:
    async with asyncio.timeout(TIMEOUT):
        ws = await http.ws_connect(server.ws_url, headers={"X-Test-Type": "E2E", "X-E2E-Test": "true"})
    async with ws:
        await expect_auth_failure_close(ws)


async def test_auth_bug_sends_report_error_then_closes_1008(start_server: StartServer, token: str) -> None:
    server = await start_server(SampleServerConfig(auth_bug=True))
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(server.ws_url, additional_headers=bearer(token))
    async with ws:
        error = await recv_json(ws)
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(TIMEOUT):
                await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "Authentication failed")
    assert {key: value for key, value in error.items() if key != "timestamp"} == {
        "type": "error_message",
        "error_code": "AUTH_REQUIRED",
        "error_message": "Authentication failed: Valid JWT token required for WebSocket connection",
        "details": {"environment": "staging", "error": "user_context must be a UserExecutionContext instance"},
        "recovery_suggestions": None,
    }


# ---------------------------------------------------------------- WebSocket conversation


async def test_chat_turns_cycle_through_the_three_event_shapes(
    server: SampleServer, http: aiohttp.ClientSession, token: str
) -> None:
    messages = [
        {"type": "message", "content": "hi", "thread_id": "test_1", "timestamp": time.time()},
        {"type": "user_message", "payload": {"content": "hi", "thread_id": "test_2", "run_id": "run_2"}},
        {"type": "start_agent", "payload": {"user_request": "hi", "thread_id": "test_3", "run_id": "run_3"}},
    ]
    async with asyncio.timeout(TIMEOUT):
        ws = await http.ws_connect(server.ws_url, headers=bearer(token))
    async with ws:
        await open_session(ws)
        turns = []
        for message in messages:
            await ws.send_json(message)
            ack, *events = await recv_n(ws, 1 + len(TURN_EVENTS))
            assert ack == {**ack, "type": "ack", "received_type": message["type"], "status": "acknowledged"}
            turns.append(events)

    flat, wrapped, system = turns
    for events in turns:
        assert [event_type(frame) for frame in events] == TURN_EVENTS
    assert all("payload" in frame and frame["type"] != "system_message" for frame in flat)
    assert flat[1]["payload"].keys() >= {"reasoning", "step_number", "progress_percentage"}
    assert all(frame["critical"] is True and "data" in frame for frame in wrapped)
    assert "thought" in wrapped[1]["data"]
    assert all(frame["type"] == "system_message" and "payload" in frame for frame in system)
    assert run_and_thread(flat[0])[1] == "test_1"
    assert {run_and_thread(frame) for frame in wrapped} == {("run_2", "test_2")}
    assert {run_and_thread(frame) for frame in system} == {("run_3", "test_3")}


async def test_fourth_turn_is_flat_again(server: SampleServer, token: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(server.ws_url, additional_headers=bearer(token))
    async with ws:
        await open_session(ws)
        for _ in range(4):
            await ws.send(json.dumps({"type": "message", "content": "again"}))
            _, *events = await recv_n(ws, 1 + len(TURN_EVENTS))
    assert events[0]["type"] == "agent_started" and "payload" in events[0]


async def test_drop_events_leaves_them_out(start_server: StartServer, token: str) -> None:
    dropped = frozenset({"agent_thinking", "tool_completed"})
    server = await start_server(SampleServerConfig(drop_events=dropped))
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(server.ws_url, additional_headers=bearer(token))
    async with ws:
        await open_session(ws)
        await ws.send(json.dumps({"type": "message", "content": "hi"}))
        await ws.send(json.dumps({"type": "ping", "id": 1}))
        frames = await recv_n(ws, 5)
    types = [frame["type"] for frame in frames]
    assert "pong" in types, "a ping is answered while the turn's events are still being sent"
    types.remove("pong")
    assert types == ["ack", "agent_started", "tool_executing", "agent_completed"]


async def test_event_interval_spaces_the_events(start_server: StartServer, token: str) -> None:
    server = await start_server(SampleServerConfig(event_interval=0.05))
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(server.ws_url, additional_headers=bearer(token))
    async with ws:
        await open_session(ws)
        await ws.send(json.dumps({"type": "message", "content": "hi"}))
        await recv_json(ws)
        started = time.monotonic()
        await recv_n(ws, len(TURN_EVENTS))
        elapsed = time.monotonic() - started
    assert elapsed >= 0.05 * (len(TURN_EVENTS) - 1) * 0.9


async def test_heartbeat_repeats(start_server: StartServer, token: str) -> None:
    server = await start_server(SampleServerConfig(heartbeat_interval=0.05))
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(server.ws_url, additional_headers=bearer(token))
    async with ws:
        await open_session(ws)
        assert [frame["type"] for frame in await recv_n(ws, 2)] == ["ping", "ping"]


async def test_control_frames_and_invalid_text(server: SampleServer, http: aiohttp.ClientSession, token: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        ws = await http.ws_connect(server.ws_url, headers=bearer(token))
    async with ws:
        await open_session(ws)
        await ws.send_json({"type": "ping", "id": 7, "timestamp": time.time()})
        await ws.send_json({"type": "heartbeat"})
        await ws.send_json({"type": "get_status"})
        await ws.send_str("this is not json")
        await ws.send_json({"type": "ping"})
        frames = await recv_n(ws, 5)
    assert [frame["type"] for frame in frames] == ["pong", "heartbeat_ack", "ack", "error_message", "pong"]
    assert frames[2]["received_type"] == "get_status"
    assert frames[3]["error_code"] == "INVALID_MESSAGE"


async def test_binary_frame_gets_binary_reply(server: SampleServer, token: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(server.ws_url, additional_headers=bearer(token))
    async with ws:
        await open_session(ws)
        await ws.send(b"\x00\x01binary")
        async with asyncio.timeout(TIMEOUT):
            reply = await ws.recv()
    assert reply == b"echo:\x00\x01binary"


async def test_client_close_is_a_normal_close(server: SampleServer, http: aiohttp.ClientSession, token: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        ws = await http.ws_connect(server.ws_url, headers=bearer(token))
        await open_session(ws)
        await ws.close()
    assert ws.close_code == 1000


def chat_with_websocket_client(url: str, token: str) -> list[dict[str, Any]]:
    """A synchronous websocket-client session: open, one chat turn, close."""
    ws = websocket_client.create_connection(url, header=[f"Authorization: Bearer {token}"], timeout=TIMEOUT)
    try:
        ws.send(json.dumps({"type": "message", "content": "hello", "thread_id": "test_sync"}))
        return [json.loads(ws.recv()) for _ in range(3 + len(TURN_EVENTS))]
    finally:
        ws.close()


async def test_websocket_client_library_in_a_thread(server: SampleServer, token: str) -> None:
    async with asyncio.timeout(2 * TIMEOUT):
        frames = await asyncio.to_thread(chat_with_websocket_client, server.ws_url, token)
    assert [frame["type"] for frame in frames[:3]] == ["ping", "system_message", "ack"]
    assert [event_type(frame) for frame in frames[3:]] == TURN_EVENTS


# ---------------------------------------------------------------- TLS


async def test_tls_with_private_ca(start_server: StartServer, tmp_path: Path, token: str) -> None:
    ca = make_private_ca(tmp_path)
    server = await start_server(ssl_context=ca.server_ssl_context(["localhost"]))
    assert server.ws_url.startswith("wss://")

    async with aiohttp.ClientSession() as http, asyncio.timeout(TIMEOUT):
        async with http.get(f"{server.http_url}/health", ssl=ca.client_ssl_context()) as response:
            assert (await response.json())["status"] == "healthy"
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(server.ws_url, ssl=ca.client_ssl_context(), additional_headers=bearer(token))
    async with ws:
        await open_session(ws)
    by_name = f"wss://localhost:{server.port}/ws"
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(by_name, ssl=ca.client_ssl_context(), additional_headers=bearer(token))
    async with ws:
        await open_session(ws)


async def test_tls_is_rejected_without_the_private_ca(start_server: StartServer, tmp_path: Path) -> None:
    server = await start_server(ssl_context=make_private_ca(tmp_path).server_ssl_context(["localhost"]))
    with pytest.raises(ssl.SSLCertVerificationError):
        async with asyncio.timeout(TIMEOUT):
            await connect(server.ws_url, ssl=ssl.create_default_context())


def test_private_ca_can_be_mitmproxys_ca(tmp_path: Path) -> None:
    from mitmproxy.certs import CertStore

    ca: PrivateCA = make_private_ca(tmp_path)
    store = CertStore.from_store(ca.write_mitmproxy_confdir(tmp_path / "mitmproxy"), "mitmproxy", 2048)
    assert store.default_ca.fingerprint() == ca.ca_cert.fingerprint(hashes.SHA256())
    assert store.default_ca.cn == "wsreplay test CA"


# ---------------------------------------------------------------- ScriptedUpstream


async def test_scripted_upstream_http_routes_and_recording(http: aiohttp.ClientSession) -> None:
    async with ScriptedUpstream() as upstream:
        upstream.route("POST", "/auth/e2e/test-auth", status=401, json_body={"detail": "Invalid E2E bypass key"})
        async with asyncio.timeout(TIMEOUT):
            async with http.post(f"{upstream.http_url}/auth/e2e/test-auth?x=1", json={"a": 1}) as response:
                assert (response.status, await response.json()) == (401, {"detail": "Invalid E2E bypass key"})
            async with http.get(f"{upstream.http_url}/nowhere") as response:
                assert response.status == 404
    first = upstream.requests[0]
    assert (first.method, first.path, first.query) == ("POST", "/auth/e2e/test-auth", {"x": "1"})
    assert json.loads(first.body) == {"a": 1}


async def test_scripted_upstream_websocket_script(token: str) -> None:
    script = WsScript(
        on_open=({"type": "hello"},),
        reply=lambda message: [b"bin:" + message] if isinstance(message, bytes) else [{"echo": message}],
        refuse=require_header("Authorization"),
        close_after=2,
        close_code=4001,
        close_reason="scripted",
        select_subprotocol=lambda offered: offered[-1] if offered else None,
    )
    async with ScriptedUpstream() as upstream:
        upstream.websocket("/ws", script)
        with pytest.raises(InvalidStatus) as refused:
            async with asyncio.timeout(TIMEOUT):
                await connect(f"{upstream.ws_url}/ws")
        assert refused.value.response.status_code == 403

        offered = jwt_subprotocol(token)
        async with asyncio.timeout(TIMEOUT):
            ws = await connect(
                f"{upstream.ws_url}/ws",
                additional_headers=bearer(token),
                subprotocols=[Subprotocol("jwt-auth"), Subprotocol(offered)],
            )
        async with ws, asyncio.timeout(TIMEOUT):
            assert ws.subprotocol == offered
            assert json.loads(await ws.recv()) == {"type": "hello"}
            await ws.send("one")
            assert json.loads(await ws.recv()) == {"echo": "one"}
            await ws.send(b"two")
            assert await ws.recv() == b"bin:two"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "scripted")

    refused_conn, accepted = upstream.connections
    assert refused_conn.refused_with == 403
    assert accepted.messages == ["one", b"two"]
    assert accepted.headers["Authorization"] == f"Bearer {token}"
    assert accepted.subprotocol == offered


async def test_scripted_upstream_abrupt_drop(http: aiohttp.ClientSession) -> None:
    async with ScriptedUpstream() as upstream:
        upstream.websocket("/ws", WsScript(on_open=("first",), drop_after=1))
        async with asyncio.timeout(TIMEOUT):
            ws = await http.ws_connect(f"{upstream.ws_url}/ws")
            assert (await ws.receive()).data == "first"
            await ws.send_str("trigger")
            dropped = await ws.receive()
            await upstream.connections[0].closed.wait()
    assert dropped.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert ws.close_code == 1006
    assert upstream.connections[0].messages == ["trigger"]


# ---------------------------------------------------------------- wsreplay.jwt


def test_minted_tokens_have_staging_claims_and_fresh_ids() -> None:
    first = mint_access_token(EMAIL, ["read"], SECRET, lifetime=60)
    second = mint_access_token(EMAIL, ["read"], SECRET, lifetime=60)
    header, claims = decode_unverified(first)
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert claims.keys() == {
        "sub",
        "iat",
        "exp",
        "type",
        "token_type",
        "iss",
        "aud",
        "jti",
        "env",
        "email",
        "permissions",
    }
    assert isinstance(claims["iat"], int) and claims["exp"] == claims["iat"] + 60
    assert claims["env"] == "staging" and claims["permissions"] == ["read"]
    assert verify_hs256(first, SECRET) == claims
    assert decode_unverified(second)[1]["jti"] != claims["jti"]


def test_verify_rejects_tampering_wrong_secret_and_expiry() -> None:
    token = mint_access_token(EMAIL, [], SECRET)
    header, claims, signature = token.split(".")
    forged = encode_hs256({**decode_unverified(token)[1], "email": "evil@x"}, SECRET).split(".")[1]
    with pytest.raises(ValueError, match="signature"):
        verify_hs256(f"{header}.{forged}.{signature}", SECRET)
    with pytest.raises(ValueError, match="signature"):
        verify_hs256(token, "other")
    with pytest.raises(ValueError, match="expired"):
        verify_hs256(encode_hs256({"exp": int(time.time()) - 1}, SECRET), SECRET)


@pytest.mark.parametrize("text", ["", "abc", "a.b.c", "eyJub3Q.eyJqc29u.sig", "x.y"])
def test_decode_unverified_rejects_non_jwts(text: str) -> None:
    with pytest.raises(ValueError, match="not a JWT"):
        decode_unverified(text)


def test_jwt_pattern_finds_embedded_tokens() -> None:
    token = mint_access_token(EMAIL, [], SECRET)
    text = f'{{"access_token":"{token}"}} Authorization: Bearer {token}; ?token={token}&x=1 jwt.{token}'
    assert JWT_PATTERN.findall(text) == [token] * 4
    assert JWT_PATTERN.search("plain text, eyJ but no token") is None
