"""Upstream URLs as users give them (http, https, ws, wss)."""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
HTTP_SCHEME_OF_WEBSOCKET = {"ws": "http", "wss": "https"}
"""mitmproxy speaks WebSockets over http(s) upstreams; ws(s) URLs map to these."""


def parse_upstream(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an upstream URL; ws and wss map to http and https.

    Raises ValueError with a sentence for the user if it is not such a URL.
    """
    parts = urlsplit(url)
    scheme = HTTP_SCHEME_OF_WEBSOCKET.get(parts.scheme, parts.scheme)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if scheme not in DEFAULT_PORTS or not parts.hostname or port == -1:
        raise ValueError(f"{url!r} is not an http://, https://, ws:// or wss:// URL with a host")
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme]


def reverse_mode(url: str) -> str:
    """mitmproxy's reverse-proxy mode spec for an upstream URL."""
    scheme, host, port = parse_upstream(url)
    return f"reverse:{scheme}://{host}:{port}" if ":" not in host else f"reverse:{scheme}://[{host}]:{port}"
