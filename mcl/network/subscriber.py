"""Subscriber: receives messages of chosen topics from a bus and counts what it misses."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

import msgpack
import zmq

from mcl.exceptions import BusError
from mcl.message import decode
from mcl.network import wire
from mcl.network._common import endpoints, make_id, make_socket, resolve
from mcl.network.address import BusAddress
from mcl.network.forwarder import DEFAULT_HWM
from mcl.network.security import CurveClient

__all__ = ["Received", "Subscriber"]

log = logging.getLogger("mcl.network")

_MAX_CLOCKS = 1024  # replay clocks kept (the oldest goes first)
_unpack_meta = wire.META.unpack_from
_META_SIZE = wire.META.size
_VERSION = wire.VERSION
_time_ns = time.time_ns
_NOBLOCK = int(zmq.NOBLOCK)  # a plain int: pyzmq converts an enum flag on every call
_ACK_KEEP_S = 10.0  # seconds an end-of-stream acknowledgement stays subscribed
_POLL_SLICE_MS = 500  # a blocking receive wakes this often (Ctrl-C stays prompt)


class Received:
    """One message received from the bus.

    ``topic`` (str), ``payload`` (bytes, exactly as published), ``message``
    (the payload decoded with :func:`mcl.message.decode`, on first access),
    ``publisher`` (the sender's id; "" for a foreign two-frame message),
    ``sequence`` (per publisher and topic, from 0; -1 when unknown),
    ``sent_ns`` (sender's ``time.time_ns()``; 0 when unknown) and
    ``received_ns`` (receiver's ``time.time_ns()``).
    """

    __slots__ = ("topic", "payload", "publisher", "sequence", "sent_ns", "received_ns", "_message")

    def __init__(
        self, topic: str, payload: bytes, publisher: str, sequence: int, sent_ns: int, received_ns: int
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.publisher = publisher
        self.sequence = sequence
        self.sent_ns = sent_ns
        self.received_ns = received_ns
        self._message: Any = _UNSET

    @property
    def message(self) -> Any:
        """The decoded payload (a Message, GenericMessage or plain value); MessageError if not msgpack."""
        if self._message is _UNSET:
            self._message = decode(self.payload)
        return self._message

    def __repr__(self) -> str:
        return (
            f"Received(topic={self.topic!r}, publisher={self.publisher!r}, sequence={self.sequence}, "
            f"payload=<{len(self.payload)} bytes>)"
        )


_UNSET = object()


def _normalize_topics(topics: Iterable[str] | str | None) -> list[str] | None:
    if topics is None:
        return None
    if isinstance(topics, str):
        return [topics]
    out = list(topics)
    for topic in out:
        if not isinstance(topic, str):
            raise TypeError(f"topics must be strings, not {type(topic).__name__}")
    return out


class Subscriber:
    """Receives the messages of some topics of a bus (None = the default bus).

    `topics`: None for every topic, a string or strings; each is a prefix
    (``"cam"`` gets ``"camera/left"``) unless `exact` is true. Receive with
    :meth:`recv` (timeout in seconds, None on timeout), :meth:`recv_batch`,
    or by iterating (blocking).

    Loss accounting: every publisher numbers its messages per topic, so a gap
    in the sequence is counted as missed (a high-water-mark drop anywhere on
    the way, or a forwarder that went away). A closing publisher sends an
    end-of-stream table, which lets the subscriber count the messages missed
    at the end (and at the start). Counting starts at the first message of a
    publisher and topic, or when the publisher first saw this subscriber.
    :meth:`losses` and :attr:`lost` report the counts.

    Options: `hwm` (messages queued on the receiving side), `provide` (help
    serve the bus; default: only the default bus on loopback), `curve`
    (:class:`~mcl.network.security.CurveClient`; default from the environment),
    `clock` (also receive replays' time messages into :attr:`clocks`,
    ``{publisher id: (log_ns, wall_ns, speed)}``; see :mod:`mcl.network.wire`).
    Not thread-safe. A context manager; ``close()`` is idempotent.
    """

    def __init__(
        self,
        topics: Iterable[str] | str | None = None,
        bus: str | BusAddress | None = None,
        *,
        exact: bool = False,
        hwm: int = DEFAULT_HWM,
        provide: bool | None = None,
        curve: CurveClient | None = None,
        clock: bool = False,
    ) -> None:
        self._sock: zmq.Socket | None = None
        # publisher id -> (log_ns, wall_ns, speed) of its last replay time message (clock=True)
        self.clocks: dict[str, tuple[int, int, float]] = {}
        self._lease = None
        self.id: str = make_id()
        self._idb = self.id.encode()
        names = _normalize_topics(topics)
        self.topics: list[str] | None = names
        self.exact = exact
        encoded = None if names is None else [t.encode("utf-8") for t in names]
        self._prefixes: tuple[bytes, ...] | None = None if encoded is None else tuple(encoded)
        self._exact: frozenset[bytes] | None = frozenset(encoded) if (exact and encoded is not None) else None
        # (publisher, topic) -> [next sequence, first sequence received, topic str, publisher str]
        self._streams: dict[tuple[bytes, bytes], list[Any]] = {}
        self._lost: dict[tuple[bytes, bytes], int] = {}
        self._names: dict[bytes, str] = {}
        self._ended: dict[bytes, float] = {}  # publisher -> monotonic time its end was seen
        self._acks: list[tuple[float, bytes]] = []
        self.malformed = 0  # messages dropped because they were not in the mcl wire format
        self._address, self._lease = resolve(bus, provide)
        try:
            context, _, endpoint = endpoints(self._address, curve)
            sock = self._sock = make_socket(zmq.SUB, self._address, hwm, curve, context)
            # Subscribed before connecting, the topics reach the forwarder
            # before the announcement (which sorts last: 0xFF prefix).
            for prefix in encoded if encoded is not None else [b""]:
                sock.subscribe(prefix)
            sock.subscribe(wire.END_TOPIC)
            if clock:
                sock.subscribe(wire.TIME_TOPIC)
            sock.subscribe(wire.SUB_PREFIX + self._idb)
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise BusError(f"cannot connect a subscriber to {self._address}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    # -- properties -------------------------------------------------------------------
    @property
    def bus(self) -> str:
        """The bus address this subscriber listens to."""
        return str(self._address)

    @property
    def closed(self) -> bool:
        return self._sock is None

    @property
    def socket(self) -> zmq.Socket:
        """The ZeroMQ socket, for a ``zmq.Poller`` (POLLIN); receive through this object."""
        if self._sock is None:
            raise RuntimeError("Cannot use a closed Subscriber.")
        return self._sock

    def losses(self) -> dict[tuple[str, str], int]:
        """Messages missed so far: (publisher id, topic) -> count (only non-zero counts)."""
        return {(p.decode(errors="replace"), t.decode(errors="replace")): n for (p, t), n in self._lost.items() if n}

    @property
    def lost(self) -> int:
        """Total messages missed so far."""
        return sum(self._lost.values())

    # -- receiving ------------------------------------------------------------------------
    def recv(self, timeout: float | None = None) -> Received | None:
        """The next message; None when none came within `timeout` seconds (None = wait)."""
        batch = self._wait_and_take(1, timeout)
        return batch[0] if batch else None

    def recv_batch(self, max_count: int = 1000, timeout: float | None = None) -> list[Received]:
        """Up to `max_count` messages: waits up to `timeout` for the first, then takes what is queued."""
        return self._wait_and_take(max_count, timeout)

    def __iter__(self) -> Iterator[Received]:
        while self._sock is not None:
            received = self.recv()
            if received is not None:
                yield received

    def _wait_and_take(self, max_count: int, timeout: float | None) -> list[Received]:
        sock = self._sock
        if sock is None:
            raise RuntimeError("Cannot receive on a closed Subscriber.")
        batch: list[Received] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._take(sock, batch, max_count)
            if batch:
                return batch
            if deadline is None:
                wait_ms = _POLL_SLICE_MS
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return batch
                wait_ms = max(1, min(_POLL_SLICE_MS, int(remaining * 1000)))
            sock.poll(wait_ms, zmq.POLLIN)

    def _take(self, sock: zmq.Socket, batch: list[Received], max_count: int) -> None:
        """Append the queued messages (up to `max_count` in `batch`) and account for them; never waits.

        The hot path: plain ``recv`` calls (``recv_multipart`` and every
        ``RCVMORE`` query cost about a microsecond each in pyzmq), the frames of
        a message being queued together. Only the metadata frame is received as
        a ``zmq.Frame``, whose ``more`` tells a foreign two-frame message from an
        mcl one. A frame that cannot start a valid message (a one-frame message,
        frames left by a longer one) makes the metadata check fail; the rest of
        that message is then skipped with ``RCVMORE`` so the next one is read
        from its first frame.
        """
        recv = sock.recv
        append = batch.append
        streams = self._streams
        lost = self._lost
        exact = self._exact
        n = len(batch)
        while n < max_count:
            try:
                topic_b = recv(_NOBLOCK)
            except zmq.Again:
                return
            try:
                meta_frame = recv(_NOBLOCK, False)
            except zmq.Again:  # a one-frame message
                self.malformed += 1
                return
            meta = meta_frame.bytes
            if not meta_frame.more:  # two frames: a foreign [topic, payload]
                received = self._foreign(topic_b, meta)
                if received is not None:
                    append(received)
                    n += 1
                continue
            payload = recv(_NOBLOCK)  # the frames of a message are queued together
            if len(meta) < _META_SIZE or meta[0] != _VERSION:
                self._skip(sock)
                continue
            _, kind, seq, sent_ns = _unpack_meta(meta)
            if kind:
                if kind == wire.KIND_END:
                    self._on_end(meta[_META_SIZE:], payload)
                elif kind == wire.KIND_TIME and len(payload) == wire.TIME.size:
                    pub_b = meta[_META_SIZE:]
                    clocks = self.clocks
                    clocks[self._names.get(pub_b) or pub_b.decode("utf-8", "replace")] = wire.TIME.unpack(payload)
                    if len(clocks) > _MAX_CLOCKS:  # forged publisher ids must not grow it
                        del clocks[next(iter(clocks))]
                continue
            if exact is not None and topic_b not in exact:
                continue
            key = (meta[_META_SIZE:], topic_b)
            stream = streams.get(key)
            if stream is None:
                stream = streams[key] = self._new_stream(key, seq)
            else:
                due = stream[0]
                if seq >= due:
                    if seq != due:
                        lost[key] = lost.get(key, 0) + seq - due
                    stream[0] = seq + 1
            append(Received(stream[2], payload, stream[3], seq, sent_ns, _time_ns()))
            n += 1

    def _new_stream(self, key: tuple[bytes, bytes], seq: int) -> list[Any]:
        """The accounting of a (publisher, topic) seen for the first time (or since its end)."""
        names = self._names
        pub_b, topic_b = key
        topic = names.get(topic_b)
        if topic is None:
            topic = names[topic_b] = topic_b.decode("utf-8", "replace")
        publisher = names.get(pub_b)
        if publisher is None:
            publisher = names[pub_b] = pub_b.decode("utf-8", "replace")
        return [seq + 1, seq, topic, publisher]

    def _skip(self, sock: zmq.Socket) -> None:
        """A malformed message: count it and skip what is left of it."""
        self.malformed += 1
        for _ in range(1 << 16):
            if not sock.getsockopt(zmq.RCVMORE):
                return
            sock.recv(_NOBLOCK)

    def _foreign(self, topic_b: bytes, payload: bytes) -> Received | None:
        """A message not in the mcl format: [topic, payload] is accepted without accounting."""
        if topic_b.startswith(wire.CONTROL):
            self.malformed += 1
            return None
        if self._exact is not None and topic_b not in self._exact:
            return None
        return Received(topic_b.decode("utf-8", "replace"), payload, "", -1, 0, _time_ns())

    def _matches(self, topic_b: bytes) -> bool:
        if self._prefixes is None:
            return True
        if self._exact is not None:
            return topic_b in self._exact
        return topic_b.startswith(self._prefixes)

    def _on_end(self, pub_b: bytes, payload: bytes) -> None:
        """A publisher closed: count what was missed at its tail, then acknowledge."""
        sock = self._sock
        assert sock is not None
        now = time.monotonic()
        self._forget_acks(now)
        if pub_b in self._ended:
            return
        try:
            table = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            counts = table["counts"]
            joined = table["joined"].get(self._idb)
        except Exception as exc:  # a foreign or damaged end-of-stream
            log.warning("ignoring a malformed end-of-stream from %r: %s", pub_b, exc)
            return
        self._ended[pub_b] = now
        for topic_b, count in counts.items():
            if not isinstance(topic_b, bytes) or not self._matches(topic_b):
                continue
            key = (pub_b, topic_b)
            first_due = None if joined is None else joined.get(topic_b, 0)
            stream = self._streams.pop(key, None)
            expected, first = (None, None) if stream is None else (stream[0], stream[1])
            if expected is None:  # nothing received on that topic
                missed = 0 if first_due is None else count - first_due
            else:
                missed = count - expected
                if first_due is not None and first is not None and first > first_due:
                    missed += first - first_due
            if missed > 0:
                self._lost[key] = self._lost.get(key, 0) + missed
        ack = wire.ack_topic(pub_b, self._idb)
        sock.subscribe(ack)
        self._acks.append((now, ack))

    def _forget_acks(self, now: float) -> None:
        """Unsubscribe acknowledgements old enough for their publisher to have seen them."""
        sock = self._sock
        assert sock is not None
        while self._acks and now - self._acks[0][0] > _ACK_KEEP_S:
            sock.unsubscribe(self._acks.pop(0)[1])
        if len(self._ended) > 1024:
            for pub_b, seen in list(self._ended.items()):
                if now - seen > 60.0:
                    del self._ended[pub_b]

    def close(self) -> None:
        """Close the socket (linger 0); idempotent."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close(0)
        if self._lease is not None:
            self._lease.close()
            self._lease = None

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        topics = "all topics" if self.topics is None else ", ".join(map(repr, self.topics))
        return f"<Subscriber {topics} on {self._address}{' closed' if self._sock is None else ''}>"
