"""Remote control of a replay: a ZeroMQ REP endpoint taking JSON requests, and its client.

Protocol (one JSON object per request, one per reply; see docs/architecture.md):

    {"cmd": "status"}                      -> {"ok": true, "status": {...}}
    {"cmd": "pause"} / {"cmd": "resume"} / {"cmd": "stop"} / {"cmd": "step"}
    {"cmd": "seek", "time": 12.5}          seconds of log time (from the time origin)
    {"cmd": "speed", "speed": 2.0}         null = as fast as possible
    {"cmd": "quit"}                        ends mcl-replay
    errors                                 -> {"ok": false, "error": "one line"}

Every successful reply carries the status after the command.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from typing import Any

import zmq

from mcl.exceptions import BusError, MclError, ReplayError

__all__ = ["ControlServer", "ControlClient", "parse_control_address", "DEFAULT_CONTROL"]

DEFAULT_CONTROL = "tcp://127.0.0.1:0"  # loopback, a free port (printed by mcl-replay)
_POLL_MS = 100


def parse_control_address(text: str) -> str:
    """``PORT``, ``HOST:PORT`` or a full ZeroMQ endpoint (tcp://, ipc://) to an endpoint."""
    text = text.strip()
    if "://" in text:
        return text
    if text.isdigit():
        return f"tcp://127.0.0.1:{text}"
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host:
        return f"tcp://{host}:{port}"
    raise BusError(f"{text!r} is not a control address (PORT, HOST:PORT or tcp://HOST:PORT)")


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
                data = sock.recv()
                sock.send(json.dumps(self.handle(data)).encode())
        finally:
            self._bound.set()
            sock.close(0)
            context.term()

    def handle(self, data: bytes) -> dict[str, Any]:
        """One request (JSON bytes) to its reply."""
        try:
            request = json.loads(data)
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise ValueError('a request is a JSON object with a "cmd" string')
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
                replay.seek(float(request["time"]))
            elif cmd == "speed":
                speed = request.get("speed")
                replay.speed = math.inf if speed is None else float(speed)
            elif cmd == "quit":
                if self._on_quit is not None:
                    self._on_quit()
            else:
                raise ValueError(f"unknown cmd {cmd!r} (status, pause, resume, stop, step, seek, speed, quit)")
            return {"ok": True, "status": replay.status().to_dict()}
        except (MclError, ValueError, TypeError, KeyError, RuntimeError) as exc:
            text = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            return {"ok": False, "error": " ".join(text.split())}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
