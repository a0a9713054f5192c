"""The station's side of each unit: its child process, heartbeats, restarts with back-off, schedule.

Everything here runs in the station's supervisor thread (processes are
started from that one thread, so PR_SET_PDEATHSIG follows it), except
:meth:`UnitProcess.request`, which other threads call and which waits for
the reply the supervisor thread reads.
"""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from mcl.replay.worker import WorkerContext, main_hidden
from mcl.station.config import StationConfig, StationError, UnitConfig
from mcl.station.schedule import Session, iter_sessions
from mcl.station.units import UnitArgs, unit_main
from mcl.timeutil import NS_PER_S

__all__ = ["RestartPolicy", "UnitProcess", "STATES"]

STATES = ("running", "waiting", "stopped", "restarting", "failed")
_STOP_GRACE_NS = 15 * NS_PER_S  # a unit asked to stop gets this long before SIGTERM, then as long before SIGKILL
MAX_REQUEST_WAIT_S = 60.0

log = logging.getLogger("mcl.station")


class RestartPolicy:
    """Exponential back-off between restarts, and the `failed` verdict (pure: give it `now_ns`).

    The first restart waits `min_ns`, each next one twice as long up to
    `max_ns`; a unit healthy for `healthy_ns` starts again from `min_ns`.
    More than `max_restarts` restarts within `window_ns` means failed.
    """

    def __init__(
        self,
        max_restarts: int = 10,
        *,
        min_ns: int = NS_PER_S,
        max_ns: int = 60 * NS_PER_S,
        healthy_ns: int = 60 * NS_PER_S,
        window_ns: int = 600 * NS_PER_S,
    ) -> None:
        self.max_restarts = max_restarts
        self.min_ns = min_ns
        self.max_ns = max_ns
        self.healthy_ns = healthy_ns
        self.window_ns = window_ns
        self.consecutive = 0
        self.recent: deque[int] = deque()  # times of the restarts within the window

    def on_exit(self, started_ns: int, now_ns: int) -> int | None:
        """A crash at `now_ns` of a process started at `started_ns`: the delay before the restart, None = failed."""
        if now_ns - started_ns >= self.healthy_ns:
            self.consecutive = 0
        while self.recent and now_ns - self.recent[0] > self.window_ns:
            self.recent.popleft()
        if len(self.recent) >= self.max_restarts:
            return None
        self.recent.append(now_ns)
        delay = min(self.max_ns, self.min_ns << min(self.consecutive, 30))
        self.consecutive += 1
        return delay

    def reset(self) -> None:
        """A start by hand: forget the failures."""
        self.consecutive = 0
        self.recent.clear()


class UnitProcess:
    """One unit as the station sees it (state machine + child process)."""

    _ids = itertools.count(1)

    def __init__(self, config: UnitConfig, station: StationConfig, clock: Callable[[], int], mono: Callable[[], int], logger: logging.Logger | None = None) -> None:
        self.log = logger if logger is not None else log  # the station's logger
        self.config = config
        self.station = station
        self._clock = clock  # UTC ns (schedule)
        self._mono = mono  # monotonic ns (heartbeats, back-off)
        self.policy = RestartPolicy(config.max_restarts)
        self.state = "stopped"
        self.wanted = False  # should run (auto_start, or `start NAME`)
        self.process: Any = None
        self.conn: Any = None
        self.pid: int | None = None
        self.restarts = 0
        self.errors_before = 0  # errors counted by earlier processes of the unit
        self.messages_before = 0  # messages of earlier processes of the unit (recorded, published, replayed)
        self.lost_before = 0  # messages lost by earlier processes of the unit
        self.last_error: str | None = None
        self.child: dict[str, Any] = {}  # the child's last status message
        self.started_mono = 0
        self.last_beat = 0
        self.retry_at = 0  # monotonic ns of the next restart (state restarting)
        self.session: Session | None = None  # the current / next session of a scheduled unit
        self.stop_requested_at: int | None = None  # monotonic ns of the stop request
        self.terminated = False
        self.then: Callable[[], None] | None = None  # run once the process has exited after a stop
        self.removing = False  # removed from the file by a reload: dropped from the station once stopped
        self._send_lock = threading.Lock()
        self._pending: dict[int, tuple[threading.Event, list[Any]]] = {}
        self._exit_waiters: list[Future[None]] = []

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def alive(self) -> bool:
        return self.process is not None

    # -- start / stop (supervisor thread) -----------------------------------------------------
    def want(self) -> None:
        """Run: now, or at the next session of the schedule."""
        self.wanted = True
        self.policy.reset()
        if self.alive:
            return
        if self.config.schedule is None:
            self._spawn(None)
        else:
            self._wait_for_session()
            self.tick()  # a session under way starts now

    def _wait_for_session(self, after_ns: int | None = None) -> None:
        """The next session: the first starting at or after now, or after `after_ns` (the end of the one just done).

        Only times already past at start-up are skipped: a session that began
        while the previous one was still closing is joined for what remains.
        """
        now = self._clock()
        since = now if after_ns is None else min(now, after_ns)
        self.session = next(iter_sessions(self.config.schedule, since), None) if self.config.schedule else None
        self.state = "waiting" if self.session is not None else "stopped"
        if self.session is None:
            self.wanted = False
            self.log.info("%s: no session left in its schedule", self.name)

    def _spawn(self, end_ns: int | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        bus = self.station.bus
        args = UnitArgs(self.config, bus, end_ns, self.station.name)
        worker = WorkerContext(f"mcl-station: {self.name}", os.getpid(), death_signal=True)
        process = ctx.Process(target=unit_main, args=(worker, args, child), name=f"mcl-station: {self.name}", daemon=False)
        try:
            with main_hidden():
                process.start()
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self.process, self.conn, self.pid = process, parent, process.pid
        self.child = {}
        self.state = "running"
        self.started_mono = self.last_beat = self._mono()
        self.stop_requested_at = None
        self.terminated = False
        self.log.info("%s: started (pid %d)%s", self.name, process.pid, "" if end_ns is None else " for its session")

    def stop(self, then: Callable[[], None] | None = None, *, keep_wanted: bool = False) -> Future[None]:
        """Ask the process to stop cleanly (SIGTERM, then SIGKILL, if it does not); the future ends with it."""
        future: Future[None] = Future()
        if not keep_wanted:
            self.wanted = False
        if not self.alive:
            if self.state != "failed" or not keep_wanted:
                self.state = "stopped"
            self.session = None
            if then is not None:
                then()
            future.set_result(None)
            return future
        self.then = then
        self._exit_waiters.append(future)
        if self.stop_requested_at is None:
            self.stop_requested_at = self._mono()
            try:
                self._send(("request", 0, "__stop__", None))
            except (OSError, ValueError):
                pass
        return future

    # -- requests (any thread) -------------------------------------------------------------
    def _send(self, message: Any) -> None:
        conn = self.conn
        if conn is None:
            raise StationError(f"unit {self.name!r} is not running (state {self.state})")
        with self._send_lock:
            conn.send(message)

    def request(self, command: str, data: Any, timeout: float) -> Any:
        """Send a command to the unit and wait for its reply (StationError on refusal or timeout)."""
        if not self.alive or self.stop_requested_at is not None:
            raise StationError(f"unit {self.name!r} is not running (state {self.state})")
        request_id = next(self._ids)
        event = threading.Event()
        slot: list[Any] = []
        self._pending[request_id] = (event, slot)
        try:
            try:
                self._send(("request", request_id, command, data))
            except (OSError, ValueError) as exc:
                raise StationError(f"unit {self.name!r}: cannot send the command: {exc}") from None
            if not event.wait(min(timeout, MAX_REQUEST_WAIT_S)):
                raise StationError(f"unit {self.name!r} did not answer {command!r} within {timeout:g} s")
        finally:
            self._pending.pop(request_id, None)
        if not slot:
            raise StationError(f"unit {self.name!r} stopped before answering {command!r}")
        ok, text = slot
        value = json.loads(text)
        if not ok:
            raise StationError(f"unit {self.name!r}: {value}")
        return value

    # -- supervisor thread -----------------------------------------------------------------
    def read(self) -> None:
        """Take every message waiting on the pipe (statuses = heartbeats, replies)."""
        conn = self.conn
        if conn is None:
            return
        try:
            while conn.poll(0):
                message = conn.recv()
                self._on_message(message)
        except (EOFError, OSError):
            pass
        except Exception as exc:  # noqa: BLE001 - a message that does not unpickle: skipped, the unit goes on
            self.log.warning("%s: unreadable message from the unit: %s", self.name, exc)

    def _on_message(self, message: Any) -> None:
        if not isinstance(message, tuple) or not message:
            return
        if message[0] == "status" and len(message) == 2 and isinstance(message[1], dict):
            self.child = message[1]
            self.last_beat = self._mono()
        elif message[0] == "log" and len(message) == 3 and isinstance(message[1], int):
            self.log.log(message[1], "%s: %s", self.name, message[2])
        elif message[0] == "reply" and len(message) == 4:
            waiting = self._pending.get(message[1])
            if waiting is not None:
                waiting[1][:] = [bool(message[2]), message[3]]
                waiting[0].set()

    def tick(self) -> None:
        """Advance the state machine: exits, heartbeats, stop deadlines, restarts, sessions."""
        now = self._mono()
        if self.alive:
            process = self.process
            if process.exitcode is not None or not process.is_alive():
                self.read()
                process.join(1.0)
                self._exited(process.exitcode)
                return
            if self.stop_requested_at is not None:
                waited = now - self.stop_requested_at
                if waited > 2 * _STOP_GRACE_NS:
                    process.kill()
                elif waited > _STOP_GRACE_NS and not self.terminated:
                    self.terminated = True
                    self.log.warning("%s: did not stop within %d s, sending SIGTERM", self.name, _STOP_GRACE_NS // NS_PER_S)
                    process.terminate()
            elif now - self.last_beat > self.config.stuck_timeout_ns:
                self.last_error = f"no heartbeat for {(now - self.last_beat) / NS_PER_S:.1f} s (stuck_timeout {self.config.stuck_timeout_ns / NS_PER_S:g} s): killed"
                self.log.error("%s: %s", self.name, self.last_error)
                process.kill()
            return
        if self.state == "restarting" and now >= self.retry_at:
            self._resume()
        elif self.state == "waiting" and self.session is not None and self._clock() >= self.session.start_ns:
            if self.session.end_ns is not None and self._clock() >= self.session.end_ns:
                self._wait_for_session()  # the session went by (a clock jump): the next one
            else:
                self._spawn(self.session.end_ns)

    def _resume(self) -> None:
        """After a back-off: start again (a scheduled unit only inside its session)."""
        if self.config.schedule is None:
            self._spawn(None)
            return
        session = self.session
        if session is not None and (session.end_ns is None or self._clock() < session.end_ns):
            self._spawn(session.end_ns)
        else:
            self._wait_for_session()

    def _exited(self, code: int | None) -> None:
        for key, attr in (("errors", "errors_before"), ("messages", "messages_before"), ("lost", "lost_before")):
            value = self.child.get(key)
            if isinstance(value, int):
                setattr(self, attr, getattr(self, attr) + value)
        child_error = self.child.get("last_error")
        if isinstance(child_error, str):
            self.last_error = child_error
        self.process.close()
        self.conn.close()
        self.process = self.conn = None
        self.pid = None
        for event, _ in list(self._pending.values()):
            event.set()  # the waiters see an empty reply
        asked = self.stop_requested_at is not None
        self.stop_requested_at = None
        waiters, self._exit_waiters = self._exit_waiters, []
        then, self.then = self.then, None
        if asked:
            self.state = "stopped"
            self.session = None
            self.log.info("%s: stopped (exit code %s)", self.name, code)
        elif code == 0:
            self.log.info("%s: finished", self.name)
            if self.config.schedule is not None and self.wanted:
                self._wait_for_session(None if self.session is None else self.session.end_ns)
            else:
                self.state = "stopped"
                self.wanted = False
        else:
            reason = f"exited with code {code}" if code is not None and code >= 0 else f"killed by signal {-(code or 0)} ({_signal_name(code)})"
            if not self.last_error or "heartbeat" not in self.last_error:
                self.last_error = f"{reason}" + (f"; {child_error}" if isinstance(child_error, str) else "")
            delay = self.policy.on_exit(self.started_mono, self._mono())
            if not self.child.get("exiting"):
                self.errors_before += 1  # killed: the process could not count it itself
            if delay is None:
                self.state = "failed"
                self.wanted = False
                self.log.error("%s: %s; more than %d restarts in 10 minutes: failed", self.name, reason, self.config.max_restarts)
            else:
                self.restarts += 1
                self.state = "restarting"
                self.retry_at = self._mono() + delay
                self.log.warning("%s: %s; restarting in %g s", self.name, reason, delay / NS_PER_S)
        if then is not None:
            then()
        for future in waiters:
            future.set_result(None)

    def status(self) -> dict[str, Any]:
        """The unit's status (JSON ready)."""
        from mcl.cli.common import format_utc

        child = self.child if self.alive else {}
        next_start: int | None = None
        if self.state == "waiting" and self.session is not None:
            next_start = self.session.start_ns
        elif self.state == "restarting":
            next_start = self._clock() + max(0, self.retry_at - self._mono())
        elif self.state == "running" and self.config.schedule is not None and self.session is not None and self.session.end_ns is not None:
            following = next(iter_sessions(self.config.schedule, self.session.end_ns), None)
            next_start = None if following is None else following.start_ns
        errors = self.errors_before + _count(child, "errors")
        last_error = child.get("last_error") or self.last_error
        extra = {k: v for k, v in child.items() if k not in ("errors", "last_error", "pid", "log", "messages", "lost", "note", "exiting")}
        return {
            "name": self.name,
            "kind": self.config.kind,
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "errors": errors,
            "last_error": last_error,
            "log": child.get("log"),
            "messages": self.messages_before + _count(child, "messages"),
            "lost": self.lost_before + _count(child, "lost"),
            "next_start": None if next_start is None else format_utc(next_start),
            "next_start_ns": next_start,
            "note": child.get("note"),
            "auto_start": self.config.auto_start,
            "details": extra,
        }


def _count(status: dict[str, Any], key: str) -> int:
    value = status.get(key)
    return value if isinstance(value, int) else 0


def _signal_name(code: int | None) -> str:
    try:
        return signal.Signals(-(code or 0)).name
    except ValueError:
        return "?"
