"""The native log format: chunked, indexed, crash-safe binary files (the default).

A log is a directory of data files ``data_0000.mcln``, ``data_0001.mcln``, ...
each followed, once closed, by an index ``data_NNNN.mcli``. A data file is a
header then chunks; a chunk is self-contained (own topic table, two CRCs), so
damage loses at most that chunk. The byte layout is in ``docs/log-format.md``
and :mod:`mcl.log.native_layout`.
"""

from __future__ import annotations

import heapq
import os
import re
import socket
import time
import warnings
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from mcl.exceptions import (
    LogDamageWarning,
    LogError,
    LogExistsError,
    LogFormatError,
    LogNotFound,
)
from mcl.checks import check_flag, check_int
from mcl.log.formats import check_writer_common, file_starts_with
from mcl.log.native_layout import (
    CHUNK_HEADER,
    DATA_SUFFIX,
    INDEX_SUFFIX,
    FILE_MAGIC,
    MAX_CHUNK_BYTES,
    MAX_TOPICS_PER_CHUNK,
    MAX_TYPES_PER_TOPIC,
    TYPE_SAMPLE,
    BadMagic,
    ChunkDamaged,
    ChunkInfo,
    ChunkTopic,
    FileHeader,
    FileScan,
    HeaderDamaged,
    add_topic_stats,
    body_batches,
    check_chunk_header,
    decode_body,
    encode_chunk,
    encode_file_header,
    file_key,
    iter_body,
    parse_chunk_header,
    read_file_header,
    read_index,
    scan_file,
    write_index,
)
from mcl.log.record import (
    Damage,
    LogSummary,
    Record,
    TopicFilter,
    TopicStats,
    elapsed_key,
    make_log_dir,
    remove_written,
    open_regular_file,
    skipped_file_damage,
    total_topics,
)
from mcl.message import type_name_of
from mcl.timeutil import NS_PER_S, check_ns

__all__ = ["FORMAT", "NativeSource", "NativeWriter", "probe", "reindex", "data_files"]

FORMAT = "native"
DEFAULT_CHUNK_SIZE = 1 << 20  # raw bytes buffered before a chunk is written
DEFAULT_FLUSH_INTERVAL_NS = 100_000_000
# Log time a chunk spans at most: with DEFAULT_CHUNK_SIZE it bounds what one
# damaged spot can lose (one chunk: at most 1 MiB and 1 s of records).
DEFAULT_CHUNK_DURATION_NS = NS_PER_S
_RECORD_OVERHEAD = 14  # bytes a record adds to a chunk body besides its payload
_DATA_RE = re.compile(r"^data_(\d+)\.mcln$")


def probe(path: Path) -> bool:
    """True if `path` is a native data file or a directory holding some."""
    if path.is_dir():
        return any(p.suffix == DATA_SUFFIX and p.is_file() for p in path.iterdir())
    return path.suffix == DATA_SUFFIX or file_starts_with(path, FILE_MAGIC)


def data_files(path: Path) -> list[Path]:
    """The data files of a log directory in order (or [path] for a file)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise LogNotFound(path)
    # Not only regular files: a FIFO or a device named like a data file is reported (and skipped) by the reader.
    files = [p for p in path.iterdir() if p.suffix == DATA_SUFFIX and not p.is_dir()]
    if not files:
        raise LogNotFound(path, "no native (.mcln) data files in this directory")

    def key(p: Path) -> tuple[int, str]:
        m = _DATA_RE.match(p.name)
        return (int(m.group(1)) if m else 1 << 62, p.name)

    return sorted(files, key=key)


def _writer_name() -> str:
    from mcl import __version__

    return f"mcl {__version__}"


class NativeWriter:
    """Writes a native log directory.

    Records are buffered into a chunk; a chunk is written (one ``write``
    system call) when it holds `chunk_size` bytes, when `flush_interval_ns`
    of wall time passed since the last write of a chunk (checked on each
    ``write``: a caller that can sit idle calls :meth:`flush` itself), on
    :meth:`flush` and on :meth:`close`. A process killed at any instant
    leaves every chunk written before intact; the index of each data file
    is written when the file is closed (``reindex`` rebuilds a missing one).

    Records should come in time order; records out of order within a chunk
    are sorted, and readers merge chunks whose time ranges overlap.
    """

    format = FORMAT

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        origin_ns: int,
        metadata: dict[str, str] | None = None,  # host (default: this host), revision, user keys
        split_size: int | None = None,  # bytes per data file before a new one starts; None: no limit
        split_duration_ns: int | None = None,  # elapsed ns per data file before a new one starts; None: no limit
        compression: str | None = None,  # None / "none" or "zstd" (per chunk)
        compression_level: int = 3,  # zstd level
        chunk_size: int = DEFAULT_CHUNK_SIZE,  # raw bytes per chunk (smaller if split_size is smaller)
        chunk_duration_ns: int | None = DEFAULT_CHUNK_DURATION_NS,  # elapsed ns a chunk spans at most; None: no limit
        flush_interval_ns: int | None = DEFAULT_FLUSH_INTERVAL_NS,  # None: only size, flush() and close() write chunks
        fsync: bool = False,  # fsync after every chunk (survives power loss, slower)
        max_files: int | None = None,  # rotation: keep only the newest N data files (with their indexes); None: keep all
    ) -> None:
        self.path = Path(path)
        # Every option before anything is created (ArgumentError naming it).
        check_writer_common(origin_ns=origin_ns, metadata=metadata, split_size=split_size, split_duration_ns=split_duration_ns)
        check_int(chunk_size, "chunk_size", minimum=1, maximum=MAX_CHUNK_BYTES, unit="bytes")
        check_ns(chunk_duration_ns, "chunk_duration_ns", minimum=1, none_ok=True)
        check_ns(flush_interval_ns, "flush_interval_ns", minimum=1, none_ok=True)
        check_int(compression_level, "compression_level", minimum=-(1 << 17), maximum=22)
        check_flag(fsync, "fsync")
        self._chunk_duration_ns = chunk_duration_ns
        self._chunk_until_ns: int = 1 << 64
        self._compressor: Any = None
        if not (compression is None or isinstance(compression, str)) or compression not in (None, "none", "zstd"):
            raise LogError(f"unknown compression {compression!r} (known: none, zstd)")
        if compression == "zstd":
            try:
                import zstandard
            except ImportError:
                raise LogError("zstd compression needs the 'zstandard' package (pip install mcl[compress])") from None
            self._compressor = zstandard.ZstdCompressor(level=compression_level)
        if max_files is not None and (isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1):
            raise LogError(f"max_files must be a whole number >= 1, not {max_files!r}")
        self.max_files = max_files
        self.rotated = 0  # data files deleted by rotation
        self._created_dir = make_log_dir(self.path)
        self.origin_ns = int(origin_ns)
        meta = {"host": socket.gethostname()}
        meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
        self.metadata = meta
        self.compression = compression if compression != "none" else None
        self.split_size = split_size
        self.split_duration_ns = split_duration_ns
        # Chunks well under the split size, so that files come close to it without passing it.
        self._chunk_limit = min(chunk_size, max(1, split_size // 4)) if split_size else chunk_size
        self._flush_interval_ns = flush_interval_ns
        self._fsync = fsync
        self._closed = False
        self._fd = -1
        self._file_index = -1
        self._files: list[Path] = []
        self._last_ns = 0  # time of the last record written (to notice records out of order)
        self._written: dict[str, list[int]] = {}  # topic -> [records, payload bytes] in chunks on disk
        self._failure: LogError | None = None  # the first write error raised to the caller
        self._flush_at_ns = 0  # monotonic ns when the buffered records are due as a chunk
        self._reset_chunk()
        self._open_next_file()

    # -- public API --------------------------------------------------------------------
    @property
    def files(self) -> list[Path]:
        """The data files written so far (and not deleted by rotation), oldest first."""
        return list(self._files)

    def abort(self) -> None:
        """Close without writing what is buffered, and remove what this writer wrote; idempotent.

        The data files and their indexes go, and the directory too if this
        writer created it and nothing else is in it.
        """
        self._closed = True
        self._roll_at_ns = -(1 << 63)
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
        written = [p for f in self._files for p in (f, f.with_suffix(INDEX_SUFFIX), f.with_suffix(INDEX_SUFFIX + ".tmp"))]
        self._files.clear()
        remove_written(written, self.path if self._created_dir else None)

    def write(self, topic: str, payload: bytes, elapsed_ns: int) -> None:
        """Append one record; `elapsed_ns` is relative to ``origin_ns``."""
        if elapsed_ns >= self._roll_at_ns:
            self._roll_for_time(elapsed_ns)
        if elapsed_ns >= self._chunk_until_ns:
            self._write_chunk()  # the chunk spans its duration: this record starts the next one
        tid = self._ids.get(topic)
        if tid is None:
            tid = self._new_topic(topic, payload)
        if elapsed_ns < self._last_ns:
            self._sorted = False
        self._last_ns = elapsed_ns
        if not self._times and self._chunk_duration_ns is not None:
            self._chunk_until_ns = elapsed_ns + self._chunk_duration_ns
        self._times.append(elapsed_ns)
        self._tids.append(tid)
        self._payloads.append(payload)
        self._pending += len(payload) + _RECORD_OVERHEAD
        if self._pending >= self._chunk_limit or time.monotonic_ns() >= self._flush_at_ns:
            self._write_chunk()

    def write_record(self, record: Record) -> None:
        """Append a :class:`Record`."""
        self.write(record[1], record[2], record[0])

    def written(self) -> dict[str, tuple[int, int]]:
        """Per topic, (records, payload bytes) in chunks that reached the file (all data files).

        Records still buffered, or in a chunk whose write failed (disk full),
        are not counted: after a failure this is what a reader gets back.
        """
        return {topic: (n, b) for topic, (n, b) in self._written.items()}

    def flush(self) -> None:
        """Write the buffered records as a chunk (readable after a crash from now on)."""
        if self._closed:
            raise RuntimeError("Cannot flush a log writer once it has been closed.")
        self._write_chunk()

    def close(self) -> None:
        """Write the last chunk and the index, close the file; idempotent.

        After a write error was raised (disk full), close still writes what
        it can (the index of the chunks on disk) and leaves no temporary
        file, but raises nothing more: the first error is the one to see.
        """
        if self._closed:
            return
        failed_before = self._failure is not None
        try:
            self._write_chunk()
            self._close_file()
        except LogError:
            if not failed_before:
                raise
        finally:
            self._closed = True
            self._roll_at_ns = -(1 << 63)  # so that a later write() reaches the check in _roll_for_time
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> NativeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- chunks ------------------------------------------------------------------------
    def _reset_chunk(self) -> None:
        self._ids: dict[str, int] = {}
        self._topic_names: list[str] = []
        self._times = array("q")
        self._tids = array("H")
        self._payloads: list[bytes] = []
        self._pending = 0
        self._sorted = True
        self._last_ns = -(1 << 63)
        self._chunk_until_ns = 1 << 64  # elapsed time at which the chunk is written (set by its first record)
        self._flush_at_ns = (
            time.monotonic_ns() + self._flush_interval_ns if self._flush_interval_ns is not None else 1 << 63
        )

    def _new_topic(self, topic: str, payload: bytes) -> int:
        if self._closed:
            raise RuntimeError("Cannot write to a log writer once it has been closed.")
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a str, not {type(topic).__name__}")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        if len(topic.encode("utf-8")) > 0xFFFF:
            raise LogError(f"{self.path}: topic of {len(topic)} characters is over the limit of 65535 bytes")
        if len(self._topic_names) >= MAX_TOPICS_PER_CHUNK:
            self._write_chunk()
        tid = len(self._topic_names)
        self._ids[topic] = tid
        self._topic_names.append(topic)
        return tid

    def _write_chunk(self) -> None:
        n = len(self._times)
        if n == 0:
            self._flush_at_ns = (
                time.monotonic_ns() + self._flush_interval_ns if self._flush_interval_ns is not None else 1 << 63
            )
            return
        times, tids, payloads = self._times, self._tids, self._payloads
        if any(type(p) is not bytes for p in payloads):
            payloads = [bytes(p) for p in payloads]
        if not self._sorted:
            order = sorted(range(n), key=times.__getitem__)
            times = array("q", [times[i] for i in order])
            tids = array("H", [tids[i] for i in order])
            payloads = [payloads[i] for i in order]
        topics = self._chunk_topics(times, tids, payloads)
        data = encode_chunk(times, tids, payloads, topics, self._compressor)
        self._reset_chunk()
        if self.split_size is not None and self._size + len(data) > self.split_size and self._chunks:
            self._close_file()
            self._open_next_file()
        offset = self._size
        self._write_all(data)
        self._chunks.append(ChunkInfo(offset, len(data), n, times[0], times[-1]))
        add_topic_stats(self._stats, topics)
        written = self._written
        for t in topics:
            counts = written.get(t.name)
            if counts is None:
                written[t.name] = [t.messages, t.bytes]
            else:
                counts[0] += t.messages
                counts[1] += t.bytes

    def _chunk_topics(self, times: array, tids: array, payloads: list[bytes]) -> list[ChunkTopic]:
        import numpy as np

        ids = np.frombuffer(tids, dtype=np.uint16)
        k = len(self._topic_names)
        counts = np.bincount(ids, minlength=k)
        lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
        nbytes = np.bincount(ids, weights=lengths, minlength=k)
        ts = np.frombuffer(times, dtype=np.int64)
        # Records of each topic, in time order: a stable sort by topic id.
        by_topic = np.split(np.argsort(ids, kind="stable"), np.cumsum(counts)[:-1])
        topics: list[ChunkTopic] = []
        for name, rows in zip(self._topic_names, by_topic):
            # Type names of up to TYPE_SAMPLE records, evenly spread, first and last included.
            picks = rows if len(rows) <= TYPE_SAMPLE else rows[np.linspace(0, len(rows) - 1, TYPE_SAMPLE).astype(np.int64)]
            types: list[str] = []
            for i in picks.tolist():
                type_name = type_name_of(payloads[i])
                # A type name is a summary: one that the u16 length cannot hold (from any sender) is left out.
                if (
                    type_name is not None and len(type_name) <= 0x3FFF and type_name not in types
                    and len(types) < MAX_TYPES_PER_TOPIC
                ):
                    types.append(type_name)
            tid = len(topics)
            topics.append(
                ChunkTopic(name, types, int(counts[tid]), int(nbytes[tid]), int(ts[rows[0]]), int(ts[rows[-1]]))
            )
        return topics

    # -- files -------------------------------------------------------------------------
    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self._fsync:
                os.fsync(self._fd)
        except OSError as exc:
            # Cut the partial chunk off (on a full disk this also frees its space),
            # so that the file ends with its last whole chunk.
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise self._fail(f"{self._files[-1]}: cannot write: {exc.strerror}") from None
        self._size += len(data)

    def _fail(self, message: str) -> LogError:
        error = LogError(message)
        if self._failure is None:
            self._failure = error
        return error

    def _open_next_file(self) -> None:
        self._file_index += 1
        path = self.path / f"data_{self._file_index:04d}{DATA_SUFFIX}"
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        except FileExistsError:
            raise LogExistsError(path) from None
        except OSError as exc:
            raise self._fail(f"{path}: cannot create: {exc.strerror}") from None
        self._files.append(path)
        if self.max_files is not None:
            self._rotate()
        header, crc = encode_file_header(self.origin_ns, self._file_index, self.metadata, _writer_name())
        self._header = FileHeader(self.origin_ns, self._file_index, self.metadata, size=len(header), crc=crc)
        self._size = 0
        self._chunks: list[ChunkInfo] = []
        self._stats: dict[str, TopicStats] = {}
        self._write_all(header)
        self._roll_at_ns = -(1 << 63) if self.split_duration_ns is not None else 1 << 63

    def _rotate(self) -> None:
        """Delete the oldest data files (and their indexes) beyond `max_files`; the file being written stays."""
        assert self.max_files is not None
        while len(self._files) > self.max_files:
            old = self._files.pop(0)
            for p in (old, old.with_suffix(INDEX_SUFFIX)):
                try:
                    p.unlink(missing_ok=True)
                except OSError as exc:
                    raise self._fail(f"{p}: cannot delete for rotation: {exc.strerror}") from None
            self.rotated += 1

    def _roll_for_time(self, elapsed_ns: int) -> None:
        if self._closed:
            raise RuntimeError("Cannot write to a log writer once it has been closed.")
        if not isinstance(elapsed_ns, int):
            raise TypeError(f"elapsed_ns must be an int, not {type(elapsed_ns).__name__}")
        if self.split_duration_ns is None:
            raise LogError(f"{self.path}: elapsed time {elapsed_ns} ns is over the format limit of 2**63 - 1")
        if self._chunks or self._times:
            self._write_chunk()
            self._close_file()
            self._open_next_file()
        assert self.split_duration_ns is not None
        self._roll_at_ns = elapsed_ns + self.split_duration_ns

    def _close_file(self) -> None:
        scan = FileScan(chunks=self._chunks, topics=self._stats, size=self._size)
        fd, self._fd = self._fd, -1
        try:
            os.close(fd)
        except OSError as exc:  # e.g. a network file system reporting a full disk late
            raise self._fail(f"{self._files[-1]}: cannot close: {exc.strerror}") from None
        try:
            write_index(self._files[-1], self._header, scan, self._header.crc)
        except LogError as exc:
            raise self._fail(str(exc)) from None


# -- reading -------------------------------------------------------------------------


@dataclass(slots=True)
class _DataFile:
    path: Path
    header: FileHeader | None
    scan: FileScan
    indexed: bool
    shift: int = 0  # ns added to this file's times to make them relative to the log's origin
    fd: int = -1


@dataclass(slots=True)
class _Step:
    """A run of chunks whose time ranges overlap (usually one), and the damage before it."""

    end_ns: int  # latest record time of the run (log time)
    chunks: list[tuple[_DataFile, ChunkInfo]] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)


class NativeSource:
    """A native log opened for reading: a directory of data files or one data file."""

    format = FORMAT

    def __init__(self, path: str | os.PathLike[str], *, strict: bool = False) -> None:
        self.path = Path(path)
        self.strict = strict  # damage raises LogFormatError instead of warning
        self._closed = False
        self._files: list[_DataFile] = []
        self.damage: list[Damage] = []  # damage found while reading (besides the index / scan)
        self.skipped: list[Damage] = []  # data files that could not be read at all
        try:
            failures: list[LogError] = []
            for p in data_files(self.path):
                try:
                    self._files.append(self._open_file(p))
                except LogError as exc:
                    # One unreadable file (zero-filled by a power loss, foreign,
                    # another version) must not hide the others.
                    if self.strict:
                        raise
                    failures.append(exc)
                    self.skipped.append(skipped_file_damage(p, exc))
            if not self._files:
                raise failures[0]
        except BaseException:
            self.close()
            raise
        origins = [f.header.origin_ns for f in self._files if f.header is not None]
        self.origin_ns: int | None = min(origins) if origins else None
        for f in self._files:
            if f.header is not None and self.origin_ns is not None:
                f.shift = f.header.origin_ns - self.origin_ns
        self._plan = self._make_plan()
        self._plan_ends = [step.end_ns for step in self._plan]

    def _open_file(self, path: Path) -> _DataFile:
        fd = open_regular_file(path)
        try:
            header, scan, indexed = _load_file(fd, path, verify=False, use_index=True)
        except BaseException:
            os.close(fd)
            raise
        return _DataFile(path, header, scan, indexed, fd=fd)

    def _make_plan(self) -> list[_Step]:
        """Chunks of every file in time order, grouped into runs that overlap in time."""
        items: list[tuple[int, int, Any]] = []  # (start in log time, sequence, chunk or damage)
        seq = 0
        last = -(1 << 63)
        for f in self._files:
            damage = sorted(f.scan.damage, key=lambda d: d.offset or 0)
            di = 0
            for chunk in f.scan.chunks:
                while di < len(damage) and (damage[di].offset or 0) < chunk.offset:
                    items.append((last, seq, damage[di]))
                    seq += 1
                    di += 1
                items.append((chunk.start_ns + f.shift, seq, (f, chunk)))
                seq += 1
                last = chunk.end_ns + f.shift
            for d in damage[di:]:
                items.append((last, seq, d))
                seq += 1
        items.sort(key=lambda it: (it[0], it[1]))
        plan: list[_Step] = []
        pending: list[Damage] = []
        step: _Step | None = None
        last_seq = -1
        for start, seq, item in items:
            if isinstance(item, Damage):
                pending.append(item)
                continue
            f, chunk = item
            end = chunk.end_ns + f.shift
            # Overlapping chunks are merged; so are chunks that only touch at one
            # instant if they are out of file order (ties keep the file order).
            if step is not None and (start < step.end_ns or (start == step.end_ns and seq < last_seq)):
                step.chunks.append(item)
                step.chunks.sort(key=lambda fc: (self._files.index(fc[0]), fc[1].offset))
                step.end_ns = max(step.end_ns, end)
                step.damage.extend(pending)
            else:
                step = _Step(end, [item], pending)
                plan.append(step)
            last_seq = max(last_seq, seq)
            pending = []
        if pending:
            plan.append(_Step(plan[-1].end_ns if plan else -(1 << 63), [], pending))
        return plan

    # -- LogSource protocol ----------------------------------------------------------
    @property
    def files(self) -> list[Path]:
        return [f.path for f in self._files]

    @property
    def metadata(self) -> dict[str, str]:
        """Metadata of the first data file with a readable header."""
        for f in self._files:
            if f.header is not None:
                return dict(f.header.metadata)
        return {}

    def iter_records(
        self,
        topics: TopicFilter | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> Iterator[Record]:
        """Records in time order; the index finds the first chunk of the window without reading others."""
        if self._closed:
            raise RuntimeError("Cannot read from a log source once it has been closed.")
        first = 0 if start_ns is None else bisect_left(self._plan_ends, start_ns)
        for damage in self.skipped:
            self._report(damage)
        return chain.from_iterable(self._iter_steps(first, topics, start_ns, end_ns))

    def _iter_steps(
        self, first: int, topics: TopicFilter | None, start_ns: int | None, end_ns: int | None
    ) -> Iterator[Iterator[Record]]:
        for chunks in self._walk(first, len(self._plan), end_ns):
            if len(chunks) == 1:
                f, chunk = chunks[0]
                records = self._read_chunk(f, chunk, topics, start_ns, end_ns)
                if records is not None:
                    yield records
            else:
                streams = [self._read_chunk(f, c, topics, start_ns, end_ns) for f, c in chunks]
                yield heapq.merge(*(s for s in streams if s is not None), key=elapsed_key)

    def _walk(self, first: int, stop: int, end_ns: int | None) -> Iterator[list[tuple[_DataFile, ChunkInfo]]]:
        """The chunks of each step of the plan from `first` to `stop`, damage reported, up to `end_ns`."""
        plan = self._plan
        for i in range(first, stop):
            step = plan[i]
            for damage in step.damage:
                self._report(damage)
            if not step.chunks:
                continue
            if end_ns is not None and min(f.shift + c.start_ns for f, c in step.chunks) > end_ns:
                return
            yield step.chunks

    def _read_chunk(
        self, f: _DataFile, chunk: ChunkInfo, topics: TopicFilter | None, start_ns: int | None, end_ns: int | None,
        body: Any = iter_body,  # iter_body (records) or body_batches (Arrow batches)
    ) -> Any:
        if self._closed:
            raise RuntimeError("Cannot read from a log source once it has been closed.")
        data = os.pread(f.fd, chunk.length, chunk.offset)
        try:
            if len(data) < CHUNK_HEADER.size:
                raise ChunkDamaged("chunk is cut short")
            header = parse_chunk_header(data)
            if header.length != chunk.length or header.count != chunk.count:
                raise ChunkDamaged("chunk header does not match the index")
            table = check_chunk_header(data, header)
            names = [t.name for t in table]
            if topics is not None and not any(topics(name) for name in names):
                return None
            raw = decode_body(data, header)
            lo = None if start_ns is None else start_ns - f.shift
            hi = None if end_ns is None else end_ns - f.shift
            return body(raw, header.count, names, topics, lo, hi, f.shift)
        except ChunkDamaged as exc:
            damage = Damage(
                path=str(f.path), reason=f"damaged chunk ({exc}): {chunk.count} records lost",
                offset=chunk.offset, lost_bytes=chunk.length,
            )
            if damage not in self.damage:
                self.damage.append(damage)
            self._report(damage)
            return None

    # -- columnar reading (mcl.tables) -------------------------------------------------
    @property
    def step_records(self) -> list[int]:
        """Records in each step of the read plan (a run of chunks overlapping in time, usually one chunk)."""
        return [sum(c.count for _, c in step.chunks) for step in self._plan]

    def iter_batches(
        self,
        topics: TopicFilter | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        steps: tuple[int, int] | None = None,
    ) -> Iterator[Any]:
        """``pyarrow.RecordBatch``es in time order, one or more per chunk (see :func:`body_batches`).

        ``time_ns`` is elapsed from this log's origin, as in :meth:`iter_records`;
        the same filters apply and damage is skipped with the same warning.
        `steps` = (first, stop) reads only those steps of the plan
        (:attr:`step_records`): how mcl.tables splits one log between workers.
        """
        if self._closed:
            raise RuntimeError("Cannot read from a log source once it has been closed.")
        first = 0 if start_ns is None else bisect_left(self._plan_ends, start_ns)
        stop = len(self._plan)
        if steps is not None:
            first, stop = max(first, steps[0]), min(stop, steps[1])
        for chunks in self._walk(first, stop, end_ns):
            parts: list[Any] = []
            for f, c in chunks:
                parts.extend(self._read_chunk(f, c, topics, start_ns, end_ns, body_batches) or ())
            if len(chunks) > 1 and len(parts) > 1:
                yield _merge_batches(parts)
            else:
                yield from parts

    def _report(self, damage: Damage) -> None:
        if self.strict:
            raise LogFormatError(damage.path, damage.reason, offset=damage.offset)
        warnings.warn(LogDamageWarning(damage.path, damage.reason + "; skipped", offset=damage.offset), stacklevel=3)

    def summary(self, *, verify: bool = False) -> LogSummary:
        """Counts, topics, types, metadata and damage, from the indexes (or chunk headers).

        The index and the chunk headers say nothing of damaged bodies;
        `verify` reads every chunk of every file (not the index) and checks
        every CRC, size and column, as ``mcl-info --check`` does.
        """
        if self._closed:
            raise RuntimeError("Cannot read from a log source once it has been closed.")
        summary = LogSummary(path=str(self.path), format=FORMAT, origin_ns=self.origin_ns)
        summary.files = [str(f.path) for f in self._files]
        summary.metadata = self.metadata
        scans = [f.scan for f in self._files]
        if verify:
            scans = [_load_file(f.fd, f.path, verify=True, use_index=False)[1] for f in self._files]
        summary.size_bytes = sum(scan.size for scan in scans)
        stats: dict[str, TopicStats] = {}
        for f, scan in zip(self._files, scans):
            for name, s in scan.topics.items():
                shifted = TopicStats(s.messages, s.bytes, set(s.types), _add(s.first_ns, f.shift), _add(s.last_ns, f.shift))
                t = stats.setdefault(name, TopicStats())
                t.messages += shifted.messages
                t.bytes += shifted.bytes
                t.types |= shifted.types
                if shifted.first_ns is not None:
                    t.first_ns = shifted.first_ns if t.first_ns is None else min(t.first_ns, shifted.first_ns)
                if shifted.last_ns is not None:
                    t.last_ns = shifted.last_ns if t.last_ns is None else max(t.last_ns, shifted.last_ns)
            summary.damage.extend(scan.damage)
        summary.damage.extend(self.skipped)
        if not verify:  # a verified scan found these again (with their reason as found there)
            summary.damage.extend(d for d in self.damage if d not in summary.damage)
        summary.files += [d.path for d in self.skipped]
        summary.topics = dict(sorted(stats.items()))
        total_topics(summary)
        summary.indexed = not verify and all(f.indexed for f in self._files)
        summary.verified = verify
        return summary

    def close(self) -> None:
        """Close the data files; idempotent."""
        self._closed = True
        for f in self._files:
            if f.fd >= 0:
                os.close(f.fd)
                f.fd = -1

    def __enter__(self) -> NativeSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _merge_batches(parts: list[Any]) -> Any:
    """Batches of chunks that overlap in time as one batch in time order (ties keep the file order, as heapq.merge)."""
    import numpy as np
    import pyarrow as pa

    table = pa.Table.from_batches(parts).combine_chunks()
    order = np.argsort(table.column("time_ns").to_numpy(), kind="stable")
    return table.take(pa.array(order)).combine_chunks().to_batches()[0]


def _load_file(fd: int, path: Path, *, verify: bool, use_index: bool) -> tuple[FileHeader | None, FileScan, bool]:
    """Header and chunks of one data file: (header or None, scan, True if from the index).

    LogFormatError when the file is not a native data file at all (bad
    magic and no chunk anywhere: e.g. zero-filled or foreign) or has another
    major version.
    """
    size = os.fstat(fd).st_size
    header_damage: Damage | None = None
    bad_magic = False
    try:
        header: FileHeader | None = read_file_header(fd, path)
        assert header is not None
        first = header.size
    except HeaderDamaged as exc:
        header = None
        bad_magic = isinstance(exc, BadMagic)
        # With a valid CRC the header's length is known even if its values are not usable.
        first = exc.end if exc.end is not None else len(FILE_MAGIC)
        header_damage = Damage(path=str(path), reason=str(exc), offset=0)
    key = file_key(fd, header)
    if use_index:
        indexed = read_index(path, size, key, first, data_fd=fd)
        if indexed is not None:
            return header, indexed, True
    scan = scan_file(fd, path, first, size, verify=verify)
    if header_damage is None:
        return header, scan, False
    if bad_magic and not scan.chunks:
        raise LogFormatError(path, "not an mcl native data file (bad magic and no chunk)", offset=0)
    if scan.damage and scan.damage[0].offset == first:
        lost = scan.damage[0]
        scan.damage[0] = Damage(
            path=str(path), reason=f"{header_damage.reason}; {lost.reason}", offset=0, lost_bytes=(lost.lost_bytes or 0) + first
        )
    else:
        scan.damage.insert(0, header_damage)
    return header, scan, False


def _add(value: int | None, shift: int) -> int | None:
    return None if value is None else value + shift


def reindex(path: str | os.PathLike[str]) -> LogSummary:
    """Rebuild the index of every data file of a native log (after a crash).

    Reads every chunk and checks its CRCs, so the new index also lists
    damaged chunks; the data files are never modified. Returns the summary
    of the repaired log.
    """
    p = Path(path)
    files = data_files(p)
    for data_path in files:
        try:
            fd = open_regular_file(data_path)
            try:
                header, scan, _ = _load_file(fd, data_path, verify=True, use_index=False)
                key = file_key(fd, header)
            finally:
                os.close(fd)
        except LogError:
            if len(files) == 1:
                raise
            continue  # not a readable data file: nothing to index; the reader reports it
        write_index(data_path, header, scan, key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogDamageWarning)
        with NativeSource(p) as source:
            return source.summary()
