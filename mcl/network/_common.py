"""What publishers and subscribers share: the context, socket setup, ids, hosting."""

from __future__ import annotations

import logging
import os
import secrets
import socket as _socket
import threading
import time

import zmq

from mcl.network.address import BusAddress, parse_bus
from mcl.network.forwarder import DEFAULT_MAX_MESSAGE_BYTES, BusLease, lease_bus, local_endpoints
from mcl.network.security import CurveClient, client_from_env

log = logging.getLogger("mcl.network")

_HOST = _socket.gethostname()
NO_ANSWER_S = 3.0  # a client says so when no forwarder answered within this many seconds


def make_id() -> str:
    """A new endpoint id: host, pid and a random part (unique on the bus)."""
    return f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def resolve(
    bus: str | BusAddress | None, provide: bool | None, curve: CurveClient | None = None
) -> tuple[BusAddress, BusLease | None]:
    """Parse `bus`; lease the hosting forwarder when this program should help serve it.

    By default (``provide=None``) a program helps serve any bus on loopback,
    given by argument or by ``$MCL_BUS`` alike (the first program to bind its
    ports serves it, the others connect), unless it uses CURVE keys (a
    hosting forwarder has none: a secured bus is served by ``mcl-bus``);
    ``provide=False`` never does.
    """
    address = parse_bus(bus)
    if provide is None:
        provide = address.is_loopback and curve is None and client_from_env() is None
    lease = lease_bus(address) if provide else None
    return address, lease


def endpoints(address: BusAddress, curve: CurveClient | None) -> tuple[zmq.Context | None, str, str]:
    """(context, publish endpoint, subscribe endpoint) for a client of the bus at `address`.

    When a forwarder serving `address` runs in this process and no CURVE keys
    are in use, its ``inproc://`` endpoints and context (one TCP hop less; see
    :func:`mcl.network.forwarder.local_endpoints`); else TCP and None (this
    process's shared context).
    """
    if curve is None and client_from_env() is None:
        local = local_endpoints(address)
        if local is not None:
            return local
    return None, address.publish_endpoint, address.subscribe_endpoint


def make_socket(
    kind: int,
    address: BusAddress,
    hwm: int,
    curve: CurveClient | None,
    context: zmq.Context | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> zmq.Socket:
    """A socket of this process's context with linger 0, the HWM, the frame size limit and the keys set."""
    sock: zmq.Socket = (context or zmq.Context.instance()).socket(kind)
    try:
        sock.linger = 0
        if kind in (zmq.PUB, zmq.XPUB):
            sock.sndhwm = hwm
        else:
            sock.rcvhwm = hwm
        if max_message_bytes > 0:  # a longer frame drops the connection that sent it (ZMQ_MAXMSGSIZE)
            sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        if address.ipv6:
            sock.ipv6 = True
        curve = curve if curve is not None else client_from_env()
        if curve is not None:
            curve.apply(sock)
    except BaseException:
        sock.close(0)
        raise
    return sock


class ConnectionWatch:
    """Says (one WARNING on logger ``mcl.network``) when no forwarder answers a TCP client.

    Watches the socket's ZeroMQ monitor events in a thread of its own: no
    completed handshake within :data:`NO_ANSWER_S` seconds (after the start,
    or after losing the forwarder) gives one line naming the address and the
    command that starts a bus there; a refused CURVE key gives one line too.
    ZeroMQ keeps reconnecting meanwhile. Create it in the socket's thread,
    before ``connect``; :meth:`close` it before closing the socket.
    """

    def __init__(self, sock: zmq.Socket, address: BusAddress, role: str) -> None:
        self._sock = sock
        self._address = address
        self._role = role
        self.connected = False  # a handshake with the forwarder completed and it did not disconnect since
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._warned = False  # said so already (until the next connection)
        self._monitor = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_MONITOR_STOPPED
        )
        self._thread = threading.Thread(target=self._run, name=f"mcl-watch {address}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        monitor = self._monitor
        waiting_since = time.monotonic()
        try:
            while not self._closing.is_set():
                warned = self._warned
                timeout = None if self.connected or warned else NO_ANSWER_S - (time.monotonic() - waiting_since)
                if timeout is not None and timeout <= 0:
                    self.warn(NO_ANSWER_S)
                    continue
                if not monitor.poll(max(1, int(min(0.5 if timeout is None else timeout, 0.5) * 1000))):
                    continue
                event = recv_monitor_message(monitor)["event"]
                if event == zmq.EVENT_MONITOR_STOPPED:
                    return
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self.connected, self._warned = True, False
                elif event == zmq.EVENT_DISCONNECTED:
                    if self.connected:
                        waiting_since = time.monotonic()
                    self.connected = False
                elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    log.warning("the forwarder at %s refused this %s's CURVE key; still trying", self._address, self._role)
                    self._warned = True
                elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                    log.warning("%s is not a bus forwarder (handshake failed); still trying", self._address)
                    self._warned = True
        except zmq.ZMQError:  # the context is closing
            return
        finally:
            monitor.close(0)

    def warn(self, waited_s: float) -> None:
        """Say that no forwarder answers (once until the next connection); a no-op when connected."""
        with self._lock:
            if self.connected or self._warned:
                return
            self._warned = True
        bind = self._address if self._address.is_loopback else f"tcp://0.0.0.0:{self._address.port}"
        log.warning(
            "no forwarder answers at %s (%s, tried for %.0f s); start a bus there with `mcl-bus --bind %s`; "
            "still trying",
            self._address, self._role, waited_s, bind,
        )

    def close(self) -> None:
        """Stop watching (the thread ends on the monitor's stop event); call in the socket's thread."""
        self._closing.set()
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._thread.join(1.0)


