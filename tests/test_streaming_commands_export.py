"""`wsreplay export`, `redact` and `scan` stream a cassette: the same output as from a cassette
in memory, from records read once, in memory that does not grow with the frames."""

from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.chat_records import auth_exchange, text_frame, upgrade
from wsreplay import har
from wsreplay.cassette import Cassette, CassetteWriter, write_cassette
from wsreplay.cli import main
from wsreplay.har import cassette_as_json, cassette_to_har, write_cassette_json, write_har
from wsreplay.jwt import mint_access_token
from wsreplay.records import (
    Annotation,
    CassetteHeader,
    ConnectionFailure,
    HttpExchange,
    HttpRequest,
    Record,
    WebSocketClose,
    WebSocketFrame,
)
from wsreplay.redaction import RedactionRules, Redactor, map_record, redact_cassette
from wsreplay.scan import _Scanner, scan_cassette, scan_records

HEADER = CassetteHeader(created=1_757_266_800.123457, wsreplay_version="test", metadata={"test": "streaming ✓"})
TOKEN = mint_access_token("e2e@example.test", ["read"], "jwt-signing-secret")
MANY_FRAMES = 25_000
FRAME_TEXT = "The agent keeps streaming its reasoning one token at a time, word by word. " * 12
"""About 900 bytes, with a secret word in a value (not a name): frames a redaction leaves as they are."""
BOUNDED_BYTES = 10 * 1024 * 1024
"""Peak traced memory allowed while streaming ~23 MB of frames (the HAR's spill budget is 1 MB)."""


def interleaved_records() -> list[Record]:
    """Connections interleaved frame by frame, and what grouping by connection must get right: a
    refused upgrade, an exchange that failed, a failure and frames of no connection, an id
    used twice, annotations, text that is not ASCII, binary frames, a secret and a JWT."""
    records: list[Record] = [auth_exchange(1, 0.0), upgrade(2, 0.01, duration=0.0025), upgrade(3, 0.02)]
    for step in range(30):
        for connection in (2, 3):
            records.append(text_frame(connection, 0.03 + step / 1000, step % 3 == 0, {"step": step, "n": "é✓"}))
        records.append(WebSocketFrame(3, 0.031 + step / 1000, False, False, bytes([step, 0xFF, 0x00])))
    records += [
        upgrade(4, 0.1, status=403),
        WebSocketFrame(4, 0.11, False, True, b"refused, yet a frame"),
        HttpExchange(5, 0.12, HttpRequest("GET", "https", "::1", 8443, "/gone"), None, 0.0),
        ConnectionFailure(5, 0.125, "server disconnected"),
        WebSocketFrame(9, 0.13, True, True, b"a frame of no connection"),
        ConnectionFailure(10, 0.14, "upstream refused the connection"),
        text_frame(3, 0.15, True, {"password": "hunter2hunter2", "jwt": TOKEN}),
        WebSocketClose(2, 0.2, 1000, "bye", "client"),
        upgrade(6, 0.21),
        text_frame(6, 0.22, True, {"first": True}),
        upgrade(6, 0.23),
        text_frame(6, 0.24, False, {"second": True}),
        WebSocketClose(3, 0.3, 1008, "Authentication failed", "server"),
        Annotation(0, 0.4, {"note": "100% done", "nested": {"list": [1, 2.5, None, True]}}),
    ]
    return records


def one_shot(records: list[Record]) -> Iterator[Record]:
    """The records as a cassette reader gives them: an iterator that can be read only once."""
    yield from records


def dumped(document: object) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def written(
    write: Callable[[CassetteHeader, Iterable[Record], TextIO], None],
    records: Iterator[Record],
    header: CassetteHeader = HEADER,
) -> str:
    out = io.StringIO()
    write(header, records, out)
    return out.getvalue()


def write_file(path: Path, records: list[Record], header: CassetteHeader = HEADER) -> Path:
    write_cassette(path, Cassette(header, records))
    return path


def chat_frames(count: int) -> Iterator[Record]:
    """Two interleaved sessions of `count` ~900-byte text frames in all."""
    yield upgrade(1, 0.0)
    yield upgrade(2, 0.0)
    for n in range(count):
        yield WebSocketFrame(1 + n % 2, n / 1000, n % 50 == 0, True, json.dumps({"n": n, "text": FRAME_TEXT}).encode())


class Sink(io.StringIO):
    """A text stream that keeps only how much was written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def write(self, text: str) -> int:
        self.size += len(text)
        return len(text)


def traced_peak(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- export -----------------------------------------------------------------------


@pytest.mark.parametrize("budget", [har.SPILL_BUDGET_BYTES, 1, 700])
def test_har_is_written_as_json_dumps_writes_the_har_of_the_cassette_in_memory(
    budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(har, "SPILL_BUDGET_BYTES", budget)  # 1: every message written to the spill file at once
    records = interleaved_records()
    assert written(write_har, one_shot(records)) == dumped(cassette_to_har(Cassette(HEADER, records)))


def test_json_export_is_written_as_json_dumps_writes_the_cassette_in_memory() -> None:
    records = interleaved_records()
    assert written(write_cassette_json, one_shot(records)) == dumped(cassette_as_json(Cassette(HEADER, records)))


@pytest.mark.parametrize("records", [[], [Annotation(0, 0.0, {})], [auth_exchange(1, 0.0)], [upgrade(1, 0.0)]])
def test_small_cassettes_export_the_same(records: list[Record]) -> None:
    cassette = Cassette(HEADER, records)
    assert written(write_har, one_shot(records)) == dumped(cassette_to_har(cassette))
    assert written(write_cassette_json, one_shot(records)) == dumped(cassette_as_json(cassette))


@pytest.mark.parametrize(
    "value",
    [
        {"type": "send", "time": 1757266800.1234567, "opcode": 1, "data": 'quote " and \\ and é ✓ \u2028 \x00'},
        {"100% sure": True, "off": False, "none": None, "big": 2**70, "tiny": 1e-300},
        {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")},
        {"nested": {"a": [1, {"b": "c"}]}, "empty": [], "nothing": {}},
        {},
        [],
        "text",
    ],
)
@pytest.mark.parametrize("level", [0, 1, 5])
def test_json_text_nested_in_a_document_is_what_json_dumps_writes_there(value: object, level: int) -> None:
    document: object = value
    for _ in range(level):
        document = [document]
    expected = dumped(document)
    text = har._indented_json(value, level)
    opening = "".join(f"[\n{'  ' * (depth + 1)}" for depth in range(level))
    closing = "".join(f"\n{'  ' * depth}]" for depth in reversed(range(level)))
    assert opening + text + closing == expected


def test_export_command_writes_the_same_document_to_a_file_and_to_stdout(tmp_path: Path) -> None:
    records = interleaved_records()
    cassette = write_file(tmp_path / "chat.cassette", records)
    runner = CliRunner()
    for output_format, document in (
        ("har", cassette_to_har(Cassette(HEADER, records))),
        ("json", cassette_as_json(Cassette(HEADER, records))),
    ):
        output = tmp_path / f"chat.{output_format}"
        result = runner.invoke(main, ["export", str(cassette), "--format", output_format, "-o", str(output)])
        assert result.exit_code == 0, result.output
        assert output.read_text(encoding="utf-8") == dumped(document) + "\n"
        result = runner.invoke(main, ["export", str(cassette), "--format", output_format])
        assert result.exit_code == 0 and result.stdout == dumped(document) + "\n"


def test_export_refuses_to_write_over_its_cassette_and_leaves_no_part_of_a_document(tmp_path: Path) -> None:
    cassette = write_file(tmp_path / "chat.cassette", interleaved_records())
    written_before = cassette.read_bytes()
    result = CliRunner().invoke(main, ["export", str(cassette), "-o", str(cassette)])
    assert result.exit_code == 2 and "is the cassette to export" in result.output
    assert cassette.read_bytes() == written_before

    corrupt = tmp_path / "corrupt.cassette"
    corrupt.write_bytes(cassette.read_bytes() + b"\x93\x03\xc0\xc0")  # a frame array whose fields are nil
    output = tmp_path / "corrupt.har"
    result = CliRunner().invoke(main, ["export", str(corrupt), "-o", str(output)])
    assert result.exit_code == 2 and "corrupt" in result.output and not output.exists()


def test_har_export_memory_does_not_grow_with_the_frames() -> None:
    sink = Sink()
    peak = traced_peak(lambda: write_har(HEADER, chat_frames(MANY_FRAMES), sink))
    assert sink.size > 2 * BOUNDED_BYTES  # the document is more than twice the bound
    assert peak < BOUNDED_BYTES


# --- redact -----------------------------------------------------------------------


def test_redact_command_writes_what_redact_cassette_makes(tmp_path: Path) -> None:
    records = interleaved_records()
    source = write_file(tmp_path / "chat.cassette", records)
    expected = tmp_path / "expected.cassette"
    redacted = redact_cassette(Cassette(HEADER, records))
    write_cassette(expected, redacted)
    output = tmp_path / "redacted.cassette"
    result = CliRunner().invoke(main, ["redact", str(source), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert output.read_bytes() == expected.read_bytes()
    summary = redacted.records[-1]
    assert isinstance(summary, Annotation)
    count = sum(entry["count"] for entry in summary.data["redactions"])
    assert count > 0 and f"({count} values redacted)" in result.output


def test_redact_in_place_and_of_a_cut_short_cassette(tmp_path: Path) -> None:
    records = interleaved_records()
    expected = tmp_path / "expected.cassette"
    write_cassette(expected, redact_cassette(Cassette(HEADER, records)))
    source = write_file(tmp_path / "chat.cassette", records)
    with source.open("ab") as tail:
        tail.write(b"\x95\x03\x02")  # a recorder killed mid-write
    result = CliRunner().invoke(main, ["redact", str(source), "-o", str(source), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert result.output.count("ends with an incomplete record") == 1
    assert source.read_bytes() == expected.read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["chat.cassette", "expected.cassette"]


def test_redacted_records_are_the_records_of_redact_cassette_from_a_one_shot_iterator() -> None:
    records = interleaved_records()
    redactor = Redactor()
    redactor.learn(one_shot(records))
    header = redactor.header(HEADER)
    expected = redact_cassette(Cassette(HEADER, records))
    assert header == expected.header
    assert list(redactor.redacted(one_shot(records))) == expected.records


def test_redact_memory_does_not_grow_with_the_frames(tmp_path: Path) -> None:
    source = tmp_path / "big.cassette"
    with CassetteWriter(source, HEADER) as writer:
        for record in chat_frames(MANY_FRAMES):
            writer.write(record)
    assert source.stat().st_size > 2 * BOUNDED_BYTES
    output = tmp_path / "redacted.cassette"
    runner = CliRunner()
    peak = traced_peak(lambda: runner.invoke(main, ["redact", str(source), "-o", str(output)]))
    assert peak < BOUNDED_BYTES
    assert output.stat().st_size > source.stat().st_size  # every frame, and the summary


# --- scan -------------------------------------------------------------------------


def test_scan_command_prints_what_scan_cassette_finds(tmp_path: Path) -> None:
    records = interleaved_records()
    cassette = write_file(tmp_path / "chat.cassette", records)
    findings = scan_cassette(Cassette(HEADER, records))
    assert findings and findings == list(scan_records(HEADER, one_shot(records)))
    result = CliRunner().invoke(main, ["scan", str(cassette)])
    assert result.exit_code == 1
    assert result.stdout == "".join(f"{finding}\n" for finding in findings)
    assert f"{len(findings)} possible secrets" in result.stderr


def test_scan_memory_does_not_grow_with_the_frames() -> None:
    peak = traced_peak(lambda: list(scan_records(HEADER, chat_frames(MANY_FRAMES))))
    assert peak < BOUNDED_BYTES


FRAME_PIECES = [
    "{",
    "[",
    "}",
    "]",
    '"',
    ":",
    ",",
    " ",
    "\u3000",
    "é",
    '"type"',
    '"apiKey"',
    '"pass_word"',
    '"Tok-En"',
    "token",
    "Password",
    "X7q!Lm0#pZ2@wR9$vT4%",
    "eyJ",
    "ZXlK",
    "\\u006bey",
    "\\/",
    '\\"',
    TOKEN,
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAME_PIECES), max_size=12), st.booleans(), st.booleans())
def test_scan_passes_over_only_frames_where_it_would_find_nothing(
    pieces: list[str], is_text: bool, with_fields: bool
) -> None:
    rules = RedactionRules(fields=("*pe",) if with_fields else ())
    frame = WebSocketFrame(2, 0.3, True, is_text, "".join(pieces).encode())
    scanner = _Scanner()
    map_record(frame, rules, scanner)
    assert [(f.where, f.reason) for f in scan_records(HEADER, [frame], rules)] == list(scanner.found)
