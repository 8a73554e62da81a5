"""JSON-RPC 2.0 over WebSocket, recorded and replayed with the calls sent in another order.

The server (tests/support/jsonrpc_server.py, `websockets`) holds its responses until five
calls have come and then answers the last first; the client (tests/support/npm/jsonrpc_client.mjs,
Node's `ws`) gives each call a fresh crypto.randomUUID() id, sends its five calls at once in the
order its argument names, and matches responses to calls by id.

The recording sends the calls in one order, the replays (through mitmproxy, and with --direct)
in another: each call must get its own recorded result under the id the live client gave it.
A response with an id the client never sent fails the client at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

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

SERVER = Path(__file__).parent / "support" / "jsonrpc_server.py"
CLIENT = NPM_DIR / "jsonrpc_client.mjs"
RECORDED_ORDER = "0,1,2,3,4"
REPLAYED_ORDER = "3,0,4,1,2"

pytestmark = requires_npm_packages

ADD = 'add({"a":2,"b":3})'
CONCAT = 'concat(["ws","re","play"])'
ECHO = 'echo({"value":{"nested":[1,"two",null]}})'
SQUARE = "square([12])"
DIVIDE = 'divide({"a":1,"b":0})'


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """The calls in RECORDED_ORDER against the live server through `wsreplay record`; the server is
    gone after."""
    cassette = tmp_path_factory.mktemp("jsonrpc") / "jsonrpc.cassette"
    return record_live([sys.executable, str(SERVER)], cassette, CLIENT, [RECORDED_ORDER])


def test_the_live_server_answers_each_call_by_id_and_out_of_order(recording: Recording) -> None:
    live = recording.live
    assert live["results"] == {
        ADD: {"result": 5},
        CONCAT: {"result": "wsreplay"},
        ECHO: {"result": {"nested": [1, "two", None]}},
        SQUARE: {"result": 144},
        DIVIDE: {"error": {"code": -32000, "message": "division by zero"}},
    }
    assert live["sent"] == [ADD, CONCAT, ECHO, SQUARE, DIVIDE]
    assert live["answered"] == [DIVIDE, SQUARE, ECHO, CONCAT, ADD], "the last call first"
    assert live["own_ids"] is True
    assert live["closed"] == [1000, "done"]

    responses = [
        json.loads(record.payload)
        for record in load_cassette(recording.cassette).records
        if isinstance(record, WebSocketFrame) and not record.from_client
    ]
    assert [response["id"] for response in responses] == live["ids"][::-1], "recorded under the recorded ids"


@pytest.mark.parametrize("direct", [False, True], ids=["proxy", "direct"])
def test_replay_answers_calls_in_another_order_under_their_live_ids(recording: Recording, direct: bool) -> None:
    replay_args = ["replay", str(recording.cassette), "--strict", *(["--direct"] if direct else [])]
    result, replayed = node_under_wsreplay(*replay_args, script=CLIENT, args=[REPLAYED_ORDER])

    assert isinstance(replayed, dict) and "error" not in replayed, explain(result, replayed)
    assert replayed["sent"] == [SQUARE, ADD, DIVIDE, CONCAT, ECHO], "the calls went in the other order"
    assert replayed["results"] == recording.live["results"], "every call got its own recorded result"
    assert replayed["own_ids"] is True
    assert set(replayed["ids"]).isdisjoint(recording.live["ids"]), "the replayed client minted ids of its own"
    assert sorted(replayed["answered"]) == sorted(replayed["sent"]), "each call answered once"
    assert replayed["closed"] == [1000, "done"]
    assert result.returncode == 0, explain(result, replayed)


def test_without_correlation_the_client_gets_responses_for_ids_it_never_sent(recording: Recording) -> None:
    """The control: the recorded responses sent verbatim carry the recorded ids, and the client says so."""
    result, replayed = node_under_wsreplay(
        "replay", str(recording.cassette), "--no-correlate", script=CLIENT, args=[REPLAYED_ORDER]
    )

    assert result.returncode == 1, explain(result, replayed)
    assert "which this client never sent" in replayed["error"]
    assert replayed["so_far"]["results"] == {}
    assert {response["id"] for response in replayed["foreign"]} <= set(recording.live["ids"])
