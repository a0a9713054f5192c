"""``mcl.station.Station``: runs the units of a station file, supervised, with live reload and a control endpoint."""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import logging
import logging.handlers
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from multiprocessing.connection import wait as wait_ready
from pathlib import Path
from typing import Any

from mcl.station.config import StationConfig, StationConfigError, StationError, UnitConfig, parse_config
from mcl.timeutil import NS_PER_S

__all__ = ["Station", "CONTROL_SOCKET", "PID_FILE", "LOG_FILE", "make_run_dir"]

CONTROL_SOCKET = "control.sock"  # in run_dir: the ipc:// control endpoint (mode 0600)
PID_FILE = "station.pid"  # in run_dir: the station's pid, locked (flock) while it runs
LOG_FILE = "station.log"  # in run_dir: the station log (rotated)
_TICK_S = 0.1  # the supervisor loop wakes at least this often
_WATCH_NS = NS_PER_S  # the TOML file is checked for changes this often
_STOP_TIMEOUT_S = 40.0  # Station.stop() waits at most this long for the units
_BUS_START_NS = 10 * NS_PER_S  # the other units wait at most this long for the bus units to serve
LOG_FORMAT = "%(asctime)s %(levelname)s: %(message)s"

log = logging.getLogger("mcl.station")
_serial = itertools.count(1)  # names the logger of each station of this process


def make_run_dir(path: Path) -> None:
    """Create the run directory readable by this user only (0700); refuse one owned by another user."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
        if st.st_uid != os.getuid():
            raise StationError(f"{path}: the run directory belongs to another user (uid {st.st_uid})")
        if st.st_mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        raise StationError(f"{path}: cannot create the run directory: {exc.strerror}") from None


class Station:
    """A station: the units of a TOML file (or dict) run as supervised child processes.

    ``Station("station.toml")`` (or a dict shaped like the TOML; relative
    paths then from `base_dir`, default the working directory). ``start()``
    takes the run directory (one station per run directory), starts the
    control endpoint and the units marked ``auto_start``; ``stop()`` stops
    every unit cleanly (recordings closed). A context manager.
    ``status()`` is a JSON-ready dict; ``reload()`` re-reads the file;
    ``send(unit, command, data)`` returns the unit's reply; ``start_unit``,
    ``stop_unit``, ``restart_unit`` act on one unit. With a file and
    `watch`, the file is checked every second and reloaded when its
    content changes; `control` serves ``RUN_DIR/control.sock``;
    `log_to_stderr` copies the station log to stderr.
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | Mapping[str, Any],
        *,
        base_dir: str | os.PathLike[str] | None = None,
        log_to_stderr: bool = False,
        control: bool = True,
        watch: bool = True,
        clock: Callable[[], int] = time.time_ns,
        mono: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._source = config
        self._base_dir = base_dir
        self.config: StationConfig = parse_config(config, base_dir)
        self._log_to_stderr = log_to_stderr  # `mcl-station run`: station lines on stderr as well
        self._control_enabled = control  # serve the control endpoint in the run directory
        self._watch_enabled = watch  # reload when the file's content changes (checked every second)
        self._clock = clock
        self._mono = mono
        self.reload_error: str | None = None
        # One logger per station: two stations in a process do not write into each other's log.
        self.log = log.getChild(f"station{next(_serial)}")
        self._units: dict[str, Any] = {}
        self._after_buses: list[Any] = []  # units held back until the bus units serve
        self._buses_deadline = 0
        self._actions: list[tuple[Callable[[], Any], Future[Any]]] = []
        self._actions_lock = threading.Lock()
        self._wake_r = self._wake_w = -1  # the supervisor's wake-up pipe, made by start() (a Station never started holds no fd)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._started = False
        self._closed = False
        self._pid_fd: int | None = None
        self._handlers: list[logging.Handler] = []
        self._control: Any = None
        self._watch = (0, 0, self.config.digest)  # mtime_ns, size, sha256 of the TOML
        self._next_watch = 0
        self.started_ns = 0

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    def start(self) -> Station:
        """Take the run directory, start the control endpoint and the units; returns at once."""
        if self._started:
            raise RuntimeError("Cannot start a station twice; create a new Station.")
        self._started = True
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        run_dir = self.config.run_dir
        make_run_dir(run_dir)
        self._lock_pid_file(run_dir / PID_FILE)
        try:
            self._open_log(run_dir / LOG_FILE)
            if self.config.path is not None:
                self._watch = _file_signature(self.config.path) or self._watch
            if self._control_enabled:
                from mcl.station.control import ControlServer

                self._control = ControlServer(self, run_dir / CONTROL_SOCKET)
            self.started_ns = self._clock()
            self.log.info("station %r: starting %d unit(s) from %s", self.config.name, len(self.config.units), self.config.path or "a dict")
            self._thread = threading.Thread(target=self._supervise, name="mcl-station: supervisor", daemon=True)
            self._thread.start()
            self._call(self._start_units).result(30.0)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = _STOP_TIMEOUT_S) -> None:
        """Stop every unit cleanly (SIGTERM / SIGKILL for those that do not), then the station; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._thread is not None and self._thread.is_alive():
                try:
                    futures = self._call(lambda: [u.stop() for u in self._units.values()]).result(10.0)
                    deadline = time.monotonic() + timeout
                    for f in futures:
                        f.result(max(0.1, deadline - time.monotonic()))
                except Exception as exc:  # noqa: BLE001 - stop the rest anyway
                    self.log.error("stopping the units: %s", exc)
                self._stopping.set()
                self._wake()
                self._thread.join(timeout)
            if self._control is not None:
                self._control.close()
                self._control = None
            self.log.info("station %r stopped", self.config.name)
        finally:
            self._stopped.set()
            for handler in self._handlers:
                self.log.removeHandler(handler)
                handler.close()
            self._handlers.clear()
            if self._pid_fd is not None:
                try:
                    (self.config.run_dir / PID_FILE).unlink()
                except OSError:
                    pass
                os.close(self._pid_fd)
                self._pid_fd = None
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1

    close = stop

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the station has stopped; True if it has."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> Station:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- resources -------------------------------------------------------------------------
    def _lock_pid_file(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StationError(f"{path.parent}: a station already runs there (pid {other})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._pid_fd = fd

    def _open_log(self, path: Path) -> None:
        self.log.setLevel(logging.INFO)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=self.config.log_max_bytes, backupCount=self.config.log_backups, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        self._handlers.append(handler)
        if self._log_to_stderr:
            from mcl.cli.common import LineFormatter

            err = logging.StreamHandler(sys.stderr)
            err.setFormatter(LineFormatter("mcl-station"))
            self._handlers.append(err)
        for h in self._handlers:
            self.log.addHandler(h)
        self.log.propagate = not self._log_to_stderr

    @property
    def log_file(self) -> Path:
        return self.config.run_dir / LOG_FILE

    # -- the supervisor thread ---------------------------------------------------------------
    def _call(self, action: Callable[[], Any]) -> Future[Any]:
        """Run `action` in the supervisor thread (where processes are started); its result as a future."""
        future: Future[Any] = Future()
        if self._thread is None or not self._thread.is_alive():
            future.set_exception(StationError("the station is not running"))
            return future
        with self._actions_lock:
            self._actions.append((action, future))
        self._wake()
        return future

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def _supervise(self) -> None:
        # SIGINT stays with the main thread; the children inherit the mask and unblock it themselves.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        while not self._stopping.is_set():
            units = list(self._units.values())
            handles: list[Any] = [self._wake_r]
            for u in units:
                if u.alive:
                    handles.extend((u.conn, u.process.sentinel))
            try:
                ready = wait_ready(handles, _TICK_S)
            except OSError:
                ready = []
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 4096)
                except OSError:
                    pass
            for u in units:
                u.read()
            with self._actions_lock:
                actions, self._actions = self._actions, []
            for action, future in actions:
                try:
                    future.set_result(action())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    future.set_exception(exc)
            self._start_after_buses()
            for u in list(self._units.values()):
                try:
                    u.tick()
                except Exception as exc:  # noqa: BLE001 - one unit's trouble must not stop the others
                    u.last_error = f"cannot start: {exc}"
                    u.state = "restarting"
                    delay = u.policy.on_exit(u.started_mono, self._mono())
                    if delay is None:
                        u.state = "failed"
                    else:
                        u.retry_at = self._mono() + delay
                    self.log.error("%s: %s", u.name, u.last_error)
            self._watch_file()
        for u in self._units.values():  # left over after a failed stop: no orphans
            if u.alive:
                u.process.kill()
                u.process.join(5.0)

    def _new_unit(self, config: UnitConfig, station: StationConfig) -> Any:
        from mcl.station.supervisor import UnitProcess

        return UnitProcess(config, station, self._clock, self._mono, self.log)

    def _start_units(self) -> None:
        for config in self.config.units:
            unit = self._new_unit(config, self.config)
            self._units[config.name] = unit
        wanted = [u for u in self._ordered(self._units.values()) if u.config.auto_start]
        for unit in wanted:
            if unit.config.kind == "bus":
                unit.want()
        # The others start once the buses serve (their first status): a client of a loopback
        # bus would otherwise host that bus itself and the bus unit could not bind its ports.
        self._after_buses = [u for u in wanted if u.config.kind != "bus"]
        self._buses_deadline = self._mono() + _BUS_START_NS
        self._start_after_buses()

    def _start_after_buses(self) -> None:
        """Start the units held back until the station's buses serve (or _BUS_START_NS went by)."""
        if not self._after_buses:
            return
        buses = [u for u in self._units.values() if u.config.kind == "bus" and u.wanted]
        if all(u.alive and u.child for u in buses) or self._mono() >= self._buses_deadline:
            units, self._after_buses = self._after_buses, []
            for unit in units:
                if unit.config.name in self._units and self._units[unit.config.name] is unit:
                    unit.want()

    @staticmethod
    def _ordered(units: Any) -> list[Any]:
        """Buses first: the others connect to them."""
        return sorted(units, key=lambda u: u.config.kind != "bus")

    # -- live reload -------------------------------------------------------------------------
    def _watch_file(self) -> None:
        path = self.config.path
        now = self._mono()
        if path is None or not self._watch_enabled or now < self._next_watch:
            return
        self._next_watch = now + _WATCH_NS
        signature = _file_signature(path, self._watch)
        if signature is None or signature == self._watch:
            return
        self._watch = signature
        if signature[2] != self.config.digest:
            self.log.info("%s changed: reloading", path)
            try:
                self._reload()
            except StationConfigError:
                pass  # reported by _reload

    def reload(self) -> dict[str, list[str]]:
        """Re-read the file: start added units, stop removed ones, restart changed ones.

        Returns ``{"added": [...], "removed": [...], "changed": [...]}``. An
        invalid file raises StationConfigError and changes nothing (the
        reason is kept in ``status()["reload_error"]`` and the station log).
        """
        result: dict[str, list[str]] = self._call(self._reload).result(30.0)
        return result

    def _reload(self) -> dict[str, list[str]]:
        if self.config.path is None:
            new = parse_config(self._source, self._base_dir)
        else:
            try:
                new = parse_config(self.config.path)
            except StationConfigError as exc:
                self.reload_error = str(exc)
                self.log.error("reload refused, the units keep running as before: %s", exc)
                raise
        if new.run_dir != self.config.run_dir:
            self.reload_error = f"{new.path}: key 'run_dir': cannot change while the station runs (restart it)"
            self.log.error("reload refused: %s", self.reload_error)
            raise StationConfigError("cannot change while the station runs (restart it)", path=new.path, key="run_dir")
        old = self.config
        self.config = new
        self.reload_error = None
        if new.path is not None:
            self._watch = _file_signature(new.path) or self._watch
        added, removed, changed = [], [], []
        new_names = {u.name for u in new.units}
        for name, unit in list(self._units.items()):
            if name not in new_names and not unit.removing:
                removed.append(name)
                unit.removing = True
                unit.stop(then=lambda n=name: self._units.pop(n, None))
        for config in new.units:
            unit = self._units.get(config.name)
            if unit is None:
                added.append(config.name)
                unit = self._units[config.name] = self._new_unit(config, new)
                if config.auto_start:
                    unit.want()
            elif unit.removing:
                # Removed by an earlier reload and still stopping: back in the file, so it starts again once
                # stopped (instead of being dropped then, its config "unchanged").
                added.append(config.name)
                unit.removing = False
                unit.stop(then=_reconfigure(unit, config, new, False))
            elif unit.config != config or _station_part(old) != _station_part(new):
                changed.append(config.name)
                unit.stop(then=_reconfigure(unit, config, new, unit.wanted or unit.alive))
            else:
                unit.station = new
        self.log.info("reloaded %s: added %s, removed %s, changed %s", new.path or "the config", added or "-", removed or "-", changed or "-")
        return {"added": added, "removed": removed, "changed": changed}

    # -- units -------------------------------------------------------------------------------
    def _unit(self, name: str) -> Any:
        unit = self._units.get(name)
        if unit is None:
            known = ", ".join(sorted(self._units)) or "none"
            raise StationError(f"no unit {name!r} in station {self.config.name!r} (units: {known})")
        return unit

    def start_unit(self, name: str) -> dict[str, Any]:
        """Start a unit (a scheduled one: resume its schedule); returns its status."""

        def action() -> dict[str, Any]:
            unit = self._unit(name)
            unit.want()
            status: dict[str, Any] = unit.status()
            return status

        result: dict[str, Any] = self._call(action).result(30.0)
        return result

    def stop_unit(self, name: str, timeout: float = _STOP_TIMEOUT_S) -> dict[str, Any]:
        """Stop a unit cleanly and cancel its coming sessions; returns its status once stopped."""
        future: Future[None] = self._call(lambda: self._unit(name).stop()).result(10.0)
        future.result(timeout)
        return self.unit_status(name)

    def restart_unit(self, name: str, timeout: float = _STOP_TIMEOUT_S) -> dict[str, Any]:
        """Stop then start a unit; returns its status."""

        def action() -> Future[None]:
            unit = self._unit(name)
            return unit.stop(then=unit.want)

        self._call(action).result(10.0).result(timeout)
        return self.unit_status(name)

    def send(self, name: str, command: str, data: Any = None, timeout: float = 10.0) -> Any:
        """Deliver `command` (with `data`) to unit `name`; returns its reply (StationError if refused)."""
        if not isinstance(command, str) or not command:
            raise StationError("a command is a non-empty string")
        if command.startswith("__"):
            raise StationError(f"{command!r} is reserved")
        unit = self._call(lambda: self._unit(name)).result(10.0)
        return unit.request(command, data, timeout)

    def unit_status(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self._call(lambda: self._unit(name).status()).result(10.0)
        return status

    def status(self) -> dict[str, Any]:
        """The station and every unit (JSON ready)."""
        from mcl.cli.common import format_utc

        def action() -> list[dict[str, Any]]:
            return [u.status() for u in self._units.values()]

        units = self._call(action).result(10.0) if self._thread is not None and self._thread.is_alive() else []
        return {
            "name": self.config.name,
            "config": None if self.config.path is None else str(self.config.path),
            "run_dir": str(self.config.run_dir),
            "pid": os.getpid(),
            "started": format_utc(self.started_ns) if self.started_ns else None,
            "bus": self.config.bus,
            "reload_error": self.reload_error,
            "units": units,
        }


def _reconfigure(unit: Any, config: UnitConfig, station: StationConfig, was_wanted: bool) -> Callable[[], None]:
    """What a reload runs once `unit` has stopped: the new config, started again if auto_start or it ran."""

    def then() -> None:
        unit.config, unit.station = config, station
        unit.policy.max_restarts = config.max_restarts
        if config.auto_start or was_wanted:
            unit.want()

    return then


def _station_part(config: StationConfig) -> tuple[Any, ...]:
    """What of [station] the units see: a change restarts them all."""
    return (config.bus, config.name)


def _file_signature(path: Path, previous: tuple[int, int, str] | None = None) -> tuple[int, int, str] | None:
    """(mtime_ns, size, sha256) of the file; the hash is computed only when mtime or size moved."""
    try:
        st = path.stat()
    except OSError:
        return None
    if previous is not None and previous[0] == st.st_mtime_ns and previous[1] == st.st_size:
        return previous
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, digest)
