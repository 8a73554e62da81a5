"""`wsreplay verify` and `diff` stream their cassettes: records read once, side by side for
diff, each connection's events kept run-length encoded; the output is what the records in
memory give, in memory that does not grow with the frames."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable, Iterator
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import pytest

from tests.support.chat_records import auth_exchange, text_frame, upgrade
from tests.support.cli import run_wsreplay
from wsreplay.cassette import CassetteWriter
from wsreplay.compare import (
    MERGE_BATCH,
    DiffOptions,
    diff_records,
    event_name,
    frame_label,
    payload_event,
    payload_json,
)
from wsreplay.records import CassetteHeader, Record, WebSocketClose, WebSocketFrame
from wsreplay.timeline import record_json
from wsreplay.verify import verify_records

HEADER = CassetteHeader(created=1_757_266_800.0, wsreplay_version="test")
TOKENS = MERGE_BATCH + 500
"""``agent_thinking`` frames in a turn: more than diff reads of one cassette at a time."""
TOKEN_GAP = 0.001
TOOLS = ("tool_executing", "tool_completed", "agent_completed")


def turn_frames(session: int, turn: int, tokens: int = TOKENS, drop: str | None = None) -> list[tuple[bool, Any]]:
    """One chat turn: (from the client, message) for each frame, a heartbeat among the tokens."""
    frames: list[tuple[bool, Any]] = [(True, {"type": "message", "content": f"question {turn}"})]
    frames.append((False, {"type": "agent_started", "run_id": f"run-{session}-{turn}"}))
    frames += [(False, {"type": "agent_thinking", "data": {"step": step}}) for step in range(tokens)]
    frames.insert(10, (False, {"type": "ping"}))
    frames += [(False, {"type": "system_message", "event": name}) for name in TOOLS if name != drop]
    return frames


def sessions(
    *, sequential: bool = False, slow_token: tuple[int, int] | None = None, dropping: int | None = 4
) -> list[Record]:
    """Three chat sessions of two turns (session `dropping`'s second without tool_completed), a
    refused upgrade and a connection without a chat turn. Interleaved frame by frame, or one
    session after the other (each timed as when interleaved, moved 100 s later than the one
    before); `slow_token` (session, frame index) waits 2 s more before that frame."""
    records: list[Record] = [auth_exchange(1, 0.0)]
    per_session = {}
    for session in (2, 3, 4):
        frames = [
            *turn_frames(session, 1),
            *turn_frames(session, 2, drop="tool_completed" if session == dropping else None),
        ]
        shift = 100.0 * (session - 2) if sequential else 0.0
        times, clock = [], 0.05
        for index in range(len(frames)):
            clock += TOKEN_GAP + (2.0 if slow_token == (session, index) else 0.0)
            times.append(round(clock + shift, 6))
        per_session[session] = [
            upgrade(session, shift),
            *(
                text_frame(session, time, from_client, message)
                for time, (from_client, message) in zip(times, frames, strict=True)
            ),
            WebSocketClose(session, round(times[-1] + 0.5, 6), 1000, "", "client"),
        ]
    if sequential:
        for session_records in per_session.values():
            records += session_records
    else:
        opens = [session_records[0] for session_records in per_session.values()]
        rest = sorted(
            (record for session_records in per_session.values() for record in session_records[1:]),
            key=lambda record: record.time,
        )
        records += [*opens, *rest]
    return [*records, upgrade(9, 400.0, status=403), upgrade(10, 400.1)]


def write(path: Path, records: list[Record]) -> Path:
    with CassetteWriter(path, HEADER) as writer:
        for record in records:
            writer.write(record)
    return path


def received(tokens: int, *tools: str) -> str:
    return " > ".join(["agent_started", *["agent_thinking"] * tokens, *tools])


def test_verify_reads_once_and_reports_as_before(tmp_path: Path) -> None:
    records = sessions()
    result = verify_records(iter(records))
    assert result == verify_records(records)
    assert result.lines()[0] == f"WS /ws [1] turn 1 (message): ok: {received(TOKENS, *TOOLS)}"
    assert result.lines()[-4:] == [
        "WS /ws [3] turn 2 (message): FAIL: Missing critical events: {'tool_completed'} "
        f"(received {received(TOKENS, 'tool_executing', 'agent_completed')}; connection closed 1000 by client)",
        "WS /ws [4]: skipped, upgrade refused with 403",
        "WS /ws [5]: skipped, no chat turn",
        "FAIL: 1 of 6 chat turns did not deliver agent_started, agent_thinking+, tool_executing, tool_completed, "
        "agent_completed",
    ]
    cassette = write(tmp_path / "sessions.cassette", records)
    text = run_wsreplay("verify", str(cassette))
    assert (text.returncode, text.stdout, text.stderr) == (1, result.text() + "\n", "")
    as_json = run_wsreplay("verify", "--json", str(cassette))
    assert (as_json.returncode, as_json.stdout) == (1, json.dumps(result.as_dict(), indent=2) + "\n")


UNUSUAL_SERVER_PAYLOADS = (
    b'{"type":"agent_started"}',
    b'{"type": "agent_thinking", "data": {"event": "inner"}}',
    b'{"type":"agent_\\u0074hinking"}',
    b'{"\\u0074ype":"agent_thinking"}',
    b'{"type":"quote\\"d","n":1}',
    b'{"type":"ignored","event":"agent_thinking"}',
    b'{"type":"agent_thinking","event":7}',
    b'{"type":"system_message","data":{"event":"tool_executing"}}',
    b'{"type":"system_message","payload":{"event":3}}',
    b'{"payload":{"type":"nested","event":"inner"},"type":"tool_completed"}',
    b'{"type":"first","type":"agent_thinking"}',
    b'{"type":"agent_thinking"} \r\n',
    b'{"type":"agent_thinking"} trailing',
    b'{"type":"agent_thinking"',
    b'{"type":"\xff\xfe"}',
    b'{"type":"\\ud800"}',
    b'\xef\xbb\xbf{"type":"agent_thinking"}',
    b'["agent_thinking"]',
    b"",
    b'{"type":"\xc3\xa9v\xc3\xa9nement \\u2028 \\u0000"}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"type":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"type":"agent_completed"}',
)


def test_verify_and_show_of_a_file_read_frames_of_unusual_json_as_their_records_give(tmp_path: Path) -> None:
    records: list[Record] = [upgrade(2, 0.0), text_frame(2, 0.05, True, {"type": "ping"})]
    for turn, client in enumerate((b'{"type":"message"}', b'{"typ\\u0065":"start_agent"}')):
        records.append(WebSocketFrame(2, round(turn + 0.1, 6), True, True, client))
        for index, payload in enumerate(UNUSUAL_SERVER_PAYLOADS):
            time = round(turn + 0.2 + index * 0.000_013, 6)
            records.append(WebSocketFrame(2, time, False, True, payload))
            records.append(WebSocketFrame(2, time, False, False, payload))
    records += [
        WebSocketFrame(9, 3.0, False, True, b'{"type":"agent_thinking"}'),
        WebSocketClose(2, 3.5, 1000, "", None),
    ]
    cassette = write(tmp_path / "unusual.cassette", records)
    verdicts = run_wsreplay("verify", "--json", str(cassette))
    assert (verdicts.returncode, verdicts.stdout) == (1, json.dumps(verify_records(records).as_dict(), indent=2) + "\n")
    shown = run_wsreplay("show", "--json", str(cassette))
    assert (shown.returncode, shown.stdout) == (0, "".join(record_json(record) + "\n" for record in records))
    for command in (["verify"], ["show"], ["scan"], ["diff", str(cassette)], ["export"]):
        done = run_wsreplay(*command, str(cassette))
        assert done.returncode in (0, 1) and "Traceback" not in done.stderr, (command, done.stderr)
    redacted = run_wsreplay("redact", str(cassette), "-o", str(tmp_path / "redacted.cassette"))
    assert redacted.returncode == 0 and "Traceback" not in redacted.stderr, redacted.stderr


def test_verify_of_a_turn_of_repeated_events_checks_the_order() -> None:
    out_of_order = [upgrade(2, 0.0), text_frame(2, 0.1, True, {"type": "message"})]
    events = ["agent_started", *["agent_thinking"] * 5000, "tool_completed", "tool_executing", "agent_completed"]
    out_of_order += [text_frame(2, 0.2, False, {"type": name}) for name in events]
    [turn] = verify_records(iter(out_of_order)).turns
    assert turn.problem == (
        "Events out of order: 'tool_completed' arrived where agent_thinking or tool_executing was expected"
    )
    assert list(turn.events) == events and turn.as_dict()["events"] == events


def test_diff_reads_both_once_and_reports_as_before(tmp_path: Path) -> None:
    before = sessions(dropping=None)
    after = sessions(sequential=True, slow_token=(3, 1400))
    result = diff_records(iter(before), iter(after))
    assert result == diff_records(before, after)
    duration = round(0.05 + 2 * (len(turn_frames(3, 1))) * TOKEN_GAP + 0.5, 6)
    assert result.lines() == [
        f"WS /ws [2]: duration {duration:.3f}s became {duration + 2:.3f}s",
        f"WS /ws [2]: gap before agent_thinking (frame 1401) {TOKEN_GAP:.3f}s became {TOKEN_GAP + 2:.3f}s",
        "WS /ws [3]: missing server events: tool_completed",
    ]
    cassette_a, cassette_b = write(tmp_path / "a.cassette", before), write(tmp_path / "b.cassette", after)
    text = run_wsreplay("diff", str(cassette_a), str(cassette_b))
    assert (text.returncode, text.stdout, text.stderr) == (1, result.text() + "\n", "")
    as_json = run_wsreplay("diff", "--json", str(cassette_a), str(cassette_b))
    assert (as_json.returncode, as_json.stdout) == (1, json.dumps(result.as_dict(), indent=2) + "\n")
    same = run_wsreplay(
        "diff", str(cassette_a), str(write(tmp_path / "a2.cassette", sessions(sequential=True, dropping=None)))
    )
    assert (same.returncode, same.stdout) == (0, "no differences\n")


def test_diff_names_a_changed_order_among_many_repeats() -> None:
    before = sessions()
    after = [
        text_frame(2, record.time, False, {"type": "agent_completed"})
        if isinstance(record, WebSocketFrame) and record.id == 2 and b"agent_started" in record.payload
        else record
        for record in before
    ]
    turn = ["agent_thinking"] * TOKENS + list(TOOLS)
    events_a, events_b = ["agent_started", *turn] * 2, ["agent_completed", *turn] * 2
    assert diff_records(iter(before), iter(after), DiffOptions(threshold=None)).lines() == [
        "WS /ws [1]: missing server events: agent_started x2",
        "WS /ws [1]: extra server events: agent_completed x2",
        f"WS /ws [1]: order of server events changed: {' > '.join(events_a)} became {' > '.join(events_b)}",
    ]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"type":"a"}',
        b'{"type": "a", "type": "b"}',
        b'{"type":"a","event":"b"}',
        b'{"type":"a"} \t\r\n',
        b'{"type":"a"}\x0c',
        b'{"type":"a"}x',
        b'{"type":"a"}{}',
        b'{"type":"\xed\xa0\x80"}',
        b'{"type":"\xff"}',
        b'{"type":"\\ud800"}',
        b'{"type":01}',
        b'{"type":NaN}',
        b'{"type":"a",}',
        b"{",
        b"{\x00",
        '{"type":"a"}'.encode("utf-16-le"),
        '{"type":"a"}'.encode("utf-16"),
        b'\xef\xbb\xbf{"type":"a"}',
        b' {"type":"a"}',
        b"null",
        b"[1]",
        b'"message"',
        b'{"event":1,"type":"a"}',
        b'{"type":"system_message","event":"b"}',
        b'{"type":"system_message","data":{"event":"b"}}',
        b'{"type":"system_message","payload":{"event":2}}',
        b'{"data":{"type":"a"}}',
    ],
)
def test_payloads_read_as_json_loads_reads_them(payload: bytes) -> None:
    try:
        expected = json.loads(payload)
    except ValueError:
        expected = None
    assert repr(payload_json(payload)) == repr(expected)
    assert payload_event(payload) == event_name(expected)
    assert payload_event(payload, "type") == event_name(expected, "type")


def test_a_type_that_is_not_a_string_names_no_event() -> None:
    assert event_name({"type": ["message"]}) is None
    assert frame_label(text_frame(2, 0.0, False, {"type": {"nested": 1}})) == "<json>"


def many_frames(count: int) -> Iterator[Record]:
    """One connection: a chat turn of `count` tokens, made as they are read."""
    yield upgrade(2, 0.0)
    yield text_frame(2, 0.01, True, {"type": "message"})
    for name in chain(["agent_started"], repeat("agent_thinking", count), TOOLS):
        yield text_frame(2, 0.02, False, {"type": name, "data": {"text": "token " * 20}})
    yield WebSocketClose(2, 0.03, 1000, "", "client")


@pytest.mark.parametrize(
    "command",
    [
        lambda count: verify_records(many_frames(count)).passed,
        lambda count: diff_records(many_frames(count), many_frames(count)).same,
    ],
    ids=["verify", "diff"],
)
def test_memory_does_not_grow_with_the_frames(command: Callable[[int], bool]) -> None:
    peaks = []
    for count in (5_000, 50_000):
        tracemalloc.start()
        try:
            assert command(count)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.5 + 64 * 1024, peaks
