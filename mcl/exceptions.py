"""Exceptions and warnings raised by mcl.

The tree::

    MclError
    ├── MessageError          a message type or payload is malformed
    │   ├── FieldMissingError     a field asked for is not in a message (also KeyError)
    │   ├── FieldTypeError        mixed message types / a value of the wrong type (also TypeError)
    │   └── MessageIOError        a payload that does not decode, read by ReadFile (also OSError)
    ├── LogError              anything about a log on disk
    │   ├── LogNotFound       the path does not exist / holds no log (also FileNotFoundError)
    │   ├── LogExistsError    a writer would overwrite an existing log
    │   ├── LogFormatError    bytes that are not a valid log (names file + offset/line)
    │   └── LogIOError        raised by the original API where the original raised IOError (also OSError)
    │       └── LogFormatIOError  a LogFormatError that is also an OSError
    ├── ArgumentError         a bad argument value (also ValueError)
    │   └── ArgumentRangeError    a number out of range (also TypeError, as the original raised)
    ├── ArgumentTypeError     an argument of the wrong type (also TypeError)
    │   └── ReaderProtocolError   not a reader: no read() / is_data_pending() (also NameError)
    ├── BusError              bus address, socket or forwarder problems
    ├── ReplayError           a replay worker died, hung or failed
    └── RecordError           the recorder could not record (disk full, ...)

    LogDamageWarning (UserWarning)   a truncated tail or damaged block was skipped

Where the original MCL raised a built-in type, the error raised in its place
is also of that type, so code written for the original (``except IOError:``,
``except TypeError:``, ``except KeyError:``) keeps working: :func:`as_io_error`
turns the log errors of the original API (ReadFile, ReadDirectory, WriteFile,
dump_to_*) into OSErrors, and the argument errors are ValueError / TypeError.
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


class LogNotFound(LogError, FileNotFoundError):
    """The path given does not exist or holds no log file (also a FileNotFoundError, an IOError)."""

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


class LogIOError(LogError, OSError):
    """A log error that is also an OSError (IOError), as the original API raised it."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(message)


class LogFormatIOError(LogFormatError, LogIOError):  # type: ignore[misc]
    """A :class:`LogFormatError` that is also an OSError (the original raised IOError)."""


class MessageIOError(MessageError, OSError):
    """A payload that does not decode, read through the original API (the original raised IOError)."""


def as_io_error(exc: LogError | MessageError) -> MclError:
    """`exc` as an OSError too (same message and fields); unchanged if it already is one."""
    if isinstance(exc, OSError):
        return exc
    new: MclError
    if isinstance(exc, MessageError):
        new = MessageIOError(str(exc))
    elif isinstance(exc, LogFormatError):
        new = LogFormatIOError(exc.path, exc.reason, offset=exc.offset, line=exc.line)
    else:
        new = LogIOError(str(exc), path=getattr(exc, "path", None))
    new.__cause__ = exc.__cause__
    new.__suppress_context__ = True
    return new


class ArgumentError(MclError, ValueError):
    """An argument has a bad value (also a ValueError)."""


class ArgumentRangeError(ArgumentError, TypeError):
    """A number is out of range: a ValueError, and a TypeError as the original MCL raised it."""


class ArgumentTypeError(MclError, TypeError):
    """An argument is of the wrong type (also a TypeError)."""


class ReaderProtocolError(ArgumentTypeError, NameError):
    """An object given as a reader lacks ``read()`` / ``is_data_pending()`` (the original raised NameError)."""


class FieldMissingError(MessageError, KeyError):
    """A field asked for is not in a message (also a KeyError, as the original raised)."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0]) if self.args else ""


class FieldTypeError(MessageError, TypeError):
    """Messages of several types, or a field value of the wrong type (also a TypeError)."""


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
