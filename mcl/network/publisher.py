"""Publisher: sends messages on topics of a bus, with sequence numbers and end-of-stream."""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import msgpack
import zmq

from mcl.checks import MAX_C_INT, check_flag, check_int, check_number, check_text
from mcl.exceptions import BusError
from mcl.message import Message, encode
from mcl.network import wire
from mcl.network._common import ConnectionWatch, endpoints, make_id, make_socket, resolve
from mcl.network.address import BusAddress
from mcl.network.forwarder import DEFAULT_HWM
from mcl.network.security import CurveClient
from mcl.timeutil import check_timeout

__all__ = ["Publisher"]

log = logging.getLogger("mcl.network")

_DRAIN_EVERY = 256  # publishes between two reads of the subscription messages
DEFAULT_STARTUP_WAIT_S = 2.0  # the first publish waits at most this long for the bus's subscriptions
_ZERO_COPY_BYTES = 65536  # pyzmq's copy threshold: larger frames are sent without a copy
_SNDMORE = int(zmq.SNDMORE)  # a plain int: pyzmq converts an enum flag on every call
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
_MAX_JOINED = 10_000  # subscriber ids remembered for the end-of-stream table (forged ones are bounded)
_pack_meta = wire.META.pack
_time_ns = time.time_ns


def _as_bytes(payload: Any) -> Any:
    """What is sent for a payload: a buffer as is, a Message encoded, any other value msgpack-encoded."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return payload
    if isinstance(payload, Message):
        return payload.encode()
    return encode(payload)


class Publisher:
    """Publishes messages on a bus (None = the default bus; see :mod:`mcl.network.address`).

    ``publish(topic, payload)`` sends bytes verbatim, a :class:`mcl.Message`
    as ``msg.encode()`` and any other value as ``mcl.message.encode(value)``.
    Each message carries this publisher's :attr:`id`, a sequence number per
    topic (from 0) and the send time, so subscribers count what they miss.

    Start-up: the first publish waits (at most `startup_wait` seconds,
    default 2) until the subscriptions already on the bus have reached this
    publisher (:meth:`wait_for_bus`): the first message reaches every
    subscriber that was on the bus before, and those count from sequence 0
    what they miss. A forwarder of mcl answers within milliseconds; a bus
    without forwarder (or a foreign one) costs the whole wait, once.

    Options: `hwm` (messages queued towards the forwarder), `send_timeout`
    (seconds a publish waits when that queue is full; 0, the default, never
    waits: ZeroMQ drops and the subscribers count the gap; a replay waits),
    `close_timeout` (seconds
    ``close()`` waits at most for the subscribers to acknowledge the end of
    stream; 0 = send it once and do not wait: a subscriber must be receiving, in
    another thread or process, to acknowledge), `provide` (help serve the bus; default: any
    bus on loopback), `curve` (:class:`~mcl.network.security.CurveClient`;
    default from $MCL_CURVE_SECRET / $MCL_CURVE_SERVER), `id`.

    Not thread-safe: use one publisher per thread. A context manager; ``close()``
    is idempotent.
    """

    def __init__(
        self,
        bus: str | BusAddress | None = None,
        *,
        hwm: int = DEFAULT_HWM,
        close_timeout: float = 1.0,
        provide: bool | None = None,
        curve: CurveClient | None = None,
        id: str | None = None,
        startup_wait: float = DEFAULT_STARTUP_WAIT_S,
        send_timeout: float = 0.0,
    ) -> None:
        self._sock: zmq.Socket | None = None
        self._lease = None
        # The options before any socket (ArgumentError naming each; ZeroMQ's options are C ints of ms).
        check_int(hwm, "hwm", minimum=0, maximum=MAX_C_INT, unit="messages")
        check_timeout(close_timeout, "close_timeout", none_ok=False)
        check_timeout(startup_wait, "startup_wait", none_ok=False)
        check_number(send_timeout, "send_timeout", minimum=0, maximum=MAX_C_INT // 1000, unit="s")
        check_text(id, "id", none_ok=True)
        if provide is not None:
            check_flag(provide, "provide")
        self.id: str = id if id is not None else make_id()
        self._idb = self.id.encode()
        self._ack_prefix = wire.ACK_PREFIX + self._idb + b"."
        self._pack_data = struct.Struct(wire.META.format + f"{len(self._idb)}s").pack  # metadata + id in one call
        self._close_timeout = close_timeout
        self._topics: dict[str, bytes] = {}
        self._seqs: dict[bytes, int] = {}  # topic -> next sequence number
        self._subscribers: set[bytes] = set()  # ids of the subscribers attached now
        self._joined: dict[bytes, dict[bytes, int]] = {}  # subscriber -> next sequences when first seen
        self._first_ns: dict[bytes, int] = {}  # topic -> time_ns just before its sequence 0 was sent
        self._acked: set[bytes] = set()
        self._countdown = _DRAIN_EVERY
        self._startup_wait = startup_wait
        self._bus_ready = startup_wait <= 0  # True once the forwarder's READY_TOPIC was seen (or no wait)
        self._watch: ConnectionWatch | None = None
        self.dropped = 0  # messages not sent: the queue stayed full for send_timeout
        self._first_flags = _SNDMORE  # flags of a message's first frame (NOBLOCK added after a timeout)
        self.peak_subscribers = 0  # the most subscribers seen attached at once
        self._address, self._lease = resolve(bus, provide, curve)
        try:
            context, endpoint, _ = endpoints(self._address, curve)
            sock = self._sock = make_socket(zmq.XPUB, self._address, hwm, curve, context)
            if send_timeout > 0:
                sock.setsockopt(zmq.XPUB_NODROP, 1)
                sock.sndtimeo = max(1, int(send_timeout * 1000))
            if context is None:  # TCP: say so when no forwarder answers
                self._watch = ConnectionWatch(sock, self._address, "publisher")
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise BusError(f"cannot connect a publisher to {self._address}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    # -- properties -------------------------------------------------------------------
    @property
    def bus(self) -> str:
        """The bus address this publisher sends to."""
        return str(self._address)

    @property
    def closed(self) -> bool:
        return self._sock is None

    @property
    def subscribers(self) -> int:
        """How many subscribers are attached to the bus now (as far as seen)."""
        if self._sock is not None:
            self._drain()
        return len(self._subscribers)

    @property
    def connected(self) -> bool | None:
        """True once a forwarder answered (TCP), None when unknown (in-process)."""
        return None if self._watch is None else self._watch.connected

    @property
    def sent(self) -> dict[str, int]:
        """Messages published so far, per topic."""
        return {t.decode(): n for t, n in self._seqs.items()}

    # -- publishing -------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes | Message | Any) -> None:
        """Send `payload` on `topic`; a full queue: dropped (counted by subscribers), or waited for up to `send_timeout`."""
        sock = self._sock
        if sock is None:
            raise RuntimeError("Cannot publish on a closed Publisher.")
        if not self._bus_ready:
            self.wait_for_bus()
        tb = self._topics.get(topic)
        if tb is None:
            tb = self._add_topic(topic)
        data = payload if type(payload) is bytes else _as_bytes(payload)
        seqs = self._seqs
        seq = seqs.get(tb, 0)
        seqs[tb] = seq + 1
        send = sock.send
        try:
            send(tb, self._first_flags)
        except zmq.Again:  # full for send_timeout: dropped (a gap for the subscribers)
            self._on_full()
            return
        if self._first_flags != _SNDMORE:
            self._first_flags = _SNDMORE  # the bus takes messages again: wait again when full
        send(self._pack_data(1, 0, seq, _time_ns(), self._idb), _SNDMORE)
        if len(data) < _ZERO_COPY_BYTES:
            send(data)
        else:  # large payloads: hand the buffer to ZeroMQ instead of copying it
            send(data, copy=False)
        self._countdown -= 1
        if self._countdown <= 0:
            self._countdown = _DRAIN_EVERY
            self._drain()

    def publish_many(self, messages: Iterable[tuple[str, bytes | Message | Any]]) -> int:
        """Send each ``(topic, payload)`` of `messages` in order, exactly as :meth:`publish` would.

        The same messages on the wire, with less Python overhead per message
        (e.g. a replay publishing a batch of records); returns how many were sent.
        """
        sock = self._sock
        if sock is None:
            raise RuntimeError("Cannot publish on a closed Publisher.")
        if not self._bus_ready:
            self.wait_for_bus()
        topics = self._topics
        seqs = self._seqs
        send = sock.send
        pack = self._pack_data
        idb = self._idb
        n = 0
        for topic, payload in messages:
            tb = topics.get(topic)
            if tb is None:
                tb = self._add_topic(topic)
            data = payload if type(payload) is bytes else _as_bytes(payload)
            seq = seqs.get(tb, 0)
            seqs[tb] = seq + 1
            try:
                send(tb, self._first_flags)
            except zmq.Again:
                self._on_full()
                continue
            if self._first_flags != _SNDMORE:
                self._first_flags = _SNDMORE
            send(pack(1, 0, seq, _time_ns(), idb), _SNDMORE)
            if len(data) < _ZERO_COPY_BYTES:
                send(data)
            else:
                send(data, copy=False)
            n += 1
        self._countdown -= n
        if self._countdown <= 0:
            self._countdown = _DRAIN_EVERY
            self._drain()
        return n

    def publish_time(self, log_ns: int, speed: float) -> None:
        """Tell the bus which log time this publisher plays now (a replay's clock; see :mod:`mcl.network.wire`).

        `log_ns` is UTC ns of the log, `speed` log seconds per wall second
        (0 paused, ``math.inf`` as fast as possible). Ordinary subscribers skip it.
        """
        sock = self._sock
        if sock is None:
            raise RuntimeError("Cannot publish on a closed Publisher.")
        now = _time_ns()
        try:  # best effort: a full queue skips this one (the next comes within 0.2 s), never waits
            sock.send(wire.TIME_TOPIC, _SNDMORE_NOBLOCK)
        except zmq.Again:
            return
        sock.send(self._pack_data(1, wire.KIND_TIME, 0, now, self._idb), _SNDMORE)
        sock.send(wire.TIME.pack(log_ns, now, speed))

    def _on_full(self) -> None:
        """A message not sent: the queue stayed full for send_timeout. Until one goes through,
        the next ones do not wait (a dead bus costs one timeout, not one per message)."""
        self.dropped += 1
        self._first_flags = _SNDMORE_NOBLOCK

    def _add_topic(self, topic: str) -> bytes:
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a str, not {type(topic).__name__}")
        tb = topic.encode("utf-8")
        self._topics[topic] = tb
        if tb not in self._first_ns:  # when sequence 0 goes out (end of stream: heads missed from 0)
            self._first_ns[tb] = _time_ns()
        return tb

    # -- subscribers --------------------------------------------------------------------
    def wait_for_bus(self, timeout: float | None = None) -> bool:
        """Wait until the subscriptions already on the bus have reached this publisher.

        The forwarder sends a newly connected publisher every subscription it
        holds, in byte order, its own :data:`~mcl.network.wire.READY_TOPIC`
        last; once that is seen, a message published reaches every subscriber
        that was on the bus. Waits at most `timeout` seconds (None: the
        `startup_wait` option); the first publish calls it. False on timeout
        (no forwarder, or one that is not mcl's), and it is not waited for again.
        """
        sock = self._sock
        timeout = check_timeout(timeout)
        if sock is None:
            raise RuntimeError("Cannot wait for the bus on a closed Publisher.")
        limit = self._startup_wait if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            self._drain()
            if self._bus_ready:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._bus_ready = True  # bounded: the first publish waits once
                if self._watch is not None:
                    self._watch.warn(limit)
                log.debug("publisher %s: the bus %s did not answer within %.1f s", self.id, self._address, limit)
                return False
            sock.poll(max(1, int(min(remaining, 0.1) * 1000)), zmq.POLLIN)

    def wait_for_subscribers(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Wait until `n` subscribers are attached to the bus; False on timeout.

        A subscriber counts once its topic subscriptions have reached this
        publisher: from then on it gets every message published (or counts
        what it misses).
        """
        check_int(n, "n", minimum=0, maximum=MAX_C_INT, unit="subscribers")
        check_timeout(timeout, "timeout", none_ok=False, infinite_ok=True)
        sock = self._sock
        if sock is None:
            raise RuntimeError("Cannot wait for subscribers on a closed Publisher.")
        deadline = time.monotonic() + timeout
        while True:
            self._drain()
            if len(self._subscribers) >= n:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sock.poll(max(1, int(min(remaining, 0.5) * 1000)), zmq.POLLIN)

    def _drain(self) -> None:
        """Read the subscription messages that reached this publisher."""
        sock = self._sock
        assert sock is not None
        while True:
            try:
                msg = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not msg:
                continue
            subscribe = msg[0] == 1
            body = msg[1:]
            if body.startswith(wire.SUB_PREFIX):
                sid = body[len(wire.SUB_PREFIX) :]
                if subscribe and len(self._subscribers) < _MAX_JOINED:  # forged announcements are bounded
                    self._subscribers.add(sid)
                    if len(self._subscribers) > self.peak_subscribers:
                        self.peak_subscribers = len(self._subscribers)
                    if sid not in self._joined and len(self._joined) < _MAX_JOINED:
                        self._joined[sid] = dict(self._seqs)
                elif not subscribe:
                    self._subscribers.discard(sid)
            elif body == wire.READY_TOPIC:
                if subscribe:
                    self._bus_ready = True
            elif subscribe and body.startswith(self._ack_prefix):
                self._acked.add(body[len(self._ack_prefix) :])

    # -- end of stream ------------------------------------------------------------------
    def _send_end(self) -> None:
        sock = self._sock
        assert sock is not None
        table = {
            "counts": self._seqs,
            "joined": {sid: self._joined[sid] for sid in self._subscribers if sid in self._joined},
            "first_ns": self._first_ns,
        }
        sock.send(wire.END_TOPIC, _SNDMORE)
        sock.send(_pack_meta(1, wire.KIND_END, 0, _time_ns()) + self._idb, _SNDMORE)
        sock.send(msgpack.packb(table, use_bin_type=True))

    def _finish(self) -> None:
        """Send end-of-stream until every attached subscriber acknowledged it, or timeout."""
        sock = self._sock
        assert sock is not None
        deadline = time.monotonic() + self._close_timeout
        interval = 0.02
        while True:
            self._drain()
            self._send_end()
            resend = time.monotonic() + interval
            while True:
                if not (self._subscribers - self._acked):
                    return
                now = time.monotonic()
                if now >= deadline:
                    log.debug("publisher %s: %d subscriber(s) did not acknowledge the end", self.id,
                              len(self._subscribers - self._acked))
                    return
                if now >= resend:
                    break
                if sock.poll(max(1, int((min(resend, deadline) - now) * 1000)), zmq.POLLIN):
                    self._drain()
            interval = min(interval * 2, 0.2)

    def close(self) -> None:
        """Send end-of-stream (see `close_timeout`), then close the socket (linger 0)."""
        sock = self._sock
        try:
            if sock is not None and self._seqs:
                try:
                    if self._close_timeout > 0:
                        self._finish()
                    else:
                        self._drain()
                        self._send_end()
                except zmq.ZMQError as exc:  # a closing context: nothing left to tell
                    log.debug("publisher %s: end of stream not sent: %s", self.id, exc)
        finally:
            self._sock = None
            if self._watch is not None:
                self._watch.close()
            if sock is not None:
                sock.close(0)
            if self._lease is not None:
                self._lease.close()
                self._lease = None

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Publisher {self.id} on {self._address}{' closed' if self._sock is None else ''}>"
