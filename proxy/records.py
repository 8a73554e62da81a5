"""The cassette's data model: plain, immutable records that know nothing of I/O.

A cassette is a header followed by records in the order they happened. Every
record names the connection (or HTTP exchange) it belongs to with a small integer
id, and its time as seconds since the cassette's creation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeAlias

FORMAT_VERSION = 2
"""The cassette format version this wsreplay writes (and the newest it reads)."""

Headers: TypeAlias = tuple[tuple[str, str], ...]
Side: TypeAlias = Literal["client", "server"]


def header_value(headers: Headers, name: str) -> str | None:
    """The first value of header `name` (case-insensitive), or None."""
    lowered = name.lower()
    for key, value in headers:
        if key.lower() == lowered:
            return value
    return None


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    scheme: str
    host: str
    port: int
    path: str
    query: str = ""
    http_version: str = "HTTP/1.1"
    headers: Headers = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    @property
    def target(self) -> str:
        """Path and query as they appear on the request line."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def is_websocket_upgrade(self) -> bool:
        return (self.header("upgrade") or "").lower() == "websocket"

    @property
    def offered_subprotocols(self) -> tuple[str, ...]:
        return split_header_list(self.header("sec-websocket-protocol"))


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    reason: str = ""
    http_version: str = "HTTP/1.1"
    headers: Headers = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)


@dataclass(frozen=True, slots=True)
class CassetteHeader:
    created: float
    wsreplay_version: str
    mode: str = "record"
    upstream: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION
    """The format version the cassette is written in (a cassette read keeps its own)."""


@dataclass(frozen=True, slots=True)
class HttpExchange:
    """A plain HTTP request and its response (None when no response came)."""

    id: int
    time: float
    request: HttpRequest
    response: HttpResponse | None
    duration: float = 0.0


@dataclass(frozen=True, slots=True)
class WebSocketOpen:
    """An upgrade request and the server's answer: 101, or a refusal such as 403.

    `time` is when the client began waiting for the answer, `duration` how long it waited
    (0 in format version 1, whose `time` is when the answer came).
    """

    id: int
    time: float
    request: HttpRequest
    response: HttpResponse
    duration: float = 0.0

    @property
    def answered_at(self) -> float:
        """When the answer (the 101 or the refusal) ended: the start of the conversation."""
        return self.time + self.duration

    @property
    def accepted(self) -> bool:
        return self.response.status == 101

    @property
    def subprotocol(self) -> str | None:
        return self.response.header("sec-websocket-protocol")

    @property
    def extensions(self) -> str | None:
        return self.response.header("sec-websocket-extensions")


@dataclass(frozen=True, slots=True)
class WebSocketFrame:
    """One whole WebSocket message, text or binary, as it crossed the proxy."""

    id: int
    time: float
    from_client: bool
    is_text: bool
    payload: bytes

    @property
    def side(self) -> Side:
        return "client" if self.from_client else "server"

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The payload parsed as JSON, or None if it is binary or not JSON."""
        if not self.is_text:
            return None
        try:
            return json.loads(self.payload)
        except (ValueError, RecursionError):
            return None


@dataclass(frozen=True, slots=True)
class WebSocketClose:
    """The end of a WebSocket: close code, reason, and which side closed first."""

    id: int
    time: float
    code: int | None
    reason: str = ""
    closed_by: Side | None = None


@dataclass(frozen=True, slots=True)
class ConnectionFailure:
    """A connection that failed: upstream refused, TLS failure, abrupt drop."""

    id: int
    time: float
    message: str


@dataclass(frozen=True, slots=True)
class Annotation:
    """Facts about the recording learned while it ran (for example redactions)."""

    id: int
    time: float
    data: dict[str, Any]


Record: TypeAlias = HttpExchange | WebSocketOpen | WebSocketFrame | WebSocketClose | ConnectionFailure | Annotation


def is_utf8(data: bytes) -> bool:
    """Whether a body or payload is text (valid UTF-8)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def split_header_list(value: str | None) -> tuple[str, ...]:
    """Split a comma-separated header value such as Sec-WebSocket-Protocol."""
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def message_fields(message: HttpRequest | HttpResponse, encode_body: Callable[[bytes], Any]) -> dict[str, Any]:
    """A request's or response's fields as a plain dict, in declaration order.

    Headers become ``[name, value]`` lists; the body goes through `encode_body`
    (bytes as they are for the cassette, text or base64 for JSON views).
    """
    data = {item.name: getattr(message, item.name) for item in fields(message)}
    data["headers"] = [list(pair) for pair in message.headers]
    data["body"] = encode_body(message.body)
    return data
