"""Replay: the object users drive (start, pause, seek, speed, step, wait, status)."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from mcl.exceptions import MclError, ReplayError
from mcl.replay.buffer import BatchBuffer, SourceSpec, make_source_spec, narrow_selection
from mcl.replay.protocol import PLAYING_STATES, GetStatus, Pause, Resume, Seek, SetSpeed, State, Step, WorkerStatus
from mcl.timeutil import NS_PER_S, check_timeout
from mcl.replay.options import ReplayOptions, ReplayStatus, check_seconds
from mcl.replay.scheduler import BatchScheduler, Hook
from mcl.replay.worker import heartbeat_age, sigint_blocked

__all__ = ["Replay"]

_SUPERVISE_S = 0.1  # how often the workers are checked


class Replay:
    """Replays logs at their recorded timing onto the bus or into Python hooks.

    Args:
        source: a log path, a list of paths (merged by time), a
            :class:`mcl.LogReader`, an :class:`mcl.ReadFile` /
            :class:`mcl.ReadDirectory`, or any object with the original
            reader protocol (``read()``, ``is_data_pending()``, and
            ``reset()`` to play it more than once). Logs (also those named
            by mcl's readers) are read by the buffer worker process; any
            other reader object stays in this process, read by a thread (it
            need not be picklable; ``reset()`` is called at the start of
            every pass).
        options: a :class:`ReplayOptions` (integer ns, validated once): the
            one input of the engine. Or, as in the original MCL, the speed
            (a number), with the keywords below (seconds): the convenience
            form, which builds the options (:meth:`ReplayOptions.from_seconds`);
            a ReplayOptions and keywords together are a TypeError. With a
            ReplayOptions, ``publish`` is as given (also with hooks).
        speed: log seconds per wall second; ``math.inf`` plays as fast as
            possible (still in order, nothing dropped). Not a number is a
            TypeError, <= 0 a ValueError (and a TypeError, as the original).
        hooks: callables called with each :class:`mcl.Record`, in order, in
            *this* process (a thread of it), right after the record's replay
            time. With hooks and no `bus`, nothing is published on the bus.
        bus: bus address to publish on (None: the default bus).
        publish: publish on the bus; default: True unless hooks are given
            without a `bus`.
        loop: play again from the start at the end, until stop() / close().
        start, end: window of log time played, in seconds from the log's time
            origin (the ``elapsed`` times of ``mcl-cat``), inclusive.
        topics: exact topic names played (None: all); exclude: a regex of
            topics dropped; remap: ``{"old": "new"}`` or ``["old:=new"]``.
        delay: seconds to wait before the first record of each pass.
        read_ahead: records buffered ahead of the clock.
        wait_for_subscribers: hold the first record until this many
            subscribers are connected to the publisher.
        stuck_timeout: seconds without a sign of life after which a worker
            is reported stuck and the replay fails.
        hwm: the publisher's high-water mark (messages queued towards slow
            subscribers before ZeroMQ drops; 0 = unlimited; None = the bus
            default). Subscribers count what is dropped.

    Nothing runs until :meth:`start` (or :meth:`pause` / :meth:`step`, which
    start the workers paused). Positions are log times in seconds from the
    time origin, as ``start`` / ``end``. Every selected record is published
    exactly once per pass, in order, whatever the sequence of controls; a
    pass that reached the end starts again from the beginning on start().
    Errors of the workers (died, stuck, a hook raised) stop the replay and
    raise :class:`mcl.ReplayError` from the next call.

    As in the original MCL, :meth:`start`, :meth:`pause` and :meth:`stop`
    return True when they changed something and False when the replay was
    already in that state; :meth:`is_alive` is True while playing.
    """

    def __init__(
        self,
        source: Any,
        options: ReplayOptions | float | None = None,
        *,
        hooks: Iterable[Hook] | None = None,
        speed: float | None = None,
        bus: str | None = None,
        publish: bool | None = None,
        loop: bool | None = None,
        start: float | None = None,
        end: float | None = None,
        topics: Iterable[str] | str | None = None,
        exclude: str | None = None,
        remap: dict[str, str] | Iterable[str] | None = None,
        delay: float | None = None,
        read_ahead: int | None = None,
        wait_for_subscribers: int | None = None,
        stuck_timeout: float | None = None,
        hwm: int | None = None,
    ) -> None:
        self.hooks = list(hooks or ())
        for hook in self.hooks:
            if not callable(hook):
                raise TypeError(f"a hook must be callable, not {type(hook).__name__}")
        keywords: dict[str, Any] = {
            "speed": speed, "bus": bus, "publish": publish, "loop": loop, "start": start, "end": end,
            "topics": topics, "exclude": exclude, "remap": remap, "delay": delay, "read_ahead": read_ahead,
            "wait_for_subscribers": wait_for_subscribers, "stuck_timeout": stuck_timeout, "hwm": hwm,
        }  # fmt: skip
        if isinstance(options, ReplayOptions):
            given = sorted(name for name, value in keywords.items() if value is not None)
            if given:
                raise TypeError(f"give either a ReplayOptions or keywords, not both (got {', '.join(given)})")
        else:
            if options is not None:  # Replay(source, speed): the original positional speed
                if speed is not None:
                    raise TypeError("speed given twice (positionally and as a keyword)")
                keywords["speed"] = options
            if publish is None:  # hooks without a bus: nothing goes on the bus
                keywords["publish"] = not self.hooks or bus is not None
            options = ReplayOptions.from_seconds(**keywords)
        self._spec = make_source_spec(source)
        # The log is opened once here (first record, time origin); the time of its
        # last record, a full scan for an MCL_LOG 1.0 log, waits for the first status().
        self._bounds = _Bounds(self._spec, options)
        self._first_ns = self._bounds.first_ns
        origin_ns = self._bounds.origin_ns
        self._options = replace(options, origin_ns=origin_ns) if options.origin_ns is None else options
        self._lock = threading.RLock()
        self._generation = 0
        self._buffer: BatchBuffer | None = None
        self._scheduler: BatchScheduler | None = None
        self._supervisor: threading.Thread | None = None
        self._error: str | None = None
        self._closed = False
        self._at_start = True  # nothing played since the start or the last stop()

    # -- properties ---------------------------------------------------------------------

    @property
    def options(self) -> ReplayOptions:
        """What this replay plays and how (the one source of truth: setters replace it)."""
        return self._options

    @property
    def speed(self) -> float:
        """Log seconds per wall second; settable while playing (math.inf: as fast as possible)."""
        return self._options.speed

    @speed.setter
    def speed(self, value: float) -> None:
        options = replace(self._options, speed=value)  # validates
        with self._lock:
            self._check()
            if self._scheduler is not None:
                self._scheduler.request(SetSpeed(options.speed))
            self._options = options

    @property
    def worker_pids(self) -> dict[str, int]:
        """Process ids of the running workers: ``buffer`` and ``broadcast``."""
        pids = {}
        if self._buffer is not None and self._buffer.pid is not None:
            pids["buffer"] = self._buffer.pid
        if self._scheduler is not None and self._scheduler.pid is not None:
            pids["broadcast"] = self._scheduler.pid
        return pids

    # -- controls -----------------------------------------------------------------------

    def start(self) -> bool:
        """Play: from the beginning the first time and after the end, else resume where paused.

        Returns False (and does nothing) if the replay is already playing.
        """
        with self._lock:
            scheduler = self._launch()
            if scheduler.request(GetStatus()).state in PLAYING_STATES:
                return False
            self._at_start = False
            reply = scheduler.request(Resume())
            if reply.state == State.FINISHED:
                self._seek(None, reset=True)
                scheduler.request(Resume())
            return True

    def pause(self) -> bool:
        """Stop the clock; start() resumes with the recorded spacing kept.

        Returns True if the replay was playing, False if it was not (nothing changes).
        """
        with self._lock:
            scheduler = self._launch()
            playing = scheduler.request(GetStatus()).state in PLAYING_STATES
            reply = scheduler.request(Pause())
            self._sync(reply)
            return playing

    def stop(self) -> bool:
        """Pause and go back to the beginning (counts reset); start() plays from the start.

        Returns True if the replay was playing or paused away from the
        beginning, False if there was nothing to stop.
        """
        with self._lock:
            self._check()
            if self._scheduler is None or self._at_start:
                return False
            reply = self._scheduler.request(Pause())
            self._sync(reply)
            self._seek(None, reset=True)
            self._at_start = True
            return True

    def is_alive(self) -> bool:
        """True while the replay is playing (the original's "replaying data")."""
        if self._scheduler is None or self._closed or self._error is not None:
            return False
        try:
            return self._scheduler.request(GetStatus()).state in PLAYING_STATES
        except (ReplayError, RuntimeError):
            return False

    def is_data_pending(self) -> bool:
        """True until the current pass has played its last record."""
        return self.status().state not in ("finished", "failed", "closed")

    def seek(self, position: float) -> None:
        """Go to log time `position` (seconds from the time origin).

        The next record played is the first at or after `position`. A
        playing replay keeps playing from there; otherwise it stays paused
        there until start().
        """
        position_ns = check_seconds(position, "position")
        with self._lock:
            scheduler = self._launch()
            if scheduler.request(GetStatus()).state == State.FINISHED:
                scheduler.request(Pause())
            self._seek(position_ns, reset=False)
            self._at_start = False

    def step(self) -> bool:
        """Pause, then publish the next record at once; False if the pass is at its end."""
        with self._lock:
            scheduler = self._launch()
            reply = scheduler.request(Step())
            self._sync(reply)
            self._at_start = False
            return reply.stepped

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the current pass ends (its records reached the hooks); False on timeout.

        Raises ReplayError if the replay failed; RuntimeError if it was never started.
        """
        timeout = check_timeout(timeout)
        scheduler = self._scheduler
        if scheduler is None:
            raise RuntimeError("Cannot wait for a replay that was never started.")
        done = scheduler.wait_finished(self._generation, timeout)
        self._check()
        return done and not self._closed

    def status(self) -> ReplayStatus:
        """Where the replay is: state, position, window, counts, speed, lateness (never raises)."""
        last_ns = self._bounds.last_ns()
        base = {"start_ns": self._first_ns, "end_ns": last_ns, "speed": self._options.speed}
        if self._error is not None:
            return ReplayStatus(state=State.FAILED, error=self._error, **base)  # type: ignore[arg-type]
        if self._closed:
            return ReplayStatus(state=State.CLOSED, **base)  # type: ignore[arg-type]
        scheduler = self._scheduler
        if scheduler is None:
            return ReplayStatus(state=State.IDLE, position_ns=self._first_ns, **base)  # type: ignore[arg-type]
        try:
            reply = scheduler.request(GetStatus())
        except (ReplayError, RuntimeError) as exc:
            return ReplayStatus(state=State.FAILED, error=self._error or str(exc), **base)  # type: ignore[arg-type]
        position = reply.position_ns
        if position is None:
            position = self._first_ns
        if last_ns is not None and position is not None:
            position = min(position, last_ns)
        return ReplayStatus(
            state=reply.state,
            position_ns=position,
            sent=reply.sent,
            total=reply.total,
            passes=reply.passes,
            lateness=scheduler.lateness(),
            bus=reply.bus,
            subscribers=reply.subscribers,
            peak_subscribers=reply.peak_subscribers,
            dropped=reply.dropped,
            **base,  # type: ignore[arg-type]
        )

    def close(self) -> None:
        """Stop the workers and release everything; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._scheduler is not None:
            self._scheduler.close()
        if self._buffer is not None:
            self._buffer.close()
        if self._supervisor is not None:
            self._supervisor.join(2.0)
        self._bounds.close()

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Replay {self.status().state} speed={self._options.speed:g}>"

    # -- internals ------------------------------------------------------------------------

    def _check(self) -> None:
        if self._error is None and self._scheduler is not None and self._scheduler.error is not None:
            self._fail(self._scheduler.error)
        if self._error is not None:
            raise ReplayError(self._error)
        if self._closed:
            raise RuntimeError("Cannot use a replay once it has been closed.")

    def _launch(self) -> BatchScheduler:
        """Start the workers (paused) unless running; return the scheduler."""
        self._check()
        if self._scheduler is not None:
            return self._scheduler
        options = self._options
        with sigint_blocked():  # the queues may start multiprocessing's resource tracker
            buffer = BatchBuffer(self._spec, options)
            scheduler = BatchScheduler(buffer.queue, options, hooks=self.hooks, paused=True)
        try:
            buffer.start()
            scheduler.start()
        except BaseException:
            self._closed = True
            scheduler.close()
            buffer.close()
            raise
        # Published once started: status() (no lock: a control endpoint's thread may ask
        # while this thread starts the workers) sees an idle replay until then, not a failed one.
        self._buffer, self._scheduler = buffer, scheduler
        self._supervisor = threading.Thread(target=self._supervise, name="mcl-replay: supervisor", daemon=True)
        self._supervisor.start()
        return scheduler

    def _seek(self, from_ns: int | None, *, reset: bool) -> None:
        assert self._scheduler is not None and self._buffer is not None
        self._generation += 1
        # The scheduler learns the new generation before the buffer produces it.
        self._scheduler.request(Seek(self._generation, from_ns, reset))
        self._buffer.seek(self._generation, from_ns)

    def _sync(self, reply: WorkerStatus) -> None:
        """Wait until the hooks saw every record the worker published before replying."""
        if self.hooks and self._scheduler is not None:
            self._scheduler.sync(reply.total, self.options.stuck_timeout_ns / NS_PER_S)
            self._check()

    def _supervise(self) -> None:
        stuck_s = self.options.stuck_timeout_ns / NS_PER_S
        while not self._closed and self._error is None:
            time.sleep(_SUPERVISE_S)
            if self._closed:
                return
            problem = None
            for name, worker in (("buffer", self._buffer), ("broadcast", self._scheduler)):
                if worker is None or worker.process is None:
                    continue
                if self._closed:
                    return
                process = worker.process
                if not process.is_alive():
                    problem = getattr(process, "failure", None) or (
                        f"the {name} worker (pid {process.pid}) died with exit code {process.exitcode}"
                    )
                elif heartbeat_age(worker.heartbeat) > stuck_s:
                    problem = f"the {name} worker (pid {process.pid}) is stuck: no sign of life for {stuck_s:g} s"
                if problem:
                    break
            if problem is None and self._scheduler is not None and self._scheduler.error is not None:
                problem = self._scheduler.error
            if problem is not None and not self._closed:
                self._fail(problem)
                return

    def _fail(self, message: str) -> None:
        self._error = message
        for worker in (self._buffer, self._scheduler):
            if worker is not None and worker.process is not None and worker.process.is_alive():
                worker.process.kill()
        if self._scheduler is not None:
            self._scheduler.fail(message)


class _Bounds:
    """Log time of the first and last record of the window (None if unknown), and the time origin.

    The log is opened once, at construction, for the first record and the
    origin; :meth:`last_ns` reads the summary (for MCL_LOG 1.0 a scan of the
    whole log) only when first asked, then releases the log.
    """

    def __init__(self, spec: SourceSpec, options: ReplayOptions) -> None:
        self._lock = threading.Lock()
        self._log: Any = None
        lo, self._hi = spec.window(options)
        self.first_ns, self._last_ns, self.origin_ns = lo, self._hi, None
        if spec.paths is None:
            return
        from mcl.log.reader import open_log

        log = open_log(*spec.paths, topics=spec.topics)
        narrow_selection(log, options, exclude=True)  # the window of what is played: its first and last record
        try:
            self.origin_ns = log.origin_ns
            first = next(iter(log.iter_records(start_ns=lo, end_ns=self._hi)), None)
        except BaseException:
            log.close()
            raise
        if first is None:  # an empty window: nothing more to learn
            self._last_ns = lo
            log.close()
            return
        self.first_ns = first.elapsed_ns if lo is None else lo
        self._log = log
        weakref.finalize(self, log.close)  # a Replay dropped without close() releases its log too

    def last_ns(self) -> int | None:
        with self._lock:
            log, self._log = self._log, None
            if log is not None:
                try:
                    last = log.last_ns()  # of the selected topics, not the whole log
                    if last is not None:
                        self._last_ns = last if self._hi is None else min(last, self._hi)
                except (MclError, OSError):  # status() never raises: the end stays unknown
                    pass
                finally:
                    log.close()
            return self._last_ns

    def close(self) -> None:
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None
