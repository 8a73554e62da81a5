"""The "big cassette" benchmark: every command on cassettes of 100 MB and 1 GB.

    python bench/big_cassette.py PATH MB     # just write a big cassette
    python bench/run.py                      # the benchmark, as its "big cassette" section

`write_big_cassette` writes, with :class:`~wsreplay.cassette.CassetteWriter`, a token POST
and then `connections` concurrent WebSocket chat sessions, their frames interleaved as
concurrent sessions interleave: each turn is a client ``message`` frame answered by
``agent_started``, many ``agent_thinking`` token frames of about 200 bytes, ``tool_executing``,
``tool_completed`` and ``agent_completed``. Every session ends with a normal close.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsreplay.cassette import CassetteWriter
from wsreplay.records import (
    CassetteHeader,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    WebSocketClose,
    WebSocketOpen,
)

TOKENS_PER_TURN = 1000
"""``agent_thinking`` frames per chat turn."""
FRAME_GAP = 0.000_05
"""Recorded seconds between two frames of the cassette."""
HOST = "staging.example"


def _upgrade(number: int) -> HttpRequest:
    return HttpRequest(
        "GET",
        "http",
        HOST,
        80,
        "/ws",
        f"session={number}",
        headers=(
            ("Host", HOST),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ),
    )


def _accepted() -> HttpResponse:
    return HttpResponse(
        101,
        "Switching Protocols",
        headers=(
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ),
    )


def _event(kind: str, session: int, turn: int, step: int) -> bytes:
    data = {
        "type": kind,
        "payload": {
            "run_id": f"run-{session}-{turn}",
            "step_number": step,
            "reasoning": "The agent keeps streaming its reasoning one token at a time, word by word",
        },
    }
    return json.dumps(data, separators=(",", ":")).encode()


def _turn(session: int, turn: int) -> list[tuple[bool, bytes]]:
    """One chat turn's frames: (from the client, payload)."""
    question = json.dumps({"type": "message", "payload": {"content": f"question {turn}", "thread": session}}).encode()
    frames = [(True, question), (False, _event("agent_started", session, turn, 0))]
    frames += [(False, _event("agent_thinking", session, turn, step)) for step in range(1, TOKENS_PER_TURN + 1)]
    frames += [
        (False, _event(kind, session, turn, 0)) for kind in ("tool_executing", "tool_completed", "agent_completed")
    ]
    return frames


def write_big_cassette(path: Path, target_bytes: int, connections: int = 20) -> dict[str, int]:
    """Write a cassette of about `target_bytes` to `path`; its frame and turn counts."""
    header = CassetteHeader(created=time.time(), wsreplay_version="bench", upstream=f"reverse:http://{HOST}")
    clock = 0.0
    frames = turns = 0
    with CassetteWriter(path, header, overwrite=True) as writer:
        token = HttpRequest("POST", "http", HOST, 80, "/auth/e2e/token", body=b'{"bypass_key":"REDACTED"}')
        answer = HttpResponse(200, "OK", headers=(("Content-Type", "application/json"),), body=b'{"token":"t"}')
        writer.write(HttpExchange(1, clock, token, answer, 0.01))
        for number in range(connections):
            writer.write(WebSocketOpen(number + 2, clock, _upgrade(number), _accepted(), 0.01))
        clock += 0.01
        turn = 0
        while writer.bytes_written < target_bytes:
            turn += 1
            per_session = [_turn(number, turn) for number in range(connections)]
            for position in range(len(per_session[0])):
                for number, session_frames in enumerate(per_session):
                    from_client, payload = session_frames[position]
                    clock += FRAME_GAP
                    writer.write_frame(number + 2, clock, from_client, True, payload)
            frames += connections * len(per_session[0])
            turns += connections
        for number in range(connections):
            clock += FRAME_GAP
            writer.write(WebSocketClose(number + 2, clock, 1000, "bye", "client"))
    return {"frames": frames, "turns": turns, "bytes": path.stat().st_size}


TARGET_RSS_MB = 150
FLAT_RSS_RATIO = 1.10
FIRST_CONNECTION_SECONDS = 2.0
FRAMES_PER_SECOND = 500_000
FIRST_CONNECTION_PROBE = """
import asyncio, json, os, sys, time
from websockets.asyncio.client import connect

async def main():
    async with connect(os.environ["WSREPLAY_WS_URL"] + "/ws?session=0", open_timeout=60) as socket:
        await socket.send(json.dumps({"type": "message", "payload": {"content": "question 1", "thread": 0}}))
        await asyncio.wait_for(socket.recv(), 60)
    print(time.time())

asyncio.run(main())
"""


def run_measured(command: Sequence[str], capture: bool = False) -> tuple[float, float, str]:
    """Run `command`; its wall time, its own peak RSS in MB (wait4's ru_maxrss) and, with
    `capture`, its output (else it goes to /dev/null: big outputs are not kept)."""
    with _scratch() as stdout, _scratch() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout if capture else subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode not in (0, 1):  # 1: failed turns, a difference, secrets found
            stderr.seek(0)
            raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {stderr.read().decode()[-500:]}")
        stdout.seek(0)
        return seconds, usage.ru_maxrss / 1024, stdout.read().decode()


def _scratch() -> Any:
    import tempfile

    return tempfile.TemporaryFile()


def _commands(cassette: Path, work: Path) -> dict[str, list[str]]:
    """The commands measured, by name: each reads the whole cassette."""
    return {
        "show --json": ["show", "--json", str(cassette)],
        "verify": ["verify", str(cassette)],
        "scan": ["scan", str(cassette)],
        "diff A A": ["diff", str(cassette), str(cassette)],
        "export (HAR)": ["export", str(cassette), "-o", str(work / "big-export.har")],
        "redact": ["redact", str(cassette), "-o", str(work / "big-redacted.cassette"), "--overwrite"],
    }


def first_connection(cassette: Path) -> tuple[float, float]:
    """``replay --direct`` of `cassette`: seconds from its start until a client's first chat turn
    got its first frame, and the replay's peak RSS in MB."""
    launched = time.time()
    command = [sys.executable, "-m", "wsreplay", "replay", "--direct", "--listen", "127.0.0.1:0", str(cassette)]
    _, rss, output = run_measured([*command, "--", sys.executable, "-c", FIRST_CONNECTION_PROBE], capture=True)
    return float(output.split()[-1]) - launched, rss


def big_cassette_benchmarks(quick: bool, work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Figures (as ``run.Figure`` keyword arguments) and raw data: each command's time and peak
    RSS on a small and a big cassette (100 MB and 1 GB; --quick: 10 and 100 MB)."""
    small, big = (10, 100) if quick else (100, 1000)
    raw: dict[str, Any] = {}
    for size in (small, big):
        cassette = work / f"big-{size}mb.cassette"
        _log(f"big cassette: writing {size} MB")
        built = write_big_cassette(cassette, size * 1_000_000)
        measured: dict[str, Any] = {}
        seconds, rss = first_connection(cassette)
        measured["replay --direct"] = {"first_connection_seconds": seconds, "rss_mb": rss}
        for name, arguments in _commands(cassette, work).items():
            _log(f"big cassette: {name} on {size} MB")
            seconds, rss, _ = run_measured([sys.executable, "-m", "wsreplay", *arguments])
            measured[name] = {"seconds": seconds, "rss_mb": rss}
        for leftover in (cassette, work / "big-export.har", work / "big-redacted.cassette"):
            leftover.unlink(missing_ok=True)
        raw[f"{size}mb"] = built | {"commands": measured}
    return _figures(raw, small, big), {"big_cassette": raw}


def _figures(raw: dict[str, Any], small: int, big: int) -> list[dict[str, Any]]:
    runs_small, runs_big = raw[f"{small}mb"], raw[f"{big}mb"]
    size = f"{big / 1000:g} GB" if big >= 1000 else f"{big} MB"
    figures: list[dict[str, Any]] = []
    for name, at_big in runs_big["commands"].items():
        at_small = runs_small["commands"][name]
        key = "big." + name.split()[0]
        figures += [
            {
                "key": f"{key}.rss",
                "label": f"{name}: peak RSS, {size} cassette",
                "value": at_big["rss_mb"],
                "unit": "MB",
                "target": f"value<={TARGET_RSS_MB}",
            },
            {
                "key": f"{key}.rss_flat",
                "label": f"{name}: peak RSS, {size} cassette",
                "value": at_big["rss_mb"],
                "unit": "MB",
                "baseline": at_small["rss_mb"],
                "baseline_label": f"{small} MB cassette",
                "target": f"ratio<={FLAT_RSS_RATIO}",
            },
        ]
        if "seconds" in at_big:
            figures.append(
                {
                    "key": f"{key}.time",
                    "label": f"{name}: time, {size} cassette",
                    "value": at_big["seconds"],
                    "unit": "s",
                    "baseline": at_small["seconds"],
                    "baseline_label": f"{small} MB cassette",
                    "inverse": True,
                }
            )
    first = runs_big["commands"]["replay --direct"]["first_connection_seconds"]
    figures.append(
        {
            "key": "big.replay.first",
            "label": f"replay --direct: first connection served, {size} cassette",
            "value": first,
            "unit": "s",
            "target": f"value<={FIRST_CONNECTION_SECONDS:g}",
        }
    )
    for name in ("show --json", "verify"):
        rate = runs_big["frames"] / runs_big["commands"][name]["seconds"]
        figures.append(
            {
                "key": f"big.{name.split()[0]}.rate",
                "label": f"{name}: frames read, {size} cassette",
                "value": rate,
                "unit": "frames/s",
                "target": f"value>={FRAMES_PER_SECOND}",
            }
        )
    return figures


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(write_big_cassette(Path(sys.argv[1]), int(float(sys.argv[2]) * 1_000_000)))
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as directory:
            figures, _ = big_cassette_benchmarks("--quick" in sys.argv, Path(directory))
        for figure in figures:
            print(figure)
