"""Where the replay engine reads a recording from: a cassette in memory, or a cassette file.

Replay keeps in memory only what matching needs. It indexes a recording in one pass
(:meth:`RecordSource.index`): exchanges, upgrades, client frames and closes come decoded,
the server's frames as marks (their connection and time), undecoded. A connection's server
messages are read again, a step at a time, when they are played (:meth:`RecordSource.after`).
For a file, that is what keeps replay's memory flat whatever the cassette's size.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from wsreplay.cassette import Cassette, CassetteError, CassetteReader, ServerFrameMark, open_cassette
from wsreplay.records import CassetteHeader, Record

__all__ = ["CassetteFile", "MemorySource", "RecordSource", "ServerFrameMark", "open_source", "truncation_warning"]


class RecordSource(Protocol):
    """A recording the replay engine reads; positions are opaque, increasing numbers."""

    header: CassetteHeader
    name: str

    def index(self) -> Iterator[tuple[int, int, Record | ServerFrameMark]]:
        """``(start, end, record)`` for every record in order: where it starts, where the next
        begins; server frames may come as :data:`ServerFrameMark`."""
        ...

    def after(self, record_id: int, position: int) -> Iterator[Record]:
        """The records of connection `record_id` from `position` (an `end` that `index` gave) on."""
        ...

    def records(self) -> Iterator[Record]:
        """Every record, in order."""
        ...


class MemorySource:
    """A cassette already in memory; positions are indexes in its list of records."""

    def __init__(self, cassette: Cassette) -> None:
        self.header = cassette.header
        self.name = cassette.path or "cassette"
        self._records = cassette.records
        self._by_id: dict[int, tuple[list[int], list[Record]]] | None = None

    def index(self) -> Iterator[tuple[int, int, Record | ServerFrameMark]]:
        for position, record in enumerate(self._records):
            yield position, position + 1, record

    def after(self, record_id: int, position: int) -> Iterator[Record]:
        if self._by_id is None:
            self._by_id = {}
            for index, record in enumerate(self._records):
                positions, records = self._by_id.setdefault(record.id, ([], []))
                positions.append(index)
                records.append(record)
        positions, records = self._by_id.get(record_id, ([], []))
        return iter(records[bisect.bisect_left(positions, position) :])

    def records(self) -> Iterator[Record]:
        return iter(self._records)


class CassetteFile:
    """A cassette file, read again where needed; positions are byte offsets.

    Indexing checks every record, so a corrupt one is reported before anything is served.
    Reading a connection again passes over the other connections' records undecoded.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = str(path)
        reader, handle = open_cassette(self.path)
        handle.close()
        self.header = reader.header
        self.truncated_at: int | None = None
        """Where an incomplete last record begins (a recorder killed mid-write), once indexed."""
        self.records_indexed = 0

    def index(self) -> Iterator[tuple[int, int, Record | ServerFrameMark]]:
        reader, handle = open_cassette(self.path)
        with handle:
            for entry in reader.positioned():
                self.records_indexed += 1
                yield entry
        self.truncated_at = reader.truncated_at

    def after(self, record_id: int, position: int) -> Iterator[Record]:
        try:
            handle = open(self.path, "rb")
        except OSError as exc:
            raise CassetteError(f"cannot read {self.path} again: {exc.strerror}") from None
        with handle:
            yield from CassetteReader(handle, self.name, resume=(self.header, position)).of_connection(record_id)

    def records(self) -> Iterator[Record]:
        reader, handle = open_cassette(self.path)
        with handle:
            yield from reader


def open_source(cassette: Cassette | RecordSource) -> RecordSource:
    """The source for a cassette in memory, or the source itself."""
    return MemorySource(cassette) if isinstance(cassette, Cassette) else cassette


def truncation_warning(cassette: CassetteFile) -> str:
    """The warning for a cassette indexed up to an incomplete last record."""
    return (
        f"{cassette.name} ends with an incomplete record at byte {cassette.truncated_at}; "
        f"using the {cassette.records_indexed} complete records"
    )
