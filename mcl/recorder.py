"""The recorder behind ``mcl-dump``: a live bus into a log directory, lossless and crash-safe.

A :class:`Recorder` subscribes to a bus in a background thread of the
caller's process, writes every message it receives (payload bytes exactly
as received, elapsed time = receive time minus the log's time origin) and
counts losses exactly::

    with mcl.Recorder("run1", topics=["imu", "gps"]) as rec:
        ...                      # the code under test publishes
    print(rec.status().messages, rec.status().lost)

Losses are counted by the :class:`~mcl.network.Subscriber` the recorder
receives with: sequence gaps per publisher and topic (a high-water-mark drop
anywhere on the way: publisher, forwarder, the recorder's own queue), plus
what a closing publisher's end-of-stream table shows was missed at the head
or the tail. A publisher that restarts (new id, sequence from 0) starts a
new stream and is not a loss; nor are the messages a publisher sent before
it saw the recorder.

Crash safety: the writer is flushed to the operating system every
``flush_interval_ns`` (100 ms by default), so a recorder killed with
SIGKILL loses at most the messages of the last flush interval, and the log
reads back. :meth:`Recorder.stop` closes the log cleanly (index written).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcl.checks import MAX_C_INT, MAX_INT64, check_flag, check_int, check_names, check_text
from mcl.exceptions import ArgumentError, LogError, MclError, RecordError
from mcl.log.formats import DEFAULT_FORMAT, LogWriterProtocol, check_writer_options, format_spec, make_writer
from mcl.timeutil import NS_PER_S, check_seconds, check_timeout

if TYPE_CHECKING:
    from mcl.network import Received


__all__ = [
    "ACCOUNTING_FILE",
    "DEFAULT_FLUSH_INTERVAL_NS",
    "DEFAULT_HWM",
    "RecordOptions",
    "Recorder",
    "RecorderStatus",
    "TopicStatus",
    "make_log_path",
    "read_accounting",
]

DEFAULT_FLUSH_INTERVAL_NS = 100_000_000  # SIGKILL loses at most this much of the recording
DEFAULT_HWM = 100_000  # messages queued for the recorder while it writes (ZeroMQ's default is 1000)
_BATCH = 1000  # messages taken from the subscriber at a time
JOIN_TIMEOUT_S = 3.0  # start() waits at most this long for the subscription to reach the forwarder
ACCOUNTING_FILE = "accounting.json"  # the recording's loss accounting, in the log directory
ACCOUNTING_EVERY_NS = NS_PER_S  # the accounting file is rewritten this often while recording
MAX_TOPIC_BYTES = 0xFFFF  # the native format's topic length (u16); longer topics are not storable
MAX_TOPICS = 100_000  # distinct topics a recording keeps (counts in memory); more are not storable
_MAX_SPANS_STORED = 100  # loss spans per stream in the accounting file (the most recent)


def make_log_path(out_dir: str | os.PathLike[str], when_ns: int | None = None, host: str | None = None) -> Path:
    """Create and return a new, empty ``out_dir/<UTC timestamp>_<host>/`` directory.

    The timestamp is ``YYYYmmddTHHMMSSZ`` of `when_ns` (default: now). An
    existing directory is never reused: ``_2``, ``_3``, ... are appended
    until the name is free (the directory is created here, atomically).
    """
    root = Path(out_dir)
    when = _dt.datetime.fromtimestamp((time.time_ns() if when_ns is None else when_ns) / NS_PER_S, tz=_dt.UTC)
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", host if host is not None else socket.gethostname()) or "host"
    base = f"{when:%Y%m%dT%H%M%SZ}_{host}"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecordError(f"{root}: cannot create the output directory: {exc.strerror}") from None
    if not root.is_dir():
        raise RecordError(f"{root}: not a directory")
    for n in range(1, 10_000):
        path = root / (base if n == 1 else f"{base}_{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise RecordError(f"{path}: cannot create the log directory: {exc.strerror}") from None
        return path
    raise RecordError(f"{root}: 10000 logs named {base}* already exist")


@dataclass(frozen=True, slots=True)
class TopicStatus:
    """Counts for one topic of a recording."""

    messages: int = 0  # messages recorded
    bytes: int = 0  # payload bytes recorded
    lost: int = 0  # messages published on the topic that the recorder never received
    malformed: int = 0  # messages received on the topic but not storable in the log (dropped)
    suspect: int = 0  # sequence numbers or end-of-stream claims that cannot be true (not in lost)


@dataclass(frozen=True, slots=True)
class RecorderStatus:
    """A snapshot of a recorder, from :meth:`Recorder.status`."""

    running: bool = False  # True between start() and the end of the recording
    messages: int = 0  # messages recorded
    bytes: int = 0  # payload bytes recorded
    lost: int = 0  # messages missed (sequence gaps + subscriber drops)
    malformed: int = 0  # messages dropped: not valid wire format, or not storable in the log
    suspect: int = 0  # loss claims that cannot be true (forged sequences): reported, not in lost
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> messages dropped (the malformed)
    rate: float = 0.0  # messages per second over the last seconds (0.0 when unknown)
    elapsed_ns: int = 0  # time since start(), ns
    path: str | None = None  # the log directory, None when not writing
    current_file: str | None = None  # the data file written last, None before the first message
    files: int = 0  # data files in the log directory
    publishers: int = 0  # publishers seen (ids)
    topics: dict[str, TopicStatus] = field(default_factory=dict)
    error: str | None = None  # why the recording stopped early, None if it did not


def _positive(value: Any, name: str, unit: str, none_ok: bool = True, maximum: int = MAX_INT64) -> None:
    """`value` must be a positive integer up to `maximum` (or None when `none_ok`); ArgumentError naming the field."""
    check_int(value, name, minimum=1, maximum=maximum, unit=unit, none_ok=none_ok)


@dataclass(frozen=True, slots=True)
class RecordOptions:
    """What a recording records and how (the twin of :class:`mcl.replay.ReplayOptions`); times in integer ns.

    The one validation of a recorder's settings is here (``dataclasses.replace``
    re-runs it). :meth:`from_seconds` is the form with seconds, as ``mcl-dump``
    takes them; :meth:`from_keywords` the form of ``Recorder``'s keywords.
    """

    bus: str | None = None  # bus address; None = the default bus
    topics: tuple[str, ...] | None = None  # topics subscribed to (prefixes, or names with exact); None = every topic
    exact: bool = False  # topics are exact names, not prefixes
    topic_filter: Callable[[str], bool] | None = None  # predicate on each arriving topic; None = keep all subscribed
    format: str = DEFAULT_FORMAT  # the log format's registered name ("native", "mcl1", ...)
    metadata: tuple[tuple[str, str], ...] = ()  # (key, value) pairs kept with the log (host is added)
    split_size: int | None = None  # bytes per data file before a new one starts; None = no limit
    split_duration_ns: int | None = None  # ns of log time per data file before a new one starts; None = no limit
    max_files: int | None = None  # rotation: keep only the newest N data files; None = keep all
    compression: str | None = None  # "zstd" or None (uncompressed)
    flush_interval_ns: int = DEFAULT_FLUSH_INTERVAL_NS  # ns between flushes: what a SIGKILL loses at most
    duration_ns: int | None = None  # ns after start() the recording stops by itself; None = never
    count: int | None = None  # messages after which the recording stops by itself; None = never
    on_message: Callable[[Received], Any] | None = None  # called in the recording thread with each message; must be quick
    hwm: int = DEFAULT_HWM  # messages the recorder's socket queues while the thread is busy (then drops, counted)

    def __post_init__(self) -> None:
        # Types and ranges of every field (mcl.checks): an ArgumentError naming the field.
        object.__setattr__(self, "topics", check_names(self.topics, "topics"))
        if self.bus is not None:
            from mcl.network.address import parse_bus

            parse_bus(self.bus)  # BusError naming the address
        check_flag(self.exact, "exact")
        if self.topic_filter is not None and not callable(self.topic_filter):
            raise ArgumentError(f"topic_filter must be a callable or None, not {self.topic_filter!r}")
        if self.on_message is not None and not callable(self.on_message):
            raise ArgumentError(f"on_message must be a callable or None, not {self.on_message!r}")
        check_text(self.format, "format")
        pairs = None if isinstance(self.metadata, (str, bytes)) or not isinstance(self.metadata, Iterable) else tuple(self.metadata)
        if pairs is None or not all(isinstance(p, tuple) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs):
            raise ArgumentError(f"metadata must be (key, value) pairs of strings, not {self.metadata!r}")
        _positive(self.split_size, "split_size", "bytes")
        _positive(self.split_duration_ns, "split_duration_ns", "ns")
        _positive(self.max_files, "max_files", "data files")
        _positive(self.flush_interval_ns, "flush_interval_ns", "ns", none_ok=False)
        _positive(self.duration_ns, "duration_ns", "ns")
        _positive(self.count, "count", "messages")
        _positive(self.hwm, "hwm", "messages", none_ok=False, maximum=MAX_C_INT)
        if self.compression not in (None, "zstd"):
            raise ArgumentError(f"compression: unknown {self.compression!r} (known: zstd)")
        try:
            check_writer_options(self.format, max_files=self.max_files, compression=self.compression)
        except LogError as exc:
            raise RecordError(str(exc)) from None

    @classmethod
    def from_keywords(
        cls,
        *,
        bus: str | None = None,
        topics: Iterable[str] | str | None = None,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        **fields: Any,
    ) -> RecordOptions:
        """The options of ``Recorder``'s keyword form (lists, a dict of metadata; times in ns)."""
        if topics is not None:
            fields["topics"] = check_names(topics, "topics")
        if metadata is not None:
            if isinstance(metadata, (str, bytes)) or not isinstance(metadata, (Mapping, Iterable)):
                raise ArgumentError(f"metadata must be a dict of strings, not {metadata!r}")
            fields["metadata"] = tuple((metadata.items() if isinstance(metadata, Mapping) else metadata))
        unknown = sorted(set(fields) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise TypeError(f"unknown recorder option(s): {', '.join(unknown)}")
        return cls(bus=bus, **fields)

    @classmethod
    def from_seconds(
        cls,
        *,
        split_duration: float | None = None,
        flush_interval: float | None = None,
        duration: float | None = None,
        **keywords: Any,
    ) -> RecordOptions:
        """The form with seconds (``mcl-dump``'s): the three times in seconds, the rest as :meth:`from_keywords`."""
        for name, seconds in (("split_duration", split_duration), ("flush_interval", flush_interval), ("duration", duration)):
            if seconds is not None:
                keywords[f"{name}_ns"] = check_seconds(seconds, name)
        return cls.from_keywords(**keywords)


class Recorder:
    """Records a live bus into a new log directory, in a background thread.

    ``Recorder(path, options)`` takes a :class:`RecordOptions`, its one
    input; ``Recorder(path, bus, topics, **keywords)`` is the convenience
    form that builds one (:meth:`RecordOptions.from_keywords`, times in ns;
    the options are in ``recorder.options``). The keywords:

    Args:
        path: the log directory to create (must not hold a log; see
            :func:`make_log_path` for the ``<UTC timestamp>_<host>`` names
            of ``mcl-dump``). None records nothing: only counts (and echoes).
        bus: bus address (None: the default bus).
        topics: topics to record (prefixes, or exact names with
            ``exact=True``); None records every topic.
        topic_filter: a predicate on the topic applied to what arrives
            (``make_topic_filter``: exclusions, names mixed with prefixes);
            None keeps everything subscribed to.
        format: "native" (default) or "mcl1".
        metadata: free key/values kept with the log (host is added).
        split_size: bytes per data file before a new one starts (None: no limit).
        split_duration_ns: ns per data file before a new one starts (None: no limit).
        max_files: keep only the newest N data files (rotation); None keeps all.
        compression: None or "zstd" (native format only).
        flush_interval_ns: the writer is flushed this often; a SIGKILL loses
            at most this much.
        duration_ns: stop by itself this long after start() (None: never).
        count: stop by itself after this many messages (None: never).
        on_message: called in the recording thread with each
            :class:`~mcl.network.Received` message; must be quick.
        hwm: messages the recorder's socket queues while the recording
            thread is busy (writing, a slow disk) before ZeroMQ drops (and
            the drop is counted as lost).

    Use as a context manager (start on enter, stop on exit) or call
    :meth:`start` / :meth:`stop`. A failure while recording (disk full, ...)
    stops the recording; :meth:`stop` then raises it as a
    :class:`~mcl.RecordError`, and what was written stays readable.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        options: RecordOptions | str | None = None,
        topics: Iterable[str] | str | None = None,
        **keywords: Any,
    ) -> None:
        if isinstance(options, RecordOptions):
            if topics is not None or keywords:
                given = sorted({*keywords, *(["topics"] if topics is not None else [])})
                raise TypeError(f"give either a RecordOptions or keywords, not both (got {', '.join(given)})")
        else:
            if options is not None:  # Recorder(path, bus, topics): the original positional form
                if "bus" in keywords:
                    raise TypeError("bus given twice (positionally and as a keyword)")
                keywords["bus"] = options
            if topics is not None:
                if "topics" in keywords:
                    raise TypeError("topics given twice (positionally and as a keyword)")
                keywords["topics"] = topics
            options = RecordOptions.from_keywords(**keywords)
        self.options: RecordOptions = options
        self.path = None if path is None else Path(path)
        self.bus = options.bus
        self.topics: list[str] | None = None if options.topics is None else list(options.topics)
        self.format = options.format
        self.exact = options.exact
        self.topic_filter = options.topic_filter
        self.metadata = dict(options.metadata)
        self.metadata.setdefault("host", socket.gethostname())
        self.split_size = options.split_size
        self.split_duration_ns = options.split_duration_ns
        self.max_files = options.max_files
        self.compression = options.compression
        self.flush_interval_ns = options.flush_interval_ns
        self.duration_ns = options.duration_ns
        self.count = options.count
        self.on_message = options.on_message
        self.hwm = options.hwm

        self.origin_ns = 0
        self._writer: LogWriterProtocol | None = None  # None once closed
        self._log_writer: LogWriterProtocol | None = None  # the writer of this recording, also once closed
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._done = threading.Event()
        self._started = False
        self._error: BaseException | None = None
        self._error_raised = False
        self._start_mono = 0
        self._end_mono: int | None = None
        # Written by the recording thread only; read by status().
        self._messages = 0
        self._bytes = 0
        self._topic_counts: dict[str, list[int]] = {}  # topic -> [messages, bytes]
        self._publishers: set[str] = set()
        self._lost = 0  # from Subscriber.losses(), read every flush interval and at the end
        self._lost_by_topic: dict[str, int] = {}
        self._unstorable: dict[tuple[str, str], dict[str, int]] = {}  # (publisher, topic) -> reason -> count
        self._stats: Any = None  # the subscriber's last SubscriberStats
        self._unwritten: dict[str, int] = {}  # topic -> received but never on disk (write failure)
        self._rate_samples: deque[tuple[int, int]] = deque(maxlen=64)

    # -- lifecycle ------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Recorder:
        """Open the log and start recording; returns once the subscriber is on the bus.

        "On the bus": its subscriptions are in place at the forwarder
        (:meth:`Subscriber.wait_joined`, at most :data:`JOIN_TIMEOUT_S`), so
        a publisher started after start() returns loses nothing to it (its
        first publish waits for the bus's subscriptions).

        Raises RecordError / LogError if the log cannot be created, BusError
        if the bus cannot be joined.
        """
        check_timeout(timeout, none_ok=False)
        if self._started:
            raise RuntimeError("Cannot start a recorder twice; create a new Recorder for a new recording.")
        self._started = True
        self.origin_ns = time.time_ns()
        if self.path is not None:
            options: dict[str, Any] = {}  # the optional features, given only when used (the options checked the format has them)
            if self.compression is not None:
                options["compression"] = self.compression
            if self.max_files is not None:
                options["max_files"] = self.max_files
            if "flush_interval_ns" in format_spec(self.format).features:
                options["flush_interval_ns"] = self.flush_interval_ns
            try:
                self._writer = self._log_writer = make_writer(
                    self.path,
                    self.format,
                    origin_ns=self.origin_ns,
                    metadata=self.metadata,
                    split_size=self.split_size,
                    split_duration_ns=self.split_duration_ns,
                    **options,
                )
            except OSError as exc:
                raise RecordError(f"{self.path}: cannot create the log: {exc.strerror}") from None
        self._start_mono = time.monotonic_ns()
        self._thread = threading.Thread(target=self._run, name="mcl-recorder", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            # Do not leave a thread and an open log behind the error.
            self._stop.set()
            self._thread.join(5.0)
            self._close_writer()
            self._abort_log()
            raise RecordError(f"the recorder did not join the bus within {timeout} s")
        if self._error is not None:
            self._thread.join()
            self._error_raised = True
            self._abort_log()
            raise self._error
        return self

    def _abort_log(self) -> None:
        """After a failed start: remove the log just created (it holds no message), through its writer."""
        writer = self._log_writer
        if writer is None or self._messages:
            return
        assert self.path is not None
        (self.path / ACCOUNTING_FILE).unlink(missing_ok=True)  # the recorder's own file
        writer.abort()

    def stop(self, timeout: float | None = 30.0) -> RecorderStatus:
        """Stop recording, close the log (index written) and return the final status.

        Idempotent. Raises RecordError (once) if the recording failed.
        """
        timeout = check_timeout(timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RecordError(f"the recorder did not stop within {timeout} s")
        self._close_writer()
        self._raise_error()
        return self.status()

    close = stop

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the recording ends by itself (duration, count, error); True if it ended.

        A failure is raised by :meth:`stop`, not here.
        """
        timeout = check_timeout(timeout)
        if not self._started:
            raise RuntimeError("Cannot wait for a recorder that was not started.")
        return self._done.wait(timeout)

    @property
    def running(self) -> bool:
        """True while the recording thread records."""
        return self._started and not self._done.is_set()

    @property
    def error(self) -> BaseException | None:
        """Why the recording stopped early, or None."""
        return self._error

    def __enter__(self) -> Recorder:
        if not self._started:
            self.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.stop()
        else:
            try:
                self.stop()
            except MclError:
                pass  # the exception already in flight is the one to see

    def _raise_error(self) -> None:
        if self._error is not None and not self._error_raised:
            self._error_raised = True
            raise self._error

    # -- status ---------------------------------------------------------------------
    def status(self) -> RecorderStatus:
        """A snapshot of the counts (safe to call from any thread, at any time)."""
        now = time.monotonic_ns()
        messages = self._messages
        self._rate_samples.append((now, messages))
        rate = 0.0
        for t, n in self._rate_samples:  # the oldest sample within the last 2 s
            if now - t <= 2 * NS_PER_S:
                if now > t:
                    rate = (messages - n) * NS_PER_S / (now - t)
                break
        topics = {}
        lost_by_topic = dict(self._lost_by_topic)
        bad_by_topic: dict[str, int] = {}
        for (_, topic), reasons in list(self._unstorable.items()):
            bad_by_topic[topic] = bad_by_topic.get(topic, 0) + sum(reasons.values())
        suspect_by_topic: dict[str, int] = {}
        stats = self._stats
        if stats is not None:
            for (_, topic), stream in stats.streams.items():
                if stream.suspect:
                    suspect_by_topic[topic] = suspect_by_topic.get(topic, 0) + stream.suspect
        for topic, n in self._unwritten.items():
            lost_by_topic[topic] = lost_by_topic.get(topic, 0) + n
        for topic, (m, b) in list(self._topic_counts.items()):
            topics[topic] = TopicStatus(
                m, b, lost_by_topic.pop(topic, 0), bad_by_topic.pop(topic, 0), suspect_by_topic.pop(topic, 0)
            )
        for topic in set(lost_by_topic) | set(bad_by_topic) | set(suspect_by_topic):
            topics[topic] = TopicStatus(
                0, 0, lost_by_topic.get(topic, 0), bad_by_topic.get(topic, 0), suspect_by_topic.get(topic, 0)
            )
        dropped = self._dropped()
        if not self._started:
            elapsed = 0
        else:
            elapsed = (self._end_mono if self._end_mono is not None else now) - self._start_mono
        current, files = self._files()
        return RecorderStatus(
            running=self.running,
            messages=messages,
            bytes=self._bytes,
            lost=self._lost + self._unwritten_total(),
            malformed=sum(dropped.values()),
            suspect=0 if stats is None else stats.suspect,
            dropped=dropped,
            rate=rate,
            elapsed_ns=elapsed,
            path=None if self.path is None else str(self.path),
            current_file=current,
            files=files,
            publishers=len(self._publishers),
            topics=topics,
            error=None if self._error is None else str(self._error),
        )

    def _dropped(self) -> dict[str, int]:
        """Messages dropped, by reason: the subscriber's (wire format) and the recorder's (not storable)."""
        stats = self._stats
        dropped = {} if stats is None else dict(stats.malformed_by_reason)
        for reasons in list(self._unstorable.values()):
            for reason, n in reasons.items():
                dropped[reason] = dropped.get(reason, 0) + n
        return dropped

    def _files(self) -> tuple[str | None, int]:
        """(the data file written last, the number of data files) of the log."""
        files = [] if self._log_writer is None else self._log_writer.files
        return (str(files[-1]) if files else None), len(files)

    # -- the recording thread -------------------------------------------------------
    def _run(self) -> None:
        failure: BaseException | None = None
        try:
            from mcl.network import Subscriber

            with Subscriber(self.topics, self.bus, exact=self.exact, hwm=self.hwm) as sub:
                # On the bus before start() returns: every publisher started later reaches it.
                sub.wait_joined(JOIN_TIMEOUT_S)
                self._ready.set()
                try:
                    self._loop(sub)
                finally:
                    self._stats = sub.stats()
                    self._write_accounting(complete=True)
        except BaseException as exc:  # noqa: BLE001 - reported through stop()/wait()
            failure = exc
        finally:
            self._end_mono = time.monotonic_ns()
            # The writer is closed here, in this thread: the first error is the one
            # kept (a secondary one, e.g. the index on a full disk, is dropped).
            try:
                self._close_writer(in_thread=True)
            except BaseException as exc:  # noqa: BLE001
                failure = failure or exc
            if failure is not None:
                self._error = _as_record_error(failure, self.path, self._messages, self._unwritten_total())
            self._ready.set()
            self._done.set()

    def _loop(self, sub: Any) -> None:
        writer = self._writer
        write = writer.write if writer is not None else None
        origin = self.origin_ns
        counts = self._topic_counts
        publishers = self._publishers
        on_message = self.on_message
        stop = self._stop
        flush_every = self.flush_interval_ns
        next_flush = time.monotonic_ns() + flush_every
        # From now, when the subscriber exists: its start-up (imports, sockets) is not recording time.
        deadline = None if self.duration_ns is None else time.monotonic_ns() + self.duration_ns
        remaining = self.count
        recv_batch = sub.recv_batch
        keep = self.topic_filter
        stop_seen: int | None = None
        next_accounting = time.monotonic_ns() + ACCOUNTING_EVERY_NS
        each = getattr(writer, "check_each_message", False)  # the writer's unstorable() for every record, not each new topic
        while True:
            now = time.monotonic_ns()
            wait_ns = next_flush - now
            if deadline is not None:
                wait_ns = min(wait_ns, deadline - now)
            batch = recv_batch(_BATCH, max(wait_ns, 0) / NS_PER_S) if not stop.is_set() else recv_batch(_BATCH, 0)
            drained = not batch
            if keep is not None:
                batch = [r for r in batch if keep(r.topic)]
            if remaining is not None and len(batch) >= remaining:
                batch = batch[:remaining]
            nbytes = 0
            publisher = None
            dropped = 0
            for r in batch:
                topic = r.topic
                payload = r.payload
                if r.publisher is not publisher:
                    publisher = r.publisher
                    publishers.add(publisher)
                c = counts.get(topic)
                if c is None or each:
                    reason = None if write is None else self._unstorable_reason(topic, payload)
                    if reason is not None:  # dropped and counted; the recording goes on
                        key = (r.publisher, topic)
                        if key not in self._unstorable and len(self._unstorable) >= MAX_TOPICS:
                            key = ("*", "*")  # the counts stay exact, under one key
                        by_reason = self._unstorable.setdefault(key, {})
                        by_reason[reason] = by_reason.get(reason, 0) + 1
                        dropped += 1
                        continue
                    if c is None:
                        c = counts[topic] = [0, 0]
                c[0] += 1
                c[1] += len(payload)
                nbytes += len(payload)
                if write is not None:
                    write(topic, payload, r.received_ns - origin)
                if on_message is not None:
                    on_message(r)
            self._messages += len(batch) - dropped
            self._bytes += nbytes
            if remaining is not None:
                remaining -= len(batch)
            now = time.monotonic_ns()
            finished = remaining == 0 or (deadline is not None and now >= deadline)
            if stop.is_set():
                # Record what had already arrived, for one flush interval at most.
                if stop_seen is None:
                    stop_seen = now
                finished = finished or drained or now - stop_seen >= flush_every
            if now >= next_flush or finished:
                self._tick(sub)
                next_flush = now + flush_every
                if now >= next_accounting and not finished:
                    self._stats = sub.stats()
                    self._write_accounting(complete=False)
                    next_accounting = now + ACCOUNTING_EVERY_NS
            if finished:
                return

    def _unstorable_reason(self, topic: str, payload: bytes) -> str | None:
        """Why a message cannot be stored in this log (None: it can).

        Checked for each new topic (for every message when the writer says
        ``check_each_message``: MCL_LOG 1.0 names its files after the
        payload's type), so that no message from the bus can stop the
        recording: the recorder's bounds, then the writer's ``unstorable()``.
        """
        if len(topic) > MAX_TOPIC_BYTES // 4 and len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
            return "topic too long for the log"
        if topic not in self._topic_counts and len(self._topic_counts) >= MAX_TOPICS:
            return "too many topics"
        check = getattr(self._writer, "unstorable", None)
        return None if check is None else check(topic, payload)

    def _write_accounting(self, complete: bool) -> None:
        """Write the accounting file of the log (atomically: a temporary file renamed over it)."""
        if self.path is None or self._stats is None or not self.path.is_dir():
            return
        data = self.accounting(complete)
        target = self.path / ACCOUNTING_FILE
        tmp = self.path / (ACCOUNTING_FILE + ".tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            os.replace(tmp, target)
        except OSError:  # a full disk: the log itself matters more; the summary still shows the counts
            try:
                tmp.unlink()
            except OSError:
                pass

    def accounting(self, complete: bool = True) -> dict[str, Any]:
        """The accounting stored with the log (see docs/log-format.md, "Accounting file")."""
        stats = self._stats
        origin = self.origin_ns
        streams: list[dict[str, Any]] = []
        keys = set(() if stats is None else stats.streams) | set(self._unstorable)
        for key in sorted(keys):
            stream = None if stats is None else stats.streams.get(key)
            bad = self._unstorable.get(key, {})
            spans = [] if stream is None else list(stream.spans)[-_MAX_SPANS_STORED:]
            streams.append({
                "publisher": key[0],
                "topic": key[1],
                "received": 0 if stream is None else stream.received,
                "lost": 0 if stream is None else stream.lost,
                "malformed": sum(bad.values()),
                "suspect": 0 if stream is None else stream.suspect,
                "malformed_by_reason": dict(bad),
                "loss_spans": [
                    {"first": sp.first, "count": sp.count, "after": _elapsed_s(sp.after_ns, origin),
                     "before": _elapsed_s(sp.before_ns, origin)}
                    for sp in spans
                ],
            })
        dropped = self._dropped()
        return {
            "accounting": 1,
            "complete": complete,
            "bus": self.bus if self.bus is not None else _default_bus(),
            "origin_ns": origin,
            "recorded": self._messages,
            "lost": 0 if stats is None else stats.lost,
            "malformed": sum(dropped.values()),
            "suspect": 0 if stats is None else stats.suspect,
            "malformed_by_reason": dropped,
            "streams": streams,
        }

    def _tick(self, sub: Any) -> None:
        """Every flush interval: flush, rotate, read the subscriber's loss counts."""
        if self._writer is not None:
            self._writer.flush()  # a native writer with max_files rotates as it starts each data file
        losses = sub.losses()
        by_topic: dict[str, int] = {}
        for (_, topic), n in losses.items():
            by_topic[topic] = by_topic.get(topic, 0) + n
        self._lost_by_topic = by_topic
        self._lost = sum(losses.values())

    def _close_writer(self, in_thread: bool = False) -> None:
        writer = self._writer
        if writer is None:
            return
        if not in_thread and self._thread is not None and self._thread.is_alive():
            return  # the recording thread closes it when it ends
        self._writer = None
        try:
            writer.close()
        except OSError as exc:
            self._count_written(writer)
            raise _as_record_error(exc, self.path, self._messages, self._unwritten_total()) from None
        self._count_written(writer)

    def _count_written(self, writer: Any) -> None:
        """Make the counts what reached the disk; what did not (write failure) is lost.

        Only for writers that know (``written()``: both formats of mcl).
        """
        written = getattr(writer, "written", None)
        if written is None:
            return
        on_disk: dict[str, tuple[int, int]] = written()
        unwritten: dict[str, int] = {}
        for topic, counts in self._topic_counts.items():
            n, b = on_disk.get(topic, (0, 0))
            if n < counts[0]:
                unwritten[topic] = counts[0] - n
                counts[0], counts[1] = n, b
        if unwritten:
            self._unwritten = unwritten
            self._messages = sum(c[0] for c in self._topic_counts.values())
            self._bytes = sum(c[1] for c in self._topic_counts.values())

    def _unwritten_total(self) -> int:
        return sum(self._unwritten.values())


def _elapsed_s(ns: int, origin_ns: int) -> float | None:
    """A sender time as seconds since the log's origin (None when the sender gave none)."""
    return None if ns <= 0 else round((ns - origin_ns) / NS_PER_S, 9)


def _default_bus() -> str:
    from mcl.network import default_bus

    return default_bus()


def read_accounting(log: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The accounting file of a log directory (or of the directory of a log file); None if it has none.

    Hostile input: a file that is not a JSON object, or over 64 MiB, raises
    LogError naming the file.
    """
    path = Path(log)
    directory = path if path.is_dir() else path.parent
    target = directory / ACCOUNTING_FILE
    if not target.is_file():
        return None
    try:
        if target.stat().st_size > 64 << 20:
            raise LogError(f"{target}: accounting file over 64 MiB")
        data = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise LogError(f"{target}: unreadable accounting file: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("streams", []), list):
        raise LogError(f"{target}: not an mcl accounting file")
    return data


def _as_record_error(exc: BaseException, path: Path | None, messages: int, unwritten: int = 0) -> BaseException:
    """A failure of the recording thread as the exception users see."""
    if isinstance(exc, RecordError):
        return exc
    after = f"recording stopped after {messages} messages on disk"
    if unwritten:
        after += f" ({unwritten} received but not written: counted as lost)"
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc)
        where = exc.filename or path
        return RecordError(f"{where}: cannot write the log ({what}); {after}, what was written before is readable")
    if isinstance(exc, LogError):
        return RecordError(f"{exc}; {after}, what was written before is readable")
    return exc
