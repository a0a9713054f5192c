"""MCAP (https://mcap.dev) as a log format: read any MCAP file, write MCAP that Foxglove opens.

Writing (:class:`McapWriter`): one MCAP channel per (topic, message type), one
schema per message type; each record becomes one MCAP message whose
``log_time`` and ``publish_time`` are its absolute time (``origin_ns +
elapsed_ns``, UTC ns). Two message encodings:

``json`` (default; what Foxglove decodes)
    channel ``message_encoding="json"``, schema ``encoding="jsonschema"``. A
    named message is its payload map (``name``, ``timestamp``, fields) as a
    JSON object; a raw payload (not a named map) is ``{"value": ...}`` under
    the schema ``RawData``; values take the JSON form of :mod:`mcl.jsonform`
    (the Foxglove form). The schemas follow what Foxglove's JSON Schema
    loader accepts: every field has one type (no unions), every array has an
    item type, and no array holds arrays:

    * a 1-D numpy array is an array of numbers; a numpy scalar a number;
    * a numpy array of 2 or more dimensions, or any array that is an element
      of an array, is an object ``{"shape": [d0, d1, ...], "data": [...]}``
      with the elements flat in row-major (C) order;
    * a list inside a list is an object ``{"values": [...]}``;
    * ``bytes`` are base64 strings (``contentEncoding: base64``), complex
      numbers ``[real, imag]``, map keys strings, and NaN / infinity ``null``
      (JSON has no such numbers);
    * a field seen with several JSON types gets one (object > array > string
      > number > integer > boolean); a field only ever null is typed string.

    The schema of a numpy field carries ``"mcl.numpy": "<descr>"`` (its
    dtype, e.g. ``"<f8"``) and a wrapped list ``"mcl.list": true``: unknown
    keywords, ignored by other tools, that let :class:`McapSource` rebuild
    the same payload bytes (non-finite floats come back as NaN). The record
    with the empty topic name (the original MCL data set has one) is written
    on the topic :data:`EMPTY_TOPIC` (``"(empty)"``), which Foxglove can list;
    every channel keeps its real topic in its metadata ``mcl.topic``.

``msgpack``
    ``message_encoding="msgpack"``, schema ``encoding=""`` named after the
    type: the payload bytes exactly as recorded. Foxglove does not decode it.

Reading (:class:`McapSource`): any MCAP file, indexed (the summary's chunk
indexes: a time window starts at the right chunk, no scan) or not (a file
cut short: read from the start, a bounded reordering window). Payloads:
``msgpack`` channels verbatim; ``json`` channels decoded and re-encoded as
msgpack (mcl's own export: the same bytes as recorded); any other encoding
(protobuf, ros1, cdr, ...) as the raw bytes. The time origin is the one mcl
wrote in its metadata, else the first message's log time. Damage (a bad
chunk, a cut tail, messages of a channel no Channel record defines, log times
over int64 ns) is skipped with a :class:`~mcl.LogDamageWarning`. The summary
(counts, time range: what ``mcl-info`` and the replay's start-up read) comes
from the Statistics record and the message indexes when the file has them and
they agree, without reading a chunk; else from a pass over the messages.

The ``mcap`` library is an optional extra: ``pip install 'mcl[mcap]'``.
"""

from __future__ import annotations

import base64
import heapq
import json
import os
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mcl.jsonform import Base64 as _Base64
from mcl.jsonform import Numpy as _Numpy
from mcl.jsonform import Wrapped as _Wrapped
from mcl.jsonform import to_json_value
from mcl.jsonform import to_marked_json as _convert
from mcl.exceptions import LogDamageWarning, LogError, LogExistsError, LogFormatError, MclError, MessageError
from mcl.log.formats import file_starts_with
from mcl.log.record import Damage, LogSummary, Record, TopicFilter, TopicStats, total_topics
from mcl.message import encode, type_name_of, unpack
from mcl.timeutil import NS_PER_S

__all__ = [
    "FORMAT",
    "SUFFIXES",
    "ENCODINGS",
    "EMPTY_TOPIC",
    "RAW_SCHEMA_NAME",
    "McapSource",
    "McapWriter",
    "probe",
    "to_json_value",
    "from_json_value",
    "make_json_schema",
    "infer_schemas",
]

FORMAT = "mcap"
SUFFIXES = (".mcap",)
MAGIC = b"\x89MCAP0\r\n"
ENCODINGS = ("json", "msgpack")
RAW_SCHEMA_NAME = "RawData"  # schema of payloads that are not named messages
EMPTY_TOPIC = "(empty)"  # the MCAP topic of records with the empty topic name
PROFILE = ""  # no MCAP profile fits (the registry has ros1 and ros2 only)
LIBRARY = "mcl"
RECORD_LIMIT = 1 << 30  # bytes: a record announcing more is damage, not an allocation
TIME_LIMIT = (1 << 63) - 1  # UTC ns: mcl times are int64; a later MCAP log_time (u64) is damage
REORDER_WINDOW = 65536  # messages held to put a summary-less file in time order
COMPRESSIONS = ("zstd", "lz4", "none")

PathLike = str | os.PathLike[str]


def _mcap() -> Any:
    try:
        import mcap.writer  # noqa: F401
        import mcap.reader  # noqa: F401
    except ImportError:
        raise MclError("MCAP needs the 'mcap' library, which is not installed: pip install 'mcl[mcap]'") from None
    import mcap

    return mcap


def probe(path: Path) -> bool:
    """True if `path` is an MCAP file (magic bytes, or a ``.mcap`` name)."""
    if not path.is_file():
        return False
    return path.suffix in SUFFIXES or file_starts_with(path, MAGIC)


# -- JSON conversion -------------------------------------------------------------------


def from_json_value(value: Any, schema: dict[str, Any]) -> Any:
    """A JSON value written by :func:`to_json_value` back to payload values, guided by its schema.

    numpy fields (``mcl.numpy``) become numpy arrays / scalars of their dtype
    again, wrapped lists (``mcl.list``) lists, base64 strings bytes.
    """
    if value is None:
        return None
    descr = schema.get("mcl.numpy")
    if isinstance(descr, str):
        return _restore_numpy(value, descr)
    if schema.get("mcl.list") is True and isinstance(value, dict) and isinstance(value.get("values"), list):
        items = _part(_part(_part(schema, "properties"), "values"), "items")
        return [from_json_value(v, items) for v in value["values"]]
    if isinstance(value, dict):
        properties = _part(schema, "properties")
        return {k: from_json_value(v, _part(properties, k)) for k, v in value.items()}
    if isinstance(value, list):
        items = _part(schema, "items")
        return [from_json_value(v, items) for v in value]
    if isinstance(value, str) and schema.get("contentEncoding") == "base64":
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            return value
    return value


def _part(schema: dict[str, Any], key: str) -> dict[str, Any]:
    """The sub-schema `key` of `schema`; {} when missing or not an object (a schema from a file is hostile)."""
    part = schema.get(key)
    return part if isinstance(part, dict) else {}


def _restore_numpy(value: Any, descr: str) -> Any:
    try:
        dtype = np.lib.format.descr_to_dtype(descr)  # type: ignore[arg-type]
        if isinstance(value, dict):
            arr = np.array(value.get("data", []), dtype=dtype)
            return arr.reshape([int(n) for n in value.get("shape", [arr.size])])
        if isinstance(value, list):
            return np.array(value, dtype=dtype)
        return dtype.type(value)
    except (TypeError, ValueError, OverflowError, AttributeError, RecursionError):
        return value  # not what mcl wrote: keep the JSON value


# -- JSON schema inference -------------------------------------------------------------

_TYPE_ORDER = ("object", "array", "string", "number", "integer", "boolean")


@dataclass(slots=True)
class _Shape:
    """What was seen at one place of the converted messages: JSON types, properties, items."""

    types: set[str] = field(default_factory=set)
    properties: dict[str, _Shape] | None = None
    items: _Shape | None = None
    descrs: set[str | None] = field(default_factory=set)  # numpy dtypes seen here
    wrapped: bool = False  # a list inside a list
    base64: bool = False  # a string made from bytes

    def add(self, value: Any) -> None:
        """Widen the shape to cover `value` (a converted value, with markers)."""
        if isinstance(value, _Numpy):
            self.descrs.add(value.descr)
            value = value.value
        elif isinstance(value, _Wrapped):
            self.wrapped = True
            value = value.value
        elif isinstance(value, _Base64):
            self.base64 = True
            value = value.value
        if value is None:
            return
        if isinstance(value, bool):
            self.types.add("boolean")
        elif isinstance(value, int):
            self.types.add("integer")
        elif isinstance(value, float):
            self.types.add("number")
        elif isinstance(value, str):
            self.types.add("string")
        elif isinstance(value, dict):
            self.types.add("object")
            if self.properties is None:
                self.properties = {}
            for key, item in value.items():
                shape = self.properties.get(key)
                if shape is None:
                    shape = self.properties[key] = _Shape()
                shape.add(item)
        elif isinstance(value, list):
            self.types.add("array")
            if self.items is None:
                self.items = _Shape()
            for item in value:
                self.items.add(item)

    def to_schema(self) -> dict[str, Any]:
        """One JSON type per place (see the module docstring); no $ref (Foxglove has none)."""
        kind = next((t for t in _TYPE_ORDER if t in self.types), "string")
        if kind == "integer" and "number" in self.types:
            kind = "number"
        schema: dict[str, Any] = {"type": kind}
        if kind == "object":
            schema["properties"] = {k: v.to_schema() for k, v in (self.properties or {}).items()}
        elif kind == "array":
            schema["items"] = self.items.to_schema() if self.items is not None and self.items.types else {"type": "number"}
        if len(self.descrs) == 1 and None not in self.descrs:
            schema["mcl.numpy"] = next(iter(self.descrs))
        if self.wrapped and kind == "object":
            schema["mcl.list"] = True
        if self.base64 and kind == "string":
            schema["contentEncoding"] = "base64"
        return schema


def _shape_of(value: Any) -> _Shape:
    shape = _Shape()
    shape.add(value)
    return shape


def make_json_schema(type_name: str | None, values: Iterable[Any]) -> dict[str, Any]:
    """The JSON schema covering every unpacked payload in `values` of one type (None: raw payloads)."""
    shape = _Shape()
    for value in values:
        shape.add(_marked(type_name, value))
    return _finish_schema(type_name, shape)


def _marked(type_name: str | None, value: Any) -> Any:
    return _convert(value if type_name is not None else {"value": value}, False, True)


def _finish_schema(type_name: str | None, shape: _Shape) -> dict[str, Any]:
    shape.types = {"object"}  # Foxglove requires an object at the top
    schema = shape.to_schema()
    schema["title"] = type_name if type_name is not None else RAW_SCHEMA_NAME
    if type_name is not None:
        schema["required"] = [k for k in ("name", "timestamp") if k in schema["properties"]]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _type_of(value: Any) -> str | None:
    if isinstance(value, dict):
        name = value.get("name")
        if isinstance(name, str):
            return name
    return None


def _unpack_record(topic: str, elapsed_ns: int, payload: bytes) -> Any:
    try:
        return unpack(payload)
    except MessageError as exc:
        raise MessageError(
            f"record on topic {topic!r} at {elapsed_ns / NS_PER_S:.6f} s cannot be exported as JSON: {exc}"
            " (use the msgpack encoding to keep the bytes as they are)"
        ) from None


def infer_schemas(records: Iterable[Record]) -> dict[str | None, dict[str, Any]]:
    """The JSON schema of every message type in `records` (one pass; None = raw payloads)."""
    shapes: dict[str | None, _Shape] = {}
    for elapsed_ns, topic, payload in records:
        value = _unpack_record(topic, elapsed_ns, payload)
        name = _type_of(value)
        shape = shapes.get(name)
        if shape is None:
            shape = shapes[name] = _Shape()
        try:
            shape.add(_marked(name, value))
        except RecursionError:
            raise _too_deep(topic, elapsed_ns) from None
    return {name: _finish_schema(name, shape) for name, shape in shapes.items()}


def _too_deep(topic: str, elapsed_ns: int) -> MessageError:
    return MessageError(f"record on topic {topic!r} at {elapsed_ns / NS_PER_S:.6f} s is nested too deep to be exported as JSON"
                        " (use the msgpack encoding to keep the bytes as they are)")


# -- writing -------------------------------------------------------------------------


class McapWriter:
    """A new MCAP file at `path` (never overwritten), written record by record.

    Args:
        origin_ns: UTC ns of elapsed 0 (kept in the ``mcl`` metadata record).
        metadata: free key/values written in the ``mcl`` metadata record.
        encoding: "json" (Foxglove) or "msgpack" (bytes as recorded).
        compression: chunk compression, "zstd", "lz4" or "none".
        schemas: the JSON schema per type name (None key: raw payloads), as
            :func:`infer_schemas` makes them; a type not in it gets the
            schema of its first message (which may not describe later ones,
            so conversions infer them first: :meth:`prepare`).
        chunk_size: uncompressed bytes per chunk (the unit of indexing and of loss on damage).
        split_size, split_duration_ns: must be None (one MCAP file).
    """

    format = FORMAT

    def __init__(
        self,
        path: PathLike,
        *,
        origin_ns: int,
        metadata: dict[str, str] | None = None,
        encoding: str = "json",
        compression: str = "zstd",
        schemas: dict[str | None, dict[str, Any]] | None = None,
        chunk_size: int = 1 << 20,
        split_size: int | None = None,
        split_duration_ns: int | None = None,
    ) -> None:
        if encoding not in ENCODINGS:
            raise MclError(f"unknown MCAP message encoding {encoding!r} (known: {', '.join(ENCODINGS)})")
        if compression not in COMPRESSIONS:
            raise MclError(f"unknown MCAP compression {compression!r} (known: {', '.join(COMPRESSIONS)})")
        if split_size is not None or split_duration_ns is not None:
            raise LogError(f"{path}: an MCAP output is one file; it cannot be split")
        mcap = _mcap()
        self.path = Path(path)
        self.origin_ns = origin_ns
        self.encoding = encoding
        self._metadata = dict(metadata or {})
        self._schemas = dict(schemas or {})
        try:
            self._fp: Any = open(self.path, "xb")
        except FileExistsError:
            raise LogExistsError(self.path) from None
        except OSError as exc:
            raise LogError(f"{self.path}: cannot create: {exc.strerror}") from None
        kind = mcap.writer.CompressionType
        try:
            self._writer = mcap.writer.Writer(
                self._fp, chunk_size=chunk_size, compression={"zstd": kind.ZSTD, "lz4": kind.LZ4, "none": kind.NONE}[compression]
            )
            self._writer.start(profile=PROFILE, library=LIBRARY)
        except BaseException:  # e.g. lz4 or zstandard missing: no file left behind
            self._fp.close()
            self.path.unlink(missing_ok=True)
            raise
        self._schema_ids: dict[str | None, int] = {}
        self._channels: dict[tuple[str, str | None], int] = {}
        self._sequences: dict[int, int] = {}
        self._dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode
        self.counts: dict[str, int] = {}  # messages written per topic
        self._closed = False

    @classmethod
    def prepare(cls, records: Iterable[Record], options: dict[str, Any]) -> dict[str, Any]:
        """The writer options for writing `records` (a pass that infers the JSON schemas)."""
        if options.get("encoding", "json") == "json" and options.get("schemas") is None:
            options = dict(options, schemas=infer_schemas(records))
        return options

    @property
    def files(self) -> list[Path]:
        """The file written."""
        return [self.path]

    def write(self, topic: str, payload: bytes, elapsed_ns: int) -> None:
        """Add one record."""
        if self._closed:
            raise RuntimeError("Cannot write to an MCAP writer once it has been closed.")
        when = self.origin_ns + elapsed_ns
        if not 0 <= when <= TIME_LIMIT:
            raise LogError(f"{self.path}: record on topic {topic!r} at {elapsed_ns / NS_PER_S:.9f} s has the time {when} ns "
                           f"(UTC ns since 1970), outside 0..{TIME_LIMIT}: MCAP times are unsigned, mcl's int64")
        if self.encoding == "json":
            value = _unpack_record(topic, elapsed_ns, payload)
            name = _type_of(value)
            wrapped = value if name is not None else {"value": value}
            try:
                data = self._dumps(to_json_value(wrapped)).encode("utf-8")
            except RecursionError:
                raise _too_deep(topic, elapsed_ns) from None
        else:
            name = type_name_of(payload)
            wrapped = None
            data = payload
        key = (topic, name)
        channel_id = self._channels.get(key)
        if channel_id is None:
            try:
                channel_id = self._new_channel(topic, name, wrapped)
            except RecursionError:
                raise _too_deep(topic, elapsed_ns) from None
        sequence = self._sequences.get(channel_id, 0)
        self._sequences[channel_id] = sequence + 1
        self._writer.add_message(channel_id=channel_id, log_time=when, data=data, publish_time=when, sequence=sequence)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write_record(self, record: Record) -> None:
        """Add one :class:`~mcl.Record`."""
        self.write(record.topic, record.payload, record.elapsed_ns)

    def _new_channel(self, topic: str, name: str | None, value: Any) -> int:
        schema_id = self._schema_ids.get(name)
        if schema_id is None:
            schema_name = name if name is not None else RAW_SCHEMA_NAME
            if self.encoding == "json":
                schema = self._schemas.get(name)
                if schema is None:
                    schema = self._schemas[name] = _finish_schema(name, _shape_of(_convert(value, False, True)))
                data = json.dumps(schema, separators=(",", ":")).encode("utf-8")
                schema_id = self._writer.register_schema(name=schema_name, encoding="jsonschema", data=data)
            else:
                schema_id = self._writer.register_schema(name=schema_name, encoding="", data=b"")
            self._schema_ids[name] = schema_id
        metadata = {"mcl.type": name if name is not None else "", "mcl.topic": topic}
        channel_id: int = self._writer.register_channel(
            topic=topic if topic else EMPTY_TOPIC,
            message_encoding=self.encoding,
            schema_id=schema_id,
            metadata=metadata,
        )
        self._channels[(topic, name)] = channel_id
        return channel_id

    def flush(self) -> None:
        """Hand what is written to the operating system (the open chunk stays in memory)."""
        if not self._closed:
            self._fp.flush()

    def close(self) -> None:
        """Write the summary and close the file; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            info = {"origin_ns": str(self.origin_ns), "encoding": self.encoding}
            info.update(self._metadata)
            self._writer.add_metadata("mcl", info)
            self._writer.finish()
        finally:
            self._fp.close()

    def abort(self) -> None:
        """Close and remove the file written; idempotent."""
        self._closed = True
        try:
            self._fp.close()
        finally:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> McapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.abort()
        else:
            self.close()


# -- reading -------------------------------------------------------------------------

_DAMAGE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # includes the library's CRCValidationError, bad UTF-8, bad JSON
    struct.error,
    EOFError,
    KeyError,
    IndexError,
    OverflowError,
    MemoryError,
    zlib.error,
)


def _damage_errors() -> tuple[type[BaseException], ...]:
    from mcap.exceptions import McapError

    extra: list[type[BaseException]] = [McapError]
    try:
        import zstandard

        extra.append(zstandard.ZstdError)
    except ImportError:
        pass
    return _DAMAGE_ERRORS + tuple(extra)


@dataclass(slots=True)
class _Skipped:
    """Messages an MCAP reader skips without a damaged chunk: undefined channels, times over int64."""

    channels: dict[int, int] = field(default_factory=dict)  # channel id -> messages of no defined channel
    late: int = 0  # messages with a log_time over TIME_LIMIT

    def keep(self, message: Any, channels: dict[int, Any]) -> bool:
        """True if `message` can become a record; else it is counted."""
        if message.channel_id not in channels:
            self.channels[message.channel_id] = self.channels.get(message.channel_id, 0) + 1
            return False
        if message.log_time > TIME_LIMIT:
            self.late += 1
            return False
        return True

    def report(self, source: McapSource) -> None:
        """Report what was counted as damage of `source`."""
        for channel_id, n in sorted(self.channels.items()):
            source._report(Damage(str(source.path), f"{n} message{'s' if n != 1 else ''} on channel {channel_id}, "
                                  "which no Channel record defines"))
        if self.late:
            source._report(Damage(str(source.path), f"{self.late} message{'s' if self.late != 1 else ''} with a "
                                  f"log_time over the limit {TIME_LIMIT} ns (mcl times are int64)"))


@dataclass(slots=True)
class _ChannelInfo:
    """How the records of one MCAP channel are made."""

    topic: str
    encoding: str
    schema: dict[str, Any] | None  # parsed JSON schema (json channels)
    type_name: str | None  # message type written by mcl, or the schema name
    raw_value: bool  # an mcl RawData channel: the payload is the "value" field
    decoded: bool  # False: payload bytes as they are (msgpack, unknown encodings)


class McapSource:
    """One MCAP file opened for reading (see the module docstring)."""

    format = FORMAT

    def __init__(self, path: str | os.PathLike[str], *, strict: bool = False) -> None:
        mcap = _mcap()
        self._mcap = mcap
        self._errors = _damage_errors()
        self.path = Path(path)
        self.strict = strict
        self.damage: list[Damage] = []
        self._fp: Any = open(self.path, "rb")
        self._size = os.fstat(self._fp.fileno()).st_size
        self._summary: Any = None
        self.metadata: dict[str, str] = {}
        self._channels: dict[int, _ChannelInfo] = {}
        self._index: dict[int, list[int]] | None = None  # per channel counts from the message indexes
        self._index_read = False  # _index computed (the file does not change while open)
        try:
            head = self._fp.read(len(MAGIC))
            if head != MAGIC:
                raise LogFormatError(self.path, "not an MCAP file (bad magic bytes)", offset=0)
            self._read_summary()
            self.origin_ns: int | None = self._find_origin()
        except BaseException:
            self.close()
            raise

    @property
    def files(self) -> list[Path]:
        return [self.path]

    @property
    def indexed(self) -> bool:
        """True when the file has chunk indexes (seek by time without a scan)."""
        return self._summary is not None and bool(self._summary.chunk_indexes)

    def _read_summary(self) -> None:
        self._fp.seek(0)
        reader = self._mcap.reader.SeekingReader(self._fp, record_size_limit=RECORD_LIMIT)
        try:
            if self._size < 2 * len(MAGIC) + 20:  # shorter than magic + footer + magic
                raise EOFError("no footer")
            self._summary = reader.get_summary()
        except self._errors:
            self._summary = None  # a file cut short: no footer, no summary
        if self._summary is None:
            return
        for channel in self._summary.channels.values():
            self._add_channel(channel, self._summary.schemas.get(channel.schema_id))
        try:
            for meta in reader.iter_metadata():
                if meta.name == "mcl":
                    self.metadata.update(meta.metadata)
        except self._errors as exc:
            self._report(Damage(str(self.path), f"metadata unreadable: {exc}"))

    def _add_channel(self, channel: Any, schema: Any) -> None:
        if channel.id in self._channels:
            return
        meta = channel.metadata or {}
        topic = meta.get("mcl.topic", channel.topic)
        encoding = channel.message_encoding
        parsed = None
        if encoding == "json" and schema is not None and schema.encoding == "jsonschema":
            try:
                loaded = json.loads(schema.data)
                parsed = loaded if isinstance(loaded, dict) else None
            except (ValueError, RecursionError):  # not JSON, or nested too deep: no schema
                parsed = None
        mcl_type = meta.get("mcl.type")
        type_name = (mcl_type or None) if mcl_type is not None else (schema.name if schema is not None and schema.name else None)
        self._channels[channel.id] = _ChannelInfo(
            topic=topic,
            encoding=encoding,
            schema=parsed,
            type_name=type_name,
            raw_value=mcl_type == "",
            decoded=encoding == "json",
        )

    def _find_origin(self) -> int | None:
        origin = self.metadata.get("origin_ns", "")
        if origin.isdigit() and len(origin) < 20 and int(origin) <= TIME_LIMIT:
            return int(origin)
        if self._summary is not None:
            stats = self._summary.statistics
            if stats is not None and stats.message_count and stats.message_start_time <= TIME_LIMIT:
                return int(stats.message_start_time)
            starts = [int(c.message_start_time) for c in self._summary.chunk_indexes]
            if starts and min(starts) <= TIME_LIMIT:
                return min(starts)
        return self._first_log_time()

    def _first_log_time(self) -> int | None:
        """The earliest log time of the first chunk (or message) of a file without a summary."""
        from mcap.records import Chunk, Message
        from mcap.stream_reader import StreamReader, breakup_chunk

        self._fp.seek(0)
        records = StreamReader(self._fp, emit_chunks=True, record_size_limit=RECORD_LIMIT).records
        for _ in range(1 << 20):  # bounded: a file of nothing but schemas and channels
            try:
                record = next(records, None)
                if record is None:
                    return None
                if isinstance(record, Message) and record.log_time <= TIME_LIMIT:
                    return int(record.log_time)
                if isinstance(record, Chunk):
                    times = [int(m.log_time) for m in breakup_chunk(record)
                             if isinstance(m, Message) and m.log_time <= TIME_LIMIT]
                    if times:
                        return min(times)
            except self._errors:
                return None  # reported when the records are read
        return None

    # -- messages ------------------------------------------------------------------

    def _iter_messages(self, lo: int | None, hi: int | None) -> Iterator[tuple[int, int, bytes]]:
        """(log_time, channel id, data) in log-time order within [lo, hi] (absolute ns)."""
        if self.indexed:
            return self._iter_indexed(lo, hi)
        return self._iter_stream(lo, hi)

    def _iter_indexed(self, lo: int | None, hi: int | None) -> Iterator[tuple[int, int, bytes]]:
        from mcap.data_stream import ReadDataStream
        from mcap.records import Channel, Chunk, Message, Schema
        from mcap.stream_reader import breakup_chunk

        schemas: dict[int, Any] = dict(self._summary.schemas)
        skipped = _Skipped()
        chunks = sorted(
            (c for c in self._summary.chunk_indexes
             if (lo is None or c.message_end_time >= lo) and (hi is None or c.message_start_time <= hi)),
            key=lambda c: (c.message_start_time, c.chunk_start_offset),
        )
        heap: list[tuple[int, int, int, int, bytes]] = []
        order = 0
        i = 0
        while i < len(chunks) or heap:
            # Load every chunk that may hold a message due before the earliest held one.
            while i < len(chunks) and (not heap or chunks[i].message_start_time <= heap[0][0]):
                index = chunks[i]
                i += 1
                if index.chunk_start_offset + index.chunk_length > self._size:
                    self._report(Damage(str(self.path), "chunk past the end of the file", offset=index.chunk_start_offset))
                    continue
                if index.uncompressed_size > RECORD_LIMIT:
                    self._report(Damage(str(self.path), f"chunk of {index.uncompressed_size} bytes uncompressed, over the "
                                        f"limit {RECORD_LIMIT}", offset=index.chunk_start_offset, lost_bytes=index.chunk_length))
                    continue
                try:
                    self._fp.seek(index.chunk_start_offset + 1 + 8)
                    chunk = Chunk.read(ReadDataStream(self._fp))
                    if chunk.uncompressed_size != index.uncompressed_size:
                        raise ValueError(f"chunk header says {chunk.uncompressed_size} bytes, its index {index.uncompressed_size}")
                    records = breakup_chunk(chunk, validate_crc=True)
                except self._errors as exc:
                    self._report(Damage(str(self.path), f"damaged chunk skipped: {exc}", offset=index.chunk_start_offset,
                                        lost_bytes=index.chunk_length))
                    continue
                for record in records:
                    if isinstance(record, Message):
                        t = record.log_time
                        if skipped.keep(record, self._channels) and (lo is None or t >= lo) and (hi is None or t <= hi):
                            heapq.heappush(heap, (t, order, record.sequence, record.channel_id, record.data))
                            order += 1
                    elif isinstance(record, Schema):
                        schemas[record.id] = record
                    elif isinstance(record, Channel):  # a channel the summary does not list
                        self._add_channel(record, schemas.get(record.schema_id))
            if heap:
                t, _, _, channel_id, data = heapq.heappop(heap)
                yield t, channel_id, data
        skipped.report(self)

    def _iter_stream(self, lo: int | None, hi: int | None) -> Iterator[tuple[int, int, bytes]]:
        """A summary-less (or index-less) file from the start, reordered in a bounded window."""
        from mcap.records import Channel, Chunk, Footer, Message, Schema
        from mcap.stream_reader import StreamReader, breakup_chunk

        self._fp.seek(0)
        reader = StreamReader(self._fp, emit_chunks=True, record_size_limit=RECORD_LIMIT)
        schemas: dict[int, Any] = {}
        heap: list[tuple[int, int, int, bytes]] = []
        order = 0
        footer = False
        skipped = _Skipped()
        records = reader.records
        while True:
            offset = self._fp.tell()
            try:
                record = next(records, None)
            except self._errors as exc:
                if offset < self._size:
                    self._report(Damage(str(self.path), f"unreadable from here on (cut short?): {exc}", offset=offset,
                                        lost_bytes=self._size - offset))
                    footer = True  # reported
                break
            if record is None:
                break
            if isinstance(record, Footer):
                footer = True
            batch = [record]
            if isinstance(record, Chunk):
                if record.uncompressed_size > RECORD_LIMIT:
                    self._report(Damage(str(self.path), f"chunk of {record.uncompressed_size} bytes uncompressed, over "
                                        f"the limit {RECORD_LIMIT}", offset=offset))
                    continue
                try:
                    batch = breakup_chunk(record, validate_crc=True)
                except self._errors as exc:
                    self._report(Damage(str(self.path), f"damaged chunk skipped: {exc}", offset=offset))
                    continue
            for item in batch:
                if isinstance(item, Schema):
                    schemas[item.id] = item
                elif isinstance(item, Channel):
                    self._add_channel(item, schemas.get(item.schema_id))
                elif isinstance(item, Message) and skipped.keep(item, self._channels):
                    t = item.log_time
                    if (lo is None or t >= lo) and (hi is None or t <= hi):
                        heapq.heappush(heap, (t, order, item.channel_id, item.data))
                        order += 1
                        if len(heap) > REORDER_WINDOW:
                            t, _, channel_id, data = heapq.heappop(heap)
                            yield t, channel_id, data
        if not footer:
            self._report(Damage(str(self.path), "the file ends without a footer (cut short?)", offset=self._size))
        skipped.report(self)
        while heap:
            t, _, channel_id, data = heapq.heappop(heap)
            yield t, channel_id, data

    def _payload(self, info: _ChannelInfo, data: bytes) -> bytes:
        if not info.decoded:
            return data
        try:
            value = json.loads(data)
            if info.schema is not None:
                value = from_json_value(value, info.schema)
            if info.raw_value and isinstance(value, dict) and "value" in value:
                value = value["value"]
            return encode(value)
        except (ValueError, MessageError, RecursionError):
            return data  # not JSON after all: the bytes as they are

    def iter_records(
        self,
        topics: TopicFilter | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> Iterator[Record]:
        """Records in time order; start/end inclusive, elapsed ns from ``origin_ns``."""
        origin = self.origin_ns or 0
        lo = None if start_ns is None else origin + start_ns
        hi = None if end_ns is None else origin + end_ns
        channels = self._channels
        new = tuple.__new__
        for t, channel_id, data in self._iter_messages(lo, hi):
            info = channels[channel_id]
            if topics is not None and not topics(info.topic):
                continue
            yield new(Record, (t - origin, info.topic, self._payload(info, data)))

    def _report(self, damage: Damage) -> None:
        if self.strict:
            raise LogFormatError(self.path, damage.reason, offset=damage.offset)
        if damage not in self.damage:
            self.damage.append(damage)
        warnings.warn(LogDamageWarning(damage.path, damage.reason + "; skipped", offset=damage.offset), stacklevel=3)

    def summary(self, *, verify: bool = False) -> LogSummary:
        """Counts per topic, encodings, damage seen so far.

        From the summary section when the file has a Statistics record and
        message indexes that agree with it (``indexed``: no chunk is read;
        payload bytes per topic are the message records' sizes in the index,
        which also count a Schema or Channel record written between two
        messages of a chunk); else, or with `verify`, a pass over the
        messages (payloads not decoded) that reads every chunk, checks its
        CRC and finds damaged chunks (``verified``).
        """
        summary = LogSummary(path=str(self.path), format=FORMAT, origin_ns=self.origin_ns, size_bytes=self._size,
                             files=[str(self.path)], indexed=False)
        origin = self.origin_ns or 0
        indexed = None if verify else self._index_counts()
        if indexed is not None:
            self._fill_summary(summary, indexed, origin)
            summary.indexed = True
        else:
            self._scan_summary(summary, origin)
            summary.verified = True
        summary.damage = list(self.damage)
        summary.metadata = {k: v for k, v in self.metadata.items() if k not in ("origin_ns",)}
        summary.metadata["mcap encodings"] = self._describe_encodings()
        summary.metadata["mcap index"] = "chunk indexes" if self.indexed else "none (read from the start)"
        return summary

    def _index_counts(self) -> dict[int, list[int]] | None:
        """Per channel [messages, first log_time, last log_time, bytes] from the message indexes.

        None when the file has no Statistics record, a message index is
        missing, unreadable or names an unknown channel, or the counts do
        not add up to the Statistics record (then the summary is a scan).
        """
        if self._index_read:
            return self._index
        self._index_read = True
        if not self.indexed or self._summary.statistics is None:
            return None
        self._index = self._read_index_counts()
        return self._index

    def _read_index_counts(self) -> dict[int, list[int]] | None:
        per: dict[int, list[int]] = {}
        total = 0
        try:
            for index in self._summary.chunk_indexes:
                for channel_id, times, sizes in self._read_message_index(index):
                    total += len(times)
                    keep = times <= TIME_LIMIT
                    if not keep.any():
                        continue
                    times, sizes = times[keep], sizes[keep]
                    counts = per.setdefault(channel_id, [0, TIME_LIMIT, 0, 0])
                    counts[0] += len(times)
                    counts[1] = min(counts[1], int(times.min()))
                    counts[2] = max(counts[2], int(times.max()))
                    counts[3] += int(sizes.sum())
        except (ValueError, struct.error):
            return None
        if total != self._summary.statistics.message_count or not set(per) <= set(self._channels):
            return None
        return per

    def _read_message_index(self, index: Any) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(channel id, log times, data sizes) of the MessageIndex records after one chunk (ValueError if bad)."""
        length = int(index.message_index_length)
        start = int(index.chunk_start_offset) + int(index.chunk_length)
        if not index.message_index_offsets:
            if length:
                raise ValueError("message index without offsets")
            return []
        if length > RECORD_LIMIT or start + length > self._size:
            raise ValueError("message index past the end or over the limit")
        self._fp.seek(start)
        data = self._fp.read(length)
        found: list[tuple[int, np.ndarray, np.ndarray]] = []
        pos = 0
        while pos + 9 <= len(data):
            opcode, size = struct.unpack_from("<BQ", data, pos)
            body = pos + 9
            pos = body + size
            if pos > len(data):
                raise ValueError("message index record cut short")
            if opcode != 0x07:  # MessageIndex
                continue
            channel_id, records_length = struct.unpack_from("<HI", data, body)
            if records_length % 16 or body + 6 + records_length > pos:
                raise ValueError("bad message index record")
            pairs = np.frombuffer(data, dtype="<u8", count=records_length // 8, offset=body + 6).reshape(-1, 2)
            found.append((channel_id, pairs[:, 0], pairs[:, 1]))
        if {c for c, _, _ in found} != set(index.message_index_offsets):
            raise ValueError("message index records do not match the chunk index")
        # A message record is 31 bytes (opcode, length, channel, sequence, two times) before its data.
        if not found:
            return []
        offsets = np.concatenate([o for _, _, o in found]).astype(np.int64)
        order = np.argsort(offsets, kind="stable")
        starts = offsets[order]
        ends = np.append(starts[1:], np.int64(index.uncompressed_size))
        sizes = np.empty_like(offsets)
        sizes[order] = np.maximum(ends - starts - 31, 0)
        bounds = np.cumsum([len(o) for _, _, o in found])[:-1]
        return [(c, t, z) for (c, t, _), z in zip(found, np.split(sizes, bounds))]

    def _fill_summary(self, summary: LogSummary, per: dict[int, list[int]], origin: int) -> None:
        for channel_id, (messages, first, last, size) in per.items():
            info = self._channels[channel_id]
            stats = summary.topics.get(info.topic)
            if stats is None:
                stats = summary.topics[info.topic] = TopicStats()
            stats.messages += messages
            stats.bytes += size
            self._add_type(stats, info)
            stats.first_ns = first - origin if stats.first_ns is None else min(stats.first_ns, first - origin)
            stats.last_ns = last - origin if stats.last_ns is None else max(stats.last_ns, last - origin)
        summary.topics = dict(sorted(summary.topics.items()))
        total_topics(summary)

    @staticmethod
    def _add_type(stats: TopicStats, info: _ChannelInfo) -> None:
        if info.type_name is not None:
            stats.types.add(info.type_name if info.decoded or info.encoding == "msgpack"
                            else f"{info.type_name} [{info.encoding}]")

    def _scan_summary(self, summary: LogSummary, origin: int) -> None:
        before = len(self.damage)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LogDamageWarning)
            for t, channel_id, data in self._iter_messages(None, None):
                info = self._channels[channel_id]
                stats = summary.topics.get(info.topic)
                if stats is None:
                    stats = summary.topics[info.topic] = TopicStats()
                elapsed = t - origin
                stats.messages += 1
                stats.bytes += len(data)
                self._add_type(stats, info)
                if stats.first_ns is None:
                    stats.first_ns = elapsed
                stats.last_ns = elapsed
                summary.messages += 1
                if summary.start_ns is None:
                    summary.start_ns = elapsed
                summary.end_ns = elapsed
        for damage in self.damage[before:]:
            warnings.warn(LogDamageWarning(damage.path, damage.reason + "; skipped", offset=damage.offset), stacklevel=3)

    def _describe_encodings(self) -> str:
        counts: dict[str, int] = {}
        for info in self._channels.values():
            counts[info.encoding or "(none)"] = counts.get(info.encoding or "(none)", 0) + 1
        parts = []
        for encoding, n in sorted(counts.items()):
            how = "decoded" if encoding == "json" else "as recorded" if encoding == "msgpack" else "replayed as raw bytes"
            parts.append(f"{encoding} ({n} channel{'s' if n != 1 else ''}, {how})")
        return ", ".join(parts) or "none"

    def close(self) -> None:
        """Close the file; idempotent."""
        fp, self._fp = self._fp, None
        if fp is not None:
            fp.close()

    def __enter__(self) -> McapSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
