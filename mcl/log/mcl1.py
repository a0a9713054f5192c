"""MCL_LOG 1.0: the text log format of the original MCL (read and write).

A log is a directory of ``<Type>.log`` files, or of split series
``<Type>_000.log``, ``<Type>_001.log``, ... Only the first file of a series
has the ``#`` header (version, revision, created = time origin, message type
or ``None`` for raw data); elapsed times continue across parts. Each data
line is::

    <elapsed %1.5f, right-justified to 12>    <'topic' left-justified to 8>    <hex msgpack>

Differences from the original reader, on purpose: type names may hold
underscores (series are found by a trailing ``_NNN``), blank lines are
skipped, unknown types do not raise, and a damaged line is skipped with a
warning instead of ending the read. ``.tmp`` files (left by an interrupted
original recorder) are not read.
"""

from __future__ import annotations

import binascii
import datetime as _dt
import gc
import heapq
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO

import msgpack

from mcl.exceptions import (
    LogDamageWarning,
    LogError,
    LogExistsError,
    LogFormatError,
    LogNotFound,
)
from mcl.log.record import (
    Damage,
    LogSummary,
    Record,
    TopicFilter,
    TopicStats,
    datetime_to_ns,
    elapsed_key,
    make_log_dir,
    ns_to_datetime,
)
from mcl.message import type_name_of

__all__ = ["Mcl1Source", "Mcl1Writer", "probe", "FORMAT"]

FORMAT = "mcl1"
VERSION = "1.0"
TIME_PADDING = 12
TOPIC_PADDING = 8
COMMENT_BLOCK = "#" + "-" * 65
_SPLIT_RE = re.compile(r"^(?P<prefix>.+)_(?P<num>\d{3,})\.log$")
_TOPIC_RE = re.compile(r"[!-~]*")  # printable ASCII without white space: the line is split on white space
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.-]|^\.")  # characters kept out of file names
_NS = 1_000_000_000
_unhexlify = binascii.unhexlify

_HEADER_TEMPLATE = """\
{block}
# MCL_LOG
#     -- version     {version}
#     -- revision    {revision}
#     -- created     {created}
#
# Each line of this file records a packet of data transmitted over the
# network. The columns in this file are:
#
#     1) The time when the data frame was received relative
#        to when this file was created.
#     2) The topic associated with the data frame.
#     3) The binary data stored as a hex string.
#
# The following data type was recorded in this file:
#
#      >>> {type_name}
#
#     <Time>    <Topic>     <Payload>
{block}
"""


@dataclass(slots=True)
class Header:
    """The header of the first file of a series."""

    version: str = VERSION
    revision: str = ""
    created: str = ""  # as written: 'YYYY-MM-DD HH:MM:SS[.ffffff]'
    type_name: str | None = None  # None for raw data
    lines: int = 0  # number of header lines
    end: int = 0  # byte offset of the first data line
    complete: bool = True  # False: the file ends inside the header (a crash cut it short)


def probe(path: Path) -> bool:
    """True if `path` looks like an MCL_LOG 1.0 log (file or directory)."""
    if path.is_dir():
        return any(p.suffix == ".log" and p.is_file() for p in path.iterdir())
    return path.suffix == ".log" or _split_parts(path) != []


def _split_parts(prefix: Path) -> list[Path]:
    """The files of a split series given by its prefix (``dir/Name``)."""
    parent = prefix.parent if str(prefix.parent) else Path(".")
    if not parent.is_dir():
        return []
    parts = []
    for p in parent.iterdir():
        m = _SPLIT_RE.match(p.name)
        if m and m.group("prefix") == prefix.name and p.is_file():
            parts.append((int(m.group("num")), p))
    return [p for _, p in sorted(parts)]


def parse_created(text: str, path: Path) -> int:
    """The 'created' header field to UTC ns since the epoch."""
    try:
        when = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise LogFormatError(path, f"header 'created' is not a date and time: {text.strip()!r}", line=5) from None
    return datetime_to_ns(when)


def read_header(fp: IO[str], path: Path) -> Header | None:
    """Parse the header at the start of `fp`; None if the file has none.

    Leaves `fp` at the first data line.
    """
    first = fp.readline()
    if not first.startswith("#"):
        fp.seek(0)
        return None
    header = Header()
    if not first.endswith("\n") and COMMENT_BLOCK.startswith(first):
        header.complete = False  # cut inside the first line
        header.lines = 1
        return header
    if first.rstrip("\r\n") != COMMENT_BLOCK:
        raise LogFormatError(path, "not an MCL_LOG 1.0 file: the first line is a comment but not the header rule", line=1)
    lineno = 1
    fields: dict[str, str] = {}
    while True:
        line = fp.readline()
        lineno += 1
        if not line.endswith("\n"):
            # Cut short while being written (the last line may be partial):
            # damage, not a foreign file.
            header.complete = False
            break
        if not line.startswith("#"):
            raise LogFormatError(path, "header is not closed by a '#---' rule", line=lineno)
        text = line[1:].strip()
        if line.rstrip("\r\n") == COMMENT_BLOCK:
            break
        if lineno == 2 and text != "MCL_LOG":
            raise LogFormatError(path, f"not an MCL_LOG file: title is {text!r}", line=2)
        if text.startswith("--"):
            key, _, value = text[2:].strip().partition(" ")
            fields[key] = value.strip()
        elif text.startswith(">>>"):
            # Files are read as latin-1; the writer writes UTF-8 type names.
            name = text[3:].strip().encode("latin-1").decode("utf-8", "replace")
            header.type_name = None if name in ("None", "") else name
    header.version = fields.get("version", "")
    if header.version != VERSION and (header.complete or "version" in fields):
        raise LogFormatError(path, f"unsupported MCL_LOG version {header.version!r} (this reader reads {VERSION})", line=3)
    header.revision = fields.get("revision", "")
    header.created = fields.get("created", "")
    header.lines = lineno
    header.end = fp.tell()
    return header


@dataclass(slots=True)
class _Series:
    """One message stream: a single file or a split series."""

    name: str
    files: list[Path]
    header: Header | None = None
    origin_ns: int | None = None
    damage: list[Damage] = field(default_factory=list)


class Mcl1Source:
    """An MCL_LOG 1.0 log opened for reading: a directory, a file or a series prefix."""

    format = FORMAT

    def __init__(self, path: str | os.PathLike[str], *, strict: bool = False) -> None:
        self.path = Path(path)
        self.strict = strict  # damage raises LogFormatError instead of warning
        self._series = self._find_series(self.path)
        for series in self._series:
            self._read_series_header(series)
        origins = [s.origin_ns for s in self._series if s.origin_ns is not None]
        self.origin_ns: int | None = min(origins) if origins else None
        self.damage: list[Damage] = []

    # -- discovery ------------------------------------------------------------------
    @staticmethod
    def _find_series(path: Path) -> list[_Series]:
        if path.is_dir():
            groups: dict[str, list[Path]] = {}
            for p in sorted(path.iterdir()):
                if p.suffix != ".log" or not p.is_file():
                    continue
                m = _SPLIT_RE.match(p.name)
                key = m.group("prefix") if m else p.stem
                groups.setdefault(key, []).append(p)
            if not groups:
                raise LogNotFound(path, "no MCL_LOG 1.0 (.log) files in this directory")
            series = []
            for name, files in groups.items():
                # `Name.log` and `Name_000.log` both present: two streams.
                singles = [f for f in files if not _SPLIT_RE.match(f.name)]
                parts = sorted((f for f in files if _SPLIT_RE.match(f.name)), key=lambda f: int(_SPLIT_RE.match(f.name).group("num")))  # type: ignore[union-attr]
                series += [_Series(name, [f]) for f in singles]
                if parts:
                    series.append(_Series(name, parts))
            # Ties in time go to the alphabetically first file.
            series.sort(key=lambda s: s.files[0].name)
            return series
        if path.is_file():
            return [_Series(path.stem, [path])]
        parts = _split_parts(path)
        if parts:
            return [_Series(path.name, parts)]
        raise LogNotFound(path)

    def _read_series_header(self, series: _Series) -> None:
        first = series.files[0]
        try:
            with open(first, encoding="latin-1", newline="") as fp:
                header = read_header(fp, first)
        except OSError as exc:
            raise LogError(f"{first}: cannot read: {exc.strerror}") from None
        series.header = header
        if header is not None and (header.complete or header.created):
            series.origin_ns = parse_created(header.created, first)

    # -- reading --------------------------------------------------------------------
    @property
    def files(self) -> list[Path]:
        return [f for s in self._series for f in s.files]

    def type_names(self) -> dict[str, str | None]:
        """Series name -> message type named in its header (None for raw)."""
        return {s.name: (s.header.type_name if s.header else None) for s in self._series}

    def iter_records(
        self,
        topics: TopicFilter | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> Iterator[Record]:
        """Records of every series merged in time order (ties: file order)."""
        streams = [self._iter_series(s, topics, start_ns, end_ns) for s in self._series]
        if len(streams) == 1:
            return streams[0]
        return heapq.merge(*streams, key=elapsed_key)

    def _iter_series(
        self,
        series: _Series,
        topics: TopicFilter | None,
        start_ns: int | None,
        end_ns: int | None,
    ) -> Iterator[Record]:
        shift = 0
        if series.origin_ns is not None and self.origin_ns is not None:
            shift = series.origin_ns - self.origin_ns
        blocks = chain.from_iterable(
            self._iter_blocks(path, index == 0, shift, topics, start_ns, end_ns)
            for index, path in enumerate(series.files)
        )
        # Records are parsed a block at a time; flattening in C keeps the
        # per-record cost off the Python interpreter.
        return chain.from_iterable(blocks)

    def _iter_blocks(
        self,
        path: Path,
        first: bool,
        shift: int,
        topics: TopicFilter | None,
        start_ns: int | None,
        end_ns: int | None,
    ) -> Iterator[list[Record]]:
        """The records of one file, a list per block of about ``_CHUNK_BYTES``."""
        lineno = 0
        body = 0  # byte offset of the first data line
        # A file that starts a stream without a header must start with a
        # record, or it is not a log at all (rather than a damaged one).
        headless = first
        try:
            if first:
                with open(path, encoding="latin-1", newline="") as text:
                    header = read_header(text, path)
                if header is not None:
                    lineno, body, headless = header.lines, header.end, False
                    if not header.complete:
                        self._report(path, lineno, "file ends inside the header (cut short); no records", header.end)
                        return
            fp = open(path, "rb")
        except OSError as exc:
            raise LogError(f"{path}: cannot read: {exc.strerror}") from None
        window = None if start_ns is None and end_ns is None else (
            -(1 << 62) if start_ns is None else start_ns,
            1 << 62 if end_ns is None else end_ns,
        )
        state = _FileState(path, shift, topics, window, headless)
        with fp:
            fp.seek(body)
            carry = b""
            while True:
                chunk = fp.read(_CHUNK_BYTES)
                if not chunk:
                    break
                data = carry + chunk if carry else chunk
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    carry = data
                    continue
                block, carry = (data, b"") if cut == len(data) else (data[:cut], data[cut:])
                records = state.parse_block(block)
                if records is None:  # damage, blank lines or empty payloads in the block
                    records = list(self._parse_lines(state, block.split(b"\n")[:-1], lineno, complete=True))
                lineno += block.count(b"\n")
                yield records
            if carry:  # the last line has no newline: maybe cut while being written
                yield list(self._parse_lines(state, [carry], lineno, complete=False))

    def _parse_lines(self, state: _FileState, lines: list[bytes], lineno: int, *, complete: bool) -> Iterator[Record]:
        """Line by line, reporting damage (the slow path of ``_FileState.parse_block``)."""
        path = state.path
        for raw in lines:
            lineno += 1
            line = raw.decode("latin-1") + ("\n" if complete else "")
            try:
                t, topic, hexpayload = line.split()
                if topic[0] != "'" or topic[-1] != "'" or len(topic) < 2:
                    raise ValueError("topic is not quoted")
                elapsed = round(float(t) * _NS) + state.shift
                payload = bytes.fromhex(hexpayload)
            except (ValueError, IndexError, OverflowError):
                if not line.strip():
                    continue  # blank line: the original choked on these
                empty = _parse_empty_payload(line)
                if empty is None:
                    # A last line without its newline was cut while being written.
                    self._damaged(path, lineno, line, state.good, state.headless, truncated=not complete)
                    continue
                elapsed = empty[0] + state.shift
                topic, payload = empty[1], b""
            if not complete and not _complete_msgpack(payload):
                self._damaged(path, lineno, line, state.good, state.headless, truncated=True)
                continue
            state.good += 1
            window = state.window
            if (window is None or window[0] <= elapsed <= window[1]) and (
                state.topics is None or state.topics(topic[1:-1])
            ):
                yield tuple.__new__(Record, (elapsed, topic[1:-1], payload))

    def _damaged(self, path: Path, lineno: int, line: str, good: int, headless: bool, truncated: bool = False) -> None:
        if headless and good == 0:
            # No header and the first non-blank line is not a record:
            # this is not a log at all, not a damaged one.
            raise LogFormatError(path, "not an MCL_LOG 1.0 file (no header and the first line is not a record)", line=lineno)
        reason = "line cut short (truncated tail)" if truncated else f"line is not a record: {line[:60].strip()!r}"
        self._report(path, lineno, reason, len(line))

    def _report(self, path: Path, lineno: int, reason: str, lost_bytes: int | None) -> None:
        """Damage: raise in strict mode, else remember it and warn (the read goes on)."""
        if self.strict:
            raise LogFormatError(path, reason, line=lineno)
        self.damage.append(Damage(path=str(path), reason=reason, line=lineno, lost_bytes=lost_bytes))
        warnings.warn(LogDamageWarning(path, reason + "; skipped", line=lineno), stacklevel=3)

    def summary(self) -> LogSummary:
        """Scan the whole log (MCL_LOG 1.0 has no index)."""
        summary = LogSummary(path=str(self.path), format=FORMAT, origin_ns=self.origin_ns)
        summary.files = [str(f) for f in self.files]
        summary.size_bytes = sum(f.stat().st_size for f in self.files)
        revisions = {s.header.revision for s in self._series if s.header and s.header.revision}
        if revisions:
            summary.metadata["revision"] = ", ".join(sorted(revisions))
        self.damage = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LogDamageWarning)
            for series in self._series:
                header_type = series.header.type_name if series.header else None
                for rec in self._iter_series(series, None, None, None):
                    stats = summary.topics.get(rec.topic)
                    if stats is None:
                        stats = summary.topics[rec.topic] = TopicStats()
                    stats.messages += 1
                    stats.bytes += len(rec.payload)
                    if stats.first_ns is None or rec.elapsed_ns < stats.first_ns:
                        stats.first_ns = rec.elapsed_ns
                    if stats.last_ns is None or rec.elapsed_ns > stats.last_ns:
                        stats.last_ns = rec.elapsed_ns
                    if header_type is not None:
                        stats.types.add(header_type)
                    else:
                        name = type_name_of(rec.payload)
                        if name is not None:
                            stats.types.add(name)
        summary.damage = list(self.damage)
        summary.messages = sum(t.messages for t in summary.topics.values())
        firsts = [t.first_ns for t in summary.topics.values() if t.first_ns is not None]
        lasts = [t.last_ns for t in summary.topics.values() if t.last_ns is not None]
        summary.start_ns = min(firsts) if firsts else None
        summary.end_ns = max(lasts) if lasts else None
        return summary

    def close(self) -> None:
        """Nothing stays open between reads; kept for the LogSource protocol."""

    def __enter__(self) -> Mcl1Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_empty_payload(line: str) -> tuple[int, str] | None:
    """(elapsed ns, quoted topic) of a line whose payload is empty (no hex column), else None."""
    parts = line.split()
    if len(parts) != 2 or len(parts[1]) < 2 or parts[1][0] != "'" or parts[1][-1] != "'" or not line.endswith("\n"):
        return None
    try:
        return round(float(parts[0]) * _NS), parts[1]
    except (ValueError, OverflowError):
        return None


_CHUNK_BYTES = 1 << 20  # read size of the block parser


class _FileState:
    """What the block parser of one file keeps between blocks."""

    __slots__ = ("path", "shift", "topics", "window", "headless", "good", "_topic_cache")

    def __init__(
        self,
        path: Path,
        shift: int,
        topics: TopicFilter | None,
        window: tuple[int, int] | None,
        headless: bool,
    ) -> None:
        self.path = path
        self.shift = shift  # ns added to every elapsed time (series origin - log origin)
        self.topics = topics
        self.window = window  # (lo, hi) elapsed ns inclusive, None for all
        self.headless = headless
        self.good = 0  # records read so far
        # quoted topic bytes -> (topic, kept by the filter), None if not a quoted topic
        self._topic_cache: dict[bytes, tuple[str, bool] | None] = {}

    def _topic(self, token: bytes) -> tuple[str, bool] | None:
        if len(token) < 2 or token[0] != 0x27 or token[-1] != 0x27:  # 0x27 is "'"
            entry = None
        else:
            topic = token[1:-1].decode("latin-1")
            entry = (topic, self.topics is None or bool(self.topics(topic)))
        self._topic_cache[token] = entry
        return entry

    def parse_block(self, block: bytes) -> list[Record] | None:
        """Records of a block of whole lines, or None when a line is not a plain record.

        The fast path: one ``split`` for the whole block, then the three
        columns are converted column by column. Any surprise (blank line,
        empty payload, damage) returns None and the caller parses the block
        line by line, which reports damage with its line number.
        """
        # The cyclic GC would walk the growing lists of new tuples several
        # times per block (a third of the read time); nothing here can form a
        # cycle, so it is paused while the block is converted.
        if not gc.isenabled():
            return self._parse_block(block)
        gc.disable()
        try:
            return self._parse_block(block)
        finally:
            gc.enable()

    def _parse_block(self, block: bytes) -> list[Record] | None:
        tokens = block.split()
        count = block.count(b"\n")
        if len(tokens) != 3 * count:
            return None
        cache = self._topic_cache
        entries = []
        for token in set(tokens[1::3]):
            entry = cache[token] if token in cache else self._topic(token)
            if entry is None:
                return None
            entries.append(entry)
        try:
            shift = self.shift
            elapsed = [round(float(t) * _NS) + shift for t in tokens[0::3]]
            payloads = list(map(_unhexlify, tokens[2::3]))
        except (ValueError, OverflowError, binascii.Error):  # OverflowError: 'inf' as a time
            return None
        self.good += count
        names = [cache[token][0] for token in tokens[1::3]]  # type: ignore[index]
        if self.window is None and all(kept for _, kept in entries):
            return list(map(Record, elapsed, names, payloads))
        lo, hi = self.window if self.window is not None else (-(1 << 62), 1 << 62)
        wanted = {name for name, kept in entries if kept}
        return [
            Record(t, name, payload)
            for t, name, payload in zip(elapsed, names, payloads)
            if lo <= t <= hi and name in wanted
        ]


def _complete_msgpack(payload: bytes) -> bool:
    try:
        msgpack.unpackb(payload, raw=True, strict_map_key=False, ext_hook=lambda c, d: None)
    except Exception:
        return False
    return True


def format_line(elapsed_ns: int, topic: str, payload: bytes) -> str:
    """One data line, exactly as the original WriteFile wrote it."""
    time_str = ("%1.5f" % (elapsed_ns / _NS)).rjust(TIME_PADDING)
    topic_str = f"'{topic}'".ljust(TOPIC_PADDING)
    return f"{time_str}    {topic_str}    {payload.hex()}\n"


def format_header(origin_ns: int, type_name: str | None, revision: str = "") -> str:
    """The header block of the first file of a series."""
    created = ns_to_datetime(origin_ns).replace(tzinfo=None)
    text = _HEADER_TEMPLATE.format(
        block=COMMENT_BLOCK,
        version=VERSION,
        revision=revision,
        created=str(created),
        type_name=" ".join(type_name.splitlines()) if type_name is not None else "None",
    )
    # The original's empty comment lines are '# ' (kept here, where editors
    # would strip the trailing space from the template).
    return "\n".join("# " if line == "#" else line for line in text.split("\n"))


class _OpenSeries:
    __slots__ = ("name", "type_name", "fp", "part", "size", "first_ns", "split", "path", "confirmed", "pending")

    def __init__(self, name: str, type_name: str | None, split: bool) -> None:
        self.name = name
        self.type_name = type_name
        self.fp: IO[str] | None = None
        self.part = 0
        self.size = 0
        self.first_ns = 0
        self.split = split
        self.path: Path | None = None  # the part file open in fp
        self.confirmed = 0  # bytes of that file known to be with the operating system (0: no line yet)
        self.pending: list[tuple[int, str, int]] = []  # lines written since: (end offset, topic, payload bytes)


class Mcl1Writer:
    """Writes an MCL_LOG 1.0 directory: one file (or split series) per message type.

    Records whose payload is not a named message go to ``RawData.log``
    (header type ``None``). Topics cannot hold white space in this format.
    """

    format = FORMAT

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        origin_ns: int,
        revision: str = "",
        split_size: int | None = None,  # bytes per file before a new part; None: no limit
        split_duration_ns: int | None = None,  # ns per file before a new part; None: no limit
        metadata: dict[str, str] | None = None,  # only 'revision' can be kept by this format
    ) -> None:
        self.path = Path(path)
        make_log_dir(self.path)
        self.origin_ns = origin_ns
        self.revision = revision or (metadata or {}).get("revision", "")
        self.split_size = split_size
        self.split_duration_ns = split_duration_ns
        self._series: dict[str | None, _OpenSeries] = {}  # type name (None: raw) -> series
        self._closed = False
        self._written: dict[str, list[int]] = {}  # topic -> [records, payload bytes] handed to the OS
        self._failure: LogError | None = None  # the first write error; later writes raise it again

    def write(self, topic: str, payload: bytes, elapsed_ns: int) -> None:
        """Append one record; `elapsed_ns` is relative to ``origin_ns``."""
        if self._closed:
            raise RuntimeError("Cannot write to a log writer once it has been closed.")
        if self._failure is not None:
            raise self._failure
        if not _TOPIC_RE.fullmatch(topic):
            raise LogError(
                f"{self.path}: topic {topic!r} holds white space or characters other than printable ASCII;"
                " MCL_LOG 1.0 cannot store it (use the native format)"
            )
        type_name = type_name_of(payload)
        series = self._series.get(type_name)
        if series is None:
            split = self.split_size is not None or self.split_duration_ns is not None
            series = self._series[type_name] = _OpenSeries(self._file_stem(type_name, split), type_name, split)
        line = format_line(elapsed_ns, topic, payload)
        try:
            if series.fp is not None and series.split and (
                (self.split_size is not None and series.size + len(line) > self.split_size and series.size > 0)
                or (self.split_duration_ns is not None and elapsed_ns - series.first_ns >= self.split_duration_ns)
            ):
                series.fp.close()
                self._confirm(series)
                series.fp = None
                series.part += 1
            if series.fp is None:
                series.fp = self._open(series)
                series.first_ns = elapsed_ns
            series.fp.write(line)
        except OSError as exc:
            raise self._fail(series, exc) from None
        series.size += len(line)
        series.pending.append((series.size, topic, len(payload)))

    def written(self) -> dict[str, tuple[int, int]]:
        """Per topic, (records, payload bytes) handed to the operating system (at the last flush).

        After a write error (disk full) every file is cut back to its size
        at the last successful flush, so this is what a reader gets back.
        """
        return {topic: (n, b) for topic, (n, b) in self._written.items()}

    def _confirm(self, series: _OpenSeries, upto: int | None = None) -> None:
        """The lines of `series` ending at or before byte `upto` (default: all) reached the OS."""
        kept = series.pending if upto is None else [line for line in series.pending if line[0] <= upto]
        written = self._written
        for end, topic, nbytes in kept:
            counts = written.get(topic)
            if counts is None:
                written[topic] = [1, nbytes]
            else:
                counts[0] += 1
                counts[1] += nbytes
        if kept:
            series.confirmed = kept[-1][0]
        series.pending.clear()

    def _fail(self, series: _OpenSeries, exc: OSError) -> LogError:
        """A write error: cut every file back to what was flushed, drop what is buffered."""
        where = series.path if series.path is not None else self.path
        error = LogError(f"{where}: cannot write: {exc.strerror or exc}")
        if self._failure is None:
            self._failure = error
        for s in self._series.values():
            self._discard(s)
        return error

    def _discard(self, series: _OpenSeries) -> None:
        """Keep the whole lines that reached the file, cut the rest off, close it."""
        fp, series.fp = series.fp, None
        if fp is None:
            return
        try:
            if fp.closed:  # its close failed (disk full when a split part ended): cut it by name
                if series.path is not None:
                    self._confirm(series, os.stat(series.path).st_size)
                    os.truncate(series.path, series.confirmed)
            else:
                fd = fp.fileno()
                self._confirm(series, os.fstat(fd).st_size)
                os.ftruncate(fd, series.confirmed)
                # Point the descriptor at /dev/null: closing the file flushes its buffer there.
                null = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(null, fd)
                finally:
                    os.close(null)
        except OSError:
            pass
        try:
            fp.close()
        except (OSError, ValueError):
            pass
        if series.confirmed == 0 and series.path is not None:  # not one whole line made it
            try:
                series.path.unlink()
            except OSError:
                pass

    def _file_stem(self, type_name: str | None, split: bool) -> str:
        """A file name for the series of `type_name`, unique in this log.

        The type name is kept when it is a safe file name; other characters
        become '_' (the header keeps the real name). An unsplit name ending in
        ``_NNN`` gets a trailing '_' so that readers do not take it for a part.
        """
        stem = "RawData" if type_name is None else (_UNSAFE_RE.sub("_", type_name) or "_")
        if not split and _SPLIT_RE.match(stem + ".log"):
            stem += "_"
        taken = {series.name.casefold() for series in self._series.values()}
        unique, n = stem, 1
        while unique.casefold() in taken:  # casefold: case-insensitive file systems
            unique, n = f"{stem}-{n}", n + 1
        return unique

    def write_record(self, record: Record) -> None:
        """Append a :class:`Record`."""
        self.write(record.topic, record.payload, record.elapsed_ns)

    def _open(self, series: _OpenSeries) -> IO[str]:
        name = f"{series.name}_{series.part:03d}.log" if series.split else f"{series.name}.log"
        path = self.path / name
        try:
            fp = open(path, "x", encoding="utf-8", newline="\n")
        except FileExistsError:
            raise LogExistsError(path) from None
        except OSError as exc:
            raise LogError(f"{path}: cannot create: {exc.strerror}") from None
        series.path = path
        series.size = 0
        series.confirmed = 0
        if series.part == 0:
            header = format_header(self.origin_ns, series.type_name, self.revision)
            fp.write(header)
            series.size = len(header)
        return fp

    def flush(self) -> None:
        """Push buffered lines to the operating system."""
        if self._failure is not None:
            raise self._failure
        for series in self._series.values():
            if series.fp is not None:
                try:
                    series.fp.flush()
                except OSError as exc:
                    raise self._fail(series, exc) from None
                self._confirm(series)

    def close(self) -> None:
        """Close every file; idempotent."""
        if self._closed:
            return
        self._closed = True
        failed_before = self._failure is not None
        failure: OSError | None = None
        for series in self._series.values():
            if series.fp is None:
                continue
            try:
                series.fp.flush()  # can fail on a full disk
                self._confirm(series)
            except OSError as exc:
                failure = failure or exc
                self._fail(series, exc)  # cut back and close every file
                continue
            fp, series.fp = series.fp, None
            try:
                fp.close()
            except OSError as exc:
                failure = failure or exc  # close the other files all the same
        if failure is not None and not failed_before:
            raise LogError(f"{self.path}: cannot finish writing the log: {failure.strerror or failure}") from None

    def __enter__(self) -> Mcl1Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

