"""Self-contained HTML views of cassettes: ``wsreplay show --html`` and ``wsreplay diff --html``.

The page is one file: inline CSS and JavaScript, and the data as JSON in a
``<script type="application/json">`` element (escaped so that no payload can end
it). The script builds the page with ``textContent`` only, so frame text, bodies and
metadata (all untrusted) are never parsed as HTML. A Content-Security-Policy forbids
every network request.
"""

from __future__ import annotations

import html
import json
import time
from collections import Counter
from collections.abc import Iterable
from importlib import resources
from typing import Any

from wsreplay.age import describe_age, iso_date
from wsreplay.cassette import Cassette, CassetteReader
from wsreplay.compare import (
    Change,
    Connection,
    Diff,
    DiffOptions,
    frame_event,
    frame_label,
    paired_connections,
    paired_exchanges,
)
from wsreplay.records import (
    Annotation,
    CassetteHeader,
    ConnectionFailure,
    HttpExchange,
    HttpRequest,
    Record,
    WebSocketClose,
    WebSocketFrame,
    WebSocketOpen,
    is_utf8,
)

MAX_SHOWN_CHARACTERS = 64 * 1024
"""A payload or body longer than this (pretty-printed) is cut, saying how much is left out."""
HEX_PREVIEW_BYTES = 64
HEX_ROW_BYTES = 16
CLEAN_CLOSE_CODES = frozenset({1000, 1001})
CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


# --- payloads -------------------------------------------------------------------


def hex_dump(data: bytes) -> str:
    """``00000000  00 01 77 73  |..ws|`` rows of 16 bytes, like ``xxd``."""
    rows = []
    for offset in range(0, len(data), HEX_ROW_BYTES):
        chunk = data[offset : offset + HEX_ROW_BYTES]
        printable = "".join(chr(byte) if 32 <= byte < 127 else "." for byte in chunk)
        rows.append(f"{offset:08x}  {chunk.hex(' '):<{HEX_ROW_BYTES * 3 - 1}}  |{printable}|")
    return "\n".join(rows)


def content_view(data: bytes, is_text: bool) -> dict[str, Any]:
    """What the page shows of a payload or body: pretty JSON, text, or a hex preview."""
    if not data:
        return {"format": "empty", "size": 0, "content": "", "omitted": 0}
    if not is_text:
        shown = data[:HEX_PREVIEW_BYTES]
        return {"format": "binary", "size": len(data), "content": hex_dump(shown), "omitted": len(data) - len(shown)}
    text = data.decode("utf-8", errors="replace")
    try:
        shown_text, kind = json.dumps(json.loads(text), indent=2, ensure_ascii=False), "json"
    except (ValueError, RecursionError):
        shown_text, kind = text, "text"
    shown_part = shown_text[:MAX_SHOWN_CHARACTERS]
    return {"format": kind, "size": len(data), "content": shown_part, "omitted": len(shown_text) - len(shown_part)}


def body_view(body: bytes) -> dict[str, Any]:
    return content_view(body, is_utf8(body))


# --- lanes ----------------------------------------------------------------------


def _request_fields(request: HttpRequest) -> dict[str, Any]:
    return {"method": request.method, "host": request.host, "target": request.target}


def http_lane(exchange: HttpExchange) -> dict[str, Any]:
    response = exchange.response
    status = response.status if response else None
    return {
        "kind": "http",
        "id": exchange.id,
        "start": exchange.time,
        "end": exchange.time + exchange.duration,
        "duration": exchange.duration,
        **_request_fields(exchange.request),
        "status": status,
        "reason": response.reason if response else "",
        "failure": status is None or status >= 400,
        "request": body_view(exchange.request.body),
        "response": body_view(response.body) if response else None,
        "events": [],
    }


def websocket_lane(opened: WebSocketOpen) -> dict[str, Any]:
    return {
        "kind": "ws",
        "id": opened.id,
        "start": opened.time,
        "end": opened.time,
        **_request_fields(opened.request),
        "status": opened.response.status,
        "reason": opened.response.reason,
        "accepted": opened.accepted,
        "failure": not opened.accepted,
        "subprotocol": opened.subprotocol,
        "response": None if opened.accepted else body_view(opened.response.body),
        "events": [],
    }


def frame_event_view(frame: WebSocketFrame) -> dict[str, Any]:
    return {
        "type": "frame",
        "time": frame.time,
        "side": frame.side,
        "event": frame_event(frame),
        **content_view(frame.payload, frame.is_text),
    }


def close_view(close: WebSocketClose) -> dict[str, Any]:
    return {
        "type": "close",
        "time": close.time,
        "code": close.code,
        "reason": close.reason,
        "side": close.closed_by,
        "failure": close.code not in CLEAN_CLOSE_CODES,
    }


class ReportBuilder:
    """Gathers records, as they stream from a cassette, into the page's lanes and notes."""

    def __init__(self) -> None:
        self.lanes: dict[int, dict[str, Any]] = {}
        self.notes: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.end = 0.0

    def add(self, record: Record) -> None:
        self.end = max(self.end, record.time + (record.duration if isinstance(record, HttpExchange) else 0.0))
        lane = self.lanes.get(record.id)
        match record:
            case HttpExchange():
                self.lanes[record.id] = http_lane(record)
            case WebSocketOpen():
                self.lanes[record.id] = websocket_lane(record)
            case Annotation():
                self.notes.append({"time": record.time, "data": record.data})
            case ConnectionFailure() if lane is None:
                self.errors.append({"time": record.time, "message": record.message})
            case ConnectionFailure() if lane is not None:
                self._append(lane, {"type": "error", "time": record.time, "message": record.message})
                lane["failure"] = True
            case WebSocketFrame() if lane is not None:
                self._append(lane, frame_event_view(record))
            case WebSocketClose() if lane is not None:
                view = close_view(record)
                self._append(lane, view)
                lane["failure"] = lane["failure"] or view["failure"]

    @staticmethod
    def _append(lane: dict[str, Any], event: dict[str, Any]) -> None:
        lane["events"].append(event)
        lane["end"] = max(lane["end"], event["time"])

    def add_all(self, records: Iterable[Record]) -> ReportBuilder:
        for record in records:
            self.add(record)
        return self

    def data(self) -> dict[str, Any]:
        return {
            "lanes": sorted(self.lanes.values(), key=lambda lane: (lane["start"], lane["id"])),
            "notes": self.notes,
            "errors": self.errors,
            "end": self.end,
        }


def header_view(header: CassetteHeader, name: str, now: float) -> dict[str, Any]:
    return {
        "name": name,
        "recorded_by": f"wsreplay {header.wsreplay_version}",
        "upstream": header.upstream or "-",
        "mode": header.mode,
        "created": iso_date(header.created),
        "age": describe_age(header.created, now),
        "metadata": header.metadata,
    }


# --- pages ----------------------------------------------------------------------


def render_show(reader: CassetteReader, name: str) -> str:
    """The page for one cassette, built while the reader streams its records."""
    data = ReportBuilder().add_all(reader).data()
    data |= {
        "view": "show",
        "cassette": header_view(reader.header, name, time.time()),
        "truncated_at": reader.truncated_at,
    }
    return render_page(data, f"wsreplay · {name}")


def render_diff(before: Cassette, after: Cassette, diff: Diff, options: DiffOptions) -> str:
    """Two cassettes side by side, the changes `diff` reports marked where they are."""
    now = time.time()
    lanes_a = ReportBuilder().add_all(before.records).lanes
    lanes_b = ReportBuilder().add_all(after.records).lanes
    changes: dict[str, list[Change]] = {}
    for change in diff.changes:
        changes.setdefault(change.where, []).append(change)
    pairs = []
    for where, exchange_a, exchange_b in paired_exchanges(before.records, after.records):
        pairs.append(_pair(where, changes.get(where, []), _lane(lanes_a, exchange_a), _lane(lanes_b, exchange_b)))
    for where, connection_a, connection_b in paired_connections(before.records, after.records):
        found = changes.get(where, [])
        lane_a, lane_b = _lane(lanes_a, connection_a), _lane(lanes_b, connection_b)
        _mark_events(found, connection_a, lane_a, connection_b, lane_b, options)
        pairs.append(_pair(where, found, lane_a, lane_b))
    pairs.sort(key=lambda pair: min(lane["start"] for lane in (pair["a"], pair["b"]) if lane is not None))
    data = {
        "view": "diff",
        "a": header_view(before.header, before.path or "A", now),
        "b": header_view(after.header, after.path or "B", now),
        "same": diff.same,
        "changes": [change.as_dict() for change in diff.changes],
        "pairs": pairs,
    }
    return render_page(data, f"wsreplay diff · {before.path or 'A'} → {after.path or 'B'}")


def _lane(lanes: dict[int, dict[str, Any]], item: HttpExchange | Connection | None) -> dict[str, Any] | None:
    if item is None:
        return None
    return lanes[item.open.id if isinstance(item, Connection) else item.id]


def _pair(where: str, changes: list[Change], a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    kinds = {change.kind for change in changes}
    for lane in (a, b):
        if lane is not None:
            lane["marks"] = sorted(kinds & {"status", "upgrade", "body_shape", "timing", "failure", "event_order"})
    return {"where": where, "changes": [change.as_dict() for change in changes], "a": a, "b": b}


def _mark_events(
    changes: list[Change],
    connection_a: Connection | None,
    lane_a: dict[str, Any] | None,
    connection_b: Connection | None,
    lane_b: dict[str, Any] | None,
    options: DiffOptions,
) -> None:
    """Mark the frames a change names (missing in B: marked in A; extra in B: marked in B) and changed closes."""
    for change in changes:
        if change.kind == "missing_events" and connection_a and lane_a:
            _mark_frames(
                connection_a, lane_a, change.detail["side"], Counter(change.detail["events"]), "missing", options
            )
        elif change.kind == "extra_events" and connection_b and lane_b:
            _mark_frames(
                connection_b, lane_b, change.detail["side"], Counter(change.detail["events"]), "extra", options
            )
        elif change.kind == "close":
            for lane in (lane_a, lane_b):
                for event in lane["events"] if lane else []:
                    if event["type"] == "close":
                        event["mark"] = "changed"


def _mark_frames(
    connection: Connection, lane: dict[str, Any], side: str, wanted: Counter[str], mark: str, options: DiffOptions
) -> None:
    """Mark the last frames of `side` carrying the events counted in `wanted` (the ones without a partner)."""
    frame_views = [event for event in lane["events"] if event["type"] == "frame"]
    for frame, view in reversed(list(zip(connection.frames, frame_views, strict=True))):
        label = frame_label(frame, options.key)
        if frame.side == side and wanted[label] > 0:
            wanted[label] -= 1
            view["mark"] = mark


def script_json(data: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` appear literally."""
    text = json.dumps(data, ensure_ascii=True, default=_plain)
    for character, escape in SCRIPT_ESCAPES.items():
        text = text.replace(character, escape)
    return text


def _plain(value: Any) -> Any:
    """Values msgpack metadata may hold that JSON has no type for."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return repr(value)


def render_page(data: dict[str, Any], title: str) -> str:
    assets = resources.files("wsreplay")
    style = assets.joinpath("report.css").read_text(encoding="utf-8")
    script = assets.joinpath("report.js").read_text(encoding="utf-8")
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{style}</style>\n</head>\n<body>\n"
        "<noscript>This report needs JavaScript to draw its timeline.</noscript>\n"
        '<main id="report"></main>\n'
        f'<script type="application/json" id="wsreplay-data">{script_json(data)}</script>\n'
        f"<script>\n{script}</script>\n</body>\n</html>\n"
    )
