"""Show the bus live in Foxglove: a bridge from mcl topics to the Foxglove WebSocket protocol.

:class:`FoxgloveBridge` subscribes to the bus and serves what it receives
with Foxglove's SDK (``foxglove-sdk``, the optional extra ``mcl[foxglove]``)::

    bus --Subscriber--> bus thread --per-channel queues (drop oldest)--> send thread --SDK--> clients
                                                                          (JSON, schemas)   (per-client backlog)

* Each topic becomes one channel when its first message arrives: ``json``
  encoding, a JSON Schema made from that message (the form of the MCAP
  export, :mod:`mcl.log.mcap`: numpy arrays as arrays of numbers, matrices as
  ``{"shape", "data"}``, no unions, no arrays of arrays). A payload that is
  not msgpack is sent as ``{"base64": "..."}`` (schema ``RawBytes``); the
  empty topic is shown as ``(empty)``.
* Every message carries its time: the sender's send time, or, for the
  messages of a replay, their log time (the replay publishes its clock on the
  bus, see :mod:`mcl.network.wire`). The server has the ``time`` capability
  and broadcasts the replay's log time while a replay plays (else the wall
  time), so Foxglove's timeline follows the replay, pauses and seeks with it.
  The clock messages come from the bus, so they are checked (:func:`is_clock`)
  and every time is clamped to the protocol's u64.
* The bus side never waits for a client: the bus thread only appends to
  bounded per-channel queues; when the send thread falls behind (conversion
  to JSON is the costly part) the oldest message of that channel is dropped
  and counted. The SDK bounds each client's queue too (``backlog``; it drops
  that client's oldest messages), so a slow browser costs bounded memory.
  Messages of channels no client subscribes to are counted, not converted.
  At most ``max_channels`` topics become channels (each costs a queue, an
  SDK channel and an advertisement to every client); messages of further
  topics are dropped and counted under :data:`OVER_LIMIT`.
"""

from __future__ import annotations

import base64
import heapq
import ipaddress
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcl.exceptions import BusError, MclError, MessageError

__all__ = ["BridgeOptions", "BridgeStatus", "FoxgloveBridge", "OVER_LIMIT", "RAW_BYTES_SCHEMA", "is_clock", "is_loopback", "message_log_time"]

from mcl.timeutil import NS_PER_S  # noqa: E402
RAW_BYTES_SCHEMA = "RawBytes"  # schema of payloads that are not msgpack
OVER_LIMIT = "(over the channel limit)"  # BridgeStatus.dropped key of messages of topics beyond max_channels
_CLOCK_STALE_NS = NS_PER_S  # a replay clock not refreshed for this long is gone (they refresh every 0.2 s)
_TIME_MAX = (1 << 64) - 1  # the protocol's times are u64 ns
_PAYLOAD_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, UnicodeError)  # a bad payload, not a bad bridge


@dataclass(frozen=True, slots=True)
class BridgeOptions:
    """What the bridge serves and how."""

    bus: str | None = None  # bus address; None = the default bus
    topics: tuple[str, ...] | None = None  # exact topic names served; None = every topic (or the prefixes)
    topic_prefixes: tuple[str, ...] | None = None  # topics starting with one of these are served too
    exclude: tuple[str, ...] | None = None  # regular expressions (re.search): topics they match are not served
    host: str = "127.0.0.1"  # address the WebSocket server binds (loopback: this machine only)
    port: int = 8765  # WebSocket port; 0 = a free port (see FoxgloveBridge.port)
    queue: int = 1000  # messages held per channel between the bus and the send thread; the oldest go beyond
    backlog: int = 1024  # messages the SDK queues per client; it drops that client's oldest beyond
    max_bytes: int = 16 << 20  # larger payloads are not sent (counted as dropped): JSON of them would stall the rest
    name: str = "mcl"  # server name shown in Foxglove
    time_every_ns: int = 100_000_000  # how often the time is broadcast to clients
    max_channels: int = 10_000  # topics served; messages of further topics are dropped, counted under OVER_LIMIT

    def __post_init__(self) -> None:
        if self.queue < 1 or self.backlog < 1 or self.max_bytes < 1 or self.max_channels < 1:
            raise ValueError("queue, backlog, max_bytes and max_channels must be >= 1")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, not {self.port}")
        if self.time_every_ns <= 0:
            raise ValueError("time_every_ns must be > 0")
        self.topic_filter()  # a bad exclude pattern is a ValueError here, not in the bus thread

    def topic_filter(self) -> Callable[[str], bool] | None:
        """The topics served (:func:`mcl.log.record.make_topic_filter` of the three selections); None = every topic."""
        from mcl.log.record import make_topic_filter

        return make_topic_filter(self.topics, prefixes=self.topic_prefixes, exclude=self.exclude)

    def subscription(self) -> tuple[list[str] | None, bool]:
        """What the bridge subscribes to on the bus: (topics, exact); the filter then keeps what it serves."""
        if self.topic_prefixes:
            return list(self.topics or ()) + list(self.topic_prefixes), False
        if self.topics is not None:
            return list(self.topics), True
        return None, False


@dataclass(slots=True)
class BridgeStatus:
    """A snapshot of the bridge (see :meth:`FoxgloveBridge.status`)."""

    received: int = 0  # messages taken from the bus
    sent: int = 0  # messages handed to the SDK (for at least one subscribed client)
    dropped: dict[str, int] = field(default_factory=dict)  # per topic: oldest dropped from a full queue, or too large
    channels: int = 0  # channels advertised
    clients: int = 0  # clients subscribed to at least one channel
    subscriptions: int = 0  # (client, channel) subscriptions
    bus_lost: int = 0  # messages the bus lost before the bridge (Subscriber.lost)
    time_ns: int | None = None  # the time last broadcast (UTC ns)
    replay_speed: float | None = None  # speed of the replay the timeline follows; None: wall time

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def line(self) -> str:
        """One status line for people."""
        from mcl.cli.common import format_utc

        parts = [
            f"clients {self.clients}",
            f"channels {self.channels}",
            f"received {self.received:,}",
            f"sent {self.sent:,}",
            f"dropped {self.dropped_total:,}",
        ]
        worst = sorted(((n, t) for t, n in self.dropped.items() if n), reverse=True)[:3]
        if worst:
            parts[-1] += " (" + ", ".join(f"{t or '(empty)'} {n:,}" for n, t in worst) + ")"
        parts.append(f"bus lost {self.bus_lost:,}")
        if self.time_ns is not None:
            if self.replay_speed is None:
                clock = "wall"
            elif self.replay_speed == 0:
                clock = "replay, paused or ended"
            elif math.isinf(self.replay_speed):
                clock = "replay, max speed"
            else:
                clock = f"replay {self.replay_speed:g}x"
            parts.append(f"time {format_utc(self.time_ns)[:-4]}Z ({clock})")
        return " | ".join(parts)


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def message_log_time(sent_ns: int, received_ns: int, clock: tuple[int, int, float] | None) -> int:
    """The time of a message for Foxglove: its replay log time if its publisher is a replay, else its send time.

    Always within the protocol's 0..2**64-1 ns; a clock that is not one (speed NaN or negative, from a
    forged or broken publisher) is ignored.
    """
    if clock is not None and is_clock(clock):
        log_ns, wall_ns, speed = clock
        if math.isinf(speed):
            return _clamp(log_ns)
        offset = (sent_ns - wall_ns) * speed  # a float: a huge speed makes it infinite
        if math.isinf(offset):
            return _TIME_MAX if offset > 0 else 0
        return _clamp(log_ns + int(offset))
    return _clamp(sent_ns or received_ns)


def is_clock(clock: tuple[int, int, float]) -> bool:
    """True for a usable replay clock (log_ns, wall_ns, speed): speed 0 (paused), positive, or +inf (max)."""
    speed = clock[2]
    return speed >= 0 and not math.isnan(speed)


def _clamp(ns: int) -> int:
    return min(max(ns, 0), _TIME_MAX)


def _require_sdk() -> Any:
    try:
        import foxglove
    except ImportError:
        raise MclError(
            "mcl-foxglove needs Foxglove's SDK, which is not installed: pip install 'mcl[foxglove]'"
        ) from None
    return foxglove


class _Listener:
    """The SDK's server listener: counts subscriptions (called on the SDK's threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.subscriptions: set[tuple[int, int]] = set()

    def on_subscribe(self, client: Any, channel: Any) -> None:
        with self.lock:
            self.subscriptions.add((client.id, channel.id))

    def on_unsubscribe(self, client: Any, channel: Any) -> None:
        with self.lock:
            self.subscriptions.discard((client.id, channel.id))


# (arrival order, topic, payload, publisher, sent_ns, received_ns)
_Item = tuple[int, str, bytes, str, int, int]


class FoxgloveBridge:
    """Serves the bus to Foxglove clients (see the module docstring); a context manager.

    ``start()`` subscribes and starts the WebSocket server (errors raise
    there: port taken, bus unreachable); ``status()`` is a snapshot;
    ``close()`` stops everything and is idempotent.
    """

    def __init__(self, options: BridgeOptions | None = None) -> None:
        self.options = options if options is not None else BridgeOptions()
        self._sdk = _require_sdk()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._queues: dict[str, deque[_Item]] = {}
        self._dropped: dict[str, int] = {}
        self._clocks: dict[str, tuple[int, int, float]] = {}
        self._received = 0
        self._sent = 0
        self._bus_lost = 0
        self._order = 0
        self._error: BaseException | None = None
        self._channels: dict[str, Any] = {}
        self._listener = _Listener()
        self._context: Any = None
        self._server: Any = None
        self._threads: list[threading.Thread] = []
        self._time_ns: int | None = None
        self._replay_speed: float | None = None
        self._started = False
        self._closed = False

    @property
    def port(self) -> int:
        """The port the server listens on (after start)."""
        if self._server is None:
            raise RuntimeError("The bridge is not started.")
        return int(self._server.port)

    def start(self, timeout: float = 10.0) -> None:
        """Subscribe to the bus and start serving; returns once both are up."""
        if self._started:
            raise RuntimeError("Cannot start a bridge twice; create a new FoxgloveBridge.")
        self._started = True
        sdk = self._sdk
        self._context = sdk.Context()
        try:
            self._server = sdk.start_server(
                name=self.options.name,
                host=self.options.host,
                port=self.options.port,
                capabilities=[sdk.Capability.Time],
                server_listener=self._listener,
                context=self._context,
                message_backlog_size=self.options.backlog,
            )
        except Exception as exc:  # the SDK raises its own error types (RuntimeError, FoxgloveError)
            raise BusError(f"cannot serve Foxglove on {self.options.host}:{self.options.port}: {exc}") from None
        bus_thread = threading.Thread(target=self._bus_loop, name="mcl-foxglove: bus", daemon=True)
        send_thread = threading.Thread(target=self._send_loop, name="mcl-foxglove: send", daemon=True)
        self._threads = [bus_thread, send_thread]
        bus_thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            error = self._error
            self.close()
            if error is not None:
                raise error
            raise BusError(f"the bridge could not subscribe to the bus within {timeout} s")
        send_thread.start()

    # -- bus side --------------------------------------------------------------------

    def _bus_loop(self) -> None:
        from mcl.network import Subscriber

        options = self.options
        try:
            topics, exact = options.subscription()
            keep = options.topic_filter()
            subscriber = Subscriber(topics, options.bus, exact=exact, clock=True)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        maxlen = options.queue
        limit = options.max_bytes
        try:
            with subscriber:
                while not self._stop.is_set():
                    batch = subscriber.recv_batch(1000, timeout=0.1)
                    with self._lock:
                        for received in batch:
                            topic = received.topic
                            if keep is not None and not keep(topic):
                                continue  # not selected (a prefix subscription, --exclude)
                            self._received += 1
                            if len(received.payload) > limit:
                                self._dropped[topic] = self._dropped.get(topic, 0) + 1
                                continue
                            queue = self._queues.get(topic)
                            if queue is None:
                                if len(self._queues) >= options.max_channels:  # a bus of endless topic names
                                    self._dropped[OVER_LIMIT] = self._dropped.get(OVER_LIMIT, 0) + 1
                                    continue
                                queue = self._queues[topic] = deque(maxlen=maxlen)
                                self._dropped.setdefault(topic, 0)
                            elif len(queue) == maxlen:
                                self._dropped[topic] += 1  # the append below pushes the oldest out
                            self._order += 1
                            queue.append((self._order, topic, received.payload, received.publisher,
                                          received.sent_ns, received.received_ns))
                        if subscriber.clocks != self._clocks:
                            self._clocks = {k: c for k, c in subscriber.clocks.items() if is_clock(c)}
                        self._bus_lost = subscriber.lost
                        if batch:
                            self._wake.notify()
        except BaseException as exc:  # report, do not die silently
            self._error = exc
            self._stop.set()

    # -- client side -----------------------------------------------------------------

    def _take(self) -> tuple[list[_Item], dict[str, tuple[int, int, float]]]:
        """Everything queued, in arrival order (the queues are emptied)."""
        with self._lock:
            if not any(self._queues.values()) and not self._stop.is_set():
                self._wake.wait(self.options.time_every_ns / NS_PER_S)
            queues = [list(q) for q in self._queues.values() if q]
            for q in self._queues.values():
                q.clear()
            clocks = self._clocks
        return list(heapq.merge(*queues)), clocks

    def _send_loop(self) -> None:
        next_time = 0
        try:
            while not self._stop.is_set():
                items, clocks = self._take()
                for _, topic, payload, publisher, sent_ns, received_ns in items:
                    clock = clocks.get(publisher)
                    try:
                        self._send(topic, payload, message_log_time(sent_ns, received_ns, clock))
                    except _PAYLOAD_ERRORS:  # a payload the conversion cannot take: that message, not the bridge
                        with self._lock:
                            self._dropped[topic] = self._dropped.get(topic, 0) + 1
                now = time.monotonic_ns()
                if now >= next_time:
                    next_time = now + self.options.time_every_ns
                    self._broadcast_time(clocks)
        except BaseException as exc:
            self._error = exc
            self._stop.set()

    def _send(self, topic: str, payload: bytes, log_time: int) -> None:
        channel = self._channels.get(topic)
        if channel is None:
            channel = self._channels[topic] = self._new_channel(topic, payload)
        if channel.has_sinks():  # no subscribed client: nothing to convert
            channel.log(_to_json_bytes(payload), log_time=log_time)
            self._sent += 1

    def _new_channel(self, topic: str, payload: bytes) -> Any:
        from mcl.log.mcap import EMPTY_TOPIC

        name, schema = _schema_for(payload)
        sdk = self._sdk
        return sdk.Channel(
            topic if topic else EMPTY_TOPIC,
            schema=sdk.Schema(name=name, encoding="jsonschema", data=schema),
            message_encoding="json",
            context=self._context,
            metadata={"mcl.topic": topic, "mcl.type": name},
        )

    def _broadcast_time(self, clocks: dict[str, tuple[int, int, float]]) -> None:
        now = time.time_ns()
        fresh = [c for c in clocks.values() if now - c[1] < _CLOCK_STALE_NS]
        if fresh:
            log_ns, wall_ns, speed = max(fresh, key=lambda c: c[1])
            when = message_log_time(now, now, (log_ns, wall_ns, speed))
            self._replay_speed = speed
        else:
            when = now
            self._replay_speed = None
        self._time_ns = when
        self._server.broadcast_time(_clamp(when))

    # -- status and shutdown ---------------------------------------------------------------

    def status(self) -> BridgeStatus:
        """Counts so far; raises the error that stopped the bridge, if any."""
        if self._error is not None:
            raise self._error if isinstance(self._error, MclError) else BusError(f"the Foxglove bridge stopped: {self._error}")
        with self._listener.lock:
            subscriptions = set(self._listener.subscriptions)
        with self._lock:
            return BridgeStatus(
                received=self._received,
                sent=self._sent,
                dropped=dict(self._dropped),
                channels=len(self._channels),
                clients=len({client for client, _ in subscriptions}),
                subscriptions=len(subscriptions),
                bus_lost=self._bus_lost,
                time_ns=self._time_ns,
                replay_speed=self._replay_speed,
            )

    def close(self) -> None:
        """Stop the threads, the server and the subscription; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(5.0)
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> FoxgloveBridge:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unpacked(payload: bytes) -> tuple[bool, Any]:
    from mcl.message import unpack

    try:
        return True, unpack(payload)
    except MessageError:
        return False, None


def _schema_for(payload: bytes) -> tuple[str, bytes]:
    """The schema name and JSON schema (UTF-8 JSON text) of a channel, from its first payload.

    A payload nested too deep for a schema (Python's recursion limit) gets
    the schema of any object, so the channel still shows its messages.
    """
    from mcl.log.mcap import RAW_SCHEMA_NAME, make_json_schema

    ok, value = _unpacked(payload)
    if not ok:
        raw = {"title": RAW_BYTES_SCHEMA, "type": "object",
               "properties": {"base64": {"type": "string", "contentEncoding": "base64"}}}
        return RAW_BYTES_SCHEMA, json.dumps(raw).encode("utf-8")
    name = value.get("name") if isinstance(value, dict) else None
    type_name = name if isinstance(name, str) else None
    try:
        schema = make_json_schema(type_name, [value])
        return str(schema["title"]), json.dumps(schema).encode("utf-8")
    except RecursionError:
        title = type_name if type_name is not None else RAW_SCHEMA_NAME
        return title, json.dumps({"title": title, "type": "object"}).encode("utf-8")


_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


def _to_json_bytes(payload: bytes) -> bytes:
    """A payload as the JSON Foxglove decodes (the MCAP export's form); not msgpack: ``{"base64": ...}``."""
    from mcl.jsonform import to_json_value

    ok, value = _unpacked(payload)
    if not ok:
        return _dumps({"base64": base64.b64encode(payload).decode("ascii")}).encode("utf-8")
    name = value.get("name") if isinstance(value, dict) else None
    wrapped = value if isinstance(name, str) else {"value": value}
    try:
        return _dumps(to_json_value(wrapped)).encode("utf-8")
    except (ValueError, TypeError, RecursionError):
        return _dumps({"base64": base64.b64encode(payload).decode("ascii")}).encode("utf-8")
