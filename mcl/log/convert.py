"""Converting logs: merge, filter and write in any registered format (behind ``mcl-convert``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mcl.log.formats import DEFAULT_FORMAT, format_for_path, make_writer, writer_class
from mcl.log.reader import LogReader
from mcl.log.record import LogSource

__all__ = ["convert_log", "output_format", "merged_metadata"]

PathLike = str | os.PathLike[str]


def output_format(output: PathLike, format: str | None = None) -> str:
    """The format to write `output` in: `format` if given, else its suffix's (``.mcap``), else native."""
    if format is not None:
        return format
    return format_for_path(output) or DEFAULT_FORMAT


def convert_log(reader: LogReader, output: PathLike, format: str | None = None, **options: Any) -> int:
    """Write every record of `reader` (its filters apply; left open) to a new log; return the count.

    `format` None picks by the suffix of `output` (``.mcap``) or native.
    `options` go to the format's writer (split_size, split_duration_ns,
    compression, encoding, ...). A writer class with a ``prepare(records,
    options)`` class method gets a first pass over the records (MCAP JSON
    infers its schemas there). The time origin is the reader's; the
    metadata of the inputs is kept (:func:`merged_metadata`) unless
    `options` has its own. On any error the partial output is removed.
    """
    name = output_format(output, format)
    out = Path(output)
    prepare = getattr(writer_class(name), "prepare", None)
    if prepare is not None:
        options = prepare(reader.iter_records(), options)
    if name == "mcl1":  # keep the file names and revisions of MCL_LOG sources
        from mcl.log.mcl1 import layout_options

        options = {**layout_options(reader.sources), **options}
    options.setdefault("metadata", merged_metadata(reader.sources))
    writer = make_writer(out, name, origin_ns=reader.origin_ns if reader.origin_ns is not None else 0, **options)
    count = 0
    try:
        write = writer.write_record
        for record in reader.iter_records():
            write(record)
            count += 1
    except BaseException:
        writer.abort()  # a half-written log is of no use and would block a second try
        raise
    try:
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return count


def merged_metadata(sources: list[LogSource]) -> dict[str, str]:
    """Metadata of the inputs; a key with different values keeps them all, comma-separated."""
    merged: dict[str, list[str]] = {}
    for source in sources:
        for key, value in _metadata_of(source).items():
            values = merged.setdefault(key, [])
            if value not in values:
                values.append(value)
    return {key: ", ".join(values) for key, values in merged.items()}


def _metadata_of(source: LogSource) -> dict[str, str]:
    metadata = getattr(source, "metadata", None)
    if isinstance(metadata, dict):
        return {str(k): str(v) for k, v in metadata.items() if k not in ("origin_ns", "encoding")}
    if source.format == "mcl1":
        # The revision is in the header of each series' first file; read only the headers.
        from mcl.log.mcl1 import read_header

        revisions: list[str] = []
        for path in getattr(source, "files", []):
            with open(path, encoding="latin-1", newline="") as fp:
                header = read_header(fp, Path(path))
            if header is not None and header.revision and header.revision not in revisions:
                revisions.append(header.revision)
        return {"revision": ", ".join(revisions)} if revisions else {}
    return {}
