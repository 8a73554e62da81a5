"""``wsreplay verify``: does every chat turn deliver the expected agent events, in order?

A turn starts at a client chat frame (``message``, ``user_message``, ``start_agent``)
and covers the server frames until the next one. Only server events named in the
expectation count; heartbeats, acks and system messages are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from wsreplay.compare import HEARTBEAT_EVENTS, Connection, describe_close, event_name, frame_event, named_connections
from wsreplay.records import Record

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


def missing_events(steps: Sequence[Step], events: Sequence[str]) -> set[str]:
    return {step.name for step in steps if not step.optional and step.name not in events}


def match_problem(steps: Sequence[Step], events: Sequence[str]) -> str | None:
    """Why `events` do not follow `steps`, in the staging report's words; None when they do."""
    missing = missing_events(steps, events)
    if missing:
        return f"Missing critical events: {format_set(missing)}"
    atoms = _atoms(steps)
    states = _closure(atoms, {0})
    for event in events:
        following = _advance(atoms, states, event)
        if not following:
            expected = _expected_next(atoms, states)
            if not expected:
                return f"Unexpected extra event {event!r} after the expected events"
            return f"Events out of order: {event!r} arrived where {expected} was expected"
        states = following
    if len(atoms) not in states:
        return f"Turn ended before {_expected_next(atoms, states)}"
    return None


def format_set(names: Iterable[str]) -> str:
    """A set of names as Python prints it (sorted, so the output is stable)."""
    return "{" + ", ".join(repr(name) for name in sorted(names)) + "}"


# --- turns ----------------------------------------------------------------------


@dataclass(frozen=True)
class TurnResult:
    where: str
    turn: int
    request: str
    events: tuple[str, ...]
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
        return [*(turn.line() for turn in self.turns), *self.skipped, self.summary()]

    def text(self) -> str:
        return "\n".join(self.lines())

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "expectation": [str(step) for step in self.expectation],
            "turns": [turn.as_dict() for turn in self.turns],
            "skipped": list(self.skipped),
            "summary": self.summary(),
        }


def split_turns(connection: Connection, key: str | None = None) -> list[tuple[str, list[str]]]:
    """The chat turns of a connection: (the client frame's type, server events in order)."""
    turns: list[tuple[str, list[str]]] = []
    for frame in connection.frames:
        if frame.from_client:
            kind = event_name(frame.json())
            if kind in CHAT_TYPES:
                turns.append((kind, []))
        elif turns:
            name = frame_event(frame, key)
            if name is not None:
                turns[-1][1].append(name)
    return turns


def verify_records(
    records: Sequence[Record], expectation: str | Sequence[Step] = DEFAULT_EXPECTATION, key: str | None = None
) -> Verification:
    """Check every chat turn of every WebSocket connection against the expectation."""
    steps = parse_expectation(expectation) if isinstance(expectation, str) else tuple(expectation)
    wanted = {step.name for step in steps}
    results: list[TurnResult] = []
    skipped: list[str] = []
    for where, connection in named_connections(records):
        if not connection.open.accepted:
            skipped.append(f"{where}: skipped, upgrade refused with {connection.open.response.status}")
            continue
        turns = split_turns(connection, key)
        if not turns:
            skipped.append(f"{where}: skipped, no chat turn")
            continue
        for number, (request, names) in enumerate(turns, 1):
            events = [name for name in names if name in wanted]
            others = [name for name in dict.fromkeys(names) if name not in wanted and name not in NOT_AGENT_EVENTS]
            close = f"connection {describe_close(connection.close)}" if number == len(turns) else None
            missing = tuple(sorted(missing_events(steps, events)))
            results.append(
                TurnResult(
                    where, number, request, tuple(events), tuple(others), missing, match_problem(steps, events), close
                )
            )
    return Verification(steps, tuple(results), tuple(skipped))
