"""A `websockets` echo server on 127.0.0.1 for Autobahn's fuzzing client.

    python -m tests.support.echo_server     # prints "listening on 127.0.0.1:PORT"

Every message comes back as it came (text or binary); no keepalive pings (they would
make the traffic depend on timing); messages up to 32 MiB (cases 9.1.6 and 9.2.6 echo
16 MiB); permessage-deflate when the client offers it, as `websockets` does by default.
The fragment limit is `websockets`' own, read from WEBSOCKETS_MAX_FRAGMENTS at import.
"""

from __future__ import annotations

import asyncio
import logging

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

MAX_MESSAGE_SIZE = 32 * 1024 * 1024


async def echo(connection: ServerConnection) -> None:
    try:
        async for message in connection:
            await connection.send(message)
    except ConnectionClosed:
        pass  # the fuzzing client breaks the protocol on purpose; websockets closed as it should


async def main(port: int = 0) -> None:
    async with serve(echo, "127.0.0.1", port, max_size=MAX_MESSAGE_SIZE, ping_interval=None) as server:
        host, bound_port = next(iter(server.sockets)).getsockname()[:2]
        print(f"listening on {host}:{bound_port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
