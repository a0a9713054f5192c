"""Many logs as one ``dask.dataframe.DataFrame``: partitions are chunk ranges, read by the workers."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mcl.exceptions import LogError, LogNotFound
from mcl.log.reader import open_log
from mcl.tables import require
from mcl.tables.batches import ORIGIN_KEY, iter_batches
from mcl.tables.columns import _head_columns, conform, decode_all, unify

__all__ = ["read_dask", "PARTITION_RECORDS", "Partition"]

PARTITION_RECORDS = 1_000_000  # records per partition (a partition is whole steps: chunks, or runs of overlapping ones)

PathLike = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class Partition:
    """What one worker task reads."""

    path: str  # the log
    steps: tuple[int, int] | None  # range of the native log's read plan; None: the whole log (other formats)
    records: int  # records in those steps before the filters (0 when unknown)


def read_dask(
    paths: PathLike | Iterable[PathLike],
    type: str | None = None,
    *,
    topics: Iterable[str] | str | None = None,
    start: float | None = None,
    end: float | None = None,
    partition_records: int = PARTITION_RECORDS,
) -> Any:
    """The records of many logs as a lazy ``dask.dataframe.DataFrame``.

    Args:
        paths: logs, or glob patterns of logs (``"fleet/*"``; each match is a log).
        type: decode this message type into columns (see :mod:`mcl.tables.columns`);
            None gives the raw columns ``time``, ``elapsed``, ``topic``, ``payload``.
        topics, start, end: as :func:`mcl.open_log`, applied in each log
            (``elapsed`` counts from each log's own origin).
        partition_records: about this many records per partition: a native
            log is cut into ranges of whole chunks, so one large log spreads
            over the workers; other formats are one partition per log.

    Every frame has a ``log`` column (the path). Only the indexes are read
    here; the data is read by the tasks, in the workers (with a
    ``dask.distributed`` client, in its worker processes), each opening its
    log itself. The column types come from the first chunk holding `type` in
    each log (read by a task); a later value that does not fit them (a new
    field, a number where the sample had a string) fails the computation
    with MclError rather than being dropped.
    """
    dask = require("dask", "read_dask")
    dd = require("dask.dataframe", "read_dask")
    require("pyarrow", "read_dask")
    if partition_records <= 0:
        raise ValueError(f"partition_records must be positive, not {partition_records}")
    logs = _expand(paths)
    topic_list = [topics] if isinstance(topics, str) else (None if topics is None else list(topics))
    parts = [part for path in logs for part in _partitions(path, partition_records)]
    filters = (topic_list, start, end)
    # Each sample task reads its log up to the first chunk holding `type` (in a worker, with a cluster).
    samples = dask.compute(*[dask.delayed(_sample_schema)(Partition(path, None, 0), type, filters) for path in logs])
    schema = unify([s for s in samples if s is not None] or [_empty(type).schema])
    meta = _to_pandas(_empty_like(schema))
    tasks = [dask.delayed(_read_partition)(p, type, filters, schema) for p in parts]
    return dd.from_delayed(tasks, meta=meta, verify_meta=False)


def _expand(paths: PathLike | Iterable[PathLike]) -> list[str]:
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    logs: list[str] = []
    for item in items:
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise LogNotFound(text, "no log matches this pattern")
            logs.extend(matches)
        else:
            logs.append(text)
    if not logs:
        raise LogError("no log path given")
    return logs


def _partitions(path: str, size: int) -> list[Partition]:
    """The partitions of one log, from its index (no chunk is read)."""
    with open_log(path) as reader:
        source = reader.sources[0]
        counts = getattr(source, "step_records", None)
    if counts is None:
        return [Partition(path, None, 0)]
    parts: list[Partition] = []
    first, records = 0, 0
    for i, n in enumerate(counts):
        records += n
        if records >= size:
            parts.append(Partition(path, (first, i + 1), records))
            first, records = i + 1, 0
    if records or not parts:
        parts.append(Partition(path, (first, len(counts)), records))
    return parts


def _tables(part: Partition, type: str | None, filters: tuple[Any, ...], first_only: bool = False) -> list[Any]:
    """Decoded tables of each batch of a partition (with the ``log`` column)."""
    import pyarrow as pa

    topics, start, end = filters
    tables = []
    with open_log(part.path, topics=topics, start=start, end=end) as reader:
        for batch in iter_batches(reader, steps=part.steps):
            if type is None:
                origin = int(batch.schema.metadata[ORIGIN_KEY])
                head = _head_columns(pa, batch.column(0), batch.column(1).cast(pa.string()), origin)
                table = pa.table({**head, "payload": batch.column(2)})
            else:
                decoded = decode_all(batch, types={type})
                if type not in decoded:
                    continue
                table = decoded[type]
            tables.append(table.append_column("log", pa.array([part.path] * table.num_rows, pa.string())))
            if first_only:
                break
    return tables


def _sample_schema(part: Partition, type: str | None, filters: tuple[Any, ...]) -> Any:
    """The schema of the first batch of `part` holding `type` (None if none does)."""
    tables = _tables(part, type, filters, first_only=True)
    return tables[0].schema if tables else None


def _read_partition(part: Partition, type: str | None, filters: tuple[Any, ...], schema: Any) -> Any:
    """One partition as a pandas DataFrame with the columns of `schema` (Arrow-backed dtypes)."""
    import pyarrow as pa

    from mcl.exceptions import MclError

    tables = _tables(part, type, filters)
    try:
        table = pa.concat_tables([conform(t, schema) for t in tables]) if tables else _empty_like(schema)
    except (ValueError, TypeError, pa.ArrowException) as exc:
        raise MclError(
            f"{part.path}: {type or 'raw'} records do not fit the columns sampled from the first chunk ({exc});"
            " export the logs with mcl-export --parquet, which unifies every column"
        ) from None
    return _to_pandas(table)


def _empty(type: str | None) -> Any:
    import pyarrow as pa

    columns = {
        "time": pa.array([], pa.timestamp("ns", tz="UTC")),
        "elapsed": pa.array([], pa.float64()),
        "topic": pa.array([], pa.string()),
    }
    if type is None:
        columns["payload"] = pa.array([], pa.binary())
    columns["log"] = pa.array([], pa.string())
    return pa.table(columns)


def _empty_like(schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_arrays([pa.array([], f.type) for f in schema], schema=schema)


def _to_pandas(table: Any) -> Any:
    import pandas as pd

    return table.to_pandas(types_mapper=pd.ArrowDtype)
