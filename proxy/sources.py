"""Where the replay engine reads a recording from: a cassette in memory, or a cassette file.

Replay keeps in memory only what matching needs. It indexes a recording
(:meth:`RecordSource.index`), whole or as far as its answers need: exchanges, upgrades,
client frames and closes come decoded, the server's frames counted per connection,
undecoded. A connection's server messages are read again, a few steps at a time, when they
are played (:meth:`RecordSource.after`). For a file, that is what keeps replay's memory
flat whatever the cassette's size.
"""

from __future__ import annotations

import bisect
import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from wsreplay.cassette import Cassette, CassetteError, CassetteReader, ServerFrameMark, open_cassette
from wsreplay.records import CassetteHeader, Record

__all__ = [
    "INDEX_AS_PLAYED_BYTES",
    "CassetteFile",
    "MemorySource",
    "RecordSource",
    "ServerFrameMark",
    "open_source",
    "truncation_warning",
]

INDEX_AS_PLAYED_BYTES = 64 * 2**20
"""Cassette files larger than this are indexed as they are played, so that replay serves the
first connection without reading them whole; smaller ones are indexed before anything is
served, so that a corrupt record is refused at once."""


class RecordSource(Protocol):
    """A recording the replay engine reads; positions are opaque, increasing numbers."""

    header: CassetteHeader
    name: str
    index_as_played: bool
    """Whether replay indexes the recording as far as its answers need, rather than whole at once."""

    def index(self) -> Iterator[tuple[int, int, Record | ServerFrameMark]]:
        """``(start, end, record)`` for every record in order: where it starts, where the next
        begins; server frames may come as :data:`ServerFrameMark` (after the connection's
        records before them, before its records after them)."""
        ...

    def after(self, record_id: int, position: int) -> Iterator[Record]:
        """The records of connection `record_id` from `position` (an `end` that `index` gave) on."""
        ...

    def records(self) -> Iterator[Record]:
        """Every record, in order."""
        ...

    def indexed_warning(self) -> str | None:
        """What to warn about once `index` has run to its end (an incomplete last record), if anything."""
        ...


class MemorySource:
    """A cassette already in memory; positions are indexes in its list of records."""

    index_as_played = False
    """Its records are in memory already: indexing them is quick, and reports nothing."""

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

    def indexed_warning(self) -> str | None:
        return None


class CassetteFile:
    """A cassette file, read again where needed; positions are byte offsets.

    Indexing checks every record (a small cassette is indexed before anything is served, so a
    corrupt one is refused at once). Reading a connection again passes over the other
    connections' records undecoded, through one handle kept open: a step at a time, never
    two at once.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = str(path)
        reader, handle = open_cassette(self.path)
        with handle:
            self.size = os.fstat(handle.fileno()).st_size
        self.index_as_played = self.size > INDEX_AS_PLAYED_BYTES
        self.header = reader.header
        self._reading: BinaryIO | None = None
        self.truncated_at: int | None = None
        """Where an incomplete last record begins (a recorder killed mid-write), once indexed."""
        self.records_indexed = 0

    def index(self) -> Iterator[tuple[int, int, Record | ServerFrameMark]]:
        reader, handle = open_cassette(self.path)
        with handle:
            for entry in reader.positioned():
                record = entry[2]
                self.records_indexed += record[1] if type(record) is tuple else 1
                yield entry
        self.truncated_at = reader.truncated_at

    def after(self, record_id: int, position: int) -> Iterator[Record]:
        handle = self._reading
        if handle is None:
            try:
                handle = self._reading = open(self.path, "rb")
            except OSError as exc:
                raise CassetteError(f"cannot read {self.path} again: {exc.strerror}") from None
            weakref.finalize(self, handle.close)
        return CassetteReader(handle, self.name, resume=(self.header, position)).of_connection(record_id)

    def records(self) -> Iterator[Record]:
        reader, handle = open_cassette(self.path)
        with handle:
            yield from reader

    def indexed_warning(self) -> str | None:
        return None if self.truncated_at is None else truncation_warning(self)


def open_source(cassette: Cassette | RecordSource) -> RecordSource:
    """The source for a cassette in memory, or the source itself."""
    return MemorySource(cassette) if isinstance(cassette, Cassette) else cassette


def truncation_warning(cassette: CassetteFile) -> str:
    """The warning for a cassette indexed up to an incomplete last record."""
    return (
        f"{cassette.name} ends with an incomplete record at byte {cassette.truncated_at}; "
        f"using the {cassette.records_indexed} complete records"
    )
