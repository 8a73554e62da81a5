"""GraphQL over WebSocket (graphql-transport-ws) with the real libraries, recorded and replayed.

The server is graphql-ws's useServer on a `ws` WebSocketServer; the client graphql-ws's
createClient, whose default generateID mints a random UUID for every operation, so the ids a
replayed client sends are never the recorded ones. On one connection the client runs a query and
three subscriptions in flight at once (tests/support/npm/graphql_{server,client}.mjs).

Replay (through mitmproxy, and with --direct) must send the recorded results under the live
client's own ids: graphql-ws drops a message for an id it does not know, so a recorded id sent
back as it was would leave the operation waiting forever (the client fails after 10 s, or at
once when it sees a foreign id).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.node import NODE
from tests.support.npm_scripts import (
    NPM_DIR,
    Recording,
    explain,
    node_under_wsreplay,
    record_live,
    requires_npm_packages,
)
from wsreplay.cassette import load_cassette
from wsreplay.records import WebSocketFrame

SERVER = NPM_DIR / "graphql_server.mjs"
CLIENT = NPM_DIR / "graphql_client.mjs"

pytestmark = requires_npm_packages


def countdown(label: str, start: int) -> list[dict[str, Any]]:
    return [{"data": {"countdown": f"{label}:{n}"}} for n in range(start, -1, -1)]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """The client's session with the live server through `wsreplay record`; the server is gone after."""
    assert NODE is not None
    return record_live([NODE, str(SERVER)], tmp_path_factory.mktemp("graphql-ws") / "graphql-ws.cassette", CLIENT)


def without_ids(transcript: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in transcript.items() if key != "ids"}


def test_the_recorded_session_is_the_servers_answers_to_the_clients_own_ids(recording: Recording) -> None:
    live = recording.live
    assert live["query"] == {"data": {"greeting": "Hello, wsreplay!"}}
    assert live["subscriptions"] == {
        "alpha": countdown("alpha", 3),
        "beta": countdown("beta", 2),
        "gamma": countdown("gamma", 4),
    }
    assert len(set(live["ids"])) == 4, "one fresh id per operation"

    messages = [
        (record.from_client, json.loads(record.payload))
        for record in load_cassette(recording.cassette).records
        if isinstance(record, WebSocketFrame)
    ]
    subscribed = [message["id"] for from_client, message in messages if from_client and message["type"] == "subscribe"]
    answered = {message["id"] for from_client, message in messages if not from_client and "id" in message}
    assert subscribed == live["ids"], "the cassette holds the client's subscribe messages, ids and all"
    assert answered == set(live["ids"]), "the recorded results are addressed to the recorded ids"


@pytest.mark.parametrize("direct", [False, True], ids=["proxy", "direct"])
def test_replay_answers_the_live_clients_fresh_ids(recording: Recording, direct: bool) -> None:
    replay_args = ["replay", str(recording.cassette), "--strict", *(["--direct"] if direct else [])]
    result, replayed = node_under_wsreplay(*replay_args, script=CLIENT)

    assert isinstance(replayed, dict) and "error" not in replayed, explain(result, replayed)
    assert without_ids(replayed) == without_ids(recording.live)
    assert set(replayed["ids"]).isdisjoint(recording.live["ids"]), "the replayed client minted ids of its own"
    assert result.returncode == 0, explain(result, replayed)


def test_without_correlation_the_client_gets_results_for_ids_it_never_sent(recording: Recording) -> None:
    """The control: the recorded messages sent verbatim carry the recorded ids, and the client says so."""
    result, replayed = node_under_wsreplay("replay", str(recording.cassette), "--no-correlate", script=CLIENT)

    assert result.returncode == 1, explain(result, replayed)
    assert "which this client never sent" in replayed["error"]
    assert {message["id"] for message in replayed["foreign"]} <= set(recording.live["ids"])
