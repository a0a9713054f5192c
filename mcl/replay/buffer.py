"""Reading a log ahead of the clock into a bounded queue: BatchBuffer (Replay's path) and the original BufferData."""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.queues as mpq
import os
import queue as queue_module
import re
import threading
import time
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

from mcl.exceptions import (
    ArgumentRangeError,
    ArgumentTypeError,
    FieldMissingError,
    ReaderProtocolError,
    ReplayError,
)
from mcl.timeutil import NS_PER_S
from mcl.replay.options import ReplayOptions
from mcl.replay.protocol import Seek, Stop
from mcl.replay.worker import WorkerContext, WorkerProcess, beat, parent_alive, setup_worker, start_resource_tracker

__all__ = ["BufferData", "ItemQueue", "END_OF_DATA", "StoppableThread", "BatchBuffer", "SourceSpec", "make_source_spec", "SourceReader", "END"]

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
        ignore_raw: bool = False,
    ) -> None:
        self.paths = paths  # log paths opened with mcl.open_log in the worker
        self.reader = reader  # an object with read() / is_data_pending() / reset(), read in this process
        self.topics = topics  # topic names / predicate of the source itself; None = all
        self.start_ns = start_ns  # window of the source itself (elapsed ns)
        self.end_ns = end_ns
        self.ignore_raw = ignore_raw  # skip payloads that are not named messages (ReadFile(ignore_raw=True))
        self.read_once = False  # a pass of `reader` has begun (one without reset() cannot be played again)

    def window(self, options: ReplayOptions, from_ns: int | None = None) -> tuple[int | None, int | None]:
        """(first, last) log time read: the source's own window and the options', from `from_ns` on."""
        return options.window(self.start_ns, self.end_ns, from_ns)


def make_source_spec(source: Any) -> SourceSpec:
    """What the buffer must read for `source`.

    `source` is a log path, a list of paths, a :class:`mcl.LogReader`, an
    :class:`mcl.ReadFile` / :class:`mcl.ReadDirectory`, or any object with
    the original reader protocol (``read()`` returning ``{'elapsed_time',
    'topic', 'payload'}`` or None, ``is_data_pending()``, and ``reset()``,
    called at the start of each pass; without it the reader plays once).

    Paths, LogReaders and mcl's own readers (unless they force a message
    type) become log paths plus their selection: the buffer worker process
    opens the log itself (the fast path). Any other reader object stays in
    this process and is read by a thread of it: it need not be picklable.
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
    if isinstance(source, ReadFile) and source.forced_type is None:
        spec = make_source_spec(source.reader)
        spec.ignore_raw = source.ignore_raw
        return spec
    if isinstance(source, (list, tuple)) and source and all(isinstance(p, (str, os.PathLike)) for p in source):
        return SourceSpec(paths=[os.fspath(p) for p in source])
    if all(callable(getattr(source, name, None)) for name in ("read", "is_data_pending")):
        return SourceSpec(reader=source)
    raise ReaderProtocolError(
        "a replay source is a log path, a list of paths, a LogReader, or an object with "
        f"read() / is_data_pending() (and reset() to play it again), not {type(source).__name__}"
    )


class SourceReader:
    """The selection of a source (`spec` and `options`), read from any position.

    A log is opened once, at the first :meth:`records`, and kept open for
    every later one (a seek, the next pass of a loop) until :meth:`close`;
    ``opened`` counts the opens (a test checks it stays 1).
    """

    def __init__(self, spec: SourceSpec, options: ReplayOptions) -> None:
        self.spec = spec
        self.options = options
        self.log: Any = None  # the LogReader, once opened
        self.opened = 0

    def records(self, from_ns: int | None = None) -> Iterator[tuple[int, str, bytes]]:
        """Records (elapsed_ns, topic, payload) of the selection from log time `from_ns` on."""
        spec, options = self.spec, self.options
        lo, hi = spec.window(options, from_ns)
        if spec.paths is None:
            return _select(_iter_protocol(spec, lo, hi, options.topics), options)
        if self.log is None:
            from mcl.log.reader import open_log

            self.log = open_log(*spec.paths, topics=spec.topics)
            self.opened += 1
            narrow_selection(self.log, options)  # --exclude and --remap follow in _select
        records: Iterable[tuple[int, str, bytes]] = self.log.iter_records(start_ns=lo, end_ns=hi)
        if spec.ignore_raw:
            from mcl.message import type_name_of

            records = (r for r in records if type_name_of(r[2]) is not None)
        return _select(records, options)

    def close(self) -> None:
        """Release the log; idempotent."""
        if self.log is not None:
            self.log.close()
            self.log = None


def _iter_protocol(spec: SourceSpec, lo: int | None, hi: int | None, topics: Any) -> Iterator[tuple[int, str, bytes]]:
    from mcl.message import encode

    reader = spec.reader
    wanted = None if topics is None else frozenset(topics)
    reset = getattr(reader, "reset", None)
    if callable(reset):
        reset()
    elif spec.read_once:
        raise ReplayError(f"the reader {type(reader).__name__} has no reset(): it plays once, not again")
    spec.read_once = True  # without reset(), the first pass starts where the reader is
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


def narrow_selection(log: Any, options: ReplayOptions, *, exclude: bool = False) -> None:
    """Narrow the topic filter of the LogReader `log` (the source's own) to the options' topics (and `exclude`)."""
    if options.topics is not None:
        log.topic_filter = _and(log.topic_filter, frozenset(options.topics).__contains__)
    if exclude and options.exclude is not None:
        search = re.compile(options.exclude).search
        log.topic_filter = _and(log.topic_filter, lambda topic: not search(topic))


def _and(first: Any, second: Any) -> Any:
    if first is None:
        return second
    return lambda topic: first(topic) and second(topic)


class _ThreadWorker:
    """A reader thread of this process with the part of multiprocessing.Process that the replay uses.

    A reader object of the user's is read where it lives (it need not be
    picklable, and its state is the user's); supervision sees the thread as
    a worker: alive, its exit code (1 after an error, with ``failure`` saying
    why), and kill() / terminate() ask it to stop (nothing else can stop a
    thread; it is a daemon, so it never holds the process at exit).
    """

    def __init__(self, target: Any, args: tuple[Any, ...], name: str) -> None:
        self._stop = threading.Event()
        self.failure: str | None = None
        self.exitcode: int | None = None
        self.pid = os.getpid()
        self._thread = threading.Thread(target=self._run, args=(target, args), name=name, daemon=True)

    def _run(self, target: Any, args: tuple[Any, ...]) -> None:
        try:
            target(*args, self._stop)
            self.exitcode = 0
        except BaseException as exc:  # a user's reader: report it, never print a thread traceback
            if not self._stop.is_set():
                self.failure = f"the reader raised {type(exc).__name__}: {exc}"
            self.exitcode = 1

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def terminate(self) -> None:
        self._stop.set()

    kill = terminate


class BatchBuffer(WorkerProcess):
    """Reads `source` ahead of the clock and keeps ``self.queue`` full of batches (the fast path of Replay).

    The queue holds batches of records (bounded by `batch_records` and
    `batch_bytes`) and at most ``options.queue_batches`` of them, so memory
    stays constant whatever the log size (about ``read_ahead`` records ahead).
    Each batch carries a *generation*: :meth:`seek` starts a new one and the
    consumer drops batches of older generations, so nothing read before a
    seek is ever published after it.

    Log paths (and mcl's readers, which name theirs) are read by a worker
    process that opens the log itself; any other reader object is read by a
    thread of this process (it need not be picklable). :class:`BufferData`
    is the original MCL's class, with its contract.
    """

    title = "mcl-replay: buffer"

    def __init__(self, reader: Any, options: ReplayOptions | None = None) -> None:
        super().__init__()
        self.options = options if options is not None else ReplayOptions()
        self.spec = make_source_spec(reader)
        self.queue: mp.Queue[Batch] = _CONTEXT.Queue(maxsize=self.options.queue_batches)
        self._control_recv, self._control = _CONTEXT.Pipe(duplex=False)

    @property
    def in_process(self) -> bool:
        """True when a worker process reads the log; False when a thread of this process reads a reader object."""
        return self.spec.reader is None

    def start(self) -> None:
        """Start the worker: it reads from the start of the selection (generation 0)."""
        if self.in_process:
            self._spawn(_buffer_main, (self.spec, self.options, self.queue, self._control_recv, self.heartbeat))
            return
        self._check_startable()
        self._process = _ThreadWorker(
            _buffer_thread,
            (self.spec, self.options, self.queue, self._control_recv, self.heartbeat),
            self.title,
        )
        self._process.start()

    def seek(self, generation: int, from_ns: int | None) -> None:
        """Read from log time `from_ns` (None: start of the selection), tagging batches `generation`."""
        self._send(Seek(generation, from_ns))

    def _send(self, command: Seek | Stop) -> None:
        try:
            self._control.send(command)
        except (OSError, ValueError) as exc:
            raise ReplayError(f"the buffer worker is gone ({exc})") from None

    def close(self, timeout: float = 2.0) -> None:
        """Stop the worker (asking first, then SIGTERM, then SIGKILL); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._end(timeout, lambda: self._control.send(Stop()))
        self._control.close()
        self._control_recv.close()
        self.queue.cancel_join_thread()
        self.queue.close()


def _buffer_thread(
    spec: SourceSpec,
    options: ReplayOptions,
    queue: mp.Queue[Batch],
    control: Connection,
    heartbeat: Any,
    stop: threading.Event,
) -> None:
    _BufferWorker(None, spec, options, queue, control, heartbeat, stop).run()


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
        ctx: WorkerContext | None,  # None: a thread of the replay's own process
        spec: SourceSpec,
        options: ReplayOptions,
        queue: mp.Queue[Batch],
        control: Connection,
        heartbeat: Any,
        stop: threading.Event | None = None,
    ) -> None:
        self.ctx = ctx
        self.stop_event = stop
        self.spec = spec
        self.options = options
        self.queue = queue
        self.control = control
        self.heartbeat = heartbeat
        self.generation = 0
        self.source = SourceReader(spec, options)  # the log, opened once for every seek and pass
        self.records: Iterator[tuple[int, str, bytes]] | None = self.source.records()
        self.whole_pass = True  # the current pass reads the selection from its start (not after a seek)
        self.pass_records = 0  # records read in the current pass
        self.stopping = False

    def alive(self) -> bool:
        """False once the worker must end: its parent is gone (process) or it was told to stop (thread)."""
        if self.ctx is not None:
            return parent_alive(self.ctx)
        return self.stop_event is None or not self.stop_event.is_set()

    def run(self) -> None:
        try:
            self.loop()
        finally:
            self.close_records()
            self.source.close()

    def loop(self) -> None:
        poll_s = 0.1
        while not self.stopping:
            beat(self.heartbeat)
            if not self.alive():
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

    def handle(self, command: Seek | Stop) -> None:
        if isinstance(command, Stop):
            self.stopping = True
        elif isinstance(command, Seek):
            self.generation = command.generation
            self.close_records()
            self.records = self.source.records(command.from_ns)
            self.whole_pass = command.from_ns is None
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
            self.records = self.source.records()
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
                if not self.alive():
                    self.stopping = True
                    return
                if self.control.poll(0):
                    self.handle(self.control.recv())
                    return


# -- the original MCL's BufferData ---------------------------------------------------------

ITEM_KEYS = ("elapsed_time", "topic", "payload")  # the keys of an original queue item
_STOP_TIMEOUT_S = 10.0  # longest wait for a reader thread to finish its read() at stop()


class _EndOfData:
    """The mark a BufferData puts after the last item (never returned by ItemQueue.get)."""

    def __reduce__(self) -> str:
        return "END_OF_DATA"


END_OF_DATA = _EndOfData()


class ItemQueue(mpq.Queue):
    """The queue of :class:`BufferData`: a ``multiprocessing.Queue`` of original items, clearable.

    ``get()`` / ``get_nowait()`` return the items as ``reader.read()`` gave
    them, as in the original. Every item is stored with the queue's *epoch*;
    :meth:`clear` starts a new epoch, so items put before it (also those
    still on their way from the putting thread) are never returned after
    it: a consumer holding this queue, such as :class:`ScheduleBroadcasts`,
    keeps working across :meth:`BufferData.reset` (the original replaced the
    queue and left its consumer with the old one). The end of the data is a
    mark only :meth:`get_marked` returns. It is created with the 'spawn'
    context, so any process may use it.
    """

    def __init__(self, maxsize: int = 0) -> None:
        start_resource_tracker()  # its semaphores must not outlive a closed terminal
        super().__init__(maxsize, ctx=_CONTEXT)
        self._epoch = _CONTEXT.Value("q", 0)
        # Buffered items are worth nothing once the program ends: exiting must
        # not wait for a consumer to take them (multiprocessing would).
        self.cancel_join_thread()

    def __getstate__(self) -> Any:
        return (super().__getstate__(), self._epoch)

    def __setstate__(self, state: Any) -> None:
        super().__setstate__(state[0])
        self._epoch = state[1]

    @property
    def epoch(self) -> int:
        """Items put before the last clear() belong to older epochs and are dropped."""
        return int(self._epoch.value)

    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put `obj`; it is pickled here, so an item that cannot be pickled raises here (not in a feeder thread)."""
        try:
            data = bytes(ForkingPickler.dumps((self.epoch, obj)))
        except Exception as exc:
            raise ReplayError(f"an item cannot go through the queue: {type(exc).__name__}: {exc}") from None
        super().put(data, block, timeout)

    def get_marked(self, block: bool = True, timeout: float | None = None) -> tuple[int, Any]:
        """(epoch, item or END_OF_DATA) of the next item of the current epoch; queue.Empty on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            epoch, obj = ForkingPickler.loads(super().get(block, left))
            if epoch == self.epoch:
                return epoch, obj

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            _, obj = self.get_marked(block, left)
            if obj is not END_OF_DATA:
                return obj

    def clear(self) -> None:
        """Drop every item put so far (a new epoch), and drain what has arrived."""
        with self._epoch.get_lock():
            self._epoch.value += 1
        while True:
            try:
                super().get(False)
            except queue_module.Empty:
                return


class StoppableThread:
    """A daemon thread of this process that runs `target` until asked to stop (the original classes' workers).

    ``stopping`` is set by :meth:`stop`; the target checks it (or waits on
    it, which wakes at once) and returns. start() / stop() return the
    original MCL's bools: False when already in that state.
    """

    def __init__(self, target: Any, name: str) -> None:
        self._target = target
        self._name = name
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        if self.is_alive():
            return False
        self.stopping.clear()
        self._thread = threading.Thread(target=self._target, name=self._name, daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float, what: str) -> bool:
        """Ask the target to return and wait `timeout` s for it (ReplayError naming `what` if it does not)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return False
        self.stopping.set()
        thread.join(timeout)
        if thread.is_alive():
            raise ReplayError(f"{what} did not stop within {timeout:g} s")
        return True


def _length(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"length must be an int > 0 (items in the queue), not a {type(value).__name__}")
    if value <= 0:
        raise ArgumentRangeError(f"length must be an int > 0 (items in the queue), not {value}")
    return value


class BufferData:
    """The original MCL ``BufferData(reader, length=5000)``: buffer a reader's items in a queue.

    A thread of this process reads ``reader.read()`` and puts each item,
    ``{'elapsed_time': float, 'topic': str, 'payload': ...}`` as the reader
    returned it, into :attr:`queue` (an :class:`ItemQueue`, a
    ``multiprocessing.Queue`` of at most `length` items), until ``read()``
    returns None. The reader needs ``read()`` and ``is_data_pending()``, and
    ``reset()`` for :meth:`reset`; it is never pickled nor copied (the
    original read it in a forked process). `reader` may also be a log path
    (read with ``mcl.ReadFile(path, message=True)``).

    Unlike the original: payloads need not be Messages (raw data is
    buffered too); an item waiting for room in a full queue is kept across
    stop() / start(), never dropped; :meth:`reset` empties the same queue
    object instead of replacing it. :class:`Replay` does not use this class:
    it has a batched path between processes (:class:`BatchBuffer`).

    Raises ReaderProtocolError (a TypeError and the original's NameError)
    for an object that is not a reader, ArgumentTypeError /
    ArgumentRangeError (TypeError) for a bad `length`.
    """

    def __init__(self, reader: Any, length: int = 5000) -> None:
        if isinstance(reader, (str, os.PathLike)):
            from mcl.log.reader import ReadFile

            reader = ReadFile(reader, message=True)
        if not (callable(getattr(reader, "read", None)) and callable(getattr(reader, "is_data_pending", None))):
            raise ReaderProtocolError(
                f"the reader must have read() and is_data_pending() methods; a {type(reader).__name__} has not"
            )
        self._reader = reader
        self._length = _length(length)
        self._queue = ItemQueue(self._length)
        self._ready = threading.Event()
        self._pending = threading.Event()
        self._pending.set()
        self._worker = StoppableThread(self._buffer, "mcl: BufferData")
        self._held: Any = None  # an item read but not yet queued (kept across stop/start)
        self._ended = False  # the end mark is in the queue (until reset())
        self.error: str | None = None  # why the last run stopped early (the reader raised, a bad item)

    @property
    def queue(self) -> ItemQueue:
        """The queue of buffered items (the same object for the life of this BufferData)."""
        return self._queue

    @property
    def length(self) -> int:
        """Most items the queue holds."""
        return self._length

    def is_ready(self) -> bool:
        """True once the queue was full or every item was read (until reset() / start())."""
        return self._ready.is_set()

    def is_data_pending(self) -> bool:
        """True while the reader has items not yet buffered."""
        return self._pending.is_set()

    def is_alive(self) -> bool:
        """True while the buffering thread runs."""
        return self._worker.is_alive()

    def start(self) -> bool:
        """Buffer from where the last stop() left off; False (nothing done) if already buffering."""
        if self.is_alive():
            return False
        self.error = None
        self._ready.clear()
        self._pending.set()
        return self._worker.start()

    def stop(self) -> bool:
        """Stop buffering (the read position and the queue are kept); False if not buffering."""
        if not self._worker.stop(_STOP_TIMEOUT_S, "the reader (its read())"):
            return False
        self._ready.clear()
        return True

    def reset(self) -> None:
        """Stop, empty the queue and call ``reader.reset()``: the next start() buffers from the beginning."""
        self.stop()
        reset = getattr(self._reader, "reset", None)
        if not callable(reset):
            raise ReaderProtocolError(f"the reader must have a reset() method to be reset; a {type(self._reader).__name__} has not")
        self._held = None
        self._ended = False
        self._queue.clear()
        self._ready.clear()
        self._pending.set()
        reset()

    def _buffer(self) -> None:
        queue = self._queue
        try:
            while not self._worker.stopping.is_set():
                item = self._held
                if item is None:
                    item = self._reader.read()
                    if item is None:
                        if self._ended:
                            self._finished()
                            return
                        item = END_OF_DATA  # queued like an item: never blocks stop()
                    else:
                        _check_item(item)
                    self._held = item
                try:
                    queue.put(item, timeout=0.1)
                except queue_module.Full:
                    self._ready.set()
                    continue
                self._held = None
                if item is END_OF_DATA:
                    self._ended = True
                    self._finished()
                    return
        except Exception as exc:  # a reader of the user's: keep the reason, end the thread quietly
            self.error = f"{type(exc).__name__}: {exc}"

    def _finished(self) -> None:
        self._pending.clear()
        self._ready.set()


def _check_item(item: Any) -> None:
    if not isinstance(item, dict):
        raise ArgumentTypeError(f"read() must return a dict with keys {', '.join(ITEM_KEYS)} (or None), not a {type(item).__name__}")
    missing = [key for key in ITEM_KEYS if key not in item]
    if missing:
        raise FieldMissingError(f"the item read has no {missing[0]!r} (keys: {', '.join(ITEM_KEYS)})")
