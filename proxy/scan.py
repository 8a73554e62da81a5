"""Find what still looks like a secret in a cassette (what ``wsreplay scan`` reports).

Walks records the way redaction does (:func:`~wsreplay.redaction.map_record`) and reports
JWTs with a real-looking signature, non-placeholder values in secret headers, and
high-entropy values in secret-named fields.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from wsreplay.cassette import Cassette
from wsreplay.records import CassetteHeader, Record, WebSocketFrame
from wsreplay.redaction import (
    RedactionRules,
    SecretSigns,
    has_jwt,
    is_placeholder,
    is_redacted_jwt,
    map_metadata,
    map_record,
    sub_jwts,
)

__all__ = ["Finding", "looks_random", "scan_cassette", "scan_records"]

HEADER_ID = 0
"""The record id a finding in the cassette header's metadata is reported under."""
MIN_RANDOM_LENGTH = 16
MIN_RANDOM_BITS_PER_CHAR = 3.5


@dataclass(frozen=True, slots=True)
class Finding:
    """Something that looks like a secret: in which record, where in it, and why."""

    record_id: int
    time: float
    where: str
    reason: str

    def __str__(self) -> str:
        return f"#{self.record_id} at {self.time:.3f}s, {self.where}: {self.reason}"


def looks_random(value: str) -> bool:
    """A long, whitespace-free value with high Shannon entropy, like a key or token."""
    if len(value) < MIN_RANDOM_LENGTH or any(char.isspace() for char in value):
        return False
    counts = Counter(value).values()
    bits = -sum(n / len(value) * math.log2(n / len(value)) for n in counts)
    return bits >= MIN_RANDOM_BITS_PER_CHAR


class _Scanner:
    """A visitor that changes nothing and notes every leftover secret."""

    def __init__(self) -> None:
        self.found: dict[tuple[str, str], None] = {}

    def secret(self, value: str, where: str, strict: bool) -> str:
        if not value or is_placeholder(value):
            return value
        if has_jwt(value):
            return self.text(value, where)
        if strict:
            self.found[where, "value is not a redaction placeholder"] = None
        elif looks_random(value):
            self.found[where, "high-entropy value in a secret-named field"] = None
        return value

    def text(self, value: str, where: str) -> str:
        return sub_jwts(value, lambda token: self._jwt(token, where))

    def _jwt(self, token: str, where: str) -> str:
        if not is_redacted_jwt(token):
            self.found[where, "JWT with a real signature"] = None
        return token


def scan_cassette(cassette: Cassette, rules: RedactionRules | None = None) -> list[Finding]:
    """Every place in `cassette` where something still looks like a secret."""
    return list(scan_records(cassette.header, cassette.records, rules))


def scan_records(
    header: CassetteHeader, records: Iterable[Record], rules: RedactionRules | None = None
) -> Iterator[Finding]:
    """Every place in a cassette's header and `records` (read once, one at a time) where
    something still looks like a secret, as it is found."""
    rules = rules or RedactionRules()
    signs = SecretSigns(rules)
    scanner = _Scanner()
    map_metadata(header.metadata, rules, scanner)
    for where, reason in scanner.found:
        yield Finding(HEADER_ID, 0.0, where, reason)
    for record in records:
        if isinstance(record, WebSocketFrame) and not signs.in_frame(record.payload, record.is_text):
            continue
        scanner = _Scanner()
        map_record(record, rules, scanner)
        for where, reason in scanner.found:
            yield Finding(record.id, record.time, where, reason)
