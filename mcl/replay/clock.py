"""The replay clock: log time (elapsed ns) to wall time (monotonic ns) with speed, pause and seek."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["ReplayClock", "LatenessStats", "check_speed", "MIN_SPEED", "MAX_SPEED"]

# The speeds a replay accepts (besides math.inf, as fast as possible). Outside
# them the clock's arithmetic leaves any useful range (a log second lasting
# over 16 minutes, or a year of log played in 30 s) and, far outside, overflows.
MIN_SPEED = 0.001
MAX_SPEED = 1_000_000.0


class ReplayClock:
    """Maps a log's elapsed time to the wall clock, like a media player's clock.

    While running, log time ``t`` is due at
    ``anchor_wall + (t - anchor_log) / speed``. Pausing freezes the log
    position; resuming re-anchors it at the current wall time, so the records
    after a pause keep their recorded spacing and nothing bursts. A clock
    starts *unanchored* (position None) when the log time of its first record
    is not known yet; :meth:`anchor` fixes it when that record arrives.

    ``now`` is injectable (monotonic integer ns) so tests need not wait. A
    speed of ``math.inf`` means as fast as possible: everything is due at once.
    """

    def __init__(self, speed: float = 1.0, *, paused: bool = True, now: Callable[[], int] = time.monotonic_ns) -> None:
        check_speed(speed)
        self._now = now
        self._speed = float(speed)
        self._paused = paused
        self._held: int | None = None  # log position while paused or unanchored (None: unknown)
        self._anchored = False
        self._anchor_wall = 0  # wall ns at which log time _anchor_log is due
        self._anchor_log = 0

    @property
    def speed(self) -> float:
        """Log seconds played per wall second (math.inf: as fast as possible)."""
        return self._speed

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def anchored(self) -> bool:
        """True when the clock runs against a known log position."""
        return self._anchored and not self._paused

    @property
    def position_ns(self) -> int | None:
        """The log time now (elapsed ns), or None before the first record fixed it."""
        if not self.anchored:
            return self._held
        if math.isinf(self._speed):
            return self._anchor_log
        return self._anchor_log + int((self._now() - self._anchor_wall) * self._speed)

    def due_ns(self, log_ns: int) -> int:
        """Wall time (monotonic ns) at which log time `log_ns` is due; only while anchored."""
        if math.isinf(self._speed):
            return self._anchor_wall
        return self._anchor_wall + int((log_ns - self._anchor_log) / self._speed)

    def anchor(self, log_ns: int, delay_ns: int = 0) -> None:
        """Make `log_ns` due `delay_ns` from now (start of a pass, seek while running)."""
        self._held = log_ns
        if not self._paused:
            self._anchored = True
            self._anchor_log = log_ns
            self._anchor_wall = self._now() + delay_ns

    def set_position(self, log_ns: int | None) -> None:
        """Jump to `log_ns` (seek); None leaves the clock unanchored until the next record."""
        self._anchored = False
        self._held = log_ns
        if log_ns is not None:
            self.anchor(log_ns)

    def note_sent(self, log_ns: int) -> None:
        """At infinite speed the position is the last record sent."""
        if math.isinf(self._speed) and self.anchored:
            self._anchor_log = log_ns

    def pause(self) -> None:
        """Freeze the log position."""
        if not self._paused:
            self._held = self.position_ns
            self._paused = True
            self._anchored = False

    def resume(self) -> None:
        """Run again from the frozen position (or wait for a record if unknown)."""
        if self._paused:
            self._paused = False
            if self._held is not None:
                self.anchor(self._held)

    def set_speed(self, speed: float) -> None:
        """Change the rate from the current position on (no jump in log time)."""
        check_speed(speed)
        position = self.position_ns
        self._speed = float(speed)
        if self.anchored and position is not None:
            self.anchor(position)


def check_speed(speed: float) -> None:
    """Raise ArgumentError (a ValueError) unless MIN_SPEED <= `speed` <= MAX_SPEED, or `speed` is math.inf."""
    if (
        isinstance(speed, bool)
        or not isinstance(speed, (int, float))
        or not (speed == math.inf or MIN_SPEED <= speed <= MAX_SPEED)
    ):
        from mcl.exceptions import ArgumentError

        raise ArgumentError(
            f"speed must be between {MIN_SPEED:g} and {MAX_SPEED:g} (or math.inf: as fast as possible), not {speed!r}"
        )


class LatenessStats:
    """How late records were published: count, mean, max and recent percentiles (ns)."""

    def __init__(self, window: int = 65536) -> None:
        self._window = window
        self._recent: list[int] = []
        self._next = 0
        self.count = 0
        self.total_ns = 0
        self.max_ns = 0

    def add(self, late_ns: int) -> None:
        late_ns = max(late_ns, 0)
        self.count += 1
        self.total_ns += late_ns
        if late_ns > self.max_ns:
            self.max_ns = late_ns
        if len(self._recent) < self._window:
            self._recent.append(late_ns)
        else:
            self._recent[self._next] = late_ns
            self._next = (self._next + 1) % self._window

    def reset(self) -> None:
        self.__init__(self._window)  # type: ignore[misc]

    def snapshot(self) -> dict[str, int]:
        """count, mean_ns, p50_ns, p99_ns (over the last `window` records), max_ns."""
        recent = sorted(self._recent)
        n = len(recent)
        return {
            "count": self.count,
            "mean_ns": self.total_ns // self.count if self.count else 0,
            "p50_ns": recent[max(0, math.ceil(n * 0.5) - 1)] if n else 0,  # nearest rank
            "p99_ns": recent[max(0, math.ceil(n * 0.99) - 1)] if n else 0,
            "max_ns": self.max_ns,
        }
