"""BufferData: a process that reads a log ahead of the clock into a bounded queue."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue as queue_module
import re
import threading
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from mcl.exceptions import ReplayError
from mcl.replay.options import NS_PER_S, ReplayOptions
from mcl.replay.worker import (
    WorkerContext,
    beat,
    end_process,
    main_hidden,
    parent_alive,
    setup_worker,
    sigint_blocked,
)

__all__ = ["BufferData", "SourceSpec", "make_source_spec", "iter_source", "END"]

# One queue item: (generation, [(elapsed_ns, topic, payload), ...], end_of_pass).
# Plain tuples pickle several times faster than Record named tuples.
Batch = tuple[int, list[tuple[int, str, bytes]], bool]
END = True

_CONTEXT = mp.get_context("spawn")  # no zmq context or lock crosses a fork


class SourceSpec:
    """A picklable description of what to read: log paths, or a reader object."""

    def __init__(
        self,
        paths: list[str] | None = None,
        reader: Any = None,
        topics: Any = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> None:
        self.paths = paths  # log paths opened with mcl.open_log in the worker
        self.reader = reader  # an object with read() / is_data_pending() / reset()
        self.topics = topics  # topic names / predicate of the source itself; None = all
        self.start_ns = start_ns  # window of the source itself (elapsed ns)
        self.end_ns = end_ns


def make_source_spec(source: Any) -> SourceSpec:
    """What the buffer process must open for `source`.

    `source` is a log path, a list of paths, a :class:`mcl.LogReader`, an
    :class:`mcl.ReadFile` / :class:`mcl.ReadDirectory`, or any picklable
    object with the original reader protocol (``read()`` returning
    ``{'elapsed_time', 'topic', 'payload'}`` or None, ``is_data_pending()``,
    ``reset()``).
    """
    from mcl.log.reader import LogReader, ReadFile

    if isinstance(source, SourceSpec):
        return source
    if isinstance(source, (str, os.PathLike)):
        return SourceSpec(paths=[os.fspath(source)])
    if isinstance(source, LogReader):
        return SourceSpec(
            paths=[str(s.path) for s in source.sources],
            topics=source.topic_filter,
            start_ns=source.start_ns,
            end_ns=source.end_ns,
        )
    if isinstance(source, ReadFile) and not getattr(source, "_ignore_raw", False):
        spec = make_source_spec(source.reader)
        return spec
    if isinstance(source, (list, tuple)) and source and all(isinstance(p, (str, os.PathLike)) for p in source):
        return SourceSpec(paths=[os.fspath(p) for p in source])
    if all(callable(getattr(source, name, None)) for name in ("read", "is_data_pending", "reset")):
        try:
            pickle.dumps(source)
        except Exception as exc:
            raise ReplayError(
                f"the reader {type(source).__name__} cannot be sent to the buffer process ({exc}); "
                "pass log paths, or make the reader picklable"
            ) from None
        return SourceSpec(reader=source)
    raise TypeError(
        "a replay source is a log path, a list of paths, a LogReader, or an object with "
        f"read() / is_data_pending() / reset(), not {type(source).__name__}"
    )


def iter_source(spec: SourceSpec, options: ReplayOptions, from_ns: int | None) -> Iterator[tuple[int, str, bytes]]:
    """Records (elapsed_ns, topic, payload) of the selection from log time `from_ns` on."""
    lo = _max(_max(spec.start_ns, options.start_ns), from_ns)
    hi = _min(spec.end_ns, options.end_ns)
    if spec.paths is not None:
        from mcl.log.reader import open_log

        reader = open_log(*spec.paths, topics=spec.topics)
        try:
            if options.topics is not None:
                reader.topic_filter = _and(reader.topic_filter, frozenset(options.topics).__contains__)
            records: Iterable[tuple[int, str, bytes]] = reader.iter_records(start_ns=lo, end_ns=hi)
            yield from _select(records, options)
        finally:
            reader.close()
    else:
        yield from _select(_iter_protocol(spec.reader, lo, hi, options.topics), options)


def _iter_protocol(reader: Any, lo: int | None, hi: int | None, topics: Any) -> Iterator[tuple[int, str, bytes]]:
    from mcl.message import encode

    wanted = None if topics is None else frozenset(topics)
    reader.reset()
    while reader.is_data_pending():
        item = reader.read()
        if item is None:
            break
        elapsed = round(item["elapsed_time"] * NS_PER_S)
        if lo is not None and elapsed < lo:
            continue
        if hi is not None and elapsed > hi:
            break
        topic = item.get("topic") or ""
        if wanted is not None and topic not in wanted:
            continue
        payload = item["payload"]
        if not isinstance(payload, bytes):
            payload = bytes(payload) if isinstance(payload, (bytearray, memoryview)) else encode(payload)
        yield elapsed, topic, payload


def _select(records: Iterable[tuple[int, str, bytes]], options: ReplayOptions) -> Iterator[tuple[int, str, bytes]]:
    if options.exclude is None and not options.remap:
        yield from records
        return
    exclude = re.compile(options.exclude).search if options.exclude is not None else None
    remap = dict(options.remap)
    for elapsed, topic, payload in records:
        if exclude is not None and exclude(topic):
            continue
        yield elapsed, remap.get(topic, topic), payload


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _and(first: Any, second: Any) -> Any:
    if first is None:
        return second
    return lambda topic: first(topic) and second(topic)


class BufferData:
    """Reads `source` in a worker process and keeps ``self.queue`` full.

    The queue holds batches of records (bounded by `batch_records` and
    `batch_bytes`) and at most ``options.queue_batches`` of them, so memory
    stays constant whatever the log size (about ``length`` records ahead).
    Each batch carries a *generation*: :meth:`seek` starts a new one and the
    consumer drops batches of older generations, so nothing read before a
    seek is ever published after it.

    The original MCL call ``BufferData(reader, length=5000)`` works; `reader`
    is anything :func:`make_source_spec` accepts.
    """

    def __init__(self, reader: Any, length: int = 5000, *, options: ReplayOptions | None = None) -> None:
        base = options if options is not None else ReplayOptions()
        if length != base.read_ahead:
            from dataclasses import replace

            base = replace(base, read_ahead=length)
        self.options = base
        self.spec = make_source_spec(reader)
        self.queue: mp.Queue[Batch] = _CONTEXT.Queue(maxsize=base.queue_batches)
        self._control_recv, self._control = _CONTEXT.Pipe(duplex=False)
        self.heartbeat = _CONTEXT.Value("d", 0.0, lock=False)
        self._process: Any = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def process(self) -> Any:
        """The worker process (multiprocessing.Process), None before start()."""
        return self._process

    def start(self) -> None:
        """Start the worker: it reads from the start of the selection (generation 0)."""
        if self._closed:
            raise RuntimeError("Cannot start a BufferData once it has been closed.")
        if self._process is not None:
            raise RuntimeError("This BufferData is already started.")
        beat(self.heartbeat)
        ctx = WorkerContext("mcl-replay: buffer", os.getpid(), threading.current_thread() is threading.main_thread())
        self._process = _CONTEXT.Process(
            target=_buffer_main,
            args=(ctx, self.spec, self.options, self.queue, self._control_recv, self.heartbeat),
            name="mcl-replay: buffer",
            daemon=True,
        )
        with sigint_blocked(), main_hidden(self.spec.reader is None):
            self._process.start()

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def seek(self, generation: int, from_ns: int | None) -> None:
        """Read from log time `from_ns` (None: start of the selection), tagging batches `generation`."""
        self._send(("seek", generation, from_ns))

    def _send(self, command: tuple[Any, ...]) -> None:
        try:
            self._control.send(command)
        except (OSError, ValueError) as exc:
            raise ReplayError(f"the buffer worker is gone ({exc})") from None

    def close(self, timeout: float = 2.0) -> None:
        """Stop the worker (SIGTERM, then SIGKILL if needed); idempotent."""
        if self._closed:
            return
        self._closed = True
        process = self._process
        if process is not None and process.pid is not None:
            end_process(process, timeout, lambda: self._control.send(("stop",)))
        self._control.close()
        self._control_recv.close()
        self.queue.cancel_join_thread()
        self.queue.close()

    def __enter__(self) -> BufferData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _buffer_main(
    ctx: WorkerContext,
    spec: SourceSpec,
    options: ReplayOptions,
    queue: mp.Queue[Batch],
    control: Connection,
    heartbeat: Any,
) -> None:
    setup_worker(ctx)
    try:
        _BufferWorker(ctx, spec, options, queue, control, heartbeat).run()
    finally:
        # Batches still in the pipe would keep this process waiting at exit.
        queue.cancel_join_thread()


class _BufferWorker:
    def __init__(
        self,
        ctx: WorkerContext,
        spec: SourceSpec,
        options: ReplayOptions,
        queue: mp.Queue[Batch],
        control: Connection,
        heartbeat: Any,
    ) -> None:
        self.ctx = ctx
        self.spec = spec
        self.options = options
        self.queue = queue
        self.control = control
        self.heartbeat = heartbeat
        self.generation = 0
        self.records: Iterator[tuple[int, str, bytes]] | None = iter_source(spec, options, None)
        self.whole_pass = True  # the current pass reads the selection from its start (not after a seek)
        self.pass_records = 0  # records read in the current pass
        self.stopping = False

    def run(self) -> None:
        poll_s = 0.1
        while not self.stopping:
            beat(self.heartbeat)
            if not parent_alive(self.ctx):
                return
            if self.records is None:  # end of the selection: wait for a seek
                if self.control.poll(poll_s):
                    self.handle(self.control.recv())
                continue
            if self.control.poll(0):
                self.handle(self.control.recv())
                continue
            batch = self.read_batch()
            self.put(batch)

    def handle(self, command: tuple[Any, ...]) -> None:
        if command[0] == "stop":
            self.stopping = True
        elif command[0] == "seek":
            _, self.generation, from_ns = command
            self.close_records()
            self.records = iter_source(self.spec, self.options, from_ns)
            self.whole_pass = from_ns is None
            self.pass_records = 0

    def close_records(self) -> None:
        if self.records is not None:
            close = getattr(self.records, "close", None)
            if close is not None:
                close()
            self.records = None

    def read_batch(self) -> Batch:
        assert self.records is not None
        out: list[tuple[int, str, bytes]] = []
        append = out.append
        size = 0
        limit_n = self.options.batch_records
        limit_b = self.options.batch_bytes
        for record in self.records:
            append(record)
            size += len(record[2])
            if len(out) >= limit_n or size >= limit_b:
                self.pass_records += len(out)
                return (self.generation, out, False)
        self.pass_records += len(out)
        # the selection is exhausted; an empty one is not read again and again (--loop)
        self.close_records()
        if self.options.loop and not (self.whole_pass and self.pass_records == 0):
            self.records = iter_source(self.spec, self.options, None)
            self.whole_pass = True
            self.pass_records = 0
        return (self.generation, out, END)

    def put(self, batch: Batch) -> None:
        """Put unless a command arrives first (a seek makes the batch stale)."""
        while not self.stopping:
            try:
                self.queue.put(batch, timeout=0.1)
                return
            except queue_module.Full:
                beat(self.heartbeat)
                if not parent_alive(self.ctx):
                    self.stopping = True
                    return
                if self.control.poll(0):
                    self.handle(self.control.recv())
                    return
