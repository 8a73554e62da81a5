"""Tests for wsreplay.replay, the Sans-I/O replay engine: no sockets, cassettes built in memory."""

from __future__ import annotations

import base64
import gc
import json
import logging
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.replay_records import (
    AUTH_FAILED,
    RECORDING_PLACES,
    accepted_open,
    client,
    conversations_for,
    http_request,
    json_response,
    recording,
    recordings_in,
    server,
    upgrade_request,
)
from wsreplay.jwt import mint_access_token
from wsreplay.matchers import DEFAULT_HTTP_MATCHERS, Difference, Ignore
from wsreplay.records import (
    ConnectionFailure,
    HttpExchange,
    HttpRequest,
    Record,
    WebSocketClose,
    WebSocketOpen,
)
from wsreplay.replay import (
    SCAN_AT_MOST,
    Abort,
    Accepted,
    Action,
    Close,
    ConnectionPlayer,
    Fail,
    Log,
    Refused,
    ReplayOptions,
    ReplaySession,
    Respond,
    Send,
    Unmatched,
    parse_speed,
)


@pytest.fixture(autouse=True, params=RECORDING_PLACES)
def _recordings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """Every test replays its records from each of `RECORDING_PLACES`."""
    with recordings_in(request.param, tmp_path):
        yield


def session(records: Sequence[Record], **options: object) -> ReplaySession:
    return ReplaySession(recording(records), ReplayOptions(**options))  # type: ignore[arg-type]


def player_for(replay: ReplaySession, request: HttpRequest | None = None) -> ConnectionPlayer:
    answer = replay.open_websocket(request or upgrade_request())
    assert isinstance(answer, Accepted), answer
    return answer.player


def sends(actions: Sequence[Action]) -> list[bytes]:
    return [action.payload for action in actions if isinstance(action, Send)]


def delays(actions: Sequence[Action]) -> list[float]:
    return [round(action.delay, 6) for action in actions if not isinstance(action, Log)]


def chat_turn(record_id: int = 1, start: float = 0.0) -> list[Record]:
    """A staging-like conversation: heartbeat, client message, agent events, server close."""
    return [
        accepted_open(record_id, start),
        server(record_id, start + 0.05, {"type": "ping", "timestamp": 1757292881.0}),
        server(record_id, start + 0.10, {"type": "system_message", "data": {"event": "connection_established"}}),
        client(record_id, start + 1.00, {"type": "message", "content": "hello", "thread_id": "test_1757292881"}),
        server(record_id, start + 1.20, {"type": "agent_started", "run_id": "r1"}),
        server(record_id, start + 1.50, {"type": "agent_completed", "run_id": "r1"}),
        client(record_id, start + 2.00, {"type": "ping", "id": 1}),
        server(record_id, start + 2.01, {"type": "pong"}),
        WebSocketClose(record_id, start + 2.50, 1000, "bye", "server"),
    ]


# --- HTTP -------------------------------------------------------------------------


def test_http_answers_the_recorded_response_ignoring_volatile_fields() -> None:
    recorded = http_request("/auth/e2e/test-auth", "POST", b'{"email": "e2e@x.test", "nonce": "1"}')
    replay = session([HttpExchange(1, 0.0, recorded, json_response(401, {"detail": "E2E bypass key required"}))])
    live = http_request(
        "/auth/e2e/test-auth", "POST", b'{"nonce": "2", "email": "e2e@x.test"}', headers=(("X-Test-Session", "e2e-9"),)
    )
    answer = replay.answer_http(live)
    assert isinstance(answer, Respond)
    assert answer.response.status == 401 and json.loads(answer.response.body) == {"detail": "E2E bypass key required"}


def test_repeated_requests_get_successive_responses_then_the_last_repeats() -> None:
    replay = session([HttpExchange(i, float(i), http_request(), json_response(200, {"n": i})) for i in range(1, 4)])
    bodies = [json.loads(replay.answer_http(http_request()).response.body)["n"] for _ in range(5)]
    assert bodies == [1, 2, 3, 3, 3]
    assert replay.report().unused_exchanges == ()


def test_per_run_ids_inside_strings_match_in_a_second_looser_pass() -> None:
    def auth(email: str) -> HttpRequest:
        return http_request("/auth/e2e/test-auth", "POST", json.dumps({"email": email}).encode())

    replay = session(
        [
            HttpExchange(1, 0.0, auth("e2e-16344@x.test"), json_response(200, {"n": 1})),
            HttpExchange(2, 0.1, auth("e2e-16399@x.test"), json_response(200, {"n": 2})),
            HttpExchange(3, 0.2, auth("other@x.test"), json_response(200, {"n": 3})),
        ]
    )
    exact = replay.answer_http(auth("e2e-16399@x.test"))
    loose = replay.answer_http(auth("e2e-20001@x.test"))
    assert json.loads(exact.response.body) == {"n": 2} and json.loads(loose.response.body) == {"n": 1}
    assert isinstance(replay.answer_http(auth("another@x.test")), Unmatched)
    report = replay.report()
    assert report.loose_match_count == 1 and "body.email" in report.loose_matches[0]
    assert "matched only when ignoring digits inside strings: 1" in report.format()


def test_http_response_delay_follows_the_recorded_duration_and_speed() -> None:
    exchange = HttpExchange(1, 0.0, http_request(), json_response(200, {}), duration=0.3)
    for speed, expected in ((1.0, 0.3), (2.0, 0.15), (None, 0.0)):
        answer = session([exchange], speed=speed).answer_http(http_request())
        assert isinstance(answer, Respond) and answer.delay == pytest.approx(expected)


def test_recorded_connection_failure_is_answered_as_a_failure() -> None:
    replay = session(
        [
            HttpExchange(1, 0.0, http_request("/api/mcp/config"), None),
            ConnectionFailure(1, 0.1, "Connection refused"),
        ]
    )
    answer = replay.answer_http(http_request("/api/mcp/config"))
    assert isinstance(answer, Fail)
    assert answer.response.status == 502 and answer.response.body == b"Connection refused"
    assert replay.report().failures_replayed == 1


def test_unmatched_request_gets_404_naming_the_closest_recording() -> None:
    recorded = http_request("/auth/e2e/test-auth", "POST", b'{"email": "a@x.test"}')
    replay = session(
        [HttpExchange(1, 0.0, recorded, json_response(200, {})), HttpExchange(2, 0.1, http_request(), None)]
    )
    answer = replay.answer_http(http_request("/auth/e2e/test-auth", "POST", b'{"email": "b@x.test"}'))
    assert isinstance(answer, Unmatched)
    assert answer.response.status == 404
    document = json.loads(answer.response.body)
    assert document["request"] == document["closest"] == "POST /auth/e2e/test-auth"
    assert document["differences"] == ['body.email: expected "a@x.test", received "b@x.test"']
    assert "closest recorded: POST /auth/e2e/test-auth" in answer.message
    assert 'body.email: expected "a@x.test", received "b@x.test"' in answer.message
    report = replay.report()
    assert report.unmatched_count == 1 and "POST /auth/e2e/test-auth" in report.unmatched[0]
    assert not report.clean


def test_matching_cost_does_not_grow_with_the_cassette() -> None:
    calls = 0

    def counting(recorded: HttpRequest, live: HttpRequest, ignore: Ignore) -> list[Difference]:
        nonlocal calls
        calls += 1
        return []

    records = [HttpExchange(i, float(i), http_request(f"/item/{i}"), json_response(200, {})) for i in range(500)]
    replay = session(records, http_matchers=(*DEFAULT_HTTP_MATCHERS, counting))
    calls = 0
    assert isinstance(replay.answer_http(http_request("/item/250")), Respond)
    assert calls == 1


def test_distinct_requests_on_one_path_are_told_apart_without_comparing_them_all() -> None:
    """500 POSTs to one path, differing in content and in volatile ids: loading compares them only
    while the path has few, and a live request with fresh ids is compared with its own recording only."""
    calls = 0

    def counting(recorded: HttpRequest, live: HttpRequest, ignore: Ignore) -> list[Difference]:
        nonlocal calls
        calls += 1
        return []

    def message(number: int) -> HttpRequest:
        document = {"content": f"message {number}", "message_id": str(uuid.uuid4()), "sent_at": time.time()}
        return http_request("/api/messages", "POST", json.dumps(document).encode())

    records = [HttpExchange(n, float(n), message(n), json_response(201, {"number": n})) for n in range(500)]
    replay = session(records, http_matchers=(*DEFAULT_HTTP_MATCHERS, counting))
    replay.index_all()
    assert calls <= SCAN_AT_MOST**2
    calls = 0
    for number in (0, 250, 499, 250):
        answer = replay.answer_http(message(number))
        assert isinstance(answer, Respond) and json.loads(answer.response.body) == {"number": number}
    assert calls == 4
    assert replay.report().loose_match_count == 0


# --- upgrades ---------------------------------------------------------------------


def test_refused_upgrade_is_answered_with_the_recorded_response() -> None:
    forbidden = json_response(403, {"detail": "Forbidden"})
    replay = session([WebSocketOpen(1, 0.0, upgrade_request(), forbidden)])
    answer = replay.open_websocket(upgrade_request())
    assert answer == Refused(forbidden)
    assert replay.report().websockets_refused == 1


@pytest.mark.parametrize(("speed", "scale"), [(1.0, 1.0), (2.0, 0.5), (None, 0.0)])
def test_upgrade_answers_wait_the_recorded_wait_scaled_by_speed(speed: float | None, scale: float) -> None:
    """The 101 and the refusal come after the recorded wait; the first server frame's gap counts from the 101."""
    forbidden = json_response(403, {"detail": "Forbidden"})
    records = [
        accepted_open(1, 1.0, duration=0.15),
        server(1, 1.25, {"type": "connected"}),
        WebSocketOpen(2, 2.0, upgrade_request("/refused"), forbidden, 0.12),
        HttpExchange(3, 3.0, upgrade_request("/old"), forbidden, 0.09),
    ]
    replay = session(records, speed=speed)
    accepted = replay.open_websocket(upgrade_request())
    assert isinstance(accepted, Accepted) and accepted.delay == pytest.approx(0.15 * scale)
    assert delays(accepted.player.start()) == [pytest.approx(0.1 * scale)]
    assert replay.open_websocket(upgrade_request("/refused")) == Refused(forbidden, pytest.approx(0.12 * scale))
    assert replay.open_websocket(upgrade_request("/old")) == Refused(forbidden, pytest.approx(0.09 * scale))


def test_a_version_1_upgrade_is_answered_at_once() -> None:
    """Version 1 recorded no wait: its open's time is the 101's, and the first frame's gap counts from it."""
    replay = session([accepted_open(1, 1.0), server(1, 1.25, {"type": "connected"})])
    answer = replay.open_websocket(upgrade_request())
    assert isinstance(answer, Accepted) and answer.delay == 0.0
    assert delays(answer.player.start()) == [pytest.approx(0.25)]


def test_failed_upgrade_is_answered_as_a_failure() -> None:
    replay = session([HttpExchange(1, 0.0, upgrade_request(), None), ConnectionFailure(1, 0.0, "Connection refused")])
    answer = replay.open_websocket(upgrade_request())
    assert isinstance(answer, Fail) and answer.message == "Connection refused"


def test_upgrade_query_ignores_volatile_parameters() -> None:
    replay = session([accepted_open(1, request=upgrade_request(query="token=abc&v=2"))])
    token = mint_access_token("e2e@x.test", [], "secret")
    assert isinstance(replay.open_websocket(upgrade_request(query=f"v=2&token={token}")), Accepted)
    unmatched = replay.open_websocket(upgrade_request(query="v=3"))
    assert isinstance(unmatched, Unmatched) and "query.v" in unmatched.message


def jwt_subprotocol(email: str) -> str:
    jwt = mint_access_token(email, ["chat"], "secret")
    return "jwt." + base64.urlsafe_b64encode(jwt.encode()).decode().rstrip("=")


def test_selected_subprotocol_is_the_live_value_carrying_the_fresh_token() -> None:
    recorded_token = jwt_subprotocol("e2e@x.test")
    request = upgrade_request(subprotocols=["jwt-auth", recorded_token])
    replay = session([accepted_open(1, request=request, sec_websocket_protocol=recorded_token)])
    fresh = jwt_subprotocol("e2e@x.test")
    answer = replay.open_websocket(upgrade_request(subprotocols=["jwt-auth", fresh]))
    assert isinstance(answer, Accepted)
    assert answer.subprotocol == fresh != recorded_token


def test_selected_subprotocol_by_equal_value_and_none() -> None:
    request = upgrade_request(subprotocols=["jwt-auth", jwt_subprotocol("e2e@x.test")])
    replay = session(
        [accepted_open(1, request=request, sec_websocket_protocol="jwt-auth"), accepted_open(2, 1.0, request=request)]
    )
    live = upgrade_request(subprotocols=["jwt-auth", jwt_subprotocol("e2e@x.test")])
    first, second = replay.open_websocket(live), replay.open_websocket(live)
    assert isinstance(first, Accepted) and first.subprotocol == "jwt-auth"
    assert isinstance(second, Accepted) and second.subprotocol is None


def test_permessage_deflate_only_when_recorded() -> None:
    replay = session(
        [
            accepted_open(1, sec_websocket_extensions="permessage-deflate; server_no_context_takeover"),
            accepted_open(2, 1.0),
        ]
    )
    first, second = replay.open_websocket(upgrade_request()), replay.open_websocket(upgrade_request())
    assert isinstance(first, Accepted) and first.deflate
    assert isinstance(second, Accepted) and not second.deflate


# --- frames and timing ------------------------------------------------------------


def test_server_frames_are_triggered_by_the_client_frame_index() -> None:
    player = player_for(session(chat_turn()))
    assert [json.loads(p)["type"] for p in sends(player.start())] == ["ping", "system_message"]
    first = player.client_frame(True, '{"type":"message","content":"hello","thread_id":"test_1800000000"}')
    assert [json.loads(p)["type"] for p in sends(first)] == ["agent_started", "agent_completed"]
    second = player.client_frame(True, b'{"type":"ping","id":7,"timestamp":1800000000}')
    assert sends(second) == [b'{"type": "pong"}']
    assert second[-1] == Close(1000, "bye", pytest.approx(0.49))
    assert player.finished
    assert not any(isinstance(action, Log) for action in (*first, *second))


@pytest.mark.parametrize(
    ("speed", "expected"),
    [
        (1.0, [[0.05, 0.05], [0.2, 0.3], [0.01, 0.49]]),
        (2.0, [[0.025, 0.025], [0.1, 0.15], [0.005, 0.245]]),
        (None, [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]),
    ],
)
def test_delays_at_speed_one_two_and_max(speed: float | None, expected: list[list[float]]) -> None:
    player = player_for(session(chat_turn(), speed=speed))
    steps = [
        player.start(),
        player.client_frame(True, '{"type":"message","content":"hello"}'),
        player.client_frame(True, '{"type":"ping"}'),
    ]
    assert [delays(step) for step in steps] == [pytest.approx(step) for step in expected]


def test_gap_is_measured_from_the_later_of_previous_server_action_and_trigger() -> None:
    records = [
        accepted_open(1),
        server(1, 0.5, "a"),
        client(1, 0.2, "c1"),
        server(1, 0.7, "b"),
        client(1, 1.0, "c2"),
        server(1, 1.3, "c"),
    ]
    player = player_for(session(records))
    assert delays(player.start()) == [0.5]
    assert delays(player.client_frame(True, '"c1"')) == [0.2]
    assert delays(player.client_frame(True, '"c2"')) == [pytest.approx(0.3)]


def test_binary_frames_keep_their_opcode() -> None:
    player = player_for(session([accepted_open(1), server(1, 0.1, b"\x00\x01\x02", text=False)]))
    assert player.start() == (Send(False, b"\x00\x01\x02", pytest.approx(0.1)),)


# --- closes -----------------------------------------------------------------------


def test_recorded_server_close_code_and_reason() -> None:
    records = [
        accepted_open(1),
        server(1, 0.01, AUTH_FAILED),
        WebSocketClose(1, 0.02, 1008, "Authentication failed", "server"),
    ]
    actions = player_for(session(records, speed=None)).start()
    assert actions == (Send(True, AUTH_FAILED, 0.0), Close(1008, "Authentication failed", 0.0))


def test_recorded_client_close_is_awaited() -> None:
    records = [accepted_open(1), server(1, 0.1, "hi"), WebSocketClose(1, 5.0, 1000, "", "client")]
    player = player_for(session(records))
    assert not any(isinstance(action, Close | Abort) for action in player.start())
    assert not player.finished
    assert player.client_closed(1000) == ()
    assert player.finished


@pytest.mark.parametrize(
    "ending",
    [
        WebSocketClose(1, 1.0, 1006, "", None),
        WebSocketClose(1, 1.0, None, "", "server"),
        ConnectionFailure(1, 1.0, "reset"),
    ],
)
def test_abnormal_end_is_an_abort(ending: Record) -> None:
    player = player_for(session([accepted_open(1), server(1, 0.5, "x"), ending]))
    assert player.start()[-1] == Abort(pytest.approx(0.5))
    assert player.finished


def test_client_closing_early_is_reported_as_incomplete() -> None:
    replay = session(chat_turn())
    player = player_for(replay)
    player.start()
    (log,) = player.client_closed(1001)
    assert isinstance(log, Log) and log.level == logging.INFO
    assert "after 0 of 2 recorded client frames" in log.text
    assert replay.report().incomplete == (log.text,)


# --- mismatches -------------------------------------------------------------------


def test_mismatch_in_warn_mode_logs_a_diff_and_goes_on() -> None:
    replay = session(chat_turn())
    player = player_for(replay)
    player.start()
    actions = player.client_frame(True, '{"type":"user_message","content":"hello"}')
    log = actions[0]
    assert isinstance(log, Log) and log.level == logging.WARNING
    assert '$.type: expected "message", received "user_message"' in log.text
    assert len(sends(actions)) == 2
    report = replay.report()
    assert report.mismatch_count == 1 and "frame 1 mismatch: $.type" in report.mismatches[0]


def test_mismatch_in_fail_mode_closes_with_4000_and_a_short_reason() -> None:
    replay = session(chat_turn(), on_mismatch="fail")
    player = player_for(replay)
    player.start()
    actions = player.client_frame(True, json.dumps({"type": "message", "content": "é" * 200}))
    close = actions[-1]
    assert isinstance(close, Close) and close.code == 4000 and close.delay == 0
    assert close.reason.startswith("frame 1 mismatch: $.content: expected")
    assert len(close.reason.encode()) <= 123
    assert player.finished
    assert player.client_frame(True, "{}") == ()


def test_unexpected_extra_client_frame() -> None:
    records = [accepted_open(1), client(1, 0.1, {"type": "ping"}), server(1, 0.2, {"type": "pong"})]
    warn = player_for(session(records))
    warn.client_frame(True, '{"type":"ping"}')
    extra = warn.client_frame(True, '{"type":"ping"}')
    assert len(extra) == 1 and isinstance(extra[0], Log) and "unexpected client frame 2" in extra[0].text
    assert not warn.finished
    fail = player_for(session(records, on_mismatch="fail"))
    fail.client_frame(True, '{"type":"ping"}')
    assert fail.client_frame(True, '{"type":"ping"}')[-1] == Close(4001, "unexpected client frame 2")


def test_user_ignore_paths_apply_to_frames() -> None:
    records = [accepted_open(1), client(1, 0.1, {"type": "message", "content": "recorded"})]
    player = player_for(session(records, ignore=("$.content",)))
    assert player.client_frame(True, '{"type": "message", "content": "live"}') == ()


# --- connections and report -------------------------------------------------------


def test_seven_concurrent_connections_each_get_their_own_conversation() -> None:
    records: list[Record] = []
    for n in range(1, 8):
        records += [accepted_open(n, n * 0.01), server(n, n * 0.01 + 0.001, {"connection": n})]
    for n in range(7, 0, -1):
        records += [client(n, 1.0 + n, {"type": "ping", "n": n}), server(n, 1.1 + n, {"pong": n})]
    replay = session(records, speed=None)
    players = [player_for(replay) for _ in range(7)]
    assert [json.loads(sends(p.start())[0])["connection"] for p in players] == list(range(1, 8))
    for n, player in reversed(list(enumerate(players, 1))):
        pong = player.client_frame(True, json.dumps({"type": "ping", "n": n}))
        assert sends(pong) == [json.dumps({"pong": n}).encode()]
    report = replay.report()
    assert report.websockets_accepted == 7 and report.mismatch_count == 0 and report.unused_connections == ()


def test_a_client_frame_leads_to_the_sibling_conversation_it_was_recorded_in() -> None:
    replay = session(conversations_for(["client-1", "client-2", "client-3"]), speed=None)
    first, second, third = (player_for(replay) for _ in range(3))
    for player in (first, second, third):
        player.start()
    assert sends(first.client_frame(True, '{"content": "client-3"}')) == [b'{"for": "client-3"}']
    assert sends(third.client_frame(True, '{"content": "client-1"}')) == [b'{"for": "client-1"}']
    assert sends(second.client_frame(True, '{"content": "client-2"}')) == [b'{"for": "client-2"}']
    assert (first.label, third.label) == ("ws #3 /ws", "ws #1 /ws")
    report = replay.report()
    assert report.mismatch_count == 0 and report.unused_connections == ()


def test_a_client_frame_can_lead_to_an_unused_sibling() -> None:
    replay = session(conversations_for(["client-1", "client-2"]), speed=None)
    player = player_for(replay)
    player.start()
    assert sends(player.client_frame(True, '{"content": "client-2"}')) == [b'{"for": "client-2"}']
    assert [line.split()[:2] for line in replay.report().unused_connections] == [["WS", "#1"]]
    assert player_for(replay).label == "ws #1 /ws"
    assert replay.report().unused_connections == ()


def test_siblings_that_went_differently_are_not_taken_over() -> None:
    records = conversations_for(["client-1"], greeting="a") + [
        accepted_open(9, 5.0),
        server(9, 5.01, "b"),
        client(9, 6.0, {"content": "client-9"}),
        server(9, 6.1, {"for": "client-9"}),
    ]
    replay = session(records, speed=None)
    player = player_for(replay)
    player.start()
    actions = player.client_frame(True, '{"content": "client-9"}')
    assert isinstance(actions[0], Log) and sends(actions) == [b'{"for": "client-1"}']
    assert replay.report().mismatch_count == 1


def test_upgrades_beyond_the_recorded_ones_repeat_the_last() -> None:
    replay = session([accepted_open(1), server(1, 0.1, "one"), accepted_open(2, 1.0), server(2, 1.1, "two")])
    assert [sends(player_for(replay).start()) for _ in range(3)] == [[b'"one"'], [b'"two"'], [b'"two"']]


def test_same_cassette_and_behaviour_give_identical_actions() -> None:
    def run() -> list[Sequence[Action]]:
        player = player_for(session(chat_turn()))
        return [player.start(), player.client_frame(True, '{"type":"message","content":"hello"}')]

    assert run() == run()


def test_connection_ids_reused_by_the_recorder_are_kept_apart() -> None:
    records = [*chat_turn(1), *chat_turn(1, start=10.0)]
    replay = session(records)
    first, second = player_for(replay), player_for(replay)
    assert delays(first.start()) == delays(second.start())
    assert replay.report().unused_connections == ()


def test_report_lists_unused_exchanges_and_connections() -> None:
    replay = session(
        [
            HttpExchange(1, 0.0, http_request("/health"), json_response(200, {"status": "healthy"})),
            HttpExchange(2, 0.1, http_request("/api/health"), json_response(200, {"status": "healthy"})),
            *chat_turn(3, 1.0),
            WebSocketOpen(4, 5.0, upgrade_request("/api/v1/websocket"), json_response(403, {})),
        ]
    )
    replay.answer_http(http_request("/health"))
    player_for(replay)
    report = replay.report()
    assert report.http_served == 1 and report.websockets_accepted == 1
    assert [line.split()[2:4] for line in report.unused_exchanges] == [["GET", "/api/health"]]
    assert len(report.unused_connections) == 1 and "REFUSED /api/v1/websocket" in report.unused_connections[0]
    assert not report.clean
    text = report.format()
    assert "recorded HTTP exchanges never used: 1" in text and "recorded WebSocket upgrades never used: 1" in text


def test_options_validation_and_speed_parsing() -> None:
    assert parse_speed("1") == 1.0 and parse_speed("2.5") == 2.5 and parse_speed("MAX") is None
    for bad in ("0", "-1", "fast", "inf", "nan"):
        with pytest.raises(ValueError):
            parse_speed(bad)
    with pytest.raises(ValueError):
        ReplayOptions(speed=0)
    with pytest.raises(ValueError):
        ReplayOptions(on_mismatch="ignore")  # type: ignore[arg-type]


def test_a_dropped_session_is_freed_at_once() -> None:
    """Once its recording is indexed, nothing a session hands out (players, scripts, its tokens) holds
    it in a reference cycle: a pytest plugin or a benchmark making many sessions does not wait for
    the garbage collector."""
    replay = session([accepted_open(1), client(1, 0.1, "hello"), server(1, 0.2, "world"), client(1, 0.3, "again")])
    replay.index_all()
    player = player_for(replay)
    played = player.client_frame(True, json.dumps("hello"))
    assert [action.payload for action in played if isinstance(action, Send)] == [b'"world"']
    freed = weakref.ref(replay)
    gc.disable()
    try:
        del replay
        assert freed() is None
    finally:
        gc.enable()
