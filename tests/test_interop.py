"""HAR export/import, JSON export, and import of flow files written by a real mitmdump."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mitmproxy.io import FlowReader
from mitmproxy.test import tflow
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.chat_records import auth_exchange, chat_session, text_frame, upgrade
from tests.support.cli import RunningWsreplay, run_wsreplay
from tests.support.staging_upstream import ScriptedUpstream, WsScript, require_header
from wsreplay.cassette import Cassette, load_cassette
from wsreplay.har import cassette_as_json, cassette_to_har, har_to_cassette, missing_closes_note
from wsreplay.importers import (
    CassetteImportError,
    detect_format,
    flows_to_cassette,
    import_file,
    write_imported,
)
from wsreplay.records import (
    Annotation,
    CassetteHeader,
    ConnectionFailure,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    Record,
    WebSocketClose,
    WebSocketFrame,
    WebSocketOpen,
)
from wsreplay.timeline import record_as_dict

TIMEOUT = 20.0
CREATED = 1757266800.123457
BINARY = bytes(range(256))
GZIPPED = gzip.compress(b'{"status": "healthy"}', mtime=0)


# --- a small HAR 1.2 schema check -------------------------------------------------

NUMBER = (int, float)
REQUEST_FIELDS = {
    "method": str,
    "url": str,
    "httpVersion": str,
    "cookies": list,
    "headers": list,
    "queryString": list,
    "headersSize": int,
    "bodySize": int,
}
RESPONSE_FIELDS = {
    "status": int,
    "statusText": str,
    "httpVersion": str,
    "cookies": list,
    "headers": list,
    "content": dict,
    "redirectURL": str,
    "headersSize": int,
    "bodySize": int,
}
ENTRY_FIELDS = {
    "startedDateTime": str,
    "time": NUMBER,
    "request": dict,
    "response": dict,
    "cache": dict,
    "timings": dict,
}


def _fields(obj: dict[str, Any], spec: dict[str, Any], where: str) -> list[str]:
    problems = [f"{where}.{name} missing" for name in spec if name not in obj]
    problems += [
        f"{where}.{name} is {type(obj[name]).__name__}"
        for name, kind in spec.items()
        if name in obj and (not isinstance(obj[name], kind) or isinstance(obj[name], bool))
    ]
    return problems


def _name_value_list(items: list[Any], where: str) -> list[str]:
    return [
        f"{where}[{i}] is not a name/value pair"
        for i, item in enumerate(items)
        if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str))
    ]


def har_problems(har: dict[str, Any]) -> list[str]:
    """What makes `har` not HAR 1.2 (required fields and their types), plus Chrome's WS fields."""
    log = har.get("log", {})
    problems = _fields(log, {"version": str, "creator": dict, "entries": list}, "log")
    problems += _fields(log.get("creator", {}), {"name": str, "version": str}, "log.creator")
    for n, entry in enumerate(log.get("entries", [])):
        where = f"entries[{n}]"
        problems += _fields(entry, ENTRY_FIELDS, where)
        datetime.fromisoformat(entry["startedDateTime"])
        request, response, timings = entry["request"], entry["response"], entry["timings"]
        problems += _fields(request, REQUEST_FIELDS, f"{where}.request")
        problems += _fields(response, RESPONSE_FIELDS, f"{where}.response")
        problems += _fields(response["content"], {"size": int, "mimeType": str}, f"{where}.response.content")
        problems += _fields(timings, {"send": NUMBER, "wait": NUMBER, "receive": NUMBER}, f"{where}.timings")
        for part in (request, response):
            problems += _name_value_list(part["headers"], f"{where} headers")
            problems += _name_value_list(part["cookies"], f"{where} cookies")
        problems += _name_value_list(request["queryString"], f"{where} queryString")
        if "postData" in request:
            problems += _fields(request["postData"], {"mimeType": str, "text": str}, f"{where}.request.postData")
        if sum(v for v in timings.values() if v >= 0) != entry["time"]:
            problems.append(f"{where}.time is not the sum of its timings")
        for message in entry.get("_webSocketMessages", []):
            problems += _fields(message, {"type": str, "time": float, "opcode": int, "data": str}, f"{where} message")
            if message["type"] not in ("send", "receive") or message["opcode"] not in (1, 2):
                problems.append(f"{where} message has type {message['type']} opcode {message['opcode']}")
    return problems


# --- a cassette with everything a HAR has to carry ------------------------------


def full_cassette() -> Cassette:
    """HTTP with text, binary and gzip bodies, a failed exchange, WS frames both ways, a refusal."""
    health = HttpRequest(
        "GET",
        "http",
        "127.0.0.1",
        8080,
        "/health",
        query="verbose=1&x=%20y&empty=",
        headers=(("Accept", "*/*"), ("Cookie", "a=1; b=2")),
    )
    gzip_headers = (
        ("Content-Encoding", "gzip"),
        ("Content-Type", "application/json"),
        ("Set-Cookie", "session=abc; Path=/; HttpOnly"),
    )
    records: list[Record] = [
        auth_exchange(1, 0.0),
        HttpExchange(2, 0.06, health, HttpResponse(200, "OK", headers=gzip_headers, body=GZIPPED), 0.012345),
        HttpExchange(
            3,
            0.08,
            HttpRequest("PUT", "https", "::1", 8443, "/blob", body=BINARY),
            HttpResponse(201, "Created", "HTTP/2.0", (("Content-Type", "application/octet-stream"),), BINARY[::-1]),
            0.001,
        ),
        HttpExchange(4, 0.09, HttpRequest("GET", "https", "api.staging.example", 443, "/gone"), None, 0.0),
        ConnectionFailure(4, 0.095, "server disconnected"),
        upgrade(5, 0.2, duration=0.0075),
        text_frame(5, 0.21, False, {"type": "ping"}),
        text_frame(5, 0.3, True, {"type": "message", "content": "héllo ✓"}),
        WebSocketFrame(5, 0.31, True, False, BINARY),
        WebSocketFrame(5, 0.32, False, False, b""),
        WebSocketFrame(5, 0.33, False, True, b"not json"),
        WebSocketClose(5, 0.4, 1008, "Authentication failed", "server"),
        upgrade(6, 0.5, status=403, duration=0.0123),
        upgrade(7, 0.6),
        WebSocketFrame(7, 0.61, True, True, b"{}"),
        ConnectionFailure(7, 0.7, "connection reset by peer"),
        ConnectionFailure(8, 0.8, "upstream refused the connection"),
        Annotation(0, 0.9, {"redactions": {"headers": ["Authorization"]}}),
    ]
    header = CassetteHeader(CREATED, "0.1.0", "record", "reverse:https://api.staging.example", {"test": "t1"})
    return Cassette(header, records)


def through_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def test_har_export_is_valid_har_1_2() -> None:
    har = through_json(cassette_to_har(full_cassette()))
    assert har_problems(har) == []
    entries = har["log"]["entries"]
    assert har["log"]["version"] == "1.2" and har["log"]["creator"]["name"] == "wsreplay"
    assert [e["request"]["url"] for e in entries] == [
        "https://auth.staging.example/auth/e2e/test-auth",
        "http://127.0.0.1:8080/health?verbose=1&x=%20y&empty=",
        "https://[::1]:8443/blob",
        "https://api.staging.example/gone",
        "wss://api.staging.example/ws?v=1",
        "https://api.staging.example/ws?v=1",
        "wss://api.staging.example/ws?v=1",
    ]
    health, blob, gone, ws, refused = entries[1], entries[2], entries[3], entries[4], entries[5]
    assert health["startedDateTime"] == "2025-09-07T17:40:00.183457Z"
    assert health["request"]["queryString"] == [
        {"name": "verbose", "value": "1"},
        {"name": "x", "value": " y"},
        {"name": "empty", "value": ""},
    ]
    assert health["request"]["cookies"] == [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]
    assert health["response"]["cookies"] == [{"name": "session", "value": "abc"}]
    assert health["response"]["content"]["text"] == '{"status": "healthy"}'
    assert health["time"] == 12.345
    assert blob["request"]["postData"]["_encoding"] == "base64"
    assert base64.b64decode(blob["response"]["content"]["text"]) == BINARY[::-1]
    assert blob["response"]["content"]["encoding"] == "base64"
    assert gone["response"]["status"] == 0 and gone["response"]["_error"] == "server disconnected"
    assert ws["_resourceType"] == "websocket"
    assert ws["_webSocketMessages"][:3] == [
        {"type": "receive", "time": CREATED + 0.21, "opcode": 1, "data": '{"type": "ping"}'},
        {
            "type": "send",
            "time": CREATED + 0.3,
            "opcode": 1,
            "data": '{"type": "message", "content": "h\\u00e9llo \\u2713"}',
        },
        {"type": "send", "time": CREATED + 0.31, "opcode": 2, "data": base64.b64encode(BINARY).decode()},
    ]
    assert ws["_webSocketClose"] == {
        "code": 1008,
        "reason": "Authentication failed",
        "closedBy": "server",
        "time": CREATED + 0.4,
    }
    assert "_resourceType" not in refused and refused["response"]["status"] == 403
    assert (ws["time"], ws["timings"]["wait"], refused["time"]) == (7.5, 7.5, 12.3)


def test_mitmproxy_reads_the_exported_har() -> None:
    data = json.dumps(cassette_to_har(full_cassette())).encode()
    flows = list(FlowReader(io.BytesIO(data)).stream())
    assert [(f.request.method, f.response.status_code if f.response else None) for f in flows] == [
        ("POST", 200),
        ("GET", 200),
        ("PUT", 201),
        ("GET", 0),
        ("GET", 101),
        ("GET", 403),
        ("GET", 101),
    ]
    assert flows[1].response is not None and flows[1].response.content == b'{"status": "healthy"}'


def test_har_round_trip_keeps_every_record() -> None:
    original = full_cassette()
    back = har_to_cassette(through_json(cassette_to_har(original)))
    assert back.header == original.header
    assert back.records == original.records


def test_har_round_trip_through_files(tmp_path: Path) -> None:
    har_file, cassette_file = tmp_path / "session.har", tmp_path / "session.cassette"
    har_file.write_text(json.dumps(cassette_to_har(full_cassette()), indent=2))
    summary = write_imported(import_file(har_file), cassette_file)
    assert summary.startswith("4 HTTP exchanges, 3 WebSocket connections (1 refused), 6 frames")
    assert load_cassette(cassette_file).records == full_cassette().records


def test_json_export_is_the_header_and_every_record() -> None:
    cassette = full_cassette()
    exported = through_json(cassette_as_json(cassette))
    assert exported["header"]["created"] == CREATED and exported["header"]["metadata"] == {"test": "t1"}
    assert exported["records"] == through_json([record_as_dict(r) for r in cassette.records])


def playwright_har(start_ms: float) -> dict[str, Any]:
    """What Playwright-style tools write: `time` in epoch milliseconds, no close field, h2 names."""
    started = datetime.fromtimestamp(start_ms / 1000).astimezone().isoformat()
    request = {
        "method": "GET",
        "url": "wss://api.staging.example/ws",
        "httpVersion": "HTTP/1.1",
        "headers": [{"name": "Sec-WebSocket-Protocol", "value": "jwt-auth"}],
        "queryString": [],
        "cookies": [],
        "headersSize": -1,
        "bodySize": 0,
    }
    response = {
        "status": 101,
        "statusText": "Switching Protocols",
        "httpVersion": "HTTP/1.1",
        "headers": [{"name": "Sec-WebSocket-Protocol", "value": "jwt-auth"}],
        "cookies": [],
        "content": {"size": 0, "mimeType": "x-unknown"},
        "redirectURL": "",
        "headersSize": -1,
        "bodySize": 0,
    }
    health = {
        "method": "GET",
        "url": "https://api.staging.example/health",
        "httpVersion": "h2",
        "headers": [{"name": ":authority", "value": "api.staging.example"}],
        "queryString": [],
        "cookies": [],
        "headersSize": -1,
        "bodySize": 0,
    }
    health_response = {
        "status": 200,
        "statusText": "",
        "httpVersion": "h2",
        "headers": [{"name": "content-encoding", "value": "br"}, {"name": "content-length", "value": "9"}],
        "cookies": [],
        "content": {"size": 21, "mimeType": "application/json", "text": '{"status": "healthy"}'},
        "redirectURL": "",
        "headersSize": -1,
        "bodySize": 9,
    }
    messages = [
        {"type": "send", "time": start_ms + 100.0, "opcode": 1, "data": '{"type": "message"}'},
        {"type": "receive", "time": start_ms + 250.5, "opcode": 1, "data": '{"type": "agent_started"}'},
        {"type": "receive", "time": start_ms + 300.0, "opcode": 2, "data": base64.b64encode(b"\x00\xff").decode()},
        {"type": "receive", "time": start_ms + 301.0, "opcode": 9, "data": ""},
    ]
    timings = {"send": 0, "wait": 5, "receive": 0}
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "Playwright", "version": "1.47"},
            "entries": [
                {
                    "startedDateTime": started,
                    "time": 5,
                    "request": health,
                    "response": health_response,
                    "cache": {},
                    "timings": timings,
                },
                {
                    "startedDateTime": started,
                    "time": 0,
                    "request": request,
                    "response": response,
                    "cache": {},
                    "timings": timings | {"wait": 0},
                    "_resourceType": "websocket",
                    "_webSocketMessages": messages,
                },
            ],
        }
    }


def test_import_playwright_har_with_millisecond_times(tmp_path: Path) -> None:
    start_ms = 1757266800000.0
    path = tmp_path / "playwright.har"
    path.write_text("\ufeff" + json.dumps(playwright_har(start_ms)), encoding="utf-8")
    cassette = import_file(path)
    assert cassette.header.created == 1757266800.0 and cassette.header.metadata["imported_from"] == "har"
    [health] = [r for r in cassette.records if isinstance(r, HttpExchange)]
    [opened] = [r for r in cassette.records if isinstance(r, WebSocketOpen)]
    frames = [r for r in cassette.records if isinstance(r, WebSocketFrame)]
    assert cassette.records == [
        opened,
        health,
        *frames,
        WebSocketClose(2, 0.3, 1000, "end of the HAR recording", "server"),
        Annotation(0, 0.3, {"import_note": missing_closes_note(1)}),
    ]
    assert isinstance(health, HttpExchange) and health.response is not None
    assert health.request.headers == () and health.request.http_version == "HTTP/2.0"
    assert health.response.headers == (("content-length", "21"),)
    assert health.response.body == b'{"status": "healthy"}' and health.duration == 0.005
    assert isinstance(opened, WebSocketOpen) and opened.accepted and opened.request.is_websocket_upgrade
    assert opened.request.scheme == "https" and opened.request.port == 443 and opened.subprotocol == "jwt-auth"
    assert [(f.time, f.from_client, f.is_text, f.payload) for f in frames] == [
        (0.1, True, True, b'{"type": "message"}'),
        (0.2505, False, True, b'{"type": "agent_started"}'),
        (0.3, False, False, b"\x00\xff"),
    ]


def test_import_chrome_har_with_second_times() -> None:
    har = playwright_har(1757266800000.0)
    for message in har["log"]["entries"][1]["_webSocketMessages"]:
        message["time"] /= 1000
    frames = [r for r in har_to_cassette(har).records if isinstance(r, WebSocketFrame)]
    assert [f.time for f in frames] == [0.1, 0.2505, 0.3]


def browser_har_without_closes(sockets: int) -> dict[str, Any]:
    """A Playwright HAR with `sockets` WebSocket entries that, like every browser's, record no close."""
    har = playwright_har(1757266800000.0)
    websocket = har["log"]["entries"][1]
    har["log"]["entries"][1:] = [json.loads(json.dumps(websocket)) for _ in range(sockets)]
    return har


async def every_message(ws: Any) -> list[str | bytes]:
    """The messages until the server closes the connection."""
    return [message async for message in ws]


async def test_a_har_without_closes_imports_with_a_note_and_replays_a_clean_server_close(tmp_path: Path) -> None:
    source, cassette = tmp_path / "browser.har", tmp_path / "browser.cassette"
    source.write_text(json.dumps(browser_har_without_closes(3)), encoding="utf-8")
    imported = run_wsreplay("import", str(source), "-o", str(cassette))
    assert imported.returncode == 0, imported.stderr
    notes = [line for line in imported.stderr.splitlines() if "note" in line]
    assert notes == [
        "wsreplay: note: 3 WebSockets have no close in the HAR; replay closes each cleanly (1000, by the server) "
        "at the end of its recorded time, after its last frame"
    ]

    replayer = RunningWsreplay("replay", str(cassette), "--direct", "--listen", "127.0.0.1:0", "--speed", "max")
    try:
        port = await asyncio.to_thread(replayer.wait_listening)
        async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["jwt-auth"], open_timeout=TIMEOUT) as ws:
            await ws.send('{"type": "message"}')
            received = await asyncio.wait_for(every_message(ws), TIMEOUT)
            closed = (ws.close_code, ws.close_reason, ws.protocol.close_rcvd_then_sent)
    finally:
        assert await asyncio.to_thread(replayer.stop) == 0, replayer.output
    assert received == ['{"type": "agent_started"}', b"\x00\xff"]
    assert closed == (1000, "end of the HAR recording", True)


@pytest.mark.parametrize(("entry_time", "wait"), [(60, 0.06), (5000, 0.1)])
def test_import_takes_the_upgrade_wait_from_the_entry_time_up_to_its_first_message(
    entry_time: float, wait: float
) -> None:
    """A WebSocket entry's `time` is its handshake's; one spanning the whole connection stops at the first message."""
    har = playwright_har(1757266800000.0)
    har["log"]["entries"][1] |= {"time": entry_time, "timings": {"send": 0, "wait": entry_time, "receive": 0}}
    [opened] = [r for r in har_to_cassette(har).records if isinstance(r, WebSocketOpen)]
    assert (opened.time, opened.duration) == (0.0, wait)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is neither a HAR file nor a mitmproxy flow file"),
        (b"\x00\x01garbage", "is neither a HAR file nor a mitmproxy flow file"),
        (b"{not json", "is not valid JSON (Expecting property name enclosed in double quotes at line 1)"),
        (b'{"log": {}}', "is not a usable HAR file: HAR log has no valid 'entries'"),
        (b'{"log": {"entries": []}}', "HAR log has no entries: there is nothing to import"),
        (
            b'{"log": {"entries": [{"startedDateTime": "yesterday"}]}}',
            "startedDateTime 'yesterday' is not an ISO 8601 date",
        ),
        (b"12:not a flow,", "is not a readable mitmproxy flow file"),
    ],
)
def test_bad_input_is_one_clear_sentence(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    with pytest.raises(CassetteImportError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        import_file(path)
    assert "\n" not in str(caught.value)


def test_a_cassette_or_a_missing_file_is_not_importable(tmp_path: Path) -> None:
    path = tmp_path / "already.cassette"
    write_imported(full_cassette(), path)
    with pytest.raises(CassetteImportError, match="is already a wsreplay cassette"):
        import_file(path)
    with pytest.raises(CassetteImportError, match="cannot read"):
        import_file(tmp_path / "missing.har")


def test_detect_format() -> None:
    assert detect_format(b'\xef\xbb\xbf  {"log"') == "har"
    assert detect_format(b"1043:4:type;") == "mitmproxy"
    assert detect_format(b"\x87\xa6format") == "unknown"


# --- a flow file written by a real mitmdump -------------------------------------


LISTENING = re.compile(rb"listening at \S*?:(\d+)")


async def listening_port(process: asyncio.subprocess.Process) -> int:
    """The port mitmdump reports it listens on (it prints the line once it is bound)."""
    assert process.stdout is not None
    async with asyncio.timeout(TIMEOUT):
        while line := await process.stdout.readline():
            if found := LISTENING.search(line):
                return int(found[1])
    raise AssertionError(f"mitmdump exited with {await process.wait()} before listening")


def chat_upstream() -> ScriptedUpstream:
    upstream = ScriptedUpstream()
    upstream.route("GET", "/health", json_body={"status": "healthy"})
    upstream.websocket(
        "/ws",
        WsScript(
            on_open=({"type": "system_message", "data": {"event": "connection_established"}},),
            reply=lambda message: [message if isinstance(message, bytes) else {"type": "agent_started"}],
            close_after=2,
            close_code=1008,
            close_reason="Authentication failed",
            refuse=require_header("Authorization"),
        ),
    )
    return upstream


async def drive_session(port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
        session.get(f"{base}/health?probe=1") as response,
    ):
        assert response.status == 200
    ws_url = f"ws://127.0.0.1:{port}/ws"
    with pytest.raises(InvalidStatus):
        await connect(ws_url, proxy=None, open_timeout=TIMEOUT)
    async with connect(
        ws_url, proxy=None, open_timeout=TIMEOUT, additional_headers={"Authorization": "Bearer t"}
    ) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "system_message"
        await ws.send(json.dumps({"type": "message", "content": "hi"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) == {"type": "agent_started"}
        await ws.send(BINARY)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == BINARY
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert ws.close_code == 1008


async def run_mitmdump(
    upstream_port: int, confdir: Path, *options: str, session: Callable[[int], Awaitable[Any]] | None = None
) -> Any:
    """Run a real `mitmdump` in reverse mode to the upstream with `options`, drive `session(port)`
    (default: `drive_session`) through it, stop it with Ctrl-C (exit 0); return what the session returned."""
    mitmdump = Path(sys.executable).with_name("mitmdump")
    process = await asyncio.create_subprocess_exec(
        str(mitmdump),
        "--mode",
        f"reverse:http://127.0.0.1:{upstream_port}",
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        "0",
        "--set",
        f"confdir={confdir}",
        "--set",
        "flow_detail=0",
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        result = await (session or drive_session)(await listening_port(process))
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        _out, errors = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 0, errors.decode()
    return result


async def test_import_flow_file_written_by_mitmdump(tmp_path: Path) -> None:
    flow_file = tmp_path / "session.flows"
    async with chat_upstream() as upstream:
        await run_mitmdump(upstream.port, tmp_path / "mitmproxy", "-w", str(flow_file))

    cassette = import_file(flow_file)
    assert cassette.header.metadata == {"imported_from": "mitmproxy"}
    health, refused, opened, *rest = cassette.records
    assert isinstance(health, HttpExchange) and health.response is not None
    assert (health.request.method, health.request.path, health.request.query) == ("GET", "/health", "probe=1")
    assert health.response.status == 200 and json.loads(health.response.body) == {"status": "healthy"}
    assert isinstance(refused, WebSocketOpen) and refused.response.status == 403 and not refused.accepted
    assert isinstance(opened, WebSocketOpen) and opened.accepted
    assert opened.request.header("authorization") == "Bearer t"
    frames = [r for r in rest if isinstance(r, WebSocketFrame)]
    assert [(f.from_client, f.is_text, f.payload if not f.is_text else json.loads(f.payload)) for f in frames] == [
        (False, True, {"type": "system_message", "data": {"event": "connection_established"}}),
        (True, True, {"type": "message", "content": "hi"}),
        (False, True, {"type": "agent_started"}),
        (True, False, BINARY),
        (False, False, BINARY),
    ]
    [close] = [r for r in rest if isinstance(r, WebSocketClose)]
    assert (close.code, close.reason, close.closed_by) == (1008, "Authentication failed", "server")
    assert {r.id for r in rest} == {opened.id} and len({health.id, refused.id, opened.id}) == 3
    times = [r.time for r in cassette.records]
    assert times[0] == 0.0 and all(0 <= t < TIMEOUT for t in times)
    assert har_problems(through_json(cassette_to_har(cassette))) == []


def test_an_eager_connect_before_the_first_request_keeps_the_recorded_order() -> None:
    """mitmdump connects upstream as soon as a client connects (connection_strategy=eager): the
    first client's wait began before its request, and its answer still came before the next
    connection's, however slow that connect was."""
    slow_connect = tflow.tflow(resp=True)
    slow_connect.client_conn.timestamp_start = 100.0
    slow_connect.server_conn.timestamp_start = 100.0
    slow_connect.request.timestamp_start = 100.05
    slow_connect.response.timestamp_start = slow_connect.response.timestamp_end = 100.06
    next_client = tflow.tflow(resp=True)
    next_client.client_conn.timestamp_start = next_client.server_conn.timestamp_start = 100.07
    next_client.request.timestamp_start = 100.071
    next_client.response.timestamp_start = next_client.response.timestamp_end = 100.08

    first, second = flows_to_cassette([next_client, slow_connect]).records
    assert (first.id, first.time, first.duration) == (1, 0.0, 0.06)
    assert (second.id, second.time, second.duration) == (2, 0.07, 0.01)


async def test_the_addons_record_and_replay_under_a_plain_mitmdump(tmp_path: Path) -> None:
    """The README's `mitmdump -s ...` commands, with the addon paths `wsreplay addons` prints:
    record a chat session and an upstream that drops mid-stream, then replay both with the
    upstream gone."""
    listed = run_wsreplay("addons")
    assert listed.returncode == 0, listed.stderr
    addon_files = {Path(line).stem: Path(line) for line in listed.stdout.splitlines()}
    assert set(addon_files) == {"lost_connections", "closing_handshake", "recorder", "replayer", "resolver"}
    assert all(path.is_file() for path in addon_files.values())
    cassette = tmp_path / "s.cassette"
    confdir = tmp_path / "mitmproxy"
    always_loaded = ("-s", str(addon_files["lost_connections"]), "-s", str(addon_files["closing_handshake"]))

    async def chat_then_drop(port: int) -> tuple[str, int | None]:
        await drive_session(port)
        async with connect(f"ws://127.0.0.1:{port}/drop", proxy=None, open_timeout=TIMEOUT) as ws:
            greeting = await asyncio.wait_for(ws.recv(), TIMEOUT)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        return greeting, ws.close_code

    upstream = chat_upstream()
    upstream.websocket("/drop", WsScript(on_open=("hello",), drop_after=0))
    async with upstream:
        upstream_port = upstream.port
        record = ("-s", str(addon_files["recorder"]), "--set", f"wsreplay_output={cassette}")
        live = await run_mitmdump(upstream_port, confdir, *always_loaded, *record, session=chat_then_drop)
    replay = (
        "-s",
        str(addon_files["replayer"]),
        "--set",
        "connection_strategy=lazy",
        "--set",
        f"wsreplay_cassette={cassette}",
    )
    replayed = await run_mitmdump(upstream_port, confdir, *always_loaded, *replay, session=chat_then_drop)

    assert live == replayed == ("hello", 1006)
    closes = [(r.code, r.closed_by) for r in load_cassette(cassette).records if isinstance(r, WebSocketClose)]
    assert closes == [(1008, "server"), (1006, "server")]


def test_chat_sessions_survive_the_har_round_trip() -> None:
    for records in (chat_session(), chat_session(auth_failure=True)):
        cassette = Cassette(CassetteHeader(CREATED, "0.1.0"), records)
        assert har_to_cassette(through_json(cassette_to_har(cassette))).records == records
