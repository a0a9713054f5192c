"""Decoding payloads of record batches into typed Arrow columns, one message type at a time.

Column types (the rules every decoded table follows):

- ``time``: timestamp[ns, UTC] of the record; ``elapsed``: float64 seconds
  from the log's time origin; ``topic``: string. Then one column per message
  field, in the order of the first message (fields met later after them);
  ``name`` (the type) is not a column. A field called ``time``, ``elapsed``,
  ``topic`` or ``log`` is renamed with a trailing ``_``.
- numbers, strings, booleans, bytes, None: int64 / float64 / string / bool /
  binary (what pyarrow infers; ints and floats together widen to float64,
  unless an int is beyond +-2**53, which float64 cannot hold exactly: JSON).
- nested maps (string keys): struct columns, recursively by the same rules.
- numpy arrays of one dtype and shape: fixed-size lists of that dtype, one
  level per dimension (a float64[3, 3] field is
  ``fixed_size_list<fixed_size_list<double, 3>, 3>``); 1-D arrays of one
  dtype but varying lengths: ``list<dtype>``; numpy scalars: their dtype.
- lists: Arrow lists of what pyarrow infers for the items.
- a field whose values cannot share one of these types (a string in one
  message, a number in another; a bool and an int; arrays of different
  dtypes or ranks; ints over 64 bits; map keys that are not strings) falls
  back to a **string column of JSON text** (the plain form of
  :mod:`mcl.jsonform`: numpy arrays as nested lists, bytes as base64, NaN
  and infinity null, so the text is valid JSON) for every row of that
  table: never dropped. A map key that is not a string names its column
  by the same rule (bytes base64, others their JSON text).
- a field missing in a message is null in that row.
- nesting is bounded: a field whose column would nest maps and lists more
  than :data:`MAX_NESTING` levels deep (Parquet readers refuse deep schemas;
  pyarrow's limit is 100 Parquet levels) is the JSON string column too, from
  the level where the bound is reached.
"""

from __future__ import annotations

import gc
import json
from functools import partial
from itertools import repeat
from collections.abc import Iterable
from typing import Any

import msgpack
import numpy as np

from mcl.jsonform import json_key
from mcl.message import _ext_hook
from mcl.tables import require
from mcl.tables.batches import ORIGIN_KEY
from mcl.tables.flat import flat_columns
from mcl.timeutil import NS_PER_S

__all__ = ["decode", "decode_all", "unpack_column", "conform", "conform_all", "unify", "CastFailed", "RESERVED_COLUMNS"]

RESERVED_COLUMNS = ("time", "elapsed", "topic", "log")  # columns mcl adds; fields so named get a trailing _
MAX_NESTING = 32  # levels of structs and lists in one column (a 32-dimensional numpy array fits); deeper: JSON

_ARROW_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OverflowError, UnicodeError, KeyError)


def _batches(data: Any) -> tuple[list[Any], int | None]:
    """The record batches of a Table, a RecordBatch or an iterable of batches, and the origin in their metadata."""
    pa = require("pyarrow", "decoding tables")
    if isinstance(data, pa.Table):
        batches, schema = data.to_batches(), data.schema
    elif isinstance(data, pa.RecordBatch):
        batches, schema = [data], data.schema
    else:
        batches = list(data)
        schema = batches[0].schema if batches else None
    origin = None
    if schema is not None and schema.metadata and ORIGIN_KEY in schema.metadata:
        origin = int(schema.metadata[ORIGIN_KEY])
    return batches, origin


def decode(data: Any, type: str, *, origin_ns: int | None = None) -> Any:
    """The records of message type `type` in `data` as a ``pyarrow.Table`` of typed columns.

    `data` is what :meth:`LogReader.iter_batches` / :meth:`LogReader.to_arrow`
    give (a Table, a RecordBatch or an iterable of batches). ``elapsed``
    counts from `origin_ns` (UTC ns), by default the origin in the schema
    metadata (``mcl.origin_ns``), else 0. Records of other types and raw
    payloads are left out. The column types are in this module's docstring.
    """
    tables = decode_all(data, origin_ns=origin_ns, types={type})
    pa = require("pyarrow")
    if type in tables:
        return tables[type]
    return pa.table({"time": pa.array([], pa.timestamp("ns", tz="UTC")), "elapsed": pa.array([], pa.float64()), "topic": pa.array([], pa.string())})


def decode_all(
    data: Any,
    *,
    origin_ns: int | None = None,
    types: Iterable[str] | None = None,
    raw: bool = False,
) -> dict[str | None, Any]:
    """Every message type in `data` decoded: ``{type name: Table}`` (see :func:`decode`).

    `types` keeps only those types. With `raw`, the records that are not
    named messages (raw data, or payloads that are not valid msgpack) are
    under the key None as a table of ``time``, ``elapsed``, ``topic`` and
    ``payload`` (the bytes).
    """
    pa = require("pyarrow", "decoding tables")
    batches, meta_origin = _batches(data)
    origin = origin_ns if origin_ns is not None else (meta_origin or 0)
    wanted = None if types is None else set(types)
    rows: dict[str | None, list[tuple[Any, Any]]] = {}  # per type: (batch part, maps or (keys, arrays))
    for batch in batches:
        if not batch.num_rows:
            continue
        fast = flat_columns(batch.column(2)) if FAST_PATH else None
        if fast is not None:
            for type_name, (picks, keys, arrays) in fast.items():
                if wanted is None or type_name in wanted:
                    part = batch if len(picks) == batch.num_rows else batch.take(pa.array(picks, pa.int64()))
                    rows.setdefault(type_name, []).append((part, (keys, arrays)))
            continue
        values = unpack_column(batch.column(2))
        groups = _group_by_name(values)
        for name, index in groups.items():
            if name is None and not raw:
                continue
            if name is not None and wanted is not None and name not in wanted:
                continue
            if len(index) == batch.num_rows:
                part, picked = batch, values
            else:
                part, picked = batch.take(pa.array(index, pa.int64())), [values[i] for i in index]
            rows.setdefault(name, []).append((part, picked))
    tables: dict[str | None, Any] = {}
    for name, parts in rows.items():
        part_batches = [p for p, _ in parts]
        times = pa.chunked_array([b.column(0) for b in part_batches], pa.int64()).combine_chunks()
        topics = pa.chunked_array([b.column(1) for b in part_batches]).cast(pa.string()).combine_chunks()
        head = _head_columns(pa, times, topics, origin)
        if name is None:
            payload = pa.chunked_array([b.column(2) for b in part_batches], pa.binary()).combine_chunks()
            tables[None] = pa.table({**head, "payload": payload})
            continue
        columns = _join_fast(pa, [c for _, c in parts])
        if columns is None:
            maps = [m for p, c in parts for m in (c if isinstance(c, list) else unpack_column(p.column(2)))]
            columns = _field_columns(pa, maps)
        tables[name] = pa.table({**head, **columns})
    return tables


FAST_PATH = True  # parse flat maps of scalars with numpy (mcl.tables.flat); False: always msgpack (tests compare)
_WIDENS = {pa_name: rank for rank, pa_name in enumerate(("null", "int64", "double"))}


def _join_fast(pa: Any, parts: list[Any]) -> dict[str, Any] | None:
    """The columns of a type whose every batch went through the numpy parser, when they join as
    the msgpack path would make them (same keys; per field one type, or null / int64 / double
    widening to the widest); None otherwise."""
    if not parts or any(isinstance(c, list) for c in parts):
        return None
    keys = parts[0][0]
    if any(k != keys for k, _ in parts):
        return None
    arrays = []
    for i in range(len(keys)):
        pieces = [a[i] for _, a in parts]
        kinds = {str(p.type) for p in pieces}
        if len(kinds) > 1:
            if not kinds <= set(_WIDENS):
                return None
            widest = max(kinds, key=_WIDENS.__getitem__)
            try:
                pieces = [p.cast(pa.type_for_alias(widest)) for p in pieces]
            except pa.ArrowInvalid:  # an int64 not exact as a double: the msgpack path makes JSON
                return None
        arrays.append(pa.concat_arrays(pieces) if len(pieces) > 1 else pieces[0])
    return _labels(keys, arrays)


def _group_by_name(values: list[Any]) -> dict[str | None, list[int]]:
    """Row numbers of each message type name (None: not a named message)."""
    try:
        names: list[Any] = list(map(dict.get, values, repeat("name")))  # C speed when every value is a map
    except TypeError:
        names = [v.get("name") if type(v) is dict else None for v in values]
    first = names[0]
    if isinstance(first, str) and names.count(first) == len(names):
        return {first: list(range(len(names)))}
    groups: dict[str | None, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name if isinstance(name, str) else None, []).append(i)
    return groups


def _head_columns(pa: Any, times: Any, topics: Any, origin: int) -> dict[str, Any]:
    stamps = times.cast(pa.timestamp("ns", tz="UTC"))
    elapsed = pa.array((times.to_numpy() - origin) / NS_PER_S, pa.float64())
    return {"time": stamps, "elapsed": elapsed, "topic": topics}


def unpack_column(payloads: Any) -> list[Any]:
    """The payloads of a binary Arrow array unpacked as :func:`mcl.message.unpack` does
    (numpy arrays included); a payload that is not one valid msgpack value gives None.

    The cyclic garbage collector is paused meanwhile: unpacking makes many
    containers and none of them is garbage.
    """
    values = payloads.to_pylist()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            return list(map(_unpackb, values))
        except Exception:  # msgpack raises several unrelated types on bad bytes
            return [_unpack_one(p) for p in values]
    finally:
        if was_enabled:
            gc.enable()


_unpackb = partial(msgpack.unpackb, raw=False, ext_hook=_ext_hook, strict_map_key=False, unicode_errors="surrogateescape")


def _unpack_one(payload: bytes | None) -> Any:
    try:
        return _unpackb(payload)
    except Exception:
        return None


SAMPLE_ROWS = 64  # maps whose values pick the column types of the fast path


def _field_columns(pa: Any, maps: list[dict[Any, Any]]) -> dict[str, Any]:
    """One column per key of `maps` (message payloads of one type)."""
    first = list(maps[0])
    keys = [k for k in first if k != "name"]
    arrays = None
    if sum(map(len, maps)) == len(maps) * len(first):
        arrays = _fast_columns(pa, maps, keys)
        # Every map is as long as the first: if no column has a null (which a missing key
        # would make), every map has exactly the first one's keys. Otherwise look.
        if arrays is not None and any(a.null_count for a in arrays) and set().union(*maps) != set(first):
            arrays = None
    if arrays is None:
        keys = [k for k in _all_keys(maps) if k != "name"]
        arrays = _fast_columns(pa, maps, keys)
    if arrays is None:
        arrays = [to_column(pa, [m.get(key) for m in maps]) for key in keys]
    return _labels(keys, arrays)


def _labels(keys: list[Any], arrays: list[Any]) -> dict[str, Any]:
    """Column names for fields: non-string keys as JSON, added columns' names with a trailing _."""
    columns: dict[str, Any] = {}
    for key, array in zip(keys, arrays):
        label = json_key(key)
        if label in RESERVED_COLUMNS:
            label += "_"
        while label in columns:
            label += "_"
        columns[label] = array
    return columns


def _all_keys(maps: list[dict[Any, Any]]) -> list[Any]:
    """Keys of every map: the first map's order, then keys met later in the order met."""
    keys = list(maps[0])
    seen = set(keys)
    if set().union(*maps) != seen:
        for m in maps:
            for k in m:
                if k not in seen:
                    seen.add(k)
                    keys.append(k)
    return keys


def _fast_columns(pa: Any, maps: list[dict[Any, Any]], keys: list[Any]) -> list[Any] | None:
    """The columns in one C++ pass: types picked on a sample by :func:`to_column`, then
    ``pyarrow.array(maps, type=struct)``; None when a value does not fit its sample's type.

    numpy-array fields are stacked by numpy instead (pyarrow would not keep
    their dtype and shape).
    """
    if len(maps) <= SAMPLE_ROWS or not all(isinstance(k, str) for k in keys):
        return None
    sample = maps[:SAMPLE_ROWS]
    struct_fields, array_keys = [], []
    for key in keys:
        values = [m.get(key) for m in sample]
        if any(type(v) is np.ndarray for v in values):
            array_keys.append(key)
            continue
        arrow_type = to_column(pa, values).type
        if pa.types.is_null(arrow_type) or arrow_type == pa.string() and any(type(v) is not str for v in values if v is not None):
            return None  # no value in the sample, or already the JSON fallback: the slow path decides
        struct_fields.append(pa.field(key, arrow_type))
    try:
        struct = pa.array(maps, type=pa.struct(struct_fields))
        arrays = {f.name: struct.field(i) for i, f in enumerate(struct_fields)}
        for key in array_keys:
            column = _array_column(pa, [m.get(key) for m in maps])
            if column is None:
                return None
            arrays[key] = column
    except _ARROW_ERRORS + (pa.ArrowException,):
        return None
    return [arrays[k] for k in keys]


def to_column(pa: Any, values: list[Any], depth: int = 0) -> Any:
    """An Arrow array of `values` by the rules of this module (JSON strings when nothing else fits).

    `depth` is the nesting level of `values` in the column (0: a field of the message).
    """
    first = next((v for v in values if v is not None), None)
    if first is None:
        return pa.nulls(len(values))
    if depth >= MAX_NESTING:
        return json_column(pa, values)
    kind = type(first)
    column = None
    try:
        if kind is np.ndarray:
            column = _array_column(pa, values)
        elif kind is dict:
            column = _struct_column(pa, values, depth)
        else:
            column = pa.array(values)
    except _ARROW_ERRORS + (pa.ArrowException,):
        pass
    if column is None or depth + _nesting(pa, column.type) > MAX_NESTING:
        return json_column(pa, values)
    return column


def _nesting(pa: Any, arrow_type: Any) -> int:
    """Levels of structs and lists in `arrow_type` (0 for a scalar type), counted up to MAX_NESTING + 1."""
    deepest = 0
    level = [arrow_type]
    while level and deepest <= MAX_NESTING:
        below: list[Any] = []
        for t in level:
            if pa.types.is_struct(t):
                below.extend(t.field(i).type for i in range(t.num_fields))
            elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
                below.append(t.value_type)
            elif pa.types.is_map(t):
                below.extend((t.key_type, t.item_type))
        if below:
            deepest += 1
        level = below
    return deepest


def _array_column(pa: Any, values: list[Any]) -> Any | None:
    present = [v for v in values if v is not None]
    if not all(type(v) is np.ndarray for v in present):
        return None
    dtype, shape = present[0].dtype, present[0].shape
    same = all(v.dtype == dtype and v.shape == shape for v in present)
    mask = None
    if len(present) < len(values):
        mask = pa.array([v is None for v in values])
    if same:
        try:
            value_type = pa.from_numpy_dtype(dtype.newbyteorder("=") if dtype.byteorder not in "=|" else dtype)
        except (NotImplementedError, TypeError, ValueError, pa.ArrowException):
            return None
        filler = np.zeros(shape, dtype=dtype)
        stacked = np.stack([filler if v is None else v for v in values]).astype(dtype.newbyteorder("="), copy=False)
        flat = pa.array(stacked.reshape(-1), type=value_type)
        if not shape:
            return pa.array(stacked, type=value_type, mask=None if mask is None else np.array([v is None for v in values]))
        column = flat
        for size in reversed(shape[1:]):
            column = pa.FixedSizeListArray.from_arrays(column, size)
        return pa.FixedSizeListArray.from_arrays(column, shape[0], mask=mask)
    if all(v.ndim == 1 and v.dtype == dtype for v in present):
        try:
            value_type = pa.from_numpy_dtype(dtype)
        except (NotImplementedError, TypeError, ValueError, pa.ArrowException):
            return None
        lengths = np.array([0 if v is None else len(v) for v in values], dtype=np.int64)
        offsets = np.zeros(len(values) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        flat = pa.array(np.concatenate(present).astype(dtype.newbyteorder("="), copy=False), type=value_type)
        return pa.ListArray.from_arrays(pa.array(offsets), flat, mask=mask)
    return None


def _struct_column(pa: Any, values: list[Any], depth: int) -> Any | None:
    present = [v for v in values if v is not None]
    if not all(type(v) is dict for v in present):
        return None
    keys: dict[Any, None] = {}
    for v in present:
        keys.update(dict.fromkeys(v))
    if not keys or not all(isinstance(k, str) for k in keys):
        return None
    children = [to_column(pa, [None if v is None else v.get(k) for v in values], depth + 1) for k in keys]
    mask = pa.array([v is None for v in values]) if len(present) < len(values) else None
    return pa.StructArray.from_arrays(children, names=list(keys), mask=mask)


def json_column(pa: Any, values: list[Any]) -> Any:
    """The fallback column: each value as JSON text (None stays null)."""
    return pa.array([None if v is None else _json_text(v) for v in values], type=pa.string())


def _json_text(value: Any) -> str:
    try:
        return json.dumps(_jsonable(value), allow_nan=False)
    except RecursionError:  # nested deeper than Python recurses (msgpack unpacks 1,023 levels)
        return _deep_json_text(value)


def _deep_json_text(value: Any) -> str:
    """JSON text of maps and lists nested at any depth, with an explicit stack (leaves as :func:`_json_text`)."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Text):
            out.append(item)
        elif type(item) is dict:
            parts: list[Any] = [_Text("}")]
            for n, (k, v) in enumerate(reversed(item.items())):
                parts.append(v)
                parts.append(_Text(json.dumps(json_key(k)) + ": "))
                if n < len(item) - 1:
                    parts.append(_Text(","))
            parts.append(_Text("{"))
            stack.extend(parts)
        elif type(item) in (list, tuple):
            parts = [_Text("]")]
            for n, v in enumerate(reversed(item)):
                parts.append(v)
                if n < len(item) - 1:
                    parts.append(_Text(","))
            parts.append(_Text("["))
            stack.extend(parts)
        else:
            out.append(json.dumps(_jsonable(item), allow_nan=False))
    return "".join(out)


class _Text(str):
    """Literal JSON text on the stack of :func:`_deep_json_text`."""


def _jsonable(value: Any) -> Any:
    from mcl.jsonform import to_plain_json

    return to_plain_json(value)


# -- schemas across tables (Parquet parts, Dask partitions) -----------------------------


def unify(schemas: list[Any]) -> Any:
    """One schema for tables of one message type decoded separately.

    Fields keep the first order they appear in; types are unified as
    pyarrow does with ``promote_options="permissive"`` (null gives way to any
    type, int64 widens to float64, ...); a field whose types do not unify
    becomes a JSON string column (as within one table).
    """
    pa = require("pyarrow")
    names: dict[str, list[Any]] = {}
    for schema in schemas:
        for f in schema:
            names.setdefault(f.name, []).append(f.type)
    fields = []
    for name, kinds in names.items():
        try:
            merged = pa.unify_schemas([pa.schema([(name, k)]) for k in kinds], promote_options="permissive")
            fields.append(merged.field(0))
        except (pa.ArrowException, TypeError, ValueError):
            fields.append(pa.field(name, pa.string()))
    meta = next((s.metadata for s in schemas if s.metadata), None)
    return pa.schema(fields, metadata=meta)


def conform(table: Any, schema: Any) -> Any:
    """`table` with exactly the columns of `schema` (a superset of its own), cast to their types.

    A missing column is all null; a column whose cast fails (or that must
    become the JSON fallback) is rebuilt from its Python values.
    """
    pa = require("pyarrow")
    extra = [n for n in table.column_names if schema.get_field_index(n) < 0]
    if extra:
        raise ValueError(f"columns {extra} are not in the schema")
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if column.type == field.type:
            columns.append(column)
            continue
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowException, TypeError, ValueError):
            if field.type != pa.string():
                raise CastFailed(field.name, column.type, field.type) from None
            columns.append(json_column(pa, column.to_pylist()))
    return pa.Table.from_arrays(columns, schema=schema)


class CastFailed(ValueError):
    """A column cannot take the unified type (an int64 too large for float64, ...)."""

    def __init__(self, name: str, have: Any, want: Any) -> None:
        super().__init__(f"column {name!r} of type {have} cannot be cast to {want}")
        self.name = name


def fall_back(schema: Any, failed: CastFailed) -> Any:
    """`schema` with the field that failed to cast turned into the JSON string fallback."""
    pa = require("pyarrow")
    return schema.set(schema.get_field_index(failed.name), pa.field(failed.name, pa.string()))


def conform_all(tables: list[Any], schema: Any) -> tuple[list[Any], Any]:
    """Every table conformed to `schema`, whose fields that some table cannot take become JSON strings."""
    while True:
        try:
            return [conform(t, schema) for t in tables], schema
        except CastFailed as failed:
            schema = fall_back(schema, failed)

