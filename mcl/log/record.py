"""Records and summaries shared by every log format."""

from __future__ import annotations

import operator
import re
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

from mcl.exceptions import LogError, LogExistsError
from mcl.timeutil import NS_PER_S, datetime_to_ns, ns_to_datetime, seconds_to_ns  # noqa: F401 - re-exported: their home is mcl.timeutil

__all__ = [
    "Record",
    "elapsed_key",
    "Damage",
    "TopicStats",
    "LogSummary",
    "count_record",
    "total_topics",
    "window_summary",
    "LogSource",
    "TopicFilter",
    "make_topic_filter",
    "seconds_to_ns",
    "ns_to_datetime",
    "datetime_to_ns",
    "make_log_dir",
    "remove_written",
    "open_regular_file",
    "skipped_file_damage",
]



class Record(NamedTuple):
    """One message of a log.

    elapsed_ns: nanoseconds since the log's time origin (``LogSource.origin_ns``).
    topic: the topic it was published on ('' when none).
    payload: the payload bytes exactly as received.
    """

    elapsed_ns: int
    topic: str
    payload: bytes


# The key that merges streams of records by time (heapq.merge): C speed.
elapsed_key: Callable[[Record], int] = operator.itemgetter(0)

# A topic filter is a predicate on the topic; None means every topic.
TopicFilter = Callable[[str], bool]


def make_topic_filter(
    topics: Iterable[str] | str | None,
    *,
    prefixes: Iterable[str] | str | None = None,
    exclude: Iterable[str] | str | None = None,
) -> TopicFilter | None:
    """The one topic predicate of mcl, or None when it keeps every topic.

    A topic is kept when it is one of `topics` (exact names) or starts with
    one of `prefixes` (when neither is given, every topic is a candidate),
    and no regular expression of `exclude` matches it (``re.search``).
    Raises :class:`~mcl.exceptions.ArgumentError` (a ValueError) for a bad regular expression or names that are not strings.
    """
    from mcl.checks import check_names, check_pattern

    given = check_names(topics, "topics")
    names = None if given is None else frozenset(given)
    starts = check_names(prefixes, "prefixes")
    patterns = list(check_names(exclude, "exclude") or ())
    for pattern in patterns:
        check_pattern(pattern, "exclude")  # compiles, and no nested repetition: topics come from the wire
    drop = None
    if patterns:
        try:
            drop = re.compile("|".join(f"(?:{p})" for p in patterns)).search
        except (re.error, RecursionError, OverflowError) as exc:
            from mcl.exceptions import ArgumentError

            raise ArgumentError(f"bad exclude pattern {' '.join(patterns)!r}: {exc}") from None
    if starts is None and drop is None:
        return None if names is None else names.__contains__
    if names is None and starts is None:
        return lambda topic: drop(topic) is None  # type: ignore[misc]

    def keep(topic: str) -> bool:
        if names is not None or starts is not None:
            if not ((names is not None and topic in names) or (starts is not None and topic.startswith(starts))):
                return False
        return drop is None or drop(topic) is None

    return keep


@dataclass(frozen=True, slots=True)
class Damage:
    """A part of a log that could not be read and was skipped."""

    path: str = ""  # the file
    reason: str = ""  # what was wrong, one line
    offset: int | None = None  # byte offset of the damage (binary formats), None if unknown
    line: int | None = None  # 1-based line (text formats), None if not a text format
    lost_bytes: int | None = None  # bytes skipped, None if unknown

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f": line {self.line}"
        if self.offset is not None:
            where += f": byte {self.offset}"
        return f"{where}: {self.reason}"


@dataclass(slots=True)
class TopicStats:
    """Counts for one topic of a log."""

    messages: int = 0  # number of records
    bytes: int = 0  # payload bytes in all
    types: set[str] = field(default_factory=set)  # message type names seen (empty for raw data)
    first_ns: int | None = None  # elapsed of the first record, None if none
    last_ns: int | None = None  # elapsed of the last record, None if none


@dataclass(slots=True)
class LogSummary:
    """What ``mcl-info`` shows about one log (one directory or file)."""

    path: str = ""
    format: str = ""  # "mcl1" or "native"
    origin_ns: int | None = None  # UTC time origin, ns since the epoch; None if unknown
    start_ns: int | None = None  # elapsed of the first record; None when empty
    end_ns: int | None = None  # elapsed of the last record; None when empty
    messages: int = 0
    size_bytes: int = 0  # size of the files on disk
    files: list[str] = field(default_factory=list)
    topics: dict[str, TopicStats] = field(default_factory=dict)
    damage: list[Damage] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)  # revision, host, user keys
    indexed: bool = False  # True if the summary came from an index without scanning
    verified: bool = False  # True if every record was read and every CRC checked (mcl-info --check)

    @property
    def duration_ns(self) -> int:
        """Time from the first to the last record (0 when empty)."""
        if self.start_ns is None or self.end_ns is None:
            return 0
        return self.end_ns - self.start_ns


def count_record(topics: dict[str, TopicStats], record: Record, type_name: str | None) -> None:
    """Add `record` (of type `type_name`, None for raw data) to the per-topic counts `topics`."""
    stats = topics.get(record.topic)
    if stats is None:
        stats = topics[record.topic] = TopicStats()
    stats.messages += 1
    stats.bytes += len(record.payload)
    if stats.first_ns is None or record.elapsed_ns < stats.first_ns:
        stats.first_ns = record.elapsed_ns
    if stats.last_ns is None or record.elapsed_ns > stats.last_ns:
        stats.last_ns = record.elapsed_ns
    if type_name is not None:
        stats.types.add(type_name)


def total_topics(summary: LogSummary) -> None:
    """Set the summary's message count and first/last elapsed from its topics."""
    summary.messages = sum(t.messages for t in summary.topics.values())
    firsts = [t.first_ns for t in summary.topics.values() if t.first_ns is not None]
    lasts = [t.last_ns for t in summary.topics.values() if t.last_ns is not None]
    summary.start_ns = min(firsts) if firsts else None
    summary.end_ns = max(lasts) if lasts else None


def window_summary(
    source: LogSource, start_ns: int | None, end_ns: int | None, *, verify: bool = False
) -> LogSummary:
    """The summary of the records of `source` from `start_ns` to `end_ns` (elapsed, inclusive; None: open).

    Files, size and metadata are the whole log's (from its own summary);
    the counts, topics, types and times are those of the window, read
    record by record (so never from an index); damage is the whole log's
    summary's and what reading the window met.
    """
    import warnings

    from mcl.exceptions import LogDamageWarning
    from mcl.message import type_name_of

    whole = source.summary(verify=verify)
    window = LogSummary(
        path=whole.path, format=whole.format, origin_ns=whole.origin_ns, size_bytes=whole.size_bytes,
        files=list(whole.files), damage=list(whole.damage), metadata=dict(whole.metadata),
        indexed=False, verified=whole.verified,
    )
    with warnings.catch_warnings(record=True) as met:
        warnings.simplefilter("always", LogDamageWarning)
        for record in source.iter_records(None, start_ns, end_ns):
            count_record(window.topics, record, type_name_of(record.payload))
    # Damage met reading the window (a chunk body an index cannot vouch for) belongs to the summary too.
    known = {(d.path, d.offset, d.line) for d in window.damage}
    for w in met:
        found = w.message
        if isinstance(found, LogDamageWarning) and (found.path, found.offset, found.line) not in known:
            known.add((found.path, found.offset, found.line))
            window.damage.append(Damage(found.path, found.reason, offset=found.offset, line=found.line))
        elif not isinstance(found, LogDamageWarning):
            warnings.warn_explicit(found, w.category, w.filename, w.lineno)  # not ours: passed on
    total_topics(window)
    return window


class LogSource(Protocol):
    """One log (a directory or a file) of some format, opened for reading.

    Formats implement this; :func:`mcl.open_log` merges several of them.
    """

    path: Path
    format: str  # "mcl1" or "native"
    origin_ns: int | None  # UTC ns since the epoch of elapsed 0, None if unknown

    def iter_records(
        self,
        topics: TopicFilter | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> Iterator[Record]:
        """Records in time order, optionally filtered; start/end inclusive, elapsed ns."""
        ...

    def summary(self, *, verify: bool = False) -> LogSummary:
        """Counts, topics, types and damage of the log; `verify` reads every record and checks every CRC."""
        ...

    def close(self) -> None:
        """Release files; idempotent."""
        ...


def make_log_dir(path: Path) -> bool:
    """Create a new log directory; refuse one that exists and holds files. True if it was created here.

    Every writer calls this first: mcl never overwrites a log (and its
    ``abort()`` removes the directory only when this created it).
    """
    if path.exists():
        if not path.is_dir() or any(path.iterdir()):
            raise LogExistsError(path)
        return False
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise LogError(f"{path}: cannot create the log directory: {exc.strerror}") from None
    return True


def remove_written(files: Iterable[Path], directory: Path | None = None) -> None:
    """A writer's ``abort()``: remove the files it wrote, then `directory` (the one it created) if now empty.

    Only these paths are touched: anything else in the directory stays (and keeps it).
    """
    for path in files:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # abort runs after another error: that one matters more
    if directory is not None:
        try:
            directory.rmdir()
        except OSError:
            pass  # not empty (someone else's file) or already gone


def open_regular_file(path: Path) -> int:
    """A read-only descriptor on `path`, which must be a regular file.

    Opened with ``O_NONBLOCK`` and checked with ``fstat`` before anything is
    read, so a FIFO, a device or a socket given as a log never blocks the
    reader: it is refused (``LogError``). The caller closes the descriptor.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise LogError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise LogError(f"{path}: not a regular file ({_file_kind(mode)}); mcl reads logs from regular files only")
        if flags & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)  # no effect on a regular file; plain reads from here on
    except BaseException:
        os.close(fd)
        raise
    return fd


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"



def skipped_file_damage(path: Path, exc: LogError, files: int = 1) -> Damage:
    """The damage entry of a log file that could not be read at all (`files`: of a series that many)."""
    reason = getattr(exc, "reason", None) or str(exc).removeprefix(f"{path}: ")
    what = "whole file unreadable" if files == 1 else f"series of {files} files unreadable"
    try:
        size: int | None = path.stat().st_size
    except OSError:
        size = None
    return Damage(
        path=str(path), reason=f"{what}: {reason}", offset=getattr(exc, "offset", None), line=getattr(exc, "line", None), lost_bytes=size
    )
