"""mitmproxy addon that answers every request from a cassette; nothing is forwarded upstream.

    mitmdump -s addons/replayer.py --mode reverse:https://staging.example \\
        --set connection_strategy=lazy --set wsreplay_cassette=session.cassette

HTTP requests, refused and unmatched upgrades are answered here (``flow.response``).
mitmproxy cannot serve a WebSocket without an upstream, so an accepted upgrade is
sent on to the in-process replay server on 127.0.0.1 (plain ws, whatever the client
used), tagged with the recorded connection it is to play; mitmproxy relays the frames.
Every answer, the forwarding of an accepted upgrade included, waits its recorded delay first.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy.server_hooks import ServerConnectionHookData

from wsreplay.cassette import CassetteError
from wsreplay.flows import mark_replayed, request_record, to_mitmproxy_response
from wsreplay.replay import Accepted, ReplayOptions, ReplayReport, ReplaySession, Unmatched, parse_speed
from wsreplay.replay_server import CONNECTION_HEADER, ReplayServer
from wsreplay.sources import CassetteFile, truncation_warning

log = logging.getLogger("wsreplay.replay")

REPLAY_OPTIONS = frozenset(
    {
        "wsreplay_cassette",
        "wsreplay_speed",
        "wsreplay_on_mismatch",
        "wsreplay_ignore",
        "wsreplay_correlation",
        "wsreplay_correlate",
        "connection_strategy",
    }
)
OFFLINE = "wsreplay: replay is offline; this connection was not made (nothing is forwarded while replaying)"


class Replayer:
    """Answers HTTP and WebSocket traffic from ``wsreplay_cassette``."""

    def __init__(self) -> None:
        self.session: ReplaySession | None = None
        self.server: ReplayServer | None = None
        self.final_report: ReplayReport | None = None
        self.strict = False

    def load(self, loader) -> None:
        loader.add_option("wsreplay_cassette", str, "", "Cassette file to replay; nothing is forwarded upstream.")
        loader.add_option(
            "wsreplay_speed",
            str,
            "1",
            "Replay speed: 1 keeps the recorded waits for answers (HTTP responses, upgrades) and gaps between "
            "server frames, 2.5 divides them, max answers and sends at once.",
        )
        loader.add_option(
            "wsreplay_on_mismatch",
            str,
            "warn",
            "When a client frame differs from the recording: warn (log and go on) or fail (close with 4000).",
            choices=["warn", "fail"],
        )
        loader.add_option(
            "wsreplay_ignore",
            Sequence[str],
            [],
            "JSON keys (session) or paths (payload.items[*].sku) ignored when matching bodies and frames.",
        )
        loader.add_option(
            "wsreplay_correlation",
            bool,
            True,
            "Send back the ids the live client mints (thread ids, request ids) where the recording had the "
            "recorded client's, learned from the cassette.",
        )
        loader.add_option(
            "wsreplay_correlate",
            Sequence[str],
            [],
            "JSON keys (id) or paths (params.request_id) whose values are correlated whatever they look like.",
        )
        loader.add_option(
            "wsreplay_passthrough",
            bool,
            False,
            "Forward what the cassette does not have to the upstream instead of answering 404 "
            "(a recorder alongside records it: new episodes).",
        )
        loader.add_option(
            "wsreplay_hosts",
            Sequence[str],
            [],
            "Only replay hosts matching one of these regular expressions; others get the not-recorded answer.",
        )
        loader.add_option(
            "wsreplay_strict",
            bool,
            False,
            "Count unmatched requests, differing frames and unused recordings as a failure.",
        )

    def configure(self, updated: set[str]) -> None:
        self.strict = ctx.options.wsreplay_strict
        if not updated & REPLAY_OPTIONS:
            return
        if not ctx.options.wsreplay_cassette:
            self.session = None
            return
        if ctx.options.connection_strategy != "lazy":
            raise exceptions.OptionsError(
                "replaying needs connection_strategy=lazy, or mitmproxy connects upstream before the cassette answers"
            )
        try:
            options = ReplayOptions(
                speed=parse_speed(ctx.options.wsreplay_speed),
                on_mismatch=ctx.options.wsreplay_on_mismatch,
                ignore=tuple(ctx.options.wsreplay_ignore),
                correlation=ctx.options.wsreplay_correlation,
                correlate=tuple(ctx.options.wsreplay_correlate),
            )
            cassette = CassetteFile(ctx.options.wsreplay_cassette)
            self.session = ReplaySession(cassette, options)
        except (ValueError, CassetteError) as exc:
            raise exceptions.OptionsError(str(exc)) from None
        self.final_report = None
        if cassette.index_as_played:
            log.info("replaying %s (%d MB, indexed as it is played)", cassette.path, cassette.size // 2**20)
        else:
            log.info("replaying %s (%d records)", cassette.path, cassette.records_indexed)
        if cassette.truncated_at is not None:
            log.warning(truncation_warning(cassette))

    async def running(self) -> None:
        self.server = ReplayServer(None)
        await self.server.start()

    def server_connect(self, data: ServerConnectionHookData) -> None:
        """Offline means offline: no connection leaves but those to the replay server."""
        if self.session is None or ctx.options.wsreplay_passthrough or self.server is None:
            return
        if data.server.address != (self.server.host, self.server.port):
            data.server.error = OFFLINE

    async def request(self, flow: http.HTTPFlow) -> None:
        session = self.session
        if session is None or flow.response is not None:
            return
        if ctx.options.wsreplay_hosts and not any(
            re.search(pattern, flow.request.pretty_host) for pattern in ctx.options.wsreplay_hosts
        ):
            mark_replayed(flow)
            flow.response = http.Response.make(
                403,
                f"wsreplay: {flow.request.pretty_host} is not a replayed host (--hosts)\n",
                {"Content-Type": "text/plain"},
            )
            return
        live = request_record(flow)
        answer = session.open_websocket(live) if live.is_websocket_upgrade else session.answer_http(live)
        if isinstance(answer, Unmatched) and ctx.options.wsreplay_passthrough:
            log.info("%s: not in the cassette, forwarded", live.target)
            return
        mark_replayed(flow)
        if isinstance(answer, Unmatched):
            log.warning("%s", answer.message)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if isinstance(answer, Accepted):
            self._forward_to_replay_server(flow, answer)
            return
        flow.response = to_mitmproxy_response(answer.response)

    def _forward_to_replay_server(self, flow: http.HTTPFlow, answer: Accepted) -> None:
        if self.server is None:
            raise RuntimeError("the replay server is not running (mitmproxy has not started)")
        request = flow.request
        request.headers[CONNECTION_HEADER] = self.server.register(answer)
        request.scheme = "http"
        request.host = self.server.host
        request.port = self.server.port
        log.info("%s: replaying", answer.player.label)

    def report(self) -> ReplayReport | None:
        """The replay's report so far (final once mitmproxy is done); None without a cassette."""
        if self.final_report is not None:
            return self.final_report
        return None if self.session is None else self.session.report()

    @property
    def failed(self) -> bool:
        """Whether ``wsreplay_strict`` is set and the replay was not clean."""
        report = self.report()
        return self.strict and report is not None and not report.clean

    async def done(self) -> None:
        if self.server is None:
            return
        await self.server.close()
        self.server = None
        if self.session is not None:
            self.final_report = self.session.report()
            level = logging.INFO if self.final_report.clean else logging.WARNING
            log.log(level, "%s", self.final_report.format())


addons = [Replayer()]
