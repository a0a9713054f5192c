"""Log formats, readers and writers."""

from mcl.log.reader import LogReader, LogWriter, ReadDirectory, ReadFile, open_log
from mcl.log.record import Damage, LogSummary, Record, TopicStats

__all__ = [
    "Damage",
    "LogReader",
    "LogSummary",
    "LogWriter",
    "ReadDirectory",
    "ReadFile",
    "Record",
    "TopicStats",
    "open_log",
]
