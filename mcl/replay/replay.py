"""Replay: the object users drive (start, pause, seek, speed, step, wait, status)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from typing import Any

from mcl.exceptions import ReplayError
from mcl.replay.buffer import BufferData, SourceSpec, make_source_spec
from mcl.replay.clock import check_speed
from mcl.replay.options import NS_PER_S, ReplayOptions, ReplayStatus, parse_remap
from mcl.replay.scheduler import Hook, ScheduleBroadcasts
from mcl.replay.worker import heartbeat_age, sigint_blocked

__all__ = ["Replay"]

_SUPERVISE_S = 0.1  # how often the workers are checked


class Replay:
    """Replays logs at their recorded timing onto the bus or into Python hooks.

    Args:
        source: a log path, a list of paths (merged by time), a
            :class:`mcl.LogReader`, or any picklable object with the original
            reader protocol (``read()``, ``is_data_pending()``, ``reset()``).
        speed: log seconds per wall second; ``math.inf`` plays as fast as
            possible (still in order, nothing dropped).
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
    """

    def __init__(
        self,
        source: Any,
        speed: float = 1.0,
        *,
        hooks: Iterable[Hook] | None = None,
        bus: str | None = None,
        publish: bool | None = None,
        loop: bool = False,
        start: float | None = None,
        end: float | None = None,
        topics: Iterable[str] | str | None = None,
        exclude: str | None = None,
        remap: dict[str, str] | Iterable[str] | None = None,
        delay: float = 0.0,
        read_ahead: int = 5000,
        wait_for_subscribers: int = 0,
        stuck_timeout: float = 10.0,
        hwm: int | None = None,
    ) -> None:
        self.hooks = list(hooks or ())
        for hook in self.hooks:
            if not callable(hook):
                raise TypeError(f"a hook must be callable, not {type(hook).__name__}")
        if publish is None:
            publish = not self.hooks or bus is not None
        if isinstance(topics, str):
            topics = [topics]
        self.options = ReplayOptions(
            speed=speed,
            start_ns=_to_ns(start, "start"),
            end_ns=_to_ns(end, "end"),
            topics=None if topics is None else tuple(topics),
            exclude=exclude,
            remap=_remap_pairs(remap),
            loop=loop,
            delay_ns=_to_ns(delay, "delay") or 0,
            read_ahead=read_ahead,
            bus=bus,
            publish=publish,
            wait_for_subscribers=wait_for_subscribers,
            hwm=hwm,
            stuck_timeout_ns=_to_ns(stuck_timeout, "stuck_timeout") or NS_PER_S,
        )
        self._spec = make_source_spec(source)
        self._first_ns, self._last_ns = _bounds(self._spec, self.options)
        self._speed = float(speed)
        self._lock = threading.RLock()
        self._generation = 0
        self._buffer: BufferData | None = None
        self._scheduler: ScheduleBroadcasts | None = None
        self._supervisor: threading.Thread | None = None
        self._error: str | None = None
        self._closed = False

    # -- properties ---------------------------------------------------------------------

    @property
    def speed(self) -> float:
        """Log seconds per wall second; settable while playing (math.inf: as fast as possible)."""
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        check_speed(value)
        with self._lock:
            self._check()
            if self._scheduler is not None:
                self._scheduler.request("speed", float(value))
            self._speed = float(value)

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

    def start(self) -> None:
        """Play: from the beginning the first time and after the end, else resume where paused."""
        with self._lock:
            scheduler = self._launch()
            reply = scheduler.request("resume")
            if reply["state"] == "finished":
                self._seek(None, reset=True)
                scheduler.request("resume")

    def pause(self) -> None:
        """Stop the clock; start() resumes with the recorded spacing kept."""
        with self._lock:
            scheduler = self._launch()
            reply = scheduler.request("pause")
            self._sync(reply)

    def stop(self) -> None:
        """Pause and go back to the beginning (counts reset); start() plays from the start."""
        with self._lock:
            self._check()
            if self._scheduler is None:
                return
            reply = self._scheduler.request("pause")
            self._sync(reply)
            self._seek(None, reset=True)

    def seek(self, position: float) -> None:
        """Go to log time `position` (seconds from the time origin).

        The next record played is the first at or after `position`. A
        playing replay keeps playing from there; otherwise it stays paused
        there until start().
        """
        position_ns = _to_ns(position, "position")
        assert position_ns is not None
        with self._lock:
            scheduler = self._launch()
            reply = scheduler.request("status")
            if reply["state"] == "finished":
                scheduler.request("pause")
            self._seek(position_ns, reset=False)

    def step(self) -> bool:
        """Pause, then publish the next record at once; False if the pass is at its end."""
        with self._lock:
            scheduler = self._launch()
            reply = scheduler.request("step")
            self._sync(reply)
            return bool(reply["stepped"])

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the current pass ends (its records reached the hooks); False on timeout.

        Raises ReplayError if the replay failed; RuntimeError if it was never started.
        """
        scheduler = self._scheduler
        if scheduler is None:
            raise RuntimeError("Cannot wait for a replay that was never started.")
        done = scheduler.wait_finished(self._generation, timeout)
        self._check()
        return done and not self._closed

    def status(self) -> ReplayStatus:
        """Where the replay is: state, position, window, counts, speed, lateness (never raises)."""
        base = {"start_ns": self._first_ns, "end_ns": self._last_ns, "speed": self._speed}
        if self._error is not None:
            return ReplayStatus(state="failed", error=self._error, **base)  # type: ignore[arg-type]
        if self._closed:
            return ReplayStatus(state="closed", **base)  # type: ignore[arg-type]
        scheduler = self._scheduler
        if scheduler is None:
            return ReplayStatus(state="idle", position_ns=self._first_ns, **base)  # type: ignore[arg-type]
        try:
            reply = scheduler.request("status")
        except (ReplayError, RuntimeError) as exc:
            return ReplayStatus(state="failed", error=self._error or str(exc), **base)  # type: ignore[arg-type]
        position = reply["position_ns"]
        if position is None:
            position = self._first_ns
        if self._last_ns is not None and position is not None:
            position = min(position, self._last_ns)
        return ReplayStatus(
            state=reply["state"],
            position_ns=position,
            sent=reply["sent"],
            total=reply["total"],
            passes=reply["passes"],
            lateness=reply["lateness"],
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

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Replay {self.status().state} speed={self._speed:g}>"

    # -- internals ------------------------------------------------------------------------

    def _check(self) -> None:
        if self._error is None and self._scheduler is not None and self._scheduler.error is not None:
            self._fail(self._scheduler.error)
        if self._error is not None:
            raise ReplayError(self._error)
        if self._closed:
            raise RuntimeError("Cannot use a replay once it has been closed.")

    def _launch(self) -> ScheduleBroadcasts:
        """Start the workers (paused) unless running; return the scheduler."""
        self._check()
        if self._scheduler is not None:
            return self._scheduler
        options = self.options
        if options.speed != self._speed:
            from dataclasses import replace

            options = replace(options, speed=self._speed)
        with sigint_blocked():  # the queues may start multiprocessing's resource tracker
            buffer = BufferData(self._spec, options.read_ahead, options=options)
            scheduler = ScheduleBroadcasts(buffer.queue, self._speed, hooks=self.hooks, options=options, paused=True)
        self._buffer, self._scheduler = buffer, scheduler
        try:
            buffer.start()
            scheduler.start()
        except BaseException:
            self._closed = True
            scheduler.close()
            buffer.close()
            raise
        self._supervisor = threading.Thread(target=self._supervise, name="mcl-replay: supervisor", daemon=True)
        self._supervisor.start()
        return scheduler

    def _seek(self, from_ns: int | None, *, reset: bool) -> None:
        assert self._scheduler is not None and self._buffer is not None
        self._generation += 1
        # The scheduler learns the new generation before the buffer produces it.
        self._scheduler.request("seek", self._generation, from_ns, reset)
        self._buffer.seek(self._generation, from_ns)

    def _sync(self, reply: dict[str, Any]) -> None:
        """Wait until the hooks saw every record the worker published before replying."""
        if self.hooks and self._scheduler is not None:
            self._scheduler.sync(reply["total"], self.options.stuck_timeout_ns / NS_PER_S)
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
                    problem = f"the {name} worker (pid {process.pid}) died with exit code {process.exitcode}"
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


_MAX_LOG_TIME_S = (2**63 - 1) / NS_PER_S  # log times are int64 ns


def _to_ns(seconds: float | None, what: str) -> int | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= _MAX_LOG_TIME_S:
        raise ValueError(f"{what} must be a number of seconds from 0 to {_MAX_LOG_TIME_S:g} (the format's range), not {seconds!r}")
    return round(seconds * NS_PER_S)


def _remap_pairs(remap: dict[str, str] | Iterable[str] | None) -> tuple[tuple[str, str], ...]:
    if remap is None:
        return ()
    if isinstance(remap, dict):
        return tuple(remap.items())
    return tuple(parse_remap(item) for item in remap)


def _bounds(spec: SourceSpec, options: ReplayOptions) -> tuple[int | None, int | None]:
    """Log time of the first and last record of the window (None if unknown / empty)."""
    if spec.paths is None:
        return options.start_ns, options.end_ns
    from mcl.log.reader import open_log

    with open_log(*spec.paths, topics=spec.topics) as reader:
        lo = _pick(spec.start_ns, options.start_ns, max)
        hi = _pick(spec.end_ns, options.end_ns, min)
        first = next(iter(reader.iter_records(start_ns=lo, end_ns=hi)), None)
        if first is None:
            return lo, lo
        last = reader.duration_ns
        if hi is not None:
            last = min(last, hi)
        return first.elapsed_ns if lo is None else lo, last


def _pick(a: int | None, b: int | None, how: Any) -> int | None:
    return b if a is None else a if b is None else int(how(a, b))
