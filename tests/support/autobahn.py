"""Autobahn|Testsuite's fuzzing client against wsreplay: the echo server, the runs, the results.

`wstest` (Python 2.7) is installed by ``tests/support/autobahn_env.sh`` into a cached
virtualenv; `find_wstest` finds it there. `EchoServer` runs the `websockets` echo server
(``tests/support/echo_server.py``) that the fuzzing client, or wsreplay recording it, talks to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

INSTALL_SCRIPT = Path(__file__).with_name("autobahn_env.sh")
AUTOBAHN_VERSION = "25.10.1"
DEFAULT_HOME = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wsreplay" / "autobahn-py27"

CONFORMANCE_CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
"""Framing, pings, reserved bits, opcodes, fragmentation, UTF-8, closing, limits, auto-fragmentation."""

MAX_FRAGMENTS = 100_000
"""Cases 9.3.1 and 9.4.1 send a 4 MiB message in 64-byte fragments (65,536 of them)."""
ROOT = Path(__file__).resolve().parents[2]


def autobahn_home() -> Path:
    return Path(os.environ["WSREPLAY_AUTOBAHN_HOME"]) if os.environ.get("WSREPLAY_AUTOBAHN_HOME") else DEFAULT_HOME


def find_wstest() -> Path | None:
    """The installed `wstest`, or None when `autobahn_env.sh` has not (successfully) run."""
    home = autobahn_home()
    wstest = home / "venv" / "bin" / "wstest"
    stamp = home / f"installed-autobahntestsuite-{AUTOBAHN_VERSION}"
    return wstest if stamp.exists() and os.access(wstest, os.X_OK) else None


def missing_wstest_reason() -> str:
    return (
        f"Autobahn|Testsuite is not installed in {autobahn_home()}: run `bash tests/support/autobahn_env.sh` "
        "(it needs Python 2.7: `pyenv install 2.7.18`, or WSREPLAY_PYTHON27=/path/to/python2.7)"
    )


class EchoServer:
    """The `echo_server` module in a subprocess: a `websockets` echo server on 127.0.0.1.

    A subprocess because `websockets` reads its fragment limit (4096 frames, which cases
    9.3.1 and 9.4.1 exceed) from the environment when it is imported, and so that the
    server has a CPU of its own rather than a thread of the test's process.
    """

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> EchoServer:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.echo_server"],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "WEBSOCKETS_MAX_FRAGMENTS": str(MAX_FRAGMENTS)},
        )
        assert self._process.stdout is not None
        ready = _read_line(self._process.stdout, timeout=30)
        if not ready.startswith("listening on "):
            self._process.kill()
            raise AssertionError(f"the echo server did not start: {ready!r}")
        self.port = int(ready.rsplit(":", 1)[1])
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)


def _read_line(stream: IO[str], timeout: float) -> str:
    """The stream's next line, or "" if none comes within `timeout` seconds."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0].strip() if lines else ""


@dataclass(frozen=True)
class CaseResult:
    """What Autobahn concluded for one case."""

    behavior: str
    behavior_close: str
    remote_close_code: int | None
    duration_ms: int

    def outcome(self) -> tuple[str, str, int | None]:
        """What a replay must reproduce (the duration is not part of it)."""
        return self.behavior, self.behavior_close, self.remote_close_code


def run_fuzzingclient(
    wstest: Path, url: str, outdir: Path, agent: str, cases: Iterable[str] = CONFORMANCE_CASES, timeout: float = 600
) -> dict[str, CaseResult]:
    """Run `wstest -m fuzzingclient` against `url` and read its per-case JSON reports."""
    outdir.mkdir(parents=True, exist_ok=True)
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": agent, "url": url}],
        "cases": list(cases),
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    spec_file = outdir / "fuzzingclient.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    completed = subprocess.run(
        [str(wstest), "-m", "fuzzingclient", "-s", str(spec_file)],
        cwd=outdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    (outdir / "wstest.log").write_text(completed.stdout + completed.stderr)
    index = outdir / "index.json"
    if completed.returncode != 0 or not index.exists():
        raise AssertionError(
            f"wstest fuzzingclient failed ({completed.returncode}):\n{completed.stdout[-3000:]}{completed.stderr[-3000:]}"
        )
    return read_results(outdir, agent)


def read_results(outdir: Path, agent: str) -> dict[str, CaseResult]:
    index = json.loads((outdir / "index.json").read_text())[agent]
    results: dict[str, CaseResult] = {}
    for case_id, summary in index.items():
        detail = json.loads((outdir / summary["reportfile"]).read_text())
        results[case_id] = CaseResult(
            behavior=summary["behavior"],
            behavior_close=summary["behaviorClose"],
            remote_close_code=summary.get("remoteCloseCode", detail.get("remoteCloseCode")),
            duration_ms=summary["duration"],
        )
    return dict(sorted(results.items(), key=lambda item: case_sort_key(item[0])))


def case_sort_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


def differences(recorded: Mapping[str, CaseResult], replayed: Mapping[str, CaseResult]) -> list[str]:
    """Cases whose outcome differs, as `case: recorded -> replayed` lines."""
    lines = []
    for case_id in sorted(recorded.keys() | replayed.keys(), key=case_sort_key):
        before, after = recorded.get(case_id), replayed.get(case_id)
        if before is None or after is None or before.outcome() != after.outcome():
            lines.append(f"{case_id}: {_describe(before)} -> {_describe(after)}")
    return lines


def _describe(result: CaseResult | None) -> str:
    if result is None:
        return "(not run)"
    return f"{result.behavior}/{result.behavior_close} close {result.remote_close_code}"


def difference_table(recorded: Mapping[str, CaseResult], replays: Mapping[str, Mapping[str, CaseResult]]) -> str:
    """A table of the cases where any replay differs from the recording, one column per run."""
    columns = ["recording", *replays]
    runs = [recorded, *replays.values()]
    case_ids = sorted(
        {case_id for replayed in replays.values() for case_id in _differing(recorded, replayed)}, key=case_sort_key
    )
    rows = [["case", *columns]]
    rows += [[case_id, *(_describe(run.get(case_id)) for run in runs)] for case_id in case_ids]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns) + 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _differing(recorded: Mapping[str, CaseResult], replayed: Mapping[str, CaseResult]) -> list[str]:
    return [
        case_id
        for case_id in recorded.keys() | replayed.keys()
        if case_id not in recorded
        or case_id not in replayed
        or recorded[case_id].outcome() != replayed[case_id].outcome()
    ]
