"""Exceptions and warnings raised by mcl.

The tree::

    MclError
    ├── MessageError          a message type or payload is malformed
    ├── LogError              anything about a log on disk
    │   ├── LogNotFound       the path does not exist / holds no log
    │   ├── LogExistsError    a writer would overwrite an existing log
    │   └── LogFormatError    bytes that are not a valid log (names file + offset/line)
    ├── BusError              bus address, socket or forwarder problems
    ├── ReplayError           a replay worker died, hung or failed
    └── RecordError           the recorder could not record (disk full, ...)

    LogDamageWarning (UserWarning)   a truncated tail or damaged block was skipped
"""

from __future__ import annotations

from pathlib import Path


def where(path: str | Path, *, line: int | None = None, offset: int | None = None) -> str:
    """'path: line N: byte M', the place named in log errors and warnings."""
    text = str(path)
    if line is not None:
        text += f": line {line}"
    if offset is not None:
        text += f": byte {offset}"
    return text


class MclError(Exception):
    """Root of every error mcl raises on purpose."""


class MessageError(MclError):
    """A message type declaration or a payload is invalid."""


class LogError(MclError):
    """A log on disk cannot be read or written."""


class LogNotFound(LogError):
    """The path given does not exist or holds no log file."""

    def __init__(self, path: str | Path, reason: str = "no such file or directory") -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class LogExistsError(LogError):
    """A writer was asked to write where a log already exists."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: a log already exists there; mcl never overwrites a log")


class LogFormatError(LogError):
    """Bytes that are not a valid log.

    ``offset`` is a byte offset (binary formats) and ``line`` a 1-based line
    number (text formats); either may be None.
    """

    def __init__(
        self,
        path: str | Path,
        reason: str,
        *,
        offset: int | None = None,
        line: int | None = None,
    ) -> None:
        self.path = str(path)
        self.reason = reason
        self.offset = offset
        self.line = line
        super().__init__(f"{where(path, line=line, offset=offset)}: {reason}")


class BusError(MclError):
    """A bus address is invalid or a socket could not be used."""


class ReplayError(MclError):
    """A replay worker died, stopped answering or failed."""


class RecordError(MclError):
    """The recorder could not write what it received."""


class LogDamageWarning(UserWarning):
    """Part of a log was skipped: a truncated tail or a damaged block."""

    def __init__(self, path: str | Path, reason: str, *, offset: int | None = None, line: int | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.offset = offset
        self.line = line
        super().__init__(f"{where(path, line=line, offset=offset)}: {reason}")
