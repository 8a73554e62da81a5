"""Cassette write/read speed and size per frame, against JSON lines and mitmproxy's flow file."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsreplay.cassette import CassetteReader, CassetteWriter, load_cassette
from wsreplay.records import CassetteHeader, Record, WebSocketFrame, WebSocketOpen
from wsreplay.timeline import record_as_dict


def connection_records(cassette_path: Path, query: str) -> list[Record]:
    """The records of the first WebSocket connection whose upgrade had `query` (``n=100000``)."""
    records = load_cassette(cassette_path).records
    wanted = next(
        (
            r.id
            for r in records
            if isinstance(r, WebSocketOpen) and r.request.path == "/burst" and r.request.query == query
        ),
        None,
    )
    if wanted is None:
        raise RuntimeError(f"{cassette_path} has no /burst?{query} connection")
    return [record for record in records if record.id == wanted]


def select_connections(cassette_path: Path, queries: Sequence[str], output: Path) -> dict[str, int]:
    """Write a cassette holding, for each query, the first /burst connection with it; return frames per query."""
    cassette = load_cassette(cassette_path)
    chosen: dict[int, str] = {}
    for record in cassette.records:
        if isinstance(record, WebSocketOpen) and record.request.path == "/burst" and record.request.query in queries:
            if record.request.query not in chosen.values():
                chosen[record.id] = record.request.query
    missing = set(queries) - set(chosen.values())
    if missing:
        raise RuntimeError(f"{cassette_path} lacks /burst connections for {sorted(missing)}")
    frames = dict.fromkeys(queries, 0)
    with CassetteWriter(output, cassette.header, overwrite=True) as writer:
        for record in cassette.records:
            if record.id in chosen:
                writer.write(record)
                if isinstance(record, WebSocketFrame) and not record.from_client:
                    frames[chosen[record.id]] += 1
    return frames


def cassette_figures(records: Sequence[Record], directory: Path) -> dict[str, Any]:
    """Write `records` as a cassette and as JSON lines, read both back; speeds and sizes."""
    frames = sum(isinstance(r, WebSocketFrame) for r in records)
    header = CassetteHeader(created=time.time(), wsreplay_version="bench", upstream="reverse:http://127.0.0.1")
    cassette = directory / "storage.cassette"
    jsonl = directory / "storage.jsonl"

    started = time.perf_counter()
    with CassetteWriter(cassette, header, overwrite=True) as writer:
        for record in records:
            writer.write(record)
    write_seconds = time.perf_counter() - started
    cassette_bytes = cassette.stat().st_size

    started = time.perf_counter()
    with open(cassette, "rb") as handle:
        reader = CassetteReader(handle, name=str(cassette))
        read_frames = sum(1 for record in reader if isinstance(record, WebSocketFrame))
    read_seconds = time.perf_counter() - started
    if read_frames != frames:
        raise RuntimeError(f"read {read_frames} frames back, wrote {frames}")

    started = time.perf_counter()
    with open(jsonl, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record_as_dict(record), ensure_ascii=False) + "\n")
    jsonl_write_seconds = time.perf_counter() - started
    started = time.perf_counter()
    with open(jsonl, encoding="utf-8") as handle:
        jsonl_frames = sum(1 for line in handle if json.loads(line)["kind"] == "frame")
    jsonl_read_seconds = time.perf_counter() - started
    if jsonl_frames != frames:
        raise RuntimeError(f"read {jsonl_frames} JSON frames back, wrote {frames}")

    result = {
        "frames": frames,
        "records": len(records),
        "payload_bytes_per_frame": sum(len(r.payload) for r in records if isinstance(r, WebSocketFrame)) / frames,
        "cassette_bytes": cassette_bytes,
        "cassette_bytes_per_frame": cassette_bytes / frames,
        "write_seconds": write_seconds,
        "read_seconds": read_seconds,
        "jsonl_bytes": jsonl.stat().st_size,
        "jsonl_bytes_per_frame": jsonl.stat().st_size / frames,
        "jsonl_write_seconds": jsonl_write_seconds,
        "jsonl_read_seconds": jsonl_read_seconds,
    }
    os.unlink(cassette)
    os.unlink(jsonl)
    return result


def flow_file_figures(path: Path) -> dict[str, Any]:
    """Size per message of mitmproxy's flow file of one WebSocket session, and its read time."""
    from mitmproxy import io

    started = time.perf_counter()
    with open(path, "rb") as handle:
        flows = list(io.FlowReader(handle).stream())
    read_seconds = time.perf_counter() - started
    messages = sum(len(flow.websocket.messages) for flow in flows if getattr(flow, "websocket", None))
    server_messages = sum(
        sum(1 for m in flow.websocket.messages if not m.from_client)
        for flow in flows
        if getattr(flow, "websocket", None)
    )
    size = path.stat().st_size
    return {
        "flows": len(flows),
        "messages": messages,
        "server_messages": server_messages,
        "bytes": size,
        "bytes_per_message": size / max(1, messages),
        "read_seconds": read_seconds,
    }
