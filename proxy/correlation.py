"""Values the client mints, learned from a recording and substituted in replay. Sans-I/O.

A client that names each request with a fresh id (a ``thread_id``, a JSON-RPC ``id``, a
graphql-ws operation id) expects the server's answers to carry that id. A recording holds
the ids of the recording run; replay must send the live client's ids instead.

Learning happens on the recording alone: a *token* (a run of at least eight letters,
digits, ``-`` or ``_`` with some entropy: a uuid, hex, a long random string, a ten-digit
number) that the client sent and that reappears in what the server sent later is
*echoed*. In replay, a live client frame or request is paired with the recorded one it
matched, position by position (JSON paths, query parameters, headers, or token order in
other text); where an echoed recorded token stands opposite a different live token, the
live one replaces the recorded one in every later server frame or response.
``--correlate KEY`` adds values of any shape under a JSON key (a counter ``id``).

Nothing here knows of sockets; :mod:`wsreplay.replay` uses it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl

from wsreplay.matchers import Ignore, PathSegment
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

__all__ = [
    "TOKEN",
    "CorrelateRules",
    "EchoFinder",
    "KeyedValue",
    "Pairs",
    "RecordingEchoes",
    "Substitutions",
    "has_entropy",
    "pair_messages",
    "pair_requests",
    "request_tokens",
    "tokens",
]

TOKEN: Final = re.compile(rb"[A-Za-z0-9_-]{8,}")
"""A token: a maximal run of id characters; shorter runs are words, counters, packet types."""
_DIGIT: Final = re.compile(rb"[0-9]")
_LETTER: Final = re.compile(rb"[A-Za-z]")
_JSON_START: Final = re.compile(rb"[\[{]")
MAX_TOKENIZED_BYTES: Final = 1024 * 1024
"""Longer messages and bodies are not searched for ids: clients mint them in small messages,
and splitting 16 MiB into tokens takes seconds."""
MIN_ECHOED_BINARY: Final = 8
"""A binary client message this long or longer that the server sends back is correlated whole."""
UNPAIRED_HEADERS: Final = frozenset({"host", "sec-websocket-key", "content-length", "connection", "upgrade"})


def has_entropy(token: bytes) -> bool:
    """Whether a token looks minted: letters and digits mixed, or ten digits or more."""
    if token.isdigit():
        return len(token) >= 10
    return _DIGIT.search(token) is not None and _LETTER.search(token) is not None


def tokens(data: bytes) -> set[bytes]:
    """The minted-looking tokens in `data`; none in data longer than `MAX_TOKENIZED_BYTES`."""
    if len(data) > MAX_TOKENIZED_BYTES:
        return set()
    return {token for token in TOKEN.findall(data) if has_entropy(token)}


def request_tokens(request: HttpRequest) -> set[bytes]:
    """The minted-looking tokens a request carries in its path, query, headers and body."""
    found = tokens(request.path.encode()) | tokens(request.query.encode()) | tokens(request.body)
    for name, value in request.headers:
        if name.lower() not in UNPAIRED_HEADERS:
            found |= tokens(value.encode("latin-1", "replace"))
    return found


@dataclass(frozen=True, slots=True)
class CorrelateRules:
    """``--correlate`` entries: JSON keys (``id``) or paths (``payload.request_id``) whose values are
    correlated whatever they look like; `enabled` False turns correlation off."""

    keys: frozenset[str] = frozenset()
    paths: tuple[tuple[PathSegment, ...], ...] = ()
    enabled: bool = True

    @classmethod
    def parse(cls, entries: Iterable[str], enabled: bool = True) -> CorrelateRules:
        rules = Ignore.parse(entries)
        return cls(rules.keys, rules.paths, enabled)

    def names(self, key: str, path: tuple[PathSegment, ...]) -> bool:
        """Whether the value under `key` at `path` is correlated by a rule."""
        return key in self.keys or Ignore(paths=self.paths).skips_index(path)


NO_RULES: Final = CorrelateRules()


@dataclass(frozen=True, slots=True)
class KeyedValue:
    """A value correlated by a ``--correlate`` rule: JSON text under `key`."""

    key: str
    recorded: bytes
    live: bytes


@dataclass
class Pairs:
    """Recorded values and the live values that stand in their places."""

    tokens: dict[bytes, bytes] = field(default_factory=dict)
    keyed: list[KeyedValue] = field(default_factory=list)
    binary: dict[bytes, bytes] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.tokens or self.keyed or self.binary)

    def _token(self, recorded: bytes, live: bytes) -> None:
        if recorded != live and has_entropy(recorded):
            self.tokens.setdefault(recorded, live)

    def _text(self, recorded: bytes, live: bytes) -> bool:
        """Pair the tokens of two texts position by position; False (pairing nothing) unless they
        line up: as many tokens, and those that differ all minted-looking (not keys or words)."""
        if recorded == live:
            return True
        mine, theirs = TOKEN.findall(recorded), TOKEN.findall(live)
        if len(mine) != len(theirs):
            return False
        differing = [(a, b) for a, b in zip(mine, theirs, strict=True) if a != b]
        if not all(has_entropy(a) for a, _ in differing):
            return False
        for recorded_token, live_token in differing:
            self.tokens.setdefault(recorded_token, live_token)
        return True


def pair_messages(
    recorded: bytes, live: bytes | str, is_text: bool, rules: CorrelateRules = NO_RULES, into: Pairs | None = None
) -> Pairs:
    """Pair a recorded client message with the live one it matched: JSON by path (also after a
    short packet-type prefix such as ``42``), other text token by token where the two line up,
    binary whole."""
    pairs = Pairs() if into is None else into
    data = live.encode() if isinstance(live, str) else live
    if recorded == data:
        return pairs
    if not is_text:
        if len(recorded) >= MIN_ECHOED_BINARY:
            pairs.binary.setdefault(recorded, data)
        return pairs
    decoded = _decode_prefixed_json(recorded), _decode_prefixed_json(data)
    if decoded[0] is not None and decoded[1] is not None and decoded[0][0] == decoded[1][0]:
        _pair_json(decoded[0][1], decoded[1][1], (), rules, pairs)
    else:
        pairs._text(recorded, data)
    return pairs


def pair_requests(recorded: HttpRequest, live: HttpRequest, rules: CorrelateRules = NO_RULES) -> Pairs:
    """Pair a recorded request with the live one it matched: path, query (in order, else by name),
    headers by name, body."""
    pairs = Pairs()
    pairs._text(recorded.path.encode(), live.path.encode())
    if not pairs._text(recorded.query.encode(), live.query.encode()):
        live_query = dict(parse_qsl(live.query, keep_blank_values=True))
        for name, value in parse_qsl(recorded.query, keep_blank_values=True):
            if name in live_query:
                pairs._text(value.encode(), live_query[name].encode())
    minted_headers = [(name.lower(), value) for name, value in recorded.headers if _has_token(value)]
    if minted_headers:
        live_headers = {name.lower(): value for name, value in live.headers}
        for name, value in minted_headers:
            other = live_headers.get(name)
            if other is not None and name not in UNPAIRED_HEADERS:
                pairs._text(value.encode("latin-1", "replace"), other.encode("latin-1", "replace"))
    if recorded.body and live.body:
        pair_messages(recorded.body, live.body, True, rules, pairs)
    return pairs


def _has_token(value: str) -> bool:
    return len(value) >= 8 and any(has_entropy(token) for token in TOKEN.findall(value.encode("latin-1", "replace")))


def _decode_prefixed_json(data: bytes) -> tuple[bytes, Any] | None:
    """(prefix, value) for JSON text, or JSON after a prefix of at most 8 bytes (``42[...]``)."""
    start = _JSON_START.search(data, 0, 9)
    prefix = data[: start.start()] if start else b""
    if prefix and not prefix.isalnum():
        return None
    try:
        return prefix, json.loads(data[len(prefix) :])
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _pair_json(recorded: Any, live: Any, path: tuple[PathSegment, ...], rules: CorrelateRules, pairs: Pairs) -> None:
    if isinstance(recorded, dict) and isinstance(live, dict):
        for key, value in recorded.items():
            if key not in live:
                continue
            here = (*path, key)
            if rules.names(key, here) and _is_scalar(value) and value != live[key]:
                pairs.keyed.append(KeyedValue(key, _json_text(value), _json_text(live[key])))
            else:
                _pair_json(value, live[key], here, rules, pairs)
    elif isinstance(recorded, list) and isinstance(live, list):
        for index, (mine, theirs) in enumerate(zip(recorded, live, strict=False)):
            _pair_json(mine, theirs, (*path, index), rules, pairs)
    elif isinstance(recorded, str) and isinstance(live, str):
        pairs._text(recorded.encode(), live.encode())
    elif isinstance(recorded, int) and isinstance(live, int) and not isinstance(recorded, bool):
        pairs._token(str(recorded).encode(), str(live).encode())


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _json_text(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


class Substitutions:
    """The live values learned so far, and their application to recorded server messages.

    Each recorded value keeps the first live value it was paired with; `parent` (a
    session's substitutions under a connection's) answers what this one does not know.
    """

    def __init__(self, parent: Substitutions | None = None) -> None:
        self.parent = parent
        self.tokens: dict[bytes, bytes] = {}
        self.keyed: dict[tuple[str, bytes], bytes] = {}
        self.binary: dict[bytes, bytes] = {}

    def learn(self, pairs: Pairs, echoed: Iterable[bytes] | None = None) -> list[tuple[bytes, bytes]]:
        """Take the pairs whose recorded value is `echoed` (all when None); return the new ones."""
        wanted = None if echoed is None else set(echoed)
        learned: list[tuple[bytes, bytes]] = []
        for recorded, live in pairs.tokens.items():
            if (wanted is None or recorded in wanted) and recorded not in self.tokens:
                self.tokens[recorded] = live
                learned.append((recorded, live))
        for value in pairs.keyed:
            if (value.key, value.recorded) not in self.keyed:
                self.keyed[value.key, value.recorded] = value.live
                learned.append((value.recorded, value.live))
        for recorded, live in pairs.binary.items():
            if (wanted is None or recorded in wanted) and recorded not in self.binary:
                self.binary[recorded] = live
                learned.append((recorded, live))
        return learned

    def _chain(self) -> Iterator[Substitutions]:
        layer: Substitutions | None = self
        while layer is not None:
            yield layer
            layer = layer.parent

    def _token(self, recorded: bytes) -> bytes | None:
        for layer in self._chain():
            live = layer.tokens.get(recorded)
            if live is not None:
                return live
        return None

    def knows_any(self, recorded_tokens: Iterable[bytes]) -> bool:
        return any(self._token(token) is not None for token in recorded_tokens)

    @property
    def _knows_more_than_tokens(self) -> bool:
        return any(layer.keyed or layer.binary for layer in self._chain())

    @property
    def empty(self) -> bool:
        """Nothing learned here or in a parent."""
        return not (self.tokens or self.keyed or self.binary) and (self.parent is None or self.parent.empty)

    def apply(self, payload: bytes, recorded_tokens: Iterable[bytes] | None = None) -> bytes:
        """`payload` with every learned recorded value replaced by its live value.

        `recorded_tokens`, when given, are the echoed tokens the payload holds (from the
        recording's analysis): without any of them learned, token replacement is skipped.
        """
        if self.empty:
            return payload
        if recorded_tokens is None or self.knows_any(recorded_tokens):
            payload = TOKEN.sub(lambda match: self._token(match.group()) or match.group(), payload)
        for layer in self._chain():
            for recorded, live in layer.binary.items():
                payload = payload.replace(recorded, live)
            for (key, recorded), live in layer.keyed.items():
                pattern = rb'("' + re.escape(key.encode()) + rb'"\s*:\s*)' + re.escape(recorded) + rb"(?![\w.])"
                payload = re.sub(pattern, _after_key(live), payload)
        return payload

    def apply_response(self, response: HttpResponse, recorded_tokens: Iterable[bytes] | None = None) -> HttpResponse:
        """A recorded response with learned values replaced in its body and header values;
        `recorded_tokens` as for :meth:`apply` (the response's tokens)."""
        if self.empty:
            return response
        if recorded_tokens is not None and not (self.knows_any(recorded_tokens) or self._knows_more_than_tokens):
            return response
        headers = tuple(
            (name, self.apply(value.encode("latin-1", "replace")).decode("latin-1")) for name, value in response.headers
        )
        body = self.apply(response.body)
        if body == response.body and headers == response.headers:
            return response
        return HttpResponse(response.status, response.reason, response.http_version, _fix_length(headers, body), body)


def _after_key(live: bytes) -> Callable[[re.Match[bytes]], bytes]:
    """A replacement keeping the matched key (group 1) and putting `live` after it."""

    def replacement(match: re.Match[bytes]) -> bytes:
        return match.group(1) + live

    return replacement


def _fix_length(headers: tuple[tuple[str, str], ...], body: bytes) -> tuple[tuple[str, str], ...]:
    """Headers with Content-Length set to the length of the rewritten `body`."""
    return tuple(
        (name, str(len(body))) if name.lower() == "content-length" else (name, value) for name, value in headers
    )


def describe_pair(recorded: bytes, live: bytes) -> str:
    """``'abc…' → 'xyz…'`` for a report line."""
    return f"{_preview(recorded)} → {_preview(live)}"


def _preview(value: bytes, limit: int = 40) -> str:
    text = value.decode("utf-8", "replace")
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


class EchoFinder:
    """Learns, from a recording alone and as it streams by, what each server message echoes of
    what its client sent: in frames, in the upgrade, or in earlier HTTP requests. A value the
    server sent first is the server's own (a session id the client echoes), not the client's.

    `client_sends`, when known in advance, is every token the client side will ever send (a
    superset will do): a server message holding none of them is passed over without being
    split into tokens, which is most of the cost of a long recording.
    """

    def __init__(self, earlier: Iterable[bytes] = (), client_sends: Iterable[bytes] | None = None) -> None:
        self.sent: set[bytes] = set(earlier)
        """What the client sent first."""
        self._server: set[bytes] = set()
        self._binaries: list[bytes] = []
        needles = None if client_sends is None else self.sent.union(client_sends)
        self._needles = tuple(needles) if needles is not None and len(needles) <= MAX_NEEDLES else None

    def client_request(self, request: HttpRequest) -> None:
        self.sent |= request_tokens(request) - self._server

    def client_message(self, payload: bytes, is_text: bool) -> set[bytes]:
        """A client message; returns the tokens it is the first to send."""
        minted = tokens(payload) - self._server - self.sent
        self.sent |= minted
        if not is_text and len(payload) >= MIN_ECHOED_BINARY and len(self._binaries) < MAX_ECHOED_BINARIES:
            self._binaries.append(payload)
            minted.add(payload)
        return minted

    def server_message(self, payload: bytes) -> frozenset[bytes]:
        """A server message (or response body); returns what it echoes: tokens, and binary client
        messages it holds whole."""
        if self._needles is not None and not self._binaries:
            if not self._needles or not any(needle in payload for needle in self._needles):
                return _NOTHING
        carried = tokens(payload)
        self._server |= carried
        return frozenset((carried & self.sent).union(data for data in self._binaries if data in payload))


_NOTHING: Final[frozenset[bytes]] = frozenset()
MAX_NEEDLES: Final = 32
"""Client tokens looked for, one by one, in a server message before splitting it into tokens;
with more, splitting is cheaper."""
MAX_ECHOED_BINARIES: Final = 64
"""Binary client messages per conversation looked for in the server's later messages."""


def response_data(response: HttpResponse) -> bytes:
    """A response's header values and body, as one text to look for echoes in."""
    values = b"\n".join(value.encode("latin-1", "replace") for _, value in response.headers)
    return values + b"\n" + response.body


@dataclass
class ClientSends:
    """The tokens a recording's clients send: in HTTP requests, and per WebSocket connection
    (its upgrade and its frames). Gathered in a first pass, they let :class:`RecordingEchoes`
    pass over the server messages that hold none of them."""

    http: set[bytes] = field(default_factory=set)
    connections: dict[int, set[bytes]] = field(default_factory=dict)
    binaries: set[int] = field(default_factory=set)
    """The connections whose client sent a binary message long enough to be echoed whole."""

    def add(self, record: Record) -> None:
        match record:
            case HttpExchange(request=request):
                self.http |= request_tokens(request)
            case WebSocketOpen(id=record_id, request=request):
                self.connections.setdefault(record_id, set()).update(request_tokens(request))
            case WebSocketFrame(from_client=True, id=record_id, payload=payload):
                self.connections.setdefault(record_id, set()).update(tokens(payload))
                if not record.is_text and len(payload) >= MIN_ECHOED_BINARY:
                    self.binaries.add(record_id)

    def echo_possible(self, record_id: int) -> bool:
        """Whether connection `record_id`'s server could echo anything its client side sent."""
        return bool(self.http or self.connections.get(record_id) or record_id in self.binaries)


class RecordingEchoes:
    """Streams a cassette's records and names, for each server message or response, the
    client-minted values it carries: where replay will put the live client's values.

    Given `client_sends` (see :class:`ClientSends`), it finds the same, faster."""

    def __init__(self, client_sends: ClientSends | None = None) -> None:
        self._client_sends = client_sends
        self._http = EchoFinder(client_sends=None if client_sends is None else client_sends.http)
        self._connections: dict[int, EchoFinder] = {}

    def _finder(self, record_id: int) -> EchoFinder | None:
        """A finder for connection `record_id`; None when its server can echo nothing."""
        if self._client_sends is None:
            return EchoFinder(self._http.sent)
        if not self._http.sent and not self._client_sends.echo_possible(record_id):
            return None
        own = self._client_sends.connections.get(record_id, set())
        return EchoFinder(self._http.sent, self._client_sends.http | own)

    def server_frame(self, record_id: int, payload: bytes) -> frozenset[bytes]:
        """:meth:`echoed` for a server frame of connection `record_id`, from its payload."""
        finder = self._connections.get(record_id)
        return _NOTHING if finder is None else finder.server_message(payload)

    def echoed(self, record: Record) -> frozenset[bytes]:
        if type(record) is WebSocketFrame and not record.from_client:  # the most frequent first
            return self.server_frame(record.id, record.payload)
        match record:
            case WebSocketFrame(id=record_id) if record_id in self._connections:
                finder = self._connections[record_id]
                if not record.from_client:
                    return finder.server_message(record.payload)
                finder.client_message(record.payload, record.is_text)
            case HttpExchange(request=request, response=response):
                self._http.client_request(request)
                return self._http.server_message(response_data(response)) if response else _NOTHING
            case WebSocketOpen(request=request, response=response):
                opened = self._finder(record.id)
                if opened is None:
                    return _NOTHING
                opened.client_request(request)
                if not record.accepted:
                    return opened.server_message(response_data(response))
                self._connections[record.id] = opened
            case WebSocketClose() | ConnectionFailure():
                self._connections.pop(record.id, None)
        return _NOTHING


def preview(value: bytes, limit: int | None = 24) -> str:
    """A correlated value as text, at most `limit` characters (None: whole)."""
    text = value.decode("utf-8", "replace") if value.isascii() else f"<{len(value)} bytes>"
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"
