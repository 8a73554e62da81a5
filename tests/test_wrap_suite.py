"""`wsreplay record|replay --mode regular -- pytest ...` around a staging suite that is left unchanged.

The suite (tests/staging_suite) knows only https://api.staging.wsreplay.test and its
wss:// socket, mints fresh tokens and ids, opens seven sockets at once and checks
timing. It runs against the sample server behind TLS with a private CA, then against
the replay with the server stopped; every test must end the same way, including the
one that fails on the server's 1008 close.
"""

from __future__ import annotations

import asyncio
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from tests.support.cli import run_wsreplay
from tests.support.tls import make_private_ca
from wsreplay.sample_server import SampleServerConfig, start_sample_server

SUITE = Path(__file__).parent / "staging_suite"
HOSTS = ("api.staging.wsreplay.test", "auth.staging.wsreplay.test")


def outcomes(junit_xml: Path) -> dict[str, str]:
    cases = ElementTree.parse(junit_xml).getroot().iter("testcase")
    return {
        case.get("name", ""): next(
            (child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed"
        )
        for case in cases
    }


def pytest_command(junit_xml: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        str(SUITE),
        "-c",
        str(SUITE / "pytest.ini"),
        "-q",
        f"--junitxml={junit_xml}",
    ]


async def test_a_staging_suite_runs_unchanged_under_record_then_replay(tmp_path: Path, mitm_confdir: Path) -> None:
    ca = make_private_ca(tmp_path)
    cassette = tmp_path / "suite.cassette"
    common = ["--mode", "regular", "--listen", "127.0.0.1:0", "--confdir", str(mitm_confdir)]
    server = await start_sample_server(
        config=SampleServerConfig(event_interval=0.1), ssl_context=ca.server_ssl_context(list(HOSTS))
    )
    try:
        resolve = [arg for host in HOSTS for arg in ("--resolve", f"{host}=127.0.0.1:{server.port}")]
        recorded = await asyncio.to_thread(
            run_wsreplay,
            "record",
            *common,
            "--upstream-ca",
            str(ca.ca_cert_path),
            *resolve,
            "-o",
            str(cassette),
            "--",
            *pytest_command(tmp_path / "live.xml"),
            timeout=300,
        )
    finally:
        await server.close()
    replayed = await asyncio.to_thread(
        run_wsreplay, "replay", str(cassette), *common, "--", *pytest_command(tmp_path / "replay.xml"), timeout=300
    )

    live = outcomes(tmp_path / "live.xml")
    assert live == {
        "test_websocket_url_points_at_staging": "passed",
        "test_health": "passed",
        "test_bypass_key_is_checked": "passed",
        "test_websocket_refuses_a_client_without_token": "passed",
        "test_agent_events_are_delivered": "passed",
        "test_seven_concurrent_connections": "passed",
        "test_expired_session_token_still_chats": "failure",
    }, recorded.stdout + recorded.stderr
    assert recorded.returncode == 1
    assert outcomes(tmp_path / "replay.xml") == live, replayed.stdout + replayed.stderr
    assert replayed.returncode == 1
    assert "1008" in (tmp_path / "replay.xml").read_text()
