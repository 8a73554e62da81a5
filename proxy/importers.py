"""Cassettes from other tools' captures: HAR files and mitmproxy flow files (``mitmdump -w``).

The input's type is detected from its content, never from its name.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from mitmproxy import http
from mitmproxy.exceptions import FlowReadException
from mitmproxy.flow import Flow
from mitmproxy.io import FlowReader

import wsreplay
from wsreplay.cassette import Cassette, CassetteError, CassetteWriter, NotACassetteError, open_cassette
from wsreplay.flows import AnswerClock, answer_timing, request_record, response_record
from wsreplay.har import HarError, har_to_cassette, in_recording_order
from wsreplay.recording import Recording
from wsreplay.records import (
    CassetteHeader,
    ConnectionFailure,
    HttpExchange,
    Record,
    Side,
    WebSocketClose,
    WebSocketFrame,
    WebSocketOpen,
)

InputFormat = Literal["har", "mitmproxy", "cassette", "unknown"]
_TNETSTRING_START = re.compile(rb"^\d{1,12}:")
_PEEK_BYTES = 64


class CassetteImportError(CassetteError):
    """A file that cannot be imported; the message is one sentence for the user."""


def detect_format(head: bytes) -> InputFormat:
    """What a file is, from its first bytes."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"{"):
        return "har"
    if _TNETSTRING_START.match(head):
        return "mitmproxy"
    return "unknown"


def import_file(path: str | os.PathLike[str]) -> Cassette:
    """Read a HAR file or a mitmproxy flow file into a cassette (in memory)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PEEK_BYTES)
    except OSError as exc:
        raise CassetteImportError(f"cannot read {path}: {exc.strerror or exc}") from None
    kind = detect_format(head)
    if kind == "har":
        return _import_har(path)
    if kind == "mitmproxy":
        return flows_to_cassette(_read_flows(path), str(path))
    if _is_cassette(path):
        raise CassetteImportError(f"{path} is already a wsreplay cassette; there is nothing to import")
    raise CassetteImportError(f"{path} is neither a HAR file nor a mitmproxy flow file")


def _is_cassette(path: str | os.PathLike[str]) -> bool:
    try:
        _reader, handle = open_cassette(path)
    except NotACassetteError:
        return False
    except CassetteError:
        return True
    handle.close()
    return True


def _import_har(path: str | os.PathLike[str]) -> Cassette:
    try:
        har = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise CassetteImportError(f"{path} looks like JSON but is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise CassetteImportError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise CassetteImportError(f"{path} nests JSON too deeply to be a HAR file") from None
    try:
        return har_to_cassette(har)
    except HarError as exc:
        raise CassetteImportError(f"{path} is not a usable HAR file: {exc}") from None


def _read_flows(path: str | os.PathLike[str]) -> list[Flow]:
    with open(path, "rb") as handle:
        try:
            return list(FlowReader(handle).stream())
        except FlowReadException as exc:
            raise CassetteImportError(f"{path} is not a readable mitmproxy flow file: {exc}") from None


def flows_to_cassette(flows: Iterable[Flow], name: str = "flows") -> Cassette:
    """A cassette from mitmproxy flows: HTTP exchanges, WebSocket upgrades, messages and closes."""
    http_flows = sorted(
        (flow for flow in flows if isinstance(flow, http.HTTPFlow)), key=lambda flow: flow.request.timestamp_start
    )
    if not http_flows:
        raise CassetteImportError(f"{name} holds no HTTP or WebSocket flows")
    clock = AnswerClock()
    timings = [answer_timing(flow, clock) for flow in http_flows]
    origin = min(started for started, _duration in timings)
    records: list[Record] = []
    for record_id, (flow, timing) in enumerate(zip(http_flows, timings, strict=True), 1):
        records += flow_records(flow, record_id, origin, timing)
    header = CassetteHeader(
        created=origin,
        wsreplay_version=wsreplay.__version__,
        mode="import",
        metadata={"imported_from": "mitmproxy"},
    )
    return Cassette(header, in_recording_order(records))


def _offset(timestamp: float, origin: float) -> float:
    return round(max(0.0, timestamp - origin), 6)


def flow_records(flow: http.HTTPFlow, record_id: int, origin: float, timing: tuple[float, float]) -> list[Record]:
    """The records of one finished flow, with times relative to `origin`; `timing` is its
    `answer_timing` (the client's wait may begin before the request, with an eager connect)."""
    request = request_record(flow)
    started, duration = timing
    start, duration = _offset(started, origin), round(duration, 6)
    records: list[Record] = []
    if flow.response is not None and (flow.websocket is not None or request.is_websocket_upgrade):
        records.append(WebSocketOpen(record_id, start, request, response_record(flow.response), duration))
        records += _websocket_records(flow, record_id, origin)
    else:
        response = response_record(flow.response) if flow.response else None
        records.append(HttpExchange(record_id, start, request, response, duration))
    if flow.error is not None:
        records.append(ConnectionFailure(record_id, _offset(flow.error.timestamp, origin), flow.error.msg))
    return records


def _websocket_records(flow: http.HTTPFlow, record_id: int, origin: float) -> list[Record]:
    websocket = flow.websocket
    if websocket is None:
        return []
    records: list[Record] = [
        WebSocketFrame(record_id, _offset(m.timestamp, origin), m.from_client, m.is_text, m.content)
        for m in websocket.messages
    ]
    if websocket.timestamp_end is None and websocket.close_code is None:
        return records
    closed_by: Side | None = (
        None if websocket.closed_by_client is None else ("client" if websocket.closed_by_client else "server")
    )
    ended = websocket.timestamp_end or (websocket.messages[-1].timestamp if websocket.messages else origin)
    records.append(
        WebSocketClose(record_id, _offset(ended, origin), websocket.close_code, websocket.close_reason or "", closed_by)
    )
    return records


def write_imported(cassette: Cassette, path: str | os.PathLike[str], *, overwrite: bool = False) -> str:
    """Write an imported cassette; return the one-line summary a recording prints."""
    with CassetteWriter(path, cassette.header, overwrite=overwrite) as writer:
        recording = Recording(writer)
        for record in cassette.records:
            recording.add(record)
    return recording.stats.summary(writer.bytes_written)
