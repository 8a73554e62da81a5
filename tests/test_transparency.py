"""A client cannot tell whether it talked to the upstream directly or through wsreplay.

The matrix: every client kind (Node's WebSocket, a Chromium page, `websockets`, aiohttp,
websocket-client) on every path (directly, through `wsreplay record`, `wsreplay replay`,
`wsreplay replay --direct`), in two staging scenarios: the authentication failure
(`error_message` frame, then close 1008 "Authentication failed") and a chat turn (ack and
the five agent events, then the client closes with 1000). Each cell runs 30 sockets in one
client process or page, in waves of 3 at once (the mix that exposes closing-handshake races
on every path, see `WAVE`), and every one of them must observe the same frames, close code,
reason and wasClean as a client talking directly.

The replays answer from one cassette per scenario, recorded once (30 connections) with
`websockets`; every replay cell runs its own `wsreplay replay`, which serves each recorded
connection once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.scenario import browser_staging_upstream
from tests.support.staging_upstream import ScriptedUpstream
from tests.support.transparency import (
    CLIENT_KINDS,
    PATHS,
    SCENARIOS,
    ChromiumClient,
    Recordings,
    Scenario,
    WebSocketClient,
    reach,
    tally,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    """The staging upstream; WebSockets authenticate with the `jwt.<token>` subprotocol, as browsers do."""
    async with browser_staging_upstream() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def recordings(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Recordings:
    return Recordings(upstream, tmp_path_factory.mktemp("transparency-cassettes"))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def clients() -> AsyncIterator[dict[str, WebSocketClient]]:
    """One of each client kind for the module (the Chromium browser starts on first use)."""
    kinds = {name: make() for name, make in CLIENT_KINDS.items()}
    yield kinds
    chromium = kinds["chromium"]
    assert isinstance(chromium, ChromiumClient)
    await chromium.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.name)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("client_name", CLIENT_KINDS)
async def test_every_socket_observes_what_it_observes_directly(
    client_name: str,
    path: str,
    scenario: Scenario,
    clients: dict[str, WebSocketClient],
    upstream: ScriptedUpstream,
    recordings: Recordings,
    tmp_path: Path,
) -> None:
    client = clients[client_name]
    if reason := client.missing():
        pytest.skip(reason)
    async with reach(path, scenario, upstream, recordings, tmp_path) as ws_base:
        observations = await client.observe(scenario.plan(ws_base))

    expected = client.expected(scenario)
    report = tally(f"{client.label} {path} {scenario.name}", scenario, observations, expected)
    print(report)
    if observations != [expected] * len(observations):
        pytest.fail(report, pytrace=False)
