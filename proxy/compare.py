"""``wsreplay diff``: what changed between two recordings of the same session.

Connections are paired in order per path, HTTP exchanges in order per method and
path. For each pair the diff names changed event sequences, closes, refused
upgrades, statuses, JSON body shapes and (beyond a threshold) timing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, TypeVar

from wsreplay.records import (
    ConnectionFailure,
    HttpExchange,
    Record,
    WebSocketClose,
    WebSocketFrame,
    WebSocketOpen,
    is_utf8,
)

HEARTBEAT_EVENTS = frozenset({"ping", "pong", "heartbeat", "heartbeat_ack"})
"""Timer-driven frames whose count depends on how long a session ran; ignored by default."""
DEFAULT_THRESHOLD = 1.0
WRAPPER_TYPES = frozenset({"system_message"})

T = TypeVar("T")


# --- event names ----------------------------------------------------------------


def dotted(value: Any, path: str) -> Any:
    """The value at a dotted path such as ``data.event`` (None when absent)."""
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def event_name(message: Any, key: str | None = None) -> str | None:
    """The event a JSON frame carries, in any of the protocol's three shapes.

    ``{"type": X}`` and ``{"type": X, "data": {...}}`` carry X;
    ``{"type": "system_message", "event": X}`` (or with ``data.event``/``payload.event``)
    carries X. With `key`, the value at that dotted path instead.
    """
    if not isinstance(message, dict):
        return None
    if key is not None:
        value = dotted(message, key)
        return None if value is None or isinstance(value, (dict, list)) else str(value)
    if isinstance(message.get("event"), str):
        return message["event"]
    kind = message.get("type")
    if kind in WRAPPER_TYPES:
        for container in ("data", "payload"):
            inner = message.get(container)
            if isinstance(inner, dict) and isinstance(inner.get("event"), str):
                return inner["event"]
    return kind if isinstance(kind, str) else None


def frame_event(frame: WebSocketFrame, key: str | None = None) -> str | None:
    return event_name(frame.json(), key)


def frame_label(frame: WebSocketFrame, key: str | None = None) -> str:
    """The frame's event, or what kind of frame it is when it names none."""
    name = frame_event(frame, key)
    if name is not None:
        return name
    if not frame.is_text:
        return "<binary>"
    return "<text>" if frame.json() is None else "<json>"


# --- grouping -------------------------------------------------------------------


@dataclass
class Connection:
    """One WebSocket connection's records, gathered from a cassette."""

    open: WebSocketOpen
    frames: list[WebSocketFrame] = field(default_factory=list)
    close: WebSocketClose | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.open.request.path

    @property
    def duration(self) -> float | None:
        return None if self.close is None else self.close.time - self.open.time


def connections(records: Iterable[Record]) -> list[Connection]:
    """The WebSocket connections (accepted or refused) in order of their upgrade."""
    found: dict[int, Connection] = {}
    for record in records:
        match record:
            case WebSocketOpen():
                found[record.id] = Connection(record)
            case WebSocketFrame() if record.id in found:
                found[record.id].frames.append(record)
            case WebSocketClose() if record.id in found:
                found[record.id].close = record
            case ConnectionFailure() if record.id in found:
                found[record.id].failures.append(record.message)
    return list(found.values())


def named_connections(records: Iterable[Record]) -> list[tuple[str, Connection]]:
    """Connections with the names the reports use: ``WS /ws``, or ``WS /ws [2]`` when a path repeats."""
    found = connections(records)
    totals = Counter(connection.path for connection in found)
    seen: Counter[str] = Counter()
    named = []
    for connection in found:
        seen[connection.path] += 1
        named.append((where_label(f"WS {connection.path}", seen[connection.path], totals[connection.path]), connection))
    return named


def where_label(name: str, nth: int, count: int) -> str:
    return f"{name} [{nth}]" if count > 1 else name


def exchanges(records: Iterable[Record]) -> list[HttpExchange]:
    return [record for record in records if isinstance(record, HttpExchange)]


def pair_by(
    items_a: Sequence[T], items_b: Sequence[T], key: Callable[[T], str]
) -> list[tuple[str, int, int, T | None, T | None]]:
    """Pair items with equal keys in order: (key, nth, count, a, b), a or b None when unpaired."""
    groups_a: dict[str, list[T]] = {}
    groups_b: dict[str, list[T]] = {}
    for items, groups in ((items_a, groups_a), (items_b, groups_b)):
        for item in items:
            groups.setdefault(key(item), []).append(item)
    pairs = []
    for group_key in dict.fromkeys([*groups_a, *groups_b]):
        left, right = groups_a.get(group_key, []), groups_b.get(group_key, [])
        count = max(len(left), len(right))
        for index in range(count):
            pairs.append(
                (
                    group_key,
                    index + 1,
                    count,
                    left[index] if index < len(left) else None,
                    right[index] if index < len(right) else None,
                )
            )
    return pairs


# --- result ---------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference: where (a connection or exchange), what kind, and a readable line."""

    where: str
    kind: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"where": self.where, "kind": self.kind, "message": self.message, **self.detail}


@dataclass(frozen=True)
class Diff:
    changes: tuple[Change, ...]

    @property
    def same(self) -> bool:
        return not self.changes

    @property
    def exit_status(self) -> int:
        """0 when the recordings are the same, 1 when they differ."""
        return 0 if self.same else 1

    def lines(self) -> list[str]:
        return [change.line() for change in self.changes] or ["no differences"]

    def text(self) -> str:
        return "\n".join(self.lines())

    def as_dict(self) -> dict[str, Any]:
        return {"same": self.same, "changes": [change.as_dict() for change in self.changes]}


@dataclass(frozen=True)
class DiffOptions:
    key: str | None = None
    """Dotted JSON path naming a frame's event; None for the protocol's own shapes."""
    threshold: float | None = DEFAULT_THRESHOLD
    """Seconds a duration or gap may change by before it is reported; None ignores timing."""
    ignore: frozenset[str] = HEARTBEAT_EVENTS


# --- comparing ------------------------------------------------------------------


def paired_exchanges(
    a: Sequence[Record], b: Sequence[Record]
) -> list[tuple[str, HttpExchange | None, HttpExchange | None]]:
    """HTTP exchanges of `a` and `b` paired by method and path, with the name a change reports them by."""
    pairs = pair_by(exchanges(a), exchanges(b), lambda e: f"{e.request.method} {e.request.path}")
    return [(where_label(method_path, nth, count), left, right) for method_path, nth, count, left, right in pairs]


def paired_connections(
    a: Sequence[Record], b: Sequence[Record]
) -> list[tuple[str, Connection | None, Connection | None]]:
    """WebSocket connections of `a` and `b` paired by path, with the name a change reports them by."""
    pairs = pair_by(connections(a), connections(b), lambda c: c.path)
    return [(where_label(f"WS {path}", nth, count), left, right) for path, nth, count, left, right in pairs]


def diff_records(a: Sequence[Record], b: Sequence[Record], options: DiffOptions = DiffOptions()) -> Diff:
    """Everything that changed from recording `a` to recording `b`."""
    changes: list[Change] = []
    for where, left, right in paired_exchanges(a, b):
        if left is None or right is None:
            changes += _unpaired(where, left, right)
        else:
            changes += _exchange_changes(where, left, right, options)
    for where, left_conn, right_conn in paired_connections(a, b):
        if left_conn is None or right_conn is None:
            changes += _unpaired(where, left_conn, right_conn)
        else:
            changes += _connection_changes(where, left_conn, right_conn, options)
    return Diff(tuple(changes))


def _unpaired(where: str, left: object | None, right: object | None) -> list[Change]:
    if right is None:
        return [Change(where, "removed", "present in A, missing in B")]
    if left is None:
        return [Change(where, "added", "new in B")]
    return []


def _exchange_changes(where: str, a: HttpExchange, b: HttpExchange, options: DiffOptions) -> list[Change]:
    changes = []
    status_a = a.response.status if a.response else None
    status_b = b.response.status if b.response else None
    if status_a != status_b:
        changes.append(
            Change(where, "status", f"{_status(status_a)} became {_status(status_b)}", {"a": status_a, "b": status_b})
        )
    changes += _shape_changes(where, "request body", a.request.body, b.request.body)
    if a.response and b.response:
        changes += _shape_changes(where, "response body", a.response.body, b.response.body)
    changes += _timing_change(where, "duration", a.duration, b.duration, options.threshold)
    return changes


def _status(status: int | None) -> str:
    return "no response" if status is None else str(status)


def _connection_changes(where: str, a: Connection, b: Connection, options: DiffOptions) -> list[Change]:
    status_a, status_b = a.open.response.status, b.open.response.status
    if status_a != status_b:
        message = f"upgrade answered {status_a} became {status_b}"
        if a.open.accepted != b.open.accepted:
            message += " (refused)" if a.open.accepted else " (accepted)"
        return [Change(where, "upgrade", message, {"a": status_a, "b": status_b})]
    upgrade_wait = _timing_change(where, "upgrade wait", a.open.duration, b.open.duration, options.threshold)
    if not a.open.accepted:
        return _shape_changes(where, "refusal body", a.open.response.body, b.open.response.body) + upgrade_wait
    changes = []
    for side in ("client", "server"):
        changes += _event_changes(where, side, _events(a, side, options), _events(b, side, options))
    changes += _close_changes(where, a.close, b.close)
    changes += _failure_changes(where, a.failures, b.failures)
    changes += upgrade_wait
    changes += _timing_change(where, "duration", a.duration, b.duration, options.threshold)
    changes += _gap_changes(where, a, b, options)
    return changes


def _events(connection: Connection, side: str, options: DiffOptions) -> list[str]:
    labels = (frame_label(frame, options.key) for frame in connection.frames if frame.side == side)
    return [label for label in labels if label not in options.ignore]


def _event_changes(where: str, side: str, a: list[str], b: list[str]) -> list[Change]:
    if a == b:
        return []
    missing, extra = Counter(a) - Counter(b), Counter(b) - Counter(a)
    changes = []
    if missing:
        changes.append(
            Change(
                where,
                "missing_events",
                f"missing {side} events: {_counted(missing)}",
                {"side": side, "events": dict(missing)},
            )
        )
    if extra:
        changes.append(
            Change(
                where, "extra_events", f"extra {side} events: {_counted(extra)}", {"side": side, "events": dict(extra)}
            )
        )
    if _common(a, Counter(b)) != _common(b, Counter(a)):
        changes.append(
            Change(
                where,
                "event_order",
                f"order of {side} events changed: {_arrow(a)} became {_arrow(b)}",
                {"side": side, "a": a, "b": b},
            )
        )
    return changes


def _counted(counts: Counter[str]) -> str:
    return ", ".join(name if n == 1 else f"{name} x{n}" for name, n in sorted(counts.items()))


def _arrow(events: list[str]) -> str:
    return " > ".join(events) or "(none)"


def _common(events: list[str], other: Counter[str]) -> list[str]:
    """`events` keeping only as many of each as `other` has (the first ones)."""
    budget = Counter(other)
    kept = []
    for name in events:
        if budget[name] > 0:
            budget[name] -= 1
            kept.append(name)
    return kept


def describe_close(close: WebSocketClose | None) -> str:
    """A close in words: ``closed 1008 'Authentication failed' by server``."""
    if close is None:
        return "not closed"
    code = "without a code" if close.code is None else str(close.code)
    reason = f" {close.reason!r}" if close.reason else ""
    return f"closed {code}{reason} by {close.closed_by or 'unknown'}"


def _close_changes(where: str, a: WebSocketClose | None, b: WebSocketClose | None) -> list[Change]:
    if a is None or b is None:
        if a is b:
            return []
        return [
            Change(
                where,
                "close",
                f"{describe_close(a)} became {describe_close(b)}",
                {"a": _close_dict(a), "b": _close_dict(b)},
            )
        ]
    parts = []
    if a.code != b.code:
        parts.append(f"close code {a.code} became {b.code}")
    if a.reason != b.reason:
        parts.append(f"close reason {a.reason!r} became {b.reason!r}")
    if a.closed_by != b.closed_by:
        parts.append(f"closed by {a.closed_by or 'unknown'} became {b.closed_by or 'unknown'}")
    if not parts:
        return []
    return [Change(where, "close", "; ".join(parts), {"a": _close_dict(a), "b": _close_dict(b)})]


def _close_dict(close: WebSocketClose | None) -> dict[str, Any] | None:
    if close is None:
        return None
    return {"code": close.code, "reason": close.reason, "closed_by": close.closed_by}


def _failure_changes(where: str, a: list[str], b: list[str]) -> list[Change]:
    changes = []
    for message in (Counter(a) - Counter(b)).elements():
        changes.append(Change(where, "failure", f"connection error {message!r} is gone"))
    for message in (Counter(b) - Counter(a)).elements():
        changes.append(Change(where, "failure", f"new connection error {message!r}"))
    return changes


# --- JSON shapes ----------------------------------------------------------------


def json_shape(value: Any, prefix: str = "") -> dict[str, set[str]]:
    """Flatten a JSON value to {path: types}: keys and types, never values."""
    shape: dict[str, set[str]] = {}
    if isinstance(value, dict):
        shape.setdefault(prefix or ".", set()).add("object")
        for key, item in value.items():
            for path, types in json_shape(item, f"{prefix}.{key}" if prefix else key).items():
                shape.setdefault(path, set()).update(types)
    elif isinstance(value, list):
        shape.setdefault(prefix or ".", set()).add("array")
        for item in value:
            for path, types in json_shape(item, f"{prefix}[]").items():
                shape.setdefault(path, set()).update(types)
    else:
        shape[prefix or "."] = {_json_type(value)}
    return shape


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


def body_shape(body: bytes) -> dict[str, set[str]] | str:
    """A body's JSON shape, or what it is when it is not JSON."""
    if not body:
        return "empty"
    try:
        return json_shape(json.loads(body))
    except (ValueError, UnicodeDecodeError):
        return "text" if is_utf8(body) else "binary"


def _shape_changes(where: str, what: str, a: bytes, b: bytes) -> list[Change]:
    shape_a, shape_b = body_shape(a), body_shape(b)
    if shape_a == shape_b:
        return []
    if isinstance(shape_a, str) or isinstance(shape_b, str):
        kind_a = shape_a if isinstance(shape_a, str) else "JSON"
        kind_b = shape_b if isinstance(shape_b, str) else "JSON"
        return [Change(where, "body_shape", f"{what} {kind_a} became {kind_b}", {"body": what})]
    removed = _outermost(shape_a.keys() - shape_b.keys())
    added = _outermost(shape_b.keys() - shape_a.keys())
    retyped = sorted(path for path in shape_a.keys() & shape_b.keys() if shape_a[path] != shape_b[path])
    parts = [f"without {', '.join(removed)}"] if removed else []
    parts += [f"with new {', '.join(added)}"] if added else []
    parts += [f"{path} {_types(shape_a[path])} became {_types(shape_b[path])}" for path in retyped]
    detail = {"body": what, "removed": removed, "added": added, "retyped": retyped}
    return [Change(where, "body_shape", f"{what} shape changed: {'; '.join(parts)}", detail)]


def _outermost(paths: set[str]) -> list[str]:
    """The paths not inside another of them (``user`` stands for ``user.id`` too)."""
    return sorted(
        path
        for path in paths
        if not any(path.startswith(other + ".") or path.startswith(other + "[]") for other in paths)
    )


def _types(types: set[str]) -> str:
    return "|".join(sorted(types))


# --- timing ---------------------------------------------------------------------


def _timing_change(where: str, what: str, a: float | None, b: float | None, threshold: float | None) -> list[Change]:
    if threshold is None or a is None or b is None or abs(a - b) <= threshold:
        return []
    return [Change(where, "timing", f"{what} {a:.3f}s became {b:.3f}s", {"what": what, "a": a, "b": b})]


def _gap_changes(where: str, a: Connection, b: Connection, options: DiffOptions) -> list[Change]:
    """The largest change in the pause before a frame, when both carry the same frames."""
    if options.threshold is None or len(a.frames) != len(b.frames):
        return []
    labels = [frame_label(frame, options.key) for frame in a.frames]
    if labels != [frame_label(frame, options.key) for frame in b.frames]:
        return []
    gaps_a, gaps_b = _gaps(a), _gaps(b)
    worst = max(range(len(labels)), key=lambda i: abs(gaps_a[i] - gaps_b[i]), default=None)
    if worst is None:
        return []
    return _timing_change(
        where, f"gap before {labels[worst]} (frame {worst + 1})", gaps_a[worst], gaps_b[worst], options.threshold
    )


def _gaps(connection: Connection) -> list[float]:
    times = [connection.open.answered_at, *(frame.time for frame in connection.frames)]
    return [later - earlier for earlier, later in pairwise(times)]
