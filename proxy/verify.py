"""``wsreplay verify``: does every chat turn deliver the expected agent events, in order?

A turn starts at a client chat frame (``message``, ``user_message``, ``start_agent``)
and covers the server frames until the next one. Only server events named in the
expectation count; heartbeats, acks and system messages are ignored.

The cassette is read once; a turn's events are kept run-length encoded, so memory stays
flat however many tokens a turn streams.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from wsreplay.cassette import FLAG_FROM_CLIENT, FLAG_TEXT, FrameFields
from wsreplay.compare import (
    HEARTBEAT_EVENTS,
    ConnectionSummary,
    EventRuns,
    describe_close,
    follow_connections,
    named,
    payload_event,
)
from wsreplay.records import Record, WebSocketFrame

CHAT_TYPES = frozenset({"message", "user_message", "start_agent"})
DEFAULT_EXPECTATION = "agent_started,agent_thinking+,tool_executing,tool_completed,agent_completed"
NOT_AGENT_EVENTS = HEARTBEAT_EVENTS | {"ack", "connection_established"}
_STEP = re.compile(r"^([A-Za-z0-9_.:/-]+)([+?*]?)$")


class ExpectationError(ValueError):
    """An expectation that cannot be parsed; the message is one sentence for the user."""


@dataclass(frozen=True)
class Step:
    """One expected event: `optional` allows none, `many` allows repeats."""

    name: str
    optional: bool = False
    many: bool = False

    def __str__(self) -> str:
        suffix = {(False, False): "", (False, True): "+", (True, False): "?", (True, True): "*"}
        return self.name + suffix[(self.optional, self.many)]


def parse_expectation(text: str) -> tuple[Step, ...]:
    """Parse ``a,b+,c?,d*`` (``+`` one or more, ``?`` optional, ``*`` zero or more)."""
    steps = []
    for token in (part.strip() for part in text.split(",")):
        match = _STEP.match(token)
        if match is None:
            raise ExpectationError(
                f"{token!r} in the expectation is not an event name optionally followed by +, ? or *"
            )
        name, quantifier = match.groups()
        steps.append(Step(name, optional=quantifier in ("?", "*"), many=quantifier in ("+", "*")))
    return tuple(steps)


# --- matching -------------------------------------------------------------------


def _atoms(steps: Sequence[Step]) -> list[Step]:
    """Steps where ``x+`` is spelled ``x, x*``, so each atom is once, optional or starred."""
    atoms = []
    for step in steps:
        if step.many and not step.optional:
            atoms += [Step(step.name), Step(step.name, optional=True, many=True)]
        else:
            atoms.append(step)
    return atoms


def _closure(atoms: list[Step], states: set[int]) -> set[int]:
    result, pending = set(states), list(states)
    while pending:
        index = pending.pop()
        if index < len(atoms) and atoms[index].optional and index + 1 not in result:
            result.add(index + 1)
            pending.append(index + 1)
    return result


def _advance(atoms: list[Step], states: set[int], event: str) -> set[int]:
    moved = {i if atoms[i].many else i + 1 for i in states if i < len(atoms) and atoms[i].name == event}
    return _closure(atoms, moved)


def _expected_next(atoms: list[Step], states: set[int]) -> str:
    names = sorted({atoms[i].name for i in states if i < len(atoms)})
    return " or ".join(names)


def missing_events(steps: Sequence[Step], events: Sequence[str] | EventRuns) -> set[str]:
    return {step.name for step in steps if not step.optional and step.name not in events}


def match_problem(steps: Sequence[Step], events: Sequence[str] | EventRuns) -> str | None:
    """Why `events` do not follow `steps`, in the staging report's words; None when they do."""
    missing = missing_events(steps, events)
    if missing:
        return f"Missing critical events: {format_set(missing)}"
    runs = events if isinstance(events, EventRuns) else EventRuns(events)
    atoms = _atoms(steps)
    states = _closure(atoms, {0})
    for event, count in runs.runs():
        for _ in range(count):
            following = _advance(atoms, states, event)
            if not following:
                expected = _expected_next(atoms, states)
                if not expected:
                    return f"Unexpected extra event {event!r} after the expected events"
                return f"Events out of order: {event!r} arrived where {expected} was expected"
            if following == states:
                break  # the rest of the run leaves the states as they are
            states = following
    if len(atoms) not in states:
        return f"Turn ended before {_expected_next(atoms, states)}"
    return None


def format_set(names: Iterable[str]) -> str:
    """A set of names as Python prints it (sorted, so the output is stable)."""
    return "{" + ", ".join(repr(name) for name in sorted(names)) + "}"


# --- turns ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnResult:
    where: str
    turn: int
    request: str
    events: EventRuns
    """The expected events the turn received, in order."""
    others: tuple[str, ...]
    missing: tuple[str, ...]
    problem: str | None
    close: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        received = " > ".join(self.events) or "none of the expected events"
        head = f"{self.where} turn {self.turn} ({self.request})"
        if self.ok:
            return f"{head}: ok: {received}"
        context = [f"received {received}"]
        if self.others:
            context.append(f"also {', '.join(self.others)}")
        if self.close:
            context.append(self.close)
        return f"{head}: FAIL: {self.problem} ({'; '.join(context)})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "turn": self.turn,
            "request": self.request,
            "ok": self.ok,
            "problem": self.problem,
            "missing": list(self.missing),
            "events": list(self.events),
            "other_events": list(self.others),
            "close": self.close,
        }


@dataclass(frozen=True)
class Verification:
    expectation: tuple[Step, ...]
    turns: tuple[TurnResult, ...]
    skipped: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return bool(self.turns) and all(turn.ok for turn in self.turns)

    @property
    def exit_status(self) -> int:
        """0 when every chat turn passed, 1 otherwise."""
        return 0 if self.passed else 1

    def summary(self) -> str:
        expected = ", ".join(str(step) for step in self.expectation)
        if not self.turns:
            return f"FAIL: no chat turn in any WebSocket connection, so nothing delivered {expected}"
        failed = sum(not turn.ok for turn in self.turns)
        if failed:
            return f"FAIL: {failed} of {len(self.turns)} chat turns did not deliver {expected}"
        return f"PASS: all {len(self.turns)} chat turns delivered {expected}"

    def lines(self) -> list[str]:
        return list(self.each_line())

    def each_line(self) -> Iterator[str]:
        """The lines of :meth:`text`, made one at a time (a turn of many events makes a long one)."""
        for turn in self.turns:
            yield turn.line()
        yield from self.skipped
        yield self.summary()

    def text(self) -> str:
        return "\n".join(self.lines())

    def as_dict(self) -> dict[str, Any]:
        return self._fields([turn.as_dict() for turn in self.turns])

    def json_chunks(self) -> Iterator[str]:
        """``json.dumps(self.as_dict(), indent=2)`` in pieces, made one turn at a time."""
        return _json_chunks(self._fields(turn.as_dict() for turn in self.turns))

    def _fields(self, turns: Iterable[dict[str, Any]]) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "expectation": [str(step) for step in self.expectation],
            "turns": turns,
            "skipped": list(self.skipped),
            "summary": self.summary(),
        }


def _json_chunks(fields: dict[str, Any]) -> Iterator[str]:
    """``json.dumps(fields, indent=2)`` in pieces; a field holding an iterator is the list of its
    items, each encoded as it comes."""
    yield "{"
    for position, (name, value) in enumerate(fields.items()):
        yield f"{',' if position else ''}\n  {json.dumps(name)}: "
        if isinstance(value, Iterator):
            empty = True
            for item in value:
                yield f"{'[' if empty else ','}\n    {_nested_json(item, 2)}"
                empty = False
            yield "[]" if empty else "\n  ]"
        else:
            yield _nested_json(value, 1)
    yield "\n}"


def _nested_json(value: Any, level: int) -> str:
    """``json.dumps(value, indent=2)`` as it appears `level` deep (JSON text has no newline but its own)."""
    return json.dumps(value, indent=2).replace("\n", "\n" + "  " * level)


@dataclass(eq=False)
class ConnectionTurns(ConnectionSummary):
    """A connection's chat turns: the client frame's type, and the server's events until the next."""

    turns: list[tuple[str, EventRuns]] = field(default_factory=list)

    def finish_turn(self, finished: dict[Any, EventRuns]) -> None:
        """Store the last turn's events as the object `finished` has for them, if it has one
        (turns often have the same events: they then take the memory of one)."""
        if self.turns:
            request, events = self.turns[-1]
            self.turns[-1] = (request, finished.setdefault(events.key(), events))


def connection_turns(records: Iterable[Record | FrameFields], key: str | None = None) -> list[ConnectionTurns]:
    """The WebSocket connections of `records` with their chat turns, in order of their upgrade.

    Frames may come as their :data:`~wsreplay.cassette.FrameFields`
    (:meth:`~wsreplay.cassette.CassetteReader.with_frame_fields`): a cassette's frames are
    then read without building a record for each.
    """
    found: dict[int, ConnectionTurns] = {}
    finished: dict[Any, EventRuns] = {}
    for item in records:
        if isinstance(item, list):
            _, record_id, _, flags, payload = item
            from_client, is_text = flags & FLAG_FROM_CLIENT, flags & FLAG_TEXT
        elif isinstance(item, WebSocketFrame):
            record_id, from_client, is_text, payload = item.id, item.from_client, item.is_text, item.payload
        else:
            follow_connections(item, found, ConnectionTurns)
            continue
        connection = found.get(record_id)
        if connection is None or not is_text:
            continue
        if from_client:
            kind = payload_event(payload)
            if kind in CHAT_TYPES:
                connection.finish_turn(finished)
                connection.turns.append((sys.intern(kind), EventRuns()))
        elif connection.turns:
            name = payload_event(payload, key)
            if name is not None:
                events = connection.turns[-1][1]
                if events.names and events.names[-1] == name:  # the run goes on (EventRuns.add, inlined)
                    events.counts[-1] += 1
                else:
                    events.add(name)
    for connection in found.values():
        connection.finish_turn(finished)
    return list(found.values())


def verify_records(
    records: Iterable[Record | FrameFields],
    expectation: str | Sequence[Step] = DEFAULT_EXPECTATION,
    key: str | None = None,
) -> Verification:
    """Check every chat turn of every WebSocket connection against the expectation (one pass over `records`)."""
    steps = parse_expectation(expectation) if isinstance(expectation, str) else tuple(expectation)
    verdicts: dict[int, tuple[EventRuns, tuple[str, ...], tuple[str, ...], str | None]] = {}
    results: list[TurnResult] = []
    skipped: list[str] = []
    for where, connection in named(connection_turns(records, key)):
        if not connection.open.accepted:
            skipped.append(f"{where}: skipped, upgrade refused with {connection.open.response.status}")
            continue
        if not connection.turns:
            skipped.append(f"{where}: skipped, no chat turn")
            continue
        for number, (request, names) in enumerate(connection.turns, 1):
            verdict = verdicts.get(id(names))
            if verdict is None:
                verdict = verdicts[id(names)] = _verdict(steps, names)
            close = f"connection {describe_close(connection.close)}" if number == len(connection.turns) else None
            results.append(TurnResult(where, number, request, *verdict, close))
    return Verification(steps, tuple(results), tuple(skipped))


def _verdict(steps: Sequence[Step], names: EventRuns) -> tuple[EventRuns, tuple[str, ...], tuple[str, ...], str | None]:
    """A turn's expected events, its other events, the expected events it lacks, and its problem."""
    wanted = {step.name for step in steps}
    events = names.only(wanted.__contains__)
    others = tuple(dict.fromkeys(name for name in names.names if name not in wanted and name not in NOT_AGENT_EVENTS))
    missing = tuple(sorted(missing_events(steps, events)))
    return events, others, missing, match_problem(steps, events)
