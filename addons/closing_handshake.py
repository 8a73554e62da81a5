"""mitmproxy addon: a WebSocket's TCP connections are closed after its closing handshake, not during it.

    mitmdump -s addons/closing_handshake.py -s addons/recorder.py ...

When one side of a WebSocket sends a close frame, mitmproxy answers it, relays it to the
other side, and closes both TCP connections at once, without waiting for the other
side's close frame (RFC 6455, 7.1.1 has each endpoint wait for its peer's). That close
frame then reaches a closed socket, or one it was not read from, and the kernel resets
the connection: a client that had received frames but not yet delivered them (Node's
and Chromium's WebSocket) drops them and reports 1006, not clean, instead of the
server's close.

With this addon each side's TCP connection is closed once that side has answered the
close frame, has closed its own end, or has had `wsreplay_close_timeout` seconds to do
so; the client's connection last, because mitmproxy ends all of a client's connections
as soon as the client's own one ends. A side that was sent no close frame (it lost its
connection, or `lost_connections` drops it) is closed at once, as before.

mitmproxy has no hook between relaying a close frame and closing the connections, so
the addon wraps ``WebsocketLayer.relay_messages`` (the one place that closes them) for
the whole process, once, on load.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Final

import wsproto.events
from mitmproxy.connection import Connection, ConnectionState
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.layers.websocket import WebsocketConnection, WebsocketLayer
from wsproto import ConnectionState as WebSocketState
from wsproto.frame_protocol import FrameProtocol

log = logging.getLogger("wsreplay.proxy")

CLOSE_TIMEOUT_OPTION: Final = "wsreplay_close_timeout"
DEFAULT_CLOSE_TIMEOUT: Final = 5

_Relay = Callable[[WebsocketLayer, events.Event], layer.CommandGenerator[None]]
_ORIGINAL_RELAY: Final[_Relay] = WebsocketLayer.relay_messages


class _ClosingHandshake:
    """The TCP closes a closing WebSocket still owes, made in order as each peer answers."""

    def __init__(self, websocket_layer: WebsocketLayer, closed_by: Connection | None) -> None:
        self.websockets: dict[Connection, WebsocketConnection] = {
            websocket_layer.server_ws.conn: websocket_layer.server_ws,
            websocket_layer.client_ws.conn: websocket_layer.client_ws,
        }
        self.closed_by = closed_by
        """The peer whose data ended the WebSocket: it sent its close frame, or broke the
        protocol (RFC 6455 7.1.7: a failed connection's further data, its close frame
        included, is not read). Either way it owes no answer."""
        self.pending: deque[Connection] = deque()
        self.timed_out = False

    def close(self, connection: Connection) -> layer.CommandGenerator[None]:
        """Close `connection` once it and every connection queued before it are done."""
        self.pending.append(connection)
        yield from self._close_done()

    def handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        """The layer's event handler once the close frames are relayed."""
        if isinstance(event, events.Wakeup):
            self.timed_out = True
        elif (
            isinstance(event, events.DataReceived)
            and event.connection in self.pending
            and event.connection is not self.closed_by
        ):
            yield from self._read_answer(event.connection, event.data)
        yield from self._close_done()

    def _read_answer(self, connection: Connection, data: bytes) -> layer.CommandGenerator[None]:
        """Read what the peer sends before its close frame: pings are answered, the rest is too late to relay.

        RFC 6455 5.5.2 has a ping answered until the peer's close frame arrives, but wsproto
        sends nothing once it has sent its own close, so the pong is framed here.
        """
        websocket = self.websockets[connection]
        if websocket.state is WebSocketState.LOCAL_CLOSING:
            websocket.receive_data(data)
            for event in websocket.events():
                if isinstance(event, wsproto.events.Ping):
                    pong = FrameProtocol(websocket.client, []).pong(event.payload)
                    yield commands.SendData(connection, pong)

    def _done(self, connection: Connection) -> bool:
        """True once the peer sent its close frame (or was sent none), closed its end, or ran out of time."""
        return (
            self.timed_out
            or connection is self.closed_by
            or self.websockets[connection].state is not WebSocketState.LOCAL_CLOSING
            or not connection.state & ConnectionState.CAN_READ
        )

    def _close_done(self) -> layer.CommandGenerator[None]:
        while self.pending and self._done(self.pending[0]):
            yield commands.CloseConnection(self.pending.popleft())


def _relay_closing_in_order(self: WebsocketLayer, event: events.Event) -> layer.CommandGenerator[None]:
    """`relay_messages`, with the TCP closes of a closing WebSocket left to a `_ClosingHandshake`."""
    closing: _ClosingHandshake | None = None
    peers = (self.context.client, self.context.server)
    relayed = _ORIGINAL_RELAY(self, event)
    reply = None
    while True:
        try:
            command = relayed.send(reply)
        except StopIteration:
            break
        reply = None
        if isinstance(command, commands.CloseConnection) and command.connection in peers:
            if closing is None:
                closing = _ClosingHandshake(self, event.connection if isinstance(event, events.DataReceived) else None)
                yield commands.RequestWakeup(_close_timeout(self))
            yield from closing.close(command.connection)
        else:
            reply = yield command
    if closing is not None:
        self._handle_event = closing.handle_event


def _close_timeout(websocket_layer: WebsocketLayer) -> float:
    return getattr(websocket_layer.context.options, CLOSE_TIMEOUT_OPTION, DEFAULT_CLOSE_TIMEOUT)


class ClosingHandshake:
    """Closes a WebSocket's TCP connections only after each peer has answered the close frame."""

    def load(self, loader) -> None:
        loader.add_option(
            CLOSE_TIMEOUT_OPTION,
            int,
            DEFAULT_CLOSE_TIMEOUT,
            "Seconds each side of a closing WebSocket has to answer the close frame before its TCP connection is closed.",
        )
        if WebsocketLayer.relay_messages is not _relay_closing_in_order:
            WebsocketLayer.relay_messages = _relay_closing_in_order  # type: ignore[method-assign]
            log.debug("WebSocket connections are closed after their closing handshake")


addons = [ClosingHandshake()]
