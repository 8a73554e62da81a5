"""Replaying a cassette file whose concurrent sessions interleave frame by frame.

``wsreplay replay`` keeps in memory only what matching needs and reads each conversation's
server messages from the file again when it plays them, passing over the other sessions'
records. Concurrent clients of different libraries, each playing its own session, must
get exactly the frames recorded for it, in order, and its close: through the proxy and
with ``--direct``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect

from tests.support.cli import RunningWsreplay, run_proxy
from wsreplay.cassette import Cassette, CassetteError, CassetteWriter, write_cassette
from wsreplay.records import (
    CassetteHeader,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    Record,
    WebSocketClose,
    WebSocketFrame,
    WebSocketOpen,
)
from wsreplay.replay import Abort, Accepted, Action, Log, ReplayOptions, ReplaySession, Respond, Send
from wsreplay.sources import INDEX_AS_PLAYED_BYTES, CassetteFile

SESSIONS = 3
TURNS = 4
TOKENS = 40
TIMEOUT = 10.0


def _request(session: int) -> HttpRequest:
    headers = (("Host", "staging.example"), ("Upgrade", "websocket"), ("Connection", "Upgrade"))
    return HttpRequest("GET", "http", "staging.example", 80, "/ws", f"session={session}", headers=headers)


def _accepted() -> HttpResponse:
    return HttpResponse(101, "Switching Protocols", headers=(("Upgrade", "websocket"), ("Connection", "Upgrade")))


def question(session: int, turn: int) -> str:
    return json.dumps({"type": "message", "content": f"question {turn} of session {session}"})


def answer(session: int, turn: int, step: int) -> str:
    return json.dumps({"type": "agent_thinking", "session": session, "turn": turn, "step": step})


def write_interleaved(path: Path, turns: int = TURNS) -> dict[int, list[str]]:
    """Write the sessions' turns interleaved frame by frame; what each session's server sent."""
    expected: dict[int, list[str]] = {session: [] for session in range(SESSIONS)}
    clock = 0.0
    with CassetteWriter(
        path, CassetteHeader(created=0.0, wsreplay_version="test", upstream="reverse:http://staging.example")
    ) as writer:
        for session in range(SESSIONS):
            writer.write(WebSocketOpen(session + 1, clock, _request(session), _accepted()))
        for turn in range(turns):
            for step in range(-1, TOKENS):
                for session in range(SESSIONS):
                    clock += 0.0001
                    from_client = step < 0
                    text = question(session, turn) if from_client else answer(session, turn, step)
                    writer.write_frame(session + 1, clock, from_client, True, text.encode())
                    if not from_client:
                        expected[session].append(text)
        for session in range(SESSIONS):
            clock += 0.0001
            writer.write(WebSocketClose(session + 1, clock, 4000 + session, f"done {session}", "server"))
    return expected


async def websockets_session(url: str, session: int) -> tuple[list[str], int | None, str]:
    received: list[str] = []
    async with connect(f"{url}/ws?session={session}", open_timeout=TIMEOUT) as socket:
        for turn in range(TURNS):
            await socket.send(question(session, turn))
            for _ in range(TOKENS):
                received.append(str(await asyncio.wait_for(socket.recv(), TIMEOUT)))
        await asyncio.wait_for(socket.wait_closed(), TIMEOUT)
    return received, socket.close_code, socket.close_reason or ""


async def aiohttp_session(url: str, session: int) -> tuple[list[str], int | None, str]:
    received: list[str] = []
    async with aiohttp.ClientSession() as client, client.ws_connect(f"{url}/ws?session={session}") as socket:
        for turn in range(TURNS):
            await socket.send_str(question(session, turn))
            for _ in range(TOKENS):
                message = await socket.receive(TIMEOUT)
                received.append(message.data)
        closing = await socket.receive(TIMEOUT)
        assert closing.type == aiohttp.WSMsgType.CLOSE, closing
        return received, closing.data, closing.extra or ""


@pytest.mark.parametrize("direct", [False, True], ids=["through the proxy", "direct"])
async def test_concurrent_clients_each_get_their_own_interleaved_session(tmp_path: Path, direct: bool) -> None:
    cassette = tmp_path / "interleaved.cassette"
    expected = write_interleaved(cassette)

    async def clients(port: int) -> list[tuple[list[str], int | None, str]]:
        url = f"ws://127.0.0.1:{port}"
        players = [websockets_session, aiohttp_session, websockets_session]
        return await asyncio.gather(*(play(url, session) for session, play in enumerate(players)))

    results, _ = await run_proxy(
        ["replay", str(cassette), "--speed", "max", *(["--direct"] if direct else [])], clients
    )

    for session, (received, code, reason) in enumerate(results):
        assert received == expected[session]
        assert (code, reason) == (4000 + session, f"done {session}")


def test_a_cassette_changed_after_indexing_fails_the_connection_with_one_message(tmp_path: Path) -> None:
    cassette = tmp_path / "interleaved.cassette"
    write_interleaved(cassette)
    replay = ReplaySession(CassetteFile(cassette), ReplayOptions(speed=None))
    replay.index_all()
    cassette.unlink()
    answer = replay.open_websocket(_request(0))
    assert isinstance(answer, Accepted)
    actions = answer.player.client_frame(True, question(0, 0))
    assert [type(action) for action in actions] == [Log, Abort]
    assert (
        isinstance(actions[0], Log) and "cannot read" in actions[0].text and "interleaved.cassette" in actions[0].text
    )


def test_a_corrupt_server_frame_is_reported_when_the_cassette_is_indexed(tmp_path: Path) -> None:
    cassette = tmp_path / "interleaved.cassette"
    write_interleaved(cassette)
    data = bytearray(cassette.read_bytes())
    marker = answer(1, 2, 7).encode()
    at = data.index(marker)
    data[at - 2] = 0xC1  # the payload's bin header becomes a byte msgpack never uses
    cassette.write_bytes(bytes(data))
    with pytest.raises(CassetteError, match="corrupt"):
        ReplaySession(CassetteFile(cassette), ReplayOptions(speed=None)).index_all()


def _indexed_as_played(cassette: Path) -> CassetteFile:
    """The cassette as replay reads a big one (over `INDEX_AS_PLAYED_BYTES`)."""
    source = CassetteFile(cassette)
    source.index_as_played = True
    return source


def _played(actions: Sequence[Action]) -> list[str]:
    return [action.payload.decode() for action in actions if isinstance(action, Send)]


def _first_turn_of_session_0(replay: ReplaySession) -> list[str]:
    """What the replay sends a client of session 0 that opens and asks its first question."""
    upgrade = replay.open_websocket(_request(0))
    assert isinstance(upgrade, Accepted)
    return _played([*upgrade.player.start(), *upgrade.player.client_frame(True, question(0, 0))])


def test_the_first_connection_is_answered_before_the_cassette_is_read_whole(tmp_path: Path) -> None:
    cassette = tmp_path / "interleaved.cassette"
    turns = 256  # several times the small steps replay reads at once
    expected = write_interleaved(cassette, turns)
    records = SESSIONS * 2 + turns * (TOKENS + 1) * SESSIONS
    source = _indexed_as_played(cassette)
    replay = ReplaySession(source, ReplayOptions(speed=None))

    answer = replay.open_websocket(_request(0))
    assert isinstance(answer, Accepted)
    first_turn = _played([*answer.player.start(), *answer.player.client_frame(True, question(0, 0))])

    assert first_turn == expected[0][:TOKENS]
    assert source.records_indexed < records / 2
    played = first_turn
    for turn in range(1, turns):
        played += _played(answer.player.client_frame(True, question(0, turn)))
    assert played == expected[0]
    report = replay.report()
    assert source.records_indexed == records
    assert report.cassette_error is None and len(report.unused_connections) == SESSIONS - 1


def test_a_corrupt_record_met_while_playing_ends_the_recording_there_and_is_reported(tmp_path: Path) -> None:
    cassette = tmp_path / "interleaved.cassette"
    expected = write_interleaved(cassette)
    data = bytearray(cassette.read_bytes())
    at = data.index(answer(1, 2, 7).encode())
    data[at - 2] = 0xC1
    cassette.write_bytes(bytes(data))
    replay = ReplaySession(_indexed_as_played(cassette), ReplayOptions(speed=None))

    assert _first_turn_of_session_0(replay) == expected[0][:TOKENS]
    report = replay.report()

    with pytest.raises(CassetteError) as read_whole:
        list(CassetteFile(cassette).records())
    assert report.cassette_error == f"{read_whole.value}; replay ended the recording there"
    assert not report.clean and f"cassette: {report.cassette_error}" in report.format()


BIG_PAYLOAD = 2**20


def write_big_cassette_with_a_corrupt_end(path: Path) -> None:
    """One short conversation, then another streaming more than `INDEX_AS_PLAYED_BYTES`, then a
    byte msgpack never uses."""
    with CassetteWriter(
        path, CassetteHeader(created=0.0, wsreplay_version="test", upstream="reverse:http://staging.example")
    ) as writer:
        writer.write(WebSocketOpen(1, 0.0, _request(0), _accepted()))
        writer.write_frame(1, 0.001, True, True, question(0, 0).encode())
        writer.write_frame(1, 0.002, False, True, answer(0, 0, 0).encode())
        writer.write(WebSocketClose(1, 0.003, 1000, "", "client"))
        writer.write(WebSocketOpen(2, 0.004, _request(1), _accepted()))
        for number in range(INDEX_AS_PLAYED_BYTES // BIG_PAYLOAD + 2):
            writer.write_frame(2, 0.005 + number / 1000, False, False, bytes(BIG_PAYLOAD))
    with path.open("ab") as out:
        out.write(b"\xc1")


@pytest.mark.parametrize("direct", [False, True], ids=["through the proxy", "direct"])
async def test_a_big_cassette_serves_its_first_connection_then_reports_its_corrupt_end(
    tmp_path: Path, direct: bool
) -> None:
    cassette = tmp_path / "big.cassette"
    write_big_cassette_with_a_corrupt_end(cassette)
    process = RunningWsreplay(
        "replay", str(cassette), "--speed", "max", "--listen", "127.0.0.1:0", *(["--direct"] if direct else [])
    )
    try:
        port = await asyncio.to_thread(process.wait_listening)
        async with connect(f"ws://127.0.0.1:{port}/ws?session=0", open_timeout=TIMEOUT) as socket:
            await socket.send(question(0, 0))
            assert await asyncio.wait_for(socket.recv(), TIMEOUT) == answer(0, 0, 0)
    finally:
        status = await asyncio.to_thread(process.stop)

    assert status == 2, process.output
    corrupt = [line for line in process.output.splitlines() if "cassette: " in line]
    assert len(corrupt) == 1 and "corrupt data at byte" in corrupt[0], process.output
    assert "Traceback" not in process.output


def test_an_incomplete_last_record_found_while_playing_is_in_the_report(tmp_path: Path) -> None:
    cassette = tmp_path / "interleaved.cassette"
    expected = write_interleaved(cassette)
    cassette.write_bytes(cassette.read_bytes()[:-3])  # a recorder killed mid-write
    replay = ReplaySession(_indexed_as_played(cassette), ReplayOptions(speed=None))

    assert _first_turn_of_session_0(replay) == expected[0][:TOKENS]
    report = replay.report()

    assert report.cassette_error is None
    assert report.cassette_warning is not None and "ends with an incomplete record" in report.cassette_warning
    assert f"cassette: {report.cassette_warning}" in report.format()


def test_steps_read_a_few_at_a_time_play_as_from_memory(tmp_path: Path) -> None:
    """Small steps are read several at once, up to a big one: every step plays as recorded,
    whether the cassette is indexed whole or as played."""
    records: list[Record] = [WebSocketOpen(1, 0.0, _request(0), _accepted())]
    clock = 0.0
    for turn in range(50):
        clock += 0.001
        records.append(WebSocketFrame(1, clock, True, True, question(0, turn).encode()))
        answers = {20: [b"x" * 100_000], 30: [b"a", b"b", b"c"], 40: []}.get(turn, [answer(0, turn, 0).encode()])
        for payload in answers:
            clock += 0.001
            records.append(WebSocketFrame(1, clock, False, True, payload))
    records.append(WebSocketClose(1, clock + 0.001, 1000, "", "server"))
    cassette = tmp_path / "steps.cassette"
    write_cassette(cassette, Cassette(CassetteHeader(created=0.0, wsreplay_version="test"), records))

    def played(source: Cassette | CassetteFile) -> list[list[str]]:
        replay = ReplaySession(source, ReplayOptions(speed=None))
        upgrade = replay.open_websocket(_request(0))
        assert isinstance(upgrade, Accepted)
        turns = [[repr(action) for action in upgrade.player.start()]]
        turns += [
            [repr(action) for action in upgrade.player.client_frame(True, question(0, turn))] for turn in range(50)
        ]
        return turns

    from_memory = played(Cassette(CassetteHeader(created=0.0, wsreplay_version="test"), records))
    assert from_memory[21] == [repr(Send(True, b"x" * 100_000))] and from_memory[41] == []
    assert played(CassetteFile(cassette)) == from_memory
    assert played(_indexed_as_played(cassette)) == from_memory


def test_a_big_cassette_answers_minted_values_without_reading_past_the_conversation(tmp_path: Path) -> None:
    """A big cassette whose first request carries a client id, and whose conversation after it
    echoes that id and a binary nonce of its client, answers the request and plays the live
    nonce indexed only as far as the conversation's end: the session after it is not read."""
    login = HttpRequest("POST", "http", "staging.example", 80, "/login", body=b'{"id": "c0ffee123456"}')
    welcome = b'{"type": "welcome", "id": "c0ffee123456"}'
    recorded_nonce, live_nonce = b"\x01nonce-1\xff", b"\x02nonce-2\xfe"
    records: list[Record] = [
        HttpExchange(1, 0.0, login, HttpResponse(200, "OK", body=b"{}")),
        WebSocketOpen(2, 0.01, _request(0), _accepted()),
        WebSocketFrame(2, 0.02, True, False, recorded_nonce),
        WebSocketFrame(2, 0.03, False, False, recorded_nonce),
        WebSocketFrame(2, 0.04, False, True, welcome),
        WebSocketClose(2, 0.05, 1000, "", "server"),
        WebSocketOpen(3, 0.06, _request(1), _accepted()),
    ]
    records += [WebSocketFrame(3, 0.07, False, True, answer(1, 0, step).encode()) for step in range(500)]
    records.append(WebSocketClose(3, 0.08, 1000, "", "server"))
    cassette = tmp_path / "minted.cassette"
    write_cassette(cassette, Cassette(CassetteHeader(created=0.0, wsreplay_version="test"), records))
    source = _indexed_as_played(cassette)
    replay = ReplaySession(source, ReplayOptions(speed=None))

    answered = replay.answer_http(login)
    assert isinstance(answered, Respond) and answered.response.status == 200
    assert source.records_indexed < len(records) / 2
    upgrade = replay.open_websocket(_request(0))
    assert isinstance(upgrade, Accepted)
    played = [*upgrade.player.start(), *upgrade.player.client_frame(False, live_nonce)]

    assert [action.payload for action in played if isinstance(action, Send)] == [live_nonce, welcome]
    assert source.records_indexed < len(records) / 2
