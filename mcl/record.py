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
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcl.exceptions import LogError, MclError, RecordError
from mcl.log.formats import DEFAULT_FORMAT, LogWriterProtocol, make_writer

if TYPE_CHECKING:
    from mcl.network import Received

__all__ = [
    "DEFAULT_FLUSH_INTERVAL_NS",
    "DEFAULT_HWM",
    "Recorder",
    "RecorderStatus",
    "TopicStatus",
    "make_log_path",
]

DEFAULT_FLUSH_INTERVAL_NS = 100_000_000  # SIGKILL loses at most this much of the recording
DEFAULT_HWM = 100_000  # messages queued for the recorder while it writes (ZeroMQ's default is 1000)
_BATCH = 1000  # messages taken from the subscriber at a time
_NS = 1_000_000_000


def make_log_path(out_dir: str | os.PathLike[str], when_ns: int | None = None, host: str | None = None) -> Path:
    """Create and return a new, empty ``out_dir/<UTC timestamp>_<host>/`` directory.

    The timestamp is ``YYYYmmddTHHMMSSZ`` of `when_ns` (default: now). An
    existing directory is never reused: ``_2``, ``_3``, ... are appended
    until the name is free (the directory is created here, atomically).
    """
    root = Path(out_dir)
    when = _dt.datetime.fromtimestamp((time.time_ns() if when_ns is None else when_ns) / _NS, tz=_dt.UTC)
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


@dataclass(frozen=True, slots=True)
class RecorderStatus:
    """A snapshot of a recorder, from :meth:`Recorder.status`."""

    running: bool = False  # True between start() and the end of the recording
    messages: int = 0  # messages recorded
    bytes: int = 0  # payload bytes recorded
    lost: int = 0  # messages missed (sequence gaps + subscriber drops)
    rate: float = 0.0  # messages per second over the last seconds (0.0 when unknown)
    elapsed_ns: int = 0  # time since start(), ns
    path: str | None = None  # the log directory, None when not writing
    current_file: str | None = None  # the data file written last, None before the first message
    files: int = 0  # data files in the log directory
    publishers: int = 0  # publishers seen (ids)
    topics: dict[str, TopicStatus] = field(default_factory=dict)
    error: str | None = None  # why the recording stopped early, None if it did not


class Recorder:
    """Records a live bus into a new log directory, in a background thread.

    Args:
        path: the log directory to create (must not hold a log; see
            :func:`make_log_path` for the ``<UTC timestamp>_<host>`` names
            of ``mcl-dump``). None records nothing: only counts (and echoes).
        bus: bus address (None: the default bus).
        topics: topics to record (prefixes, or exact names with
            ``exact=True``); None records every topic.
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
        bus: str | None = None,
        topics: Iterable[str] | str | None = None,
        *,
        format: str = DEFAULT_FORMAT,
        exact: bool = False,
        metadata: dict[str, str] | None = None,
        split_size: int | None = None,
        split_duration_ns: int | None = None,
        max_files: int | None = None,
        compression: str | None = None,
        flush_interval_ns: int = DEFAULT_FLUSH_INTERVAL_NS,
        duration_ns: int | None = None,
        count: int | None = None,
        on_message: Callable[[Received], Any] | None = None,
        hwm: int = DEFAULT_HWM,
    ) -> None:
        if max_files is not None and max_files < 1:
            raise ValueError("max_files must be at least 1")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1")
        if flush_interval_ns <= 0:
            raise ValueError("flush_interval_ns must be positive")
        if compression not in (None, "zstd"):
            raise ValueError(f"unknown compression {compression!r} (known: zstd)")
        if compression is not None and format != "native":
            raise RecordError(f"compression needs the native format; {format} files cannot be compressed")
        if max_files is not None and format == "mcl1":
            raise RecordError("rotation (max_files) needs the native format; MCL_LOG 1.0 keeps the time origin only in the first file of a series")
        self.path = None if path is None else Path(path)
        self.bus = bus
        self.topics: list[str] | None = [topics] if isinstance(topics, str) else (None if topics is None else list(topics))
        self.format = format
        self.exact = exact
        self.metadata = dict(metadata or {})
        self.metadata.setdefault("host", socket.gethostname())
        self.split_size = split_size
        self.split_duration_ns = split_duration_ns
        self.max_files = max_files
        self.compression = compression
        self.flush_interval_ns = flush_interval_ns
        self.duration_ns = duration_ns
        self.count = count
        self.on_message = on_message
        self.hwm = hwm

        self.origin_ns = 0
        self._writer: LogWriterProtocol | None = None
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
        self._unwritten: dict[str, int] = {}  # topic -> received but never on disk (write failure)
        self._rotated = 0  # data files deleted by rotation
        self._rate_samples: deque[tuple[int, int]] = deque(maxlen=64)

    # -- lifecycle ------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Recorder:
        """Open the log and start recording; returns once the subscriber is connected.

        Subscriptions reach publishers asynchronously: a publisher that must
        not lose the first messages calls ``wait_for_subscribers`` (as
        ``mcl-replay --wait-for-subscribers`` does).

        Raises RecordError / LogError if the log cannot be created, BusError
        if the bus cannot be joined.
        """
        if self._started:
            raise RuntimeError("Cannot start a recorder twice; create a new Recorder for a new recording.")
        self._started = True
        self.origin_ns = time.time_ns()
        existed = self.path is not None and self.path.exists()
        if self.path is not None:
            options: dict[str, Any] = {}
            if self.compression is not None:
                options["compression"] = self.compression
            if self.format == "native":
                options["flush_interval_ns"] = self.flush_interval_ns
            try:
                self._writer = make_writer(
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
            self._remove_empty_log(existed)
            raise RecordError(f"the recorder did not join the bus within {timeout} s")
        if self._error is not None:
            self._thread.join()
            self._error_raised = True
            self._remove_empty_log(existed)
            raise self._error
        return self

    def _remove_empty_log(self, existed: bool) -> None:
        """After a failed start: remove the files of the log just created (it holds no message)."""
        if self.path is None or self._messages:
            return
        for p in self.path.iterdir():  # make_log_dir made sure the directory held nothing before
            try:
                p.unlink()
            except OSError:
                pass
        if not existed:
            try:
                self.path.rmdir()
            except OSError:
                pass

    def stop(self, timeout: float | None = 30.0) -> RecorderStatus:
        """Stop recording, close the log (index written) and return the final status.

        Idempotent. Raises RecordError (once) if the recording failed.
        """
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
            if now - t <= 2 * _NS:
                if now > t:
                    rate = (messages - n) * _NS / (now - t)
                break
        topics = {}
        lost_by_topic = dict(self._lost_by_topic)
        for topic, n in self._unwritten.items():
            lost_by_topic[topic] = lost_by_topic.get(topic, 0) + n
        for topic, (m, b) in list(self._topic_counts.items()):
            topics[topic] = TopicStatus(m, b, lost_by_topic.pop(topic, 0))
        for topic, lost in lost_by_topic.items():
            topics[topic] = TopicStatus(0, 0, lost)
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
            rate=rate,
            elapsed_ns=elapsed,
            path=None if self.path is None else str(self.path),
            current_file=current,
            files=files,
            publishers=len(self._publishers),
            topics=topics,
            error=None if self._error is None else str(self._error),
        )

    def _files(self) -> tuple[str | None, int]:
        if self.path is None:
            return None, 0
        data = _data_files(self.path, self.format)
        current = self._current_file()
        if current is None and data:
            current = data[-1]
        return (None if current is None else str(current)), len(data)

    def _current_file(self) -> Path | None:
        """The data file the native writer appends to (None for mcl1: one file per type)."""
        files = getattr(self._writer, "files", None)
        return files[-1] if files else None

    # -- the recording thread -------------------------------------------------------
    def _run(self) -> None:
        failure: BaseException | None = None
        try:
            from mcl.network import Subscriber

            with Subscriber(self.topics, self.bus, exact=self.exact, hwm=self.hwm) as sub:
                self._ready.set()
                self._loop(sub)
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
        stop_seen: int | None = None
        while True:
            now = time.monotonic_ns()
            wait_ns = next_flush - now
            if deadline is not None:
                wait_ns = min(wait_ns, deadline - now)
            batch = recv_batch(_BATCH, max(wait_ns, 0) / _NS) if not stop.is_set() else recv_batch(_BATCH, 0)
            if remaining is not None and len(batch) >= remaining:
                batch = batch[:remaining]
            nbytes = 0
            publisher = None
            for r in batch:
                topic = r.topic
                payload = r.payload
                if r.publisher is not publisher:
                    publisher = r.publisher
                    publishers.add(publisher)
                c = counts.get(topic)
                if c is None:
                    c = counts[topic] = [0, 0]
                c[0] += 1
                c[1] += len(payload)
                nbytes += len(payload)
                if write is not None:
                    write(topic, payload, r.received_ns - origin)
                if on_message is not None:
                    on_message(r)
            self._messages += len(batch)
            self._bytes += nbytes
            if remaining is not None:
                remaining -= len(batch)
            now = time.monotonic_ns()
            finished = remaining == 0 or (deadline is not None and now >= deadline)
            if stop.is_set():
                # Record what had already arrived, for one flush interval at most.
                if stop_seen is None:
                    stop_seen = now
                finished = finished or not batch or now - stop_seen >= flush_every
            if now >= next_flush or finished:
                self._tick(sub)
                next_flush = now + flush_every
            if finished:
                return

    def _tick(self, sub: Any) -> None:
        """Every flush interval: flush, rotate, read the subscriber's loss counts."""
        if self._writer is not None:
            self._writer.flush()
            if self.max_files is not None and self.path is not None:
                self._rotate()
        losses = sub.losses()
        by_topic: dict[str, int] = {}
        for (_, topic), n in losses.items():
            by_topic[topic] = by_topic.get(topic, 0) + n
        self._lost_by_topic = by_topic
        self._lost = sum(losses.values())

    def _rotate(self) -> None:
        assert self.path is not None and self.max_files is not None
        current = self._current_file()
        files = _data_files(self.path, self.format)
        excess = len(files) - self.max_files
        for old in files:
            if excess <= 0:
                break
            if old == current:
                continue
            _remove_data_file(old, self.format)
            self._rotated += 1
            excess -= 1

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


def _data_files(path: Path, format: str) -> list[Path]:
    """The data files of a log directory, oldest first."""
    try:
        if format == "native":
            from mcl.log.native import data_files

            return data_files(path)
        return sorted(p for p in path.iterdir() if p.suffix == ".log" and p.is_file())
    except (OSError, LogError):
        return []


def _remove_data_file(path: Path, format: str) -> None:
    """Delete a data file and, for the native format, its index file."""
    paths = [path]
    if format == "native":
        from mcl.log.native_layout import INDEX_SUFFIX

        paths.append(path.with_suffix(INDEX_SUFFIX))
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
