"""Cassette records built in memory for the replay engine and replay server tests.

The engine tests replay them from memory and from a cassette file written first, indexed
whole or as played (:data:`RECORDING_PLACES`, :func:`recordings_in`): the same answers
every way.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from wsreplay.cassette import Cassette, write_cassette
from wsreplay.records import (
    CassetteHeader,
    Headers,
    HttpRequest,
    HttpResponse,
    Record,
    WebSocketFrame,
    WebSocketOpen,
)
from wsreplay.sources import CassetteFile

HEADER = CassetteHeader(created=1_757_292_800.0, wsreplay_version="test")

RECORDING_PLACES = ("in memory", "from a file", "from a file indexed as played")
"""Where the engine tests' records are replayed from: a cassette in memory, a cassette file
indexed whole before anything is served (as ``wsreplay replay`` reads a small one), and a
cassette file indexed as far as each answer needs (as it reads a big one)."""

_place: tuple[Path, bool] | None = None
_numbers = itertools.count(1)


@contextmanager
def recordings_in(place: str, directory: Path) -> Iterator[None]:
    """Inside, :func:`recording` gives its records from `place` (one of `RECORDING_PLACES`),
    writing cassette files to `directory`."""
    global _place
    _place = None if place == RECORDING_PLACES[0] else (directory, place == RECORDING_PLACES[2])
    try:
        yield
    finally:
        _place = None


def recording(records: Sequence[Record]) -> Cassette | CassetteFile:
    """The records as a replay session reads them: a cassette in memory, or a cassette file."""
    cassette = Cassette(HEADER, list(records))
    if _place is None:
        return cassette
    directory, index_as_played = _place
    path = directory / f"recording-{next(_numbers)}.cassette"
    write_cassette(path, cassette)
    source = CassetteFile(path)
    source.index_as_played = index_as_played
    return source


AUTH_FAILED = (
    b'{"type":"error_message","error_code":"AUTH_REQUIRED","error_message":"Authentication failed",'
    b'"timestamp":1757292881.27}'
)


def http_request(
    path: str = "/health", method: str = "GET", body: bytes = b"", headers: Headers = (), query: str = ""
) -> HttpRequest:
    return HttpRequest(method, "https", "api.staging.example", 443, path, query, headers=headers, body=body)


def upgrade_request(path: str = "/ws", subprotocols: Sequence[str] = (), query: str = "") -> HttpRequest:
    headers: Headers = (("Upgrade", "websocket"), ("Connection", "Upgrade"))
    if subprotocols:
        headers += (("Sec-WebSocket-Protocol", ", ".join(subprotocols)),)
    return http_request(path, headers=headers, query=query)


def json_response(status: int, document: object) -> HttpResponse:
    return HttpResponse(status, headers=(("Content-Type", "application/json"),), body=json.dumps(document).encode())


def accepted_open(
    record_id: int, time: float = 0.0, request: HttpRequest | None = None, duration: float = 0.0, **headers: str
) -> WebSocketOpen:
    """An accepted upgrade requested at `time`, answered `duration` later; `headers` go in the 101."""
    response_headers = tuple((name.replace("_", "-"), value) for name, value in headers.items())
    response = HttpResponse(101, headers=response_headers)
    return WebSocketOpen(record_id, time, request or upgrade_request(), response, duration)


def server(record_id: int, time: float, payload: object, *, text: bool = True) -> WebSocketFrame:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return WebSocketFrame(record_id, time, False, text, data)


def client(record_id: int, time: float, payload: object) -> WebSocketFrame:
    return WebSocketFrame(record_id, time, True, True, json.dumps(payload).encode())


def conversations_for(owners: Sequence[str], greeting: object = None) -> list[Record]:
    """Alike conversations (the greeting differs in volatile values only), one per owner."""
    records: list[Record] = []
    for n in range(1, len(owners) + 1):
        hello = greeting if greeting is not None else {"type": "connected", "connection_id": str(uuid.uuid4())}
        records += [accepted_open(n, n * 0.01), server(n, n * 0.01 + 0.001, hello)]
    for n, owner in enumerate(owners, 1):
        records += [client(n, 1.0 + n, {"content": owner}), server(n, 1.1 + n, {"for": owner})]
    return records
