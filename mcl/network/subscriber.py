"""Subscriber: receives messages of chosen topics from a bus and counts what it misses."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import msgpack
import zmq

from mcl.checks import MAX_C_INT, MAX_INT64, check_flag, check_int, check_names
from mcl.exceptions import BusError
from mcl.message import decode
from mcl.network import wire
from mcl.network._common import ConnectionWatch, endpoints, make_id, make_socket, resolve
from mcl.network.address import BusAddress
from mcl.network.forwarder import DEFAULT_HWM, DEFAULT_MAX_MESSAGE_BYTES
from mcl.network.security import CurveClient
from mcl.timeutil import NS_PER_S, check_timeout

__all__ = ["LossSpan", "Received", "StreamStats", "Subscriber", "SubscriberStats"]

log = logging.getLogger("mcl.network")

_MAX_CLOCKS = 1024  # replay clocks kept (the oldest goes first)
_unpack_meta = wire.META.unpack_from
_META_SIZE = wire.META.size
_VERSION = wire.VERSION
_time_ns = time.time_ns
_NOBLOCK = int(zmq.NOBLOCK)  # a plain int: pyzmq converts an enum flag on every call
_ACK_KEEP_S = 10.0  # seconds an end-of-stream acknowledgement stays subscribed
_POLL_SLICE_MS = 500  # a blocking receive wakes this often (Ctrl-C stays prompt)
DEFAULT_MAX_TOPIC_BYTES = 4096  # a longer topic is dropped as malformed (the native format stores up to 65535)
DEFAULT_MAX_STREAMS = 100_000  # (publisher, topic) pairs accounted at once; more are dropped as malformed
MAX_RATE_PER_S = 10_000_000  # messages per second per stream no bus reaches: a gap claiming more is suspect
_GAP_SLACK = 100_000  # a gap this small is always plausible (clock skew between hosts, bursts)
_CLOCK_SKEW_NS = 60 * NS_PER_S  # sent times further than this in the future are not believed
_MAX_ID_BYTES = 1024  # a longer publisher id is dropped as malformed
_MAX_SPANS = 100  # loss spans kept per stream (the most recent); the counts stay exact
_MAX_SPAN_STREAMS = 10_000  # streams whose spans are kept (beyond, only the counts)
_MAX_END_TOPICS = 100_000  # entries of an end-of-stream table
_OVERFLOW = (b"*", b"*")  # the (publisher, topic) of end-of-stream counts beyond the bound on keys
_MAX_ACKS = 1024  # end-of-stream acknowledgements subscribed at once (10 s each)
_MAX_ENDED = 10_000  # publishers whose end was seen, remembered (a repeated end is ignored)


@dataclass(frozen=True, slots=True)
class LossSpan:
    """Where messages of one (publisher, topic) were lost: a gap in its sequence."""

    first: int  # the first sequence number missed
    count: int  # how many in a row
    after_ns: int  # the sender's time (time.time_ns) of the last message received before the gap
    before_ns: int  # the sender's time of the message (or end of stream) that revealed the gap


@dataclass(frozen=True, slots=True)
class StreamStats:
    """The accounting of one (publisher, topic)."""

    received: int = 0  # messages received
    lost: int = 0  # messages missed (sequence gaps, end-of-stream head and tail)
    suspect: int = 0  # sequence numbers or end-of-stream claims that cannot be true (not in lost)
    spans: tuple[LossSpan, ...] = ()  # where the losses happened (the last 100 gaps)


@dataclass(frozen=True, slots=True)
class SubscriberStats:
    """What a subscriber received, missed and dropped; from :meth:`Subscriber.stats`."""

    lost: int = 0  # total messages missed
    malformed: int = 0  # messages dropped because they were not valid wire format
    suspect: int = 0  # claims that cannot be true (not counted as lost)
    malformed_by_reason: dict[str, int] = field(default_factory=dict)  # reason -> messages dropped
    streams: dict[tuple[str, str], StreamStats] = field(default_factory=dict)  # (publisher id, topic) -> counts


def _plausible(since_ns: int, sent_ns: int) -> int:
    """The most messages a stream can have sent between two of its sender times."""
    now = _time_ns()
    sent_ns = min(sent_ns, now + _CLOCK_SKEW_NS)
    elapsed = max(0, sent_ns - since_ns)
    return _GAP_SLACK + elapsed * MAX_RATE_PER_S // NS_PER_S


def _parse_end(
    payload: bytes, subscriber: bytes
) -> tuple[dict[bytes, int], dict[bytes, int] | None, dict[bytes, int]] | None:
    """(counts, this subscriber's joined table, first send times) of an end-of-stream payload; None if not valid."""
    if len(payload) > 64 << 20:
        return None
    try:
        table = msgpack.unpackb(
            payload, raw=False, strict_map_key=False, max_map_len=_MAX_END_TOPICS, max_array_len=0, max_str_len=1 << 20,
        )
    except Exception:  # noqa: BLE001 - msgpack raises several types for bad input
        return None
    if not isinstance(table, dict):
        return None
    counts = table.get("counts")
    joined_all = table.get("joined", {})
    if not isinstance(counts, dict) or not isinstance(joined_all, dict):
        return None
    if not all(type(k) is bytes and type(v) is int and 0 <= v < 1 << 64 for k, v in counts.items()):
        return None
    joined = joined_all.get(subscriber)
    if joined is not None:
        if not isinstance(joined, dict) or not all(
            type(k) is bytes and type(v) is int and 0 <= v <= counts.get(k, 0) for k, v in joined.items()
        ):
            return None
    first_ns = table.get("first_ns", {})  # absent from the tables of older publishers
    if not isinstance(first_ns, dict) or not all(type(k) is bytes and type(v) is int for k, v in first_ns.items()):
        return None
    return counts, joined, first_ns



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
    names = check_names(topics, "topics")
    return None if names is None else list(names)


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
    publisher and topic, or when the publisher first saw this subscriber
    (from sequence 0 when it saw it before its first message).
    :meth:`losses` and :attr:`lost` report the counts.

    Everything received is checked before it is trusted: a message that is
    not valid wire format (or cannot be accounted) is dropped and counted by
    reason, a loss claim that cannot be true (a forged sequence number or
    end of stream) is counted as *suspect*, not as lost: :meth:`stats`.

    Options: `hwm` (messages queued on the receiving side), `provide` (help
    serve the bus; default: any bus on loopback), `curve`
    (:class:`~mcl.network.security.CurveClient`; default from the environment),
    `clock` (also receive replays' time messages into :attr:`clocks`,
    ``{publisher id: (log_ns, wall_ns, speed)}``; see :mod:`mcl.network.wire`),
    `max_message_bytes` (ZMQ_MAXMSGSIZE: a longer frame drops the connection
    that sent it; default 64 MiB), `max_topic_bytes` (longer topics are
    dropped; default 4096), `max_streams` (publisher and topic pairs
    accounted at once; default 100 000).
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
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_topic_bytes: int = DEFAULT_MAX_TOPIC_BYTES,
        max_streams: int = DEFAULT_MAX_STREAMS,
    ) -> None:
        self._sock: zmq.Socket | None = None
        # The options before any socket (ArgumentError naming each; ZeroMQ's options are C ints).
        check_int(hwm, "hwm", minimum=0, maximum=MAX_C_INT, unit="messages")
        check_int(max_message_bytes, "max_message_bytes", minimum=0, maximum=MAX_INT64, unit="bytes")
        check_int(max_topic_bytes, "max_topic_bytes", minimum=1, maximum=MAX_INT64, unit="bytes")
        check_int(max_streams, "max_streams", minimum=1, maximum=MAX_INT64, unit="streams")
        check_flag(exact, "exact")
        check_flag(clock, "clock")
        if provide is not None:
            check_flag(provide, "provide")
        # publisher id -> (log_ns, wall_ns, speed) of its last replay time message (clock=True)
        self.clocks: dict[str, tuple[int, int, float]] = {}
        self._watch: ConnectionWatch | None = None
        self._max_topic_bytes = max_topic_bytes
        self._max_streams = max_streams
        self._started_ns = _time_ns()
        # time_ns by which this subscriber was surely on the bus (it had received a message, or
        # wait_joined saw its announcement at the forwarder); None: not known yet
        self._joined_ns: int | None = None
        self._lease = None
        self.id: str = make_id()
        self._idb = self.id.encode()
        names = _normalize_topics(topics)
        self.topics: list[str] | None = names
        self.exact = exact
        encoded = None if names is None else [t.encode("utf-8") for t in names]
        self._prefixes: tuple[bytes, ...] | None = None if encoded is None else tuple(encoded)
        self._exact: frozenset[bytes] | None = frozenset(encoded) if (exact and encoded is not None) else None
        # (publisher, topic) -> [next sequence, first sequence received, topic str, publisher str,
        #                        last sent_ns, received, suspect]
        self._streams: dict[tuple[bytes, bytes], list[Any]] = {}
        self._ended_streams: dict[tuple[bytes, bytes], tuple[str, str, int, int]] = {}  # topic, publisher, received, suspect
        self._lost: dict[tuple[bytes, bytes], int] = {}
        self._spans: dict[tuple[bytes, bytes], deque[tuple[int, int, int, int]]] = {}
        self._suspect_claims: dict[tuple[bytes, bytes], int] = {}  # end-of-stream claims not believed
        self._malformed: dict[str, int] = {}  # reason -> messages dropped
        self._names: dict[bytes, str] = {}
        self._ended: dict[bytes, float] = {}  # publisher -> monotonic time its end was seen
        self._acks: list[tuple[float, bytes]] = []
        self._address, self._lease = resolve(bus, provide, curve)
        self._curve = curve
        try:
            context, _, endpoint = endpoints(self._address, curve)
            sock = self._sock = make_socket(zmq.SUB, self._address, hwm, curve, context, max_message_bytes)
            # Subscribed before connecting, the topics reach the forwarder
            # before the announcement (which sorts last: 0xFF prefix).
            for prefix in encoded if encoded is not None else [b""]:
                sock.subscribe(prefix)
            sock.subscribe(wire.END_TOPIC)
            if clock:
                sock.subscribe(wire.TIME_TOPIC)
            sock.subscribe(wire.SUB_PREFIX + self._idb)
            if context is None:  # TCP: say so when no forwarder answers
                self._watch = ConnectionWatch(sock, self._address, "subscriber")
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

    def wait_joined(self, timeout: float = 3.0) -> bool:
        """Wait until this subscriber's subscriptions are in place at the forwarder; False on timeout.

        From then on, every publisher that starts gets this subscriber's
        subscriptions before its first message (:meth:`Publisher.wait_for_bus`).
        A probe XPUB socket connects to the forwarder like a publisher and
        waits for this subscriber's announcement among the subscriptions it
        receives (then closes).
        """
        check_timeout(timeout, none_ok=False)
        if self._sock is None:
            raise RuntimeError("Cannot wait on a closed Subscriber.")
        context, endpoint, _ = endpoints(self._address, self._curve)
        probe = make_socket(zmq.XPUB, self._address, 1000, self._curve, context)
        wanted = b"\x01" + wire.SUB_PREFIX + self._idb
        deadline = time.monotonic() + timeout
        try:
            probe.connect(endpoint)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if probe.poll(max(1, int(min(remaining, 0.5) * 1000)), zmq.POLLIN):
                    if probe.recv() == wanted:
                        if self._joined_ns is None:
                            self._joined_ns = _time_ns()
                        return True
        finally:
            probe.close(0)

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
        check_int(max_count, "max_count", minimum=1, maximum=MAX_INT64, unit="messages")
        timeout = check_timeout(timeout, "timeout", infinite_ok=True)
        sock = self._sock
        if sock is None:
            raise RuntimeError("Cannot receive on a closed Subscriber.")
        batch: list[Received] = []
        deadline = None if timeout is None or timeout == math.inf else time.monotonic() + timeout
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

        Everything read is hostile until checked. Frames are received as
        ``zmq.Frame`` (whose ``more`` flag is free, where a ``RCVMORE`` query
        costs a microsecond) up to the metadata, so a message never takes a
        frame of the next one: a one-frame message is dropped alone; frames
        after the third of a longer message are dropped (a last lone frame,
        or a foreign [topic, payload] pair when valid). A dropped message is
        counted by reason (:meth:`stats`).
        """
        recv = sock.recv
        append = batch.append
        streams = self._streams
        exact = self._exact
        max_topic = self._max_topic_bytes
        n = len(batch)
        while n < max_count:
            try:
                first = recv(_NOBLOCK, False)
            except zmq.Again:
                return
            if not first.more:
                self._drop("one frame", None)
                continue
            second = recv(_NOBLOCK, False)  # the frames of a message are delivered together
            topic_b = first.bytes
            if not second.more:  # two frames: a foreign [topic, payload]
                received = self._foreign(topic_b, second.bytes)
                if received is not None:
                    append(received)
                    n += 1
                continue
            # The payload is taken as bytes (a Frame costs half a microsecond): frames after it,
            # from a longer message, start with the next read, end with a frame without MORE and
            # are dropped there as malformed, so they never join the next message.
            payload = recv(_NOBLOCK)
            meta = second.bytes
            if len(meta) < _META_SIZE or meta[0] != _VERSION:
                self._drop("bad metadata", sock)
                continue
            _, kind, seq, sent_ns = _unpack_meta(meta)
            if kind:
                if kind == wire.KIND_END and topic_b == wire.END_TOPIC:
                    self._on_end(meta[_META_SIZE:], payload, sent_ns)
                elif kind == wire.KIND_TIME and topic_b == wire.TIME_TOPIC:
                    if len(payload) != wire.TIME.size:
                        self._drop("bad time message", sock)
                        continue
                    pub_b = meta[_META_SIZE:]
                    clocks = self.clocks
                    clocks[self._names.get(pub_b) or pub_b.decode("utf-8", "replace")] = wire.TIME.unpack(payload)
                    if len(clocks) > _MAX_CLOCKS:  # forged publisher ids must not grow it
                        del clocks[next(iter(clocks))]
                else:
                    self._drop("unknown kind", sock)
                continue
            if exact is not None and topic_b not in exact:
                continue
            key = (meta[_META_SIZE:], topic_b)
            stream = streams.get(key)
            if stream is None:
                if len(topic_b) > max_topic:
                    self._drop("topic too long", None)
                    continue
                stream = self._new_stream(key, seq, sent_ns)
                if stream is None:
                    continue
            elif seq == stream[0]:  # the hot path: the next message of a stream
                stream[0] = seq + 1
                stream[4] = sent_ns
                stream[5] += 1
            else:
                self._out_of_sequence(key, stream, seq, sent_ns)
            append(Received(stream[2], payload, stream[3], seq, sent_ns, _time_ns()))
            n += 1

    def _out_of_sequence(self, key: tuple[bytes, bytes], stream: list[Any], seq: int, sent_ns: int) -> None:
        """A gap (lost messages), a restart, or a sequence that cannot be true (suspect)."""
        due = stream[0]
        stream[5] += 1
        if seq > due:
            gap = seq - due
            if gap > _plausible(stream[4], sent_ns):
                stream[6] += 1  # suspect: counted, not added to the loss, the stream is not moved
                return
            self._lost[key] = self._lost.get(key, 0) + gap
            self._add_spans(key, [(due, gap, stream[4], sent_ns)])
            stream[0] = seq + 1
            stream[4] = sent_ns
        elif seq == 0:  # the same publisher id numbering from 0 again: a restart, a new stream
            stream[0], stream[1], stream[4] = 1, 0, sent_ns
        else:  # a sequence already seen: a duplicate or a forgery
            stream[6] += 1

    def _add_spans(self, key: tuple[bytes, bytes], spans: list[tuple[int, int, int, int]]) -> None:
        kept = self._spans.get(key)
        if kept is None:
            if len(self._spans) >= _MAX_SPAN_STREAMS:
                return
            kept = self._spans[key] = deque(maxlen=_MAX_SPANS)
        kept.extend(spans)

    def _new_stream(self, key: tuple[bytes, bytes], seq: int, sent_ns: int) -> list[Any] | None:
        """The accounting of a (publisher, topic) seen for the first time (or since its end); None if refused."""
        if self._joined_ns is None:
            self._joined_ns = _time_ns()
        names = self._names
        pub_b, topic_b = key
        if topic_b.startswith(b"\xff"):
            self._drop("control topic", None)
            return None
        if len(pub_b) > _MAX_ID_BYTES:
            self._drop("publisher id too long", None)
            return None
        if len(self._streams) >= self._max_streams:
            self._drop("too many streams", None)
            return None
        topic = names.get(topic_b)
        if topic is None:
            try:
                topic = topic_b.decode("utf-8")
            except UnicodeDecodeError:
                self._drop("topic not UTF-8", None)
                return None
            if len(names) < 4 * self._max_streams:
                names[topic_b] = topic
        publisher = names.get(pub_b)
        if publisher is None:
            publisher = pub_b.decode("utf-8", "replace")
            if len(names) < 4 * self._max_streams:
                names[pub_b] = publisher
        # [next sequence, first sequence received, topic, publisher, last sent_ns, received, suspect]
        stream = [seq + 1, seq, topic, publisher, sent_ns, 1, 0]
        self._streams[key] = stream
        return stream

    def _drop(self, reason: str, sock: zmq.Socket | None) -> None:
        """A message that is not valid mcl wire format (or cannot be accounted): count it by reason.

        With `sock` (the message's third frame was read): the frames left of a
        longer message are skipped too (``RCVMORE``: slow, but only here).
        """
        by_reason = self._malformed
        by_reason[reason] = by_reason.get(reason, 0) + 1
        if sock is not None:
            for _ in range(1 << 16):
                if not sock.getsockopt(zmq.RCVMORE):
                    return
                sock.recv(_NOBLOCK, False)

    def _foreign(self, topic_b: bytes, payload: bytes) -> Received | None:
        """A message not in the mcl format: [topic, payload] is accepted without accounting."""
        if self._joined_ns is None:
            self._joined_ns = _time_ns()
        if topic_b.startswith(b"\xff"):
            self._drop("control topic", None)
            return None
        if self._exact is not None and topic_b not in self._exact:
            return None
        if len(topic_b) > self._max_topic_bytes:
            self._drop("topic too long", None)
            return None
        try:
            topic = topic_b.decode("utf-8")
        except UnicodeDecodeError:
            self._drop("topic not UTF-8", None)
            return None
        return Received(topic, payload, "", -1, 0, _time_ns())

    def _matches(self, topic_b: bytes) -> bool:
        if self._prefixes is None:
            return True
        if self._exact is not None:
            return topic_b in self._exact
        return topic_b.startswith(self._prefixes)

    def _on_end(self, pub_b: bytes, payload: bytes, sent_ns: int) -> None:
        """A publisher closed: count what was missed at its tail, then acknowledge."""
        sock = self._sock
        assert sock is not None
        now = time.monotonic()
        self._forget_acks(now)
        if pub_b in self._ended:
            return
        table = _parse_end(payload, self._idb)
        if table is None or len(pub_b) > _MAX_ID_BYTES:
            self._drop("bad end of stream", None)
            return
        counts, joined, first_ns = table
        self._ended[pub_b] = now
        joined_ns = self._joined_ns
        for topic_b, count in counts.items():
            if not self._matches(topic_b):
                continue
            key = (pub_b, topic_b)
            first_due = None if joined is None else joined.get(topic_b, 0)
            sent_first = first_ns.get(topic_b)
            if joined_ns is not None and sent_first is not None and joined_ns <= sent_first:
                # On the bus before the topic's first message (its subscription may not have reached
                # the publisher in time): everything from sequence 0 was due (same-host clocks).
                first_due = 0
            stream = self._streams.pop(key, None)
            spans: list[tuple[int, int, int, int]] = []  # (first missed, count, after_ns, before_ns)
            if stream is None:  # nothing received on that topic
                if first_due is None:
                    continue
                since = self._started_ns  # it cannot have sent to this subscriber before it existed
                spans.append((first_due, count - first_due, 0, sent_ns))
            else:
                since = stream[4]
                if first_due is not None and stream[1] > first_due:  # the head, before the first received
                    spans.append((first_due, stream[1] - first_due, 0, 0))
                spans.append((stream[0], count - stream[0], stream[4], sent_ns))  # the tail
                self._ended_streams[key] = (stream[2], stream[3], stream[5], stream[6])
                if len(self._ended_streams) > self._max_streams:
                    self._ended_streams.pop(next(iter(self._ended_streams)))
            spans = [span for span in spans if span[1] > 0]
            missed = sum(span[1] for span in spans)
            if missed <= 0:
                continue
            if len(self._lost) + len(self._suspect_claims) >= 4 * self._max_streams and key not in self._lost:
                key = _OVERFLOW  # forged tables of many topics: the counts stay, under one key
            if missed > _plausible(since, sent_ns):
                self._suspect_claims[key] = self._suspect_claims.get(key, 0) + 1
                continue
            self._lost[key] = self._lost.get(key, 0) + missed
            self._add_spans(key, spans)
        if len(self._acks) < _MAX_ACKS:  # a flood of forged ends must not become a flood of subscriptions
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
                if now - seen > 60.0 or len(self._ended) > _MAX_ENDED:
                    del self._ended[pub_b]

    # -- accounting ---------------------------------------------------------------------
    @property
    def malformed(self) -> int:
        """Messages dropped because they were not valid mcl wire format (all reasons)."""
        return sum(self._malformed.values())

    @property
    def suspect(self) -> int:
        """Sequence numbers and end-of-stream claims that cannot be true (not counted as lost)."""
        return sum(s[6] for s in self._streams.values()) + sum(e[3] for e in self._ended_streams.values()) + sum(
            self._suspect_claims.values()
        )

    def stats(self) -> SubscriberStats:
        """The whole accounting: per (publisher, topic) counts and loss spans, drops by reason."""
        streams: dict[tuple[str, str], StreamStats] = {}
        names = self._names

        def name(b: bytes) -> str:
            return names.get(b) or b.decode("utf-8", "replace")

        keys = set(self._streams) | set(self._ended_streams) | set(self._lost) | set(self._suspect_claims)
        for key in keys:
            live = self._streams.get(key)
            ended = self._ended_streams.get(key)
            if live is not None:
                received, suspect = live[5], live[6]
            elif ended is not None:
                received, suspect = ended[2], ended[3]
            else:
                received, suspect = 0, 0
            suspect += self._suspect_claims.get(key, 0)
            spans = tuple(LossSpan(*span) for span in self._spans.get(key, ()))
            streams[(name(key[0]), name(key[1]))] = StreamStats(received, self._lost.get(key, 0), suspect, spans)
        return SubscriberStats(
            lost=self.lost, malformed=self.malformed, suspect=self.suspect,
            malformed_by_reason=dict(self._malformed), streams=streams,
        )

    def close(self) -> None:
        """Close the socket (linger 0); idempotent."""
        sock, self._sock = self._sock, None
        if self._watch is not None:
            self._watch.close()
            self._watch = None
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
