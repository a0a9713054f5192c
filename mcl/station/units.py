"""What runs inside a unit's child process (``mcl-station: NAME``): one host per kind and the loop around it.

The loop, in the child's main thread: let the host work (:meth:`Host.step`),
send the station a status message every 0.5 s (the heartbeat), answer the
station's requests between two steps, stop cleanly on a ``stop`` request,
on SIGTERM (also what the kernel sends when the station dies:
PR_SET_PDEATHSIG) or when the station's pid is gone, and end by itself at
the end of its session. Messages on the pipe::

    station -> unit   ("request", id, command, data)
    unit -> station   ("status", {...})   ("reply", id, ok, json text)   ("log", level, text)

Exit status: 0 after a clean stop or the end of its work (session over,
replay finished), 1 when the host failed (the station restarts it).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcl.replay.worker import WorkerContext, parent_alive, setup_worker
from mcl.station.config import (
    BusOptions,
    OffloadOptions,
    RecorderOptions,
    ReplayUnitOptions,
    RunnerOptions,
    UnitConfig,
)
from mcl.timeutil import NS_PER_S

if TYPE_CHECKING:
    from mcl.station.runner import Runner

__all__ = ["UnitArgs", "unit_main", "check_runner_class", "load_runner_class"]

_STATUS_EVERY_NS = 500_000_000  # the heartbeat
_MAX_STEP_S = 0.1  # the loop answers requests at least this often (unless a runner's iterate() is long)
_DISK_CHECK_NS = NS_PER_S
_PARENT_CHECK_S = 0.5  # how often a unit looks whether the station is still there
ORPHAN_GRACE_S = 10.0  # a unit whose station died gets this long to close cleanly, then ends anyway


class UnitArgs:
    """What the station gives a unit's process (picklable)."""

    def __init__(self, unit: UnitConfig, bus: str | None, end_ns: int | None, station: str) -> None:
        self.unit = unit  # the unit's configuration
        self.bus = bus  # the station's bus (None: the default bus)
        self.end_ns = end_ns  # UTC ns at which the session ends (None: runs until stopped)
        self.station = station  # the station's name


class _Stopping(Exception):
    pass


class Host:
    """The work of one kind of unit; the loop calls start, step (often), handle (requests), close."""

    def __init__(self, args: UnitArgs, log: logging.Logger) -> None:
        self.args = args
        self.unit = args.unit
        self.log = log
        self.errors = 0
        self.last_error: str | None = None
        self.done = False  # True: the work is over, the process exits 0

    def start(self) -> None:
        pass

    def step(self) -> float:
        """Do some work; return the seconds until it wants to be called again."""
        return _MAX_STEP_S

    def handle(self, command: str, data: Any) -> Any:
        if command == "status":
            return self.status()
        raise KeyError(f"unknown command {command!r} for a {self.unit.kind} unit (known: {', '.join(self.commands())})")

    def commands(self) -> list[str]:
        return ["status"]

    def status(self) -> dict[str, Any]:
        return {"errors": self.errors, "last_error": self.last_error}

    def close(self) -> None:
        pass

    def error(self, text: str) -> None:
        self.errors += 1
        self.last_error = text


# -- runner ---------------------------------------------------------------------------


class RunnerHost(Host):
    def start(self) -> None:
        from mcl.network import Publisher

        opts = self.unit.options
        assert isinstance(opts, RunnerOptions)
        self.opts = opts
        for p in reversed(opts.python_path):
            sys.path.insert(0, str(p))
        cls = load_runner_class(opts.cls)
        self._config_sig = b""
        config = self._read_config()
        self.publisher = Publisher(opts.bus or self.args.bus)
        self.published = 0
        self.runner = cls(self.unit.name, config)
        self.runner.log = self.log
        self.runner._publish = self._publish
        self.iterations = 0
        self.failed_in_row = 0
        self.next_ns = time.monotonic_ns()
        self.next_config_check = time.monotonic_ns() + NS_PER_S
        self.runner.setup()
        self._setup_done = True

    def _publish(self, topic: str, message: Any) -> None:
        self.publisher.publish(topic, message)
        self.published += 1

    def _read_config(self) -> dict[str, Any]:
        config = dict(self.opts.config)
        path = self.opts.config_file
        if path is not None:
            data = _read_bounded(path)
            self._config_sig = hashlib.sha256(data).digest()
            config.update(tomllib.loads(data.decode("utf-8")))
        return config

    def _check_config_file(self) -> None:
        path = self.opts.config_file
        if path is None:
            return
        data = b""
        try:
            data = _read_bounded(path)
            if hashlib.sha256(data).digest() == self._config_sig:
                return
            config = self._read_config()
        except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
            self._config_sig = hashlib.sha256(data).digest()  # reported once per bad version
            self.error(f"{path}: cannot re-read the config file: {exc}")
            self.log.warning("%s", self.last_error)
            return
        self.log.info("%s changed: reconfiguring", path)
        self.runner.reconfigure(config)

    def step(self) -> float:
        now = time.monotonic_ns()
        if now >= self.next_config_check:
            self.next_config_check = now + NS_PER_S
            self._check_config_file()
        if now < self.next_ns:
            return min(_MAX_STEP_S, (self.next_ns - now) / NS_PER_S)
        period = self.opts.period_ns
        try:
            self.runner.iterate()
            self.iterations += 1
            self.failed_in_row = 0
            self.next_ns = max(self.next_ns + period, time.monotonic_ns())
        except Exception as exc:  # noqa: BLE001 - counted, logged, and iteration goes on
            self.failed_in_row += 1
            backoff = min(60 * NS_PER_S, max(period, 100_000_000) << min(self.failed_in_row, 10))
            self.error(f"iterate() raised {type(exc).__name__}: {exc}")
            self.log.warning("%s (next try in %.3g s)", self.last_error, backoff / NS_PER_S, exc_info=self.errors == 1)  # one traceback per process
            self.next_ns = time.monotonic_ns() + backoff
        return 0.0

    def handle(self, command: str, data: Any) -> Any:
        if command == "status":
            return self.status()
        return self.runner.handle(command, data)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "messages": self.published, "iterations": self.iterations}

    def close(self) -> None:
        runner = getattr(self, "runner", None)
        try:
            if runner is not None and getattr(self, "_setup_done", False):
                runner.teardown()
        finally:
            publisher = getattr(self, "publisher", None)
            if publisher is not None:
                publisher.close()


def load_runner_class(ref: str) -> type[Runner]:
    """The class named by 'package.module:ClassName' (RuntimeError when it cannot be imported or is no Runner)."""
    from mcl.station.runner import Runner

    module_name, _, attr = ref.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # noqa: BLE001 - user code: a SyntaxError or an error at import time is reported the same way
        raise RuntimeError(f"cannot import runner class {ref!r}: {type(exc).__name__}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Runner)):
        raise RuntimeError(f"{ref!r} is not a subclass of mcl.station.Runner")
    return cls


def check_runner_class(options: RunnerOptions) -> str | None:
    """Why `options.cls` cannot run (imported here with the unit's python_path), or None when it can."""
    saved = list(sys.path)
    sys.path[:0] = [str(p) for p in options.python_path]
    try:
        load_runner_class(options.cls)
    except RuntimeError as exc:
        return str(exc)
    finally:
        sys.path[:] = saved
    return None


def _read_bounded(path: Path) -> bytes:
    """A runner's config file, refused (ValueError) beyond the size limit of station files."""
    from mcl.station.config import MAX_CONFIG_BYTES

    with open(path, "rb") as fp:
        data = fp.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ValueError(f"{path}: larger than the limit of {MAX_CONFIG_BYTES} bytes")
    return data


# -- recorder -------------------------------------------------------------------------


class RecorderHost(Host):
    def start(self) -> None:
        opts = self.unit.options
        assert isinstance(opts, RecorderOptions)
        self.opts = opts
        self.recorder: Any = None
        self.paused: str | None = None
        self.logs = 0
        self.messages_before = 0  # of the logs closed by this process
        self.lost_before = 0
        opts.out.mkdir(parents=True, exist_ok=True)
        self._repair_leftovers()
        self.next_disk_check = 0
        self._check_disk(force=True)

    def _repair_leftovers(self) -> None:
        """Index the logs a killed recorder of this unit left behind (their last file has no index)."""
        if self.opts.format != "native":
            return
        from mcl.log.native import reindex

        for d in sorted(self.opts.out.iterdir()):
            data = list(d.glob("*.mcln")) if d.is_dir() else []
            if data and not all(p.with_suffix(".mcli").is_file() for p in data):
                try:
                    reindex(d)
                    self.log.info("indexed %s, left by a recorder that did not close it", d)
                except Exception as exc:  # noqa: BLE001 - a damaged leftover must not stop the recording
                    self.error(f"{d}: cannot index a leftover log: {exc}")

    def _free(self) -> int:
        return shutil.disk_usage(self.opts.out).free

    def _check_disk(self, force: bool = False) -> None:
        now = time.monotonic_ns()
        if not force and now < self.next_disk_check:
            return
        self.next_disk_check = now + _DISK_CHECK_NS
        limit = self.opts.min_free
        if limit is None:
            if self.recorder is None:
                self._open()
            return
        from mcl.cli.common import format_size

        free = self._free()
        if free < limit:
            if self.paused is None:
                self.paused = f"paused: {format_size(free)} free on {self.opts.out}, below min_free {format_size(limit)}"
                self.log.warning("%s", self.paused)
                self._close_recorder()
        elif self.recorder is None:
            if self.paused is not None:
                self.log.info("resuming: %s free on %s", format_size(free), self.opts.out)
            self.paused = None
            self._open()

    def _new_recorder(self) -> Any:
        from mcl.recorder import Recorder, RecordOptions, make_log_path

        o = self.opts
        options = RecordOptions.from_keywords(
            bus=o.bus or self.args.bus,
            topics=o.topics,
            format=o.format,
            exact=o.exact,
            metadata={"station": self.args.station, "unit": self.unit.name, **dict(o.metadata)},
            split_size=o.split_size,
            split_duration_ns=o.split_duration_ns,
            max_files=o.max_files,
            compression="zstd" if o.compress else None,
            flush_interval_ns=o.flush_interval_ns,
            hwm=o.hwm,
        )
        recorder = Recorder(make_log_path(o.out), options)
        try:
            recorder.start()
        except BaseException:
            try:
                assert recorder.path is not None
                recorder.path.rmdir()
            except OSError:
                pass
            raise
        self.logs += 1
        self.log.info("recording to %s", recorder.path)
        return recorder

    def _open(self) -> None:
        self.recorder = self._new_recorder()

    def _close_recorder(self) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        final = recorder.stop()
        self.messages_before += final.messages
        self.lost_before += final.lost
        self.log.info("closed %s: %d messages, lost %d", final.path, final.messages, final.lost)

    def step(self) -> float:
        self._check_disk()
        recorder = self.recorder
        if recorder is not None and not recorder.running:
            self._close_recorder()  # raises the RecordError that ended it (disk full, ...)
            raise RuntimeError("the recorder stopped by itself")
        return _MAX_STEP_S

    def commands(self) -> list[str]:
        return ["split", "status"]

    def handle(self, command: str, data: Any) -> Any:
        if command == "split":
            if self.recorder is None:
                raise RuntimeError(self.paused or "not recording")
            new = self._new_recorder()  # the new log starts before the old one ends: nothing falls between
            self._close_recorder()
            self.recorder = new
            return self.status()
        return super().handle(command, data)

    def status(self) -> dict[str, Any]:
        st = None if self.recorder is None else self.recorder.status()
        return {
            **super().status(),
            "log": None if st is None else st.path,
            "current_file": None if st is None else st.current_file,
            "messages": self.messages_before + (0 if st is None else st.messages),
            "lost": self.lost_before + (0 if st is None else st.lost),
            "logs": self.logs,
            "note": self.paused,
        }

    def close(self) -> None:
        self._close_recorder()


# -- replay ---------------------------------------------------------------------------


class ReplayHost(Host):
    def start(self) -> None:
        from mcl.replay import Replay

        opts = self.unit.options
        assert isinstance(opts, ReplayUnitOptions)
        self.opts = opts
        self.replay = Replay(
            str(opts.log),
            opts.speed,
            bus=opts.bus or self.args.bus,
            loop=opts.loop,
            topics=None if opts.topics is None else list(opts.topics),
            exclude=opts.exclude,
            remap=dict(opts.remap) or None,
        )
        self.replay.start()

    def step(self) -> float:
        st = self.replay.status()  # raises ReplayError when a worker failed: the unit restarts
        if st.state == "failed":
            raise RuntimeError(st.error or "the replay failed")
        if st.finished and not self.opts.loop:
            self.log.info("replay of %s finished (%d records)", self.opts.log, st.total)
            self.done = True
        return _MAX_STEP_S

    def commands(self) -> list[str]:
        return ["pause", "resume", "status"]

    def handle(self, command: str, data: Any) -> Any:
        if command == "pause":
            self.replay.pause()
        elif command == "resume":
            self.replay.start()
        elif command != "status":
            return super().handle(command, data)
        return self.status()

    def status(self) -> dict[str, Any]:
        st = self.replay.status()
        return {**super().status(), "messages": st.total, "replay": st.to_dict()}

    def close(self) -> None:
        replay = getattr(self, "replay", None)
        if replay is not None:
            replay.close()


# -- bus ------------------------------------------------------------------------------


class BusHost(Host):
    def start(self) -> None:
        from mcl.network.address import parse_bus
        from mcl.network.forwarder import HOST_RETRY_S, Forwarder
        from mcl.network.security import CurveServer

        opts = self.unit.options
        assert isinstance(opts, BusOptions)
        curve = None
        if opts.curve_secret is not None and opts.curve_clients is not None:
            curve = CurveServer(opts.curve_secret, opts.curve_clients)
        # Without CURVE keys, every mcl program of a loopback bus may host it (the first to bind
        # serves, see mcl.network.forwarder): the unit then competes like them, retrying in the
        # background, instead of failing because a client that started first serves the bus.
        retry_s = HOST_RETRY_S if curve is None and parse_bus(opts.bind).is_loopback else None
        self.forwarder = Forwarder(opts.bind, hwm=opts.hwm, curve=curve, retry_s=retry_s)
        if self.forwarder.wait_first_bind():
            self.log.info("serving bus %s", self.forwarder.address)
        else:
            self.log.info("bus %s is served by another mcl program for now: taking over when it stops", self.forwarder.address)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "address": self.forwarder.address, "serving": self.forwarder.serving}

    def close(self) -> None:
        forwarder = getattr(self, "forwarder", None)
        if forwarder is not None:
            forwarder.close()


# -- offload --------------------------------------------------------------------------


class OffloadHost(Host):
    def start(self) -> None:
        from mcl.station.offload import Offloader

        opts = self.unit.options
        assert isinstance(opts, OffloadOptions)
        self.offloader = Offloader(opts, self.log)
        self.offloader.start()

    def commands(self) -> list[str]:
        return ["scan", "status"]

    def handle(self, command: str, data: Any) -> Any:
        if command == "scan":
            self.offloader.scan_now()
            return self.status()
        return super().handle(command, data)

    def status(self) -> dict[str, Any]:
        st = self.offloader.status()
        return {**st, "messages": st["offloaded"], "note": st["destination_error"]}

    def close(self) -> None:
        offloader = getattr(self, "offloader", None)
        if offloader is not None:
            offloader.close()


HOSTS: dict[str, type[Host]] = {
    "runner": RunnerHost,
    "recorder": RecorderHost,
    "replay": ReplayHost,
    "bus": BusHost,
    "offload": OffloadHost,
}


# -- the loop -------------------------------------------------------------------------


class _PipeHandler(logging.Handler):
    """Sends the unit's log lines to the station, which writes them (stderr, the rotated station log)."""

    def __init__(self, send: Any) -> None:
        super().__init__(logging.INFO)
        self._send = send
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send(("log", record.levelno, self.format(record)))
        except Exception:  # noqa: BLE001 - the station is gone: nothing to log to
            pass


def _make_logger(args: UnitArgs, send: Any) -> logging.Logger:
    log = logging.getLogger(f"mcl.station.{args.unit.name}")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(_PipeHandler(send))
    return log


def _locked_send(conn: Any) -> Any:
    """conn.send for several threads (the offload thread logs too)."""
    lock = threading.Lock()

    def send(message: Any) -> None:
        with lock:
            conn.send(message)

    return send


def _reply(send: Any, request_id: int, ok: bool, value: Any) -> None:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as exc:
        ok, text = False, json.dumps(f"the reply is not JSON: {exc}")
    send(("reply", request_id, ok, text))


def _watch_station(ctx: WorkerContext, stopping: dict[str, bool], done: threading.Event) -> None:
    """Once the station is gone, give the loop ORPHAN_GRACE_S to close cleanly, then end the process.

    The loop checks for the station between two steps, and PR_SET_PDEATHSIG's
    SIGTERM only sets a flag that the loop reads: a runner stuck in iterate()
    (a blocking read of a serial port) would be left behind as an orphan.
    """
    while not done.wait(_PARENT_CHECK_S):
        if not parent_alive(ctx):
            stopping["flag"] = True
            if not done.wait(ORPHAN_GRACE_S):
                os._exit(1)
            return


def unit_main(ctx: WorkerContext, args: UnitArgs, conn: Any) -> None:
    """The body of a unit's process (started with the 'spawn' method)."""
    setup_worker(ctx)
    stopping = {"flag": False}
    done = threading.Event()
    threading.Thread(target=_watch_station, args=(ctx, stopping, done), name="mcl-station: watch station", daemon=True).start()

    def on_term(signum: int, frame: Any) -> None:
        stopping["flag"] = True  # close cleanly (recordings closed, index written)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    send = _locked_send(conn)
    log = _make_logger(args, send)
    host = HOSTS[args.unit.kind](args, log)
    code = 0
    try:
        host.start()
        next_status = 0
        while not host.done:
            now = time.monotonic_ns()
            if now >= next_status:
                next_status = now + _STATUS_EVERY_NS
                send(("status", {**host.status(), "pid": os.getpid()}))
            if stopping["flag"] or not parent_alive(ctx):
                break
            if args.end_ns is not None and time.time_ns() >= args.end_ns:
                log.info("session over")
                break
            wait = host.step()
            while conn.poll(wait):
                wait = 0
                message = conn.recv()
                if not (isinstance(message, tuple) and len(message) == 4 and message[0] == "request"):
                    continue
                _, request_id, command, data = message
                if command == "__stop__":
                    stopping["flag"] = True
                    _reply(send, request_id, True, None)
                    break
                try:
                    _reply(send, request_id, True, host.handle(command, data))
                except Exception as exc:  # noqa: BLE001 - every request gets a reply
                    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                    _reply(send, request_id, False, f"{text}")
    except (EOFError, BrokenPipeError):
        code = 0 if not parent_alive(ctx) else 1  # the station went away
    except Exception as exc:  # noqa: BLE001 - reported, then the station restarts the unit
        log.error("failed: %s: %s", type(exc).__name__, exc, exc_info=not isinstance(exc, (OSError, RuntimeError)))
        host.error(f"{type(exc).__name__}: {exc}")
        code = 1
    finally:
        try:
            host.close()
        except Exception as exc:  # noqa: BLE001
            log.error("could not close cleanly: %s", exc)
            code = 1
        try:
            send(("status", {**_safe_status(host), "pid": os.getpid(), "exiting": True}))
        except (OSError, ValueError):
            pass
        done.set()
        logging.shutdown()
    sys.exit(code)  # multiprocessing runs its finalizers (semaphores of a replay's queues), then exits


def _safe_status(host: Host) -> dict[str, Any]:
    try:
        return host.status()
    except Exception:  # noqa: BLE001 - a host that failed at start has no status of its own
        return {"errors": host.errors, "last_error": host.last_error}
