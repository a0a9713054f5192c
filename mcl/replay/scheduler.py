"""Publishing queued records at their replay time: BatchScheduler (Replay's process) and the original ScheduleBroadcasts."""

from __future__ import annotations

import collections
import gc
import math
import multiprocessing as mp
import multiprocessing.queues as mpq
import operator
import queue as queue_module
import select
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any

from mcl.exceptions import ArgumentTypeError, ReplayError
from mcl.log.record import Record
from mcl.replay.buffer import Batch
from mcl.replay.clock import LatenessStats, ReplayClock
from mcl.replay.protocol import (
    Closed,
    Command,
    CommandFailed,
    Event,
    Finished,
    GetStatus,
    LatenessReport,
    LatenessSamples,
    PassEnded,
    Pause,
    Published,
    Ready,
    Resume,
    Seek,
    SetSpeed,
    State,
    Step,
    Stop,
    WorkerFailed,
    WorkerStatus,
)
from mcl.timeutil import NS_PER_S
from mcl.replay.options import ReplayOptions, check_compat_speed
from mcl.replay.worker import WorkerContext, WorkerProcess, beat, parent_alive, set_fine_timer_slack, setup_worker

__all__ = ["ScheduleBroadcasts", "BatchScheduler", "Hook"]

Hook = Callable[[Record], Any]

_CONTEXT = mp.get_context("spawn")
_TOPIC_PAYLOAD = operator.itemgetter(1, 2)  # (elapsed, topic, payload) -> (topic, payload)
_POLL_S = 0.1  # longest sleep between two heartbeats / parent checks
_CLOCK_EVERY_NS = 200_000_000  # the replay time is published this often while the worker runs (and on every clock change)


class BatchScheduler(WorkerProcess):
    """Publishes the record batches of `queue` (filled by :class:`BatchBuffer`) at ``origin + elapsed / speed``.

    The worker process publishes on the bus (``options.publish``) and, when
    `hooks` are given, sends each record back to this process where a thread
    calls every hook with a :class:`mcl.Record` in order. Hooks therefore run
    in the process that made the replay (so they can touch its objects), a
    fraction of a millisecond after the record's publish time.

    Control goes through :meth:`request` (one command, one reply); the
    :class:`Replay` object is the friendly face of it. This is the fast path
    of Replay; :class:`ScheduleBroadcasts` is the original MCL's class.
    """

    def __init__(
        self,
        queue: mp.Queue[Batch],
        options: ReplayOptions | None = None,
        *,
        hooks: Iterable[Hook] | None = None,
        paused: bool = False,
    ) -> None:
        super().__init__()
        self.options = options if options is not None else ReplayOptions(publish=not hooks)
        self.queue = queue
        self.hooks = list(hooks or ())
        self._paused = paused
        self._control, self._control_child = _CONTEXT.Pipe(duplex=True)
        self._events: mp.Queue[Event] = _CONTEXT.Queue()
        self._lateness = LatenessStats()  # the percentiles, computed here from the worker's raw samples
        self._lateness_report = LatenessReport()
        self._lock = threading.Lock()  # one request at a time on the control pipe
        self._cond = threading.Condition()
        self.delivered = 0  # records handed to the hooks (or counted) in this process
        self.finished_generation = -1  # generation of the last pass that ended
        self.passes = 0
        self.error: str | None = None  # first error reported by the worker or a hook
        self._ready = False
        self._thread: threading.Thread | None = None

    title = "mcl-replay: broadcast"

    def start(self, timeout: float | None = None) -> None:
        """Start the worker and wait until it is ready to publish."""
        self._spawn(
            _scheduler_main,
            (self.options, self.queue, self._control_child, self._events, self.heartbeat, bool(self.hooks), self._paused),
        )
        self._thread = threading.Thread(target=self._deliver, name="mcl-replay: hooks", daemon=True)
        self._thread.start()
        limit = self.options.start_timeout_ns / NS_PER_S if timeout is None else timeout
        with self._cond:
            deadline = time.monotonic() + limit
            while not self._ready and self.error is None:
                left = deadline - time.monotonic()
                if left <= 0 or not self._process.is_alive():
                    break
                self._cond.wait(min(left, _POLL_S))
        if self.error is not None:
            raise ReplayError(f"the broadcast worker failed: {self.error}")
        if not self._ready:
            why = "died" if not self._process.is_alive() else f"did not start within {limit:g} s"
            raise ReplayError(f"the broadcast worker {why}")

    def request(self, command: Command, timeout: float | None = None) -> WorkerStatus:
        """Send one command (:mod:`mcl.replay.protocol`) to the worker and return its reply.

        Raises ReplayError when the worker is gone, does not answer or failed.
        """
        limit = self.options.stuck_timeout_ns / NS_PER_S if timeout is None else timeout
        with self._lock:
            if self._process is None or self._closed:
                raise RuntimeError("The broadcast worker is not running.")
            try:
                self._control.send(command)
                deadline = time.monotonic() + limit
                while not self._control.poll(_POLL_S):
                    if not self._process.is_alive():
                        raise ReplayError(f"the broadcast worker died (exit code {self._process.exitcode})")
                    if time.monotonic() > deadline:
                        raise ReplayError(f"the broadcast worker did not answer {type(command).__name__} within {limit:g} s")
                reply: WorkerStatus | CommandFailed = self._control.recv()
            except (OSError, EOFError) as exc:
                raise ReplayError(f"the broadcast worker is gone ({exc})") from None
            if isinstance(reply, CommandFailed):
                raise ReplayError(f"the broadcast worker failed: {reply.error}")
            self._take_lateness(reply.lateness)
        return reply

    def _take_lateness(self, report: LatenessReport) -> None:
        """Merge the samples a reply carries (the sorting for percentiles happens here, not in the worker)."""
        if report.epoch != self._lateness_report.epoch:
            self._lateness.reset()
        for late_ns in report.samples:
            self._lateness.add(late_ns)
        self._lateness_report = report

    def lateness(self) -> dict[str, int]:
        """count, mean_ns, p50_ns, p99_ns (over the last 65 536 records), max_ns, as of the last reply."""
        with self._lock:
            snapshot = self._lateness.snapshot()
            report = self._lateness_report
        # The worker's counters see every record (its unsent samples are bounded).
        snapshot.update(count=report.count, mean_ns=report.total_ns // report.count if report.count else 0, max_ns=report.max_ns)
        return snapshot

    def sync(self, total: int, timeout: float = 10.0) -> bool:
        """Wait until the hooks have seen the first `total` records published."""
        with self._cond:
            return self._cond.wait_for(lambda: self.delivered >= total or self.error is not None, timeout)

    def wait_finished(self, generation: int, timeout: float | None) -> bool:
        """Wait until the pass of `generation` ended (and its records reached the hooks)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self.finished_generation >= generation or self.error is not None or self._closed,
                timeout,
            )

    def fail(self, message: str) -> None:
        """Record an error found by a supervisor and wake every waiter."""
        with self._cond:
            if self.error is None:
                self.error = message
            self._cond.notify_all()

    def _deliver(self) -> None:
        events = self._events
        hooks = self.hooks
        make = tuple.__new__
        while True:
            try:
                event = events.get(timeout=_POLL_S)
            except queue_module.Empty:
                if self._closed:
                    return
                continue
            except (OSError, EOFError, ValueError):
                return
            if isinstance(event, Published):
                records = event.records
                if self.error is None:
                    try:
                        for record in records:
                            rec = make(Record, record)
                            for hook in hooks:
                                hook(rec)
                    except BaseException as exc:  # a user's hook: report, do not die silently
                        self.fail(f"hook {getattr(hook, '__name__', hook)!r} raised {type(exc).__name__}: {exc}")
                with self._cond:
                    self.delivered += len(records)
                    self._cond.notify_all()
            elif isinstance(event, Finished):
                with self._cond:
                    self.finished_generation = max(self.finished_generation, event.generation)
                    self._cond.notify_all()
            elif isinstance(event, PassEnded):
                with self._cond:
                    self.passes = event.passes
            elif isinstance(event, Ready):
                with self._cond:
                    self._ready = True
                    self._cond.notify_all()
            elif isinstance(event, WorkerFailed):
                self.fail(event.message)
            elif isinstance(event, Closed):
                return

    def _ask_stop(self) -> None:
        with self._lock:
            self._control.send(Stop())

    def close(self, timeout: float = 2.0) -> None:
        """Stop the worker (asking first, then SIGTERM, then SIGKILL); idempotent."""
        if self._closed:
            return
        self._end(timeout, self._ask_stop)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self._control.close()
        self._control_child.close()
        self._events.cancel_join_thread()
        self._events.close()



def _scheduler_main(
    ctx: WorkerContext,
    options: ReplayOptions,
    queue: mp.Queue[Batch],
    control: Connection,
    events: mp.Queue[Event],
    heartbeat: Any,
    with_hooks: bool,
    paused: bool,
) -> None:
    setup_worker(ctx)
    set_fine_timer_slack()
    publisher = None
    try:
        if options.publish:
            try:
                from mcl.network import DEFAULT_HWM, Publisher
            except ImportError as exc:
                raise ReplayError(f"the bus is not available: {exc}") from None
            # A short end-of-stream wait: stopping a replay must not hang. A full bus makes the
            # replay wait (back-pressure: a recorder slower than --max-speed loses nothing), for
            # at most send_timeout_s (under stuck_timeout: the heartbeat stops meanwhile).
            publisher = Publisher(
                options.bus,
                close_timeout=0.5,
                send_timeout=options.send_timeout_s,
                hwm=DEFAULT_HWM if options.hwm is None else options.hwm,
            )
        worker = _Scheduler(ctx, options, queue, control, events, heartbeat, publisher, with_hooks, paused)
        # A full collection walks every object the imports made (numpy, zmq, ...):
        # milliseconds during which a due record would wait. Those objects live
        # as long as the worker, so they leave the collector's sight.
        gc.collect()
        gc.freeze()
        events.put(Ready())
        worker.run()
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}" if isinstance(exc, Exception) else type(exc).__name__
        if not isinstance(exc, (ReplayError, OSError)) and isinstance(exc, Exception):
            message += " | " + traceback.format_exc(limit=3).strip().splitlines()[-2].strip()
        try:
            events.put(WorkerFailed(message))
        except (OSError, ValueError):
            pass
        raise SystemExit(1) from None
    finally:
        if publisher is not None:
            publisher.close()
        queue.cancel_join_thread()
        events.put(Closed())
        events.close()
        events.join_thread()


Wait = Callable[[float, bool], tuple[bool, bool]]
"""``wait(timeout_s, batches)``: sleep until a command (or, with `batches`, a batch) arrives or
`timeout_s` passes; returns (a command waits, a batch waits)."""


def select_wait(control: Connection, queue: mp.Queue[Batch]) -> Wait:
    """The worker's wait: select() on the control pipe and the queue's reading end.

    select() wakes within microseconds (Connection.poll rounds up to
    milliseconds), and the worker's timer slack is 1 ns, so it wakes on time.
    multiprocessing.Queue has no public way to wait on it together with
    another connection; its reading end is a Connection, which select() takes.
    """
    control_fd = control.fileno()
    queue_fd = queue._reader.fileno()  # type: ignore[attr-defined]
    both = [control_fd, queue_fd]
    alone = [control_fd]

    def wait(timeout_s: float, batches: bool) -> tuple[bool, bool]:
        ready = select.select(both if batches else alone, [], [], timeout_s)[0]
        return control_fd in ready, queue_fd in ready

    return wait


class _Scheduler:
    """The state machine of the broadcast worker.

    Its clock (`now`, monotonic ns) and its sleep (`wait`, see :data:`Wait`)
    are parameters: the unit tests drive it with a fake clock that advances
    when it waits, without processes or sleeping (tests/test_scheduler_unit.py).
    `ctx` None: no parent to watch.
    """

    def __init__(
        self,
        ctx: WorkerContext | None,
        options: ReplayOptions,
        queue: mp.Queue[Batch],
        control: Connection,
        events: mp.Queue[Event],
        heartbeat: Any,
        publisher: Any,
        with_hooks: bool,
        paused: bool,
        *,
        now: Callable[[], int] = time.monotonic_ns,
        wait: Wait | None = None,
    ) -> None:
        self.ctx = ctx
        self.options = options
        self.queue = queue
        self.control = control
        self.now = now
        self.wait = wait if wait is not None else select_wait(control, queue)
        self.events = events
        self.heartbeat = heartbeat
        self.publish = publisher.publish if publisher is not None else None
        self.publisher = publisher
        self.with_hooks = with_hooks
        self.clock = ReplayClock(options.speed, paused=paused, now=now)
        self.paused = paused  # by a command (pause, step), orthogonal to the phase: a paused replay may be finished
        # Where the pass is (WAITING for subscribers before its first record, PLAYING, FINISHED),
        # and the phase a seek returns a finished replay to.
        self.phase = State.WAITING if options.wait_for_subscribers > 0 else State.PLAYING
        self.phase_after_seek = self.phase
        self.generation = 0
        self.pending: collections.deque[tuple[int, str, bytes]] = collections.deque()
        self.pending_end = False  # the end of the pass follows the pending records
        self.fresh = True  # the next record starts a pass (anchor the clock on it, with delay)
        self.whole_pass = True  # the current pass plays the selection from its start (no seek in it)
        self.pass_records = 0  # records published in the current pass
        self.step_requested = False
        self.stopping = False
        self.sent = 0
        self.total = 0
        self.passes = 0
        self.last_ns: int | None = None
        self.lateness = LatenessSamples()  # raw samples: the parent sorts them for percentiles
        self.spin_ns = options.spin_ns
        self.origin_ns = options.origin_ns or 0
        self.next_clock_ns = 0  # monotonic ns at which the replay time is published again

    # -- control --------------------------------------------------------------------

    def status(self, **step: Any) -> WorkerStatus:
        """The reply to every command (`step`: the Step reply's fields)."""
        position = self.clock.position_ns
        if position is None:
            position = self.options.start_ns if self.last_ns is None else self.last_ns
        if self.finished and self.last_ns is not None:
            position = self.last_ns
        return WorkerStatus(
            state=self.state(),
            position_ns=position,
            generation=self.generation,
            sent=self.sent,
            total=self.total,
            passes=self.passes,
            speed=self.clock.speed,
            lateness=self.lateness.report(),
            **self.bus_status(),
            **step,
        )

    @property
    def finished(self) -> bool:
        return self.phase is State.FINISHED

    def state(self) -> State:
        if self.phase is not State.FINISHED and self.paused:
            return State.PAUSED
        return self.phase

    def bus_status(self) -> dict[str, Any]:
        publisher = self.publisher
        if publisher is None:
            return {}
        return {
            "bus": publisher.bus,
            "subscribers": publisher.subscribers,
            "peak_subscribers": publisher.peak_subscribers,
            "dropped": publisher.dropped,
        }

    def publish_clock(self) -> None:
        """Publish the log time played now (wire.TIME), so a bridge can follow the replay's clock."""
        self.next_clock_ns = self.now() + _CLOCK_EVERY_NS
        position = self.last_ns if self.finished and self.last_ns is not None else self.clock.position_ns
        if self.publisher is None or position is None:
            return
        speed = 0.0 if (self.paused or self.finished) else self.clock.speed
        self.publisher.publish_time(self.origin_ns + position, speed)

    def handle_commands(self) -> None:
        while not self.stopping and self.control.poll(0):
            self.handle(self.control.recv())

    def reply(self, **step: Any) -> None:
        self.control.send(self.status(**step))

    def handle(self, command: Command) -> None:
        if isinstance(command, GetStatus):
            self.reply()
        elif isinstance(command, Pause):
            self.paused = True
            self.clock.pause()
            self.publish_clock()
            self.reply()
        elif isinstance(command, Resume):
            if not self.finished:
                self.paused = False
                self.clock.resume()
                self.publish_clock()
            self.reply()
        elif isinstance(command, SetSpeed):
            self.clock.set_speed(command.speed)
            self.publish_clock()
            self.reply()
        elif isinstance(command, Seek):
            self.generation, from_ns, reset = command.generation, command.from_ns, command.reset
            self.pending.clear()
            self.pending_end = False
            if self.phase is State.FINISHED:
                self.phase = self.phase_after_seek
            self.step_requested = False
            if reset:
                self.sent = 0
                self.lateness.reset()
                self.last_ns = None
            self.whole_pass = from_ns is None
            self.pass_records = 0
            if from_ns is None:
                self.fresh = True
                self.clock.set_position(None)
            else:
                self.fresh = False
                self.clock.set_position(from_ns)
                self.publish_clock()
            self.reply()
        elif isinstance(command, Step):
            self.paused = True
            self.clock.pause()
            if self.finished:
                self.reply(stepped=False)
            else:
                self.step_requested = True  # replied once the record is out (or the end seen)
        elif isinstance(command, Stop):
            self.stopping = True
            self.reply()
        else:
            self.control.send(CommandFailed(f"unknown command {command!r}"))

    # -- main loop --------------------------------------------------------------------

    def run(self) -> None:
        while not self.stopping and self.tick():
            pass

    def tick(self) -> bool:
        """One turn of the loop (at most one sleep of _POLL_S); False once the worker must end."""
        beat(self.heartbeat)
        if self.ctx is not None and not parent_alive(self.ctx):
            return False
        if self.now() >= self.next_clock_ns:
            self.publish_clock()
        self.handle_commands()
        if self.stopping:
            return False
        if self.finished or (self.paused and not self.step_requested):
            if self.wait(_POLL_S, False)[0]:
                self.handle(self.control.recv())
            return True
        if not self.pending:
            if self.pending_end:
                self.end_pass()
            else:
                self.fetch()
            return True
        if self.phase is State.WAITING and not self.wait_subscribers():
            return True
        if self.step_requested:
            self.send_step()
            return True
        self.play()
        return True

    def fetch(self) -> bool:
        """Take the next batch of the current generation; False if none came in time."""
        command, batch = self.wait(_POLL_S, True)
        if command or not batch:
            return False
        try:
            generation, records, end = self.queue.get_nowait()
        except queue_module.Empty:
            return False
        if generation != self.generation:
            return False  # read before a seek: stale
        self.pending.extend(records)
        self.pending_end = end
        return True

    def wait_subscribers(self) -> bool:
        if self.publisher is None or self.publisher.wait_for_subscribers(self.options.wait_for_subscribers, _POLL_S):
            self.phase = self.phase_after_seek = State.PLAYING
            return True
        return False

    def end_pass(self) -> None:
        self.pending_end = False
        empty = self.whole_pass and self.pass_records == 0
        self.whole_pass, self.pass_records = True, 0
        if self.options.loop and not empty:  # looping over an empty selection would spin: it finishes
            self.passes += 1
            self.events.put(PassEnded(self.passes))
            self.fresh = True
            self.clock.set_position(None)
            self.sent = 0
            return
        self.phase_after_seek, self.phase = self.phase, State.FINISHED
        self.publish_clock()
        self.events.put(Finished(self.generation))
        if self.step_requested:
            self.step_requested = False
            self.reply(stepped=False)

    def send_step(self) -> None:
        elapsed, topic, payload = record = self.pending.popleft()
        self.fresh = False
        self.clock.set_position(elapsed)
        self.publish_clock()  # before the record: a bridge stamps it with this position
        self.emit([record])
        self.step_requested = False
        self.reply(stepped=True, elapsed_ns=elapsed, topic=topic)

    def play(self) -> None:
        """Publish the due records, or sleep towards the next one (waking for commands)."""
        pending = self.pending
        clock = self.clock
        if self.fresh or not clock.anchored:
            first = pending[0][0]
            if self.fresh:
                start = self.options.start_ns
                clock.anchor(first if start is None or start > first else start, self.options.delay_ns)
                self.fresh = False
            else:
                clock.anchor(clock.position_ns if clock.position_ns is not None else first)
            self.publish_clock()
        now = self.now()
        due = clock.due_ns(pending[0][0])
        ahead = due - now
        if ahead > self.spin_ns:
            # Sleep on the control pipe: a command wakes us at once.
            timeout = min((ahead - self.spin_ns) / NS_PER_S, _POLL_S)
            if self.wait(timeout, False)[0]:
                self.handle(self.control.recv())
            return
        while now < due:  # the last stretch: spin (at most spin_ns)
            now = self.now()
        if math.isinf(clock.speed):  # as fast as possible: up to 4096 records, published in one call
            popleft = pending.popleft
            batch = [popleft() for _ in range(min(len(pending), 4096))]
            if self.publisher is not None:
                self.publisher.publish_many(map(_TOPIC_PAYLOAD, batch))
            self.count(batch)
            clock.note_sent(batch[-1][0])
            return
        out: list[tuple[int, str, bytes]] = []
        publish = self.publish
        lateness = self.lateness
        while pending:
            record = pending[0]
            due = clock.due_ns(record[0])
            if due > now:
                break
            pending.popleft()
            if publish is not None:
                publish(record[1], record[2])
            now = self.now()
            lateness.add(now - due)
            out.append(record)
        self.count(out)

    def emit(self, records: list[tuple[int, str, bytes]]) -> None:
        """Publish `records` now (step)."""
        if self.publish is not None:
            for record in records:
                self.publish(record[1], record[2])
        self.count(records)

    def count(self, records: list[tuple[int, str, bytes]]) -> None:
        if not records:
            return
        self.sent += len(records)
        self.pass_records += len(records)
        self.total += len(records)
        self.last_ns = records[-1][0]
        if self.with_hooks:
            self.events.put(Published(records))


# -- the original MCL's ScheduleBroadcasts ---------------------------------------------------

IDLE_END_S = 1.0  # a plain queue (not a BufferData's) that stays empty this long ends the broadcasts
_JOIN_S = 10.0  # longest wait for the broadcasting thread at stop()


class ScheduleBroadcasts:
    """The original MCL ``ScheduleBroadcasts(queue, speed=1.0)``: publish queued items at their recorded times.

    A thread of this process takes the items ``{'elapsed_time', 'topic',
    'payload'}`` from `queue` (a ``multiprocessing.Queue``, usually
    ``BufferData.queue``) and publishes each on the bus (payload bytes as
    they are, a Message or any other value encoded) at
    ``anchor + (elapsed_time - anchor_elapsed) / speed``, sleeping (not
    busy-waiting) in between. The clock is anchored on the first item after
    each start(), so a stop() / start() resumes with the recorded spacing and
    the item that was waiting is published, not dropped (the original
    dropped it and re-anchored at log time 0). With `hooks` (callables taking
    a :class:`mcl.Record`) the items go to the hooks instead, and also to
    the bus when `bus` is given. `wait_for_subscribers` (mcl) holds the
    first item until that many subscribers are connected.

    The broadcasts end by themselves (``is_alive()`` becomes False) at the
    end mark of a :class:`BufferData` queue, or, for another queue, once it
    stayed empty for ``IDLE_END_S`` (1 s). A failure (a hook raised, a
    payload that cannot be encoded) ends them too, with the reason in
    ``error``. :class:`Replay` does not use this class: it publishes from a
    process of its own (:class:`BatchScheduler`).

    Raises ArgumentTypeError (a TypeError) when `queue` is not a
    multiprocessing queue, ArgumentTypeError / ArgumentRangeError (TypeError)
    for a bad `speed`.
    """

    def __init__(
        self,
        queue: Any,
        speed: float = 1.0,
        *,
        bus: str | None = None,
        hooks: Iterable[Hook] | None = None,
        wait_for_subscribers: int = 0,
    ) -> None:
        if not isinstance(queue, mpq.Queue):
            raise ArgumentTypeError(f"queue must be a multiprocessing.Queue, not a {type(queue).__name__}")
        self._queue: Any = queue
        self._speed = check_compat_speed(speed)
        self.hooks = list(hooks or ())
        for hook in self.hooks:
            if not callable(hook):
                raise ArgumentTypeError(f"a hook must be callable, not {type(hook).__name__}")
        if isinstance(wait_for_subscribers, bool) or not isinstance(wait_for_subscribers, int) or wait_for_subscribers < 0:
            raise ArgumentTypeError(f"wait_for_subscribers must be an int >= 0, not {wait_for_subscribers!r}")
        self.bus = bus
        self.publish = not self.hooks or bus is not None  # publish on the bus (else hooks only)
        self.wait_for_subscribers = wait_for_subscribers  # subscribers to wait for before the first item
        from mcl.replay.buffer import StoppableThread

        self._worker = StoppableThread(self._broadcast, "mcl: ScheduleBroadcasts")
        self._ready = threading.Event()
        self._held: tuple[int, Any] | None = None  # (epoch, item) fetched but not yet published
        self.sent = 0  # items published since this object was made
        self.error: str | None = None  # why the last run ended early

    @property
    def queue(self) -> Any:
        """The queue the items come from."""
        return self._queue

    @property
    def speed(self) -> float:
        """Log seconds per wall second (math.inf: as fast as possible); settable while broadcasting."""
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        self._speed = check_compat_speed(value)

    def is_alive(self) -> bool:
        """True while items are being broadcast."""
        return self._worker.is_alive()

    def start(self, timeout: float = 10.0) -> bool:
        """Start broadcasting (from the item that was waiting at stop()); False if already broadcasting."""
        if self.is_alive():
            return False
        self.error = None
        self._start_error: str | None = None
        self._ready.clear()
        self._worker.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise ReplayError(f"the broadcasting thread did not start within {timeout:g} s")
        if self._start_error is not None:
            raise ReplayError(f"the broadcasts could not start: {self._start_error}")
        return True

    def stop(self) -> bool:
        """Stop broadcasting (the waiting item is kept for the next start()); False if not broadcasting."""
        return self._worker.stop(_JOIN_S, "the broadcasting thread (a hook still running?)")

    def close(self) -> None:
        """Stop; idempotent."""
        self.stop()

    def __enter__(self) -> ScheduleBroadcasts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fetch(self, marked: bool) -> tuple[int, Any] | None:
        """The next (epoch, item), END_OF_DATA as the item at the end; None when nothing came in 0.1 s."""
        try:
            if marked:
                return self._queue.get_marked(timeout=_POLL_S)
            return 0, self._queue.get(timeout=_POLL_S)
        except queue_module.Empty:
            return None

    def _broadcast(self) -> None:
        from mcl.message import Message, encode
        from mcl.replay.buffer import END_OF_DATA, ItemQueue

        publisher = None
        try:
            if self.publish:
                from mcl.network import Publisher

                publisher = Publisher(self.bus, close_timeout=0.5)
        except Exception as exc:
            self.error = self._start_error = f"{type(exc).__name__}: {exc}"
            self._ready.set()
            return
        self._ready.set()
        queue = self._queue
        marked = isinstance(queue, ItemQueue)
        anchor: tuple[int, int] | None = None  # (log ns, monotonic ns) of the first item since start / reset
        anchor_speed = self._speed  # the speed the anchor was taken at
        idle_since = time.monotonic()
        waiting = publisher is not None and self.wait_for_subscribers > 0
        try:
            while not self._worker.stopping.is_set():
                if waiting:
                    assert publisher is not None
                    waiting = not publisher.wait_for_subscribers(self.wait_for_subscribers, _POLL_S)
                    continue
                if self._held is None:
                    got = self._fetch(marked)
                    if got is None:
                        if not marked and time.monotonic() - idle_since > IDLE_END_S and _qsize(queue) == 0:
                            return
                        continue
                    if got[1] is END_OF_DATA:
                        return
                    self._held = got
                    idle_since = time.monotonic()
                epoch, item = self._held
                if marked and epoch != queue.epoch:  # BufferData.reset(): a new pass
                    self._held, anchor = None, None
                    continue
                elapsed_ns = round(item["elapsed_time"] * NS_PER_S)
                now = time.monotonic_ns()
                speed = self._speed
                if anchor is not None and speed != anchor_speed:  # a new speed: re-anchor at the current position
                    position = anchor[0] if math.isinf(anchor_speed) else anchor[0] + round((now - anchor[1]) * anchor_speed)
                    anchor = (min(position, elapsed_ns), now)
                if anchor is None:
                    anchor = (elapsed_ns, now)
                anchor_speed = speed
                due = now if math.isinf(speed) else anchor[1] + round((elapsed_ns - anchor[0]) / speed)
                if due > now:
                    self._worker.stopping.wait(min((due - now) / NS_PER_S, _POLL_S))  # stop() wakes it at once
                    continue
                payload = item["payload"]
                if isinstance(payload, (bytes, bytearray, memoryview)):
                    data = bytes(payload)
                else:
                    data = encode(payload.to_dict() if isinstance(payload, Message) else payload)
                topic = item["topic"] or ""
                if marked and epoch != queue.epoch:  # a reset() while the item was encoded
                    continue
                if publisher is not None:
                    publisher.publish(topic, data)
                if self.hooks:
                    record = Record(elapsed_ns, topic, data)
                    for hook in self.hooks:
                        hook(record)
                self._held = None
                self.sent += 1
        except Exception as exc:  # a hook or a payload of the user's: keep the reason, end quietly
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            if publisher is not None:
                publisher.close()


def _qsize(queue: Any) -> int:
    try:
        return int(queue.qsize())
    except NotImplementedError:  # macOS
        return 0 if queue.empty() else 1
