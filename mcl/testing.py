"""pytest plugin of mcl: a private bus, replaying fixture logs into the code under test, capturing what it publishes.

Installed with mcl and registered through the ``pytest11`` entry point, so a
project that depends on mcl gets these fixtures with no configuration:

``mcl_bus``
    The address (a string such as ``tcp://127.0.0.1:41234``) of a private
    bus on free loopback ports, for one test. Give it to the code under test
    (``Publisher(bus=mcl_bus)``, ``Subscriber(bus=mcl_bus)``); it is torn
    down after the test. While the test runs it is also the default bus
    (``$MCL_BUS``), so code and child processes that use the default bus
    need no address. Tests never share a bus.

``mcl_replay``
    A factory: ``mcl_replay(path, speed=1.0, topics=None, instant=False,
    bus=None, hooks=None, wait_for_subscribers=0)`` replays a log and returns
    a replay handle; every replay is stopped after the test.

    - ``instant=False``: a real :class:`mcl.Replay` (processes, recorded
      timing divided by `speed`) on the test's private bus (or `bus`), or
      into `hooks`. It is started; ``.wait(timeout)`` waits for the end.
    - ``instant=True``: a virtual clock replaces waiting. Every record is
      delivered at once, in recorded order, before the call returns: a
      10-minute log takes a fraction of a second. The recorded times stay
      visible: ``mcl_replay.clock`` (a :class:`VirtualClock`, the same object
      for the whole test, so it can be given to the code under test before
      the replay) reads the recorded UTC time of the record being delivered.
      Hooks receive each :class:`mcl.Record` (``elapsed_ns``, ``topic``,
      ``payload``), as with :class:`mcl.Replay`, synchronously in the test's
      thread (deterministic). Without hooks the records are published on the bus as
      fast as it takes them, after waiting for `wait_for_subscribers`
      subscribers: the code under test receives them in order, but
      ``mcl_replay.clock`` is not in step with what it has received; use the
      time in the messages (``timestamp``) instead.

``mcl_capture``
    Subscribes to every topic of the test's private bus before the test
    starts and keeps what arrives (in a background thread). ``wait_for(topic,
    count=1, timeout=5.0)`` returns the first `count` :class:`Captured`
    messages of `topic` (``.topic``, ``.payload`` bytes, ``.message``
    decoded, sender metadata) or raises :class:`CaptureTimeout` (an
    ``AssertionError``) naming the topic, the count wanted and the count
    received. Helpers: ``messages(topic=None)``, ``counts()``,
    ``assert_count(topic, count, timeout, settle)``,
    ``assert_no_messages(topic=None, within)``, ``clear()``.

This module imports nothing of mcl's network or replay code at import time,
so pytest always loads it; each fixture imports what it needs when used.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from mcl.timeutil import NS_PER_S

if TYPE_CHECKING:
    from mcl.log.record import Record

__all__ = [
    "Captured",
    "Capture",
    "CaptureTimeout",
    "InstantReplay",
    "ReplayFactory",
    "VirtualClock",
    "make_private_bus",
    "mcl_bus",
    "mcl_capture",
    "mcl_replay",
]

DEFAULT_TIMEOUT = 5.0  # seconds wait_for waits unless told otherwise
_POLL_S = 0.05  # how long the capture thread blocks in one receive


# -- private bus -----------------------------------------------------------------------


def make_private_bus() -> Any:
    """A started private bus (forwarder) on free loopback ports; close() it when done.

    Its ``address`` is what publishers and subscribers are given as `bus`.
    """
    from mcl.network.forwarder import Forwarder

    return Forwarder("tcp://127.0.0.1:0")


@pytest.fixture
def mcl_bus() -> Iterator[str]:
    """The address of a private bus on free loopback ports, for this test only.

    While the test runs it is also the default bus (``$MCL_BUS``), so code
    and child processes that use the default bus use it with no argument.
    """
    from mcl.network.address import ENV_BUS

    bus = make_private_bus()
    saved = os.environ.get(ENV_BUS)
    os.environ[ENV_BUS] = str(bus.address)
    try:
        yield str(bus.address)
    finally:
        if saved is None:
            os.environ.pop(ENV_BUS, None)
        else:
            os.environ[ENV_BUS] = saved
        bus.close()


# -- capture ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Captured:
    """One message the capture received."""

    topic: str = ""
    payload: bytes = b""  # exactly as published
    message: Any = None  # decoded: a Message, GenericMessage or plain value; None if not msgpack
    publisher: str = ""  # sender id
    sequence: int = 0  # sender's sequence number on this topic
    sent_ns: int = 0  # sender's clock when published, UTC ns
    received_ns: int = 0  # capture's clock when received, UTC ns


class CaptureTimeout(AssertionError):
    """wait_for() or assert_count() did not see the messages it waited for in time."""

    def __init__(self, topic: str, wanted: int, got: int, timeout: float, seen: dict[str, int]) -> None:
        self.topic = topic
        self.wanted = wanted
        self.got = got
        self.timeout = timeout
        self.seen = seen
        others = ", ".join(f"{t!r}: {n}" for t, n in sorted(seen.items())) or "nothing at all"
        super().__init__(
            f"mcl_capture: waited {timeout:g} s for {wanted} message(s) on topic {topic!r}, got {got} "
            f"(received so far: {others})"
        )


class Capture:
    """Collects every message published on a bus (the ``mcl_capture`` fixture).

    Subscribes in a background thread; :meth:`close` stops it (idempotent).
    """

    def __init__(self, bus: str, topics: Iterable[str] | None = None) -> None:
        self.bus = bus
        self.topics = None if topics is None else list(topics)
        self._messages: list[Captured] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._lost = 0
        self._thread = threading.Thread(target=self._run, name="mcl_capture", daemon=True)
        self._thread.start()
        self._ready.wait(10.0)
        if self._error is not None:
            raise self._error
        if not self._ready.is_set():
            self.close()
            raise RuntimeError(f"mcl_capture could not subscribe to {bus} within 10 s")

    def _run(self) -> None:
        from mcl.message import decode

        try:
            from mcl.network import Subscriber

            with Subscriber(self.topics, self.bus) as sub:
                self._ready.set()
                while not self._stop.is_set():
                    batch = sub.recv_batch(timeout=_POLL_S)
                    if not batch:
                        continue
                    items = []
                    for rec in batch:
                        try:
                            message = decode(rec.payload)
                        except Exception:  # noqa: BLE001 - bytes that are not msgpack stay bytes
                            message = None
                        items.append(
                            Captured(
                                topic=rec.topic,
                                payload=rec.payload,
                                message=message,
                                publisher=str(rec.publisher),
                                sequence=rec.sequence,
                                sent_ns=rec.sent_ns,
                                received_ns=rec.received_ns,
                            )
                        )
                    with self._cond:
                        self._messages.extend(items)
                        self._lost = sub.lost
                        self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self._error = exc
            self._ready.set()
            with self._cond:
                self._cond.notify_all()

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"mcl_capture stopped receiving: {self._error}") from self._error

    def _of(self, topic: str | None) -> list[Captured]:
        return [m for m in self._messages if topic is None or m.topic == topic]

    def messages(self, topic: str | None = None) -> list[Captured]:
        """Everything received so far (on `topic`, or on every topic), in arrival order."""
        with self._cond:
            return self._of(topic)

    @property
    def lost(self) -> int:
        """Messages the capture knows it missed (sequence gaps), as counted by its subscriber."""
        with self._cond:
            return self._lost

    def counts(self) -> dict[str, int]:
        """Messages received so far per topic."""
        with self._cond:
            counts: dict[str, int] = {}
            for m in self._messages:
                counts[m.topic] = counts.get(m.topic, 0) + 1
            return counts

    def wait_for(self, topic: str, count: int = 1, timeout: float = DEFAULT_TIMEOUT) -> list[Captured]:
        """The first `count` messages on `topic`, once they arrived; CaptureTimeout after `timeout` s."""
        if count < 1:
            raise ValueError("count must be at least 1; use assert_no_messages() to check for none")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._check()
                got = self._of(topic)
                if len(got) >= count:
                    return got[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CaptureTimeout(topic, count, len(got), timeout, self._counts_locked())
                self._cond.wait(min(left, 0.5))

    def _counts_locked(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self._messages:
            counts[m.topic] = counts.get(m.topic, 0) + 1
        return counts

    def assert_count(self, topic: str, count: int, timeout: float = DEFAULT_TIMEOUT, settle: float = 0.2) -> list[Captured]:
        """Exactly `count` messages on `topic`: wait for them, then `settle` s more to see that no more come."""
        got = self.wait_for(topic, count, timeout) if count else []
        time.sleep(settle)
        with self._cond:
            self._check()
            now = self._of(topic)
            if len(now) != count:
                raise AssertionError(
                    f"mcl_capture: expected exactly {count} message(s) on topic {topic!r}, got {len(now)}"
                )
        return got

    def assert_no_messages(self, topic: str | None = None, within: float = 0.2) -> None:
        """Nothing arrives on `topic` (or on any topic) during `within` seconds (and nothing came before)."""
        time.sleep(within)
        with self._cond:
            self._check()
            got = self._of(topic)
            if got:
                where = "any topic" if topic is None else f"topic {topic!r}"
                raise AssertionError(
                    f"mcl_capture: expected no message on {where}, got {len(got)} (first on {got[0].topic!r})"
                )

    def clear(self) -> None:
        """Forget what was received so far."""
        with self._cond:
            self._messages.clear()

    def close(self) -> None:
        """Stop receiving and close the subscriber; idempotent."""
        self._stop.set()
        self._thread.join(10.0)

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def mcl_capture(mcl_bus: str) -> Iterator[Capture]:
    """Everything published on the test's private bus (subscribed before the test starts)."""
    capture = Capture(mcl_bus)
    try:
        yield capture
    finally:
        capture.close()


# -- replay ------------------------------------------------------------------------------


class VirtualClock:
    """The recorded time of an instant replay: it jumps to each record's time as the record is delivered.

    ``now_ns()`` is the record's UTC time (origin + elapsed) in ns, ``time()``
    the same in float seconds (a drop-in for ``time.time`` in code that takes
    an injectable clock), ``elapsed_ns`` the time since the log's origin.
    Before the first record it reads the log's origin.
    """

    def __init__(self, origin_ns: int = 0) -> None:
        self.origin_ns = origin_ns
        self.elapsed_ns = 0

    def now_ns(self) -> int:
        """Recorded UTC time of the current record, ns since the epoch."""
        return self.origin_ns + self.elapsed_ns

    def time(self) -> float:
        """Recorded UTC time of the current record, float seconds since the epoch."""
        return self.now_ns() / NS_PER_S

    def __call__(self) -> float:
        return self.time()

    def __repr__(self) -> str:
        return f"VirtualClock(now_ns={self.now_ns()}, elapsed_ns={self.elapsed_ns})"


class InstantReplay:
    """A finished instant replay (see ``mcl_replay(..., instant=True)``)."""

    def __init__(
        self,
        path: Any,
        topics: Iterable[str] | None,
        bus: str | None,
        hooks: list[Callable[[Record], Any]] | None,
        wait_for_subscribers: int,
        timeout: float,
        clock: VirtualClock | None = None,
    ) -> None:
        from mcl.log.reader import open_log

        self.paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        self.topics = None if topics is None else list(topics)
        self.bus = bus
        self.hooks = list(hooks or [])
        self.sent = 0
        with open_log(*self.paths, topics=self.topics) as reader:
            self.clock = clock if clock is not None else VirtualClock()
            self.clock.origin_ns = reader.origin_ns or 0
            self.clock.elapsed_ns = 0
            self.duration_ns = reader.duration_ns
            if self.hooks:
                self._to_hooks(reader)
            else:
                self._to_bus(reader, wait_for_subscribers, timeout)

    def _to_hooks(self, reader: Any) -> None:
        clock = self.clock
        hooks = self.hooks
        for record in reader:
            clock.elapsed_ns = record.elapsed_ns
            for hook in hooks:
                hook(record)
            self.sent += 1

    def _to_bus(self, reader: Any, wait_for_subscribers: int, timeout: float) -> None:
        from mcl.network import Publisher

        if self.bus is None:
            raise RuntimeError("An instant replay without hooks needs a bus.")
        clock = self.clock
        with Publisher(bus=self.bus) as pub:
            if wait_for_subscribers and not pub.wait_for_subscribers(wait_for_subscribers, timeout):
                raise AssertionError(
                    f"mcl_replay: fewer than {wait_for_subscribers} subscriber(s) on {self.bus} after {timeout:g} s"
                )
            publish = pub.publish
            for record in reader:
                clock.elapsed_ns = record.elapsed_ns
                publish(record.topic, record.payload)
                self.sent += 1

    def wait(self, timeout: float | None = None) -> bool:
        """True: an instant replay is over when it is returned."""
        return True

    def stop(self) -> None:
        """Nothing to stop: kept so every replay handle can be stopped alike."""

    def close(self) -> None:
        """Nothing to release."""


class ReplayFactory:
    """The ``mcl_replay`` fixture: call it to replay a log; every replay is stopped after the test."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self._replays: list[Any] = []
        self.last: Any = None  # the handle returned by the last call
        # Shared by every instant replay of the test, so code under test can be
        # given it before the replay runs.
        self.clock = VirtualClock()

    def _default_bus(self) -> str:
        return str(self._request.getfixturevalue("mcl_bus"))

    def __call__(
        self,
        path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        speed: float = 1.0,
        topics: Iterable[str] | None = None,
        instant: bool = False,
        bus: str | None = None,
        hooks: Iterable[Callable[..., Any]] | None = None,
        wait_for_subscribers: int = 0,
        timeout: float = 10.0,
    ) -> Any:
        """Replay the log(s) at `path`; see the module docstring.

        Args:
            speed: recorded timing divided by this (ignored when instant).
            topics: replay only these topics (exact names); None for all.
            instant: deliver everything at once with a virtual clock.
            bus: bus address; default the test's private bus (``mcl_bus``).
            hooks: callables receiving each record instead of the bus.
            wait_for_subscribers: publish only once this many subscribers
                are attached to the bus (avoids losing the first messages).
            timeout: seconds to wait for those subscribers.
        """
        hook_list = list(hooks) if hooks is not None else None
        if bus is None and not hook_list:
            bus = self._default_bus()
        if isinstance(path, (str, os.PathLike)):
            paths: list[Any] = [Path(path)]
        else:
            paths = [Path(p) for p in path]
        if instant:
            replay: Any = InstantReplay(paths, topics, bus, hook_list, wait_for_subscribers, timeout, self.clock)
        else:
            replay = self._real(paths, speed, topics, bus, hook_list, wait_for_subscribers, timeout)
        self.last = replay
        return replay

    def _real(self, paths: list[Any], speed: float, topics: Iterable[str] | None, bus: str | None, hooks: list[Callable[..., Any]] | None, wait_for_subscribers: int, timeout: float) -> Any:
        from mcl.replay import Replay

        options: dict[str, Any] = {"speed": speed, "topics": None if topics is None else list(topics)}
        if hooks:
            options["hooks"] = hooks
        else:
            options["bus"] = bus
        if wait_for_subscribers:
            options["wait_for_subscribers"] = wait_for_subscribers
        replay = Replay(paths if len(paths) > 1 else paths[0], **options)
        self._replays.append(replay)
        replay.start()
        return replay

    def close(self) -> None:
        """Stop and close every replay started; idempotent."""
        replays, self._replays = self._replays, []
        errors = []
        for replay in replays:
            try:
                replay.close()
            except Exception as exc:  # noqa: BLE001 - close the others, then report
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def mcl_replay(request: pytest.FixtureRequest) -> Iterator[ReplayFactory]:
    """A factory replaying logs into the test (real time, faster, or instant); stopped after the test."""
    factory = ReplayFactory(request)
    try:
        yield factory
    finally:
        factory.close()
