"""Secret redaction for cassettes: rules, a stateful redactor, and the walk over a record.

A :class:`Redactor` replaces every secret in a record with a stable placeholder: one
secret gets one placeholder across the whole cassette, so a token first seen in a
login response and later in a WebSocket's Authorization header still matches. JWTs
keep their shape (header and claims unchanged, signature replaced), so a redacted
cassette still hands clients well-formed tokens. Nothing here does I/O.

The walk (:func:`map_record`) is shared with :mod:`~wsreplay.scan`: it finds the places in a
record where secrets live and hands each to a :class:`Visitor`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any, Protocol
from urllib.parse import quote, unquote

from mitmproxy.net import encoding

from wsreplay.cassette import Cassette
from wsreplay.jwt import JWT_PATTERN
from wsreplay.records import (
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

__all__ = [
    "DEFAULT_HEADERS",
    "SECRET_WORDS",
    "RedactionRules",
    "Redactor",
    "SecretSigns",
    "Visitor",
    "has_jwt",
    "is_placeholder",
    "is_redacted_jwt",
    "map_metadata",
    "map_record",
    "name_says_secret",
    "placeholder_signature",
    "redact_cassette",
    "sub_jwts",
]

DEFAULT_HEADERS = ("Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie")
SECRET_WORDS = frozenset(
    {"key", "token", "secret", "password", "passwd", "passphrase", "pwd", "apikey", "credential", "credentials"}
)
EXEMPT_HEADERS = ("Sec-WebSocket-Key",)
"""Named like a secret but only a handshake nonce."""

SCHEME_HEADERS = frozenset({"authorization", "proxy-authorization"})
MIN_KNOWN_SECRET = 8
"""Shorter secrets are replaced only where they are named, never inside other text."""
REMEMBERED_FIELD_NAMES = 4096
"""Field names whose verdict (secret or not) rules remember, at most."""

PLACEHOLDER = re.compile(r"<redacted:[a-z]+-\d+>")
SIGNATURE_PREFIX = b"wsreplay-redacted-"
WRAPPED_JWT = re.compile(r"(?<![A-Za-z0-9_-])ZXlK[A-Za-z0-9_-]+={0,2}")
"""A JWT that is itself base64url-encoded, as in the subprotocol ``jwt.<base64url JWT>``."""

_ASCII_SPACES = frozenset(bytes([code]) for code in range(128) if chr(code).isspace())
"""The ASCII characters `str.lstrip` strips."""
_LEADING_SPACE = re.compile(b"[" + re.escape(b"".join(sorted(_ASCII_SPACES))) + b"]*")
_JSON_ESCAPED = re.compile(r'["\\/\x00-\x1f]')
"""Characters a JSON encoder may write as an escape other than \\u."""
_SQUASHED_WORD = 5
"""Secret words this long are found even split (`pass_word`); shorter ones only as a word of their own."""
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_COOKIE = re.compile(r"(^|;)(\s*)([^=;]+)=([^;]*)")
_JSON = json.JSONDecoder()
_ESCAPE_OR_JWT = re.compile(rb"\\u|eyj|zxlk")
"""Matched on a lowered raw JSON text: a \\u escape (which could hide a name or a JWT), a JWT's beginning."""
_JSON_STYLES: tuple[dict[str, Any], ...] = tuple(
    {**layout, "ensure_ascii": ascii_only}
    for layout in ({"separators": (",", ":")}, {}, {"indent": 2})
    for ascii_only in (True, False)
)


# --- rules ----------------------------------------------------------------------


def name_says_secret(name: str, words: frozenset[str]) -> bool:
    """True if the name's last word is a secret word (`X-E2E-Bypass-Key`, `apiKey`,
    `access_token`), or it ends in a long one (`accesstoken`); `token_type` is not."""
    parts = [part.lower() for part in _WORDS.findall(name)]
    squashed = "".join(parts)
    return bool(parts) and (parts[-1] in words or any(len(w) >= _SQUASHED_WORD and squashed.endswith(w) for w in words))


def _matches(name: str, patterns: Iterable[str]) -> bool:
    lowered = name.lower()
    return any(fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


@dataclass(frozen=True, slots=True)
class RedactionRules:
    """Which headers and fields hold secrets. Names and glob patterns, case-insensitive.

    `fields` name JSON members, query parameters and form fields alike. Besides the
    listed names, any name whose last word is one of `secret_words` is a secret.
    """

    headers: tuple[str, ...] = DEFAULT_HEADERS
    fields: tuple[str, ...] = ()
    secret_words: frozenset[str] = SECRET_WORDS
    exempt_headers: tuple[str, ...] = EXEMPT_HEADERS
    _field_verdicts: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def extended(self, headers: Iterable[str] = (), fields: Iterable[str] = ()) -> RedactionRules:
        """These rules plus more header and field names or patterns (e.g. `X-Internal-*`)."""
        return replace(self, headers=(*self.headers, *headers), fields=(*self.fields, *fields))

    def header_is_secret(self, name: str) -> bool:
        if _matches(name, self.exempt_headers):
            return False
        return _matches(name, self.headers) or name_says_secret(name, self.secret_words)

    def field_is_secret(self, name: str) -> bool:
        verdict = self._field_verdicts.get(name)
        if verdict is None:
            if len(self._field_verdicts) >= REMEMBERED_FIELD_NAMES:
                self._field_verdicts.clear()
            verdict = _matches(name, self.fields) or name_says_secret(name, self.secret_words)
            self._field_verdicts[name] = verdict
        return verdict


# --- placeholders and JWTs ------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(segment: str) -> bytes | None:
    unpadded = segment.rstrip("=")
    try:
        return base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except (binascii.Error, ValueError):
        return None


def is_placeholder(value: str) -> bool:
    return PLACEHOLDER.fullmatch(value) is not None


def is_redacted_jwt(token: str) -> bool:
    """True for a JWT whose signature is one of our placeholders."""
    signature = _unb64url(token.rpartition(".")[2])
    return signature is not None and signature.startswith(SIGNATURE_PREFIX)


def placeholder_signature(number: int) -> str:
    return _b64url(SIGNATURE_PREFIX + str(number).encode("ascii"))


def _unwrap(encoded: str) -> str | None:
    decoded = _unb64url(encoded)
    if decoded is None or not decoded.isascii():
        return None
    token = decoded.decode("ascii")
    return token if JWT_PATTERN.fullmatch(token) else None


def _rewrap(encoded: str, replace_jwt: Callable[[str], str]) -> str:
    token = _unwrap(encoded)
    if token is None:
        return encoded
    new = replace_jwt(token)
    if new == token:
        return encoded
    wrapped = base64.urlsafe_b64encode(new.encode("ascii")).decode("ascii")
    return wrapped if encoded.endswith("=") else wrapped.rstrip("=")


def has_jwt(text: str) -> bool:
    return JWT_PATTERN.search(text) is not None or any(_unwrap(m.group()) for m in WRAPPED_JWT.finditer(text))


def sub_jwts(text: str, replace_jwt: Callable[[str], str]) -> str:
    """`text` with every JWT, plain or base64url-wrapped, replaced by `replace_jwt(token)`."""
    if "eyJ" in text:
        text = JWT_PATTERN.sub(lambda match: replace_jwt(match.group()), text)
    if "ZXlK" in text:
        text = WRAPPED_JWT.sub(lambda match: _rewrap(match.group(), replace_jwt), text)
    return text


# --- the walk over a record -----------------------------------------------------


class Visitor(Protocol):
    """Told about every place in a record that may hold a secret; returns its new value."""

    def secret(self, value: str, where: str, strict: bool) -> str:
        """A value in a secret position; `strict` when the position never holds anything else
        (a named header, a cookie, credentials), not when it is a field with a secret name."""
        ...

    def text(self, value: str, where: str) -> str:
        """Free text that may embed JWTs or secrets seen elsewhere."""
        ...


def map_record(record: Record, rules: RedactionRules, visitor: Visitor) -> Record:
    """The record with every secret-bearing value replaced by what `visitor` returns."""
    walk = _Walk(rules, visitor)
    match record:
        case HttpExchange():
            request = walk.request(record.request, "request")
            response = None if record.response is None else walk.response(record.response, "response")
            return replace(record, request=request, response=response)
        case WebSocketOpen():
            return replace(
                record,
                request=walk.request(record.request, "upgrade request"),
                response=walk.response(record.response, "upgrade response"),
            )
        case WebSocketFrame():
            where = f"{record.side} frame"
            return replace(record, payload=walk.payload(record.payload, where, parse_json=record.is_text))
        case WebSocketClose():
            return replace(record, reason=visitor.text(record.reason, "close reason"))
        case ConnectionFailure():
            return replace(record, message=visitor.text(record.message, "connection failure"))
    return record


def map_metadata(metadata: dict[str, Any], rules: RedactionRules, visitor: Visitor) -> dict[str, Any]:
    """The cassette header's metadata with every secret-bearing value replaced by what `visitor` returns."""
    return _Walk(rules, visitor).json(metadata, "$", "header metadata")


@dataclass(frozen=True, slots=True)
class _Walk:
    rules: RedactionRules
    visitor: Visitor

    def request(self, request: HttpRequest, side: str) -> HttpRequest:
        body = self.body(request.body, request.headers, f"{side} body")
        return replace(
            request,
            path=self.visitor.text(request.path, f"{side} path"),
            query=self.params(request.query, f"{side} query"),
            headers=_fix_length(self.headers(request.headers, side), request.body, body),
            body=body,
        )

    def response(self, response: HttpResponse, side: str) -> HttpResponse:
        body = self.body(response.body, response.headers, f"{side} body")
        headers = _fix_length(self.headers(response.headers, side), response.body, body)
        return replace(response, headers=headers, body=body)

    def headers(self, headers: Headers, side: str) -> Headers:
        return tuple((name, self.header(name, value, f"{side} header {name}")) for name, value in headers)

    def header(self, name: str, value: str, where: str) -> str:
        if not self.rules.header_is_secret(name):
            return self.visitor.text(value, where)
        lowered = name.lower()
        if lowered in SCHEME_HEADERS:
            scheme, space, credentials = value.partition(" ")
            if space and credentials.strip():
                return f"{scheme} {self.visitor.secret(credentials, where, True)}"
        elif lowered in ("cookie", "set-cookie"):
            return _COOKIE.sub(
                lambda m: f"{m[1]}{m[2]}{m[3]}={self.visitor.secret(m[4], f'{where}: {m[3].strip()}', True)}",
                value,
                count=1 if lowered == "set-cookie" else 0,
            )
        return self.visitor.secret(value, where, True)

    def params(self, query: str, where: str) -> str:
        """A query string or form body with each parameter's value visited."""
        return "&".join(self.param(piece, where) for piece in query.split("&")) if query else query

    def param(self, piece: str, where: str) -> str:
        name, equals, raw = piece.partition("=")
        value = unquote(raw)
        label = f"{where} {unquote(name)}"
        if self.rules.field_is_secret(unquote(name)) and value:
            new = self.visitor.secret(value, label, False)
        else:
            new = self.visitor.text(value, label)
        return piece if new == value else f"{name}{equals}{quote(new, safe='-._~')}"

    def body(self, body: bytes, headers: Headers, where: str) -> bytes:
        if not body:
            return body
        coding = (header_value(headers, "content-encoding") or "identity").strip().lower()
        try:
            plain = encoding.decode(body, coding)
            assert isinstance(plain, bytes)  # decoding bytes gives bytes
        except ValueError:
            coding, plain = "identity", body
        content_type = (header_value(headers, "content-type") or "").lower()
        new = self.payload(plain, where, parse_json=True, form="x-www-form-urlencoded" in content_type)
        return body if new == plain else encoding.encode(new, coding)

    def payload(self, data: bytes, where: str, *, parse_json: bool, form: bool = False) -> bytes:
        text = data.decode("utf-8", "surrogateescape")
        tree = _parse_json(text) if parse_json and not form else None
        if form:
            new = self.params(text, f"{where} form")
        elif tree is not None:
            new = _dump_like(text, tree, self.json(tree, "$", where))
        else:
            new = self.visitor.text(text, where)
        return data if new == text else new.encode("utf-8", "surrogateescape")

    def json(self, node: Any, path: str, where: str) -> Any:
        if isinstance(node, dict):
            return {key: self.member(key, value, _json_path(path, key), where) for key, value in node.items()}
        if isinstance(node, list):
            return [self.json(item, f"{path}[*]", where) for item in node]
        if isinstance(node, str):
            return self.visitor.text(node, f"{where} json {path}")
        return node

    def member(self, key: str, value: Any, path: str, where: str) -> Any:
        if isinstance(value, str) and value and self.rules.field_is_secret(key):
            return self.visitor.secret(value, f"{where} json {path}", False)
        return self.json(value, path, where)


def _json_path(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"


def _parse_json(text: str, decoder: json.JSONDecoder = _JSON) -> Any:
    """`text` parsed as JSON if it is an object or an array, else None."""
    if not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return decoder.decode(text)
    except (ValueError, RecursionError):
        return None


def _dump_like(original: str, tree: Any, new_tree: Any) -> str:
    """`new_tree` as JSON in the layout of `original` (when it is one json.dumps produces)."""
    if new_tree == tree:
        return original
    core = original.strip()
    lead, trail = original[: len(original) - len(original.lstrip())], original[len(original.rstrip()) :]
    style = next((s for s in _JSON_STYLES if json.dumps(tree, **s) == core), _JSON_STYLES[1])
    return f"{lead}{json.dumps(new_tree, **style)}{trail}"


def _fix_length(headers: Headers, old_body: bytes, new_body: bytes) -> Headers:
    """Headers with Content-Length (if present) matching a changed body."""
    if new_body == old_body:
        return headers
    return tuple((name, str(len(new_body)) if name.lower() == "content-length" else value) for name, value in headers)


def _may_be_json(payload: bytes) -> bool:
    """Whether a text frame's payload may parse as JSON (see `_parse_json`): after leading
    whitespace it starts with ``{``, ``[`` or a non-ASCII byte (which may be more whitespace)."""
    first = payload[:1]
    if first in _ASCII_SPACES:
        leading = _LEADING_SPACE.match(payload)
        assert leading is not None  # a starred class matches the empty string
        start = leading.end()
        first = payload[start : start + 1]
    return first in (b"{", b"[") or first >= b"\x80"


def _word_marker(word: str) -> bytes:
    """A pattern for the lowered raw bytes of any name `name_says_secret` finds by `word`: the
    word itself, or, for a long one, its letters with anything but ASCII letters and digits
    between them (``pass_word``, ``Tok-En`` squash to ``password``, ``token``)."""
    letters = [re.escape(bytes([code])) for code in word.lower().encode()]
    return b"[^a-z0-9]*".join(letters) if len(word) >= _SQUASHED_WORD else b"".join(letters)


def _holds(payload: bytes, marker: bytes) -> bool:
    """``marker in payload``, sooner when the marker's last byte is not in the payload at all:
    looking for one byte (memchr) is over ten times faster than for a few."""
    return marker[-1:] in payload and marker in payload


def _raw_form(secret: str) -> bytes | None:
    """`secret` as its bytes appear in a payload that decodes (UTF-8, surrogateescape) to a text
    holding it; None for a secret no such text holds (a surrogate outside surrogateescape's)."""
    try:
        return secret.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None


class _SecretName(Exception):
    """Raised while parsing a frame at the first member named like a secret."""


class SecretSigns:
    """A cheap, exact test on a raw WebSocket frame: whether walking it (:func:`map_record`)
    can meet a secret other than one seen before, that is a JWT or, in a text frame that
    parses as JSON, a member named like a secret.

    A frame that cannot be JSON (binary, or text not starting with ``{`` or ``[``) is scanned
    for JWT beginnings only, without copying it. A JSON one is scanned, lowered, for JWT
    beginnings and \\u escapes (which could hide one, or a name); if it holds a secret word
    (or the rules name fields), it is parsed as the walk parses it, its member names checked
    as they come: the word may well be in a value.
    """

    def __init__(self, rules: RedactionRules) -> None:
        self.rules = rules
        self._secret_words = re.compile(b"|".join(_word_marker(word) for word in sorted(rules.secret_words)))
        """Matched on the lowered raw payload of a JSON text frame."""
        self._names = json.JSONDecoder(object_pairs_hook=self._check_names)

    def in_frame(self, payload: bytes, is_text: bool) -> bool:
        if not (is_text and _may_be_json(payload)):
            return _holds(payload, b"eyJ") or _holds(payload, b"ZXlK")
        lowered = payload.lower()
        if _ESCAPE_OR_JWT.search(lowered) is not None:
            return True
        if not self.rules.fields and self._secret_words.search(lowered) is None:
            return False
        try:
            _parse_json(payload.decode("utf-8", "surrogateescape"), self._names)
        except _SecretName:
            return True
        return False

    def _check_names(self, members: list[tuple[str, Any]]) -> None:
        for name, _ in members:
            if self.rules.field_is_secret(name):
                raise _SecretName


# --- the redactor ---------------------------------------------------------------


class Redactor:
    """Replaces secrets with placeholders, statefully across the records of one cassette.

    Use it as a `Recording` transform; afterwards `summary_annotation` tells what was
    redacted, where and how often (never the values). For a cassette already recorded,
    `learn` from its records first, then redact its `header`, then its records with `redacted`.
    """

    def __init__(self, rules: RedactionRules | None = None) -> None:
        self.rules = rules or RedactionRules()
        self._secrets: dict[str, str] = {}
        self._jwts: dict[str, str] = {}
        self._counts: Counter[tuple[str, str]] = Counter()
        self._known: re.Pattern[str] | None = None
        self._known_raw: re.Pattern[bytes] | None = None
        """The secrets seen so far as they appear in a raw payload, for the frame pre-check."""
        self._known_escapable = False
        """Whether a secret seen so far holds a character that JSON may escape (``\\/``, ``\\"``...)."""
        self._signs = SecretSigns(self.rules)
        self._known_stale = True

    def __call__(self, record: Record) -> Record:
        if isinstance(record, WebSocketFrame) and self.leaves_frame_unchanged(record.payload, record.is_text):
            return record
        return map_record(record, self.rules, self)

    def header(self, header: CassetteHeader) -> CassetteHeader:
        """`header` with its metadata redacted like a JSON body (secret-named fields, JWTs...)."""
        return replace(header, metadata=map_metadata(header.metadata, self.rules, self))

    def leaves_frame_unchanged(self, payload: bytes, is_text: bool) -> bool:
        """A cheap, exact pre-check on a raw frame (the recorder's hot path): True only when
        redacting a frame with this payload would return it as it is, and count nothing.

        Walking a payload changes something only where a JWT appears, a secret seen before
        recurs, or, in a text frame that parses as JSON, a member is named like a secret.
        The first two are what :class:`SecretSigns` looks for; known secrets are searched in
        the raw bytes (a secret in the decoded text is there too), and in a JSON frame any
        escape is suspect when a secret seen before holds a character JSON may escape.
        """
        known = self._known_raw if not self._known_stale else self._refresh_known()[1]
        if self._signs.in_frame(payload, is_text):
            return False
        if self._known_escapable and is_text and b"\\" in payload and _may_be_json(payload):
            return False
        return known is None or known.search(payload) is None

    def redacted(self, records: Iterable[Record]) -> Iterator[Record]:
        """`records` redacted one by one, then the summary annotation (at the latest record's time)."""
        end: float | None = None
        for record in records:
            end = record.time if end is None else max(end, record.time)
            yield self(record)
        yield self.summary_annotation(0.0 if end is None else end)

    def learn(self, records: Iterable[Record]) -> None:
        """Learn the secrets in `records` without counting them, so that a later pass
        also replaces a secret where it appears before the place that names it."""
        for record in records:
            self(record)
        self._counts.clear()

    def secret(self, value: str, where: str, strict: bool) -> str:
        if not value or is_placeholder(value):
            return value
        if has_jwt(value):
            return self.text(value, where)
        if value not in self._secrets:
            self._secrets[value] = f"<redacted:secret-{len(self._secrets) + 1}>"
            self._known_stale = True
        self._counts["secret", where] += 1
        return self._secrets[value]

    def text(self, value: str, where: str) -> str:
        value = sub_jwts(value, lambda token: self._jwt(token, where))
        known = self._known_pattern()
        if known is None:
            return value
        return known.sub(lambda match: self._known_secret(match.group(), where), value)

    def _jwt(self, token: str, where: str) -> str:
        if is_redacted_jwt(token):
            return token
        if token not in self._jwts:
            signing_input = token.rpartition(".")[0]
            self._jwts[token] = f"{signing_input}.{placeholder_signature(len(self._jwts) + 1)}"
        self._counts["jwt signature", where] += 1
        return self._jwts[token]

    def _known_secret(self, value: str, where: str) -> str:
        self._counts["known secret", where] += 1
        return self._secrets[value]

    def _known_pattern(self) -> re.Pattern[str] | None:
        return self._known if not self._known_stale else self._refresh_known()[0]

    def _refresh_known(self) -> tuple[re.Pattern[str] | None, re.Pattern[bytes] | None]:
        """Recompile the patterns of the secrets seen so far (long enough to search for in text)."""
        long_enough = sorted((s for s in self._secrets if len(s) >= MIN_KNOWN_SECRET), key=len, reverse=True)
        raw = [encoded for secret in long_enough if (encoded := _raw_form(secret)) is not None]
        self._known = re.compile("|".join(map(re.escape, long_enough))) if long_enough else None
        self._known_raw = re.compile(b"|".join(map(re.escape, raw))) if raw else None
        self._known_escapable = any(_JSON_ESCAPED.search(secret) for secret in long_enough)
        self._known_stale = False
        return self._known, self._known_raw

    def redaction_summary(self) -> list[dict[str, Any]]:
        """What was redacted: kind, where and how many times, in order of first redaction."""
        return [{"kind": kind, "where": where, "count": count} for (kind, where), count in self._counts.items()]

    def summary_annotation(self, time: float) -> Annotation:
        """The record that ends a redacted cassette."""
        return Annotation(id=0, time=time, data={"redactions": self.redaction_summary()})


def redact_cassette(cassette: Cassette, rules: RedactionRules | None = None) -> Cassette:
    """A redacted copy of `cassette` (header metadata included), ending with the redaction summary."""
    redactor = Redactor(rules)
    redactor.learn(cassette.records)
    header = redactor.header(cassette.header)
    return Cassette(header, list(redactor.redacted(cassette.records)))
