"""The transparency matrix: what a WebSocket client observes, per client kind and per path.

A *socket plan* says where to connect, what to send and when to close; every client kind
(Node's WebSocket, a Chromium page, `websockets`, aiohttp, websocket-client) runs the same
plan on `SOCKETS` sockets at once and returns one `Observation` per socket: the frames,
the close code, the reason and whether the close was clean. A *path* is how the client
reaches the upstream: directly, through `wsreplay record`, `wsreplay replay` (mitmproxy)
or `wsreplay replay --direct`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import websocket as websocket_client
import websockets
from websockets.asyncio.client import connect

from tests.support.chromium import LAUNCH_ARGS
from tests.support.cli import RunningWsreplay
from tests.support.clients import fresh_token
from tests.support.node import NODE, node_version
from tests.support.scenario import AUTH_FAILURE_FRAME, GREETING, agent_turn
from tests.support.staging_upstream import ScriptedUpstream

SOCKETS = 30
"""Sockets per client and path."""
WAVE = 3
"""Sockets opened at once; the next wave starts when all of a wave are closed.

Measured with Node against wsreplay before its closing-handshake fixes (4 runs each, sockets
of 30 that saw the error frame and a clean 1008): one at a time caught the record race
(7-17) but rarely the replays' (22-29); all 30 at once caught the replays' often but not
always (0-30, bimodal) and the record race almost never (29-30); waves of 3 caught all
three every time (record 17-26, replay 16-23, replay --direct 21-28)."""
TIMEOUT = 10.0
MAX_FRAMES = 64
ABNORMAL_CLOSURE = 1006
"""The code a client reports when the connection ended without a close frame."""
CHROMIUM = Path("/usr/bin/chromium")
SKIP_BROWSER_VARIABLE = "WSREPLAY_SKIP_BROWSER"
SUPPORT = Path(__file__).parent
BROWSER_SOCKETS_SCRIPT = SUPPORT / "websocket_sockets.mjs"
NODE_RUNNER = SUPPORT / "transparency_node.mjs"


@dataclass(frozen=True)
class Observation:
    """What one socket's user saw. `reason` is None where the client library does not expose it."""

    frames: tuple[str, ...]
    code: int | None
    reason: str | None
    was_clean: bool

    def __str__(self) -> str:
        types = [_frame_type(frame) or frame[:40] for frame in self.frames]
        return f"frames={types} code={self.code} reason={self.reason!r} wasClean={self.was_clean}"


@dataclass(frozen=True)
class SocketPlan:
    """Open `count` sockets at `url` offering `protocols`; send `message` on a `send_on` frame, close 1000 on `close_on`."""

    url: str
    protocols: tuple[str, ...]
    message: str | None
    send_on: str | None
    close_on: str | None
    count: int = SOCKETS
    wave: int = WAVE

    def as_json(self) -> str:
        """The plan as websocket_sockets.mjs reads it."""
        return json.dumps(
            {
                "url": self.url,
                "protocols": list(self.protocols),
                "message": self.message,
                "sendOn": self.send_on,
                "closeOn": self.close_on,
                "count": self.count,
                "wave": self.wave,
                "timeoutMs": int(TIMEOUT * 1000),
            }
        )


@dataclass(frozen=True)
class Scenario:
    """A WebSocket conversation and what every client must observe in it, on every path."""

    name: str
    path: str
    expected: Observation
    summary: str
    message: str | None = None
    send_on: str | None = None
    close_on: str | None = None

    def plan(self, ws_base: str) -> SocketPlan:
        """Authenticated the way a browser can: the JWT in the `jwt.<token>` subprotocol."""
        protocols = ("jwt-auth", f"jwt.{fresh_token()}")
        return SocketPlan(f"{ws_base}{self.path}", protocols, self.message, self.send_on, self.close_on)


def _json_frames(*frames: Any) -> tuple[str, ...]:
    return tuple(json.dumps(frame) for frame in frames)


CHAT_MESSAGE = json.dumps({"type": "message", "content": "What is the weather in Paris?", "thread_id": "t-1"})
AUTH_FAILURE = Scenario(
    name="auth-failure",
    path="/ws-bug",
    expected=Observation(_json_frames(AUTH_FAILURE_FRAME), 1008, "Authentication failed", True),
    summary="saw error frame+1008 clean",
)
CHAT = Scenario(
    name="chat",
    path="/ws",
    expected=Observation(_json_frames(*GREETING, *agent_turn(CHAT_MESSAGE)), 1000, "", True),
    summary="saw ack+5 agent events+1000 clean",
    message=CHAT_MESSAGE,
    send_on="system_message",
    close_on="agent_completed",
)
SCENARIOS = (AUTH_FAILURE, CHAT)


def _frame_type(text: str) -> str | None:
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame.get("type") if isinstance(frame, dict) else None


def tally(cell: str, scenario: Scenario, observations: list[Observation], expected: Observation) -> str:
    """'Node record: 17/30 saw error frame+1008 clean', then each other outcome with its count."""
    outcomes = Counter(observations)
    lines = [f"{cell}: {outcomes[expected]}/{len(observations)} {scenario.summary}"]
    lines += [f"  {count}x {outcome}" for outcome, count in outcomes.most_common() if outcome != expected]
    return "\n".join(lines)


# --- clients -----------------------------------------------------------------------


class WebSocketClient:
    """A client kind: `observe(plan)` runs the plan's sockets at once."""

    label: str
    sees_close_reply_reason = True
    """False where the library drops the reason of the answer to its own close."""

    def missing(self) -> str | None:
        """Why this client cannot run here (a skip message), or None."""
        return None

    def expected(self, scenario: Scenario) -> Observation:
        """The scenario's expectation, limited to what this client can see."""
        if scenario.close_on is not None and not self.sees_close_reply_reason:
            return replace(scenario.expected, reason=None)
        return scenario.expected

    async def observe(self, plan: SocketPlan) -> list[Observation]:
        """The plan's sockets, `plan.wave` at a time."""
        observations: list[Observation] = []
        for opened in range(0, plan.count, plan.wave):
            observations += await self.observe_wave(plan, min(plan.wave, plan.count - opened))
        return observations

    async def observe_wave(self, plan: SocketPlan, sockets: int) -> list[Observation]:
        return list(await asyncio.gather(*(self.observe_one(plan) for _ in range(sockets))))

    async def observe_one(self, plan: SocketPlan) -> Observation:
        raise NotImplementedError


class WebsocketsClient(WebSocketClient):
    label = "websockets"

    async def observe_one(self, plan: SocketPlan) -> Observation:
        frames: list[str] = []
        async with connect(
            plan.url, subprotocols=list(plan.protocols), open_timeout=TIMEOUT, close_timeout=TIMEOUT, ping_interval=None
        ) as ws:
            with contextlib.suppress(websockets.ConnectionClosed):
                for _ in range(MAX_FRAMES):
                    text = str(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    frames.append(text)
                    if _frame_type(text) == plan.send_on:
                        await ws.send(plan.message or "")
                    if _frame_type(text) == plan.close_on:
                        await ws.close(1000)
                        break
        received = ws.protocol.close_rcvd
        if received is None:
            return Observation(tuple(frames), ABNORMAL_CLOSURE, "", False)
        return Observation(tuple(frames), received.code, received.reason, ws.protocol.close_sent is not None)


class AiohttpClient(WebSocketClient):
    label = "aiohttp"
    sees_close_reply_reason = False

    async def observe_one(self, plan: SocketPlan) -> Observation:
        frames: list[str] = []
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                plan.url,
                protocols=plan.protocols,
                timeout=aiohttp.ClientWSTimeout(ws_receive=TIMEOUT, ws_close=TIMEOUT),
            ) as ws,
        ):
            for _ in range(MAX_FRAMES):
                message = await ws.receive(timeout=TIMEOUT)
                if message.type is aiohttp.WSMsgType.CLOSE:
                    return Observation(tuple(frames), message.data, message.extra, True)
                if message.type is not aiohttp.WSMsgType.TEXT:
                    return Observation(tuple(frames), ws.close_code or ABNORMAL_CLOSURE, "", False)
                frames.append(message.data)
                if _frame_type(message.data) == plan.send_on:
                    await ws.send_str(plan.message or "")
                if _frame_type(message.data) == plan.close_on:
                    await ws.close(code=1000)
                    return Observation(tuple(frames), ws.close_code, None, ws.close_code != ABNORMAL_CLOSURE)
        raise AssertionError(f"aiohttp: no close after {MAX_FRAMES} frames: {frames}")


class WebsocketClientClient(WebSocketClient):
    """websocket-client is blocking: one thread per socket, so that all of them run at once."""

    label = "websocket-client"

    async def observe_wave(self, plan: SocketPlan, sockets: int) -> list[Observation]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=sockets) as threads:
            return list(
                await asyncio.gather(
                    *(loop.run_in_executor(threads, self._observe_blocking, plan) for _ in range(sockets))
                )
            )

    def _observe_blocking(self, plan: SocketPlan) -> Observation:
        frames: list[str] = []
        ws = websocket_client.create_connection(plan.url, timeout=TIMEOUT, subprotocols=list(plan.protocols))
        try:
            for _ in range(MAX_FRAMES):
                frame = ws.recv_frame()
                if frame.opcode == websocket_client.ABNF.OPCODE_CLOSE:
                    code = int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else None
                    if plan.close_on is None:
                        ws.send_close()
                    return Observation(tuple(frames), code, frame.data[2:].decode(), True)
                if frame.opcode != websocket_client.ABNF.OPCODE_TEXT:
                    continue
                text = frame.data.decode()
                frames.append(text)
                if _frame_type(text) == plan.send_on:
                    ws.send(plan.message or "")
                if _frame_type(text) == plan.close_on:
                    ws.send_close(1000)
        except (websocket_client.WebSocketConnectionClosedException, ConnectionError):
            return Observation(tuple(frames), ABNORMAL_CLOSURE, "", False)
        finally:
            ws.shutdown()
        raise AssertionError(f"websocket-client: no close after {MAX_FRAMES} frames: {frames}")


class NodeClient(WebSocketClient):
    """Node's WebSocket (undici, the browser API) in one `node` process per plan."""

    label = "Node"

    def missing(self) -> str | None:
        if NODE is None or node_version() < (20, 10):
            return "Node.js 20.10+ (the WebSocket API) is not installed"
        return None

    async def observe(self, plan: SocketPlan) -> list[Observation]:
        assert NODE is not None
        node = await asyncio.create_subprocess_exec(
            NODE,
            "--experimental-websocket",
            "--no-warnings",
            str(NODE_RUNNER),
            plan.as_json(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(node.communicate(), TIMEOUT * 3)
        assert node.returncode == 0, stderr.decode()
        return _observations_from_js(json.loads(stdout))


def _observations_from_js(reports: list[dict[str, Any]]) -> list[Observation]:
    return [Observation(tuple(r["frames"]), r["code"], r["reason"], r["wasClean"]) for r in reports]


class ChromiumClient(WebSocketClient):
    """A Chromium page (Playwright driving /usr/bin/chromium) whose script opens the sockets.

    The browser starts on first use and serves every plan of the module, a fresh page each.
    """

    label = "Chromium"

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._browser: Any = None

    def missing(self) -> str | None:
        if os.environ.get(SKIP_BROWSER_VARIABLE) == "1":
            return f"{SKIP_BROWSER_VARIABLE}=1: the browser runs on one Python only (see .ci/run)"
        if not CHROMIUM.exists():
            return f"{CHROMIUM} is not installed (apt-get install chromium)"
        if importlib.util.find_spec("playwright") is None:
            return "playwright is not installed (pip install -e '.[test]')"
        return None

    async def _browser_started(self) -> Any:
        if self._browser is None:
            from playwright.async_api import async_playwright

            playwright = await self._stack.enter_async_context(async_playwright())
            self._browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        return self._browser

    async def observe(self, plan: SocketPlan) -> list[Observation]:
        browser = await self._browser_started()
        page = await browser.new_page()
        try:
            await page.set_content(f"<script type=module>{BROWSER_SOCKETS_SCRIPT.read_text()}</script>")
            reports = await page.evaluate("plan => observeSockets(JSON.parse(plan))", plan.as_json())
        finally:
            await page.close()
        return _observations_from_js(reports)

    async def close(self) -> None:
        await self._stack.aclose()


# --- paths -------------------------------------------------------------------------

PATHS = ("direct", "record", "replay", "replay-direct")


class Recordings:
    """One cassette per scenario, recorded on first use with `websockets` through `wsreplay record`:
    `SOCKETS` connections, so that each replay (a process of its own) can serve every socket of a plan."""

    def __init__(self, upstream: ScriptedUpstream, directory: Path) -> None:
        self._upstream = upstream
        self._directory = directory
        self._cassettes: dict[str, Path] = {}
        self._lock = asyncio.Lock()

    async def cassette(self, scenario: Scenario) -> Path:
        async with self._lock:
            if scenario.name not in self._cassettes:
                cassette = self._directory / f"{scenario.name}.cassette"
                async with wsreplay("record", "--upstream", self._upstream.http_url, "-o", str(cassette)) as ws_base:
                    observations = await WebsocketsClient().observe(scenario.plan(ws_base))
                assert observations == [scenario.expected] * SOCKETS, "the recording itself went wrong"
                self._cassettes[scenario.name] = cassette
            return self._cassettes[scenario.name]


@contextlib.asynccontextmanager
async def wsreplay(*args: str) -> AsyncIterator[str]:
    """`wsreplay ARGS` on an ephemeral loopback port, stopped with Ctrl-C afterwards; yields its ws:// base."""
    process = RunningWsreplay(*args, "--listen", "127.0.0.1:0")
    try:
        port = await asyncio.to_thread(process.wait_listening)
        yield f"ws://127.0.0.1:{port}"
    except BaseException:
        await asyncio.to_thread(process.kill)
        raise
    status = await asyncio.to_thread(process.stop)
    assert status == 0, process.output


@contextlib.asynccontextmanager
async def reach(
    path: str, scenario: Scenario, upstream: ScriptedUpstream, recordings: Recordings, scratch: Path
) -> AsyncIterator[str]:
    """The ws:// base a client uses to reach the upstream along `path`."""
    if path == "direct":
        yield upstream.ws_url
        return
    if path == "record":
        args = ["record", "--upstream", upstream.http_url, "-o", str(scratch / "record.cassette")]
    else:
        args = ["replay", str(await recordings.cassette(scenario)), *(["--direct"] if path == "replay-direct" else [])]
    async with wsreplay(*args) as ws_base:
        yield ws_base


CLIENT_KINDS: dict[str, Callable[[], WebSocketClient]] = {
    "node": NodeClient,
    "chromium": ChromiumClient,
    "websockets": WebsocketsClient,
    "aiohttp": AiohttpClient,
    "websocket-client": WebsocketClientClient,
}
