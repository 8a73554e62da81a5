"""Autobahn|Testsuite as a conformance check: a replay must look to a strict client like the recording.

Autobahn's fuzzing client (cases 1-7, 9 and 10: framing, pings, reserved bits, opcodes,
fragmentation, UTF-8, closing handshake, big and many messages, auto-fragmentation) runs
three times: against the real `wsreplay record` in front of a `websockets` echo server,
then against `wsreplay replay` of that cassette through mitmproxy, then against
`wsreplay replay --direct`. Autobahn judges each case by what it saw (`behavior`,
`behaviorClose`, the close code it got); each replay must get the same verdicts as the
recording, case by case. The cases' payloads are fixed strings, not random, so the client
sends the same frames every run (only the masks and the handshake key differ).

One test does all three runs: under pytest-xdist, separate tests could land on different
workers and record twice. Needs `wstest` (Python 2.7): ``bash tests/support/autobahn_env.sh``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.autobahn import (
    CaseResult,
    EchoServer,
    difference_table,
    differences,
    find_wstest,
    missing_wstest_reason,
    run_fuzzingclient,
)
from tests.support.cli import RunningWsreplay

pytestmark = pytest.mark.autobahn

WSTEST = find_wstest()


@contextmanager
def running_wsreplay(*args: str) -> Iterator[str]:
    """A `wsreplay` process listening on an ephemeral port; yields its ws:// URL; stops it cleanly."""
    process = RunningWsreplay(*args, "--listen", "127.0.0.1:0")
    try:
        port = process.wait_listening()
        yield f"ws://127.0.0.1:{port}"
        assert process.stop(timeout=60) == 0, process.output
    finally:
        process.kill()


def fuzz(url: str, outdir: Path, agent: str) -> tuple[dict[str, CaseResult], float]:
    started = time.monotonic()
    results = run_fuzzingclient(WSTEST, url, outdir, agent)
    return results, time.monotonic() - started


@pytest.mark.skipif(WSTEST is None, reason=missing_wstest_reason())
def test_replays_get_the_recordings_verdicts_case_by_case(tmp_path: Path, mitm_confdir: Path) -> None:
    cassette = tmp_path / "autobahn.cassette"
    with (
        EchoServer() as echo,
        running_wsreplay(
            "record", "--upstream", echo.url, "-o", str(cassette), "--confdir", str(mitm_confdir)
        ) as recorder_url,
    ):
        recorded, recording_seconds = fuzz(recorder_url, tmp_path / "record", "record")
    with running_wsreplay("replay", str(cassette), "--speed", "max", "--confdir", str(mitm_confdir)) as proxy_url:
        through_proxy, proxy_seconds = fuzz(proxy_url, tmp_path / "replay", "replay")
    with running_wsreplay("replay", str(cassette), "--speed", "max", "--direct") as direct_url:
        direct, direct_seconds = fuzz(direct_url, tmp_path / "direct", "direct")

    print(
        f"\nAutobahn: {len(recorded)} cases; recording {recording_seconds:.1f}s, "
        f"replay through the proxy {proxy_seconds:.1f}s, replay --direct {direct_seconds:.1f}s"
    )
    assert len(recorded) > 290, f"the fuzzing client ran only {len(recorded)} cases"
    proxy_differences, direct_differences = differences(recorded, through_proxy), differences(recorded, direct)
    if proxy_differences or direct_differences:
        pytest.fail(
            f"replay through the proxy differs from the recording in {len(proxy_differences)} of {len(recorded)} "
            f"cases, replay --direct in {len(direct_differences)}:\n"
            + difference_table(recorded, {"replay (proxy)": through_proxy, "replay --direct": direct}),
            pytrace=False,
        )
