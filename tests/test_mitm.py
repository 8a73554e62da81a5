"""Tests for wsreplay.mitm: mitmproxy run programmatically, on real sockets."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import urllib.request
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import websockets
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy import certs, http
from mitmproxy.proxy.server_hooks import ServerConnectionHookData
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

from wsreplay.mitm import ProxyHost, ProxySettings, ProxyStartError, normalize_mode

TIMEOUT = 10.0
STAGING_HOST = "api.staging.wsreplay.test"
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=TIMEOUT)


@pytest.fixture(scope="session")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One mitmproxy confdir (and CA) shared by all tests."""
    return str(tmp_path_factory.mktemp("mitmproxy-confdir"))


@asynccontextmanager
async def running_proxy(settings: ProxySettings, addons: Sequence[object] = ()) -> AsyncIterator[tuple[ProxyHost, int]]:
    host = ProxyHost(settings, addons)
    _, port = await asyncio.wait_for(host.start(), TIMEOUT)
    try:
        yield host, port
    finally:
        await asyncio.wait_for(host.stop(), TIMEOUT)


@asynccontextmanager
async def aiohttp_server(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await asyncio.wait_for(runner.cleanup(), TIMEOUT)


def hello_app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.path} via {request.host}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    return app


async def echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


@asynccontextmanager
async def ws_echo_server() -> AsyncIterator[int]:
    async with ws_serve(echo, "127.0.0.1", 0) as server:
        yield next(iter(server.sockets)).getsockname()[1]


class Responder:
    """Answers every request itself, so no upstream is ever needed (like replay)."""

    def request(self, flow: http.HTTPFlow) -> None:
        flow.response = http.Response.make(
            200, f"canned {flow.request.pretty_url}".encode(), {"content-type": "text/plain"}
        )


class Resolve:
    """Sends connections for `hostname` to `target`, like a `--resolve HOST=ADDR` option."""

    def __init__(self, hostname: str, target: tuple[str, int]) -> None:
        self.hostname = hostname
        self.target = target

    def server_connect(self, data: ServerConnectionHookData) -> None:
        assert data.server.address is not None
        if data.server.address[0] == self.hostname:
            data.server.address = self.target


async def test_reverse_proxy_relays_http(confdir: str) -> None:
    async with aiohttp_server(hello_app()) as upstream_port:
        settings = ProxySettings(mode=f"reverse:http://127.0.0.1:{upstream_port}", confdir=confdir)
        async with running_proxy(settings) as (_, port):
            async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
                async with session.get(f"http://127.0.0.1:{port}/greet") as response:
                    assert response.status == 200
                    body = await response.text()
    assert body == f"hello /greet via 127.0.0.1:{upstream_port}"


async def test_port_zero_reports_bound_port(confdir: str) -> None:
    host = ProxyHost(ProxySettings(mode="regular", confdir=confdir), [])
    address = await asyncio.wait_for(host.start(), TIMEOUT)
    try:
        assert address[0] == "127.0.0.1"
        assert address[1] > 0
        _, writer = await asyncio.wait_for(asyncio.open_connection(*address), TIMEOUT)
        writer.close()
        assert host.ca_cert_path == Path(confdir) / "mitmproxy-ca-cert.pem"
        assert host.ca_cert_path.is_file()
    finally:
        await asyncio.wait_for(host.stop(), TIMEOUT)


@pytest.mark.parametrize("scheme", ["ws", "http"])
async def test_websocket_relayed_through_reverse_proxy(confdir: str, scheme: str) -> None:
    async with ws_echo_server() as upstream_port:
        settings = ProxySettings(mode=f"reverse:{scheme}://127.0.0.1:{upstream_port}", confdir=confdir)
        async with running_proxy(settings) as (_, port):
            async with ws_connect(f"ws://127.0.0.1:{port}/socket", open_timeout=TIMEOUT) as ws:
                await ws.send("ping")
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "ping"


async def test_stop_closes_live_websocket_and_frees_port(confdir: str) -> None:
    async with ws_echo_server() as upstream_port:
        settings = ProxySettings(mode=f"reverse:ws://127.0.0.1:{upstream_port}", confdir=confdir)
        host = ProxyHost(settings, [])
        _, port = await asyncio.wait_for(host.start(), TIMEOUT)
        try:
            ws = await ws_connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT)
            await ws.send("before stop")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "before stop"
        finally:
            await asyncio.wait_for(host.stop(), TIMEOUT)

        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)

        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
        again = ProxySettings(mode=settings.mode, listen_port=port, confdir=confdir)
        async with running_proxy(again) as (_, port_again):
            assert port_again == port


async def test_port_in_use_is_a_clear_start_error(confdir: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        host = ProxyHost(ProxySettings(mode="regular", listen_port=port, confdir=confdir), [])
        with pytest.raises(ProxyStartError) as error:
            await asyncio.wait_for(host.start(), TIMEOUT)
    assert str(error.value) == f"cannot listen on 127.0.0.1:{port}: address already in use"
    async with running_proxy(ProxySettings(mode="regular", confdir=confdir)):
        pass


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ProxySettings(mode="bogus"), "invalid option: Invalid proxy mode specification: bogus"),
        (ProxySettings(mode="reverse:ftp://x"), "invalid option: Invalid proxy mode"),
        (
            ProxySettings(mode="regular", connection_strategy="sometimes"),
            "invalid option: connection_strategy must be one of .eager., .lazy., not .sometimes.$",
        ),
        (ProxySettings(mode="regular", extra_options={"no_such_option": "1"}), "unknown option: no_such_option"),
        (ProxySettings(mode="regular", extra_options={"stream_large_bodies": "x"}), "invalid option"),
        (ProxySettings(mode="regular", scripts=["/nonexistent/addon.py"]), "invalid option: No such script"),
    ],
)
async def test_bad_configuration_is_a_clear_start_error(confdir: str, settings: ProxySettings, message: str) -> None:
    settings.confdir = confdir
    with pytest.raises(ProxyStartError, match=f"^{message}"):
        await asyncio.wait_for(ProxyHost(settings, []).start(), TIMEOUT)
    async with running_proxy(ProxySettings(mode="regular", confdir=confdir)):
        pass


async def test_script_errors_are_start_errors(confdir: str, tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text("raise RuntimeError('boom')\n")
    settings = ProxySettings(mode="regular", confdir=confdir, scripts=[str(script)])
    with pytest.raises(ProxyStartError, match=r"^error in script .*broken\.py: boom$"):
        await asyncio.wait_for(ProxyHost(settings, []).start(), TIMEOUT)


async def test_scripts_and_their_options_load(confdir: str, tmp_path: Path) -> None:
    script = tmp_path / "greeter.py"
    script.write_text(
        "from mitmproxy import ctx, http\n"
        "def load(loader):\n"
        "    loader.add_option('greeting', str, 'hi', 'A greeting.')\n"
        "def request(flow):\n"
        "    flow.response = http.Response.make(200, ctx.options.greeting)\n"
    )
    settings = ProxySettings(
        mode="reverse:http://upstream.invalid",
        confdir=confdir,
        connection_strategy="lazy",
        scripts=[str(script)],
        extra_options={"greeting": "hello from a script"},
    )
    async with running_proxy(settings) as (_, port):
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                assert await response.text() == "hello from a script"


async def test_only_one_proxy_per_process(confdir: str) -> None:
    async with running_proxy(ProxySettings(mode="regular", confdir=confdir)):
        with pytest.raises(ProxyStartError, match="already running"):
            await ProxyHost(ProxySettings(mode="regular", confdir=confdir), []).start()


def test_threaded_variant_from_sync_code(confdir: str) -> None:
    settings = ProxySettings(mode="reverse:http://upstream.invalid", confdir=confdir, connection_strategy="lazy")
    host = ProxyHost(settings, [Responder()])
    listen_host, port = host.start_in_thread()
    try:
        url = f"http://{listen_host}:{port}/sync"
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            assert response.read() == b"canned http://upstream.invalid/sync"
        assert host.run_threadsafe(lambda: host.master.options.connection_strategy) == "lazy"
    finally:
        host.stop_thread()
    with pytest.raises(OSError):
        socket.create_connection((listen_host, port), timeout=TIMEOUT).close()


def test_threaded_variant_reports_start_errors(confdir: str) -> None:
    host = ProxyHost(ProxySettings(mode="bogus", confdir=confdir), [])
    with pytest.raises(ProxyStartError, match="invalid option"):
        host.start_in_thread()


async def test_lazy_strategy_answers_without_upstream_in_reverse_mode(confdir: str) -> None:
    settings = ProxySettings(mode=f"reverse:https://{STAGING_HOST}", confdir=confdir, connection_strategy="lazy")
    async with running_proxy(settings, [Responder()]) as (_, port):
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            async with session.get(f"http://127.0.0.1:{port}/reverse") as response:
                assert response.status == 200
                assert await response.text() == f"canned https://{STAGING_HOST}/reverse"


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_lazy_strategy_answers_without_upstream_in_regular_mode(confdir: str, scheme: str) -> None:
    settings = ProxySettings(mode="regular", confdir=confdir, connection_strategy="lazy")
    async with running_proxy(settings, [Responder()]) as (host, port):
        trust = ssl.create_default_context(cafile=str(host.ca_cert_path))
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            async with session.get(
                f"{scheme}://{STAGING_HOST}/regular", proxy=f"http://127.0.0.1:{port}", ssl=trust
            ) as response:
                assert response.status == 200
                assert await response.text() == f"canned {scheme}://{STAGING_HOST}/regular"


class StagingTLS:
    """A private CA and an upstream TLS context for STAGING_HOST that records the SNI it sees."""

    def __init__(self, directory: Path) -> None:
        store = certs.CertStore.from_store(directory, "staging", 2048)
        entry = store.get_cert(STAGING_HOST, [x509.DNSName(STAGING_HOST)])
        cert_file, key_file = directory / "staging-cert.pem", directory / "staging-key.pem"
        cert_file.write_bytes(entry.cert.to_pem())
        key_file.write_bytes(_private_key_pem(entry))
        self.ca_file = directory / "staging-ca-cert.pem"
        self.server_names: list[str | None] = []
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert_file, key_file)
        self.context.sni_callback = self._record_sni

    def _record_sni(self, _sock: object, server_name: str | None, _ctx: object) -> None:
        self.server_names.append(server_name)


def _private_key_pem(entry: certs.CertStoreEntry) -> bytes:
    return entry.privatekey.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


async def test_server_connect_can_redirect_tcp_destination_keeping_sni(confdir: str, tmp_path: Path) -> None:
    staging = StagingTLS(tmp_path)
    async with aiohttp_server(hello_app(), staging.context) as upstream_port:
        settings = ProxySettings(mode="regular", confdir=confdir, upstream_ca=str(staging.ca_file))
        resolve = Resolve(STAGING_HOST, ("127.0.0.1", upstream_port))
        async with running_proxy(settings, [resolve]) as (host, port):
            trust = ssl.create_default_context(cafile=str(host.ca_cert_path))
            async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
                async with session.get(
                    f"https://{STAGING_HOST}/redirected", proxy=f"http://127.0.0.1:{port}", ssl=trust
                ) as response:
                    assert response.status == 200
                    assert await response.text() == f"hello /redirected via {STAGING_HOST}"
    assert staging.server_names == [STAGING_HOST]


async def test_server_connect_redirect_for_websockets_in_reverse_mode(confdir: str, tmp_path: Path) -> None:
    staging = StagingTLS(tmp_path)
    async with ws_serve(echo, "127.0.0.1", 0, ssl=staging.context) as server:
        upstream_port = next(iter(server.sockets)).getsockname()[1]
        settings = ProxySettings(
            mode=f"reverse:wss://{STAGING_HOST}:443", confdir=confdir, upstream_ca=str(staging.ca_file)
        )
        resolve = Resolve(STAGING_HOST, ("127.0.0.1", upstream_port))
        async with running_proxy(settings, [resolve]) as (_, port):
            async with ws_connect(f"ws://127.0.0.1:{port}/live", open_timeout=TIMEOUT) as ws:
                await ws.send("through staging")
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "through staging"
    assert staging.server_names == [STAGING_HOST]


def test_normalize_mode() -> None:
    assert normalize_mode("reverse:wss://h:443") == "reverse:https://h:443"
    assert normalize_mode("reverse:ws://h@8080") == "reverse:http://h@8080"
    assert normalize_mode("regular") == "regular"
    assert normalize_mode("reverse:http://h") == "reverse:http://h"


class Crasher:
    def request(self, flow: http.HTTPFlow) -> None:
        raise RuntimeError("addon bug")


async def test_start_errors_are_not_logged_but_runtime_errors_are(
    confdir: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = ProxySettings(mode="regular", listen_port=taken.getsockname()[1], confdir=confdir)
        with pytest.raises(ProxyStartError):
            await asyncio.wait_for(ProxyHost(settings, []).start(), TIMEOUT)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []

    settings = ProxySettings(mode="reverse:http://upstream.invalid", confdir=confdir, connection_strategy="lazy")
    async with running_proxy(settings, [Crasher(), Responder()]) as (_, port):
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                assert response.status == 200
    assert any(r.name.startswith("mitmproxy") and "addon bug" in r.getMessage() for r in caplog.records)
    assert not any(r.levelno < logging.WARNING and r.name.startswith("mitmproxy") for r in caplog.records)
