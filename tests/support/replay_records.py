"""Cassette records built in memory for the replay engine and replay server tests.

The engine tests replay them twice: from memory, and from a cassette file written first
(:func:`recordings_in`), as ``wsreplay replay`` reads a cassette: the same answers either way.
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

_directory: Path | None = None
_numbers = itertools.count(1)


@contextmanager
def recordings_in(directory: Path | None) -> Iterator[None]:
    """Inside, :func:`recording` writes its records to a cassette file in `directory` (None: memory)."""
    global _directory
    _directory = directory
    try:
        yield
    finally:
        _directory = None


def recording(records: Sequence[Record]) -> Cassette | CassetteFile:
    """The records as a replay session reads them: a cassette in memory, or a cassette file."""
    cassette = Cassette(HEADER, list(records))
    if _directory is None:
        return cassette
    path = _directory / f"recording-{next(_numbers)}.cassette"
    write_cassette(path, cassette)
    return CassetteFile(path)


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
