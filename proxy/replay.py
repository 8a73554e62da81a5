"""The replay engine, Sans-I/O: recorded answers for live requests, scripted WebSocket players.

A :class:`ReplaySession` indexes a cassette and answers live HTTP requests and
WebSocket upgrades. An accepted upgrade comes with a :class:`ConnectionPlayer` that
takes the live connection's events (client frames, the client's close) and returns
the actions to perform (:class:`Send`, :class:`Close`, :class:`Abort`, :class:`Log`),
each with the delay to wait first. Drivers (the aiohttp replay server, the mitmproxy
addon) perform the actions; nothing here touches sockets, clocks or asyncio.

A session and its players are not thread-safe: use them from one event loop only.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, ClassVar, Final, Literal, TypeAlias, TypeVar, cast

from wsreplay.cassette import Cassette, CassetteError
from wsreplay.correlation import (
    MIN_ECHOED_BINARY,
    CorrelateRules,
    EchoFinder,
    Pairs,
    Substitutions,
    describe_pair,
    pair_messages,
    pair_requests,
    request_tokens,
    response_data,
    tokens,
)
from wsreplay.matchers import (
    DEFAULT_HTTP_MATCHERS,
    DEFAULT_WEBSOCKET_MATCHERS,
    Difference,
    Ignore,
    RequestMatcher,
    closest,
    format_differences,
    index_key,
    match_frame,
    match_message,
    match_request,
    shape,
    summarize,
    volatile_values,
)
from wsreplay.records import (
    ConnectionFailure,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    Record,
    WebSocketClose,
    WebSocketFrame,
    WebSocketOpen,
)
from wsreplay.sources import RecordSource, open_source
from wsreplay.timeline import describe

__all__ = [
    "Abort",
    "Accepted",
    "Action",
    "Answer",
    "Close",
    "ConnectionPlayer",
    "Fail",
    "HttpAnswer",
    "Log",
    "Refused",
    "ReplayOptions",
    "ReplayReport",
    "ReplaySession",
    "Respond",
    "Send",
    "Unmatched",
    "UpgradeAnswer",
    "parse_speed",
    "select_subprotocol",
]

MISMATCH_CODE: Final = 4000
"""Close code (``on_mismatch="fail"``) for a client frame unlike the recorded one."""
UNEXPECTED_FRAME_CODE: Final = 4001
"""Close code (``on_mismatch="fail"``) for a client frame beyond the recorded ones."""
MAX_REASON_BYTES: Final = 123
ABRUPT_CODES: Final = frozenset({None, 1006})
NO_RESPONSE: Final = "the recording has no response for this request"
READ_AHEAD_BYTES: Final = 64 * 1024
"""Payload bytes replay reads past a step for the steps after it, at most (small steps are read many at a time)."""
CLOSE_INDEX_BUDGET: Final = 256
"""Records a client's early close indexes further, at most, to tell how many frames the recording has."""
MAX_LOOKAHEAD: Final = 256
"""Recorded client frames not answered yet that a live frame out of the recorded order is compared with."""
MAX_DETAILS: Final = 100
"""Report entries kept per category; the counts stay exact."""

# --- actions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send one message after waiting `delay` seconds."""

    is_text: bool
    payload: bytes
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Close:
    """Close the WebSocket with `code` and `reason` after `delay` seconds."""

    code: int
    reason: str = ""
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Abort:
    """Drop the TCP connection without a close frame after `delay` seconds."""

    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Log:
    """Log `text` at `level` (a :mod:`logging` level), now."""

    level: int
    text: str


Action: TypeAlias = Send | Close | Abort | Log

# --- answers ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer with the recorded response after `delay` seconds."""

    response: HttpResponse
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Fail:
    """The recording has no response, only a failure: answer 502 with its message."""

    message: str
    delay: float = 0.0

    @property
    def response(self) -> HttpResponse:
        return HttpResponse(
            502, "Bad Gateway", headers=(("Content-Type", "text/plain; charset=utf-8"),), body=self.message.encode()
        )


@dataclass(frozen=True, slots=True)
class Unmatched:
    """Nothing recorded matches: answer 404 (JSON naming the closest recording) and log `message`."""

    response: HttpResponse
    message: str
    delay: ClassVar[float] = 0.0


@dataclass(frozen=True, slots=True)
class Refused:
    """A recorded refused upgrade (401, 403...): answer with the same response after `delay` seconds."""

    response: HttpResponse
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Accepted:
    """Accept the upgrade with `subprotocol` (a live offered value) after `delay` seconds, and let
    `player` drive it; the player's first delays count from the 101."""

    player: ConnectionPlayer
    subprotocol: str | None
    extensions: str | None
    delay: float = 0.0

    @property
    def deflate(self) -> bool:
        """Whether the recording negotiated permessage-deflate."""
        return "permessage-deflate" in (self.extensions or "")


HttpAnswer: TypeAlias = Respond | Fail | Unmatched
UpgradeAnswer: TypeAlias = Refused | Accepted | Fail | Unmatched
Answer: TypeAlias = Respond | Fail | Unmatched | Refused
"""Every answer but Accepted: a `response` to send after `delay` seconds."""

# --- options and report -----------------------------------------------------------


@dataclass(frozen=True)
class ReplayOptions:
    speed: float | None = 1.0
    """Divides recorded waits (for answers) and gaps (between frames); None replays as fast as possible ("max")."""
    on_mismatch: Literal["warn", "fail"] = "warn"
    ignore: tuple[str, ...] = ()
    """Extra keys (``session``) or paths (``payload.items[*].sku``) ignored in bodies and frames."""
    http_matchers: tuple[RequestMatcher, ...] = DEFAULT_HTTP_MATCHERS
    websocket_matchers: tuple[RequestMatcher, ...] = DEFAULT_WEBSOCKET_MATCHERS
    correlation: bool = True
    """Substitute the values the live client mints for the recorded ones (see :mod:`wsreplay.correlation`)."""
    correlate: tuple[str, ...] = ()
    """JSON keys or paths whose values are correlated whatever they look like (``id``)."""

    def __post_init__(self) -> None:
        if self.speed is not None and not self.speed > 0:
            raise ValueError(f"speed must be positive or None (max), not {self.speed!r}")
        if self.on_mismatch not in ("warn", "fail"):
            raise ValueError(f"on_mismatch must be 'warn' or 'fail', not {self.on_mismatch!r}")

    def scaled(self, gap: float) -> float:
        """A recorded gap in seconds as a replay delay."""
        return 0.0 if self.speed is None or gap <= 0 else gap / self.speed


def parse_speed(text: str) -> float | None:
    """``"1"``, ``"2.5"`` or ``"max"`` (None) as a replay speed."""
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ValueError(f"speed must be a positive number or 'max', not {text!r}") from None
    if not speed > 0 or speed == float("inf"):
        raise ValueError(f"speed must be a positive number or 'max', not {text!r}")
    return speed


@dataclass
class _Tally:
    """A count and the first few descriptions of one kind of event."""

    count: int = 0
    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.items) < MAX_DETAILS:
            self.items.append(text)


@dataclass
class _Journal:
    """What happened during a replay; players and the session write to it."""

    http_served: int = 0
    websockets_accepted: int = 0
    websockets_refused: int = 0
    failures_replayed: int = 0
    unmatched: _Tally = field(default_factory=_Tally)
    loose_matches: _Tally = field(default_factory=_Tally)
    mismatches: _Tally = field(default_factory=_Tally)
    incomplete: _Tally = field(default_factory=_Tally)
    substitutions: _Tally = field(default_factory=_Tally)
    volatile_matches: _Tally = field(default_factory=_Tally)
    out_of_order: _Tally = field(default_factory=_Tally)


@dataclass(frozen=True)
class ReplayReport:
    """Served, unmatched and recorded-but-unused traffic of a replay."""

    http_served: int
    websockets_accepted: int
    websockets_refused: int
    failures_replayed: int
    unmatched: tuple[str, ...]
    unmatched_count: int
    loose_matches: tuple[str, ...]
    loose_match_count: int
    mismatches: tuple[str, ...]
    mismatch_count: int
    incomplete: tuple[str, ...]
    unused_exchanges: tuple[str, ...]
    unused_connections: tuple[str, ...]
    substitutions: tuple[str, ...] = ()
    substitution_count: int = 0
    volatile_matches: tuple[str, ...] = ()
    volatile_match_count: int = 0
    out_of_order: tuple[str, ...] = ()
    out_of_order_count: int = 0
    cassette_error: str | None = None
    """A corrupt record met while the cassette was indexed as played: nothing after it was replayed."""
    cassette_warning: str | None = None
    """What indexing the cassette as played found to warn about (an incomplete last record)."""

    @property
    def clean(self) -> bool:
        """Everything matched strictly and everything recorded was used (what ``--strict`` demands)."""
        return not (
            self.cassette_error
            or self.unmatched_count
            or self.mismatch_count
            or self.volatile_match_count
            or self.unused_exchanges
            or self.unused_connections
        )

    def format(self) -> str:
        lines = [
            f"replay: {self.http_served} HTTP responses, {self.websockets_accepted} WebSocket connections "
            f"({self.websockets_refused} refused upgrades), {self.failures_replayed} recorded failures replayed"
        ]
        lines += [f"cassette: {problem}" for problem in (self.cassette_error, self.cassette_warning) if problem]
        sections = (
            ("unmatched", self.unmatched, self.unmatched_count),
            ("matched only when ignoring digits inside strings", self.loose_matches, self.loose_match_count),
            (
                "matched only by method, path, parameter names and body shape (values treated as volatile)",
                self.volatile_matches,
                self.volatile_match_count,
            ),
            ("client frames answered out of the recorded order", self.out_of_order, self.out_of_order_count),
            (
                "client-minted values correlated (live value in place of recorded)",
                self.substitutions,
                self.substitution_count,
            ),
            ("client frames unlike the recording", self.mismatches, self.mismatch_count),
            ("connections closed before their recorded end", self.incomplete, len(self.incomplete)),
            ("recorded HTTP exchanges never used", self.unused_exchanges, len(self.unused_exchanges)),
            ("recorded WebSocket upgrades never used", self.unused_connections, len(self.unused_connections)),
        )
        for title, items, count in sections:
            if count:
                shown = "" if count == len(items) else f" (first {len(items)} listed)"
                lines.append(f"{title}: {count}{shown}")
                lines.extend(f"  {item}" for item in items)
        return "\n".join(lines)


# --- recorded conversations -------------------------------------------------------

Position: TypeAlias = tuple[int, int]
"""``(k, i)``: action ``i`` of step ``k`` of a script."""


@dataclass(frozen=True, slots=True)
class _StepStart:
    """Where a step's records begin in the recording, how many there are, and the recorded
    time its first action's wait counts from."""

    position: int
    floor: float
    records: int = 0


class _Script:
    """A recorded WebSocket conversation as steps of server actions, read from the recording
    a step at a time when played (a few steps are kept): memory does not grow with its length.

    ``steps[0]`` is what the server did right after the upgrade; ``steps[k]`` what it did
    after the client's k-th frame, ``client_frame(k)``; ``times[k][i]`` is when
    ``steps[k][i]`` was recorded.

    The script is known as far as the recording is indexed: asking for a step or a client
    frame beyond indexes further (`more`), asking for all of them (``client_frames``,
    ``step_count``) indexes to the conversation's end.
    """

    KEPT_STEPS: ClassVar[int] = 64
    """Steps read at once, at most (while they are small: see `READ_AHEAD_BYTES`)."""

    def __init__(
        self,
        upgrade: WebSocketOpen,
        client_frames: list[WebSocketFrame],
        starts: list[_StepStart],
        source: RecordSource,
        options: ReplayOptions,
        more: Callable[[], bool],
    ) -> None:
        self.upgrade = upgrade
        self.delay = options.scaled(upgrade.duration)
        """How long to wait before accepting: the recorded wait for the 101, scaled."""
        self.complete = False
        """Whether the conversation is indexed to its end (else ``client_frames`` and ``step_count`` index on)."""
        self._client_frames = client_frames
        self._starts = starts
        self._source = source
        self._options = options
        self._more = more
        """Index the recording further; False once it is indexed to its end."""
        self._kept: dict[int, tuple[tuple[Action, ...], tuple[float, ...]]] = {}
        self.steps: Sequence[tuple[Action, ...]] = _StepView(self, 0)
        self.times: Sequence[tuple[float, ...]] = _StepView(self, 1)

    @property
    def client_frames(self) -> Sequence[WebSocketFrame]:
        """All the client's frames."""
        self.index_to_end()
        return self._client_frames

    @property
    def step_count(self) -> int:
        self.index_to_end()
        return len(self._starts)

    def client_frame(self, index: int) -> WebSocketFrame | None:
        """The client's frame `index` (from 1), or None when the conversation has fewer."""
        frames = self._client_frames
        while len(frames) < index and not self.complete and self._more():
            pass
        return frames[index - 1] if 0 < index <= len(frames) else None

    def known_client_frames(self, at_most: int) -> tuple[int, bool]:
        """How many client frames the conversation has, indexing at most `at_most` records further
        to learn it; and whether that is all of them."""
        while not self.complete and at_most > 0 and self._more():
            at_most -= 1
        return len(self._client_frames), self.complete

    def step(self, k: int) -> tuple[tuple[Action, ...], tuple[float, ...]]:
        """Step `k`'s actions and their recorded times."""
        kept = self._kept.get(k)
        if kept is None:
            while len(self._starts) <= k and not self.complete and self._more():
                pass
            kept = self._read_steps(k, self._starts[k])
        return kept

    def indexed(self) -> None:
        """The conversation is indexed to its end: the recording need not be indexed further for it."""
        self.complete = True
        self._more = _indexed_already

    def index_to_end(self) -> None:
        """Index the recording as far as the conversation's end."""
        while not self.complete and self._more():
            pass

    def _read_steps(self, k: int, start: _StepStart) -> tuple[tuple[Action, ...], tuple[float, ...]]:
        """Read step `k` from the recording, and keep it with the steps after it while they are
        small (indexing the recording as far as they end), in place of the steps kept before: a
        conversation of small messages is read many steps at a time."""
        kept = self._kept
        kept.clear()
        budget = READ_AHEAD_BYTES
        try:
            records = iter(self._source.after(self.upgrade.id, start.position))
            for j in range(k, k + self.KEPT_STEPS):
                if j > k:
                    if not (budget > 0 and _is_client_frame(next(records, None))):
                        break
                    while len(self._starts) <= j and not self.complete and self._more():
                        pass
                    if len(self._starts) <= j:
                        break
                step = kept[j] = self._step(self._starts[j], records)
                budget -= sum(len(action.payload) for action in step[0] if isinstance(action, Send))
        except CassetteError as exc:  # the file changed or went away since it was indexed
            if k not in kept:
                kept[k] = ((Log(logging.ERROR, f"ws #{self.upgrade.id}: {exc}"), Abort()), (start.floor,) * 2)
        return kept[k]

    def _step(self, start: _StepStart, records: Iterator[Record]) -> tuple[tuple[Action, ...], tuple[float, ...]]:
        """A step's actions and times, from its records: the server's, up to the next client
        frame or the conversation's end (`start.records` of them)."""
        actions: list[Action] = []
        times: list[float] = []
        floor = start.floor
        left = start.records
        while left:
            record = next(records, None)
            if record is None or _is_client_frame(record):
                break
            if not isinstance(record, WebSocketFrame | WebSocketClose | ConnectionFailure):
                continue
            left -= 1
            delay = self._options.scaled(record.time - floor)
            floor = max(floor, record.time)
            action = _server_action(record, delay)
            if action is None:
                break
            actions.append(action)
            times.append(record.time)
            if not isinstance(record, WebSocketFrame):
                break
        return tuple(actions), tuple(times)


def _is_client_frame(record: Record | None) -> bool:
    return isinstance(record, WebSocketFrame) and record.from_client


def _indexed_already() -> bool:
    return False


class _StepView(Sequence[Any]):
    """``script.steps`` or ``script.times``: the steps' actions or times, read when needed."""

    def __init__(self, script: _Script, part: int) -> None:
        self._script = script
        self._part = part

    def __len__(self) -> int:
        return self._script.step_count

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[index] for index in range(*k.indices(len(self)))]
        if k < 0:
            if k < -len(self):
                raise IndexError(k)
            k += len(self)
        return self._script.step(k)[self._part]


def _server_action(record: Record, delay: float) -> Action | None:
    """The action a server record of a conversation replays as; None for the client's close."""
    match record:
        case WebSocketFrame():
            return Send(record.is_text, record.payload, delay)
        case WebSocketClose(closed_by="client"):
            return None
        case WebSocketClose(code=int(code), reason=reason) if code not in ABRUPT_CODES:
            return Close(code, reason, delay)
    return Abort(delay)


class _ScriptIndex:
    """Builds a conversation's script while the recording is indexed: its client frames, and
    where each step's records are, counted (server frames are not kept)."""

    def __init__(
        self,
        upgrade: WebSocketOpen,
        position: int,
        source: RecordSource,
        options: ReplayOptions,
        more: Callable[[], bool],
    ) -> None:
        self._client_frames: list[WebSocketFrame] = []
        self._starts: list[_StepStart] = []
        self.script = _Script(upgrade, self._client_frames, self._starts, source, options, more)
        self._position = position
        self._floor = self._previous_server = upgrade.answered_at
        self._records = 0

    def server_records(self, time: float, count: int = 1) -> None:
        """`count` server frames of the conversation, the latest at `time` (or its close or
        failure, the last record)."""
        self._previous_server = max(self._previous_server, time)
        self._records += count

    def client_frame(self, frame: WebSocketFrame, end: int) -> None:
        self._end_step()
        self._client_frames.append(frame)
        self._position = end
        self._floor = max(self._previous_server, frame.time)

    def finish(self) -> None:
        """The conversation's last record is indexed (or the recording's)."""
        self._end_step()
        self.script.indexed()

    def _end_step(self) -> None:
        self._starts.append(_StepStart(self._position, self._floor, self._records))
        self._records = 0


@dataclass(frozen=True)
class _Echoes:
    """Which tokens the client sent that a conversation's server sent back, and who minted them.

    ``found[k, i]`` are the echoed tokens ``steps[k][i]`` carries (a binary client message
    echoed whole counts as a token); ``owners[k, i]`` the client frames that minted them
    (only actions that carry something are listed).
    """

    echoed: frozenset[bytes]
    found: dict[Position, frozenset[bytes]]
    owners: dict[Position, frozenset[int]]
    minting: frozenset[int]
    """The client frames that minted something the server echoed."""


_NO_ECHOES: Final = _Echoes(frozenset(), {}, {}, frozenset())
_NOTHING: Final[frozenset[bytes]] = frozenset()


def _find_echoes(script: _Script, earlier: frozenset[bytes]) -> _Echoes:
    """What the server of `script` echoed of what its client sent (see :class:`EchoFinder`).

    Only a conversation whose client sent something that could come back is read."""
    client_sends = request_tokens(script.upgrade.request)
    for frame in script.client_frames:
        client_sends |= tokens(frame.payload)
    could_echo = (
        client_sends
        or earlier
        or any(not frame.is_text and len(frame.payload) >= MIN_ECHOED_BINARY for frame in script.client_frames)
    )
    if not could_echo:
        return _NO_ECHOES
    finder = EchoFinder(earlier, client_sends)
    finder.client_request(script.upgrade.request)
    minted_by: dict[bytes, int] = {}
    found: dict[Position, frozenset[bytes]] = {}
    owners: dict[Position, frozenset[int]] = {}
    for k in range(script.step_count):
        if k:
            frame = script.client_frames[k - 1]
            minted_by.update(dict.fromkeys(finder.client_message(frame.payload, frame.is_text), k))
        for i, action in enumerate(script.steps[k]):
            carried = finder.server_message(action.payload) if isinstance(action, Send) else _NOTHING
            if carried:
                found[k, i] = carried
                owners[k, i] = frozenset(minted_by[t] for t in carried if t in minted_by)
    echoed = frozenset(token for here in found.values() for token in here)
    minting = frozenset(index for here in owners.values() for index in here)
    return _Echoes(echoed, found, owners, minting)


def _delayed(action: Action, delay: float) -> Action:
    """`action` to perform `delay` seconds after the one before it."""
    match action:
        case Send():
            return replace(action, delay=delay)
        case Close():
            return replace(action, delay=delay)
        case Abort():
            return replace(action, delay=delay)
    return action


class _CausalSchedule:
    """The server actions of a script not played yet, once its client went out of the recorded
    order: each waits for the client frames it answers (those whose ids it carries, else the
    one it followed), a close or drop for everything before it too."""

    def __init__(self, script: _Script, echoes: _Echoes, start: int, used: set[int]) -> None:
        self._echoes = echoes
        self._used = used
        self._blocked: dict[int, list[Position]] = {}
        self._terminal: Position | None = None
        self._waiting = 0
        self._ready: list[Position] = []
        for k in range(start, script.step_count):
            for i, action in enumerate(script.steps[k]):
                if isinstance(action, Close | Abort):
                    self._terminal = (k, i)
                else:
                    self._waiting += 1
                    self._place((k, i))

    def _place(self, position: Position) -> None:
        k, i = position
        owners = self._echoes.owners.get(position) or ({k} if k else set())
        missing = min((index for index in owners if index not in self._used), default=None)
        if missing is None:
            self._ready.append(position)
        else:
            self._blocked.setdefault(missing, []).append(position)

    def answered(self, index: int) -> list[Position]:
        """Recorded client frame `index` was answered (it is in `used`): what may be played now,
        in recorded order."""
        for position in self._blocked.pop(index, ()):
            self._place(position)
        ready, self._ready = sorted(self._ready), []
        self._waiting -= len(ready)
        if (
            self._terminal is not None
            and not self._waiting
            and (self._terminal[0] in self._used or not self._terminal[0])
        ):
            ready.append(self._terminal)
            self._terminal = None
        return ready


def _truncate_utf8(text: str, limit: int = MAX_REASON_BYTES) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


class _RecordedTokens:
    """The tokens a recording's clients sent in HTTP requests, and those of its requests its
    server ever sent back, each found when first needed (loading does not pay for them)."""

    def __init__(self, source: RecordSource, requests: Callable[[], Sequence[HttpRequest]]) -> None:
        self._source = source
        self._requests = requests
        """Every recorded request (indexing the recording whole)."""
        self._http: list[HttpRequest] = []
        """The HTTP requests (not upgrades) indexed so far, in recorded order."""
        self._http_tokens: set[bytes] = set()
        """The tokens of the first `_http_read` of them."""
        self._http_read = 0
        self._http_frozen: frozenset[bytes] | None = None
        self._sent_back: frozenset[bytes] | None = None

    def indexed(self, requests: Sequence[HttpRequest]) -> None:
        """The recording is indexed: these are its requests (and the session need not be asked)."""
        self._requests = partial(list, requests)

    def http_request(self, request: HttpRequest) -> None:
        """An HTTP request (not an upgrade) has been indexed."""
        self._http.append(request)

    def http_requests(self) -> frozenset[bytes]:
        """The tokens clients sent in the HTTP requests indexed so far (all of them once the
        recording is indexed: a recording indexed as played is not indexed further for them)."""
        if self._http_read < len(self._http):
            for request in self._http[self._http_read :]:
                self._http_tokens |= request_tokens(request)
            self._http_read = len(self._http)
            self._http_frozen = None
        if self._http_frozen is None:
            self._http_frozen = frozenset(self._http_tokens)
        return self._http_frozen

    def sent_back(self) -> frozenset[bytes]:
        """The recorded requests' tokens that the server sent somewhere (responses, frames): a
        request without any needs no pairing. Found in one pass over the recording."""
        if self._sent_back is None:
            requests: set[bytes] = set()
            for request in self._requests():
                requests |= request_tokens(request)
            finder = EchoFinder(requests, requests)
            found: set[bytes] = set()
            for record in self._source.records() if requests else ():
                match record:
                    case HttpExchange(response=HttpResponse() as response) | WebSocketOpen(response=response):
                        found |= finder.server_message(response_data(response))
                    case WebSocketFrame(from_client=False, payload=payload):
                        found |= finder.server_message(payload)
            self._sent_back = frozenset(found)
        return self._sent_back


@dataclass(frozen=True)
class _Context:
    """What every player of a session shares."""

    options: ReplayOptions
    ignore: Ignore
    journal: _Journal
    rules: CorrelateRules
    substitutions: Substitutions
    """Values learned from every connection and request, under each player's own."""
    tokens: _RecordedTokens

    def echoes(self, recorded: _RecordedUpgrade) -> _Echoes:
        """What the server of a recorded conversation echoed, found once the conversation is
        indexed to its end: every HTTP request recorded before its last frame is known then."""
        if recorded.echoes is None:
            script = cast(_Script, recorded.outcome)
            script.index_to_end()
            earlier = self.tokens.http_requests() if self.rules.enabled else frozenset()
            recorded.echoes = _find_echoes(script, earlier)
        return recorded.echoes


class ConnectionPlayer:
    """Plays one recorded WebSocket conversation against one live client.

    Feed it the client's events; it returns the server actions to perform in order.
    Connections whose upgrades look alike (seven sockets opened at once) are bound to
    recordings in arrival order; when a client frame matches a sibling recording that
    went the same way so far, the player takes that one over (trading with the sibling's
    player if it has one), so each client gets the conversation its own frames lead to.

    A client that sends its frames in another order than recorded (several requests in
    flight) gets each answered by the best unused recorded frame it matches; from then on
    a server frame is played once the client frames it answers have come: those whose
    minted ids it carries, else the one it followed in the recording.

    Ids the client minted (see :mod:`wsreplay.correlation`) come back as the live client's.
    """

    def __init__(
        self, recorded: _RecordedUpgrade, alike: Callable[[], Sequence[_RecordedUpgrade]], context: _Context
    ) -> None:
        self._recorded = recorded
        self._alike = alike
        """The recordings whose upgrades look like this one's (itself included), found when first needed."""
        self._context = context
        self._received = 0
        self._finished = False
        self._substitutions = Substitutions(parent=context.substitutions)
        self._used: set[int] = set()
        self._schedule: _CausalSchedule | None = None
        """The server actions not yet played, once out of the recorded order (else None)."""
        self._first_unused = 1
        recorded.player = self

    @property
    def label(self) -> str:
        upgrade = self._script.upgrade
        return f"ws #{upgrade.id} {upgrade.request.target}"

    @property
    def finished(self) -> bool:
        """True once the conversation is over (closed, aborted or failed); later events are ignored."""
        return self._finished

    @property
    def _script(self) -> _Script:
        return cast(_Script, self._recorded.outcome)

    def upgraded(self, live: HttpRequest) -> None:
        """The live upgrade request this player answers: learn the values its client minted in it."""
        if self._context.rules.enabled:
            pairs = pair_requests(self._script.upgrade.request, live, self._context.rules)
            if pairs:
                self._learn(pairs, self._context.echoes(self._recorded).echoed)

    def start(self) -> Sequence[Action]:
        """The actions right after the upgrade: server frames recorded before the client's first."""
        return self._play(0)

    def client_frame(self, is_text: bool, payload: bytes | str) -> Sequence[Action]:
        """The live client sent a message: check it against the recording, then play what followed."""
        if self._finished:
            return ()
        self._received += 1
        if self._schedule is not None:
            return self._client_frame_out_of_order(is_text, payload)
        index = self._received
        recorded = self._script.client_frame(index)
        known = recorded is not None
        differences = self._differences(recorded, is_text, payload) if recorded is not None else []
        if (differences or not known) and self._take_over_sibling(index, is_text, payload):
            return self._answer(index, is_text, payload)
        if differences or not known:
            other = self._best_unused(is_text, payload)
            if other is not None:
                echoes = self._context.echoes(self._recorded)
                self._schedule = _CausalSchedule(self._script, echoes, index, self._used)
                return self._answer_out_of_order(other, is_text, payload)
        if not known:
            summary = f"unexpected client frame {index}"
            detail = f"{summary} (the recording has {len(self._script.client_frames)})"
            return self._mismatch(summary, detail, UNEXPECTED_FRAME_CODE)
        if not differences:
            return self._answer(index, is_text, payload)
        summary = f"frame {index} mismatch: {summarize(differences)}"
        detail = f"client frame {index} differs from the recording:\n{format_differences(differences)}"
        return self._mismatch(summary, detail, MISMATCH_CODE, index, is_text, payload)

    def client_closed(self, code: int | None, reason: str = "") -> Sequence[Action]:
        """The live client closed (or dropped) the connection; nothing more will be played."""
        if self._finished:
            return ()
        self._finished = True
        expected, all_known = self._script.known_client_frames(at_most=CLOSE_INDEX_BUDGET)
        if self._received < expected:
            text = (
                f"{self.label}: client closed ({code} {reason!r}) after {self._received} of "
                f"{expected if all_known else f'at least {expected}'} recorded client frames"
            )
            self._context.journal.incomplete.add(text)
            return (Log(logging.INFO, text),)
        return ()

    def _take_over_sibling(self, index: int, is_text: bool, payload: bytes | str) -> bool:
        """Switch to a sibling recording whose `index`-th client frame is this one, if both went alike so far."""
        ignore = self._context.ignore
        for sibling in self._alike():
            if not isinstance(sibling.outcome, _Script):
                continue
            script = sibling.outcome
            recorded = script.client_frame(index)
            if sibling is self._recorded or recorded is None:
                continue
            holder = sibling.player
            if holder is None and sibling.uses or holder is not None and holder.finished:
                continue
            if match_frame(recorded, is_text, payload, ignore):
                continue
            progress = index - 1 if holder is None else max(index - 1, holder._received)
            if not _same_prefix(self._script, script, progress, ignore):
                continue
            if holder is None:
                self._recorded.uses -= 1
                self._recorded.player = None
                sibling.uses += 1
            else:
                holder._recorded = self._recorded
                self._recorded.player = holder
            self._recorded = sibling
            sibling.player = self
            return True
        return False

    def _unused(self) -> Iterator[int]:
        """The recorded client frames not answered yet, in order."""
        frames = self._script.client_frames
        while self._first_unused in self._used:
            self._first_unused += 1
        return (index for index in range(self._first_unused, len(frames) + 1) if index not in self._used)

    def _best_unused(self, is_text: bool, payload: bytes | str) -> int | None:
        """The first of the next `MAX_LOOKAHEAD` recorded client frames not answered yet that
        this live frame matches."""
        frames = self._script.client_frames
        for index in itertools.islice(self._unused(), MAX_LOOKAHEAD):
            if not self._differences(frames[index - 1], is_text, payload):
                return index
        return None

    def _differences(self, recorded: WebSocketFrame, is_text: bool, payload: bytes | str) -> list[Difference]:
        """How a live frame differs from a recorded one; a binary message the server echoed (a
        nonce) matches any other of its length."""
        differences = match_frame(recorded, is_text, payload, self._context.ignore)
        if differences and not is_text and recorded.from_client and len(recorded.payload) == len(payload):
            if self._context.rules.enabled and recorded.payload in self._context.echoes(self._recorded).echoed:
                return []
        return differences

    def _client_frame_out_of_order(self, is_text: bool, payload: bytes | str) -> Sequence[Action]:
        index = self._best_unused(is_text, payload)
        if index is not None:
            return self._answer_out_of_order(index, is_text, payload)
        frames = self._script.client_frames
        first = next(self._unused(), None)
        if first is None:
            summary = f"unexpected client frame {self._received}"
            detail = f"{summary} (the recording has {len(frames)}, all answered)"
            return self._mismatch(summary, detail, UNEXPECTED_FRAME_CODE)
        differences = self._differences(frames[first - 1], is_text, payload)
        summary = f"frame {self._received} matches no unanswered recorded frame: {summarize(differences)}"
        detail = (
            f"client frame {self._received} matches none of the {len(frames) - len(self._used)} recorded frames "
            f"not answered yet; against recorded frame {first}:\n{format_differences(differences)}"
        )
        return self._mismatch(summary, detail, MISMATCH_CODE, first, is_text, payload)

    def _answer(self, index: int, is_text: bool, payload: bytes | str) -> Sequence[Action]:
        """Recorded client frame `index` answers the live one: in order, play its step."""
        self._learn_frame(index, is_text, payload)
        return self._play(index)

    def _answer_out_of_order(self, index: int, is_text: bool, payload: bytes | str) -> Sequence[Action]:
        """Recorded client frame `index` answers the live one out of the recorded order: play every
        pending server action whose client frames have all come, in recorded order."""
        self._learn_frame(index, is_text, payload)
        if index != self._received:
            self._context.journal.out_of_order.add(
                f"{self.label}: live frame {self._received} answered as recorded frame {index}"
            )
        script, echoes = self._script, self._context.echoes(self._recorded)
        previous = cast(WebSocketFrame, script.client_frame(index)).time
        actions: list[Action] = []
        for k, i in cast(_CausalSchedule, self._schedule).answered(index):
            recorded_at = script.times[k][i]
            action = _delayed(script.steps[k][i], self._context.options.scaled(recorded_at - previous))
            previous = max(previous, recorded_at)
            actions.append(self._substituted(action, echoes.found.get((k, i), _NOTHING)))
            if isinstance(action, Close | Abort):
                self._finished = True
        return actions

    def _learn_frame(self, index: int, is_text: bool, payload: bytes | str) -> None:
        self._used.add(index)
        rules = self._context.rules
        if not rules.enabled:
            return
        recorded = cast(WebSocketFrame, self._script.client_frame(index))
        if _same_payload(recorded.payload, payload):
            return  # nothing to learn (and finding what was echoed would read the whole conversation now)
        if index in self._context.echoes(self._recorded).minting or rules.keys or rules.paths:
            pairs = pair_messages(recorded.payload, payload, is_text, self._context.rules)
            if pairs:
                self._learn(pairs, self._context.echoes(self._recorded).echoed)

    def _learn(self, pairs: Pairs, echoed: frozenset[bytes]) -> None:
        for recorded, live in self._substitutions.learn(pairs, echoed):
            self._context.substitutions.learn(Pairs(tokens={recorded: live}))
            self._context.journal.substitutions.add(f"{self.label}: {describe_pair(recorded, live)}")

    def _substituted(self, action: Action, found: frozenset[bytes]) -> Action:
        if not isinstance(action, Send) or not self._context.rules.enabled or self._substitutions.empty:
            return action
        payload = self._substitutions.apply(action.payload, found)
        return action if payload == action.payload else replace(action, payload=payload)

    def _mismatch(
        self,
        summary: str,
        detail: str,
        code: int,
        index: int | None = None,
        is_text: bool = True,
        payload: bytes | str = b"",
    ) -> Sequence[Action]:
        """A client frame unlike the recording: log it, then answer it as recorded frame `index`
        (warn; nothing when None) or close with `code` (fail)."""
        self._context.journal.mismatches.add(f"{self.label}: {summary}")
        log = Log(logging.WARNING, f"{self.label}: {detail}")
        if self._context.options.on_mismatch == "fail":
            self._finished = True
            return (log, Close(code, _truncate_utf8(summary)))
        if index is None:
            return (log,)
        if self._schedule is not None:
            return (log, *self._answer_out_of_order(index, is_text, payload))
        self._used.add(index)
        return (log, *self._play(index))

    def _play(self, index: int) -> Sequence[Action]:
        """Play step `index` in the recorded order."""
        step = self._script.steps[index]
        if step and isinstance(step[-1], Close | Abort):
            self._finished = True
        if not self._context.rules.enabled or self._substitutions.empty:
            return step
        found = self._context.echoes(self._recorded).found
        return tuple(self._substituted(action, found.get((index, i), _NOTHING)) for i, action in enumerate(step))


def _same_payload(recorded: bytes, live: bytes | str) -> bool:
    return recorded == (live.encode() if isinstance(live, str) else live)


def _same_prefix(first: _Script, second: _Script, steps: int, ignore: Ignore) -> bool:
    """Whether two conversations match up to the server's answer to client frame `steps`."""
    if first.step_count <= steps or second.step_count <= steps:
        return False
    for index in range(1, steps + 1):
        mine, theirs = first.client_frames[index - 1], second.client_frames[index - 1]
        if match_frame(mine, theirs.is_text, theirs.payload, ignore):
            return False
    return all(
        len(first.steps[index]) == len(second.steps[index])
        and all(_same_action(a, b, ignore) for a, b in zip(first.steps[index], second.steps[index], strict=True))
        for index in range(steps + 1)
    )


def _same_action(first: Action, second: Action, ignore: Ignore) -> bool:
    """Equal but for timing and volatile values."""
    match first, second:
        case Send(), Send():
            return first.payload == second.payload or not match_message(
                first.is_text, first.payload, second.is_text, second.payload, ignore
            )
        case Close(), Close():
            return (first.code, first.reason) == (second.code, second.reason)
        case Abort(), Abort():
            return True
    return False


# --- the session ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ExchangeTokens:
    """The minted-looking tokens of a recorded response, and whether its request is paired with
    live ones (see :meth:`ReplaySession._pairs_requests`)."""

    paired: bool
    response: frozenset[bytes]


@dataclass
class _HttpSequence:
    """Recorded exchanges for one request, answered in order; the last one repeats."""

    request: HttpRequest
    exchanges: list[HttpExchange]
    answers: list[Respond | Fail]
    served: int = 0
    _tokens: dict[int, _ExchangeTokens] | None = None

    def tokens(self, index: int, pairs_requests: Callable[[frozenset[bytes]], bool]) -> _ExchangeTokens:
        """Exchange `index`'s tokens, found when first needed."""
        if self._tokens is None:
            self._tokens = {}
        found = self._tokens.get(index)
        if found is None:
            exchange = self.exchanges[index]
            response = tokens(response_data(exchange.response)) if exchange.response else set()
            paired = pairs_requests(frozenset(request_tokens(exchange.request)))
            found = self._tokens[index] = _ExchangeTokens(paired, frozenset(response))
        return found

    def next_index(self) -> int:
        """The exchange whose answer is next (the last one repeats)."""
        index = min(self.served, len(self.answers) - 1)
        self.served += 1
        return index


@dataclass
class _RecordedUpgrade:
    """One recorded upgrade: accepted (with its script), refused, or failed."""

    record: WebSocketOpen | HttpExchange
    outcome: Refused | Fail | _Script
    uses: int = 0
    player: ConnectionPlayer | None = None
    """The live player bound to this recording, if any."""
    echoes: _Echoes | None = None
    """What its server echoed of its client, found when first played."""

    @property
    def request(self) -> HttpRequest:
        return self.record.request


SCAN_AT_MOST: Final = 4
"""Recorded requests on one method and path compared one by one with a live request; with
more, the live request's index key picks the ones to compare (a key costs a few comparisons)."""


class _HttpIndex:
    """The recorded HTTP sequences, by (method, path shape) and by exact request.

    A bucket that grows past `SCAN_AT_MOST` sequences is also indexed by their requests'
    index keys (strict and loose), so that a request is compared with the few recorded ones
    sharing its key rather than with all: matching cost does not grow with the cassette.
    """

    def __init__(self, matchers: Sequence[RequestMatcher], strict: Ignore, loose: Ignore) -> None:
        self._matchers = matchers
        self._ignores = (strict, loose)
        self.buckets: dict[tuple[str, str], list[_HttpSequence]] = {}
        self._exact: dict[tuple[str, str, str, bytes], _HttpSequence] = {}
        self._keyed: dict[tuple[str, str], tuple[dict[Hashable, list[_HttpSequence]], ...]] = {}

    def add(self, sequence: _HttpSequence) -> None:
        self._exact[_exact_key(sequence.request)] = sequence
        bucket_key = _http_key(sequence.request)
        bucket = self.buckets.setdefault(bucket_key, [])
        bucket.append(sequence)
        keyed = self._keyed.get(bucket_key)
        if keyed is None and len(bucket) > SCAN_AT_MOST:
            keyed = self._keyed[bucket_key] = tuple({} for _ in self._ignores)
            for earlier in bucket[:-1]:
                self._add_keys(keyed, earlier)
        if keyed is not None:
            self._add_keys(keyed, sequence)

    def _add_keys(self, keyed: tuple[dict[Hashable, list[_HttpSequence]], ...], sequence: _HttpSequence) -> None:
        for ignore, by_key in zip(self._ignores, keyed, strict=True):
            by_key.setdefault(index_key(sequence.request, self._matchers, ignore), []).append(sequence)

    def exact(self, request: HttpRequest) -> _HttpSequence | None:
        """The sequence recorded for exactly this method, path, query and body, if any."""
        return self._exact.get(_exact_key(request))

    def candidates(self, request: HttpRequest, *, loose: bool) -> Iterator[tuple[Ignore, _HttpSequence]]:
        """The (ignore rules, sequence) pairs to compare `request` with, in order: under the
        strict rules, then (`loose`) the loose ones. In a keyed bucket, those sharing the
        request's key, then all of the bucket (for the one case keys miss, see `index_key`):
        only a request that matches nothing pays for that."""
        bucket_key = _http_key(request)
        ignores = self._ignores if loose else self._ignores[:1]
        keyed = self._keyed.get(bucket_key)
        if keyed is not None:
            for ignore, by_key in zip(ignores, keyed, strict=False):  # the strict pass alone uses the first
                for sequence in by_key.get(index_key(request, self._matchers, ignore), ()):
                    yield ignore, sequence
            if not loose:
                return
        bucket = self.buckets.get(bucket_key, ())
        for ignore in ignores:
            for sequence in bucket:
                yield ignore, sequence


class ReplaySession:
    """Answers live traffic from one cassette. Use from one event loop only (not thread-safe).

    The recording is indexed as far as answers need (exchanges by (method, path), upgrades
    by path, each conversation's client frames and where its steps are): a request whose
    recorded answer is the same whatever follows is answered without reading further, so
    the first connection of a long cassette is served at once. :meth:`index_all` indexes
    the rest (and raises on a corrupt record); a corrupt record met while answering ends
    the recording there and is reported (``ReplayReport.cassette_error``). A source that is not
    indexed as played (a small cassette file) is indexed whole when the session is made.
    """

    def __init__(self, cassette: Cassette | RecordSource, options: ReplayOptions | None = None) -> None:
        self.source = open_source(cassette)
        self.options = options or ReplayOptions()
        self._ignore = Ignore.parse(self.options.ignore)
        self._loose = replace(self._ignore, digits_in_text=True)
        self._journal = _Journal()
        self._rules = CorrelateRules.parse(self.options.correlate, self.options.correlation)
        self._substitutions = Substitutions()
        self._http = _HttpIndex(self.options.http_matchers, self._ignore, self._loose)
        self._upgrades: dict[str, list[_RecordedUpgrade]] = {}
        self._entries = self.source.index()
        self._indexed = False
        self._conversations: dict[int, _ScriptIndex] = {}
        self._awaiting_failure: dict[int, Callable[[Fail], None]] = {}
        """Response-less exchanges by id: where to put the next failure recorded under it."""
        self._cassette_error: str | None = None
        self._cassette_warning: str | None = None
        self._tokens = _RecordedTokens(self.source, self._all_requests)
        self._context = _Context(
            self.options, self._ignore, self._journal, self._rules, self._substitutions, self._tokens
        )
        if not self.source.index_as_played:
            self.index_all()

    # indexing

    def index_all(self) -> None:
        """Index the whole recording now; a corrupt record raises its :class:`CassetteError`."""
        while self._advance(errors_raise=True):
            pass

    def _index_all(self) -> None:
        while self._advance():
            pass

    def _advance(self, errors_raise: bool = False) -> bool:
        """Index the next record that is not a server frame (and the server frames before it);
        False once the whole recording is indexed."""
        if self._indexed:
            return False
        try:
            for position, end, record in self._entries:
                if isinstance(record, tuple):  # server frames, undecoded
                    record_id, count, time_us = record
                    conversation = self._conversations.get(record_id)
                    if conversation is not None:
                        conversation.server_records(time_us / 1_000_000, count)
                    continue
                self._index_record(position, end, record)
                return True
        except CassetteError as exc:
            if errors_raise:
                raise
            self._cassette_error = f"{exc}; replay ended the recording there"
        else:
            if self.source.index_as_played:  # else the driver warned before serving
                self._cassette_warning = self.source.indexed_warning()
        self._indexed = True
        for conversation in self._conversations.values():
            conversation.finish()
        self._conversations.clear()
        self._tokens.indexed(self._requests())
        return False

    def _index_record(self, position: int, end: int, record: Record) -> None:
        """Index one record. A response-less exchange's failure message is the next failure
        recorded under its id. Conversations keep their client frames; their server frames
        are read when played."""
        conversations = self._conversations
        match record:
            case WebSocketFrame(id=record_id) if record_id in conversations:
                if record.from_client:
                    conversations[record_id].client_frame(record, end)
                else:
                    conversations[record_id].server_records(record.time)
            case HttpExchange():
                self._index_exchange(record)
            case WebSocketOpen() if record.accepted:
                conversation = _ScriptIndex(record, end, self.source, self.options, self._advance)
                conversations[record.id] = conversation
                self._add_upgrade(_RecordedUpgrade(record, conversation.script))
            case WebSocketOpen():
                self._add_upgrade(
                    _RecordedUpgrade(record, Refused(record.response, self.options.scaled(record.duration)))
                )
            case WebSocketClose(id=record_id) | ConnectionFailure(id=record_id) if record_id in conversations:
                conversation = conversations.pop(record_id)
                conversation.server_records(record.time)
                conversation.finish()
            case ConnectionFailure(id=record_id) if record_id in self._awaiting_failure:
                self._awaiting_failure.pop(record_id)(Fail(record.message))

    def _index_exchange(self, exchange: HttpExchange) -> None:
        answer = self._exchange_answer(exchange, NO_RESPONSE)
        if exchange.request.is_websocket_upgrade:
            refusal = answer if isinstance(answer, Fail) else Refused(answer.response, answer.delay)
            upgrade = _RecordedUpgrade(exchange, refusal)
            self._add_upgrade(upgrade)
            if exchange.response is None:
                self._awaiting_failure[exchange.id] = lambda failure: setattr(upgrade, "outcome", failure)
            return
        self._tokens.http_request(exchange.request)
        sequence, index = self._add_exchange(exchange, answer)
        if exchange.response is None:
            self._awaiting_failure[exchange.id] = lambda failure: sequence.answers.__setitem__(index, failure)

    def _add_upgrade(self, upgrade: _RecordedUpgrade) -> None:
        self._upgrades.setdefault(shape(upgrade.request.path), []).append(upgrade)

    def _all_requests(self) -> list[HttpRequest]:
        self._index_all()
        return self._requests()

    def _requests(self) -> list[HttpRequest]:
        """Every recorded request: of the exchanges, then of the upgrades."""
        exchanges = [
            exchange.request
            for bucket in self._http.buckets.values()
            for sequence in bucket
            for exchange in sequence.exchanges
        ]
        return exchanges + [upgrade.request for bucket in self._upgrades.values() for upgrade in bucket]

    def _exchange_answer(self, exchange: HttpExchange, failure: str) -> Respond | Fail:
        if exchange.response is None:
            return Fail(failure)
        return Respond(exchange.response, self.options.scaled(exchange.duration))

    def _add_exchange(self, exchange: HttpExchange, answer: Respond | Fail) -> tuple[_HttpSequence, int]:
        """Add the exchange to the first sequence whose request it matches, or start one; the
        sequence, and the exchange's index in it."""
        request, matchers = exchange.request, self.options.http_matchers
        exact = self._http.exact(request)
        candidates = self._http.candidates(request, loose=False)
        if exact is not None:
            candidates = itertools.chain([(self._ignore, exact)], candidates)
        for ignore, sequence in candidates:
            if not match_request(sequence.request, request, matchers, ignore):
                sequence.exchanges.append(exchange)
                sequence.answers.append(answer)
                return sequence, len(sequence.answers) - 1
        sequence = _HttpSequence(request, [exchange], [answer])
        self._http.add(sequence)
        return sequence, 0

    # answering

    def answer_http(self, request: HttpRequest) -> HttpAnswer:
        """The recorded answer for a plain HTTP request; repeated requests get successive answers."""
        matchers = self.options.http_matchers
        exact = self._http.exact(request)
        while exact is None and self._advance():
            exact = self._http.exact(request)
        if exact is not None and not match_request(exact.request, request, matchers, self._ignore):
            while exact.served >= len(exact.answers) and self._advance():  # a later one may answer a repeat
                pass
            return self._serve(exact, request)
        self._index_all()
        for ignore, sequence in self._http.candidates(request, loose=True):
            if not match_request(sequence.request, request, matchers, ignore):
                self._note_loose(ignore, sequence.request, request, matchers)
                return self._serve(sequence, request)
        bucket = self._http.buckets.get(_http_key(request), ())
        volatile = _first_unused_alike(bucket, request, lambda sequence: not sequence.served)
        if volatile is not None:
            sequence, names = volatile
            self._journal.volatile_matches.add(f"{request.method} {request.target}: {', '.join(names)}")
            return self._serve(sequence, request)
        recorded = (sequence.request for bucket in self._http.buckets.values() for sequence in bucket)
        return self._unmatched("HTTP request", request, recorded, matchers)

    def _serve(self, sequence: _HttpSequence, live: HttpRequest) -> Respond | Fail:
        index = sequence.next_index()
        answer = sequence.answers[index]
        if isinstance(answer, Fail) and not self._indexed:  # its failure may be recorded further on
            self._index_all()
            answer = sequence.answers[index]
        self._journal.http_served += 1
        if not isinstance(answer, Respond):
            self._journal.failures_replayed += 1
            return answer
        if not self._rules.enabled:
            return answer
        found = sequence.tokens(index, self._pairs_requests)
        if not found.paired and (not found.response or self._substitutions.empty):
            return answer
        response = self._correlated(sequence.exchanges[index].request, live, answer.response, found)
        return answer if response is answer.response else replace(answer, response=response)

    def _pairs_requests(self, request_tokens: frozenset[bytes]) -> bool:
        """Whether a recorded request with these tokens is worth pairing with the live one: the
        server sent one of them back somewhere, or ``--correlate`` rules may name a value of any shape.

        A recording indexed as played pairs any request with tokens: finding whether the server
        sent one back would read the whole recording before the first answer.
        """
        if self._rules.keys or self._rules.paths:
            return True
        if not request_tokens:
            return False
        return self.source.index_as_played or not request_tokens.isdisjoint(self._tokens.sent_back())

    def _correlated(
        self,
        recorded: HttpRequest,
        live: HttpRequest,
        response: HttpResponse,
        recorded_tokens: _ExchangeTokens | None = None,
    ) -> HttpResponse:
        """The recorded `response` to `recorded` with the values the live client minted in its place."""
        if not self._rules.enabled:
            return response
        if recorded_tokens.paired if recorded_tokens else self._pairs_requests(frozenset(request_tokens(recorded))):
            pairs = pair_requests(recorded, live, self._rules)
            for old, new in self._substitutions.learn(pairs):
                self._journal.substitutions.add(f"{live.method} {live.path}: {describe_pair(old, new)}")
        return self._substitutions.apply_response(response, recorded_tokens.response if recorded_tokens else None)

    def open_websocket(self, request: HttpRequest) -> UpgradeAnswer:
        """The first unused recorded upgrade matching `request` (the last match repeats once all are used)."""
        chosen = self._first_unused_upgrade(request)
        if chosen is not None:
            if self._indexed:
                return self._open(chosen, request, partial(list, self._matching_upgrades(request, self._ignore)))
            return self._open(chosen, request, lambda: self._matching_upgrades(request, self._ignore))
        self._index_all()
        matchers = self.options.websocket_matchers
        bucket = self._upgrades.get(shape(request.path), [])
        for ignore in (self._ignore, self._loose) if bucket else ():
            matching = self._matching_upgrades(request, ignore)
            if matching:
                chosen = next((upgrade for upgrade in matching if not upgrade.uses), matching[-1])
                self._note_loose(ignore, chosen.request, request, matchers)
                return self._open(chosen, request, partial(list, matching))
        volatile = _first_unused_alike(bucket, request, lambda upgrade: not upgrade.uses)
        if volatile is None:
            candidates = (upgrade.request for bucket in self._upgrades.values() for upgrade in bucket)
            return self._unmatched("WebSocket upgrade", request, candidates, matchers)
        chosen, names = volatile
        self._journal.volatile_matches.add(f"{request.method} {request.target}: {', '.join(names)}")
        return self._open(chosen, request, lambda: [chosen])

    def _open(
        self, chosen: _RecordedUpgrade, request: HttpRequest, alike: Callable[[], list[_RecordedUpgrade]]
    ) -> UpgradeAnswer:
        """Answer `request` with the recorded upgrade `chosen`; `alike` gives the recordings its
        player may trade it for (see :class:`ConnectionPlayer`), when first needed."""
        chosen.uses += 1
        if isinstance(chosen.outcome, Fail) and not self._indexed:  # its failure may be recorded further on
            self._index_all()
        outcome = chosen.outcome
        if isinstance(outcome, Fail):
            self._journal.failures_replayed += 1
            return outcome
        if isinstance(outcome, Refused):
            self._journal.websockets_refused += 1
            return replace(outcome, response=self._correlated(chosen.request, request, outcome.response))
        self._journal.websockets_accepted += 1
        player = ConnectionPlayer(chosen, alike, self._context)
        player.upgraded(request)
        subprotocol = select_subprotocol(outcome.upgrade, request)
        return Accepted(player, subprotocol, outcome.upgrade.extensions, outcome.delay)

    def _first_unused_upgrade(self, request: HttpRequest) -> _RecordedUpgrade | None:
        """The first unused recorded upgrade that `request` matches strictly, indexing only as far
        as it is (any later one comes after it); None if there is none."""
        matchers, checked = self.options.websocket_matchers, 0
        while True:
            bucket = self._upgrades.get(shape(request.path), [])
            for upgrade in itertools.islice(bucket, checked, None):
                if not upgrade.uses and not match_request(upgrade.request, request, matchers, self._ignore):
                    return upgrade
            checked = len(bucket)
            if not self._advance():
                return None

    def _matching_upgrades(self, request: HttpRequest, ignore: Ignore) -> list[_RecordedUpgrade]:
        """Every recorded upgrade `request` matches under `ignore`, in recording order."""
        self._index_all()
        matchers = self.options.websocket_matchers
        bucket = self._upgrades.get(shape(request.path), [])
        return [upgrade for upgrade in bucket if not match_request(upgrade.request, request, matchers, ignore)]

    def _note_loose(
        self, ignore: Ignore, recorded: HttpRequest, live: HttpRequest, matchers: Sequence[RequestMatcher]
    ) -> None:
        if ignore is self._loose:
            differences = match_request(recorded, live, matchers, self._ignore)
            self._journal.loose_matches.add(f"{live.method} {live.target}: {summarize(differences)}")

    def _unmatched(
        self, kind: str, request: HttpRequest, candidates: Iterable[HttpRequest], matchers: Sequence[RequestMatcher]
    ) -> Unmatched:
        found = closest(request, candidates, matchers, self._ignore)
        what = f"{request.method} {request.target}"
        nearest = f" (closest {found[0].method} {found[0].target}: {summarize(found[1])})" if found else ""
        self._journal.unmatched.add(f"{kind} {what}{nearest}")
        return Unmatched(_not_found(kind, request, found), _unmatched_message(kind, what, found))

    def report(self) -> ReplayReport:
        self._index_all()
        journal = self._journal
        unused_exchanges = tuple(
            describe(exchange)
            for bucket in self._http.buckets.values()
            for sequence in bucket
            for exchange in sequence.exchanges[sequence.served :]
        )
        unused_connections = tuple(
            describe(upgrade.record) for bucket in self._upgrades.values() for upgrade in bucket if not upgrade.uses
        )
        return ReplayReport(
            http_served=journal.http_served,
            websockets_accepted=journal.websockets_accepted,
            websockets_refused=journal.websockets_refused,
            failures_replayed=journal.failures_replayed,
            unmatched=tuple(journal.unmatched.items),
            unmatched_count=journal.unmatched.count,
            loose_matches=tuple(journal.loose_matches.items),
            loose_match_count=journal.loose_matches.count,
            mismatches=tuple(journal.mismatches.items),
            mismatch_count=journal.mismatches.count,
            incomplete=tuple(journal.incomplete.items),
            unused_exchanges=unused_exchanges,
            unused_connections=unused_connections,
            substitutions=tuple(journal.substitutions.items),
            substitution_count=journal.substitutions.count,
            volatile_matches=tuple(journal.volatile_matches.items),
            volatile_match_count=journal.volatile_matches.count,
            out_of_order=tuple(journal.out_of_order.items),
            out_of_order_count=journal.out_of_order.count,
            cassette_error=self._cassette_error,
            cassette_warning=self._cassette_warning,
        )


_Alike = TypeVar("_Alike", "_HttpSequence", "_RecordedUpgrade")


def _first_unused_alike(
    recorded: Sequence[_Alike], live: HttpRequest, unused: Callable[[_Alike], bool]
) -> tuple[_Alike, list[str]] | None:
    """The recording whose request is `live`'s but for the values of its parameters and body
    (per-run tokens, cache-busters), with the names of those that differ: unused ones first,
    then those differing in the fewest values (a session id that matches wins over one that
    does not), then the first recorded."""
    best: tuple[tuple[bool, int, int], _Alike, list[str]] | None = None
    for position, candidate in enumerate(recorded):
        names = volatile_values(candidate.request, live)
        if names is None:
            continue
        rank = (not unused(candidate), len(names), position)
        if best is None or rank < best[0]:
            best = (rank, candidate, names)
    return None if best is None else (best[1], best[2])


def _http_key(request: HttpRequest) -> tuple[str, str]:
    return request.method.upper(), shape(request.path)


def _exact_key(request: HttpRequest) -> tuple[str, str, str, bytes]:
    return request.method.upper(), request.path, request.query, request.body


def select_subprotocol(recorded: WebSocketOpen, live: HttpRequest) -> str | None:
    """The live offered subprotocol standing where the recorded selection stood in the recorded offer.

    Clients send a fresh token each run (``jwt.<token>``) and reject an echo of the old one.
    """
    chosen = recorded.subprotocol
    if chosen is None:
        return None
    offered, live_offered = recorded.request.offered_subprotocols, live.offered_subprotocols
    if chosen in live_offered:
        return chosen
    if chosen in offered and offered.index(chosen) < len(live_offered):
        candidate = live_offered[offered.index(chosen)]
        if shape(candidate) == shape(chosen):
            return candidate
    return next((value for value in live_offered if shape(value) == shape(chosen)), None)


def _not_found(kind: str, request: HttpRequest, found: tuple[HttpRequest, list[Difference]] | None) -> HttpResponse:
    document = {
        "error": f"wsreplay: no recorded {kind} matches this request",
        "request": f"{request.method} {request.target}",
        "closest": None if found is None else f"{found[0].method} {found[0].target}",
        "differences": [] if found is None else [str(difference) for difference in found[1]],
    }
    return HttpResponse(
        404,
        "Not Found",
        headers=(("Content-Type", "application/json"),),
        body=json.dumps(document, ensure_ascii=False).encode(),
    )


def _unmatched_message(kind: str, what: str, found: tuple[HttpRequest, list[Difference]] | None) -> str:
    if found is None:
        return f"unmatched {kind} {what}: the cassette has no {kind} to compare with"
    recorded, differences = found
    return (
        f"unmatched {kind} {what}; closest recorded: {recorded.method} {recorded.target}\n"
        f"{format_differences(differences)}"
    )
