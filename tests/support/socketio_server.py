"""A real Socket.IO server (python-socketio on aiohttp) for long-polling tests.

Engine.IO clients open a session with HTTP long-polling (``GET /socket.io/?EIO=4&transport=polling&t=...``),
every request carrying a fresh cache-busting ``t``, and then upgrade to a WebSocket. The server
answers a ``chat`` event with a few ``reply`` events carrying the request's data, then acks it.
It remembers each Engine.IO request it served so that a test can see what reached it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp import web

__all__ = ["SocketIoServer", "SeenRequest"]


@dataclass(frozen=True)
class SeenRequest:
    method: str
    transport: str
    query: dict[str, str]
    upgrade: bool


@dataclass
class SocketIoServer:
    """``async with SocketIoServer() as server:`` serves Socket.IO on 127.0.0.1:<ephemeral>."""

    replies: int = 3
    """How many ``reply`` events answer each ``chat``."""
    requests: list[SeenRequest] = field(default_factory=list)
    chats: list[Any] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _port: int | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("SocketIoServer is not started")
        return f"http://127.0.0.1:{self._port}"

    def _build(self) -> web.Application:
        sio = socketio.AsyncServer(async_mode="aiohttp")

        @sio.event
        async def chat(sid: str, data: dict[str, Any]) -> dict[str, Any]:
            self.chats.append(data)
            for part in range(1, self.replies + 1):
                await sio.emit("reply", {"to": data["text"], "part": part, "of": self.replies}, to=sid)
            return {"ok": True, "echo": data["text"], "length": len(data["text"]), "room": data.get("room")}

        @sio.event
        async def bye(sid: str, text: str) -> None:
            await sio.emit("goodbye", text.upper(), to=sid)
            await sio.disconnect(sid)

        app = web.Application(middlewares=[self._remember])
        sio.attach(app)
        return app

    @web.middleware
    async def _remember(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(
            SeenRequest(
                request.method,
                request.query.get("transport", ""),
                dict(request.query),
                request.headers.get("Upgrade", "").lower() == "websocket",
            )
        )
        return await handler(request)

    async def __aenter__(self) -> SocketIoServer:
        self._runner = web.AppRunner(self._build(), handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
