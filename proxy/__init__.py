"""wsreplay: record and replay WebSocket and HTTP sessions through mitmproxy."""

__version__ = "0.1.0"
