"""ScheduleBroadcasts: a process that publishes queued records at their replay time."""

from __future__ import annotations

import collections
import gc
import math
import multiprocessing as mp
import operator
import os
import queue as queue_module
import select
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection, wait
from typing import Any

from mcl.exceptions import ReplayError
from mcl.log.record import Record
from mcl.replay.buffer import Batch
from mcl.replay.clock import LatenessStats, ReplayClock, check_speed
from mcl.replay.options import NS_PER_S, ReplayOptions
from mcl.replay.worker import (
    WorkerContext,
    beat,
    end_process,
    main_hidden,
    parent_alive,
    set_fine_timer_slack,
    setup_worker,
    sigint_blocked,
)

__all__ = ["ScheduleBroadcasts", "Hook"]

Hook = Callable[[Record], Any]

_CONTEXT = mp.get_context("spawn")
_TOPIC_PAYLOAD = operator.itemgetter(1, 2)  # (elapsed, topic, payload) -> (topic, payload)
_POLL_S = 0.1  # longest sleep between two heartbeats / parent checks


class ScheduleBroadcasts:
    """Publishes the records of `queue` (filled by :class:`BufferData`) at ``origin + elapsed / speed``.

    The worker process publishes on the bus (``options.publish``) and, when
    `hooks` are given, sends each record back to this process where a thread
    calls every hook with a :class:`mcl.Record` in order. Hooks therefore run
    in the process that made the replay (so they can touch its objects), a
    fraction of a millisecond after the record's publish time.

    Control goes through :meth:`request` (one command, one reply); the
    :class:`Replay` object is the friendly face of it.
    """

    def __init__(
        self,
        queue: mp.Queue[Batch],
        speed: float = 1.0,
        *,
        hooks: Iterable[Hook] | None = None,
        options: ReplayOptions | None = None,
        paused: bool = False,
    ) -> None:
        check_speed(speed)
        base = options if options is not None else ReplayOptions(publish=not hooks)
        if base.speed != speed:
            from dataclasses import replace

            base = replace(base, speed=speed)
        self.options = base
        self.queue = queue
        self.hooks = list(hooks or ())
        self._paused = paused
        self._control, self._control_child = _CONTEXT.Pipe(duplex=True)
        self._events: mp.Queue[tuple[Any, ...]] = _CONTEXT.Queue()
        self.heartbeat = _CONTEXT.Value("d", 0.0, lock=False)
        self._process: Any = None
        self._closed = False
        self._lock = threading.Lock()  # one request at a time on the control pipe
        self._cond = threading.Condition()
        self.delivered = 0  # records handed to the hooks (or counted) in this process
        self.finished_generation = -1  # generation of the last pass that ended
        self.passes = 0
        self.error: str | None = None  # first error reported by the worker or a hook
        self._ready = False
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def process(self) -> Any:
        return self._process

    def start(self, timeout: float | None = None) -> None:
        """Start the worker and wait until it is ready to publish."""
        if self._closed:
            raise RuntimeError("Cannot start a ScheduleBroadcasts once it has been closed.")
        if self._process is not None:
            raise RuntimeError("This ScheduleBroadcasts is already started.")
        beat(self.heartbeat)
        ctx = WorkerContext("mcl-replay: broadcast", os.getpid(), threading.current_thread() is threading.main_thread())
        self._process = _CONTEXT.Process(
            target=_scheduler_main,
            args=(ctx, self.options, self.queue, self._control_child, self._events, self.heartbeat, bool(self.hooks), self._paused),
            name="mcl-replay: broadcast",
            daemon=True,
        )
        with sigint_blocked(), main_hidden():
            self._process.start()
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

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def request(self, *command: Any, timeout: float | None = None) -> dict[str, Any]:
        """Send one command to the worker and return its reply (a status dict).

        Commands: ``status``, ``pause``, ``resume``, ``speed x``,
        ``seek generation from_ns reset``, ``step``, ``stop``.
        Raises ReplayError when the worker is gone or does not answer.
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
                        raise ReplayError(f"the broadcast worker did not answer {command[0]!r} within {limit:g} s")
                reply: dict[str, Any] = self._control.recv()
            except (OSError, EOFError) as exc:
                raise ReplayError(f"the broadcast worker is gone ({exc})") from None
        if "error" in reply:
            raise ReplayError(f"the broadcast worker failed: {reply['error']}")
        return reply

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
            kind = event[0]
            if kind == "records":
                records = event[1]
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
            elif kind == "finished":
                with self._cond:
                    self.finished_generation = max(self.finished_generation, event[1])
                    self._cond.notify_all()
            elif kind == "pass":
                with self._cond:
                    self.passes = event[1]
            elif kind == "ready":
                with self._cond:
                    self._ready = True
                    self._cond.notify_all()
            elif kind == "error":
                self.fail(event[1])
            elif kind == "closed":
                return

    def _ask_stop(self) -> None:
        with self._lock:
            self._control.send(("stop",))

    def close(self, timeout: float = 2.0) -> None:
        """Stop the worker (asking first, then SIGTERM, then SIGKILL); idempotent."""
        if self._closed:
            return
        process = self._process
        if process is not None and process.pid is not None and process.is_alive():
            end_process(process, timeout, self._ask_stop)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self._control.close()
        self._control_child.close()
        self._events.cancel_join_thread()
        self._events.close()

    def __enter__(self) -> ScheduleBroadcasts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scheduler_main(
    ctx: WorkerContext,
    options: ReplayOptions,
    queue: mp.Queue[Batch],
    control: Connection,
    events: mp.Queue[tuple[Any, ...]],
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
                from mcl.network import Publisher
            except ImportError as exc:
                raise ReplayError(f"the bus is not available: {exc}") from None
            # A short end-of-stream wait: stopping a replay must not hang.
            if options.hwm is None:
                publisher = Publisher(options.bus, close_timeout=0.5)
            else:
                publisher = Publisher(options.bus, close_timeout=0.5, hwm=options.hwm)
        worker = _Scheduler(ctx, options, queue, control, events, heartbeat, publisher, with_hooks, paused)
        # A full collection walks every object the imports made (numpy, zmq, ...):
        # milliseconds during which a due record would wait. Those objects live
        # as long as the worker, so they leave the collector's sight.
        gc.collect()
        gc.freeze()
        events.put(("ready",))
        worker.run()
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}" if isinstance(exc, Exception) else type(exc).__name__
        if not isinstance(exc, (ReplayError, OSError)) and isinstance(exc, Exception):
            message += " | " + traceback.format_exc(limit=3).strip().splitlines()[-2].strip()
        try:
            events.put(("error", message))
        except (OSError, ValueError):
            pass
        raise SystemExit(1) from None
    finally:
        if publisher is not None:
            publisher.close()
        queue.cancel_join_thread()
        events.put(("closed",))
        events.close()
        events.join_thread()


class _Scheduler:
    """The state machine of the broadcast worker."""

    def __init__(
        self,
        ctx: WorkerContext,
        options: ReplayOptions,
        queue: mp.Queue[Batch],
        control: Connection,
        events: mp.Queue[tuple[Any, ...]],
        heartbeat: Any,
        publisher: Any,
        with_hooks: bool,
        paused: bool,
    ) -> None:
        self.ctx = ctx
        self.options = options
        self.queue = queue
        # multiprocessing.Queue has no public way to wait on it together with another
        # connection; its reading end is a Connection, which wait() accepts.
        self.queue_reader = queue._reader  # type: ignore[attr-defined]
        self.control = control
        self.control_fd = control.fileno()
        self.events = events
        self.heartbeat = heartbeat
        self.publish = publisher.publish if publisher is not None else None
        self.publisher = publisher
        self.with_hooks = with_hooks
        self.clock = ReplayClock(options.speed, paused=paused)
        self.paused = paused
        self.generation = 0
        self.pending: collections.deque[tuple[int, str, bytes]] = collections.deque()
        self.pending_end = False  # the end of the pass follows the pending records
        self.fresh = True  # the next record starts a pass (anchor the clock on it, with delay)
        self.whole_pass = True  # the current pass plays the selection from its start (no seek in it)
        self.pass_records = 0  # records published in the current pass
        self.finished = False
        self.step_requested = False
        self.waiting_subscribers = options.wait_for_subscribers > 0
        self.stopping = False
        self.sent = 0
        self.total = 0
        self.passes = 0
        self.last_ns: int | None = None
        self.lateness = LatenessStats()
        self.spin_ns = options.spin_ns

    # -- control --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        position = self.clock.position_ns
        if position is None:
            position = self.options.start_ns if self.last_ns is None else self.last_ns
        if self.finished and self.last_ns is not None:
            position = self.last_ns
        if self.finished:
            state = "finished"
        elif self.paused:
            state = "paused"
        elif self.waiting_subscribers:
            state = "waiting"
        else:
            state = "playing"
        return {
            "state": state,
            "position_ns": position,
            "generation": self.generation,
            "sent": self.sent,
            "total": self.total,
            "passes": self.passes,
            "speed": self.clock.speed,
            "lateness": self.lateness.snapshot(),
        }

    def handle_commands(self) -> None:
        while not self.stopping and self.control.poll(0):
            self.handle(self.control.recv())

    def reply(self, **extra: Any) -> None:
        message = self.status()
        message.update(extra)
        self.control.send(message)

    def handle(self, command: tuple[Any, ...]) -> None:
        name = command[0]
        if name == "status":
            self.reply()
        elif name == "pause":
            self.paused = True
            self.clock.pause()
            self.reply()
        elif name == "resume":
            if not self.finished:
                self.paused = False
                self.clock.resume()
            self.reply()
        elif name == "speed":
            self.clock.set_speed(command[1])
            self.reply()
        elif name == "seek":
            _, self.generation, from_ns, reset = command
            self.pending.clear()
            self.pending_end = False
            self.finished = False
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
            self.reply()
        elif name == "step":
            self.paused = True
            self.clock.pause()
            if self.finished:
                self.reply(stepped=False)
            else:
                self.step_requested = True  # replied once the record is out (or the end seen)
        elif name == "stop":
            self.stopping = True
            self.reply()
        else:
            self.control.send({"error": f"unknown command {name!r}"})

    # -- main loop --------------------------------------------------------------------

    def run(self) -> None:
        control = self.control
        while not self.stopping:
            beat(self.heartbeat)
            if not parent_alive(self.ctx):
                return
            self.handle_commands()
            if self.stopping:
                return
            if self.finished or (self.paused and not self.step_requested):
                if control.poll(_POLL_S):
                    self.handle(control.recv())
                continue
            if not self.pending:
                if self.pending_end:
                    self.end_pass()
                elif not self.fetch():
                    continue
                continue
            if self.waiting_subscribers and not self.wait_subscribers():
                continue
            if self.step_requested:
                self.send_step()
                continue
            self.play()

    def fetch(self) -> bool:
        """Take the next batch of the current generation; False if none came in time."""
        ready = wait([self.queue_reader, self.control], _POLL_S)
        if self.control in ready or self.queue_reader not in ready:
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
            self.waiting_subscribers = False
            return True
        return False

    def end_pass(self) -> None:
        self.pending_end = False
        empty = self.whole_pass and self.pass_records == 0
        self.whole_pass, self.pass_records = True, 0
        if self.options.loop and not empty:  # looping over an empty selection would spin: it finishes
            self.passes += 1
            self.events.put(("pass", self.passes))
            self.fresh = True
            self.clock.set_position(None)
            self.sent = 0
            return
        self.finished = True
        self.events.put(("finished", self.generation))
        if self.step_requested:
            self.step_requested = False
            self.reply(stepped=False)

    def send_step(self) -> None:
        elapsed, topic, payload = record = self.pending.popleft()
        self.emit([record])
        self.fresh = False
        self.clock.set_position(elapsed)
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
        now = time.monotonic_ns()
        due = clock.due_ns(pending[0][0])
        ahead = due - now
        if ahead > self.spin_ns:
            # Sleep on the control pipe: a command wakes us at once. select() takes
            # microseconds (Connection.poll rounds up to milliseconds), and the
            # worker's timer slack is 1 ns, so it wakes on time.
            timeout = min((ahead - self.spin_ns) / NS_PER_S, _POLL_S)
            if select.select([self.control_fd], [], [], timeout)[0]:
                self.handle(self.control.recv())
            return
        while now < due:  # the last stretch: spin (at most spin_ns)
            now = time.monotonic_ns()
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
            now = time.monotonic_ns()
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
            self.events.put(("records", records))
