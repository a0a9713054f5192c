"""Logs to a Parquet dataset: one hive-style directory per message type (``OUTDIR/type=NAME/``).

Layout::

    OUTDIR/type=GpsFix/part-00000.parquet       time, elapsed, topic, [log,] fields...
    OUTDIR/type=ImuSample/part-00000.parquet
    OUTDIR/raw/type=raw/part-00000.parquet      time, elapsed, topic, [log,] payload

``raw`` holds the records mcl cannot decode into fields: payloads that are
not named messages (raw data) or not valid msgpack, with their bytes. It
sits one level down as ``raw/type=raw`` so that every file of the dataset
has the same hive key and ``read_parquet('OUTDIR/**/*.parquet',
hive_partitioning = true)`` reads them all. Column types are those of
:mod:`mcl.tables.columns`; each type directory has one schema (parts written
with another one are rewritten to the unified schema at the end).

The dataset is written in a temporary directory beside OUTDIR and renamed
to OUTDIR at the end: an export that fails (or is interrupted) leaves no
partial dataset.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mcl.exceptions import LogError
from mcl.log.reader import open_log
from mcl.log.record import TopicFilter
from mcl.tables import require
from mcl.tables.batches import source_streams
from mcl.tables.columns import CastFailed, conform, conform_all, decode_all, fall_back, unify

__all__ = ["export_parquet", "ParquetExport", "ParquetOptions", "RAW_DIR", "PathLike"]

PathLike = str | os.PathLike[str]
RAW_DIR = "raw/type=raw"  # where records that are not named messages go, under OUTDIR


@dataclass(frozen=True, slots=True)
class ParquetOptions:
    """How a dataset is written."""

    row_group_rows: int = 1 << 20  # rows per row group (a type's rows are buffered up to this many)
    row_group_bytes: int = 128 << 20  # ... or up to this many bytes of decoded columns, whichever comes first
    compression: str = "zstd"  # Parquet codec of every column


@dataclass(slots=True)
class ParquetExport:
    """What :func:`export_parquet` wrote."""

    path: Path  # the dataset directory
    rows: dict[str, int] = field(default_factory=dict)  # rows per message type
    raw_rows: int = 0  # rows under RAW_DIR
    files: list[Path] = field(default_factory=list)  # every Parquet file, relative to `path`


def export_parquet(
    paths: PathLike | Iterable[PathLike],
    outdir: PathLike,
    *,
    topics: Iterable[str] | str | TopicFilter | None = None,
    start: float | None = None,
    end: float | None = None,
    options: ParquetOptions = ParquetOptions(),
    progress: Callable[[int], None] | None = None,
) -> ParquetExport:
    """Write the records of one or more logs to a Parquet dataset at `outdir` (see the module doc).

    Args:
        paths: logs; with several, a ``log`` column says which (the path as given)
            and ``elapsed`` counts from the earliest time origin of them all.
        outdir: the dataset directory; must not exist or be empty.
        topics, start, end: as :func:`mcl.open_log` (exact topic names,
            elapsed seconds inclusive).
        progress: called with the number of records of each batch read.

    Raises LogError when `outdir` holds files; errors of reading the logs
    as :func:`mcl.open_log`. Nothing is left at `outdir` on failure.
    """
    pq = require("pyarrow.parquet", "exporting to Parquet")
    logs = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    target = Path(outdir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise LogError(f"{target}: already exists and is not an empty directory; mcl never overwrites a dataset")
    parent = target.parent
    if not parent.is_dir():
        raise LogError(f"{parent}: no such directory (the dataset's parent must exist)")
    result = ParquetExport(path=target)
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=parent))
        with ExitStack() as stack:
            reader = stack.enter_context(open_log(*logs, topics=topics, start=start, end=end))
            sinks = _Sinks(tmp, options, pq)
            stack.callback(sinks.abort)
            several = len(logs) > 1
            for label, stream in zip(logs, source_streams(reader)):
                for batch in stream:
                    for name, table in decode_all(batch, raw=True).items():
                        if several:
                            table = table.append_column("log", _repeat(str(label), table.num_rows))
                        sinks.add(name, table)
                    if progress is not None:
                        progress(batch.num_rows)
            sinks.close(result)
        if target.exists():
            target.rmdir()
        os.rename(tmp, target)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _repeat(value: str, n: int) -> Any:
    import pyarrow as pa

    return pa.array([value] * n, pa.string())


@dataclass(slots=True)
class _Sink:
    """The files of one message type being written."""

    directory: Path
    buffer: list[Any] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    total: int = 0
    writer: Any = None
    parts: list[tuple[Path, Any]] = field(default_factory=list)  # (file, schema)


class _Sinks:
    """One ParquetWriter per message type; a new part file whenever a type's schema changes."""

    def __init__(self, root: Path, options: ParquetOptions, pq: Any) -> None:
        self.root = root
        self.options = options
        self.pq = pq
        self.sinks: dict[str | None, _Sink] = {}

    def add(self, name: str | None, table: Any) -> None:
        sink = self.sinks.get(name)
        if sink is None:
            where = RAW_DIR if name is None else f"type={quote(name, safe='')}"
            sink = self.sinks[name] = _Sink(self.root / where)
        sink.buffer.append(table)
        sink.rows += table.num_rows
        sink.bytes += table.nbytes
        if sink.rows >= self.options.row_group_rows or sink.bytes >= self.options.row_group_bytes:
            self._flush(sink)

    def _flush(self, sink: _Sink) -> None:
        import pyarrow as pa

        if not sink.buffer:
            return
        tables, _ = conform_all(sink.buffer, unify([t.schema for t in sink.buffer]))
        table = pa.concat_tables(tables)
        sink.buffer, sink.rows, sink.bytes = [], 0, 0
        sink.total += table.num_rows
        if sink.writer is not None and sink.writer.schema != table.schema:
            sink.writer.close()
            sink.writer = None
        if sink.writer is None:
            sink.directory.mkdir(parents=True, exist_ok=True)
            path = sink.directory / f"part-{len(sink.parts):05d}.parquet"
            sink.writer = self.pq.ParquetWriter(path, table.schema, compression=self.options.compression)
            sink.parts.append((path, table.schema))
        sink.writer.write_table(table, row_group_size=self.options.row_group_rows)

    def close(self, result: ParquetExport) -> None:
        """Flush every type, then give every part of a type the type's unified schema."""
        for name, sink in self.sinks.items():
            self._flush(sink)
            if sink.writer is not None:
                sink.writer.close()
                sink.writer = None
            if len({str(s) for _, s in sink.parts}) > 1:
                self._reconcile(sink)
            if name is None:
                result.raw_rows = sink.total
            else:
                result.rows[name] = sink.total
            result.files.extend(p.relative_to(self.root) for p, _ in sink.parts)

    def _reconcile(self, sink: _Sink) -> None:
        schema = unify([s for _, s in sink.parts])
        checked = False
        while not checked:  # a first pass finds the fields some part cannot take (they become JSON)
            try:
                for path, part_schema in sink.parts:
                    if part_schema != schema:
                        conform(self.pq.read_table(path), schema)
                checked = True
            except CastFailed as failed:
                schema = fall_back(schema, failed)
        for path, part_schema in sink.parts:
            if part_schema == schema:
                continue
            table = conform(self.pq.read_table(path), schema)
            tmp = path.with_suffix(".tmp")
            self.pq.write_table(table, tmp, compression=self.options.compression, row_group_size=self.options.row_group_rows)
            os.replace(tmp, path)

    def abort(self) -> None:
        """Close every open writer (the caller removes the files)."""
        for sink in self.sinks.values():
            if sink.writer is not None:
                try:
                    sink.writer.close()
                except Exception:  # noqa: S110 - the export failed already; its files are removed
                    pass
                sink.writer = None
