"""mcl: record and replay for message-passing systems (successor of the original MCL).

The public names are imported on first use so that ``import mcl`` stays fast
and a program that only reads logs never loads ZeroMQ.
"""

import importlib as _importlib
from typing import Any as _Any  # private names: dir(mcl) shows only the API

__version__ = "2.0.0.dev0"

_EXPORTS: dict[str, str] = {
    # errors
    "MclError": "mcl.exceptions",
    "MessageError": "mcl.exceptions",
    "LogError": "mcl.exceptions",
    "LogNotFound": "mcl.exceptions",
    "LogExistsError": "mcl.exceptions",
    "LogFormatError": "mcl.exceptions",
    "LogDamageWarning": "mcl.exceptions",
    "BusError": "mcl.exceptions",
    "ReplayError": "mcl.exceptions",
    "RecordError": "mcl.exceptions",
    # messages
    "Message": "mcl.message",
    "GenericMessage": "mcl.message",
    "decode": "mcl.message",
    "encode": "mcl.message",
    "get_message_type": "mcl.message",
    # logs
    "Record": "mcl.log.record",
    "LogSummary": "mcl.log.record",
    "open_log": "mcl.log.reader",
    "LogReader": "mcl.log.reader",
    "LogWriter": "mcl.log.formats",
    "ReadFile": "mcl.log.reader",
    "ReadDirectory": "mcl.log.reader",
    "WriteFile": "mcl.log.mcl1",
    # export
    "dump_to_list": "mcl.export",
    "dump_to_array": "mcl.export",
    "dump_to_csv": "mcl.export",
    # network bus
    "Publisher": "mcl.network",
    "Subscriber": "mcl.network",
    # replay
    "BufferData": "mcl.replay",
    "ScheduleBroadcasts": "mcl.replay",
    "Replay": "mcl.replay",
    "ReplayOptions": "mcl.replay.options",
    # recording
    "Recorder": "mcl.recorder",
    "RecordOptions": "mcl.recorder",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> _Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mcl' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
