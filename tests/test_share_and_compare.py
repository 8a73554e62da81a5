"""Cassettes safe to share and made to compare: real recordings of the sample server's regressions.

Sessions are recorded through the real recorder in front of the sample staging server
(good, agent events dropped, the auth bug), by httpx and websocket-client; the checks
run the real `wsreplay` commands.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import websocket as websocket_client

from tests.support.cli import run_wsreplay
from tests.support.clients import chat_message, is_last_event
from wsreplay.addons.recorder import Recorder
from wsreplay.addons.replayer import Replayer
from wsreplay.cassette import load_cassette
from wsreplay.mitm import ProxyHost, ProxySettings
from wsreplay.sample_server import DEFAULT_BYPASS_KEY, SampleServerConfig, start_sample_server

TIMEOUT = 10


def staging_chat(base_url: str) -> list[object]:
    """Log in with the bypass key, open the socket with the token, chat one turn. Blocking."""
    observed: list[object] = []
    with httpx.Client(base_url=base_url, timeout=TIMEOUT, trust_env=False) as http:
        login = http.post(
            "/auth/e2e/test-auth",
            headers={"X-E2E-Bypass-Key": DEFAULT_BYPASS_KEY},
            json={"email": "e2e@example.test", "name": "E2E", "permissions": ["read"], "simulate_oauth": True},
        )
        observed.append(("login", login.status_code, sorted(login.json())))
        token = login.json()["access_token"]
    ws = websocket_client.create_connection(
        base_url.replace("http", "ws", 1) + "/ws", timeout=TIMEOUT, header=[f"Authorization: Bearer {token}"]
    )
    message = chat_message()
    try:
        if read_until(ws, observed, lambda frame: "connection_established" in frame):
            ws.send(message)
            read_until(ws, observed, is_last_event)
    finally:
        ws.close()
    return with_own_ids_named(observed, json.loads(message))


def with_own_ids_named(observed: list[object], sent: dict[str, object]) -> list[object]:
    """The frames with the ids this run minted (thread_id, run_id) named: each run mints its own,
    and the server's events must carry them back."""
    named = []
    for item in observed:
        if isinstance(item, str):
            for key in ("thread_id", "run_id"):
                item = item.replace(str(sent[key]), f"<my {key}>")
        named.append(item)
    return named


def read_until(ws: websocket_client.WebSocket, observed: list[object], last: Callable[[str], bool]) -> bool:
    """Collect text frames up to the one `last` accepts (True) or the server's close (False)."""
    for _ in range(20):
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket_client.ABNF.OPCODE_CLOSE:
            observed.append(("closed", int.from_bytes(frame.data[:2], "big"), frame.data[2:].decode()))
            return False
        observed.append(frame.data.decode())
        if last(frame.data.decode()):
            return True
    return False


async def record_sample(cassette: Path, config: SampleServerConfig, *, redact: bool = True) -> list[object]:
    server = await start_sample_server(config=config)
    host = ProxyHost(
        ProxySettings(
            mode=f"reverse:{server.http_url}",
            extra_options={"wsreplay_output": str(cassette), "wsreplay_redact": "true" if redact else "false"},
        ),
        [Recorder()],
    )
    try:
        _, port = await host.start()
        return await asyncio.to_thread(staging_chat, f"http://127.0.0.1:{port}")
    finally:
        await host.stop()
        await server.close()


async def replay(cassette: Path) -> list[object]:
    host = ProxyHost(
        ProxySettings(
            mode="reverse:http://staging.invalid",
            connection_strategy="lazy",
            extra_options={"wsreplay_cassette": str(cassette), "wsreplay_speed": "max"},
        ),
        [Replayer()],
    )
    _, port = await host.start()
    try:
        return await asyncio.to_thread(staging_chat, f"http://127.0.0.1:{port}")
    finally:
        await host.stop()


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("recordings")
    configs = {
        "good": (SampleServerConfig(), True),
        "no-thinking": (SampleServerConfig(drop_events=frozenset({"agent_thinking", "tool_executing"})), True),
        "auth-bug": (SampleServerConfig(auth_bug=True), True),
        "unredacted": (SampleServerConfig(), False),
    }
    paths = {}
    for name, (config, redact) in configs.items():
        paths[name] = folder / f"{name}.cassette"
        asyncio.run(record_sample(paths[name], config, redact=redact))
    return paths


def test_redacted_recording_holds_no_secret_bytes_and_scan_agrees(recordings: dict[str, Path]) -> None:
    for name in ("good", "unredacted"):
        raw = recordings[name].read_bytes()
        login = next(r for r in load_cassette(recordings["unredacted"]).records if hasattr(r, "response"))
        token = json.loads(login.response.body)["access_token"]
        signature = token.rsplit(".", 1)[1].encode()
        leaked = DEFAULT_BYPASS_KEY.encode() in raw or signature in raw
        assert leaked is (name == "unredacted")

    clean = run_wsreplay("scan", str(recordings["good"]))
    assert clean.returncode == 0, clean.stdout
    flagged = run_wsreplay("scan", str(recordings["unredacted"]))
    assert flagged.returncode == 1
    assert "X-E2E-Bypass-Key" in flagged.stdout and "access_token" in flagged.stdout


def test_redact_command_makes_an_unredacted_cassette_shareable(recordings: dict[str, Path], tmp_path: Path) -> None:
    shared = tmp_path / "shared.cassette"
    result = run_wsreplay("redact", str(recordings["unredacted"]), "-o", str(shared))
    assert result.returncode == 0, result.stderr
    assert DEFAULT_BYPASS_KEY.encode() not in shared.read_bytes()
    assert run_wsreplay("scan", str(shared)).returncode == 0


async def test_a_redacted_cassette_replays_the_same_transcript(recordings: dict[str, Path], tmp_path: Path) -> None:
    live_cassette = tmp_path / "live.cassette"
    live = await record_sample(live_cassette, SampleServerConfig())
    replayed = await replay(live_cassette)
    assert replayed == live
    assert json.loads(replayed[-1])["type"] == "agent_completed"
    assert json.loads(replayed[-1])["thread_id"] == "<my thread_id>"


def test_diff_names_exactly_the_missing_events(recordings: dict[str, Path]) -> None:
    result = run_wsreplay("diff", str(recordings["good"]), str(recordings["no-thinking"]), "--no-timing")
    assert result.returncode == 1
    assert "missing server events: agent_thinking" in result.stdout
    assert "tool_executing" in result.stdout
    for untouched in ("agent_started", "tool_completed", "agent_completed"):
        assert untouched not in result.stdout.split("missing server events:")[1].splitlines()[0]
    assert run_wsreplay("diff", str(recordings["good"]), str(recordings["good"])).returncode == 0


def test_diff_names_the_1008_close_of_the_auth_bug(recordings: dict[str, Path]) -> None:
    result = run_wsreplay("diff", str(recordings["good"]), str(recordings["auth-bug"]), "--no-timing")
    assert result.returncode == 1
    assert "became 1008" in result.stdout and "Authentication failed" in result.stdout


def test_verify_fails_the_regression_in_the_reports_words(recordings: dict[str, Path]) -> None:
    good = run_wsreplay("verify", str(recordings["good"]))
    assert good.returncode == 0, good.stdout
    regressed = run_wsreplay("verify", str(recordings["no-thinking"]))
    assert regressed.returncode == 1
    assert "Missing critical events: {'agent_thinking', 'tool_executing'}" in regressed.stdout
    bug = run_wsreplay("verify", str(recordings["auth-bug"]))
    assert bug.returncode == 1 and "no chat turn in any WebSocket connection" in bug.stdout


async def test_har_export_reimports_to_a_cassette_that_replays_the_same(
    recordings: dict[str, Path], tmp_path: Path
) -> None:
    har, reimported = tmp_path / "session.har", tmp_path / "reimported.cassette"
    assert run_wsreplay("export", str(recordings["good"]), "-o", str(har)).returncode == 0
    document = json.loads(har.read_text())
    sockets = [entry for entry in document["log"]["entries"] if entry.get("_webSocketMessages")]
    assert sockets and {m["type"] for m in sockets[0]["_webSocketMessages"]} == {"send", "receive"}
    assert run_wsreplay("import", str(har), "-o", str(reimported)).returncode == 0
    assert run_wsreplay("diff", str(recordings["good"]), str(reimported)).returncode == 0
    assert await replay(reimported) == await replay(recordings["good"])
