"""mitmproxy addon: a WebSocket peer that drops its connection looks dropped on the other side too.

    mitmdump -s addons/lost_connections.py -s addons/recorder.py ...

When one side of a WebSocket closes its TCP connection without a close frame, mitmproxy
sends the other side a close frame carrying the "abnormal closure" code 1006. That code
must never go on the wire (RFC 6455, 7.4.1), so wsproto rewrites it to 1000: a client
whose server crashed mid-stream sees a normal close through the proxy. With this addon
the other side's connection is closed without a close frame instead, so its WebSocket
library reports 1006, exactly as it would without the proxy. wsreplay loads it in every
proxy it runs.

mitmproxy has no hook between the lost connection and the close frame it sends, so the
addon changes ``WebsocketConnection.send2`` (the one place mitmproxy turns a wsproto
event into bytes for a peer) for the whole process, once, on load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import wsproto.events
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.websocket import WebsocketConnection
from wsproto.frame_protocol import CloseReason

log = logging.getLogger("wsreplay.proxy")

_Send = Callable[[WebsocketConnection, wsproto.events.Event], commands.Command]
_ORIGINAL_SEND: Final[_Send] = WebsocketConnection.send2


def _send_or_drop(self: WebsocketConnection, event: wsproto.events.Event) -> commands.Command:
    """Relay `event`, except an abnormal closure: close the connection without a close frame."""
    if isinstance(event, wsproto.events.CloseConnection) and event.code == CloseReason.ABNORMAL_CLOSURE:
        return commands.CloseConnection(self.conn)
    return _ORIGINAL_SEND(self, event)


class LostConnections:
    """Relays a WebSocket peer's lost connection as a lost connection, not as a normal close."""

    def load(self, loader) -> None:
        if WebsocketConnection.send2 is not _send_or_drop:
            WebsocketConnection.send2 = _send_or_drop  # type: ignore[method-assign,assignment]
            log.debug("lost WebSocket connections are relayed as lost connections")


addons = [LostConnections()]
