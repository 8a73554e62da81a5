"""``diff``: two recordings of the staging chat session, compared connection by connection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.chat_records import (
    AGENT_EVENTS,
    AUTH_OK,
    REGRESSED_EVENTS,
    auth_exchange,
    chat_session,
    text_frame,
    upgrade,
)
from wsreplay.compare import DiffOptions, diff_records, event_name, json_shape
from wsreplay.records import (
    HttpExchange,
    HttpResponse,
    Record,
    WebSocketClose,
    WebSocketFrame,
)


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
