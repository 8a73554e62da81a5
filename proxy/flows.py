"""Conversions between mitmproxy's flow objects and cassette records."""

from __future__ import annotations

import time

from mitmproxy import http

from wsreplay.records import Headers, HttpRequest, HttpResponse

REPLAYED_MARK = "wsreplay_replayed"
"""flow.metadata key set on flows the replay answered, so a recorder running alongside skips them."""


def mark_replayed(flow: http.HTTPFlow) -> None:
    flow.metadata[REPLAYED_MARK] = True


def is_replayed(flow: http.HTTPFlow) -> bool:
    return bool(flow.metadata.get(REPLAYED_MARK))


def _headers(fields: tuple[tuple[bytes, bytes], ...]) -> Headers:
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in fields)


def client_scheme(flow: http.HTTPFlow) -> str:
    """The scheme the client used: in reverse mode the request shows the upstream's."""
    return "https" if flow.client_conn.tls_established else "http"


def request_record(flow: http.HTTPFlow) -> HttpRequest:
    request = flow.request
    path, _, query = request.path.partition("?")
    return HttpRequest(
        method=request.method,
        scheme=client_scheme(flow),
        host=request.pretty_host,
        port=request.port,
        path=path,
        query=query,
        http_version=request.http_version,
        headers=_headers(request.headers.fields),
        body=request.raw_content or b"",
    )


def response_record(response: http.Response) -> HttpResponse:
    return HttpResponse(
        status=response.status_code,
        reason=response.reason,
        http_version=response.http_version,
        headers=_headers(response.headers.fields),
        body=response.raw_content or b"",
    )


class AnswerClock:
    """When each flow's client began waiting for its answer, a connect upstream made for it included.

    With ``connection_strategy=lazy`` mitmproxy connects upstream after reading a request, so
    the wait starts with the request. With ``eager`` it connects as soon as the client does and
    reads the request only once connected: the first request on that upstream connection
    waited for the connect too, so its wait starts when the connect began.
    """

    def __init__(self) -> None:
        self._used: set[str] = set()

    def waiting_since(self, flow: http.HTTPFlow) -> float:
        """The wall-clock time the client began waiting for `flow`'s answer."""
        started = flow.request.timestamp_start
        server = flow.server_conn
        first_use = server.id not in self._used
        self._used.add(server.id)
        connecting = server.timestamp_start
        if not first_use or connecting is None or connecting >= started:
            return started
        return max(connecting, flow.client_conn.timestamp_start)

    def forget(self, server_id: str) -> None:
        """The upstream connection `server_id` is closed: no flow will use it again."""
        self._used.discard(server_id)


def answer_timing(flow: http.HTTPFlow, clock: AnswerClock) -> tuple[float, float]:
    """(wall-clock start, duration) of the client's wait for `flow`'s answer: until the response
    ended, or 0 without a response."""
    started = clock.waiting_since(flow)
    response = flow.response
    ended = (response.timestamp_end or response.timestamp_start) if response is not None else None
    return started, max(0.0, (ended or started) - started)


def to_mitmproxy_response(response: HttpResponse) -> http.Response:
    """A mitmproxy response carrying exactly the recorded status, headers and body."""
    now = time.time()
    return http.Response(
        http_version=response.http_version.encode("ascii", "replace"),
        status_code=response.status,
        reason=response.reason.encode("latin-1", "replace"),
        headers=tuple((name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers),
        content=response.body,
        trailers=None,
        timestamp_start=now,
        timestamp_end=now,
    )
