"""Run the real ``wsreplay`` command in a subprocess, as a user would."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

WSREPLAY = str(Path(sys.executable).with_name("wsreplay"))
LISTENING = re.compile(r" on (?P<host>[\d.]+):(?P<port>\d+)")
T = TypeVar("T")


def run_wsreplay(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WSREPLAY, *args], capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
    )


class RunningWsreplay:
    """A long-running ``wsreplay`` process whose stderr lines are collected as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [WSREPLAY, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self.stdout = ""
        self._changed = threading.Condition()
        self._stderr_done = False
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._stdout_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._stdout_reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        self.stdout = self.process.stdout.read()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._stderr_done = True
            self._changed.notify_all()

    def wait_for_line(self, pattern: str | re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        """Block until a stderr line matches; fail with everything printed so far."""
        regex = re.compile(pattern)
        with self._changed:
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if found := regex.search(line):
                        return found
                seen = len(self.lines)
                if self._stderr_done:
                    raise AssertionError(f"wsreplay exited before printing {regex.pattern!r}:\n{self.output}")
                if not self._changed.wait(timeout):
                    raise AssertionError(f"wsreplay did not print {regex.pattern!r} in {timeout}s:\n{self.output}")

    def wait_listening(self, timeout: float = 30) -> int:
        return int(self.wait_for_line(LISTENING, timeout)["port"])

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30) -> int:
        """Send `signum` and wait for the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        self.process.wait(timeout)
        self._reader.join(timeout)
        self._stdout_reader.join(timeout)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait()


async def run_proxy(args: list[str], client: Callable[[int], Awaitable[T]]) -> tuple[T, RunningWsreplay]:
    """Start `wsreplay ARGS` on an ephemeral port, run the client against it, stop it with Ctrl-C."""
    process = RunningWsreplay(*args, "--listen", "127.0.0.1:0")
    try:
        port = await asyncio.to_thread(process.wait_listening)
        result = await client(port)
    finally:
        status = await asyncio.to_thread(process.stop)
    assert status == 0, process.output
    return result, process


def run_pytest(directory: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run a whole suite (the example or the browser suite) in a pytest subprocess, from its folder."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(directory),
            "-p",
            "no:cacheprovider",
            "-q",
            "-W",
            "ignore::DeprecationWarning",
            "-o",
            "asyncio_mode=auto",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=directory,
        stdin=subprocess.DEVNULL,
    )
