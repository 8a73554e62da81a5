"""A recording in progress: gives connections stable ids, times records, writes them.

Drivers (the mitmproxy recorder addon, importers) turn what they observe into
records and hand them to a :class:`Recording`; it knows nothing of sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast, runtime_checkable

from wsreplay.cassette import CassetteWriter
from wsreplay.records import (
    ConnectionFailure,
    HttpExchange,
    Record,
    WebSocketClose,
    WebSocketFrame,
    WebSocketOpen,
)

RecordTransform = Callable[[Record], Record]
"""Turns a record into the one to write (redaction); it keeps the record's kind."""
AnyRecord = TypeVar("AnyRecord", bound=Record)


@runtime_checkable
class FrameAwareTransform(Protocol):
    """A transform that can tell, from a frame's payload and type alone, that it would leave the frame unchanged."""

    def __call__(self, record: Record) -> Record: ...

    def leaves_frame_unchanged(self, payload: bytes, is_text: bool) -> bool: ...


@dataclass
class RecordingStats:
    exchanges: int = 0
    connections: int = 0
    refused_upgrades: int = 0
    frames: int = 0
    frame_bytes: int = 0
    failures: int = 0

    def summary(self, cassette_bytes: int) -> str:
        return (
            f"{self.exchanges} HTTP exchanges, {self.connections} WebSocket connections "
            f"({self.refused_upgrades} refused), {self.frames} frames ({self.frame_bytes} payload bytes), "
            f"{self.failures} connection errors; cassette {cassette_bytes} bytes"
        )


class Recording:
    """Appends records to a cassette, numbering connections in order of appearance."""

    def __init__(self, writer: CassetteWriter, transform: RecordTransform | None = None, last_id: int = 0) -> None:
        self.writer = writer
        self._transform = transform
        self._frame_unchanged = _frame_check(transform)
        self.stats = RecordingStats()
        self._ids: dict[str, int] = {}
        self._last_id = last_id

    @property
    def transform(self) -> RecordTransform | None:
        """Applied to every record before it is written; fixed for the recording's life."""
        return self._transform

    @property
    def origin(self) -> float:
        return self.writer.header.created

    def id_for(self, key: str) -> int:
        """The cassette id of a connection or exchange known to the driver as `key`."""
        if key not in self._ids:
            self._last_id += 1
            self._ids[key] = self._last_id
        return self._ids[key]

    def forget(self, key: str) -> None:
        self._ids.pop(key, None)

    def offset(self, wall_time: float) -> float:
        """Seconds since the cassette was created, for a wall-clock timestamp."""
        return max(0.0, wall_time - self.origin)

    def add(self, record: AnyRecord) -> AnyRecord:
        """Transform (redact) and write a record; return what was written."""
        written = record if self._transform is None else cast(AnyRecord, self._transform(record))
        self.writer.write(written)
        self._count(written)
        return written

    def add_frame(self, record_id: int, wall_time: float, from_client: bool, is_text: bool, payload: bytes) -> None:
        """``add(WebSocketFrame(record_id, offset(wall_time), ...))``, cheaper: the recorder's hot path.

        A frame the transform would leave unchanged (with redaction: one that names no secret
        field, holds no JWT and no secret seen before) is written without building the record;
        the cassette bytes are the same either way.
        """
        time = self.offset(wall_time)
        unchanged = self._frame_unchanged
        if unchanged is None or not unchanged(payload, is_text):
            self.add(WebSocketFrame(record_id, time, from_client, is_text, payload))
            return
        self.writer.write_frame(record_id, time, from_client, is_text, payload)
        stats = self.stats
        stats.frames += 1
        stats.frame_bytes += len(payload)

    def _count(self, record: Record) -> None:
        stats = self.stats
        match record:
            case WebSocketFrame():
                stats.frames += 1
                stats.frame_bytes += len(record.payload)
            case HttpExchange():
                stats.exchanges += 1
            case WebSocketOpen():
                stats.connections += 1
                stats.refused_upgrades += not record.accepted
            case ConnectionFailure():
                stats.failures += 1
            case WebSocketClose():
                pass

    def close(self) -> None:
        self.writer.close()


def _frame_check(transform: RecordTransform | None) -> Callable[[bytes, bool], bool] | None:
    """Whether `transform` leaves a frame with a given payload and type as it is; None: it may change any frame."""
    if transform is None:
        return _unchanged
    if isinstance(transform, FrameAwareTransform):
        return transform.leaves_frame_unchanged
    return None


def _unchanged(payload: bytes, is_text: bool) -> bool:
    return True
