"""Export logs to MCAP (https://mcap.dev), the container Foxglove and the mcap tools open.

The writer, the JSON form of payloads and the JSON schemas live in
:mod:`mcl.log.mcap` (MCAP is a registered log format, read and written);
this module keeps the one-call export :func:`write_mcap`. See
:mod:`mcl.log.mcap` for the two encodings (``json`` for Foxglove,
``msgpack`` for the bytes as recorded) and the form of numpy arrays.

The ``mcap`` library is an optional extra: ``pip install 'mcl[mcap]'``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mcl.log.convert import merged_metadata
from mcl.log.mcap import (
    EMPTY_TOPIC,
    ENCODINGS,
    RAW_SCHEMA_NAME,
    McapWriter,
    from_json_value,
    make_json_schema,
)
from mcl.jsonform import to_json_value
from mcl.log.reader import LogReader, open_log

__all__ = [
    "ENCODINGS",
    "EMPTY_TOPIC",
    "RAW_SCHEMA_NAME",
    "write_mcap",
    "to_json_value",
    "from_json_value",
    "make_json_schema",
    "source_metadata",
]

PathLike = str | os.PathLike[str]


def source_metadata(reader: LogReader, *, paths: bool = False) -> dict[str, str]:
    """The ``mcl`` metadata of an export: the inputs' metadata and formats, their paths only if asked."""
    info = merged_metadata(reader.sources)
    for index, source in enumerate(reader.sources):
        info[f"source.{index}.format"] = source.format
        if paths:
            # MCAP strings are UTF-8: a path of other bytes is kept with its odd bytes escaped.
            info[f"source.{index}.path"] = os.fsencode(Path(source.path).resolve()).decode("utf-8", "backslashreplace")
    return info


def write_mcap(
    reader_or_paths: LogReader | PathLike | Iterable[PathLike],
    out_path: PathLike,
    *,
    encoding: str = "json",
    compression: str = "zstd",
    paths_metadata: bool = False,
) -> dict[str, int]:
    """Write the records of a log (or of a :class:`~mcl.LogReader`) to a new MCAP file.

    Args:
        reader_or_paths: an open :class:`~mcl.LogReader` (its topic and time
            filters apply; it is left open) or one or more log paths.
        out_path: the ``.mcap`` file to create; an existing file is never
            overwritten (LogExistsError).
        encoding: "json" (Foxglove decodes it) or "msgpack" (the payload
            bytes as recorded).
        compression: chunk compression, "zstd", "lz4" or "none".
        paths_metadata: also write the absolute paths of the inputs into the
            file's ``mcl`` metadata (left out by default: they tell where the
            data came from on the machine that exported it).

    Returns the number of messages written per topic. On error the partial
    file is removed. Raises MclError if the ``mcap`` library is missing.
    """
    if isinstance(reader_or_paths, LogReader):
        reader, owned = reader_or_paths, False
    elif isinstance(reader_or_paths, (str, os.PathLike)):
        reader, owned = open_log(reader_or_paths), True
    else:
        reader, owned = open_log(*reader_or_paths), True
    try:
        options = McapWriter.prepare(reader.iter_records(), {"encoding": encoding, "compression": compression})
        writer = McapWriter(
            out_path,
            origin_ns=reader.origin_ns or 0,
            metadata=source_metadata(reader, paths=paths_metadata),
            **options,
        )
        with writer:
            for record in reader.iter_records():
                writer.write_record(record)
        return dict(writer.counts)
    finally:
        if owned:
            reader.close()
