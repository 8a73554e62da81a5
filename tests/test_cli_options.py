"""The options around the proxy: --hosts, --set, -s, `wsreplay env`, and offline replay."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.support.cli import RunningWsreplay, run_wsreplay
from tests.support.scenario import staging_upstream
from wsreplay.cassette import load_cassette
from wsreplay.records import HttpExchange

ADDON_SCRIPT = """
from mitmproxy import http


class StampResponses:
    def response(self, flow: http.HTTPFlow) -> None:
        flow.response.headers["X-Stamped-By"] = "user-script"


addons = [StampResponses()]
"""


async def get_through(proxy_port: int, url: str) -> httpx.Response:
    async with httpx.AsyncClient(proxy=f"http://127.0.0.1:{proxy_port}", trust_env=False, timeout=10) as client:
        return await client.get(url)


async def test_record_hosts_records_only_matching_hosts_and_passes_others_through(tmp_path: Path) -> None:
    cassette = tmp_path / "hosts.cassette"
    async with staging_upstream(host="127.0.0.1") as recorded_host, staging_upstream(host="localhost") as other_host:
        recorder = RunningWsreplay(
            "record",
            "--mode",
            "regular",
            "--listen",
            "127.0.0.1:0",
            "-o",
            str(cassette),
            "--confdir",
            str(tmp_path / "mitmproxy"),
            "--hosts",
            r"^127\.0\.0\.1",
        )
        try:
            port = await asyncio.to_thread(recorder.wait_listening)
            kept = await get_through(port, f"http://127.0.0.1:{recorded_host.port}/health")
            passed = await get_through(port, f"http://localhost:{other_host.port}/health")
        finally:
            assert await asyncio.to_thread(recorder.stop) == 0, recorder.output
    assert kept.status_code == passed.status_code == 200
    assert len(other_host.requests) == 1
    hosts = [r.request.host for r in load_cassette(cassette).records if isinstance(r, HttpExchange)]
    assert hosts == ["127.0.0.1"]


async def test_replay_is_offline_and_refuses_hosts_outside_hosts(tmp_path: Path) -> None:
    cassette = tmp_path / "offline.cassette"
    confdir = str(tmp_path / "mitmproxy")
    async with staging_upstream() as upstream:
        recorder = RunningWsreplay(
            "record", "--mode", "regular", "--listen", "127.0.0.1:0", "-o", str(cassette), "--confdir", confdir
        )
        try:
            port = await asyncio.to_thread(recorder.wait_listening)
            assert (await get_through(port, f"{upstream.http_url}/health")).status_code == 200
        finally:
            assert await asyncio.to_thread(recorder.stop) == 0
        served_live = len(upstream.requests)

        replayer = RunningWsreplay(
            "replay",
            str(cassette),
            "--mode",
            "regular",
            "--listen",
            "127.0.0.1:0",
            "--confdir",
            confdir,
            "--hosts",
            r"^127\.0\.0\.1$",
        )
        try:
            port = await asyncio.to_thread(replayer.wait_listening)
            replayed = await get_through(port, f"{upstream.http_url}/health")
            not_recorded = await get_through(port, f"{upstream.http_url}/not-recorded")
            other_host = await get_through(port, f"http://localhost:{upstream.port}/health")
        finally:
            assert await asyncio.to_thread(replayer.stop) == 0
        assert len(upstream.requests) == served_live, "the replay reached the live server"
    assert replayed.status_code == 200 and replayed.json() == {"status": "healthy"}
    assert not_recorded.status_code == 404 and "no recorded" in not_recorded.text.lower()
    assert other_host.status_code == 403 and "not a replayed host" in other_host.text


async def test_set_and_script_reach_mitmproxy(tmp_path: Path) -> None:
    script = tmp_path / "stamp.py"
    script.write_text(ADDON_SCRIPT)
    cassette = tmp_path / "stamped.cassette"
    async with staging_upstream() as upstream:
        recorder = RunningWsreplay(
            "record",
            "--upstream",
            upstream.http_url,
            "--listen",
            "127.0.0.1:0",
            "-o",
            str(cassette),
            "-s",
            str(script),
            "--set",
            "anticache=true",
        )
        try:
            port = await asyncio.to_thread(recorder.wait_listening)
            async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
                response = await client.get(f"http://127.0.0.1:{port}/health", headers={"If-None-Match": "abc"})
        finally:
            assert await asyncio.to_thread(recorder.stop) == 0, recorder.output
    assert response.headers["X-Stamped-By"] == "user-script"
    assert "if-none-match" not in {name.lower() for name in upstream.requests[0].headers}
    bad = run_wsreplay(
        "record", "--upstream", "http://127.0.0.1:9", "-o", str(tmp_path / "x.cassette"), "--set", "no_such_option=1"
    )
    assert bad.returncode == 2 and "no_such_option" in bad.stderr and "Traceback" not in bad.stderr


def test_env_prints_what_clients_need(tmp_path: Path) -> None:
    result = run_wsreplay("env", "--shell", "--proxy", "127.0.0.1:9999", "--confdir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    exported = dict(line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines())
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "wss_proxy"):
        assert exported[name] == "http://127.0.0.1:9999"
    bundle = Path(exported["SSL_CERT_FILE"])
    assert (
        exported["REQUESTS_CA_BUNDLE"] == exported["CURL_CA_BUNDLE"] == exported["NODE_EXTRA_CA_CERTS"] == str(bundle)
    )
    assert (tmp_path / "mitmproxy-ca-cert.pem").read_text() in bundle.read_text()
    assert bundle.read_text().count("BEGIN CERTIFICATE") > 10
    assert "127.0.0.1" in exported["NO_PROXY"]
