"""``verify``: every chat turn must deliver the expected agent events, in order."""

from __future__ import annotations

import pytest

from tests.support.chat_records import (
    AGENT_EVENTS,
    REGRESSED_EVENTS,
    agent_frame,
    auth_exchange,
    chat_session,
    text_frame,
    upgrade,
)
from wsreplay.records import Record, WebSocketClose
from wsreplay.verify import (
    DEFAULT_EXPECTATION,
    ExpectationError,
    Step,
    match_problem,
    parse_expectation,
    verify_records,
)

SHAPES = ("flat", "wrapped", "system_message")


def test_parse_expectation() -> None:
    assert parse_expectation(" a, b+ ,c?,d*") == (
        Step("a"),
        Step("b", many=True),
        Step("c", optional=True),
        Step("d", optional=True, many=True),
    )
    assert [str(step) for step in parse_expectation(DEFAULT_EXPECTATION)] == DEFAULT_EXPECTATION.split(",")


@pytest.mark.parametrize("text", ["", "a,,b", "a++", "a b", "+a"])
def test_bad_expectations_are_one_sentence_errors(text: str) -> None:
    with pytest.raises(ExpectationError, match="is not an event name optionally followed by"):
        parse_expectation(text)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("chat_type", ["message", "user_message", "start_agent"])
def test_good_session_passes(shape: str, chat_type: str) -> None:
    result = verify_records(chat_session(shape=shape, chat_type=chat_type))
    assert result.passed and result.exit_status == 0, result.text()
    assert result.lines() == [
        f"WS /ws turn 1 ({chat_type}): ok: agent_started > agent_thinking > tool_executing > tool_completed "
        "> agent_completed",
        "PASS: all 1 chat turns delivered agent_started, agent_thinking+, tool_executing, tool_completed, "
        "agent_completed",
    ]


@pytest.mark.parametrize("shape", SHAPES)
def test_regressed_session_names_the_missing_events(shape: str) -> None:
    result = verify_records(chat_session(REGRESSED_EVENTS, shape=shape))
    assert not result.passed and result.exit_status == 1
    [turn] = result.turns
    assert turn.problem == "Missing critical events: {'agent_thinking', 'tool_executing'}"
    assert turn.missing == ("agent_thinking", "tool_executing")
    assert "Missing critical events: {'agent_thinking', 'tool_executing'}" in result.text()
    assert result.as_dict()["turns"][0]["missing"] == ["agent_thinking", "tool_executing"]


def test_auth_failure_reports_all_five_and_the_close() -> None:
    result = verify_records(chat_session(auth_failure=True))
    [turn] = result.turns
    assert turn.problem == (
        "Missing critical events: {'agent_completed', 'agent_started', 'agent_thinking', 'tool_completed', "
        "'tool_executing'}"
    )
    assert turn.line().endswith(
        "(received none of the expected events; also error_message; "
        "connection closed 1008 'Authentication failed' by server)"
    )


def test_a_401_auth_does_not_matter_to_verify() -> None:
    assert verify_records(chat_session(auth_status=401)).passed


def test_thinking_repeats_and_optional_steps() -> None:
    thinking_twice = (*AGENT_EVENTS[:2], "agent_thinking", *AGENT_EVENTS[2:])
    assert verify_records(chat_session(thinking_twice)).passed
    no_tools = ("agent_started", "agent_thinking", "agent_completed")
    assert verify_records(
        chat_session(no_tools), "agent_started,agent_thinking*,tool_executing?,tool_completed?,agent_completed"
    ).passed


@pytest.mark.parametrize(
    ("events", "problem"),
    [
        (
            ("agent_started", "agent_thinking", "tool_completed", "tool_executing", "agent_completed"),
            "Events out of order: 'tool_completed' arrived where agent_thinking or tool_executing was expected",
        ),
        (
            ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed", "agent_started"),
            "Unexpected extra event 'agent_started' after the expected events",
        ),
        (
            (
                "agent_started",
                "agent_thinking",
                "tool_executing",
                "tool_executing",
                "tool_completed",
                "agent_completed",
            ),
            "Events out of order: 'tool_executing' arrived where tool_completed was expected",
        ),
    ],
)
def test_wrong_order_is_reported(events: tuple[str, ...], problem: str) -> None:
    assert match_problem(parse_expectation(DEFAULT_EXPECTATION), events) == problem


def test_turn_ended_early_when_an_event_repeats_in_the_expectation() -> None:
    assert match_problem(parse_expectation("a,b,a"), ["a", "b"]) == "Turn ended before a"


def test_every_turn_of_every_connection_is_checked() -> None:
    records: list[Record] = chat_session()[:-1]
    records += [text_frame(2, 2.0, True, {"type": "user_message", "payload": {"content": "again"}})]
    records += [text_frame(2, 2.1, False, agent_frame(e, "wrapped", 0)) for e in REGRESSED_EVENTS]
    records += [WebSocketClose(2, 2.5, 1000, "", "client")]
    records += [
        upgrade(3, 3.0),
        text_frame(3, 3.1, False, {"type": "ping"}),
        WebSocketClose(3, 3.2, 1000, "", "client"),
    ]
    records += [upgrade(4, 4.0, status=403)]
    result = verify_records(records)
    assert [turn.ok for turn in result.turns] == [True, False]
    assert result.turns[1].where == "WS /ws [1]" and result.turns[1].turn == 2
    assert result.skipped == ("WS /ws [2]: skipped, no chat turn", "WS /ws [3]: skipped, upgrade refused with 403")
    assert result.summary().startswith("FAIL: 1 of 2 chat turns did not deliver")


def test_frames_before_the_first_chat_frame_and_client_pings_are_ignored() -> None:
    records = chat_session()
    records.insert(2, text_frame(2, 0.205, False, agent_frame("agent_started", "flat", 0)))
    records.insert(5, text_frame(2, 0.35, True, {"type": "ping", "id": 1}))
    assert verify_records(records).passed


def test_no_chat_turn_at_all_fails() -> None:
    result = verify_records([auth_exchange(1, 0.0), upgrade(2, 0.1), WebSocketClose(2, 0.2, 1000, "", "client")])
    assert not result.passed
    assert result.lines() == [
        "WS /ws: skipped, no chat turn",
        "FAIL: no chat turn in any WebSocket connection, so nothing delivered agent_started, agent_thinking+, "
        "tool_executing, tool_completed, agent_completed",
    ]


def test_key_option_names_the_event_path() -> None:
    records = chat_session(shape="wrapped")
    assert not verify_records(records, key="data.run_id").passed
    assert verify_records(records, "run-1+", key="data.run_id").passed
