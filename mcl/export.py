"""Export logs to Python lists, numpy arrays and CSV (the original ``dump_to_*`` functions).

The three functions keep the semantics of the original MCL
(``mcl.logging.tools``) with its defects fixed:

- an empty selection gives an empty list, a ``(0, n)`` array or an empty
  CSV file (the original returned None and wrote nothing);
- every row is checked, not only the first, and a problem raises a
  :class:`~mcl.MessageError` naming the record (elapsed time and topic) and
  the field, of the built-in type the original raised: a missing field is
  also a KeyError, mixed types or a value that is not a number a TypeError;
- the arguments are checked as the original checked them (``metadata`` and
  ``message`` as ReadFile's, ``keys`` strings, ``min_time`` / ``max_time``
  numbers >= 0: TypeError / ValueError), and a missing log is also a
  FileNotFoundError (an IOError); ``keys`` may be one string (one field,
  where the original iterated its characters);
- the CSV is written only once every row is known to be good, so a failed
  export never leaves half a file;
- raw-typed records (payloads that are not named messages) are part of
  :func:`dump_to_list`; :func:`dump_to_array` and :func:`dump_to_csv` export
  fields of messages and skip them, as the original ``ReadDirectory`` did.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterable, Sequence
from typing import IO, Any

import numpy as np

from mcl.exceptions import ArgumentTypeError, FieldMissingError, FieldTypeError, LogError, as_io_error
from mcl.log.reader import LogReader, check_time_window, open_log, payload_converter
from mcl.log.record import TopicFilter
from mcl.timeutil import NS_PER_S

__all__ = ["dump_to_list", "dump_to_array", "dump_to_csv"]

PathLike = str | os.PathLike[str]


def _paths(source: PathLike | Sequence[PathLike]) -> list[PathLike]:
    if isinstance(source, (str, os.PathLike)):
        return [source]
    if isinstance(source, (list, tuple)) and source and all(isinstance(p, (str, os.PathLike)) for p in source):
        return list(source)
    raise ArgumentTypeError(f"source must be a log path or a list of log paths, not {source!r}")


def _open(
    source: PathLike | Sequence[PathLike],
    min_time: float | None,
    max_time: float | None,
    topics: Iterable[str] | str | TopicFilter | None,
) -> LogReader:
    paths = _paths(source)
    check_time_window(min_time, max_time)
    try:
        return open_log(*paths, topics=topics, start=min_time, end=max_time)
    except LogError as exc:
        raise as_io_error(exc) from None


def dump_to_list(
    source: PathLike | Sequence[PathLike],
    min_time: float | None = None,
    max_time: float | None = None,
    message: bool | str | type = False,
    metadata: bool = True,
    *,
    topics: Iterable[str] | str | TopicFilter | None = None,
) -> list[Any]:
    """Every record of a log in time order, as a list.

    Args:
        source: a log directory, a log file or a split-series prefix (or a
            list of them, merged by absolute time).
        min_time, max_time: elapsed seconds, inclusive; None for no bound.
        message: decode payloads to :class:`~mcl.Message` objects (a
            :class:`~mcl.GenericMessage` when the type is not registered)
            instead of plain dicts; a Message subclass or the name of one
            reads every message as that type (as :class:`~mcl.ReadFile`).
        metadata: True (default): each item is ``{'elapsed_time': float s,
            'topic': str, 'payload': ...}``; False: the payloads alone.
        topics: keep only these topics (exact names).

    Raises:
        LogNotFound (a FileNotFoundError), LogIOError (an OSError): the
            source is missing or not a log.
        ArgumentTypeError, ArgumentError: a bad argument (TypeError, ValueError).
        MessageError: a payload is not valid msgpack.
    """
    if not isinstance(metadata, bool):
        raise ArgumentTypeError(f"metadata must be True or False, not {metadata!r}")
    convert = payload_converter(message)
    items: list[Any] = []
    with _open(source, min_time, max_time, topics) as reader:
        for elapsed_ns, topic, payload in reader:
            value = convert(payload)
            if metadata:
                items.append({"elapsed_time": elapsed_ns / NS_PER_S, "topic": topic, "payload": value})
            else:
                items.append(value)
    return items


def _check_keys(keys: Iterable[str] | str) -> list[str]:
    if isinstance(keys, str):
        return [keys]
    try:
        keys = list(keys)
    except TypeError:
        raise ArgumentTypeError(f"keys must be a string or a list of strings, not {keys!r}") from None
    if not all(isinstance(k, str) for k in keys):
        raise ArgumentTypeError(f"keys must be a string or a list of strings, not {keys!r}")
    return keys


def _message_rows(
    source: PathLike | Sequence[PathLike],
    keys: list[str],
    min_time: float | None,
    max_time: float | None,
    topics: Iterable[str] | str | TopicFilter | None,
) -> list[tuple[float, str, list[Any]]]:
    """(elapsed s, topic, [value of each key]) of every named message; all of one type."""
    rows: list[tuple[float, str, list[Any]]] = []
    first_name: str | None = None
    for item in dump_to_list(source, min_time, max_time, topics=topics):
        payload = item["payload"]
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
            continue  # raw data: no fields to export
        where = f"record at {item['elapsed_time']:.6f} s on topic {item['topic']!r}"
        name = payload["name"]
        if first_name is None:
            first_name = name
        elif name != first_name:
            raise FieldTypeError(
                f"{where} is a {name!r} message; every exported message must be of one type"
                f" (the first was {first_name!r}); choose a topic or a log that holds only one type"
            )
        missing = [k for k in keys if k not in payload]
        if missing:
            available = ", ".join(sorted(map(str, payload)))
            raise FieldMissingError(f"{where}: {name!r} has no field {missing[0]!r} (fields: {available})")
        rows.append((item["elapsed_time"], item["topic"], [payload[k] for k in keys]))
    return rows


def dump_to_array(
    source: PathLike | Sequence[PathLike],
    keys: Iterable[str] | str,
    min_time: float | None = None,
    max_time: float | None = None,
    *,
    topics: Iterable[str] | str | TopicFilter | None = None,
) -> np.ndarray:
    """Fields of every message as a 2-D float64 array: one row per message.

    Every exported message must be of one type and hold every key. A field
    holding a number (or a bool) fills one column. A field holding a numpy
    array or a list of numbers fills ``size`` columns, flattened in C order;
    its shape must be the same in every message (checked). None (a field
    without a value, or an item of a list) becomes NaN. Raw-typed
    records are skipped. An empty selection gives an array of shape
    ``(0, len(keys))``.

    Raises:
        FieldMissingError (a KeyError): a message lacks a key.
        FieldTypeError (a TypeError): messages of several types, a value
            that is not a number, or an array whose shape changes.
        ArgumentTypeError (a TypeError): `keys` is not a string or a list of
            strings (``[]`` gives ``(rows, 0)``); bad ``min_time`` / ``max_time``.
    """
    keys = _check_keys(keys)
    rows = _message_rows(source, keys, min_time, max_time, topics)
    if not rows:
        return np.zeros((0, len(keys)))
    shapes: list[tuple[int, ...]] = []
    for key, value in zip(keys, rows[0][2]):
        shapes.append(_numeric(value, key, rows[0]).shape)
    width = sum(int(np.prod(shape)) for shape in shapes)
    array = np.empty((len(rows), width))
    for i, row in enumerate(rows):
        column = 0
        for key, value, shape in zip(keys, row[2], shapes):
            numbers = _numeric(value, key, row)
            if numbers.shape != shape:
                raise FieldTypeError(
                    f"record at {row[0]:.6f} s on topic {row[1]!r}: field {key!r} has shape"
                    f" {numbers.shape}, the first message had {shape}; a column needs the same shape in every row"
                )
            size = numbers.size
            array[i, column : column + size] = numbers.reshape(-1)
            column += size
    return array


def _numeric(value: Any, key: str, row: tuple[float, str, list[Any]]) -> np.ndarray:
    try:
        numbers = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        numbers = None
    if numbers is None or isinstance(value, (str, bytes)):
        raise FieldTypeError(
            f"record at {row[0]:.6f} s on topic {row[1]!r}: field {key!r} holds"
            f" {_describe(value)}, which is not a number or an array of numbers"
        )
    return numbers


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"a {type(value).__name__} ({text})"


def _csv_cell(value: Any) -> Any:
    # Keep what csv.writer writes for plain values (str(); floats as repr),
    # so the original CSVs are reproduced byte for byte; numpy values are
    # written like the equivalent Python values, on one line.
    if isinstance(value, np.ndarray):
        return str(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def dump_to_csv(
    source: PathLike | Sequence[PathLike],
    csv_file: PathLike | IO[str],
    keys: Iterable[str] | str,
    min_time: float | None = None,
    max_time: float | None = None,
    *,
    topics: Iterable[str] | str | TopicFilter | None = None,
    header: bool = False,
) -> int:
    """Write fields of every message to a CSV file; return the number of rows.

    One row per message, one column per key, no header row (with `header`:
    a first row of the keys, not counted in the rows returned), CRLF line ends
    (``csv.writer`` defaults, as the original). Numbers are written as Python
    writes them (``repr`` of floats), numpy arrays and lists as ``[1.0, 2.0]``.
    Every exported message must be of one type and hold every key; raw-typed
    records are skipped. An existing `csv_file` is replaced, and only once
    every row has been checked; an empty selection writes an empty file.
    `csv_file` may also be an open text stream (``sys.stdout``), left open.

    Raises:
        FieldMissingError (a KeyError), FieldTypeError (a TypeError): a
            missing field, messages of several types.
        ArgumentTypeError: bad `keys` / times (as :func:`dump_to_array`).
        OSError: `csv_file` cannot be written.
    """
    keys = _check_keys(keys)
    rows = _message_rows(source, keys, min_time, max_time, topics)
    with contextlib.ExitStack() as stack:
        if isinstance(csv_file, (str, bytes, os.PathLike)):
            fp: IO[str] = stack.enter_context(open(csv_file, "w", newline="", encoding="utf-8"))
        else:
            fp = csv_file  # an open text stream (sys.stdout): written to, not closed
        writer = csv.writer(fp)
        if header:
            writer.writerow(keys)
        for _, _, values in rows:
            writer.writerow([_csv_cell(v) for v in values])
    return len(rows)
