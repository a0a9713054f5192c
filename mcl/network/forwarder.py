"""The forwarder (the hub of a bus) and the zero-configuration hosting of buses on loopback.

A forwarder is ZeroMQ's own XSUB/XPUB proxy (``zmq.proxy``, in C): publishers
connect to its XSUB socket on the bus port, subscribers to its XPUB socket on
port + 1, and subscriptions flow back from subscribers to publishers.

Zero configuration: every publisher and subscriber of a bus on loopback (the
default bus of :mod:`mcl.network.address`, or any loopback address, given by
argument or by ``$MCL_BUS`` alike) holds a lease on a :class:`Forwarder` running in a
background thread of its own process in *hosting* mode: it tries to bind the
two well-known ports and, while another process holds them, retries every
:data:`HOST_RETRY_S` seconds. So exactly one process on the machine serves the
bus at any time (the OS refuses the second bind), and when that process exits
another one takes the ports over within a retry interval; ZeroMQ sockets
reconnect by themselves, so nobody restarts. A long-lived ``mcl-bus`` simply
holds the ports for good.

In-process shortcut: a forwarder without CURVE runs on this process's shared
ZeroMQ context and also binds two ``inproc://`` endpoints; while it serves,
publishers and subscribers created in this process (any thread) for its
address connect there instead of over TCP (:func:`local_endpoints`), which
saves a TCP hop. Such a client lives and dies with that forwarder (a hosting
forwarder lives as long as its leases, so at least as long as the client).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import random
import threading
from types import TracebackType
from typing import Any

import zmq

from mcl.checks import MAX_C_INT, check_int, check_number
from mcl.exceptions import BusError
from mcl.network import wire
from mcl.network.address import BusAddress, parse_bus
from mcl.network.security import CurveServer
from mcl.timeutil import check_timeout

__all__ = [
    "DEFAULT_HWM",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_STALL_S",
    "HOST_RETRY_S",
    "Forwarder",
    "BusLease",
    "lease_bus",
    "local_endpoints",
]

log = logging.getLogger("mcl.network")

DEFAULT_HWM = 10_000  # messages queued per peer and direction (ZeroMQ counts messages, not bytes)
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20  # ZMQ_MAXMSGSIZE of every receiving socket: a longer frame drops its sender
DEFAULT_STALL_S = 2.0  # a subscriber that reads nothing this long is dropped for (counted) instead of waited for
REARM_S = 5.0  # after a stall, the forwarder waits for slow subscribers again this many seconds later
HOST_RETRY_S = 0.5  # seconds between two attempts to take over the default bus ports
_RANDOM_PORT_TRIES = 64
_serial = itertools.count()  # names the inproc endpoints of each forwarder
_jitter = random.Random()  # its own generator: the retry jitter leaves the global random state alone


class Forwarder:
    """An XSUB/XPUB forwarder running in a background thread of this process.

    ``Forwarder("tcp://127.0.0.1:0")`` starts a private bus on two free
    loopback ports; :attr:`address` is the bus address to give publishers and
    subscribers. The constructor returns once both ports are bound (BusError
    if they cannot be) unless `retry_s` is given: then binding is retried in
    the background every `retry_s` seconds until it succeeds or the forwarder
    is closed (:attr:`serving` tells whether it holds the ports).

    `hwm` bounds the queue of each peer (messages); `max_message_bytes`
    bounds every frame received (ZMQ_MAXMSGSIZE: a publisher sending a longer
    one is disconnected, its messages are lost and counted as such by the
    subscribers); `curve` turns on CURVE encryption and client authentication.

    Back-pressure instead of drops: when the queue towards a subscriber is
    full, the forwarder waits for it (ZMQ_XPUB_NODROP), which makes the
    publishers wait too (a replay) or drop and count (a live publisher). A
    subscriber that reads nothing for `stall_s` seconds stops being waited
    for: its messages are dropped (its sequence gaps count them) for
    :data:`REARM_S` seconds, then the forwarder waits again. `stall_s` None
    drops at once, as ZeroMQ does by default.

    Every publisher connecting to it receives first the subscriptions present,
    then :data:`~mcl.network.wire.READY_TOPIC` (see
    :meth:`mcl.network.Publisher.wait_for_bus`). A context manager;
    ``close()`` is idempotent and takes a few milliseconds.
    """

    def __init__(
        self,
        bus: str | BusAddress | None = None,
        *,
        hwm: int = DEFAULT_HWM,
        curve: CurveServer | None = None,
        retry_s: float | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        stall_s: float | None = DEFAULT_STALL_S,
    ) -> None:
        self._requested = parse_bus(bus, allow_any_port=True)
        # The options before any thread or socket (ArgumentError naming each; ZeroMQ's options are C ints).
        self._hwm = check_int(hwm, "hwm", minimum=0, maximum=MAX_C_INT, unit="messages")
        self._max_message_bytes = check_int(max_message_bytes, "max_message_bytes", minimum=0, unit="bytes")
        check_timeout(retry_s, "retry_s")
        stall = check_number(stall_s, "stall_s", above=True, minimum=0, maximum=MAX_C_INT // 1000, unit="s", none_ok=True)
        self._stall_ms = None if stall is None else max(1, int(stall * 1000))
        self.stalls = 0  # times a subscriber stalled the bus for stall_s and was dropped for
        self._curve = curve
        self._retry_s = retry_s
        self._bound: BusAddress | None = None
        self._error: BusError | None = None
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._closed = False
        # Without CURVE: this process's shared context, so that local clients can use inproc.
        # With CURVE: a context of its own (its ZAP handler), TCP only (every client authenticates).
        self._own_context = curve is not None
        self._context = zmq.Context(io_threads=1) if self._own_context else zmq.Context.instance()
        if self._own_context:
            self._context.linger = 0
        name = f"mcl-forwarder-{os.getpid()}-{next(_serial)}"
        self._control = f"inproc://{name}-control"
        self._inproc = None if self._own_context else f"inproc://{name}"
        self._tried = threading.Event()  # set after the first attempt to bind
        self._auth = None
        # Commands to the proxy (TERMINATE: to close, or to wait for subscribers again after a
        # stall) go through one PAIR socket, used under the lock from any thread.
        self._steer_lock = threading.Lock()
        self._rearm: threading.Timer | None = None
        self._lossy = False
        try:
            if curve is not None:
                self._auth = curve.start_authenticator(self._context)
            self._steer = self._context.socket(zmq.PAIR)
            self._steer.linger = 0
            self._steer.connect(self._control)
        except BaseException:
            if self._auth is not None:
                self._auth.stop()
            if self._own_context:
                self._context.term()
            raise
        self._thread = threading.Thread(target=self._run, name=f"mcl-forwarder {self._requested}", daemon=True)
        self._thread.start()
        if retry_s is None:
            self._ready.wait()
            if self._error is not None:
                self.close()
                raise self._error

    # -- public -------------------------------------------------------------------
    @property
    def address(self) -> str:
        """The bus address to connect to (a wildcard host reads as 127.0.0.1)."""
        bound = self._bound or self._requested
        host = "127.0.0.1" if bound.host in ("*", "0.0.0.0") else "[::1]" if bound.host == "[::]" else bound.host
        return str(BusAddress(host, bound.port))

    @property
    def bind_address(self) -> str:
        """The address bound, as given (wildcards kept), with the real port."""
        return str(self._bound or self._requested)

    def wait_first_bind(self, timeout: float = 1.0) -> bool:
        """Wait for the first attempt to bind (a forwarder with `retry_s`); True if it serves now."""
        self._tried.wait(check_timeout(timeout))
        return self.serving

    @property
    def serving(self) -> bool:
        """True while this forwarder holds its ports and forwards."""
        return self._bound is not None and not self._closed

    @property
    def dropping(self) -> bool:
        """True while, after a stall, the forwarder drops for full subscribers instead of waiting (REARM_S)."""
        return self._lossy

    def wait_serving(self, timeout: float | None = None) -> bool:
        """Wait until the ports are bound (hosting mode); True when serving."""
        self._ready.wait(check_timeout(timeout))
        return self.serving

    def close(self) -> None:
        """Stop forwarding and release the ports (idempotent, never blocks long)."""
        if self._closed:
            return
        self._closed = True
        _unregister(self)
        self._closing.set()
        if self._auth is not None:
            self._auth.stop()
        with self._steer_lock:
            if self._rearm is not None:
                self._rearm.cancel()
        # The proxy stops on TERMINATE from its control socket (queued if it has not started;
        # the socket stays open until the thread has ended: closing it would drop the message).
        self._command(b"TERMINATE")
        self._thread.join(timeout=5.0)
        with self._steer_lock:
            self._steer.close(0)
        if self._own_context:
            self._context.term()

    def _command(self, command: bytes) -> None:
        with self._steer_lock:
            try:
                if not self._steer.closed:
                    self._steer.send(command, zmq.NOBLOCK)
            except zmq.ZMQError:  # the thread has already stopped
                pass

    def _schedule_rearm(self) -> None:
        """After a stall: wait for slow subscribers again in REARM_S seconds (a TERMINATE the loop expects)."""
        with self._steer_lock:
            if self._closed:
                return
            self._rearm = threading.Timer(REARM_S, self._command, (b"TERMINATE",))
            self._rearm.daemon = True
            self._rearm.start()

    def __enter__(self) -> Forwarder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving" if self.serving else "waiting for its ports"
        return f"<Forwarder {self.bind_address} {state}>"

    # -- thread ---------------------------------------------------------------------
    def _socket(self, kind: int) -> zmq.Socket:
        sock = self._context.socket(kind)
        sock.linger = 0
        if self._requested.ipv6 or self._requested.host == "*":
            sock.ipv6 = True
        if kind == zmq.XPUB:
            sock.sndhwm = self._hwm
            if self._stall_ms is not None:
                sock.setsockopt(zmq.XPUB_NODROP, 1)
                sock.sndtimeo = self._stall_ms
        else:
            sock.rcvhwm = self._hwm
        if self._max_message_bytes > 0:
            sock.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes)
        if self._curve is not None:
            try:
                self._curve.apply(sock)
            except BaseException:
                sock.close(0)  # an open socket would keep close() (and the program) waiting
                raise
        return sock

    def _bind(self) -> tuple[zmq.Socket, zmq.Socket]:
        """Bind XSUB on the bus port and XPUB on port + 1 (a free pair for port 0)."""
        want = self._requested
        xsub = self._socket(zmq.XSUB)
        try:
            xpub = self._socket(zmq.XPUB)
        except BaseException:
            xsub.close(0)
            raise
        try:
            if want.port != 0:
                try:
                    xsub.bind(want.publish_endpoint)
                    xpub.bind(want.subscribe_endpoint)
                except zmq.ZMQError as exc:
                    raise _bind_error(want, exc) from exc
                return xsub, xpub
            for _ in range(_RANDOM_PORT_TRIES):
                try:
                    xsub.bind(f"tcp://{want.host}:*")
                except zmq.ZMQError as exc:
                    raise _bind_error(want, exc) from exc
                endpoint = xsub.getsockopt_string(zmq.LAST_ENDPOINT)
                port = int(endpoint.rsplit(":", 1)[1])
                if port < 65535:
                    try:
                        xpub.bind(f"tcp://{want.host}:{port + 1}")
                        self._requested = BusAddress(want.host, port)
                        return xsub, xpub
                    except zmq.ZMQError as exc:
                        if exc.errno != zmq.EADDRINUSE:
                            raise _bind_error(want, exc) from exc
                xsub.unbind(endpoint)
            raise BusError(f"cannot find two free adjacent ports on {want.host}")
        except BaseException:
            xsub.close(0)
            xpub.close(0)
            raise

    def _run(self) -> None:
        try:
            control = self._context.socket(zmq.PAIR)
            control.linger = 0
            control.bind(self._control)
        except zmq.ZMQError as exc:
            self._error = BusError(f"cannot start a forwarder: {exc}")
            self._ready.set()
            return
        try:
            self._serve(control)
        finally:
            self._tried.set()
            control.close(0)

    def _serve(self, control: zmq.Socket) -> None:
        while True:
            try:
                xsub, xpub = self._bind()
                break
            except zmq.ContextTerminated:
                return
            except BusError as exc:
                if self._retry_s is None or self._closing.is_set():
                    self._error = exc
                    self._ready.set()
                    return
                log.debug("%s", exc)
                self._tried.set()
            except zmq.ZMQError:
                if self._closing.is_set():
                    return
                raise
            if self._closing.wait(self._retry_s * _jitter.uniform(0.8, 1.2)):
                return
        tcp = [(sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)) for sock in (xsub, xpub)]
        try:
            if self._inproc is not None:
                xsub.bind(self._inproc + "/pub")
                xpub.bind(self._inproc + "/sub")
        except zmq.ZMQError as exc:  # pragma: no cover - a unique name per forwarder
            log.warning("forwarder on %s: no in-process endpoints: %s", self._requested, exc)
            self._inproc = None
        # Every publisher that connects gets the subscriptions present in byte order, this one
        # last (it sorts after every other): having seen it, it has seen them all.
        xsub.send(b"\x01" + wire.READY_TOPIC)
        self._bound = self._requested
        if not self._closing.is_set():
            _register(self)
        self._tried.set()
        self._ready.set()
        log.debug("forwarding on %s", self._bound)
        try:
            self._forward(xsub, xpub, control)
        except zmq.ContextTerminated:
            pass
        except zmq.ZMQError as exc:  # pragma: no cover - not expected from a proxy
            log.error("forwarder on %s stopped: %s", self._bound, exc)
        finally:
            for sock, endpoint in tcp:
                self._unbind(sock, endpoint)
            xsub.close(0)
            xpub.close(0)

    def _forward(self, xsub: zmq.Socket, xpub: zmq.Socket, control: zmq.Socket) -> None:
        """Run the proxy until close(); after a stall, drop for REARM_S seconds, then wait again."""
        while not self._closing.is_set():
            try:
                zmq.proxy_steerable(xsub, xpub, None, control)
            except zmq.Again:
                # A subscriber's queue stayed full for stall_s: the message being forwarded is
                # dropped (the proxy had read its first frame only; the rest is skipped here).
                for _ in range(1 << 16):
                    if not xsub.getsockopt(zmq.RCVMORE):
                        break
                    xsub.recv()
                self.stalls += 1
                log.warning(
                    "bus %s: a subscriber read nothing for %.1f s; its messages are dropped "
                    "(and counted as lost by it) for %.0f s",
                    self.address, (self._stall_ms or 0) / 1000, REARM_S,
                )
                xpub.setsockopt(zmq.XPUB_NODROP, 0)
                self._lossy = True
                self._schedule_rearm()
                continue
            if self._closing.is_set():
                return
            if self._lossy:  # the TERMINATE of the re-arm timer
                xpub.setsockopt(zmq.XPUB_NODROP, 1)
                self._lossy = False

    def _unbind(self, sock: zmq.Socket, endpoint: str) -> None:
        """Unbind a TCP endpoint and wait (1 s at most) until its port is free again.

        Closing or unbinding a socket releases its port asynchronously; on the
        shared context no ``term()`` waits for it, so the monitor's CLOSED event does.
        """
        address = f"{self._control}-monitor-{next(_serial)}"
        try:
            sock.monitor(address, zmq.EVENT_CLOSED)
            monitor = self._context.socket(zmq.PAIR)
            try:
                monitor.linger = 0
                monitor.connect(address)
                sock.unbind(endpoint)
                monitor.poll(1000)
            finally:
                sock.disable_monitor()
                monitor.close(0)
        except zmq.ZMQError as exc:  # pragma: no cover - the port is then released a little later
            log.debug("forwarder: unbinding %s: %s", endpoint, exc)


def _bind_error(address: BusAddress, exc: zmq.ZMQError) -> BusError:
    if exc.errno == zmq.EADDRINUSE:
        reason = "address already in use (another forwarder, or an mcl program hosting the bus?)"
    else:
        reason = str(exc)
    error = BusError(f"cannot bind the bus {address} (ports {address.port} and {address.port + 1}): {reason}")
    error.errno = exc.errno  # type: ignore[attr-defined]
    return error


# -- in-process shortcut -----------------------------------------------------------------
_local: dict[BusAddress, Forwarder] = {}  # serving forwarders of this process with inproc endpoints
_local_pid = os.getpid()
_local_lock = threading.Lock()


def _register(forwarder: Forwarder) -> None:
    global _local_pid
    if forwarder._inproc is None:
        return
    with _local_lock:
        if _local_pid != os.getpid():  # a forked child: its parent's forwarders do not run here
            _local.clear()
            _local_pid = os.getpid()
        _local[parse_bus(forwarder.address)] = forwarder


def _unregister(forwarder: Forwarder) -> None:
    with _local_lock:
        for key in [k for k, f in _local.items() if f is forwarder]:
            del _local[key]


def local_endpoints(address: BusAddress) -> tuple[zmq.Context, str, str] | None:
    """(context, publish endpoint, subscribe endpoint) of a forwarder serving `address` in this process."""
    with _local_lock:
        if _local_pid != os.getpid():
            return None
        forwarder = _local.get(address)
        if forwarder is None or forwarder._inproc is None or not forwarder.serving:
            return None
        return forwarder._context, forwarder._inproc + "/pub", forwarder._inproc + "/sub"


# -- zero-configuration hosting --------------------------------------------------------
class BusLease:
    """A hold on the hosting forwarder of a bus; the last close() stops it."""

    def __init__(self, address: BusAddress) -> None:
        self.address = address
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _release(self.address)


_hosts: dict[BusAddress, list[Any]] = {}  # address -> [Forwarder, lease count]
_hosts_pid = os.getpid()
_hosts_lock = threading.Lock()


def lease_bus(address: BusAddress) -> BusLease:
    """Take part in hosting the bus at `address` (one hosting forwarder per process)."""
    global _hosts_pid
    with _hosts_lock:
        if _hosts_pid != os.getpid():  # a forked child owns none of its parent's threads
            _hosts.clear()
            _hosts_pid = os.getpid()
        entry = _hosts.get(address)
        if entry is None:
            entry = _hosts[address] = [Forwarder(address, retry_s=HOST_RETRY_S), 0]
        entry[1] += 1
    # Whether this process serves the bus decides how its clients connect (inproc or TCP):
    # wait for the first attempt to bind (a millisecond or so).
    entry[0]._tried.wait(1.0)
    return BusLease(address)


def hosting(address: BusAddress) -> bool:
    """True when this process currently serves the bus at `address`."""
    with _hosts_lock:
        entry = _hosts.get(address)
        return entry is not None and entry[0].serving


def _release(address: BusAddress) -> None:
    with _hosts_lock:
        if _hosts_pid != os.getpid():
            return
        entry = _hosts.get(address)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _hosts[address]
    entry[0].close()


@atexit.register
def _close_hosts() -> None:
    with _hosts_lock:
        if _hosts_pid != os.getpid():
            return
        entries = list(_hosts.values())
        _hosts.clear()
    for forwarder, _ in entries:
        forwarder.close()
