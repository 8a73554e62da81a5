"""mitmproxy in its own process (multiprocessing, spawn), driven through a pipe.

The child runs wsreplay's ``ProxyHost`` in reverse mode with the default mitmproxy
addons plus, depending on ``kind``:

* ``bare``: nothing of wsreplay's;
* ``recorder``: the ``Recorder`` addon writing ``wsreplay_output`` (options such as
  ``wsreplay_redact=false`` go in ``extra``);
* ``replayer``: the ``Replayer`` addon on ``wsreplay_cassette`` (lazy connections).

The ``collect`` command runs a full garbage collection in the child before a timed run (see ``run.same_gc_state``).

A last ``_Probe`` addon counts ended WebSocket flows (so the parent knows the proxy
has finished with a connection before the next one) and can write the next ended
flow with mitmproxy's ``io.FlowWriter`` (mitmproxy's own flow file of the session).
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


@dataclass
class ProxyConfig:
    kind: str  # bare | recorder | replayer
    upstream_port: int
    confdir: str
    cassette: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    """More mitmproxy/wsreplay options (``--set NAME=VALUE``), e.g. ``wsreplay_redact=false``."""
    label: str = ""
    cpus: frozenset[int] | None = None
    """CPUs the proxy process may run on (None: any)."""

    @property
    def name(self) -> str:
        return self.label or self.kind


class _Probe:
    def __init__(self) -> None:
        self.ended = 0
        self.capture_path: str | None = None

    def websocket_end(self, flow: Any) -> None:
        if self.capture_path is not None and flow.websocket is not None and len(flow.websocket.messages) > 1:
            from mitmproxy import io

            with open(self.capture_path, "wb") as handle:
                io.FlowWriter(handle).add(flow)
            self.capture_path = None
        self.ended += 1


class _HookTimer:
    """Wraps an addon's ``websocket_message`` hook and adds up the time spent in it.

    The hook runs synchronously on the proxy's event-loop thread, between mitmproxy's own
    work on the message, so its wall time (``perf_counter_ns``, a vDSO clock, cheap) is the
    CPU it adds to the proxy unless the thread is descheduled inside it; the median over
    runs keeps such rare runs out.
    """

    def __init__(self, addon: Any) -> None:
        self.nanoseconds = 0
        self.calls = 0
        self._hook = addon.websocket_message
        addon.websocket_message = self

    def __call__(self, flow: Any) -> None:
        started = time.perf_counter_ns()
        self._hook(flow)
        self.nanoseconds += time.perf_counter_ns() - started
        self.calls += 1


def serve(conn: Connection, config: ProxyConfig) -> None:
    """Child entry point: start the proxy, answer commands until told to stop."""
    if config.cpus is not None:
        os.sched_setaffinity(0, config.cpus)
    logging.getLogger("mitmproxy").setLevel(logging.ERROR)
    logging.getLogger("wsreplay").setLevel(logging.ERROR)
    from wsreplay.mitm import ProxyHost, ProxySettings

    probe = _Probe()
    hook_timer: _HookTimer | None = None
    addons: list[object] = []
    extra = dict(config.extra)
    strategy = "eager"
    if config.kind == "recorder":
        from wsreplay.addons.recorder import Recorder

        recorder = Recorder()
        hook_timer = _HookTimer(recorder)
        addons.append(recorder)
        extra.update(wsreplay_output=str(config.cassette), wsreplay_overwrite="true")
    elif config.kind == "replayer":
        from wsreplay.addons.replayer import Replayer

        addons.append(Replayer())
        extra.update(wsreplay_cassette=str(config.cassette), wsreplay_speed="max")
        strategy = "lazy"
    elif config.kind != "bare":
        raise ValueError(f"unknown proxy kind {config.kind!r}")
    addons.append(probe)
    settings = ProxySettings(
        mode=f"reverse:http://127.0.0.1:{config.upstream_port}",
        connection_strategy=strategy,
        confdir=config.confdir,
        extra_options=extra,
    )
    host = ProxyHost(settings, addons)
    try:
        _, port = host.start_in_thread()
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", port))
    try:
        while True:
            try:
                command, *args = conn.recv()
            except EOFError:
                break
            if command == "stop":
                break
            if command == "ended":
                conn.send(host.run_threadsafe(lambda: probe.ended))
            elif command == "wait_ended":
                deadline = time.monotonic() + args[1]
                while host.run_threadsafe(lambda: probe.ended) < args[0] and time.monotonic() < deadline:
                    time.sleep(0.005)
                conn.send(host.run_threadsafe(lambda: probe.ended))
            elif command == "hook_time":
                conn.send(
                    host.run_threadsafe(lambda: (hook_timer.nanoseconds, hook_timer.calls) if hook_timer else (0, 0))
                )
            elif command == "collect":
                conn.send(host.run_threadsafe(gc.collect))
            elif command == "capture":
                conn.send(host.run_threadsafe(functools.partial(setattr, probe, "capture_path", args[0])))
            else:
                conn.send(("error", f"unknown command {command!r}"))
    finally:
        host.stop_thread()
        try:
            conn.send(("stopped",))
        except (BrokenPipeError, OSError):
            pass


def read_status_kb(pid: int, field_name: str) -> int:
    """A ``/proc/PID/status`` field in kB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


class ProxyProcess:
    """Parent side: start the child, send commands (blocking; call via asyncio.to_thread)."""

    def __init__(self, config: ProxyConfig) -> None:
        import multiprocessing

        self.config = config
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=serve, args=(child_conn, config), name=f"wsreplay-bench-{config.name}", daemon=True
        )
        self._child_conn = child_conn
        self.port = 0

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def start(self, timeout: float = 60.0) -> int:
        self._process.start()
        self._child_conn.close()
        if not self._conn.poll(timeout):
            self.stop()
            raise RuntimeError(f"{self.config.name} proxy did not start in {timeout}s")
        answer = self._conn.recv()
        if answer[0] != "ready":
            self.stop()
            raise RuntimeError(f"{self.config.name} proxy failed to start: {answer[1]}")
        self.port = answer[1]
        return self.port

    def call(self, *command: object, timeout: float = 120.0) -> Any:
        self._conn.send(command)
        if not self._conn.poll(timeout):
            raise RuntimeError(f"{self.config.name} proxy did not answer {command[0]!r} in {timeout}s")
        return self._conn.recv()

    def ended(self) -> int:
        return self.call("ended")

    def wait_ended(self, count: int, timeout: float = 60.0) -> int:
        ended = self.call("wait_ended", count, timeout, timeout=timeout + 10)
        if ended < count:
            raise RuntimeError(f"{self.config.name} proxy: {ended} WebSocket flows ended, expected {count}")
        return ended

    def hook_time(self) -> tuple[int, int]:
        """Nanoseconds spent in the recorder's ``websocket_message`` hook so far, and its calls
        ((0, 0) for a proxy without the recorder)."""
        return self.call("hook_time")

    def collect(self) -> int:
        """Run a full garbage collection in the proxy; return what it found unreachable."""
        return self.call("collect")

    def rss_kb(self) -> int:
        return read_status_kb(self.pid, "VmRSS")

    def hwm_kb(self) -> int:
        return read_status_kb(self.pid, "VmHWM")

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop the proxy cleanly (terminate it only if it does not exit); return its exit code."""
        if self._process.pid is None:  # never started
            self._conn.close()
            return None
        if self._process.is_alive():
            try:
                self._conn.send(("stop",))
                if self._conn.poll(timeout):
                    self._conn.recv()
            except (BrokenPipeError, EOFError, OSError):
                pass
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        self._conn.close()
        return self._process.exitcode
