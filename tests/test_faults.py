"""Faults, recorded and replayed: a killed recorder, a crowd of connections, upstreams that fail.

Everything runs for real: the `wsreplay` command in a subprocess (mitmproxy inside),
aiohttp upstreams and `websockets`/aiohttp clients on 127.0.0.1. What is compared is
what a user would compare: what the client observed live against what it observes in
replay, and what `wsreplay show --json` reads back from the cassette.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import signal
import socket
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from aiohttp import WSMsgType, web
from websockets.asyncio.client import connect

from tests.support.cli import RunningWsreplay, run_wsreplay
from tests.support.staging_upstream import ScriptedUpstream, WsScript
from tests.support.tls import make_private_ca

TIMEOUT = 10.0
SESSION_TIMEOUT = 30.0

# --- helpers ------------------------------------------------------------------------


async def show_json(cassette: Path) -> list[dict[str, Any]]:
    """`wsreplay show --json`: exit 0, stderr empty or the truncation warning; the events."""
    result = await asyncio.to_thread(run_wsreplay, "show", "--json", str(cassette))
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip() or "ends with an incomplete record" in result.stderr, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


async def start(*args: str) -> tuple[RunningWsreplay, int]:
    """Start `wsreplay ARGS` on an ephemeral loopback port; return it and the port."""
    process = RunningWsreplay(*args, "--listen", "127.0.0.1:0")
    try:
        return process, await asyncio.to_thread(process.wait_listening)
    except BaseException:
        await asyncio.to_thread(process.kill)
        raise


async def stop(process: RunningWsreplay) -> None:
    """Ctrl-C, as a user does; the command must exit 0."""
    status = await asyncio.to_thread(process.stop)
    assert status == 0, process.output


async def run_under(args: list[str], client: Callable[[int], Awaitable[Any]]) -> tuple[Any, RunningWsreplay]:
    """Start `wsreplay ARGS`, run `client(port)` against it, stop it (exit 0)."""
    process, port = await start(*args)
    try:
        result = await client(port)
    except BaseException:
        await asyncio.to_thread(process.kill)
        raise
    await stop(process)
    return result, process


def free_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- kill -9 of the recorder mid-session --------------------------------------------

KILL_SEED = 20261126
_kill_random = random.Random(KILL_SEED)
KILL_POINTS = [_kill_random.randrange(start, start + 400) for start in (10, 410, 810)]
"""How many server frames the client has received when the recorder gets SIGKILL."""
MAX_MESSAGES = 2000
WINDOW = 16
"""Messages the client keeps in flight (sent, not yet answered)."""


@pytest.mark.parametrize("kill_after", KILL_POINTS)
async def test_kill_9_of_the_recorder_keeps_every_frame_the_client_saw(tmp_path: Path, kill_after: int) -> None:
    """The client streams numbered messages (up to WINDOW in flight) while the upstream answers
    each with two frames; the recorder is killed after `kill_after` frames reached the client."""
    cassette = tmp_path / "killed.cassette"
    script = WsScript(on_open=("ready",), reply=lambda message: [f"echo:{message}", f"ack:{message}"])
    received: list[str] = []
    async with ScriptedUpstream() as upstream:
        upstream.websocket("/stream", script)
        recorder, port = await start("record", "--upstream", upstream.ws_url, "-o", str(cassette))
        try:
            async with connect(
                f"ws://127.0.0.1:{port}/stream", open_timeout=TIMEOUT, close_timeout=1, ping_interval=None
            ) as ws:
                in_flight = asyncio.Semaphore(WINDOW)
                cut = asyncio.Event()

                async def send_numbered() -> None:
                    with contextlib.suppress(websockets.ConnectionClosed):
                        for number in range(MAX_MESSAGES):
                            await in_flight.acquire()
                            if cut.is_set():
                                return
                            await ws.send(f"c{number}")

                async def receive_until_cut() -> None:
                    try:
                        for _ in range(2 * MAX_MESSAGES + 1):
                            received.append(await ws.recv())
                            if received[-1].startswith("ack:"):
                                in_flight.release()
                            if len(received) == kill_after:
                                recorder.process.send_signal(signal.SIGKILL)
                    except websockets.ConnectionClosed:
                        pass
                    cut.set()
                    in_flight.release()

                async with asyncio.timeout(SESSION_TIMEOUT):
                    await asyncio.gather(send_numbered(), receive_until_cut())
        finally:
            await asyncio.to_thread(recorder.kill)
    assert recorder.process.returncode == -signal.SIGKILL
    assert len(received) >= kill_after, "the connection ended before the kill point"

    events = await show_json(cassette)
    opens = [event for event in events if event["kind"] == "websocket_open"]
    assert [(o["request"]["path"], o["response"]["status"]) for o in opens] == [("/stream", 101)]
    frames = [event for event in events if event["kind"] == "frame"]
    assert {frame["id"] for frame in frames} == {opens[0]["id"]}
    server_frames = [frame["text"] for frame in frames if frame["from"] == "server"]
    assert server_frames[: len(received)] == received, "a frame the client received is missing or out of order"

    client_frames = [frame["text"] for frame in frames if frame["from"] == "client"]
    assert client_frames == [f"c{number}" for number in range(len(client_frames))]
    answered = {text.split(":", 1)[1] for text in received if text != "ready"}
    assert answered <= set(client_frames), "a message the upstream answered is not in the cassette"
    position = {(frame["from"], frame["text"]): index for index, frame in enumerate(frames)}
    for text in server_frames[1:]:
        message = ("client", text.split(":", 1)[1])
        assert position.get(message, len(frames)) < position[("server", text)], f"{text} without its message before it"
    assert not [event for event in events if event["kind"] == "close"], "killed: no close can have been written"


# --- 50 concurrent connections --------------------------------------------------------

CONNECTIONS = 50
MESSAGES_PER_CONNECTION = 5


class MarkingUpstream:
    """A WebSocket upstream that stamps everything it sends with its own per-connection marker."""

    def __init__(self) -> None:
        self.received: dict[str, list[str]] = defaultdict(list)
        self._numbers = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _serve(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        marker = f"upstream-connection-{next(self._numbers)}"
        await ws.send_str(json.dumps({"type": "hello", "conn": marker}))
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                break
            self.received[marker].append(message.data)
            await ws.send_str(json.dumps({"type": "echo", "conn": marker, "echo": json.loads(message.data)}))
        return ws

    async def __aenter__(self) -> MarkingUpstream:
        app = web.Application()
        app.router.add_get("/ws", self._serve)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def numbered_message(client: int, seq: int) -> str:
    """The same content on every run, with a fresh per-run id."""
    return json.dumps({"type": "message", "client": client, "seq": seq, "message_id": str(uuid.uuid4())})


async def crowd(port: int) -> dict[int, dict[str, list[str]]]:
    """50 clients at once, each on /ws?client=N with a fresh run id: hello, N's messages, echoes."""

    async def one(client: int) -> dict[str, list[str]]:
        url = f"ws://127.0.0.1:{port}/ws?client={client}&run={uuid.uuid4()}"
        async with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT, ping_interval=None) as ws:
            received = [await asyncio.wait_for(ws.recv(), TIMEOUT)]
            sent = [numbered_message(client, seq) for seq in range(MESSAGES_PER_CONNECTION)]
            for message in sent:
                await ws.send(message)
            for _ in sent:
                received.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
        return {"sent": sent, "received": received}

    async with asyncio.timeout(SESSION_TIMEOUT):
        results = await asyncio.gather(*(one(client) for client in range(CONNECTIONS)))
    return dict(enumerate(results))


async def test_fifty_concurrent_connections_are_recorded_apart_and_replayed_apart(tmp_path: Path) -> None:
    cassette = tmp_path / "crowd.cassette"
    async with MarkingUpstream() as upstream:
        live, _ = await run_under(
            ["record", "--upstream", f"ws://127.0.0.1:{upstream.port}", "-o", str(cassette)], crowd
        )

    markers: dict[int, str] = {}
    for client, conversation in live.items():
        hello, *echoes = map(json.loads, conversation["received"])
        markers[client] = hello["conn"]
        assert [echo["conn"] for echo in echoes] == [hello["conn"]] * MESSAGES_PER_CONNECTION
        assert [echo["echo"] for echo in echoes] == [json.loads(m) for m in conversation["sent"]]
        assert upstream.received[hello["conn"]] == conversation["sent"]
    assert len(set(markers.values())) == CONNECTIONS

    events = await show_json(cassette)
    opens = {event["id"]: event for event in events if event["kind"] == "websocket_open"}
    assert len(opens) == CONNECTIONS and all(o["response"]["status"] == 101 for o in opens.values())
    client_of = {
        record_id: int(o["request"]["query"].split("&")[0].removeprefix("client=")) for record_id, o in opens.items()
    }
    assert sorted(client_of.values()) == list(range(CONNECTIONS))
    by_connection: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["kind"] == "frame":
            by_connection[event["id"]].append(event)
    assert set(by_connection) == set(opens)
    for record_id, frames in by_connection.items():
        conversation = live[client_of[record_id]]
        assert [f["text"] for f in frames if f["from"] == "client"] == conversation["sent"], f"connection #{record_id}"
        assert [f["text"] for f in frames if f["from"] == "server"] == conversation["received"], (
            f"connection #{record_id}"
        )
        for seq, frame in enumerate(f for f in frames if json.loads(f["text"])["type"] == "echo"):
            client_frame = next(f for f in frames if f["text"] == conversation["sent"][seq])
            assert frames.index(client_frame) < frames.index(frame), f"connection #{record_id}: echo before message"
    closes = [event for event in events if event["kind"] == "close"]
    assert sorted(c["id"] for c in closes) == sorted(opens)
    assert {(c["code"], c["closed_by"]) for c in closes} == {(1000, "client")}

    replayed, replay = await run_under(["replay", str(cassette), "--speed", "max", "--strict"], crowd)
    for client in range(CONNECTIONS):
        hello, *echoes = map(json.loads, replayed[client]["received"])
        assert hello["conn"] == markers[client], f"client {client} got another conversation"
        expected = [{"type": "echo", "conn": markers[client], "echo": json.loads(m)} for m in replayed[client]["sent"]]
        assert echoes == expected, f"client {client}: the echoes carry its own fresh message ids"
    assert "50 WebSocket connections" in replay.output


# --- upstream faults, live and replayed --------------------------------------------------

UPGRADE_HEADERS = {"Upgrade": "websocket", "Connection": "Upgrade"}


NO_RESPONSE = "connection closed without a response"


async def http_and_upgrade_statuses(port: int) -> list[tuple[str, int | str, bytes]]:
    """What a client sees of a plain request and of a WebSocket upgrade: statuses and bodies."""
    seen: list[tuple[str, int | str, bytes]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        try:
            async with session.get(f"http://127.0.0.1:{port}/health") as response:
                seen.append(("GET /health", response.status, await response.read()))
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            seen.append(("GET /health", NO_RESPONSE, b""))
        try:
            async with session.ws_connect(f"ws://127.0.0.1:{port}/ws"):
                seen.append(("upgrade /ws", 101, b""))
        except aiohttp.WSServerHandshakeError as exc:
            seen.append(("upgrade /ws", exc.status, b""))
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            seen.append(("upgrade /ws", NO_RESPONSE, b""))
    return seen


def failed_exchanges(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(path, failure message) for each recorded exchange without a response."""
    errors = {event["id"]: event["message"] for event in events if event["kind"] == "error"}
    return [
        (event["request"]["path"], errors.get(event["id"]))
        for event in events
        if event["kind"] == "http" and event["response"] is None
    ]


async def test_connection_refused_is_a_502_live_and_in_replay(tmp_path: Path) -> None:
    cassette = tmp_path / "refused.cassette"
    upstream = f"http://127.0.0.1:{free_port()}"
    live, _ = await run_under(["record", "--upstream", upstream, "-o", str(cassette)], http_and_upgrade_statuses)
    assert [(what, status) for what, status, _ in live] == [("GET /health", 502), ("upgrade /ws", 502)]

    events = await show_json(cassette)
    failures = failed_exchanges(events)
    assert [path for path, _ in failures] == ["/health", "/ws"]
    assert all(message and "Connect call failed" in message for _, message in failures), failures

    replayed, _ = await run_under(["replay", str(cassette), "--speed", "max"], http_and_upgrade_statuses)
    assert [(what, status) for what, status, _ in replayed] == [("GET /health", 502), ("upgrade /ws", 502)]
    assert b"Connect call failed" in replayed[0][2]


async def test_upstream_tls_failure_is_a_502_live_and_in_replay(tmp_path: Path) -> None:
    """The upstream's certificate chains to a CA the proxy was not told about."""
    cassette = tmp_path / "tls.cassette"
    ca = make_private_ca(tmp_path)
    async with ScriptedUpstream(ssl_context=ca.server_ssl_context(["127.0.0.1"])) as upstream:
        upstream.route("GET", "/health", json_body={"status": "healthy"})
        upstream.websocket("/ws", WsScript(on_open=("hello",)))
        live, _ = await run_under(
            ["record", "--upstream", upstream.http_url, "-o", str(cassette)], http_and_upgrade_statuses
        )
        assert upstream.requests == [] and upstream.connections == [], "the untrusted upstream was talked to"
    assert [(what, status) for what, status, _ in live] == [("GET /health", 502), ("upgrade /ws", 502)]
    assert b"certificate" in live[0][2].lower()

    events = await show_json(cassette)
    failures = failed_exchanges(events)
    assert [path for path, _ in failures] == ["/health", "/ws"]
    assert all(message and "certificate" in message.lower() for _, message in failures), failures

    replayed, _ = await run_under(["replay", str(cassette), "--speed", "max"], http_and_upgrade_statuses)
    assert [(what, status) for what, status, _ in replayed] == [("GET /health", 502), ("upgrade /ws", 502)]
    assert b"certificate" in replayed[0][2].lower()


CLOSED_WITHOUT_FRAME = "no close frame"


async def ws_observation(port: int, path: str) -> list[Any]:
    """Greeting, then three messages with their echoes, until the server ends the connection."""
    seen: list[Any] = []
    async with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=TIMEOUT, close_timeout=2, ping_interval=None) as ws:
        try:
            seen.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
            for number in range(3):
                await ws.send(f"msg-{number}")
                seen.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
        except websockets.ConnectionClosed as exc:
            if exc.rcvd is None:
                seen.append(("closed", ws.close_code, CLOSED_WITHOUT_FRAME))
            else:
                seen.append(("closed", exc.rcvd.code, exc.rcvd.reason))
    return seen


def faulty_upstream() -> ScriptedUpstream:
    """/drop aborts the TCP connection after two messages; /error closes with 1011 after two."""
    upstream = ScriptedUpstream()
    echo = lambda message: [f"echo:{message}"]  # noqa: E731
    upstream.websocket("/drop", WsScript(on_open=("hello",), reply=echo, drop_after=2))
    upstream.websocket(
        "/error",
        WsScript(on_open=("hello",), reply=echo, close_after=2, close_code=1011, close_reason="Internal error"),
    )
    return upstream


async def both_paths(port: int) -> dict[str, list[Any]]:
    return {path: await ws_observation(port, path) for path in ("/drop", "/error")}


def closes_by_path(events: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    paths = {event["id"]: event["request"]["path"] for event in events if event["kind"] == "websocket_open"}
    return {paths[e["id"]]: (e["code"], e["reason"], e["closed_by"]) for e in events if e["kind"] == "close"}


INTERNAL_ERROR = ["hello", "echo:msg-0", "echo:msg-1", ("closed", 1011, "Internal error")]
CONNECTION_LOST = ["hello", "echo:msg-0", "echo:msg-1", ("closed", 1006, CLOSED_WITHOUT_FRAME)]


async def test_1011_close_and_abrupt_drop_live_and_in_replay(tmp_path: Path) -> None:
    """What the client sees straight from the upstream, through the recorder, and replayed
    through the proxy and directly."""
    cassette = tmp_path / "faults.cassette"
    async with faulty_upstream() as upstream:
        without_proxy = await both_paths(upstream.port)
        live, _ = await run_under(["record", "--upstream", upstream.ws_url, "-o", str(cassette)], both_paths)
    assert without_proxy == {"/drop": CONNECTION_LOST, "/error": INTERNAL_ERROR}
    assert closes_by_path(await show_json(cassette)) == {
        "/drop": (1006, "", "server"),
        "/error": (1011, "Internal error", "server"),
    }
    replayed, _ = await run_under(["replay", str(cassette), "--speed", "max"], both_paths)
    direct, _ = await run_under(["replay", str(cassette), "--speed", "max", "--direct"], both_paths)

    assert without_proxy == live == replayed == direct, "through wsreplay, the client saw something else"


async def aiohttp_close_seen(port: int, path: str) -> tuple[list[str], int | None]:
    """What an aiohttp client sees of `path`: the texts, then the close code once the server is gone."""
    texts: list[str] = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{port}{path}", autoping=False) as ws:
            for number in range(3):
                message = await ws.receive(timeout=TIMEOUT)
                if message.type is not WSMsgType.TEXT:
                    break
                texts.append(message.data)
                await ws.send_str(f"msg-{number}")
            while message.type is WSMsgType.TEXT:
                message = await ws.receive(timeout=TIMEOUT)
            return texts, ws.close_code


async def test_an_upstream_drop_reaches_an_aiohttp_client_as_a_lost_connection_live_and_replayed(
    tmp_path: Path,
) -> None:
    cassette = tmp_path / "drop.cassette"
    async with faulty_upstream() as upstream:
        without_proxy = await aiohttp_close_seen(upstream.port, "/drop")
        live, _ = await run_under(
            ["record", "--upstream", upstream.ws_url, "-o", str(cassette)],
            lambda port: aiohttp_close_seen(port, "/drop"),
        )
    replayed, _ = await run_under(
        ["replay", str(cassette), "--speed", "max"], lambda port: aiohttp_close_seen(port, "/drop")
    )
    assert without_proxy == live == replayed == (["hello", "echo:msg-0", "echo:msg-1"], 1006)


async def test_a_client_that_drops_its_connection_looks_dropped_to_the_upstream(tmp_path: Path) -> None:
    async def send_then_drop(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=TIMEOUT, ping_interval=None) as ws:
            await ws.send("msg-0")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "echo:msg-0"
            ws.transport.abort()
        await asyncio.wait_for(upstream.connections[-1].closed.wait(), TIMEOUT)

    upstream = ScriptedUpstream()
    upstream.websocket("/echo", WsScript(reply=lambda message: [f"echo:{message}"]))
    async with upstream:
        await send_then_drop(upstream.port)
        await run_under(["record", "--upstream", upstream.ws_url, "-o", str(tmp_path / "c.cassette")], send_then_drop)
    assert [connection.close_code for connection in upstream.connections] == [1006, 1006]
    assert closes_by_path(await show_json(tmp_path / "c.cassette")) == {"/echo": (1006, "", "client")}
