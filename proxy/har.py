"""Cassettes as HAR 1.2 (and back), and as plain JSON.

WebSocket frames follow Chrome's convention: the upgrade's entry carries
``_resourceType: "websocket"`` and ``_webSocketMessages`` (``type`` send/receive,
``time`` in epoch seconds, ``opcode`` 1 text or 2 binary with base64 ``data``).
What HAR has no field for goes in underscore fields: ``_webSocketClose``,
``_failures`` and ``log._wsreplay`` (the cassette header, annotations).
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from json.encoder import encode_basestring as encode_json_string
from typing import Any, Protocol, TextIO, TypeVar, cast
from urllib.parse import parse_qsl, urlsplit

import msgpack
from mitmproxy.net import encoding

import wsreplay
from wsreplay.cassette import Cassette, CassetteError, decode_header, decode_record, encode_header, encode_record
from wsreplay.records import (
    FORMAT_VERSION,
    Annotation,
    CassetteHeader,
    ConnectionFailure,
    Headers,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    Record,
    WebSocketClose,
    WebSocketFrame,
    WebSocketOpen,
    header_value,
)
from wsreplay.timeline import record_as_dict

HAR_VERSION = "1.2"
OPCODE_TEXT = 1
OPCODE_BINARY = 2
DEFAULT_PORTS = {"http": 80, "https": 443}
WS_SCHEMES = {"http": "ws", "https": "wss"}
HTTP_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
EPOCH_MILLISECONDS = 1e11
"""A message ``time`` above this is epoch milliseconds (Playwright), below it epoch seconds (Chrome)."""
EPOCH_SECONDS = 1e8
"""A message ``time`` below this is no epoch at all: seconds on some other clock."""
ADDED_CLOSE_REASON = "end of the HAR recording"
"""The reason of the close an import adds for a WebSocket whose HAR entry records none."""
IMPORT_NOTE = "import_note"
"""The annotation key of what an import had to make up, for ``wsreplay import`` to say."""
HTTP_VERSIONS = {
    "h2": "HTTP/2.0",
    "http/2.0": "HTTP/2.0",
    "h3": "HTTP/3",
    "http/1.1": "HTTP/1.1",
    "http/1.0": "HTTP/1.0",
}


class HarError(CassetteError):
    """A HAR file that cannot be imported; the message is one sentence for the user."""


def cassette_as_json(cassette: Cassette) -> dict[str, Any]:
    """The whole cassette as readable JSON (``export --format json``)."""
    return {"header": encode_header(cassette.header), "records": [record_as_dict(r) for r in cassette.records]}


def write_cassette_json(header: CassetteHeader, records: Iterable[Record], out: TextIO) -> None:
    """Write ``json.dumps(cassette_as_json(...), indent=2, ensure_ascii=False)`` record by record.

    `records` is read once (a :class:`~wsreplay.cassette.CassetteReader` will do): memory
    holds one record at a time.
    """
    document = _indented_json(cassette_as_json(Cassette(header, [])), 0)
    before, after = _split_at_empty_list(document, "records", 1)
    out.write(before)
    items = _ListItems(2)
    for record in records:
        out.write(items.next_separator() + _indented_json(record_as_dict(record), 2))
    out.write(items.end() + after)


# --- export ---------------------------------------------------------------------


@dataclass
class _Group:
    """An exchange or WebSocket connection with the records that followed it."""

    head: HttpExchange | WebSocketOpen
    frames: list[WebSocketFrame] = field(default_factory=list)
    close: WebSocketClose | None = None
    failures: list[ConnectionFailure] = field(default_factory=list)

    def add_frame(self, frame: WebSocketFrame) -> None:
        self.frames.append(frame)


class _Grouped(Protocol):
    close: WebSocketClose | None
    failures: list[ConnectionFailure]

    def add_frame(self, frame: WebSocketFrame) -> None: ...


GroupT = TypeVar("GroupT", bound=_Grouped)


def _group(
    records: Iterable[Record], start: Callable[[HttpExchange | WebSocketOpen], GroupT]
) -> tuple[dict[int, GroupT], list[Annotation | ConnectionFailure]]:
    """The groups `start` makes of each exchange or connection (in order of appearance) and
    are given the records that follow it; and the annotations and unattached failures."""
    groups: dict[int, GroupT] = {}
    loose: list[Annotation | ConnectionFailure] = []
    for record in records:
        group = groups.get(record.id)
        match record:
            case HttpExchange() | WebSocketOpen():
                groups[record.id] = start(record)
            case WebSocketFrame() if group:
                group.add_frame(record)
            case WebSocketClose() if group:
                group.close = record
            case ConnectionFailure() if group:
                group.failures.append(record)
            case Annotation() | ConnectionFailure():
                loose.append(record)
    return groups, loose


def cassette_to_har(cassette: Cassette) -> dict[str, Any]:
    """A HAR 1.2 log of the cassette: one entry per exchange and per WebSocket upgrade."""
    origin = round(cassette.header.created, 6)
    groups, loose = _group(cassette.records, _Group)
    return _har_log(cassette.header, [_entry(group, origin) for group in groups.values()], loose)


def _har_log(
    header: CassetteHeader, entries: list[dict[str, Any]], loose: list[Annotation | ConnectionFailure]
) -> dict[str, Any]:
    return {
        "log": {
            "version": HAR_VERSION,
            "creator": {"name": "wsreplay", "version": wsreplay.__version__},
            "entries": entries,
            "_wsreplay": {
                "header": encode_header(header),
                "annotations": [
                    {"id": r.id, "time": r.time, "data": r.data} for r in loose if isinstance(r, Annotation)
                ],
                "failures": [
                    {"id": r.id, "time": r.time, "message": r.message}
                    for r in loose
                    if isinstance(r, ConnectionFailure)
                ],
            },
        }
    }


def write_har(header: CassetteHeader, records: Iterable[Record], out: TextIO) -> None:
    """Write ``json.dumps(cassette_to_har(...), indent=2, ensure_ascii=False)`` in bounded memory.

    `records` is read once (a :class:`~wsreplay.cassette.CassetteReader` will do). Connections
    interleave in a cassette but each is one entry of the HAR: as the records stream by, each
    WebSocket message is written as JSON to a temporary file, chained to its connection's
    earlier ones, and so is each entry's first record; memory holds at most
    :data:`SPILL_BUDGET_BYTES` of messages, and per connection its close and failures.
    """
    origin = round(header.created, 6)
    with _Spill() as spill:
        groups, loose = _group(records, lambda head: _SpilledGroup(spill, head, origin))
        spill.flush()
        before, after = _split_at_empty_list(_indented_json(_har_log(header, [], loose), 0), "entries", 2)
        out.write(before)
        entries = _ListItems(3)
        for group in groups.values():
            out.write(entries.next_separator())
            group.write_entry(out)
        out.write(entries.end() + after)


SPILL_BUDGET_BYTES = 1024 * 1024
"""WebSocket messages kept in memory, as JSON text, before all go to the HAR export's temporary file."""
MESSAGES_KEY = "_webSocketMessages"
ENTRY_LEVEL = 3
"""How deep an entry sits in the HAR document (``log.entries[n]``)."""


@dataclass(eq=False)
class _Chain:
    """Where the first and last chunks of one chain are in a :class:`_Spill` (-1: none yet)."""

    first: int = -1
    last: int = -1


_NEXT_CHUNK = struct.Struct("<q")
_CHUNK_HEAD = struct.Struct("<qQ")
"""A chunk of a spill file starts with the offset of the next chunk in its chain (-1: none), then its size."""


class _Spill:
    """A temporary file of chains of chunks, appended to in any interleaving and read back one
    chain at a time. A chunk is linked to its chain's previous one when it is written, so
    memory holds only where each chain starts and ends.

    Text waiting to be written is held per chain, up to :data:`SPILL_BUDGET_BYTES` for all.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="wsreplay-export-")
        self._fd = self._file.fileno()
        self._size = 0
        self._pending: dict[_Chain, list[str]] = {}
        self._pending_size = 0

    def __enter__(self) -> _Spill:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()

    def add(self, chain: _Chain, text: str) -> None:
        """Append `text` to `chain` (written out later, with what follows it)."""
        self._pending.setdefault(chain, []).append(text)
        self._pending_size += len(text)
        if self._pending_size >= SPILL_BUDGET_BYTES:
            self.flush()

    def write(self, chain: _Chain, data: bytes) -> None:
        """Append `data` to `chain` as one chunk, now."""
        offset = self._size
        _write_all(self._fd, _CHUNK_HEAD.pack(-1, len(data)), offset)
        _write_all(self._fd, data, offset + _CHUNK_HEAD.size)
        if chain.last < 0:
            chain.first = offset
        else:
            _write_all(self._fd, _NEXT_CHUNK.pack(offset), chain.last)
        chain.last = offset
        self._size += _CHUNK_HEAD.size + len(data)

    def flush(self) -> None:
        """Write every chain's waiting text, one chunk each."""
        for chain, texts in self._pending.items():
            self.write(chain, "".join(texts).encode("utf-8"))
        self._pending.clear()
        self._pending_size = 0

    def read(self, chain: _Chain) -> Iterator[bytes]:
        """The chunks of `chain`, in order (after :meth:`flush`)."""
        offset = chain.first
        while offset >= 0:
            next_offset, size = _CHUNK_HEAD.unpack(os.pread(self._fd, _CHUNK_HEAD.size, offset))
            yield os.pread(self._fd, size, offset + _CHUNK_HEAD.size)
            offset = next_offset


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class _SpilledGroup:
    """An exchange or WebSocket connection while a cassette streams by: its first record and
    its messages (as HAR JSON) in a :class:`_Spill`, its close and failures in memory."""

    def __init__(self, spill: _Spill, head: HttpExchange | WebSocketOpen, origin: float) -> None:
        self.spill = spill
        self.origin = origin
        self.head = _Chain()
        spill.write(self.head, msgpack.packb(encode_record(head), use_bin_type=True))
        self.messages = _Chain()
        self.message_items = _ListItems(ENTRY_LEVEL + 2) if isinstance(head, WebSocketOpen) and head.accepted else None
        self.close: WebSocketClose | None = None
        self.failures: list[ConnectionFailure] = []

    def add_frame(self, frame: WebSocketFrame) -> None:
        if self.message_items is not None:  # the entry of an exchange or a refused upgrade has no messages
            message = _indented_json(_har_message(frame, self.origin), ENTRY_LEVEL + 2)
            self.spill.add(self.messages, self.message_items.next_separator() + message)

    def write_entry(self, out: TextIO) -> None:
        """Write the group's HAR entry, as :func:`cassette_to_har` makes it, laid out in the log."""
        head = cast(HttpExchange | WebSocketOpen, decode_record(msgpack.unpackb(b"".join(self.spill.read(self.head)))))
        text = _indented_json(_entry(_Group(head, [], self.close, self.failures), self.origin), ENTRY_LEVEL)
        if self.message_items is None or self.messages.first < 0:
            out.write(text)
            return
        before, after = _split_at_empty_list(text, MESSAGES_KEY, ENTRY_LEVEL + 1)
        out.write(before)
        for chunk in self.spill.read(self.messages):
            out.write(chunk.decode("utf-8"))
        out.write(self.message_items.end() + after)


class _ListItems:
    """What json.dumps (indent 2) writes around the items of a list `level` deep: the
    separator before each item, and the end of the list."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.empty = True

    def next_separator(self) -> str:
        separator = "\n" if self.empty else ",\n"
        self.empty = False
        return separator + "  " * self.level

    def end(self) -> str:
        """The list's ``]``, on a line of its own if the list has items."""
        return "]" if self.empty else "\n" + "  " * (self.level - 1) + "]"


def _split_at_empty_list(document: str, key: str, level: int) -> tuple[str, str]:
    """`document` (json.dumps's indent 2 layout) cut inside the empty list that is member `key`
    of an object `level` deep: up to and including ``[``, and after ``]``."""
    member = f"\n{'  ' * level}{encode_json_string(key)}: ["
    before, found, after = document.partition(member + "]")
    if not found:
        raise ValueError(f"no empty {key!r} list {level} deep")
    return before + member, after


def _float_json(value: float) -> str:
    return float.__repr__(value) if math.isfinite(value) else json.dumps(value)


_SCALAR_JSON: dict[type, Callable[[Any], str]] = {
    str: encode_json_string,
    int: int.__repr__,
    float: _float_json,
    bool: lambda value: "true" if value else "false",
    type(None): lambda _: "null",
}


def _indented_json(value: Any, level: int) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=False)`` as it appears nested `level` deep in
    a bigger document. An object of scalar values (a WebSocket message, a frame) is written
    directly, not by json's pure-Python indenting encoder."""
    if type(value) is dict and value:
        try:
            scalars = tuple([_SCALAR_JSON[type(item)](item) for item in value.values()])
        except KeyError:
            pass  # a value that is not a scalar
        else:
            return _flat_object_layout(tuple(value), level) % scalars
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return text.replace("\n", "\n" + "  " * level) if level else text


@functools.lru_cache(maxsize=64)
def _flat_object_layout(keys: tuple[str, ...], level: int) -> str:
    """A %-format of an object with these keys, `level` deep, whose values are each a JSON scalar's text."""
    inner = "\n" + "  " * (level + 1)
    members = f",{inner}".join(encode_json_string(key).replace("%", "%%") + ": %s" for key in keys)
    return f"{{{inner}{members}\n{'  ' * level}}}"


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _milliseconds(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _entry(group: _Group, origin: float) -> dict[str, Any]:
    head = group.head
    websocket = isinstance(head, WebSocketOpen) and head.accepted
    duration = _milliseconds(head.duration)
    entry: dict[str, Any] = {
        "startedDateTime": iso_time(origin + head.time),
        "time": duration,
        "request": _har_request(head.request, websocket),
        "response": _har_response(head.response) if head.response else _no_response(),
        "cache": {},
        "timings": {"blocked": -1, "dns": -1, "connect": -1, "ssl": -1, "send": 0, "wait": duration, "receive": 0},
    }
    if websocket:
        entry["_resourceType"] = "websocket"
        entry[MESSAGES_KEY] = [_har_message(frame, origin) for frame in group.frames]
    if group.close:
        close = group.close
        entry["_webSocketClose"] = {
            "code": close.code,
            "reason": close.reason,
            "closedBy": close.closed_by,
            "time": origin + close.time,
        }
    if group.failures:
        entry["_failures"] = [{"time": origin + f.time, "message": f.message} for f in group.failures]
        entry["response"]["_error"] = group.failures[0].message
    return entry


def _url(request: HttpRequest, websocket: bool) -> str:
    scheme = WS_SCHEMES.get(request.scheme, request.scheme) if websocket else request.scheme
    host = f"[{request.host}]" if ":" in request.host else request.host
    port = "" if DEFAULT_PORTS.get(request.scheme) == request.port else f":{request.port}"
    return f"{scheme}://{host}{port}{request.target}"


def _name_values(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in pairs]


def _cookie_pairs(headers: Headers, name: str, first_only: bool) -> list[tuple[str, str]]:
    pairs = []
    for key, value in headers:
        if key.lower() != name:
            continue
        parts = value.split(";")[:1] if first_only else value.split(";")
        pairs += [tuple(p.strip().split("=", 1)) for p in parts if "=" in p]
    return pairs  # type: ignore[return-value]


def _har_request(request: HttpRequest, websocket: bool) -> dict[str, Any]:
    har: dict[str, Any] = {
        "method": request.method,
        "url": _url(request, websocket),
        "httpVersion": request.http_version,
        "headers": _name_values(request.headers),
        "queryString": _name_values(parse_qsl(request.query, keep_blank_values=True)),
        "cookies": _name_values(_cookie_pairs(request.headers, "cookie", first_only=False)),
        "headersSize": -1,
        "bodySize": len(request.body),
    }
    if request.body:
        har["postData"] = {"mimeType": request.header("content-type") or ""} | _text_or_base64(
            request.body, "_encoding"
        )
    return har


def _text_or_base64(data: bytes, encoding_field: str) -> dict[str, str]:
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"text": base64.b64encode(data).decode("ascii"), encoding_field: "base64"}


def _decoded_body(response: HttpResponse) -> bytes:
    """The body without its Content-Encoding (HAR content is decoded), or as is if it cannot be."""
    content_encoding = response.header("content-encoding")
    if not content_encoding or not response.body:
        return response.body
    try:
        decoded = encoding.decode(response.body, content_encoding)
    except ValueError:
        return response.body
    return decoded if isinstance(decoded, bytes) else response.body


def _har_response(response: HttpResponse) -> dict[str, Any]:
    decoded = _decoded_body(response)
    content: dict[str, Any] = {"size": len(decoded), "mimeType": response.header("content-type") or ""}
    content |= _text_or_base64(decoded, "encoding")
    if decoded != response.body:
        content["compression"] = len(decoded) - len(response.body)
        content["_wsreplayEncoded"] = base64.b64encode(response.body).decode("ascii")
    return {
        "status": response.status,
        "statusText": response.reason,
        "httpVersion": response.http_version,
        "headers": _name_values(response.headers),
        "cookies": _name_values(_cookie_pairs(response.headers, "set-cookie", first_only=True)),
        "content": content,
        "redirectURL": response.header("location") or "",
        "headersSize": -1,
        "bodySize": len(response.body),
    }


def _no_response() -> dict[str, Any]:
    return {
        "status": 0,
        "statusText": "",
        "httpVersion": "",
        "headers": [],
        "cookies": [],
        "content": {"size": 0, "mimeType": ""},
        "redirectURL": "",
        "headersSize": -1,
        "bodySize": -1,
    }


def _har_message(frame: WebSocketFrame, origin: float) -> dict[str, Any]:
    data = frame.text if frame.is_text else base64.b64encode(frame.payload).decode("ascii")
    return {
        "type": "send" if frame.from_client else "receive",
        "time": origin + frame.time,
        "opcode": OPCODE_TEXT if frame.is_text else OPCODE_BINARY,
        "data": data,
    }


# --- import ---------------------------------------------------------------------


def in_recording_order(records: Iterable[Record]) -> list[Record]:
    """Records in the order a recorder writes them: an exchange or upgrade when its answer ends."""
    return sorted(records, key=lambda r: r.time + r.duration if isinstance(r, HttpExchange | WebSocketOpen) else r.time)


def _get(data: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise HarError(f"{where} has no valid '{key}'")
    return value


def _epoch(text: str, where: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise HarError(f"{where}: startedDateTime {text!r} is not an ISO 8601 date") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def har_to_cassette(har: Any, name: str = "HAR") -> Cassette:
    """A cassette from a HAR log (a browser's, Playwright's, mitmproxy's or wsreplay's own)."""
    log = _get(har, "log", dict, name)
    entries = _get(log, "entries", list, f"{name} log")
    starts = [
        _epoch(_get(entry, "startedDateTime", str, f"{name} entry {n}"), f"{name} entry {n}")
        for n, entry in enumerate(entries, 1)
    ]
    saved = _object(log.get("_wsreplay"))
    if not entries and "header" not in saved:
        raise HarError(f"{name} log has no entries: there is nothing to import")
    header = _header(saved, log, min(starts, default=0.0), name)
    origin = round(header.created, 6)
    records: list[Record] = []
    closes_added = 0
    for number, (entry, start) in enumerate(zip(entries, starts, strict=True), 1):
        made = _entry_records(entry, number, start - origin, origin, f"{name} entry {number}")
        closes_added += not isinstance(entry.get("_webSocketClose"), dict) and any(
            isinstance(record, WebSocketClose) for record in made
        )
        records += made
    records = in_recording_order(records + _loose_records(saved, len(entries)))
    if closes_added:
        end = max(record.time for record in records)
        records.append(Annotation(0, end, {IMPORT_NOTE: missing_closes_note(closes_added)}))
    return Cassette(header, records, path=None)


def missing_closes_note(count: int) -> str:
    """What the HAR lacked and what replay does about it, in one sentence."""
    websockets = "1 WebSocket has" if count == 1 else f"{count} WebSockets have"
    each = "it" if count == 1 else "each"
    return (
        f"{websockets} no close in the HAR; replay closes {each} cleanly (1000, by the server) at the end "
        "of its recorded time, after its last frame"
    )


def import_notes(cassette: Cassette) -> list[str]:
    """The notes an import left in the cassette (what the input lacked and what replay does instead)."""
    return [
        record.data[IMPORT_NOTE]
        for record in cassette.records
        if isinstance(record, Annotation) and isinstance(record.data.get(IMPORT_NOTE), str)
    ]


def _object(value: Any) -> dict[str, Any]:
    """A HAR member that should be an object, or an empty one when it is missing or not an object."""
    return value if isinstance(value, dict) else {}


def _header(saved: dict[str, Any], log: dict[str, Any], first_start: float, name: str) -> CassetteHeader:
    if isinstance(saved.get("header"), dict):
        try:
            return replace(decode_header(saved["header"]), version=FORMAT_VERSION)
        except CassetteError as exc:
            raise HarError(f"{name}: the wsreplay header it carries is invalid: {exc}") from None
    creator = _object(log.get("creator"))
    made_by = " ".join(str(creator[k]) for k in ("name", "version") if k in creator)
    return CassetteHeader(
        created=first_start,
        wsreplay_version=wsreplay.__version__,
        mode="import",
        metadata={"imported_from": "har", "creator": made_by},
    )


def _loose_records(saved: dict[str, Any], last_id: int) -> list[Record]:
    """The annotations and unattached failures a wsreplay HAR keeps in ``log._wsreplay``."""
    where = "the HAR's _wsreplay field"
    records: list[Record] = []
    for item in saved.get("annotations", []):
        time = _get(item, "time", (int, float), where)
        records.append(Annotation(_get(item, "id", int, where), time, _get(item, "data", dict, where)))
    fresh: dict[int, int] = {}
    for item in saved.get("failures", []):
        record_id = fresh.setdefault(_get(item, "id", int, where), last_id + len(fresh) + 1)
        records.append(
            ConnectionFailure(record_id, _get(item, "time", (int, float), where), _get(item, "message", str, where))
        )
    return records


def _is_websocket(entry: dict[str, Any], request: HttpRequest, url: str) -> bool:
    return (
        entry.get("_resourceType") == "websocket"
        or "_webSocketMessages" in entry
        or urlsplit(url).scheme in ("ws", "wss")
        or request.is_websocket_upgrade
    )


def _entry_records(entry: Any, record_id: int, start: float, origin: float, where: str) -> list[Record]:
    har_request = _get(entry, "request", dict, where)
    request = _request(har_request, where)
    response = _response(_get(entry, "response", dict, where), where)
    duration = round(max(0.0, float(entry.get("time") or 0)) / 1000, 6)
    start = round(start, 6)
    records: list[Record] = []
    failures = _failures(entry, record_id, origin, start + duration)
    if response is not None and _is_websocket(entry, request, har_request["url"]):
        frames = _frames(entry, record_id, start + origin, origin, where)
        end = max(frames[-1].time if frames else start, round(start + duration, 6))
        conversation = frames + _close(entry, record_id, origin, end, ended_by_failure=bool(failures))
        wait = min([duration, *(round(record.time - start, 6) for record in conversation)])
        records.append(WebSocketOpen(record_id, start, _as_upgrade(request), response, max(0.0, wait)))
        records += conversation
    else:
        records.append(HttpExchange(record_id, start, request, response, duration))
    return records + failures


def _as_upgrade(request: HttpRequest) -> HttpRequest:
    """The request with the upgrade headers some HAR writers leave out."""
    if request.is_websocket_upgrade:
        return request
    extra = (("Upgrade", "websocket"),) + ((("Connection", "Upgrade"),) if not request.header("connection") else ())
    return replace(request, headers=request.headers + extra)


def _headers(items: Any, where: str) -> Headers:
    if not isinstance(items, list):
        raise HarError(f"{where} has no valid 'headers'")
    pairs = []
    for item in items:
        name, value = _get(item, "name", str, f"{where} header"), _get(item, "value", str, f"{where} header")
        if not name.startswith(":"):
            pairs.append((name, value))
    return tuple(pairs)


def _http_version(text: Any) -> str:
    if not isinstance(text, str) or not text:
        return "HTTP/1.1"
    return HTTP_VERSIONS.get(text.lower(), text)


def _request(har: dict[str, Any], where: str) -> HttpRequest:
    url = _get(har, "url", str, f"{where} request")
    parts = urlsplit(url)
    scheme = HTTP_SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise HarError(f"{where}: request URL {url!r} is not an http, https, ws or wss URL")
    host, port = _host_port(parts.netloc, scheme, where)
    post = _object(har.get("postData"))
    return HttpRequest(
        method=_get(har, "method", str, f"{where} request"),
        scheme=scheme,
        host=host,
        port=port,
        path=parts.path or "/",
        query=parts.query,
        http_version=_http_version(har.get("httpVersion")),
        headers=_headers(har.get("headers", []), f"{where} request"),
        body=_body(post.get("text"), post.get("_encoding") or post.get("encoding")),
    )


def _host_port(netloc: str, scheme: str, where: str) -> tuple[str, int]:
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = hostport.partition(":")
    if port and not port.isdigit():
        raise HarError(f"{where}: request URL has an invalid port {port!r}")
    return host, int(port) if port else DEFAULT_PORTS[scheme]


def _body(text: Any, text_encoding: Any) -> bytes:
    if not isinstance(text, str):
        return b""
    if text_encoding == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except ValueError:
            raise HarError("a body marked base64 is not valid base64") from None
    return text.encode("utf-8")


def _response(har: dict[str, Any], where: str) -> HttpResponse | None:
    status = _get(har, "status", int, f"{where} response")
    if status == 0:
        return None
    content = _object(har.get("content"))
    headers = _headers(har.get("headers", []), f"{where} response")
    if "_wsreplayEncoded" in content:
        body = _body(content["_wsreplayEncoded"], "base64")
    else:
        body = _body(content.get("text"), content.get("encoding"))
        headers = _plain_body_headers(headers, body)
    return HttpResponse(
        status=status,
        reason=status_text if isinstance(status_text := har.get("statusText"), str) else "",
        http_version=_http_version(har.get("httpVersion")),
        headers=headers,
        body=body,
    )


def _plain_body_headers(headers: Headers, body: bytes) -> Headers:
    """Headers for a decoded body: no Content-Encoding, and a Content-Length that fits."""
    if header_value(headers, "content-encoding") is None:
        return headers
    return tuple(
        (name, str(len(body)) if name.lower() == "content-length" else value)
        for name, value in headers
        if name.lower() != "content-encoding"
    )


def _message_clock(times: list[float], start: float) -> tuple[float, float]:
    """(scale, shift) turning the entry's message times into epoch seconds."""
    if not times:
        return 1.0, 0.0
    largest = max(times)
    if largest >= EPOCH_MILLISECONDS:
        return 0.001, 0.0
    if largest >= EPOCH_SECONDS:
        return 1.0, 0.0
    return 1.0, start - min(times)


def _frames(entry: dict[str, Any], record_id: int, start: float, origin: float, where: str) -> list[Record]:
    messages = entry.get("_webSocketMessages") or []
    if not isinstance(messages, list):
        raise HarError(f"{where}: _webSocketMessages is not a list")
    times = [_get(m, "time", (int, float), f"{where} WebSocket message") for m in messages]
    scale, shift = _message_clock(times, start)
    frames: list[Record] = []
    for message, moment in zip(messages, times, strict=True):
        frame = _frame(message, record_id, round(moment * scale + shift - origin, 6), where)
        if frame is not None:
            frames.append(frame)
    return frames


def _frame(message: dict[str, Any], record_id: int, time: float, where: str) -> WebSocketFrame | None:
    direction = message.get("type")
    if direction not in ("send", "receive"):
        raise HarError(f"{where}: a WebSocket message has type {direction!r}, not 'send' or 'receive'")
    opcode = message.get("opcode", OPCODE_TEXT)
    if opcode not in (OPCODE_TEXT, OPCODE_BINARY):
        return None
    data = message.get("data", "")
    if not isinstance(data, str):
        raise HarError(f"{where}: a WebSocket message's data is not a string")
    payload = data.encode("utf-8") if opcode == OPCODE_TEXT else _body(data, "base64")
    return WebSocketFrame(record_id, time, direction == "send", opcode == OPCODE_TEXT, payload)


def _close(entry: dict[str, Any], record_id: int, origin: float, end: float, *, ended_by_failure: bool) -> list[Record]:
    """The close wsreplay keeps in ``_webSocketClose`` (at `end` when it has no time).

    Browsers' and Playwright's HARs record no close at all: an accepted connection that
    did not fail then ends at `end` (its last frame, or the entry's time if later) with a
    clean close by the server, so that a replayed client sees it end rather than wait forever.
    """
    close = entry.get("_webSocketClose")
    if not isinstance(close, dict):
        accepted = entry["response"].get("status") == 101
        return (
            []
            if ended_by_failure or not accepted
            else [WebSocketClose(record_id, end, 1000, ADDED_CLOSE_REASON, "server")]
        )
    closed_by = close.get("closedBy") if close.get("closedBy") in ("client", "server") else None
    code = close.get("code") if isinstance(close.get("code"), int) else None
    moment = close.get("time")
    time = round(moment - origin, 6) if isinstance(moment, (int, float)) else end
    return [WebSocketClose(record_id, time, code, str(close.get("reason") or ""), closed_by)]


def _failures(entry: dict[str, Any], record_id: int, origin: float, end: float) -> list[Record]:
    failures = entry.get("_failures")
    if isinstance(failures, list):
        return [
            ConnectionFailure(
                record_id,
                round(_get(f, "time", (int, float), "a _failures item") - origin, 6),
                _get(f, "message", str, "a _failures item"),
            )
            for f in failures
        ]
    error = entry["response"].get("_error")
    return [ConnectionFailure(record_id, end, error)] if isinstance(error, str) and error else []
