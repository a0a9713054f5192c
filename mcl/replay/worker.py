"""Plumbing shared by the replay worker processes: naming, parent watch, signals, timer slack."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.sharedctypes import Synchronized
from typing import Any

__all__ = [
    "WorkerContext",
    "WorkerProcess",
    "setup_worker",
    "start_resource_tracker",
    "parent_alive",
    "beat",
    "heartbeat_age",
    "main_hidden",
    "sigint_blocked",
]

_PR_SET_PDEATHSIG = 1
_PR_SET_TIMERSLACK = 29


class WorkerContext:
    """What a worker needs to know about its parent (picklable, passed at spawn)."""

    def __init__(self, title: str, parent_pid: int, death_signal: bool) -> None:
        self.title = title  # process title shown by ps / top
        self.parent_pid = parent_pid  # the Replay process; the worker exits when it is gone
        self.death_signal = death_signal  # ask the kernel for SIGTERM when the parent thread dies


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def setup_worker(ctx: WorkerContext) -> None:
    """Name the process, tie its life to the parent, leave Ctrl-C to the parent.

    The terminal sends SIGINT (Ctrl-C) and SIGHUP (closed) to the whole
    foreground process group; the parent owns the shutdown, so workers
    ignore both. SIGTERM (also what
    PR_SET_PDEATHSIG delivers) exits at once. PR_SET_PDEATHSIG fires when the
    *thread* that started the worker exits, so it is only used when that
    thread is the main thread; every worker also polls its parent's pid.
    """
    try:
        import setproctitle

        setproctitle.setproctitle(ctx.title)
    except ImportError:  # pragma: no cover - a declared dependency
        pass
    from mcl.cli.common import print_damage_warnings

    print_damage_warnings(ctx.title.partition(":")[0])  # damage met by the buffer: 'mcl-replay: warning: ...'
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by sigint_blocked()
    if ctx.death_signal:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if not parent_alive(ctx):  # the parent died before prctl took effect
        os._exit(1)


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker now, immune to SIGHUP; from the main thread.

    The tracker (a process of its own) unlinks the workers' semaphores in
    /dev/shm when their owner dies. It ignores SIGINT and SIGTERM but not
    SIGHUP, which a closed terminal sends to the whole process group: it
    would die first and leave them behind. An ignored signal stays ignored
    through ``exec``, so it is started while SIGHUP is ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    from multiprocessing import resource_tracker

    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        resource_tracker.ensure_running()
    finally:
        signal.signal(signal.SIGHUP, old)


def set_fine_timer_slack() -> None:
    """Let sleeps wake within microseconds (Linux groups wake-ups 50 µs apart by default)."""
    _prctl(_PR_SET_TIMERSLACK, 1)


def _exit_on_signal(signum: int, frame: Any) -> None:
    os._exit(128 + signum)


def parent_alive(ctx: WorkerContext) -> bool:
    """False once the parent is gone (the worker was re-parented)."""
    return os.getppid() == ctx.parent_pid


def beat(heartbeat: Synchronized[float] | Any) -> None:
    """Record that the worker is alive and making progress (monotonic seconds)."""
    heartbeat.value = time.monotonic()


def heartbeat_age(heartbeat: Synchronized[float] | Any) -> float:
    """Seconds since the worker last beat (CLOCK_MONOTONIC is system-wide on Linux)."""
    return time.monotonic() - heartbeat.value


@contextlib.contextmanager
def main_hidden(hide: bool = True) -> Iterator[None]:
    """Start spawned workers without re-running the user's ``__main__`` script.

    A 'spawn' child imports the parent's main module (to unpickle objects
    defined there), which re-runs a script that lacks the
    ``if __name__ == "__main__"`` guard. The replay workers need nothing from
    it unless the source is a reader object of the user's, so the main module
    is hidden from multiprocessing while the process starts.
    """
    main = sys.modules.get("__main__")
    if not hide or main is None:
        yield
        return
    saved: dict[str, Any] = {name: main.__dict__[name] for name in ("__file__", "__spec__") if name in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Start child processes with SIGINT blocked (the mask is inherited through fork and exec).

    A Ctrl-C while a worker bootstraps would otherwise print a traceback from
    it; the worker ignores SIGINT and unblocks it in :func:`setup_worker`.
    The parent gets its own SIGINT as soon as the block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives SIGINT
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def end_process(process: Any, timeout: float, ask: Callable[[], None]) -> None:
    """End a worker: `ask` it to stop, then SIGTERM, then SIGKILL, waiting `timeout` each time."""
    try:
        ask()
    except (OSError, ValueError):  # the pipe is already closed: the worker is gone
        pass
    process.join(timeout)
    if process.is_alive():
        process.terminate()
        process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join(timeout)


_SPAWN = multiprocessing.get_context("spawn")  # no zmq context, lock or thread crosses a fork


class WorkerProcess:
    """What the replay's worker processes share: start (spawned, named, SIGINT blocked), pid, liveness, close.

    A subclass gives its ``title`` and calls :meth:`_spawn` with its
    target; :meth:`_end` asks it to stop, then SIGTERM, then SIGKILL.
    ``heartbeat`` is the shared monotonic second at which it last beat.
    """

    title = "mcl-replay: worker"

    def __init__(self) -> None:
        start_resource_tracker()  # before this worker's first semaphore: also for mcl.Replay used from a script
        self.heartbeat = _SPAWN.Value("d", 0.0, lock=False)
        self._process: Any = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def process(self) -> Any:
        """The worker (a multiprocessing.Process, or a thread standing for one), None before start()."""
        return self._process

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def _check_startable(self) -> None:
        if self._closed:
            raise RuntimeError(f"Cannot start a {type(self).__name__} once it has been closed.")
        if self._process is not None:
            raise RuntimeError(f"This {type(self).__name__} is already started.")
        beat(self.heartbeat)

    def _spawn(self, target: Callable[..., None], args: tuple[Any, ...]) -> None:
        """Start `target(WorkerContext, *args)` in a spawned process named ``title``."""
        self._check_startable()
        ctx = WorkerContext(self.title, os.getpid(), threading.current_thread() is threading.main_thread())
        self._process = _SPAWN.Process(target=target, args=(ctx, *args), name=self.title, daemon=True)
        with sigint_blocked(), main_hidden():
            self._process.start()

    def _end(self, timeout: float, ask: Callable[[], None]) -> None:
        """End the worker if it runs: `ask` it, then SIGTERM, then SIGKILL (see end_process)."""
        process = self._process
        if process is not None and process.pid is not None and process.is_alive():
            end_process(process, timeout, ask)

    def close(self, timeout: float = 2.0) -> None:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
