"""Matching live traffic against recorded traffic, ignoring what changes on every run.

Two requests (or frames) match when they differ only in volatile values: timestamps,
uuids, per-run ids, a JWT's ``jti``/``iat``/``exp``. Comparisons return a list of
:class:`Difference` (empty when they match) so a mismatch can be shown as a readable,
JSON-aware diff. Request matchers are small functions composed into lists, like
vcrpy's; none of this knows about sockets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qsl

from wsreplay.jwt import JWT_PATTERN, decode_unverified
from wsreplay.records import HttpRequest, WebSocketFrame

__all__ = [
    "DEFAULT_HTTP_MATCHERS",
    "DEFAULT_WEBSOCKET_MATCHERS",
    "MISSING",
    "Difference",
    "Ignore",
    "RequestMatcher",
    "VOLATILE_KEYS",
    "body",
    "closest",
    "compare_json",
    "format_differences",
    "headers",
    "index_key",
    "is_volatile_key",
    "is_volatile_value",
    "match_frame",
    "match_message",
    "match_request",
    "method",
    "path",
    "query",
    "shape",
    "subprotocols",
    "summarize",
    "volatile_values",
]

VOLATILE_KEYS: Final = frozenset({"timestamp", "id", "jti", "iat", "exp", "nbf", "nonce", "token"})
"""Keys whose values are new on every run; so is any key ending in ``_id`` (``thread_id``...)."""

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_DATETIME = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
_VOLATILE_PART = re.compile(
    rf"(?P<jwt>{JWT_PATTERN.pattern})"
    rf"|(?P<uuid>{_UUID})"
    rf"|(?P<datetime>{_DATETIME})"
    r"|(?P<token>(?<![A-Za-z0-9_-])(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{40,}={0,2})"
    r"|(?P<hex>(?<![0-9a-fA-F])(?=[a-fA-F]*\d)[0-9a-fA-F]{16,}(?![0-9a-fA-F]))"
    r"|(?P<epoch>(?<!\d)(?:\d{10}|\d{13})(?:\.\d+)?(?!\d))"
)
_EPOCH_SECONDS = (1e9, 1e10)
_EPOCH_MILLISECONDS = (1e12, 1e13)
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_DIGITS = re.compile(r"\d+")
_PATH_SEGMENT = re.compile(r"\[(\*|\d+)\]|([^.\[\]]+)")
_PREVIEW_CHARS = 72
MAX_SHAPED_CHARS: Final = 64 * 1024
"""Longer strings are compared as they are: masking volatile parts costs ~0.4 s per MB."""


class _Missing:
    """Stands for a value absent on one side of a comparison."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

PathSegment: TypeAlias = str | int


@dataclass(frozen=True, slots=True)
class Difference:
    """One place where the received value is not the expected (recorded) one."""

    path: str
    expected: Any
    received: Any

    def __str__(self) -> str:
        return f"{self.path}: expected {_render(self.expected)}, received {_render(self.received)}"


def _render(value: Any) -> str:
    if value is MISSING:
        return "nothing"
    text = value if isinstance(value, _Described) else json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 3] + "..."


class _Described(str):
    """A value already written for people (``a text frame``), shown without quotes."""


# --- volatility -------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _normalized_key(key: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", key).lower()


def is_volatile_key(key: str) -> bool:
    """A key such as ``timestamp``, ``thread_id`` or ``requestId`` whose value changes per run."""
    normalized = _normalized_key(key)
    return normalized in VOLATILE_KEYS or normalized.endswith("_id")


def _is_epoch(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    low, high = _EPOCH_MILLISECONDS if value >= _EPOCH_MILLISECONDS[0] else _EPOCH_SECONDS
    return low <= value < high


@lru_cache(maxsize=4096)
def shape(text: str) -> str:
    """`text` with its volatile parts (JWTs, uuids, datetimes, tokens, epochs) as placeholders."""
    return _VOLATILE_PART.sub(lambda match: f"<{match.lastgroup}>", text)


def is_volatile_value(value: Any) -> bool:
    """A uuid, ISO datetime, epoch timestamp, JWT or opaque token, alone."""
    if isinstance(value, str):
        return _VOLATILE_PART.fullmatch(value) is not None
    return _is_epoch(value)


def _jwt_claims(value: str) -> dict[str, Any] | None:
    if not JWT_PATTERN.fullmatch(value):
        return None
    try:
        return decode_unverified(value)[1]
    except ValueError:
        return None


# --- ignore rules -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ignore:
    """User ``--ignore`` entries: key names (``session``) and paths (``payload.items[*].sku``).

    `digits_in_text` also ignores digits inside strings that are not just a number
    (``e2e-<pid>@example.test``): the replay's looser second pass when nothing matches otherwise.
    """

    keys: frozenset[str] = frozenset()
    paths: tuple[tuple[PathSegment, ...], ...] = ()
    digits_in_text: bool = False

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Ignore:
        keys: set[str] = set()
        paths: list[tuple[PathSegment, ...]] = []
        for entry in entries:
            entry = entry.strip().removeprefix("$").lstrip(".")
            if not entry:
                continue
            if "." in entry or "[" in entry or entry == "*":
                paths.append(tuple(_parse_segment(m) for m in _PATH_SEGMENT.finditer(entry)))
            else:
                keys.add(entry)
        return cls(frozenset(keys), tuple(paths))

    def skips(self, key: str, path: tuple[PathSegment, ...]) -> bool:
        """Whether the value under `key` at `path` (ending with `key`) is ignored, or volatile."""
        if key in self.keys or is_volatile_key(key):
            return True
        return any(_path_matches(pattern, path) for pattern in self.paths)

    def skips_index(self, path: tuple[PathSegment, ...]) -> bool:
        return any(_path_matches(pattern, path) for pattern in self.paths)


def _parse_segment(match: re.Match[str]) -> PathSegment:
    index, key = match.groups()
    if index is None:
        return key
    return "*" if index == "*" else int(index)


def _path_matches(pattern: tuple[PathSegment, ...], path: tuple[PathSegment, ...]) -> bool:
    if len(pattern) != len(path):
        return False
    return all(want == "*" or want == got for want, got in zip(pattern, path, strict=True))


NO_IGNORE: Final = Ignore()


def _as_ignore(ignore: Ignore | Iterable[str]) -> Ignore:
    return ignore if isinstance(ignore, Ignore) else Ignore.parse(ignore)


# --- JSON comparison --------------------------------------------------------------


def _render_path(root: str, path: tuple[PathSegment, ...]) -> str:
    parts = [root]
    for segment in path:
        parts.append(f"[{segment}]" if isinstance(segment, int) else f".{segment}")
    return "".join(parts)


def compare_json(
    expected: Any, received: Any, ignore: Ignore | Iterable[str] = NO_IGNORE, *, root: str = "$"
) -> list[Difference]:
    """Differences between two decoded JSON values, volatile keys and values ignored."""
    differences: list[Difference] = []
    _compare(expected, received, _as_ignore(ignore), root, (), differences)
    return differences


def _compare(
    expected: Any,
    received: Any,
    ignore: Ignore,
    root: str,
    path: tuple[PathSegment, ...],
    out: list[Difference],
) -> None:
    if isinstance(expected, dict) and isinstance(received, dict):
        _compare_objects(expected, received, ignore, root, path, out)
    elif isinstance(expected, list) and isinstance(received, list):
        _compare_arrays(expected, received, ignore, root, path, out)
    elif isinstance(expected, str) and isinstance(received, str):
        _compare_strings(expected, received, ignore, root, path, out)
    elif not _scalars_equal(expected, received):
        out.append(Difference(_render_path(root, path), expected, received))


def _compare_objects(
    expected: dict[str, Any],
    received: dict[str, Any],
    ignore: Ignore,
    root: str,
    path: tuple[PathSegment, ...],
    out: list[Difference],
) -> None:
    for key, want in expected.items():
        here = (*path, key)
        if ignore.skips(key, here):
            continue
        if key in received:
            _compare(want, received[key], ignore, root, here, out)
        elif not is_volatile_value(want):
            out.append(Difference(_render_path(root, here), want, MISSING))
    for key, got in received.items():
        here = (*path, key)
        if key not in expected and not ignore.skips(key, here) and not is_volatile_value(got):
            out.append(Difference(_render_path(root, here), MISSING, got))


def _compare_arrays(
    expected: list[Any],
    received: list[Any],
    ignore: Ignore,
    root: str,
    path: tuple[PathSegment, ...],
    out: list[Difference],
) -> None:
    for index in range(max(len(expected), len(received))):
        here = (*path, index)
        if ignore.skips_index(here):
            continue
        want = expected[index] if index < len(expected) else MISSING
        got = received[index] if index < len(received) else MISSING
        if want is MISSING or got is MISSING:
            out.append(Difference(_render_path(root, here), want, got))
        else:
            _compare(want, got, ignore, root, here, out)


def _compare_strings(
    expected: str, received: str, ignore: Ignore, root: str, path: tuple[PathSegment, ...], out: list[Difference]
) -> None:
    if expected == received:
        return
    if max(len(expected), len(received)) > MAX_SHAPED_CHARS:
        out.append(Difference(_render_path(root, path), expected, received))
        return
    want_claims, got_claims = _jwt_claims(expected), _jwt_claims(received)
    if want_claims is not None and got_claims is not None:
        _compare_objects(want_claims, got_claims, ignore, _render_path(root, path) + "<jwt>", (), out)
    elif shape(expected) != shape(received) and not (
        ignore.digits_in_text and not received.isdigit() and _without_digits(expected) == _without_digits(received)
    ):
        out.append(Difference(_render_path(root, path), expected, received))


def _without_digits(text: str) -> str:
    return _DIGITS.sub("0", shape(text))


def _scalars_equal(expected: Any, received: Any) -> bool:
    if isinstance(expected, bool) or isinstance(received, bool):
        return expected is received
    if isinstance(expected, int | float) and isinstance(received, int | float):
        return expected == received or (_is_epoch(expected) and _is_epoch(received))
    return type(expected) is type(received) and expected == received


def format_differences(differences: Sequence[Difference], limit: int = 10, indent: str = "  ") -> str:
    """One line per difference (``path: expected X, received Y``), at most `limit` of them."""
    lines = [f"{indent}{difference}" for difference in differences[:limit]]
    if len(differences) > limit:
        lines.append(f"{indent}... and {len(differences) - limit} more")
    return "\n".join(lines)


def summarize(differences: Sequence[Difference]) -> str:
    """The first difference on one line, with a count of the others."""
    if not differences:
        return "no differences"
    more = f" (+{len(differences) - 1} more)" if len(differences) > 1 else ""
    return f"{differences[0]}{more}"


# --- frames -----------------------------------------------------------------------


_MAY_BE_JSON: Final = (
    re.compile(rb'[ \t\n\r]*[-{\["0-9tfn\x00\xef\xfe\xff]'),
    re.compile(r'[ \t\n\r]*[-{\["0-9tfn]'),
)
"""What a JSON text can start with, as bytes (in UTF-8, with a BOM, in UTF-16 or 32, which
``json.loads`` reads too) and as str: other texts are not parsed only to be refused."""


def _decode_json(payload: bytes | str) -> tuple[bool, Any]:
    if not _MAY_BE_JSON[isinstance(payload, str)].match(payload):  # type: ignore[arg-type]
        return False, None
    try:
        return True, json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False, None


def _kind(is_text: bool) -> _Described:
    return _Described("a text frame" if is_text else "a binary frame")


def _binary(payload: bytes) -> _Described:
    more = "..." if len(payload) > 16 else ""
    return _Described(f"{len(payload)} bytes {payload[:16].hex(' ')}{more}")


def match_frame(
    recorded: WebSocketFrame, is_text: bool, payload: bytes | str, ignore: Ignore | Iterable[str] = NO_IGNORE
) -> list[Difference]:
    """Differences between a recorded client frame and a live one (text vs binary, JSON-aware)."""
    return match_message(recorded.is_text, recorded.payload, is_text, payload, ignore)


def match_message(
    expected_is_text: bool,
    expected: bytes,
    is_text: bool,
    received: bytes | str,
    ignore: Ignore | Iterable[str] = NO_IGNORE,
) -> list[Difference]:
    """Differences between two WebSocket messages (text vs binary, JSON-aware)."""
    if expected_is_text != is_text:
        return [Difference("frame type", _kind(expected_is_text), _kind(is_text))]
    data = received.encode("utf-8", "surrogatepass") if isinstance(received, str) else received
    if data == expected:  # the same bytes: nothing to parse and compare (a big JSON message costs a memcmp)
        return []
    if not is_text:
        return [Difference("$", _binary(expected), _binary(data))]
    return _compare_text(expected, received, _as_ignore(ignore), "$")


def _compare_text(expected: bytes | str, received: bytes | str, ignore: Ignore, root: str) -> list[Difference]:
    want_ok, want = _decode_json(expected)
    got_ok, got = _decode_json(received)
    if want_ok and got_ok:
        return compare_json(want, got, ignore, root=root)
    want_text = expected.decode("utf-8", "replace") if isinstance(expected, bytes) else expected
    got_text = received.decode("utf-8", "replace") if isinstance(received, bytes) else received
    out: list[Difference] = []
    _compare_strings(want_text, got_text, ignore, root, (), out)
    return out


# --- requests ---------------------------------------------------------------------

RequestMatcher: TypeAlias = Callable[[HttpRequest, HttpRequest, Ignore], list[Difference]]
"""Compares a recorded request with a live one; returns the differences (empty: match)."""


def method(recorded: HttpRequest, live: HttpRequest, ignore: Ignore) -> list[Difference]:
    if recorded.method.upper() == live.method.upper():
        return []
    return [Difference("method", recorded.method, live.method)]


def path(recorded: HttpRequest, live: HttpRequest, ignore: Ignore) -> list[Difference]:
    if recorded.path == live.path or shape(recorded.path) == shape(live.path):
        return []
    return [Difference("path", recorded.path, live.path)]


def _query_object(query: str) -> dict[str, Any]:
    values: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        values.setdefault(key, []).append(value)
    return {key: items[0] if len(items) == 1 else items for key, items in values.items()}


def query(recorded: HttpRequest, live: HttpRequest, ignore: Ignore) -> list[Difference]:
    """Query parameters by name, volatile ones (``token``, ids...) and values ignored."""
    if recorded.query == live.query:
        return []
    return compare_json(_query_object(recorded.query), _query_object(live.query), ignore, root="query")


def body(recorded: HttpRequest, live: HttpRequest, ignore: Ignore) -> list[Difference]:
    """Bodies as JSON when both are JSON, as forms when both are forms, else as text or bytes."""
    if recorded.body == live.body:
        return []
    if _is_form(recorded) and _is_form(live):
        expected, received = (_query_object(r.body.decode("latin-1")) for r in (recorded, live))
        return compare_json(expected, received, ignore, root="body")
    try:
        recorded.body.decode("utf-8")
        live.body.decode("utf-8")
    except UnicodeDecodeError:
        return [Difference("body", _binary(recorded.body), _binary(live.body))]
    return _compare_text(recorded.body, live.body, ignore, "body")


def _is_form(request: HttpRequest) -> bool:
    return (request.header("content-type") or "").startswith("application/x-www-form-urlencoded")


def subprotocols(recorded: HttpRequest, live: HttpRequest, ignore: Ignore) -> list[Difference]:
    """Offered WebSocket subprotocols; token-bearing values compare by shape."""
    offered, live_offered = list(recorded.offered_subprotocols), list(live.offered_subprotocols)
    if offered == live_offered:
        return []
    return compare_json(offered, live_offered, ignore, root="subprotocols")


def headers(*names: str) -> RequestMatcher:
    """A matcher for the named headers (not matched by default), values compared by shape."""

    def match(recorded: HttpRequest, live: HttpRequest, ignore: Ignore) -> list[Difference]:
        expected = {name: recorded.header(name) for name in names}
        received = {name: live.header(name) for name in names}
        return compare_json(expected, received, ignore, root="headers")

    return match


# --- requests alike but for their values -------------------------------------------


def _skeleton(value: Any) -> Any:
    """A decoded JSON value's structure: keys, lengths and types, not values."""
    if isinstance(value, dict):
        return {key: _skeleton(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_skeleton(item) for item in value]
    return type(value).__name__


_OPAQUE = re.compile(r"[A-Za-z0-9_.~+/=:-]{4,}")


def _opaque(value: Any) -> str | None:
    """`value` as text if it could be a per-run token (no spaces, no @, four characters or more)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value)
    return text if _OPAQUE.fullmatch(text) else None


def _both_opaque(recorded: Any, live: Any) -> bool:
    """Two values that could be two runs' tokens: opaque, and as long as each other or both with digits."""
    mine, theirs = _opaque(recorded), _opaque(live)
    if mine is None or theirs is None:
        return False
    return len(mine) == len(theirs) or (_DIGITS.search(mine) is not None and _DIGITS.search(theirs) is not None)


def _differing_leaves(recorded: Any, live: Any, path: str, out: list[str]) -> bool:
    """Add the paths of the leaves that differ to `out`; False if one differs but is not opaque."""
    if isinstance(recorded, dict):
        return all(_differing_leaves(value, live[key], f"{path}.{key}", out) for key, value in recorded.items())
    if isinstance(recorded, list):
        pairs = enumerate(zip(recorded, live, strict=True))
        return all(_differing_leaves(mine, theirs, f"{path}[{index}]", out) for index, (mine, theirs) in pairs)
    if recorded == live:
        return True
    out.append(path)
    return _both_opaque(recorded, live)


def volatile_values(recorded: HttpRequest, live: HttpRequest) -> list[str] | None:
    """For two requests with the same method, path shape, query parameter names and body shape,
    the names of the query parameters and body fields whose values differ; else None. Values
    that differ must look like tokens (no spaces, no ``@``; as long as each other or with digits).

    The last resort of replay for per-run values that look like nothing volatile (a
    cache-buster ``t=aoeymp5p``, a nonce, a request signature).
    """
    if method(recorded, live, NO_IGNORE) or path(recorded, live, NO_IGNORE):
        return None
    mine, theirs = parse_qsl(recorded.query, keep_blank_values=True), parse_qsl(live.query, keep_blank_values=True)
    if sorted(name for name, _ in mine) != sorted(name for name, _ in theirs):
        return None
    names: list[str] = []
    if not _differing_leaves(dict(sorted(mine)), dict(sorted(theirs)), "query", names):
        return None
    if recorded.body == live.body:
        return names
    decoded_mine, decoded_theirs = _decode_json(recorded.body), _decode_json(live.body)
    if not (decoded_mine[0] and decoded_theirs[0]) and _is_form(recorded) and _is_form(live):
        decoded_mine, decoded_theirs = (
            (True, dict(parse_qsl(r.body.decode("latin-1"), keep_blank_values=True))) for r in (recorded, live)
        )
    if not (decoded_mine[0] and decoded_theirs[0]) or _skeleton(decoded_mine[1]) != _skeleton(decoded_theirs[1]):
        return None
    return names if _differing_leaves(decoded_mine[1], decoded_theirs[1], "body", names) else None


# --- index keys -------------------------------------------------------------------
#
# A matcher's index key is what it looks at in one request, with what it ignores left
# out: two requests it finds no difference between have equal keys. Recorded requests
# can then be grouped by key and a live request compared only with its key's group.

RequestKey: TypeAlias = Callable[[HttpRequest, Ignore], Hashable]


def _json_key(value: Any, ignore: Ignore, path: tuple[PathSegment, ...] = ()) -> Hashable:
    """Equal for any two decoded JSON values `compare_json` finds no difference between."""
    if isinstance(value, dict):
        return frozenset(
            (key, _json_key(item, ignore, (*path, key)))
            for key, item in value.items()
            if not ignore.skips(key, (*path, key)) and not is_volatile_value(item)
        )
    if isinstance(value, list):
        if ignore.paths:  # an ignored index may be missing on one side: only the type is certain
            return list
        return tuple(_json_key(item, ignore, (*path, index)) for index, item in enumerate(value))
    if isinstance(value, str):
        return _string_key(value, ignore)
    if isinstance(value, bool):
        return (bool, value)
    if isinstance(value, int | float) and _is_epoch(value):
        return "<epoch>"
    return value


def _string_key(text: str, ignore: Ignore) -> str:
    if len(text) > MAX_SHAPED_CHARS:
        return text
    return _without_digits(text) if ignore.digits_in_text else shape(text)


def _method_key(request: HttpRequest, ignore: Ignore) -> Hashable:
    return request.method.upper()


def _path_key(request: HttpRequest, ignore: Ignore) -> Hashable:
    return shape(request.path)


def _query_key(request: HttpRequest, ignore: Ignore) -> Hashable:
    return _json_key(_query_object(request.query), ignore)


def _body_key(request: HttpRequest, ignore: Ignore) -> Hashable:
    """Exact but for one case: a form and a body that is not one can still match as texts."""
    if _is_form(request):
        return ("form", _json_key(_query_object(request.body.decode("latin-1")), ignore))
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return ("bytes", request.body)
    is_json, value = _decode_json(text)
    return ("json", _json_key(value, ignore)) if is_json else ("text", _string_key(text, ignore))


def _subprotocols_key(request: HttpRequest, ignore: Ignore) -> Hashable:
    return _json_key(list(request.offered_subprotocols), ignore)


_INDEX_KEYS: Final[dict[RequestMatcher, RequestKey]] = {
    method: _method_key,
    path: _path_key,
    query: _query_key,
    body: _body_key,
    subprotocols: _subprotocols_key,
}


def index_key(request: HttpRequest, matchers: Sequence[RequestMatcher], ignore: Ignore = NO_IGNORE) -> Hashable:
    """What `matchers` look at in `request`: requests with different keys do not match (but
    for a form against a body that is not one). Matchers without a key (``headers(...)``,
    custom ones) add nothing to it, so their requests share a key and are compared."""
    return tuple(_INDEX_KEYS[matcher](request, ignore) for matcher in matchers if matcher in _INDEX_KEYS)


DEFAULT_HTTP_MATCHERS: Final[tuple[RequestMatcher, ...]] = (method, path, query, body)
DEFAULT_WEBSOCKET_MATCHERS: Final[tuple[RequestMatcher, ...]] = (path, query, subprotocols)


def match_request(
    recorded: HttpRequest, live: HttpRequest, matchers: Sequence[RequestMatcher], ignore: Ignore = NO_IGNORE
) -> list[Difference]:
    """All differences the matchers find (empty: the requests match)."""
    return [difference for matcher in matchers for difference in matcher(recorded, live, ignore)]


def closest(
    live: HttpRequest,
    candidates: Iterable[HttpRequest],
    matchers: Sequence[RequestMatcher],
    ignore: Ignore = NO_IGNORE,
) -> tuple[HttpRequest, list[Difference]] | None:
    """The recorded request failing the fewest matchers (then with fewest differences)."""
    best: tuple[tuple[int, int], HttpRequest, list[Difference]] | None = None
    for candidate in candidates:
        per_matcher = [matcher(candidate, live, ignore) for matcher in matchers]
        differences = [difference for found in per_matcher for difference in found]
        rank = (sum(1 for found in per_matcher if found), len(differences))
        if best is None or rank < best[0]:
            best = (rank, candidate, differences)
    return None if best is None else (best[1], best[2])
