"""The replay server: an aiohttp server that drives a :class:`~wsreplay.replay.ReplaySession`.

Clients reach it two ways:

* directly: it answers HTTP requests (any method, with bodies) and WebSocket upgrades
  itself, from the session;
* behind mitmproxy: the replay addon has already matched the upgrade, registered the
  :class:`~wsreplay.replay.Accepted` answer here (:meth:`ReplayServer.register`) and tagged
  the forwarded request with ``X-Wsreplay-Connection: <token>``; the server plays that
  connection.

Each WebSocket gets one task that performs the player's actions in order (wait, then
send) while the handler receives the client's frames and feeds them to the player.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from websockets import frames

from wsreplay.cassette import MAX_RECORD_BYTES
from wsreplay.masking import ClientMasking
from wsreplay.records import HttpRequest, HttpResponse
from wsreplay.replay import (
    Abort,
    Accepted,
    Action,
    Answer,
    Close,
    ConnectionPlayer,
    Log,
    ReplaySession,
    Send,
    Unmatched,
)

__all__ = ["CONNECTION_HEADER", "ReplayServer"]

log = logging.getLogger("wsreplay.replay")

CONNECTION_HEADER: Final = "X-Wsreplay-Connection"
"""Names the registered connection a request forwarded by the replay addon is to play."""
CLOSE_TIMEOUT: Final = 5.0
"""Seconds a close handshake may take before the connection is cut."""
IDLE_TIMEOUT: Final = 60.0
"""Seconds a connection may go without a whole request (a new one, or between keep-alive
requests) before it is closed; WebSocket connections are not affected."""
MAX_BODY_BYTES: Final = 64 * 1024 * 1024
GOING_AWAY: Final = 1001
CLOSING_REASON: Final = b"replay server closing"
NO_STATUS: Final = 1005
NORMAL: Final = 1000
_NOT_FORWARDED: Final = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"})
_ADDED_BY_AIOHTTP: Final = ("Date", "Server", "Content-Type")
_OPCODES: Final = {True: WSMsgType.TEXT, False: WSMsgType.BINARY}
_UNMASKED_FRAME_CLOSE: Final = frames.Frame(
    frames.Opcode.CLOSE, frames.Close(frames.CloseCode.PROTOCOL_ERROR, "client frames must be masked").serialize()
).serialize(mask=False)


@dataclass(eq=False)
class _Connection:
    """One live WebSocket being replayed."""

    ws: web.WebSocketResponse
    request: web.BaseRequest
    player: ConnectionPlayer
    outbox: asyncio.Queue[tuple[Sequence[Action], float]] = field(default_factory=asyncio.Queue)
    performer: asyncio.Task[None] | None = None
    ending: bool = False
    """Set once the server closes or drops the connection itself."""
    failed_with: int | None = None
    """The close code the server failed the connection with, for a protocol error aiohttp does not see."""


class ReplayServer:
    """Serves a replay session on `host`:`port` (port 0: any free port).

    Without a session it plays only connections registered by the replay addon.
    """

    def __init__(
        self, session: ReplaySession | None, host: str = "127.0.0.1", port: int = 0, idle_timeout: float = IDLE_TIMEOUT
    ) -> None:
        self.session = session
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        self._runner: web.AppRunner | None = None
        self._registered: dict[str, Accepted] = {}
        self._connections: set[_Connection] = set()

    async def start(self) -> tuple[str, int]:
        """Start listening; return the (host, port) bound."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_response_prepare.append(_keep_recorded_headers)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=CLOSE_TIMEOUT,
            keepalive_timeout=self.idle_timeout,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.host, self.port = self._runner.addresses[0][:2]
        return self.host, self.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def register(self, accepted: Accepted) -> str:
        """Keep an accepted upgrade for a forwarded request; return the token to tag it with."""
        token = secrets.token_urlsafe(16)
        self._registered[token] = accepted
        return token

    async def close(self) -> None:
        """Close live connections (1001), then stop listening. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await asyncio.gather(*(self._end(connection) for connection in list(self._connections)))
        self._registered.clear()
        await runner.cleanup()

    async def _end(self, connection: _Connection) -> None:
        connection.ending = True
        if connection.performer is not None:
            connection.performer.cancel()
        try:
            await asyncio.wait_for(connection.ws.close(code=GOING_AWAY, message=CLOSING_REASON), CLOSE_TIMEOUT)
        except (TimeoutError, ConnectionError):
            _drop(connection)

    # requests

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get(CONNECTION_HEADER)
        if token is not None:
            accepted = self._registered.pop(token, None)
            if accepted is None:
                return _text_response(404, f"wsreplay: no registered connection {token!r}")
            return await self._play(request, accepted)
        if self.session is None:
            return _text_response(404, "wsreplay: this server plays only connections registered by the replay addon")
        live = await _live_request(request)
        if not live.is_websocket_upgrade:
            return await _answer(self.session.answer_http(live))
        answer = self.session.open_websocket(live)
        if isinstance(answer, Accepted):
            if answer.delay:
                await asyncio.sleep(answer.delay)
            return await self._play(request, answer)
        return await _answer(answer)

    # WebSockets

    async def _play(self, request: web.Request, accepted: Accepted) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            protocols=(accepted.subprotocol,) if accepted.subprotocol else (),
            compress=accepted.deflate,
            max_msg_size=MAX_RECORD_BYTES,
            timeout=CLOSE_TIMEOUT,
            autoclose=False,
        )
        connection = _Connection(ws, request, accepted.player)
        if request.transport is not None and ws.can_prepare(request).ok:
            request.transport.set_protocol(_MaskedFramesOnly(request.transport, connection))
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        self._connections.add(connection)
        performer = connection.performer = asyncio.create_task(_perform(connection))
        try:
            _dispatch(connection, accepted.player.start(), loop.time())
            await self._receive(connection, loop)
            if connection.ending:
                _, pending = await asyncio.wait([performer], timeout=CLOSE_TIMEOUT)
                if pending:
                    _drop(connection)
        finally:
            performer.cancel()
            self._connections.discard(connection)
            await asyncio.wait([performer])
        return ws

    async def _receive(self, connection: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        """Feed client messages to the player until the connection closes."""
        ws, player = connection.ws, connection.player
        while True:
            message = await ws.receive()
            if message.type is WSMsgType.TEXT:
                _dispatch(connection, player.client_frame(True, message.data), loop.time())
            elif message.type is WSMsgType.BINARY:
                _dispatch(connection, player.client_frame(False, message.data), loop.time())
            elif message.type is WSMsgType.CLOSE:
                reason = message.extra or ""
                _dispatch(connection, player.client_closed(message.data, reason), loop.time())
                await _echo_close(ws, message.data, reason)
                return
            else:
                if not connection.ending:
                    _dispatch(connection, player.client_closed(connection.failed_with or ws.close_code), loop.time())
                return


class _MaskedFramesOnly(asyncio.Protocol):
    """Stands between an accepted WebSocket's transport and aiohttp's protocol, which does
    not check masking: passes the client's bytes on while every frame is masked, and fails
    the connection with 1002 at the first unmasked one (RFC 6455 5.1)."""

    def __init__(self, transport: asyncio.BaseTransport, connection: _Connection) -> None:
        self._transport = transport
        self._inner = transport.get_protocol()
        self._connection = connection
        self._masking = ClientMasking()
        self._failed = False

    def data_received(self, data: bytes) -> None:
        if self._failed:
            return
        unmasked_at = self._masking.feed(data)
        if unmasked_at is None:
            self._inner.data_received(data)  # type: ignore[attr-defined]
            return
        if unmasked_at:
            self._inner.data_received(data[:unmasked_at])  # type: ignore[attr-defined]
        self._failed = True
        self._connection.failed_with = frames.CloseCode.PROTOCOL_ERROR
        log.warning("%s: the client sent an unmasked frame; closed with 1002", self._connection.request.path)
        assert isinstance(self._transport, asyncio.WriteTransport)
        self._transport.write(_UNMASKED_FRAME_CLOSE)
        self._transport.close()

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def _dispatch(connection: _Connection, actions: Sequence[Action], received: float) -> None:
    """Log now; queue the rest for the connection's performer (stamped with when they were triggered)."""
    if not actions:
        return
    for action in actions:
        if type(action) is Log:
            log.log(action.level, action.text)
    connection.outbox.put_nowait((actions, received))


async def _perform(connection: _Connection) -> None:
    """Perform queued actions in order, each `delay` after the later of the previous action
    and the client frame that triggered it (a late wake-up delays what follows, so no gap shrinks)."""
    loop = asyncio.get_running_loop()
    ws = connection.ws
    previous = loop.time()
    try:
        while True:
            actions, received = await connection.outbox.get()
            previous = max(previous, received)
            for action in actions:
                kind = type(action)
                if kind is Log:
                    continue
                if action.delay:
                    if (wait := previous + action.delay - loop.time()) > 0:
                        await asyncio.sleep(wait)
                    previous = loop.time()
                if kind is Send:
                    await ws.send_frame(action.payload, _OPCODES[action.is_text])
                elif kind is Close:
                    connection.ending = True
                    code = NORMAL if action.code == NO_STATUS else action.code
                    await ws.close(code=code, message=action.reason.encode())
                    return
                elif kind is Abort:
                    connection.ending = True
                    _drop(connection)
                    return
    except ConnectionError:
        return


async def _echo_close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    """Answer a client's close with its own code and reason, as mitmproxy (and the `websockets`
    server) do, so that a client sees the same close replayed directly and through the proxy."""
    try:
        await ws.close(code=NORMAL if code == NO_STATUS else code, message=reason.encode(), drain=False)
    except ConnectionError:
        return


def _drop(connection: _Connection) -> None:
    """Cut the TCP connection without a close frame (what the client sees as 1006)."""
    transport = connection.request.transport
    if transport is not None:
        transport.close()


# HTTP


async def _live_request(request: web.Request) -> HttpRequest:
    path, _, query = request.raw_path.partition("?")
    return HttpRequest(
        method=request.method,
        scheme=request.scheme,
        host=request.url.host or "",
        port=request.url.port or 0,
        path=path,
        query=query,
        http_version=f"HTTP/{request.version.major}.{request.version.minor}",
        headers=tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in request.raw_headers),
        body=await request.read() if request.body_exists else b"",
    )


async def _answer(answer: Answer) -> web.Response:
    if isinstance(answer, Unmatched):
        log.warning("%s", answer.message)
    if answer.delay:
        await asyncio.sleep(answer.delay)
    return _RecordedResponse(answer.response)


class _RecordedResponse(web.Response):
    """An aiohttp response with exactly the recorded status, reason, headers and body."""

    def __init__(self, response: HttpResponse) -> None:
        headers = CIMultiDict((name, value) for name, value in response.headers if name.lower() not in _NOT_FORWARDED)
        super().__init__(status=response.status, reason=response.reason or None, headers=headers, body=response.body)
        self.recorded_headers = frozenset(name.lower() for name, _ in response.headers)


def _text_response(status: int, text: str) -> web.Response:
    return _RecordedResponse(
        HttpResponse(status, headers=(("Content-Type", "text/plain; charset=utf-8"),), body=text.encode())
    )


async def _keep_recorded_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Remove the headers aiohttp adds by itself (Date...) when the recording lacks them."""
    if not isinstance(response, _RecordedResponse):
        return
    for name in _ADDED_BY_AIOHTTP:
        if name.lower() not in response.recorded_headers:
            response.headers.popall(name, None)
