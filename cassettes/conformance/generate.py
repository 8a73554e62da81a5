#!/usr/bin/env python3
"""Generate the conformance cases of wsreplay cassette format v2, and v1 (see ../FORMAT.md).

    python cassettes/conformance/generate.py

rewrites ``valid/`` and ``invalid/`` beside this script. The cases are built here from
raw msgpack values, independently of ``proxy/cassette.py``, and their expected results
are written by hand (record fields, error classes, byte offsets), never by running the
reader. ``tests/test_cassette_format.py`` checks that the committed files are exactly
what this script makes, and that the reader (and, for canonical cases, the writer)
agrees with them.

Expected results (``NAME.expected.json``):

valid:   {"description", "header": {version, created, wsreplay, mode, upstream, metadata},
          "records": [...], "truncated_at": int | null, "canonical": bool}
invalid: {"description", "error": class name, "stage": "header" | "records",
          "offset": int | null, "records_before_error": int | null,
          "message_contains": [substrings of wsreplay's message]}

A record in "records" is {"kind": "http" | "websocket_open" | "frame" | "close" |
"failure" | "annotation", "id", "time_us", ...} with the fields of FORMAT.md; byte
strings are lowercase hex in keys ending in "_hex". A version 1 WebSocket open (which has no
duration on the wire) is expected with "duration_us": 0. Cases named ``v1_*`` are version 1
files; the others are version 2.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

HERE = Path(__file__).resolve().parent
CREATED = 1767225600.25  # 2026-01-01T00:00:00.25Z
VERSION = 2
MISSING = object()


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


# --- building blocks: (wire value, expected JSON) ----------------------------------


def header(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "format": "wsreplay-cassette",
        "version": VERSION,
        "created": CREATED,
        "wsreplay": "0.1.0",
        "mode": "record",
        "upstream": None,
        "metadata": {},
    }
    for key, new in changes.items():
        if new is MISSING:
            del value[key]
        else:
            value[key] = new
    return value


def header_json(value: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": value["version"],
        "created": float(value["created"]),
        "wsreplay": value["wsreplay"],
        "mode": value["mode"],
        "upstream": value.get("upstream"),
        "metadata": value.get("metadata", {}),
    }


def request(
    method: str = "GET",
    path: str = "/",
    *,
    scheme: str = "http",
    host: str = "api.example.test",
    port: int = 80,
    query: str = "",
    http_version: str = "HTTP/1.1",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
) -> tuple[dict[str, Any], dict[str, Any]]:
    wire = {
        "method": method,
        "scheme": scheme,
        "host": host,
        "port": port,
        "path": path,
        "query": query,
        "http_version": http_version,
        "headers": [list(pair) for pair in headers],
        "body": body,
    }
    return wire, {k: v for k, v in wire.items() if k != "body"} | {"body_hex": body.hex()}


def response(
    status: int,
    reason: str = "",
    *,
    http_version: str = "HTTP/1.1",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
) -> tuple[dict[str, Any], dict[str, Any]]:
    wire = {
        "status": status,
        "reason": reason,
        "http_version": http_version,
        "headers": [list(pair) for pair in headers],
        "body": body,
    }
    return wire, {k: v for k, v in wire.items() if k != "body"} | {"body_hex": body.hex()}


Rec = tuple[list[Any], dict[str, Any]]


def http(rid: int, t: int, req: Any, resp: Any, duration: int) -> Rec:
    wire = [1, rid, t, req[0], None if resp is None else resp[0], duration]
    expected = {"kind": "http", "id": rid, "time_us": t, "request": req[1]}
    return wire, expected | {"response": None if resp is None else resp[1], "duration_us": duration}


def ws_open(rid: int, t: int, req: Any, resp: Any, duration: int) -> Rec:
    """A version 2 WebSocket open: `t` when the upgrade request began, `duration` until its answer ended."""
    wire = [2, rid, t, req[0], resp[0], duration]
    return wire, {
        "kind": "websocket_open",
        "id": rid,
        "time_us": t,
        "request": req[1],
        "response": resp[1],
        "duration_us": duration,
    }


def ws_open_v1(rid: int, t: int, req: Any, resp: Any) -> Rec:
    """A version 1 WebSocket open: `t` when the answer came, no duration (read as 0)."""
    wire, expected = ws_open(rid, t, req, resp, 0)
    return wire[:-1], expected


def frame(rid: int, t: int, from_client: bool, text: bool, payload: bytes, flags: int | None = None) -> Rec:
    if flags is None:
        flags = (1 if from_client else 0) | (2 if text else 0)
    return [3, rid, t, flags, payload], {
        "kind": "frame",
        "id": rid,
        "time_us": t,
        "from_client": from_client,
        "text": text,
        "payload_hex": payload.hex(),
    }


def close(rid: int, t: int, code: int | None, reason: str, closed_by: str | None) -> Rec:
    return [4, rid, t, code, reason, closed_by], {
        "kind": "close",
        "id": rid,
        "time_us": t,
        "code": code,
        "reason": reason,
        "closed_by": closed_by,
    }


def failure(rid: int, t: int, message: str) -> Rec:
    return [5, rid, t, message], {"kind": "failure", "id": rid, "time_us": t, "message": message}


def annotation(rid: int, t: int, data: dict[str, Any]) -> Rec:
    return [6, rid, t, data], {"kind": "annotation", "id": rid, "time_us": t, "data": data}


UPGRADE = request(
    "GET",
    "/ws",
    host="localhost",
    port=8765,
    query="room=1",
    headers=(
        ("Host", "localhost:8765"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Protocol", "chat.v1, chat.v2"),
    ),
)
SWITCHING = response(
    101,
    "Switching Protocols",
    headers=(
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ("Sec-WebSocket-Protocol", "chat.v1"),
    ),
)
JSON_HEADERS = (("Content-Type", "application/json"), ("Content-Length", "27"))


def every_kind(version: int = VERSION) -> list[Rec]:
    opened = ws_open(3, 29_200, UPGRADE, SWITCHING, 800) if version == 2 else ws_open_v1(3, 30_000, UPGRADE, SWITCHING)
    return [
        http(
            1,
            1_500,
            request("GET", "/api/config", headers=(("Host", "api.example.test"),)),
            response(200, "OK", headers=JSON_HEADERS, body=b'{"feature":true,"limit":10}'),
            12_345,
        ),
        http(
            2,
            20_000,
            request(
                "POST",
                "/api/login",
                body=b"user=a&pass=b",
                headers=(("Content-Type", "application/x-www-form-urlencoded"),),
            ),
            None,
            0,
        ),
        failure(2, 5_020_000, "upstream closed the connection without a response"),
        opened,
        frame(3, 31_000, True, True, b'{"type":"hello"}'),
        frame(3, 32_500, False, False, b"\x00\x01\x02\xfe\xff"),
        close(3, 40_000, 1000, "bye", "client"),
        annotation(0, 41_000, {"redacted": ["authorization"], "count": 1}),
    ]


# --- cases ----------------------------------------------------------------------


@dataclass
class Case:
    path: str  # "valid/NAME" or "invalid/NAME"
    data: bytes
    expected: dict[str, Any]


CASES: list[Case] = []


def valid(
    name: str,
    description: str,
    head: dict[str, Any],
    records: list[Rec],
    *,
    tail: bytes = b"",
    raw: bytes | None = None,
    canonical: bool = True,
    alternative: dict[str, Any] | None = None,
) -> None:
    """A valid cassette: header, records, and an optional incomplete last record (`tail`)."""
    body = raw if raw is not None else pack(head) + b"".join(pack(wire) for wire, _ in records)
    expected: dict[str, Any] = {
        "description": description,
        "header": header_json(head),
        "records": [exp for _, exp in records],
        "truncated_at": len(body) if tail else None,
        "canonical": canonical,
    }
    if alternative:
        expected["alternative"] = alternative
    CASES.append(Case(f"valid/{name}", body + tail, expected))


def invalid(
    name: str,
    description: str,
    data: bytes,
    error: str,
    contains: list[str],
    *,
    offset: int | None = None,
    records_before: int | None = None,
) -> None:
    CASES.append(
        Case(
            f"invalid/{name}",
            data,
            {
                "description": description,
                "error": error,
                "stage": "header" if records_before is None else "records",
                "offset": offset,
                "records_before_error": records_before,
                "message_contains": contains,
            },
        )
    )


H = pack(header())
GOOD = pack(frame(1, 1_000, True, True, b"ok")[0])
AT = len(H) + len(GOOD)  # offset of the bad record in `bad_record` cases


def bad_record(
    name: str,
    description: str,
    record: bytes,
    contains: list[str],
    error: str = "CorruptRecordError",
    version: int = VERSION,
) -> None:
    """A header, one good frame, then `record` (raw msgpack bytes) which must be rejected."""
    head = pack(header(version=version))
    assert len(head) == len(H)
    invalid(name, description, head + GOOD + record + GOOD, error, contains, offset=AT, records_before=1)


def bad_value(name: str, description: str, value: Any, contains: list[str], version: int = VERSION) -> None:
    bad_record(name, description, pack(value), contains, version=version)


def build() -> None:
    CASES.clear()

    # ---- valid -------------------------------------------------------------------
    minimal = {
        "format": "wsreplay-cassette",
        "version": VERSION,
        "created": CREATED,
        "wsreplay": "0.1.0",
        "mode": "record",
    }
    valid(
        "header_minimal",
        "Only the required header keys, no records: upstream reads as nil, metadata as {}.",
        minimal,
        [],
        canonical=False,
    )
    valid(
        "header_full",
        "Every header key, no records.",
        header(
            upstream="reverse:https://api.example.test",
            mode="record",
            metadata={"test": "login flow", "retries": 3, "ratio": 0.5, "ok": True, "tags": ["a", "b"], "none": None},
        ),
        [],
    )
    valid(
        "every_kind",
        "One record of each kind 1-6: HTTP with and without response, failure, WebSocket open, "
        "text and binary frames, close, annotation.",
        header(),
        every_kind(),
    )
    valid(
        "v1_every_kind",
        "Version 1: one record of each kind; the WebSocket open has 5 elements, no duration "
        "(read as 0), and its time is when the 101 came.",
        header(version=1),
        every_kind(version=1),
    )
    for version, prefix in ((VERSION, ""), (1, "v1_")):
        opening = ws_open_v1 if version == 1 else lambda rid, t, req, resp: ws_open(rid, t - 400, req, resp, 400)
        valid(
            f"{prefix}interleaved",
            "Two WebSockets and an HTTP exchange interleaved. The exchange is written when "
            "its response arrives, with its start time, so times in file order go back (52000 after 60000).",
            header(version=version),
            [
                opening(1, 10_000, UPGRADE, SWITCHING),
                opening(2, 11_000, UPGRADE, SWITCHING),
                frame(1, 20_000, True, True, b'{"n":1}'),
                frame(2, 21_000, True, True, b'{"n":1}'),
                frame(2, 22_000, False, True, b'{"ack":1}'),
                frame(1, 60_000, False, True, b'{"ack":1}'),
                http(3, 52_000, request("GET", "/health"), response(204, "No Content"), 9_000),
                close(2, 70_000, 1001, "going away", "server"),
                frame(1, 71_000, True, False, b"\x01"),
                close(1, 80_000, 1000, "", "client"),
            ],
        )
        valid(
            f"{prefix}refused_upgrade",
            "A WebSocket upgrade refused with 403: a kind 2 record whose response is "
            "not 101, with no frames or close after it.",
            header(version=version),
            [
                opening(
                    1,
                    1_000,
                    UPGRADE,
                    response(403, "Forbidden", headers=JSON_HEADERS, body=b'{"error":"bad token xyz"}'),
                ),
                http(2, 5_000, request("GET", "/login"), response(302, "Found", headers=(("Location", "/"),)), 800),
            ],
        )
    valid(
        "upgrade_durations",
        "How long each upgrade waited for its answer: an accepted upgrade that took 150 ms "
        "(its first server frame 100 ms after the 101, i.e. at time + duration + 100 ms), a refusal that took "
        "120 ms, an upgrade answered at once, and one over 71 minutes.",
        header(),
        [
            ws_open(1, 2_000, UPGRADE, SWITCHING, 150_000),
            frame(1, 252_000, False, True, b'{"type":"connected"}'),
            ws_open(
                2,
                300_000,
                UPGRADE,
                response(401, "Unauthorized", headers=JSON_HEADERS, body=b'{"detail":"bad token"}'),
                120_000,
            ),
            ws_open(3, 500_000, UPGRADE, SWITCHING, 0),
            ws_open(4, 600_000, UPGRADE, SWITCHING, 2**32 + 1),
        ],
    )
    valid(
        "binary_all_bytes",
        "Binary frames holding every byte value 0-255, both directions.",
        header(),
        [
            ws_open(1, 0, UPGRADE, SWITCHING, 50),
            frame(1, 100, False, False, bytes(range(256))),
            frame(1, 200, True, False, bytes(range(255, -1, -1))),
        ],
    )
    valid(
        "empty_payloads",
        "Empty text and binary frames, empty bodies, a close without code.",
        header(),
        [
            http(1, 0, request("HEAD", "/"), response(200, "OK"), 0),
            ws_open(2, 10, UPGRADE, SWITCHING, 0),
            frame(2, 20, True, True, b""),
            frame(2, 30, False, False, b""),
            close(2, 40, None, "", None),
        ],
    )
    valid(
        "unicode_text",
        "UTF-8 text in frames, close reason and failure message; a header value with a "
        "latin-1 character (U+00E9, on the wire as msgpack str bytes C3 A9).",
        header(),
        [
            http(
                1,
                0,
                request("GET", "/caf\u00e9"),
                response(200, "OK", headers=(("X-Place", "caf\u00e9"),), body="na\u00efve".encode()),
                5,
            ),
            ws_open(2, 10, UPGRADE, SWITCHING, 5),
            frame(2, 20, True, True, "h\u00e9llo w\u00f6rld \u2014 \u4f60\u597d \U0001f389".encode()),
            frame(2, 30, False, True, '{"msg":"na\u00efve \u2603"}'.encode()),
            close(2, 40, 4000, "au revoir \u270b", "server"),
            failure(3, 50, "\u00e9chec: \u63a5\u7d9a\u304c\u62d2\u5426\u3055\u308c\u307e\u3057\u305f"),
        ],
    )
    valid(
        "close_variants",
        "Close records with and without code, reason and side.",
        header(),
        [
            close(1, 1, None, "", None),
            close(2, 2, 1000, "", "client"),
            close(3, 3, 1006, "abnormal closure", "server"),
            close(4, 4, 4999, "app", None),
        ],
    )
    valid(
        "large_values",
        "Ids and times beyond 32 bits.",
        header(),
        [
            frame(2**32 + 5, 2**40, True, True, b"x"),
            http(2**40 + 1, 2**41, request("GET", "/", port=65535), response(599, "Custom"), 2**33),
        ],
    )
    valid(
        "max_values",
        "The largest unsigned 64-bit id, time and durations. (wsreplay keeps times as float "
        "seconds, so its writer cannot reproduce times above 2**53 microseconds exactly.)",
        header(),
        [
            frame(2**64 - 1, 2**64 - 1, False, True, b"x"),
            http(2**64 - 1, 2**64 - 1, request("GET", "/"), None, 2**64 - 1),
            ws_open(2**64 - 1, 2**64 - 1, UPGRADE, SWITCHING, 2**64 - 1),
        ],
        canonical=False,
    )
    records = every_kind()
    cut = pack(frame(3, 50_000, False, True, b'{"type":"partial-message"}')[0])
    valid(
        "truncated_last_record",
        "A recorder killed mid-write: the last record stops inside its payload. "
        "The complete records are read and the truncation offset reported.",
        header(),
        records,
        tail=cut[:-7],
    )
    valid(
        "truncated_between_fields",
        "The last record stops right after two complete fields (kind and id), not inside any value.",
        header(),
        records[:3],
        tail=cut[:3],
    )
    valid(
        "truncated_header_of_record",
        "The file ends after the first byte of a record (its array header).",
        header(),
        records[:1],
        tail=cut[:1],
    )
    valid(
        "truncated_huge_bin_prefix",
        "The last record declares a payload of 4 GiB - 1 (over the 64 MiB limit) "
        "and the file ends: read as a truncated last record.",
        header(),
        records[:2],
        tail=b"\x95\x03\x01\x00\x01\xc6\xff\xff\xff\xffabc",
        canonical=True,
        alternative={
            "error": "CorruptRecordError",
            "offset": len(pack(header())) + sum(len(pack(w)) for w, _ in records[:2]),
        },
    )
    # Not the shortest encodings: every reader must accept them; writers never produce them.
    fl = b"\xcb" + struct.pack(">d", CREATED)  # float64
    raw = (
        b"\xde\x00\x05"  # map16 of 5
        + b"\xd9\x06format"
        + b"\xd9\x11wsreplay-cassette"  # str8
        + b"\xa7version"
        + b"\xcf"
        + VERSION.to_bytes(8, "big")  # uint64 2
        + b"\xa7created"
        + fl
        + b"\xa8wsreplay"
        + b"\xda\x00\x050.1.0"  # str16
        + b"\xa4mode"
        + b"\xdb\x00\x00\x00\x06record"  # str32
        # frame: array16, kind uint8, id uint32, time uint64, flags int8, payload bin32
        + b"\xdc\x00\x05\xcc\x03\xce\x00\x00\x00\x07\xcf"
        + (1234).to_bytes(8, "big")
        + b"\xd0\x03"
        + b"\xc6\x00\x00\x00\x02hi"
        # failure: array32, kind int16, id int32, time int64, message str8
        + b"\xdd\x00\x00\x00\x04\xd1\x00\x05\xd2\x00\x00\x00\x07\xd3"
        + (2000).to_bytes(8, "big")
        + b"\xd9\x04oops"
    )
    valid(
        "non_minimal_encodings",
        "Wider msgpack encodings than needed (map16, str8/16/32, uint64, int8-64, "
        "array16/32, bin32). Readers accept them; writers use the shortest ones.",
        minimal,
        [frame(7, 1234, True, True, b"hi"), failure(7, 2000, "oops")],
        raw=raw,
        canonical=False,
    )
    extra_req = UPGRADE[0] | {"trailers": [], "x-future": {"a": 1}}
    extra_resp = SWITCHING[0] | {"x-future": 2}
    raw = pack(header() | {"x-future": {"k": "v"}}) + pack([2, 1, 5, extra_req, extra_resp, 7])
    valid(
        "unknown_map_keys",
        "Unknown keys in the header and in request/response maps are ignored.",
        header(),
        [ws_open(1, 5, UPGRADE, SWITCHING, 7)],
        raw=raw,
        canonical=False,
    )
    valid(
        "reserved_flag_bits",
        "Frame flag bits 2-7 are reserved: readers ignore them.",
        header(),
        [
            frame(1, 1, True, True, b"a", flags=0xFF),
            frame(1, 2, False, False, b"b", flags=0x04),
            frame(1, 3, False, True, b"c", flags=0x82),
        ],
        canonical=False,
    )

    # ---- invalid: not a cassette / header ------------------------------------------
    invalid("empty", "An empty file.", b"", "NotACassetteError", ["empty"])
    invalid(
        "garbage",
        "Bytes that are not msgpack (0xc1 is never used).",
        b"\xc1\x00\xff\xfe garbage \x00\x01",
        "NotACassetteError",
        ["not a wsreplay cassette"],
    )
    invalid(
        "text_file",
        "A text file: its first byte decodes as a msgpack integer.",
        b"hello, this is not a cassette\n",
        "NotACassetteError",
        ["not a wsreplay cassette"],
    )
    invalid(
        "json_file",
        "A JSON rendering of a header.",
        json.dumps({"format": "wsreplay-cassette", "version": 1}).encode(),
        "NotACassetteError",
        ["not a wsreplay cassette"],
    )
    invalid("header_cut_short", "Only the first 30 bytes of a header.", H[:30], "NotACassetteError", ["cut short"])
    invalid(
        "header_not_a_map",
        "A file that starts with a record instead of a header.",
        GOOD + H,
        "NotACassetteError",
        ["not a wsreplay cassette"],
    )
    invalid(
        "format_misspelled",
        "The format name is wrong.",
        pack(header(format="wsreplay-casette")),
        "NotACassetteError",
        ["not a wsreplay cassette"],
    )
    invalid(
        "format_missing",
        "No format key.",
        pack(header(format=MISSING)),
        "NotACassetteError",
        ["not a wsreplay cassette"],
    )
    invalid(
        "header_ext_type",
        "A header holding a msgpack ext value.",
        pack(header(metadata={"t": msgpack.ExtType(5, b"x")})),
        "NotACassetteError",
        ["not a wsreplay cassette"],
    )
    invalid(
        "header_int_key",
        "A header map with an integer key.",
        pack(header())[:-1] + b"\x81\x01\x02",
        "NotACassetteError",
        ["not a wsreplay cassette"],
    )
    invalid(
        "version_3",
        "A newer format version: refuse and tell the user to upgrade.",
        pack(header(version=3)) + pack([9, 1, 0, "from the future"]),
        "UnsupportedVersionError",
        ["version 3", "upgrade wsreplay"],
    )
    invalid(
        "version_999",
        "A much newer format version with a different header.",
        pack({"format": "wsreplay-cassette", "version": 999}),
        "UnsupportedVersionError",
        ["version 999", "upgrade wsreplay"],
    )
    invalid(
        "version_0",
        "Version 0 never existed.",
        pack(header(version=0)),
        "CorruptRecordError",
        ["impossible format version 0"],
    )
    invalid(
        "version_negative",
        "A negative version.",
        pack(header(version=-1)),
        "CorruptRecordError",
        ["impossible format version -1"],
    )
    invalid(
        "version_missing",
        "No version key.",
        pack(header(version=MISSING)),
        "CorruptRecordError",
        ["no valid format version"],
    )
    invalid(
        "version_bool",
        "Version true (a bool where an int is required).",
        pack(header(version=True)),
        "CorruptRecordError",
        ["no valid format version"],
    )
    invalid(
        "version_string",
        'Version "1" as a string.',
        pack(header(version="1")),
        "CorruptRecordError",
        ["no valid format version"],
    )
    invalid(
        "created_missing",
        "No created key.",
        pack(header(created=MISSING)),
        "CorruptRecordError",
        ["header.created has the wrong type (NoneType)"],
    )
    invalid(
        "created_bool",
        "created true (a bool where a number is required).",
        pack(header(created=True)),
        "CorruptRecordError",
        ["header.created has the wrong type (bool)"],
    )
    invalid(
        "created_string",
        "created as an ISO date string.",
        pack(header(created="2026-01-01")),
        "CorruptRecordError",
        ["header.created has the wrong type (str)"],
    )
    invalid(
        "wsreplay_missing",
        "No wsreplay key.",
        pack(header(wsreplay=MISSING)),
        "CorruptRecordError",
        ["header.wsreplay"],
    )
    invalid(
        "mode_int",
        "mode as an integer.",
        pack(header(mode=1)),
        "CorruptRecordError",
        ["header.mode has the wrong type (int)"],
    )
    invalid(
        "upstream_int",
        "upstream as an integer.",
        pack(header(upstream=8080)),
        "CorruptRecordError",
        ["header.upstream has the wrong type (int)"],
    )
    invalid(
        "metadata_list",
        "metadata as an array.",
        pack(header(metadata=["a"])),
        "CorruptRecordError",
        ["header.metadata has the wrong type (list)"],
    )

    # ---- invalid: records ---------------------------------------------------------
    bad_record(
        "ext_type",
        "A msgpack ext value (type 5) inside an annotation.",
        pack([6, 0, 0, {"v": msgpack.ExtType(5, b"\x00")}]),
        [f"byte {AT}", "extension type"],
    )
    bad_record(
        "ext_timestamp",
        "The msgpack timestamp ext (type -1) inside an annotation.",
        pack([6, 0, 0, {"v": msgpack.Timestamp(1, 0)}]),
        [f"byte {AT}", "extension type"],
    )
    bad_record(
        "ext_empty",
        "A zero-length ext8 value of type 7 as a frame payload.",
        b"\x95\x03\x01\x00\x00\xc7\x00\x07",
        [f"byte {AT}", "extension type 7"],
    )
    bad_value(
        "arity_short",
        "A frame with 4 fields instead of 5.",
        [3, 1, 0, 0],
        [f"byte {AT}", "record of kind 3 has 4 fields, expected 5"],
    )
    bad_value(
        "arity_long",
        "A close with 7 fields instead of 6.",
        [4, 1, 0, 1000, "", "client", 0],
        ["record of kind 4 has 7 fields, expected 6"],
    )
    bad_value(
        "arity_http",
        "An HTTP record without duration.",
        [1, 1, 0, request()[0], None],
        ["record of kind 1 has 5 fields, expected 6"],
    )
    bad_value("record_too_short", "A record of only [kind, id].", [3, 1], ["record is too short"])
    bad_value("record_empty_array", "An empty array as a record.", [], ["record is too short"])
    bad_value("unknown_kind_7", "Kind 7 is not defined in v1.", [7, 1, 0, "x"], ["unknown record kind 7"])
    bad_value("unknown_kind_0", "Kind 0 is not defined.", [0, 1, 0], ["unknown record kind 0"])
    bad_value("kind_string", "The kind as a string.", ["frame", 1, 0, 0, b""], ["record kind has the wrong type (str)"])
    bad_value(
        "record_is_map",
        "A map where a record array belongs (two cassettes concatenated).",
        header(),
        ["record has the wrong type (dict)"],
    )
    bad_value("record_is_int", "An integer where a record array belongs.", 42, ["record has the wrong type (int)"])
    bad_value(
        "payload_str",
        "A frame payload as msgpack str instead of bin.",
        [3, 1, 0, 3, "hello"],
        ["frame payload has the wrong type (str)"],
    )
    bad_value(
        "time_float",
        "A time as a float instead of integer microseconds.",
        [3, 1, 0.5, 3, b"x"],
        ["record time has the wrong type (float)"],
    )
    bad_value("time_negative", "A negative time.", [3, 1, -1, 3, b"x"], ["record time is negative"])
    bad_value("id_negative", "A negative id.", [3, -1, 0, 3, b"x"], ["record id is negative"])
    bad_value("id_string", "An id as a string.", [3, "1", 0, 3, b"x"], ["record id has the wrong type (str)"])
    bad_value(
        "id_bool",
        "id true: a bool where an int is required.",
        [3, True, 0, 3, b"x"],
        ["record id has the wrong type (bool)"],
    )
    bad_value(
        "flags_bool",
        "flags true: a bool where an int is required.",
        [3, 1, 0, True, b"x"],
        ["frame flags has the wrong type (bool)"],
    )
    bad_value(
        "port_bool",
        "request.port false.",
        [2, 1, 0, request(port=False)[0], SWITCHING[0], 0],
        ["request.port has the wrong type (bool)"],
    )
    bad_value(
        "close_code_bool", "A close code true.", [4, 1, 0, True, "", None], ["close code has the wrong type (bool)"]
    )
    bad_value(
        "port_string",
        "request.port as a string.",
        [1, 1, 0, request(port="80")[0], None, 0],  # type: ignore[arg-type]
        ["request.port has the wrong type (str)"],
    )
    bad_value(
        "body_string",
        "request.body as str instead of bin.",
        [1, 1, 0, request()[0] | {"body": "text"}, None, 0],
        ["request.body has the wrong type (str)"],
    )
    bad_value(
        "method_missing",
        "A request without method.",
        [1, 1, 0, {k: v for k, v in request()[0].items() if k != "method"}, None, 0],
        ["request lacks 'method'"],
    )
    bad_value(
        "response_is_list",
        "A response as an array.",
        [2, 1, 0, UPGRADE[0], [101], 0],
        ["response has the wrong type (list)"],
    )
    bad_value(
        "ws_response_nil",
        "A WebSocket open without response (only HTTP may have nil).",
        [2, 1, 0, UPGRADE[0], None, 0],
        ["response has the wrong type (NoneType)"],
    )
    bad_value(
        "arity_ws_open",
        "A version 2 WebSocket open without its duration (the version 1 layout).",
        [2, 1, 0, UPGRADE[0], SWITCHING[0]],
        ["record of kind 2 has 5 fields, expected 6"],
    )
    bad_value(
        "v1_arity_ws_open",
        "A version 1 WebSocket open with a duration (the version 2 layout).",
        [2, 1, 0, UPGRADE[0], SWITCHING[0], 0],
        ["record of kind 2 has 6 fields, expected 5"],
        version=1,
    )
    bad_value(
        "upgrade_duration_negative",
        "A negative WebSocket open duration.",
        [2, 1, 0, UPGRADE[0], SWITCHING[0], -5],
        ["upgrade duration is negative"],
    )
    bad_value(
        "upgrade_duration_float",
        "A WebSocket open duration as float seconds.",
        [2, 1, 0, UPGRADE[0], SWITCHING[0], 0.15],
        ["upgrade duration has the wrong type (float)"],
    )
    bad_value(
        "upgrade_duration_nil",
        "A WebSocket open duration nil.",
        [2, 1, 0, UPGRADE[0], SWITCHING[0], None],
        ["upgrade duration has the wrong type (NoneType)"],
    )
    bad_value(
        "headers_not_pairs",
        "Headers as a flat list.",
        [1, 1, 0, request()[0] | {"headers": ["Host", "x"]}, None, 0],
        ["request.headers must be a list of [name, value] strings"],
    )
    bad_value(
        "headers_map",
        "Headers as a map (order would be lost).",
        [1, 1, 0, request()[0] | {"headers": {"Host": "x"}}, None, 0],
        ["request.headers has the wrong type (dict)"],
    )
    bad_value(
        "headers_not_latin1",
        "A header value with U+20AC, which latin-1 cannot hold.",
        [1, 1, 0, request()[0], response(200, headers=(("X-Price", "5\u20ac"),))[0], 0],
        ["response.headers must hold latin-1 strings only"],
    )
    bad_value("close_side_invalid", 'closed_by "proxy".', [4, 1, 0, 1000, "", "proxy"], ["close side"])
    bad_value(
        "close_reason_int",
        "A close reason as an integer.",
        [4, 1, 0, 1000, 5, None],
        ["close reason has the wrong type (int)"],
    )
    bad_value(
        "failure_message_bin",
        "A failure message as bin instead of str.",
        [5, 1, 0, b"refused"],
        ["failure message has the wrong type (bytes)"],
    )
    bad_value(
        "annotation_list", "Annotation data as an array.", [6, 0, 0, ["x"]], ["annotation has the wrong type (list)"]
    )
    bad_value(
        "duration_negative", "A negative HTTP duration.", [1, 1, 0, request()[0], None, -5], ["duration is negative"]
    )
    bad_record(
        "map_key_int",
        "An integer map key: the request is the map {1: 2}.",
        b"\x96\x01\x01\x00\x81\x01\x02\xc0\x00",
        [f"byte {AT}", "not allowed for map key"],
    )
    bad_record(
        "map_key_bin",
        "A bin (not str) map key inside an annotation.",
        b"\x94\x06\x00\x00\x81\xc4\x01k\x01",
        [f"byte {AT}", "is not a string"],
    )
    bad_record(
        "invalid_utf8", "A str whose bytes are not UTF-8.", b"\x94\x05\x01\x00\xa2\xff\xfe", [f"byte {AT}", "utf-8"]
    )
    bad_record("reserved_byte", "The msgpack byte 0xc1, which is never used.", b"\xc1", [f"corrupt data at byte {AT}"])
    bad_record(
        "huge_array_prefix",
        "A record array declaring 4294967295 entries.",
        b"\xdd\xff\xff\xff\xff",
        [f"byte {AT}", "exceeds max_array_len"],
    )
    bad_record(
        "huge_map_prefix",
        "Annotation data declaring 4294967295 entries.",
        b"\x94\x06\x00\x00\xdf\xff\xff\xff\xff",
        [f"byte {AT}", "exceeds max_map_len"],
    )
    bad_record(
        "array_over_limit",
        "An array declaring 65537 entries, one over the limit.",
        b"\x94\x06\x00\x00\x81\xa1k\xdd\x00\x01\x00\x01",
        [f"byte {AT}", "exceeds max_array_len(65536)"],
    )
    bad_record(
        "nesting_too_deep",
        "Annotation data nested 2000 arrays deep.",
        b"\x94\x06\x00\x00\x81\xa1k" + b"\x91" * 2000 + b"\xc0",
        [f"corrupt data at byte {AT}"],
    )


def expected_text(expected: dict[str, Any]) -> str:
    return json.dumps(expected, indent=2, ensure_ascii=False) + "\n"


def files() -> dict[str, bytes]:
    """Every file the generator makes, by path relative to this folder."""
    build()
    out: dict[str, bytes] = {}
    for case in CASES:
        if f"{case.path}.cassette" in out:
            raise ValueError(f"duplicate case {case.path}")
        out[f"{case.path}.cassette"] = case.data
        out[f"{case.path}.expected.json"] = expected_text(case.expected).encode("utf-8")
    return out


def main() -> int:
    made = files()
    for folder in ("valid", "invalid"):
        shutil.rmtree(HERE / folder, ignore_errors=True)
        (HERE / folder).mkdir()
    for relative, data in sorted(made.items()):
        (HERE / relative).write_bytes(data)
    print(f"wrote {len(made) // 2} cases ({len(made)} files) under {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
