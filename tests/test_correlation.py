"""Replay of request/response protocols, Sans-I/O: ids the client mints come back as the live
client's, requests in any order, per-run tokens in HTTP requests.

The drivers (mitmproxy, the direct replay server) with real protocol libraries are in
tests/test_graphql_ws.py, tests/test_jsonrpc.py, tests/test_long_polling.py and
tests/test_staging_ids.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.replay_records import (
    RECORDING_PLACES,
    accepted_open,
    client,
    http_request,
    json_response,
    recording,
    recordings_in,
    server,
    upgrade_request,
)
from wsreplay.correlation import MAX_TOKENIZED_BYTES, pair_messages, tokens
from wsreplay.records import HttpExchange, Record, WebSocketClose, WebSocketFrame
from wsreplay.replay import (
    Accepted,
    Action,
    Close,
    ConnectionPlayer,
    ReplayOptions,
    ReplaySession,
    Respond,
    Send,
    Unmatched,
)


@pytest.fixture(autouse=True, params=RECORDING_PLACES)
def _recordings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """Every test replays its records from each of `RECORDING_PLACES`."""
    with recordings_in(request.param, tmp_path):
        yield


def session(records: Sequence[Record], **options: object) -> ReplaySession:
    return ReplaySession(recording(records), ReplayOptions(speed=None, **options))  # type: ignore[arg-type]


def player_for(replay: ReplaySession, query: str = "") -> ConnectionPlayer:
    answer = replay.open_websocket(upgrade_request(query=query))
    assert isinstance(answer, Accepted), answer
    return answer.player


def sent(actions: Sequence[Action]) -> list[dict[str, object]]:
    return [json.loads(action.payload) for action in actions if isinstance(action, Send)]


def staging_turn(thread_id: str, run_id: str) -> list[Record]:
    return [
        accepted_open(1, 0.0),
        client(1, 1.0, {"type": "user_message", "payload": {"content": "hi", "thread_id": thread_id}}),
        *(
            server(1, 1.1 + n / 10, {"type": event, "data": {"thread_id": thread_id, "run_id": run_id}})
            for n, event in enumerate(["agent_started", "agent_thinking", "agent_completed"])
        ),
        client(1, 2.0, {"type": "stop", "payload": {"run_id": run_id}}),
        server(1, 2.1, {"type": "stopped", "thread_id": thread_id, "run_id": run_id}),
        WebSocketClose(1, 2.2, 1000, "done", "server"),
    ]


def test_agent_events_carry_the_thread_id_the_live_client_minted() -> None:
    recorded_thread, run_id = f"thread_{uuid.uuid4().hex[:12]}", str(uuid.uuid4())
    replay = session(staging_turn(recorded_thread, run_id))
    player = player_for(replay)
    player.start()
    live_thread = f"thread_{uuid.uuid4().hex[:12]}"
    events = sent(
        player.client_frame(
            True, json.dumps({"type": "user_message", "payload": {"content": "hi", "thread_id": live_thread}})
        )
    )
    assert [(e["type"], e["data"]) for e in events] == [
        (kind, {"thread_id": live_thread, "run_id": run_id})
        for kind in ("agent_started", "agent_thinking", "agent_completed")
    ], "the client's own thread_id; the server's run_id as recorded"
    actions = player.client_frame(True, json.dumps({"type": "stop", "payload": {"run_id": run_id}}))
    assert sent(actions) == [{"type": "stopped", "thread_id": live_thread, "run_id": run_id}]
    assert isinstance(actions[-1], Close)
    report = replay.report()
    assert report.clean and report.substitution_count == 1
    assert recorded_thread in report.substitutions[0] and live_thread in report.substitutions[0]


def test_correlation_off_sends_the_recorded_ids() -> None:
    recorded_thread = f"thread_{uuid.uuid4().hex[:12]}"
    player = player_for(session(staging_turn(recorded_thread, "r"), correlation=False))
    player.start()
    frame = {"type": "user_message", "payload": {"content": "hi", "thread_id": "thread_0123456789ab"}}
    assert {e["data"]["thread_id"] for e in sent(player.client_frame(True, json.dumps(frame)))} == {recorded_thread}


def rpc(call_id: str, method: str, params: list[int]) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}


CALLS = [("add", [1, 2]), ("add", [3, 4]), ("mul", [5, 6]), ("neg", [7]), ("mul", [8, 9])]
RESULTS = [3, 7, 30, -7, 72]


def jsonrpc_session() -> tuple[list[Record], list[str]]:
    """Five concurrent calls, answered out of order (3, 1, 5, 2, 4), then a server close."""
    ids = [str(uuid.uuid4()) for _ in CALLS]
    records: list[Record] = [accepted_open(1, 0.0)]
    records += [client(1, 1.0 + n / 100, rpc(ids[n], *CALLS[n])) for n in range(5)]
    records += [
        server(1, 2.0 + k / 10, {"jsonrpc": "2.0", "id": ids[n], "result": RESULTS[n]})
        for k, n in enumerate([2, 0, 4, 1, 3])
    ]
    records.append(WebSocketClose(1, 3.0, 1000, "bye", "server"))
    return records, ids


def test_calls_sent_in_another_order_get_their_own_answers_with_their_own_ids() -> None:
    records, _recorded_ids = jsonrpc_session()
    replay = session(records)
    player = player_for(replay)
    assert player.start() == ()
    live_ids = {n: str(uuid.uuid4()) for n in range(5)}
    answers: list[dict[str, object]] = []
    actions: list[Action] = []
    for n in [3, 0, 4, 1, 2]:
        actions = list(player.client_frame(True, json.dumps(rpc(live_ids[n], *CALLS[n]))))
        answers += sent(actions)
    assert {a["id"]: a["result"] for a in answers} == {live_ids[n]: RESULTS[n] for n in range(5)}
    assert len(answers) == 5
    assert actions[-1] == Close(1000, "bye"), "the close comes after every answer"
    report = replay.report()
    assert report.mismatch_count == 0 and report.out_of_order_count >= 1 and report.substitution_count == 5


def test_calls_answered_as_they_come_when_each_waits_for_its_answer() -> None:
    """A client that sends its next call only once answered, in another order than recorded:
    each answer is played when its own call comes, not after the recorded last call."""
    records, _ = jsonrpc_session()
    player = player_for(session(records))
    for n in [4, 2, 0, 1, 3]:
        call_id = str(uuid.uuid4())
        answers = sent(player.client_frame(True, json.dumps(rpc(call_id, *CALLS[n]))))
        assert answers[:1] == [{"jsonrpc": "2.0", "id": call_id, "result": RESULTS[n]}]


def test_calls_in_the_recorded_order_keep_the_recorded_answer_order() -> None:
    records, recorded_ids = jsonrpc_session()
    player = player_for(session(records))
    live_ids = [str(uuid.uuid4()) for _ in CALLS]
    actions: list[Action] = []
    for n in range(5):
        actions += player.client_frame(True, json.dumps(rpc(live_ids[n], *CALLS[n])))
    assert [a["id"] for a in sent(actions)] == [live_ids[n] for n in [2, 0, 4, 1, 3]]
    assert not any(recorded in json.dumps(sent(actions)) for recorded in recorded_ids)


def test_a_frame_that_matches_no_unanswered_recorded_frame_is_still_reported() -> None:
    records, _ = jsonrpc_session()
    replay = session(records, on_mismatch="fail")
    player = player_for(replay)
    player.client_frame(True, json.dumps(rpc(str(uuid.uuid4()), *CALLS[1])))
    actions = player.client_frame(True, json.dumps(rpc(str(uuid.uuid4()), "div", [1, 0])))
    assert isinstance(actions[-1], Close) and actions[-1].code == 4000
    assert "params" in replay.report().mismatches[0] or "method" in replay.report().mismatches[0]


def test_ids_after_a_packet_type_prefix_and_in_echoed_binary_messages() -> None:
    recorded_ack, live_ack = "ack_" + uuid.uuid4().hex, "ack_" + uuid.uuid4().hex
    nonce, live_nonce = uuid.uuid4().bytes, uuid.uuid4().bytes
    records: list[Record] = [
        accepted_open(1, 0.0),
        WebSocketFrame(1, 1.0, True, True, b'42["chat",{"ack":"' + recorded_ack.encode() + b'","text":"hi"}]'),
        WebSocketFrame(1, 1.1, False, True, b'43["chat",{"ack":"' + recorded_ack.encode() + b'","ok":true}]'),
        WebSocketFrame(1, 2.0, True, False, nonce),
        WebSocketFrame(1, 2.1, False, False, b"echo:" + nonce),
    ]
    player = player_for(session(records))
    live_chat = b'42["chat",{"ack":"' + live_ack.encode() + b'","text":"hi"}]'
    [reply] = player.client_frame(True, live_chat)
    assert isinstance(reply, Send) and reply.payload == b'43["chat",{"ack":"' + live_ack.encode() + b'","ok":true}]'
    [echo] = player.client_frame(False, live_nonce)
    assert isinstance(echo, Send) and echo.payload == b"echo:" + live_nonce


def test_an_id_the_server_minted_stays_as_recorded_when_the_client_echoes_it() -> None:
    session_id = "sess_" + uuid.uuid4().hex
    records: list[Record] = [
        accepted_open(1, 0.0),
        server(1, 0.1, {"type": "welcome", "session_id": session_id}),
        client(1, 1.0, {"type": "resume", "session_id": session_id}),
        server(1, 1.1, {"type": "resumed", "session_id": session_id}),
    ]
    replay = session(records)
    player = player_for(replay)
    assert sent(player.start()) == [{"type": "welcome", "session_id": session_id}]
    reply = sent(player.client_frame(True, json.dumps({"type": "resume", "session_id": session_id})))
    assert reply == [{"type": "resumed", "session_id": session_id}] and replay.report().substitution_count == 0


def test_correlate_names_a_key_whose_values_look_like_nothing() -> None:
    records: list[Record] = [
        accepted_open(1, 0.0),
        client(1, 1.0, {"id": 1, "method": "ping"}),
        server(1, 1.1, {"id": 1, "result": "pong", "count": 1}),
    ]
    player = player_for(session(records, correlate=("id",)))
    [reply] = player.client_frame(True, json.dumps({"id": 41, "method": "ping"}))
    assert isinstance(reply, Send) and json.loads(reply.payload) == {"id": 41, "result": "pong", "count": 1}
    plain = player_for(session(records))
    [reply] = plain.client_frame(True, json.dumps({"id": 41, "method": "ping"}))
    assert isinstance(reply, Send) and json.loads(reply.payload)["id"] == 1, "a counter is not correlated unasked"


def test_an_http_response_carries_the_request_id_the_client_minted() -> None:
    recorded_id = str(uuid.uuid4())
    body = json.dumps({"request_id": recorded_id, "status": "queued"}).encode()
    response = json_response(202, {"request_id": recorded_id, "status": "queued"})
    response = type(response)(202, "", "HTTP/1.1", (*response.headers, ("Content-Length", str(len(body)))), body)
    request = http_request("/jobs", "POST", json.dumps({"request_id": recorded_id, "kind": "x"}).encode())
    replay = session([HttpExchange(1, 0.0, request, response)])
    live_id = "live-" + uuid.uuid4().hex
    answer = replay.answer_http(
        http_request("/jobs", "POST", json.dumps({"request_id": live_id, "kind": "x"}).encode())
    )
    assert isinstance(answer, Respond)
    assert json.loads(answer.response.body) == {"request_id": live_id, "status": "queued"}
    assert answer.response.header("content-length") == str(len(answer.response.body))


def test_a_cache_buster_in_the_query_matches_the_next_unused_recorded_request() -> None:
    polls = [
        HttpExchange(
            n,
            n * 0.1,
            http_request("/engine", query=f"EIO=4&transport=polling&t={buster}"),
            json_response(200, {"n": n}),
        )
        for n, buster in enumerate(["Pq3xA1z", "Pq3xB7k", "Pq3xC2m"], 1)
    ]
    replay = session(polls)
    answers = [
        replay.answer_http(http_request("/engine", query=f"EIO=4&transport=polling&t={t}"))
        for t in ("Zz81Qm0", "Zz81R0a", "Zz81S9b")
    ]
    assert [json.loads(a.response.body) for a in answers if isinstance(a, Respond)] == [{"n": 1}, {"n": 2}, {"n": 3}]
    report = replay.report()
    assert report.volatile_match_count == 3 and report.volatile_matches[0].endswith(": query.t")
    assert not report.clean, "--strict refuses answers matched on shape alone"
    other_transport = replay.answer_http(http_request("/engine", query="EIO=4&transport=websocket&t=Zz81T1c"))
    assert isinstance(other_transport, Unmatched), "a value that is a word, not a token, still has to match"


def test_values_pair_where_the_messages_line_up() -> None:
    assert not pair_messages(b'{"thread_identifier": "x1y2z3w4q5"}', '{"conversation": "k9k9k9k9k9"}', True)
    reordered = pair_messages(b'{"a1b2c3d4e5": 1, "run": "x1y2z3w4q5"}', '{"run": "k9k9k9k9k9", "a1b2c3d4e5": 1}', True)
    assert reordered.tokens == {b"x1y2z3w4q5": b"k9k9k9k9k9"}, "keys in another order pair by JSON path"
    pairs = pair_messages(b"join room7a8b9c0d now", "join room1f2e3d4c now", True)
    assert pairs.tokens == {b"room7a8b9c0d": b"room1f2e3d4c"}


def test_a_long_multiplexed_session_answers_every_call_with_its_own_id() -> None:
    """300 calls, each answered right after it in the recording; the live client sends them
    two by two in swapped order: each answer carries its own call's fresh id."""
    calls = [("add", [n, n]) for n in range(300)]
    records: list[Record] = [accepted_open(1, 0.0)]
    for n, call in enumerate(calls):
        call_id = str(uuid.uuid4())
        records += [client(1, 1.0 + n, rpc(call_id, *call)), server(1, 1.5 + n, {"id": call_id, "result": 2 * n})]
    replay = session(records)
    player = player_for(replay)
    results: dict[str, object] = {}
    sent_ids: dict[str, int] = {}
    for pair in range(0, 300, 2):
        for n in (pair + 1, pair):
            call_id = str(uuid.uuid4())
            sent_ids[call_id] = n
            results.update(
                {a["id"]: a["result"] for a in sent(player.client_frame(True, json.dumps(rpc(call_id, *calls[n]))))}
            )
    assert results == {call_id: 2 * n for call_id, n in sent_ids.items()}
    assert replay.report().mismatch_count == 0


def test_among_requests_alike_the_one_with_the_same_session_id_answers() -> None:
    """Two recorded long-poll sessions; a poll of the second session (its sid, a fresh
    cache-buster) gets the second session's answer even though the first one's is unused."""
    polls = [
        HttpExchange(n, n * 0.1, http_request("/sio", query=f"EIO=4&sid={sid}&t={t}"), json_response(200, {"n": n}))
        for n, (sid, t) in enumerate([("Aa11Bb22Cc33", "Pq3xA1z"), ("Zz99Yy88Xx77", "Pq3xB7k")], 1)
    ]
    replay = session(polls)
    answer = replay.answer_http(http_request("/sio", query="EIO=4&sid=Zz99Yy88Xx77&t=Qm7Kp2w"))
    assert isinstance(answer, Respond) and json.loads(answer.response.body) == {"n": 2}


def test_messages_over_the_size_limit_are_not_split_into_ids() -> None:
    """Ids are minted in small messages; a 16 MiB upload searched for them stalled the upgrade for seconds."""
    minted = b"8f14e45fceea167a5a36dedd4bea2543"
    small = b'{"id":"' + minted + b'","data":"' + b"x" * 1000 + b'"}'
    big = small + b" " * MAX_TOKENIZED_BYTES
    assert tokens(small) == {minted}
    assert tokens(big) == set()
