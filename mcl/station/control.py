"""The station's control endpoint (a ZeroMQ REP socket on ``ipc://RUN_DIR/control.sock``) and its client.

Only the station's user can reach it: the run directory is 0700 and the
socket file 0600. One JSON object per request, one per reply; every
request gets a reply, a malformed one too ({"ok": false, "error": ...});
requests are served concurrently (a slow ``stop`` does not hold up ``status``);
requests over :data:`MAX_REQUEST_BYTES` are dropped by ZeroMQ (the client
times out)::

    {"cmd": "status"}                                  -> {"ok": true, "result": {station status}}
    {"cmd": "start" | "stop" | "restart", "unit": NAME} -> {"ok": true, "result": {unit status}}
    {"cmd": "reload"}                                  -> {"ok": true, "result": {"added": [...], ...}}
    {"cmd": "send", "unit": NAME, "command": C, "data": ANY, "timeout": S}
                                                       -> {"ok": true, "result": the unit's reply}
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zmq

from mcl.exceptions import MclError
from mcl.station.config import StationError

__all__ = ["ControlServer", "ControlClient", "MAX_REQUEST_BYTES", "station_running"]

MAX_REQUEST_BYTES = 1 << 20  # larger requests get an error reply
MAX_MESSAGE_BYTES = 16 << 20  # larger messages are dropped by ZeroMQ (maxmsgsize), never buffered
MAX_IN_FLIGHT = 8  # requests handled at once; more get an immediate "busy" reply
_STATUS_RESERVE = 4  # threads beyond MAX_IN_FLIGHT kept for "status": slow requests never lock the operator out
_POLL_MS = 100
_BATCH = 64  # requests taken per wake-up before the finished replies are sent


class ControlServer:
    """Serves control requests for `station` from a thread; ``close()`` ends it (idempotent).

    A ROUTER socket, so that a slow request (``stop`` of a unit that takes
    its grace period, ``send`` to a unit that takes its time) does not hold
    up the others: each request is handled in a pool of
    :data:`MAX_IN_FLIGHT` threads and its reply goes back when ready; beyond
    that many at once, a request gets an immediate "busy" reply. Replies to
    a client that does not read are dropped by ZeroMQ (never block).
    """

    def __init__(self, station: Any, path: Path) -> None:
        self.station = station
        self.path = path
        self.address = f"ipc://{path}"
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._error: BaseException | None = None
        self._closed = False
        try:
            path.unlink()  # a socket left by a station that was killed (the pid lock is ours now)
        except FileNotFoundError:
            pass
        self._thread = threading.Thread(target=self._serve, name="mcl-station: control", daemon=True)
        self._thread.start()
        self._bound.wait(10.0)
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _serve(self) -> None:
        context = zmq.Context()
        sock = context.socket(zmq.ROUTER)
        sock.linger = 0
        sock.maxmsgsize = MAX_MESSAGE_BYTES
        done: queue.SimpleQueue[tuple[list[bytes], bytes]] = queue.SimpleQueue()
        wake_r, wake_w = socket.socketpair()  # a finished request wakes the loop (a closed socket object refuses writes)
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        pool = ThreadPoolExecutor(MAX_IN_FLIGHT + _STATUS_RESERVE, thread_name_prefix="mcl-station: control request")
        in_flight = 0

        def work(envelope: list[bytes], body: list[bytes]) -> None:
            done.put((envelope, _encode(self.handle(body[0] if len(body) == 1 else None))))
            try:
                wake_w.send(b"x")
            except OSError:
                pass  # the server is closing

        try:
            try:
                sock.bind(self.address)
                os.chmod(self.path, 0o600)
            except (zmq.ZMQError, OSError) as exc:
                self._error = StationError(f"cannot bind the control endpoint {self.address}: {exc}")
                return
            self._bound.set()
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(wake_r.fileno(), zmq.POLLIN)
            while not self._stop.is_set():
                ready = dict(poller.poll(_POLL_MS))
                if wake_r.fileno() in ready:
                    try:
                        wake_r.recv(4096)
                    except OSError:
                        pass
                for _ in range(_BATCH):  # bounded: replies go out between two batches
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    envelope, body = _split(frames)
                    if in_flight >= MAX_IN_FLIGHT + (_STATUS_RESERVE if _is_status(body) else 0):
                        _send(sock, envelope, _encode({"ok": False, "error": f"busy: {MAX_IN_FLIGHT} requests under way, try again"}))
                        continue
                    in_flight += 1
                    pool.submit(work, envelope, body)
                while True:
                    try:
                        envelope, reply = done.get_nowait()
                    except queue.Empty:
                        break
                    in_flight -= 1
                    _send(sock, envelope, reply)
        finally:
            self._bound.set()
            pool.shutdown(wait=False, cancel_futures=True)
            sock.close(0)
            context.term()
            wake_r.close()
            wake_w.close()
            try:
                self.path.unlink()
            except OSError:
                pass

    def handle(self, data: bytes | None) -> dict[str, Any]:
        """One request to its reply (never raises)."""
        try:
            if data is None:
                raise ValueError("a request is one frame holding a JSON object")
            if len(data) > MAX_REQUEST_BYTES:
                raise ValueError(f"the request has {len(data)} bytes, over the limit of {MAX_REQUEST_BYTES}")
            try:
                request = json.loads(data)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ValueError(f"the request is not JSON: {exc}") from None
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise ValueError('a request is a JSON object with a "cmd" string')
            return {"ok": True, "result": self._dispatch(request)}
        except (MclError, ValueError, TypeError, KeyError, RuntimeError, TimeoutError) as exc:
            text = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__
            return {"ok": False, "error": " ".join(text.split())}
        except Exception as exc:  # noqa: BLE001 - every request gets a reply
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def _dispatch(self, request: dict[str, Any]) -> Any:
        cmd = request["cmd"]
        station = self.station
        if cmd == "status":
            return station.status()
        if cmd == "reload":
            return station.reload()
        if cmd in ("start", "stop", "restart", "send"):
            unit = request.get("unit")
            if not isinstance(unit, str):
                raise ValueError(f'{cmd!r} needs "unit": a unit name')
            if cmd == "start":
                return station.start_unit(unit)
            if cmd == "stop":
                return station.stop_unit(unit)
            if cmd == "restart":
                return station.restart_unit(unit)
            command = request.get("command")
            if not isinstance(command, str):
                raise ValueError('"send" needs "command": a command name')
            timeout = request.get("timeout", 10.0)
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
                raise ValueError('"timeout" is seconds, above 0 and at most 60')
            return station.send(unit, command, request.get("data"), float(timeout))
        raise ValueError(f"unknown cmd {cmd!r} (status, start, stop, restart, reload, send)")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(5.0)

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """A ROUTER message to (envelope, body): the envelope ends at the empty delimiter a REQ client puts (a DEALER may not)."""
    for i in range(1, len(frames)):
        if not frames[i]:
            return frames[: i + 1], frames[i + 1 :]
    return frames[:1], frames[1:]


def _is_status(body: list[bytes]) -> bool:
    """A short request whose cmd is "status" (parsed here only when small: the pool parses the rest)."""
    if len(body) != 1 or len(body[0]) > 256:
        return False
    try:
        request = json.loads(body[0])
    except ValueError:
        return False
    return isinstance(request, dict) and request.get("cmd") == "status"


def _encode(reply: dict[str, Any]) -> bytes:
    try:
        return json.dumps(reply, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:  # a result that is no JSON (NaN, an object): the error is the reply
        return json.dumps({"ok": False, "error": f"the reply is not JSON: {exc}"}).encode()


def _send(sock: zmq.Socket[Any], envelope: list[bytes], reply: bytes) -> None:
    try:
        sock.send_multipart([*envelope, reply], zmq.NOBLOCK)
    except zmq.ZMQError:
        pass  # the client went away or does not read: ZeroMQ drops it, the station goes on


def station_running(run_dir: Path) -> int | None:
    """The pid of the station holding `run_dir`, or None when none runs there."""
    try:
        fd = os.open(run_dir / "station.pid", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # the lock was free: the station that wrote it is gone
    finally:
        os.close(fd)


class ControlClient:
    """Talks to the station of `run_dir`; StationError when none runs there or it does not answer."""

    def __init__(self, run_dir: str | os.PathLike[str], timeout: float = 15.0) -> None:
        self.run_dir = Path(run_dir)
        self.timeout = timeout
        self.pid = station_running(self.run_dir)
        socket_path = self.run_dir / "control.sock"
        if self.pid is None or not socket_path.exists():
            raise StationError(f"no station runs in {self.run_dir}")
        self._context = zmq.Context()
        self._sock = self._context.socket(zmq.REQ)
        self._sock.linger = 0
        try:
            self._sock.connect(f"ipc://{socket_path}")
        except zmq.ZMQError as exc:
            self.close()
            raise StationError(f"cannot reach the station in {self.run_dir}: {exc} (ipc://{socket_path})") from None

    def request(self, cmd: str, timeout: float | None = None, **fields: Any) -> Any:
        """Send one request; return its result (StationError with the station's reason when refused)."""
        wait = self.timeout if timeout is None else timeout
        self._sock.send(json.dumps({"cmd": cmd, **fields}).encode())
        if not self._sock.poll(int(wait * 1000), zmq.POLLIN):
            raise StationError(f"the station in {self.run_dir} (pid {self.pid}) did not answer within {wait:g} s")
        try:
            reply = json.loads(self._sock.recv())
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise StationError(f"the station in {self.run_dir} sent a reply that is not a JSON object")
        if not reply.get("ok"):
            raise StationError(str(reply.get("error")))
        return reply.get("result")

    def close(self) -> None:
        self._sock.close(0)
        self._context.term()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
