"""``diff``: two recordings of the staging chat session, compared connection by connection.

The session builders here are shared with test_verify and test_interop.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.compare import DiffOptions, diff_records, event_name, json_shape
from proxy.records import (
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


def upgrade(record_id: int, time: float, status: int = 101) -> WebSocketOpen:
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
    return WebSocketOpen(record_id, time, request, HttpResponse(status, headers=(("Upgrade", "websocket"),), body=body))


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


def lines_of(a: list[Record], b: list[Record], **options: Any) -> list[str]:
    return diff_records(a, b, DiffOptions(**options)).lines()


def test_same_sessions_are_the_same() -> None:
    result = diff_records(chat_session(), chat_session())
    assert result.same and result.exit_status == 0
    assert result.lines() == ["no differences"]
    assert result.as_dict() == {"same": True, "changes": []}


def test_dropped_events_are_named_exactly() -> None:
    result = diff_records(chat_session(), chat_session(REGRESSED_EVENTS))
    assert not result.same and result.exit_status == 1
    assert result.lines() == ["WS /ws: missing server events: agent_thinking, tool_executing"]
    [change] = result.as_dict()["changes"]
    assert change["kind"] == "missing_events"
    assert change["events"] == {"agent_thinking": 1, "tool_executing": 1}


def test_dropped_events_are_found_in_every_shape() -> None:
    for shape in ("flat", "wrapped", "system_message"):
        lines = lines_of(chat_session(shape=shape), chat_session(REGRESSED_EVENTS, shape=shape))
        assert lines == ["WS /ws: missing server events: agent_thinking, tool_executing"], shape


def test_extra_and_reordered_events() -> None:
    extra = lines_of(chat_session(), chat_session((*AGENT_EVENTS[:2], "agent_thinking", *AGENT_EVENTS[2:])))
    assert extra == ["WS /ws: extra server events: agent_thinking"]
    swapped = ("agent_started", "agent_thinking", "tool_completed", "tool_executing", "agent_completed")
    [line] = lines_of(chat_session(), chat_session(swapped))
    assert line.startswith("WS /ws: order of server events changed: ")
    assert "tool_executing > tool_completed" in line and "tool_completed > tool_executing" in line


def test_auth_failure_close_is_named() -> None:
    lines = lines_of(chat_session(), chat_session(auth_failure=True), threshold=None)
    assert "WS /ws: extra server events: error_message" in lines
    assert (
        "WS /ws: close code 1000 became 1008; close reason '' became 'Authentication failed'; "
        "closed by client became server"
    ) in lines
    assert any(line.startswith("WS /ws: missing server events: agent_completed, agent_started") for line in lines)


def test_status_change_is_named_with_the_body_shape() -> None:
    result = diff_records(chat_session(), chat_session(auth_status=401))
    assert result.lines() == [
        "POST /auth/e2e/test-auth: 200 became 401",
        "POST /auth/e2e/test-auth: response body shape changed: "
        "without access_token, expires_in, refresh_token, token_type, user; with new detail",
    ]
    assert result.as_dict()["changes"][0] | {"message": None} == {
        "where": "POST /auth/e2e/test-auth",
        "kind": "status",
        "message": None,
        "a": 200,
        "b": 401,
    }


def test_body_values_do_not_matter_but_types_do() -> None:
    changed_value = json.dumps(AUTH_OK | {"access_token": "another"}).encode()
    changed_type = json.dumps(AUTH_OK | {"expires_in": "900"}).encode()
    base = chat_session()
    exchange = base[0]
    assert isinstance(exchange, HttpExchange) and exchange.response
    for body, expected in ((changed_value, []), (changed_type, ["expires_in number became string"])):
        other = [HttpExchange(1, 0.0, exchange.request, HttpResponse(200, body=body), 0.05), *base[1:]]
        lines = lines_of(base, other)
        assert lines == (
            ["no differences"]
            if not expected
            else [f"POST /auth/e2e/test-auth: response body shape changed: {expected[0]}"]
        )


def test_refused_upgrade_is_named() -> None:
    refused = [auth_exchange(1, 0.0), upgrade(2, 0.2, status=403)]
    assert lines_of(chat_session(), refused) == ["WS /ws: upgrade answered 101 became 403 (refused)"]


def test_unpaired_connections_and_exchanges() -> None:
    twice = [
        *chat_session(),
        upgrade(3, 2.0),
        text_frame(3, 2.1, True, {"type": "message"}),
        WebSocketClose(3, 2.2, 1000, "", "client"),
    ]
    assert lines_of(chat_session(), twice) == ["WS /ws [2]: new in B"]
    assert lines_of(twice, chat_session()) == ["WS /ws [2]: present in A, missing in B"]
    assert lines_of(chat_session(), chat_session()[1:]) == ["POST /auth/e2e/test-auth: present in A, missing in B"]


def test_timing_beyond_the_threshold() -> None:
    slow = [
        WebSocketFrame(r.id, r.time + 3.0, r.from_client, r.is_text, r.payload)
        if isinstance(r, WebSocketFrame) and r.time > 0.75
        else r
        for r in chat_session()
    ]
    slow = [WebSocketClose(2, 4.5, 1000, "", "client") if isinstance(r, WebSocketClose) else r for r in slow]
    assert lines_of(chat_session(), slow) == [
        "WS /ws: duration 1.300s became 4.300s",
        "WS /ws: gap before agent_completed (frame 9) 0.100s became 3.100s",
    ]
    assert lines_of(chat_session(), slow, threshold=5.0) == ["no differences"]
    assert lines_of(chat_session(), slow, threshold=None) == ["no differences"]


def test_heartbeats_are_ignored_by_default_and_the_key_option() -> None:
    more_pings = [*chat_session(), text_frame(2, 1.45, False, {"type": "ping"})]
    more_pings.sort(key=lambda r: r.time)
    assert lines_of(chat_session(), more_pings) == ["no differences"]
    assert lines_of(chat_session(), more_pings, ignore=frozenset()) == ["WS /ws: extra server events: ping"]
    by_agent = lines_of(chat_session(), chat_session(), key="agent_name")
    assert by_agent == ["no differences"]


@pytest.mark.parametrize(
    ("frame", "key", "expected"),
    [
        ({"type": "agent_started", "payload": {}}, None, "agent_started"),
        ({"type": "agent_thinking", "data": {"thought": "x"}}, None, "agent_thinking"),
        ({"type": "system_message", "event": "agent_started", "payload": {}}, None, "agent_started"),
        ({"type": "system_message", "data": {"event": "connection_established"}}, None, "connection_established"),
        ({"type": "agent_thinking", "data": {"step": 3}}, "data.step", "3"),
        ({"type": "x"}, "data.step", None),
        (["not", "an", "object"], None, None),
    ],
)
def test_event_name(frame: Any, key: str | None, expected: str | None) -> None:
    assert event_name(frame, key) == expected


def test_json_shape_has_keys_and_types_only() -> None:
    assert json_shape({"a": 1, "b": [{"c": None}, {"c": "x"}], "d": True}) == {
        ".": {"object"},
        "a": {"number"},
        "b": {"array"},
        "b[]": {"object"},
        "b[].c": {"null", "string"},
        "d": {"boolean"},
    }
