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
original recorder) are not read. A ``.log`` file of a directory that is not
an MCL_LOG 1.0 file (a ``notes.log``, a file zero-filled by a power loss: no
header and a first line that is not a record; another header; a FIFO) is
skipped with a warning and the other files are read. A `created` date that
is not a date in the ``i64`` ns range (1678 to 2261) leaves the series
without a time origin (a warning; its records are kept). Reading is linear
in the file size; a line over ``MAX_LINE_BYTES`` (256 MiB) is skipped as
damage without being held in memory.
"""

from __future__ import annotations

import binascii
import datetime as _dt
import gc
import heapq
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO

import msgpack

from mcl.exceptions import (
    ArgumentError,
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
    count_record,
    datetime_to_ns,
    elapsed_key,
    make_log_dir,
    remove_written,
    ns_to_datetime,
    open_regular_file,
    skipped_file_damage,
    total_topics,
)
from mcl.message import type_name_of
from mcl.timeutil import NS_PER_S

__all__ = ["Mcl1Source", "Mcl1Writer", "WriteFile", "format_header", "format_line", "probe", "FORMAT"]

FORMAT = "mcl1"
VERSION = "1.0"
TIME_PADDING = 12
TOPIC_PADDING = 8
COMMENT_BLOCK = "#" + "-" * 65
_SPLIT_RE = re.compile(r"^(?P<prefix>.+)_(?P<num>\d{3,})\.log$")
MAX_TYPES = 256  # one open file per type: a writer that records from a bus takes no more types
MAX_TYPE_CHARS = 200  # a file is named after its type: a longer name is not storable
_TOPIC_RE = re.compile(r"[!-~]*")  # printable ASCII without white space: the line is split on white space
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.-]|^\.")  # characters kept out of file names
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_HEADER_LINE_LIMIT = 4096  # characters of a header line read at most
# A data line longer than this (a payload of 128 MiB as hex) is damage: it is
# skipped without being held in memory. Bounds the reader's memory per file.
MAX_LINE_BYTES = 1 << 28
_PEEK_BYTES = 1 << 16  # bytes read at open to check that a file without a header starts with a record
_RECORD_START_RE = re.compile(rb"\s*[-+0-9.eEinfatyINFATY]+\s+'[!-~]*'(\s+[0-9a-fA-F]*)?")
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
        raise LogFormatError(path, f"header 'created' is not a date and time: {text.strip()[:60]!r}", line=5) from None
    ns = datetime_to_ns(when)
    if not _I64_MIN <= ns <= _I64_MAX:
        raise LogFormatError(
            path, f"header 'created' {text.strip()!r} is outside the years 1678 to 2261 (i64 ns since 1970)", line=5
        )
    return ns


def read_header(fp: IO[str], path: Path) -> Header | None:
    """Parse the header at the start of `fp`; None if the file has none.

    Leaves `fp` at the first data line.
    """
    first = fp.readline(_HEADER_LINE_LIMIT)
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
        line = fp.readline(_HEADER_LINE_LIMIT)
        lineno += 1
        if len(line) == _HEADER_LINE_LIMIT and not line.endswith("\n"):
            raise LogFormatError(path, f"header line longer than {_HEADER_LINE_LIMIT} characters", line=lineno)
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
        self.skipped: list[Damage] = []  # files that are not MCL_LOG 1.0 files at all (whole series skipped)
        found = self._find_series(self.path)
        self._series: list[_Series] = []
        failures: list[LogError] = []
        for series in found:
            try:
                self._read_series_header(series)
            except LogError as exc:
                # One foreign or unreadable file (notes.log, a zero-filled file)
                # must not hide the other series of the log.
                if strict or len(found) == 1:
                    raise
                failures.append(exc)
                self.skipped.append(skipped_file_damage(series.files[0], exc, len(series.files)))
                continue
            self._series.append(series)
        if not self._series:
            raise failures[0]
        origins = [s.origin_ns for s in self._series if s.origin_ns is not None]
        self.origin_ns: int | None = min(origins) if origins else None
        self.damage: list[Damage] = []

    # -- discovery ------------------------------------------------------------------
    @staticmethod
    def _find_series(path: Path) -> list[_Series]:
        if path.is_dir():
            groups: dict[str, list[Path]] = {}
            for p in sorted(path.iterdir()):
                if p.suffix != ".log" or p.is_dir():  # a FIFO named .log is reported (and skipped) by the reader
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
        """The header of a series' first file, or a check that a file without one starts with a record.

        LogFormatError if the file is not an MCL_LOG 1.0 file; a `created`
        that is not a usable date is damage (the origin is unknown, the
        records are kept).
        """
        first = series.files[0]
        try:
            with open_text(first) as fp:
                header = read_header(fp, first)
                if header is None:
                    _check_first_record(fp, first)
        except OSError as exc:
            raise LogError(f"{first}: cannot read: {exc.strerror}") from None
        series.header = header
        if header is not None and (header.complete or header.created):
            try:
                series.origin_ns = parse_created(header.created, first)
            except LogFormatError as exc:
                series.damage.append(
                    Damage(path=str(first), reason=f"{exc.reason}: the time origin is unknown", line=exc.line)
                )

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
        for damage in self.skipped + [d for series in self._series for d in series.damage]:
            self._warn(damage)
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
        """The records of one file, a list per block of about ``_CHUNK_BYTES``.

        Linear in the file size whatever its lines: a line longer than one
        block is gathered once (its pieces joined when its newline comes),
        and a line over ``MAX_LINE_BYTES`` is skipped as damage without
        being held in memory.
        """
        lineno = 0
        body = 0  # byte offset of the first data line
        # A file that starts a stream without a header must start with a
        # record, or it is not a log at all (rather than a damaged one).
        headless = first
        try:
            if first:
                with open_text(path) as text:
                    header = read_header(text, path)
                if header is not None:
                    lineno, body, headless = header.lines, header.end, False
                    if not header.complete:
                        self._report(path, lineno, "file ends inside the header (cut short); no records", header.end)
                        return
            fp = os.fdopen(open_regular_file(path), "rb")
        except OSError as exc:
            raise LogError(f"{path}: cannot read: {exc.strerror}") from None
        except LogError as exc:  # a later part of a series that is a FIFO, or gone: skip it, read the others
            if self.strict:
                raise
            damage = skipped_file_damage(path, exc)
            self.damage.append(damage)
            self._warn(damage)
            return
        window = None if start_ns is None and end_ns is None else (
            -(1 << 62) if start_ns is None else start_ns,
            1 << 62 if end_ns is None else end_ns,
        )
        state = _FileState(path, shift, topics, window, headless)
        with fp:
            fp.seek(body)
            pieces: list[bytes] = []  # the start of a line that is longer than one block
            pending = 0  # bytes in `pieces`
            overlong = False  # inside a line over MAX_LINE_BYTES: skip to its newline
            while True:
                chunk = fp.read(_CHUNK_BYTES)
                if not chunk:
                    break
                cut = chunk.rfind(b"\n") + 1
                if cut == 0:  # no line ends in this block
                    pending += len(chunk)
                    if not overlong:
                        pieces.append(chunk)
                        if pending > MAX_LINE_BYTES:
                            overlong, pieces = True, []
                    continue
                if overlong:
                    # The newline that ends the long line is the first one of this block.
                    nl = chunk.find(b"\n") + 1
                    lineno += 1
                    self._report(path, lineno, f"line longer than {MAX_LINE_BYTES} bytes", pending + nl)
                    overlong, pending = False, 0
                    chunk, cut = chunk[nl:], cut - nl
                    if not chunk:
                        continue
                elif pieces:
                    pieces.append(chunk)
                    chunk = b"".join(pieces)
                    cut += pending
                    pieces, pending = [], 0
                block = chunk if cut == len(chunk) else chunk[:cut]
                if cut < len(chunk):
                    pieces, pending = [chunk[cut:]], len(chunk) - cut
                records = state.parse_block(block)
                if records is None:  # damage, blank lines or empty payloads in the block
                    records = list(self._parse_lines(state, block.split(b"\n")[:-1], lineno, complete=True))
                lineno += block.count(b"\n")
                yield records
            if overlong:
                self._report(path, lineno + 1, f"line longer than {MAX_LINE_BYTES} bytes (and cut short)", pending)
            elif pieces:  # the last line has no newline: maybe cut while being written
                yield list(self._parse_lines(state, [b"".join(pieces)], lineno, complete=False))

    def _parse_lines(self, state: _FileState, lines: list[bytes], lineno: int, *, complete: bool) -> Iterator[Record]:
        """Line by line, reporting damage (the slow path of ``_FileState.parse_block``)."""
        path = state.path
        for raw in lines:
            lineno += 1
            line = raw.decode("latin-1") + ("\n" if complete else "")
            parsed = _parse_line(line)
            if parsed is None:
                if not line.strip():
                    continue  # blank line: the original choked on these
                # A last line without its newline was cut while being written.
                self._damaged(path, lineno, line, state.good, state.headless, truncated=not complete)
                continue
            elapsed, topic, payload = parsed
            elapsed += state.shift
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
        damage = Damage(path=str(path), reason=reason, line=lineno, lost_bytes=lost_bytes)
        self.damage.append(damage)
        self._warn(damage)

    def _warn(self, damage: Damage) -> None:
        if self.strict:  # only skipped files and header damage get here in strict mode
            raise LogFormatError(damage.path, damage.reason, line=damage.line)
        warnings.warn(LogDamageWarning(damage.path, damage.reason + "; skipped", line=damage.line), stacklevel=4)

    def summary(self, *, verify: bool = False) -> LogSummary:
        """Scan the whole log (MCL_LOG 1.0 has no index): every line is read, so it is always verified."""
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
                    count_record(summary.topics, rec, header_type if header_type is not None else type_name_of(rec.payload))
        summary.damage = self.skipped + [d for series in self._series for d in series.damage] + self.damage
        summary.files += [d.path for d in self.skipped]
        total_topics(summary)
        summary.verified = True
        return summary

    def close(self) -> None:
        """Nothing stays open between reads; kept for the LogSource protocol."""

    def __enter__(self) -> Mcl1Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_line(line: str) -> tuple[int, str, bytes] | None:
    """(elapsed ns, quoted topic, payload) of one data line, None if it is not a record.

    A line whose time is not an i64 number of ns is not a record either.
    """
    try:
        t, topic, hexpayload = line.split()
        if topic[0] != "'" or topic[-1] != "'" or len(topic) < 2:
            raise ValueError("topic is not quoted")
        elapsed = round(float(t) * NS_PER_S)
        payload = bytes.fromhex(hexpayload)
    except (ValueError, IndexError, OverflowError):
        empty = _parse_empty_payload(line)
        if empty is None:
            return None
        elapsed, topic = empty
        payload = b""
    if not _I64_MIN <= elapsed <= _I64_MAX:
        return None
    return elapsed, topic, payload


def open_text(path: Path) -> IO[str]:
    """A regular file opened as latin-1 text with newlines kept (never blocks on a FIFO)."""
    return os.fdopen(open_regular_file(path), encoding="latin-1", newline="")


def _check_first_record(fp: IO[str], path: Path) -> None:
    """LogFormatError unless the first non-blank line of a file without a header is (or starts like) a record."""
    text = fp.read(_PEEK_BYTES)
    lineno, pos = 0, 0
    while pos < len(text):
        lineno += 1
        nl = text.find("\n", pos)
        if nl < 0:  # a line that goes on past what was read, or a last line without newline
            line = text[pos:]
            if not line.strip() or _RECORD_START_RE.match(line.encode("latin-1")):
                return
        else:
            line = text[pos : nl + 1]
            if not line.strip():
                pos = nl + 1
                continue
            if _parse_line(line) is not None:
                return
        raise LogFormatError(path, "not an MCL_LOG 1.0 file (no header and the first line is not a record)", line=lineno)


def _parse_empty_payload(line: str) -> tuple[int, str] | None:
    """(elapsed ns, quoted topic) of a line whose payload is empty (no hex column), else None."""
    parts = line.split()
    if len(parts) != 2 or len(parts[1]) < 2 or parts[1][0] != "'" or parts[1][-1] != "'" or not line.endswith("\n"):
        return None
    try:
        return round(float(parts[0]) * NS_PER_S), parts[1]
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
            elapsed = [round(float(t) * NS_PER_S) + shift for t in tokens[0::3]]
            payloads = list(map(_unhexlify, tokens[2::3]))
        except (ValueError, OverflowError, binascii.Error):  # OverflowError: 'inf' as a time
            return None
        if elapsed and (min(elapsed) - shift < _I64_MIN or max(elapsed) - shift > _I64_MAX):
            return None  # a time outside the i64 ns range: the slow path reports the line
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


def check_topic(topic: str, path: str | os.PathLike[str]) -> None:
    """Refuse a topic MCL_LOG 1.0 cannot store (the line is split on white space)."""
    if not _TOPIC_RE.fullmatch(topic):
        raise LogError(
            f"{path}: topic {topic!r} holds white space or characters other than printable ASCII;"
            " MCL_LOG 1.0 cannot store it (use the native format)"
        )


def format_line(elapsed_ns: int, topic: str, payload: bytes) -> str:
    """One data line, exactly as the original WriteFile wrote it."""
    time_str = ("%1.5f" % (elapsed_ns / NS_PER_S)).rjust(TIME_PADDING)
    topic_str = f"'{topic}'".ljust(TOPIC_PADDING)
    return f"{time_str}    {topic_str}    {payload.hex()}\n"


def format_header(origin_ns: int, type_name: str | None, revision: str = "", *, blank_line: str = "#") -> str:
    """The header block of the first file of a series, as the original WriteFile wrote it.

    `blank_line` is the style: ``"#"`` as the original writer wrote it
    (``RawUnitTestData.log``: blank comment lines ``#``, an empty revision
    leaves ``#     -- revision`` with no trailing space), or ``"# "`` as in
    the other shipped files (``UnitTestMessageA.log``, ``dataset_split/``:
    blank lines ``# ``, an empty revision followed by four spaces).
    """
    if blank_line not in ("#", "# "):
        raise ValueError(f"blank_line must be '#' or '# ', not {blank_line!r}")
    created = ns_to_datetime(origin_ns).replace(tzinfo=None)
    text = _HEADER_TEMPLATE.format(
        block=COMMENT_BLOCK,
        version=VERSION,
        revision=" ".join(revision.splitlines()),
        created=str(created),
        type_name=" ".join(type_name.splitlines()) if type_name is not None else "None",
    )
    if blank_line == "# ":
        return "\n".join("# " if line == "#" else line for line in text.split("\n"))
    return "\n".join(line.rstrip(" ") for line in text.split("\n"))


class _OpenSeries:
    __slots__ = ("name", "type_name", "revision", "fp", "part", "size", "count", "first_ns", "split", "path", "confirmed", "pending")

    def __init__(self, name: str, type_name: str | None, revision: str, split: bool) -> None:
        self.name = name
        self.type_name = type_name
        self.revision = revision
        self.fp: IO[str] | None = None
        self.part = 0
        self.size = 0
        self.count = 0  # records in the current file
        self.first_ns = 0
        self.split = split
        self.path: Path | None = None  # the part file open in fp
        self.confirmed = 0  # bytes of that file known to be with the operating system (0: no line yet)
        self.pending: list[tuple[int, str, int]] = []  # lines written since: (end offset, topic, payload bytes)


class Mcl1Writer:
    """Writes an MCL_LOG 1.0 directory: one file (or split series) per message type.

    Records whose payload is not a named message go to ``RawData.log``
    (header type ``None``; another name with `raw_name`). Topics cannot hold
    white space in this format. A series is split into ``Name_000.log``,
    ``Name_001.log``, ... (only the first with the header, as the original)
    when any of `split_size`, `split_duration_ns`, `split_entries` is given;
    whichever limit is reached first starts the next part.
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
        split_entries: int | None = None,  # records per file (the original max_entries); None: no limit
        metadata: dict[str, str] | None = None,  # only 'revision' can be kept by this format
        raw_name: str = "RawData",  # file name (stem) of the raw data series
        names: dict[str | None, str] | None = None,  # type name (None: raw) -> file stem, overriding the type name
        revisions: dict[str | None, str] | None = None,  # type name (None: raw) -> revision of that series
        blank_line: str = "#",  # empty header comment lines: '#' (original writer) or '# ' (shipped A/B files)
    ) -> None:
        from mcl.log.formats import check_writer_common

        check_writer_common(origin_ns=origin_ns, metadata=metadata, split_size=split_size, split_duration_ns=split_duration_ns)
        if split_entries is not None and (isinstance(split_entries, bool) or not isinstance(split_entries, int) or split_entries < 1):
            raise ArgumentError(f"split_entries must be a whole number >= 1, not {split_entries!r}")
        format_header(0, None, blank_line=blank_line)  # checks blank_line
        self.path = Path(path)
        self._created_dir = make_log_dir(self.path)
        self._paths: list[Path] = []  # every file created, in order
        self.origin_ns = origin_ns
        self.revision = revision or (metadata or {}).get("revision", "")
        self.split_size = split_size
        self.split_duration_ns = split_duration_ns
        self.split_entries = split_entries
        self.names: dict[str | None, str] = {None: raw_name, **(names or {})}
        self.revisions = dict(revisions or {})
        self.blank_line = blank_line
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
        check_topic(topic, self.path)
        type_name = type_name_of(payload)
        series = self._series.get(type_name)
        if series is None:
            split = self.split_size is not None or self.split_duration_ns is not None or self.split_entries is not None
            revision = self.revisions.get(type_name, self.revision)
            series = _OpenSeries(self._file_stem(type_name, split), type_name, revision, split)
            self._series[type_name] = series
        line = format_line(elapsed_ns, topic, payload)
        try:
            if series.fp is not None and series.split and (
                (self.split_size is not None and series.size + len(line) > self.split_size and series.size > 0)
                or (self.split_duration_ns is not None and elapsed_ns - series.first_ns >= self.split_duration_ns)
                or (self.split_entries is not None and series.count >= self.split_entries)
            ):
                series.fp.close()
                self._confirm(series)
                series.fp = None
                series.part += 1
            if series.fp is None:
                series.fp = self._open(series)
                series.first_ns = elapsed_ns
                series.count = 0
            series.fp.write(line)
        except OSError as exc:
            raise self._fail(series, exc) from None
        series.size += len(line)
        series.count += 1
        series.pending.append((series.size, topic, len(payload)))

    check_each_message = True  # the file a record goes to depends on its payload's type: unstorable() for each

    def unstorable(self, topic: str, payload: bytes) -> str | None:
        """Why a record cannot be stored in this log (None: it can), so that a recorder drops it, counted, and goes on.

        The topic must be printable ASCII (lines are split on white space);
        a file is named after the payload's type: at most
        :data:`MAX_TYPE_CHARS` characters, at most :data:`MAX_TYPES` types.
        """
        if _TOPIC_RE.fullmatch(topic) is None:
            return "topic not storable in MCL_LOG 1.0"
        type_name = type_name_of(payload)
        if type_name not in self._series:
            if type_name is not None and len(type_name) > MAX_TYPE_CHARS:
                return "type name too long for MCL_LOG 1.0"
            if len(self._series) >= MAX_TYPES:
                return "too many types for MCL_LOG 1.0"
        return None

    @property
    def files(self) -> list[Path]:
        """The data files written so far (one series per message type, parts in order), in creation order."""
        return [p for p in self._paths if p.exists()]

    def abort(self) -> None:
        """Close and remove what this writer wrote (its files; the directory if it created it); idempotent."""
        self._closed = True
        for series in self._series.values():
            fp, series.fp = series.fp, None
            if fp is not None:
                try:
                    fp.close()
                except (OSError, ValueError):
                    pass
        paths, self._paths = self._paths, []
        remove_written(paths, self.path if self._created_dir else None)

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

        The type name (or the name given in `names` / `raw_name`) is kept
        when it is a safe file name; other characters become '_' (the header
        keeps the real name). An unsplit name ending in ``_NNN`` gets a
        trailing '_' so that readers do not take it for a part.
        """
        wanted = self.names.get(type_name, type_name)
        stem = _UNSAFE_RE.sub("_", wanted) if wanted else "_"
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
        self._paths.append(path)
        series.size = 0
        series.confirmed = 0
        if series.part == 0:
            header = format_header(self.origin_ns, series.type_name, series.revision, blank_line=self.blank_line)
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



class WriteFile:
    """The original MCL ``WriteFile``: one message stream to ``<prefix>.log`` (or a split series).

    ``WriteFile(prefix, connection, revision=None, time_origin=None,
    max_entries=None, max_time=None)`` as in the original:

    - `prefix` is the path without extension; the data goes to
      ``<prefix>.tmp`` and becomes ``<prefix>.log`` at :meth:`close`. With
      `max_entries` (records per file) or `max_time` (seconds per file, from
      the file's first record) the files are ``<prefix>_000.tmp``,
      ``_001``, ..., each renamed to ``.log`` when the next one starts; only
      the first has the header. Nothing is created before the first write.
    - `connection` names the type written in the header: a
      :class:`~mcl.Message` subclass, a type name (str), or None for raw data
      (the original took a Message class or a network Connection).
    - `time_origin` (a datetime, naive = UTC) is the header's ``created``
      and the zero of elapsed times; None: the first record's time.
    - `blank_line` (mcl): the header style of :func:`format_header`.

    :meth:`write` takes the original dict ``{'topic', 'time_received',
    'payload'}``: ``time_received`` a datetime (naive = UTC) or int ns since
    the epoch; the payload a Message, payload bytes (written as they are) or
    any msgpack-able value.

    Errors are MclErrors of the original's built-in types: a bad argument is
    a TypeError (an out-of-range number also a ValueError), a prefix that is
    a directory, in a missing directory or whose files exist an OSError
    (IOError), a dict without a key a KeyError. Unlike the original an
    existing ``.log`` is never replaced (OSError at once, or when renaming).
    """

    def __init__(
        self,
        prefix: str | os.PathLike[str],
        connection: object = None,
        revision: str | None = None,
        time_origin: _dt.datetime | None = None,
        max_entries: int | None = None,
        max_time: float | None = None,
        *,
        blank_line: str = "#",
    ) -> None:
        from mcl.exceptions import ArgumentRangeError, ArgumentTypeError, LogIOError
        from mcl.message import Message

        if not isinstance(prefix, (str, os.PathLike)):
            raise ArgumentTypeError(f"prefix must be a path (str or os.PathLike), not a {type(prefix).__name__}")
        text = os.fspath(prefix)
        if text.endswith((".tmp", ".log")):
            raise ArgumentTypeError(f"prefix {text!r} must not end in '.tmp' or '.log' (they are added)")
        if connection is None or isinstance(connection, str):
            type_name = connection
        elif isinstance(connection, type) and issubclass(connection, Message):
            type_name = connection.type_name
        else:
            raise ArgumentTypeError(
                f"connection must be a Message subclass, a type name or None (raw data), not {connection!r}"
            )
        if revision is not None and not isinstance(revision, str):
            raise ArgumentTypeError(f"revision must be None or a str, not a {type(revision).__name__}")
        if time_origin is not None and not isinstance(time_origin, _dt.datetime):
            raise ArgumentTypeError(f"time_origin must be None or a datetime.datetime, not a {type(time_origin).__name__}")
        if max_entries is not None:
            if isinstance(max_entries, bool) or not isinstance(max_entries, int):
                raise ArgumentTypeError(f"max_entries must be None or an int > 0, not a {type(max_entries).__name__}")
            if max_entries <= 0:
                raise ArgumentRangeError(f"max_entries must be > 0, not {max_entries}")
        if max_time is not None:
            if isinstance(max_time, bool) or not isinstance(max_time, (int, float)):
                raise ArgumentTypeError(f"max_time must be None or a number of seconds > 0, not a {type(max_time).__name__}")
            if not max_time > 0 or max_time != max_time:
                raise ArgumentRangeError(f"max_time must be a number of seconds > 0, not {max_time!r}")
        self._prefix = Path(text)
        if self._prefix.is_dir():
            raise LogIOError(f"{self._prefix}: is a directory; prefix names files (e.g. dir/Name)", path=self._prefix)
        if not self._prefix.parent.is_dir():
            raise LogNotFound(self._prefix.parent, "the directory of the prefix does not exist")
        self._split = max_entries is not None or max_time is not None
        for suffix in (".tmp", ".log"):
            first = self._path(0, suffix)
            if first.exists():
                raise LogIOError(f"{first}: already exists; WriteFile never overwrites a log", path=first)
        format_header(0, None, blank_line=blank_line)  # checks blank_line
        self._blank_line = blank_line
        self._type_name = type_name
        self._revision = revision
        self._origin_ns = None if time_origin is None else datetime_to_ns(time_origin)
        self._max_entries = max_entries
        self._max_ns = None if max_time is None else round(max_time * NS_PER_S)
        self._fp: IO[str] | None = None
        self._part = 0
        self._count = 0
        self._first_ns = 0
        self._closed = False

    @property
    def max_entries(self) -> int | None:
        """Records per file (None: not split by count)."""
        return self._max_entries

    @property
    def max_time(self) -> float | None:
        """Seconds per file (None: not split by time)."""
        return None if self._max_ns is None else self._max_ns / NS_PER_S

    @property
    def prefix(self) -> Path:
        return self._prefix

    def _path(self, part: int, suffix: str) -> Path:
        if self._split:
            return self._prefix.with_name(f"{self._prefix.name}_{part:03d}{suffix}")
        return self._prefix.with_name(self._prefix.name + suffix)

    def write(self, data: dict[str, object]) -> None:
        """Append one record ``{'topic': str | None, 'time_received': datetime | int ns, 'payload': ...}``."""
        from mcl.exceptions import ArgumentTypeError, FieldMissingError
        from mcl.message import Message, encode

        if self._closed:
            raise RuntimeError("Cannot write to a WriteFile once it has been closed.")
        for key in ("topic", "time_received", "payload"):
            if not isinstance(data, dict) or key not in data:
                raise FieldMissingError(f"{self._prefix}: the record must have the key {key!r} (keys: topic, time_received, payload)")
        topic = data["topic"]
        if topic is None:
            topic = ""
        if not isinstance(topic, str):
            raise ArgumentTypeError(f"{self._prefix}: topic must be a str or None, not a {type(topic).__name__}")
        check_topic(topic, self._prefix)
        when = data["time_received"]
        if isinstance(when, _dt.datetime):
            when_ns = datetime_to_ns(when)
        elif isinstance(when, int) and not isinstance(when, bool):
            when_ns = when
        else:
            raise ArgumentTypeError(f"{self._prefix}: time_received must be a datetime or int ns, not a {type(when).__name__}")
        payload = data["payload"]
        if isinstance(payload, (bytes, bytearray, memoryview)):
            body = bytes(payload)
        else:
            body = encode(payload.to_dict() if isinstance(payload, Message) else payload)
        if self._origin_ns is None:
            self._origin_ns = when_ns
        elapsed = when_ns - self._origin_ns
        if self._fp is not None and self._split and (
            (self._max_entries is not None and self._count >= self._max_entries)
            or (self._max_ns is not None and elapsed - self._first_ns >= self._max_ns)
        ):
            self._finish()
            self._part += 1
        if self._fp is None:
            self._fp = self._open()
            self._first_ns = elapsed
            self._count = 0
        self._fp.write(format_line(elapsed, topic, body))
        self._fp.flush()  # as the original, every line reaches the OS when written
        self._count += 1

    def _open(self) -> IO[str]:
        from mcl.exceptions import LogIOError

        path = self._path(self._part, ".tmp")
        for existing in (path, self._path(self._part, ".log")):
            if existing.exists():
                raise LogIOError(f"{existing}: already exists; WriteFile never overwrites a log", path=existing)
        try:
            fp = open(path, "x", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise LogIOError(f"{path}: cannot create: {exc.strerror}", path=path) from None
        if self._part == 0:
            assert self._origin_ns is not None
            fp.write(format_header(self._origin_ns, self._type_name, self._revision or "", blank_line=self._blank_line))
        return fp

    def _finish(self) -> None:
        """Close the current .tmp file and give it its .log name (never replacing a file)."""
        from mcl.exceptions import LogIOError

        fp, self._fp = self._fp, None
        if fp is None:
            return
        fp.close()
        tmp, log = self._path(self._part, ".tmp"), self._path(self._part, ".log")
        try:
            os.link(tmp, log)  # fails if `log` exists, unlike rename
            os.unlink(tmp)
        except FileExistsError:
            raise LogIOError(f"{log}: appeared while writing; the data stays in {tmp}", path=log) from None
        except OSError:
            if log.exists():
                raise LogIOError(f"{log}: appeared while writing; the data stays in {tmp}", path=log) from None
            os.replace(tmp, log)  # a file system without hard links

    def close(self) -> None:
        """Finish the last file (``.tmp`` to ``.log``); idempotent; nothing to do if nothing was written."""
        if self._closed:
            return
        self._closed = True
        self._finish()

    def __enter__(self) -> WriteFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def layout_options(sources: Sequence[object]) -> dict[str, dict[str | None, str]]:
    """``names`` / ``revisions`` for :class:`Mcl1Writer` that keep the file names and revisions of MCL_LOG sources.

    Converting an MCL_LOG 1.0 log to MCL_LOG 1.0 then keeps, per message
    type, the file name (e.g. ``RawUnitTestData`` for raw data rather than
    ``RawData``) and the revision of its header. A type held by several
    series (or sources) keeps the defaults.
    """
    names: dict[str | None, str] = {}
    revisions: dict[str | None, str] = {}
    seen: dict[str | None, int] = {}
    for source in sources:
        if not isinstance(source, Mcl1Source):
            continue
        for series in source._series:
            type_name = series.header.type_name if series.header is not None else None
            seen[type_name] = seen.get(type_name, 0) + 1
            names[type_name] = series.name
            revisions[type_name] = series.header.revision if series.header is not None else ""
    ambiguous = {t for t, n in seen.items() if n > 1}
    return {
        "names": {t: n for t, n in names.items() if t not in ambiguous},
        "revisions": {t: r for t, r in revisions.items() if t not in ambiguous},
    }
