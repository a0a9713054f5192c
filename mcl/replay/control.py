"""Remote control of a replay: a ZeroMQ REP endpoint taking JSON requests, and its client.

Protocol (one JSON object per request, one per reply; see docs/architecture.md):

    {"cmd": "status"}                      -> {"ok": true, "status": {...}}
    {"cmd": "pause"} / {"cmd": "resume"} / {"cmd": "stop"} / {"cmd": "step"}
    {"cmd": "seek", "time": 12.5}          seconds of log time (from the time origin)
    {"cmd": "speed", "speed": 2.0}         null = as fast as possible
    {"cmd": "quit"}                        ends mcl-replay
    errors                                 -> {"ok": false, "error": "one line"}

Every successful reply carries the status after the command. Every request
gets a reply, whatever it holds (not JSON, not an object, several frames,
numbers out of range: ``ok: false`` with the reason), and the endpoint goes
on serving. Requests over :data:`MAX_REQUEST_BYTES` are refused by ZeroMQ
(the sender is disconnected). There is no authentication: whoever can
connect to the endpoint controls the replay, so it binds loopback by
default, and :func:`is_loopback` tells when it does not.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import threading
from collections.abc import Callable
from typing import Any

import zmq

from mcl.exceptions import BusError, MclError, ReplayError

__all__ = ["ControlServer", "ControlClient", "parse_control_address", "is_loopback", "DEFAULT_CONTROL", "MAX_REQUEST_BYTES"]

DEFAULT_CONTROL = "tcp://127.0.0.1:0"  # loopback, a free port (printed by mcl-replay)
MAX_REQUEST_BYTES = 64 * 1024  # a request is a small JSON object; larger messages are dropped by ZeroMQ
_POLL_MS = 100
_COMMANDS = "status, pause, resume, stop, step, seek, speed, quit"


class _BadRequest(ValueError):
    """A request the endpoint refuses (the reply says why)."""


_MAX_IPC_PATH = 107  # bytes of a Unix socket path (sun_path less its NUL)


def parse_control_address(text: str) -> str:
    """``PORT``, ``HOST:PORT`` or a full ZeroMQ endpoint (tcp://, ipc://) to an endpoint.

    Checked before anything binds it: a port 0..65535 (0: any free one), a
    host, an ipc path short enough for a Unix socket; BusError otherwise.
    """
    bad = f"{text!r} is not a control address (PORT, HOST:PORT, tcp://HOST:PORT or ipc://PATH)"
    if not isinstance(text, str):
        raise BusError(bad)
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text if not text.isdigit() else f"127.0.0.1:{text}"
    if scheme == "ipc":
        size = len(os.fsencode(rest)) if rest else 0
        if not 0 < size <= _MAX_IPC_PATH or "\0" in rest:
            raise BusError(f"{bad}: an ipc path is 1 to {_MAX_IPC_PATH} bytes, not {size}")
        return f"ipc://{rest}"
    if scheme == "inproc" and rest:
        return f"inproc://{rest}"
    if scheme != "tcp":
        raise BusError(bad)
    host, colon, port = rest.rpartition(":")
    if not colon or not host or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise BusError(f"{bad}: give a host and a port 0..65535")
    return f"tcp://{host}:{int(port)}"


def is_loopback(endpoint: str) -> bool:
    """True if only this machine can reach `endpoint` (tcp on a loopback address, ipc, inproc)."""
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    host = rest.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name or an interface ("*", "eth0"): other machines may reach it
        return False


def _number(request: dict[str, Any], key: str, *, nullable: bool = False) -> float | None:
    """The number `key` of a request, as a float (a bool, a string or an out-of-range number is refused)."""
    if key not in request:
        raise _BadRequest(f'missing field "{key}"')
    value = request[key]
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadRequest(f'"{key}" must be a number, not {type(value).__name__}')
    try:
        number = float(value)
    except OverflowError:  # a JSON integer of hundreds of digits
        raise _BadRequest(f'"{key}" is out of range') from None
    if math.isnan(number):
        raise _BadRequest(f'"{key}" must be a number, not NaN')
    return number


class ControlServer:
    """Serves :mod:`control <mcl.replay.control>` requests for `replay` from a thread.

    The socket and its context live in that thread. :attr:`address` is the
    bound endpoint (with the real port when port 0 was asked). `on_quit` is
    called on a ``quit`` request. A context manager; ``close()`` is idempotent.
    """

    def __init__(self, replay: Any, address: str = DEFAULT_CONTROL, *, on_quit: Callable[[], None] | None = None) -> None:
        self.replay = replay
        self._endpoint = parse_control_address(address)
        self._on_quit = on_quit
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._error: BaseException | None = None
        self.address = ""
        self._thread = threading.Thread(target=self._serve, name="mcl-replay: control", daemon=True)
        self._thread.start()
        self._bound.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _serve(self) -> None:
        context = zmq.Context()
        sock = context.socket(zmq.REP)
        sock.linger = 0
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        try:
            try:
                sock.bind(self._endpoint)
            except zmq.ZMQError as exc:
                # pyzmq already appends (addr=...) to a failed bind.
                self._error = BusError(f"cannot bind the control endpoint: {exc}")
                return
            self.address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            self._bound.set()
            while not self._stop.is_set():
                if not sock.poll(_POLL_MS, zmq.POLLIN):
                    continue
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    continue
                if len(frames) != 1:
                    reply: dict[str, Any] = {"ok": False, "error": f"a request is one frame, not {len(frames)}"}
                else:
                    reply = self.handle(frames[0])
                try:
                    sock.send(_encode_reply(reply))
                except zmq.ZMQError:  # the client went away: REP drops the reply, serve the next
                    pass
        finally:
            self._bound.set()
            sock.close(0)
            context.term()

    def handle(self, data: bytes) -> dict[str, Any]:
        """One request (JSON bytes) to its reply; never raises."""
        try:
            return self._handle(data)
        except (MclError, ValueError, TypeError, KeyError, RuntimeError, ArithmeticError) as exc:
            text = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            return {"ok": False, "error": " ".join(text.split()) or type(exc).__name__}
        except Exception as exc:  # noqa: BLE001 - a bug must not end the endpoint: say it, go on
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"}

    def _handle(self, data: bytes) -> dict[str, Any]:
        if len(data) > MAX_REQUEST_BYTES:
            raise _BadRequest(f"request of {len(data)} bytes is over the limit of {MAX_REQUEST_BYTES}")
        try:
            request = json.loads(data)
        except RecursionError:
            raise _BadRequest("request nested too deeply") from None
        except ValueError as exc:  # not UTF-8 or not JSON
            raise _BadRequest(f"not a JSON request: {exc}") from None
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            raise _BadRequest('a request is a JSON object with a "cmd" string')
        cmd = request["cmd"]
        replay = self.replay
        if cmd == "status":
            pass
        elif cmd == "pause":
            replay.pause()
        elif cmd in ("resume", "start"):
            replay.start()
        elif cmd == "stop":
            replay.stop()
        elif cmd == "step":
            replay.step()
        elif cmd == "seek":
            replay.seek(_number(request, "time"))
        elif cmd == "speed":
            speed = _number(request, "speed", nullable=True) if "speed" in request else None
            replay.speed = math.inf if speed is None else speed
        elif cmd == "quit":
            if self._on_quit is not None:
                self._on_quit()
        else:
            raise _BadRequest(f"unknown cmd {cmd[:40]!r} ({_COMMANDS})")
        return {"ok": True, "status": replay.status().to_dict()}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _encode_reply(reply: dict[str, Any]) -> bytes:
    try:
        return json.dumps(reply, allow_nan=False).encode()
    except ValueError:  # a NaN / infinity in the status: JSON has none
        return json.dumps(_finite(reply)).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class ControlClient:
    """Sends control requests to a replay's endpoint (``mcl-replay --control``).

    ``client.request("seek", time=3.0)`` returns the reply's status dict and
    raises ReplayError when the replay refuses (``ok: false``) or does not
    answer within `timeout` seconds. A context manager.
    """

    def __init__(self, address: str, timeout: float = 5.0) -> None:
        self.address = parse_control_address(address)
        self.timeout = timeout
        self._context = zmq.Context()
        self._sock: zmq.Socket | None = None

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            self._sock = self._context.socket(zmq.REQ)
            self._sock.linger = 0
            self._sock.connect(self.address)
        return self._sock

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        sock = self._socket()
        sock.send(json.dumps({"cmd": cmd, **fields}).encode())
        if not sock.poll(int(self.timeout * 1000), zmq.POLLIN):
            sock.close(0)  # a REQ socket that got no reply cannot send again
            self._sock = None
            raise ReplayError(f"no reply from the replay control endpoint {self.address} within {self.timeout:g} s")
        reply = json.loads(sock.recv())
        if not reply.get("ok"):
            raise ReplayError(f"the replay refused {cmd!r}: {reply.get('error')}")
        status: dict[str, Any] = reply["status"]
        return status

    def close(self) -> None:
        """Close the socket and context; idempotent."""
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        if not self._context.closed:
            self._context.term()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
