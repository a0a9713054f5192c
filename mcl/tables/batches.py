"""Reading logs as ``pyarrow.RecordBatch``es: time_ns (absolute UTC), topic, payload."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mcl.log.native_layout import batch_schema
from mcl.log.reader import _tighter
from mcl.log.record import Record
from mcl.tables import require

if TYPE_CHECKING:
    from mcl.log.reader import LogReader

__all__ = ["iter_batches", "source_streams", "to_arrow", "records_to_batches", "ORIGIN_KEY", "BATCH_RECORDS"]

ORIGIN_KEY = b"mcl.origin_ns"  # schema metadata: the time origin (UTC ns) elapsed times count from
BATCH_RECORDS = 65536  # records per batch when a format has no chunks (MCL_LOG 1.0, MCAP)


def iter_batches(
    reader: LogReader,
    start_ns: int | None = None,
    end_ns: int | None = None,
    *,
    steps: tuple[int, int] | None = None,
) -> Iterator[Any]:
    """The records of `reader` (its topic and time filters, narrowed by `start_ns` / `end_ns`
    elapsed, inclusive) as record batches in time order.

    Columns: ``time_ns`` int64 (UTC ns since the epoch: the record's elapsed
    time plus ``reader.origin_ns``), ``topic`` dictionary<int32, string>,
    ``payload`` binary. The schema metadata holds ``mcl.origin_ns``. Native
    logs give one batch (or more) per chunk, built from the chunk's columns;
    other formats go through records, :data:`BATCH_RECORDS` per batch.
    Several logs are merged by time (equal times may interleave differently
    from :meth:`LogReader.iter_records`). `steps` (one native log only) reads
    that range of the log's read plan (how :func:`~mcl.tables.read_dask`
    splits a log).
    """
    streams = source_streams(reader, start_ns, end_ns, steps=steps)
    if len(streams) == 1:
        return streams[0]
    return _merge(streams, _schema(reader))


def source_streams(
    reader: LogReader,
    start_ns: int | None = None,
    end_ns: int | None = None,
    *,
    steps: tuple[int, int] | None = None,
) -> list[Iterator[Any]]:
    """One stream of batches per log of `reader` (as :func:`iter_batches`, not merged)."""
    require("pyarrow", "reading logs as Arrow tables")
    if reader._closed:
        raise RuntimeError("Cannot read from a log reader once it has been closed.")
    if steps is not None and (len(reader.sources) != 1 or not hasattr(reader.sources[0], "iter_batches")):
        raise ValueError("steps= reads one native log")
    origin = reader.origin_ns or 0
    lo = _tighter(reader.start_ns, start_ns, max)
    hi = _tighter(reader.end_ns, end_ns, min)
    schema = _schema(reader)
    streams = []
    for source, shift in zip(reader.sources, reader._shifts):
        src_lo = None if lo is None else lo - shift
        src_hi = None if hi is None else hi - shift
        if hasattr(source, "iter_batches"):
            kwargs = {} if steps is None else {"steps": steps}
            batches = source.iter_batches(reader.topic_filter, src_lo, src_hi, **kwargs)
        else:
            batches = records_to_batches(source.iter_records(reader.topic_filter, src_lo, src_hi))
        streams.append(_absolute(batches, shift + origin, schema))
    return streams


def _schema(reader: LogReader) -> Any:
    return batch_schema().with_metadata({ORIGIN_KEY: str(reader.origin_ns or 0).encode()})


def to_arrow(reader: LogReader, start_ns: int | None = None, end_ns: int | None = None) -> Any:
    """Every batch of :func:`iter_batches` as one ``pyarrow.Table`` (empty with the schema when none)."""
    pa = require("pyarrow", "reading logs as Arrow tables")
    return pa.Table.from_batches(list(iter_batches(reader, start_ns, end_ns)), schema=_schema(reader))


def records_to_batches(records: Iterator[Record], size: int = BATCH_RECORDS) -> Iterator[Any]:
    """Records (elapsed_ns, topic, payload) as batches of at most `size` rows (formats without chunks)."""
    import pyarrow as pa

    schema = batch_schema()
    while True:
        rows = [r for _, r in zip(range(size), records)]
        if not rows:
            return
        times, topics, payloads = zip(*rows)
        topic = pa.array(topics, type=pa.string()).dictionary_encode()
        yield pa.RecordBatch.from_arrays(
            [pa.array(times, type=pa.int64()), topic, pa.array(payloads, type=pa.binary())], schema=schema
        )
        if len(rows) < size:
            return


def _absolute(batches: Iterator[Any], add_ns: int, schema: Any) -> Iterator[Any]:
    """Batches whose time_ns is elapsed in their log, made absolute (UTC ns) with the reader's schema."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for batch in batches:
        times = batch.column(0)
        if add_ns:
            times = pc.add(times, pa.scalar(add_ns, pa.int64()))
        yield pa.RecordBatch.from_arrays([times, batch.column(1), batch.column(2)], schema=schema)


def _merge(streams: list[Iterator[Any]], schema: Any) -> Iterator[Any]:
    """Streams of batches, each in time order, merged into one stream in time order.

    Each round takes, from every stream, its buffered rows up to the earliest
    "last time" among the streams' buffered batches (so that no later row
    of any stream can come before them), and sorts them (stable: ties in
    stream order).
    """
    import numpy as np
    import pyarrow as pa

    pending: list[Any] = [None] * len(streams)
    done = [False] * len(streams)
    while True:
        for i, stream in enumerate(streams):
            while not done[i] and (pending[i] is None or pending[i].num_rows == 0):
                pending[i] = next(stream, None)
                if pending[i] is None:
                    done[i] = True
        live = [i for i in range(len(streams)) if not done[i]]
        if not live:
            return
        if len(live) == 1:
            yield pending[live[0]]
            yield from streams[live[0]]
            return
        frontier = min(int(pending[i].column(0)[-1].as_py()) for i in live)
        pieces = []
        for i in live:
            times = pending[i].column(0).to_numpy()
            cut = int(np.searchsorted(times, frontier, side="right"))
            if cut:
                pieces.append(pending[i].slice(0, cut))
                pending[i] = pending[i].slice(cut)
        table = pa.Table.from_batches(pieces, schema=schema).combine_chunks()
        order = np.argsort(table.column(0).to_numpy(), kind="stable")
        yield from table.take(pa.array(order)).combine_chunks().to_batches()

