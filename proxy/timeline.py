"""Human- and script-readable views of a cassette's records (``wsreplay show``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring as encode_json_string
from typing import Any

from wsreplay.records import (
    Annotation,
    ConnectionFailure,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    Record,
    WebSocketClose,
    WebSocketFrame,
    WebSocketOpen,
    is_utf8,
    message_fields,
)

HEX_PREVIEW_BYTES = 16


def compact_text(payload: bytes) -> str:
    """A text payload on one line: JSON re-serialised compactly, anything else as is."""
    text = payload.decode("utf-8", errors="replace")
    try:
        return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    except (ValueError, RecursionError):
        return " ".join(text.split())


def binary_preview(payload: bytes) -> str:
    more = "..." if len(payload) > HEX_PREVIEW_BYTES else ""
    return f"[binary {len(payload)} bytes] {payload[:HEX_PREVIEW_BYTES].hex(' ')}{more}"


def body_preview(body: bytes) -> str:
    if not body:
        return ""
    if is_utf8(body):
        return compact_text(body)
    return binary_preview(body)


def describe(record: Record) -> str:
    """One line for one record, without the time column."""
    match record:
        case HttpExchange(request=request, response=None):
            return f"HTTP   #{record.id} {request.method} {request.target} -> (no response)"
        case HttpExchange(request=request, response=HttpResponse() as response):
            return f"HTTP   #{record.id} {request.method} {request.target} -> {response.status} {body_preview(response.body)}"
        case WebSocketOpen(request=request, response=response):
            offered = ", ".join(_short(p) for p in request.offered_subprotocols)
            offer = f" offering [{offered}]" if offered else ""
            if record.accepted:
                chosen = f" subprotocol {_short(record.subprotocol)}" if record.subprotocol else ""
                return f"WS     #{record.id} open {request.target}{offer} -> 101{chosen}"
            return (
                f"WS     #{record.id} REFUSED {request.target}{offer} -> {response.status} "
                f"{body_preview(response.body)}"
            )
        case WebSocketFrame():
            arrow = "client >>" if record.from_client else "server <<"
            content = compact_text(record.payload) if record.is_text else binary_preview(record.payload)
            return f"WS     #{record.id} {arrow} {content}"
        case WebSocketClose():
            code = "no code" if record.code is None else str(record.code)
            return f"WS     #{record.id} close {code} {record.reason!r} by {record.closed_by or 'unknown'}"
        case ConnectionFailure():
            return f"ERROR  #{record.id} {record.message}"
        case Annotation():
            return f"NOTE   {compact_text(json.dumps(record.data).encode())}"
    raise TypeError(f"not a record: {record!r}")


def _short(value: str | None, limit: int = 40) -> str:
    value = value or ""
    return value if len(value) <= limit else value[: limit - 3] + "..."


def timeline_line(record: Record, width: int | None = None, correlated: Iterable[str] = ()) -> str:
    """One timeline line, cut to `width`; then the `correlated` values (the client's ids it carries)."""
    values = list(correlated)
    line = f"{record.time:>9.3f}s  {describe(record)}"
    if width and len(line) > width:
        line = line[: max(width - 3, 10)] + "..."
    return line + (f"  [correlated: {', '.join(values)}]" if values else "")


def _body_json(body: bytes) -> dict[str, Any]:
    if is_utf8(body):
        return {"text": body.decode("utf-8")}
    return {"base64": base64.b64encode(body).decode("ascii")}


def request_as_dict(request: HttpRequest) -> dict[str, Any]:
    return message_fields(request, _body_json)


def response_as_dict(response: HttpResponse) -> dict[str, Any]:
    return message_fields(response, _body_json)


def record_json(record: Record, correlated: Sequence[str] = ()) -> str:
    """One record read from a cassette as a line of JSON (``show --json``): :func:`record_as_dict`,
    with `correlated` values when there are any.

    A text frame's line, most of them, is made directly; its time needs no rounding, since a
    cassette keeps whole microseconds.
    """
    if type(record) is WebSocketFrame and record.is_text and not correlated:
        return text_frame_json(record.id, record.time, "client" if record.from_client else "server", record.payload)
    fields = record_as_dict(record)
    if correlated:
        fields["correlated"] = list(correlated)
    return json.dumps(fields, ensure_ascii=False)


def text_frame_json(record_id: int, time: float, side: str, payload: bytes) -> str:
    """:func:`record_json` of a text frame without correlated values, from its fields."""
    return (
        f'{{"time": {time!r}, "id": {record_id}, "kind": "frame", "from": "{side}", '
        f'"opcode": "text", "text": {encode_json_string(payload.decode("utf-8", "replace"))}}}'
    )


def record_as_dict(record: Record) -> dict[str, Any]:
    """A JSON-ready object for one record (``show --json``, ``export --format json``)."""
    if type(record) is WebSocketFrame:  # the most frequent, in one dict
        if record.is_text:
            return {
                "time": round(record.time, 6),
                "id": record.id,
                "kind": "frame",
                "from": record.side,
                "opcode": "text",
                "text": record.text,
            }
        return {
            "time": round(record.time, 6),
            "id": record.id,
            "kind": "frame",
            "from": record.side,
            "opcode": "binary",
            "base64": base64.b64encode(record.payload).decode(),
        }
    base: dict[str, Any] = {"time": round(record.time, 6), "id": record.id}
    match record:
        case HttpExchange():
            response = response_as_dict(record.response) if record.response else None
            return base | {
                "kind": "http",
                "request": request_as_dict(record.request),
                "response": response,
                "duration": round(record.duration, 6),
            }
        case WebSocketOpen():
            return base | {
                "kind": "websocket_open",
                "accepted": record.accepted,
                "request": request_as_dict(record.request),
                "response": response_as_dict(record.response),
                "duration": round(record.duration, 6),
            }
        case WebSocketClose():
            return base | {"kind": "close", "code": record.code, "reason": record.reason, "closed_by": record.closed_by}
        case ConnectionFailure():
            return base | {"kind": "error", "message": record.message}
        case Annotation():
            return base | {"kind": "annotation", "data": record.data}
    raise TypeError(f"not a record: {record!r}")
