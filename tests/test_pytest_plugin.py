"""The pytest plugin, used the way a new user would: in separate pytest runs.

Each run is a real `python -m pytest` subprocess (the plugin is active because wsreplay
is installed); the live server is the scripted test upstream in this process.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

from tests.support.cli import run_pytest
from tests.support.scenario import staging_upstream
from tests.support.tls import make_private_ca
from wsreplay.cassette import load_cassette
from wsreplay.records import WebSocketOpen
from wsreplay.sample_server import SampleServerConfig, start_sample_server

EXAMPLE_SUITE = Path(__file__).parent / "example_suite"
TIMEOUT = 180

USER_TEST = """
import asyncio, json, time, uuid

import aiohttp
import pytest
import websocket
from websockets.asyncio.client import connect

MESSAGE_TYPE = "message"


@pytest.mark.wsreplay
async def test_chat_turn(wsreplay):
    async with connect(f"{wsreplay.ws_url}/ws", additional_headers={"Authorization": "Bearer t"}) as ws:
        greeting = [await asyncio.wait_for(ws.recv(), 10) for _ in range(2)]
        await ws.send(json.dumps({"type": MESSAGE_TYPE, "thread_id": f"test_{time.time_ns()}", "run_id": str(uuid.uuid4())}))
        events = [json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] for _ in range(6)]
    assert "connection_established" in greeting[1]
    assert events == ["ack", "agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]


@pytest.mark.wsreplay
async def test_aiohttp_auth(wsreplay):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{wsreplay.url}/auth/e2e/test-auth", json={"email": f"{uuid.uuid4()}@x.test"}) as response:
            assert response.status == 401
            assert await response.json() == {"detail": "Invalid E2E bypass key"}


@pytest.mark.wsreplay("sync-refusal")
def test_sync_refused_upgrade(wsreplay):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"{wsreplay.ws_url}/ws", timeout=10)
    assert refused.value.status_code == 403
"""


def test_the_example_suite_replays_offline_from_committed_cassettes() -> None:
    result = run_pytest(EXAMPLE_SUITE, "-c", str(EXAMPLE_SUITE / "pytest.ini"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout


def test_the_example_suite_under_xdist_each_worker_its_own_proxy() -> None:
    result = run_pytest(EXAMPLE_SUITE, "-c", str(EXAMPLE_SUITE / "pytest.ini"), "-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout


async def test_record_once_then_replay_offline_then_catch_a_change(tmp_path: Path) -> None:
    (tmp_path / "test_user_suite.py").write_text(USER_TEST)
    async with staging_upstream() as upstream:
        recorded = await asyncio.to_thread(
            run_pytest, tmp_path, "--wsreplay-mode", "once", "--wsreplay-upstream", upstream.http_url
        )
        reached_upstream = len(upstream.connections) + len(upstream.requests)
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert reached_upstream == 3
    cassettes = sorted(path.name for path in (tmp_path / "cassettes" / "test_user_suite").iterdir())
    assert cassettes == ["sync-refusal.cassette", "test_aiohttp_auth.cassette", "test_chat_turn.cassette"]

    offline = await asyncio.to_thread(run_pytest, tmp_path)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert "3 passed" in offline.stdout

    (tmp_path / "test_user_suite.py").write_text(
        USER_TEST.replace('MESSAGE_TYPE = "message"', 'MESSAGE_TYPE = "start_agent"')
    )
    changed = await asyncio.to_thread(run_pytest, tmp_path)
    assert changed.returncode == 1
    assert "1 failed, 2 passed" in changed.stdout
    assert '$.type: expected "message", received "start_agent"' in changed.stdout


async def test_missing_cassette_in_mode_none_says_how_to_record_it(tmp_path: Path) -> None:
    (tmp_path / "test_user_suite.py").write_text(USER_TEST)
    result = await asyncio.to_thread(run_pytest, tmp_path, "-k", "aiohttp")
    assert result.returncode == 1
    assert "no cassette at" in result.stdout and "--wsreplay-mode once --wsreplay-upstream URL" in result.stdout


async def test_new_episodes_records_only_what_is_missing(tmp_path: Path) -> None:
    suite = tmp_path / "test_episodes.py"
    suite.write_text(
        textwrap.dedent(
            """
            import httpx, pytest

            PATHS = ["/auth/e2e/test-auth"]

            @pytest.mark.wsreplay
            def test_calls(wsreplay):
                with httpx.Client(base_url=wsreplay.url, trust_env=False) as client:
                    assert [client.post(path, json={}).status_code for path in PATHS] == [401] * len(PATHS)
            """
        )
    )
    async with staging_upstream() as upstream:
        upstream.route("POST", "/second", status=401, json_body={"detail": "second"})
        first = await asyncio.to_thread(
            run_pytest, tmp_path, "--wsreplay-mode", "once", "--wsreplay-upstream", upstream.http_url
        )
        assert first.returncode == 0, first.stdout
        suite.write_text(
            suite.read_text().replace('PATHS = ["/auth/e2e/test-auth"]', 'PATHS = ["/auth/e2e/test-auth", "/second"]')
        )
        episodes = await asyncio.to_thread(
            run_pytest, tmp_path, "--wsreplay-mode", "new_episodes", "--wsreplay-upstream", upstream.http_url
        )
        assert episodes.returncode == 0, episodes.stdout
        reached = [request.path for request in upstream.requests]
    assert reached == ["/auth/e2e/test-auth", "/second"]
    offline = await asyncio.to_thread(run_pytest, tmp_path)
    assert offline.returncode == 0, offline.stdout


async def test_the_example_suite_records_and_replays_hard_coded_staging_urls(tmp_path: Path) -> None:
    """Both directions for every client of the example suite, the wss://api.staging... one included."""
    host = "api.staging.wsreplay.test"
    ca = make_private_ca(tmp_path)
    cassettes = tmp_path / "cassettes"
    suite = ["-c", str(EXAMPLE_SUITE / "pytest.ini"), "-o", f"wsreplay_cassette_dir={cassettes}"]
    server = await start_sample_server(config=SampleServerConfig(), ssl_context=ca.server_ssl_context([host]))
    try:
        recorded = await asyncio.to_thread(
            run_pytest,
            EXAMPLE_SUITE,
            *suite,
            "--wsreplay-mode",
            "all",
            "--wsreplay-upstream",
            f"https://127.0.0.1:{server.port}",
            "--wsreplay-upstream-ca",
            str(ca.ca_cert_path),
            "--wsreplay-resolve",
            f"{host}=127.0.0.1:{server.port}",
        )
    finally:
        await server.close()
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    hard_coded = cassettes / "test_staging_example" / "test_hard_coded_staging_url_through_the_proxy.cassette"
    opened = [r for r in load_cassette(hard_coded).records if isinstance(r, WebSocketOpen)]
    assert [(o.request.scheme, o.request.host) for o in opened] == [("https", host)]
    replayed = await asyncio.to_thread(run_pytest, EXAMPLE_SUITE, *suite)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "6 passed" in replayed.stdout
