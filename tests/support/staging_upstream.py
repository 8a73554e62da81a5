"""A scripted upstream server for tests: "a server that is not the sample".

Independent of wsreplay.sample_server`. A test registers canned HTTP responses and
scripted WebSocket endpoints, points a client (or wsreplay) at it, and afterwards
asserts on what actually reached it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

__all__ = [
    "Frame",
    "Pause",
    "RecordedConnection",
    "RecordedRequest",
    "ScriptedUpstream",
    "WsScript",
    "require_header",
]


@dataclass(frozen=True)
class Pause:
    """In a sequence of frames: wait `seconds` before the next (a server that thinks)."""

    seconds: float


Frame = str | bytes | dict[str, Any] | list[Any] | Pause
"""str is sent as a text frame, bytes as a binary frame, dict/list as JSON text; a Pause waits."""


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordedConnection:
    """One WebSocket upgrade attempt and the client messages it carried."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    subprotocol: str | None = None
    refused_with: int | None = None
    messages: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None
    """How the connection ended, as the server's WebSocket saw it (1006: lost without a close frame)."""
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class WsScript:
    """What a scripted WebSocket endpoint does.

    `reply` maps each client message (str or bytes) to the frames sent back.
    `refuse` may return an HTTP status to refuse the upgrade with (no 101).
    After `close_after` client messages the server closes with `close_code`/`close_reason`;
    after `drop_after` client messages it aborts the TCP connection (0 = right after `on_open`).
    `select_subprotocol` picks one of the offered subprotocols to echo back.
    `accept_delay` is how long the server thinks before accepting or refusing the upgrade.
    """

    on_open: tuple[Frame, ...] = ()
    reply: Callable[[str | bytes], Iterable[Frame]] | None = None
    refuse: Callable[[web.Request], int | None] | None = None
    close_after: int | None = None
    close_code: int = 1000
    close_reason: str = ""
    drop_after: int | None = None
    select_subprotocol: Callable[[list[str]], str | None] | None = None
    accept_delay: float = 0.0


def require_header(name: str, status: int = 403) -> Callable[[web.Request], int | None]:
    """A `refuse` hook: refuse the upgrade with `status` unless header `name` is present."""
    return lambda request: None if name in request.headers else status


@dataclass(frozen=True)
class _CannedResponse:
    status: int
    body: bytes
    headers: Mapping[str, str]
    delay: float


async def _send(ws: web.WebSocketResponse, frame: Frame) -> None:
    if isinstance(frame, Pause):
        await asyncio.sleep(frame.seconds)
    elif isinstance(frame, bytes):
        await ws.send_bytes(frame)
    elif isinstance(frame, str):
        await ws.send_str(frame)
    else:
        await ws.send_str(json.dumps(frame))


class ScriptedUpstream:
    """An aiohttp server on 127.0.0.1:<ephemeral> driven by per-test scripts."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self._ssl_context = ssl_context
        self._host = host
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._routes: dict[tuple[str, str], _CannedResponse] = {}
        self._scripts: dict[str, WsScript] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self.requests: list[RecordedRequest] = []
        self.connections: list[RecordedConnection] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        status: int = 200,
        json_body: Any = None,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer `method path` with a canned response (JSON if `json_body` is given), `delay` seconds
        after the request."""
        response_headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body)
            response_headers.setdefault("Content-Type", "application/json")
        raw = body.encode() if isinstance(body, str) else body
        self._routes[(method.upper(), path)] = _CannedResponse(status, raw, response_headers, delay)

    def websocket(self, path: str, script: WsScript) -> None:
        self._scripts[path] = script

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ScriptedUpstream is not started")
        return self._port

    @property
    def http_url(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self._ssl_context else 'ws'}://{self._host}:{self.port}"

    async def start(self) -> ScriptedUpstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        app.on_shutdown.append(self._close_sockets)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, 0, ssl_context=self._ssl_context).start()
        self._port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ScriptedUpstream:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _close_sockets(self, app: web.Application) -> None:
        await asyncio.gather(*(ws.close(code=1001) for ws in list(self._sockets)), return_exceptions=True)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        script = self._scripts.get(request.path)
        if script is not None and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._serve_websocket(request, script)
        self.requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.query), dict(request.headers), await request.read()
            )
        )
        canned = self._routes.get((request.method, request.path))
        if canned is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        await asyncio.sleep(canned.delay)
        return web.Response(status=canned.status, body=canned.body, headers=canned.headers)

    async def _serve_websocket(self, request: web.Request, script: WsScript) -> web.StreamResponse:
        conn = RecordedConnection(request.path, dict(request.query), dict(request.headers))
        self.connections.append(conn)
        await asyncio.sleep(script.accept_delay)
        status = script.refuse(request) if script.refuse else None
        if status is not None:
            conn.refused_with = status
            conn.closed.set()
            return web.json_response({"detail": "upgrade refused"}, status=status)
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        chosen = script.select_subprotocol(offered) if script.select_subprotocol else None
        ws = web.WebSocketResponse(protocols=(chosen,) if chosen else (), timeout=5.0)
        await ws.prepare(request)
        conn.subprotocol = ws.ws_protocol
        self._sockets.add(ws)
        try:
            await self._run_script(request, ws, script, conn)
        except ConnectionError:
            pass
        finally:
            self._sockets.discard(ws)
            conn.close_code = ws.close_code
            conn.closed.set()
        return ws

    async def _run_script(
        self, request: web.Request, ws: web.WebSocketResponse, script: WsScript, conn: RecordedConnection
    ) -> None:
        for frame in script.on_open:
            await _send(ws, frame)
        if await self._ended(request, ws, script, 0):
            return
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            conn.messages.append(msg.data)
            for frame in script.reply(msg.data) if script.reply else ():
                await _send(ws, frame)
            if await self._ended(request, ws, script, len(conn.messages)):
                return

    @staticmethod
    async def _ended(request: web.Request, ws: web.WebSocketResponse, script: WsScript, count: int) -> bool:
        """Apply the drop/close rules after `count` client messages; True if the connection is over."""
        if script.drop_after == count:
            if request.transport is not None:
                request.transport.abort()
            return True
        if script.close_after == count:
            await ws.close(code=script.close_code, message=script.close_reason.encode())
            return True
        return False
