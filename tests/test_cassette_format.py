"""Cassette format v2 and v1 (cassettes/FORMAT.md): the conformance cases, round trips, writer guarantees."""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import io
import json
import os
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import msgpack
import pytest

import wsreplay.cassette as cassette_module
from wsreplay.cassette import (
    CassetteError,
    CassetteHeader,
    CassetteReader,
    CassetteWriter,
    CorruptRecordError,
    NotACassetteError,
    UnsupportedVersionError,
    encode_record,
    load_cassette,
    open_cassette,
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

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT / "cassettes" / "conformance"
ERRORS = {cls.__name__: cls for cls in (NotACassetteError, UnsupportedVersionError, CorruptRecordError)}


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("conformance_generate", CONFORMANCE / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _cases(folder: str) -> list[str]:
    return sorted(p.name.removesuffix(".cassette") for p in (CONFORMANCE / folder).glob("*.cassette"))


def _case(folder: str, name: str) -> tuple[bytes, dict[str, Any]]:
    data = (CONFORMANCE / folder / f"{name}.cassette").read_bytes()
    expected = json.loads((CONFORMANCE / folder / f"{name}.expected.json").read_text(encoding="utf-8"))
    return data, expected


# --- records <-> the conformance JSON ----------------------------------------------


def _message_json(message: HttpRequest | HttpResponse) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in dataclasses.fields(message):
        name, value = spec.name, getattr(message, spec.name)
        if name == "headers":
            out[name] = [list(pair) for pair in value]
        elif name == "body":
            out["body_hex"] = value.hex()
        else:
            out[name] = value
    return out


def record_json(record: Record) -> dict[str, Any]:
    """A record as the conformance files write it (times in integer microseconds)."""
    base = {"id": record.id, "time_us": round(record.time * 1_000_000)}
    match record:
        case HttpExchange():
            response = None if record.response is None else _message_json(record.response)
            return (
                {"kind": "http"}
                | base
                | {
                    "request": _message_json(record.request),
                    "response": response,
                    "duration_us": round(record.duration * 1_000_000),
                }
            )
        case WebSocketOpen():
            return (
                {"kind": "websocket_open"}
                | base
                | {
                    "request": _message_json(record.request),
                    "response": _message_json(record.response),
                    "duration_us": round(record.duration * 1_000_000),
                }
            )
        case WebSocketFrame():
            return (
                {"kind": "frame"}
                | base
                | {"from_client": record.from_client, "text": record.is_text, "payload_hex": record.payload.hex()}
            )
        case WebSocketClose():
            return (
                {"kind": "close"} | base | {"code": record.code, "reason": record.reason, "closed_by": record.closed_by}
            )
        case ConnectionFailure():
            return {"kind": "failure"} | base | {"message": record.message}
        case Annotation():
            return {"kind": "annotation"} | base | {"data": record.data}
    raise TypeError(record)


def _message_from(data: dict[str, Any], cls: type) -> Any:
    fields = {k: v for k, v in data.items() if k not in ("headers", "body_hex")}
    return cls(**fields, headers=tuple(tuple(pair) for pair in data["headers"]), body=bytes.fromhex(data["body_hex"]))


def record_from_json(data: dict[str, Any]) -> Record:
    rid, time = data["id"], data["time_us"] / 1_000_000
    match data["kind"]:
        case "http":
            response = None if data["response"] is None else _message_from(data["response"], HttpResponse)
            return HttpExchange(
                rid, time, _message_from(data["request"], HttpRequest), response, data["duration_us"] / 1_000_000
            )
        case "websocket_open":
            return WebSocketOpen(
                rid,
                time,
                _message_from(data["request"], HttpRequest),
                _message_from(data["response"], HttpResponse),
                data["duration_us"] / 1_000_000,
            )
        case "frame":
            return WebSocketFrame(rid, time, data["from_client"], data["text"], bytes.fromhex(data["payload_hex"]))
        case "close":
            return WebSocketClose(rid, time, data["code"], data["reason"], data["closed_by"])
        case "failure":
            return ConnectionFailure(rid, time, data["message"])
        case "annotation":
            return Annotation(rid, time, data["data"])
    raise ValueError(data["kind"])


def _header_json(header: CassetteHeader) -> dict[str, Any]:
    return {
        "version": header.version,
        "created": header.created,
        "wsreplay": header.wsreplay_version,
        "mode": header.mode,
        "upstream": header.upstream,
        "metadata": header.metadata,
    }


# --- the conformance cases ---------------------------------------------------------


def test_committed_cases_are_what_the_generator_makes() -> None:
    made = _load_generator().files()
    on_disk = {
        str(p.relative_to(CONFORMANCE)): p.read_bytes()
        for folder in ("valid", "invalid")
        for p in sorted((CONFORMANCE / folder).iterdir())
    }
    assert sorted(on_disk) == sorted(made), "run: python cassettes/conformance/generate.py"
    stale = [name for name in made if on_disk[name] != made[name]]
    assert not stale, f"out of date (run: python cassettes/conformance/generate.py): {stale}"


def test_the_cases_cover_the_format() -> None:
    valid, invalid = _cases("valid"), _cases("invalid")
    assert len(valid) >= 15 and len(invalid) >= 40
    kinds = {r["kind"] for name in valid for r in _case("valid", name)[1]["records"]}
    assert kinds == {"http", "websocket_open", "frame", "close", "failure", "annotation"}
    versions = {_case("valid", name)[1]["header"]["version"] for name in valid}
    assert versions == {1, 2}
    errors = {_case("invalid", name)[1]["error"] for name in invalid}
    assert errors == set(ERRORS)


@pytest.mark.parametrize("name", _cases("valid"))
def test_valid_case(name: str) -> None:
    data, expected = _case("valid", name)
    reader = CassetteReader(io.BytesIO(data), name=name)
    records = list(reader)
    assert _header_json(reader.header) == expected["header"]
    assert len(records) == len(expected["records"])
    for record, want in zip(records, expected["records"], strict=True):
        # Times are compared as the reader's float seconds: exact up to 2**53 microseconds.
        assert record.time == want["time_us"] / 1_000_000
        if isinstance(record, HttpExchange | WebSocketOpen):
            assert record.duration == want["duration_us"] / 1_000_000
        got = record_json(record)
        for key in ("time_us", "duration_us"):
            got.pop(key, None)
        assert got == {k: v for k, v in want.items() if k not in ("time_us", "duration_us")}
    assert reader.truncated_at == expected["truncated_at"]
    assert reader.records_read == len(expected["records"])


@pytest.mark.parametrize("name", [n for n in _cases("valid") if _case("valid", n)[1]["canonical"]])
def test_writer_reproduces_canonical_case(name: str, tmp_path: Path) -> None:
    """The writer, given the expected records, writes the case's bytes (up to any truncation)."""
    data, expected = _case("valid", name)
    head = expected["header"]
    header = CassetteHeader(
        head["created"], head["wsreplay"], head["mode"], head["upstream"], head["metadata"], head["version"]
    )
    out = tmp_path / "out.cassette"
    with CassetteWriter(out, header) as writer:
        for record in expected["records"]:
            writer.write(record_from_json(record))
    end = expected["truncated_at"] if expected["truncated_at"] is not None else len(data)
    assert out.read_bytes() == data[:end]
    assert writer.bytes_written == end


@pytest.mark.parametrize("name", _cases("invalid"))
def test_invalid_case(name: str) -> None:
    data, expected = _case("invalid", name)
    error = ERRORS[expected["error"]]
    records: list[Record] = []
    with pytest.raises(CassetteError) as caught:
        reader = CassetteReader(io.BytesIO(data), name=name)
        assert expected["stage"] == "records", "the header was accepted"
        records.extend(reader)
    assert type(caught.value) is error, caught.value
    message = str(caught.value)
    for part in expected["message_contains"]:
        assert part in message
    if expected["stage"] == "records":
        assert len(records) == expected["records_before_error"]
        assert f"byte {expected['offset']}" in message
    assert name in message  # names the file


@pytest.mark.parametrize("name", _cases("valid") + _cases("invalid"))
def test_cases_read_the_same_in_tiny_chunks(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records straddling read chunks: same records, same offsets, same errors."""
    folder = "valid" if (CONFORMANCE / "valid" / f"{name}.cassette").exists() else "invalid"
    data, _ = _case(folder, name)

    def outcome() -> tuple[Any, ...]:
        records: list[Record] = []
        try:
            reader = CassetteReader(io.BytesIO(data), name=name)
            records.extend(reader)
        except CassetteError as exc:
            return ("error", type(exc), str(exc), records)
        return ("ok", reader.header, records, reader.truncated_at)

    whole = outcome()
    for chunk in (1, 3, 64):
        monkeypatch.setattr(cassette_module, "READ_CHUNK", chunk)
        assert outcome() == whole, chunk


def _indexed(data: bytes, name: str) -> tuple[Any, ...]:
    """What indexing for replay (`CassetteReader.positioned`) makes of a cassette: each entry
    as its record or server frame mark with the bytes it spans, or the error."""
    entries: list[tuple[bytes, Any]] = []
    try:
        reader = CassetteReader(io.BytesIO(data), name=name)
        entries.extend((data[start:end], entry) for start, end, entry in reader.positioned())
    except CassetteError as exc:
        return ("error", type(exc), str(exc), entries)
    return ("ok", entries, reader.truncated_at)


@pytest.mark.parametrize("name", _cases("valid") + _cases("invalid"))
def test_indexing_reads_every_case_as_the_reader_does(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replay's index of a cassette: the records but the server's frames, each spanning its own
    bytes; the server frames between two of them counted per connection, with the latest
    time; the same truncation, and the same error at the same byte, in chunks of any size."""
    folder = "valid" if (CONFORMANCE / "valid" / f"{name}.cassette").exists() else "invalid"
    data, expected = _case(folder, name)
    indexed = _indexed(data, name)
    if folder == "invalid":
        with pytest.raises(CassetteError) as caught:
            list(CassetteReader(io.BytesIO(data), name=name))
        assert indexed[:3] == ("error", type(caught.value), str(caught.value))
    else:
        status, entries, truncated_at = indexed
        assert truncated_at == expected["truncated_at"]
        records = list(CassetteReader(io.BytesIO(data), name=name))
        expected_entries: list[Any] = []
        pending: dict[int, list[int]] = {}
        for record, want in zip(records, expected["records"], strict=True):
            if isinstance(record, WebSocketFrame) and not record.from_client:
                count, latest = pending.get(record.id, [0, 0])
                pending[record.id] = [count + 1, max(latest, want["time_us"])]
                continue
            expected_entries += [(record_id, count, latest) for record_id, (count, latest) in pending.items()]
            pending = {}
            expected_entries.append(record)
        expected_entries += [(record_id, count, latest) for record_id, (count, latest) in pending.items()]
        assert [entry for _, entry in entries] == expected_entries
        version = expected["header"]["version"]
        for span, entry in entries:
            if not isinstance(entry, tuple):
                assert cassette_module.decode_record(msgpack.unpackb(span, raw=False), version) == entry
    for chunk in (1, 3, 64):
        monkeypatch.setattr(cassette_module, "READ_CHUNK", chunk)
        assert _indexed(data, name) == indexed, chunk


# --- round trips, determinism --------------------------------------------------------

HEADER = CassetteHeader(
    created=1767225600.5,
    wsreplay_version="0.1.0",
    upstream="reverse:http://localhost:1",
    metadata={"test": "round trip", "n": [1, 2.5, None, True]},
)
REQUEST = HttpRequest(
    "GET",
    "https",
    "example.test",
    443,
    "/ws",
    "a=1&b=2",
    "HTTP/1.1",
    (
        ("Host", "example.test"),
        ("Upgrade", "websocket"),
        ("X-Dup", "1"),
        ("x-dup", "2"),
        ("X-Latin", "\u00e9\u00ff\u0000"),
    ),
    b"",
)
RESPONSE = HttpResponse(101, "Switching Protocols", "HTTP/1.1", (("Upgrade", "websocket"),), b"")
EVERY_KIND: list[Record] = [
    HttpExchange(
        1,
        0.001,
        HttpRequest("POST", "http", "h", 80, "/p", body=b"\x00body\xff"),
        HttpResponse(500, "Oops", "HTTP/1.0", (("A", "1"), ("B", "2"), ("A", "3")), b"err"),
        0.25,
    ),
    HttpExchange(2, 0.002, HttpRequest("GET", "http", "h", 80, "/"), None, 0.0),
    WebSocketOpen(3, 0.003, REQUEST, RESPONSE, 0.15),
    WebSocketOpen(4, 0.004, REQUEST, HttpResponse(403, "Forbidden", body=b"no"), 0.12),
    WebSocketFrame(3, 0.005, True, True, "caf\u00e9 \U0001f600".encode()),
    WebSocketFrame(3, 0.006, False, False, bytes(range(256))),
    WebSocketFrame(3, 0.007, False, True, b""),
    WebSocketClose(3, 0.008, 1000, "done", "server"),
    WebSocketClose(5, 0.009, None, "", None),
    ConnectionFailure(6, 0.010, "TLS handshake failed"),
    Annotation(0, 0.011, {"redactions": [{"path": "$.token", "count": 2}], "blob": b"\x00\x01"}),
]


def _write(path: Path, records: list[Record], header: CassetteHeader = HEADER) -> bytes:
    with CassetteWriter(path, header) as writer:
        for record in records:
            writer.write(record)
    return path.read_bytes()


@pytest.mark.parametrize("record", EVERY_KIND, ids=lambda r: f"{type(r).__name__}-{r.id}")
def test_round_trip_each_kind(record: Record, tmp_path: Path) -> None:
    _write(tmp_path / "c.cassette", [record])
    loaded = load_cassette(tmp_path / "c.cassette")
    assert loaded.header == HEADER
    assert loaded.records == [record]
    assert loaded.truncated_at is None


def test_round_trip_all_kinds_in_order(tmp_path: Path) -> None:
    _write(tmp_path / "c.cassette", EVERY_KIND)
    assert load_cassette(tmp_path / "c.cassette").records == EVERY_KIND


def test_writer_is_deterministic(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.cassette", EVERY_KIND)
    second = _write(tmp_path / "b.cassette", list(EVERY_KIND))
    assert first == second
    # and re-writing what was read gives the same bytes again
    loaded = load_cassette(tmp_path / "a.cassette")
    assert _write(tmp_path / "c.cassette", loaded.records, loaded.header) == first


def test_each_record_is_one_msgpack_object_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "c.cassette"
    with CassetteWriter(path, HEADER) as writer:
        sizes = [writer.bytes_written]
        for record in EVERY_KIND:
            writer.write(record)
            assert path.stat().st_size == writer.bytes_written  # flushed, nothing held back
            sizes.append(writer.bytes_written)
    data = path.read_bytes()
    unpacker = msgpack.Unpacker(io.BytesIO(data), raw=False)
    offsets = [0]
    for _ in unpacker:
        offsets.append(unpacker.tell())
    assert offsets == [0, *sizes]
    for record, start, end in zip(EVERY_KIND, sizes, sizes[1:], strict=False):
        assert data[start:end] == msgpack.packb(encode_record(record), use_bin_type=True)


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 1 << 20])
@pytest.mark.parametrize(("record_id", "time"), [(1, 0.0), (128, 0.000256), (65536, 4294.967296)])
def test_frames_are_written_as_msgpack_packs_them(size: int, record_id: int, time: float, tmp_path: Path) -> None:
    # The writer hands a frame's head and payload to the OS separately (no copy): the bytes stay msgpack's.
    frames = [
        WebSocketFrame(record_id, time, side, text, bytes(range(256)) * (size // 256) + b"x" * (size % 256))
        for side in (True, False)
        for text in (True, False)
    ]
    path = tmp_path / "c.cassette"
    with CassetteWriter(path, HEADER) as writer:
        start = writer.bytes_written
        writer.write(frames[0])
        for frame in frames[1:]:
            writer.write_frame(frame.id, frame.time, frame.from_client, frame.is_text, frame.payload)
    expected = b"".join(msgpack.packb(encode_record(frame), use_bin_type=True) for frame in frames)
    assert path.read_bytes()[start:] == expected


# --- version 1 ---------------------------------------------------------------------


def test_a_version_1_cassette_is_written_and_appended_to_in_version_1(tmp_path: Path) -> None:
    """A v1 open has no duration: it is written at the time its answer came, and read back with duration 0."""
    path = tmp_path / "v1.cassette"
    v1 = dataclasses.replace(HEADER, version=1)
    opened = WebSocketOpen(3, 0.100, REQUEST, RESPONSE, 0.050)
    _write(path, [opened], v1)
    writer, last_id = CassetteWriter.append_to(path)
    with writer:
        writer.write(WebSocketOpen(4, 0.200, REQUEST, RESPONSE, 0.025))
    loaded = load_cassette(path)
    assert last_id == 3 and loaded.header == v1
    assert loaded.records == [WebSocketOpen(3, 0.150, REQUEST, RESPONSE), WebSocketOpen(4, 0.225, REQUEST, RESPONSE)]
    unpacker = msgpack.Unpacker(io.BytesIO(path.read_bytes()), raw=False)
    assert [len(value) for value in list(unpacker)[1:]] == [5, 5]


def test_the_writer_refuses_a_format_version_it_does_not_know(tmp_path: Path) -> None:
    with pytest.raises(CassetteError, match="cannot write cassette format version 3"):
        CassetteWriter(tmp_path / "c.cassette", dataclasses.replace(HEADER, version=3))
    assert not (tmp_path / "c.cassette").exists()


# --- per-frame overhead --------------------------------------------------------------


def _frame_overhead(record_id: int, time: float, size: int) -> int:
    record = WebSocketFrame(record_id, time, True, False, b"\x00" * size)
    return len(msgpack.packb(encode_record(record), use_bin_type=True)) - size


def test_per_frame_overhead(tmp_path: Path) -> None:
    # The numbers FORMAT.md gives.
    assert _frame_overhead(1, 0.0, 0) == 7  # smallest: fixarray, kind, id, time, flags, bin8 header
    assert _frame_overhead(1, 1.0, 100) == 11  # typical: time as uint32
    assert _frame_overhead(1, 1.0, 1000) == 12
    assert _frame_overhead(1, 1.0, 100_000) == 14
    assert _frame_overhead(65535, 4294.967295, 100_000) == 16  # the worst within the guarantee
    worst = max(
        _frame_overhead(record_id, time, size)
        for record_id in (1, 127, 128, 255, 256, 65535)
        for time in (0.0, 0.000127, 0.000255, 0.065535, 0.065536, 1.0, 3600.0, 4294.967295)
        for size in (0, 1, 255, 256, 65535, 65536, 1 << 20)
    )
    assert worst == 16
    # Past 2**32 microseconds (71 min 35 s) the time takes 9 bytes instead of 5.
    assert _frame_overhead(1, 4294.967296, 1000) == 16
    assert _frame_overhead(65535, 4294.967296, 100_000) == 20
    assert _frame_overhead(2**32 - 1, 4294.967296, 100_000) == 22
    # Measured on a real file: 1000 frames of 100 bytes.
    path = tmp_path / "c.cassette"
    with CassetteWriter(path, HEADER) as writer:
        start = writer.bytes_written
        for i in range(1000):
            writer.write(WebSocketFrame(i % 50 + 1, 0.07 + i, i % 2 == 0, True, b"x" * 100))
    assert (path.stat().st_size - start - 1000 * 100) / 1000 == 11


# --- constant memory ----------------------------------------------------------------


def test_100k_frames_are_read_in_constant_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.cassette"
    payload = b'{"type":"tick","seq":%d,"data":"' + b"x" * 80 + b'"}'
    with CassetteWriter(path, HEADER) as writer:
        for i in range(100_000):
            writer.write(WebSocketFrame(i % 7 + 1, i / 1000, i % 2 == 0, True, payload % i))
    size = path.stat().st_size
    assert size > 10_000_000
    gc.collect()
    tracemalloc.start()
    try:
        reader, handle = open_cassette(path)
        count = 0
        with handle:
            for record in reader:
                count += 1
                last = record
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000 and reader.truncated_at is None
    assert last.json()["seq"] == 99_999
    assert peak < 4 * 1024 * 1024, peak  # a few read chunks, not the 11 MB file
    assert peak < size / 8


# --- writer safety ------------------------------------------------------------------


def test_writer_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "c.cassette"
    original = _write(path, EVERY_KIND)
    with pytest.raises(CassetteError, match="already exists"):
        CassetteWriter(path, HEADER)
    assert path.read_bytes() == original
    with CassetteWriter(path, HEADER, overwrite=True) as writer:
        writer.write(EVERY_KIND[0])
    assert load_cassette(path).records == EVERY_KIND[:1]


def test_writer_refuses_records_over_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cassette_module, "MAX_RECORD_BYTES", 1000)
    path = tmp_path / "c.cassette"
    with CassetteWriter(path, HEADER) as writer:
        writer.write(WebSocketFrame(1, 0.0, True, False, b"x" * 900))
        with pytest.raises(CassetteError, match="exceeds the cassette limit"):
            writer.write(WebSocketFrame(1, 0.0, True, False, b"x" * 1000))
        writer.write(WebSocketFrame(1, 0.0, True, False, b"y"))
    assert [len(r.payload) for r in load_cassette(path).records] == [900, 1]


def test_writer_after_close(tmp_path: Path) -> None:
    writer = CassetteWriter(tmp_path / "c.cassette", HEADER)
    writer.close()
    writer.close()
    with pytest.raises(CassetteError, match="closed"):
        writer.write(EVERY_KIND[0])


# --- reader details -----------------------------------------------------------------


def test_reader_accepts_records_up_to_the_limit_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cassette_module, "MAX_RECORD_BYTES", 5000)
    monkeypatch.setattr(cassette_module, "READ_CHUNK", 1024)
    header = msgpack.packb(cassette_module.encode_header(HEADER), use_bin_type=True)
    big = msgpack.packb([3, 1, 0, 0, b"z" * 4990], use_bin_type=True)
    assert len(big) <= 5000
    reader = CassetteReader(io.BytesIO(header + big + big + big[:3000]))
    assert len(list(reader)) == 2
    assert reader.truncated_at == len(header) + 2 * len(big)
    too_big = msgpack.packb([3, 1, 0, 0, b"z" * 5001], use_bin_type=True)
    reader = CassetteReader(io.BytesIO(header + big + too_big + big))
    with pytest.raises(CorruptRecordError, match=f"byte {len(header) + len(big)}"):
        list(reader)
    assert reader.records_read == 1


def test_corrupt_record_offset_is_the_record_start_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cassette_module, "READ_CHUNK", 7)
    header = msgpack.packb(cassette_module.encode_header(HEADER), use_bin_type=True)
    good = msgpack.packb([3, 1, 0, 0, b"a" * 40], use_bin_type=True)
    bad = b"\x95\x03\x01\x00\x00" + b"\xc4\x10" + b"b" * 16 + b"\xc1"  # 0xc1 after a complete array
    reader = CassetteReader(io.BytesIO(header + good + bad[:-1] + b"\x95\x03\x01\x00\xc1"))
    with pytest.raises(CorruptRecordError, match=f"byte {len(header) + len(good) + len(bad) - 1}"):
        list(reader)
    reader = CassetteReader(io.BytesIO(header + good + b"\x95\x03\x01\x00\x00\xc4\x10" + b"b" * 10 + b"\xc1"))
    assert len(list(reader)) == 1  # the bin swallows 0xc1: the record is merely cut short
    assert reader.truncated_at == len(header) + len(good)


def test_open_cassette_errors(tmp_path: Path) -> None:
    with pytest.raises(CassetteError, match="no cassette at"):
        open_cassette(tmp_path / "missing.cassette")
    with pytest.raises(CassetteError, match="is a directory"):
        open_cassette(tmp_path)
    (tmp_path / "empty.cassette").write_bytes(b"")
    with pytest.raises(NotACassetteError, match="empty"):
        open_cassette(tmp_path / "empty.cassette")


def test_file_handle_is_closed_when_the_header_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "v3.cassette"
    path.write_bytes(msgpack.packb({"format": "wsreplay-cassette", "version": 3}))
    before = len(os.listdir(f"/proc/{os.getpid()}/fd")) if os.path.isdir("/proc/self/fd") else None
    with pytest.raises(UnsupportedVersionError, match="upgrade wsreplay"):
        open_cassette(path)
    if before is not None:
        assert len(os.listdir(f"/proc/{os.getpid()}/fd")) == before
