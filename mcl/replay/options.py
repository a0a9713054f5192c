"""What a replay plays and how: selection, timing, buffering and output options."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mcl.checks import MAX_C_INT, check_flag, check_int, check_names, check_pattern
from mcl.exceptions import ArgumentError, ArgumentRangeError, ArgumentTypeError
from mcl.replay.clock import MAX_SPEED, MIN_SPEED, check_speed
from mcl.timeutil import MAX_NS, NS_PER_S, check_ns, check_seconds, check_timeout

__all__ = ["ReplayOptions", "ReplayStatus", "parse_remap", "check_compat_speed", "check_seconds", "intersect_window"]


MAX_READ_AHEAD = 10_000_000  # records buffered ahead at most (the queue's semaphore and memory bound)


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """Options of a replay; times are log elapsed ns (from the log's time origin)."""

    speed: float = 1.0  # log seconds per wall second; math.inf = as fast as possible
    start_ns: int | None = None  # first log time played; None = the first record
    end_ns: int | None = None  # last log time played (inclusive); None = the last record
    topics: tuple[str, ...] | None = None  # exact topic names kept; None = every topic
    exclude: str | None = None  # regex (re.search) of topics dropped; None = drop nothing
    remap: tuple[tuple[str, str], ...] = ()  # (old, new) topic renames, applied after filtering
    loop: bool = False  # start again at the end, forever (until stop / close)
    delay_ns: int = 0  # wait before the first record of each pass
    read_ahead: int = 5000  # records buffered ahead of the clock (queue bound, with batch_bytes)
    batch_records: int = 256  # records per queue transfer, at most
    batch_bytes: int = 1 << 20  # payload bytes per queue transfer, at most (one larger record goes alone)
    spin_ns: int = 150_000  # the last stretch before a record is due is spun, not slept
    bus: str | None = None  # bus address for the publisher; None = the default bus
    publish: bool = True  # publish on the bus (False: hooks only)
    hwm: int | None = None  # publisher high-water mark (messages; 0 = unlimited); None = the bus default
    send_timeout_s: float = 5.0  # a publish waits this long for a full bus (back-pressure) before dropping
    wait_for_subscribers: int = 0  # hold the first record until this many subscribers are connected
    stuck_timeout_ns: int = 10 * NS_PER_S  # a worker silent this long is reported stuck
    start_timeout_ns: int = 60 * NS_PER_S  # time allowed for the workers to start
    origin_ns: int | None = None  # UTC ns of the log's time origin, for the replay time published on the bus (wire.TIME)

    def __post_init__(self) -> None:
        # The one validation of a replay's settings: Replay, its workers and its
        # speed setter all take a ReplayOptions (dataclasses.replace re-runs this).
        # Every field is checked for its type and range here (mcl.checks), so a
        # bad value is an ArgumentError naming it, never an error deep in a worker.
        object.__setattr__(self, "speed", check_compat_speed(self.speed))
        check_speed(self.speed)
        check_ns(self.start_ns, "start_ns", none_ok=True)
        check_ns(self.end_ns, "end_ns", none_ok=True)
        if self.start_ns is not None and self.end_ns is not None and self.start_ns > self.end_ns:
            raise ArgumentError(f"start {self.start_ns / NS_PER_S} s is after end {self.end_ns / NS_PER_S} s")
        object.__setattr__(self, "topics", check_names(self.topics, "topics"))
        check_pattern(self.exclude, "exclude")
        object.__setattr__(self, "remap", _check_remap(self.remap))
        check_flag(self.loop, "loop")
        check_ns(self.delay_ns, "delay_ns")
        check_int(self.read_ahead, "read_ahead", minimum=1, maximum=MAX_READ_AHEAD, unit="records")
        check_int(self.batch_records, "batch_records", minimum=1, maximum=MAX_READ_AHEAD, unit="records")
        check_int(self.batch_bytes, "batch_bytes", minimum=1, maximum=MAX_C_INT, unit="bytes")
        check_ns(self.spin_ns, "spin_ns")
        check_flag(self.publish, "publish")
        if self.bus is not None:
            check_bus(self.bus)
        check_int(self.hwm, "hwm", minimum=0, maximum=MAX_C_INT, unit="messages", none_ok=True)
        check_timeout(self.send_timeout_s, "send_timeout_s", none_ok=False)
        check_int(self.wait_for_subscribers, "wait_for_subscribers", minimum=0, maximum=MAX_C_INT, unit="subscribers")
        check_ns(self.stuck_timeout_ns, "stuck_timeout_ns", minimum=1)
        check_ns(self.start_timeout_ns, "start_timeout_ns", minimum=1)
        check_ns(self.origin_ns, "origin_ns", minimum=-MAX_NS, none_ok=True)

    @classmethod
    def from_seconds(
        cls,
        *,
        speed: float | None = None,
        start: float | None = None,
        end: float | None = None,
        topics: Iterable[str] | str | None = None,
        exclude: str | None = None,
        remap: dict[str, str] | Iterable[str] | None = None,
        loop: bool | None = None,
        delay: float | None = None,
        read_ahead: int | None = None,
        bus: str | None = None,
        publish: bool | None = None,
        wait_for_subscribers: int | None = None,
        stuck_timeout: float | None = None,
        hwm: int | None = None,
    ) -> ReplayOptions:
        """The options of the convenience keyword form (seconds, lists); None leaves a field at its default."""
        given: dict[str, Any] = {
            "speed": speed,
            "start_ns": _to_ns(start, "start"),
            "end_ns": _to_ns(end, "end"),
            "topics": check_names(topics, "topics"),
            "exclude": exclude,
            "remap": None if remap is None else _remap_pairs(remap),
            "loop": loop,
            "delay_ns": _to_ns(delay, "delay"),
            "read_ahead": read_ahead,
            "bus": bus,
            "publish": publish,
            "wait_for_subscribers": wait_for_subscribers,
            "stuck_timeout_ns": None if stuck_timeout is None else (_to_ns(stuck_timeout, "stuck_timeout") or NS_PER_S),
            "hwm": hwm,
        }
        return cls(**{name: value for name, value in given.items() if value is not None})

    def window(self, start_ns: int | None = None, end_ns: int | None = None, from_ns: int | None = None) -> tuple[int | None, int | None]:
        """The log times played: this window, within a source's own (`start_ns`, `end_ns`), from `from_ns` (a seek)."""
        return intersect_window((start_ns, self.start_ns, from_ns), (end_ns, self.end_ns))

    @property
    def queue_batches(self) -> int:
        """Queue length in batches so that about `read_ahead` records are buffered."""
        return max(2, math.ceil(self.read_ahead / self.batch_records))


def check_bus(bus: Any) -> None:
    """A bus address of the options (str or BusAddress): BusError naming it when it is not one (mcl.network.parse_bus)."""
    from mcl.network.address import parse_bus

    parse_bus(bus)


def intersect_window(starts: Iterable[int | None], ends: Iterable[int | None]) -> tuple[int | None, int | None]:
    """(latest start, earliest end) of the bounds given; None bounds are open (None: no bound at all)."""
    lo = [t for t in starts if t is not None]
    hi = [t for t in ends if t is not None]
    return (max(lo) if lo else None, min(hi) if hi else None)


def check_compat_speed(speed: Any) -> float:
    """The original speed check: a number > 0 (math.inf: as fast as possible), else a TypeError; the float."""
    if isinstance(speed, bool) or not isinstance(speed, (int, float)):
        raise ArgumentTypeError(f"speed must be a number > 0 (math.inf: as fast as possible), not a {type(speed).__name__}")
    try:
        value = float(speed)
    except OverflowError:  # an int past the float range
        value = math.nan
    if math.isnan(value) or value <= 0 or (value == math.inf and isinstance(speed, int)):
        # the range is checked by check_speed; this error is also a TypeError
        raise ArgumentRangeError(
            f"speed must be between {MIN_SPEED:g} and {MAX_SPEED:g} (or math.inf: as fast as possible), not {speed!r}"
        )
    return value


def _to_ns(seconds: float | None, what: str) -> int | None:
    return None if seconds is None else check_seconds(seconds, what)


def _remap_pairs(remap: dict[str, str] | Iterable[str]) -> tuple[tuple[str, str], ...]:
    if isinstance(remap, dict):
        return tuple(remap.items())
    if isinstance(remap, str):
        return (parse_remap(remap),)
    if not isinstance(remap, Iterable):
        raise ArgumentError(f"remap must be a dict {{old: new}} or 'OLD:=NEW' strings, not {remap!r}")
    return tuple(parse_remap(item) for item in remap)


def _check_remap(remap: Any) -> tuple[tuple[str, str], ...]:
    """ReplayOptions.remap: (old, new) pairs of strings, old not empty."""
    if isinstance(remap, (str, bytes)) or not isinstance(remap, Iterable):
        raise ArgumentError(f"remap must be (old, new) pairs of topic names, not {remap!r}")
    pairs = tuple(remap)
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(name, str) for name in pair) and pair[0]):
            raise ArgumentError(f"remap must be (old, new) pairs of topic names, not {pair!r} in {pairs!r}")
    return tuple((old, new) for old, new in pairs)


def parse_remap(text: str) -> tuple[str, str]:
    """``OLD:=NEW`` to ``("OLD", "NEW")`` (the rosbag2 / ROS remap syntax); ArgumentError (a ValueError) if it is not."""
    if not isinstance(text, str):
        raise ArgumentError(f"remap {text!r} is not a string OLD:=NEW")
    old, sep, new = text.partition(":=")
    if not sep or not old:
        raise ArgumentError(f"{text!r} is not a remap OLD:=NEW")
    return old, new


@dataclass(frozen=True, slots=True)
class ReplayStatus:
    """A snapshot of a replay, from :meth:`Replay.status`."""

    state: str = "idle"  # idle, playing, paused, waiting (for subscribers), finished, failed, closed
    position_ns: int | None = None  # log time now (elapsed ns); None before anything is known
    start_ns: int | None = None  # log time of the first record played (elapsed ns); None if unknown
    end_ns: int | None = None  # log time of the last record played (elapsed ns); None if unknown
    sent: int = 0  # records published in this pass
    total: int = 0  # records published since the replay was made
    passes: int = 0  # completed passes (with loop)
    speed: float = 1.0
    lateness: dict[str, int] = field(default_factory=dict)  # count, mean_ns, p50_ns, p99_ns, max_ns
    error: str | None = None  # why the replay failed
    bus: str | None = None  # the bus address published on; None when not publishing
    subscribers: int = 0  # subscribers attached to the bus now (as the publisher sees them)
    peak_subscribers: int = 0  # the most subscribers attached at once since the start
    dropped: int = 0  # records not published: the bus stayed full for the send timeout (subscribers count them)

    @property
    def paused(self) -> bool:
        return self.state in ("paused", "idle")

    @property
    def finished(self) -> bool:
        return self.state == "finished"

    @property
    def duration_ns(self) -> int | None:
        """Log time from the first to the last record played."""
        if self.start_ns is None or self.end_ns is None:
            return None
        return self.end_ns - self.start_ns

    @property
    def progress(self) -> float | None:
        """Fraction of the log time played, 0..1 (None if unknown)."""
        if self.position_ns is None or self.start_ns is None or not self.duration_ns:
            return None if self.duration_ns is None else (1.0 if self.finished else 0.0)
        return min(1.0, max(0.0, (self.position_ns - self.start_ns) / self.duration_ns))

    def to_dict(self) -> dict[str, object]:
        """Plain values (JSON ready; seconds added for people)."""
        return {
            "state": self.state,
            "position_ns": self.position_ns,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "position": None if self.position_ns is None else self.position_ns / NS_PER_S,
            "duration": None if self.duration_ns is None else self.duration_ns / NS_PER_S,
            "progress": self.progress,
            "sent": self.sent,
            "total": self.total,
            "passes": self.passes,
            "speed": None if math.isinf(self.speed) else self.speed,
            "paused": self.paused,
            "lateness": dict(self.lateness),
            "error": self.error,
        }
