"""Real protocol servers and clients run as processes: the Node scripts of tests/support/npm
(graphql-ws, `ws`; packages installed by tests/support/npm_env.sh) and Python servers.

    with listening_server(NODE, str(NPM_DIR / "graphql_server.mjs")) as port:
        ...                           # the server is stopped (and gone) after the block

    result, transcript = node_under_wsreplay("record", ..., script=..., args=[...])
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_wsreplay
from tests.support.node import NODE

NPM_DIR = Path(__file__).parent / "npm"
NODE_MODULES = NPM_DIR / "node_modules"
LISTENING = re.compile(r"^listening on (?P<host>[\d.]+):(?P<port>\d+)$")
TIMEOUT = 60


def _missing() -> str:
    if NODE is None:
        return "Node.js 20+ is not installed"
    if not NODE_MODULES.is_dir():
        return f"{NODE_MODULES} is missing: run `bash tests/support/npm_env.sh` (npm ci) first"
    return ""


_MISSING = _missing()
requires_npm_packages = pytest.mark.skipif(bool(_MISSING), reason=_MISSING)


@contextmanager
def listening_server(*argv: str, timeout: float = 30) -> Iterator[int]:
    """Run a server that prints "listening on HOST:PORT" on stdout; yield PORT, then stop it."""
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{argv} printed nothing in {timeout}s") from None
        found = LISTENING.match(line or "")
        if found is None:
            assert process.stderr is not None
            process.kill()
            raise AssertionError(f"{argv} did not start: {line!r}\n{process.stderr.read()}")
        yield int(found["port"])
    finally:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
        reader.join(timeout)
        if process.stderr is not None:
            process.stderr.close()


def node_under_wsreplay(
    *wsreplay_args: str, script: Path, args: Sequence[str] = ()
) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run `wsreplay ARGS --listen 127.0.0.1:0 -- node SCRIPT ARGS`: the result and the script's
    transcript (its last stdout line as JSON; None when it printed nothing)."""
    assert NODE is not None
    result = run_wsreplay(*wsreplay_args, "--listen", "127.0.0.1:0", "--", NODE, str(script), *args, timeout=TIMEOUT)
    lines = result.stdout.strip().splitlines()
    try:
        transcript = json.loads(lines[-1]) if lines else None
    except ValueError:
        transcript = lines[-1]  # not the script's JSON: whatever it printed last
    return result, transcript


def explain(result: subprocess.CompletedProcess[str], transcript: Any) -> str:
    """What a failed run said: the client's transcript and wsreplay's stderr."""
    return f"exit status {result.returncode}\nclient: {json.dumps(transcript)}\nwsreplay:\n{result.stderr}"


@dataclass(frozen=True)
class Recording:
    cassette: Path
    live: Any
    """The client's transcript of the live session."""


def record_live(server: Sequence[str], cassette: Path, script: Path, args: Sequence[str] = ()) -> Recording:
    """Start `server`, run the Node `script` against it through `wsreplay record`, stop the server."""
    with listening_server(*server) as port:
        upstream = f"http://127.0.0.1:{port}"
        result, live = node_under_wsreplay(
            "record", "--upstream", upstream, "-o", str(cassette), script=script, args=args
        )
    assert result.returncode == 0, explain(result, live)
    return Recording(cassette, live)
