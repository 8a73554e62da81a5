"""``wsreplay diff``: what changed between two recordings of the same session.

Connections are paired in order per path, HTTP exchanges in order per method and
path. For each pair the diff names changed event sequences, closes, refused
upgrades, statuses, JSON body shapes and (beyond a threshold) timing.

Both recordings are read once, side by side, in memory bounded by what the diff must
remember: each connection's event sequence run-length encoded, and the frames one
recording has had and the other not yet (a label run and 8 bytes each), never payloads.
"""

from __future__ import annotations

import json
import math
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import sub
from typing import Any, TypeAlias, TypeVar

from wsreplay.records import (
    ConnectionFailure,
    HttpExchange,
    HttpRequest,
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
JSON_WHITESPACE = " \t\n\r"

T = TypeVar("T")


# --- event names ----------------------------------------------------------------

_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
"""The scanner ``json.loads`` ends in (C): one JSON value from a position in a string."""


def payload_json(payload: bytes) -> Any:
    """``json.loads(payload)``, or None when the payload is not JSON (as ``WebSocketFrame.json``).

    A payload starting with ``{`` and a non-zero byte is UTF-8 to ``json.loads`` too; it
    goes straight to the scanner ``json.loads`` ends in, whose answer (trailing JSON
    whitespace allowed) is then the same, without the steps around it that cost as much
    as scanning a small object.
    """
    if payload[:1] == b"{" and payload[1:2] != b"\0":
        try:
            text = payload.decode("utf-8", "surrogatepass")
            value, end = _scan_json(text, 0)
        except (ValueError, StopIteration, RecursionError):
            return None
        return value if end == len(text) or not text[end:].strip(JSON_WHITESPACE) else None
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


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
    event = message.get("event")
    if isinstance(event, str):
        return event
    kind = message.get("type")
    if not isinstance(kind, str):
        return None
    if kind in WRAPPER_TYPES:
        for container in ("data", "payload"):
            inner = message.get(container)
            if isinstance(inner, dict) and isinstance(inner.get("event"), str):
                return inner["event"]
    return kind


def payload_event(payload: bytes, key: str | None = None) -> str | None:
    """``event_name(payload_json(payload), key)``, with the usual payload (UTF-8 JSON, no
    whitespace before it, an object whose ``event`` or ``type`` is a string) taken without the
    steps in between: a command that reads every frame spends most of its time here.

    Text that is not JSON, or JSON in UTF-16 or UTF-32 (whose bytes never scan as UTF-8
    JSON: their ASCII characters come with zero bytes), takes the long way.
    """
    if key is None:
        try:
            text = payload.decode("utf-8", "surrogatepass")
            message, end = _scan_json(text, 0)
        except (ValueError, StopIteration, RecursionError):
            return event_name(payload_json(payload))
        if end != len(text) and text[end:].strip(JSON_WHITESPACE):
            return None
        if type(message) is dict:
            event = message.get("event")
            if type(event) is str:
                return event
            kind = message.get("type")
            if type(kind) is str and kind not in WRAPPER_TYPES:
                return kind
        return event_name(message)
    return event_name(payload_json(payload), key)


def frame_event(frame: WebSocketFrame, key: str | None = None) -> str | None:
    return payload_event(frame.payload, key) if frame.is_text else None


def frame_label(frame: WebSocketFrame, key: str | None = None) -> str:
    """The frame's event, or what kind of frame it is when it names none."""
    if not frame.is_text:
        return "<binary>"
    message = payload_json(frame.payload)
    name = event_name(message, key)
    if name is not None:
        return name
    return "<text>" if message is None else "<json>"


class EventRuns:
    """A sequence of event names, run-length encoded: a turn's 100,000 ``agent_thinking`` are one run.

    A run takes 16 bytes (its name is interned, so runs of the same event share one string).
    """

    __slots__ = ("names", "counts")

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names: list[str] = []
        """Each run's name; two neighbours never have the same."""
        self.counts = array("q")
        """Each run's length."""
        for name in names:
            self.add(name)

    def add(self, name: str, count: int = 1) -> None:
        names = self.names
        if names and names[-1] == name:
            self.counts[-1] += count
        elif count:
            names.append(sys.intern(name))
            self.counts.append(count)

    def runs(self) -> Iterator[tuple[str, int]]:
        """``(name, count)`` for each run."""
        return zip(self.names, self.counts, strict=True)

    def __iter__(self) -> Iterator[str]:
        return chain.from_iterable(map(repeat, self.names, self.counts))

    def __len__(self) -> int:
        return sum(self.counts)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventRuns):
            return self.names == other.names and self.counts == other.counts
        return NotImplemented

    def __repr__(self) -> str:
        return f"EventRuns({list(self)!r})"

    def key(self) -> tuple[tuple[str, ...], bytes]:
        """A hashable value equal for equal sequences."""
        return tuple(self.names), self.counts.tobytes()

    def counted(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for name, count in self.runs():
            counts[name] += count
        return counts

    def only(self, keep: Callable[[str], bool]) -> EventRuns:
        """The names `keep` accepts, in order."""
        kept = EventRuns()
        for name, count in self.runs():
            if keep(name):
                kept.add(name, count)
        return kept

    def take(self, count: int) -> EventRuns:
        """Remove the first `count` names, and return them."""
        taken = EventRuns()
        whole = 0
        for name, length in self.runs():
            if length > count:
                if count:
                    taken.add(name, count)
                    self.counts[whole] -= count
                break
            taken.add(name, length)
            count -= length
            whole += 1
        del self.names[:whole], self.counts[:whole]
        return taken

    def at(self, index: int) -> str:
        """The name at `index`."""
        for name, count in self.runs():
            if index < count:
                return name
            index -= count
        raise IndexError(index)

    def firsts(self, budget: Counter[str]) -> EventRuns:
        """The names keeping only as many of each as `budget` has (the first ones)."""
        left = Counter(budget)
        kept = EventRuns()
        for name, count in self.runs():
            taken = min(count, left[name])
            left[name] -= taken
            kept.add(name, taken)
        return kept


# --- grouping -------------------------------------------------------------------


@dataclass(eq=False)
class ConnectionSummary:
    """A WebSocket connection as one pass over a cassette keeps it: its upgrade, close and errors."""

    open: WebSocketOpen
    close: WebSocketClose | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.open.request.path

    @property
    def duration(self) -> float | None:
        return None if self.close is None else self.close.time - self.open.time


@dataclass
class Connection(ConnectionSummary):
    """One WebSocket connection's records, gathered from a cassette."""

    frames: list[WebSocketFrame] = field(default_factory=list)


C = TypeVar("C", bound=ConnectionSummary)


def connection_frames(
    records: Iterable[Record],
    found: dict[int, C],
    new: Callable[[WebSocketOpen], C],
    exchange: Callable[[HttpExchange], object] | None = None,
) -> Iterator[tuple[C, WebSocketFrame]]:
    """Each frame of a WebSocket connection, with the connection, in one pass over `records`.

    `found` gathers the connections (accepted or refused) in order of their upgrade, each
    made by `new` and given its close and errors as they come; `exchange` is called
    with each HTTP exchange.
    """
    for record in records:
        if isinstance(record, WebSocketFrame):
            connection = found.get(record.id)
            if connection is not None:
                yield connection, record
        else:
            follow_connections(record, found, new, exchange)


def follow_connections(
    record: Record,
    found: dict[int, C],
    new: Callable[[WebSocketOpen], C],
    exchange: Callable[[HttpExchange], object] | None = None,
) -> None:
    """What :func:`connection_frames` does with a record that is not a frame: add a connection
    to `found`, give one its close or error, or pass an HTTP exchange to `exchange`."""
    if isinstance(record, WebSocketOpen):
        found[record.id] = new(record)
    elif isinstance(record, WebSocketClose):
        if record.id in found:
            found[record.id].close = record
    elif isinstance(record, ConnectionFailure):
        if record.id in found:
            found[record.id].failures.append(record.message)
    elif isinstance(record, HttpExchange) and exchange is not None:
        exchange(record)


def connections(records: Iterable[Record]) -> list[Connection]:
    """The WebSocket connections (accepted or refused) with all their frames, in order of their upgrade."""
    found: dict[int, Connection] = {}
    for connection, frame in connection_frames(records, found, Connection):
        connection.frames.append(frame)
    return list(found.values())


def named(found: Sequence[C]) -> list[tuple[str, C]]:
    """Connections with the names the reports use: ``WS /ws``, or ``WS /ws [2]`` when a path repeats."""
    totals = Counter(connection.path for connection in found)
    seen: Counter[str] = Counter()
    names = []
    for connection in found:
        seen[connection.path] += 1
        names.append(
            (where_label(connection_name(connection), seen[connection.path], totals[connection.path]), connection)
        )
    return names


def where_label(name: str, nth: int, count: int) -> str:
    return f"{name} [{nth}]" if count > 1 else name


def exchanges(records: Iterable[Record]) -> list[HttpExchange]:
    return [record for record in records if isinstance(record, HttpExchange)]


def exchange_name(request: HttpRequest) -> str:
    """How a change names an exchange and how exchanges pair: ``POST /auth``."""
    return f"{request.method} {request.path}"


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


def paired(a: Sequence[T], b: Sequence[T], key: Callable[[T], str]) -> list[tuple[str, T | None, T | None]]:
    """Items of `a` and `b` paired by `key` in order, with the name a change reports them by."""
    return [(where_label(name, nth, count), left, right) for name, nth, count, left, right in pair_by(a, b, key)]


def paired_exchanges(
    a: Iterable[Record], b: Iterable[Record]
) -> list[tuple[str, HttpExchange | None, HttpExchange | None]]:
    """HTTP exchanges of `a` and `b` paired by method and path."""
    return paired(exchanges(a), exchanges(b), lambda exchange: exchange_name(exchange.request))


def paired_connections(
    a: Iterable[Record], b: Iterable[Record]
) -> list[tuple[str, Connection | None, Connection | None]]:
    """WebSocket connections of `a` and `b` paired by path, with all their frames."""
    return paired(connections(a), connections(b), connection_name)


def connection_name(connection: ConnectionSummary) -> str:
    """How a change names a connection, and what pairs connections: ``WS /ws``."""
    return f"WS {connection.path}"


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


# --- reading both recordings --------------------------------------------------

MERGE_WINDOW = 0.01
"""Seconds of recording one cassette is read past the other before the other's turn."""
MERGE_BATCH = 1024
"""Frames one cassette is read at most before the other's turn."""


@dataclass(frozen=True)
class ExchangeSummary:
    """What diff keeps of an HTTP exchange: its status, duration and the JSON shapes of its bodies."""

    name: str
    status: int | None
    request_shape: Shape
    response_shape: Shape | None
    duration: float

    @classmethod
    def of(cls, exchange: HttpExchange) -> ExchangeSummary:
        response = exchange.response
        return cls(
            exchange_name(exchange.request),
            None if response is None else response.status,
            body_shape(exchange.request.body),
            None if response is None else body_shape(response.body),
            exchange.duration,
        )


@dataclass(eq=False)
class ConnectionEvents(ConnectionSummary):
    """What diff keeps of a connection: its events on each side, run-length encoded, and
    the frames its partner has not had yet (their labels, and the pause before each)."""

    client: EventRuns = field(default_factory=EventRuns)
    server: EventRuns = field(default_factory=EventRuns)
    gaps: FrameGaps | None = None
    waiting_labels: EventRuns = field(default_factory=EventRuns)
    waiting_gaps: array[float] = field(default_factory=lambda: array("d"))
    last_time: float = 0.0
    """When the previous frame came (the end of the upgrade before the first)."""


class FrameGaps:
    """Compares the pauses before the frames of two paired connections while both cassettes are read.

    The frames one connection has had and its partner not yet wait on it; those both have
    had are compared in bulk. The comparison stops for good at the first frames whose
    labels differ.
    """

    def __init__(self, comparing: bool = True) -> None:
        self.comparing = comparing
        self.members: list[ConnectionEvents | None] = [None, None]
        self.compared = 0
        self.worst: tuple[float, int, str, float, float] | None = None
        """The largest change so far: (change, frame index, label, gap in A, gap in B)."""

    def compare(self) -> None:
        """Compare the frames both connections have had."""
        a, b = self.members
        if not self.comparing or a is None or b is None:
            return
        count = min(len(a.waiting_gaps), len(b.waiting_gaps))
        if not count:
            return
        labels = a.waiting_labels.take(count)
        if labels != b.waiting_labels.take(count):
            self.stop()
            return
        gaps_a, gaps_b = a.waiting_gaps[:count], b.waiting_gaps[:count]
        del a.waiting_gaps[:count], b.waiting_gaps[:count]
        changes = list(map(abs, map(sub, gaps_a, gaps_b)))
        largest = max(changes)
        if self.worst is None or largest > self.worst[0]:
            index = changes.index(largest)
            self.worst = (largest, self.compared + index, labels.at(index), gaps_a[index], gaps_b[index])
        self.compared += count

    def stop(self) -> None:
        self.comparing = False
        for member in self.members:
            if member is not None:
                member.waiting_labels, member.waiting_gaps = EventRuns(), array("d")

    @property
    def same_frames(self) -> bool:
        """Both connections had the same frames, by label, and as many."""
        a, b = self.members
        return self.comparing and a is not None and b is not None and not a.waiting_gaps and not b.waiting_gaps


class GapPairs:
    """The gap comparisons of the two recordings' connections, by path and rank on that path."""

    def __init__(self) -> None:
        self.by_rank: dict[tuple[str, int], FrameGaps] = {}
        self.ended = [False, False]

    def join(self, side: int, connection: ConnectionEvents, nth: int) -> FrameGaps:
        """The comparison for `connection`, `side`'s `nth` on its path."""
        gaps = self.by_rank.get((connection.path, nth))
        if gaps is None:
            gaps = self.by_rank[connection.path, nth] = FrameGaps(comparing=not self.ended[1 - side])
        gaps.members[side] = connection
        return gaps

    def end(self, side: int) -> None:
        """`side` has no more records: the connections it lacks will never have a partner."""
        self.ended[side] = True
        for gaps in self.by_rank.values():
            if gaps.members[side] is None:
                gaps.stop()


class Recording:
    """One of the two recordings as diff reads it, a batch of frames at a time: its exchanges
    and connections, summarized."""

    def __init__(self, side: int, records: Iterable[Record], options: DiffOptions, gap_pairs: GapPairs | None) -> None:
        self.side = side
        self.exchanges: list[ExchangeSummary] = []
        self.connections: dict[int, ConnectionEvents] = {}
        self.clock = -math.inf
        """The time of the last frame read."""
        self.ended = False
        self._frames = connection_frames(records, self.connections, self._new_connection, self._add_exchange)
        self._options = options
        self._gap_pairs = gap_pairs
        self._paths: Counter[str] = Counter()

    def read(self, until: float) -> None:
        """Read frames until one comes after `until`, or a batch is read, or the records end;
        then compare the gaps of the connections that had frames."""
        key, ignore = self._options.key, self._options.ignore
        timing = self._gap_pairs is not None
        touched: set[FrameGaps] = set()
        count = 0
        for connection, frame in self._frames:
            label = frame_label(frame, key)
            if label not in ignore:
                (connection.client if frame.from_client else connection.server).add(label)
            gaps = connection.gaps
            if timing and gaps is not None and gaps.comparing:
                connection.waiting_labels.add(label)
                connection.waiting_gaps.append(frame.time - connection.last_time)
                connection.last_time = frame.time
                touched.add(gaps)
            count += 1
            if frame.time > until or count == MERGE_BATCH:
                self.clock = frame.time
                break
        else:
            self.ended = True
            if self._gap_pairs is not None:
                self._gap_pairs.end(self.side)
        for gaps in touched:
            gaps.compare()

    def _add_exchange(self, exchange: HttpExchange) -> None:
        self.exchanges.append(ExchangeSummary.of(exchange))

    def _new_connection(self, record: WebSocketOpen) -> ConnectionEvents:
        connection = ConnectionEvents(record, last_time=record.answered_at)
        if self._gap_pairs is not None:
            self._paths[connection.path] += 1
            connection.gaps = self._gap_pairs.join(self.side, connection, self._paths[connection.path])
        return connection


def diff_records(a: Iterable[Record], b: Iterable[Record], options: DiffOptions = DiffOptions()) -> Diff:
    """Everything that changed from recording `a` to recording `b`.

    Each is read once, side by side: the one behind in recorded time is read next (in
    turns when level), so that the frames two recordings of a session share meet soon.
    """
    gap_pairs = None if options.threshold is None else GapPairs()
    recording_a, recording_b = Recording(0, a, options, gap_pairs), Recording(1, b, options, gap_pairs)
    current, other = recording_a, recording_b
    while not (current.ended and other.ended):
        if not current.ended and (other.ended or current.clock <= other.clock):
            current.read(math.inf if other.ended else other.clock + MERGE_WINDOW)
        current, other = other, current
    for gaps in gap_pairs.by_rank.values() if gap_pairs is not None else ():
        gaps.compare()
    changes: list[Change] = []
    for where, left, right in paired(recording_a.exchanges, recording_b.exchanges, lambda e: e.name):
        if left is None or right is None:
            changes += _unpaired(where, left, right)
        else:
            changes += _exchange_changes(where, left, right, options)
    connections_a, connections_b = list(recording_a.connections.values()), list(recording_b.connections.values())
    for where, left_conn, right_conn in paired(connections_a, connections_b, connection_name):
        if left_conn is None or right_conn is None:
            changes += _unpaired(where, left_conn, right_conn)
        else:
            changes += _connection_changes(where, left_conn, right_conn, options)
    return Diff(tuple(changes))


# --- comparing ------------------------------------------------------------------


def _unpaired(where: str, left: object | None, right: object | None) -> list[Change]:
    if right is None:
        return [Change(where, "removed", "present in A, missing in B")]
    if left is None:
        return [Change(where, "added", "new in B")]
    return []


def _exchange_changes(where: str, a: ExchangeSummary, b: ExchangeSummary, options: DiffOptions) -> list[Change]:
    changes = []
    if a.status != b.status:
        changes.append(
            Change(where, "status", f"{_status(a.status)} became {_status(b.status)}", {"a": a.status, "b": b.status})
        )
    changes += _shape_changes(where, "request body", a.request_shape, b.request_shape)
    if a.response_shape is not None and b.response_shape is not None:
        changes += _shape_changes(where, "response body", a.response_shape, b.response_shape)
    changes += _timing_change(where, "duration", a.duration, b.duration, options.threshold)
    return changes


def _status(status: int | None) -> str:
    return "no response" if status is None else str(status)


def _connection_changes(where: str, a: ConnectionEvents, b: ConnectionEvents, options: DiffOptions) -> list[Change]:
    status_a, status_b = a.open.response.status, b.open.response.status
    if status_a != status_b:
        message = f"upgrade answered {status_a} became {status_b}"
        if a.open.accepted != b.open.accepted:
            message += " (refused)" if a.open.accepted else " (accepted)"
        return [Change(where, "upgrade", message, {"a": status_a, "b": status_b})]
    upgrade_wait = _timing_change(where, "upgrade wait", a.open.duration, b.open.duration, options.threshold)
    if not a.open.accepted:
        shape_a, shape_b = body_shape(a.open.response.body), body_shape(b.open.response.body)
        return _shape_changes(where, "refusal body", shape_a, shape_b) + upgrade_wait
    changes = _event_changes(where, "client", a.client, b.client)
    changes += _event_changes(where, "server", a.server, b.server)
    changes += _close_changes(where, a.close, b.close)
    changes += _failure_changes(where, a.failures, b.failures)
    changes += upgrade_wait
    changes += _timing_change(where, "duration", a.duration, b.duration, options.threshold)
    changes += _gap_changes(where, a, b, options.threshold)
    return changes


def _event_changes(where: str, side: str, a: EventRuns, b: EventRuns) -> list[Change]:
    if a == b:
        return []
    counts_a, counts_b = a.counted(), b.counted()
    missing, extra = counts_a - counts_b, counts_b - counts_a
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
    if a.firsts(counts_b) != b.firsts(counts_a):
        changes.append(
            Change(
                where,
                "event_order",
                f"order of {side} events changed: {_arrow(a)} became {_arrow(b)}",
                {"side": side, "a": list(a), "b": list(b)},
            )
        )
    return changes


def _counted(counts: Counter[str]) -> str:
    return ", ".join(name if n == 1 else f"{name} x{n}" for name, n in sorted(counts.items()))


def _arrow(events: EventRuns) -> str:
    return " > ".join(events) or "(none)"


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


Shape: TypeAlias = dict[str, set[str]] | str
"""A body's JSON shape, or what the body is when it is not JSON (``empty``, ``text``, ``binary``)."""


def body_shape(body: bytes) -> Shape:
    """A body's JSON shape, or what it is when it is not JSON."""
    if not body:
        return "empty"
    try:
        return json_shape(json.loads(body))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "text" if is_utf8(body) else "binary"


def _shape_changes(where: str, what: str, shape_a: Shape, shape_b: Shape) -> list[Change]:
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


def _gap_changes(where: str, a: ConnectionEvents, b: ConnectionEvents, threshold: float | None) -> list[Change]:
    """The largest change in the pause before a frame, when both carry the same frames."""
    gaps = a.gaps
    if gaps is None or gaps is not b.gaps or not gaps.same_frames or gaps.worst is None:
        return []
    _, index, label, gap_a, gap_b = gaps.worst
    return _timing_change(where, f"gap before {label} (frame {index + 1})", gap_a, gap_b, threshold)
