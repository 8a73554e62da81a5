"""mitmproxy addon that records HTTP exchanges and WebSocket conversations into a cassette.

    mitmdump -s addons/recorder.py --mode reverse:https://staging.example \\
        --set wsreplay_output=session.cassette

Each record is written the moment mitmproxy reports it; WebSocket messages are
dropped from the flow once written, so memory stays flat over long sessions.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Sequence

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy.server_hooks import ServerConnectionHookData

import wsreplay
from wsreplay.cassette import CassetteError, CassetteWriter
from wsreplay.flows import AnswerClock, answer_timing, is_replayed, request_record, response_record
from wsreplay.recording import Recording
from wsreplay.records import (
    CassetteHeader,
    ConnectionFailure,
    HttpExchange,
    Side,
    WebSocketClose,
    WebSocketOpen,
)
from wsreplay.redaction import RedactionRules, Redactor

log = logging.getLogger("wsreplay.record")

PROGRESS_EVERY_SECONDS = 1.0
HOST_WANTED = "wsreplay_host_recorded"


class _LiveWebSocket:
    """A WebSocket flow being recorded: its recording and id, looked up once; its frame count,
    and the time.monotonic() from which the next "frames so far" line is due.

    A plain class, not a dataclass: mitmdump loads this file as a script, outside sys.modules,
    where the dataclass decorator cannot resolve the module.
    """

    __slots__ = ("recording", "record_id", "frames", "report_at")

    def __init__(self, recording: Recording, record_id: int) -> None:
        self.recording = recording
        self.record_id = record_id
        self.frames = 0
        self.report_at = 0.0


class Recorder:
    """Writes every exchange, upgrade, frame, close and failure to ``wsreplay_output``."""

    def __init__(self) -> None:
        self.redactor: Redactor | None = None
        self.recording: Recording | None = None
        self._live: dict[str, _LiveWebSocket] = {}
        """Per WebSocket flow that has recorded frames into the current recording, by flow id."""
        self._clock = AnswerClock()

    def load(self, loader) -> None:
        loader.add_option("wsreplay_output", str, "", "Cassette file to record into.")
        loader.add_option("wsreplay_overwrite", bool, False, "Replace the cassette file if it already exists.")
        loader.add_option(
            "wsreplay_append", bool, False, "Add to the cassette file if it exists (new episodes of a replay)."
        )
        loader.add_option(
            "wsreplay_metadata", str, "{}", "JSON object stored in the cassette header (test name, environment...)."
        )
        loader.add_option(
            "wsreplay_redact",
            bool,
            True,
            "Replace secrets (auth headers, cookies, key/token/secret/password fields, JWT signatures) "
            "with placeholders before they reach the cassette.",
        )
        loader.add_option("wsreplay_redact_headers", Sequence[str], [], "More header names or glob patterns to redact.")
        loader.add_option(
            "wsreplay_redact_fields", Sequence[str], [], "More JSON field, query or form names (or globs) to redact."
        )

    def configure(self, updated: set[str]) -> None:
        if "wsreplay_output" not in updated:
            return
        self.finish()
        if not ctx.options.wsreplay_output:
            return
        try:
            metadata = json.loads(ctx.options.wsreplay_metadata)
        except ValueError:
            raise exceptions.OptionsError("wsreplay_metadata must be a JSON object") from None
        if not isinstance(metadata, dict):
            raise exceptions.OptionsError("wsreplay_metadata must be a JSON object")
        self.redactor = self._new_redactor()
        header = CassetteHeader(
            created=time.time(),
            wsreplay_version=wsreplay.__version__,
            mode="record",
            upstream=" ".join(ctx.options.mode),
            metadata=metadata,
        )
        if self.redactor is not None:
            header = self.redactor.header(header)
        last_id = 0
        try:
            if ctx.options.wsreplay_append and os.path.exists(ctx.options.wsreplay_output):
                writer, last_id = CassetteWriter.append_to(ctx.options.wsreplay_output)
            else:
                writer = CassetteWriter(ctx.options.wsreplay_output, header, overwrite=ctx.options.wsreplay_overwrite)
        except CassetteError as exc:
            raise exceptions.OptionsError(str(exc)) from None
        self.recording = Recording(writer, self.redactor, last_id)
        log.info("recording into %s", writer.path)

    @staticmethod
    def _new_redactor() -> Redactor | None:
        if not ctx.options.wsreplay_redact:
            return None
        rules = RedactionRules().extended(
            headers=ctx.options.wsreplay_redact_headers, fields=ctx.options.wsreplay_redact_fields
        )
        return Redactor(rules)

    def _recording_for(self, flow: http.HTTPFlow) -> Recording | None:
        """The recording this flow goes into: none for flows the replay answered, nor for
        hosts outside mitmproxy's ``allow_hosts`` (wsreplay's ``--hosts``)."""
        if self.recording is None or is_replayed(flow):
            return None
        wanted = flow.metadata.get(HOST_WANTED)
        if wanted is None:
            address = f"{flow.request.pretty_host}:{flow.request.port}"
            wanted = flow.metadata[HOST_WANTED] = not ctx.options.allow_hosts or any(
                re.search(pattern, address, re.IGNORECASE) for pattern in ctx.options.allow_hosts
            )
        return self.recording if wanted else None

    def response(self, flow: http.HTTPFlow) -> None:
        recording = self._recording_for(flow)
        if recording is None or flow.response is None:
            return
        record_id = recording.id_for(flow.id)
        request = request_record(flow)
        response = response_record(flow.response)
        started, duration = answer_timing(flow, self._clock)
        if request.is_websocket_upgrade:
            opened = recording.add(WebSocketOpen(record_id, recording.offset(started), request, response, duration))
            verb = "opened" if response.status == 101 else f"refused {response.status}"
            log.info("ws #%d %s %s", record_id, opened.request.target, verb)
            if response.status != 101:
                recording.forget(flow.id)
            return
        written = recording.add(HttpExchange(record_id, recording.offset(started), request, response, duration))
        recording.forget(flow.id)
        assert written.response is not None
        log.info(
            "%s %s -> %d %s", request.method, written.request.target, response.status, _preview(written.response.body)
        )

    def server_disconnected(self, data: ServerConnectionHookData) -> None:
        self._clock.forget(data.server.id)

    def error(self, flow: http.HTTPFlow) -> None:
        recording = self._recording_for(flow)
        if recording is None or flow.error is None:
            return
        record_id = recording.id_for(flow.id)
        if flow.websocket is None:
            request = request_record(flow)
            started = recording.offset(flow.request.timestamp_start)
            response = response_record(flow.response) if flow.response else None
            recording.add(HttpExchange(record_id, started, request, response, 0.0))
        failure = recording.add(ConnectionFailure(record_id, recording.offset(time.time()), flow.error.msg))
        recording.forget(flow.id)
        self._live.pop(flow.id, None)
        log.info("#%d failed: %s", record_id, failure.message)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        """Write the message's frame record before mitmproxy forwards it; then drop it from the flow.

        This runs once per message inside mitmproxy, so it does the least it can: the flow's
        recording and id are looked up on its first message only (see `_LiveWebSocket`).
        """
        live = self._live.get(flow.id)
        if live is None:
            live = self._start_live(flow)
            if live is None:
                return
        assert flow.websocket is not None  # a websocket_message hook's flow is a WebSocket's
        messages = flow.websocket.messages
        message = messages[-1]
        live.recording.add_frame(
            live.record_id, message.timestamp, message.from_client, message.is_text, message.content
        )
        del messages[:-1]
        live.frames += 1
        now = time.monotonic()
        if now >= live.report_at:
            live.report_at = now + PROGRESS_EVERY_SECONDS
            log.info("ws #%d: %d frames so far", live.record_id, live.frames)

    def _start_live(self, flow: http.HTTPFlow) -> _LiveWebSocket | None:
        recording = self._recording_for(flow)
        if recording is None or flow.websocket is None:
            return None
        live = self._live[flow.id] = _LiveWebSocket(recording, recording.id_for(flow.id))
        return live

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        recording = self._recording_for(flow)
        if recording is None or flow.websocket is None:
            return
        websocket = flow.websocket
        record_id = recording.id_for(flow.id)
        closed_by: Side | None = (
            None if websocket.closed_by_client is None else ("client" if websocket.closed_by_client else "server")
        )
        ended = recording.offset(websocket.timestamp_end or time.time())
        recording.add(WebSocketClose(record_id, ended, websocket.close_code, websocket.close_reason or "", closed_by))
        websocket.messages.clear()
        recording.forget(flow.id)
        live = self._live.pop(flow.id, None)
        frames = 0 if live is None else live.frames
        log.info(
            "ws #%d closed %s %r by %s after %d frames",
            record_id,
            websocket.close_code,
            websocket.close_reason or "",
            closed_by,
            frames,
        )

    def finish(self) -> None:
        """Close the cassette (idempotent) and log the summary."""
        if self.recording is None:
            return
        recording, self.recording = self.recording, None
        self._live.clear()
        if self.redactor is not None:
            recording.writer.write(self.redactor.summary_annotation(recording.offset(time.time())))
        recording.close()
        log.info("recorded %s: %s", recording.writer.path, recording.stats.summary(recording.writer.bytes_written))

    def done(self) -> None:
        self.finish()


def _preview(body: bytes, limit: int = 80) -> str:
    text = body[:limit].decode("utf-8", errors="replace").replace("\n", " ")
    return text + ("..." if len(body) > limit else "")


addons = [Recorder()]
