"""The replay server: an aiohttp server that drives a :class:`~wsreplay.replay.ReplaySession`.

Clients reach it two ways:

* directly: it answers HTTP requests (any method, with bodies) and WebSocket upgrades
  itself, from the session;
* behind mitmproxy: the replay addon has already matched the upgrade, registered the
  :class:`~wsreplay.replay.Accepted` answer here (:meth:`ReplayServer.register`) and tagged
  the forwarded request with ``X-Wsreplay-Connection: <token>``; the server plays that
  connection.

aiohttp parses the HTTP requests and writes the 101 (negotiated by websockets' handshake);
from then on the WebSocket is wsproto's Sans-I/O connection over the raw connection
(:class:`_WebSocket`), the implementation mitmproxy speaks to clients, which feeds the
client's messages to the player as they arrive, while one task per connection performs
the player's actions in order (wait, then send). Only the unmasking of the client's frames is
not wsproto's own: websockets' C `apply_mask` does it, for this server's connections alone.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict
from websockets.datastructures import Headers
from websockets.exceptions import ProtocolError
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import Close as CloseFrame
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Message, Ping, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, XorMaskerSimple
from wsproto.utilities import split_comma_header

from wsreplay.cassette import MAX_RECORD_BYTES
from wsreplay.records import HttpRequest, HttpResponse, is_utf8
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

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

__all__ = ["CONNECTION_HEADER", "ReplayServer"]

log = logging.getLogger("wsreplay.replay")
_PROTOCOL_LOG: Final = logging.getLogger("wsreplay.replay.websocket")
"""websockets' own log of each handshake: warnings and errors only."""
_PROTOCOL_LOG.setLevel(logging.WARNING)

CONNECTION_HEADER: Final = "X-Wsreplay-Connection"
"""Names the registered connection a request forwarded by the replay addon is to play."""
CLOSE_TIMEOUT: Final = 5.0
"""Seconds a closing handshake may take before the connection is cut (RFC 6455 7.1.1)."""
SHUTDOWN_CLOSE_TIMEOUT: Final = 1.0
"""Seconds a client gets to answer the 1001 of a stopping server."""
IDLE_TIMEOUT: Final = 60.0
"""Seconds a connection may go without a whole request (a new one, or between keep-alive
requests) before it is closed; WebSocket connections are not affected."""
MAX_BODY_BYTES: Final = 64 * 1024 * 1024
GOING_AWAY: Final = 1001
CLOSING_REASON: Final = "replay server closing"
NO_STATUS: Final = 1005
NORMAL: Final = 1000
_NOT_FORWARDED: Final = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"})
_ADDED_BY_AIOHTTP: Final = ("Date", "Server", "Content-Type")
_JOINED_FRAME_BYTES: Final = 64 * 1024
"""A frame up to this size goes out as one write (one TCP segment for a small message); a
bigger one as its header, then its payload uncopied."""
_CONTROL_FRAMES: Final = FrameProtocol(client=False, extensions=[])
"""Frames the server's pongs: wsproto sends nothing once it has sent its own close, but a ping
is answered until the client's close arrives (RFC 6455 5.5.2)."""


@dataclass(eq=False)
class _Connection:
    """One live WebSocket being replayed."""

    player: ConnectionPlayer
    socket: _WebSocket = field(init=False)
    outbox: asyncio.Queue[tuple[Sequence[Action], float]] = field(default_factory=asyncio.Queue)
    performer: asyncio.Task[None] | None = None
    performer_idle: bool = False
    """The performer waits for actions; zero-delay sends may then be written at once (see `_dispatch`)."""
    ending: bool = False
    """Set once the server closes or drops the connection itself."""

    def client_message(self, is_text: bool, payload: bytes) -> None:
        _dispatch(self, self.player.client_frame(is_text, payload), asyncio.get_running_loop().time())

    def client_ended(self, code: int, reason: str) -> None:
        """The client closed (`code`), broke the protocol (`code`: the server's answer) or went away (1006)."""
        if not self.ending:
            _dispatch(self, self.player.client_closed(code, reason), asyncio.get_running_loop().time())


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
        connection.socket.close(GOING_AWAY, CLOSING_REASON, SHUTDOWN_CLOSE_TIMEOUT)
        await connection.socket.wait_closed()

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

    async def _play(self, request: web.Request, accepted: Accepted) -> web.StreamResponse:
        """Answer the upgrade (negotiated by websockets' handshake, written by aiohttp), then drive
        the WebSocket with wsproto over the raw connection until it is closed."""
        handshake = ServerProtocol(
            extensions=enable_server_permessage_deflate(None) if accepted.deflate else None,
            select_subprotocol=lambda _protocol, _offered: (
                Subprotocol(accepted.subprotocol) if accepted.subprotocol else None
            ),
            logger=_PROTOCOL_LOG,
        )
        answer = handshake.accept(_handshake_request(request))
        if answer.status_code != 101:
            headers = tuple(answer.headers.raw_items())
            return _RecordedResponse(
                HttpResponse(answer.status_code, answer.reason_phrase, headers=headers, body=bytes(answer.body))
            )
        switching = web.StreamResponse(
            status=101, reason=answer.reason_phrase, headers=CIMultiDict(answer.headers.raw_items())
        )
        switching.force_close()
        await switching.prepare(request)
        if isinstance(request.transport, asyncio.Transport):
            extensions = _extensions(answer.headers.get("Sec-WebSocket-Extensions", ""))
            await self._converse(request, request.transport, extensions, accepted.player)
        return switching

    async def _converse(
        self,
        request: web.Request,
        transport: asyncio.Transport,
        extensions: list[Extension],
        player: ConnectionPlayer,
    ) -> None:
        """Play the recorded conversation on the open WebSocket until the connection is closed."""
        connection = _Connection(player)
        socket = connection.socket = _WebSocket(
            transport, request.protocol, extensions, request.path, connection.client_message, connection.client_ended
        )
        _dispatch(connection, player.start(), asyncio.get_running_loop().time())
        self._connections.add(connection)
        performer = connection.performer = asyncio.create_task(_perform(connection))
        socket.take_over()
        try:
            await socket.wait_closed()
        finally:
            performer.cancel()
            self._connections.discard(connection)
            await asyncio.wait([performer])


class _WebSocket(asyncio.Protocol):
    """The server's side of an accepted WebSocket once the 101 is written: wsproto's connection
    over the connection's transport, taken over from aiohttp, as mitmproxy speaks to clients.

    wsproto fails the connection as mitmproxy does: 1002 for an unmasked or malformed frame or
    an invalid close code, 1007 at the first invalid UTF-8 byte of a text message (even before
    its frame is complete) or close reason; this class adds 1009 once a message passes 64 MiB.
    A failed connection gets its close frame and its TCP connection ends at once, the client's
    answer unread (RFC 6455 7.1.7). Pings are answered until the client's close arrives, and
    the client's close is echoed. A close the server sends gives the client a few seconds to
    answer it, after which the connection is cut.
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        http: RequestHandler,
        extensions: list[Extension],
        name: str,
        on_message: Callable[[bool, bytes], None],
        on_end: Callable[[int, str], None],
    ) -> None:
        self._transport = transport
        self._http = http
        self._connection = Connection(ConnectionType.SERVER, extensions)
        _unmask_in_c(self._connection)
        self._plain_frames = not extensions
        """Without extensions a message's frame is its header and the payload as it is (a big one written uncopied)."""
        self._name = name
        self._on_message = on_message
        self._on_end = on_end
        self._loop = asyncio.get_running_loop()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._lingering = False
        """Our side of the TCP connection is ended: what the client still sends is read and dropped."""
        self._writable: asyncio.Future[None] | None = None
        self._cutter: asyncio.TimerHandle | None = None
        self._message: list[str | bytes] = []
        self._message_bytes = 0
        self._end_reported = False

    def take_over(self) -> None:
        """Receive the connection's bytes from now on, starting with those aiohttp read past the upgrade request."""
        self._transport.set_protocol(self)
        # aiohttp hands the bytes it buffered to any parser with feed_data (it expects its WebSocketReader)
        self._http.set_parser(self)  # type: ignore[arg-type]

    @property
    def open(self) -> bool:
        return (
            self._connection.state is ConnectionState.OPEN and not self._lingering and not self._transport.is_closing()
        )

    @property
    def writable(self) -> bool:
        """Open, and the client reads fast enough for more to be written now."""
        return self._writable is None and self.open

    async def send(self, is_text: bool, payload: bytes) -> None:
        """Send one message (nothing once closing) once the client reads again, then wait while it reads too slowly."""
        if self._writable is not None:
            await self._writable
        if not self.open:
            return
        self.write_message(is_text, payload)
        if self._writable is not None:
            await self._writable

    def write_message(self, is_text: bool, payload: bytes) -> None:
        """Write one message now."""
        if is_text and not payload.isascii() and not is_utf8(payload):
            payload = payload.decode(errors="replace").encode()  # as mitmproxy relays it
        if self._plain_frames:
            header = _frame_header(is_text, len(payload))
            if len(payload) <= _JOINED_FRAME_BYTES:
                self._transport.write(header + payload)
            else:
                self._transport.write(header)
                self._transport.write(payload)
        else:
            message = TextMessage(payload.decode()) if is_text else BytesMessage(payload)
            self._transport.write(self._connection.send(message))

    def close(self, code: int, reason: str, timeout: float = CLOSE_TIMEOUT) -> None:
        """Send a close frame; the client has `timeout` seconds to answer it and end the connection."""
        if self.open:
            try:
                CloseFrame(code, reason).check()
            except ProtocolError:
                log.warning("%s: close %d %r cannot be sent; closing with 1011", self._name, code, reason)
                code, reason = CloseReason.INTERNAL_ERROR, ""
            self._transport.write(self._connection.send(CloseConnection(code, reason)))
        self._cut_within(timeout)

    def drop(self) -> None:
        """End the TCP connection without a close frame (the client sees 1006), once what was sent is out."""
        self._end_tcp()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._lost)

    # the transport's callbacks

    def data_received(self, data: bytes) -> None:
        if self._lingering or self._transport.is_closing():
            return
        self._connection.receive_data(data)
        for event in self._connection.events():
            self._receive(event)
            if self._lingering or self._transport.is_closing():
                return

    def eof_received(self) -> None:
        """The client ended its side without a close frame: the transport closes."""
        self._report_end(CloseReason.ABNORMAL_CLOSURE, "")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._cutter is not None:
            self._cutter.cancel()
        self._report_end(CloseReason.ABNORMAL_CLOSURE, "")
        self.resume_writing()
        self._lost.set_result(None)
        self._http.connection_lost(exc)

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None:
            writable.set_result(None)

    # aiohttp's payload parser interface, for the bytes it read before the take-over

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data_received(data)
        return False, b""

    def feed_eof(self) -> None:
        """aiohttp lets go of the connection; connection_lost has done the work."""

    # internals

    def _receive(self, event: Event) -> None:
        """Act on one wsproto event: collect messages, answer pings, end on a close or a failure."""
        state = self._connection.state
        if isinstance(event, Message):
            if state is ConnectionState.OPEN:
                self._add(event)
        elif isinstance(event, Ping):
            self._transport.write(_CONTROL_FRAMES.pong(event.payload))
        elif isinstance(event, CloseConnection):
            if state is ConnectionState.OPEN:
                self._fail(event.code, event.reason or "")
                return
            if state is ConnectionState.REMOTE_CLOSING:
                self._transport.write(self._connection.send(CloseConnection(event.code, event.reason)))
            self._report_end(event.code, event.reason or "")
            self._end_tcp()

    def _add(self, part: Message) -> None:
        """Collect a message as it arrives, frame by frame and chunk by chunk; 1009 once it passes 64 MiB."""
        data = part.data
        self._message_bytes += len(data) if not isinstance(data, str) or data.isascii() else len(data.encode())
        if self._message_bytes > MAX_RECORD_BYTES:
            self._fail(CloseReason.MESSAGE_TOO_BIG, f"message over {MAX_RECORD_BYTES} bytes")
            return
        self._message.append(data)
        if part.message_finished:
            parts, self._message, self._message_bytes = self._message, [], 0
            if isinstance(part, TextMessage):
                self._on_message(True, "".join(parts).encode())  # type: ignore[arg-type]
            else:
                self._on_message(False, b"".join(parts))  # type: ignore[arg-type]

    def _fail(self, code: int, reason: str) -> None:
        """The client broke the protocol: send the close and end the TCP connection at once (RFC 6455 7.1.7)."""
        log.warning("%s: the client broke the protocol (%s); closed with %d", self._name, reason, code)
        self._transport.write(self._connection.send(CloseConnection(code, reason)))
        self._report_end(code, reason)
        self._end_tcp()

    def _end_tcp(self) -> None:
        """End the TCP connection once what was sent is out: send FIN, then read on (discarding)
        until the client ends its side too, so that what it still sends cannot make the kernel
        reset the connection before the client has read the end of ours (a lingering close);
        cut it if that takes too long."""
        self._lingering = True
        if self._transport.can_write_eof():
            self._transport.write_eof()
        else:
            self._transport.close()
        self._cut_within(CLOSE_TIMEOUT)

    def _cut_within(self, timeout: float) -> None:
        """Abort the TCP connection in `timeout` seconds (or sooner, if already planned) unless it ends first."""
        if self._lost.done():
            return
        deadline = self._loop.time() + timeout
        if self._cutter is not None:
            if self._cutter.when() <= deadline:
                return
            self._cutter.cancel()
        self._cutter = self._loop.call_at(deadline, self._transport.abort)

    def _report_end(self, code: int, reason: str) -> None:
        """Tell `on_end`, once, that the client closed, broke the protocol or went away."""
        if not self._end_reported:
            self._end_reported = True
            self._on_end(int(code), reason)


class _Unmasker:
    """Unmasks a client frame's payload, chunk by chunk, with websockets' C `apply_mask`
    (what wsproto's pure-Python XorMaskerSimple does, some ten times faster)."""

    def __init__(self, masking_key: bytes) -> None:
        self._masking_key = bytes(masking_key)

    def process(self, data: bytes) -> bytes:
        if not data:
            return data
        unmasked = apply_mask(data, self._masking_key)
        rotation = len(data) % 4
        if rotation:
            self._masking_key = self._masking_key[rotation:] + self._masking_key[:rotation]
        return unmasked


class _UnmaskingFrameDecoder(FrameDecoder):
    """wsproto's frame decoder, its checks untouched, with :class:`_Unmasker` for masked frames."""

    def parse_header(self) -> bool:
        if not super().parse_header():
            return False
        if type(self.masker) is XorMaskerSimple:
            self.masker = _Unmasker(self.masker._masking_key)  # type: ignore[assignment]
        return True


def _unmask_in_c(connection: Connection) -> None:
    """Give this connection (only: mitmproxy's, in the same process, keep wsproto's) the C unmasker."""
    protocol = connection._proto
    protocol._frame_decoder = _UnmaskingFrameDecoder(client=False, extensions=protocol._frame_decoder.extensions)


def _frame_header(is_text: bool, size: int) -> bytes:
    """The header of a server's whole, unmasked text or binary frame of `size` bytes (RFC 6455 5.2)."""
    first = 0x81 if is_text else 0x82
    if size < 126:
        return bytes((first, size))
    if size < 1 << 16:
        return struct.pack("!BBH", first, 126, size)
    return struct.pack("!BBQ", first, 127, size)


def _extensions(header: str) -> list[Extension]:
    """wsproto's extensions for the 101's `Sec-WebSocket-Extensions`, built as mitmproxy builds them."""
    extensions: list[Extension] = []
    for offer in split_comma_header(header.encode("ascii", "replace")):
        if offer.split(";", 1)[0].strip() == PerMessageDeflate.name:
            deflate = PerMessageDeflate()
            deflate.finalize(offer)
            extensions.append(deflate)
    return extensions


def _handshake_request(request: web.BaseRequest) -> Request:
    """The upgrade request as websockets' handshake reads it."""
    headers = Headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in request.raw_headers)
    return Request(request.raw_path, headers)


def _dispatch(connection: _Connection, actions: Sequence[Action], received: float) -> None:
    """Log now; write the leading zero-delay sends now if the performer is idle and the client reads
    (what the performer would do, a turn of the event loop later); queue the rest for the
    performer (stamped with when they were triggered)."""
    if not actions:
        return
    for action in actions:
        if type(action) is Log:
            log.log(action.level, action.text)
    if connection.performer_idle and connection.outbox.empty():
        actions = _write_leading_sends(connection.socket, actions)
    if actions:
        connection.outbox.put_nowait((actions, received))


def _write_leading_sends(socket: _WebSocket, actions: Sequence[Action]) -> Sequence[Action]:
    """Write the zero-delay sends (and logs) that lead `actions` while the client reads; return the rest."""
    for index, action in enumerate(actions):
        if type(action) is Send and not action.delay and socket.writable:
            socket.write_message(action.is_text, action.payload)
        elif type(action) is not Log:
            return actions[index:]
    return ()


async def _perform(connection: _Connection) -> None:
    """Perform queued actions in order, each `delay` after the later of the previous action
    and the client frame that triggered it (a late wake-up delays what follows, so no gap shrinks)."""
    loop = asyncio.get_running_loop()
    socket = connection.socket
    previous = loop.time()
    while True:
        connection.performer_idle = True
        try:
            actions, received = await connection.outbox.get()
        finally:
            connection.performer_idle = False
        previous = max(previous, received)
        for action in actions:
            if isinstance(action, Log):
                continue
            if action.delay:
                if (wait := previous + action.delay - loop.time()) > 0:
                    await asyncio.sleep(wait)
                previous = loop.time()
            if not socket.open:
                return
            if isinstance(action, Send):
                await socket.send(action.is_text, action.payload)
            elif isinstance(action, Close):
                connection.ending = True
                socket.close(NORMAL if action.code == NO_STATUS else action.code, action.reason)
                return
            elif isinstance(action, Abort):
                connection.ending = True
                socket.drop()
                return


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
