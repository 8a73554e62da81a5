"""A JSON-RPC 2.0 server over WebSocket (`websockets`), answering out of order without timing.

    python tests/support/jsonrpc_server.py    # prints "listening on 127.0.0.1:PORT" (any path)

Each connection's calls are answered in batches: the server holds the responses until BATCH
calls have arrived, then sends them in the reverse order of their arrival, so a client with
several calls in flight gets its answers in another order than it asked, the same way every
run. Methods: add(a, b), concat(*parts), echo(value), square(x), divide(a, b) (an error
response for b == 0); anything else is JSON-RPC's "Method not found".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

BATCH = 5


class CallError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _divide(a: float, b: float) -> float:
    if b == 0:
        raise CallError(-32000, "division by zero")
    return a / b


METHODS: dict[str, Callable[..., Any]] = {
    "add": lambda a, b: a + b,
    "concat": lambda *parts: "".join(parts),
    "echo": lambda value: value,
    "square": lambda x: x * x,
    "divide": _divide,
}


def answer(call: Any) -> dict[str, Any]:
    """The response to one request object (a dict from the client's JSON)."""
    ident = call.get("id") if isinstance(call, dict) else None
    try:
        if not isinstance(call, dict) or call.get("jsonrpc") != "2.0" or not isinstance(call.get("method"), str):
            raise CallError(-32600, "Invalid Request")
        method = METHODS.get(call["method"])
        if method is None:
            raise CallError(-32601, "Method not found")
        params = call.get("params", [])
        try:
            result = method(**params) if isinstance(params, dict) else method(*params)
        except TypeError as error:
            raise CallError(-32602, f"Invalid params: {error}") from error
    except CallError as error:
        return {"jsonrpc": "2.0", "error": {"code": error.code, "message": error.message}, "id": ident}
    return {"jsonrpc": "2.0", "result": result, "id": ident}


async def serve_calls(connection: ServerConnection) -> None:
    """One connection: hold the responses until BATCH calls have come, then answer the last first."""
    held: list[Any] = []
    try:
        async for message in connection:
            try:
                held.append(json.loads(message))
            except ValueError:
                error = {"code": -32700, "message": "Parse error"}
                await connection.send(json.dumps({"jsonrpc": "2.0", "error": error, "id": None}))
                continue
            if len(held) == BATCH:
                for call in reversed(held):
                    await connection.send(json.dumps(answer(call)))
                held.clear()
    except ConnectionClosed:
        pass


async def main(port: int = 0) -> None:
    async with serve(serve_calls, "127.0.0.1", port, ping_interval=None) as server:
        host, bound_port = next(iter(server.sockets)).getsockname()[:2]
        print(f"listening on {host}:{bound_port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
