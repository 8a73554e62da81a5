"""wsreplay benchmark: one command, every figure against a baseline measured in the same run.

    python bench/run.py            # default run (a few minutes on 2 cores)
    python bench/run.py --quick    # smoke run (~30 s)
    python bench/run.py --frames 20000 --repeats 3 --output /tmp/bench.json

Setup (also written to the JSON):

* The load (a plain ``websockets`` server and client, compression off, ~100-byte JSON
  text frames) runs in this process on one asyncio loop.
* Each mitmproxy (wsreplay's ``ProxyHost``, reverse mode, default mitmproxy addons)
  runs in its own process (multiprocessing, spawn): ``bare`` (no wsreplay addon),
  ``recorder`` (``Recorder`` writing a temp cassette, default options, so redaction
  on), ``recorder_noredact`` (the same with ``wsreplay_redact=false``, to show what
  redaction costs), ``replayer`` (``Replayer`` on a cassette of the recorded burst,
  speed max). On a machine with two CPUs or more, every proxy process is pinned to the
  same CPU and this process to the others: two processes left to the scheduler land on
  CPUs that differ by several percent on a shared machine (two identical bare proxies
  differed by 4-6%), which pinning takes out of the comparison.
* Proxied measurements alternate between the proxies (rotating the order each
  repeat) so drifting machine load hits them alike; values are medians of the
  repeats, and a ratio between alternated runs is the median of the per-repeat
  ratios. Besides wall-clock rates, the proxy process's CPU time per frame is read
  (its CPU-time clock: frames per proxy CPU-second), which other load on the machine
  disturbs less. Each timed run starts after a full garbage collection in the proxy
  (``same_gc_state``), so no run pays for garbage an earlier run left.
* The recorder's process also times its own ``websocket_message`` hook, so each run
  gives the proxy's CPU per frame with the hook and without it (the same run less the
  hook): a ratio within one process, which the differences between two processes
  (a few percent here, even between two identical bare proxies) do not enter.
* Memory: each proxy's RSS (/proc/PID/status VmRSS) right before one long burst
  session and right after its last frame arrived (the flow still live); the bare and
  recorder sessions run at the same time.
* HTTP matching: cassettes of K exchanges loaded by wsreplay (``ReplaySession``) and
  by vcrpy (``pip install vcrpy``; its rows are skipped when it is not installed).
* Big cassettes (``bench/big_cassette.py``; ``--no-big`` skips it): cassettes of 100 MB and 1 GB
  (--quick: 10 and 100 MB) of 20 concurrent agent sessions streaming ~175-byte tokens, their
  frames interleaved; each command's time and its own peak RSS (wait4) on both, the 1 GB
  one against the 100 MB one (flat: ratio ≤ 1.1), ``replay --direct``'s first connection
  served, and the frames a second ``show --json`` and ``verify`` read.
* Autobahn (``bench/autobahn_bench.py``; ``--no-autobahn`` skips it, and it skips itself without
  ``wstest``): Autobahn|Testsuite's case 9 timed by Autobahn itself, through the recorder
  against bare mitmproxy, and from ``replay --direct`` against the live echo server.

Ratios are value / baseline (for times, baseline / value: above 1 is faster). Rows without a target are context.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for entry in (str(ROOT), str(BENCH_DIR)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import autobahn_bench  # noqa: E402
import big_cassette  # noqa: E402
import matching  # noqa: E402
import storage  # noqa: E402
import wsload  # noqa: E402
from proxyproc import ProxyConfig, ProxyProcess  # noqa: E402

MB = 1_000_000
MIB = 1024 * 1024


# --- figures -------------------------------------------------------------------------


@dataclass
class Figure:
    key: str
    label: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target: str = ""
    """``ratio>=0.95``, ``ratio<=2``, ``value<30``: what the figure should meet, if anything."""
    samples: list[float] = field(default_factory=list)
    baseline_samples: list[float] = field(default_factory=list)
    note: str = ""
    paired: bool = False
    """The samples and baseline samples were taken in alternation (repeat i of each adjacent in
    time): the ratio is then the median of the per-repeat ratios, which machine-load drift
    disturbs less than the ratio of the medians."""
    inverse: bool = False
    """The value is a time (less is better): the ratio is baseline / value, so that ≥ 1 is faster."""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline or not self.value:
            return None
        if self.paired and self.samples and len(self.samples) == len(self.baseline_samples):
            pairs = zip(self.samples, self.baseline_samples, strict=True)
            return statistics.median(b / v if self.inverse else v / b for v, b in pairs)
        return self.baseline / self.value if self.inverse else self.value / self.baseline

    @property
    def met(self) -> bool | None:
        if not self.target:
            return None
        subject, op, limit = _parse_target(self.target)
        actual = self.ratio if subject == "ratio" else self.value
        if actual is None:
            return None
        return {">=": actual >= limit, "<=": actual <= limit, "<": actual < limit, ">": actual > limit}[op]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["met"] = self.met
        return data


def _parse_target(target: str) -> tuple[str, str, float]:
    for op in (">=", "<=", "<", ">"):
        if op in target:
            subject, limit = target.split(op)
            return subject.strip(), op, float(limit)
    raise ValueError(target)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("frames/s", "round trips/s", "frames/CPU-s", "rt/CPU-s"):
        return f"{value:,.0f} {unit}"
    if unit == "MB/s":
        return f"{value:,.1f} MB/s"
    if unit == "MiB":
        return f"{value:+.1f} MiB"
    if unit == "bytes/frame":
        return f"{value:,.1f} B/frame"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "s":
        return f"{value:,.2f} s"
    if unit == "µs":
        return f"{value:,.1f} µs" if value < 10_000 else f"{value / 1000:,.1f} ms"
    return f"{value:,.3g} {unit}"


def _fmt_target(target: str) -> str:
    if not target:
        return ""
    subject, op, limit = _parse_target(target)
    op = {">=": "≥", "<=": "≤"}.get(op, op)
    return f"{'ratio' if subject == 'ratio' else 'value'} {op} {limit:g}"


def print_table(figures: list[Figure], out=sys.stdout) -> None:
    rows = [("figure", "value", "baseline", "ratio", "target", "met?")]
    for f in figures:
        baseline = "-" if f.baseline is None else f"{_fmt(f.baseline, f.unit)} ({f.baseline_label})"
        ratio = "-" if f.ratio is None else f"{f.ratio:.3f}{'*' if f.paired else ''}"
        met = {None: "", True: "yes", False: "NO"}[f.met]
        rows.append((f.label, _fmt(f.value, f.unit), baseline, ratio, _fmt_target(f.target), met))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip(), file=out)
        if index == 0:
            print("  ".join("-" * w for w in widths), file=out)


def median(values: list[float]) -> float:
    return statistics.median(values)


# --- helpers -------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def proxy_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a whole process (all its threads), with nanosecond resolution.

    Reads the process's CPU-time clock (what glibc's clock_getcpuclockid returns:
    ``(~pid << 3) | 2`` on Linux); falls back to utime+stime of /proc/PID/stat (clock ticks).
    """
    try:
        return time.clock_gettime((~pid << 3) | 2)
    except OSError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def replay_engine_status() -> tuple[bool, str]:
    try:
        import addons.replayer  # noqa: F401
        import wsreplay.replay  # noqa: F401
        import wsreplay.replay_server  # noqa: F401
    except Exception as exc:  # the engine is being written: any import failure means "not yet"
        return False, f"replay engine not importable ({type(exc).__name__}: {exc})"
    tests = ROOT / "tests" / "test_replay_server.py"
    return True, "tests/test_replay_server.py present" if tests.exists() else "tests/test_replay_server.py absent"


@dataclass
class Params:
    frames: int
    proxy_frames: int
    round_trips: int
    plain_round_trips: int
    warmup_frames: int
    repeats: int
    proxy_repeats: int
    http_sizes: tuple[int, ...]
    one_path_sizes: tuple[int, ...]
    vcrpy_sizes: tuple[int, ...]
    http_lookups: int
    http_min_seconds: float
    http_load_repeats: int
    autobahn: bool
    big: bool
    autobahn_repeats: int
    quick: bool


class Proxied:
    """A proxy process and the count of WebSocket flows it has ended."""

    def __init__(self, kind: str, process: ProxyProcess) -> None:
        self.kind = kind
        self.process = process
        self.sessions = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.process.port}"

    async def settle(self) -> None:
        """Wait until the proxy has ended every flow so far (its hooks ran: the next run starts clean)."""
        self.sessions += 1
        await asyncio.to_thread(self.process.wait_ended, self.sessions)


async def same_gc_state(target: Proxied) -> None:
    """Start a timed run with both processes' garbage collectors in a known state.

    The bare proxy keeps every message of a flow until the flow ends (the recorder drops
    them as written), so its survivors pile up across runs in CPython's oldest generation
    and trigger a full collection (tens of ms over ~100,000 objects here) in whichever
    later run crosses the threshold: a cost unrelated to that run, landing at
    random on one side of the comparison. A full collection in the proxy before each run
    (outside the timed window), and one here for the load, make each run pay only for the
    garbage it makes itself.
    """
    await asyncio.to_thread(target.process.collect)
    gc.collect()


@dataclass
class Run:
    """One timed run through a proxy."""

    rate: float
    """Frames (or round trips) per second."""
    cpu: float
    """Proxy CPU seconds per frame (or round trip)."""
    hook: float
    """Of which seconds in the recorder's ``websocket_message`` hook (0 without the recorder)."""


async def hook_seconds(target: Proxied) -> float:
    nanoseconds, _ = await asyncio.to_thread(target.process.hook_time)
    return nanoseconds / 1e9


def cpu_plan() -> tuple[frozenset[int] | None, frozenset[int] | None]:
    """(CPUs for every proxy, CPUs for the load): the last usable CPU, the rest; (None, None) with one CPU."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(usable) < 2:
        return None, None
    return frozenset(usable[-1:]), frozenset(usable[:-1])


async def timed_burst(target: Proxied, count: int, last: str, at_end: Callable[[], object] | None = None) -> Run:
    """One burst of `count` frames through `target`."""
    pid = target.process.pid
    await same_gc_state(target)
    hook_before = await hook_seconds(target)
    cpu_before = proxy_cpu_seconds(pid)
    cpu_after = 0.0

    def end() -> None:
        nonlocal cpu_after
        cpu_after = proxy_cpu_seconds(pid)
        if at_end is not None:
            at_end()

    seconds = await wsload.burst(target.url, count, last, at_end=end)
    await target.settle()
    hook = await hook_seconds(target) - hook_before
    return Run(count / seconds, (cpu_after - cpu_before) / count, hook / count)


async def timed_round_trips(target: Proxied, frames: list[str], count: int) -> Run:
    pid = target.process.pid
    await same_gc_state(target)
    hook_before = await hook_seconds(target)
    cpu_before = proxy_cpu_seconds(pid)
    seconds = await wsload.round_trips(target.url, frames, count)
    cpu = proxy_cpu_seconds(pid) - cpu_before
    await target.settle()
    hook = await hook_seconds(target) - hook_before
    return Run(count / seconds, cpu / count, hook / count)


async def alternate(repeats: int, runs: dict[str, Callable[[], Awaitable[Any]]]) -> dict[str, list[Any]]:
    """Run each named measurement `repeats` times, rotating the order every repeat."""
    names = list(runs)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(await runs[name]())
    return results


# --- the WebSocket part ----------------------------------------------------------------


async def websocket_benchmarks(
    params: Params, work: Path, figures: list[Figure], raw: dict[str, Any], skipped: list[str]
) -> None:
    frames = wsload.make_frames(max(params.frames, params.proxy_frames, params.warmup_frames))
    last = {n: frames[n - 1] for n in {params.frames, params.proxy_frames, params.warmup_frames}}
    server = wsload.LoadServer(frames)
    port = await server.start()
    plain_url = f"ws://127.0.0.1:{port}"
    replay_ok, replay_status = replay_engine_status()
    raw["replay_engine"] = replay_status
    recorded = work / "recorded.cassette"
    proxy_cassette = work / "replay-proxy.cassette"
    direct_cassette = work / "replay-direct.cassette"
    flow_file = work / "bare-session.mitm"
    processes: list[ProxyProcess] = []

    proxy_cpus, load_cpus = cpu_plan()
    raw["cpus"] = {"proxies": sorted(proxy_cpus or ()), "load": sorted(load_cpus or ())}
    if load_cpus is not None:
        os.sched_setaffinity(0, load_cpus)

    def new_proxy(kind: str, cassette: Path | None = None, label: str = "", **extra: str) -> ProxyProcess:
        confdir = work / f"confdir-{label or kind}"
        confdir.mkdir(exist_ok=True)
        config = ProxyConfig(
            kind, port, str(confdir), str(cassette) if cassette else None, dict(extra), label, proxy_cpus
        )
        process = ProxyProcess(config)
        processes.append(process)
        return process

    try:
        log("starting mitmproxy processes: bare, recorder, recorder with redaction off")
        bare_process = new_proxy("bare")
        recorder_process = new_proxy("recorder", recorded)
        noredact_process = new_proxy(
            "recorder", work / "recorded-noredact.cassette", "recorder_noredact", wsreplay_redact="false"
        )
        started = await asyncio.gather(
            *(asyncio.to_thread(p.start) for p in (bare_process, recorder_process, noredact_process)),
            return_exceptions=True,
        )
        for result in started[:2]:
            if isinstance(result, BaseException):
                raise result
        bare, recorder = Proxied("bare", bare_process), Proxied("recorder", recorder_process)
        recorder_noredact: Proxied | None = None
        if isinstance(started[2], BaseException):
            skipped.append(f"recorder with redaction off: {started[2]}")
        else:
            recorder_noredact = Proxied("recorder_noredact", noredact_process)
        warm = [bare, recorder] + ([recorder_noredact] if recorder_noredact else [])

        log("warm-up")
        for target in warm:
            await wsload.burst(target.url, params.warmup_frames, last[params.warmup_frames])
            await target.settle()
            await wsload.round_trips(target.url, frames, max(10, params.round_trips // 10))
            await target.settle()
            await wsload.burst(target.url, params.proxy_frames, last[params.proxy_frames])
            await target.settle()
        await wsload.burst(plain_url, params.warmup_frames, last[params.warmup_frames])

        # The replayer proxy plays the recorded warm-up and proxied-burst connections; it starts
        # while the memory sessions run.
        replay_start: asyncio.Task[int] | None = None
        if replay_ok:
            queries = [f"n={n}" for n in dict.fromkeys((params.warmup_frames, params.proxy_frames))]
            raw["replay_proxy_cassette_frames"] = storage.select_connections(recorded, queries, proxy_cassette)
            log("starting the replayer mitmproxy process")
            replay_process = new_proxy("replayer", proxy_cassette)
            replay_start = asyncio.create_task(asyncio.to_thread(replay_process.start))
        else:
            skipped.append(f"replay rows: {replay_status}")

        # Memory: one long session on each proxy at once; RSS before, and after the last frame (flow live).
        log(f"memory: one {params.frames:,}-frame session through bare and recorder proxies (concurrently)")
        await asyncio.to_thread(bare.process.call, "capture", str(flow_file))
        memory: dict[str, dict[str, float]] = {}

        async def memory_session(target: Proxied) -> None:
            pid = target.process.pid
            gc.collect()
            before = target.process.rss_kb()
            cpu_before = proxy_cpu_seconds(pid)
            seen: dict[str, float] = {}

            def at_end() -> None:
                seen["rss_after_kb"] = target.process.rss_kb()
                seen["hwm_kb"] = target.process.hwm_kb()
                seen["cpu"] = proxy_cpu_seconds(pid) - cpu_before

            seconds = await wsload.burst(target.url, params.frames, last[params.frames], at_end=at_end)
            await target.settle()
            memory[target.kind] = {
                "frames": params.frames,
                "rss_before_kb": before,
                "rss_after_kb": seen["rss_after_kb"],
                "rss_after_close_kb": target.process.rss_kb(),
                "hwm_kb": seen["hwm_kb"],
                "seconds": seconds,
                "cpu_seconds": seen["cpu"],
            }

        await asyncio.gather(memory_session(bare), memory_session(recorder))
        raw["memory"] = memory

        replayer: Proxied | None = None
        if replay_start is not None:
            try:
                await replay_start
            except Exception as exc:
                skipped.append(f"replay via mitmproxy: {exc}")
            else:
                replayer = Proxied("replayer", replay_process)
                await wsload.burst(replayer.url, params.warmup_frames, last[params.warmup_frames])
                await replayer.settle()
                await wsload.burst(replayer.url, params.proxy_frames, last[params.proxy_frames])
                await replayer.settle()

        log(f"proxied bursts: {params.proxy_frames:,} frames x {params.proxy_repeats}, alternating")
        runs: dict[str, Callable[[], Awaitable[Any]]] = {
            "bare": lambda: timed_burst(bare, params.proxy_frames, last[params.proxy_frames]),
            "recorder": lambda: timed_burst(recorder, params.proxy_frames, last[params.proxy_frames]),
        }
        if recorder_noredact is not None:
            runs["recorder_noredact"] = lambda: timed_burst(
                recorder_noredact, params.proxy_frames, last[params.proxy_frames]
            )
        if replayer is not None:
            runs["replayer"] = lambda: timed_burst(replayer, params.proxy_frames, last[params.proxy_frames])
        bursts = await alternate(params.proxy_repeats, runs)
        raw["proxied_bursts"] = {kind: [asdict(run) for run in runs] for kind, runs in bursts.items()}

        log(f"proxied round trips: {params.round_trips:,} x {params.repeats}, alternating")
        trip_runs: dict[str, Callable[[], Awaitable[Any]]] = {
            "bare": lambda: timed_round_trips(bare, frames, params.round_trips),
            "recorder": lambda: timed_round_trips(recorder, frames, params.round_trips),
        }
        if recorder_noredact is not None:
            trip_runs["recorder_noredact"] = lambda: timed_round_trips(recorder_noredact, frames, params.round_trips)
        trips = await alternate(params.repeats, trip_runs)
        raw["proxied_round_trips"] = {kind: [asdict(run) for run in runs] for kind, runs in trips.items()}

        # Physical limit and direct replay, alternating, in this process.
        direct_server = None
        plain_runs: dict[str, Callable[[], Awaitable[Any]]] = {
            "plain": lambda: _plain_burst(plain_url, params.frames, last[params.frames])
        }
        if replay_ok:
            from wsreplay.cassette import load_cassette
            from wsreplay.replay import ReplayOptions, ReplaySession
            from wsreplay.replay_server import ReplayServer

            queries = [f"n={n}" for n in dict.fromkeys((params.warmup_frames, params.frames))]
            raw["replay_direct_cassette_frames"] = storage.select_connections(recorded, queries, direct_cassette)
            direct_server = ReplayServer(ReplaySession(load_cassette(direct_cassette), ReplayOptions(speed=None)))
            host, direct_port = await direct_server.start()
            direct_url = f"ws://{host}:{direct_port}"
            await wsload.burst(direct_url, params.warmup_frames, last[params.warmup_frames])
            plain_runs["direct"] = lambda: _plain_burst(direct_url, params.frames, last[params.frames])
        log(f"plain websockets and direct replay bursts: {params.frames:,} frames x {params.repeats}, alternating")
        try:
            plain = await alternate(params.repeats, plain_runs)
        finally:
            if direct_server is not None:
                await direct_server.close()
        log(f"plain round trips: {params.plain_round_trips:,} x {params.repeats}")
        plain_trips = [
            params.plain_round_trips / await wsload.round_trips(plain_url, frames, params.plain_round_trips)
            for _ in range(params.repeats)
        ]
        raw["plain"] = {**plain, "round_trips": plain_trips}
    finally:
        log("stopping proxies")
        codes = await asyncio.gather(*(asyncio.to_thread(p.stop) for p in processes))
        raw["proxy_exit_codes"] = {p.config.name: code for p, code in zip(processes, codes, strict=True)}
        await server.close()
        if load_cpus is not None and proxy_cpus is not None:
            os.sched_setaffinity(0, load_cpus | proxy_cpus)

    # Figures.
    plain_burst = median(plain["plain"])
    plain_rt = median(plain_trips)
    fps = {kind: [run.rate for run in runs] for kind, runs in bursts.items()}
    cpu = {kind: [1 / run.cpu for run in runs] for kind, runs in bursts.items()}
    rt = {kind: [run.rate for run in runs] for kind, runs in trips.items()}
    rt_cpu = {kind: [1 / run.cpu for run in runs] for kind, runs in trips.items()}
    # In the recorder's own process: frames per CPU-s with the hook, and without it (its
    # CPU per frame less the hook's time), run by run: a ratio no other process's noise enters.
    in_process = {
        name: ([1 / run.cpu for run in runs["recorder"]], [1 / (run.cpu - run.hook) for run in runs["recorder"]])
        for name, runs in (("burst", bursts), ("round trips", trips))
    }
    hook_us = {
        name: [run.hook * 1e6 for run in runs["recorder"]] for name, runs in (("burst", bursts), ("round trips", trips))
    }
    figures += [
        Figure(
            "physical.burst",
            f"plain websockets burst ({params.frames:,} frames)",
            plain_burst,
            "frames/s",
            samples=plain["plain"],
        ),
        Figure("physical.round_trip", "plain websockets round trips", plain_rt, "round trips/s", samples=plain_trips),
        Figure(
            "bare.burst",
            f"bare mitmproxy burst ({params.proxy_frames:,} frames)",
            median(fps["bare"]),
            "frames/s",
            plain_burst,
            "plain",
            samples=fps["bare"],
        ),
        Figure(
            "recorder.burst",
            "recorder burst",
            median(fps["recorder"]),
            "frames/s",
            median(fps["bare"]),
            "bare",
            "ratio>=0.95",
            fps["recorder"],
            fps["bare"],
            paired=True,
        ),
        Figure(
            "recorder.burst_cpu",
            "recorder burst, per proxy CPU-s",
            median(cpu["recorder"]),
            "frames/CPU-s",
            median(cpu["bare"]),
            "bare",
            "ratio>=0.95",
            cpu["recorder"],
            cpu["bare"],
            paired=True,
        ),
        Figure(
            "bare.round_trip",
            "bare mitmproxy round trips",
            median(rt["bare"]),
            "round trips/s",
            plain_rt,
            "plain",
            samples=rt["bare"],
        ),
        Figure(
            "recorder.round_trip",
            "recorder round trips",
            median(rt["recorder"]),
            "round trips/s",
            median(rt["bare"]),
            "bare",
            "ratio>=0.95",
            rt["recorder"],
            rt["bare"],
            paired=True,
        ),
        Figure(
            "recorder.round_trip_cpu",
            "recorder round trips, per proxy CPU-s",
            median(rt_cpu["recorder"]),
            "rt/CPU-s",
            median(rt_cpu["bare"]),
            "bare",
            "ratio>=0.95",
            rt_cpu["recorder"],
            rt_cpu["bare"],
            paired=True,
        ),
    ]
    for name, (with_hook, without_hook) in in_process.items():
        figures.append(
            Figure(
                f"recorder.{name.replace(' ', '_')}_in_process",
                f"recorder {name}, in its process: per CPU-s with/without hook",
                median(with_hook),
                "/CPU-s",
                median(without_hook),
                "same runs less the hook",
                "ratio>=0.95",
                with_hook,
                without_hook,
                paired=True,
                note=f"hook {median(hook_us[name]):.1f} µs per {'frame' if name == 'burst' else 'round trip (2 messages)'}; "
                "mitmproxy's call to one more addon (~1-1.5 µs per message) is not in it",
            )
        )
    if "recorder_noredact" in fps:
        figures += [
            Figure(
                "recorder.burst_noredact",
                "recorder burst, redaction off",
                median(fps["recorder_noredact"]),
                "frames/s",
                median(fps["bare"]),
                "bare",
                samples=fps["recorder_noredact"],
                baseline_samples=fps["bare"],
                paired=True,
            ),
            Figure(
                "recorder.burst_cpu_noredact",
                "recorder burst, redaction off, per CPU-s",
                median(cpu["recorder_noredact"]),
                "frames/CPU-s",
                median(cpu["bare"]),
                "bare",
                samples=cpu["recorder_noredact"],
                baseline_samples=cpu["bare"],
                paired=True,
            ),
            Figure(
                "recorder.round_trip_noredact",
                "recorder round trips, redaction off",
                median(rt["recorder_noredact"]),
                "round trips/s",
                median(rt["bare"]),
                "bare",
                samples=rt["recorder_noredact"],
                baseline_samples=rt["bare"],
                paired=True,
            ),
        ]
    if "replayer" in fps:
        figures.append(
            Figure(
                "replay.proxy_burst",
                "replay via mitmproxy (Replayer, max)",
                median(fps["replayer"]),
                "frames/s",
                median(fps["bare"]),
                "bare relaying live",
                samples=fps["replayer"],
                baseline_samples=fps["bare"],
                paired=True,
            )
        )
    if "direct" in plain:
        figures.append(
            Figure(
                "replay.direct_burst",
                f"replay direct (replay server, {params.frames:,})",
                median(plain["direct"]),
                "frames/s",
                plain_burst,
                "plain",
                "ratio>=0.8",
                plain["direct"],
                plain["plain"],
                paired=True,
            )
        )
    mem_bare, mem_rec = memory["bare"], memory["recorder"]
    grow = {k: (m["rss_after_kb"] - m["rss_before_kb"]) / 1024 for k, m in memory.items()}
    figures += [
        Figure(
            "recorder.memory",
            f"recorder RSS growth, {params.frames:,}-frame session",
            grow["recorder"],
            "MiB",
            grow["bare"],
            "bare growth",
            "value<30",
            note=f"recorder {mem_rec['rss_before_kb'] / 1024:.0f}->{mem_rec['rss_after_kb'] / 1024:.0f} MiB, "
            f"bare {mem_bare['rss_before_kb'] / 1024:.0f}->{mem_bare['rss_after_kb'] / 1024:.0f} MiB",
        ),
        Figure(
            "recorder.memory_session_cpu",
            f"recorder, per proxy CPU-s over {params.frames:,} frames",
            params.frames / mem_rec["cpu_seconds"],
            "frames/CPU-s",
            params.frames / mem_bare["cpu_seconds"],
            "bare",
            note="from the memory sessions (bare and recorder ran concurrently)",
        ),
    ]
    raw["flow_file"] = storage.flow_file_figures(flow_file)
    raw["recorded_cassette_bytes"] = recorded.stat().st_size


async def _plain_burst(url: str, count: int, last: str) -> float:
    gc.collect()
    return count / await wsload.burst(url, count, last)


# --- storage and HTTP matching ---------------------------------------------------------------


def storage_benchmarks(params: Params, work: Path, figures: list[Figure], raw: dict[str, Any]) -> None:
    records = storage.connection_records(work / "recorded.cassette", f"n={params.frames}")
    log(f"cassette write/read: {len(records):,} records of the recorded {params.frames:,}-frame session")
    runs = [storage.cassette_figures(records, work) for _ in range(min(params.repeats, 3))]
    raw["storage"] = runs
    flow = raw["flow_file"]
    frames = runs[0]["frames"]
    write_fps = [frames / r["write_seconds"] for r in runs]
    read_fps = [frames / r["read_seconds"] for r in runs]
    write_mbs = [r["cassette_bytes"] / r["write_seconds"] / MB for r in runs]
    read_mbs = [r["cassette_bytes"] / r["read_seconds"] / MB for r in runs]
    jsonl_write = [frames / r["jsonl_write_seconds"] for r in runs]
    jsonl_read = [frames / r["jsonl_read_seconds"] for r in runs]
    per_frame = runs[0]["cassette_bytes_per_frame"]
    figures += [
        Figure(
            "cassette.write",
            f"cassette write ({frames:,} frames)",
            median(write_fps),
            "frames/s",
            median(jsonl_write),
            "JSON lines",
            samples=write_fps,
            baseline_samples=jsonl_write,
        ),
        Figure("cassette.write_mbs", "cassette write", median(write_mbs), "MB/s", samples=write_mbs),
        Figure(
            "cassette.read",
            "cassette read (streaming)",
            median(read_fps),
            "frames/s",
            median(jsonl_read),
            "JSON lines",
            samples=read_fps,
            baseline_samples=jsonl_read,
        ),
        Figure("cassette.read_mbs", "cassette read", median(read_mbs), "MB/s", samples=read_mbs),
        Figure(
            "cassette.read_vs_flow",
            "cassette read vs mitmproxy flow file",
            median(read_fps),
            "frames/s",
            flow["messages"] / flow["read_seconds"],
            "mitmproxy FlowReader",
        ),
        Figure(
            "cassette.size_vs_flow",
            "cassette size",
            per_frame,
            "bytes/frame",
            flow["bytes_per_message"],
            "mitmproxy flow file",
        ),
        Figure(
            "cassette.size_vs_jsonl",
            "cassette size",
            per_frame,
            "bytes/frame",
            runs[0]["jsonl_bytes_per_frame"],
            "JSON lines",
        ),
    ]


def http_benchmarks(params: Params, work: Path, figures: list[Figure], raw: dict[str, Any], skipped: list[str]) -> None:
    try:
        import wsreplay.replay  # noqa: F401
    except Exception as exc:
        skipped.append(f"HTTP matching rows: replay engine not importable ({exc})")
        return
    prepared: dict[tuple[str, int], matching.Prepared] = {}
    for size in params.http_sizes:
        log(f"HTTP matching: wsreplay, {size:,} exchanges")
        prepared["wsreplay", size] = matching.prepare_wsreplay(
            work, size, "mixed", params.http_lookups, params.http_load_repeats
        )
    for size in params.one_path_sizes:
        log(f"HTTP matching: wsreplay, {size:,} exchanges on one path")
        prepared["one_path", size] = matching.prepare_wsreplay(work, size, "one-path", 20, 1)
    if matching.vcrpy_available():
        for size in params.vcrpy_sizes:
            log(f"HTTP matching: vcrpy, {size:,} exchanges")
            prepared["vcrpy", size] = matching.prepare_vcrpy(work, size, "mixed", 20, params.http_load_repeats)
    elif params.vcrpy_sizes:
        print("vcrpy not installed", flush=True)
        skipped.append("vcrpy rows: vcrpy not installed")
    log(f"HTTP matching: timing lookups, {params.repeats} alternating rounds")
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in prepared}
    keys = list(prepared)
    for repeat in range(params.repeats):
        shift = repeat % len(keys)
        for key in keys[shift:] + keys[:shift]:
            samples[key].append(prepared[key].per_call(params.http_min_seconds))
    results: dict[str, dict[int, dict[str, Any]]] = {"wsreplay": {}, "one_path": {}, "vcrpy": {}}
    for (kind, size), item in prepared.items():
        results[kind][size] = item.info | {
            "match_seconds": median(samples[kind, size]),
            "match_samples": samples[kind, size],
        }
    ours, one_path, theirs = results["wsreplay"], results["one_path"], results["vcrpy"]
    raw["http"] = results
    reference = 1000 if 1000 in ours else max(ours)
    us = 1e6
    load_baseline = theirs.get(reference, {}).get("load_seconds")
    match_baseline = theirs.get(reference, {}).get("match_seconds")
    figures += [
        Figure(
            "http.load",
            f"load+index {reference:,} HTTP exchanges",
            ours[reference]["load_seconds"] * 1000,
            "ms",
            None if load_baseline is None else load_baseline * 1000,
            "vcrpy YAML load",
        ),
        Figure(
            "http.match",
            f"match 1 request among {reference:,}",
            ours[reference]["match_seconds"] * us,
            "µs",
            None if match_baseline is None else match_baseline * us,
            "vcrpy play_response",
            samples=_us(ours[reference]),
            baseline_samples=_us(theirs.get(reference)),
            paired=True,
        ),
    ]
    smallest = min(ours)
    for size in sorted(ours):
        if size == smallest:
            figures.append(
                Figure(
                    f"http.match_{size}",
                    f"match cost, {size:,} exchanges",
                    ours[size]["match_seconds"] * us,
                    "µs",
                    samples=_us(ours[size]),
                )
            )
        else:
            figures.append(
                Figure(
                    f"http.match_{size}",
                    f"match cost, {size:,} exchanges",
                    ours[size]["match_seconds"] * us,
                    "µs",
                    ours[smallest]["match_seconds"] * us,
                    f"{smallest:,} exchanges",
                    "ratio<=2",
                    _us(ours[size]),
                    _us(ours[smallest]),
                    paired=True,
                )
            )
    if len(one_path) >= 2:
        small, large = min(one_path), max(one_path)
        figures += [
            Figure(
                "http.one_path_match",
                f"match, {large:,} exchanges on one path (query differs)",
                one_path[large]["match_seconds"] * us,
                "µs",
                one_path[small]["match_seconds"] * us,
                f"{small:,} on one path",
                "ratio<=2",
                _us(one_path[large]),
                _us(one_path[small]),
                paired=True,
            ),
            Figure(
                "http.one_path_load",
                f"load+index {large:,} exchanges on one path",
                one_path[large]["load_seconds"] * 1000,
                "ms",
                one_path[small]["load_seconds"] * 1000,
                f"{small:,} on one path",
            ),
        ]
    if len(theirs) >= 2:
        small, large = min(theirs), max(theirs)
        figures.append(
            Figure(
                "http.vcrpy_growth",
                f"vcrpy match cost, {large:,} exchanges",
                theirs[large]["match_seconds"] * us,
                "µs",
                theirs[small]["match_seconds"] * us,
                f"vcrpy, {small:,}",
                samples=_us(theirs[large]),
                baseline_samples=_us(theirs[small]),
                paired=True,
            )
        )


def _us(result: dict[str, Any] | None) -> list[float]:
    return [] if result is None else [seconds * 1e6 for seconds in result["match_samples"]]


# --- main ----------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    import aiohttp
    import msgpack
    import websockets
    from mitmproxy import version

    try:
        import vcr

        vcr_version = vcr.__version__
    except ImportError:
        vcr_version = None
    load = os.getloadavg()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "mitmproxy": version.VERSION,
        "websockets": websockets.__version__,
        "aiohttp": aiohttp.__version__,
        "msgpack": ".".join(map(str, msgpack.version)),
        "vcrpy": vcr_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "loadavg_at_start": load,
    }


SETUP = {
    "load": "plain websockets (asyncio API) server and client in the benchmark process, one event loop, "
    "127.0.0.1, compression off, ~100-byte JSON text frames",
    "proxies": "wsreplay ProxyHost (reverse mode, default mitmproxy addons) each in its own process "
    "(multiprocessing spawn): bare (no wsreplay addon), recorder (Recorder -> temp cassette, default "
    "options: redaction on), recorder_noredact (the same with wsreplay_redact=false), "
    "replayer (Replayer on a cassette of the recorded burst, speed max, lazy connections); no CPU pinning",
    "burst": "server sends N frames as fast as it can after the client's start frame; the client times "
    "start frame -> N-th frame received",
    "round_trip": "client sends a frame, waits for the echo, in sequence",
    "repeats": "proxied (and plain/direct) runs alternate, rotating the order each repeat; values are "
    "medians; ratios of alternated runs are the median of the per-repeat ratios",
    "gc": "a full garbage collection in the proxy process (and the load's) before each timed proxied run, "
    "outside the timed window",
    "cpu": "proxy CPU = the proxy process's CPU-time clock (all threads, clock_gettime on its "
    "CPUCLOCK) from the start frame to the last frame received",
    "memory": "VmRSS of each proxy process right before one N-frame burst and right after its last "
    "frame arrived, the flow still live; bare and recorder sessions run concurrently",
    "direct_replay": "replay server (aiohttp, direct mode, speed max) in the benchmark process, "
    "same client, against the plain websockets server sending the same frames",
    "storage": "the recorded N-frame session's records written with CassetteWriter / read with "
    "CassetteReader; JSON lines = `wsreplay show --json` objects; mitmproxy flow file = "
    "io.FlowWriter of the bare proxy's N-frame session flow",
    "autobahn": "Autobahn|Testsuite fuzzingclient (wstest) case 9 subset (9.1-9.4, 9.7, 9.8; --quick: a few small "
    "ones) against a websockets echo server (own process): through bare mitmproxy and the recorder (ProxyHost "
    "processes), straight to the echo server, and from `wsreplay replay --direct --speed max` of a recording; "
    "figure = sum of Autobahn's per-case durations; servers and proxies on the last CPU, wstest on the others; "
    "3 alternated repeats (--quick 1); ratio = baseline time / time",
    "big_cassette": "cassettes of 100 MB and 1 GB (--quick: 10 and 100 MB) written with CassetteWriter: a token "
    "POST, then 20 WebSocket chat sessions whose frames interleave one by one, each turn a client message and 1,004 "
    "server events of ~175 bytes; each wsreplay command run as its own process (python -m wsreplay), output to "
    "/dev/null; time = wall clock, RSS = the command's own peak (wait4 ru_maxrss); first connection = from starting "
    "`replay --direct` to a websockets client's first chat turn getting its first frame",
    "http": "cassettes of K mixed REST exchanges (distinct paths); wsreplay live requests carry fresh "
    "volatile JSON values; vcrpy: YAML cassette, default matchers, identical requests, "
    "allow_playback_repeats",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames of the long sessions (memory, plain, direct, storage); default 100000, --quick 1000",
    )
    parser.add_argument(
        "--proxy-frames", type=int, default=None, help="frames per proxied burst run; default min(frames, 2000)"
    )
    parser.add_argument(
        "--round-trips", type=int, default=None, help="round trips per proxied run; default min(frames, 500)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (median); default 5, --quick 3")
    parser.add_argument(
        "--proxy-repeats", type=int, default=None, help="proxied burst runs per proxy (median); default 9, --quick 3"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--no-vcrpy", action="store_true", help="skip the vcrpy rows")
    parser.add_argument(
        "--no-autobahn", action="store_true", help="skip the Autobahn case 9 rows (bench/autobahn_bench.py)"
    )
    parser.add_argument(
        "--no-big", action="store_true", help="skip the big cassette rows (bench/big_cassette.py, 100 MB and 1 GB)"
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON file (default bench/results/bench-<time>-py<ver>.json)"
    )
    args = parser.parse_args(argv)
    for name in ("repeats", "proxy_repeats"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def make_params(args: argparse.Namespace) -> Params:
    quick = args.quick
    frames = args.frames or (1000 if quick else 100_000)
    proxy_frames = args.proxy_frames or min(frames, 200 if quick else 2000)
    round_trips = args.round_trips or min(frames, 50 if quick else 500)
    return Params(
        frames=frames,
        proxy_frames=proxy_frames,
        round_trips=round_trips,
        plain_round_trips=min(frames, round_trips * 5),
        warmup_frames=min(50 if quick else 200, frames),
        repeats=args.repeats or (3 if quick else 5),
        proxy_repeats=args.proxy_repeats or args.repeats or (3 if quick else 9),
        http_sizes=(100, 1000) if quick else (100, 1000, 10_000),
        one_path_sizes=(50, 100) if quick else (100, 400),
        vcrpy_sizes=() if args.no_vcrpy else ((1000,) if quick else (100, 1000)),
        http_lookups=200,
        http_min_seconds=0.05 if quick else 0.2,
        http_load_repeats=1 if quick else 3,
        autobahn=not args.no_autobahn,
        big=not args.no_big,
        autobahn_repeats=1 if quick else 3,
        quick=quick,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = make_params(args)
    started = time.perf_counter()
    output = args.output or BENCH_DIR / "results" / (
        f"bench-{datetime.now().strftime('%Y%m%d-%H%M%S')}-py{sys.version_info.major}{sys.version_info.minor}"
        f"{'-quick' if params.quick else ''}.json"
    )
    figures: list[Figure] = []
    raw: dict[str, Any] = {}
    skipped: list[str] = []
    env = environment()
    log(
        f"wsreplay bench: Python {env['python']}, mitmproxy {env['mitmproxy']}, {env['cpus']} CPUs, load {env['loadavg_at_start'][0]:.1f}"
    )
    work = Path(tempfile.mkdtemp(prefix="wsreplay-bench-"))
    try:
        asyncio.run(websocket_benchmarks(params, work, figures, raw, skipped))
        storage_benchmarks(params, work, figures, raw)
        http_benchmarks(params, work, figures, raw, skipped)
        if params.big:
            big_figures, big_raw = big_cassette.big_cassette_benchmarks(params.quick, work)
            figures += [Figure(**figure) for figure in big_figures]
            raw |= big_raw
        else:
            skipped.append("big cassette rows: --no-big")
        if params.autobahn:
            autobahn_figures, autobahn_raw, autobahn_skipped = autobahn_bench.autobahn_benchmarks(
                params.quick, params.autobahn_repeats, work
            )
            figures += [Figure(**figure) for figure in autobahn_figures]
            raw |= autobahn_raw
            skipped += autobahn_skipped
        else:
            skipped.append("autobahn rows: --no-autobahn")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    duration = time.perf_counter() - started
    order = [
        "physical.",
        "bare.",
        "recorder.burst",
        "recorder.round",
        "recorder.memory",
        "replay.",
        "cassette.",
        "http.",
        "big.",
        "autobahn.",
    ]
    figures.sort(key=lambda f: next((i for i, p in enumerate(order) if f.key.startswith(p)), len(order)))

    print()
    print(
        f"wsreplay benchmark — Python {env['python']}, mitmproxy {env['mitmproxy']}, websockets {env['websockets']}, "
        f"{env['cpus']} CPUs, load avg at start {env['loadavg_at_start'][0]:.1f}, {duration:.0f} s"
    )
    print(
        f"frames: long sessions {params.frames:,}, proxied bursts {params.proxy_frames:,} x {params.proxy_repeats}, "
        f"proxied round trips {params.round_trips:,} x {params.repeats}, other repeats {params.repeats}; "
        "proxies in their own processes"
    )
    print(
        "values are medians; ratio* = median of per-repeat ratios of runs alternated in time (can differ from "
        "value/baseline when runs are noisy)"
    )
    print()
    print_table(figures)
    notes = [f for f in figures if f.note]
    if notes or skipped:
        print()
    for f in notes:
        print(f"note: {f.label}: {f.note}")
    for reason in skipped:
        print(f"skipped: {reason}")
    targets = [f for f in figures if f.met is not None]
    print(f"\ntargets met: {sum(f.met for f in targets)}/{len(targets)}")

    output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "wsreplay",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "duration_seconds": duration,
        "environment": env | {"loadavg_at_end": os.getloadavg()},
        "setup": SETUP,
        "parameters": asdict(params),
        "figures": [f.as_dict() for f in figures],
        "skipped": skipped,
        "raw": raw,
    }
    output.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
