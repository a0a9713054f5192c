"""The registry of log formats: each names its source (reader) and its writer; picking one for a path."""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from mcl.exceptions import LogError, LogFormatError, LogNotFound
from mcl.log.record import LogSource, Record, open_regular_file
from mcl.timeutil import seconds_to_ns

__all__ = [
    "FORMATS",
    "DEFAULT_FORMAT",
    "FormatSpec",
    "LogWriterProtocol",
    "register_format",
    "format_spec",
    "format_for_path",
    "open_source",
    "make_writer",
    "LogWriter",
    "check_writer_options",
    "writer_class",
    "format_module",
    "file_starts_with",
]


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """One log format mcl reads and writes."""

    name: str  # the --format name
    module: str  # module implementing it: probe(path) -> bool, the source and writer classes
    source: str  # class in `module` opening a log for reading: Source(path, *, strict=False) -> LogSource
    writer: str  # class in `module` writing a new log: Writer(path, *, origin_ns, metadata, ...)
    description: str  # for people (mcl-info)
    suffixes: tuple[str, ...] = ()  # an output path ending so picks this format (".mcap")
    requires: str | None = None  # the optional package it needs, named in the error when missing
    features: frozenset[str] = frozenset()  # optional writer features it has: "compression" (zstd), "max_files" (rotation), "flush_interval_ns" (timed flushes)


_REGISTRY: dict[str, FormatSpec] = {}

# name -> module, for callers of the first registry (kept in step with _REGISTRY).
FORMATS: dict[str, str] = {}
DEFAULT_FORMAT = "native"


def register_format(spec: FormatSpec) -> None:
    """Add (or replace) a format; sources are probed in registration order."""
    _REGISTRY[spec.name] = spec
    FORMATS[spec.name] = spec.module


register_format(FormatSpec("native", "mcl.log.native", "NativeSource", "NativeWriter", "mcl native",
                           features=frozenset({"compression", "max_files", "flush_interval_ns"})))
register_format(FormatSpec("mcl1", "mcl.log.mcl1", "Mcl1Source", "Mcl1Writer", "MCL_LOG 1.0 (original MCL text logs)"))
register_format(FormatSpec("mcap", "mcl.log.mcap", "McapSource", "McapWriter", "MCAP", (".mcap",), "mcap"))


class LogWriterProtocol(Protocol):
    """What every format's writer offers.

    ``close()`` finishes the log (indexes, summaries) and keeps it;
    ``abort()`` closes and removes exactly what the writer wrote (its files,
    and the directory if the writer created it and nothing else is in it):
    the one way to drop a log just started (a failed start, a failed
    conversion). Both are idempotent. Writers that know what reached the
    disk also have ``written() -> {topic: (records, payload bytes)}``
    (native, mcl1); rotation is the native writer's ``max_files``.
    """

    path: Path
    format: str
    origin_ns: int  # UTC ns since the epoch of elapsed 0

    @property
    def files(self) -> list[Path]: ...  # the data files written (and still there), oldest first

    def write(self, topic: str, payload: bytes, elapsed_ns: int) -> None: ...

    def write_record(self, record: Record) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def __enter__(self) -> LogWriterProtocol: ...

    def __exit__(self, *exc: object) -> None: ...


def file_starts_with(path: Path, magic: bytes) -> bool:
    """True if the file at `path` begins with the bytes `magic` (a format's probe)."""
    from mcl.log.record import open_regular_file  # never blocks on a FIFO

    try:
        fd = open_regular_file(path)
    except LogError:
        return False
    try:
        return os.pread(fd, len(magic), 0) == magic
    except OSError:
        return False
    finally:
        os.close(fd)


def format_spec(name: str) -> FormatSpec:
    """The registered format `name` (LogError if unknown)."""
    if not isinstance(name, str):
        raise LogError(f"a log format is a name (known: {', '.join(_REGISTRY)}), not {name!r}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise LogError(f"unknown log format {name!r} (known: {', '.join(_REGISTRY)})") from None


def format_module(name: str) -> ModuleType:
    """The module implementing format `name` (LogError if unknown or its package is missing)."""
    spec = format_spec(name)
    try:
        return importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if spec.requires is not None and exc.name == spec.requires:
            raise LogError(f"the {name} format needs the {spec.requires!r} package: pip install 'mcl[{name}]'") from None
        raise


def format_for_path(path: str | os.PathLike[str]) -> str | None:
    """The format an output path asks for by its suffix (``out.mcap``), or None."""
    suffix = Path(path).suffix.lower()
    for spec in _REGISTRY.values():
        if suffix and suffix in spec.suffixes:
            return spec.name
    return None


def writer_class(name: str) -> Any:
    """The writer class of format `name`."""
    return getattr(format_module(name), format_spec(name).writer)


def _available() -> list[tuple[FormatSpec, ModuleType]]:
    found = []
    for spec in _REGISTRY.values():
        try:
            found.append((spec, importlib.import_module(spec.module)))
        except ModuleNotFoundError as exc:
            if exc.name not in (spec.module, spec.requires):
                raise
    return found


def open_source(path: str | os.PathLike[str], *, strict: bool = False) -> LogSource:
    """Open one log (directory, file or split-series prefix) in whatever format it is."""
    p = Path(path)
    if not p.exists() and not p.parent.is_dir():
        raise LogNotFound(p)
    if p.exists() and not p.is_dir():
        os.close(open_regular_file(p))  # a FIFO or a device: refused before any format opens it
    if p.is_dir() and not any(p.iterdir()):
        raise LogNotFound(p, "the directory is empty")
    for spec, module in _available():
        if module.probe(p):
            source: LogSource = getattr(module, spec.source)(p, strict=strict)
            return source
    if not p.exists():
        raise LogNotFound(p)
    if p.is_dir():
        raise LogNotFound(p, "no log files in this directory")
    wanted = format_for_path(p)
    if wanted is not None:
        format_module(wanted)  # names the missing package
    raise LogFormatError(p, "not a log file of any format mcl reads", offset=0)


_FEATURE_NAMES = {"compression": "compression", "max_files": "rotation (max_files)"}


def check_writer_options(format: str, **options: Any) -> None:
    """Refuse the optional writer features (`options` not None) that `format` does not have, in one place.

    LogError naming the feature, the format and the formats that have it.
    """
    spec = format_spec(format)
    for name, value in options.items():
        if value is not None and name not in spec.features:
            having = ", ".join(s.name for s in _REGISTRY.values() if name in s.features) or "none"
            raise LogError(f"{_FEATURE_NAMES.get(name, name)} is not supported by the {format} format (formats that have it: {having})")


def check_writer_common(
    *, origin_ns: Any, metadata: Any, split_size: Any, split_duration_ns: Any
) -> None:
    """The options every writer takes, checked once before a writer creates anything (ArgumentError naming each).

    `origin_ns` is UTC ns within the int64 range, `metadata` a dict of str
    (or None), the split limits positive whole numbers (or None).
    """
    from mcl.checks import MAX_INT64, check_int
    from mcl.exceptions import ArgumentError
    from mcl.timeutil import MAX_NS, check_ns

    check_ns(origin_ns, "origin_ns", minimum=-MAX_NS)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise ArgumentError(f"metadata must be a dict of strings (or None), not {metadata!r}")
    check_int(split_size, "split_size", minimum=1, maximum=MAX_INT64, unit="bytes", none_ok=True)
    check_ns(split_duration_ns, "split_duration_ns", minimum=1, none_ok=True)


def make_writer(path: str | os.PathLike[str], format: str = DEFAULT_FORMAT, **options: Any) -> LogWriterProtocol:
    """A new writer of `format` at `path` (which must not hold a log)."""
    writer: LogWriterProtocol = writer_class(format)(path, **options)
    return writer


def LogWriter(  # noqa: N802 - a factory that reads like the class users expect
    path: str | os.PathLike[str],
    format: str = DEFAULT_FORMAT,
    *,
    origin_ns: int | None = None,
    metadata: dict[str, str] | None = None,
    split_size: int | None = None,
    split_duration: float | None = None,
    **options: Any,
) -> LogWriterProtocol:
    """A new log at `path` (a directory that must not hold a log yet).

    Args:
        format: "native" (default) or "mcl1" (the original MCL text format).
        origin_ns: UTC time origin in ns since the epoch (default: now).
        metadata: free key/values (revision, host, ...) kept with the log.
        split_size: bytes per data file before a new one starts (None: no limit).
        split_duration: seconds per data file before a new one starts (None: no limit).

    The writer has ``write(topic, payload, elapsed_ns)``, ``write_record``,
    ``flush`` and ``close``, and is a context manager.
    """
    return make_writer(
        path,
        format,
        origin_ns=time.time_ns() if origin_ns is None else origin_ns,
        metadata=metadata,
        split_size=split_size,
        split_duration_ns=seconds_to_ns(split_duration, "split_duration"),
        **options,
    )
