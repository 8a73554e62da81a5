"""A pytest-playwright suite through the plugin: a real Chromium page records once, then replays offline."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path

import pytest

from tests.support.chromium import chromium_path
from tests.support.cli import run_pytest
from tests.support.tls import make_private_ca
from wsreplay.sample_server import SampleServerConfig, start_sample_server

BROWSER_SUITE = Path(__file__).parent / "browser_suite"
STAGING_HOST = "api.staging.wsreplay.test"

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("pytest_playwright") is None, reason="pytest-playwright is not installed"
    ),
    pytest.mark.skipif(chromium_path() is None, reason="no Chromium (apt-get install chromium)"),
    pytest.mark.skipif(bool(os.environ.get("WSREPLAY_SKIP_BROWSER")), reason="WSREPLAY_SKIP_BROWSER is set"),
]


async def test_a_browser_suite_records_once_and_replays_offline_with_the_same_page(tmp_path: Path) -> None:
    ca = make_private_ca(tmp_path)
    suite = ["-c", str(BROWSER_SUITE / "pytest.ini"), "-o", f"wsreplay_cassette_dir={tmp_path / 'cassettes'}"]
    live_outcome, offline_outcome = tmp_path / "live.txt", tmp_path / "offline.txt"
    server = await start_sample_server(config=SampleServerConfig(), ssl_context=ca.server_ssl_context([STAGING_HOST]))
    try:
        os.environ["WSREPLAY_PAGE_OUTCOME"] = str(live_outcome)
        recorded = await asyncio.to_thread(
            run_pytest,
            BROWSER_SUITE,
            *suite,
            "--wsreplay-mode",
            "once",
            "--wsreplay-upstream",
            f"https://127.0.0.1:{server.port}",
            "--wsreplay-upstream-ca",
            str(ca.ca_cert_path),
            "--wsreplay-resolve",
            f"{STAGING_HOST}=127.0.0.1:{server.port}",
        )
    finally:
        await server.close()
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    os.environ["WSREPLAY_PAGE_OUTCOME"] = str(offline_outcome)
    replayed = await asyncio.to_thread(run_pytest, BROWSER_SUITE, *suite)
    del os.environ["WSREPLAY_PAGE_OUTCOME"]
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "1 passed" in replayed.stdout
    assert offline_outcome.read_text() == live_outcome.read_text()
