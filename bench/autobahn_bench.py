"""Autobahn|Testsuite's case 9 (big messages, many messages) as a benchmark.

    python bench/autobahn_bench.py [--quick] [--repeats N]   # on its own (about 8 minutes)
    python bench/run.py                                     # as its "autobahn" section

Autobahn's fuzzing client (``wstest``, Python 2.7, installed by
``tests/support/autobahn_env.sh``) times each case 9 exchange itself (``duration`` in its
JSON report, milliseconds); a run's figure is the sum over the cases. Targets, each
against a baseline measured in the same run, runs alternated:

* the recorder (``Recorder`` in wsreplay's ``ProxyHost``) against bare mitmproxy (the
  same host without wsreplay's addon) relaying the same cases to the same
  ``websockets`` echo server: ratio = bare time / recorder time, target ≥ 0.95;
* ``wsreplay replay --direct --speed max`` of a recording of those cases against the
  live echo server itself: ratio = live time / replay time, target ≥ 1.

The servers and proxies share one CPU (the last), ``wstest`` gets the others, as in the
rest of the benchmark. Cases 9.5 and 9.6 (a message sent in small chops with pauses)
time the pauses more than the path and are left out.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for entry in (str(ROOT), str(BENCH_DIR)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from proxyproc import ProxyConfig, ProxyProcess  # noqa: E402

from tests.support.autobahn import CaseResult, EchoServer, find_wstest, missing_wstest_reason, run_fuzzingclient  # noqa: E402
from tests.support.cli import RunningWsreplay  # noqa: E402

CASES = ["9.1.*", "9.2.*", "9.3.*", "9.4.*", "9.7.*", "9.8.*"]
QUICK_CASES = ["9.1.1", "9.1.2", "9.1.3", "9.2.1", "9.2.2", "9.2.3", "9.7.1", "9.8.1"]


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def last_cpu_and_rest() -> tuple[frozenset[int] | None, frozenset[int] | None]:
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return None, None
    return frozenset(usable[-1:]), frozenset(usable[:-1])


def pin(pid: int, cpus: frozenset[int] | None) -> None:
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)


@contextmanager
def replay_direct(cassette: Path, cpus: frozenset[int] | None) -> Iterator[str]:
    """`wsreplay replay --direct --speed max` on an ephemeral port; yields its URL."""
    process = RunningWsreplay("replay", str(cassette), "--direct", "--speed", "max", "--listen", "127.0.0.1:0")
    try:
        pin(process.process.pid, cpus)
        yield f"ws://127.0.0.1:{process.wait_listening()}"
    finally:
        process.stop()
        process.kill()


def case_seconds(results: dict[str, CaseResult]) -> float:
    return sum(result.duration_ms for result in results.values()) / 1000


def not_ok(results: dict[str, CaseResult]) -> list[str]:
    return [case_id for case_id, result in results.items() if result.behavior != "OK"]


def autobahn_benchmarks(
    quick: bool, repeats: int, work: Path
) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """Figures (as ``run.Figure`` keyword arguments), raw data, and reasons for skipped rows."""
    wstest = find_wstest()
    if wstest is None:
        return [], {}, [f"autobahn rows: {missing_wstest_reason()}"]
    cases = QUICK_CASES if quick else CASES
    servers_cpus, client_cpus = last_cpu_and_rest()
    own_cpus = os.sched_getaffinity(0)
    pin(0, client_cpus)
    runs: dict[str, list[dict[str, CaseResult]]] = {"bare": [], "recorder": [], "live": [], "direct": []}
    counter = iter(range(1_000_000))

    def fuzz(url: str, agent: str) -> dict[str, CaseResult]:
        results = run_fuzzingclient(wstest, url, work / f"autobahn-{agent}-{next(counter)}", agent, cases)
        if failed := not_ok(results):
            raise RuntimeError(f"Autobahn cases not OK through {agent}: {', '.join(failed)}")
        return results

    processes: list[ProxyProcess] = []
    try:
        with EchoServer() as echo:
            pin(echo.pid, servers_cpus)

            def proxy(kind: str, cassette: Path | None = None) -> ProxyProcess:
                confdir = work / f"autobahn-confdir-{kind}"
                confdir.mkdir(exist_ok=True)
                process = ProxyProcess(
                    ProxyConfig(kind, echo.port, str(confdir), str(cassette) if cassette else None, cpus=servers_cpus)
                )
                processes.append(process)
                process.start()
                return process

            _log(f"autobahn: cases {', '.join(cases)}: a recording for the replay, then a warm-up of each proxy")
            recording = work / "autobahn-case9.cassette"
            source = proxy("recorder", recording)
            fuzz(f"ws://127.0.0.1:{source.port}", "source")
            source.stop()
            bare = proxy("bare")
            recorder = proxy("recorder", work / "autobahn-timed.cassette")
            targets: dict[str, Callable[[], dict[str, CaseResult]]] = {
                "bare": lambda: fuzz(f"ws://127.0.0.1:{bare.port}", "bare"),
                "recorder": lambda: fuzz(f"ws://127.0.0.1:{recorder.port}", "recorder"),
                "live": lambda: fuzz(echo.url, "live"),
            }
            for address in (bare.port, recorder.port):
                run_fuzzingclient(
                    wstest, f"ws://127.0.0.1:{address}", work / f"autobahn-warmup-{address}", "warm-up", QUICK_CASES
                )
            for repeat in range(repeats):
                _log(f"autobahn: repeat {repeat + 1}/{repeats}")
                order = ["bare", "recorder", "live", "direct"]
                shift = repeat % len(order)
                for name in order[shift:] + order[:shift]:
                    if name == "direct":
                        with replay_direct(recording, servers_cpus) as url:
                            runs[name].append(fuzz(url, "direct"))
                    else:
                        runs[name].append(targets[name]())
    finally:
        for process in processes:
            process.stop()
        pin(0, frozenset(own_cpus))

    seconds = {name: [case_seconds(results) for results in results_list] for name, results_list in runs.items()}
    per_case = {
        name: {case_id: [results[case_id].duration_ms for results in results_list] for case_id in results_list[0]}
        for name, results_list in runs.items()
    }
    note = f"cases {', '.join(cases)}: the sum of Autobahn's per-case durations; ratio = baseline time / time"
    figures = [
        dict(
            key="autobahn.recorder",
            label="Autobahn case 9 through the recorder",
            value=statistics.median(seconds["recorder"]),
            unit="s",
            baseline=statistics.median(seconds["bare"]),
            baseline_label="bare mitmproxy",
            target="ratio>=0.95",
            samples=seconds["recorder"],
            baseline_samples=seconds["bare"],
            note=note,
            paired=True,
            inverse=True,
        ),
        dict(
            key="autobahn.replay_direct",
            label="Autobahn case 9 from replay --direct (speed max)",
            value=statistics.median(seconds["direct"]),
            unit="s",
            baseline=statistics.median(seconds["live"]),
            baseline_label="live echo server",
            target="ratio>=1",
            samples=seconds["direct"],
            baseline_samples=seconds["live"],
            note=note,
            paired=True,
            inverse=True,
        ),
    ]
    return figures, {"autobahn": {"cases": cases, "seconds": seconds, "per_case_ms": per_case}}, []


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few small case 9 cases, one repeat")
    parser.add_argument(
        "--repeats", type=int, default=None, help="alternated runs per target (median); default 3, --quick 1"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wsreplay-autobahn-") as work:
        figures, raw, skipped = autobahn_benchmarks(args.quick, args.repeats or (1 if args.quick else 3), Path(work))
    for reason in skipped:
        print(f"skipped: {reason}")
    for figure in figures:
        ratio = statistics.median(b / v for v, b in zip(figure["samples"], figure["baseline_samples"], strict=True))
        print(
            f"{figure['label']}: {figure['value']:.2f} s, {figure['baseline_label']} {figure['baseline']:.2f} s, "
            f"ratio {ratio:.3f} (target {figure['target']})"
        )
    print(raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
