"""mitmproxy addon that sends connections for a host name to another address, like curl's --resolve.

    mitmdump -s addons/resolver.py --set wsreplay_resolve=api.staging.example.com=127.0.0.1:8443

For a staging host reachable only at a private address, or a test server standing in
for one. TLS still uses the original name (SNI and certificate checks are unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence

from mitmproxy import ctx, exceptions
from mitmproxy.proxy.server_hooks import ServerConnectionHookData


def parse_resolve(entry: str) -> tuple[str, tuple[str, int | None]]:
    """``HOST=ADDR[:PORT]`` -> (host, (addr, port or None to keep the original port))."""
    host, sep, target = entry.partition("=")
    address, colon, port = target.rpartition(":")
    if not colon:
        address, port = target, ""
    if not sep or not host or not address or (port and not port.isdigit()):
        raise exceptions.OptionsError(f"wsreplay_resolve: {entry!r} is not HOST=ADDRESS[:PORT]")
    return host.lower(), (address.strip("[]"), int(port) if port else None)


class Resolver:
    def __init__(self) -> None:
        self.targets: dict[str, tuple[str, int | None]] = {}

    def load(self, loader) -> None:
        loader.add_option(
            "wsreplay_resolve",
            Sequence[str],
            [],
            "HOST=ADDRESS[:PORT]: connect to ADDRESS instead of resolving HOST (repeatable).",
        )

    def configure(self, updated: set[str]) -> None:
        if "wsreplay_resolve" in updated:
            self.targets = dict(parse_resolve(entry) for entry in ctx.options.wsreplay_resolve)

    def server_connect(self, data: ServerConnectionHookData) -> None:
        if data.server.address is None:
            return
        host, port = data.server.address
        target = self.targets.get(str(host).lower())
        if target is not None:
            data.server.address = (target[0], target[1] or port)


addons = [Resolver()]
