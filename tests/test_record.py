"""`wsreplay record` and `wsreplay show`, end to end, as a user runs them.

The upstream is the scripted test server (not the bundled sample); the clients are
aiohttp, `websockets` and websocket-client; the proxy is the real wsreplay command.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
from pathlib import Path

import msgpack
import pytest
from mitmproxy.test import tflow
from websockets.asyncio.client import connect

from tests.support.cli import RunningWsreplay, run_wsreplay
from tests.support.clients import (
    BINARY_PROBE,
    aiohttp_scenario,
    websocket_client_scenario,
    websockets_scenario,
)
from tests.support.scenario import AUTH_FAILURE_FRAME, staging_upstream
from tests.support.staging_upstream import WsScript
from tests.support.tls import make_private_ca
from wsreplay.flows import AnswerClock, answer_timing


def show_json(cassette: Path) -> list[dict]:
    result = run_wsreplay("show", "--json", str(cassette))
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def frames_of(events: list[dict], connection: int) -> list[dict]:
    return [e for e in events if e["kind"] == "frame" and e["id"] == connection]


async def test_record_staging_scenario_with_three_client_libraries(tmp_path: Path) -> None:
    cassette = tmp_path / "staging.cassette"
    async with staging_upstream() as upstream:
        recorder = RunningWsreplay(
            "record", "--upstream", upstream.http_url, "--listen", "127.0.0.1:0", "--output", str(cassette)
        )
        try:
            port = await asyncio.to_thread(recorder.wait_listening)
            base_http, base_ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
            transcripts = [
                await aiohttp_scenario(base_http, base_ws),
                await websockets_scenario(base_http, base_ws),
                await asyncio.to_thread(websocket_client_scenario, base_http, base_ws),
            ]
        finally:
            status = await asyncio.to_thread(recorder.stop)
    assert status == 0, recorder.output
    assert "6 HTTP exchanges, 9 WebSocket connections (3 refused)" in recorder.output
    assert "POST /auth/e2e/test-auth -> 401" in recorder.output
    assert "/ws refused 403" in recorder.output
    assert "closed 1008 'Authentication failed' by server after 1 frames" in recorder.output

    for transcript in transcripts:
        assert ("http", "POST /auth/e2e/test-auth", 401, b'{"detail": "Invalid E2E bypass key"}') in transcript
        assert ("refused", 403) in transcript
        assert ("recv", "binary", b"echo:" + BINARY_PROBE) in transcript
        assert transcript[-1] == ("closed", 1008, "Authentication failed")

    events = show_json(cassette)
    exchanges = [e for e in events if e["kind"] == "http"]
    assert [(e["request"]["method"], e["request"]["path"], e["response"]["status"]) for e in exchanges] == [
        ("POST", "/auth/e2e/test-auth", 401),
        ("GET", "/health", 200),
    ] * 3
    assert json.loads(exchanges[0]["response"]["body"]["text"]) == {"detail": "Invalid E2E bypass key"}
    assert json.loads(exchanges[0]["request"]["body"]["text"])["simulate_oauth"] is True

    opens = [e for e in events if e["kind"] == "websocket_open"]
    assert [(o["request"]["path"], o["response"]["status"]) for o in opens] == [
        ("/ws", 403),
        ("/ws", 101),
        ("/ws-bug", 101),
    ] * 3
    for chat, bug in (
        (opens[1]["id"], opens[2]["id"]),
        (opens[4]["id"], opens[5]["id"]),
        (opens[7]["id"], opens[8]["id"]),
    ):
        chat_frames = frames_of(events, chat)
        directions = [f["from"] for f in chat_frames]
        assert directions == ["server", "server", "client"] + ["server"] * 6 + ["client", "server"]
        types = [json.loads(f["text"]).get("type") for f in chat_frames if f["opcode"] == "text"]
        assert types[3:] == [
            "ack",
            "agent_started",
            "agent_thinking",
            "tool_executing",
            "tool_completed",
            "agent_completed",
        ]
        assert chat_frames[-2]["opcode"] == "binary"
        assert chat_frames[-1]["opcode"] == "binary"
        assert base64.b64decode(chat_frames[-1]["base64"]) == b"echo:" + BINARY_PROBE
        bug_frames = frames_of(events, bug)
        assert [json.loads(f["text"]) for f in bug_frames] == [AUTH_FAILURE_FRAME]
        closes = {e["id"]: e for e in events if e["kind"] == "close"}
        assert (closes[bug]["code"], closes[bug]["reason"], closes[bug]["closed_by"]) == (
            1008,
            "Authentication failed",
            "server",
        )
        assert (closes[chat]["code"], closes[chat]["closed_by"]) == (1000, "client")

    timeline = run_wsreplay("show", str(cassette))
    assert timeline.returncode == 0
    assert "POST /auth/e2e/test-auth -> 401" in timeline.stdout
    assert "REFUSED /ws" in timeline.stdout
    assert "close 1008 'Authentication failed' by server" in timeline.stdout
    assert "[binary 261 bytes] 65 63 68 6f 3a 00 01 02" in timeline.stdout


async def test_kill_9_mid_stream_keeps_every_frame_already_relayed(tmp_path: Path) -> None:
    cassette = tmp_path / "killed.cassette"
    frames_in_burst = 5000
    upstream_script = WsScript(reply=lambda message: [f'{{"seq": {i}}}' for i in range(frames_in_burst)])
    async with staging_upstream() as upstream:
        upstream.websocket("/stream", upstream_script)
        recorder = RunningWsreplay(
            "record", "--upstream", upstream.ws_url, "--listen", "127.0.0.1:0", "-o", str(cassette)
        )
        port = await asyncio.to_thread(recorder.wait_listening)
        received: list[str] = []
        async with connect(f"ws://127.0.0.1:{port}/stream", open_timeout=10, close_timeout=1) as ws:
            await ws.send("go")
            async with asyncio.timeout(30):
                while len(received) < 1000:
                    received.append(await ws.recv())
            recorder.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(recorder.wait)
    events = show_json(cassette)
    recorded = [e["text"] for e in events if e["kind"] == "frame" and e["from"] == "server"]
    assert recorded[: len(received)] == received
    assert len(recorded) < frames_in_burst or events[-1]["kind"] == "close"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty, not a wsreplay cassette"),
        (b"this is not a cassette at all", "is not a wsreplay cassette"),
        (b"\x87\xa6format", "is not a wsreplay cassette (or its header is cut short)"),
    ],
)
def test_show_rejects_bad_files_in_one_sentence(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.cassette"
    path.write_bytes(content)
    result = run_wsreplay("show", str(path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_show_refuses_a_newer_format_version(tmp_path: Path) -> None:
    path = tmp_path / "future.cassette"
    path.write_bytes(msgpack.packb({"format": "wsreplay-cassette", "version": 9, "created": 0.0}))
    result = run_wsreplay("show", str(path))
    assert result.returncode == 2
    assert "format version 9" in result.stderr and "upgrade wsreplay" in result.stderr
    assert "Traceback" not in result.stderr


def test_show_missing_file_and_record_existing_output(tmp_path: Path) -> None:
    missing = run_wsreplay("show", str(tmp_path / "nope.cassette"))
    assert missing.returncode == 2 and "no cassette at" in missing.stderr
    existing = tmp_path / "exists.cassette"
    existing.write_bytes(b"precious")
    refused = run_wsreplay("record", "--upstream", "http://127.0.0.1:9", "-o", str(existing))
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert existing.read_bytes() == b"precious"


STAGING_HOST = "api.staging.wsreplay.test"


async def test_record_in_regular_mode_through_https_proxy_with_tls_interception(
    tmp_path: Path, mitm_confdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that only knows wss://api.staging... reaches it through https_proxy + SSL_CERT_FILE."""
    ca = make_private_ca(tmp_path)
    cassette = tmp_path / "regular.cassette"
    async with staging_upstream(ssl_context=ca.server_ssl_context([STAGING_HOST])) as upstream:
        recorder = RunningWsreplay(
            "record",
            "--mode",
            "regular",
            "--listen",
            "127.0.0.1:0",
            "-o",
            str(cassette),
            "--confdir",
            str(mitm_confdir),
            "--upstream-ca",
            str(ca.ca_cert_path),
            "--resolve",
            f"{STAGING_HOST}=127.0.0.1:{upstream.port}",
        )
        try:
            port = await asyncio.to_thread(recorder.wait_listening)
            bundle = (await asyncio.to_thread(recorder.wait_for_line, r"export SSL_CERT_FILE=(\S+)"))[1]
            proxy_url = (await asyncio.to_thread(recorder.wait_for_line, r"export wss_proxy=(\S+)"))[1]
            assert proxy_url == f"http://127.0.0.1:{port}"
            for name in ("https_proxy", "wss_proxy"):
                monkeypatch.setenv(name, proxy_url)
            monkeypatch.setenv("SSL_CERT_FILE", bundle)
            monkeypatch.delenv("no_proxy", raising=False)
            monkeypatch.delenv("NO_PROXY", raising=False)
            transcript = await websockets_scenario(
                f"https://{STAGING_HOST}", f"wss://{STAGING_HOST}", via_env_proxy=True
            )
        finally:
            status = await asyncio.to_thread(recorder.stop)
    assert status == 0, recorder.output
    assert transcript[:3] == [
        ("http", "POST /auth/e2e/test-auth", 401, b'{"detail": "Invalid E2E bypass key"}'),
        ("http", "GET /health", 200, b'{"status": "healthy"}'),
        ("refused", 403),
    ]
    assert transcript[-1] == ("closed", 1008, "Authentication failed")
    events = show_json(cassette)
    opens = [e for e in events if e["kind"] == "websocket_open"]
    assert [(o["request"]["scheme"], o["request"]["host"], o["response"]["status"]) for o in opens] == [
        ("https", STAGING_HOST, 403),
        ("https", STAGING_HOST, 101),
        ("https", STAGING_HOST, 101),
    ]
    bug_close = [e for e in events if e["kind"] == "close" and e["id"] == opens[2]["id"]]
    assert [(c["code"], c["reason"], c["closed_by"]) for c in bug_close] == [(1008, "Authentication failed", "server")]
    assert (
        sum(e["kind"] == "frame" for e in events) == len([t for t in transcript if t[0] == "recv"]) + 2
    )  # + the chat message and the binary probe


def _timed_flow(client: float, connect: float, request: float, answered: float) -> object:
    flow = tflow.tflow(resp=True)
    flow.client_conn.timestamp_start = client
    flow.server_conn.timestamp_start = connect
    flow.request.timestamp_start = request
    flow.response.timestamp_start = flow.response.timestamp_end = answered
    return flow


def test_the_recorded_wait_includes_an_eager_upstream_connect_once() -> None:
    """With connection_strategy=eager mitmproxy connects upstream when the client connects and reads
    the request afterwards: the client's first request waited for that connect too."""
    clock = AnswerClock()
    eager = _timed_flow(client=100.0, connect=100.001, request=100.121, answered=100.2)
    started, duration = answer_timing(eager, clock)
    assert (started, round(duration, 6)) == (100.001, 0.199)
    later = _timed_flow(client=100.0, connect=100.001, request=101.0, answered=101.05)
    later.server_conn = eager.server_conn
    started, duration = answer_timing(later, clock)
    assert (started, round(duration, 6)) == (101.0, 0.05)
    lazy = _timed_flow(client=200.0, connect=200.01, request=200.002, answered=200.3)
    started, duration = answer_timing(lazy, clock)
    assert (started, round(duration, 6)) == (200.002, 0.298)
    clock.forget(eager.server_conn.id)
    assert answer_timing(eager, clock)[0] == 100.001
