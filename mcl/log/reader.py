"""Reading logs: ``open_log`` (merged, filtered, any format) and the original reader protocol."""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from mcl.exceptions import LogError
from mcl.log.formats import DEFAULT_FORMAT, LogWriterProtocol, make_writer, open_source
from mcl.log.record import (
    LogSource,
    LogSummary,
    Record,
    TopicFilter,
    elapsed_key,
    make_topic_filter,
    seconds_to_ns,
)
from mcl.message import decode, type_name_of, unpack

__all__ = ["LogReader", "open_log", "ReadFile", "ReadDirectory", "LogWriter"]

PathLike = str | os.PathLike[str]


class LogReader:
    """Records of one or more logs merged in time order; see :func:`open_log`.

    Iterating starts from the beginning each time. ``origin_ns`` is the
    earliest time origin of the logs (UTC ns); every record's ``elapsed_ns``
    is relative to it, so logs recorded at different times merge by absolute
    time.
    """

    def __init__(
        self,
        paths: Iterable[PathLike],
        *,
        topics: Iterable[str] | str | TopicFilter | None = None,
        start: float | None = None,
        end: float | None = None,
        strict: bool = False,
    ) -> None:
        paths = list(paths)
        if not paths:
            raise LogError("no log path given")
        self.sources: list[LogSource] = []
        try:
            for path in paths:
                self.sources.append(open_source(path, strict=strict))
        except BaseException:
            self.close()
            raise
        origins = [s.origin_ns for s in self.sources if s.origin_ns is not None]
        self.origin_ns: int | None = min(origins) if origins else None
        self._shifts = [
            (s.origin_ns - self.origin_ns) if (s.origin_ns is not None and self.origin_ns is not None) else 0
            for s in self.sources
        ]
        self.topic_filter: TopicFilter | None = topics if callable(topics) else make_topic_filter(topics)
        self.start_ns = seconds_to_ns(start)
        self.end_ns = seconds_to_ns(end)
        if self.start_ns is not None and self.end_ns is not None and self.start_ns > self.end_ns:
            raise LogError(f"start {start} s is after end {end} s")
        self._closed = False

    def __iter__(self) -> Iterator[Record]:
        return self.iter_records()

    def iter_records(self, start_ns: int | None = None, end_ns: int | None = None) -> Iterator[Record]:
        """Records in time order; `start_ns` / `end_ns` (elapsed, inclusive) narrow the window further."""
        if self._closed:
            raise RuntimeError("Cannot read from a log reader once it has been closed.")
        lo = _tighter(self.start_ns, start_ns, max)
        hi = _tighter(self.end_ns, end_ns, min)
        streams = []
        for source, shift in zip(self.sources, self._shifts):
            it = source.iter_records(
                self.topic_filter,
                None if lo is None else lo - shift,
                None if hi is None else hi - shift,
            )
            streams.append(_shifted(it, shift) if shift else it)
        if len(streams) == 1:
            return streams[0]
        return heapq.merge(*streams, key=elapsed_key)

    def iter_batches(self, start_ns: int | None = None, end_ns: int | None = None) -> Iterator[Any]:
        """The records as ``pyarrow.RecordBatch``es (time_ns UTC, topic, payload); see :func:`mcl.tables.iter_batches`."""
        from mcl.tables.batches import iter_batches

        return iter_batches(self, start_ns, end_ns)

    def to_arrow(self, start_ns: int | None = None, end_ns: int | None = None) -> Any:
        """The records as one ``pyarrow.Table``; see :func:`mcl.tables.to_arrow`."""
        from mcl.tables.batches import to_arrow

        return to_arrow(self, start_ns, end_ns)

    def summaries(self) -> list[LogSummary]:
        """One summary per log given."""
        return [s.summary() for s in self.sources]

    @property
    def duration_ns(self) -> int:
        """Elapsed time of the last record (from the shared origin) over all logs."""
        ends = []
        for summary, shift in zip(self.summaries(), self._shifts):
            if summary.end_ns is not None:
                ends.append(summary.end_ns + shift)
        return max(ends) if ends else 0

    def close(self) -> None:
        """Release every log; idempotent."""
        self._closed = True
        for source in self.sources:
            source.close()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tighter(a: int | None, b: int | None, pick: Any) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return int(pick(a, b))


def _shifted(records: Iterator[Record], shift: int) -> Iterator[Record]:
    new = tuple.__new__
    for elapsed, topic, payload in records:
        yield new(Record, (elapsed + shift, topic, payload))


def open_log(
    *paths: PathLike,
    topics: Iterable[str] | str | TopicFilter | None = None,
    start: float | None = None,
    end: float | None = None,
    strict: bool = False,
) -> LogReader:
    """Open logs for reading, in any format mcl knows.

    Args:
        paths: log directories, log files or split-series prefixes; several
            are merged by absolute time.
        topics: keep only these topics (exact names, or a predicate such as
            :func:`~mcl.log.record.make_topic_filter` makes); None keeps all.
        start, end: keep records whose elapsed time (seconds from the
            earliest time origin) is within [start, end], inclusive.
        strict: raise LogFormatError on damage instead of skipping the
            damaged part with a LogDamageWarning.

    Returns a context-managed iterable of :class:`Record`.
    """
    return LogReader(paths, topics=topics, start=start, end=end, strict=strict)


def LogWriter(  # noqa: N802 - a factory that reads like the class users expect
    path: PathLike,
    format: str = DEFAULT_FORMAT,
    *,
    origin_ns: int | None = None,
    metadata: dict[str, str] | None = None,
    split_size: int | None = None,
    split_duration: float | None = None,
    **options: Any,
) -> LogWriterProtocol:
    """A new log at `path` (a directory that must not hold a log yet).

    Args:
        format: "native" (default) or "mcl1" (the original MCL text format).
        origin_ns: UTC time origin in ns since the epoch (default: now).
        metadata: free key/values (revision, host, ...) kept with the log.
        split_size: bytes per data file before a new one starts (None: no limit).
        split_duration: seconds per data file before a new one starts (None: no limit).

    The writer has ``write(topic, payload, elapsed_ns)``, ``write_record``,
    ``flush`` and ``close``, and is a context manager.
    """
    return make_writer(
        path,
        format,
        origin_ns=time.time_ns() if origin_ns is None else origin_ns,
        metadata=metadata,
        split_size=split_size,
        split_duration_ns=seconds_to_ns(split_duration),
        **options,
    )


class ReadFile:
    """The original MCL reader protocol over any log: ``read()``, ``is_data_pending()``, ``reset()``.

    ``read()`` returns ``{'elapsed_time': seconds, 'topic': str, 'payload': ...}``
    or None at the end. The payload is the unpacked value (dicts, as the
    original) by default, a :class:`~mcl.Message` with ``message=True``, or
    the raw payload bytes with ``raw=True`` (what the replay buffer uses).
    ``ignore_raw=True`` skips payloads that are not named messages, as the
    original ``ReadDirectory`` did by default.
    """

    def __init__(
        self,
        source: PathLike,
        min_time: float | None = None,
        max_time: float | None = None,
        message: bool = False,
        *,
        raw: bool = False,
        ignore_raw: bool = False,
        topics: Iterable[str] | None = None,
    ) -> None:
        if min_time is not None and min_time < 0 or max_time is not None and max_time < 0:
            raise ValueError("min_time and max_time must be non-negative seconds")
        self.min_time = min_time
        self.max_time = max_time
        self._message = message
        self._raw = raw
        self._ignore_raw = ignore_raw
        self._reader = open_log(source, topics=topics, start=min_time, end=max_time)
        self._it: Iterator[Record] = iter(())
        self._next: Record | None = None
        self.reset()

    @property
    def reader(self) -> LogReader:
        """The :class:`LogReader` underneath."""
        return self._reader

    def _advance(self) -> Record | None:
        for record in self._it:
            if self._ignore_raw and type_name_of(record.payload) is None:
                continue
            return record
        return None

    def read(self) -> dict[str, Any] | None:
        """The next record as a dict, or None at the end."""
        record = self._next
        if record is None:
            return None
        self._next = self._advance()
        if self._raw:
            payload: Any = record.payload
        elif self._message:
            payload = decode(record.payload)
        else:
            payload = unpack(record.payload)
        return {"elapsed_time": record.elapsed_ns / 1e9, "topic": record.topic, "payload": payload}

    def is_data_pending(self) -> bool:
        """True while read() has more to return."""
        return self._next is not None

    def reset(self) -> None:
        """Start again from the first record."""
        self._it = self._reader.iter_records()
        self._next = self._advance()

    def close(self) -> None:
        """Release the log; idempotent."""
        self._reader.close()

    def __enter__(self) -> ReadFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReadDirectory(ReadFile):
    """The original ``ReadDirectory``: every file of a log directory in time order.

    Raw-typed files are included unless ``ignore_raw=True``.
    """

    def __init__(
        self,
        source: PathLike,
        min_time: float | None = None,
        max_time: float | None = None,
        message: bool = False,
        *,
        raw: bool = False,
        ignore_raw: bool = False,
        topics: Iterable[str] | None = None,
    ) -> None:
        if not os.path.isdir(source):
            raise LogError(f"{source}: not a directory")
        super().__init__(source, min_time, max_time, message, raw=raw, ignore_raw=ignore_raw, topics=topics)
