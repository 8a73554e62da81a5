"""Cassette format v2 (and v1): a msgpack stream, written record by record, read in constant memory.

The format is specified in ``cassettes/FORMAT.md``. In short: the first object is a
header map; every following object is an array ``[kind, id, time_us, ...]``. Records
are appended and flushed as they happen, so a recorder killed mid-session leaves a
cassette that reads back up to its last complete record. Version 2 added the
WebSocket open's duration; version 1 files are read, and written when appended to.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeAlias

import msgpack

from wsreplay.records import (
    FORMAT_VERSION,
    Annotation,
    CassetteHeader,
    ConnectionFailure,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    Record,
    WebSocketClose,
    WebSocketFrame,
    WebSocketOpen,
    message_fields,
)

FORMAT_NAME = "wsreplay-cassette"
FIRST_VERSION = 1
"""Version 1: the WebSocket open record has no duration; its time is when the answer came."""

KIND_HTTP = 1
KIND_WS_OPEN = 2
KIND_FRAME = 3
KIND_CLOSE = 4
KIND_FAILURE = 5
KIND_ANNOTATION = 6

FLAG_FROM_CLIENT = 0x01
FLAG_TEXT = 0x02

MAX_RECORD_BYTES = 64 * 1024 * 1024
MAX_CONTAINER_ENTRIES = 65536
READ_CHUNK = 256 * 1024
FIRST_RESUMED_CHUNK = 4 * 1024
"""What a reader resumed at a record reads first (replay reads a step of a few frames so);
each further read is four times bigger, up to `READ_CHUNK`."""
SIDES = ("client", "server")
UNCOPIED_PAYLOAD_BYTES = 64 * 1024
"""From this size on, a frame's payload is handed to the OS as it is, not copied into its packed record."""
_EMPTY_BIN = msgpack.packb(b"", use_bin_type=True)


class CassetteError(Exception):
    """A cassette that cannot be read; the message is one sentence for the user."""


class NotACassetteError(CassetteError):
    pass


class UnsupportedVersionError(CassetteError):
    pass


class CorruptRecordError(CassetteError):
    pass


# --- encoding -------------------------------------------------------------------


def _micros(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))


def encode_header(header: CassetteHeader) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": header.version,
        "created": header.created,
        "wsreplay": header.wsreplay_version,
        "mode": header.mode,
        "upstream": header.upstream,
        "metadata": header.metadata,
    }


def encode_frame(record_id: int, time: float, from_client: bool, is_text: bool, payload: bytes) -> list[Any]:
    """The msgpack-ready array for a WebSocket frame record, from its fields."""
    flags = (FLAG_FROM_CLIENT if from_client else 0) | (FLAG_TEXT if is_text else 0)
    return [KIND_FRAME, record_id, _micros(time), flags, payload]


def _bin_header(size: int) -> bytes:
    """The msgpack bin header ``Packer(use_bin_type=True)`` writes before `size` bytes (bin 8, 16 or 32)."""
    if size < 0x100:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 0x10000:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def encode_record(record: Record, version: int = FORMAT_VERSION) -> list[Any]:
    """The msgpack-ready array for one record, in format `version` (a v1 open keeps only its answer's time)."""
    head = [record.id, _micros(record.time)]
    match record:
        case WebSocketFrame():
            return encode_frame(record.id, record.time, record.from_client, record.is_text, record.payload)
        case HttpExchange():
            response = message_fields(record.response, bytes) if record.response else None
            return [KIND_HTTP, *head, message_fields(record.request, bytes), response, _micros(record.duration)]
        case WebSocketOpen():
            request, response = message_fields(record.request, bytes), message_fields(record.response, bytes)
            if version == FIRST_VERSION:
                return [KIND_WS_OPEN, record.id, _micros(record.answered_at), request, response]
            return [KIND_WS_OPEN, *head, request, response, _micros(record.duration)]
        case WebSocketClose():
            return [KIND_CLOSE, *head, record.code, record.reason, record.closed_by]
        case ConnectionFailure():
            return [KIND_FAILURE, *head, record.message]
        case Annotation():
            return [KIND_ANNOTATION, *head, record.data]
    raise TypeError(f"not a cassette record: {record!r}")


# --- decoding -------------------------------------------------------------------


class _Invalid(Exception):
    """A record whose shape is wrong; turned into CorruptRecordError with its position."""


def _expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _Invalid(f"{what} has the wrong type ({type(value).__name__})")
    return value


def _decode_headers(value: Any, what: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for pair in _expect(value, list, what):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise _Invalid(f"{what} must be a list of [name, value] strings")
        if not (_is_latin1(pair[0]) and _is_latin1(pair[1])):
            raise _Invalid(f"{what} must hold latin-1 strings only")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _is_latin1(text: str) -> bool:
    return text.isascii() or max(text) <= "\xff"


def _unsigned(value: Any, what: str) -> int:
    if _expect(value, int, what) < 0:
        raise _Invalid(f"{what} is negative")
    return value


def _field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in data:
        raise _Invalid(f"{what} lacks '{key}'")
    return _expect(data[key], kind, f"{what}.{key}")


def _decode_request(value: Any) -> HttpRequest:
    data = _expect(value, dict, "request")
    return HttpRequest(
        method=_field(data, "method", str, "request"),
        scheme=_field(data, "scheme", str, "request"),
        host=_field(data, "host", str, "request"),
        port=_field(data, "port", int, "request"),
        path=_field(data, "path", str, "request"),
        query=_field(data, "query", str, "request"),
        http_version=_field(data, "http_version", str, "request"),
        headers=_decode_headers(data.get("headers"), "request.headers"),
        body=_field(data, "body", bytes, "request"),
    )


def _decode_response(value: Any) -> HttpResponse:
    data = _expect(value, dict, "response")
    return HttpResponse(
        status=_field(data, "status", int, "response"),
        reason=_field(data, "reason", str, "response"),
        http_version=_field(data, "http_version", str, "response"),
        headers=_decode_headers(data.get("headers"), "response.headers"),
        body=_field(data, "body", bytes, "response"),
    )


_ARITY = {KIND_HTTP: 6, KIND_WS_OPEN: 6, KIND_FRAME: 5, KIND_CLOSE: 6, KIND_FAILURE: 4, KIND_ANNOTATION: 4}
_ARITY_BY_VERSION = {FIRST_VERSION: _ARITY | {KIND_WS_OPEN: 5}, FORMAT_VERSION: _ARITY}


_SET_FRAME_FIELDS = tuple(getattr(WebSocketFrame, item.name).__set__ for item in fields(WebSocketFrame))


def _new_frame(record_id: int, time: float, from_client: bool, is_text: bool, payload: bytes) -> WebSocketFrame:
    """``WebSocketFrame(...)`` for the reader's hot path: the same object, its slots set directly
    rather than through the frozen dataclass's checked ``__init__`` (half the cost)."""
    frame = object.__new__(WebSocketFrame)
    set_id, set_time, set_from_client, set_is_text, set_payload = _SET_FRAME_FIELDS
    set_id(frame, record_id)
    set_time(frame, time)
    set_from_client(frame, from_client)
    set_is_text(frame, is_text)
    set_payload(frame, payload)
    return frame


def decode_record(value: Any, version: int = FORMAT_VERSION) -> Record:
    """Turn one decoded msgpack array of a format `version` cassette back into a record, checking its shape."""
    if type(value) is list and len(value) == 5 and value[0] == KIND_FRAME:
        kind, record_id, time_us, flags, payload = value
        if (
            type(record_id) is type(time_us) is type(flags) is int
            and type(payload) is bytes
            and record_id >= 0
            and time_us >= 0
            and flags >= 0
        ):
            return _new_frame(
                record_id, time_us / 1_000_000, flags & FLAG_FROM_CLIENT != 0, flags & FLAG_TEXT != 0, payload
            )
    arity = _ARITY_BY_VERSION[version]
    items = _expect(value, list, "record")
    if len(items) < 3:
        raise _Invalid("record is too short")
    kind = _expect(items[0], int, "record kind")
    if kind not in arity:
        raise _Invalid(f"unknown record kind {kind}")
    if len(items) != arity[kind]:
        raise _Invalid(f"record of kind {kind} has {len(items)} fields, expected {arity[kind]}")
    record_id = _unsigned(items[1], "record id")
    time = _unsigned(items[2], "record time") / 1_000_000
    match kind:
        case 3:
            flags = _unsigned(items[3], "frame flags")
            payload = _expect(items[4], bytes, "frame payload")
            return WebSocketFrame(record_id, time, bool(flags & FLAG_FROM_CLIENT), bool(flags & FLAG_TEXT), payload)
        case 1:
            response = None if items[4] is None else _decode_response(items[4])
            duration = _unsigned(items[5], "duration") / 1_000_000
            return HttpExchange(record_id, time, _decode_request(items[3]), response, duration)
        case 2:
            request, response = _decode_request(items[3]), _decode_response(items[4])
            duration = 0.0 if version == FIRST_VERSION else _unsigned(items[5], "upgrade duration") / 1_000_000
            return WebSocketOpen(record_id, time, request, response, duration)
        case 4:
            code = None if items[3] is None else _expect(items[3], int, "close code")
            closed_by = items[5]
            if closed_by is not None and closed_by not in SIDES:
                raise _Invalid("close side must be 'client', 'server' or nil")
            return WebSocketClose(record_id, time, code, _expect(items[4], str, "close reason"), closed_by)
        case 5:
            return ConnectionFailure(record_id, time, _expect(items[3], str, "failure message"))
        case _:
            return Annotation(record_id, time, _expect(items[3], dict, "annotation"))


def decode_header(value: Any) -> CassetteHeader:
    if not isinstance(value, dict) or value.get("format") != FORMAT_NAME:
        raise NotACassetteError("this file is not a wsreplay cassette (its first object is not a cassette header)")
    version = value.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CorruptRecordError("the cassette header has no valid format version")
    if version > FORMAT_VERSION:
        raise UnsupportedVersionError(
            f"this cassette uses format version {version}, but this wsreplay reads up to version "
            f"{FORMAT_VERSION}: upgrade wsreplay to read it"
        )
    if version < FIRST_VERSION:
        raise CorruptRecordError(f"the cassette header names an impossible format version {version}")
    try:
        upstream = value.get("upstream")
        return CassetteHeader(
            created=float(_expect(value.get("created"), (int, float), "header.created")),
            wsreplay_version=_expect(value.get("wsreplay"), str, "header.wsreplay"),
            mode=_expect(value.get("mode"), str, "header.mode"),
            upstream=None if upstream is None else _expect(upstream, str, "header.upstream"),
            metadata=_expect(value.get("metadata", {}), dict, "header.metadata"),
            version=version,
        )
    except _Invalid as exc:
        raise CorruptRecordError(f"the cassette header is invalid: {exc}") from None


# --- reading --------------------------------------------------------------------


def _new_unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        use_list=True,
        # A record may be up to MAX_RECORD_BYTES; the buffer also holds one read chunk.
        max_buffer_size=MAX_RECORD_BYTES + READ_CHUNK,
        max_str_len=MAX_RECORD_BYTES,
        max_bin_len=MAX_RECORD_BYTES,
        # Bounds what a forged length prefix can make msgpack preallocate.
        max_array_len=MAX_CONTAINER_ENTRIES,
        max_map_len=MAX_CONTAINER_ENTRIES,
        # msgpack decodes ext type -1 (timestamp) without calling ext_hook: refuse every
        # ext with data here; ext_hook still catches zero-length ones.
        max_ext_len=0,
        ext_hook=_reject_ext,
        object_hook=_check_keys,
    )


def _reject_ext(code: int, data: bytes) -> Any:
    raise _Invalid(f"msgpack extension type {code} is not allowed in a cassette")


def _check_keys(value: dict[Any, Any]) -> dict[Any, Any]:
    for key in value:
        if not isinstance(key, str):
            raise _Invalid(f"map key {key!r} is not a string")
    return value


ServerFrameMark: TypeAlias = tuple[int, int, int]
"""Server frames indexing passed over undecoded: their connection id, how many there were,
and the latest one's time in microseconds."""


FrameFields: TypeAlias = list[Any]
"""A frame record as read and checked, not built: ``[3, id, time_us, flags, payload]``."""


def frame_from_fields(fields: FrameFields) -> WebSocketFrame:
    """The frame record of checked :data:`FrameFields`."""
    _, record_id, time_us, flags, payload = fields
    return _new_frame(record_id, time_us / 1_000_000, flags & FLAG_FROM_CLIENT != 0, flags & FLAG_TEXT != 0, payload)


class CassetteReader:
    """Streams a cassette's records in constant memory.

    Iterate over it for the records; afterwards ``truncated_at`` is the byte offset of
    an incomplete last record (a recorder killed mid-write), or None.

    With `resume` (the header read before, and a record's offset as :meth:`positioned`
    gives it), the reader starts at that record instead of at the header.
    """

    def __init__(
        self, source: BinaryIO, name: str = "cassette", *, resume: tuple[CassetteHeader, int] | None = None
    ) -> None:
        self.source = source
        self.name = name
        self.truncated_at: int | None = None
        self.records_read = 0
        """The records read (an iteration over the records has added its count by the time it ends)."""
        self._unpacker = _new_unpacker()
        self._base = 0
        """The file offset of the first byte given to the unpacker."""
        self._fed = 0
        self._eof = False
        self._chunk = READ_CHUNK if resume is None else FIRST_RESUMED_CHUNK
        if resume is not None:
            self.header, self._base = resume
            source.seek(self._base)
            return
        try:
            first = self._next_object(0)
        except CorruptRecordError:
            raise NotACassetteError(
                f"{self.name} is not a wsreplay cassette (it does not start with a readable cassette header)"
            ) from None
        if first is None:
            if self._fed == 0:
                raise NotACassetteError(f"{self.name} is empty, not a wsreplay cassette")
            raise NotACassetteError(f"{self.name} is not a wsreplay cassette (or its header is cut short)")
        try:
            self.header = decode_header(first)
        except CassetteError as exc:
            raise type(exc)(f"{self.name}: {exc}") from None

    def _fill(self, offset: int) -> bool:
        chunk = self.source.read(self._chunk)
        self._chunk = min(4 * self._chunk, READ_CHUNK)
        if not chunk:
            self._eof = True
            return False
        self._fed += len(chunk)
        try:
            self._unpacker.feed(chunk)
        except msgpack.BufferFull:
            raise CorruptRecordError(
                f"{self.name}: the record at byte {offset} is larger than {MAX_RECORD_BYTES} bytes; the file is corrupt"
            ) from None
        return True

    def _more(self, start: int) -> bool:
        """Give the unpacker more of the file, once it has used all it had; False at the end of
        the file, noting an incomplete last record if the bytes from `start` on are one."""
        if self._eof or not self._fill(start):
            if start < self._base + self._fed:
                self.truncated_at = start
            return False
        return True

    def _next_object(self, offset: int) -> Any:
        """The next msgpack object, which starts at file offset `offset`, reading more of the
        file as needed; None at the end.

        msgpack parses incrementally, so tell() moves inside a partial object: the
        object's start is taken once, before the first attempt.
        """
        while True:
            try:
                return self._unpacker.unpack()
            except msgpack.OutOfData:
                if self._eof or not self._fill(offset):
                    if offset < self._base + self._fed:
                        self.truncated_at = offset
                    return None
            except _UNREADABLE as exc:
                raise self._corrupt(offset, exc) from None

    def _corrupt(self, offset: int, exc: BaseException) -> CorruptRecordError:
        if isinstance(exc, _Invalid):
            return CorruptRecordError(f"{self.name}: corrupt record at byte {offset}: {exc}")
        return CorruptRecordError(
            f"{self.name}: corrupt data at byte {offset} ({_describe(exc)}); the records before it are intact"
        )

    def __iter__(self) -> Iterator[Record]:
        return self._records()

    def without_server_frames(self) -> Iterator[Record]:
        """The records but the server's frames, which are passed over without being decoded
        or checked (a first pass that needs what clients sent)."""
        return self._records(skip_server_frames=True)

    def of_connection(self, record_id: int) -> Iterator[Record]:
        """The records of one connection (or exchange); the others are passed over undecoded."""
        return self._records(only_id=record_id)

    def with_frame_fields(self) -> Iterator[Record | FrameFields]:
        """The records, each frame as its checked :data:`FrameFields` rather than a built
        :class:`WebSocketFrame` (for a command that reads every frame's fields once:
        :func:`frame_from_fields` builds one where it is needed)."""
        return self._records(frame_fields=True)

    def _records(
        self, skip_server_frames: bool = False, only_id: int | None = None, frame_fields: bool = False
    ) -> Iterator[Any]:
        """The hot path of every command: the records (`skip_server_frames`: but the server's
        frames; `only_id`: of that connection only; `frame_fields`: frames as their fields),
        others passed over undecoded."""
        unpacker, base, version = self._unpacker, self._base, self.header.version
        tell = unpacker.tell
        filtering = skip_server_frames or only_id is not None
        start = base + tell()
        read = 0
        try:
            while True:
                try:
                    for value in unpacker:  # iterating is the fastest way through what is buffered
                        if filtering:
                            if type(value) is list and len(value) == 5 and value[0] == KIND_FRAME:
                                if (
                                    skip_server_frames
                                    and type(value[3]) is int
                                    and not value[3] & FLAG_FROM_CLIENT
                                    or only_id is not None
                                    and value[1] != only_id
                                ):
                                    start = base + tell()
                                    continue
                            elif only_id is not None and type(value) is list and len(value) > 1 and value[1] != only_id:
                                start = base + tell()
                                continue
                        elif frame_fields and type(value) is list and len(value) == 5 and value[0] == KIND_FRAME:
                            _, record_id, time_us, flags, payload = value
                            if (
                                type(record_id) is type(time_us) is type(flags) is int
                                and type(payload) is bytes
                                and record_id >= 0
                                and time_us >= 0
                                and flags >= 0
                            ):
                                read += 1
                                yield value
                                start = base + tell()
                                continue
                        try:
                            record = decode_record(value, version)
                        except _Invalid as exc:
                            raise self._corrupt(start, exc) from None
                        read += 1
                        yield record
                        start = base + tell()
                except _UNREADABLE as exc:
                    raise self._corrupt(start, exc) from None
                if not self._more(start):
                    return
        finally:
            self.records_read += read  # counted here, not per record: this loop runs once per frame

    def positioned(self) -> Iterator[tuple[int, int, Record | ServerFrameMark]]:
        """``(start, end, record)`` for each record, with the file offsets where it starts and
        ends (what indexing a cassette for replay needs).

        Server frames are checked but not decoded; those between two other records come as one
        :data:`ServerFrameMark` per connection, before the next other record, with the offsets
        of the last one. This loop is the whole cost of indexing: it does nothing else per frame.
        """
        unpacker, base, version = self._unpacker, self._base, self.header.version
        tell = unpacker.tell
        runs: dict[int, list[int]] = {}
        """Per connection: frames passed over since the last other record, the latest time, its end."""
        start = base + tell()
        while True:
            try:
                for value in unpacker:  # iterating is the fastest way through what is buffered
                    end = base + tell()
                    if type(value) is list and len(value) == 5 and value[0] == KIND_FRAME:
                        _, record_id, time_us, flags, payload = value
                        if (
                            type(flags) is type(record_id) is type(time_us) is int
                            and not flags & FLAG_FROM_CLIENT
                            and type(payload) is bytes
                            and record_id >= 0
                            and time_us >= 0
                            and flags >= 0
                        ):
                            run = runs.get(record_id)
                            if run is None:
                                runs[record_id] = [1, time_us, end]
                            else:
                                run[0] += 1
                                if time_us > run[1]:
                                    run[1] = time_us
                                run[2] = end
                            start = end
                            continue
                    if runs:
                        yield from _server_runs(runs)
                        runs = {}
                    try:
                        record = decode_record(value, version)
                    except _Invalid as exc:
                        raise self._corrupt(start, exc) from None
                    self.records_read += 1
                    yield start, end, record
                    start = end
            except _UNREADABLE as exc:
                raise self._corrupt(start, exc) from None
            if not self._more(start):
                break
        yield from _server_runs(runs)


def _server_runs(runs: dict[int, list[int]]) -> Iterator[tuple[int, int, ServerFrameMark]]:
    for record_id, (count, time_us, end) in runs.items():
        yield end, end, (record_id, count, time_us)


_UNREADABLE = (_Invalid, ValueError, msgpack.UnpackException, RecursionError, MemoryError)
"""What msgpack raises on data that is not a valid record (OutOfData aside: more may come)."""


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "max_ext_len" in text:
        return "a msgpack extension type, which cassettes do not allow"
    return text if len(text) < 120 else text[:117] + "..."


def open_cassette(path: str | os.PathLike[str]) -> tuple[CassetteReader, IO[bytes]]:
    """Open a cassette file for streaming; the caller closes the returned file."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise CassetteError(f"no cassette at {path}: check the path") from None
    except IsADirectoryError:
        raise CassetteError(f"{path} is a directory, not a cassette file") from None
    except PermissionError:
        raise CassetteError(f"cannot read {path}: permission denied") from None
    try:
        return CassetteReader(handle, name=str(path)), handle
    except BaseException:
        handle.close()
        raise


@dataclass
class Cassette:
    """A whole cassette in memory: its header and records in recording order."""

    header: CassetteHeader
    records: list[Record]
    truncated_at: int | None = None
    path: str | None = None


def load_cassette(path: str | os.PathLike[str]) -> Cassette:
    reader, handle = open_cassette(path)
    with handle:
        records = list(reader)
    return Cassette(reader.header, records, reader.truncated_at, str(path))


# --- writing --------------------------------------------------------------------


class CassetteWriter:
    """Appends records to a cassette file, each one written whole and at once.

    Every record goes to the operating system in a single write call (``writev`` for a
    big frame: its head and its uncopied payload) as soon as it is given, so a crash or
    ``kill -9`` of the process loses at most the record being written; nothing is held
    back until a connection ends.
    """

    def __init__(
        self, path: str | os.PathLike[str], header: CassetteHeader, *, overwrite: bool = False, _append: bool = False
    ) -> None:
        if header.version not in _ARITY_BY_VERSION:
            raise CassetteError(
                f"cannot write cassette format version {header.version}; "
                f"this wsreplay writes versions {FIRST_VERSION} to {FORMAT_VERSION}"
            )
        self.path = Path(path)
        if _append:
            flags = os.O_WRONLY | os.O_APPEND
        else:
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            self._fd: int | None = os.open(self.path, flags, 0o644)
        except FileExistsError:
            raise CassetteError(
                f"{self.path} already exists; choose another output file or allow overwriting it"
            ) from None
        except OSError as exc:
            raise CassetteError(f"cannot open cassette {self.path} for writing: {exc.strerror}") from None
        self._packer = msgpack.Packer(use_bin_type=True)
        self.header = header
        self.bytes_written = 0
        if not _append:
            self._write(self._packer.pack(encode_header(header)))

    @classmethod
    def append_to(cls, path: str | os.PathLike[str]) -> tuple[CassetteWriter, int]:
        """Open an existing cassette to add records after its last complete one.

        Records are added in the cassette's own format version (a v1 cassette stays v1).
        Returns the writer and the highest record id already used. An incomplete last
        record (a recorder killed mid-write) is cut off first so the stream stays valid.
        """
        reader, handle = open_cassette(path)
        with handle:
            last_id = max((record.id for record in reader), default=0)
        if reader.truncated_at is not None:
            os.truncate(path, reader.truncated_at)
        return cls(path, reader.header, _append=True), last_id

    def _write(self, data: bytes, payload: bytes = b"") -> None:
        """Hand one record, `data` then a frame's uncopied `payload`, to the OS in one call
        (``write``, or ``writev`` with a payload; the rest, if it takes only part)."""
        fd = self._fd
        if fd is None:
            raise self._closed_error()
        size = len(data) + len(payload)
        if size > MAX_RECORD_BYTES:
            raise _too_large(size)
        written = os.writev(fd, (data, payload)) if payload else os.write(fd, data)
        if written < size:
            _write_rest(fd, data + payload, written)
        self.bytes_written += size

    def write(self, record: Record) -> None:
        if isinstance(record, WebSocketFrame):
            self.write_frame(record.id, record.time, record.from_client, record.is_text, record.payload)
        else:
            self._write(self._packer.pack(encode_record(record, self.header.version)))

    def write_frame(self, record_id: int, time: float, from_client: bool, is_text: bool, payload: bytes) -> None:
        """``write(WebSocketFrame(record_id, time, ...))`` without building the record (the recorder's hot path).

        A big payload is not copied: the record packed with an empty payload, less that empty
        payload's bin header, then the real bin header make the record's head, written
        together with the payload itself (the same bytes, still one call).
        """
        fields = encode_frame(record_id, time, from_client, is_text, payload)
        if len(payload) < UNCOPIED_PAYLOAD_BYTES:
            self._write(self._packer.pack(fields))
            return
        fields[-1] = b""
        head = self._packer.pack(fields)[: -len(_EMPTY_BIN)] + _bin_header(len(payload))
        self._write(head, payload)

    def _closed_error(self) -> CassetteError:
        return CassetteError(f"cassette {self.path} is already closed")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def closed(self) -> bool:
        return self._fd is None

    def __enter__(self) -> CassetteWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _too_large(size: int) -> CassetteError:
    return CassetteError(
        f"a record of {size} bytes exceeds the cassette limit of {MAX_RECORD_BYTES} bytes; not written"
    )


def _write_rest(fd: int, data: bytes, written: int) -> None:
    """Finish a write the OS took only part of."""
    view = memoryview(data)[written:]
    while view:
        view = view[os.write(fd, view) :]


def write_cassette(path: str | os.PathLike[str], cassette: Cassette, *, overwrite: bool = False) -> None:
    """Write a whole in-memory cassette (used by tools that transform cassettes)."""
    with CassetteWriter(path, cassette.header, overwrite=overwrite) as writer:
        for record in cassette.records:
            writer.write(record)
