"""Reading logs: ``open_log`` (merged, filtered, any format) and the original reader protocol."""

from __future__ import annotations

import heapq
import math
import numbers
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mcl.checks import check_flag
from mcl.exceptions import (
    ArgumentError,
    ArgumentRangeError,
    ArgumentTypeError,
    LogError,
    LogIOError,
    LogNotFound,
    MessageError,
    MessageIOError,
    as_io_error,
)
from mcl.log.formats import LogWriter, open_source  # LogWriter lives in formats; kept importable here
from mcl.log.record import (
    LogSource,
    LogSummary,
    Record,
    TopicFilter,
    elapsed_key,
    make_topic_filter,
    seconds_to_ns,
)
from mcl.message import GenericMessage, Message, decode, get_message_type, message_types, type_name_of, unpack
from mcl.timeutil import NS_PER_S

__all__ = ["LogReader", "open_log", "ReadFile", "ReadDirectory", "LogWriter", "check_time_window", "payload_converter"]

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
        # The options first (ArgumentError naming each), so a bad one opens no file.
        check_flag(strict, "strict")
        topic_filter: TopicFilter | None = topics if callable(topics) else make_topic_filter(topics)
        start_ns = seconds_to_ns(start, "start")
        end_ns = seconds_to_ns(end, "end")
        if start_ns is not None and end_ns is not None and start_ns > end_ns:
            raise LogError(f"start {start} s is after end {end} s")
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
        self.topic_filter = topic_filter
        self.start_ns = start_ns
        self.end_ns = end_ns
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

    def last_ns(self) -> int | None:
        """Elapsed time (from the shared origin) of the last record of the selected topics; None if none.

        From the summaries' per-topic times (a native log's index: no record is read).
        """
        keep = self.topic_filter
        ends = [
            stats.last_ns + shift
            for summary, shift in zip(self.summaries(), self._shifts)
            for topic, stats in summary.topics.items()
            if stats.last_ns is not None and (keep is None or keep(topic))
        ]
        return max(ends) if ends else None

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


def check_time_window(min_time: Any, max_time: Any) -> None:
    """The original MCL checks of ``min_time`` / ``max_time`` (float seconds, inclusive).

    Each is None (no bound) or a number >= 0: another type is an
    :class:`~mcl.exceptions.ArgumentTypeError` (a TypeError), a negative or NaN
    value an :class:`~mcl.exceptions.ArgumentRangeError` (a ValueError, and a
    TypeError as in the original); ``min_time > max_time`` is an
    :class:`~mcl.exceptions.ArgumentError` (a ValueError). 0 is a bound like
    any other: ``max_time=0`` keeps the records at 0 s only (the original
    read it as "no limit").
    """
    for name, value in (("min_time", min_time), ("max_time", max_time)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ArgumentTypeError(f"{name} must be None or a number of seconds >= 0, not a {type(value).__name__}")
        if math.isnan(value) or value < 0:
            raise ArgumentRangeError(f"{name} must be a number of seconds >= 0, not {value!r}")
    if min_time is not None and max_time is not None and min_time > max_time:
        raise ArgumentError(f"min_time {min_time!r} s is after max_time {max_time!r} s")


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be True or False, not {value!r}")
    return value


def _message_type(message: Any) -> tuple[bool, type[Message] | None]:
    """(decode, forced type) for the original ``message`` argument."""
    if isinstance(message, bool):
        return message, None
    if isinstance(message, str):
        try:
            return True, get_message_type(message)
        except MessageError:
            known = ", ".join(sorted(message_types())) or "none"
            raise ArgumentTypeError(
                f"message={message!r}: no message type of that name is registered (registered: {known})"
            ) from None
    if isinstance(message, type) and issubclass(message, Message) and message not in (Message, GenericMessage):
        return True, message
    raise ArgumentTypeError(
        f"message must be True, False, a Message subclass or the name of one, not {message!r}"
    )


def payload_converter(message: Any = False, raw: bool = False) -> Callable[[bytes], Any]:
    """What ``read()`` makes of payload bytes for the original ``message`` argument (checked here)."""
    decode_it, forced = _message_type(message)
    if _check_bool("raw", raw):
        return bytes
    if forced is not None:
        make = forced._from_map
        name = forced.type_name

        def as_forced(payload: bytes) -> Any:
            value = unpack(payload)
            return make(name, value) if isinstance(value, dict) else value

        return as_forced
    return decode if decode_it else unpack


def _check_source(source: Any, what: str) -> PathLike:
    if not isinstance(source, (str, os.PathLike)):
        raise ArgumentTypeError(f"{what} must be a path (str or os.PathLike), not a {type(source).__name__}")
    return source


def _header_of(reader: LogReader) -> dict[str, Any] | None:
    """The original ``header`` dict of an MCL_LOG 1.0 file or series, None otherwise."""
    from mcl.log.mcl1 import Mcl1Source, read_header

    sources = reader.sources
    if len(sources) != 1 or not isinstance(sources[0], Mcl1Source):
        return None
    source = sources[0]
    if len(source.type_names()) != 1:
        return None  # a directory of several files has no single header
    first = source.files[0]
    try:
        with open(first, encoding="latin-1", newline="") as fp:
            header = read_header(fp, first)
            if header is None:
                return None
            fp.seek(0)
            text = fp.read(header.end)
    except OSError as exc:
        raise LogIOError(f"{first}: cannot read: {exc.strerror}", path=first) from None
    type_name = header.type_name
    kind: Any = None
    if type_name is not None:
        kind = message_types().get(type_name, type_name)
    return {
        "text": text,
        "end": header.end,
        "version": header.version,
        "revision": header.revision or None,
        "created": header.created,
        "type": kind,
    }


class ReadFile:
    """The original MCL reader: ``read()``, ``is_data_pending()``, ``reset()``, ``header``.

    ``ReadFile(filename, min_time=None, max_time=None, message=False)`` reads
    an MCL_LOG 1.0 file or split series (``dir/Name`` for ``Name_000.log``,
    ``Name_001.log``, ...) and, beyond the original, any log mcl reads (a
    directory, a native log). ``read()`` returns ``{'elapsed_time': float s,
    'topic': str, 'payload': ...}``, or None at the end (and on every later
    call). The payload is:

    - ``message=False``: the unpacked value (a dict for a message, as the original);
    - ``message=True``: a :class:`~mcl.Message` of the type named in the
      payload (a :class:`~mcl.GenericMessage` when that type is not
      registered; raw data stays a plain value);
    - ``message=SomeType`` or ``message="SomeType"``: every message read as
      that registered type, whatever its payload names (raw data stays a
      plain value);
    - the raw payload bytes with ``raw=True`` (mcl; what a replay publishes).

    ``min_time`` / ``max_time`` bound the elapsed time in seconds,
    inclusive; ``max_time=0`` is a bound (0 s), not "no limit" as in the
    original. ``ignore_raw=True`` skips payloads that are not named messages.
    ``header`` is the header of an MCL_LOG 1.0 file or series:
    ``{'version', 'revision' (None if empty), 'created' (the time origin as
    written), 'type' (the registered class, the type name when it is not
    registered, None for raw data), 'text', 'end'}``, and None for other logs.

    Errors are :class:`~mcl.MclError` and the built-in types the original
    raised: a missing log is a FileNotFoundError (an IOError), a file that is
    not a log an OSError, a bad argument a TypeError / ValueError.
    """

    def __init__(
        self,
        filename: PathLike,
        min_time: float | None = None,
        max_time: float | None = None,
        message: bool | str | type[Message] = False,
        *,
        raw: bool = False,
        ignore_raw: bool = False,
        topics: Iterable[str] | None = None,
    ) -> None:
        _check_source(filename, "filename")
        check_time_window(min_time, max_time)
        self._convert = payload_converter(message, raw)
        self._forced = _message_type(message)[1]
        self._ignore_raw = _check_bool("ignore_raw", ignore_raw)
        self._min_time = min_time
        self._max_time = max_time
        self._message = message
        try:
            self._reader = open_log(filename, topics=topics, start=min_time, end=max_time)
        except LogError as exc:
            raise as_io_error(exc) from None
        self._it: Iterator[Record] = iter(())
        self._next: Record | None = None
        try:
            self._header = _header_of(self._reader)
            self.reset()
        except BaseException:
            self._reader.close()
            raise

    @property
    def reader(self) -> LogReader:
        """The :class:`LogReader` underneath."""
        return self._reader

    @property
    def header(self) -> dict[str, Any] | None:
        """The MCL_LOG 1.0 header (see the class), None when the log has none."""
        return self._header

    @property
    def min_time(self) -> float | None:
        """Records before this elapsed time (s) are skipped; None: no bound."""
        return self._min_time

    @property
    def max_time(self) -> float | None:
        """Records after this elapsed time (s) are not read; None: no bound."""
        return self._max_time

    @property
    def ignore_raw(self) -> bool:
        """True when payloads that are not named messages are skipped."""
        return self._ignore_raw

    @property
    def forced_type(self) -> type[Message] | None:
        """The message type forced by ``message=``, None when payloads keep their own."""
        return self._forced

    def _advance(self) -> Record | None:
        try:
            for record in self._it:
                if self._ignore_raw and type_name_of(record.payload) is None:
                    continue
                return record
        except LogError as exc:
            raise as_io_error(exc) from None
        return None

    def read(self) -> dict[str, Any] | None:
        """The next record as a dict, or None at the end."""
        record = self._next
        if record is None:
            return None
        self._next = self._advance()
        try:
            payload = self._convert(record.payload)
        except MessageError as exc:  # the original raised IOError for a line it could not parse
            raise MessageIOError(f"record at {record.elapsed_ns / NS_PER_S:.6f} s on topic {record.topic!r}: {exc}") from None
        return {"elapsed_time": record.elapsed_ns / NS_PER_S, "topic": record.topic, "payload": payload}

    def is_data_pending(self) -> bool:
        """True exactly when the next read() returns a record."""
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
    """The original ``ReadDirectory``: every log file of a directory, merged in time order.

    ``ReadDirectory(source, min_time=None, max_time=None, message=False,
    ignore_raw=False)``: `source` must be a directory (a path of another
    type is a TypeError, a missing path a FileNotFoundError, a file an
    OSError); `message` and `ignore_raw` must be bools (TypeError).
    Raw-typed records are included unless ``ignore_raw=True`` (the original
    skipped raw files by default). ``messages`` lists the message types of
    the files (registered classes, or names when not registered) when
    ``message=True``, else None.
    """

    def __init__(
        self,
        source: PathLike,
        min_time: float | None = None,
        max_time: float | None = None,
        message: bool = False,
        ignore_raw: bool = False,
        *,
        raw: bool = False,
        topics: Iterable[str] | None = None,
    ) -> None:
        _check_source(source, "source")
        _check_bool("message", message)
        _check_bool("ignore_raw", ignore_raw)
        if not os.path.exists(source):
            raise LogNotFound(os.fspath(source))
        if not os.path.isdir(source):
            where = os.fspath(source)
            raise LogIOError(f"{where}: not a directory (ReadDirectory reads a log directory; use ReadFile)", path=where)
        super().__init__(source, min_time, max_time, message, raw=raw, ignore_raw=ignore_raw, topics=topics)
        self._messages = self._find_messages() if message else None

    @property
    def messages(self) -> list[Any] | None:
        """Message types of the files when ``message=True``, else None."""
        return None if self._messages is None else list(self._messages)

    def _find_messages(self) -> list[Any]:
        from mcl.log.mcl1 import Mcl1Source

        names: list[str] = []
        for source in self._reader.sources:
            if isinstance(source, Mcl1Source):
                found = [n for n in source.type_names().values() if n is not None]
            else:
                found = sorted({t for stats in source.summary().topics.values() for t in stats.types})
            names += [n for n in found if n not in names]
        registered = message_types()
        return [registered.get(name, name) for name in names]
