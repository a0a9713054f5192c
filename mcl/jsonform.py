"""The JSON form of payload values: one set of rules for every place mcl writes payloads as JSON.

Two forms share the same rules for everything but arrays:

* :func:`to_plain_json` (``mcl-cat``, ``mcl-info --json``, the JSON columns
  of :mod:`mcl.tables`): numpy arrays as nested lists.
* :func:`to_json_value` (the MCAP export, the Foxglove bridge): what
  Foxglove's JSON Schema loader accepts, no array holds arrays: a numpy
  array of 2 or more dimensions, or any array that is an element of an
  array, is ``{"shape": [d0, ...], "data": [...]}`` (row-major), a list
  inside a list ``{"values": [...]}``.

The common rules: NaN and infinity are ``null`` (JSON has no such numbers:
the text always passes ``json.dumps(..., allow_nan=False)``); bytes are
base64 strings; map keys are strings (str as is, bytes base64 as bytes
values, other keys their JSON text); numpy scalars are numbers; complex
numbers ``[real, imag]``; unknown msgpack extensions ``{"ext": code,
"data": base64}``; sets sorted lists; messages their payload map;
anything else its ``str``.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import msgpack
import numpy as np

__all__ = ["to_plain_json", "to_json_value", "json_key", "dumps"]


def dumps(value: Any, *, indent: int | None = None) -> str:
    """`value` in the plain form as one JSON text (valid JSON: no NaN)."""
    return json.dumps(to_plain_json(value), indent=indent, ensure_ascii=False, allow_nan=False)


def to_plain_json(value: Any) -> Any:
    """`value` (decoded payloads, numpy, messages...) as JSON values; numpy arrays as nested lists."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {json_key(k): to_plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain_json(value.tolist())
    return _leaf(value, to_plain_json)


def json_key(key: Any) -> str:
    """A map key as a JSON object key (see the module docstring)."""
    if isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(key)).decode("ascii")
    return json.dumps(to_plain_json(key), ensure_ascii=False, allow_nan=False)


def _leaf(value: Any, convert: Any) -> Any:
    """The rules shared by both forms for everything but maps, sequences and arrays."""
    from mcl.message import Message

    if isinstance(value, np.generic):
        return convert(value.item())
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, complex):
        return [convert(value.real), convert(value.imag)]
    if isinstance(value, msgpack.ExtType):
        return {"ext": value.code, "data": base64.b64encode(value.data).decode("ascii")}
    if isinstance(value, (set, frozenset)):
        return sorted((convert(v) for v in value), key=repr)
    if isinstance(value, Message):
        return convert(value.to_dict())
    return str(value)


# -- the Foxglove form, with the markers its schema inference reads ----------------------


class Numpy:
    """A converted numpy value and its dtype (marked form only, for the MCAP schema inference)."""

    __slots__ = ("value", "descr")

    def __init__(self, value: Any, descr: str | None) -> None:
        self.value = value
        self.descr = descr


class Base64:
    """Bytes converted to a base64 string (marked form only)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value


class Wrapped:
    """A list inside a list, converted to ``{"values": [...]}`` (marked form only)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def to_json_value(value: Any) -> Any:
    """An unpacked payload value as JSON values in the Foxglove form (no arrays of arrays)."""
    return to_marked_json(value, False, False)


def to_marked_json(value: Any, in_array: bool, mark: bool) -> Any:
    """:func:`to_json_value`; with `mark`, numpy values, bytes and wrapped lists come in marker objects."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {json_key(k): to_marked_json(v, False, mark) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [to_marked_json(v, True, mark) for v in value]
        if in_array:
            return Wrapped({"values": items}) if mark else {"values": items}
        return items
    if isinstance(value, np.ndarray):
        return _convert_array(value, in_array, mark)
    if isinstance(value, np.generic):
        converted = to_marked_json(value.item(), in_array, mark)
        return Numpy(converted, _descr(value.dtype)) if mark and value.dtype.kind in "biuf" else converted
    if isinstance(value, (bytes, bytearray, memoryview)) and mark:
        return Base64(base64.b64encode(bytes(value)).decode("ascii"))
    if isinstance(value, complex):
        return to_marked_json([value.real, value.imag], in_array, mark)
    return _leaf(value, lambda v: to_marked_json(v, False, mark))


def _descr(dtype: np.dtype[Any]) -> str | None:
    descr = np.lib.format.dtype_to_descr(dtype)
    return descr if isinstance(descr, str) else None


def _convert_array(arr: np.ndarray, in_array: bool, mark: bool) -> Any:
    kind = arr.dtype.kind
    if kind in "biuf":
        flat = arr.reshape(-1)
        if kind == "f" and flat.size and not np.isfinite(flat).all():
            obj = flat.astype(object)
            obj[~np.isfinite(flat)] = None
            data = obj.tolist()
        else:
            data = flat.tolist()
        out: Any = data if arr.ndim == 1 and not in_array else {"shape": list(arr.shape), "data": data}
        if arr.ndim == 0:
            out = data[0]
        return Numpy(out, _descr(arr.dtype)) if mark else out
    # complex, structured, strings, dates: element by element, as lists
    return to_marked_json(arr.tolist(), in_array, mark)
