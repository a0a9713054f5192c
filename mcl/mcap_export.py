"""Export logs to MCAP (https://mcap.dev), the container Foxglove and the mcap tools open.

One MCAP channel per (topic, message type), one schema per message type, and
every record becomes one MCAP message whose ``log_time`` and ``publish_time``
are the record's absolute time (``origin_ns + elapsed_ns``, UTC ns since the
epoch; ``elapsed_ns`` alone when the log has no time origin).

Two message encodings:

``json`` (default; what Foxglove decodes)
    channel ``message_encoding="json"``, schema ``encoding="jsonschema"``.
    A named message is its payload map (``name``, ``timestamp`` and the
    fields) as a JSON object. A raw payload (not a named map) becomes
    ``{"value": <the value>}`` under the schema ``RawData``. numpy arrays
    become (nested) lists, numpy scalars plain numbers, ``bytes`` base64
    strings (``"contentEncoding": "base64"`` in the schema), complex
    numbers ``[real, imag]``, non-string map keys strings, and non-finite
    floats (NaN, inf) ``null`` because JSON cannot hold them. The JSON
    schema of a type is inferred from every value of that type in the log
    (two passes over the log), so it holds for every message written.

``msgpack``
    channel ``message_encoding="msgpack"``, schema ``encoding=""`` (the
    registry's self-describing encoding: empty schema data) named after the
    message type. The payload bytes are written exactly as recorded: nothing
    is decoded or re-encoded. numpy values stay msgpack extension types 42 /
    43 (see docs/log-format.md). ``msgpack`` is listed in the MCAP format
    registry, but Foxglove does not decode it: use ``json`` for Foxglove.

The ``mcap`` library is an optional extra: ``pip install 'mcl[mcap]'``.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from mcl.exceptions import LogError, LogExistsError, MclError, MessageError
from mcl.log.reader import LogReader, open_log
from mcl.log.record import Record
from mcl.message import type_name_of, unpack

__all__ = ["ENCODINGS", "RAW_SCHEMA_NAME", "write_mcap", "to_json_value", "make_json_schema"]

ENCODINGS = ("json", "msgpack")
RAW_SCHEMA_NAME = "RawData"  # schema of payloads that are not named messages (as Mcl1Writer's RawData.log)
PROFILE = ""  # no MCAP profile fits (the registry has ros1 and ros2 only)
LIBRARY = "mcl"

PathLike = str | os.PathLike[str]


def _require_mcap() -> Any:
    try:
        from mcap import writer
    except ImportError:
        raise MclError(
            "MCAP export needs the 'mcap' library, which is not installed: pip install 'mcl[mcap]'"
        ) from None
    return writer


# -- JSON conversion -------------------------------------------------------------------


def to_json_value(value: Any) -> Any:
    """An unpacked payload value converted to what ``json.dumps`` writes as valid JSON.

    See the module docstring for the rules (numpy, bytes, non-finite floats, keys).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_json_key(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return _array_to_json(value)
    if isinstance(value, np.generic):
        return to_json_value(value.item())
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, complex):
        return [to_json_value(value.real), to_json_value(value.imag)]
    if isinstance(value, msgpack.ExtType):
        return {"ext": value.code, "data": base64.b64encode(value.data).decode("ascii")}
    return str(value)


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes):
        return key.decode("utf-8", "backslashreplace")
    return str(key)


def _array_to_json(arr: np.ndarray) -> Any:
    kind = arr.dtype.kind
    if kind in "biu":
        return arr.tolist()
    if kind == "f":
        if arr.size and not np.isfinite(arr).all():
            obj = arr.astype(object)
            obj[~np.isfinite(arr)] = None
            return obj.tolist()
        return arr.tolist()
    # complex, structured, strings, dates: element by element
    return to_json_value(arr.tolist())


# -- JSON schema inference -------------------------------------------------------------


@dataclass(slots=True)
class _Shape:
    """What was seen at one place of a message: JSON types, object properties, array items."""

    types: set[str] = field(default_factory=set)  # JSON schema type names
    properties: dict[str, _Shape] | None = None  # when "object" was seen
    items: _Shape | None = None  # when "array" was seen with elements
    base64: bool = False  # a "string" came from bytes

    def add(self, value: Any) -> None:
        """Widen the shape to cover `value` (an unpacked payload value)."""
        if value is None:
            self.types.add("null")
        elif isinstance(value, bool) or isinstance(value, np.bool_):
            self.types.add("boolean")
        elif isinstance(value, (int, np.integer)):
            self.types.add("integer")
        elif isinstance(value, (float, np.floating)):
            self.types.add("number" if math.isfinite(value) else "null")
        elif isinstance(value, str):
            self.types.add("string")
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self.types.add("string")
            self.base64 = True
        elif isinstance(value, dict):
            self.types.add("object")
            if self.properties is None:
                self.properties = {}
            for key, item in value.items():
                name = _json_key(key)
                shape = self.properties.get(name)
                if shape is None:
                    shape = self.properties[name] = _Shape()
                shape.add(item)
        elif isinstance(value, np.ndarray):
            self._add_array(value)
        elif isinstance(value, (list, tuple, complex)):
            self.types.add("array")
            elements = [value.real, value.imag] if isinstance(value, complex) else value
            for item in elements:
                if self.items is None:
                    self.items = _Shape()
                self.items.add(item)
        elif isinstance(value, msgpack.ExtType):
            self.add({"ext": value.code, "data": value.data})
        else:
            self.types.add("string")

    def _add_array(self, arr: np.ndarray) -> None:
        # Whole arrays at once: per-element inference would be slow on big arrays.
        shape = self
        for _ in range(arr.ndim):
            shape.types.add("array")
            if shape.items is None:
                shape.items = _Shape()
            shape = shape.items
        if arr.size == 0:
            return
        kind = arr.dtype.kind
        if kind == "b":
            shape.types.add("boolean")
        elif kind in "iu":
            shape.types.add("integer")
        elif kind == "f":
            finite = np.isfinite(arr)
            if finite.any():
                shape.types.add("number")
            if not finite.all():
                shape.types.add("null")
        else:
            for item in arr.reshape(-1)[:1000].tolist():  # bounded: these dtypes are rare
                shape.add(item)

    def to_schema(self) -> dict[str, Any]:
        """The JSON schema (draft 2020-12 keywords, no $ref: Foxglove does not support it)."""
        types = set(self.types)
        if "number" in types:
            types.discard("integer")  # every integer is a number
        schema: dict[str, Any] = {}
        if len(types) == 1:
            schema["type"] = next(iter(types))
        elif types:
            schema["type"] = sorted(types)
        if self.properties is not None:
            schema["properties"] = {k: v.to_schema() for k, v in self.properties.items()}
        if self.items is not None:
            schema["items"] = self.items.to_schema()
        if self.base64:
            schema["contentEncoding"] = "base64"
        return schema


def make_json_schema(type_name: str | None, values: Iterable[Any]) -> dict[str, Any]:
    """The JSON schema covering every unpacked payload in `values` of one type.

    `type_name` None means raw payloads, which are exported as ``{"value": ...}``.
    """
    shape = _Shape()
    for value in values:
        shape.add(value if type_name is not None else {"value": value})
    return _finish_schema(type_name, shape)


def _finish_schema(type_name: str | None, shape: _Shape) -> dict[str, Any]:
    schema = shape.to_schema()
    schema["type"] = "object"  # Foxglove requires an object at the top
    schema.setdefault("properties", {})
    schema["title"] = type_name if type_name is not None else RAW_SCHEMA_NAME
    if type_name is not None:
        schema["required"] = ["name", "timestamp"]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


# -- writing -------------------------------------------------------------------------


def _type_of(value: Any) -> str | None:
    if isinstance(value, dict):
        name = value.get("name")
        if isinstance(name, str):
            return name
    return None


_U64_MAX = (1 << 64) - 1  # MCAP times are u64 ns since 1970


def _open_reader(reader_or_paths: LogReader | PathLike | Iterable[PathLike]) -> tuple[LogReader, bool]:
    if isinstance(reader_or_paths, LogReader):
        return reader_or_paths, False
    if isinstance(reader_or_paths, (str, os.PathLike)):
        return open_log(reader_or_paths), True
    return open_log(*reader_or_paths), True


def _iter_unpacked(reader: LogReader) -> Iterator[tuple[Record, Any]]:
    for record in reader.iter_records():
        yield record, _unpack_record(record)


def _unpack_record(record: Record) -> Any:
    try:
        return unpack(record.payload)
    except MessageError as exc:
        raise MessageError(
            f"record on topic {record.topic!r} at {record.elapsed_ns / 1e9:.6f} s cannot be exported as JSON: {exc}"
            " (export with encoding='msgpack' to keep the bytes as they are)"
        ) from None


def write_mcap(
    reader_or_paths: LogReader | PathLike | Iterable[PathLike],
    out_path: PathLike,
    *,
    encoding: str = "json",
    compression: str = "zstd",
) -> dict[str, int]:
    """Write the records of a log (or of a :class:`~mcl.LogReader`) to a new MCAP file.

    Args:
        reader_or_paths: an open :class:`~mcl.LogReader` (its topic and time
            filters apply; it is left open) or one or more log paths.
        out_path: the ``.mcap`` file to create; an existing file is never
            overwritten (LogExistsError).
        encoding: "json" (Foxglove decodes it) or "msgpack" (the payload
            bytes as recorded); see the module docstring.
        compression: chunk compression, "zstd", "lz4" or "none".

    Returns the number of messages written per topic. On error the partial
    file is removed. Raises MclError if the ``mcap`` library is missing.
    """
    if encoding not in ENCODINGS:
        raise MclError(f"unknown MCAP message encoding {encoding!r} (known: {', '.join(ENCODINGS)})")
    mcap_writer = _require_mcap()
    compressions = {
        "zstd": mcap_writer.CompressionType.ZSTD,
        "lz4": mcap_writer.CompressionType.LZ4,
        "none": mcap_writer.CompressionType.NONE,
    }
    if compression not in compressions:
        raise MclError(f"unknown MCAP compression {compression!r} (known: {', '.join(compressions)})")
    out = Path(out_path)
    reader, owned = _open_reader(reader_or_paths)
    try:
        schemas_json = _infer_schemas(reader) if encoding == "json" else {}
        try:
            fp = open(out, "xb")
        except FileExistsError:
            raise LogExistsError(out) from None
        except OSError as exc:
            raise LogError(f"{out}: cannot create: {exc.strerror}") from None
        try:
            with fp:
                counts = _write(reader, fp, mcap_writer, compressions[compression], encoding, schemas_json)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    finally:
        if owned:
            reader.close()
    return counts


def _infer_schemas(reader: LogReader) -> dict[str | None, dict[str, Any]]:
    shapes: dict[str | None, _Shape] = {}
    for _record, value in _iter_unpacked(reader):
        name = _type_of(value)
        shape = shapes.get(name)
        if shape is None:
            shape = shapes[name] = _Shape()
        shape.add(value if name is not None else {"value": value})
    return {name: _finish_schema(name, shape) for name, shape in shapes.items()}


def _write(
    reader: LogReader,
    fp: Any,
    mcap_writer: Any,
    compression: Any,
    encoding: str,
    schemas_json: dict[str | None, dict[str, Any]],
) -> dict[str, int]:
    writer = mcap_writer.Writer(fp, compression=compression)
    writer.start(profile=PROFILE, library=LIBRARY)
    origin = reader.origin_ns or 0
    schema_ids: dict[str | None, int] = {}
    channels: dict[tuple[str, str | None], int] = {}
    sequences: dict[int, int] = {}
    counts: dict[str, int] = {}
    dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode
    for record in reader.iter_records():
        if encoding == "json":
            value = _unpack_record(record)
            name = _type_of(value)
            data = dumps(to_json_value(value if name is not None else {"value": value})).encode("utf-8")
        else:
            name = type_name_of(record.payload)
            data = record.payload
        schema_id = schema_ids.get(name)
        if schema_id is None:
            schema_name = name if name is not None else RAW_SCHEMA_NAME
            if encoding == "json":
                schema_id = writer.register_schema(
                    name=schema_name,
                    encoding="jsonschema",
                    data=json.dumps(schemas_json[name], separators=(",", ":")).encode("utf-8"),
                )
            else:
                schema_id = writer.register_schema(name=schema_name, encoding="", data=b"")
            schema_ids[name] = schema_id
        key = (record.topic, name)
        channel_id = channels.get(key)
        if channel_id is None:
            metadata = {"mcl.type": name if name is not None else ""}
            channel_id = writer.register_channel(
                topic=record.topic, message_encoding=encoding, schema_id=schema_id, metadata=metadata
            )
            channels[key] = channel_id
        sequence = sequences.get(channel_id, 0)
        sequences[channel_id] = sequence + 1
        when = origin + record.elapsed_ns
        if not 0 <= when <= _U64_MAX:
            raise LogError(
                f"record on topic {record.topic!r} at {record.elapsed_ns / 1e9:.6f} s has the time {when} ns since 1970,"
                f" outside MCAP's range of 0 to 2**64 - 1 ns"
            )
        writer.add_message(channel_id=channel_id, log_time=when, data=data, publish_time=when, sequence=sequence)
        counts[record.topic] = counts.get(record.topic, 0) + 1
    info = {"origin_ns": str(reader.origin_ns) if reader.origin_ns is not None else "", "encoding": encoding}
    for index, source in enumerate(reader.sources):
        # MCAP strings are UTF-8: a path of other bytes is kept with its odd bytes escaped.
        info[f"source.{index}.path"] = os.fsencode(source.path).decode("utf-8", "backslashreplace")
        info[f"source.{index}.format"] = source.format
    writer.add_metadata("mcl", info)
    writer.finish()
    return counts
