"""The log formats mcl knows, and picking one for a path."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from mcl.exceptions import LogError, LogFormatError, LogNotFound
from mcl.log.record import LogSource, Record, open_regular_file

__all__ = ["FORMATS", "DEFAULT_FORMAT", "LogWriterProtocol", "open_source", "make_writer", "format_module"]

# name -> module. Each module provides FORMAT, probe(path) -> bool, a source
# class (open for reading) and a writer class; see mcl/log/mcl1.py.
FORMATS: dict[str, str] = {
    "native": "mcl.log.native",
    "mcl1": "mcl.log.mcl1",
}
DEFAULT_FORMAT = "native"
_SOURCE_CLASS = {"native": "NativeSource", "mcl1": "Mcl1Source"}
_WRITER_CLASS = {"native": "NativeWriter", "mcl1": "Mcl1Writer"}


class LogWriterProtocol(Protocol):
    """What every format's writer offers."""

    path: Path
    format: str
    origin_ns: int  # UTC ns since the epoch of elapsed 0

    def write(self, topic: str, payload: bytes, elapsed_ns: int) -> None: ...

    def write_record(self, record: Record) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> LogWriterProtocol: ...

    def __exit__(self, *exc: object) -> None: ...


def format_module(name: str) -> ModuleType:
    """The module implementing format `name` (LogError if unknown)."""
    try:
        module_name = FORMATS[name]
    except KeyError:
        raise LogError(f"unknown log format {name!r} (known: {', '.join(FORMATS)})") from None
    return importlib.import_module(module_name)


def _available() -> list[tuple[str, ModuleType]]:
    found = []
    for name, module_name in FORMATS.items():
        try:
            found.append((name, importlib.import_module(module_name)))
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
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
    for name, module in _available():
        if module.probe(p):
            source: LogSource = getattr(module, _SOURCE_CLASS[name])(p, strict=strict)
            return source
    if not p.exists():
        raise LogNotFound(p)
    if p.is_dir():
        raise LogNotFound(p, "no log files in this directory")
    raise LogFormatError(p, "not a log file of any format mcl reads", offset=0)


def make_writer(path: str | os.PathLike[str], format: str = DEFAULT_FORMAT, **options: Any) -> LogWriterProtocol:
    """A new writer of `format` at `path` (which must not hold a log)."""
    module = format_module(format)
    writer: LogWriterProtocol = getattr(module, _WRITER_CLASS[format])(path, **options)
    return writer
