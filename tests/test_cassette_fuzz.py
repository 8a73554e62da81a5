"""Fuzzing the cassette reader: whatever the bytes, it reads records or raises a CassetteError.

Never another exception, never a hang, never an allocation that a length prefix chooses.
"""

from __future__ import annotations

import io
import re
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wsreplay.cassette as cassette_module
from wsreplay.cassette import (
    CassetteError,
    CassetteHeader,
    CassetteReader,
    CassetteWriter,
    NotACassetteError,
    encode_header,
    encode_record,
    load_cassette,
)
from wsreplay.records import (
    Annotation,
    ConnectionFailure,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    Record,
    WebSocketClose,
    WebSocketFrame,
    WebSocketOpen,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SECONDS_PER_READ = 5.0

HEADER = CassetteHeader(created=1767225600.0, wsreplay_version="0.1.0", upstream="reverse:http://u", metadata={"k": 1})
UPGRADE = HttpRequest("GET", "http", "localhost", 8765, "/ws", "x=1", headers=(("Upgrade", "websocket"),))
RECORDS: list[Record] = [
    HttpExchange(
        1,
        0.001,
        HttpRequest("GET", "http", "h", 80, "/a", headers=(("Host", "h"),)),
        HttpResponse(200, "OK", headers=(("Content-Type", "application/json"),), body=b'{"a":1}'),
        0.002,
    ),
    WebSocketOpen(
        2, 0.010, UPGRADE, HttpResponse(101, "Switching Protocols", headers=(("Upgrade", "websocket"),)), 0.005
    ),
    WebSocketOpen(3, 0.011, UPGRADE, HttpResponse(403, "Forbidden", body=b"no"), 0.003),
    *[WebSocketFrame(2, (20_000 + 10_000 * i) / 1e6, i % 2 == 0, i % 3 != 0, bytes([i]) * (i * 7)) for i in range(12)],
    HttpExchange(4, 0.015, HttpRequest("POST", "http", "h", 80, "/b", body=b"\x00\xff"), None, 0.0),
    ConnectionFailure(4, 0.5, "connection reset"),
    WebSocketFrame(2, 0.6, False, False, bytes(range(256))),
    WebSocketClose(2, 0.7, 1000, "bye", "client"),
    Annotation(0, 0.8, {"redacted": ["authorization"]}),
]


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


HEAD = _pack(encode_header(HEADER))
PARTS = [_pack(encode_record(record)) for record in RECORDS]
REAL = HEAD + b"".join(PARTS)
ENDS = [len(HEAD)]
for _part in PARTS:
    ENDS.append(ENDS[-1] + len(_part))


def read(data: bytes) -> tuple[CassetteError | None, list[Record], int | None]:
    """Read everything; return (the CassetteError if any, records yielded, truncated_at).

    Any other exception propagates and fails the test.
    """
    records: list[Record] = []
    started = time.monotonic()
    try:
        reader = CassetteReader(io.BytesIO(data), name="fuzz")
        for record in reader:
            records.append(record)
    except CassetteError as exc:
        return exc, records, None
    finally:
        assert time.monotonic() - started < SECONDS_PER_READ
    return None, records, reader.truncated_at


def test_the_real_cassette_reads_back() -> None:
    error, records, truncated = read(REAL)
    assert error is None and records == RECORDS and truncated is None


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    read(data)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_after_a_header(data: bytes) -> None:
    error, _, _ = read(HEAD + data)
    assert not isinstance(error, NotACassetteError)


MSGPACK_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=12,
)
RECORD_LIKE = st.tuples(st.integers(-1, 8), MSGPACK_VALUES, MSGPACK_VALUES, st.lists(MSGPACK_VALUES, max_size=4)).map(
    lambda t: [t[0], t[1], t[2], *t[3]]
)


@settings(FUZZ, max_examples=80)
@given(st.lists(MSGPACK_VALUES | RECORD_LIKE, max_size=5))
def test_random_msgpack_values_after_a_header(values: list[Any]) -> None:
    read(HEAD + b"".join(_pack(v) for v in values))


@settings(FUZZ, max_examples=100)
@given(
    st.dictionaries(
        st.sampled_from(["format", "version", "created", "wsreplay", "mode", "upstream", "metadata"])
        | st.text(max_size=5),
        MSGPACK_VALUES | st.just("wsreplay-cassette") | st.just(1),
    )
)
def test_random_headers(header: dict[str, Any]) -> None:
    read(_pack(header) + PARTS[0])


@pytest.mark.parametrize("chunk", [cassette_module.READ_CHUNK, 5])
def test_every_prefix(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut anywhere: the complete records before the cut are read and the cut is reported."""
    monkeypatch.setattr(cassette_module, "READ_CHUNK", chunk)
    for cut in range(len(REAL) + 1):
        error, records, truncated = read(REAL[:cut])
        if cut < len(HEAD):
            assert isinstance(error, NotACassetteError), cut
            continue
        assert error is None, (cut, error)
        complete = sum(1 for end in ENDS[1:] if end <= cut)
        assert records == RECORDS[:complete], cut
        last_end = ENDS[complete]
        assert truncated == (None if cut == last_end else last_end), cut


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(REAL) - 1), st.integers(0, 7)), min_size=1, max_size=4))
def test_flipped_bits(flips: list[tuple[int, int]]) -> None:
    data = bytearray(REAL)
    for position, bit in flips:
        data[position] ^= 1 << bit
    error, records, _ = read(bytes(data))
    first = min(position for position, _ in flips)
    if first >= len(HEAD):  # the records wholly before the first flip are intact
        intact = sum(1 for end in ENDS[1:] if end <= first)
        assert records[:intact] == RECORDS[:intact]


@FUZZ
@given(st.integers(0, len(PARTS) - 1), st.integers(0, 7), st.data())
def test_flipped_bit_in_one_record(index: int, bit: int, data: st.DataObject) -> None:
    start, end = ENDS[index], ENDS[index + 1]
    position = data.draw(st.integers(start, end - 1))
    mutated = bytearray(REAL)
    mutated[position] ^= 1 << bit
    error, records, truncated = read(bytes(mutated))
    assert records[:index] == RECORDS[:index]
    if error is not None:  # it never blames the intact records before the damage
        offset = re.search(r"at byte (\d+)", str(error))
        assert offset is not None and int(offset.group(1)) >= start, error


# --- forged length prefixes ----------------------------------------------------------

LENGTHS = st.one_of(
    st.integers(0, 300), st.integers(2**16 - 2, 2**16 + 2), st.integers(2**20, 2**32 - 1), st.just(2**32 - 1)
)
PREFIXES = st.tuples(st.sampled_from(["array", "map", "bin", "str", "ext"]), LENGTHS).map(
    lambda t: {
        "array": b"\xdd" + t[1].to_bytes(4, "big"),
        "map": b"\xdf" + t[1].to_bytes(4, "big") + b"\xa1k",
        "bin": b"\xc6" + t[1].to_bytes(4, "big"),
        "str": b"\xdb" + t[1].to_bytes(4, "big"),
        "ext": b"\xc9" + t[1].to_bytes(4, "big") + b"\x05",
    }[t[0]]
)


@FUZZ
@given(st.lists(PREFIXES, min_size=1, max_size=60), st.binary(max_size=64), st.booleans())
def test_huge_length_prefixes(prefixes: list[bytes], tail: bytes, as_annotation: bool) -> None:
    body = b"".join(prefixes) + tail
    if as_annotation:
        body = b"\x94\x06\x00\x00\x81\xa1k" + body
    tracemalloc.start()
    try:
        error, records, _ = read(HEAD + PARTS[0] + body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert records[:1] == RECORDS[:1]
    # 60 nested arrays of at most 65,536 entries: msgpack < 1.2 preallocates 512 KiB for each.
    assert peak < 48 * 1024 * 1024, peak


def test_length_prefix_beyond_the_file_reads_as_truncation() -> None:
    data = HEAD + PARTS[0] + b"\x95\x03\x01\x00\x00\xc6\x03\xff\xff\xff" + b"x" * 1000
    tracemalloc.start()
    try:
        error, records, truncated = read(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error is None and records == RECORDS[:1] and truncated == ENDS[1]
    assert peak < 4 * 1024 * 1024


def test_length_prefix_over_the_limit_with_data_behind_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forged 4 GiB prefix followed by real data stops at the record limit, not at 4 GiB."""
    monkeypatch.setattr(cassette_module, "MAX_RECORD_BYTES", 1024 * 1024)  # the same, faster

    class Endless(io.RawIOBase):
        def __init__(self, head: bytes) -> None:
            self.head, self.served = head, 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            chunk = self.head[: len(buffer)] if self.head else b"\x00" * len(buffer)
            self.head = self.head[len(chunk) :]
            buffer[: len(chunk)] = chunk
            self.served += len(chunk)
            return len(chunk)

    source = Endless(HEAD + PARTS[0] + b"\x95\x03\x01\x00\x00\xc6\xff\xff\xff\xff")
    reader = CassetteReader(io.BufferedReader(source), name="endless")
    records = []
    with pytest.raises(CassetteError, match=f"byte {ENDS[1]}"):
        for record in reader:
            records.append(record)
    assert records == RECORDS[:1]
    assert source.served < cassette_module.MAX_RECORD_BYTES + 2 * cassette_module.READ_CHUNK + len(REAL)


# --- round trips of random records ---------------------------------------------------

MICROS = st.integers(0, 2**40)
IDS = st.integers(0, 2**32)
LATIN1 = st.text(st.characters(max_codepoint=0xFF), max_size=12)
HEADERS = st.lists(st.tuples(LATIN1, LATIN1), max_size=4).map(tuple)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
REQUESTS = st.builds(
    HttpRequest,
    st.text(max_size=8),
    st.sampled_from(["http", "https"]),
    st.text(max_size=12),
    st.integers(0, 65535),
    st.text(max_size=12),
    st.text(max_size=12),
    st.sampled_from(["HTTP/1.1", "HTTP/2.0"]),
    HEADERS,
    st.binary(max_size=40),
)
RESPONSES = st.builds(
    HttpResponse, st.integers(100, 599), st.text(max_size=8), st.just("HTTP/1.1"), HEADERS, st.binary(max_size=40)
)
RANDOM_RECORDS = st.one_of(
    st.builds(
        HttpExchange,
        IDS,
        MICROS.map(lambda us: us / 1e6),
        REQUESTS,
        st.none() | RESPONSES,
        MICROS.map(lambda us: us / 1e6),
    ),
    st.builds(
        WebSocketOpen, IDS, MICROS.map(lambda us: us / 1e6), REQUESTS, RESPONSES, MICROS.map(lambda us: us / 1e6)
    ),
    st.builds(
        WebSocketFrame, IDS, MICROS.map(lambda us: us / 1e6), st.booleans(), st.booleans(), st.binary(max_size=300)
    ),
    st.builds(
        WebSocketClose,
        IDS,
        MICROS.map(lambda us: us / 1e6),
        st.none() | st.integers(0, 65535),
        st.text(max_size=20),
        st.sampled_from([None, "client", "server"]),
    ),
    st.builds(ConnectionFailure, IDS, MICROS.map(lambda us: us / 1e6), st.text(max_size=40)),
    st.builds(
        Annotation, IDS, MICROS.map(lambda us: us / 1e6), st.dictionaries(st.text(max_size=6), JSONISH, max_size=4)
    ),
)


@settings(FUZZ, max_examples=100)
@given(st.lists(RANDOM_RECORDS, max_size=8))
def test_random_records_round_trip(records: list[Record]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.cassette"
        with CassetteWriter(path, HEADER) as writer:
            for record in records:
                writer.write(record)
        loaded = load_cassette(path)
        assert loaded.header == HEADER
        assert loaded.records == records
        assert loaded.truncated_at is None
        data = path.read_bytes()
    assert data == HEAD + b"".join(_pack(encode_record(r)) for r in records)
