"""What Replay and its worker processes say to each other: states, commands, replies, events, lateness samples.

One module for the whole protocol, so a command is a type (checked by mypy
and by ``isinstance``), not a string spelled in several places:

- :class:`Replay` -> broadcast worker (duplex pipe, one reply per command):
  :class:`GetStatus`, :class:`Pause`, :class:`Resume`, :class:`SetSpeed`,
  :class:`Seek`, :class:`Step`, :class:`Stop`; the reply is a
  :class:`WorkerStatus` (or :class:`CommandFailed`).
- :class:`Replay` -> buffer worker (one-way pipe): :class:`Seek` (its
  `reset` unused), :class:`Stop`.
- broadcast worker -> :class:`Replay` (events queue): :class:`Ready`,
  :class:`Published`, :class:`PassEnded`, :class:`Finished`,
  :class:`WorkerFailed`, :class:`Closed`.

All are small frozen dataclasses: they pickle by value through the pipes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from mcl.replay.clock import LatenessStats

__all__ = [
    "State",
    "GetStatus",
    "Pause",
    "Resume",
    "SetSpeed",
    "Seek",
    "Step",
    "Stop",
    "Command",
    "WorkerStatus",
    "CommandFailed",
    "Ready",
    "Published",
    "PassEnded",
    "Finished",
    "WorkerFailed",
    "Closed",
    "Event",
    "LatenessReport",
    "LatenessSamples",
]


class State(enum.StrEnum):
    """The state of a replay (a str: ``status.state == "paused"`` holds)."""

    IDLE = "idle"  # made, workers not started
    PLAYING = "playing"
    PAUSED = "paused"
    WAITING = "waiting"  # for subscribers before the first record
    FINISHED = "finished"  # the pass played its last record
    FAILED = "failed"  # a worker died, got stuck, or a hook raised
    CLOSED = "closed"


PLAYING_STATES = frozenset({State.PLAYING, State.WAITING})  # "alive" (the original's is_alive())


# -- commands ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetStatus:
    """Reply with the status, change nothing."""


@dataclass(frozen=True, slots=True)
class Pause:
    """Freeze the clock (the waiting record is kept)."""


@dataclass(frozen=True, slots=True)
class Resume:
    """Run the clock again from the frozen position (nothing after the end of a pass)."""


@dataclass(frozen=True, slots=True)
class SetSpeed:
    """Play at `speed` from the current position on."""

    speed: float  # log seconds per wall second, validated by ReplayOptions; math.inf = as fast as possible


@dataclass(frozen=True, slots=True)
class Seek:
    """Start a new generation at log time `from_ns`: records of older generations are dropped."""

    generation: int  # the new generation; batches tagged with an older one are stale
    from_ns: int | None  # first log time played (elapsed ns); None = the start of the selection (a new pass)
    reset: bool = False  # also reset the pass counts and lateness (stop(), a pass after the end)


@dataclass(frozen=True, slots=True)
class Step:
    """Pause, then publish the next record at once; replied once it is out (or the end is seen)."""


@dataclass(frozen=True, slots=True)
class Stop:
    """End the worker."""


Command = GetStatus | Pause | Resume | SetSpeed | Seek | Step | Stop


# -- replies -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatenessReport:
    """Lateness since the last report: the worker's O(1) counters and its raw samples, for the parent."""

    epoch: int = 0  # bumped when the worker reset its statistics (the parent drops its window then)
    count: int = 0  # records timed since the last reset
    total_ns: int = 0  # sum of their lateness
    max_ns: int = 0  # the largest
    samples: tuple[int, ...] = ()  # lateness of the records timed since the last report (the most recent `window`)


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """The broadcast worker's reply to every command: where it is after the command."""

    state: State  # PLAYING, PAUSED, WAITING or FINISHED
    position_ns: int | None  # log time now (elapsed ns); None before anything is known
    generation: int  # the current generation (see Seek)
    sent: int  # records published in this pass
    total: int  # records published since the worker started
    passes: int  # completed passes (with loop)
    speed: float  # the clock's speed now
    lateness: LatenessReport = field(default_factory=LatenessReport)  # samples since the last reply
    bus: str | None = None  # the bus address published on; None when not publishing
    subscribers: int = 0  # subscribers attached now, as the publisher sees them
    peak_subscribers: int = 0  # the most subscribers attached at once
    dropped: int = 0  # records not published: the bus stayed full for the send timeout
    stepped: bool = False  # (Step) a record was published
    elapsed_ns: int | None = None  # (Step) its log time
    topic: str | None = None  # (Step) its topic


@dataclass(frozen=True, slots=True)
class CommandFailed:
    """The worker could not carry out a command."""

    error: str  # one line: what went wrong


# -- events (broadcast worker -> Replay's process) -----------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker is ready to publish."""


@dataclass(frozen=True, slots=True)
class Published:
    """Records just published, for the hooks (only when there are hooks)."""

    records: list[tuple[int, str, bytes]]  # (elapsed_ns, topic, payload), in order


@dataclass(frozen=True, slots=True)
class PassEnded:
    """A pass of a loop ended; the next one begins."""

    passes: int  # completed passes so far


@dataclass(frozen=True, slots=True)
class Finished:
    """The pass of `generation` played its last record (no loop)."""

    generation: int


@dataclass(frozen=True, slots=True)
class WorkerFailed:
    """The worker stops on an error."""

    message: str  # one line: what went wrong


@dataclass(frozen=True, slots=True)
class Closed:
    """The worker is ending: no event follows."""


Event = Ready | Published | PassEnded | Finished | WorkerFailed | Closed


class LatenessSamples(LatenessStats):
    """The worker's side of the lateness statistics: O(1) per record, no sorting.

    The counters of :class:`~mcl.replay.clock.LatenessStats` plus the raw
    samples not yet reported (at most `window`, the most recent);
    :meth:`report` hands them over with each reply and the parent, which
    merges them into a LatenessStats of its own, computes the percentiles.
    """

    epoch = 0  # bumped by reset()

    def reset(self) -> None:
        epoch = self.epoch + 1
        super().reset()
        self.epoch = epoch

    def report(self) -> LatenessReport:
        """The counters and the samples since the last report, oldest first (then forgotten here)."""
        recent, cut = self._recent, self._next
        self._recent, self._next = [], 0
        return LatenessReport(self.epoch, self.count, self.total_ns, self.max_ns, tuple(recent[cut:] + recent[:cut]))
